//! KIP-848 consumer groups: the server computes assignments ([`assign_uniform`],
//! [`assign_range`]) and each member reconciles towards its target through
//! ConsumerGroupHeartbeat, revoking first and receiving partitions only once no other
//! member still owns them (incremental, cooperative by construction).
//!
//! Epochs: the group epoch changes with membership or subscriptions; the target
//! assignment is computed for it (assignment epoch); a member's epoch reaches the
//! assignment epoch once it holds nothing outside its target.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::code;

/// A partition by topic name (names are stable within a group's lifetime; ids are
/// added when answering).
pub type Tp = (String, i32);

/// The server-side assignors Strata implements, by Kafka's names.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// Kafka's full class names of the built-in assignors, which `group.consumer.assignors`
/// may name instead of the short names.
const ASSIGNOR_CLASSES: &[(&str, &str)] = &[
    (
        "org.apache.kafka.coordinator.group.assignor.UniformAssignor",
        "uniform",
    ),
    (
        "org.apache.kafka.coordinator.group.assignor.RangeAssignor",
        "range",
    ),
];

/// The short name of an assignor given by name or Kafka class name, if Strata has it.
pub fn assignor_name(configured: &str) -> Option<&'static str> {
    let configured = configured.trim();
    ASSIGNORS
        .iter()
        .find(|a| a.eq_ignore_ascii_case(configured))
        .copied()
        .or_else(|| {
            ASSIGNOR_CLASSES
                .iter()
                .find(|(class, _)| *class == configured)
                .map(|(_, name)| *name)
        })
}

/// What a heartbeat is checked against, from the broker config.
#[derive(Debug, Clone)]
pub struct MemberLimits {
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout: Duration,
    /// `group.max.size`.
    pub max_size: usize,
    /// `group.consumer.assignors`: the assignors a member may ask for; the first is the
    /// group's assignor when no member names one.
    pub assignors: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: BTreeSet<String>,
    /// A regular expression topics are matched against (full match), if any.
    pub subscribed_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout: Duration,
    pub member_epoch: i32,
    pub previous_epoch: i32,
    /// What the member owns now, as far as we know.
    pub assigned: BTreeSet<Tp>,
    /// The assignment last sent, to answer `null` when nothing changed.
    pub last_sent: Option<BTreeSet<Tp>>,
    pub session_deadline: Instant,
    /// Since when the member has been asked to revoke partitions.
    pub revoking_since: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct ConsumerGroupState {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    pub target: HashMap<String, BTreeSet<Tp>>,
    pub assignor: String,
    /// Partition counts of subscribed topics when the target was computed.
    pub topic_fingerprint: BTreeMap<String, usize>,
}

/// A KIP-848 group as persisted in `__consumer_offsets`: epochs, members (without
/// their session timers) and the target assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroupSnapshot {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<ConsumerMemberSnapshot>,
    pub target: Vec<(String, Vec<Tp>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMemberSnapshot {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: Vec<String>,
    #[serde(default)]
    pub subscribed_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: u64,
    pub member_epoch: i32,
    pub previous_epoch: i32,
    pub assigned: Vec<Tp>,
}

/// What a heartbeat asks for (None = unchanged, as in the protocol).
#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout: Duration,
    pub subscribed: Option<Vec<String>>,
    /// None = unchanged; Some("") clears it.
    pub subscribed_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// Partitions the member says it owns (None = unchanged).
    pub owned: Option<Vec<Tp>>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone)]
pub struct HeartbeatOutcome {
    pub error: i16,
    pub message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    /// None: the member keeps what it has.
    pub assignment: Option<BTreeSet<Tp>>,
}

impl HeartbeatOutcome {
    fn error(error: i16, message: &str, member_id: &str) -> Self {
        HeartbeatOutcome {
            error,
            message: Some(message.to_string()),
            member_id: member_id.to_string(),
            member_epoch: -1,
            assignment: None,
        }
    }
}

