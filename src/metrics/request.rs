//! Kafka's RequestMetrics per API under the Strimzi exporter names:
//! `kafka_network_requestmetrics_requests_total{request,version}` and the request
//! time from arrival to the response written as a histogram,
//! `kafka_network_requestmetrics_totaltimems{request}` (milliseconds). Fetch is split
//! as Kafka splits it, into `FetchConsumer` and `FetchFollower`.
//!
//! And `kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent`: Strata
//! has no request-handler pool, requests run on the tokio workers, so it is the
//! fraction of time those workers were idle since the previous scrape (0 to 1).
//!
//! Every slot is a fixed array of atomics indexed by API key, made at start-up, so a
//! request adds to its counters without a lock or a map lookup.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Versions counted apart; a higher one (none exists yet) counts as the last.
const VERSIONS: usize = 32;
/// Upper bounds (ms) of the latency buckets; long-polled fetches wait up to seconds.
const BUCKETS_MS: [f64; 16] = [
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
    10000.0, 30000.0,
];

/// One request name's counters.
struct Slot {
    name: String,
    by_version: [AtomicU64; VERSIONS],
    /// Observations at or below each bound (not cumulative; summed when encoded).
    buckets: [AtomicU64; BUCKETS_MS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Slot {
    fn new(name: String) -> Slot {
        Slot {
            name,
            by_version: std::array::from_fn(|_| AtomicU64::new(0)),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

/// Which slot a request counts in: its API key, or for Fetch who is fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestKind(usize);

pub struct RequestMetrics {
    /// Indexed by API key; Fetch's own slot stays unused.
    slots: Vec<Slot>,
    fetch_consumer: usize,
    fetch_follower: usize,
}

impl std::fmt::Debug for RequestMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMetrics")
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl Default for RequestMetrics {
    fn default() -> Self {
        let keys = (0..=i16::MAX)
            .take_while(|k| *k < 256)
            .filter_map(|k| ApiKey::try_from(k).ok().map(|key| (k, key)));
        let top = keys.clone().map(|(k, _)| k as usize).max().unwrap_or(0);
        let mut slots: Vec<Slot> = (0..=top).map(|_| Slot::new(String::new())).collect();
        for (k, key) in keys {
            // kafka-protocol's variant names are Kafka's API names (Produce, Metadata).
            slots[k as usize].name = format!("{key:?}");
        }
        let fetch_consumer = slots.len();
        slots.push(Slot::new("FetchConsumer".into()));
        let fetch_follower = slots.len();
        slots.push(Slot::new("FetchFollower".into()));
        RequestMetrics {
            slots,
            fetch_consumer,
            fetch_follower,
        }
    }
}

impl RequestMetrics {
    /// The slot of a request with `api_key`; `follower` says whether a Fetch comes
    /// from a replica.
    pub fn kind(&self, api_key: ApiKey, follower: bool) -> RequestKind {
        match api_key {
            ApiKey::Fetch if follower => RequestKind(self.fetch_follower),
            ApiKey::Fetch => RequestKind(self.fetch_consumer),
            key => RequestKind((key as i16 as usize).min(self.fetch_consumer - 1)),
        }
    }

    /// Counts one request of `kind` at `version` that took `elapsed` from its arrival
    /// to its response being written (or dropped, for acks=0).
    pub fn record(&self, kind: RequestKind, version: i16, elapsed: Duration) {
        let slot = &self.slots[kind.0];
        let v = (version.max(0) as usize).min(VERSIONS - 1);
        slot.by_version[v].fetch_add(1, Ordering::Relaxed);
        let ms = elapsed.as_secs_f64() * 1000.0;
        let bucket = BUCKETS_MS
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(BUCKETS_MS.len());
        slot.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        slot.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        slot.count.fetch_add(1, Ordering::Relaxed);
    }

    fn encode_into(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut metric = encoder.encode_descriptor(
            "kafka_network_requestmetrics_requests",
            "Requests received, by API and version",
            None,
            MetricType::Counter,
        )?;
        for slot in &self.slots {
            for (version, count) in slot.by_version.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count == 0 {
                    continue;
                }
                let version = version.to_string();
                let labels = [("request", slot.name.as_str()), ("version", &version)];
                metric
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "kafka_network_requestmetrics_totaltimems",
            "Time from a request's arrival to its response written, in milliseconds",
            None,
            MetricType::Histogram,
        )?;
        for slot in &self.slots {
            let count = slot.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            // Per-bucket counts: the encoder makes them cumulative.
            let mut total = 0;
            let mut buckets = Vec::with_capacity(BUCKETS_MS.len() + 1);
            for (i, n) in slot.buckets.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                total += n;
                let bound = BUCKETS_MS.get(i).copied().unwrap_or(f64::INFINITY);
                buckets.push((bound, n));
            }
            let sum_ms = slot.sum_micros.load(Ordering::Relaxed) as f64 / 1000.0;
            let labels = [("request", slot.name.as_str())];
            // The bucket counts are read one by one: a concurrent request may make
            // the total differ from `count` by a few, so the buckets' total is used.
            metric
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum_ms, total, &buckets, None)?;
        }
        Ok(())
    }
}

/// The tokio workers' idle fraction since the previous scrape.
pub struct WorkerIdle {
    runtime: tokio::runtime::Handle,
    /// (when, the workers' summed busy time then) at the previous scrape.
    last: Mutex<(Instant, Duration)>,
}

impl WorkerIdle {
    pub fn new(runtime: tokio::runtime::Handle) -> WorkerIdle {
        let busy = Self::busy(&runtime);
        WorkerIdle {
            runtime,
            last: Mutex::new((Instant::now(), busy)),
        }
    }

    fn busy(runtime: &tokio::runtime::Handle) -> Duration {
        let m = runtime.metrics();
        (0..m.num_workers())
            .map(|w| m.worker_total_busy_duration(w))
            .sum()
    }

    fn idle_fraction(&self) -> f64 {
        let workers = self.runtime.metrics().num_workers().max(1) as f64;
        let now = Instant::now();
        let busy = Self::busy(&self.runtime);
        let mut last = self.last.lock();
        let wall = now.duration_since(last.0).as_secs_f64() * workers;
        let used = busy.saturating_sub(last.1).as_secs_f64();
        // Two scrapes at once (or a clock step) leave no window: report fully idle
        // rather than divide by nothing.
        let idle = if wall <= 0.0 {
            1.0
        } else {
            (1.0 - used / wall).clamp(0.0, 1.0)
        };
        *last = (now, busy);
        idle
    }
}

/// Encodes the request metrics and the workers' idle fraction at each scrape.
pub struct RequestCollector {
    pub requests: std::sync::Arc<RequestMetrics>,
    pub idle: WorkerIdle,
}

impl std::fmt::Debug for RequestCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestCollector").finish()
    }
}

impl Collector for RequestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.requests.encode_into(&mut encoder)?;
        let mut metric = encoder.encode_descriptor(
            "kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent",
            "Fraction of time (0 to 1) the workers that run requests were idle since the last scrape",
            None,
            MetricType::Gauge,
        )?;
        metric.encode_gauge(&self.idle.idle_fraction())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_by_name_and_version_with_fetch_split_by_reader() {
        let m = RequestMetrics::default();
        m.record(
            m.kind(ApiKey::Produce, false),
            9,
            Duration::from_micros(700),
        );
        m.record(m.kind(ApiKey::Produce, false), 9, Duration::from_millis(3));
        m.record(m.kind(ApiKey::Fetch, false), 12, Duration::from_millis(400));
        m.record(m.kind(ApiKey::Fetch, true), 12, Duration::from_millis(1));
        let mut registry = prometheus_client::registry::Registry::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        registry.register_collector(Box::new(RequestCollector {
            requests: std::sync::Arc::new(m),
            idle: WorkerIdle::new(rt.handle().clone()),
        }));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "kafka_network_requestmetrics_requests_total{request=\"Produce\",version=\"9\"} 2",
            "kafka_network_requestmetrics_requests_total{request=\"FetchConsumer\",version=\"12\"} 1",
            "kafka_network_requestmetrics_requests_total{request=\"FetchFollower\",version=\"12\"} 1",
            "kafka_network_requestmetrics_totaltimems_bucket{le=\"1.0\",request=\"Produce\"} 1",
            "kafka_network_requestmetrics_totaltimems_bucket{le=\"5.0\",request=\"Produce\"} 2",
            "kafka_network_requestmetrics_totaltimems_count{request=\"Produce\"} 2",
            "kafka_network_requestmetrics_totaltimems_bucket{le=\"+Inf\",request=\"Produce\"} 2",
            "kafka_network_requestmetrics_totaltimems_bucket{le=\"250.0\",request=\"FetchConsumer\"} 0",
            "kafka_network_requestmetrics_totaltimems_bucket{le=\"500.0\",request=\"FetchConsumer\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("request=\"Fetch\""), "{text}");
        assert!(text.contains("kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent "));
    }
}
