//! The replicas this broker hosts (Kafka's ReplicaManager): a map from
//! topic-partition to [`Partition`], kept in step with the metadata image by
//! [`ReplicaManager::reconcile`], plus the periodic retention pass and shutdown.
//!
//! Lookups take a read lock on the map only long enough to clone an `Arc`; the
//! partitions themselves are locked individually.

use crate::log::now_ms;
use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tracing::{error, info, warn};

use super::fetcher::{FetcherManager, FetcherSettings, Followed};
use super::partition::{IsrChange, Leadership, Partition, PartitionName, RemoteBounds};
use crate::config::{BrokerConfig, LogConfig};
use crate::log::producer_state::ProducerState;
use crate::log::{LogError, LogManager};
use crate::metadata::ClusterImage;
use crate::metrics::topic::{BrokerTopicStats, TopicCounter};
use crate::tiered::reader::{PartitionRef, RemoteRead};
use crate::tiered::{RemoteReadError, RemoteReader};

pub struct ReplicaManager {
    pub(super) node_id: i32,
    pub(super) config: Arc<BrokerConfig>,
    logs: LogManager,
    /// topic name → partition index → replica; looked up by `&str` without allocating
    /// (every produce and fetch partition goes through `get`).
    partitions: RwLock<HashMap<String, HashMap<i32, Arc<Partition>>>>,
    reconcile_lock: Mutex<()>,
    /// Serves reads below the local log start of tiered partitions; set once at start.
    remote_reader: std::sync::OnceLock<RemoteReader>,
    /// Follower fetching; set once the broker is registered.
    fetchers: std::sync::OnceLock<FetcherManager>,
    /// ISR changes for the controller (consumed by the server's AlterPartition task).
    isr_changes: tokio::sync::mpsc::UnboundedSender<IsrChange>,
    isr_changes_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<IsrChange>>>,
    /// Follower logs restarted after the tiered range (see `take_tier_restarts`).
    tier_restarts: tokio::sync::mpsc::UnboundedSender<(Arc<Partition>, i64)>,
    tier_restarts_rx: Mutex<Option<TierRestarts>>,
    /// BrokerTopicMetrics: each partition holds its topic's counters.
    topic_stats: Arc<BrokerTopicStats>,
}

/// Receives follower logs restarted after the tiered range, with their restart offset.
pub type TierRestarts = tokio::sync::mpsc::UnboundedReceiver<(Arc<Partition>, i64)>;

impl ReplicaManager {
    pub fn new(config: Arc<BrokerConfig>, logs: LogManager) -> ReplicaManager {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (tier_tx, tier_rx) = tokio::sync::mpsc::unbounded_channel();
        ReplicaManager {
            node_id: config.node_id,
            config,
            logs,
            partitions: RwLock::new(HashMap::new()),
            reconcile_lock: Mutex::new(()),
            remote_reader: std::sync::OnceLock::new(),
            fetchers: std::sync::OnceLock::new(),
            isr_changes: tx,
            isr_changes_rx: Mutex::new(Some(rx)),
            tier_restarts: tier_tx,
            tier_restarts_rx: Mutex::new(Some(tier_rx)),
            topic_stats: Arc::default(),
        }
    }

    /// TLS to other brokers when the inter-broker listener is SSL (set with the fetchers).
    pub fn inter_broker_tls(&self) -> Option<&tokio_rustls::TlsConnector> {
        self.fetchers.get().and_then(|f| f.tls())
    }

    /// The login to other brokers when the inter-broker listener is SASL.
    pub fn inter_broker_sasl(&self) -> Option<&super::client::SaslLogin> {
        self.fetchers.get().and_then(|f| f.sasl())
    }

    /// The per-topic counters (for `/metrics` and for requests naming no local partition).
    pub fn topic_stats(&self) -> &Arc<BrokerTopicStats> {
        &self.topic_stats
    }

