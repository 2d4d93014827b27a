//! The classic consumer-group coordinator (Kafka's GroupCoordinator): groups and their
//! rebalances ([`state`]), committed offsets, and their persistence in the internal
//! `__consumer_offsets` topic ([`store`]), reloaded at start so a restart loses no
//! commit.
//!
//! Groups live in a map behind a short-lived mutex; each group has its own mutex, held
//! only for synchronous state changes. Requests that wait for a rebalance hold a
//! oneshot receiver instead. A ticker (run by `server`) expires sessions and ends join
//! phases. Writes to `__consumer_offsets` go through the partition like any append.

pub mod consumer;
pub mod metrics;
pub mod state;
pub mod store;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tracing::{info, warn};

use crate::config::BrokerConfig;
use crate::error::code;
use crate::metadata::MetadataView;
use crate::replication::{Acks, ReplicaManager};
use state::{
    CommittedOffset, Effect, Group, GroupPhase, GroupSettings, JoinOutcome, JoinRequest, JoinStep,
    SyncOutcome,
};
use store::{StoreKey, StoreValue, OFFSETS_TOPIC};

/// A committed offset to store: (topic, partition, offset, leader epoch, metadata).
pub type OffsetCommit = (String, i32, i64, i32, Option<String>);

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol_name: String,
    /// (member id, instance id, client id, client host, subscription metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

pub struct GroupCoordinator {
    settings: GroupSettings,
    offsets_partitions: i32,
    offset_metadata_max_bytes: usize,
    offsets_retention_ms: i64,
    replicas: Arc<ReplicaManager>,
    metadata: MetadataView,
    consumer_session_timeout: Duration,
    consumer_heartbeat_interval: Duration,
    /// KIP-848 heartbeat limits: session timeout, group size, allowed assignors.
    member_limits: consumer::MemberLimits,
    groups: Mutex<HashMap<String, Arc<Mutex<Group>>>>,
    /// Serialises membership snapshots so the last write is always the latest state.
    persist_lock: tokio::sync::Mutex<()>,
    /// The `__consumer_offsets` partitions this broker coordinates (it leads them),
    /// and whether their groups are loaded yet, at the leader epoch they were taken at.
    owned: Mutex<HashMap<i32, Ownership>>,
}

/// How far this broker is in taking over an offsets partition it leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ownership {
    Loading(i32),
    Loaded(i32),
}

impl Ownership {
    fn epoch(self) -> i32 {
        match self {
            Ownership::Loading(e) | Ownership::Loaded(e) => e,
        }
    }
}

/// How long an offset commit waits for the offsets partition's ISR
/// (Kafka's `offsets.commit.timeout.ms` default).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `__consumer_offsets` records that delete `group`'s offsets for `partitions`.
fn offset_tombstones(group: &str, partitions: &[(String, i32)]) -> Vec<(StoreKey, StoreValue)> {
    partitions
        .iter()
        .map(|(topic, partition)| {
            (
                StoreKey::Offset {
                    group: group.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                },
                StoreValue::Tombstone,
            )
        })
        .collect()
}

fn num(config: &BrokerConfig, key: &str) -> i64 {
    config.get(key).parse().unwrap_or(0)
}

impl GroupCoordinator {
    pub fn new(
        config: &BrokerConfig,
        replicas: Arc<ReplicaManager>,
        metadata: MetadataView,
    ) -> GroupCoordinator {
        GroupCoordinator {
            settings: GroupSettings {
                initial_rebalance_delay: Duration::from_millis(
                    num(config, "group.initial.rebalance.delay.ms").max(0) as u64,
                ),
                min_session_timeout: Duration::from_millis(
                    num(config, "group.min.session.timeout.ms").max(0) as u64,
                ),
                max_session_timeout: Duration::from_millis(
                    num(config, "group.max.session.timeout.ms").max(0) as u64,
                ),
                max_size: num(config, "group.max.size").max(1) as usize,
            },
            offsets_partitions: num(config, "offsets.topic.num.partitions").max(1) as i32,
            offset_metadata_max_bytes: num(config, "offset.metadata.max.bytes").max(0) as usize,
            offsets_retention_ms: num(config, "offsets.retention.minutes")
                .max(1)
                .saturating_mul(60_000),
            replicas,
            metadata,
            consumer_session_timeout: Duration::from_millis(
                num(config, "group.consumer.session.timeout.ms").max(1) as u64,
            ),
            consumer_heartbeat_interval: Duration::from_millis(
                num(config, "group.consumer.heartbeat.interval.ms").max(1) as u64,
            ),
            member_limits: consumer::MemberLimits {
                session_timeout: Duration::from_millis(
                    num(config, "group.consumer.session.timeout.ms").max(1) as u64,
                ),
                max_size: num(config, "group.max.size").max(1) as usize,
                assignors: config
                    .get("group.consumer.assignors")
                    .split(',')
                    .filter_map(consumer::assignor_name)
                    .map(String::from)
                    .collect(),
            },
            groups: Mutex::new(HashMap::new()),
            persist_lock: tokio::sync::Mutex::new(()),
            owned: Mutex::new(HashMap::new()),
        }
    }

