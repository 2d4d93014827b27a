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
//! [`refresh_remote_ends`] asks its leader every few seconds (ListOffsets), and the
//! time lag is left out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
/// leaders last reported them.
#[derive(Debug, Default)]
pub struct RemoteEnds(parking_lot::Mutex<HashMap<(String, i32), i64>>);

impl RemoteEnds {
    fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.0.lock().get(&(topic.to_string(), partition)).copied()
    }
}

/// Keeps `ends` current for the groups coordinated here, every `every`, until `stop`.
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
            .filter(|(topic, partition)| replicas.get(topic, *partition).is_none())
            .collect();
        let found = if wanted.is_empty() {
            HashMap::new()
        } else {
            let wanted: Vec<_> = wanted.into_iter().collect();
            replicas
                .leader_high_watermarks(&mut clients, &view.current(), &wanted)
                .await
        };
        *ends.0.lock() = found;
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
                let replica = self.replicas.get(topic, *partition);
                let end = match &replica {
                    Some(p) => Some(p.offsets().high_watermark),
                    None => self.remote_ends.get(topic, *partition),
                };
                let lag = end.map(|end| (end - committed).max(0));
                let time_lag_ms = match (&replica, lag) {
                    (Some(_), Some(0)) => Some(0),
                    (Some(p), Some(_)) => p.timestamp_near(*committed).map(|t| (now - t).max(0)),
                    _ => None,
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

/// Per (group, topic): (max lag, summed lag, max time lag in ms, summed committed offsets).
type TopicLag = BTreeMap<(String, String), (i64, i64, Option<i64>, i64)>;

fn per_topic(lags: &[PartitionLag]) -> TopicLag {
    let mut out: TopicLag = BTreeMap::new();
    for l in lags {
        let entry = out
            .entry((l.group.clone(), l.topic.clone()))
            .or_insert((0, 0, None, 0));
        entry.3 += l.committed;
        if let Some(lag) = l.lag {
            entry.0 = entry.0.max(lag);
            entry.1 += lag;
        }
        if let Some(t) = l.time_lag_ms {
            entry.2 = Some(entry.2.map_or(t, |m: i64| m.max(t)));
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

        type Pick = fn(&(i64, i64, Option<i64>, i64)) -> Option<f64>;
        let per_topic_gauges: [(&str, &str, Pick); 5] = [
            (
                "kafka_consumergroup_current_offset_sum",
                "A group's committed offsets of a topic, summed",
                |v| Some(v.3 as f64),
            ),
            (
                "kafka_consumergroup_lag_sum",
                "A group's lag over a topic's partitions, summed",
                |v| Some(v.1 as f64),
            ),
            (
                "kafka_consumergroup_sum_offset_lag",
                "MSK's SumOffsetLag: a group's lag over a topic's partitions, summed",
                |v| Some(v.1 as f64),
            ),
            (
                "kafka_consumergroup_max_offset_lag",
                "MSK's MaxOffsetLag: a group's largest lag among a topic's partitions",
                |v| Some(v.0 as f64),
            ),
            (
                "kafka_consumergroup_max_time_lag_seconds",
                "MSK's EstimatedMaxTimeLag as an age: seconds since the oldest record a group has not consumed of a topic was written",
                |v| v.2.map(|ms| ms as f64 / 1000.0),
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
