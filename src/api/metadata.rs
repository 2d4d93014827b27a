//! Metadata (with auto-creation), DescribeCluster and DescribeTopicPartitions: views
//! of the cluster image.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use std::collections::BTreeMap;
use uuid::Uuid;

use super::authorize::Access;
use super::{str_bytes, Broker, AUTHORIZED_OPERATIONS_OMITTED};
use crate::admin::validate_topic_name;
use crate::error::code;
use crate::metadata::acl::{Operation, ResourceType, CLUSTER_RESOURCE_NAME};
use crate::metadata::{ClusterImage, TopicImage, NO_LEADER};

fn is_internal(name: &str) -> bool {
    name.starts_with("__")
}

/// Replicas on brokers that are fenced or not registered.
fn offline_replicas(image: &ClusterImage, replicas: &[i32]) -> Vec<BrokerId> {
    replicas
        .iter()
        .filter(|r| image.brokers.get(r).is_none_or(|b| b.fenced))
        .map(|&r| BrokerId(r))
        .collect()
}

/// The id reported as "controller" to clients: the active controller (in combined
/// mode a broker), or some live broker when it is a dedicated controller, as Kafka's
/// KRaft brokers do.
pub fn controller_id(broker: &Broker, image: &ClusterImage) -> i32 {
    let (leader, _) = broker.admin.quorum.controller();
    match leader.map(|l| l as i32) {
        Some(l) if image.brokers.get(&l).is_some_and(|b| !b.fenced) => l,
        _ => image
            .usable_brokers()
            .next()
            .map_or(broker.config.node_id, |b| b.node_id),
    }
}

fn describe_topic(image: &ClusterImage, topic: &TopicImage) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code::NONE)
        .with_name(Some(TopicName(str_bytes(&topic.name))))
        .with_topic_id(topic.id)
        .with_is_internal(is_internal(&topic.name))
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
        .with_partitions(
            topic
                .partitions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    MetadataResponsePartition::default()
                        .with_error_code(if p.leader == NO_LEADER {
                            code::LEADER_NOT_AVAILABLE
                        } else {
                            code::NONE
                        })
                        .with_offline_replicas(offline_replicas(image, &p.replicas))
                        .with_partition_index(i as i32)
                        .with_leader_id(BrokerId(p.leader))
                        .with_leader_epoch(p.leader_epoch)
                        .with_replica_nodes(p.replicas.iter().map(|&b| BrokerId(b)).collect())
                        .with_isr_nodes(p.isr.iter().map(|&b| BrokerId(b)).collect())
                })
                .collect(),
        )
}

fn topic_error(name: Option<&str>, id: Uuid, error: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error)
        .with_name(name.map(|n| TopicName(str_bytes(n))))
        .with_topic_id(id)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn brokers(image: &ClusterImage, listener: &str) -> Vec<MetadataResponseBroker> {
    image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(str_bytes(b.address_for(listener).0))
                .with_port(b.address_for(listener).1)
                .with_rack(b.rack.as_deref().map(str_bytes))
        })
        .collect()
}

pub async fn handle_metadata(
    broker: &Broker,
    access: &Access,
    request: MetadataRequest,
    version: i16,
    listener: &str,
) -> MetadataResponse {
    let mut image = broker.admin.image();
    let mut topics = Vec::new();
    // Topics the sender may not DESCRIBE are never revealed: left out of "all topics",
    // TOPIC_AUTHORIZATION_FAILED when named (whether or not they exist).
    let may_describe = |name: &str| access.topic(Operation::Describe, name);
    let denied =
        |name: Option<&str>, id: Uuid| topic_error(name, id, code::TOPIC_AUTHORIZATION_FAILED);
    // In v0 an empty list (null did not exist yet) means every topic.
    let requested = match request.topics {
        Some(t) if t.is_empty() && version == 0 => None,
        other => other,
    };
    match requested {
        None => {
            let mut all: Vec<&TopicImage> = image
                .topics
                .values()
                .filter(|t| may_describe(&t.name))
                .collect();
            all.sort_by(|a, b| a.name.cmp(&b.name));
            topics.extend(all.into_iter().map(|t| describe_topic(&image, t)));
        }
        Some(requested) => {
            // v0 has no flag and always allowed auto-creation.
            let allow_auto = (version < 4 || request.allow_auto_topic_creation)
                && broker.config.auto_create_topics_enable;
            for t in requested {
                match t.name {
                    Some(name) => {
                        let name = name.0.as_str().to_string();
                        if !may_describe(&name) {
                            topics.push(denied(Some(&name), Uuid::nil()));
                            continue;
                        }
                        if let Some(topic) = image.topic_by_name(&name) {
                            topics.push(describe_topic(&image, topic));
                            continue;
                        }
                        if let Err(e) = validate_topic_name(&name) {
                            topics.push(topic_error(Some(&name), Uuid::nil(), e.code));
                            continue;
                        }
                        if !allow_auto {
                            topics.push(topic_error(
                                Some(&name),
                                Uuid::nil(),
                                code::UNKNOWN_TOPIC_OR_PARTITION,
                            ));
                            continue;
                        }
                        if !access.cluster(Operation::Create)
                            && !access.topic(Operation::Create, &name)
                        {
                            topics.push(denied(Some(&name), Uuid::nil()));
                            continue;
                        }
                        match broker
                            .admin
                            .create_topic(&name, -1, -1, Vec::new(), BTreeMap::new(), false)
                            .await
                        {
                            Ok(_)
                            | Err(crate::admin::AdminError {
                                code: code::TOPIC_ALREADY_EXISTS,
                                ..
                            }) => {
                                image = broker.admin.image();
                                match image.topic_by_name(&name) {
                                    Some(topic) => topics.push(describe_topic(&image, topic)),
                                    None => topics.push(topic_error(
                                        Some(&name),
                                        Uuid::nil(),
                                        code::LEADER_NOT_AVAILABLE,
                                    )),
                                }
                            }
                            Err(e) => topics.push(topic_error(Some(&name), Uuid::nil(), e.code)),
                        }
                    }
                    None => match image.topic_by_id(&t.topic_id) {
                        Some(topic) if !may_describe(&topic.name) => {
                            topics.push(denied(None, t.topic_id))
                        }
                        Some(topic) => topics.push(describe_topic(&image, topic)),
                        None => topics.push(topic_error(None, t.topic_id, code::UNKNOWN_TOPIC_ID)),
                    },
                }
            }
        }
    }
    if version >= 8 && request.include_topic_authorized_operations {
        for t in topics.iter_mut() {
            if t.error_code != code::TOPIC_AUTHORIZATION_FAILED {
                if let Some(name) = &t.name {
                    t.topic_authorized_operations =
                        access.authorized_operations(ResourceType::Topic, name.0.as_str());
                }
            }
        }
    }
    let cluster_operations =
        if (8..=10).contains(&version) && request.include_cluster_authorized_operations {
            cluster_authorized_operations(access)
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        };
    MetadataResponse::default()
        .with_brokers(brokers(&image, listener))
        .with_cluster_id(Some(str_bytes(&image.cluster_id)))
        .with_controller_id(BrokerId(controller_id(broker, &image)))
        .with_topics(topics)
        .with_cluster_authorized_operations(cluster_operations)
}

