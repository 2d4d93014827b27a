//! The metadata quorum's wire: requests and replies between nodes on the controller
//! listener (`controller.listener.names`), as length-prefixed JSON frames.
//!
//! Kafka's KRaft speaks its own Vote / BeginQuorumEpoch / Fetch RPCs there; Strata's
//! quorum is openraft, so its RPCs (append entries, vote, install snapshot) travel as
//! they are, beside the controller calls brokers make (registration, heartbeats, ISR
//! changes, forwarded proposals). Nothing on this listener is Kafka protocol.
//!
//! [`RpcClient`] keeps one connection to one peer and sends one request at a time;
//! [`serve`] answers on each accepted connection in order. On an SSL controller
//! listener both sides speak TLS ([`RpcTls`]), set up by whoever starts the quorum.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::controller::{ControllerReply, ControllerRequest};
use super::observer::MetadataFetchReply;
use super::types::{NodeId, TypeConfig};

/// Largest frame either side accepts: a snapshot of a very large cluster image fits.
const MAX_FRAME: usize = 1 << 30;

/// How long a peer may take over its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS on the controller listener (its protocol SSL); the default is PLAINTEXT.
#[derive(Clone, Default)]
pub struct RpcTls {
    /// The server side, asked at each accept (so a reloaded certificate is served to
    /// new connections); `None` on a node that does not bind the listener.
    pub acceptor: Option<Arc<dyn Fn() -> tokio_rustls::TlsAcceptor + Send + Sync>>,
    /// The client side, for calls to the other nodes' controller listeners.
    pub connector: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for RpcTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcTls")
            .field("server", &self.acceptor.is_some())
            .field("client", &self.connector.is_some())
            .finish()
    }
}

/// A connection on the controller listener: TCP, or TLS over it.
trait RpcStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> RpcStream for T {}

/// A request from one node to another.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RpcRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Is this node part of a formed quorum? Asked before initializing a fresh one.
    Probe,
    /// For the active controller (a voter that is not forwards it to the leader).
    Controller(ControllerRequest),
    /// A broker-only node (an observer) asks the active controller for the metadata
    /// committed after the index it has.
    FetchMetadata {
        node_id: u64,
        after: Option<u64>,
    },
}

/// What a node knows of the quorum, for [`RpcRequest::Probe`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ProbeReply {
    pub node_id: u64,
    /// Has a membership: it belongs to a formed quorum.
    pub initialized: bool,
    pub leader: Option<u64>,
    /// The index of the last entry it applied.
    pub applied: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RpcReply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Probe(ProbeReply),
    /// The controller's answer and the metadata index it had applied after it.
    Controller(ControllerReply, Option<u64>),
    Metadata(MetadataFetchReply),
    /// The request could not be decoded or handled.
    Error(String),
}

/// Answers requests; implemented by the quorum.
pub(crate) trait RpcHandler: Send + Sync + 'static {
    fn handle(&self, request: RpcRequest) -> impl std::future::Future<Output = RpcReply> + Send;
}

async fn write_frame<S: AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    body: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(body);
    stream.write_all(&buf).await?;
    // A TLS stream holds what was written until flushed.
    stream.flush().await
}

