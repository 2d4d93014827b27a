//! Writes the queued log lines to the object store every `logs.delivery.interval.ms`
//! as `<prefix>/<cluster id>/<node id>/<yyyy>/<mm>/<dd>/<hh>/<first ms>-<seq>.jsonl.gz`
//! (the hour path and the first timestamp in UTC of the object's first line). An
//! object the store refuses is kept and tried first next round; while the store is
//! down, new lines are dropped and counted once the queue's bound is reached.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{LogQueue, UtcTime};
use crate::config::BrokerConfig;
use crate::tiered::store::{RemoteStore, StoreError};

/// How long one object write may take before it counts as failed.
const PUT_TIMEOUT: Duration = Duration::from_secs(30);
/// The same at shutdown, which the server bounds at 10 s in all.
const FINAL_PUT_TIMEOUT: Duration = Duration::from_secs(4);

/// Counters of the delivery, on `/metrics`.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    objects: AtomicU64,
    failures: AtomicU64,
    lines: AtomicU64,
}

/// Encodes the delivery counters and the queue's dropped lines.
#[derive(Debug)]
pub struct DeliveryCollector {
    stats: Arc<DeliveryStats>,
    queue: &'static LogQueue,
}

impl Collector for DeliveryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters = [
            (
                "strata_log_delivery_objects",
                "Log objects written to logs.delivery.url",
                self.stats.objects.load(Ordering::Relaxed),
            ),
            (
                "strata_log_delivery_lines",
                "Log lines written to logs.delivery.url",
                self.stats.lines.load(Ordering::Relaxed),
            ),
            (
                "strata_log_delivery_failures",
                "Log object writes that failed (the object is kept and retried)",
                self.stats.failures.load(Ordering::Relaxed),
            ),
            (
                "strata_log_delivery_dropped_lines",
                "Log lines dropped because logs.delivery.buffer.bytes was full (the store was down or slow)",
                self.queue.dropped_lines.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

/// The running delivery task.
pub struct Delivery {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Delivery {
    /// Writes what is queued once more and ends (bounded by the caller).
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// One gzip'd object ready to write: its path, body, and the lines in it.
struct Object {
    path: Path,
    body: Bytes,
    lines: u64,
}

struct Deliverer {
    queue: &'static LogQueue,
    rx: tokio::sync::mpsc::UnboundedReceiver<super::QueuedLine>,
    store: RemoteStore,
    /// `<prefix>/<cluster id>/<node id>`
    base: String,
    seq: u64,
    stats: Arc<DeliveryStats>,
    /// Objects the store refused, oldest first.
    pending: VecDeque<Object>,
}

/// Starts delivering `queue` to `logs.delivery.url`; returns the task and the
/// collector to register. Errors name the key when the URL cannot be used.
pub fn start(
    queue: &'static LogQueue,
    config: &BrokerConfig,
    cluster_id: &str,
) -> Result<Option<(Delivery, DeliveryCollector)>, StoreError> {
    let Some(rx) = queue.take_receiver() else {
        return Ok(None);
    };
    let url = config.get("logs.delivery.url").trim().to_string();
    let store = RemoteStore::from_url(config, &url, "logs.delivery.url")?;
    let prefix = store.prefix.as_ref().to_string();
    let base = [prefix.as_str(), cluster_id, &config.node_id.to_string()]
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join("/");
    let interval = Duration::from_millis(
        config
            .get("logs.delivery.interval.ms")
            .parse()
            .unwrap_or(60_000),
    );
    let stats = Arc::new(DeliveryStats::default());
    let stop = CancellationToken::new();
    let deliverer = Deliverer {
        queue,
        rx,
        store,
        base,
        seq: 0,
        stats: stats.clone(),
        pending: VecDeque::new(),
    };
    let task = tokio::spawn(deliverer.run(interval, stop.clone()));
    Ok(Some((
        Delivery { stop, task },
        DeliveryCollector { stats, queue },
    )))
}

impl Deliverer {
    async fn run(mut self, interval: Duration, stop: CancellationToken) {
        loop {
            let last = tokio::select! {
                _ = tokio::time::sleep(interval) => false,
                _ = stop.cancelled() => true,
            };
            if last {
                self.final_round().await;
                return;
            }
            self.round().await;
        }
    }

    /// At shutdown: the newest lines first (the shutdown's own, which kept objects
    /// must not hold up behind a store that does not answer), then what was kept.
    async fn final_round(&mut self) {
        if let Some(object) = self.take_object().await {
            if self.put(&object, FINAL_PUT_TIMEOUT).await.is_err() {
                self.queue
                    .dropped_lines
                    .fetch_add(object.lines, Ordering::Relaxed);
                return;
            }
        }
        while let Some(object) = self.pending.pop_front() {
            if self.put(&object, FINAL_PUT_TIMEOUT).await.is_err() {
                return;
            }
            self.queue.release(object.body.len());
        }
    }

    /// Retries kept objects, then writes what was queued since the last round.
    async fn round(&mut self) {
        while let Some(object) = self.pending.pop_front() {
            let size = object.body.len();
            match self.put(&object, PUT_TIMEOUT).await {
                Ok(()) => self.queue.release(size),
                Err(()) => {
                    self.pending.push_front(object);
                    break;
                }
            }
        }
        let Some(object) = self.take_object().await else {
            return;
        };
        let stuck = !self.pending.is_empty();
        if stuck || self.put(&object, PUT_TIMEOUT).await.is_err() {
            // Kept for the next round if it fits the bound, else its lines are lost.
            if self.queue.hold(object.body.len()) {
                self.pending.push_back(object);
            } else {
                self.queue
                    .dropped_lines
                    .fetch_add(object.lines, Ordering::Relaxed);
            }
        }
    }

    /// Everything queued now as one gzip'd object.
    async fn take_object(&mut self) -> Option<Object> {
        let mut first_ms = None;
        let mut lines = Vec::new();
        while let Ok((ms, line)) = self.rx.try_recv() {
            first_ms.get_or_insert(ms);
            self.queue.release(line.len());
            lines.push(line);
        }
        let first_ms = first_ms?;
        let count = lines.len() as u64;
        let body = tokio::task::spawn_blocking(move || {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            for line in &lines {
                gz.write_all(line)?;
            }
            gz.finish()
        })
        .await
        .ok()?
        .ok()?;
        let t = UtcTime::from_ms(first_ms);
        self.seq += 1;
        let name = format!(
            "{}/{:04}/{:02}/{:02}/{:02}/{first_ms}-{:06}.jsonl.gz",
            self.base, t.year, t.month, t.day, t.hour, self.seq
        );
        Some(Object {
            path: Path::from(name),
            body: Bytes::from(body),
            lines: count,
        })
    }

    async fn put(&self, object: &Object, timeout: Duration) -> Result<(), ()> {
        let put = self
            .store
            .store
            .put(&object.path, PutPayload::from(object.body.clone()));
        match tokio::time::timeout(timeout, put).await {
            Ok(Ok(_)) => {
                self.stats.objects.fetch_add(1, Ordering::Relaxed);
                self.stats.lines.fetch_add(object.lines, Ordering::Relaxed);
                debug!(path = %object.path, lines = object.lines, "log object delivered");
                Ok(())
            }
            outcome => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                let error = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {} s", timeout.as_secs()),
                };
                warn!(path = %object.path, %error, "log delivery failed; the object is kept and retried");
                Err(())
            }
        }
    }
}