/// The cluster's `authorized_operations` when asked for: 0 without DESCRIBE on it.
fn cluster_authorized_operations(access: &Access) -> i32 {
    if access.cluster(Operation::Describe) {
        access.authorized_operations(ResourceType::Cluster, CLUSTER_RESOURCE_NAME)
    } else {
        0
    }
}

pub fn handle_describe_cluster(
    broker: &Broker,
    access: &Access,
    request: DescribeClusterRequest,
    _version: i16,
    listener: &str,
) -> DescribeClusterResponse {
    let image = broker.admin.image();
    DescribeClusterResponse::default()
        .with_error_code(code::NONE)
        .with_endpoint_type(1)
        .with_cluster_id(str_bytes(&image.cluster_id))
        .with_controller_id(BrokerId(controller_id(broker, &image)))
        .with_cluster_authorized_operations(if request.include_cluster_authorized_operations {
            cluster_authorized_operations(access)
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        })
        .with_brokers(
            image
                .brokers
                .values()
                .filter(|b| !b.fenced)
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.node_id))
                        .with_host(str_bytes(b.address_for(listener).0))
                        .with_port(b.address_for(listener).1)
                        .with_rack(b.rack.as_deref().map(str_bytes))
                })
                .collect(),
        )
}

pub fn handle_describe_topic_partitions(
    broker: &Broker,
    access: &Access,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let image = broker.admin.image();
    let mut names: Vec<String> = if request.topics.is_empty() {
        // All topics: those the sender may not DESCRIBE are left out.
        image
            .topics
            .values()
            .map(|t| t.name.clone())
            .filter(|n| access.topic(Operation::Describe, n))
            .collect()
    } else {
        request
            .topics
            .iter()
            .map(|t| t.name.0.as_str().to_string())
            .collect()
    };
    names.sort();
    names.dedup();
    let limit = request.response_partition_limit.clamp(1, 2000) as usize;
    let (cursor_topic, cursor_partition) = match &request.cursor {
        Some(c) => (
            Some(c.topic_name.0.as_str().to_string()),
            c.partition_index.max(0) as usize,
        ),
        None => (None, 0),
    };
    let mut budget = limit;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        if let Some(ct) = &cursor_topic {
            if &name < ct {
                continue;
            }
        }
        if !access.topic(Operation::Describe, &name) {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                    .with_name(Some(TopicName(str_bytes(&name))))
                    .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
            );
            continue;
        }
        let Some(topic) = image.topic_by_name(&name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION)
                    .with_name(Some(TopicName(str_bytes(&name))))
                    .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
            );
            continue;
        };
        let start = if cursor_topic.as_deref() == Some(name.as_str()) {
            cursor_partition
        } else {
            0
        };
        let mut partitions = Vec::new();
        for (i, p) in topic.partitions.iter().enumerate().skip(start) {
            if budget == 0 {
                next_cursor = Some(
                    Cursor::default()
                        .with_topic_name(TopicName(str_bytes(&name)))
                        .with_partition_index(i as i32),
                );
                break;
            }
            budget -= 1;
            partitions.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(i as i32)
                    .with_leader_id(BrokerId(p.leader))
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(p.replicas.iter().map(|&b| BrokerId(b)).collect())
                    .with_isr_nodes(p.isr.iter().map(|&b| BrokerId(b)).collect())
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new())),
            );
        }
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(TopicName(str_bytes(&name))))
                .with_topic_id(topic.id)
                .with_is_internal(is_internal(&name))
                .with_partitions(partitions)
                .with_topic_authorized_operations(
                    access.authorized_operations(ResourceType::Topic, &name),
                ),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}