    /// Starts follower fetching (the partitions to follow come with each reconcile).
    /// `tls` connects to leaders when the inter-broker listener is SSL, `sasl` logs
    /// in when it is SASL.
    pub fn start_fetchers(
        &self,
        stop: tokio_util::sync::CancellationToken,
        tls: Option<tokio_rustls::TlsConnector>,
        sasl: Option<super::client::SaslLogin>,
    ) {
        let c = &self.config;
        let settings = FetcherSettings {
            node_id: self.node_id,
            fetchers_per_broker: c.num("num.replica.fetchers").max(1) as usize,
            max_wait_ms: c.num("replica.fetch.wait.max.ms") as i32,
            min_bytes: c.num("replica.fetch.min.bytes") as i32,
            max_bytes: c.num("replica.fetch.response.max.bytes") as i32,
            partition_max_bytes: c.num("replica.fetch.max.bytes") as i32,
            backoff: std::time::Duration::from_millis(
                c.num("replica.fetch.backoff.ms").max(10) as u64
            ),
            socket_timeout: std::time::Duration::from_millis(
                c.num("replica.socket.timeout.ms").max(1) as u64,
            ),
            tier_restarts: self.tier_restarts.clone(),
            tls,
            sasl,
        };
        let _ = self.fetchers.set(FetcherManager::new(settings, stop));
    }

    /// Asks the controller (through the server's AlterPartition task) for an ISR change.
    pub fn request_isr_change(&self, change: IsrChange) {
        let _ = self.isr_changes.send(change);
    }

    /// The receiving end of [`request_isr_change`](Self::request_isr_change); taken once.
    pub fn take_isr_changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<IsrChange>> {
        self.isr_changes_rx.lock().take()
    }

    /// Follower logs the fetchers restarted after the tiered range; taken once (the
    /// server restores their producer state from the object store).
    pub fn take_tier_restarts(&self) -> Option<TierRestarts> {
        self.tier_restarts_rx.lock().take()
    }

    /// One pass of the ISR shrink check: followers that have not caught up for
    /// `replica.lag.time.max.ms` leave the ISRs this broker leads.
    pub fn shrink_isrs(&self) {
        let lag = self.config.num("replica.lag.time.max.ms");
        for p in self.all() {
            if let Some(change) = p.isr_shrink(lag) {
                info!(topic = %p.topic, partition = p.index, isr = ?change.isr, "follower(s) fell behind: shrinking the ISR");
                self.request_isr_change(change);
            }
        }
    }

    /// The configured log dirs.
    pub fn log_dirs(&self) -> &[std::path::PathBuf] {
        self.logs.dirs()
    }

    pub fn set_remote_reader(&self, reader: RemoteReader) {
        let _ = self.remote_reader.set(reader);
    }

    pub fn remote_reader(&self) -> Option<&RemoteReader> {
        self.remote_reader.get()
    }

    /// ListOffsets by time over the part of the log only the object store holds.
    pub async fn remote_batch_for_timestamp(
        &self,
        image: &ClusterImage,
        partition: &Partition,
        timestamp: i64,
    ) -> Result<Option<bytes::Bytes>, RemoteReadError> {
        let Some(reader) = self.remote_reader.get() else {
            return Ok(None);
        };
        let offsets = partition.offsets();
        if offsets.log_start_offset >= offsets.local_log_start_offset {
            return Ok(None);
        }
        reader
            .batch_for_timestamp(
                image,
                PartitionRef {
                    topic: &partition.topic,
                    topic_id: partition.topic_id,
                    partition: partition.index,
                },
                timestamp,
                offsets.log_start_offset..offsets.local_log_start_offset,
            )
            .await
    }

    /// For every log restarted after the object store's end (a lost local disk),
    /// fetches the producer-state snapshot uploaded with the last tiered segment, so
    /// an idempotent producer's retry of a batch from before the loss is still
    /// acknowledged as a duplicate. Without a snapshot the state stays empty, and
    /// producers are accepted at any sequence as Kafka accepts unknown ones.
    pub async fn restore_producer_snapshots(&self, image: &ClusterImage) {
        let restarted: Vec<(Arc<Partition>, i64)> = self
            .partitions
            .read()
            .values()
            .flat_map(|parts| parts.values())
            .filter_map(|p| Some((p.clone(), p.restarted_from_remote_at?)))
            .collect();
        for (p, offset) in restarted {
            self.restore_producer_snapshot(&p, offset, image).await;
        }
    }

