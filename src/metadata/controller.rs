//! The active controller: the decisions Kafka's QuorumController makes, taken on the
//! metadata raft leader and recorded in the log before anyone acts on them.
//!
//! It owns broker liveness (registration, heartbeats, fencing after
//! `broker.session.timeout.ms`, controlled shutdown) and the leader and ISR of every
//! partition (elections from the ISR, never outside it unless
//! `unclean.leader.election.enable`; ISR changes the leaders ask for). Every decision
//! is computed from the current image under one lock and proposed as a record; a
//! change computed from a stale partition epoch is refused by the state machine.
//!
//! Brokers reach it through [`ControllerRequest`]s, over the controller listener or,
//! on the leader itself, by a direct call.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use uuid::Uuid;

use super::image::{
    ApplyReply, BrokerImage, ClusterImage, MetadataRecord, PartitionChange, PartitionImage,
    NO_LEADER,
};

/// A call to the active controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// Commit a record (admin changes, tiering records, producer id blocks).
    Propose(MetadataRecord),
    /// A broker process starts: `incarnation` is new for every start.
    RegisterBroker(BrokerImage),
    Heartbeat(BrokerHeartbeat),
    /// A partition leader asks to change its ISR (Kafka's AlterPartition).
    AlterPartition(AlterPartition),
    /// The quorum's state, for DescribeQuorum.
    DescribeQuorum,
    /// ElectLeaders: the preferred replica (`preferred`) or, for offline partitions,
    /// any live replica (unclean); `None` means every partition.
    ElectLeaders {
        preferred: bool,
        partitions: Option<Vec<(Uuid, i32)>>,
    },
    /// AlterPartitionReassignments: target replicas per partition (`None` cancels).
    Reassign(Vec<(Uuid, i32, Option<Vec<i32>>)>),
}

/// How one partition's reassignment request ended (mapped to Kafka codes in
/// `error.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReassignOutcome {
    Started,
    UnknownPartition,
    /// A broker that is not registered, a duplicate, or no replica at all.
    InvalidAssignment(String),
    /// Cancelling where nothing is in progress.
    NoReassignmentInProgress,
}

/// One partition's ElectLeaders outcome.
pub type ElectionResult = (Uuid, i32, ElectionOutcome);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerHeartbeat {
    pub node_id: i32,
    pub epoch: i64,
    /// SIGTERM: move my leaderships away, then let me stop.
    pub want_shutdown: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlterPartition {
    pub node_id: i32,
    pub broker_epoch: i64,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// Why AlterPartition was refused (Kafka's codes for the same cases).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AlterPartitionError {
    #[error("the partition is unknown")]
    UnknownTopicOrPartition,
    #[error("the broker epoch is stale")]
    StaleBrokerEpoch,
    #[error("the sender is not the partition's leader at that leader epoch")]
    FencedLeaderEpoch,
    #[error("the partition changed since (partition epoch)")]
    InvalidUpdateVersion,
    #[error("the new ISR names a replica that is not eligible (fenced or shutting down)")]
    IneligibleReplica,
    #[error("the new ISR must contain the leader and only assigned replicas")]
    InvalidRequest,
}

/// The partition state after an accepted AlterPartition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlteredPartition {
    pub isr: Vec<i32>,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerReply {
    Applied(ApplyReply),
    Registered {
        epoch: i64,
    },
    Heartbeat {
        /// The broker must register again (its epoch is not the current one).
        stale: bool,
        fenced: bool,
        /// Controlled shutdown: nothing more to move; the broker may stop.
        shutdown_ready: bool,
    },
    AlterPartition(Result<AlteredPartition, AlterPartitionError>),
    Quorum(QuorumStatus),
    Elected(Vec<ElectionResult>),
    Reassigned(Vec<(Uuid, i32, ReassignOutcome)>),
    /// This node is not the active controller; ask `leader`.
    NotController {
        leader: Option<u64>,
    },
    Failed(String),
}

/// DescribeQuorum's view: the leader, its term (the controller epoch) and each
/// voter's replicated log end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    pub leader: u64,
    pub term: u64,
    pub high_watermark: u64,
    pub voters: Vec<VoterStatus>,
    /// Broker-only nodes that fetch the metadata (KRaft's observers).
    #[serde(default)]
    pub observers: Vec<VoterStatus>,
}

/// A voter's or an observer's position in the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterStatus {
    pub id: u64,
    /// Log end offset (-1 unknown).
    pub log_end_offset: i64,
    /// For an observer: how long ago it last fetched.
    #[serde(default)]
    pub last_fetch_ms_ago: Option<u64>,
}

