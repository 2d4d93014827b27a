//! The cluster image: the state machine's value, and the records that change it.
//!
//! Everything here is plain data (serde) so openraft can log and snapshot it. The
//! image is only ever mutated by [`ClusterImage::apply`], called by the raft state
//! machine in log order; readers get an immutable `Arc<ClusterImage>` snapshot from
//! the view. Validation that must be atomic with the change (a topic name already
//! taken, a partition count that shrinks) happens inside `apply`, so two racing
//! proposals cannot both succeed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::acl::{AclBinding, AclFilter, AclSet};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A broker registered with the quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerImage {
    pub node_id: i32,
    /// The first listener's advertised address (what clients get by default).
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Every listener's advertised address: clients get the one of the listener they
    /// connected to, as in Kafka.
    #[serde(default)]
    pub endpoints: Vec<BrokerEndpoint>,
    /// Names this run of the broker process: a new one at every start, so the
    /// controller tells a restart (whose old leaderships must end) from a retry.
    #[serde(default)]
    pub incarnation: Uuid,
    /// The broker epoch: set by the state machine at each registration, and carried
    /// by every heartbeat so a stale incarnation is recognised.
    #[serde(default)]
    pub epoch: i64,
    /// A fenced broker leads nothing and is left out of Metadata responses.
    #[serde(default)]
    pub fenced: bool,
    /// In controlled shutdown: no longer eligible to lead.
    #[serde(default)]
    pub shutting_down: bool,
}

/// One advertised listener of a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    pub listener: String,
    pub host: String,
    pub port: i32,
}

impl BrokerImage {
    /// May lead and stay in ISRs: registered, heartbeating, not shutting down.
    pub fn is_usable(&self) -> bool {
        !self.fenced && !self.shutting_down
    }

    /// The address to give a client connected through `listener`.
    pub fn address_for(&self, listener: &str) -> (&str, i32) {
        self.endpoints
            .iter()
            .find(|e| e.listener == listener)
            .map(|e| (e.host.as_str(), e.port))
            .unwrap_or((self.host.as_str(), self.port))
    }
}

/// One partition's placement and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    /// Bumped by every change to replicas, ISR or leader (Kafka's partition epoch),
    /// so a change computed from an older state is refused.
    #[serde(default)]
    pub partition_epoch: i32,
    /// A reassignment in progress (KIP-455): replicas being added (catching up) and
    /// being removed once every target replica is in sync. `replicas` holds both.
    #[serde(default)]
    pub adding: Vec<i32>,
    #[serde(default)]
    pub removing: Vec<i32>,
}

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// No leader: the partition is offline (every ISR member is down).
pub const NO_LEADER: i32 = -1;

impl PartitionImage {
    /// The first replica, in assignment order, that is in the ISR and `usable`
    /// (Kafka's leader election); with `unclean`, any usable replica if none is.
    /// Returns the leader and whether it came from outside the ISR.
    pub fn elect(&self, usable: impl Fn(i32) -> bool, unclean: bool) -> Option<(i32, bool)> {
        if let Some(&r) = self
            .replicas
            .iter()
            .find(|r| self.isr.contains(r) && usable(**r))
        {
            return Some((r, false));
        }
        if unclean {
            return self
                .replicas
                .iter()
                .find(|r| usable(**r))
                .map(|&r| (r, true));
        }
        None
    }
}

/// A change to one partition's leader and ISR (and, for reassignment, replicas),
/// computed by the active controller from the partition at `partition_epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChange {
    pub topic_id: Uuid,
    pub partition: i32,
    /// The partition epoch the change was computed from; a mismatch refuses it.
    pub partition_epoch: i32,
    pub leader: i32,
    pub isr: Vec<i32>,
    #[serde(default)]
    pub replicas: Option<Vec<i32>>,
    /// A new reassignment state: (adding, removing); `Some` replaces the current one.
    #[serde(default)]
    pub reassignment: Option<(Vec<i32>, Vec<i32>)>,
}

