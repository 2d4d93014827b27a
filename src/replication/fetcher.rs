//! Follower fetching (Kafka's ReplicaFetcherThread): for each leader broker, up to
//! `num.replica.fetchers` tasks pull the partitions this broker follows with the
//! normal Fetch API over the inter-broker listener, as a replica (its node id in the
//! request), and append what comes back as it is.
//!
//! A partition that starts following (a new leader, or this broker back after a crash)
//! first asks the leader with OffsetForLeaderEpoch where its latest epoch ended and
//! truncates there, so a diverged tail never survives (KIP-101).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, OffsetForLeaderEpochRequest, RequestKind, ResponseKind,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::client::KafkaClient;
use super::partition::{Partition, PartitionError};
use crate::error::code;
use crate::log::LogError;

/// The Fetch version followers send (topics by name; `replica_id` in the body).
const FETCH_VERSION: i16 = 12;
const EPOCH_VERSION: i16 = 4;

/// `replica.fetch.*` settings.
#[derive(Clone)]
pub struct FetcherSettings {
    pub node_id: i32,
    pub fetchers_per_broker: usize,
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    pub backoff: Duration,
    pub socket_timeout: Duration,
    /// Logs restarted after the tiered range, with the offset they restarted at: their
    /// producer state comes from the object store (KIP-405's remote log aux state).
    pub tier_restarts: tokio::sync::mpsc::UnboundedSender<(Arc<Partition>, i64)>,
    /// TLS to leaders when the inter-broker listener is SSL.
    pub tls: Option<tokio_rustls::TlsConnector>,
    /// The login to leaders when the inter-broker listener is SASL.
    pub sasl: Option<super::client::SaslLogin>,
}

/// A partition this broker follows, and which leadership it follows.
#[derive(Clone)]
pub struct Followed {
    pub partition: Arc<Partition>,
    pub leader: i32,
    pub leader_epoch: i32,
    /// The leader's inter-broker listener address.
    pub leader_addr: String,
}

struct Target {
    partition: Arc<Partition>,
    leader_epoch: i32,
    /// Must ask OffsetForLeaderEpoch and truncate before fetching.
    truncate_first: bool,
    /// Do not fetch before this (after an error).
    paused_until: tokio::time::Instant,
}

type Key = (String, i32);

struct Fetcher {
    addr: String,
    targets: Arc<Mutex<HashMap<Key, Target>>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
}

/// The fetcher tasks of this broker, keyed by (leader, fetcher index).
pub struct FetcherManager {
    settings: FetcherSettings,
    fetchers: Mutex<HashMap<(i32, usize), Fetcher>>,
    stop: CancellationToken,
}

impl FetcherManager {
    /// TLS to leaders, when the inter-broker listener is SSL.
    pub fn tls(&self) -> Option<&tokio_rustls::TlsConnector> {
        self.settings.tls.as_ref()
    }

    /// The login to leaders, when the inter-broker listener is SASL.
    pub fn sasl(&self) -> Option<&super::client::SaslLogin> {
        self.settings.sasl.as_ref()
    }

    pub fn new(settings: FetcherSettings, stop: CancellationToken) -> Self {
        FetcherManager {
            settings,
            fetchers: Mutex::new(HashMap::new()),
            stop,
        }
    }

    /// Makes the fetchers follow exactly `followed`: partitions that moved to another
    /// leader or epoch start over (with truncation), others keep their place.
    pub fn set_followed(&self, followed: Vec<Followed>) {
        let per_broker = self.settings.fetchers_per_broker.max(1);
        let mut wanted: HashMap<(i32, usize), Vec<Followed>> = HashMap::new();
        for f in followed {
            let slot = (f.partition.topic.len() + f.partition.index as usize) % per_broker;
            wanted.entry((f.leader, slot)).or_default().push(f);
        }
        let mut fetchers = self.fetchers.lock();
        // Stop fetchers with nothing to follow.
        fetchers.retain(|key, fetcher| {
            let keep = wanted.contains_key(key);
            if !keep {
                fetcher.stop.cancel();
            }
            keep
        });
        for (key, list) in wanted {
            let addr = list[0].leader_addr.clone();
            if fetchers.get(&key).is_some_and(|f| f.addr != addr) {
                if let Some(old) = fetchers.remove(&key) {
                    old.stop.cancel();
                }
            }
            let fetcher = fetchers.entry(key).or_insert_with(|| {
                let fetcher = Fetcher {
                    addr: addr.clone(),
                    targets: Arc::new(Mutex::new(HashMap::new())),
                    wake: Arc::new(Notify::new()),
                    stop: self.stop.child_token(),
                };
                tokio::spawn(run(
                    self.settings.clone(),
                    key.0,
                    addr,
                    fetcher.targets.clone(),
                    fetcher.wake.clone(),
                    fetcher.stop.clone(),
                ));
                fetcher
            });
            let mut targets = fetcher.targets.lock();
            let keys: std::collections::HashSet<Key> = list
                .iter()
                .map(|f| (f.partition.topic.clone(), f.partition.index))
                .collect();
            targets.retain(|k, _| keys.contains(k));
            for f in list {
                let k = (f.partition.topic.clone(), f.partition.index);
                let same = targets.get(&k).is_some_and(|t| {
                    t.leader_epoch == f.leader_epoch && Arc::ptr_eq(&t.partition, &f.partition)
                });
                if !same {
                    targets.insert(
                        k,
                        Target {
                            partition: f.partition,
                            leader_epoch: f.leader_epoch,
                            truncate_first: true,
                            paused_until: tokio::time::Instant::now(),
                        },
                    );
                }
            }
            drop(targets);
            fetcher.wake.notify_one();
        }
    }
}

