//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4,
//! KIP-1005), latest tiered (-5) and by timestamp. A timestamp lookup searches the
//! tiered range first (through the remote segments' time indexes), then the local log;
//! it decodes only the batch found to return the first record at or after the target.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;
use tracing::warn;

use super::authorize::Access;
use super::Broker;
use crate::error::{code, partition_error_code};
use crate::log::batch::BatchHeader;
use crate::metadata::acl::Operation;
use crate::replication::{Partition, PartitionError};

pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL: i64 = -4;
pub const LATEST_TIERED: i64 = -5;

/// How long a timestamp lookup in the tiered range may take when the request does not
/// say (ListOffsets before v10).
const DEFAULT_REMOTE_TIMEOUT_MS: u64 = 15_000;

/// (offset, timestamp) of the first record in `batch` matching `pick`.
fn find_record(
    batch: Bytes,
    pick: impl Fn(&[(i64, i64)]) -> Option<(i64, i64)>,
) -> Option<(i64, i64)> {
    let header = BatchHeader::parse(&batch).ok()?;
    if header.is_log_append_time() {
        // Every record carries the batch's append time.
        return pick(&[(header.base_offset, header.max_timestamp)]);
    }
    let mut buf = batch;
    let set = RecordBatchDecoder::decode(&mut buf).ok()?;
    let records: Vec<(i64, i64)> = set
        .records
        .iter()
        .map(|r| (r.offset, r.timestamp))
        .collect();
    pick(&records)
}

async fn lookup(
    broker: &Broker,
    partition: &Partition,
    timestamp: i64,
    remote_timeout: Duration,
) -> Result<(i64, i64), PartitionError> {
    let offsets = partition.offsets();
    if timestamp >= 0 {
        let image = broker.admin.image();
        let remote = broker
            .replicas
            .remote_batch_for_timestamp(&image, partition, timestamp);
        // Bounded: requests on a connection are answered in order, so a hanging
        // object store must not hold up the ones behind this.
        let Ok(found) = tokio::time::timeout(remote_timeout, remote).await else {
            return Err(PartitionError::RemoteTimeout);
        };
        match found {
            Ok(Some(batch)) => {
                let found = find_record(batch, |records| {
                    records
                        .iter()
                        .find(|r| r.1 >= timestamp && r.0 >= offsets.log_start_offset)
                        .copied()
                });
                if let Some(found) = found {
                    return Ok(found);
                }
            }
            Ok(None) => {}
            Err(e) => {
                warn!(topic = %partition.topic, partition = partition.index, error = %e, "remote timestamp lookup failed");
                return Err(PartitionError::Remote(e.to_string()));
            }
        }
    }
    Ok(match timestamp {
        LATEST => (offsets.high_watermark, -1),
        EARLIEST => (offsets.log_start_offset, -1),
        EARLIEST_LOCAL => (offsets.local_log_start_offset, -1),
        LATEST_TIERED => (offsets.remote_end_offset - 1, -1),
        MAX_TIMESTAMP => match partition.batch_with_max_timestamp()? {
            Some(batch) => find_record(batch, |records| {
                let max = records.iter().map(|r| r.1).max()?;
                records.iter().find(|r| r.1 == max).copied()
            })
            .unwrap_or((-1, -1)),
            None => (-1, -1),
        },
        ts if ts >= 0 => match partition.batch_for_timestamp(ts)? {
            Some(batch) => find_record(batch, |records| {
                records
                    .iter()
                    .find(|r| r.1 >= ts && r.0 >= offsets.log_start_offset)
                    .copied()
            })
            .unwrap_or((-1, -1)),
            None => (-1, -1),
        },
        _ => {
            return Err(PartitionError::Log(
                crate::log::LogError::OffsetOutOfRange {
                    offset: timestamp,
                    start: -3,
                    end: i64::MAX,
                },
            ))
        }
    })
}

pub async fn handle_list_offsets(
    broker: &Broker,
    access: &Access,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    // v10 carries the client's timeout for lookups in the tiered range.
    let remote_timeout = Duration::from_millis(if request.timeout_ms > 0 {
        request.timeout_ms as u64
    } else {
        DEFAULT_REMOTE_TIMEOUT_MS
    });
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let name = t.name.0.as_str().to_string();
        let denied = !access.topic(Operation::Describe, &name);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            partitions.push(
                async {
                    let base = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    if denied {
                        return base.with_error_code(code::TOPIC_AUTHORIZATION_FAILED);
                    }
                    let Some(partition) = broker.replicas.get(&name, p.partition_index) else {
                        return base.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
                    };
                    if let Err(e) = partition.check_leader_epoch(p.current_leader_epoch) {
                        return base.with_error_code(partition_error_code(&e));
                    }
                    match lookup(broker, &partition, p.timestamp, remote_timeout).await {
                        Ok((offset, timestamp)) => {
                            let found = base.with_error_code(code::NONE).with_offset(offset).with_timestamp(timestamp);
                            // The leader epoch field exists from v4 on.
                            if version >= 4 {
                                found.with_leader_epoch(partition.leader_epoch())
                            } else {
                                found
                            }
                        }
                        Err(e) => {
                            warn!(topic = %name, partition = p.partition_index, error = %e, "list offsets failed");
                            base.with_error_code(match e {
                                PartitionError::Log(crate::log::LogError::OffsetOutOfRange { .. }) => code::INVALID_REQUEST,
                                other => partition_error_code(&other),
                            })
                        }
                    }
                }
                .await,
            );
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}
