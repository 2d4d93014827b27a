//! One client connection: reads size-checked frames, decodes them, and handles them
//! one at a time in arrival order, as Kafka does: a connection's requests are never
//! reordered, so pipelined produce requests append in the order they were sent.
//!
//! A reader task decodes the next frames while the current request is handled (up to
//! `MAX_PIPELINED` queued); responses are written as they are produced and flushed
//! when nothing else is queued. Any framing or decoding error closes this connection
//! only, after the requests before it were answered.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::sasl::{Intercept, SaslSession, SaslSettings};
use super::transport::Transport;
use crate::api::{self, api_version_list, Broker};
use crate::metrics::request::{with_remote_time, RequestTimes};
use crate::protocol::{
    decode_request, encode_response, read_frame_body, record_sets,
    unsupported_api_versions_response, Chunk, FileRecords, FrameError, Request,
};

/// Decoded requests one connection may have queued behind the one being handled.
const MAX_PIPELINED: usize = 64;

enum Incoming {
    /// A request and when its frame was read (its time in the request metrics starts there).
    Request(Box<Request>, Instant),
    /// Chunks to send as they are (the KIP-511 ApiVersions answer).
    Ready(Vec<Chunk>),
}

/// The other end of a connection: its address and the principal its TLS certificate
/// gives (`User:ANONYMOUS` without one; a SASL login replaces it).
pub struct Peer {
    pub addr: SocketAddr,
    pub principal: Arc<str>,
}

/// Serves one connection over `stream` (TCP, or TLS over it).
pub async fn serve<S: Transport>(
    stream: S,
    peer: Peer,
    listener: Arc<str>,
    broker: Arc<Broker>,
    max_frame: usize,
    shutdown: CancellationToken,
    sasl: Option<Arc<SaslSettings>>,
) {
    let Peer {
        addr: peer,
        principal,
    } = peer;
    let span = tracing::info_span!("connection", %peer);
    async move {
        // On a SASL listener: nothing but ApiVersions and SASL until authenticated, in
        // frames of at most `sasl.server.max.receive.size` until then.
        let frame_limit = Arc::new(AtomicUsize::new(match &sasl {
            Some(s) => s.max_receive.min(max_frame),
            None => max_frame,
        }));
        let mut session = sasl.map(|s| SaslSession::new(s, peer));
        let (mut reader, writer) = stream.split_transport();
        let (tx, mut rx) = mpsc::channel::<Incoming>(MAX_PIPELINED);
        let reader_limit = frame_limit.clone();
        let reader_task = tokio::spawn(
            async move {
                let reason =
                    read_loop(&mut reader, peer, &listener, &reader_limit, &tx, &shutdown).await;
                match &reason {
                    Ok(()) => debug!("client closed the connection"),
                    // A client going away mid-read is ordinary, not a warning.
                    Err(ConnectionError::Io(e))
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionReset
                                | std::io::ErrorKind::BrokenPipe
                                | std::io::ErrorKind::UnexpectedEof
                        ) =>
                    {
                        debug!(error = %e, "client disconnected")
                    }
                    Err(ConnectionError::Shutdown) => debug!("closing connection for shutdown"),
                    Err(e) => warn!(error = %e, "closing connection"),
                }
            }
            .in_current_span(),
        );
        let mut writer = BufWriter::with_capacity(64 * 1024, writer);
        let mut close_after = false;
        while let Some(incoming) = rx.recv().await {
            let started = Instant::now();
            // (what the request counts as, its version, when it arrived)
            let mut timed = None;
            // Of the handler's time, what it spent waiting on others.
            let mut remote = std::time::Duration::ZERO;
            let bytes = match incoming {
                Incoming::Ready(b) => Some(b),
                Incoming::Request(mut request, arrived) => {
                    timed = Some((
                        api::request_kind(&broker, &request),
                        request.version,
                        arrived,
                    ));
                    request.principal = session
                        .as_ref()
                        .and_then(|s| s.principal())
                        .unwrap_or(&principal)
                        .clone();
                    let verdict = match session.as_mut() {
                        Some(s) => s.intercept(&broker, &request),
                        None => Intercept::Pass,
                    };
                    // Authenticated (by this request, before its answer goes out): the
                    // client may now send frames up to socket.request.max.bytes.
                    if session.as_ref().is_some_and(|s| s.principal().is_some()) {
                        frame_limit.store(max_frame, Ordering::Relaxed);
                    }
                    let (version, correlation_id) =
                        (request.version, request.header.correlation_id);
                    let reply = match verdict {
                        Intercept::Pass => None,
                        Intercept::Reply(body) => Some(body),
                        Intercept::Fail(body, delay) => {
                            // Kafka's brake on guessing: answer late, then close.
                            tokio::time::sleep(delay).await;
                            close_after = true;
                            Some(body)
                        }
                        Intercept::Close(why) => {
                            info!(reason = why, "closing the connection");
                            break;
                        }
                    };
                    match reply {
                        Some(body) => match encode_response(
                            version,
                            correlation_id,
                            &body,
                            &[],
                            &FileRecords::default(),
                        ) {
                            Ok(b) => Some(b),
                            Err(_) => break,
                        },
                        None => {
                            let (answer, waited) =
                                with_remote_time(handle(&broker, *request)).await;
                            remote = waited;
                            match answer {
                                Ok(b) => b,
                                // The client cannot be answered in order: close rather than hang it.
                                Err(()) => break,
                            }
                        }
                    }
                }
            };
            let handled = Instant::now();
            if let Some(chunks) = bytes {
                if let Err(e) = write_chunks::<S>(&mut writer, chunks).await {
                    debug!(error = %e, "cannot write the response");
                    break;
                }
            }
            // Flush when nothing else is queued, batching pipelined responses.
            let flushed = if rx.is_empty() || close_after {
                writer.flush().await.is_ok()
            } else {
                true
            };
            // Send time: into the socket (flushed) or into the buffer behind the next
            // response (pipelined).
            if let Some((kind, version, arrived)) = timed {
                let handling = handled.duration_since(started);
                let times = RequestTimes {
                    queue: started.saturating_duration_since(arrived),
                    local: handling.saturating_sub(remote),
                    remote: remote.min(handling),
                    send: handled.elapsed(),
                };
                broker.request_metrics.record(kind, version, times);
            }
            if !flushed {
                break;
            }
            if close_after {
                break;
            }
        }
        let _ = writer.flush().await;
        let _ = writer.shutdown().await;
        reader_task.abort();
    }
    .instrument(span)
    .await
}

