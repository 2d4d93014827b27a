//! The replica manager's gauges under the names Kafka's JMX metrics get from the
//! Strimzi exporter rules (`kafka_server_replicamanager_*`, `kafka_log_log_size`),
//! kafka-exporter's partition offsets (`kafka_topic_partition_current_offset`,
//! `_oldest_offset`, from each partition's leader), and KIP-405's per-topic
//! `remotecopylagbytes` and `remotelogsizebytes` (from each partition's leader), which
//! dashboards and alert rules query. The controller's gauges are `metadata::metrics`.
//! They are computed at each scrape from the partitions and the metadata image, so
//! nothing on the produce or fetch path keeps them.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::ReplicaManager;
use crate::metadata::MetadataQuorum;
use crate::metrics::PerTopic;

pub struct ReplicationCollector {
    pub replicas: Arc<ReplicaManager>,
    pub quorum: MetadataQuorum,
}

impl std::fmt::Debug for ReplicationCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationCollector").finish()
    }
}

impl ReplicationCollector {
    /// (name, help, value) of every gauge, as of now.
    fn gauges(&self) -> Vec<(&'static str, &'static str, i64)> {
        let (mut partitions, mut leaders, mut under_replicated, mut under_min_isr) = (0, 0, 0, 0);
        for p in self.replicas.all() {
            let h = p.health();
            partitions += 1;
            leaders += i64::from(h.leads);
            under_replicated += i64::from(h.under_replicated);
            under_min_isr += i64::from(h.under_min_isr);
        }
        vec![
            (
                "kafka_server_replicamanager_partitioncount",
                "Partitions with a replica on this broker",
                partitions,
            ),
            (
                "kafka_server_replicamanager_leadercount",
                "Partitions this broker leads",
                leaders,
            ),
            (
                "kafka_server_replicamanager_underreplicatedpartitions",
                "Partitions led here whose ISR is smaller than their replica set",
                under_replicated,
            ),
            (
                "kafka_server_replicamanager_underminisrpartitioncount",
                "Partitions led here whose ISR is smaller than min.insync.replicas",
                under_min_isr,
            ),
            // Replicas on a failed log directory: Strata does not track log
            // directories as offline yet, so it reports none.
            (
                "kafka_server_replicamanager_offlinereplicacount",
                "Replicas on offline log directories",
                0,
            ),
        ]
    }
}

/// One labelled value per partition: (topic, partition, value).
type PerPartition = Vec<(String, String, i64)>;

impl ReplicationCollector {
    /// KIP-405's gauges for the tiered partitions led here: bytes of sealed segments
    /// not yet copied, and bytes in the object store, per topic.
    fn remote_sizes(&self) -> (PerTopic, PerTopic) {
        let image = self.quorum.view().current();
        let (mut lag, mut size) = (PerTopic::default(), PerTopic::default());
        for p in self.replicas.all() {
            if !p.is_leader() {
                continue;
            }
            let remote = image.remote_log(&p.topic_id, p.index);
            if !p.config().remote_storage_enable && remote.is_none() {
                continue;
            }
            let end = remote.map_or(0, |l| l.end_offset());
            let view = p.tiered_view();
            let behind: u64 = view
                .sealed
                .iter()
                .filter(|s| s.next_offset > end)
                .map(|s| s.size)
                .sum();
            lag.add(&p.topic, behind as i64);
            let stored: u64 = remote.map_or(0, |l| l.finished().map(|s| s.size_bytes).sum());
            size.add(&p.topic, stored as i64);
        }
        (lag, size)
    }
}

impl ReplicationCollector {
    /// Per-partition gauges: every local replica's size, and the offsets of the
    /// partitions led here (kafka-exporter reads them from leaders; one broker each).
    fn per_partition(&self) -> [(&'static str, &'static str, PerPartition); 3] {
        let (mut size, mut current, mut oldest) = (Vec::new(), Vec::new(), Vec::new());
        for p in self.replicas.all() {
            let (topic, index) = (p.topic.clone(), p.index.to_string());
            size.push((topic.clone(), index.clone(), p.size_bytes() as i64));
            if p.is_leader() {
                let o = p.offsets();
                current.push((topic.clone(), index.clone(), o.high_watermark));
                oldest.push((topic, index, o.log_start_offset));
            }
        }
        [
            (
                "kafka_log_log_size",
                "Bytes of a partition's local log on this broker",
                size,
            ),
            (
                "kafka_topic_partition_current_offset",
                "A partition's high watermark (from its leader)",
                current,
            ),
            (
                "kafka_topic_partition_oldest_offset",
                "A partition's log start offset (from its leader)",
                oldest,
            ),
        ]
    }
}

impl Collector for ReplicationCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, value) in self.gauges() {
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        for (name, help, values) in self.per_partition() {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (topic, partition, value) in values {
                let labels = [("topic", topic), ("partition", partition)];
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        let (lag, size) = self.remote_sizes();
        crate::metrics::encode_per_topic(
            &mut encoder,
            "kafka_server_brokertopicmetrics_remotecopylagbytes",
            "Bytes of sealed segments of tiered partitions led here not yet copied to the object store",
            &lag,
            true,
        )?;
        crate::metrics::encode_per_topic(
            &mut encoder,
            "kafka_server_brokertopicmetrics_remotelogsizebytes",
            "Bytes in the object store of the tiered partitions led here",
            &size,
            true,
        )?;
        Ok(())
    }
}
