//! Operations APIs: ElectLeaders (API 43, preferred and unclean elections through the
//! active controller) and DescribeLogDirs (API 35, partition sizes per log dir).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    DescribeLogDirsRequest, DescribeLogDirsResponse, ElectLeadersRequest, ElectLeadersResponse,
    TopicName,
};

use super::{str_bytes, Broker};
use crate::error::{code, election_code, metadata_error_code};
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