/// Writes a response's chunks in order: large record chunks bypass the buffer and go
/// straight to the socket, file ranges from the file.
async fn write_chunks<S: Transport>(
    writer: &mut BufWriter<S::Writer>,
    chunks: Vec<Chunk>,
) -> std::io::Result<()> {
    for chunk in chunks {
        match chunk {
            Chunk::Bytes(b) => writer.write_all(&b).await?,
            Chunk::File(range) => {
                // What is buffered goes first, to keep the bytes in order.
                writer.flush().await?;
                S::send_file(writer.get_mut(), &range).await?;
            }
        }
    }
    Ok(())
}

/// Runs one request's handler and encodes its response (`Ok(None)`: nothing to
/// send, as for acks=0; `Err`: the response could not be encoded).
async fn handle(broker: &Arc<Broker>, request: Request) -> Result<Option<Vec<Chunk>>, ()> {
    let span = tracing::debug_span!("api", api = ?request.api_key, version = request.version, correlation_id = request.header.correlation_id);
    async move {
        let version = request.version;
        let correlation_id = request.header.correlation_id;
        let Some(reply) = api::handle(broker, request).await else {
            return Ok(None);
        };
        let splice = record_sets(&reply.body);
        match encode_response(version, correlation_id, &reply.body, &splice, &reply.files) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode response; closing the connection");
                Err(())
            }
        }
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

async fn read_loop<R: AsyncRead + Unpin>(
    reader: &mut R,
    peer: SocketAddr,
    listener: &str,
    frame_limit: &AtomicUsize,
    tx: &mpsc::Sender<Incoming>,
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
        let max_frame = frame_limit.load(Ordering::Relaxed);
        if len < 0 || len as usize > max_frame {
            return Err(ConnectionError::BadLength(len, max_frame));
        }
        let frame = read_frame_body(reader, len as usize).await?;
        let incoming = match decode_request(frame) {
            Ok(mut r) => {
                r.client_host = format!("/{}", peer.ip());
                r.listener = listener.to_string();
                Incoming::Request(Box::new(r), Instant::now())
            }
            Err(FrameError::UnsupportedApiVersions {
                version,
                correlation_id,
            }) => {
                info!(
                    version,
                    "ApiVersions version not supported; answering with our range (KIP-511)"
                );
                Incoming::Ready(unsupported_api_versions_response(
                    correlation_id,
                    api_version_list(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        if tx.send(incoming).await.is_err() {
            return Ok(());
        }
    }
}
