//! ListOffsets for the latest offset of a set of partitions, as a consumer asks it:
//! built by the broker (group lag of partitions led elsewhere) and by the
//! `consumer-groups` command alike.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, ListOffsetsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

/// ListOffsets' timestamp for "the offset the next record will get".
const LATEST: i64 = -1;

/// A request for the latest offset (read-uncommitted, no leader epoch check) of each
/// (topic, partition), one entry per topic.
pub fn latest_offsets_request<'a>(
    partitions: impl IntoIterator<Item = (&'a str, i32)>,
) -> ListOffsetsRequest {
    let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
    for (topic, partition) in partitions {
        topics.entry(topic).or_default().push(
            ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_current_leader_epoch(-1)
                .with_timestamp(LATEST),
        );
    }
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(0)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

/// The offsets a ListOffsets response gives, by (topic, partition); partitions that
/// answered an error are left out.
pub fn answered_offsets(
    response: ListOffsetsResponse,
) -> impl Iterator<Item = ((String, i32), i64)> {
    response.topics.into_iter().flat_map(|t| {
        let name = t.name.0.to_string();
        t.partitions
            .into_iter()
            .filter(|p| p.error_code == 0 && p.offset >= 0)
            .map(move |p| ((name.clone(), p.partition_index), p.offset))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_topic_entry_per_topic_with_every_partition_asked_latest() {
        let r = latest_offsets_request([("a", 0), ("b", 2), ("a", 1)]);
        assert_eq!(r.topics.len(), 2);
        assert_eq!(r.topics[0].name.0.as_str(), "a");
        let a: Vec<i32> = r.topics[0]
            .partitions
            .iter()
            .map(|p| p.partition_index)
            .collect();
        assert_eq!(a, [0, 1]);
        assert!(r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .all(|p| p.timestamp == LATEST && p.current_leader_epoch == -1));
        assert_eq!(r.replica_id, BrokerId(-1));
    }
}
