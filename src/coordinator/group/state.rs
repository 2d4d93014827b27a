//! One classic consumer group: members, generations and the rebalance state machine
//! (Kafka's GroupMetadata plus the transitions of its GroupCoordinator).
//!
//! Everything here is synchronous and runs under the group's mutex. Requests that must
//! wait for a rebalance (JoinGroup, SyncGroup) leave a oneshot sender on their member;
//! the transition that completes the phase answers every waiter at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::error::code;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupPhase {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupPhase {
    /// Kafka's state names, as ListGroups and DescribeGroups report them.
    pub fn name(&self) -> &'static str {
        match self {
            GroupPhase::Empty => "Empty",
            GroupPhase::PreparingRebalance => "PreparingRebalance",
            GroupPhase::CompletingRebalance => "CompletingRebalance",
            GroupPhase::Stable => "Stable",
            GroupPhase::Dead => "Dead",
        }
    }
}

/// What a waiting JoinGroup receives.
#[derive(Debug, Clone)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only: (member id, instance id, subscription metadata).
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// KIP-814: the leader must not compute a new assignment (static leader rejoin).
    pub skip_assignment: bool,
}

impl JoinOutcome {
    pub fn error(error: i16, member_id: &str) -> Self {
        JoinOutcome {
            error,
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// What a waiting SyncGroup receives.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    pub error: i16,
    pub assignment: Bytes,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
}

impl SyncOutcome {
    pub fn error(error: i16) -> Self {
        SyncOutcome {
            error,
            assignment: Bytes::new(),
            protocol_type: None,
            protocol_name: None,
        }
    }
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    /// (protocol name, subscription metadata), in the member's preference order.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    pub sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
    pub heartbeat_deadline: Instant,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// The membership snapshot persisted after each completed rebalance, so a restarted
/// coordinator knows generations and assignments (static members resume without a
/// rebalance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSnapshot {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: Vec<MemberSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSnapshot {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub protocols: Vec<(String, Vec<u8>)>,
    pub assignment: Vec<u8>,
}

/// Settings of the group coordinator (Kafka's `group.*` broker keys).
#[derive(Debug, Clone)]
pub struct GroupSettings {
    pub initial_rebalance_delay: Duration,
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    pub max_size: usize,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub phase: GroupPhase,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, valid until this deadline.
    pub pending: HashMap<String, Instant>,
    pub static_members: HashMap<String, String>,
    /// When the current join phase ends even if members are missing.
    pub join_deadline: Option<Instant>,
    /// Initial-delay window of a rebalance of an empty group (KIP-134).
    pub initial_delay_until: Option<Instant>,
    /// Upper bound for extending the initial delay.
    pub initial_delay_limit: Option<Instant>,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// When the group last became Empty (offsets expire from there).
    pub empty_since_ms: i64,
    /// Set when this is a KIP-848 consumer group (the classic fields are then unused).
    pub modern: Option<super::consumer::ConsumerGroupState>,
}

/// A side effect the caller must perform after releasing the group lock.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Persist the membership snapshot (a rebalance completed).
    PersistSnapshot(GroupSnapshot),
    /// Persist the KIP-848 group's state (members expired).
    PersistConsumerGroup,
}

fn new_member_id(client_id: &str) -> String {
    format!(
        "{}-{}",
        if client_id.is_empty() {
            "member"
        } else {
            client_id
        },
        uuid::Uuid::new_v4()
    )
}

impl Group {
    pub fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            phase: GroupPhase::Empty,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: IndexMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            join_deadline: None,
            initial_delay_until: None,
            initial_delay_limit: None,
            offsets: BTreeMap::new(),
            empty_since_ms: crate::log::now_ms(),
            modern: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.modern.as_ref().is_none_or(|m| m.members.is_empty())
    }

