//! Accepts connections on a bound listener and spawns one task per connection.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::connection;
use crate::api::Broker;

pub async fn accept_loop(
    listener: TcpListener,
    name: String,
    broker: Arc<Broker>,
    max_frame: usize,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    admission: Arc<super::admission::Admission>,
) {
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
                    // Tracked so that a reload of the rules can close it.
                    let (close, guard) = admission.track(listener_name.clone(), local, peer, &shutdown);
                    let serve = connection::serve(stream, peer, listener_name.clone(), broker.clone(), max_frame, close);
                    tracker.spawn(async move {
                        serve.await;
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
