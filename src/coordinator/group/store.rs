//! The records the group coordinator keeps in `__consumer_offsets`: committed offsets
//! and group membership snapshots, keyed so that the last record of a key wins
//! (compaction-friendly), with null values as tombstones.
//!
//! Keys and values are small JSON documents with a version field; they go through the
//! same partition log as user data (record batches appended with acks=all).

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde::{Deserialize, Serialize};

use super::consumer::ConsumerGroupSnapshot;
use super::state::{CommittedOffset, GroupSnapshot};

pub use crate::metadata::OFFSETS_TOPIC;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
    ConsumerGroup {
        group: String,
    },
}

impl StoreKey {
    pub fn group(&self) -> &str {
        match self {
            StoreKey::Offset { group, .. }
            | StoreKey::Group { group }
            | StoreKey::ConsumerGroup { group } => group,
        }
    }
}

/// A decoded record: the key and its value (None = tombstone).
#[derive(Debug, Clone, PartialEq)]
pub enum StoreValue {
    Offset(CommittedOffset),
    Group(GroupSnapshot),
    ConsumerGroup(ConsumerGroupSnapshot),
    Tombstone,
}

#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    v: u8,
    #[serde(flatten)]
    body: T,
}

/// Java's `String.hashCode`, so groups map to the same `__consumer_offsets`
/// partition as in Kafka (`abs(hash) % partitions`).
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let h = java_string_hash(group);
    // Kafka's Utils.abs maps i32::MIN to 0.
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

fn encode_value(value: &StoreValue) -> Option<Bytes> {
    let json = match value {
        StoreValue::Offset(o) => serde_json::to_vec(&Versioned { v: 1, body: o }),
        StoreValue::Group(g) => serde_json::to_vec(&Versioned { v: 1, body: g }),
        StoreValue::ConsumerGroup(g) => serde_json::to_vec(&Versioned { v: 1, body: g }),
        StoreValue::Tombstone => return None,
    };
    json.ok().map(Bytes::from)
}

/// One record batch holding `entries`, ready to append.
pub fn encode_batch(entries: &[(StoreKey, StoreValue)], now_ms: i64) -> anyhow::Result<Bytes> {
    let records: Vec<Record> = entries
        .iter()
        .enumerate()
        .map(|(i, (key, value))| {
            Ok(Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: now_ms,
                key: Some(Bytes::from(serde_json::to_vec(&Versioned {
                    v: 1,
                    body: key,
                })?)),
                value: encode_value(value),
                headers: IndexMap::new(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(buf.freeze())
}

/// Decodes every record in `bytes` (whole batches). Records that are not ours are
/// skipped rather than failing the load.
pub fn decode_batches(mut bytes: Bytes) -> Vec<(StoreKey, StoreValue)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Ok(set) = RecordBatchDecoder::decode(&mut bytes) else {
            tracing::warn!("undecodable batch in {OFFSETS_TOPIC}; skipping the rest of this chunk");
            break;
        };
        for r in set.records {
            let Some(k) = r
                .key
                .as_ref()
                .and_then(|k| serde_json::from_slice::<Versioned<StoreKey>>(k).ok())
            else {
                continue;
            };
            let value = match (&k.body, r.value) {
                (_, None) => StoreValue::Tombstone,
                (StoreKey::Offset { .. }, Some(v)) => {
                    match serde_json::from_slice::<Versioned<CommittedOffset>>(&v) {
                        Ok(o) => StoreValue::Offset(o.body),
                        Err(_) => continue,
                    }
                }
                (StoreKey::ConsumerGroup { .. }, Some(v)) => {
                    match serde_json::from_slice::<Versioned<ConsumerGroupSnapshot>>(&v) {
                        Ok(g) => StoreValue::ConsumerGroup(g.body),
                        Err(_) => continue,
                    }
                }
                (StoreKey::Group { .. }, Some(v)) => {
                    match serde_json::from_slice::<Versioned<GroupSnapshot>>(&v) {
                        Ok(g) => StoreValue::Group(g.body),
                        Err(_) => continue,
                    }
                }
            };
            out.push((k.body, value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_kafka_placement() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(
            java_string_hash("my-group"),
            "my-group"
                .chars()
                .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
        );
        for g in ["a", "group-1", "ÄÖÜ", "x".repeat(100).as_str()] {
            let p = partition_for(g, 50);
            assert!((0..50).contains(&p));
        }
    }

    #[test]
    fn records_round_trip_with_tombstones() {
        let entries = vec![
            (
                StoreKey::Offset {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 3,
                },
                StoreValue::Offset(CommittedOffset {
                    offset: 42,
                    leader_epoch: 0,
                    metadata: "meta".into(),
                    commit_timestamp: 7,
                }),
            ),
            (StoreKey::Group { group: "g".into() }, StoreValue::Tombstone),
        ];
        let batch = encode_batch(&entries, 1).unwrap();
        assert_eq!(decode_batches(batch), entries);
    }
}
