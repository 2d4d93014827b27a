//! Operations APIs: ElectLeaders (API 43, preferred and unclean elections through the
//! active controller), AlterPartitionReassignments / ListPartitionReassignments (45,
//! 46, KIP-455) and DescribeLogDirs (API 35, partition sizes per log dir).

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    DescribeLogDirsRequest, DescribeLogDirsResponse, ElectLeadersRequest, ElectLeadersResponse,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};

use super::{str_bytes, Broker};
use crate::error::{code, election_code, metadata_error_code, reassign_code};
use crate::metadata::{ControllerReply, ControllerRequest};

const PREFERRED: i8 = 0;

pub async fn handle_elect_leaders(
    broker: &Broker,
    request: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    let preferred = version == 0 || request.election_type == PREFERRED;
    let image = broker.admin.image();
    // Names the controller cannot know (unknown topics) are answered here.
    let mut unknown: Vec<(String, i32)> = Vec::new();
    let targets = request.topic_partitions.as_ref().map(|tps| {
        let mut out = Vec::new();
        for tp in tps {
            let name = tp.topic.0.as_str();
            match image.topic_by_name(name) {
                Some(t) => out.extend(tp.partitions.iter().map(|p| (t.id, *p))),
                None => unknown.extend(tp.partitions.iter().map(|p| (name.to_string(), *p))),
            }
        }
        out
    });
    let results = match broker
        .admin
        .quorum
        .call_controller(ControllerRequest::ElectLeaders {
            preferred,
            partitions: targets,
        })
        .await
    {
        Ok(ControllerReply::Elected(results)) => results,
        Ok(other) => {
            return ElectLeadersResponse::default()
                .with_error_code(code::UNKNOWN_SERVER_ERROR)
                .with_replica_election_results(vec![ReplicaElectionResult::default()
                    .with_topic(TopicName(str_bytes(&format!("{other:?}"))))])
        }
        Err(e) => return ElectLeadersResponse::default().with_error_code(metadata_error_code(&e)),
    };
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for (topic_id, partition, error) in results {
        let name = image
            .topic_by_id(&topic_id)
            .map(|t| t.name.clone())
            .unwrap_or_default();
        by_topic.entry(name).or_default().push(
            PartitionResult::default()
                .with_partition_id(partition)
                .with_error_code(election_code(error)),
        );
    }
    for (name, partition) in unknown {
        by_topic.entry(name).or_default().push(
            PartitionResult::default()
                .with_partition_id(partition)
                .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION),
        );
    }
    ElectLeadersResponse::default()
        .with_error_code(code::NONE)
        .with_replica_election_results(
            by_topic
                .into_iter()
                .map(|(name, results)| {
                    ReplicaElectionResult::default()
                        .with_topic(TopicName(str_bytes(&name)))
                        .with_partition_result(results)
                })
                .collect(),
        )
}

/// (total, usable) bytes of the file system holding `dir`.
fn disk_space(dir: &std::path::Path) -> (i64, i64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return (-1, -1);
    };
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut st) != 0 {
            return (-1, -1);
        }
        let block = st.f_frsize as i64;
        (st.f_blocks as i64 * block, st.f_bavail as i64 * block)
    }
}