/// The controller's settings, from the broker config of the node it runs on.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    pub session_timeout: Duration,
    /// `auto.leader.rebalance.enable`: (check interval, imbalance percentage).
    pub rebalance: Option<(Duration, i64)>,
    /// The static broker default of `unclean.leader.election.enable`.
    pub unclean_default: bool,
}

/// Liveness the active controller keeps in memory: the last heartbeat of each broker.
/// A new controller starts every clock at its election, so no broker is fenced for
/// the time the quorum had no leader.
pub(crate) struct Controller {
    settings: ControllerSettings,
    pub(crate) rebalance: Option<(Duration, i64)>,
    heartbeats: Mutex<HashMap<i32, Instant>>,
    /// The term the heartbeat clocks were started in.
    term: Mutex<u64>,
    /// Serializes decisions: each reads the image its predecessor produced.
    pub(crate) decide: tokio::sync::Mutex<()>,
}

impl Controller {
    pub(crate) fn new(settings: ControllerSettings) -> Self {
        Controller {
            rebalance: settings.rebalance,
            settings,
            heartbeats: Mutex::new(HashMap::new()),
            term: Mutex::new(0),
            decide: tokio::sync::Mutex::new(()),
        }
    }

    /// How long one call to the active controller may take before it is retried
    /// (towards a newly elected one): well inside a broker session, so a frozen or
    /// dead controller never gets live brokers fenced for missed heartbeats.
    pub(crate) fn call_timeout(&self) -> Duration {
        (self.settings.session_timeout / 4)
            .clamp(Duration::from_millis(200), Duration::from_secs(3))
    }

    pub(crate) fn term(&self) -> u64 {
        *self.term.lock()
    }

    /// Called with the current term before each decision: a new term restarts every
    /// broker's heartbeat clock.
    pub(crate) fn enter_term(&self, term: u64, image: &ClusterImage) {
        let mut current = self.term.lock();
        if *current == term {
            return;
        }
        *current = term;
        let now = Instant::now();
        let mut beats = self.heartbeats.lock();
        beats.clear();
        for id in image.brokers.keys() {
            beats.insert(*id, now);
        }
        info!(term, "became the active controller");
    }

    pub(crate) fn record_heartbeat(&self, node_id: i32) {
        self.heartbeats.lock().insert(node_id, Instant::now());
    }

    /// Unfenced brokers whose session expired.
    pub(crate) fn expired(&self, image: &ClusterImage) -> Vec<(i32, i64)> {
        let now = Instant::now();
        let mut beats = self.heartbeats.lock();
        image
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .filter(|b| {
                let last = *beats.entry(b.node_id).or_insert(now);
                now.duration_since(last) > self.settings.session_timeout
            })
            .map(|b| (b.node_id, b.epoch))
            .collect()
    }

    /// Is unclean election allowed for this topic (topic config, then dynamic broker
    /// default, then this controller's static default)?
    fn unclean_allowed(&self, image: &ClusterImage, configs: &BTreeMap<String, String>) -> bool {
        let key = "unclean.leader.election.enable";
        configs
            .get(key)
            .or_else(|| image.broker_configs.get(key))
            .map(|v| v.trim().eq_ignore_ascii_case("true"))
            .unwrap_or(self.settings.unclean_default)
    }

    /// Changes that take `node_id` out of every ISR it is in (unless it is the last
    /// member) and elect new leaders where it led: fencing and controlled shutdown.
    /// `image` must already show the broker as unusable.
    pub(crate) fn remove_broker(&self, image: &ClusterImage, node_id: i32) -> Vec<PartitionChange> {
        let mut changes = Vec::new();
        for topic in image.topics.values() {
            let unclean = self.unclean_allowed(image, &topic.configs);
            for (index, p) in topic.partitions.iter().enumerate() {
                if !p.replicas.contains(&node_id) {
                    continue;
                }
                let mut next = p.clone();
                if next.isr.len() > 1 {
                    next.isr.retain(|&r| r != node_id);
                }
                if p.leader == node_id {
                    elect_into(&mut next, |r| r != node_id && image.is_usable(r), unclean);
                }
                if next.leader != p.leader || next.isr != p.isr {
                    changes.push(change(topic.id, index, p, &next));
                }
            }
        }
        changes
    }

    /// Leaders for offline partitions that `node_id` (now usable) can lead, or whose
    /// ISR has a usable member again.
    pub(crate) fn elect_offline(&self, image: &ClusterImage) -> Vec<PartitionChange> {
        let mut changes = Vec::new();
        for topic in image.topics.values() {
            let mut unclean = None;
            for (index, p) in topic.partitions.iter().enumerate() {
                if p.leader != NO_LEADER {
                    continue;
                }
                let unclean =
                    *unclean.get_or_insert_with(|| self.unclean_allowed(image, &topic.configs));
                let mut next = p.clone();
                elect_into(&mut next, |r| image.is_usable(r), unclean);
                if next.leader != NO_LEADER {
                    changes.push(change(topic.id, index, p, &next));
                }
            }
        }
        changes
    }

