//! One client connection: reads size-checked frames, decodes them, runs handlers
//! concurrently, and writes responses strictly in request order.
//!
//! A reader task decodes frames and spawns one handler task per request; their join
//! handles go through a bounded queue to the writer, which awaits them in order. The
//! queue bound limits how many requests one client may pipeline. Any framing or
//! decoding error closes this connection only, after the responses already queued.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::api::{self, api_version_list, Broker};
use crate::protocol::{
    decode_request, encode_response, unsupported_api_versions_response, FrameError,
};

/// Requests one connection may have in flight before the reader stops reading.
const MAX_IN_FLIGHT: usize = 64;

enum Outgoing {
    /// A handler that will produce the response bytes (or nothing, for acks=0).
    Pending(JoinHandle<Option<Bytes>>),
    /// Bytes ready to send.
    Ready(Bytes),
}

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    max_frame: usize,
    shutdown: CancellationToken,
) {
    let span = tracing::info_span!("connection", %peer);
    async move {
        let _ = stream.set_nodelay(true);
        let (mut reader, writer) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Outgoing>(MAX_IN_FLIGHT);
        let writer_task = tokio::spawn(
            async move {
                let mut writer = BufWriter::with_capacity(64 * 1024, writer);
                while let Some(out) = rx.recv().await {
                    let bytes = match out {
                        Outgoing::Ready(b) => Some(b),
                        Outgoing::Pending(handle) => match handle.await {
                            Ok(b) => b,
                            Err(e) => {
                                // A handler panicked: the client cannot be answered in order.
                                warn!(error = %e, "request handler failed; closing connection");
                                break;
                            }
                        },
                    };
                    if let Some(bytes) = bytes {
                        if writer.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                    // Flush when nothing else is immediately ready, batching pipelined responses.
                    if rx.is_empty() && writer.flush().await.is_err() {
                        break;
                    }
                }
                let _ = writer.flush().await;
                let _ = writer.shutdown().await;
            }
            .in_current_span(),
        );
        let reason = read_loop(&mut reader, &broker, max_frame, &tx, &shutdown).await;
        match &reason {
            Ok(()) => debug!("client closed the connection"),
            Err(e) => warn!(error = %e, "closing connection"),
        }
        drop(tx);
        let _ = writer_task.await;
    }
    .instrument(span)
    .await
}

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("frame length {0} is negative or larger than socket.request.max.bytes ({1})")]
    BadLength(i32, usize),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("broker shutting down")]
    Shutdown,
}

async fn read_loop(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    broker: &Arc<Broker>,
    max_frame: usize,
    tx: &mpsc::Sender<Outgoing>,
    shutdown: &CancellationToken,
) -> Result<(), ConnectionError> {
    loop {
        let mut prefix = [0u8; 4];
        tokio::select! {
            r = reader.read_exact(&mut prefix) => match r {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            },
            _ = shutdown.cancelled() => return Err(ConnectionError::Shutdown),
        }
        let len = i32::from_be_bytes(prefix);
        // Checked before allocating anything for the frame.
        if len < 0 || len as usize > max_frame {
            return Err(ConnectionError::BadLength(len, max_frame));
        }
        let mut frame = BytesMut::zeroed(len as usize);
        reader.read_exact(&mut frame).await?;
        let request = match decode_request(frame.freeze()) {
            Ok(r) => r,
            Err(FrameError::UnsupportedApiVersions {
                version,
                correlation_id,
            }) => {
                info!(
                    version,
                    "ApiVersions version not supported; answering with our range (KIP-511)"
                );
                let bytes = unsupported_api_versions_response(correlation_id, api_version_list());
                if tx.send(Outgoing::Ready(bytes)).await.is_err() {
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let broker = broker.clone();
        let span = tracing::debug_span!("api", api = ?request.api_key, version = request.version, correlation_id = request.header.correlation_id);
        let handle = tokio::spawn(
            async move {
                let version = request.version;
                let correlation_id = request.header.correlation_id;
                let response = api::handle(&broker, request).await?;
                match encode_response(version, correlation_id, &response) {
                    Ok(bytes) => Some(bytes),
                    Err(e) => {
                        warn!(error = %e, "cannot encode response");
                        None
                    }
                }
            }
            .instrument(span),
        );
        if tx.send(Outgoing::Pending(handle)).await.is_err() {
            return Ok(());
        }
    }
}