/// A topic: its id, partitions (index = partition number) and its explicitly set configs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionImage>,
    /// Only configs set on the topic; defaults come from the broker config.
    pub configs: BTreeMap<String, String>,
}

/// Where a remote segment's upload or deletion stands (KIP-405's segment states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteSegmentState {
    /// The leader began uploading; the objects may be partial. Never served.
    CopyStarted,
    /// Every object is in the store: the segment may be served and its local copy
    /// deleted.
    CopyFinished,
    /// Deletion began (retention, DeleteRecords or an orphaned upload); never served.
    DeleteStarted,
}

/// One segment in the object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSegment {
    /// Names the segment's objects, so a re-upload never overwrites a served one.
    pub id: Uuid,
    pub base_offset: i64,
    /// The last offset in the segment (inclusive).
    pub end_offset: i64,
    pub max_timestamp: i64,
    pub size_bytes: u64,
    /// Sizes of the offset and time index objects.
    #[serde(default)]
    pub index_bytes: u64,
    #[serde(default)]
    pub time_index_bytes: u64,
    /// The leader epoch of the broker that uploaded it.
    pub leader_epoch: i32,
    /// (leader epoch, start offset) entries covering the segment.
    pub epochs: Vec<(i32, i64)>,
    /// Size of the producer-state snapshot object; 0 when none was uploaded.
    #[serde(default)]
    pub producer_snapshot_bytes: u64,
    /// The multipart upload of the `.log` object while it is in progress (cleared at
    /// COPY_FINISHED), so cleanup after a crash can abort it and free its parts.
    #[serde(default)]
    pub multipart_upload_id: Option<String>,
    pub broker: i32,
    pub state: RemoteSegmentState,
}

/// A partition's remote log: its segments by base offset, and the log start offset
/// that DeleteRecords or retention moved into the remote range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemotePartitionLog {
    /// -1 until something moves it; otherwise the partition's log start offset.
    pub log_start_offset: i64,
    pub segments: BTreeMap<i64, RemoteSegment>,
    /// The offset after the last segment ever finished. Never moves back, even when
    /// retention deletes every segment, so a broker that lost its disk never reuses
    /// an offset.
    #[serde(default)]
    pub highest_end: i64,
}

impl RemotePartitionLog {
    /// Segments that can be served, in offset order.
    pub fn finished(&self) -> impl Iterator<Item = &RemoteSegment> {
        self.segments
            .values()
            .filter(|s| s.state == RemoteSegmentState::CopyFinished)
    }

    /// The offset after the last segment ever finished (0 if none).
    pub fn end_offset(&self) -> i64 {
        self.highest_end
    }

    /// The first offset readable from the object store, if any segment is finished.
    pub fn start_offset(&self) -> Option<i64> {
        let first = self.finished().next()?.base_offset;
        Some(first.max(self.log_start_offset))
    }

    /// The finished segment holding `offset` (none for an offset below the log start
    /// or in a segment being deleted: the reader answers OFFSET_OUT_OF_RANGE).
    pub fn segment_for(&self, offset: i64) -> Option<&RemoteSegment> {
        if offset < self.log_start_offset {
            return None;
        }
        self.segments
            .range(..=offset)
            .next_back()
            .map(|(_, s)| s)
            .filter(|s| s.state == RemoteSegmentState::CopyFinished && s.end_offset >= offset)
    }
}