pub fn handle_describe_log_dirs(
    broker: &Broker,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let wanted = |topic: &str, partition: i32| match &request.topics {
        None => true,
        Some(ts) => ts
            .iter()
            .any(|t| t.topic.0.as_str() == topic && t.partitions.contains(&partition)),
    };
    let dirs = broker.replicas.log_dirs();
    let mut per_dir: Vec<BTreeMap<String, Vec<DescribeLogDirsPartition>>> =
        vec![BTreeMap::new(); dirs.len()];
    for p in broker.replicas.all() {
        if !wanted(&p.topic, p.index) {
            continue;
        }
        let dir = p.log_dir();
        let Some(slot) = dirs.iter().position(|d| dir.starts_with(d)) else {
            continue;
        };
        per_dir[slot].entry(p.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(p.index)
                .with_partition_size(p.size_bytes() as i64)
                .with_offset_lag(0)
                .with_is_future_key(false),
        );
    }
    let results = dirs
        .iter()
        .zip(per_dir)
        .map(|(dir, topics)| {
            let (total, usable) = disk_space(dir);
            DescribeLogDirsResult::default()
                .with_error_code(code::NONE)
                .with_log_dir(str_bytes(&dir.display().to_string()))
                .with_total_bytes(total)
                .with_usable_bytes(usable)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(name, mut partitions)| {
                            partitions.sort_by_key(|p| p.partition_index);
                            DescribeLogDirsTopic::default()
                                .with_name(TopicName(str_bytes(&name)))
                                .with_partitions(partitions)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeLogDirsResponse::default()
        .with_error_code(code::NONE)
        .with_results(results)
}

pub async fn handle_alter_partition_reassignments(
    broker: &Broker,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let image = broker.admin.image();
    let mut targets = Vec::new();
    let mut unknown = Vec::new();
    // KIP-860 (v1): with allow_replication_factor_change=false a target of another
    // size than the partition's replicas (before any reassignment in progress) is
    // refused with INVALID_REPLICATION_FACTOR.
    let mut refused: Vec<(String, i32, String)> = Vec::new();
    for t in &request.topics {
        let name = t.name.0.as_str();
        let Some(topic) = image.topic_by_name(name) else {
            unknown.extend(
                t.partitions
                    .iter()
                    .map(|p| (name.to_string(), p.partition_index)),
            );
            continue;
        };
        for p in &t.partitions {
            let replicas = p
                .replicas
                .as_ref()
                .map(|r| r.iter().map(|b| b.0).collect::<Vec<i32>>());
            let current = topic
                .partitions
                .get(p.partition_index.max(0) as usize)
                .map(|cur| cur.replicas.len() - cur.adding.len());
            if let (false, Some(new), Some(current)) =
                (request.allow_replication_factor_change, &replicas, current)
            {
                if new.len() != current {
                    refused.push((
                        name.to_string(),
                        p.partition_index,
                        format!(
                            "the replication factor would change from {current} to {}",
                            new.len()
                        ),
                    ));
                    continue;
                }
            }
            targets.push((topic.id, p.partition_index, replicas));
        }
    }
    let results = match broker
        .admin
        .quorum
        .call_controller(ControllerRequest::Reassign(targets))
        .await
    {
        Ok(ControllerReply::Reassigned(r)) => r,
        Ok(other) => {
            return AlterPartitionReassignmentsResponse::default()
                .with_error_code(code::UNKNOWN_SERVER_ERROR)
                .with_error_message(Some(str_bytes(&format!("{other:?}"))))
        }
        Err(e) => {
            return AlterPartitionReassignmentsResponse::default()
                .with_error_code(metadata_error_code(&e))
                .with_error_message(Some(str_bytes(&e.to_string())))
        }
    };
    let mut by_topic: BTreeMap<String, Vec<ReassignablePartitionResponse>> = BTreeMap::new();
    for (topic_id, partition, outcome) in results {
        let name = image
            .topic_by_id(&topic_id)
            .map(|t| t.name.clone())
            .unwrap_or_default();
        let message = match &outcome {
            crate::metadata::ReassignOutcome::InvalidAssignment(m) => Some(str_bytes(m)),
            _ => None,
        };
        by_topic.entry(name).or_default().push(
            ReassignablePartitionResponse::default()
                .with_partition_index(partition)
                .with_error_code(reassign_code(&outcome))
                .with_error_message(message),
        );
    }
    for (name, partition) in unknown {
        by_topic.entry(name).or_default().push(
            ReassignablePartitionResponse::default()
                .with_partition_index(partition)
                .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION),
        );
    }
    for (name, partition, message) in refused {
        by_topic.entry(name).or_default().push(
            ReassignablePartitionResponse::default()
                .with_partition_index(partition)
                .with_error_code(code::INVALID_REPLICATION_FACTOR)
                .with_error_message(Some(str_bytes(&message))),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_error_code(code::NONE)
        .with_responses(
            by_topic
                .into_iter()
                .map(|(name, partitions)| {
                    ReassignableTopicResponse::default()
                        .with_name(TopicName(str_bytes(&name)))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

pub fn handle_list_partition_reassignments(
    broker: &Broker,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let image = broker.admin.image();
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let mut topics: Vec<_> = image.topics.values().collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let out = topics
        .into_iter()
        .filter_map(|t| {
            let wanted: Option<&Vec<i32>> = match &request.topics {
                None => None,
                Some(ts) => Some(
                    &ts.iter()
                        .find(|x| x.name.0.as_str() == t.name)?
                        .partition_indexes,
                ),
            };
            let partitions: Vec<OngoingPartitionReassignment> = t
                .partitions
                .iter()
                .enumerate()
                .filter(|(i, p)| {
                    (!p.adding.is_empty() || !p.removing.is_empty())
                        && wanted.is_none_or(|w| w.contains(&(*i as i32)))
                })
                .map(|(i, p)| {
                    OngoingPartitionReassignment::default()
                        .with_partition_index(i as i32)
                        .with_replicas(ids(&p.replicas))
                        .with_adding_replicas(ids(&p.adding))
                        .with_removing_replicas(ids(&p.removing))
                })
                .collect();
            (!partitions.is_empty()).then(|| {
                OngoingTopicReassignment::default()
                    .with_name(TopicName(str_bytes(&t.name)))
                    .with_partitions(partitions)
            })
        })
        .collect();
    ListPartitionReassignmentsResponse::default()
        .with_error_code(code::NONE)
        .with_topics(out)
}
