//! Accepts connections on a bound listener and spawns one task per connection.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::connection::{self, Peer};
use crate::api::Broker;

/// How long a TLS client may take to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `User:<mapped subject>` of a TLS client's certificate, or `User:ANONYMOUS`.
fn tls_principal(
    tls: &super::tls::ServerTls,
    stream: &tokio_rustls::server::TlsStream<BufferedTcp>,
) -> Arc<str> {
    let subject = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(super::tls::subject_of);
    match subject {
        Some(s) => format!("User:{}", tls.mapping.map(&s)).into(),
        None => crate::protocol::anonymous(),
    }
}

/// The socket under a TLS session, read in large chunks: rustls asks for 4 KiB at a
/// time, which would cost several read calls per 16 KiB record (a copy from this
/// buffer is far cheaper). Writes go straight through.
type BufferedTcp = tokio::io::BufReader<tokio::net::TcpStream>;

/// Bytes read from a TLS client's socket at once.
const TLS_READ_BUFFER: usize = 64 * 1024;

/// What a listener's connections share.
pub struct ListenerContext {
    /// The listener's name, as configured.
    pub name: String,
    pub broker: Arc<Broker>,
    /// `socket.request.max.bytes`.
    pub max_frame: usize,
    pub admission: Arc<super::admission::Admission>,
    /// The TLS side of an SSL or SASL_SSL listener.
    pub tls: Option<Arc<super::tls::ServerTls>>,
    /// The SASL side of a SASL_PLAINTEXT or SASL_SSL listener.
    pub sasl: Option<Arc<super::sasl::SaslSettings>>,
}

pub async fn accept_loop(
    listener: TcpListener,
    context: ListenerContext,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let ListenerContext {
        name,
        broker,
        max_frame,
        admission,
        tls,
        sasl,
    } = context;
    let listener_name: std::sync::Arc<str> = std::sync::Arc::from(name.as_str());
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    info!(listener = %name, addr = %local, "listening");
    // Accept errors repeat while their cause lasts: one warning per interval.
    let mut last_warning: Option<tokio::time::Instant> = None;
    let mut should_warn = move || {
        let now = tokio::time::Instant::now();
        let due = last_warning.is_none_or(|t| now - t >= std::time::Duration::from_secs(10));
        if due {
            last_warning = Some(now);
        }
        due
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Security groups: checked on the peer address before a byte is read.
                    let Some(local) = stream
                        .local_addr()
                        .ok()
                        .filter(|local| admission.admit(&name, *local, peer))
                    else {
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    // Tracked so that a reload of the rules can close it.
                    let (close, guard) = admission.track(listener_name.clone(), local, peer, &shutdown);
                    let (listener_name, broker, tls, sasl) = (listener_name.clone(), broker.clone(), tls.clone(), sasl.clone());
                    tracker.spawn(async move {
                        match tls {
                            None => connection::serve(stream, Peer { addr: peer, principal: crate::protocol::anonymous() }, listener_name, broker, max_frame, close, sasl).await,
                            Some(tls) => {
                                // The handshake runs in the connection's task, bounded, so
                                // a slow or silent peer holds up nobody else.
                                let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, stream)));
                                let stream = tokio::select! {
                                    r = handshake => r,
                                    _ = close.cancelled() => return,
                                };
                                match stream {
                                    Ok(Ok(stream)) => {
                                        let principal = tls_principal(&tls, &stream);
                                        tracing::debug!(%peer, principal = %principal, "TLS connection");
                                        connection::serve(stream, Peer { addr: peer, principal }, listener_name, broker, max_frame, close, sasl).await
                                    }
                                    // A port probe (connect, then close) is not worth a line.
                                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => tracing::debug!(listener = %listener_name, %peer, "connection closed before the TLS handshake"),
                                    Ok(Err(e)) => tracing::info!(listener = %listener_name, %peer, error = %e, "TLS handshake failed"),
                                    Err(_) => tracing::info!(listener = %listener_name, %peer, "TLS handshake timed out"),
                                }
                            }
                        }
                        drop(guard);
                    });
                }
                Err(e) if crate::log::files::is_out_of_descriptors(&e) => {
                    // Out of descriptors: the segment-file pool gives back what it
                    // holds idle (reads and appends reopen on demand), so the
                    // connection waiting in the backlog is accepted at once.
                    let closed = crate::log::files::pool().shed();
                    if should_warn() {
                        warn!(listener = %name, error = %e, closed, "accept ran out of file descriptors; closed idle segment files");
                    }
                    if closed == 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
                Err(e) => {
                    // Anything else: back off instead of spinning.
                    if should_warn() {
                        warn!(listener = %name, error = %e, "accept failed");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.cancelled() => break,
        }
    }
}