    /// Installs on `p`, restarted empty at `offset` after the tiered range, the
    /// producer-state snapshot uploaded with the tiered segment that ends there.
    pub async fn restore_producer_snapshot(
        &self,
        p: &Arc<Partition>,
        offset: i64,
        image: &ClusterImage,
    ) {
        let Some(reader) = self.remote_reader.get() else {
            return;
        };
        let last = image.remote_log(&p.topic_id, p.index).and_then(|l| {
            l.finished()
                .find(|s| s.end_offset + 1 == offset && s.producer_snapshot_bytes > 0)
                .cloned()
        });
        let Some(segment) = last else {
            return;
        };
        let part = PartitionRef {
            topic: &p.topic,
            topic_id: p.topic_id,
            partition: p.index,
        };
        let restored = match reader.producer_snapshot(part, &segment).await {
            Ok(bytes) => match ProducerState::from_snapshot_bytes(&bytes) {
                Some((state, at)) if at == offset => p.restore_producers(state, offset),
                _ => {
                    warn!(topic = %p.topic, partition = p.index, offset, "unreadable producer snapshot in the object store; producer state starts empty");
                    return;
                }
            },
            Err(e) => {
                warn!(topic = %p.topic, partition = p.index, offset, error = %e, "could not fetch the producer snapshot; producer state starts empty");
                return;
            }
        };
        match restored {
            Ok(true) => {
                info!(topic = %p.topic, partition = p.index, offset, "producer state restored from the object store")
            }
            Ok(false) => {}
            Err(e) => {
                warn!(topic = %p.topic, partition = p.index, error = %e, "could not install the producer snapshot")
            }
        }
    }

