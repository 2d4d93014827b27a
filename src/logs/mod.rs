//! The broker's own log: its format on stderr (`logs.format`: text or JSON lines) and
//! its delivery to an object store (`logs.delivery.url`), as Amazon MSK delivers broker
//! logs to S3.
//!
//! Delivery never blocks the broker: each log line is handed to a queue bounded in
//! bytes (`logs.delivery.buffer.bytes`); a line that does not fit is dropped and
//! counted. [`delivery`] writes the queue out every `logs.delivery.interval.ms` as one
//! gzip'd JSON-lines object, keeps an object the store refused for the next round
//! (its bytes count against the same bound), and flushes once more at shutdown.
//!
//! Imports `config` and `tiered::store` (to build the object store from the same
//! `object_store.*` keys); nothing imports it but `main` and `server`.

pub mod delivery;
pub mod json;

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use tokio::sync::mpsc;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::BrokerConfig;

/// A log line and when it was written (ms since the epoch).
pub type QueuedLine = (i64, Vec<u8>);

/// Lines waiting for delivery, bounded in bytes.
pub struct LogQueue {
    tx: mpsc::UnboundedSender<QueuedLine>,
    rx: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<QueuedLine>>>,
    /// Bytes queued plus bytes of objects kept for a retry.
    held: AtomicUsize,
    cap: usize,
    pub dropped_lines: AtomicU64,
}

impl std::fmt::Debug for LogQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogQueue")
            .field("held", &self.held.load(Ordering::Relaxed))
            .field("cap", &self.cap)
            .finish()
    }
}

impl LogQueue {
    pub fn new(cap: usize) -> LogQueue {
        let (tx, rx) = mpsc::unbounded_channel();
        LogQueue {
            tx,
            rx: parking_lot::Mutex::new(Some(rx)),
            held: AtomicUsize::new(0),
            cap,
            dropped_lines: AtomicU64::new(0),
        }
    }

    /// Queues one line written at `ms`, or drops and counts it when the bound is reached.
    fn push(&self, ms: i64, line: Vec<u8>) {
        let n = line.len();
        if self.held.fetch_add(n, Ordering::Relaxed) + n > self.cap {
            self.held.fetch_sub(n, Ordering::Relaxed);
            self.dropped_lines.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.tx.send((ms, line)).is_err() {
            self.held.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Gives back `n` held bytes (lines taken out, or a kept object delivered).
    fn release(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::Relaxed);
    }

    /// Holds `n` more bytes (an object kept for a retry); false when over the bound.
    fn hold(&self, n: usize) -> bool {
        if self.held.fetch_add(n, Ordering::Relaxed) + n > self.cap {
            self.held.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn take_receiver(&self) -> Option<mpsc::UnboundedReceiver<QueuedLine>> {
        self.rx.lock().take()
    }
}

/// Writes one event's line into the queue when dropped (the fmt layer makes one
/// writer per event and writes the whole line into it).
pub struct QueueWriter<'a> {
    queue: &'a LogQueue,
    line: Vec<u8>,
}

impl Write for QueueWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for QueueWriter<'_> {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.queue
                .push(crate::log::now_ms(), std::mem::take(&mut self.line));
        }
    }
}

impl<'a> MakeWriter<'a> for &'static LogQueue {
    type Writer = QueueWriter<'a>;
    fn make_writer(&'a self) -> QueueWriter<'a> {
        QueueWriter {
            queue: self,
            line: Vec::with_capacity(256),
        }
    }
}

/// Leaked once at start-up: the global subscriber writes into it for the process's life.
static QUEUE: OnceLock<&'static LogQueue> = OnceLock::new();

/// The delivery queue, when `logs.delivery.url` is set and logging was initialised by
/// [`init`] (the broker process; in-process test brokers have none).
pub fn delivery_queue() -> Option<&'static LogQueue> {
    QUEUE.get().copied()
}

/// The filter without RUST_LOG: Strata's own INFO lines (what an operator acts on:
/// configuration, listeners, recovery, ready, stopping, stopped) and only warnings and
/// errors from libraries, whose INFO lines are their internals (openraft's workers).
pub const DEFAULT_LOG_FILTER: &str = "warn,strata=info";

fn filter() -> EnvFilter {
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!(
                "strata: RUST_LOG={spec:?} is not a valid filter ({e}); using {DEFAULT_LOG_FILTER}"
            );
            EnvFilter::new(DEFAULT_LOG_FILTER)
        }),
        _ => EnvFilter::new(DEFAULT_LOG_FILTER),
    }
}

/// Installs the global subscriber: stderr in `logs.format` (`colour` for text at a
/// terminal), plus JSON lines into the delivery queue when `logs.delivery.url` is set.
pub fn init(config: &BrokerConfig, colour: bool) {
    let node_id = config.node_id;
    let stderr = match config.get("logs.format") {
        "json" => tracing_subscriber::fmt::layer()
            .event_format(json::JsonEvent { node_id })
            .fmt_fields(json::JsonFields)
            .with_writer(std::io::stderr)
            .boxed(),
        _ => tracing_subscriber::fmt::layer()
            .with_ansi(colour)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let delivery = (!config.get("logs.delivery.url").trim().is_empty()).then(|| {
        let cap = config
            .get("logs.delivery.buffer.bytes")
            .parse()
            .unwrap_or(8 << 20);
        let queue: &'static LogQueue = Box::leak(Box::new(LogQueue::new(cap)));
        let _ = QUEUE.set(queue);
        tracing_subscriber::fmt::layer()
            .event_format(json::JsonEvent { node_id })
            .fmt_fields(json::JsonFields)
            .with_writer(queue)
            .with_ansi(false)
    });
    tracing_subscriber::registry()
        .with(filter())
        .with(stderr)
        .with(delivery)
        .init();
}

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

impl UtcTime {
    /// From milliseconds since the Unix epoch (Howard Hinnant's civil_from_days).
    pub fn from_ms(ms: i64) -> UtcTime {
        let days = ms.div_euclid(86_400_000);
        let in_day = ms.rem_euclid(86_400_000);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        UtcTime {
            year,
            month,
            day,
            hour: (in_day / 3_600_000) as u32,
            minute: (in_day / 60_000 % 60) as u32,
            second: (in_day / 1000 % 60) as u32,
            millis: (in_day % 1000) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_from_epoch_milliseconds() {
        assert_eq!(
            UtcTime::from_ms(0),
            UtcTime {
                year: 1970,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0,
                millis: 0
            }
        );
        // 2024-02-29T23:59:59.999Z (a leap day).
        let t = UtcTime::from_ms(1_709_251_199_999);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis),
            (2024, 2, 29, 23, 59, 59, 999)
        );
        // 2026-12-05T01:02:03.456Z
        let t = UtcTime::from_ms(1_796_432_523_456);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (2026, 12, 5, 1, 2, 3)
        );
    }

    #[test]
    fn the_queue_drops_and_counts_what_does_not_fit() {
        let q = LogQueue::new(10);
        q.push(1, b"123456".to_vec());
        q.push(2, b"123456".to_vec());
        assert_eq!(q.dropped_lines.load(Ordering::Relaxed), 1);
        let mut rx = q.take_receiver().unwrap();
        let (ms, line) = rx.try_recv().unwrap();
        assert_eq!(ms, 1);
        q.release(line.len());
        q.push(3, b"abc".to_vec());
        assert_eq!(rx.try_recv().unwrap(), (3, b"abc".to_vec()));
        assert!(!q.hold(20));
        assert!(q.hold(5));
    }
}
