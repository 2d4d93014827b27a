//! Kafka's RequestMetrics per API under the Strimzi exporter names:
//! `kafka_network_requestmetrics_requests_total{request,version}` and histograms
//! (milliseconds) of a request's time, whole and in Kafka's phases:
//! `..._totaltimems` (arrival to response written), `..._requestqueuetimems` (waiting
//! behind the connection's earlier requests), `..._localtimems` (handled here),
//! `..._remotetimems` (waiting on others: followers for acks=all, new data for a
//! long-polled fetch, the object store for a tiered read) and `..._responsesendtimems`
//! (writing the response). Kafka's response-queue time has no counterpart: a response
//! is written by the task that made it. Fetch is split as Kafka splits it, into
//! `FetchConsumer` and `FetchFollower`.
//!
//! And `kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent`: Strata
//! has no request-handler pool, requests run on the tokio workers, so it is the
//! fraction of time those workers were idle since the previous scrape (0 to 1).
//!
//! Every slot is a fixed array of atomics indexed by API key, made at start-up, so a
//! request adds to its counters without a lock or a map lookup.

use std::cell::Cell;
use std::future::Future;
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

/// One latency histogram: observations per bucket and their sum.
struct Histogram {
    /// Observations at or below each bound (not cumulative; summed when encoded).
    buckets: [AtomicU64; BUCKETS_MS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        let bucket = BUCKETS_MS
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(BUCKETS_MS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }
}

/// The phases of a request's time, each a histogram (Kafka's names, lower case).
const PHASES: [(&str, &str); 5] = [
    (
        "kafka_network_requestmetrics_totaltimems",
        "Time from a request's arrival to its response written, in milliseconds",
    ),
    (
        "kafka_network_requestmetrics_requestqueuetimems",
        "Time a request waited behind its connection's earlier requests, in milliseconds",
    ),
    (
        "kafka_network_requestmetrics_localtimems",
        "Time a request was handled on this broker, in milliseconds",
    ),
    (
        "kafka_network_requestmetrics_remotetimems",
        "Time a request waited on others (followers for acks=all, new data for a fetch, the object store), in milliseconds",
    ),
    (
        "kafka_network_requestmetrics_responsesendtimems",
        "Time spent writing a request's response, in milliseconds",
    ),
];

/// How long one request spent in each phase (see the module's doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestTimes {
    pub queue: Duration,
    pub local: Duration,
    pub remote: Duration,
    pub send: Duration,
}

impl RequestTimes {
    fn phases(&self) -> [Duration; 5] {
        let total = self.queue + self.local + self.remote + self.send;
        [total, self.queue, self.local, self.remote, self.send]
    }
}

/// One request name's counters.
struct Slot {
    name: String,
    by_version: [AtomicU64; VERSIONS],
    /// One per entry of `PHASES`.
    phases: [Histogram; 5],
    count: AtomicU64,
}

impl Slot {
    fn new(name: String) -> Slot {
        Slot {
            name,
            by_version: std::array::from_fn(|_| AtomicU64::new(0)),
            phases: std::array::from_fn(|_| Histogram::new()),
            count: AtomicU64::new(0),
        }
    }
}

tokio::task_local! {
    /// Time the request being handled has spent in `remote_wait` so far.
    static REMOTE_WAIT: Cell<Duration>;
}

/// Runs a request's handler, returning its output and how much of its time it spent
/// in `remote_wait`s.
pub async fn with_remote_time<F: Future>(handler: F) -> (F::Output, Duration) {
    REMOTE_WAIT
        .scope(Cell::new(Duration::ZERO), async move {
            let out = handler.await;
            (out, REMOTE_WAIT.with(Cell::get))
        })
        .await
}