/// One fetcher task: connects to the leader, truncates where needed, fetches.
async fn run(
    settings: FetcherSettings,
    leader: i32,
    addr: String,
    targets: Arc<Mutex<HashMap<Key, Target>>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let client_id = format!("strata-replica-{}", settings.node_id);
    let mut client: Option<KafkaClient> = None;
    debug!(leader, %addr, "replica fetcher started");
    loop {
        if stop.is_cancelled() {
            return;
        }
        if targets.lock().is_empty() {
            tokio::select! {
                _ = wake.notified() => continue,
                _ = stop.cancelled() => return,
            }
        }
        let conn = match client.as_mut() {
            Some(c) => c,
            None => match KafkaClient::connect(
                &addr,
                &client_id,
                settings.socket_timeout,
                settings.tls.as_ref(),
                settings.sasl.as_ref(),
            )
            .await
            {
                Ok(c) => client.insert(c),
                // A refused login is a configuration to fix, not a passing outage.
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    static LAST: std::sync::atomic::AtomicU64 =
                        std::sync::atomic::AtomicU64::new(0);
                    if once_a_minute(&LAST) {
                        warn!(leader, %addr, error = %e, "the leader refused this broker's SASL login; retrying");
                    } else {
                        debug!(leader, %addr, error = %e, "the leader refused this broker's SASL login; retrying");
                    }
                    pause(&settings, &stop).await;
                    continue;
                }
                Err(e) => {
                    debug!(leader, %addr, error = %e, "cannot reach the leader; retrying");
                    pause(&settings, &stop).await;
                    continue;
                }
            },
        };
        let outcome = match truncation_round(&settings, conn, &targets).await {
            Ok(true) => fetch_round(&settings, conn, &targets, &wake).await,
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            debug!(leader, %addr, error = %e, "replica fetch failed; reconnecting");
            client = None;
            pause(&settings, &stop).await;
        }
    }
}

async fn pause(settings: &FetcherSettings, stop: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(settings.backoff) => {}
        _ = stop.cancelled() => {}
    }
}