    /// Reads from the object store what `Partition::plan_read` said is only there.
    pub async fn read_remote(
        &self,
        image: &ClusterImage,
        partition: &Partition,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<bytes::Bytes, RemoteReadError> {
        let Some(reader) = self.remote_reader.get() else {
            return Err(RemoteReadError::NotTiered { offset });
        };
        let req = RemoteRead {
            topic: &partition.topic,
            topic_id: partition.topic_id,
            partition: partition.index,
            offset,
            max_bytes,
            min_one,
        };
        let result = reader.read(image, req).await;
        match &result {
            Ok(bytes) => {
                partition.stats.inc(TopicCounter::RemoteFetchRequests);
                partition
                    .stats
                    .add(TopicCounter::RemoteFetchBytes, bytes.len() as u64);
            }
            Err(_) => partition.stats.inc(TopicCounter::FailedRemoteFetchRequests),
        }
        result
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .get(topic)
            .and_then(|parts| parts.get(&partition))
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .values()
            .flat_map(|parts| parts.values().cloned())
            .collect()
    }

    /// The typed log config of a topic as the image and broker config define it.
    pub fn log_config_for(
        &self,
        image: &ClusterImage,
        topic_configs: &std::collections::BTreeMap<String, String>,
    ) -> LogConfig {
        let mut config = LogConfig::from_effective(
            &self
                .config
                .effective_topic_configs(topic_configs, &image.broker_configs),
        );
        // Without the tiering system nothing uploads, so the log keeps plain retention.
        config.remote_storage_enable &= self.config.remote_storage_system_enable;
        config
    }

    /// Brings the hosted replicas in line with `image`: opens logs of new partitions,
    /// applies changed configs, deletes the data of topics that are gone. Idempotent.
    pub fn reconcile(&self, image: &ClusterImage) -> Result<(), LogError> {
        let _guard = self.reconcile_lock.lock();
        // Partitions of deleted (or deleted-and-recreated) topics.
        let stale: Vec<((String, i32), Arc<Partition>)> = self
            .partitions
            .read()
            .values()
            .flat_map(|parts| parts.values())
            .filter(|p| {
                // Deleted, re-created under the same name, or moved off this broker by
                // a reassignment.
                image.topic_by_name(&p.topic).is_none_or(|t| {
                    t.id != p.topic_id
                        || t.partitions
                            .get(p.index as usize)
                            .is_none_or(|part| !part.replicas.contains(&self.node_id))
                })
            })
            .map(|p| ((p.topic.clone(), p.index), p.clone()))
            .collect();
        for (key, partition) in stale {
            {
                let mut map = self.partitions.write();
                if let Some(parts) = map.get_mut(&key.0) {
                    parts.remove(&key.1);
                    if parts.is_empty() {
                        map.remove(&key.0);
                    }
                }
            }
            if let Err(e) = partition.delete_data() {
                warn!(topic = %key.0, partition = key.1, error = %e, "could not delete partition data");
            } else {
                info!(topic = %key.0, partition = key.1, "deleted partition");
            }
        }
        let mut to_open = Vec::new();
        for topic in image.topics.values() {
            let log_config = self.log_config_for(image, &topic.configs);
            for (index, p) in topic.partitions.iter().enumerate() {
                if !p.replicas.contains(&self.node_id) {
                    continue;
                }
                let remote = remote_bounds(image, topic.id, index as i32);
                let leadership = Leadership {
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    isr: p.isr.clone(),
                    replicas: p.replicas.clone(),
                };
                if let Some(existing) = self.get(&topic.name, index as i32) {
                    if !existing.leadership_matches(&leadership) {
                        match existing.apply_leadership(&leadership) {
                            Ok(true) => {
                                info!(topic = %topic.name, partition = index, leader = p.leader, leader_epoch = p.leader_epoch, "leadership changed")
                            }
                            Ok(false) => {}
                            Err(e) => {
                                warn!(topic = %topic.name, partition = index, error = %e, "could not apply a leadership change")
                            }
                        }
                    }
                    if existing.config() != log_config {
                        existing.set_config(log_config.clone());
                    }
                    if existing.remote_bounds() != remote {
                        if let Err(e) = existing.set_remote_bounds(remote) {
                            warn!(topic = %topic.name, partition = index, error = %e, "could not apply the remote log start offset");
                        }
                    }
                    continue;
                }
                to_open.push(OpenJob {
                    topic: topic.name.clone(),
                    topic_id: topic.id,
                    index: index as i32,
                    config: log_config.clone(),
                    leadership,
                    remote,
                });
            }
        }
        self.open_partitions(to_open)?;
        self.follow(image);
        Ok(())
    }

    /// Points the fetchers at the leaders of the partitions this broker follows.
    fn follow(&self, image: &ClusterImage) {
        let Some(fetchers) = self.fetchers.get() else {
            return;
        };
        let listener = &self.config.inter_broker_listener;
        let mut followed = Vec::new();
        for p in self.all() {
            let leader = p.leader();
            if leader == self.node_id || leader < 0 {
                continue;
            }
            let Some(b) = image.brokers.get(&leader) else {
                continue;
            };
            let (host, port) = b.address_for(listener);
            followed.push(Followed {
                leader,
                leader_epoch: p.leader_epoch(),
                leader_addr: format!("{host}:{port}"),
                partition: p,
            });
        }
        fetchers.set_followed(followed);
    }

    /// Opens (and after a crash, recovers) partition logs on
    /// `num.recovery.threads.per.data.dir` threads per log dir, as Kafka's LogManager
    /// does at start; the first failure is returned once every thread has stopped.
    fn open_partitions(&self, jobs: Vec<OpenJob>) -> Result<(), LogError> {
        let threads = self.io_threads().min(jobs.len());
        if threads <= 1 {
            return jobs
                .into_iter()
                .try_for_each(|job| self.open_partition(job));
        }
        let queue = parking_lot::Mutex::new(jobs.into_iter());
        let failure: parking_lot::Mutex<Option<LogError>> = parking_lot::Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    if failure.lock().is_some() {
                        return;
                    }
                    let Some(job) = queue.lock().next() else {
                        return;
                    };
                    if let Err(e) = self.open_partition(job) {
                        failure.lock().get_or_insert(e);
                        return;
                    }
                });
            }
        });
        match failure.into_inner() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn open_partition(&self, job: OpenJob) -> Result<(), LogError> {
        let dir = self.logs.partition_dir(&job.topic, job.index);
        if dir.exists() && LogManager::recorded_topic_id(&dir).is_some_and(|id| id != job.topic_id)
        {
            // Data of an older topic with the same name.
            let _ = std::fs::remove_dir_all(&dir);
        }
        let log = self
            .logs
            .open_log(&job.topic, job.index, job.topic_id, job.config)?;
        let partition = Partition::new(
            PartitionName {
                topic: job.topic.clone(),
                topic_id: job.topic_id,
                index: job.index,
            },
            self.node_id,
            log,
            job.leadership,
            job.remote,
            self.topic_stats.topic(&job.topic),
        )?;
        self.partitions
            .write()
            .entry(job.topic)
            .or_default()
            .insert(job.index, partition);
        Ok(())
    }

    /// Deletes partition directories on disk that the image does not know (topics
    /// deleted while this broker was down). Call once after the first reconcile.
    pub fn remove_orphans(&self, image: &ClusterImage) {
        for (topic, partition, dir) in self.logs.existing_partitions() {
            let known = image.topic_by_name(&topic).is_some_and(|t| {
                (partition as usize) < t.partitions.len()
                    && LogManager::recorded_topic_id(&dir).is_none_or(|id| id == t.id)
            });
            if !known {
                warn!(topic, partition, dir = %dir.display(), "removing partition directory unknown to the metadata");
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }

    /// One pass of time and size retention over every partition.
    pub fn apply_retention(&self) {
        let now = now_ms();
        for p in self.all() {
            match p.apply_retention(now) {
                Ok(0) => {}
                Ok(n) => {
                    info!(topic = %p.topic, partition = p.index, segments = n, "retention deleted segments")
                }
                Err(e) => {
                    error!(topic = %p.topic, partition = p.index, error = %e, "retention failed")
                }
            }
        }
    }

    /// One pass of the flush scheduler: fsyncs every log whose unflushed records
    /// waited `flush.ms`.
    pub fn flush_due_logs(&self) {
        let now = now_ms();
        for p in self.all() {
            if let Err(e) = p.flush_if_due(now) {
                error!(topic = %p.topic, partition = p.index, error = %e, "scheduled flush failed");
            }
        }
    }

    /// Closes every log and records a clean shutdown.
    pub fn shutdown(&self) {
        let failed = std::sync::atomic::AtomicBool::new(false);
        let partitions = parking_lot::Mutex::new(self.all().into_iter());
        // Closing writes each partition's indexes and producer snapshot: spread over
        // a few threads, like recovery at start.
        std::thread::scope(|scope| {
            for _ in 0..self.io_threads() {
                scope.spawn(|| loop {
                    let Some(p) = partitions.lock().next() else {
                        return;
                    };
                    if let Err(e) = p.close() {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        error!(topic = %p.topic, partition = p.index, error = %e, "close failed");
                    }
                });
            }
        });
        if !failed.into_inner() {
            self.logs.mark_clean_shutdown();
        }
    }

    /// Threads for opening and closing many logs: `num.recovery.threads.per.data.dir`
    /// per log dir.
    fn io_threads(&self) -> usize {
        let per_dir: usize = self
            .config
            .get("num.recovery.threads.per.data.dir")
            .parse()
            .unwrap_or(1);
        per_dir.max(1) * self.logs.dirs().len().max(1)
    }
}

/// A partition log to open, with what its `Partition` starts from.
struct OpenJob {
    topic: String,
    topic_id: uuid::Uuid,
    index: i32,
    config: LogConfig,
    leadership: Leadership,
    remote: RemoteBounds,
}

/// What the image says the object store holds of a partition.
fn remote_bounds(image: &ClusterImage, topic_id: uuid::Uuid, partition: i32) -> RemoteBounds {
    match image.remote_log(&topic_id, partition) {
        None => RemoteBounds::NONE,
        Some(log) => RemoteBounds {
            end: log.end_offset(),
            log_start: log.log_start_offset,
            first: log.finished().next().map(|s| s.base_offset),
        },
    }
}

impl crate::tiered::TieredPartitions for ReplicaManager {
    /// Partitions led here whose topic tiers, or that still have remote segments to
    /// clean up (tiering turned off keeps what was uploaded until retention).
    fn tiered_partitions(&self) -> Vec<crate::tiered::TieredPartition> {
        self.all()
            .into_iter()
            // Only the leader uploads and cleans up (KIP-405); followers keep their
            // local copies until retention, which honours what is uploaded.
            .filter(|p| p.is_leader())
            .filter(|p| p.config().remote_storage_enable || p.remote_bounds().first.is_some())
            .map(|p| p.tiered_view())
            .collect()
    }
}