/// Spreads every subscribed partition evenly, keeping current owners where the quota
/// allows (sticky), so a membership change moves as few partitions as possible.
pub fn assign_uniform(
    members: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, usize>,
    current: &HashMap<String, BTreeSet<Tp>>,
) -> HashMap<String, BTreeSet<Tp>> {
    let mut out: HashMap<String, BTreeSet<Tp>> = members
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    if members.is_empty() {
        return out;
    }
    let all: Vec<Tp> = partitions
        .iter()
        .filter(|(t, _)| members.values().any(|s| s.contains(*t)))
        .flat_map(|(t, n)| (0..*n as i32).map(move |p| (t.clone(), p)))
        .collect();
    let eligible = |m: &str, tp: &Tp| members.get(m).is_some_and(|s| s.contains(&tp.0));
    let n = members.len();
    let base = all.len() / n;
    let extra = all.len() % n;
    // Quotas: the first `extra` members (by current load, then id) may hold one more.
    let mut order: Vec<&String> = members.keys().collect();
    order.sort_by_key(|m| {
        (
            std::cmp::Reverse(current.get(*m).map(|c| c.len()).unwrap_or(0)),
            (*m).clone(),
        )
    });
    let quota: HashMap<&String, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (*m, base + usize::from(i < extra)))
        .collect();
    let mut taken: BTreeSet<Tp> = BTreeSet::new();
    for m in &order {
        if let Some(cur) = current.get(*m) {
            for tp in cur {
                if out[*m].len() < quota[m]
                    && eligible(m, tp)
                    && all.contains(tp)
                    && taken.insert(tp.clone())
                {
                    out.get_mut(*m).map(|s| s.insert(tp.clone()));
                }
            }
        }
    }
    for tp in all {
        if taken.contains(&tp) {
            continue;
        }
        // The eligible member furthest below its quota, then the least loaded.
        let best = order
            .iter()
            .filter(|m| eligible(m, &tp))
            .min_by_key(|m| (out[**m].len() >= quota[*m], out[**m].len(), (**m).clone()))
            .copied();
        if let Some(m) = best {
            out.get_mut(m).map(|s| s.insert(tp.clone()));
            taken.insert(tp);
        }
    }
    out
}

/// Kafka's range assignor, server side: per topic, contiguous ranges of partitions
/// over the members subscribed to it, in member-id order.
pub fn assign_range(
    members: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, usize>,
) -> HashMap<String, BTreeSet<Tp>> {
    let mut out: HashMap<String, BTreeSet<Tp>> = members
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for (topic, count) in partitions {
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, s)| s.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        let per = count / subscribers.len();
        let extra = count % subscribers.len();
        let mut next = 0;
        for (i, m) in subscribers.iter().enumerate() {
            let take = per + usize::from(i < extra);
            for p in next..next + take {
                out.get_mut(*m).map(|s| s.insert((topic.clone(), p as i32)));
            }
            next += take;
        }
    }
    out
}