    /// "classic" or "consumer" (KIP-848), as ListGroups reports the group type.
    pub fn group_type(&self) -> &'static str {
        if self.modern.is_some() {
            "consumer"
        } else {
            "classic"
        }
    }

    /// The state name ListGroups reports for either kind of group.
    pub fn state_name(&self) -> &'static str {
        match &self.modern {
            Some(m) => m.state_name(),
            None => self.phase.name(),
        }
    }

    pub fn snapshot(&self) -> GroupSnapshot {
        GroupSnapshot {
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            generation: self.generation,
            leader: self.leader.clone(),
            members: self
                .members
                .values()
                .map(|m| MemberSnapshot {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout.as_millis() as u64,
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as u64,
                    protocols: m
                        .protocols
                        .iter()
                        .map(|(n, b)| (n.clone(), b.to_vec()))
                        .collect(),
                    assignment: m.assignment.to_vec(),
                })
                .collect(),
        }
    }

    /// Restores a persisted membership: the group is Stable (or Empty) in its last
    /// generation, every member gets a fresh session.
    pub fn restore(&mut self, snap: GroupSnapshot, now: Instant) {
        self.protocol_type = snap.protocol_type;
        self.protocol_name = snap.protocol_name;
        self.generation = snap.generation;
        self.leader = snap.leader;
        self.members.clear();
        self.static_members.clear();
        for m in snap.members {
            if let Some(i) = &m.instance_id {
                self.static_members.insert(i.clone(), m.id.clone());
            }
            let session_timeout = Duration::from_millis(m.session_timeout_ms);
            self.members.insert(
                m.id.clone(),
                Member {
                    id: m.id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout,
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms),
                    protocol_type: self.protocol_type.clone().unwrap_or_default(),
                    protocols: m
                        .protocols
                        .into_iter()
                        .map(|(n, b)| (n, Bytes::from(b)))
                        .collect(),
                    assignment: Bytes::from(m.assignment),
                    join_waiter: None,
                    sync_waiter: None,
                    heartbeat_deadline: now + session_timeout,
                },
            );
        }
        self.phase = if self.members.is_empty() {
            GroupPhase::Empty
        } else {
            GroupPhase::Stable
        };
    }

    /// Protocols every member (and the candidate) supports.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if self
            .protocol_type
            .as_deref()
            .is_some_and(|t| t != protocol_type)
        {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// Picks the protocol with the most first-choice votes among those all support.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
            })
            .collect();
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                *votes.entry(n).or_default() += 1;
            }
        }
        // Most votes wins; on a tie, the first member's earlier preference.
        let mut best: Option<(&String, usize)> = None;
        for n in candidates {
            let v = votes.get(n).copied().unwrap_or(0);
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((n, v));
            }
        }
        best.map(|(n, _)| n.clone())
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(60))
    }

    /// Starts (or restarts) a rebalance: members must rejoin.
    pub fn prepare_rebalance(&mut self, settings: &GroupSettings, now: Instant) {
        if self.phase == GroupPhase::CompletingRebalance {
            // Assignments of the aborted generation are void; waiting syncs must rejoin.
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(tx) = m.sync_waiter.take() {
                    let _ = tx.send(SyncOutcome::error(code::REBALANCE_IN_PROGRESS));
                }
            }
        }
        let was_empty = self.phase == GroupPhase::Empty;
        self.phase = GroupPhase::PreparingRebalance;
        self.join_deadline = Some(now + self.max_rebalance_timeout());
        if was_empty && !settings.initial_rebalance_delay.is_zero() {
            self.initial_delay_until = Some(now + settings.initial_rebalance_delay);
            self.initial_delay_limit = Some(now + self.max_rebalance_timeout());
        }
    }

    /// True when every member has rejoined, nothing is pending and no initial delay runs.
    fn all_joined(&self, now: Instant) -> bool {
        self.members.values().all(|m| m.join_waiter.is_some())
            && self.pending.is_empty()
            && self.initial_delay_until.is_none_or(|t| now >= t)
    }

    /// Completes the join phase if it can (or must, past its deadline).
    pub fn maybe_complete_join(&mut self, now: Instant, force: bool) -> Vec<Effect> {
        if self.phase != GroupPhase::PreparingRebalance {
            return Vec::new();
        }
        if !force && !self.all_joined(now) {
            return Vec::new();
        }
        self.complete_join(now)
    }

    fn complete_join(&mut self, now: Instant) -> Vec<Effect> {
        // Members that did not rejoin in time leave the group.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.pending.clear();
        self.join_deadline = None;
        self.initial_delay_until = None;
        self.initial_delay_limit = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.phase = GroupPhase::Empty;
            self.protocol_name = None;
            self.leader = None;
            self.empty_since_ms = crate::log::now_ms();
            return vec![Effect::PersistSnapshot(self.snapshot())];
        }
        self.protocol_name = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.phase = GroupPhase::CompletingRebalance;
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let roster: Vec<(String, Option<String>, Bytes)> = self
            .members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.metadata_for(&protocol),
                )
            })
            .collect();
        let (generation, protocol_type) = (self.generation, self.protocol_type.clone());
        for m in self.members.values_mut() {
            m.heartbeat_deadline = now + m.session_timeout;
            if let Some(tx) = m.join_waiter.take() {
                let _ = tx.send(JoinOutcome {
                    error: code::NONE,
                    generation,
                    protocol_type: protocol_type.clone(),
                    protocol_name: Some(protocol.clone()),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        roster.clone()
                    } else {
                        Vec::new()
                    },
                    skip_assignment: false,
                });
            }
        }
        Vec::new()
    }

    pub fn remove_member(&mut self, id: &str) {
        if let Some(m) = self.members.shift_remove(id) {
            if let Some(i) = &m.instance_id {
                if self.static_members.get(i).is_some_and(|x| x == id) {
                    self.static_members.remove(i);
                }
            }
            if let Some(tx) = m.join_waiter {
                let _ = tx.send(JoinOutcome::error(code::UNKNOWN_MEMBER_ID, id));
            }
            if let Some(tx) = m.sync_waiter {
                let _ = tx.send(SyncOutcome::error(code::UNKNOWN_MEMBER_ID));
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// Kafka's static-member check: a request naming an instance id that now belongs to
    /// another member id comes from a replaced (fenced) incarnation.
    pub fn fenced_instance(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id.is_some_and(|i| {
            self.static_members
                .get(i)
                .is_some_and(|current| current != member_id)
        })
    }

    /// The answer for a member re-joining without changes while no rebalance is needed.
    fn current_join_outcome(&self, member_id: &str, skip_assignment: bool) -> JoinOutcome {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        JoinOutcome {
            error: code::NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            member_id: member_id.to_string(),
            members: if member_id == leader {
                self.members
                    .values()
                    .map(|m| {
                        (
                            m.id.clone(),
                            m.instance_id.clone(),
                            m.metadata_for(&protocol),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            },
            leader,
            skip_assignment,
        }
    }
}

/// A JoinGroup request, as the coordinator needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: an unknown member must first get its id (KIP-394).
    pub require_known_member_id: bool,
}

/// The immediate result of a JoinGroup: answered now, or wait on the receiver.
pub enum JoinStep {
    Now(JoinOutcome),
    Wait(oneshot::Receiver<JoinOutcome>),
}

impl Group {
    pub fn join(
        &mut self,
        req: JoinRequest,
        settings: &GroupSettings,
        now: Instant,
    ) -> (JoinStep, Vec<Effect>) {
        let fail = |e: i16| {
            (
                JoinStep::Now(JoinOutcome::error(e, &req.member_id)),
                Vec::new(),
            )
        };
        if req.session_timeout < settings.min_session_timeout
            || req.session_timeout > settings.max_session_timeout
        {
            return fail(code::INVALID_SESSION_TIMEOUT);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return fail(code::INCONSISTENT_GROUP_PROTOCOL);
        }
        if !self.supports(&req.protocol_type, &req.protocols) {
            return fail(code::INCONSISTENT_GROUP_PROTOCOL);
        }
        if self.phase == GroupPhase::Dead {
            return fail(code::COORDINATOR_NOT_AVAILABLE);
        }
        if let Some(modern) = &self.modern {
            if !modern.members.is_empty() {
                // A KIP-848 group with members cannot take classic joins.
                return fail(code::INCONSISTENT_GROUP_PROTOCOL);
            }
            self.modern = None;
        }
        if req.member_id.is_empty() {
            // Static member coming back under a new incarnation.
            if let Some(instance) = &req.instance_id {
                if let Some(old_id) = self.static_members.get(instance).cloned() {
                    return self.replace_static_member(&old_id, req, settings, now);
                }
            }
            if self.members.len() + self.pending.len() >= settings.max_size {
                return fail(code::GROUP_MAX_SIZE_REACHED);
            }
            let new_id = new_member_id(&req.client_id);
            if req.require_known_member_id && req.instance_id.is_none() {
                self.pending
                    .insert(new_id.clone(), now + req.session_timeout);
                return (
                    JoinStep::Now(JoinOutcome::error(code::MEMBER_ID_REQUIRED, &new_id)),
                    Vec::new(),
                );
            }
            return self.add_member(new_id, req, settings, now);
        }
        if self.pending.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            return self.add_member(id, req, settings, now);
        }
        let Some(member) = self.members.get(&req.member_id) else {
            if let Some(instance) = &req.instance_id {
                if self.static_members.contains_key(instance) {
                    return fail(code::FENCED_INSTANCE_ID);
                }
            }
            return fail(code::UNKNOWN_MEMBER_ID);
        };
        if member.instance_id != req.instance_id {
            return fail(code::FENCED_INSTANCE_ID);
        }
        let unchanged = member.protocols == req.protocols;
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        match self.phase {
            GroupPhase::CompletingRebalance | GroupPhase::Stable
                if unchanged && !(self.phase == GroupPhase::Stable && is_leader) =>
            {
                // A rejoin with nothing new (e.g. a lost JoinGroup response): current state.
                let id = req.member_id.clone();
                if let Some(m) = self.members.get_mut(&id) {
                    m.heartbeat_deadline = now + m.session_timeout;
                }
                (
                    JoinStep::Now(self.current_join_outcome(&id, false)),
                    Vec::new(),
                )
            }
            _ => {
                let id = req.member_id.clone();
                self.update_and_wait(id, req, settings, now)
            }
        }
    }

    fn add_member(
        &mut self,
        id: String,
        req: JoinRequest,
        settings: &GroupSettings,
        now: Instant,
    ) -> (JoinStep, Vec<Effect>) {
        if self.members.len() >= settings.max_size {
            return (
                JoinStep::Now(JoinOutcome::error(code::GROUP_MAX_SIZE_REACHED, &id)),
                Vec::new(),
            );
        }
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(i) = &req.instance_id {
            self.static_members.insert(i.clone(), id.clone());
        }
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                instance_id: req.instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                session_timeout: req.session_timeout,
                rebalance_timeout: req.rebalance_timeout,
                protocol_type: req.protocol_type.clone(),
                protocols: req.protocols.clone(),
                assignment: Bytes::new(),
                join_waiter: None,
                sync_waiter: None,
                heartbeat_deadline: now + req.session_timeout,
            },
        );
        // A new member during the initial delay extends it (up to the rebalance timeout).
        if let (Some(until), Some(limit)) = (self.initial_delay_until, self.initial_delay_limit) {
            if now < until {
                self.initial_delay_until =
                    Some((now + settings.initial_rebalance_delay).min(limit));
            }
        }
        self.update_and_wait(id, req, settings, now)
    }

    fn update_and_wait(
        &mut self,
        id: String,
        req: JoinRequest,
        settings: &GroupSettings,
        now: Instant,
    ) -> (JoinStep, Vec<Effect>) {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(&id) {
            m.protocols = req.protocols;
            m.session_timeout = req.session_timeout;
            m.rebalance_timeout = req.rebalance_timeout;
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            m.heartbeat_deadline = now + m.session_timeout;
            if let Some(old) = m.join_waiter.replace(tx) {
                let _ = old.send(JoinOutcome::error(code::UNKNOWN_MEMBER_ID, &id));
            }
        }
        if self.phase != GroupPhase::PreparingRebalance {
            self.prepare_rebalance(settings, now);
        }
        let effects = self.maybe_complete_join(now, false);
        (JoinStep::Wait(rx), effects)
    }

    /// KIP-345: a static member rejoining with a new member id takes over the old
    /// member's place; a stable group does not rebalance.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        req: JoinRequest,
        settings: &GroupSettings,
        now: Instant,
    ) -> (JoinStep, Vec<Effect>) {
        let new_id = new_member_id(&req.client_id);
        let Some(mut member) = self.members.shift_remove(old_id) else {
            self.static_members
                .remove(req.instance_id.as_deref().unwrap_or_default());
            return self.add_member(new_id, req, settings, now);
        };
        if let Some(tx) = member.join_waiter.take() {
            let _ = tx.send(JoinOutcome::error(code::FENCED_INSTANCE_ID, old_id));
        }
        if let Some(tx) = member.sync_waiter.take() {
            let _ = tx.send(SyncOutcome::error(code::FENCED_INSTANCE_ID));
        }
        let unchanged = member.protocols == req.protocols;
        member.id = new_id.clone();
        member.heartbeat_deadline = now + req.session_timeout;
        self.members.insert(new_id.clone(), member);
        if let Some(i) = &req.instance_id {
            self.static_members.insert(i.clone(), new_id.clone());
        }
        let was_leader = self.leader.as_deref() == Some(old_id);
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        match self.phase {
            GroupPhase::Stable if unchanged => {
                // Same subscription: keep the assignment, no rebalance. A leader gets the
                // roster but must not reassign (KIP-814).
                let outcome = self.current_join_outcome(&new_id, was_leader);
                (
                    JoinStep::Now(outcome),
                    vec![Effect::PersistSnapshot(self.snapshot())],
                )
            }
            _ => self.update_and_wait(new_id, req, settings, now),
        }
    }

    /// SyncGroup. `assignments` are the leader's (empty from followers).
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> (
        Result<oneshot::Receiver<SyncOutcome>, SyncOutcome>,
        Vec<Effect>,
    ) {
        let fail = |e| (Err(SyncOutcome::error(e)), Vec::new());
        if self.fenced_instance(member_id, instance_id) {
            return fail(code::FENCED_INSTANCE_ID);
        }
        let Some(member) = self.members.get(member_id) else {
            return fail(code::UNKNOWN_MEMBER_ID);
        };
        if instance_id.is_some() && member.instance_id.as_deref() != instance_id {
            return fail(code::FENCED_INSTANCE_ID);
        }
        if generation != self.generation {
            return fail(code::ILLEGAL_GENERATION);
        }
        match self.phase {
            GroupPhase::Empty | GroupPhase::Dead => fail(code::UNKNOWN_MEMBER_ID),
            GroupPhase::PreparingRebalance => fail(code::REBALANCE_IN_PROGRESS),
            GroupPhase::Stable => {
                let m = &self.members[member_id];
                (
                    Err(SyncOutcome {
                        error: code::NONE,
                        assignment: m.assignment.clone(),
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol_name.clone(),
                    }),
                    Vec::new(),
                )
            }
            GroupPhase::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(member_id) {
                    m.heartbeat_deadline = now + m.session_timeout;
                    m.sync_waiter = Some(tx);
                }
                let mut effects = Vec::new();
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.phase = GroupPhase::Stable;
                    let (protocol_type, protocol_name) =
                        (self.protocol_type.clone(), self.protocol_name.clone());
                    for m in self.members.values_mut() {
                        if let Some(tx) = m.sync_waiter.take() {
                            let _ = tx.send(SyncOutcome {
                                error: code::NONE,
                                assignment: m.assignment.clone(),
                                protocol_type: protocol_type.clone(),
                                protocol_name: protocol_name.clone(),
                            });
                        }
                    }
                    effects.push(Effect::PersistSnapshot(self.snapshot()));
                }
                (Ok(rx), effects)
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> i16 {
        if self.fenced_instance(member_id, instance_id) {
            return code::FENCED_INSTANCE_ID;
        }
        let Some(member) = self.members.get_mut(member_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        if instance_id.is_some() && member.instance_id.as_deref() != instance_id {
            return code::FENCED_INSTANCE_ID;
        }
        if generation != self.generation {
            return code::ILLEGAL_GENERATION;
        }
        member.heartbeat_deadline = now + member.session_timeout;
        match self.phase {
            GroupPhase::PreparingRebalance => code::REBALANCE_IN_PROGRESS,
            GroupPhase::Empty => code::UNKNOWN_MEMBER_ID,
            GroupPhase::Dead => code::COORDINATOR_NOT_AVAILABLE,
            GroupPhase::CompletingRebalance | GroupPhase::Stable => code::NONE,
        }
    }

    /// LeaveGroup for one member (by member id, or by instance id for static members).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        settings: &GroupSettings,
        now: Instant,
    ) -> (i16, Vec<Effect>) {
        let id = match instance_id {
            Some(i) => match self.static_members.get(i) {
                Some(known) if member_id.is_empty() || known == member_id => known.clone(),
                Some(_) => return (code::FENCED_INSTANCE_ID, Vec::new()),
                None => return (code::UNKNOWN_MEMBER_ID, Vec::new()),
            },
            None => member_id.to_string(),
        };
        if self.pending.remove(&id).is_some() {
            return (code::NONE, self.maybe_complete_join(now, false));
        }
        if !self.members.contains_key(&id) {
            return (code::UNKNOWN_MEMBER_ID, Vec::new());
        }
        self.remove_member(&id);
        (code::NONE, self.membership_changed(settings, now))
    }

    /// After a member left or expired: rebalance, or finish a running join phase.
    fn membership_changed(&mut self, settings: &GroupSettings, now: Instant) -> Vec<Effect> {
        match self.phase {
            GroupPhase::Stable | GroupPhase::CompletingRebalance => {
                self.prepare_rebalance(settings, now);
                self.maybe_complete_join(now, false)
            }
            GroupPhase::PreparingRebalance => self.maybe_complete_join(now, false),
            GroupPhase::Empty | GroupPhase::Dead => Vec::new(),
        }
    }

    /// Timer work: expired sessions, expired pending ids, join deadlines.
    pub fn tick(&mut self, settings: &GroupSettings, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.pending.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.heartbeat_deadline <= now && m.join_waiter.is_none() && m.sync_waiter.is_none()
            })
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(&id);
            effects.extend(self.membership_changed(settings, now));
        }
        if self.phase == GroupPhase::PreparingRebalance {
            let deadline_passed = self.join_deadline.is_some_and(|d| now >= d);
            effects.extend(self.maybe_complete_join(now, deadline_passed));
        }
        effects
    }

    /// The topics the members subscribed to (consumer protocol), for OffsetDelete.
    pub fn subscribed_topics(&self) -> HashSet<String> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let mut out = HashSet::new();
        if self.protocol_type.as_deref() != Some("consumer") {
            return out;
        }
        for m in self.members.values() {
            out.extend(decode_subscription_topics(&m.metadata_for(&protocol)));
        }
        out
    }
}