/// The whole cluster as the quorum has agreed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterImage {
    pub cluster_id: String,
    pub brokers: BTreeMap<i32, BrokerImage>,
    pub topics: HashMap<Uuid, TopicImage>,
    pub topic_ids_by_name: HashMap<String, Uuid>,
    /// Dynamic broker configs set through AlterConfigs (cluster-wide default resource).
    pub broker_configs: BTreeMap<String, String>,
    /// The next producer id the quorum will hand out.
    pub next_producer_id: i64,
    /// Remote (tiered) logs by topic id and partition. Behind `Arc`s so publishing a
    /// new image does not copy every segment record.
    #[serde(default)]
    pub remote_logs: HashMap<Uuid, BTreeMap<i32, Arc<RemotePartitionLog>>>,
    /// Deleted topics whose objects are still to be removed: topic id → name.
    #[serde(default)]
    pub remote_purges: BTreeMap<Uuid, String>,
    /// The epoch the next broker registration gets.
    #[serde(default)]
    pub next_broker_epoch: i64,
    /// SCRAM credentials: user → mechanism name (`SCRAM-SHA-512`) → credential.
    #[serde(default)]
    pub scram: BTreeMap<String, BTreeMap<String, ScramCredential>>,
    /// Every ACL (behind an `Arc`: publishing an image does not copy them).
    #[serde(default)]
    pub acls: Arc<AclSet>,
}

/// A SCRAM credential as the quorum stores it: the salt, the iteration count and
/// RFC 5802's StoredKey and ServerKey; never the password or the salted password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: i32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are not the password, but nothing secret-derived goes to a log.
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// A change proposed to the quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// Sets the cluster id once; later proposals with another id are ignored.
    InitCluster {
        cluster_id: String,
    },
    RegisterBroker(BrokerImage),
    CreateTopic {
        name: String,
        id: Uuid,
        partitions: Vec<PartitionImage>,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        id: Uuid,
    },
    /// Appends partitions; `partitions` are the new ones only.
    CreatePartitions {
        id: Uuid,
        partitions: Vec<PartitionImage>,
    },
    /// Replaces a topic's whole set of explicit configs.
    SetTopicConfigs {
        id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// Replaces the whole set of dynamic broker configs.
    SetBrokerConfigs {
        configs: BTreeMap<String, String>,
    },
    /// Reserves `count` producer ids; the reply is the first of them.
    AllocateProducerIds {
        count: i64,
    },
    /// The leader starts uploading a segment (state CopyStarted).
    RemoteSegmentCopyStarted {
        topic_id: Uuid,
        partition: i32,
        segment: RemoteSegment,
    },
    /// Every object of the segment is stored.
    RemoteSegmentCopyFinished {
        topic_id: Uuid,
        partition: i32,
        id: Uuid,
    },
    /// Deletion of these segments' objects begins.
    RemoteSegmentsDeleteStarted {
        topic_id: Uuid,
        partition: i32,
        ids: Vec<Uuid>,
    },
    /// These segments' objects are gone; their records go too.
    RemoteSegmentsDeleted {
        topic_id: Uuid,
        partition: i32,
        ids: Vec<Uuid>,
    },
    /// The log start offset moved (DeleteRecords or retention); never moves back.
    RemoteLogStartOffset {
        topic_id: Uuid,
        partition: i32,
        offset: i64,
    },
    /// Every object of a deleted topic is gone.
    RemoteTopicPurged {
        topic_id: Uuid,
    },
    /// A registered broker's state, refused unless `epoch` is its current epoch.
    SetBrokerState {
        node_id: i32,
        epoch: i64,
        fenced: bool,
        shutting_down: bool,
    },
    /// Leader and ISR changes; each applies only at its expected partition epoch.
    PartitionChanges(Vec<PartitionChange>),
    /// Sets (adds or replaces) a user's credential for one SCRAM mechanism.
    SetScramCredential {
        user: String,
        mechanism: String,
        credential: ScramCredential,
    },
    /// Removes a user's credential for one SCRAM mechanism.
    DeleteScramCredential {
        user: String,
        mechanism: String,
    },
    /// Adds ACLs (one already there is left as it is).
    CreateAcls {
        bindings: Vec<AclBinding>,
    },
    /// Removes every ACL each filter selects; the reply lists them per filter.
    DeleteAcls {
        filters: Vec<AclFilter>,
    },
}

