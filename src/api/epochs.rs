//! OffsetForLeaderEpoch (API 23): where a leader epoch ended in the leader's log.
//! Followers truncate by it after a leader change or a crash (never by the high
//! watermark alone, KIP-101); consumers use it to detect truncation (KIP-320).

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::authorize::Access;
use super::{partition_exists, Broker};
use crate::error::{code, partition_error_code};
use crate::metadata::acl::Operation;

pub fn handle_offset_for_leader_epoch(
    broker: &Broker,
    access: &Access,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    // CLUSTER_ACTION (brokers) allows every topic; anyone else needs DESCRIBE on it.
    let cluster_action = access.cluster(Operation::ClusterAction);
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.as_str().to_string();
            let denied = !cluster_action && !access.topic(Operation::Describe, &name);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let answer = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    if denied {
                        return answer.with_error_code(code::TOPIC_AUTHORIZATION_FAILED);
                    }
                    let Some(partition) = broker.replicas.get(&name, p.partition) else {
                        let error = if partition_exists(broker, &name, p.partition) {
                            code::NOT_LEADER_OR_FOLLOWER
                        } else {
                            code::UNKNOWN_TOPIC_OR_PARTITION
                        };
                        return answer.with_error_code(error);
                    };
                    match partition
                        .leader_end_offset_for_epoch(p.current_leader_epoch, p.leader_epoch)
                    {
                        Ok((epoch, end)) => answer
                            .with_error_code(code::NONE)
                            .with_leader_epoch(epoch)
                            .with_end_offset(end),
                        Err(e) => answer.with_error_code(partition_error_code(&e)),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
