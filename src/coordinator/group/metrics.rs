//! Consumer-group lag on `/metrics`, under kafka-exporter's names
//! (`kafka_consumergroup_current_offset`, `_lag`, `_lag_sum`, `_members`) and as
//! Amazon MSK's per group and topic figures: `kafka_consumergroup_max_offset_lag`
//! (MaxOffsetLag), `kafka_consumergroup_sum_offset_lag` (SumOffsetLag) and
//! `kafka_consumergroup_max_time_lag_seconds` (MSK's EstimatedMaxTimeLag: here the
//! age of the oldest record the group has not consumed, in seconds).
//!
//! Each group is reported by its coordinator, the broker leading its
//! `__consumer_offsets` partition, so a group appears once in a cluster. The end of a
//! partition is its high watermark as this broker's replica knows it (exact on the
//! leader, a fetch behind on a follower); for a partition with no replica here,
//! [`refresh_remote_ends`] asks its leader every few seconds (ListOffsets). The age of
//! a record is its batch's timestamp where this broker holds the partition; for a
//! partition it does not, it is estimated from when the leader's end was seen to pass
//! the record's offset (as kafka-lag-exporter estimates it), and reads at least the
//! time since the first report when the record is older than all of them.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::GroupCoordinator;
use crate::log::now_ms;
use crate::metadata::MetadataView;
use crate::replication::ReplicaManager;

/// High watermarks of committed partitions with no replica on this broker, as their
/// leaders reported them over time.
#[derive(Debug, Default)]
pub struct RemoteEnds(parking_lot::Mutex<HashMap<(String, i32), EndHistory>>);

impl RemoteEnds {
    /// The end its leader last reported.
    fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.0
            .lock()
            .get(&(topic.to_string(), partition))
            .and_then(EndHistory::latest)
    }

    /// About when the record at `offset` was written (see [`EndHistory::written_at`]).
    fn written_at(&self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        self.0
            .lock()
            .get(&(topic.to_string(), partition))
            .and_then(|h| h.written_at(offset))
    }
}

/// Reports of a partition's end kept (only changes count): a quarter of an hour of a
/// partition whose end changes at every 5 s report (older records then read as at
/// least that old), and the memory bounded at a few KiB per partition.
const END_HISTORY: usize = 180;

/// A partition's end as its leader reported it, oldest first, one entry per end:
/// (end offset, first seen, last seen), times in ms since the epoch.
#[derive(Debug, Default)]
struct EndHistory(VecDeque<(i64, i64, i64)>);

impl EndHistory {
    fn record(&mut self, end: i64, now_ms: i64) {
        // An end below earlier ones (a new leader's high watermark a fetch behind, or
        // a truncated log): the reports above it no longer hold.
        while self.0.back().is_some_and(|(e, ..)| *e > end) {
            self.0.pop_back();
        }
        match self.0.back_mut() {
            Some((e, _, last_seen)) if *e == end => *last_seen = now_ms,
            _ => {
                if self.0.len() == END_HISTORY {
                    self.0.pop_front();
                }
                self.0.push_back((end, now_ms, now_ms));
            }
        }
    }

    fn latest(&self) -> Option<i64> {
        self.0.back().map(|(end, ..)| *end)
    }

    /// About when the record at `offset` was written: between the last time the end
    /// was seen short of it and the first time it was seen past it, in proportion;
    /// the oldest report's time if it was there from the first (the record is at least
    /// that old). None if no report has reached it yet.
    fn written_at(&self, offset: i64) -> Option<i64> {
        let i = self.0.iter().position(|(end, ..)| *end > offset)?;
        let (end, first_seen, _) = self.0[i];
        let Some(&(before, _, last_short)) = i.checked_sub(1).and_then(|b| self.0.get(b)) else {
            return Some(first_seen);
        };
        // Records before..end arrived between those two reports, spread evenly.
        let share = (offset + 1 - before) as f64 / (end - before) as f64;
        Some(last_short + (share * (first_seen - last_short) as f64) as i64)
    }
}

/// This broker's replica of a partition if its high watermark is the partition's own:
/// the leader's, or an in-sync follower's (a fetch behind at most). An out-of-sync
/// follower catching up could be hours behind, so the leader is asked instead.
fn current_replica(
    replicas: &ReplicaManager,
    topic: &str,
    partition: i32,
) -> Option<Arc<crate::replication::Partition>> {
    replicas
        .get(topic, partition)
        .filter(|p| p.is_leader() || p.isr().contains(&p.node_id))
}