    /// Validates an AlterPartition against the image; the change to propose.
    pub(crate) fn alter_partition(
        &self,
        image: &ClusterImage,
        req: &AlterPartition,
    ) -> Result<Option<PartitionChange>, AlterPartitionError> {
        let p = image
            .partition(&req.topic_id, req.partition)
            .ok_or(AlterPartitionError::UnknownTopicOrPartition)?;
        if image.brokers.get(&req.node_id).map(|b| b.epoch) != Some(req.broker_epoch) {
            return Err(AlterPartitionError::StaleBrokerEpoch);
        }
        if p.leader != req.node_id || p.leader_epoch != req.leader_epoch {
            return Err(AlterPartitionError::FencedLeaderEpoch);
        }
        if p.partition_epoch != req.partition_epoch {
            return Err(AlterPartitionError::InvalidUpdateVersion);
        }
        if !req.isr.contains(&req.node_id) || req.isr.iter().any(|r| !p.replicas.contains(r)) {
            return Err(AlterPartitionError::InvalidRequest);
        }
        // Only an eligible broker may join the ISR (KIP-841): a fenced or stopping
        // one would make acks=all wait on a replica that is not there.
        if req
            .isr
            .iter()
            .any(|r| !p.isr.contains(r) && !image.is_usable(*r))
        {
            return Err(AlterPartitionError::IneligibleReplica);
        }
        let mut isr = req.isr.clone();
        isr.sort_by_key(|r| p.replicas.iter().position(|x| x == r));
        isr.dedup();
        if isr == p.isr {
            return Ok(None);
        }
        let next = PartitionImage { isr, ..p.clone() };
        Ok(Some(change(req.topic_id, req.partition as usize, p, &next)))
    }
}

/// How one partition's leader election ended (mapped to Kafka codes in `error.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionOutcome {
    Elected,
    NotNeeded,
    PreferredNotAvailable,
    NoEligibleLeader,
    UnknownPartition,
}

impl Controller {
    /// ElectLeaders: the changes to make and every partition's outcome.
    pub(crate) fn elect_leaders(
        &self,
        image: &ClusterImage,
        preferred: bool,
        targets: &[(Uuid, i32)],
    ) -> (Vec<PartitionChange>, Vec<ElectionResult>) {
        let mut changes = Vec::new();
        let mut results = Vec::new();
        for &(topic_id, index) in targets {
            let Some(p) = image.partition(&topic_id, index) else {
                results.push((topic_id, index, ElectionOutcome::UnknownPartition));
                continue;
            };
            let mut next = p.clone();
            let outcome = if preferred {
                let want = p.replicas.first().copied().unwrap_or(NO_LEADER);
                if p.leader == want {
                    ElectionOutcome::NotNeeded
                } else if !p.isr.contains(&want) || !image.is_usable(want) {
                    ElectionOutcome::PreferredNotAvailable
                } else {
                    next.leader = want;
                    ElectionOutcome::Elected
                }
            } else if p.leader != NO_LEADER {
                ElectionOutcome::NotNeeded
            } else {
                elect_into(&mut next, |r| image.is_usable(r), true);
                if next.leader == NO_LEADER {
                    ElectionOutcome::NoEligibleLeader
                } else {
                    ElectionOutcome::Elected
                }
            };
            if outcome == ElectionOutcome::Elected {
                changes.push(change(topic_id, index as usize, p, &next));
            }
            results.push((topic_id, index, outcome));
        }
        (changes, results)
    }