    /// Whether this broker coordinates `group` now: Ok, or the error to answer with
    /// (NOT_COORDINATOR when another broker leads its offsets partition,
    /// COORDINATOR_LOAD_IN_PROGRESS while its groups are being loaded).
    pub fn status(&self, group: &str) -> Result<(), i16> {
        match self.owned.lock().get(&self.partition_for(group)) {
            Some(Ownership::Loaded(_)) => Ok(()),
            Some(Ownership::Loading(_)) => Err(code::COORDINATOR_LOAD_IN_PROGRESS),
            None => Err(code::NOT_COORDINATOR),
        }
    }

    /// Brings coordination in line with the local replicas: offsets partitions this
    /// broker now leads are loaded (their groups answer COORDINATOR_LOAD_IN_PROGRESS
    /// meanwhile); those it no longer leads are dropped, with their groups. Returns the
    /// loads started, for start-up to wait on.
    pub fn sync_leadership(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut started = Vec::new();
        for p in 0..self.offsets_partitions {
            let leads = self
                .replicas
                .get(OFFSETS_TOPIC, p)
                .filter(|r| r.is_leader())
                .map(|r| r.leader_epoch());
            let current = self.owned.lock().get(&p).copied();
            match (leads, current) {
                (Some(epoch), Some(o)) if o.epoch() == epoch => {}
                (Some(epoch), _) => {
                    self.owned.lock().insert(p, Ownership::Loading(epoch));
                    self.drop_groups_of(p);
                    let me = self.clone();
                    started.push(tokio::spawn(
                        async move { me.load_partition(p, epoch).await },
                    ));
                }
                (None, Some(_)) => {
                    self.owned.lock().remove(&p);
                    self.drop_groups_of(p);
                    info!(
                        partition = p,
                        "no longer the coordinator of this offsets partition"
                    );
                }
                (None, None) => {}
            }
        }
        started
    }

    fn drop_groups_of(&self, p: i32) {
        self.groups
            .lock()
            .retain(|id, _| store::partition_for(id, self.offsets_partitions) != p);
    }

    /// Loads one offsets partition this broker just became leader of (at `epoch`):
    /// waits (bounded) until its high watermark reaches the log end, so everything
    /// the previous leader acknowledged is read, then rebuilds its groups.
    async fn load_partition(self: Arc<Self>, p: i32, epoch: i32) {
        let Some(replica) = self.replicas.get(OFFSETS_TOPIC, p) else {
            return;
        };
        let end = replica.offsets().log_end_offset;
        let _ = replica
            .wait_for_replication(end - 1, Duration::from_secs(10))
            .await;
        let me = self.clone();
        let loaded = tokio::task::spawn_blocking(move || me.load_one(p)).await;
        let mut owned = self.owned.lock();
        if owned.get(&p) != Some(&Ownership::Loading(epoch)) {
            return; // Leadership moved on meanwhile.
        }
        match loaded {
            Ok(Ok(records)) => {
                owned.insert(p, Ownership::Loaded(epoch));
                info!(
                    partition = p,
                    leader_epoch = epoch,
                    records,
                    "coordinating the groups of this offsets partition"
                );
            }
            Ok(Err(e)) => warn!(partition = p, error = %e, "loading an offsets partition failed"),
            Err(e) => warn!(partition = p, error = %e, "loading an offsets partition failed"),
        }
    }

    /// The `__consumer_offsets` partition that holds `group`.
    pub fn partition_for(&self, group: &str) -> i32 {
        store::partition_for(group, self.offsets_partitions)
    }

    pub fn offsets_partitions(&self) -> i32 {
        self.offsets_partitions
    }

    fn group(&self, id: &str) -> Option<Arc<Mutex<Group>>> {
        self.groups.lock().get(id).cloned()
    }