/// Topics of a ConsumerProtocolSubscription (version-prefixed).
pub fn decode_subscription_topics(metadata: &Bytes) -> Vec<String> {
    use kafka_protocol::protocol::Decodable;
    if metadata.len() < 2 {
        return Vec::new();
    }
    let mut buf = metadata.clone();
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    bytes::Buf::advance(&mut buf, 2);
    kafka_protocol::messages::ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3))
        .map(|s| s.topics.iter().map(|t| t.as_str().to_string()).collect())
        .unwrap_or_default()
}

/// (topic, partitions) of a ConsumerProtocolAssignment (version-prefixed).
pub fn decode_assignment(assignment: &Bytes) -> Vec<(String, Vec<i32>)> {
    use kafka_protocol::protocol::Decodable;
    if assignment.len() < 2 {
        return Vec::new();
    }
    let mut buf = assignment.clone();
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    bytes::Buf::advance(&mut buf, 2);
    kafka_protocol::messages::ConsumerProtocolAssignment::decode(&mut buf, version.clamp(0, 3))
        .map(|a| {
            a.assigned_partitions
                .iter()
                .map(|t| (t.topic.0.as_str().to_string(), t.partitions.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GroupSettings {
        GroupSettings {
            initial_rebalance_delay: Duration::ZERO,
            min_session_timeout: Duration::from_millis(10),
            max_session_timeout: Duration::from_secs(600),
            max_size: 3,
        }
    }

    fn req(member_id: &str, instance: Option<&str>) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            instance_id: instance.map(Into::into),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            require_known_member_id: true,
        }
    }

    fn join_now(g: &mut Group, r: JoinRequest) -> JoinOutcome {
        match g.join(r, &settings(), Instant::now()).0 {
            JoinStep::Now(o) => o,
            JoinStep::Wait(mut rx) => rx.try_recv().expect("answered"),
        }
    }

    #[test]
    fn member_id_required_then_join_then_sync() {
        let mut g = Group::new("g");
        let first = join_now(&mut g, req("", None));
        assert_eq!(first.error, code::MEMBER_ID_REQUIRED);
        let joined = join_now(&mut g, req(&first.member_id, None));
        assert_eq!(joined.error, code::NONE);
        assert_eq!(joined.generation, 1);
        assert_eq!(joined.leader, first.member_id);
        assert_eq!(joined.members.len(), 1);
        let (res, effects) = g.sync(
            &first.member_id,
            None,
            1,
            vec![(first.member_id.clone(), Bytes::from_static(b"a"))],
            Instant::now(),
        );
        let mut rx = res.expect("waits");
        assert_eq!(rx.try_recv().unwrap().assignment, Bytes::from_static(b"a"));
        assert_eq!(g.phase, GroupPhase::Stable);
        assert_eq!(effects.len(), 1);
        assert_eq!(
            g.heartbeat(&first.member_id, None, 1, Instant::now()),
            code::NONE
        );
        assert_eq!(
            g.heartbeat(&first.member_id, None, 0, Instant::now()),
            code::ILLEGAL_GENERATION
        );
        assert_eq!(
            g.heartbeat("nobody", None, 1, Instant::now()),
            code::UNKNOWN_MEMBER_ID
        );
    }

    #[test]
    fn static_member_rejoins_without_rebalance_and_old_id_is_fenced() {
        let mut g = Group::new("g");
        let a = join_now(&mut g, req("", Some("i1")));
        assert_eq!(a.error, code::NONE);
        let (res, _) = g.sync(
            &a.member_id,
            Some("i1"),
            1,
            vec![(a.member_id.clone(), Bytes::from_static(b"p0"))],
            Instant::now(),
        );
        res.unwrap();
        let again = join_now(&mut g, req("", Some("i1")));
        assert_eq!(again.error, code::NONE);
        assert_eq!(again.generation, 1, "no new generation");
        assert_ne!(again.member_id, a.member_id);
        assert!(
            again.skip_assignment,
            "the static leader keeps the assignment"
        );
        let (res, _) = g.sync(&again.member_id, Some("i1"), 1, vec![], Instant::now());
        assert_eq!(res.unwrap_err().assignment, Bytes::from_static(b"p0"));
        assert_eq!(
            g.heartbeat(&a.member_id, Some("i1"), 1, Instant::now()),
            code::FENCED_INSTANCE_ID,
            "the replaced incarnation is fenced, not told to rejoin"
        );
        assert_eq!(
            join_now(&mut g, req(&a.member_id, Some("i1"))).error,
            code::FENCED_INSTANCE_ID
        );
    }

    #[test]
    fn group_max_size_is_enforced() {
        let mut g = Group::new("g");
        for _ in 0..3 {
            let id = join_now(&mut g, req("", None)).member_id;
            let _ = g.join(req(&id, None), &settings(), Instant::now());
        }
        assert_eq!(
            join_now(&mut g, req("", None)).error,
            code::GROUP_MAX_SIZE_REACHED
        );
    }
}