/// Asks OffsetForLeaderEpoch for every partition that must truncate first and cuts
/// their logs. Returns whether any partition is ready to fetch.
async fn truncation_round(
    settings: &FetcherSettings,
    client: &mut KafkaClient,
    targets: &Mutex<HashMap<Key, Target>>,
) -> std::io::Result<bool> {
    // (key, partition, leader epoch followed, latest epoch in the log, log end)
    type Pending = (Key, Arc<Partition>, i32, Option<i32>, i64);
    let pending: Vec<Pending> = targets
        .lock()
        .iter()
        .filter(|(_, t)| t.truncate_first)
        .filter_map(|(k, t)| {
            let (leo, _, latest) = t.partition.follower_position()?;
            Some((k.clone(), t.partition.clone(), t.leader_epoch, latest, leo))
        })
        .collect();
    let mut asks: HashMap<String, Vec<OffsetForLeaderPartition>> = HashMap::new();
    for (key, partition, epoch, latest, _) in &pending {
        match latest {
            // Nothing written under any epoch: nothing to cut.
            None => {
                if let Some(t) = targets.lock().get_mut(key) {
                    if Arc::ptr_eq(&t.partition, partition) {
                        t.truncate_first = false;
                    }
                }
            }
            Some(latest) => asks.entry(key.0.clone()).or_default().push(
                OffsetForLeaderPartition::default()
                    .with_partition(key.1)
                    .with_current_leader_epoch(*epoch)
                    .with_leader_epoch(*latest),
            ),
        }
    }
    if !asks.is_empty() {
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(settings.node_id))
            .with_topics(
                asks.into_iter()
                    .map(|(topic, partitions)| {
                        OffsetForLeaderTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(topic)))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let response = client
            .call(
                ApiKey::OffsetForLeaderEpoch,
                EPOCH_VERSION,
                &RequestKind::OffsetForLeaderEpoch(request),
                settings.socket_timeout,
            )
            .await?;
        let ResponseKind::OffsetForLeaderEpoch(response) = response else {
            return Err(std::io::Error::other("unexpected response type"));
        };
        for t in response.topics {
            let topic = t.topic.0.as_str().to_string();
            for p in t.partitions {
                let key = (topic.clone(), p.partition);
                let Some((_, partition, _, _, leo)) = pending.iter().find(|x| x.0 == key) else {
                    continue;
                };
                if p.error_code == code::TOPIC_AUTHORIZATION_FAILED {
                    warn_unauthorized(&topic, p.partition);
                }
                if p.error_code != code::NONE {
                    // The leader may not know its leadership yet: try again shortly.
                    debug!(
                        topic,
                        partition = p.partition,
                        error = p.error_code,
                        "OffsetForLeaderEpoch refused"
                    );
                    pause_target(targets, &key, partition, settings.backoff);
                    continue;
                }
                let target = if p.leader_epoch < 0 || p.end_offset < 0 {
                    // The leader has no epoch at or before ours: nothing of ours is
                    // in its log.
                    partition.offsets().log_start_offset
                } else {
                    let (_, ours) = partition.end_offset_for_epoch(p.leader_epoch);
                    p.end_offset.min(ours)
                };
                if target < *leo {
                    info!(
                        topic,
                        partition = p.partition,
                        from = *leo,
                        to = target,
                        leader_epoch = p.leader_epoch,
                        "truncating to where the leader's epoch ended"
                    );
                    if let Err(e) = partition.truncate_to(target) {
                        warn!(topic, partition = p.partition, error = %e, "truncation failed");
                        pause_target(targets, &key, partition, settings.backoff);
                        continue;
                    }
                }
                if let Some(t) = targets.lock().get_mut(&key) {
                    if Arc::ptr_eq(&t.partition, partition) {
                        t.truncate_first = false;
                    }
                }
            }
        }
    }
    let now = tokio::time::Instant::now();
    Ok(targets
        .lock()
        .values()
        .any(|t| !t.truncate_first && t.paused_until <= now))
}

fn pause_target(targets: &Mutex<HashMap<Key, Target>>, key: &Key, p: &Arc<Partition>, d: Duration) {
    if let Some(t) = targets.lock().get_mut(key) {
        if Arc::ptr_eq(&t.partition, p) {
            t.paused_until = tokio::time::Instant::now() + d;
        }
    }
}

