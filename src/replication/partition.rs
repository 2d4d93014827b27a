//! A partition replica: the only thing the API layer touches for data. Owns the log
//! behind a per-partition mutex, the high watermark and leader epoch, and the watch
//! that wakes long-polling fetches when the high watermark moves.
//!
//! On a single node the ISR is this broker alone, so an append's high watermark
//! advances as soon as it is written; the log end and high watermark are still kept
//! apart so follower replication can slot in between them.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::{LogConfig, TopicCompression};
use crate::log::batch::{self, BatchError, BatchHeader};
use crate::log::compression::{self, CompressionError};
use crate::log::producer_state::ProducerState;
use crate::log::{AppendInfo, Log, LogError, OffsetPosition, ReadPlan};
use crate::metrics::topic::{TopicCounter, TopicMetrics};

/// Why a partition operation failed; mapped to Kafka codes in `error.rs`.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("{isr} in-sync replicas, fewer than min.insync.replicas={min}")]
    NotEnoughReplicas { isr: usize, min: i32 },
    #[error("written, but the ISR shrank to {isr}, fewer than min.insync.replicas={min}")]
    NotEnoughReplicasAfterAppend { isr: usize, min: i32 },
    #[error("the in-sync replicas did not acknowledge in time")]
    ReplicationTimeout,
    #[error("offset {offset} is only in tiered storage (local log starts at {local_start})")]
    OffsetMovedToTieredStorage { offset: i64, local_start: i64 },
    #[error("this broker is not the leader of the partition")]
    NotLeader,
    #[error("leader epoch {requested} is not the current {current}")]
    FencedLeaderEpoch { requested: i32, current: i32 },
    #[error("leader epoch {requested} is newer than the current {current}")]
    UnknownLeaderEpoch { requested: i32, current: i32 },
    #[error("remote storage: {0}")]
    Remote(String),
    #[error("the object store did not answer in time")]
    RemoteTimeout,
    #[error("recompressing to the topic's compression.type: {0}")]
    Compression(#[from] CompressionError),
    #[error("the recompression task failed: {0}")]
    TaskFailed(String),
}

impl From<BatchError> for PartitionError {
    fn from(e: BatchError) -> Self {
        PartitionError::Log(LogError::InvalidBatch(e))
    }
}

/// How long a leader waits before asking for the same ISR change again.
const ISR_CHANGE_RETRY_MS: i64 = 1_000;

/// Acknowledgement mode of a produce request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    None,
    Leader,
    All,
}

impl Acks {
    pub fn from_kafka(acks: i16) -> Option<Acks> {
        match acks {
            0 => Some(Acks::None),
            1 => Some(Acks::Leader),
            -1 => Some(Acks::All),
            _ => None,
        }
    }
}

struct State {
    log: Log,
    high_watermark: OffsetPosition,
    /// The leader as the metadata says (-1: none); this broker leads when it is
    /// `Partition::node_id`.
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: Vec<i32>,
    replicas: Vec<i32>,
    remote: RemoteBounds,
    /// Leader only: what each follower has (from its fetches).
    followers: HashMap<i32, FollowerProgress>,
    /// Leader only: the log end when this leadership began; a follower joins the ISR
    /// only once it reached it (Kafka's leaderEpochStartOffset).
    leader_epoch_start: i64,
    /// When an ISR change was last asked for, so one is not asked again and again
    /// while the controller commits it.
    isr_change_asked_ms: i64,
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy)]
struct FollowerProgress {
    /// Its log end: the offset it fetched from last.
    leo: i64,
    /// The last time it had everything the leader had.
    last_caught_up_ms: i64,
}

/// An ISR change the leader asks the controller for (Kafka's AlterPartition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// A partition's leadership as the metadata image states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
    pub replicas: Vec<i32>,
}

/// What the object store holds of this partition, as the metadata image says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteBounds {
    /// The offset after the last uploaded (COPY_FINISHED) segment; 0 if none.
    pub end: i64,
    /// The log start offset recorded in the metadata (-1 if never moved).
    pub log_start: i64,
    /// The first offset of the first uploaded segment.
    pub first: Option<i64>,
}

impl RemoteBounds {
    pub const NONE: RemoteBounds = RemoteBounds {
        end: 0,
        log_start: -1,
        first: None,
    };
}

