//! CreateTopics, DeleteTopics, CreatePartitions and DeleteRecords.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteRecordsRequest, DeleteRecordsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    TopicName,
};
use uuid::Uuid;

use super::authorize::Access;
use super::{str_bytes, Broker};
use crate::config::topic::TOPIC_KEYS;
use crate::error::{code, partition_error_code};
use crate::metadata::acl::Operation;

pub async fn handle_create_topics(
    broker: &Broker,
    access: &Access,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    // CREATE on the cluster covers every topic; otherwise CREATE on each.
    let create_any = access.cluster(Operation::Create);
    let mut results = Vec::with_capacity(request.topics.len());
    let mut seen = std::collections::HashSet::new();
    for topic in request.topics {
        let name = topic.name.0.as_str().to_string();
        let result = CreatableTopicResult::default()
            .with_name(topic.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        if !seen.insert(name.clone()) {
            results.push(
                result
                    .with_error_code(code::INVALID_REQUEST)
                    .with_error_message(Some(str_bytes(
                        "topic named more than once in the request",
                    ))),
            );
            continue;
        }
        if !create_any && !access.topic(Operation::Create, &name) {
            results.push(
                result
                    .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                    .with_error_message(Some(str_bytes("Authorization failed."))),
            );
            continue;
        }
        let mut configs = BTreeMap::new();
        let mut bad_config = None;
        for c in &topic.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.as_str().to_string(), v.as_str().to_string());
                }
                None => bad_config = Some(format!("config '{}' has a null value", c.name.as_str())),
            }
        }
        if let Some(message) = bad_config {
            results.push(
                result
                    .with_error_code(code::INVALID_CONFIG)
                    .with_error_message(Some(str_bytes(&message))),
            );
            continue;
        }
        let assignments: Vec<Vec<i32>> = {
            let mut a: Vec<_> = topic
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect::<Vec<i32>>(),
                    )
                })
                .collect();
            a.sort_by_key(|(i, _)| *i);
            if a.iter().enumerate().any(|(pos, (i, _))| *i != pos as i32) {
                results.push(
                    result
                        .with_error_code(code::INVALID_REPLICA_ASSIGNMENT)
                        .with_error_message(Some(str_bytes(
                            "partition indexes in the assignment must be 0..n",
                        ))),
                );
                continue;
            }
            a.into_iter().map(|(_, b)| b).collect()
        };
        match broker
            .admin
            .create_topic(
                &name,
                topic.num_partitions,
                topic.replication_factor,
                assignments,
                configs.clone(),
                request.validate_only,
            )
            .await
        {
            Ok(created) => {
                let image = broker.admin.image();
                let effective = broker
                    .config
                    .effective_topic_configs(&configs, &image.broker_configs);
                let described: Vec<CreatableTopicConfigs> = if version >= 5 {
                    TOPIC_KEYS
                        .iter()
                        .map(|k| {
                            let (_, value, source) = broker
                                .config
                                .topic_synonyms(k, &configs, &image.broker_configs)
                                .swap_remove(0);
                            let _ = &effective;
                            CreatableTopicConfigs::default()
                                .with_name(str_bytes(k.spec.name))
                                .with_value(Some(str_bytes(&value)))
                                .with_config_source(source as i8)
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let result =
                    result
                        .with_error_code(code::NONE)
                        .with_topic_id(if request.validate_only {
                            Uuid::nil()
                        } else {
                            created.id
                        });
                // Its settings are shown only to who may DESCRIBE_CONFIGS it.
                results.push(if access.topic(Operation::DescribeConfigs, &name) {
                    result
                        .with_num_partitions(created.num_partitions)
                        .with_replication_factor(created.replication_factor)
                        .with_configs(Some(described))
                } else {
                    result.with_topic_config_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                });
            }
            Err(e) => results.push(
                result
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(&e.message))),
            ),
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub async fn handle_delete_topics(
    broker: &Broker,
    access: &Access,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // DELETE on the cluster covers every topic; otherwise DESCRIBE (to learn whether
    // it exists) and DELETE on each.
    let delete_any = access.cluster(Operation::Delete);
    let may = |op: Operation, topic: &str| delete_any || access.topic(op, topic);
    // v6 names topics by name or id; older versions by name only.
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        request
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.as_ref().map(|n| n.0.as_str().to_string()),
                    t.topic_id,
                )
            })
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|n| (Some(n.0.as_str().to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let image = broker.admin.image();
        let found = match &name {
            Some(n) => image.topic_by_name(n).cloned(),
            None => image.topic_by_id(&id).cloned(),
        };
        let result = DeletableTopicResult::default()
            .with_name(name.as_deref().map(|n| TopicName(str_bytes(n))))
            .with_topic_id(id);
        if let Some(n) = &name {
            if !may(Operation::Describe, n) {
                responses.push(result.with_error_code(code::TOPIC_AUTHORIZATION_FAILED));
                continue;
            }
        }
        let Some(topic) = found else {
            let error = if name.is_some() {
                code::UNKNOWN_TOPIC_OR_PARTITION
            } else {
                code::UNKNOWN_TOPIC_ID
            };
            responses.push(result.with_error_code(error));
            continue;
        };
        if !may(Operation::Delete, &topic.name) {
            // By id, the name is shown only to who may DESCRIBE the topic.
            let shown =
                may(Operation::Describe, &topic.name).then(|| TopicName(str_bytes(&topic.name)));
            responses.push(
                result
                    .with_name(shown)
                    .with_error_code(code::TOPIC_AUTHORIZATION_FAILED),
            );
            continue;
        }
        let result = result
            .with_name(Some(TopicName(str_bytes(&topic.name))))
            .with_topic_id(topic.id);
        match broker.admin.delete_topic(&topic).await {
            Ok(()) => {
                // Before answering, so a client that asks right after sees none (the
                // metadata watch in `server` does the same for deletions from elsewhere).
                let gone = std::collections::BTreeSet::from([topic.name.clone()]);
                broker.groups.forget_topics(&gone).await;
                responses.push(result.with_error_code(code::NONE))
            }
            Err(e) => responses.push(
                result
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(&e.message))),
            ),
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub async fn handle_create_partitions(
    broker: &Broker,
    access: &Access,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.as_str().to_string();
        if !access.topic(Operation::Alter, &name) {
            results.push(
                CreatePartitionsTopicResult::default()
                    .with_name(topic.name)
                    .with_error_code(code::TOPIC_AUTHORIZATION_FAILED),
            );
            continue;
        }
        let assignments = topic.assignments.map(|a| {
            a.into_iter()
                .map(|x| x.broker_ids.into_iter().map(|b| b.0).collect())
                .collect()
        });
        let result = CreatePartitionsTopicResult::default().with_name(topic.name);
        match broker
            .admin
            .create_partitions(&name, topic.count, assignments, request.validate_only)
            .await
        {
            Ok(()) => results.push(result.with_error_code(code::NONE)),
            Err(e) => results.push(
                result
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(&e.message))),
            ),
        }
    }
    CreatePartitionsResponse::default().with_results(results)
}

pub fn handle_delete_records(
    broker: &Broker,
    access: &Access,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.as_str().to_string();
            let denied = !access.topic(Operation::Delete, &name);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    if denied {
                        return result.with_error_code(code::TOPIC_AUTHORIZATION_FAILED);
                    }
                    match broker.replicas.get(&name, p.partition_index) {
                        None => result.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION),
                        Some(partition) => match partition.delete_records(p.offset) {
                            Ok(low) => result.with_error_code(code::NONE).with_low_watermark(low),
                            Err(e) => result.with_error_code(partition_error_code(&e)),
                        },
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
