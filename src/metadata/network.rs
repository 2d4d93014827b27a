//! openraft's transport between metadata voters: each RPC goes over an [`RpcClient`]
//! to the address in the target voter's `BasicNode` (its controller listener).

use std::io;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::rpc::{RpcClient, RpcReply, RpcRequest, RpcTls};
use super::types::{Node, NodeId, TypeConfig};

/// Creates a client per remote voter.
#[derive(Debug, Clone, Default)]
pub(crate) struct NetworkFactory {
    pub(crate) tls: RpcTls,
}

/// A client to one remote voter.
#[derive(Debug)]
pub(crate) struct VoterClient {
    target: NodeId,
    client: RpcClient,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = VoterClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        VoterClient {
            target,
            client: RpcClient::new(node.addr.clone(), &self.tls),
        }
    }
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, Node, E>>;

impl VoterClient {
    async fn call<E: std::error::Error>(
        &self,
        request: RpcRequest,
        option: &RPCOption,
    ) -> RpcResult<RpcReply, E> {
        // openraft's hard TTL bounds the whole call; never wait less than a moment.
        let timeout = option.hard_ttl().max(Duration::from_millis(50));
        match self.client.call(&request, timeout).await {
            Ok(RpcReply::Error(e)) => {
                Err(RPCError::Network(NetworkError::new(&io::Error::other(e))))
            }
            Ok(reply) => Ok(reply),
            Err(e) => {
                tracing::debug!(target_node = self.target, addr = self.client.addr(), error = %e, "metadata RPC failed");
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
        }
    }

    fn unexpected<E: std::error::Error>(&self) -> RPCError<NodeId, Node, E> {
        RPCError::Network(NetworkError::new(&io::Error::other(format!(
            "voter {} answered with the wrong reply type",
            self.target
        ))))
    }
}

impl RaftNetwork<TypeConfig> for VoterClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        match self.call(RpcRequest::AppendEntries(rpc), &option).await? {
            RpcReply::AppendEntries(r) => r.map_err(|e| {
                RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e))
            }),
            _ => Err(self.unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        match self.call(RpcRequest::InstallSnapshot(rpc), &option).await? {
            RpcReply::InstallSnapshot(r) => r.map_err(|e| {
                RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e))
            }),
            _ => Err(self.unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, RaftError<NodeId>> {
        match self.call(RpcRequest::Vote(rpc), &option).await? {
            RpcReply::Vote(r) => r.map_err(|e| {
                RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e))
            }),
            _ => Err(self.unexpected()),
        }
    }
}