/// One Fetch for every ready partition; appends what the leader returned.
async fn fetch_round(
    settings: &FetcherSettings,
    client: &mut KafkaClient,
    targets: &Mutex<HashMap<Key, Target>>,
    wake: &Notify,
) -> std::io::Result<()> {
    let now = tokio::time::Instant::now();
    let ready: Vec<(Key, Arc<Partition>, i32, i64)> = targets
        .lock()
        .iter()
        .filter(|(_, t)| !t.truncate_first && t.paused_until <= now)
        .filter_map(|(k, t)| {
            let (leo, _, _) = t.partition.follower_position()?;
            Some((k.clone(), t.partition.clone(), t.leader_epoch, leo))
        })
        .collect();
    if ready.is_empty() {
        // Everything is paused: wait a moment (or for a change of targets).
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = wake.notified() => {}
        }
        return Ok(());
    }
    let mut by_topic: HashMap<&str, Vec<FetchPartition>> = HashMap::new();
    for ((topic, index), _, epoch, leo) in &ready {
        by_topic.entry(topic.as_str()).or_default().push(
            FetchPartition::default()
                .with_partition(*index)
                .with_current_leader_epoch(*epoch)
                .with_fetch_offset(*leo)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(settings.partition_max_bytes),
        );
    }
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(settings.node_id))
        .with_max_wait_ms(settings.max_wait_ms)
        .with_min_bytes(settings.min_bytes)
        .with_max_bytes(settings.max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let timeout =
        settings.socket_timeout + Duration::from_millis(settings.max_wait_ms.max(0) as u64);
    let response = client
        .call(
            ApiKey::Fetch,
            FETCH_VERSION,
            &RequestKind::Fetch(request),
            timeout,
        )
        .await?;
    let ResponseKind::Fetch(response) = response else {
        return Err(std::io::Error::other("unexpected response type"));
    };
    if response.error_code != code::NONE {
        return Err(std::io::Error::other(format!(
            "fetch error {}",
            response.error_code
        )));
    }
    for t in response.responses {
        let topic = t.topic.0.as_str().to_string();
        for p in t.partitions {
            let key = (topic.clone(), p.partition_index);
            let Some((_, partition, epoch, _)) = ready.iter().find(|x| x.0 == key) else {
                continue;
            };
            match p.error_code {
                code::NONE => {
                    let records = p.records.unwrap_or_else(Bytes::new);
                    match partition.append_from_leader(
                        *epoch,
                        &records,
                        p.high_watermark,
                        p.log_start_offset,
                    ) {
                        Ok(()) => {}
                        // The leadership moved on meanwhile: the next reconcile says where.
                        Err(PartitionError::NotLeader) => {}
                        Err(PartitionError::Log(LogError::OffsetOutOfRange { .. })) => {
                            set_truncate_first(targets, &key, partition);
                        }
                        Err(e) => {
                            warn!(topic, partition = p.partition_index, error = %e, "appending fetched batches failed");
                            pause_target(targets, &key, partition, settings.backoff);
                        }
                    }
                }
                code::OFFSET_OUT_OF_RANGE => {
                    let ours = partition.offsets();
                    if p.log_start_offset > ours.log_end_offset {
                        // Behind the leader's log start: start over where it starts.
                        info!(
                            topic,
                            partition = p.partition_index,
                            from = ours.log_end_offset,
                            to = p.log_start_offset,
                            "follower is behind the leader's log start; starting over there"
                        );
                        if let Err(e) = partition.restart_at(p.log_start_offset) {
                            warn!(topic, error = %e, "could not restart the follower log");
                        }
                    } else {
                        set_truncate_first(targets, &key, partition);
                    }
                    pause_target(targets, &key, partition, Duration::from_millis(10));
                }
                code::OFFSET_MOVED_TO_TIERED_STORAGE => {
                    // Fell behind a tiered leader's local log: skip the tiered range
                    // (never copied to followers) and fetch from where uploads end.
                    let ours = partition.offsets();
                    let tiered_end = partition.remote_bounds().end;
                    if tiered_end > ours.log_end_offset {
                        info!(
                            topic,
                            partition = p.partition_index,
                            from = ours.log_end_offset,
                            to = tiered_end,
                            "follower restarts after the tiered range"
                        );
                        match partition.restart_at(tiered_end) {
                            Ok(()) => {
                                let _ =
                                    settings.tier_restarts.send((partition.clone(), tiered_end));
                            }
                            Err(e) => {
                                warn!(topic, error = %e, "could not restart the follower log")
                            }
                        }
                    }
                    pause_target(targets, &key, partition, Duration::from_millis(100));
                }
                error => {
                    if error == code::TOPIC_AUTHORIZATION_FAILED {
                        warn_unauthorized(&topic, p.partition_index);
                    }
                    debug!(
                        topic,
                        partition = p.partition_index,
                        error,
                        "leader refused the fetch; retrying"
                    );
                    pause_target(targets, &key, partition, settings.backoff);
                }
            }
        }
    }
    Ok(())
}

/// The leader's authorizer refused this broker's replica requests: its principal on
/// the inter-broker listener lacks CLUSTER_ACTION. Said at most once a minute, since it
/// repeats for every partition until the ACLs or `super.users` are fixed.
/// True at most once a minute per `last` (shared by every caller of one warning):
/// a condition that lasts is logged, not repeated at every retry.
fn once_a_minute(last: &std::sync::atomic::AtomicU64) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let before = last.load(Relaxed);
    (before == 0 || now >= before + 60)
        && last.compare_exchange(before, now, Relaxed, Relaxed).is_ok()
}

fn warn_unauthorized(topic: &str, partition: i32) {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if once_a_minute(&LAST) {
        warn!(
            topic,
            partition,
            "the leader refused this broker's replica fetch (TOPIC_AUTHORIZATION_FAILED): give this broker's inter-broker principal CLUSTER_ACTION on the cluster, e.g. in super.users"
        );
    }
}

fn set_truncate_first(targets: &Mutex<HashMap<Key, Target>>, key: &Key, p: &Arc<Partition>) {
    if let Some(t) = targets.lock().get_mut(key) {
        if Arc::ptr_eq(&t.partition, p) {
            t.truncate_first = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lasting_condition_is_logged_once_a_minute() {
        let last = std::sync::atomic::AtomicU64::new(0);
        assert!(once_a_minute(&last));
        assert!(!once_a_minute(&last), "again at once: not logged");
        // A minute later it is logged again.
        last.fetch_sub(61, std::sync::atomic::Ordering::Relaxed);
        assert!(once_a_minute(&last));
    }
}