/// Why the state machine refused a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApplyError {
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
    #[error("topic id {0} is unknown")]
    UnknownTopicId(Uuid),
    #[error("the producer id space is exhausted")]
    ProducerIdsExhausted,
    #[error("user '{user}' has no {mechanism} credential")]
    NoScramCredential { user: String, mechanism: String },
    #[error("a topic must keep at least its {current} partitions (asked for {requested})")]
    InvalidPartitions { current: usize, requested: usize },
    #[error("a remote segment at base offset {0} is already recorded")]
    RemoteSegmentExists(i64),
    #[error("remote segment {0} is unknown or not in the expected state")]
    UnknownRemoteSegment(Uuid),
    #[error("broker {node_id} is not registered with epoch {epoch}")]
    StaleBrokerEpoch { node_id: i32, epoch: i64 },
}

/// What applying a record returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyReply {
    Done,
    /// The first of the producer ids reserved by `AllocateProducerIds`.
    ProducerIdBlock(i64),
    /// The epoch a registration was given.
    BrokerEpoch(i64),
    /// Per change of `PartitionChanges`: the new partition epoch, or `None` when the
    /// change was computed from a stale partition epoch (or the topic is gone).
    PartitionEpochs(Vec<Option<i32>>),
    /// Per filter of `DeleteAcls`: the bindings it removed.
    DeletedAcls(Vec<Vec<AclBinding>>),
    Refused(ApplyError),
}

