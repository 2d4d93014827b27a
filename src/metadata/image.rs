//! The cluster image: the state machine's value, and the records that change it.
//!
//! Everything here is plain data (serde) so openraft can log and snapshot it. The
//! image is only ever mutated by [`ClusterImage::apply`], called by the raft state
//! machine in log order; readers get an immutable `Arc<ClusterImage>` snapshot from
//! the view. Validation that must be atomic with the change (a topic name already
//! taken, a partition count that shrinks) happens inside `apply`, so two racing
//! proposals cannot both succeed.

use std::collections::{BTreeMap, HashMap};

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
}

/// One advertised listener of a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    pub listener: String,
    pub host: String,
    pub port: i32,
}

impl BrokerImage {
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
    #[error("a topic must keep at least its {current} partitions (asked for {requested})")]
    InvalidPartitions { current: usize, requested: usize },
}

/// What applying a record returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyReply {
    Done,
    /// The first of the producer ids reserved by `AllocateProducerIds`.
    ProducerIdBlock(i64),
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
            MetadataRecord::RegisterBroker(broker) => {
                self.brokers.insert(broker.node_id, broker);
                ApplyReply::Done
            }
            MetadataRecord::CreateTopic {
                name,
                id,
                partitions,
                configs,
            } => {
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
        }
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