/// Keeps `ends` current for the groups coordinated here, every `every`, until `stop`.
/// A leader that does not answer leaves its partitions' last known ends in place
/// rather than making their lag series flap.
pub async fn refresh_remote_ends(
    groups: Arc<GroupCoordinator>,
    replicas: Arc<ReplicaManager>,
    view: MetadataView,
    ends: Arc<RemoteEnds>,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut clients = crate::replication::end_offsets::LeaderClients::default();
    loop {
        let wanted: BTreeSet<(String, i32)> = groups
            .coordinated_groups()
            .into_iter()
            .flat_map(|g| g.offsets)
            .map(|(topic, partition, _)| (topic, partition))
            .filter(|(topic, partition)| current_replica(&replicas, topic, *partition).is_none())
            .collect();
        let found = if wanted.is_empty() {
            HashMap::new()
        } else {
            let asked: Vec<_> = wanted.iter().cloned().collect();
            let image = view.current();
            tokio::select! {
                found = replicas.leader_high_watermarks(&mut clients, &image, &asked) => found,
                _ = stop.cancelled() => return,
            }
        };
        {
            let now = now_ms();
            let mut ends = ends.0.lock();
            ends.retain(|key, _| wanted.contains(key));
            for (key, end) in found {
                ends.entry(key).or_default().record(end, now);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// A group coordinated here: its members and committed offsets.
#[derive(Debug, Clone)]
pub struct GroupOffsets {
    pub group: String,
    pub members: usize,
    /// (topic, partition, committed offset)
    pub offsets: Vec<(String, i32, i64)>,
}

/// One committed partition of a group, with its lag where the end is known here.
struct PartitionLag {
    group: String,
    topic: String,
    partition: i32,
    committed: i64,
    lag: Option<i64>,
    /// Milliseconds since the first unconsumed record was written (0 when caught up).
    time_lag_ms: Option<i64>,
}

pub struct GroupCollector {
    pub groups: Arc<GroupCoordinator>,
    pub replicas: Arc<ReplicaManager>,
    pub remote_ends: Arc<RemoteEnds>,
}

impl std::fmt::Debug for GroupCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCollector").finish()
    }
}

impl GroupCollector {
    fn lags(&self, groups: &[GroupOffsets]) -> Vec<PartitionLag> {
        let now = now_ms();
        let mut out = Vec::new();
        for g in groups {
            for (topic, partition, committed) in &g.offsets {
                let replica = current_replica(&self.replicas, topic, *partition);
                let end = match &replica {
                    Some(p) => Some(p.offsets().high_watermark),
                    None => self.remote_ends.get(topic, *partition),
                };
                let lag = end.map(|end| (end - committed).max(0));
                let written = match (&replica, lag) {
                    (_, Some(0)) | (_, None) => None,
                    (Some(p), Some(_)) => p.timestamp_near(*committed),
                    (None, Some(_)) => self.remote_ends.written_at(topic, *partition, *committed),
                };
                let time_lag_ms = match lag {
                    Some(0) => Some(0),
                    Some(_) => written.map(|t| (now - t).max(0)),
                    None => None,
                };
                out.push(PartitionLag {
                    group: g.group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    committed: *committed,
                    lag,
                    time_lag_ms,
                });
            }
        }
        out
    }
}

/// A group's figures over one topic's partitions. The lag figures are None when no
/// partition's end is known (never reported as 0, which would hide lag).
#[derive(Default)]
struct TopicLag {
    max_lag: Option<i64>,
    sum_lag: Option<i64>,
    max_time_lag_ms: Option<i64>,
    committed_sum: i64,
}

fn per_topic(lags: &[PartitionLag]) -> BTreeMap<(String, String), TopicLag> {
    let mut out: BTreeMap<(String, String), TopicLag> = BTreeMap::new();
    for l in lags {
        let entry = out.entry((l.group.clone(), l.topic.clone())).or_default();
        entry.committed_sum += l.committed;
        if let Some(lag) = l.lag {
            entry.max_lag = Some(entry.max_lag.map_or(lag, |m| m.max(lag)));
            entry.sum_lag = Some(entry.sum_lag.unwrap_or(0) + lag);
        }
        if let Some(t) = l.time_lag_ms {
            entry.max_time_lag_ms = Some(entry.max_time_lag_ms.map_or(t, |m| m.max(t)));
        }
    }
    out
}

/// A gauge with one series per (group, topic, partition) that `pick` gives a value.
fn encode_per_partition(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    lags: &[PartitionLag],
    pick: fn(&PartitionLag) -> Option<i64>,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for l in lags {
        let Some(value) = pick(l) else { continue };
        let partition = l.partition.to_string();
        let labels = [
            ("consumergroup", l.group.as_str()),
            ("topic", l.topic.as_str()),
            ("partition", partition.as_str()),
        ];
        m.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

impl Collector for GroupCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let groups = self.groups.coordinated_groups();
        let lags = self.lags(&groups);
        let topics = per_topic(&lags);

        let mut m = encoder.encode_descriptor(
            "kafka_consumergroup_members",
            "Members of a consumer group coordinated here",
            None,
            MetricType::Gauge,
        )?;
        for g in &groups {
            let labels = [("consumergroup", g.group.as_str())];
            m.encode_family(&labels)?
                .encode_gauge(&(g.members as i64))?;
        }

        encode_per_partition(
            &mut encoder,
            "kafka_consumergroup_current_offset",
            "A group's committed offset of a partition",
            &lags,
            |l| Some(l.committed),
        )?;
        encode_per_partition(
            &mut encoder,
            "kafka_consumergroup_lag",
            "Records between a group's committed offset and the partition's high watermark",
            &lags,
            |l| l.lag,
        )?;

        type Pick = fn(&TopicLag) -> Option<f64>;
        let per_topic_gauges: [(&str, &str, Pick); 5] = [
            (
                "kafka_consumergroup_current_offset_sum",
                "A group's committed offsets of a topic, summed",
                |v| Some(v.committed_sum as f64),
            ),
            (
                "kafka_consumergroup_lag_sum",
                "A group's lag over a topic's partitions, summed",
                |v| v.sum_lag.map(|n| n as f64),
            ),
            (
                "kafka_consumergroup_sum_offset_lag",
                "MSK's SumOffsetLag: a group's lag over a topic's partitions, summed",
                |v| v.sum_lag.map(|n| n as f64),
            ),
            (
                "kafka_consumergroup_max_offset_lag",
                "MSK's MaxOffsetLag: a group's largest lag among a topic's partitions",
                |v| v.max_lag.map(|n| n as f64),
            ),
            (
                "kafka_consumergroup_max_time_lag_seconds",
                "MSK's EstimatedMaxTimeLag as an age: seconds since the oldest record a group has not consumed of a topic was written",
                |v| v.max_time_lag_ms.map(|ms| ms as f64 / 1000.0),
            ),
        ];
        for (name, help, pick) in per_topic_gauges {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for ((group, topic), v) in &topics {
                let Some(value) = pick(v) else { continue };
                let labels = [("consumergroup", group.as_str()), ("topic", topic.as_str())];
                m.encode_family(&labels)?.encode_gauge(&value)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(partition: i32, committed: i64, lag: Option<i64>) -> PartitionLag {
        PartitionLag {
            group: "g".into(),
            topic: "t".into(),
            partition,
            committed,
            lag,
            time_lag_ms: None,
        }
    }

    #[test]
    fn unknown_ends_never_read_as_zero_lag() {
        let none = per_topic(&[lag(0, 5, None), lag(1, 7, None)]);
        let t = &none[&("g".to_string(), "t".to_string())];
        assert_eq!((t.max_lag, t.sum_lag, t.committed_sum), (None, None, 12));
        let some = per_topic(&[lag(0, 5, Some(3)), lag(1, 7, None), lag(2, 1, Some(4))]);
        let t = &some[&("g".to_string(), "t".to_string())];
        assert_eq!((t.max_lag, t.sum_lag), (Some(4), Some(7)));
    }

    #[test]
    fn a_remote_records_age_is_estimated_from_when_its_leader_passed_it() {
        let mut h = EndHistory::default();
        assert_eq!(h.written_at(0), None);
        h.record(100, 1_000);
        // Already there at the first report: at least that old.
        assert_eq!(h.written_at(40), Some(1_000));
        // Idle for an hour, then 100 records within the next 5 s: they are seconds
        // old, not an hour.
        h.record(100, 3_600_000);
        h.record(200, 3_605_000);
        assert_eq!(h.written_at(149), Some(3_602_500));
        assert_eq!(h.written_at(199), Some(3_605_000));
        // Not written yet.
        assert_eq!(h.written_at(200), None);
        assert_eq!(h.latest(), Some(200));
        // A new leader a fetch behind: only the reports above it go.
        h.record(190, 3_610_000);
        assert_eq!(h.written_at(40), Some(1_000));
        // Record 150 now falls between the last report short of it and the new one.
        assert_eq!(h.written_at(150), Some(3_600_000 + 51 * 10_000 / 90));
        assert_eq!(h.latest(), Some(190));
        for i in 0..(END_HISTORY as i64 + 10) {
            h.record(300 + i, 4_000_000 + i);
        }
        assert_eq!(h.0.len(), END_HISTORY);
    }

    #[test]
    fn remote_partitions_get_a_time_lag() {
        let ends = RemoteEnds::default();
        let now = now_ms();
        ends.0
            .lock()
            .entry(("t".to_string(), 0))
            .or_default()
            .record(10, now - 60_000);
        assert_eq!(ends.get("t", 0), Some(10));
        assert_eq!(ends.written_at("t", 0, 4), Some(now - 60_000));
        assert_eq!(ends.written_at("t", 1, 4), None);
    }
}