async fn read_frame<S: AsyncRead + Unpin + ?Sized>(stream: &mut S) -> io::Result<Vec<u8>> {
    let len = stream.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

fn invalid(e: serde_json::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A connection to one peer, opened on first use and reopened after any failure.
pub(crate) struct RpcClient {
    addr: String,
    tls: Option<tokio_rustls::TlsConnector>,
    conn: tokio::sync::Mutex<Option<Box<dyn RpcStream>>>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl RpcClient {
    pub(crate) fn new(addr: impl Into<String>, tls: &RpcTls) -> Self {
        RpcClient {
            addr: addr.into(),
            tls: tls.connector.clone(),
            conn: tokio::sync::Mutex::new(None),
        }
    }

    async fn connect(&self) -> io::Result<Box<dyn RpcStream>> {
        let stream = TcpStream::connect(&self.addr).await?;
        stream.set_nodelay(true)?;
        let Some(tls) = &self.tls else {
            return Ok(Box::new(stream));
        };
        // The certificate must name the host as the voter list gives it (an IP SAN
        // for an address).
        let host = self
            .addr
            .rsplit_once(':')
            .map_or(self.addr.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Box::new(tls.connect(name, stream).await?))
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `request` and waits up to `timeout` for the reply (connecting included).
    pub(crate) async fn call(
        &self,
        request: &RpcRequest,
        timeout: Duration,
    ) -> io::Result<RpcReply> {
        let body = serde_json::to_vec(request).map_err(invalid)?;
        let mut conn = self.conn.lock().await;
        let result = tokio::time::timeout(timeout, async {
            if conn.is_none() {
                *conn = Some(self.connect().await?);
            }
            let stream = conn.as_mut().expect("connected above");
            write_frame(stream, &body).await?;
            let reply = read_frame(stream).await?;
            serde_json::from_slice::<RpcReply>(&reply).map_err(invalid)
        })
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no reply from {} within {timeout:?}", self.addr),
            ))
        });
        if result.is_err() {
            // The stream may hold half a frame: start over next time.
            *conn = None;
        }
        result
    }
}

/// Serves the controller listener until `shutdown`: one task per connection, each
/// answering its requests in order.
/// A connection the security groups admitted: `close` is cancelled when reloaded rules
/// no longer admit it; `guard` deregisters it when dropped (the connection's end).
pub struct Admitted {
    pub close: CancellationToken,
    pub guard: Box<dyn Send + Sync>,
}

/// Decides whether a connection (local address, peer address) is admitted.
pub type Admit =
    Arc<dyn Fn(std::net::SocketAddr, std::net::SocketAddr) -> Option<Admitted> + Send + Sync>;

pub(crate) async fn serve<H: RpcHandler>(
    listener: TcpListener,
    handler: Arc<H>,
    shutdown: CancellationToken,
    admit: Option<Admit>,
    tls: RpcTls,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "controller listener accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        // Security groups: checked before a byte is read; an admitted connection is
        // closed when reloaded rules no longer admit it.
        let (close, guard) = match &admit {
            Some(admit) => match stream
                .local_addr()
                .ok()
                .and_then(|local| admit(local, peer))
            {
                Some(a) => (a.close, Some(a.guard)),
                None => {
                    drop(stream);
                    continue;
                }
            },
            None => (shutdown.child_token(), None),
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        let acceptor = tls.acceptor.as_ref().map(|a| a());
        tokio::spawn(async move {
            let _guard = guard;
            let mut stream: Box<dyn RpcStream> = match acceptor {
                None => Box::new(stream),
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    let accepted = tokio::select! {
                        r = handshake => r,
                        _ = shutdown.cancelled() => return,
                        _ = close.cancelled() => return,
                    };
                    match accepted {
                        Ok(Ok(s)) => Box::new(s),
                        Ok(Err(e)) => {
                            info!(%peer, error = %e, "TLS handshake on the controller listener failed");
                            return;
                        }
                        Err(_) => {
                            info!(%peer, "TLS handshake on the controller listener timed out");
                            return;
                        }
                    }
                }
            };
            loop {
                let frame = tokio::select! {
                    frame = read_frame(&mut stream) => frame,
                    _ = shutdown.cancelled() => return,
                    // Reloaded security groups no longer admit it (the reload logs how many
                    // it closed), or the broker is stopping.
                    _ = close.cancelled() => return,
                };
                let frame = match frame {
                    Ok(f) => f,
                    Err(e) => {
                        if e.kind() != io::ErrorKind::UnexpectedEof {
                            debug!(%peer, error = %e, "controller connection closed");
                        }
                        return;
                    }
                };
                let reply = match serde_json::from_slice::<RpcRequest>(&frame) {
                    Ok(request) => handler.handle(request).await,
                    Err(e) => {
                        warn!(%peer, error = %e, "undecodable request on the controller listener; closing the connection");
                        return;
                    }
                };
                let body = match serde_json::to_vec(&reply) {
                    Ok(b) => b,
                    Err(e) => {
                        warn!(%peer, error = %e, "could not encode a controller reply");
                        return;
                    }
                };
                if write_frame(&mut stream, &body).await.is_err() {
                    return;
                }
            }
        });
    }
}