impl ConsumerGroupState {
    pub fn snapshot(&self) -> ConsumerGroupSnapshot {
        ConsumerGroupSnapshot {
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: self.assignor.clone(),
            members: self
                .members
                .values()
                .map(|m| ConsumerMemberSnapshot {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed: m.subscribed.iter().cloned().collect(),
                    subscribed_regex: m.subscribed_regex.clone(),
                    server_assignor: m.server_assignor.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as u64,
                    member_epoch: m.member_epoch,
                    previous_epoch: m.previous_epoch,
                    assigned: m.assigned.iter().cloned().collect(),
                })
                .collect(),
            target: self
                .target
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().cloned().collect()))
                .collect(),
        }
    }

    /// Rebuilds a group from its snapshot; every member gets a fresh session.
    pub fn restore(
        snap: ConsumerGroupSnapshot,
        session_timeout: Duration,
        now: Instant,
    ) -> ConsumerGroupState {
        let members: BTreeMap<String, ConsumerMember> = snap
            .members
            .into_iter()
            .map(|m| {
                (
                    m.id.clone(),
                    ConsumerMember {
                        id: m.id,
                        instance_id: m.instance_id,
                        rack_id: m.rack_id,
                        client_id: m.client_id,
                        client_host: m.client_host,
                        subscribed: m.subscribed.into_iter().collect(),
                        subscribed_regex: m.subscribed_regex,
                        server_assignor: m.server_assignor,
                        rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms),
                        member_epoch: m.member_epoch,
                        previous_epoch: m.previous_epoch,
                        assigned: m.assigned.into_iter().collect(),
                        last_sent: None,
                        session_deadline: now + session_timeout,
                        revoking_since: None,
                    },
                )
            })
            .collect();
        let target: HashMap<String, BTreeSet<Tp>> = snap
            .target
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().collect()))
            .collect();
        let mut state = ConsumerGroupState {
            group_epoch: snap.group_epoch,
            assignment_epoch: snap.assignment_epoch,
            members,
            target,
            assignor: snap.assignor,
            topic_fingerprint: BTreeMap::new(),
        };
        // Recompute the fingerprint lazily: the first heartbeat compares against it.
        state.topic_fingerprint = state
            .target
            .values()
            .flat_map(|s| s.iter().map(|(t, _)| t.clone()))
            .collect::<BTreeSet<String>>()
            .into_iter()
            .map(|t| {
                let n = state
                    .target
                    .values()
                    .flat_map(|s| s.iter())
                    .filter(|(x, _)| *x == t)
                    .count();
                (t, n)
            })
            .collect();
        state
    }

    /// What, when it changes, must be persisted.
    pub fn persisted_shape(&self) -> (i32, i32, usize, Vec<(i32, usize)>) {
        (
            self.group_epoch,
            self.assignment_epoch,
            self.members.len(),
            self.members
                .values()
                .map(|m| (m.member_epoch, m.assigned.len()))
                .collect(),
        )
    }

    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.group_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.member_epoch != self.assignment_epoch || self.target.get(&m.id) != Some(&m.assigned)
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Each member's topics: its names plus the existing topics its regex matches.
    fn effective_subscriptions(
        &self,
        topics: &BTreeMap<String, usize>,
    ) -> BTreeMap<String, BTreeSet<String>> {
        self.members
            .iter()
            .map(|(id, m)| {
                let mut set = m.subscribed.clone();
                if let Some(re) = m
                    .subscribed_regex
                    .as_deref()
                    .and_then(|r| regex::Regex::new(&format!("^(?:{r})$")).ok())
                {
                    set.extend(
                        topics
                            .keys()
                            .filter(|t| !t.starts_with("__") && re.is_match(t))
                            .cloned(),
                    );
                }
                (id.clone(), set)
            })
            .collect()
    }

    /// Recomputes the target assignment for the current group epoch.
    fn compute_target(&mut self, topics: &BTreeMap<String, usize>) {
        let subscriptions = self.effective_subscriptions(topics);
        let relevant: BTreeMap<String, usize> = topics
            .iter()
            .filter(|(t, _)| subscriptions.values().any(|s| s.contains(*t)))
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        self.target = if self.assignor == "range" {
            assign_range(&subscriptions, &relevant)
        } else {
            assign_uniform(&subscriptions, &relevant, &self.target)
        };
        self.topic_fingerprint = relevant;
        self.assignment_epoch = self.group_epoch;
    }

    fn bump(&mut self, topics: &BTreeMap<String, usize>) {
        self.group_epoch += 1;
        self.compute_target(topics);
    }

    /// Partitions that other members still own (they have not revoked them yet).
    fn owned_by_others(&self, member: &str) -> BTreeSet<Tp> {
        self.members
            .values()
            .filter(|m| m.id != member)
            .flat_map(|m| m.assigned.iter().cloned())
            .collect()
    }

    /// Handles one heartbeat. `topics` maps every existing topic to its partition count.
    pub fn heartbeat(
        &mut self,
        req: HeartbeatRequest,
        topics: &BTreeMap<String, usize>,
        limits: &MemberLimits,
        now: Instant,
    ) -> HeartbeatOutcome {
        let (session_timeout, max_size) = (limits.session_timeout, limits.max_size);
        if let Some(r) = req.subscribed_regex.as_deref().filter(|r| !r.is_empty()) {
            if let Err(e) = regex::Regex::new(r) {
                return HeartbeatOutcome::error(
                    code::INVALID_REGULAR_EXPRESSION,
                    &format!("invalid subscription regex: {e}"),
                    &req.member_id,
                );
            }
        }
        if let Some(a) = &req.server_assignor {
            if !limits.assignors.iter().any(|known| known == a) {
                return HeartbeatOutcome::error(
                    code::UNSUPPORTED_ASSIGNOR,
                    &format!(
                        "assignor '{a}' is not supported (group.consumer.assignors: {})",
                        limits.assignors.join(", ")
                    ),
                    &req.member_id,
                );
            }
        }
        // Leaving: -1 (or -2 for a static member's temporary leave).
        if req.member_epoch < 0 {
            if self.members.remove(&req.member_id).is_some() {
                self.target.remove(&req.member_id);
                self.bump(topics);
            }
            return HeartbeatOutcome {
                error: code::NONE,
                message: None,
                member_id: req.member_id.clone(),
                member_epoch: req.member_epoch,
                assignment: None,
            };
        }
        let mut member_id = req.member_id.clone();
        if req.member_epoch == 0 {
            if req.subscribed.as_ref().is_none_or(|s| s.is_empty())
                && req.subscribed_regex.as_deref().is_none_or(|r| r.is_empty())
                && req.instance_id.is_none()
                && !self.members.contains_key(&member_id)
            {
                return HeartbeatOutcome::error(
                    code::INVALID_REQUEST,
                    "a joining member must subscribe to topics",
                    &member_id,
                );
            }
            if member_id.is_empty() {
                member_id = uuid::Uuid::new_v4().to_string();
            }
            // A static member rejoining under a new id replaces its previous incarnation.
            if let Some(instance) = &req.instance_id {
                let old = self
                    .members
                    .values()
                    .find(|m| {
                        m.instance_id.as_deref() == Some(instance.as_str()) && m.id != member_id
                    })
                    .map(|m| m.id.clone());
                if let Some(old) = old {
                    if let Some(mut prev) = self.members.remove(&old) {
                        let target = self.target.remove(&old).unwrap_or_default();
                        prev.id = member_id.clone();
                        prev.last_sent = None;
                        self.target.insert(member_id.clone(), target);
                        self.members.insert(member_id.clone(), prev);
                    }
                }
            }
            if !self.members.contains_key(&member_id) {
                if self.members.len() >= max_size {
                    return HeartbeatOutcome::error(
                        code::GROUP_MAX_SIZE_REACHED,
                        "the group is full",
                        &member_id,
                    );
                }
                self.members.insert(
                    member_id.clone(),
                    ConsumerMember {
                        id: member_id.clone(),
                        instance_id: req.instance_id.clone(),
                        rack_id: req.rack_id.clone(),
                        client_id: req.client_id.clone(),
                        client_host: req.client_host.clone(),
                        subscribed: BTreeSet::new(),
                        subscribed_regex: None,
                        server_assignor: None,
                        rebalance_timeout: req.rebalance_timeout,
                        member_epoch: 0,
                        previous_epoch: 0,
                        assigned: BTreeSet::new(),
                        last_sent: None,
                        session_deadline: now + session_timeout,
                        revoking_since: None,
                    },
                );
                self.group_epoch += 1;
            }
        }
        let Some(member) = self.members.get_mut(&member_id) else {
            return HeartbeatOutcome::error(code::UNKNOWN_MEMBER_ID, "unknown member", &member_id);
        };
        if req.member_epoch != 0
            && req.member_epoch != member.member_epoch
            && req.member_epoch != member.previous_epoch
        {
            return HeartbeatOutcome::error(
                code::FENCED_MEMBER_EPOCH,
                &format!(
                    "member epoch {} is not the current {}",
                    req.member_epoch, member.member_epoch
                ),
                &member_id,
            );
        }
        member.session_deadline = now + session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        if req.member_epoch == 0 {
            // A (re)join: the member owns nothing yet.
            member.assigned.clear();
            member.last_sent = None;
        }
        if let Some(owned) = &req.owned {
            member.assigned = owned.iter().cloned().collect();
        }
        let mut changed = false;
        if let Some(subscribed) = &req.subscribed {
            let s: BTreeSet<String> = subscribed.iter().cloned().collect();
            if s != member.subscribed {
                member.subscribed = s;
                changed = true;
            }
        }
        if let Some(r) = &req.subscribed_regex {
            let r = Some(r.clone()).filter(|r| !r.is_empty());
            if r != member.subscribed_regex {
                member.subscribed_regex = r;
                changed = true;
            }
        }
        if let Some(a) = &req.server_assignor {
            member.server_assignor = Some(a.clone());
        }
        if let Some(a) = self
            .members
            .values()
            .find_map(|m| m.server_assignor.clone())
        {
            if a != self.assignor {
                self.assignor = a;
                changed = true;
            }
        }
        if self.assignor.is_empty() {
            self.assignor = limits
                .assignors
                .first()
                .cloned()
                .unwrap_or_else(|| ASSIGNORS[0].into());
        }
        let subscriptions = self.effective_subscriptions(topics);
        let fingerprint: BTreeMap<String, usize> = topics
            .iter()
            .filter(|(t, _)| subscriptions.values().any(|s| s.contains(*t)))
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        if changed || fingerprint != self.topic_fingerprint {
            self.group_epoch += 1;
        }
        if self.assignment_epoch < self.group_epoch {
            self.compute_target(topics);
        }
        self.reconcile(&member_id, now)
    }

    /// Moves a member towards its target: revoke first; then take what is free.
    fn reconcile(&mut self, member_id: &str, now: Instant) -> HeartbeatOutcome {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let others = self.owned_by_others(member_id);
        let assignment_epoch = self.assignment_epoch;
        let Some(member) = self.members.get_mut(member_id) else {
            return HeartbeatOutcome::error(code::UNKNOWN_MEMBER_ID, "unknown member", member_id);
        };
        let to_revoke: BTreeSet<Tp> = member.assigned.difference(&target).cloned().collect();
        let next = if !to_revoke.is_empty() {
            // Keep the epoch until the member confirms the revocation.
            member.revoking_since.get_or_insert(now);
            member
                .assigned
                .intersection(&target)
                .cloned()
                .collect::<BTreeSet<Tp>>()
        } else {
            member.revoking_since = None;
            if member.member_epoch != assignment_epoch {
                member.previous_epoch = member.member_epoch;
                member.member_epoch = assignment_epoch;
            }
            // Partitions another member has not released yet are held back.
            target
                .iter()
                .filter(|tp| !others.contains(*tp))
                .cloned()
                .collect()
        };
        if to_revoke.is_empty() {
            member.assigned = next.clone();
        }
        let assignment = if member.last_sent.as_ref() != Some(&next) {
            member.last_sent = Some(next.clone());
            Some(next)
        } else {
            None
        };
        HeartbeatOutcome {
            error: code::NONE,
            message: None,
            member_id: member_id.to_string(),
            member_epoch: member.member_epoch,
            assignment,
        }
    }

    /// Removes members whose session expired or who did not revoke in time.
    pub fn expire(&mut self, topics: &BTreeMap<String, usize>, now: Instant) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.session_deadline <= now
                    || m.revoking_since
                        .is_some_and(|t| now.duration_since(t) > m.rebalance_timeout)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            self.members.remove(id);
            self.target.remove(id);
        }
        if !gone.is_empty() {
            self.bump(topics);
        }
        gone
    }

    /// Checks an OffsetCommit's member and epoch (KIP-848 rules).
    pub fn check_commit(&self, member_id: &str, epoch: i32) -> i16 {
        match self.members.get(member_id) {
            None => code::UNKNOWN_MEMBER_ID,
            Some(m) if epoch > m.member_epoch => code::FENCED_MEMBER_EPOCH,
            Some(m) if epoch < m.member_epoch => code::STALE_MEMBER_EPOCH,
            Some(_) => code::NONE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(list: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        list.iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    #[test]
    fn uniform_is_even_and_sticky() {
        let parts: BTreeMap<String, usize> = [("t".to_string(), 6)].into_iter().collect();
        let two = assign_uniform(
            &subs(&[("a", &["t"]), ("b", &["t"])]),
            &parts,
            &HashMap::new(),
        );
        assert_eq!(two["a"].len(), 3);
        assert_eq!(two["b"].len(), 3);
        let three = assign_uniform(
            &subs(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]),
            &parts,
            &two,
        );
        assert_eq!(three["c"].len(), 2);
        // a and b each gave up exactly one partition.
        assert_eq!(three["a"].difference(&two["a"]).count(), 0);
        assert_eq!(two["a"].difference(&three["a"]).count(), 1);
    }

    #[test]
    fn range_gives_contiguous_blocks() {
        let parts: BTreeMap<String, usize> = [("t".to_string(), 5)].into_iter().collect();
        let r = assign_range(&subs(&[("a", &["t"]), ("b", &["t"])]), &parts);
        assert_eq!(
            r["a"].iter().map(|x| x.1).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(r["b"].iter().map(|x| x.1).collect::<Vec<_>>(), vec![3, 4]);
    }

    fn hb(member: &str, epoch: i32, owned: Option<Vec<Tp>>) -> HeartbeatRequest {
        HeartbeatRequest {
            member_id: member.into(),
            member_epoch: epoch,
            instance_id: None,
            rack_id: None,
            rebalance_timeout: Duration::from_secs(30),
            subscribed: if epoch == 0 {
                Some(vec!["t".into()])
            } else {
                None
            },
            subscribed_regex: None,
            server_assignor: None,
            owned,
            client_id: "c".into(),
            client_host: "/h".into(),
        }
    }

    fn limits() -> MemberLimits {
        MemberLimits {
            session_timeout: Duration::from_secs(45),
            max_size: 10,
            assignors: vec!["uniform".into(), "range".into()],
        }
    }

    #[test]
    fn second_member_gets_partitions_only_after_the_first_revokes() {
        let topics: BTreeMap<String, usize> = [("t".to_string(), 4)].into_iter().collect();
        let mut g = ConsumerGroupState::default();
        let now = Instant::now();
        let a = g.heartbeat(hb("a", 0, Some(vec![])), &topics, &limits(), now);
        assert_eq!(a.assignment.as_ref().unwrap().len(), 4);
        let a_epoch = a.member_epoch;
        let b = g.heartbeat(hb("b", 0, Some(vec![])), &topics, &limits(), now);
        assert!(
            b.assignment.as_ref().unwrap().is_empty(),
            "a still owns everything"
        );
        let a2 = g.heartbeat(
            hb(
                "a",
                a_epoch,
                Some((0..4).map(|p| ("t".into(), p)).collect()),
            ),
            &topics,
            &limits(),
            now,
        );
        let keep = a2.assignment.unwrap();
        assert_eq!(keep.len(), 2, "a is told to revoke two");
        assert_eq!(
            a2.member_epoch, a_epoch,
            "epoch held until revocation is confirmed"
        );
        let a3 = g.heartbeat(
            hb("a", a_epoch, Some(keep.iter().cloned().collect())),
            &topics,
            &limits(),
            now,
        );
        assert!(a3.member_epoch > a_epoch);
        let b2 = g.heartbeat(
            hb("b", b.member_epoch, Some(vec![])),
            &topics,
            &limits(),
            now,
        );
        assert_eq!(b2.assignment.unwrap().len(), 2, "freed partitions go to b");
        assert_eq!(g.state_name(), "Stable");
    }
}