/// Awaits `wait` (on followers, new data or the object store), counting its time as
/// the current request's remote time. Waits run one after another, never nested or
/// side by side, or their time would count twice.
pub async fn remote_wait<F: Future>(wait: F) -> F::Output {
    let start = Instant::now();
    let out = wait.await;
    // Outside a request (a background task) there is nothing to count it in.
    let _ = REMOTE_WAIT.try_with(|c| c.set(c.get() + start.elapsed()));
    out
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

    /// Counts one request of `kind` at `version` and its time in each phase (the
    /// response written, or dropped for acks=0).
    pub fn record(&self, kind: RequestKind, version: i16, times: RequestTimes) {
        let slot = &self.slots[kind.0];
        let v = (version.max(0) as usize).min(VERSIONS - 1);
        slot.by_version[v].fetch_add(1, Ordering::Relaxed);
        for (histogram, elapsed) in slot.phases.iter().zip(times.phases()) {
            histogram.observe(elapsed);
        }
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
        for (phase, (name, help)) in PHASES.iter().enumerate() {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for slot in &self.slots {
                if slot.count.load(Ordering::Relaxed) == 0 {
                    continue;
                }
                let histogram = &slot.phases[phase];
                // Per-bucket counts: the encoder makes them cumulative. They are read
                // one by one, so a concurrent request may be half counted: the
                // buckets' own total is the count.
                let mut total = 0;
                let mut buckets = Vec::with_capacity(BUCKETS_MS.len() + 1);
                for (i, n) in histogram.buckets.iter().enumerate() {
                    let n = n.load(Ordering::Relaxed);
                    total += n;
                    let bound = BUCKETS_MS.get(i).copied().unwrap_or(f64::INFINITY);
                    buckets.push((bound, n));
                }
                let sum_ms = histogram.sum_micros.load(Ordering::Relaxed) as f64 / 1000.0;
                let labels = [("request", slot.name.as_str())];
                metric
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(sum_ms, total, &buckets, None)?;
            }
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
        let local = |d| RequestTimes {
            local: d,
            ..RequestTimes::default()
        };
        m.record(
            m.kind(ApiKey::Produce, false),
            9,
            local(Duration::from_micros(700)),
        );
        m.record(
            m.kind(ApiKey::Produce, false),
            9,
            RequestTimes {
                queue: Duration::from_micros(100),
                local: Duration::from_micros(400),
                remote: Duration::from_millis(2),
                send: Duration::from_micros(500),
            },
        );
        m.record(
            m.kind(ApiKey::Fetch, false),
            12,
            local(Duration::from_millis(400)),
        );
        m.record(
            m.kind(ApiKey::Fetch, true),
            12,
            local(Duration::from_millis(1)),
        );
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
            // The phases: the second produce waited 2 ms on followers.
            "kafka_network_requestmetrics_remotetimems_bucket{le=\"1.0\",request=\"Produce\"} 1",
            "kafka_network_requestmetrics_remotetimems_bucket{le=\"2.5\",request=\"Produce\"} 2",
            "kafka_network_requestmetrics_remotetimems_sum{request=\"Produce\"} 2.0",
            "kafka_network_requestmetrics_requestqueuetimems_sum{request=\"Produce\"} 0.1",
            "kafka_network_requestmetrics_localtimems_sum{request=\"Produce\"} 1.1",
            "kafka_network_requestmetrics_responsesendtimems_sum{request=\"Produce\"} 0.5",
            "kafka_network_requestmetrics_totaltimems_sum{request=\"Produce\"} 3.7",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("request=\"Fetch\""), "{text}");
        assert!(text.contains("kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent "));
    }

    #[tokio::test]
    async fn remote_waits_count_inside_a_request_only() {
        let ((), remote) = with_remote_time(async {
            remote_wait(tokio::time::sleep(Duration::from_millis(20))).await;
            // Local work: not counted.
            std::thread::sleep(Duration::from_millis(5));
            remote_wait(tokio::time::sleep(Duration::from_millis(10))).await;
        })
        .await;
        assert!(remote >= Duration::from_millis(30), "{remote:?}");
        assert!(remote < Duration::from_millis(30) + Duration::from_secs(5));
        // Outside any request: runs, counts nowhere.
        remote_wait(async {}).await;
    }
}