/// Where a read at some offset is served from.
#[derive(Debug)]
pub enum ReadSource {
    /// From local segments: file ranges planned under the lock.
    Local(ReadPlan),
    /// Below the local log start but at or above the log start: from the object
    /// store (the tiered reader).
    Remote,
}

/// A replica's standing, as Kafka's ReplicaManager gauges count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionHealth {
    pub leads: bool,
    /// Led here with an ISR smaller than the replica set.
    pub under_replicated: bool,
    /// Led here with an ISR smaller than `min.insync.replicas`.
    pub under_min_isr: bool,
}

/// Offsets a fetch response reports besides the records.
#[derive(Debug, Clone, Copy)]
pub struct PartitionOffsets {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// The first offset on local disk (ListOffsets -4, KIP-1005).
    pub local_log_start_offset: i64,
    /// The offset after the last tiered segment (0 if nothing is tiered).
    pub remote_end_offset: i64,
}

pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    /// This broker.
    pub node_id: i32,
    state: Mutex<State>,
    hw_tx: watch::Sender<i64>,
    /// Changes with the log end: wakes follower fetches waiting at the leader.
    leo_tx: watch::Sender<i64>,
    /// Set when the local log was behind the object store and restarted at this
    /// offset: its producer state is then fetched with the last tiered segment.
    pub restarted_from_remote_at: Option<i64>,
    /// Its topic's BrokerTopicMetrics counters (shared by the topic's partitions).
    pub stats: TopicMetrics,
}

/// A payload and its validated batches (offset in the payload, header).
type Validated = (Vec<u8>, Vec<(usize, BatchHeader)>);

/// Recompresses a validated payload to `target` and validates the result again:
/// `max.message.bytes` applies to each batch as stored, as in Kafka.
fn recompress(
    records: &[u8],
    batches: &[(usize, BatchHeader)],
    target: TopicCompression,
    limit: usize,
) -> Result<Validated, PartitionError> {
    let max_decompressed = compression::decompressed_limit(target, limit);
    let out = compression::recompress(records, batches, target, max_decompressed)?;
    let batches = batch::split_and_validate(&out, limit)?;
    Ok((out, batches))
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Partition({}-{})", self.topic, self.index)
    }
}

/// Which partition a replica is: its topic's name and id, and its index.
#[derive(Debug, Clone)]
pub struct PartitionName {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
}

impl Partition {
    pub fn new(
        name: PartitionName,
        node_id: i32,
        mut log: Log,
        leadership: Leadership,
        remote: RemoteBounds,
        stats: TopicMetrics,
    ) -> Result<Arc<Partition>, LogError> {
        // The log must never restart below what the object store has seen or what
        // the log start offset moved past (offsets are never reused).
        let restart_at = remote.end.max(remote.log_start);
        let mut restarted_from_remote_at = None;
        if restart_at > log.log_end_offset() {
            // The local copy is behind (a lost or replaced disk): start over after the
            // last tiered offset; everything below is served from remote.
            let start = if remote.log_start >= 0 {
                remote.log_start
            } else {
                remote.first.unwrap_or(restart_at)
            };
            log.reset_to(restart_at, start)?;
            restarted_from_remote_at = Some(restart_at);
        } else if remote.log_start > log.log_start_offset() {
            log.advance_log_start(remote.log_start)?;
        }
        if leadership.leader == node_id {
            log.assign_epoch(leadership.leader_epoch)?;
        }
        let hw = log.log_end();
        let (hw_tx, _) = watch::channel(hw.offset);
        let (leo_tx, _) = watch::channel(hw.offset);
        let leader_epoch_start = hw.offset;
        let PartitionName {
            topic,
            topic_id,
            index,
        } = name;
        Ok(Arc::new(Partition {
            topic,
            topic_id,
            index,
            node_id,
            state: Mutex::new(State {
                log,
                high_watermark: hw,
                leader: leadership.leader,
                leader_epoch: leadership.leader_epoch,
                partition_epoch: leadership.partition_epoch,
                isr: leadership.isr,
                replicas: leadership.replicas,
                remote,
                followers: HashMap::new(),
                leader_epoch_start,
                isr_change_asked_ms: 0,
            }),
            hw_tx,
            leo_tx,
            restarted_from_remote_at,
            stats,
        }))
    }

