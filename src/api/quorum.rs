//! DescribeQuorum (API 55): the metadata quorum as its leader sees it, for
//! `kafka-metadata-quorum describe --status` and admin clients. Answered by any broker,
//! which asks the active controller (Kafka forwards it the same way).

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};

use super::{str_bytes, Broker};
use crate::error::{code, metadata_error_code};
use crate::metadata::{ControllerReply, ControllerRequest};

/// Kafka's name for the metadata log's topic.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle_describe_quorum(
    broker: &Broker,
    request: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let asks_for_metadata = request.topics.iter().any(|t| {
        t.topic_name.0.as_str() == METADATA_TOPIC
            && t.partitions.iter().any(|p| p.partition_index == 0)
    });
    if !asks_for_metadata {
        return DescribeQuorumResponse::default()
            .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION)
            .with_error_message(Some(str_bytes("only __cluster_metadata-0 has a quorum")));
    }
    let status = match broker
        .admin
        .quorum
        .call_controller(ControllerRequest::DescribeQuorum)
        .await
    {
        Ok(ControllerReply::Quorum(status)) => status,
        Ok(other) => {
            return DescribeQuorumResponse::default()
                .with_error_code(code::UNKNOWN_SERVER_ERROR)
                .with_error_message(Some(str_bytes(&format!("{other:?}"))))
        }
        Err(e) => {
            return DescribeQuorumResponse::default()
                .with_error_code(metadata_error_code(&e))
                .with_error_message(Some(str_bytes(&e.to_string())))
        }
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let replica = |v: &crate::metadata::VoterStatus| {
        let fetched = v.last_fetch_ms_ago.map_or(-1, |ago| now_ms - ago as i64);
        ReplicaState::default()
            .with_replica_id(BrokerId(v.id as i32))
            .with_log_end_offset(v.log_end_offset)
            .with_last_fetch_timestamp(fetched)
            .with_last_caught_up_timestamp(-1)
    };
    let voters = status.voters.iter().map(replica).collect();
    let observers = status.observers.iter().map(replica).collect();
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_error_code(code::NONE)
        .with_leader_id(BrokerId(status.leader as i32))
        .with_leader_epoch(status.term as i32)
        .with_high_watermark(status.high_watermark as i64)
        .with_current_voters(voters)
        .with_observers(observers);
    let listener = broker
        .config
        .controller_listener
        .clone()
        .unwrap_or_default();
    let nodes = broker
        .config
        .voters
        .iter()
        .map(|(id, addr)| {
            Node::default()
                .with_node_id(BrokerId(*id))
                .with_listeners(vec![Listener::default()
                    .with_name(str_bytes(&listener))
                    .with_host(str_bytes(&addr.host))
                    .with_port(addr.port)])
        })
        .collect();
    DescribeQuorumResponse::default()
        .with_error_code(code::NONE)
        .with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
            .with_partitions(vec![partition])])
        .with_nodes(nodes)
}