    /// AlterPartitionReassignments: the changes that start (or cancel) each
    /// reassignment. Replicas become target + the current ones not in it; the new
    /// ones catch up as followers and join the ISR; [`Self::finish_reassignments`]
    /// then drops the old ones.
    pub(crate) fn reassign(
        &self,
        image: &ClusterImage,
        targets: &[(Uuid, i32, Option<Vec<i32>>)],
    ) -> (Vec<PartitionChange>, Vec<(Uuid, i32, ReassignOutcome)>) {
        let mut changes = Vec::new();
        let mut results = Vec::new();
        for (topic_id, index, target) in targets {
            let Some(p) = image.partition(topic_id, *index) else {
                results.push((*topic_id, *index, ReassignOutcome::UnknownPartition));
                continue;
            };
            // The replica set before any reassignment in progress.
            let original: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|r| !p.adding.contains(r))
                .collect();
            let mut next = p.clone();
            match target {
                None => {
                    if p.adding.is_empty() && p.removing.is_empty() {
                        results.push((
                            *topic_id,
                            *index,
                            ReassignOutcome::NoReassignmentInProgress,
                        ));
                        continue;
                    }
                    next.replicas = original;
                    next.adding.clear();
                    next.removing.clear();
                }
                Some(target) => {
                    let mut seen = std::collections::BTreeSet::new();
                    if target.is_empty()
                        || !target.iter().all(|r| seen.insert(*r))
                        || target.iter().any(|r| !image.brokers.contains_key(r))
                    {
                        results.push((
                            *topic_id,
                            *index,
                            ReassignOutcome::InvalidAssignment(format!(
                                "{target:?}: replicas must be distinct registered brokers"
                            )),
                        ));
                        continue;
                    }
                    next.adding = target
                        .iter()
                        .copied()
                        .filter(|r| !original.contains(r))
                        .collect();
                    next.removing = original
                        .iter()
                        .copied()
                        .filter(|r| !target.contains(r))
                        .collect();
                    next.replicas = target.clone();
                    next.replicas.extend(next.removing.iter().copied());
                }
            }
            next.isr.retain(|r| next.replicas.contains(r));
            if !next.isr.contains(&next.leader) {
                elect_into(&mut next, |r| image.is_usable(r), false);
            }
            changes.push(change(*topic_id, *index as usize, p, &next));
            results.push((*topic_id, *index, ReassignOutcome::Started));
        }
        (changes, results)
    }

    /// Reassignments whose target replicas are all in the ISR: the removed replicas
    /// leave the replica set and ISR (a new leader from the target if the leader
    /// was one of them).
    pub(crate) fn finish_reassignments(&self, image: &ClusterImage) -> Vec<PartitionChange> {
        let mut changes = Vec::new();
        for topic in image.topics.values() {
            for (index, p) in topic.partitions.iter().enumerate() {
                if p.adding.is_empty() && p.removing.is_empty() {
                    continue;
                }
                let target: Vec<i32> = p
                    .replicas
                    .iter()
                    .copied()
                    .filter(|r| !p.removing.contains(r))
                    .collect();
                if !target.iter().all(|r| p.isr.contains(r)) {
                    continue;
                }
                let mut next = p.clone();
                next.replicas = target.clone();
                next.isr.retain(|r| target.contains(r));
                next.adding.clear();
                next.removing.clear();
                if !target.contains(&p.leader) {
                    elect_into(&mut next, |r| image.is_usable(r), false);
                }
                changes.push(change(topic.id, index, p, &next));
            }
        }
        changes
    }

    /// `auto.leader.rebalance.enable`: partitions to hand back to their preferred
    /// replica, for every broker whose share of preferred partitions it does not lead
    /// is above `percentage` (Kafka's leader.imbalance.per.broker.percentage).
    pub(crate) fn imbalanced(&self, image: &ClusterImage, percentage: i64) -> Vec<(Uuid, i32)> {
        let mut per_broker: HashMap<i32, (usize, Vec<(Uuid, i32)>)> = HashMap::new();
        for topic in image.topics.values() {
            for (index, p) in topic.partitions.iter().enumerate() {
                let Some(&want) = p.replicas.first() else {
                    continue;
                };
                let entry = per_broker.entry(want).or_default();
                entry.0 += 1;
                if p.leader != want && p.isr.contains(&want) && image.is_usable(want) {
                    entry.1.push((topic.id, index as i32));
                }
            }
        }
        per_broker
            .into_values()
            .filter(|(total, off)| {
                *total > 0 && (off.len() as i64) * 100 > percentage * (*total as i64)
            })
            .flat_map(|(_, off)| off)
            .collect()
    }
}

/// Elects into `next` (whose ISR is already updated): the first usable ISR replica, or
/// with `unclean` any usable replica (which then becomes the whole ISR), or no leader.
fn elect_into(next: &mut PartitionImage, usable: impl Fn(i32) -> bool, unclean: bool) {
    match next.elect(&usable, unclean) {
        Some((leader, false)) => next.leader = leader,
        Some((leader, true)) => {
            warn!(
                leader,
                "unclean leader election: records the old ISR had may be lost"
            );
            next.leader = leader;
            next.isr = vec![leader];
        }
        None => next.leader = NO_LEADER,
    }
}

fn change(
    topic_id: Uuid,
    index: usize,
    from: &PartitionImage,
    to: &PartitionImage,
) -> PartitionChange {
    PartitionChange {
        topic_id,
        partition: index as i32,
        partition_epoch: from.partition_epoch,
        leader: to.leader,
        isr: to.isr.clone(),
        replicas: (to.replicas != from.replicas).then(|| to.replicas.clone()),
        reassignment: (to.adding != from.adding || to.removing != from.removing)
            .then(|| (to.adding.clone(), to.removing.clone())),
    }
}
