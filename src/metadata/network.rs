//! Raft RPC transport between metadata voters.
//!
//! For now the quorum has a single voter, which never sends an RPC, so every RPC fails
//! as `Unreachable`. The multi-voter (cluster) work replaces [`NetworkFactory`] with a
//! real RPC transport that talks to the address in each voter's `BasicNode`.

use std::io;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::types::{Node, NodeId, TypeConfig};

/// Creates a client per remote voter.
#[derive(Debug, Clone, Default)]
pub(crate) struct NetworkFactory;

/// A client to one remote voter. Placeholder: every RPC fails as unreachable.
#[derive(Debug, Clone)]
pub(crate) struct UnreachableNetwork {
    target: NodeId,
    addr: String,
}

impl UnreachableNetwork {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<NodeId, Node, E> {
        let e = io::Error::new(
            io::ErrorKind::NotConnected,
            format!(
                "no metadata RPC transport yet (voter {} at '{}')",
                self.target, self.addr
            ),
        );
        tracing::debug!(
            target_node = self.target,
            "metadata RPC to a remote voter: {e}"
        );
        RPCError::Unreachable(Unreachable::new(&e))
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = UnreachableNetwork;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        UnreachableNetwork {
            target,
            addr: node.addr.clone(),
        }
    }
}

impl RaftNetwork<TypeConfig> for UnreachableNetwork {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        Err(self.unreachable())
    }
}
