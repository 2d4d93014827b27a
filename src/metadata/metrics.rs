//! The controller's gauges under the Strimzi exporter names
//! (`kafka_controller_kafkacontroller_*`) and kafka-exporter's cluster view
//! (`kafka_brokers`, `kafka_topic_partitions`), from the agreed metadata image. As in
//! Kafka, only the active controller reports the cluster-wide figures (the other nodes
//! report 0 and no series), so a sum over all nodes is the cluster's figure. Served by
//! every node with a `metrics.listener`, dedicated controllers included.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use super::MetadataQuorum;
use crate::metrics::{encode_per_topic, PerTopic};

pub struct ControllerCollector {
    pub node_id: i32,
    /// This node serves the Kafka API too (a single node counts itself as a broker
    /// before any registration exists).
    pub is_broker: bool,
    pub quorum: MetadataQuorum,
}

impl std::fmt::Debug for ControllerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerCollector")
            .field("node_id", &self.node_id)
            .finish()
    }
}

/// What the active controller sees of the cluster.
#[derive(Default)]
struct ClusterFigures {
    topics: i64,
    partitions: i64,
    offline: i64,
    brokers: i64,
    per_topic: PerTopic,
}

impl ControllerCollector {
    /// The figures if this node is the active controller.
    fn figures(&self) -> Option<ClusterFigures> {
        if self.quorum.controller().0 != Some(self.node_id as u64) {
            return None;
        }
        let image = self.quorum.view().current();
        let mut brokers = image.usable_brokers().count() as i64;
        if image.brokers.is_empty() && self.is_broker {
            // A single node with no quorum peers serves without registering itself.
            brokers = 1;
        }
        let mut f = ClusterFigures {
            topics: image.topics.len() as i64,
            brokers,
            ..ClusterFigures::default()
        };
        for t in image.topics.values() {
            f.partitions += t.partitions.len() as i64;
            f.offline += t.partitions.iter().filter(|p| p.leader < 0).count() as i64;
            f.per_topic.add(&t.name, t.partitions.len() as i64);
        }
        Some(f)
    }
}

impl Collector for ControllerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let figures = self.figures();
        let active = figures.is_some();
        let f = figures.unwrap_or_default();
        let gauges = [
            (
                "kafka_controller_kafkacontroller_activecontrollercount",
                "1 on the active controller",
                i64::from(active),
            ),
            (
                "kafka_controller_kafkacontroller_offlinepartitionscount",
                "Partitions without a leader (active controller only)",
                f.offline,
            ),
            (
                "kafka_controller_kafkacontroller_globaltopiccount",
                "Topics in the cluster (active controller only)",
                f.topics,
            ),
            (
                "kafka_controller_kafkacontroller_globalpartitioncount",
                "Partitions in the cluster (active controller only)",
                f.partitions,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        if active {
            let gauge = ConstGauge::new(f.brokers);
            let metric = encoder.encode_descriptor(
                "kafka_brokers",
                "Live brokers in the cluster (active controller only)",
                None,
                gauge.metric_type(),
            )?;
            gauge.encode(metric)?;
            encode_per_topic(
                &mut encoder,
                "kafka_topic_partitions",
                "Partitions of each topic (active controller only)",
                &f.per_topic,
                false,
            )?;
        }
        Ok(())
    }
}