    /// Installs producer state fetched from the object store for a log restarted at
    /// `offset`; false (nothing changed) if the log has moved on since.
    pub fn restore_producers(&self, state: ProducerState, offset: i64) -> Result<bool, LogError> {
        self.state.lock().log.restore_producers(state, offset)
    }

    pub fn leader_epoch(&self) -> i32 {
        self.state.lock().leader_epoch
    }

    /// The leader the metadata names (-1 when the partition is offline).
    pub fn leader(&self) -> i32 {
        self.state.lock().leader
    }

    pub fn is_leader(&self) -> bool {
        self.state.lock().leader == self.node_id
    }

    /// Fails with `NotLeader` unless this broker leads the partition.
    pub fn require_leader(&self) -> Result<(), PartitionError> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(PartitionError::NotLeader)
        }
    }

    /// Applies the leadership the metadata image now states. Becoming leader (or a
    /// new leader epoch) starts the epoch in the leader-epoch cache at the log end, so
    /// followers can later find where it began. Returns true when this broker's role
    /// or the leader epoch changed.
    pub fn apply_leadership(&self, leadership: &Leadership) -> Result<bool, LogError> {
        let mut state = self.state.lock();
        let changed =
            state.leader != leadership.leader || state.leader_epoch != leadership.leader_epoch;
        if changed && leadership.leader == self.node_id {
            state.log.assign_epoch(leadership.leader_epoch)?;
            // Followers get a full lag period from the start of this leadership.
            let now = crate::log::now_ms();
            state.followers = leadership
                .replicas
                .iter()
                .filter(|r| **r != self.node_id)
                .map(|r| {
                    (
                        *r,
                        FollowerProgress {
                            leo: -1,
                            last_caught_up_ms: now,
                        },
                    )
                })
                .collect();
            state.leader_epoch_start = state.log.log_end_offset();
        }
        if leadership.leader != self.node_id {
            state.followers.clear();
        }
        state.leader = leadership.leader;
        state.leader_epoch = leadership.leader_epoch;
        state.partition_epoch = leadership.partition_epoch;
        state.isr = leadership.isr.clone();
        state.replicas = leadership.replicas.clone();
        state.isr_change_asked_ms = 0;
        if state.leader == self.node_id {
            // A smaller ISR may let the high watermark move.
            self.advance_high_watermark(&mut state)?;
        }
        drop(state);
        // Wake acks=all waiters so they see the new leadership.
        self.hw_tx.send_modify(|_| {});
        Ok(changed)
    }

    /// Leader: moves the high watermark to the smallest log end in the ISR (as
    /// committed in the metadata), never backwards.
    fn advance_high_watermark(&self, state: &mut State) -> Result<(), LogError> {
        let mut hw = state.log.log_end_offset();
        for r in &state.isr {
            if *r == self.node_id {
                continue;
            }
            let leo = state.followers.get(r).map_or(-1, |f| f.leo);
            hw = hw.min(leo);
        }
        if hw > state.high_watermark.offset {
            state.high_watermark = state.log.offset_position(hw)?;
            self.hw_tx.send_replace(hw);
        }
        Ok(())
    }

    /// Leader: a follower fetches from `fetch_offset`, which tells that it has
    /// everything below. Updates its progress and the high watermark, plans the read
    /// up to the log end (a follower is never limited to the high watermark) and says
    /// whether the follower should now join the ISR.
    pub fn read_for_follower(
        &self,
        replica: i32,
        fetch_offset: i64,
    ) -> Result<(ReadPlan, PartitionOffsets, Option<IsrChange>), PartitionError> {
        let mut state = self.state.lock();
        if state.leader != self.node_id || !state.replicas.contains(&replica) {
            return Err(PartitionError::NotLeader);
        }
        let now = crate::log::now_ms();
        let leo = state.log.log_end_offset();
        let local_start = state.log.local_log_start_offset();
        if fetch_offset < local_start && fetch_offset >= state.log.log_start_offset() {
            // A follower never copies tiered history (KIP-405): it restarts at the
            // tiered end and fetches only the local tail.
            return Err(PartitionError::OffsetMovedToTieredStorage {
                offset: fetch_offset,
                local_start,
            });
        }
        if fetch_offset > leo || fetch_offset < state.log.log_start_offset() {
            return Err(PartitionError::Log(LogError::OffsetOutOfRange {
                offset: fetch_offset,
                start: state.log.log_start_offset(),
                end: leo,
            }));
        }
        let progress = state.followers.entry(replica).or_insert(FollowerProgress {
            leo: -1,
            last_caught_up_ms: now,
        });
        progress.leo = fetch_offset;
        if fetch_offset >= leo {
            progress.last_caught_up_ms = now;
        }
        self.advance_high_watermark(&mut state)?;
        let hw = state.high_watermark.offset;
        let mut change = None;
        if !state.isr.contains(&replica)
            && fetch_offset >= hw
            && fetch_offset >= state.leader_epoch_start
            && now - state.isr_change_asked_ms > ISR_CHANGE_RETRY_MS
        {
            let mut isr = state.isr.clone();
            isr.push(replica);
            state.isr_change_asked_ms = now;
            change = Some(self.isr_change(&state, isr));
        }
        let plan = state.log.plan_read(fetch_offset, state.log.log_end())?;
        Ok((plan, Self::offsets_of(&state), change))
    }

    fn isr_change(&self, state: &State, isr: Vec<i32>) -> IsrChange {
        IsrChange {
            topic: self.topic.clone(),
            topic_id: self.topic_id,
            partition: self.index,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            isr,
        }
    }

    /// Leader: followers in the ISR that have not caught up for `lag_ms` leave it.
    pub fn isr_shrink(&self, lag_ms: i64) -> Option<IsrChange> {
        let mut state = self.state.lock();
        if state.leader != self.node_id {
            return None;
        }
        let now = crate::log::now_ms();
        if now - state.isr_change_asked_ms <= ISR_CHANGE_RETRY_MS {
            return None;
        }
        let leo = state.log.log_end_offset();
        let lagging = |r: &i32| {
            *r != self.node_id
                && state
                    .followers
                    .get(r)
                    .is_some_and(|f| f.leo < leo && now - f.last_caught_up_ms > lag_ms)
        };
        if !state.isr.iter().any(lagging) {
            return None;
        }
        let isr: Vec<i32> = state.isr.iter().copied().filter(|r| !lagging(r)).collect();
        state.isr_change_asked_ms = now;
        Some(self.isr_change(&state, isr))
    }

    /// Follower: what to fetch next: (log end, leader epoch it follows, latest epoch in
    /// its log). `None` when this broker leads.
    pub fn follower_position(&self) -> Option<(i64, i32, Option<i32>)> {
        let state = self.state.lock();
        if state.leader == self.node_id {
            return None;
        }
        Some((
            state.log.log_end_offset(),
            state.leader_epoch,
            state.log.latest_epoch(),
        ))
    }

    /// (the largest epoch ≤ `epoch` in this log, where it ended).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.state.lock().log.end_offset_for_epoch(epoch)
    }

    /// Leader: OffsetForLeaderEpoch. Checks the requester's current leader epoch.
    pub fn leader_end_offset_for_epoch(
        &self,
        current_leader_epoch: i32,
        epoch: i32,
    ) -> Result<(i32, i64), PartitionError> {
        self.check_leader_epoch(current_leader_epoch)?;
        let state = self.state.lock();
        if state.leader != self.node_id {
            return Err(PartitionError::NotLeader);
        }
        Ok(state.log.end_offset_for_epoch(epoch))
    }

    /// Follower: cuts the log to end before `offset` (divergence from the leader).
    pub fn truncate_to(&self, offset: i64) -> Result<(), PartitionError> {
        let mut state = self.state.lock();
        if state.leader == self.node_id {
            return Err(PartitionError::NotLeader);
        }
        state.log.truncate_to(offset)?;
        let end = state.log.log_end();
        if state.high_watermark.offset > end.offset {
            state.high_watermark = end;
        }
        drop(state);
        self.leo_tx.send_replace(end.offset);
        Ok(())
    }

    /// Follower: the leader's log starts after this log's end (retention or
    /// DeleteRecords there): start over empty at `offset`.
    pub fn restart_at(&self, offset: i64) -> Result<(), PartitionError> {
        let mut state = self.state.lock();
        if state.leader == self.node_id {
            return Err(PartitionError::NotLeader);
        }
        // Offsets below stay readable from the object store when they were tiered.
        let remote = state.remote;
        let start = if remote.end >= offset && remote.first.is_some() {
            remote
                .log_start
                .max(remote.first.unwrap_or(offset))
                .min(offset)
        } else {
            offset
        };
        state.log.reset_to(offset, start)?;
        state.high_watermark = state.log.log_end();
        drop(state);
        self.leo_tx.send_replace(offset);
        Ok(())
    }

    /// Follower: appends batches fetched from the leader of `leader_epoch` as they
    /// are, then follows the leader's high watermark and log start offset.
    pub fn append_from_leader(
        &self,
        leader_epoch: i32,
        records: &[u8],
        leader_high_watermark: i64,
        leader_log_start: i64,
    ) -> Result<(), PartitionError> {
        let batches = if records.is_empty() {
            Vec::new()
        } else {
            batch::split_and_validate(records, usize::MAX)?
        };
        let mut state = self.state.lock();
        if state.leader == self.node_id || state.leader_epoch != leader_epoch {
            // The leadership moved since this fetch was sent.
            return Err(PartitionError::NotLeader);
        }
        if !batches.is_empty() {
            state.log.append_as_follower(records, &batches)?;
            self.stats
                .add(TopicCounter::ReplicationBytesIn, records.len() as u64);
        }
        let end = state.log.log_end();
        let hw = leader_high_watermark.min(end.offset);
        if hw > state.high_watermark.offset {
            state.high_watermark = state.log.offset_position(hw)?;
        }
        let hw = state.high_watermark.offset;
        if leader_log_start > state.log.log_start_offset() {
            state.log.advance_log_start(leader_log_start.min(hw))?;
        }
        drop(state);
        self.leo_tx.send_replace(end.offset);
        self.hw_tx.send_replace(hw);
        Ok(())
    }

    /// A receiver that changes whenever the log end moves.
    pub fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.leo_tx.subscribe()
    }

    /// acks=all: waits until the high watermark passes `last_offset` while this
    /// broker still leads, then checks the ISR against `min.insync.replicas` (Kafka
    /// answers NOT_ENOUGH_REPLICAS_AFTER_APPEND when it shrank below meanwhile).
    pub async fn wait_for_replication(
        &self,
        last_offset: i64,
        timeout: std::time::Duration,
    ) -> Result<(), PartitionError> {
        let mut rx = self.hw_tx.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let state = self.state.lock();
                if state.leader != self.node_id {
                    return Err(PartitionError::NotLeader);
                }
                if state.high_watermark.offset > last_offset {
                    let min = state.log.config().min_insync_replicas;
                    if (state.isr.len() as i32) < min {
                        return Err(PartitionError::NotEnoughReplicasAfterAppend {
                            isr: state.isr.len(),
                            min,
                        });
                    }
                    return Ok(());
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(PartitionError::NotLeader),
                Err(_) => return Err(PartitionError::ReplicationTimeout),
            }
        }
    }

    /// The leadership this replica acts on.
    pub fn leadership_matches(&self, leadership: &Leadership) -> bool {
        let state = self.state.lock();
        state.leader == leadership.leader
            && state.leader_epoch == leadership.leader_epoch
            && state.partition_epoch == leadership.partition_epoch
            && state.isr == leadership.isr
    }

    /// Checks a client's `current_leader_epoch` (-1 = not given) like Kafka does.
    pub fn check_leader_epoch(&self, requested: i32) -> Result<(), PartitionError> {
        if requested < 0 {
            return Ok(());
        }
        let current = self.leader_epoch();
        if requested < current {
            Err(PartitionError::FencedLeaderEpoch { requested, current })
        } else if requested > current {
            Err(PartitionError::UnknownLeaderEpoch { requested, current })
        } else {
            Ok(())
        }
    }

    pub fn max_message_bytes(&self) -> usize {
        self.state.lock().log.config().max_message_bytes
    }

    /// The per-batch size limit and the codec batches are stored with.
    fn append_settings(&self) -> (usize, TopicCompression) {
        let state = self.state.lock();
        let config = state.log.config();
        (config.max_message_bytes, config.compression)
    }

    /// Validates and appends a payload on the calling thread, recompressing it there
    /// when the topic's `compression.type` asks for it (internal writers).
    pub fn append(&self, records: &[u8], acks: Acks) -> Result<AppendInfo, PartitionError> {
        let (limit, target) = self.append_settings();
        let batches = batch::split_and_validate(records, limit)?;
        if compression::needs_recompression(&batches, target) {
            let (records, batches) = recompress(records, &batches, target, limit)?;
            return self.append_validated(&records, &batches, acks);
        }
        self.append_validated(records, &batches, acks)
    }

    /// Validates and appends a produce payload. Batches already in the topic's codec
    /// (or any codec under `producer`) are written as they are, straight from the
    /// request; otherwise the payload is recompressed on a blocking thread, outside
    /// the partition lock, so other requests keep being served meanwhile.
    pub async fn append_produce(
        &self,
        records: Bytes,
        acks: Acks,
    ) -> Result<AppendInfo, PartitionError> {
        let (limit, target) = self.append_settings();
        let batches = batch::split_and_validate(&records, limit)?;
        if !compression::needs_recompression(&batches, target) {
            return self.append_validated(&records, &batches, acks);
        }
        let (records, batches) =
            tokio::task::spawn_blocking(move || recompress(&records, &batches, target, limit))
                .await
                .map_err(|e| PartitionError::TaskFailed(e.to_string()))??;
        self.append_validated(&records, &batches, acks)
    }

    /// Appends validated batches: the bytes are patched in place and written as they
    /// are; the high watermark advances once the ISR has them.
    fn append_validated(
        &self,
        records: &[u8],
        batches: &[(usize, BatchHeader)],
        acks: Acks,
    ) -> Result<AppendInfo, PartitionError> {
        let mut state = self.state.lock();
        if state.leader != self.node_id {
            return Err(PartitionError::NotLeader);
        }
        let min_isr = state.log.config().min_insync_replicas;
        if acks == Acks::All && (state.isr.len() as i32) < min_isr {
            return Err(PartitionError::NotEnoughReplicas {
                isr: state.isr.len(),
                min: min_isr,
            });
        }
        let epoch = state.leader_epoch;
        let info = state.log.append_as_leader(records, batches, epoch)?;
        if !info.duplicate {
            let leo = state.log.log_end_offset();
            // With this broker alone in the ISR, everything written is replicated.
            self.advance_high_watermark(&mut state)?;
            drop(state);
            self.leo_tx.send_replace(leo);
            self.stats.add(TopicCounter::BytesIn, records.len() as u64);
            self.stats.add(
                TopicCounter::MessagesIn,
                (info.last_offset - info.base_offset + 1).max(0) as u64,
            );
        }
        Ok(info)
    }

    pub fn offsets(&self) -> PartitionOffsets {
        Self::offsets_of(&self.state.lock())
    }

    fn offsets_of(state: &State) -> PartitionOffsets {
        PartitionOffsets {
            high_watermark: state.high_watermark.offset,
            last_stable_offset: state.high_watermark.offset,
            log_start_offset: state.log.log_start_offset(),
            log_end_offset: state.log.log_end_offset(),
            local_log_start_offset: state.log.local_log_start_offset(),
            remote_end_offset: state.remote.end,
        }
    }

    /// Plans a consumer read from `offset` bounded by the high watermark: local file
    /// ranges, or a note that the offset is only in the object store.
    pub fn plan_read(&self, offset: i64) -> Result<(ReadSource, PartitionOffsets), PartitionError> {
        let state = self.state.lock();
        let offsets = Self::offsets_of(&state);
        if offset >= offsets.log_start_offset
            && offset < offsets.local_log_start_offset
            && offset < state.remote.end
        {
            return Ok((ReadSource::Remote, offsets));
        }
        let plan = state.log.plan_read(offset, state.high_watermark)?;
        Ok((ReadSource::Local(plan), offsets))
    }

    /// When the record at `offset` was written, near enough for a time lag: the
    /// timestamp of the local batch holding it (the batch's first timestamp, or its
    /// append time under LogAppendTime). None when it is not in the local log below
    /// the high watermark.
    pub fn timestamp_near(&self, offset: i64) -> Option<i64> {
        let (ReadSource::Local(plan), _) = self.plan_read(offset).ok()? else {
            return None;
        };
        if plan.length < batch::HEADER_SIZE {
            return None;
        }
        let header =
            crate::log::segment::read_at(plan.file.as_ref()?, plan.position, batch::HEADER_SIZE)
                .ok()?;
        let header = BatchHeader::parse(&header).ok()?;
        Some(if header.attributes & 0x08 != 0 {
            header.max_timestamp
        } else {
            header.base_timestamp
        })
    }

    /// Records what the object store now holds (from the metadata image), and moves
    /// the log start offset if remote retention or DeleteRecords moved it.
    pub fn set_remote_bounds(&self, remote: RemoteBounds) -> Result<(), PartitionError> {
        let mut state = self.state.lock();
        state.remote = remote;
        if remote.log_start > state.log.log_start_offset() {
            let hw = state.high_watermark.offset;
            state.log.advance_log_start(remote.log_start.min(hw))?;
        }
        Ok(())
    }

    pub fn remote_bounds(&self) -> RemoteBounds {
        self.state.lock().remote
    }

    /// What the uploader needs: sealed segments at or below the high watermark, the
    /// local segment sizes, the config and log start offset.
    pub fn tiered_view(&self) -> crate::tiered::TieredPartition {
        let state = self.state.lock();
        let hw = state.high_watermark.offset;
        let mut sealed = state.log.sealed_segments();
        sealed.retain(|s| s.next_offset <= hw);
        crate::tiered::TieredPartition {
            topic: self.topic.clone(),
            topic_id: self.topic_id,
            partition: self.index,
            leader_epoch: state.leader_epoch,
            config: state.log.config().clone(),
            log_start_offset: state.log.log_start_offset(),
            sealed,
            local_segments: state.log.segment_sizes(),
            stats: self.stats.clone(),
        }
    }

    /// A receiver that changes whenever the high watermark moves.
    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.hw_tx.subscribe()
    }

    /// The batch holding the first record with timestamp ≥ `timestamp`.
    pub fn batch_for_timestamp(&self, timestamp: i64) -> Result<Option<Bytes>, PartitionError> {
        let state = self.state.lock();
        let hw = state.high_watermark.offset;
        Ok(state.log.find_batch_by_timestamp(timestamp, hw)?)
    }

    /// The batch holding the record with the largest timestamp.
    pub fn batch_with_max_timestamp(&self) -> Result<Option<Bytes>, PartitionError> {
        let state = self.state.lock();
        let hw = state.high_watermark.offset;
        Ok(state.log.max_timestamp_batch(hw)?)
    }

    /// DeleteRecords: `offset` -1 means the high watermark.
    pub fn delete_records(&self, offset: i64) -> Result<i64, PartitionError> {
        let mut state = self.state.lock();
        let hw = state.high_watermark.offset;
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(PartitionError::Log(LogError::OffsetOutOfRange {
                offset: target,
                start: state.log.log_start_offset(),
                end: hw,
            }));
        }
        Ok(state.log.advance_log_start(target)?)
    }

    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, PartitionError> {
        let mut state = self.state.lock();
        let uploaded_end = state.remote.end;
        Ok(state.log.apply_retention(now_ms, uploaded_end)?)
    }

    pub fn set_config(&self, config: LogConfig) {
        self.state.lock().log.set_config(config);
    }

    pub fn config(&self) -> LogConfig {
        self.state.lock().log.config().clone()
    }

    pub fn isr(&self) -> Vec<i32> {
        self.state.lock().isr.clone()
    }

    /// Where this replica stands, for the replica manager's gauges.
    pub fn health(&self) -> PartitionHealth {
        let state = self.state.lock();
        let leads = state.leader == self.node_id;
        let isr = state.isr.len();
        PartitionHealth {
            leads,
            under_replicated: leads && isr < state.replicas.len(),
            under_min_isr: leads
                && (isr as i64) < i64::from(state.log.config().min_insync_replicas),
        }
    }

    /// The partition's directory.
    pub fn log_dir(&self) -> std::path::PathBuf {
        self.state.lock().log.dir().to_path_buf()
    }

    pub fn size_bytes(&self) -> u64 {
        self.state.lock().log.size_bytes()
    }

    /// Flushes the log if its unflushed records waited `flush.ms`.
    pub fn flush_if_due(&self, now_ms: i64) -> Result<bool, PartitionError> {
        Ok(self.state.lock().log.flush_if_due(now_ms)?)
    }

    /// Flushes and snapshots producer state (clean shutdown).
    pub fn close(&self) -> Result<(), PartitionError> {
        Ok(self.state.lock().log.close()?)
    }

    /// Removes the partition's data (topic deletion). The partition must already be
    /// out of the registry.
    pub fn delete_data(&self) -> Result<(), PartitionError> {
        let state = self.state.lock();
        let dir = state.log.dir().to_path_buf();
        std::fs::remove_dir_all(&dir).map_err(|source| LogError::Io { path: dir, source })?;
        Ok(())
    }
}
