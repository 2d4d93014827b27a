//! Kafka's BrokerTopicMetrics: per-topic counters of bytes and messages in and out,
//! produce and fetch requests and their failures, replication and tiering traffic,
//! exported as `kafka_server_brokertopicmetrics_*_total{topic=...}` plus one
//! topic-less series per counter (Kafka's all-topics meter), the names the Strimzi JMX
//! exporter rules give them.
//!
//! Each topic's counters are plain atomics behind an `Arc` that its partitions hold, so
//! the produce and fetch paths add to them through the partition (no lock of their
//! own), and to nothing shared by all topics: the topic-less totals are summed at each scrape, from the live topics
//! and what the topics gone from this broker had counted. A topic's series disappear
//! once no partition of it remains on this broker (deleted or moved away), as Kafka
//! removes a deleted topic's metrics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// One per-topic counter; the discriminant indexes [`TopicStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicCounter {
    /// Bytes of record batches appended by produce requests (as stored).
    BytesIn,
    /// Bytes of records sent to consumers (follower fetches are replication).
    BytesOut,
    /// Records appended by produce requests.
    MessagesIn,
    /// Partitions of produce requests that reached a partition here.
    TotalProduceRequests,
    /// Partitions of fetch requests (consumers and followers) read here.
    TotalFetchRequests,
    /// Produce partitions refused for a reason other than routing (not leader, unknown).
    FailedProduceRequests,
    /// Fetch partitions failed for a reason other than routing or an out-of-range offset.
    FailedFetchRequests,
    /// Bytes appended here as a follower.
    ReplicationBytesIn,
    /// Bytes sent to followers.
    ReplicationBytesOut,
    /// Segment bytes copied to the object store (KIP-405).
    RemoteCopyBytes,
    /// Segments copied to the object store.
    RemoteCopyRequests,
    /// Segment uploads that failed (each is retried).
    FailedRemoteCopyRequests,
    /// Bytes read back from the object store for fetches.
    RemoteFetchBytes,
    /// Fetch partitions served from the object store.
    RemoteFetchRequests,
    /// Remote reads that failed.
    FailedRemoteFetchRequests,
}

impl TopicCounter {
    pub const ALL: [TopicCounter; 15] = [
        TopicCounter::BytesIn,
        TopicCounter::BytesOut,
        TopicCounter::MessagesIn,
        TopicCounter::TotalProduceRequests,
        TopicCounter::TotalFetchRequests,
        TopicCounter::FailedProduceRequests,
        TopicCounter::FailedFetchRequests,
        TopicCounter::ReplicationBytesIn,
        TopicCounter::ReplicationBytesOut,
        TopicCounter::RemoteCopyBytes,
        TopicCounter::RemoteCopyRequests,
        TopicCounter::FailedRemoteCopyRequests,
        TopicCounter::RemoteFetchBytes,
        TopicCounter::RemoteFetchRequests,
        TopicCounter::FailedRemoteFetchRequests,
    ];

    /// The metric's name without `_total` (the encoder adds it to counters), and help.
    pub fn name_and_help(self) -> (&'static str, &'static str) {
        match self {
            TopicCounter::BytesIn => (
                "kafka_server_brokertopicmetrics_bytesin",
                "Bytes of record batches appended by produce requests",
            ),
            TopicCounter::BytesOut => (
                "kafka_server_brokertopicmetrics_bytesout",
                "Bytes of records sent to consumers",
            ),
            TopicCounter::MessagesIn => (
                "kafka_server_brokertopicmetrics_messagesin",
                "Records appended by produce requests",
            ),
            TopicCounter::TotalProduceRequests => (
                "kafka_server_brokertopicmetrics_totalproducerequests",
                "Produce requests, counted per partition",
            ),
            TopicCounter::TotalFetchRequests => (
                "kafka_server_brokertopicmetrics_totalfetchrequests",
                "Fetch requests (consumers and followers), counted per partition",
            ),
            TopicCounter::FailedProduceRequests => (
                "kafka_server_brokertopicmetrics_failedproducerequests",
                "Produce partitions that failed (not counting a wrong leader or unknown partition)",
            ),
            TopicCounter::FailedFetchRequests => (
                "kafka_server_brokertopicmetrics_failedfetchrequests",
                "Fetch partitions that failed (not counting a wrong leader, unknown partition or offset out of range)",
            ),
            TopicCounter::ReplicationBytesIn => (
                "kafka_server_brokertopicmetrics_replicationbytesin",
                "Bytes appended as a follower",
            ),
            TopicCounter::ReplicationBytesOut => (
                "kafka_server_brokertopicmetrics_replicationbytesout",
                "Bytes sent to followers",
            ),
            TopicCounter::RemoteCopyBytes => (
                "kafka_server_brokertopicmetrics_remotecopybytes",
                "Segment bytes copied to the object store",
            ),
            TopicCounter::RemoteCopyRequests => (
                "kafka_server_brokertopicmetrics_remotecopyrequests",
                "Segments copied to the object store",
            ),
            TopicCounter::FailedRemoteCopyRequests => (
                "kafka_server_brokertopicmetrics_failedremotecopyrequests",
                "Segment uploads that failed (each is retried)",
            ),
            TopicCounter::RemoteFetchBytes => (
                "kafka_server_brokertopicmetrics_remotefetchbytes",
                "Bytes read from the object store for fetches",
            ),
            TopicCounter::RemoteFetchRequests => (
                "kafka_server_brokertopicmetrics_remotefetchrequests",
                "Fetch partitions served from the object store",
            ),
            TopicCounter::FailedRemoteFetchRequests => (
                "kafka_server_brokertopicmetrics_failedremotefetchrequests",
                "Remote reads that failed",
            ),
        }
    }
}

