//! Produce: validates and appends each partition's batches through its replica and
//! answers per partition; acks=0 gets no response at all, as in Kafka.

use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use tracing::{debug, warn};

use super::authorize::Access;
use super::{leader_hint, partition_exists, str_bytes, Broker};
use crate::error::{code, partition_error_code};
use crate::metadata::acl::Operation;
use crate::metrics::request::remote_wait;
use crate::metrics::topic::TopicCounter;
use crate::replication::{Acks, PartitionError};

fn partition_error(index: i32, error: i16, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(error)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(|m| str_bytes(&m)))
}

/// NOT_LEADER_OR_FOLLOWER with the current leader (KIP-951), so the client re-routes
/// without a metadata round trip; the leader's endpoint goes into `endpoints`.
fn not_leader(
    broker: &Broker,
    topic: &str,
    index: i32,
    listener: &str,
    endpoints: &mut Vec<NodeEndpoint>,
) -> PartitionProduceResponse {
    let mut response = partition_error(
        index,
        code::NOT_LEADER_OR_FOLLOWER,
        Some("this broker is not the partition's leader".into()),
    );
    if let Some(hint) = leader_hint(broker, topic, index, listener) {
        response = response.with_current_leader(
            LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(hint.leader))
                .with_leader_epoch(hint.leader_epoch),
        );
        if !endpoints.iter().any(|e| e.node_id.0 == hint.leader) {
            endpoints.push(
                NodeEndpoint::default()
                    .with_node_id(BrokerId(hint.leader))
                    .with_host(str_bytes(&hint.host))
                    .with_port(hint.port)
                    .with_rack(hint.rack.as_deref().map(str_bytes)),
            );
        }
    }
    response
}

/// Whether a refused produce partition counts in FailedProduceRequests: as in Kafka,
/// not when the client was routed wrong or sent a batch too large or corrupt, which
/// are the client's to fix, nor for a failed disk, which is counted elsewhere.
fn counts_as_failed_produce(error: i16) -> bool {
    !matches!(
        error,
        code::NOT_LEADER_OR_FOLLOWER
            | code::UNKNOWN_TOPIC_OR_PARTITION
            | code::MESSAGE_TOO_LARGE
            | code::CORRUPT_MESSAGE
            | code::KAFKA_STORAGE_ERROR
    )
}

pub async fn handle_produce(
    broker: &Broker,
    access: &Access,
    request: ProduceRequest,
    _version: i16,
    listener: &str,
) -> Option<ProduceResponse> {
    let acks = Acks::from_kafka(request.acks);
    let mut endpoints = Vec::new();
    // acks=all appends waiting for the ISR: (topic slot, partition slot, replica, last offset).
    let mut waits = Vec::new();
    let timeout = std::time::Duration::from_millis(request.timeout_ms.max(0) as u64);
    let mut responses = Vec::with_capacity(request.topic_data.len());
    // A transactional producer needs WRITE on its transactional id; every topic WRITE
    // (which also covers idempotence, KIP-679).
    let transaction_refused = request
        .transactional_id
        .as_ref()
        .is_some_and(|id| !access.transactional_id(Operation::Write, id));
    for topic in request.topic_data {
        let name = topic.name.0.as_str().to_string();
        let refused = if transaction_refused {
            Some(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        } else if !access.topic(Operation::Write, &name) {
            Some(code::TOPIC_AUTHORIZATION_FAILED)
        } else {
            None
        };
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let index = data.index;
            if let Some(error) = refused {
                partitions.push(partition_error(index, error, None));
                continue;
            }
            let Some(acks) = acks else {
                partitions.push(partition_error(
                    index,
                    code::INVALID_REQUIRED_ACKS,
                    Some(format!("acks must be 0, 1 or -1, got {}", request.acks)),
                ));
                continue;
            };
            if name.starts_with("__consumer_offsets") || name.starts_with("__transaction_state") {
                partitions.push(partition_error(
                    index,
                    code::INVALID_TOPIC_EXCEPTION,
                    Some(format!("cannot produce to internal topic {name}")),
                ));
                continue;
            }
            let Some(partition) = broker.replicas.get(&name, index) else {
                partitions.push(if partition_exists(broker, &name, index) {
                    not_leader(broker, &name, index, listener, &mut endpoints)
                } else {
                    partition_error(index, code::UNKNOWN_TOPIC_OR_PARTITION, None)
                });
                continue;
            };
            partition.stats.inc(TopicCounter::TotalProduceRequests);
            let Some(records) = data.records else {
                partitions.push(partition_error(
                    index,
                    code::CORRUPT_MESSAGE,
                    Some("no records".into()),
                ));
                continue;
            };
            match partition.append_produce(records, acks).await {
                Ok(info) => {
                    debug!(topic = %name, partition = index, base_offset = info.base_offset, duplicate = info.duplicate, "appended");
                    if acks == Acks::All {
                        // Answered once the ISR has it (below, all partitions at once).
                        waits.push((
                            responses.len(),
                            partitions.len(),
                            partition.clone(),
                            info.last_offset,
                        ));
                    }
                    partitions.push(
                        PartitionProduceResponse::default()
                            .with_index(index)
                            .with_error_code(code::NONE)
                            .with_base_offset(info.base_offset)
                            .with_log_append_time_ms(info.log_append_time)
                            .with_log_start_offset(info.log_start_offset),
                    );
                }
                Err(PartitionError::NotLeader) => {
                    partitions.push(not_leader(broker, &name, index, listener, &mut endpoints));
                }
                Err(e) => {
                    let error = partition_error_code(&e);
                    if counts_as_failed_produce(error) {
                        partition.stats.inc(TopicCounter::FailedProduceRequests);
                    }
                    warn!(topic = %name, partition = index, error = %e, code = error, "produce refused");
                    partitions.push(partition_error(index, error, Some(e.to_string())));
                }
            }
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions),
        );
    }
    if acks == Some(Acks::None) {
        return None;
    }
    // All partitions' waits side by side: their time counts once.
    let outcomes = remote_wait(futures::future::join_all(
        waits
            .iter()
            .map(|(_, _, p, last)| p.wait_for_replication(*last, timeout)),
    ))
    .await;
    for ((t, i, p, _), outcome) in waits.iter().zip(outcomes) {
        if let Err(e) = outcome {
            let name = responses[*t].name.0.as_str().to_string();
            let index = responses[*t].partition_responses[*i].index;
            warn!(topic = %name, partition = index, error = %e, "acks=all not satisfied");
            responses[*t].partition_responses[*i] = match e {
                PartitionError::NotLeader => {
                    not_leader(broker, &name, p.index, listener, &mut endpoints)
                }
                e => partition_error(index, partition_error_code(&e), Some(e.to_string())),
            };
        }
    }
    Some(
        ProduceResponse::default()
            .with_responses(responses)
            .with_node_endpoints(endpoints),
    )
}