    /// The groups this broker coordinates now, with their member counts and committed
    /// offsets, for `/metrics`.
    pub fn coordinated_groups(&self) -> Vec<metrics::GroupOffsets> {
        let mut out = Vec::new();
        for (id, group) in self.all_groups() {
            if self.status(&id).is_err() {
                continue;
            }
            let g = group.lock();
            if g.phase == GroupPhase::Dead {
                continue;
            }
            let members = match &g.modern {
                Some(modern) => modern.members.len(),
                None => g.members.len(),
            };
            let offsets = g
                .offsets
                .iter()
                .map(|((topic, partition), o)| (topic.clone(), *partition, o.offset))
                .collect();
            out.push(metrics::GroupOffsets {
                group: id,
                members,
                offsets,
            });
        }
        out.sort_by(|a, b| a.group.cmp(&b.group));
        out
    }

    /// A snapshot of the group map, so no group lock is taken under the map lock.
    fn all_groups(&self) -> Vec<(String, Arc<Mutex<Group>>)> {
        self.groups
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn group_or_create(&self, id: &str) -> Arc<Mutex<Group>> {
        self.groups
            .lock()
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(Group::new(id))))
            .clone()
    }

    /// Reads one `__consumer_offsets` partition from its start and rebuilds offsets
    /// and group memberships. Returns the number of records applied.
    fn load_one(&self, p: i32) -> anyhow::Result<usize> {
        let mut applied = 0;
        let now = Instant::now();
        {
            let Some(partition) = self.replicas.get(OFFSETS_TOPIC, p) else {
                return Ok(0);
            };
            // The offsets topic is never tiered (compacted), so it is all local.
            let mut offset = partition.offsets().log_start_offset;
            loop {
                let (crate::replication::ReadSource::Local(plan), offsets) =
                    partition.plan_read(offset)?
                else {
                    break;
                };
                let bytes = plan.execute(4 << 20, true)?;
                if bytes.is_empty() {
                    break;
                }
                let mut last_next = offset;
                let mut walk = &bytes[..];
                while let Ok(h) = crate::log::batch::BatchHeader::parse(walk) {
                    last_next = h.next_offset();
                    walk = &walk[h.total_size().min(walk.len())..];
                }
                for (key, value) in store::decode_batches(bytes) {
                    applied += 1;
                    self.apply_loaded(key, value, now);
                }
                if last_next <= offset || last_next >= offsets.high_watermark {
                    break;
                }
                offset = last_next;
            }
        }
        Ok(applied)
    }

    fn apply_loaded(&self, key: StoreKey, value: StoreValue, now: Instant) {
        if let (StoreKey::Group { group }, StoreValue::Tombstone) = (&key, &value) {
            // DeleteGroups wrote this after tombstoning the offsets: the group is gone.
            self.groups.lock().remove(group);
            return;
        }
        let group = self.group_or_create(key.group());
        let mut g = group.lock();
        match (key, value) {
            (
                StoreKey::Offset {
                    topic, partition, ..
                },
                StoreValue::Offset(o),
            ) => {
                g.offsets.insert((topic, partition), o);
            }
            (
                StoreKey::Offset {
                    topic, partition, ..
                },
                _,
            ) => {
                g.offsets.remove(&(topic, partition));
            }
            (StoreKey::Group { .. }, StoreValue::Group(snap)) => g.restore(snap, now),
            (StoreKey::Group { .. }, _) => {}
            (StoreKey::ConsumerGroup { .. }, StoreValue::ConsumerGroup(snap)) => {
                g.modern = Some(consumer::ConsumerGroupState::restore(
                    snap,
                    self.consumer_session_timeout,
                    now,
                ));
            }
            (StoreKey::ConsumerGroup { .. }, _) => g.modern = None,
        }
    }

    /// Appends records for `group` to its `__consumer_offsets` partition (acks=all).
    async fn append(&self, group: &str, entries: &[(StoreKey, StoreValue)]) -> Result<(), i16> {
        let p = self.partition_for(group);
        let Some(partition) = self.replicas.get(OFFSETS_TOPIC, p) else {
            return Err(code::COORDINATOR_NOT_AVAILABLE);
        };
        let batch = store::encode_batch(entries, crate::log::now_ms())
            .map_err(|_| code::UNKNOWN_SERVER_ERROR)?;
        // Acknowledged once the ISR has it, so a commit survives the coordinator's
        // death; errors map as Kafka's GroupMetadataManager maps them.
        let written = match partition.append(&batch, Acks::All) {
            Ok(info) => {
                crate::metrics::request::remote_wait(
                    partition.wait_for_replication(info.last_offset, COMMIT_TIMEOUT),
                )
                .await
            }
            Err(e) => Err(e),
        };
        written.map_err(|e| {
            warn!(group, error = %e, "writing to {OFFSETS_TOPIC} failed");
            match crate::error::partition_error_code(&e) {
                code::NOT_LEADER_OR_FOLLOWER | code::KAFKA_STORAGE_ERROR => code::NOT_COORDINATOR,
                code::NOT_ENOUGH_REPLICAS
                | code::NOT_ENOUGH_REPLICAS_AFTER_APPEND
                | code::REQUEST_TIMED_OUT
                | code::UNKNOWN_TOPIC_OR_PARTITION => code::COORDINATOR_NOT_AVAILABLE,
                other => other,
            }
        })
    }

    /// Persists the group's current membership (latest state wins).
    async fn persist_group(&self, id: &str) {
        let _serial = self.persist_lock.lock().await;
        let Some(group) = self.group(id) else { return };
        let snapshot = group.lock().snapshot();
        if let Err(e) = self
            .append(
                id,
                &[(
                    StoreKey::Group {
                        group: id.to_string(),
                    },
                    StoreValue::Group(snapshot),
                )],
            )
            .await
        {
            warn!(group = id, code = e, "could not persist group membership");
        }
    }

    async fn apply_effects(&self, id: &str, effects: Vec<Effect>) {
        if effects
            .iter()
            .any(|e| matches!(e, Effect::PersistSnapshot(_)))
        {
            self.persist_group(id).await;
        }
        if effects
            .iter()
            .any(|e| matches!(e, Effect::PersistConsumerGroup))
        {
            self.persist_consumer_group(id).await;
        }
    }

    pub async fn join(&self, group_id: &str, req: JoinRequest) -> JoinOutcome {
        if group_id.is_empty() {
            return JoinOutcome::error(code::INVALID_GROUP_ID, &req.member_id);
        }
        if let Err(e) = self.status(group_id) {
            return JoinOutcome::error(e, &req.member_id);
        }
        let wait_limit = req.rebalance_timeout + Duration::from_secs(5);
        let member_id = req.member_id.clone();
        let group = self.group_or_create(group_id);
        let (step, effects) = group.lock().join(req, &self.settings, Instant::now());
        self.apply_effects(group_id, effects).await;
        match step {
            JoinStep::Now(outcome) => {
                if outcome.error == code::NONE {
                    // A static member's replacement changes the membership record.
                    self.persist_group(group_id).await;
                }
                outcome
            }
            JoinStep::Wait(rx) => {
                match crate::metrics::request::remote_wait(tokio::time::timeout(wait_limit, rx))
                    .await
                {
                    Ok(Ok(outcome)) => outcome,
                    _ => JoinOutcome::error(code::REBALANCE_IN_PROGRESS, &member_id),
                }
            }
        }
    }

    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncOutcome {
        if let Err(e) = self.status(group_id) {
            return SyncOutcome::error(e);
        }
        let Some(group) = self.group(group_id) else {
            return SyncOutcome::error(code::UNKNOWN_MEMBER_ID);
        };
        let (result, effects) = group.lock().sync(
            member_id,
            instance_id,
            generation,
            assignments,
            Instant::now(),
        );
        self.apply_effects(group_id, effects).await;
        match result {
            Err(now) => now,
            Ok(rx) => match crate::metrics::request::remote_wait(tokio::time::timeout(
                Duration::from_secs(300),
                rx,
            ))
            .await
            {
                Ok(Ok(outcome)) => outcome,
                _ => SyncOutcome::error(code::REBALANCE_IN_PROGRESS),
            },
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        if let Err(e) = self.status(group_id) {
            return e;
        }
        match self.group(group_id) {
            None => code::UNKNOWN_MEMBER_ID,
            Some(group) => {
                group
                    .lock()
                    .heartbeat(member_id, instance_id, generation, Instant::now())
            }
        }
    }

    /// LeaveGroup for several members; one error code per member.
    pub async fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Vec<i16> {
        if let Err(e) = self.status(group_id) {
            return vec![e; members.len()];
        }
        let Some(group) = self.group(group_id) else {
            return vec![code::UNKNOWN_MEMBER_ID; members.len()];
        };
        let mut codes = Vec::with_capacity(members.len());
        let mut effects = Vec::new();
        {
            let mut g = group.lock();
            for (member_id, instance_id) in members {
                let (c, e) = g.leave(
                    member_id,
                    instance_id.as_deref(),
                    &self.settings,
                    Instant::now(),
                );
                codes.push(c);
                effects.extend(e);
            }
        }
        self.apply_effects(group_id, effects).await;
        codes
    }

    /// OffsetCommit. Returns the error for the whole request, or per-offset codes.
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: Vec<OffsetCommit>,
    ) -> Result<Vec<i16>, i16> {
        if group_id.is_empty() {
            return Err(code::INVALID_GROUP_ID);
        }
        self.status(group_id)?;
        let group = self.group_or_create(group_id);
        {
            let g = group.lock();
            // Kafka's order of checks (GroupCoordinator.handleCommitOffsets).
            if g.phase == GroupPhase::Dead {
                return Err(code::COORDINATOR_NOT_AVAILABLE);
            }
            if let Some(modern) = &g.modern {
                let simple = generation < 0 && member_id.is_empty() && modern.members.is_empty();
                if !simple {
                    let check = modern.check_commit(member_id, generation);
                    if check != code::NONE {
                        return Err(check);
                    }
                }
            }
            let simple = (generation < 0 && g.phase == GroupPhase::Empty) || g.modern.is_some();
            if !simple {
                if g.phase == GroupPhase::CompletingRebalance
                    && g.members.contains_key(member_id)
                    && generation == g.generation
                {
                    return Err(code::REBALANCE_IN_PROGRESS);
                }
                if g.fenced_instance(member_id, instance_id) {
                    return Err(code::FENCED_INSTANCE_ID);
                }
                match g.members.get(member_id) {
                    None => return Err(code::UNKNOWN_MEMBER_ID),
                    Some(m) if instance_id.is_some() && m.instance_id.as_deref() != instance_id => {
                        return Err(code::FENCED_INSTANCE_ID)
                    }
                    Some(_) if generation != g.generation => return Err(code::ILLEGAL_GENERATION),
                    Some(_) if g.phase == GroupPhase::CompletingRebalance => {
                        return Err(code::REBALANCE_IN_PROGRESS)
                    }
                    Some(_) => {}
                }
            }
        }
        let now = crate::log::now_ms();
        let mut codes = Vec::with_capacity(offsets.len());
        let mut entries = Vec::new();
        let mut accepted = Vec::new();
        for (topic, partition, offset, leader_epoch, metadata) in offsets {
            let metadata = metadata.unwrap_or_default();
            if metadata.len() > self.offset_metadata_max_bytes {
                codes.push(code::OFFSET_METADATA_TOO_LARGE);
                continue;
            }
            if self.replicas.get(&topic, partition).is_none()
                && !self.topic_exists_elsewhere(&topic, partition)
            {
                codes.push(code::UNKNOWN_TOPIC_OR_PARTITION);
                continue;
            }
            let value = CommittedOffset {
                offset,
                leader_epoch,
                metadata,
                commit_timestamp: now,
            };
            entries.push((
                StoreKey::Offset {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition,
                },
                StoreValue::Offset(value.clone()),
            ));
            accepted.push(((topic, partition), value));
            codes.push(code::NONE);
        }
        if !entries.is_empty() {
            if let Err(e) = self.append(group_id, &entries).await {
                return Ok(codes
                    .into_iter()
                    .map(|c| if c == code::NONE { e } else { c })
                    .collect());
            }
            let mut g = group.lock();
            for (k, v) in accepted {
                g.offsets.insert(k, v);
            }
        }
        Ok(codes)
    }

    /// Whether a partition this broker does not host exists in the cluster (hosted by
    /// other brokers): offsets may be committed for it, as Kafka checks its metadata.
    fn topic_exists_elsewhere(&self, topic: &str, partition: i32) -> bool {
        let image = self.metadata.current();
        image
            .topic_ids_by_name
            .get(topic)
            .is_some_and(|id| image.partition(id, partition).is_some())
    }

    /// OffsetFetch for one group. `topics` None means every committed partition.
    /// OffsetFetch v9+ from a member of a KIP-848 group: Kafka checks the member and its
    /// epoch (UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH). Requests without a member (admin
    /// clients, classic members) are always answered.
    pub fn check_offset_fetch(&self, group_id: &str, member_id: Option<&str>, epoch: i32) -> i16 {
        if let Err(e) = self.status(group_id) {
            return e;
        }
        let Some(member_id) = member_id else {
            return code::NONE;
        };
        if epoch < 0 && member_id.is_empty() {
            return code::NONE;
        }
        let Some(group) = self.group(group_id) else {
            return code::NONE;
        };
        let g = group.lock();
        match &g.modern {
            Some(modern) => match modern.members.get(member_id) {
                None => code::UNKNOWN_MEMBER_ID,
                Some(m) if m.member_epoch != epoch => code::STALE_MEMBER_EPOCH,
                Some(_) => code::NONE,
            },
            None => code::NONE,
        }
    }

    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Vec<(String, i32, Option<CommittedOffset>)> {
        let committed = self
            .group(group_id)
            .map(|g| g.lock().offsets.clone())
            .unwrap_or_default();
        match topics {
            None => committed
                .into_iter()
                .map(|((t, p), o)| (t, p, Some(o)))
                .collect(),
            Some(list) => list
                .into_iter()
                .flat_map(|(t, parts)| parts.into_iter().map(move |p| (t.clone(), p)))
                .map(|(t, p)| {
                    let o = committed.get(&(t.clone(), p)).cloned();
                    (t, p, o)
                })
                .collect(),
        }
    }

    /// ListGroups: (group id, protocol type, state), filtered by state names
    /// (case-insensitive) and types ("classic").
    pub fn list_groups(
        &self,
        states: &[String],
        types: &[String],
    ) -> Vec<(String, String, &'static str, &'static str)> {
        let groups: Vec<Arc<Mutex<Group>>> = self.groups.lock().values().cloned().collect();
        let mut out = Vec::new();
        for g in groups {
            let g = g.lock();
            if g.phase == GroupPhase::Dead {
                continue;
            }
            let state = g.state_name();
            if !states.is_empty() && !states.iter().any(|s| s.eq_ignore_ascii_case(state)) {
                continue;
            }
            if !types.is_empty() && !types.iter().any(|t| t.eq_ignore_ascii_case(g.group_type())) {
                continue;
            }
            let protocol_type = if g.modern.is_some() {
                "consumer".to_string()
            } else {
                g.protocol_type.clone().unwrap_or_default()
            };
            out.push((g.id.clone(), protocol_type, state, g.group_type()));
        }
        out.sort();
        out
    }

    pub fn describe_group(&self, group_id: &str) -> Option<GroupDescription> {
        let group = self.group(group_id)?;
        let g = group.lock();
        if g.phase == GroupPhase::Dead || g.modern.is_some() {
            // DescribeGroups describes classic groups only (ConsumerGroupDescribe the rest).
            return None;
        }
        let protocol = g.protocol_name.clone().unwrap_or_default();
        let stable = g.phase == GroupPhase::Stable;
        Some(GroupDescription {
            state: g.phase.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol_name: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: g
                .members
                .values()
                .map(|m| {
                    (
                        m.id.clone(),
                        m.instance_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        if stable {
                            m.metadata_for(&protocol)
                        } else {
                            Bytes::new()
                        },
                        if stable {
                            m.assignment.clone()
                        } else {
                            Bytes::new()
                        },
                    )
                })
                .collect(),
        })
    }

    /// DeleteGroups: only groups without members; their offsets are tombstoned.
    pub async fn delete_group(&self, group_id: &str) -> i16 {
        if let Err(e) = self.status(group_id) {
            return e;
        }
        let Some(group) = self.group(group_id) else {
            return code::GROUP_ID_NOT_FOUND;
        };
        let entries = {
            let g = group.lock();
            if g.phase == GroupPhase::Dead {
                return code::GROUP_ID_NOT_FOUND;
            }
            if !g.is_empty() {
                return code::NON_EMPTY_GROUP;
            }
            let mut e: Vec<(StoreKey, StoreValue)> = g
                .offsets
                .keys()
                .map(|(t, p)| {
                    (
                        StoreKey::Offset {
                            group: group_id.to_string(),
                            topic: t.clone(),
                            partition: *p,
                        },
                        StoreValue::Tombstone,
                    )
                })
                .collect();
            e.push((
                StoreKey::ConsumerGroup {
                    group: group_id.to_string(),
                },
                StoreValue::Tombstone,
            ));
            e.push((
                StoreKey::Group {
                    group: group_id.to_string(),
                },
                StoreValue::Tombstone,
            ));
            e
        };
        if let Err(e) = self.append(group_id, &entries).await {
            return e;
        }
        self.groups.lock().remove(group_id);
        info!(group = group_id, "deleted group");
        code::NONE
    }

    /// OffsetDelete: per-partition codes, or a group-level error.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        topics: Vec<(String, Vec<i32>)>,
    ) -> Result<Vec<(String, i32, i16)>, i16> {
        self.status(group_id)?;
        let Some(group) = self.group(group_id) else {
            return Err(code::GROUP_ID_NOT_FOUND);
        };
        let (subscribed, mut results, mut entries) = {
            let g = group.lock();
            if g.phase == GroupPhase::Dead {
                return Err(code::GROUP_ID_NOT_FOUND);
            }
            (g.subscribed_topics(), Vec::new(), Vec::new())
        };
        for (topic, parts) in topics {
            for p in parts {
                if subscribed.contains(&topic) {
                    results.push((topic.clone(), p, code::GROUP_SUBSCRIBED_TO_TOPIC));
                } else {
                    entries.push((
                        StoreKey::Offset {
                            group: group_id.to_string(),
                            topic: topic.clone(),
                            partition: p,
                        },
                        StoreValue::Tombstone,
                    ));
                    results.push((topic.clone(), p, code::NONE));
                }
            }
        }
        if !entries.is_empty() {
            self.append(group_id, &entries).await?;
            let mut g = group.lock();
            for (k, _) in &entries {
                if let StoreKey::Offset {
                    topic, partition, ..
                } = k
                {
                    g.offsets.remove(&(topic.clone(), *partition));
                }
            }
        }
        Ok(results)
    }

    /// Removes every group's committed offsets for the `gone` topics, durably (a
    /// tombstone per offset), as Kafka does when a topic is deleted: OffsetFetch and
    /// lag tools stop reporting them, and a topic re-created under the same name starts
    /// with none. Returns how many offsets were removed.
    pub async fn forget_topics(&self, gone: &BTreeSet<String>) -> usize {
        if gone.is_empty() {
            return 0;
        }
        let mut removed = 0;
        for (id, group) in self.all_groups() {
            let doomed: Vec<(String, i32)> = group
                .lock()
                .offsets
                .keys()
                .filter(|(topic, _)| gone.contains(topic))
                .cloned()
                .collect();
            if doomed.is_empty() {
                continue;
            }
            let entries = offset_tombstones(&id, &doomed);
            match self.append(&id, &entries).await {
                Ok(()) => {
                    let mut g = group.lock();
                    for k in &doomed {
                        g.offsets.remove(k);
                    }
                    removed += doomed.len();
                    info!(group = %id, partitions = doomed.len(), "removed committed offsets of deleted topics");
                }
                // Left in memory so the next metadata change or start-up retries.
                Err(code) => warn!(group = %id, code, "could not remove offsets of deleted topics"),
            }
        }
        removed
    }

    /// `forget_topics` for every committed topic the metadata no longer has: run after
    /// loading, so a crash between a topic's deletion and its tombstones leaves nothing.
    pub async fn forget_missing_topics(&self) -> usize {
        let image = self.metadata.current();
        let gone: BTreeSet<String> = self
            .all_groups()
            .iter()
            .flat_map(|(_, g)| {
                g.lock()
                    .offsets
                    .keys()
                    .map(|(t, _)| t.clone())
                    .collect::<Vec<_>>()
            })
            .filter(|t| image.topic_by_name(t).is_none())
            .collect();
        self.forget_topics(&gone).await
    }

    /// Timer work for every group: session expiry, join deadlines.
    pub async fn tick(&self) {
        let groups = self.all_groups();
        let now = Instant::now();
        let topics = self.topic_partition_counts();
        for (id, group) in groups {
            let effects = {
                let mut g = group.lock();
                if let Some(modern) = g.modern.as_mut() {
                    let expired = modern.expire(&topics, now);
                    for member in &expired {
                        info!(group = %id, member, "consumer group member expired");
                    }
                    if expired.is_empty() {
                        Vec::new()
                    } else {
                        vec![Effect::PersistConsumerGroup]
                    }
                } else {
                    g.tick(&self.settings, now)
                }
            };
            self.apply_effects(&id, effects).await;
        }
    }

    /// Every topic's partition count, from the metadata image.
    fn topic_partition_counts(&self) -> std::collections::BTreeMap<String, usize> {
        self.metadata
            .current()
            .topics
            .values()
            .map(|t| (t.name.clone(), t.partitions.len()))
            .collect()
    }

    /// KIP-848 ConsumerGroupHeartbeat; the outcome's assignment is by topic name.
    pub async fn consumer_heartbeat(
        &self,
        group_id: &str,
        req: consumer::HeartbeatRequest,
    ) -> consumer::HeartbeatOutcome {
        let (outcome, changed) = self.consumer_heartbeat_locked(group_id, req);
        if changed {
            self.persist_consumer_group(group_id).await;
        }
        outcome
    }

    /// Writes a KIP-848 group's current state (latest state wins, as for classic groups).
    async fn persist_consumer_group(&self, id: &str) {
        let _serial = self.persist_lock.lock().await;
        let Some(group) = self.group(id) else { return };
        let snapshot = match &group.lock().modern {
            Some(m) => StoreValue::ConsumerGroup(m.snapshot()),
            None => return,
        };
        if let Err(e) = self
            .append(
                id,
                &[(
                    StoreKey::ConsumerGroup {
                        group: id.to_string(),
                    },
                    snapshot,
                )],
            )
            .await
        {
            warn!(
                group = id,
                code = e,
                "could not persist consumer group state"
            );
        }
    }

    fn consumer_heartbeat_locked(
        &self,
        group_id: &str,
        req: consumer::HeartbeatRequest,
    ) -> (consumer::HeartbeatOutcome, bool) {
        let refuse = |error: i16, message: String, member_id: String| consumer::HeartbeatOutcome {
            error,
            message: Some(message),
            member_id,
            member_epoch: -1,
            assignment: None,
        };
        if let Err(e) = self.status(group_id) {
            return (
                refuse(
                    e,
                    "this broker does not coordinate the group".into(),
                    req.member_id,
                ),
                false,
            );
        }
        if group_id.is_empty() {
            return (
                refuse(
                    code::INVALID_GROUP_ID,
                    "the group id is empty".into(),
                    req.member_id,
                ),
                false,
            );
        }
        let topics = self.topic_partition_counts();
        let group = self.group_or_create(group_id);
        let mut g = group.lock();
        if g.modern.is_none() {
            if !g.members.is_empty() {
                let message = format!("group '{group_id}' is a classic group with members");
                return (
                    refuse(code::GROUP_ID_NOT_FOUND, message, req.member_id),
                    false,
                );
            }
            g.modern = Some(consumer::ConsumerGroupState::default());
        }
        match g.modern.as_mut() {
            Some(m) => {
                let before = m.persisted_shape();
                let outcome = m.heartbeat(req, &topics, &self.member_limits, Instant::now());
                let changed = m.persisted_shape() != before;
                (outcome, changed)
            }
            None => (
                refuse(
                    code::UNKNOWN_SERVER_ERROR,
                    "group vanished".into(),
                    req.member_id,
                ),
                false,
            ),
        }
    }

    pub fn consumer_heartbeat_interval(&self) -> Duration {
        self.consumer_heartbeat_interval
    }

    /// ConsumerGroupDescribe: a copy of a KIP-848 group's state and its state name.
    pub fn consumer_describe(
        &self,
        group_id: &str,
    ) -> Result<(consumer::ConsumerGroupState, &'static str), i16> {
        self.status(group_id)?;
        let Some(group) = self.group(group_id) else {
            return Err(code::GROUP_ID_NOT_FOUND);
        };
        let g = group.lock();
        match &g.modern {
            None => Err(code::GROUP_ID_NOT_FOUND),
            Some(m) => Ok((
                consumer::ConsumerGroupState {
                    group_epoch: m.group_epoch,
                    assignment_epoch: m.assignment_epoch,
                    members: m.members.clone(),
                    target: m.target.clone(),
                    assignor: m.assignor.clone(),
                    topic_fingerprint: m.topic_fingerprint.clone(),
                },
                m.state_name(),
            )),
        }
    }

    /// Expires committed offsets of empty groups older than `offsets.retention.minutes`.
    pub async fn expire_offsets(&self) {
        self.expire_offsets_at(crate::log::now_ms()).await
    }

    /// `expire_offsets` as of `now` (milliseconds since the epoch).
    pub async fn expire_offsets_at(&self, now: i64) {
        let groups = self.all_groups();
        for (id, group) in groups {
            let expired: Vec<(String, i32)> = {
                let g = group.lock();
                if !g.is_empty() {
                    continue;
                }
                g.offsets
                    .iter()
                    .filter(|(_, o)| {
                        now - o.commit_timestamp.max(g.empty_since_ms) > self.offsets_retention_ms
                    })
                    .map(|(k, _)| k.clone())
                    .collect()
            };
            if expired.is_empty() {
                continue;
            }
            let entries = offset_tombstones(&id, &expired);
            if self.append(&id, &entries).await.is_ok() {
                let mut g = group.lock();
                for k in &expired {
                    g.offsets.remove(k);
                }
                info!(group = %id, partitions = expired.len(), "expired committed offsets");
            }
        }
    }
}