/// The counters of one topic (or of all topics).
#[derive(Debug, Default)]
pub struct TopicStats {
    counters: [AtomicU64; TopicCounter::ALL.len()],
}

impl TopicStats {
    pub fn get(&self, counter: TopicCounter) -> u64 {
        self.counters[counter as usize].load(Ordering::Relaxed)
    }

    fn add(&self, counter: TopicCounter, n: u64) {
        self.counters[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds every counter of `other` to this one.
    fn absorb(&self, other: &TopicStats) {
        for counter in TopicCounter::ALL {
            self.add(counter, other.get(counter));
        }
    }
}

/// A topic's counters: what its partitions hold.
#[derive(Debug, Clone, Default)]
pub struct TopicMetrics {
    topic: Arc<TopicStats>,
}

impl TopicMetrics {
    pub fn add(&self, counter: TopicCounter, n: u64) {
        self.topic.add(counter, n);
    }

    pub fn inc(&self, counter: TopicCounter) {
        self.add(counter, 1);
    }
}

/// Every topic's counters on this broker.
#[derive(Debug, Default)]
pub struct BrokerTopicStats {
    topics: RwLock<HashMap<String, Arc<TopicStats>>>,
    /// What the topics no longer here had counted, so the totals never fall.
    retired: TopicStats,
}

impl BrokerTopicStats {
    /// The counters of `topic`, created on first use (when a partition of it opens).
    pub fn topic(&self, topic: &str) -> TopicMetrics {
        if let Some(stats) = self.topics.read().get(topic) {
            return TopicMetrics {
                topic: stats.clone(),
            };
        }
        let stats = self
            .topics
            .write()
            .entry(topic.to_string())
            .or_default()
            .clone();
        TopicMetrics { topic: stats }
    }

    /// The topics whose partitions are still here (some handle besides ours lives),
    /// sorted; the others are forgotten, their counts kept in `retired`. A topic
    /// retired is one nothing can add to any more: only its partitions hold handles.
    fn live_topics(&self) -> Vec<(String, Arc<TopicStats>)> {
        let mut topics = self.topics.write();
        topics.retain(|_, stats| {
            let live = Arc::strong_count(stats) > 1;
            if !live {
                self.retired.absorb(stats);
            }
            live
        });
        let mut live: Vec<_> = topics
            .iter()
            .map(|(name, stats)| (name.clone(), stats.clone()))
            .collect();
        live.sort_by(|a, b| a.0.cmp(&b.0));
        live
    }

    /// The topic-less total of `counter` over `live` topics and the retired ones.
    fn total(&self, live: &[(String, Arc<TopicStats>)], counter: TopicCounter) -> u64 {
        self.retired.get(counter) + live.iter().map(|(_, s)| s.get(counter)).sum::<u64>()
    }
}

/// Encodes [`BrokerTopicStats`] at each scrape.
#[derive(Debug)]
pub struct BrokerTopicCollector(pub Arc<BrokerTopicStats>);

impl Collector for BrokerTopicCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let topics = self.0.live_topics();
        for counter in TopicCounter::ALL {
            let (name, help) = counter.name_and_help();
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            let total = self.0.total(&topics, counter);
            metric.encode_counter::<NoLabelSet, _, u64>(&total, None)?;
            for (topic, stats) in &topics {
                let labels = [("topic", topic.as_str())];
                metric
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&stats.get(counter), None)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_counters_add_to_the_total_and_vanish_with_their_partitions() {
        let stats = Arc::new(BrokerTopicStats::default());
        let a = stats.topic("a");
        let b = stats.topic("b");
        a.add(TopicCounter::BytesIn, 100);
        b.add(TopicCounter::BytesIn, 50);
        b.inc(TopicCounter::MessagesIn);
        let live = stats.live_topics();
        assert_eq!(live.len(), 2);
        assert_eq!(stats.total(&live, TopicCounter::BytesIn), 150);
        assert_eq!(stats.total(&live, TopicCounter::MessagesIn), 1);
        drop(live);
        drop(b);
        let live = stats.live_topics();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].0, "a");
        assert_eq!(live[0].1.get(TopicCounter::BytesIn), 100);
        // The total keeps what the gone topic counted.
        assert_eq!(stats.total(&live, TopicCounter::BytesIn), 150);
        assert_eq!(stats.total(&live, TopicCounter::MessagesIn), 1);
        // The same topic again shares the live counters.
        stats.topic("a").add(TopicCounter::BytesIn, 1);
        assert_eq!(a.topic.get(TopicCounter::BytesIn), 101);
    }

    #[test]
    fn the_exposition_has_a_topicless_total_and_one_series_per_topic() {
        let stats = Arc::new(BrokerTopicStats::default());
        let t = stats.topic("orders");
        t.add(TopicCounter::BytesOut, 7);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(BrokerTopicCollector(stats.clone())));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("kafka_server_brokertopicmetrics_bytesout_total 7\n"),
            "{text}"
        );
        assert!(
            text.contains("kafka_server_brokertopicmetrics_bytesout_total{topic=\"orders\"} 7\n"),
            "{text}"
        );
        drop(t);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(!text.contains("orders"), "{text}");
        assert!(text.contains("kafka_server_brokertopicmetrics_bytesout_total 7\n"));
    }
}