impl ClusterImage {
    /// Applies one committed record. Deterministic: every voter reaches the same image.
    pub fn apply(&mut self, record: MetadataRecord) -> ApplyReply {
        match record {
            MetadataRecord::InitCluster { cluster_id } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id;
                }
                ApplyReply::Done
            }
            MetadataRecord::RegisterBroker(mut broker) => {
                broker.epoch = self.next_broker_epoch;
                self.next_broker_epoch += 1;
                let epoch = broker.epoch;
                self.brokers.insert(broker.node_id, broker);
                ApplyReply::BrokerEpoch(epoch)
            }
            MetadataRecord::SetBrokerState {
                node_id,
                epoch,
                fenced,
                shutting_down,
            } => match self.brokers.get_mut(&node_id) {
                Some(b) if b.epoch == epoch => {
                    b.fenced = fenced;
                    b.shutting_down = shutting_down;
                    ApplyReply::Done
                }
                _ => ApplyReply::Refused(ApplyError::StaleBrokerEpoch { node_id, epoch }),
            },
            MetadataRecord::PartitionChanges(changes) => ApplyReply::PartitionEpochs(
                changes
                    .into_iter()
                    .map(|c| self.apply_partition_change(c))
                    .collect(),
            ),
            MetadataRecord::CreateTopic {
                name,
                id,
                partitions,
                configs,
            } => {
                if self.topic_ids_by_name.get(&name) == Some(&id) {
                    // A retried proposal (the first answer was lost on the way).
                    return ApplyReply::Done;
                }
                if self.topic_ids_by_name.contains_key(&name) || self.topics.contains_key(&id) {
                    return ApplyReply::Refused(ApplyError::TopicAlreadyExists(name));
                }
                self.topic_ids_by_name.insert(name.clone(), id);
                self.topics.insert(
                    id,
                    TopicImage {
                        name,
                        id,
                        partitions,
                        configs,
                    },
                );
                ApplyReply::Done
            }
            MetadataRecord::DeleteTopic { id } => match self.topics.remove(&id) {
                Some(topic) => {
                    self.topic_ids_by_name.remove(&topic.name);
                    // Any objects it has are removed later (a LIST of its prefix tells);
                    // the purge entry remembers where they are.
                    self.remote_logs.remove(&id);
                    self.remote_purges.insert(id, topic.name);
                    ApplyReply::Done
                }
                None => ApplyReply::Refused(ApplyError::UnknownTopicId(id)),
            },
            MetadataRecord::CreatePartitions { id, partitions } => match self.topics.get_mut(&id) {
                Some(topic) => {
                    if partitions.is_empty() {
                        let current = topic.partitions.len();
                        return ApplyReply::Refused(ApplyError::InvalidPartitions {
                            current,
                            requested: current,
                        });
                    }
                    topic.partitions.extend(partitions);
                    ApplyReply::Done
                }
                None => ApplyReply::Refused(ApplyError::UnknownTopicId(id)),
            },
            MetadataRecord::SetTopicConfigs { id, configs } => match self.topics.get_mut(&id) {
                Some(topic) => {
                    topic.configs = configs;
                    ApplyReply::Done
                }
                None => ApplyReply::Refused(ApplyError::UnknownTopicId(id)),
            },
            MetadataRecord::SetBrokerConfigs { configs } => {
                self.broker_configs = configs;
                ApplyReply::Done
            }
            MetadataRecord::SetScramCredential {
                user,
                mechanism,
                credential,
            } => {
                self.scram
                    .entry(user)
                    .or_default()
                    .insert(mechanism, credential);
                ApplyReply::Done
            }
            MetadataRecord::DeleteScramCredential { user, mechanism } => {
                let removed = self
                    .scram
                    .get_mut(&user)
                    .and_then(|m| m.remove(&mechanism))
                    .is_some();
                if self.scram.get(&user).is_some_and(|m| m.is_empty()) {
                    self.scram.remove(&user);
                }
                if removed {
                    ApplyReply::Done
                } else {
                    ApplyReply::Refused(ApplyError::NoScramCredential { user, mechanism })
                }
            }
            MetadataRecord::CreateAcls { bindings } => {
                let acls = Arc::make_mut(&mut self.acls);
                for b in bindings {
                    acls.insert(b);
                }
                ApplyReply::Done
            }
            MetadataRecord::DeleteAcls { filters } => {
                // Each filter reports every binding it matches, even one another
                // filter of the same request also matched.
                let matched = filters
                    .iter()
                    .map(|f| self.acls.iter().filter(|b| f.matches(b)).cloned().collect())
                    .collect();
                let acls = Arc::make_mut(&mut self.acls);
                for f in &filters {
                    acls.remove_matching(f);
                }
                ApplyReply::DeletedAcls(matched)
            }
            MetadataRecord::AllocateProducerIds { count } => {
                let first = self.next_producer_id;
                match first.checked_add(count.max(1)) {
                    Some(next) => {
                        self.next_producer_id = next;
                        ApplyReply::ProducerIdBlock(first)
                    }
                    None => ApplyReply::Refused(ApplyError::ProducerIdsExhausted),
                }
            }
            MetadataRecord::RemoteSegmentCopyStarted {
                topic_id,
                partition,
                segment,
            } => {
                let Some(log) = self.remote_log_mut(topic_id, partition) else {
                    return ApplyReply::Refused(ApplyError::UnknownTopicId(topic_id));
                };
                if log.segments.contains_key(&segment.base_offset) {
                    return ApplyReply::Refused(ApplyError::RemoteSegmentExists(
                        segment.base_offset,
                    ));
                }
                let mut segment = segment;
                segment.state = RemoteSegmentState::CopyStarted;
                log.segments.insert(segment.base_offset, segment);
                ApplyReply::Done
            }
            MetadataRecord::RemoteSegmentCopyFinished {
                topic_id,
                partition,
                id,
            } => {
                let Some(log) = self.remote_log_mut(topic_id, partition) else {
                    return ApplyReply::Refused(ApplyError::UnknownTopicId(topic_id));
                };
                match log
                    .segments
                    .values_mut()
                    .find(|s| s.id == id && s.state == RemoteSegmentState::CopyStarted)
                {
                    Some(s) => {
                        s.state = RemoteSegmentState::CopyFinished;
                        // Completed: there is no upload left to abort.
                        s.multipart_upload_id = None;
                        let end = s.end_offset + 1;
                        log.highest_end = log.highest_end.max(end);
                        ApplyReply::Done
                    }
                    None => ApplyReply::Refused(ApplyError::UnknownRemoteSegment(id)),
                }
            }
            MetadataRecord::RemoteSegmentsDeleteStarted {
                topic_id,
                partition,
                ids,
            } => {
                // A deleted topic's objects are purged as a whole; nothing to track.
                let Some(log) = self.remote_log_mut(topic_id, partition) else {
                    return ApplyReply::Done;
                };
                for s in log.segments.values_mut() {
                    if ids.contains(&s.id) {
                        s.state = RemoteSegmentState::DeleteStarted;
                    }
                }
                ApplyReply::Done
            }
            MetadataRecord::RemoteSegmentsDeleted {
                topic_id,
                partition,
                ids,
            } => {
                let Some(log) = self.remote_log_mut(topic_id, partition) else {
                    return ApplyReply::Done;
                };
                log.segments.retain(|_, s| !ids.contains(&s.id));
                ApplyReply::Done
            }
            MetadataRecord::RemoteLogStartOffset {
                topic_id,
                partition,
                offset,
            } => {
                let Some(log) = self.remote_log_mut(topic_id, partition) else {
                    return ApplyReply::Refused(ApplyError::UnknownTopicId(topic_id));
                };
                log.log_start_offset = log.log_start_offset.max(offset);
                ApplyReply::Done
            }
            MetadataRecord::RemoteTopicPurged { topic_id } => {
                self.remote_purges.remove(&topic_id);
                ApplyReply::Done
            }
        }
    }

    fn apply_partition_change(&mut self, change: PartitionChange) -> Option<i32> {
        let p = self
            .topics
            .get_mut(&change.topic_id)?
            .partitions
            .get_mut(usize::try_from(change.partition).ok()?)?;
        if p.partition_epoch != change.partition_epoch {
            return None;
        }
        if p.leader != change.leader {
            p.leader_epoch += 1;
        }
        p.leader = change.leader;
        p.isr = change.isr;
        if let Some(replicas) = change.replicas {
            p.replicas = replicas;
        }
        if let Some((adding, removing)) = change.reassignment {
            p.adding = adding;
            p.removing = removing;
        }
        p.partition_epoch += 1;
        Some(p.partition_epoch)
    }

    /// Brokers that may lead: registered, unfenced, not shutting down.
    pub fn usable_brokers(&self) -> impl Iterator<Item = &BrokerImage> {
        self.brokers.values().filter(|b| b.is_usable())
    }

    pub fn is_usable(&self, node_id: i32) -> bool {
        self.brokers.get(&node_id).is_some_and(|b| b.is_usable())
    }

    /// A partition by topic id and index.
    pub fn partition(&self, topic_id: &Uuid, partition: i32) -> Option<&PartitionImage> {
        self.topics
            .get(topic_id)?
            .partitions
            .get(usize::try_from(partition).ok()?)
    }

    /// A partition's remote log for changing, created on first use; `None` when the
    /// topic is unknown (deleted), so records never bring a deleted topic back.
    fn remote_log_mut(
        &mut self,
        topic_id: Uuid,
        partition: i32,
    ) -> Option<&mut RemotePartitionLog> {
        if !self.topics.contains_key(&topic_id) {
            return None;
        }
        let log = self
            .remote_logs
            .entry(topic_id)
            .or_default()
            .entry(partition)
            .or_insert_with(|| {
                Arc::new(RemotePartitionLog {
                    log_start_offset: -1,
                    segments: BTreeMap::new(),
                    highest_end: 0,
                })
            });
        Some(Arc::make_mut(log))
    }

    /// The remote log of a partition, if anything was ever tiered.
    pub fn remote_log(&self, topic_id: &Uuid, partition: i32) -> Option<&Arc<RemotePartitionLog>> {
        self.remote_logs.get(topic_id)?.get(&partition)
    }

    pub fn topic_by_name(&self, name: &str) -> Option<&TopicImage> {
        self.topic_ids_by_name
            .get(name)
            .and_then(|id| self.topics.get(id))
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topics.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition() -> PartitionImage {
        PartitionImage {
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    #[test]
    fn duplicate_topic_is_refused_atomically() {
        let mut image = ClusterImage::default();
        let create = |id| MetadataRecord::CreateTopic {
            name: "t".into(),
            id,
            partitions: vec![partition()],
            configs: BTreeMap::new(),
        };
        assert_eq!(image.apply(create(Uuid::new_v4())), ApplyReply::Done);
        assert!(matches!(
            image.apply(create(Uuid::new_v4())),
            ApplyReply::Refused(ApplyError::TopicAlreadyExists(_))
        ));
        assert_eq!(image.topics.len(), 1);
    }

    #[test]
    fn remote_segments_follow_their_states_and_the_end_never_moves_back() {
        let mut image = ClusterImage::default();
        let topic = Uuid::new_v4();
        image.apply(MetadataRecord::CreateTopic {
            name: "t".into(),
            id: topic,
            partitions: vec![partition()],
            configs: BTreeMap::new(),
        });
        let segment = |base: i64, end: i64| RemoteSegment {
            id: Uuid::new_v4(),
            base_offset: base,
            end_offset: end,
            max_timestamp: 0,
            size_bytes: 100,
            index_bytes: 0,
            time_index_bytes: 0,
            leader_epoch: 0,
            epochs: vec![(0, base)],
            producer_snapshot_bytes: 0,
            multipart_upload_id: None,
            broker: 1,
            state: RemoteSegmentState::CopyFinished,
        };
        let (a, b) = (segment(0, 9), segment(10, 19));
        for s in [&a, &b] {
            let started = MetadataRecord::RemoteSegmentCopyStarted {
                topic_id: topic,
                partition: 0,
                segment: s.clone(),
            };
            assert_eq!(image.apply(started), ApplyReply::Done);
        }
        let log = image.remote_log(&topic, 0).unwrap().clone();
        assert_eq!(log.end_offset(), 0, "nothing finished, nothing served");
        assert!(log.segment_for(5).is_none());
        for s in [&a, &b] {
            let finished = MetadataRecord::RemoteSegmentCopyFinished {
                topic_id: topic,
                partition: 0,
                id: s.id,
            };
            assert_eq!(image.apply(finished), ApplyReply::Done);
        }
        let log = image.remote_log(&topic, 0).unwrap().clone();
        assert_eq!(log.end_offset(), 20);
        assert_eq!(log.segment_for(15).map(|s| s.id), Some(b.id));
        assert!(log.segment_for(20).is_none());
        // Retention deletes everything: the end stays, so offsets are never reused.
        image.apply(MetadataRecord::RemoteLogStartOffset {
            topic_id: topic,
            partition: 0,
            offset: 20,
        });
        image.apply(MetadataRecord::RemoteSegmentsDeleted {
            topic_id: topic,
            partition: 0,
            ids: vec![a.id, b.id],
        });
        let log = image.remote_log(&topic, 0).unwrap();
        assert_eq!((log.end_offset(), log.log_start_offset), (20, 20));
        assert!(log.segment_for(12).is_none());
    }

    #[test]
    fn producer_id_blocks_do_not_overlap() {
        let mut image = ClusterImage::default();
        assert_eq!(
            image.apply(MetadataRecord::AllocateProducerIds { count: 10 }),
            ApplyReply::ProducerIdBlock(0)
        );
        assert_eq!(
            image.apply(MetadataRecord::AllocateProducerIds { count: 10 }),
            ApplyReply::ProducerIdBlock(10)
        );
    }
}
