//! Fetch: reads whole batches from file ranges up to the high watermark, honours
//! `max_bytes`, per-partition limits and KIP-74's "at least one batch", and long-polls
//! until `min_bytes` are available or `max_wait_ms` passes. Fetch sessions are not
//! kept: every request is answered as a full, sessionless fetch (session id 0).

use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use tokio::time::Instant;
use tracing::warn;
use uuid::Uuid;

use super::{str_bytes, Broker};
use crate::error::{code, partition_error_code};
use crate::replication::PartitionError;

struct Wanted {
    topic_index: usize,
    partition: i32,
    fetch_offset: i64,
    max_bytes: usize,
    current_leader_epoch: i32,
}

fn empty_partition(index: i32, error: i16) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(error)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(Bytes::new()))
}

pub async fn handle_fetch(broker: &Broker, request: FetchRequest, version: i16) -> FetchResponse {
    if request.session_id != 0 {
        // We never hand out sessions, so any id is unknown; the client starts over.
        return FetchResponse::default().with_error_code(code::FETCH_SESSION_ID_NOT_FOUND);
    }
    let image = broker.admin.image();
    // Resolve names (v13+ sends topic ids) once.
    let mut topics: Vec<(Option<String>, Uuid)> = Vec::new();
    let mut wanted = Vec::new();
    for t in &request.topics {
        let name = if version >= 13 {
            image.topic_by_id(&t.topic_id).map(|t| t.name.clone())
        } else {
            Some(t.topic.0.as_str().to_string())
        };
        let id = name
            .as_deref()
            .and_then(|n| image.topic_by_name(n))
            .map(|t| t.id)
            .unwrap_or(t.topic_id);
        topics.push((name, id));
        for p in &t.partitions {
            wanted.push(Wanted {
                topic_index: topics.len() - 1,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                current_leader_epoch: p.current_leader_epoch,
            });
        }
    }
    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let deadline = Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let response_max = if request.max_bytes <= 0 {
        usize::MAX
    } else {
        request.max_bytes as usize
    };
    loop {
        // Subscribe before reading so an append between the read and the wait wakes us.
        let mut watches = Vec::new();
        for w in &wanted {
            if let Some(name) = &topics[w.topic_index].0 {
                if let Some(p) = broker.replicas.get(name, w.partition) {
                    watches.push(p.subscribe_high_watermark());
                }
            }
        }
        let (results, total, any_error) = read_all(broker, &topics, &wanted, response_max);
        let now = Instant::now();
        if total >= min_bytes || any_error || now >= deadline || watches.is_empty() {
            return build_response(&topics, &wanted, results, version);
        }
        let waits = watches.iter_mut().map(|w| Box::pin(w.changed()));
        let _ = tokio::time::timeout_at(deadline, select_all(waits)).await;
        if Instant::now() >= deadline {
            let (results, _, _) = read_all(broker, &topics, &wanted, response_max);
            return build_response(&topics, &wanted, results, version);
        }
    }
}

fn read_all(
    broker: &Broker,
    topics: &[(Option<String>, Uuid)],
    wanted: &[Wanted],
    response_max: usize,
) -> (Vec<PartitionData>, usize, bool) {
    let mut out = Vec::with_capacity(wanted.len());
    let mut total = 0usize;
    let mut any_error = false;
    for w in wanted {
        let Some(name) = &topics[w.topic_index].0 else {
            out.push(empty_partition(w.partition, code::UNKNOWN_TOPIC_ID));
            any_error = true;
            continue;
        };
        let Some(partition) = broker.replicas.get(name, w.partition) else {
            out.push(empty_partition(
                w.partition,
                code::UNKNOWN_TOPIC_OR_PARTITION,
            ));
            any_error = true;
            continue;
        };
        if let Err(e) = partition.check_leader_epoch(w.current_leader_epoch) {
            out.push(empty_partition(w.partition, partition_error_code(&e)));
            any_error = true;
            continue;
        }
        let result = partition
            .plan_read(w.fetch_offset)
            .and_then(|(plan, offsets)| {
                let budget = w.max_bytes.min(response_max.saturating_sub(total));
                // KIP-74: the first non-empty partition may exceed the limits by one batch.
                let min_one = total == 0;
                if budget == 0 && !min_one {
                    return Ok((Bytes::new(), offsets));
                }
                let bytes = plan.execute(budget, min_one).map_err(|source| {
                    PartitionError::Log(crate::log::LogError::Io {
                        path: partition.topic.clone().into(),
                        source,
                    })
                })?;
                Ok((bytes, offsets))
            });
        match result {
            Ok((bytes, offsets)) => {
                total += bytes.len();
                out.push(
                    PartitionData::default()
                        .with_partition_index(w.partition)
                        .with_error_code(code::NONE)
                        .with_high_watermark(offsets.high_watermark)
                        .with_last_stable_offset(offsets.last_stable_offset)
                        .with_log_start_offset(offsets.log_start_offset)
                        .with_preferred_read_replica(BrokerId(-1))
                        .with_records(Some(bytes)),
                );
            }
            Err(e) => {
                any_error = true;
                let error = partition_error_code(&e);
                if error != code::OFFSET_OUT_OF_RANGE {
                    warn!(topic = %name, partition = w.partition, error = %e, "fetch failed");
                }
                let offsets = partition.offsets();
                out.push(
                    empty_partition(w.partition, error)
                        .with_high_watermark(offsets.high_watermark)
                        .with_last_stable_offset(offsets.last_stable_offset)
                        .with_log_start_offset(offsets.log_start_offset),
                );
            }
        }
    }
    (out, total, any_error)
}

fn build_response(
    topics: &[(Option<String>, Uuid)],
    wanted: &[Wanted],
    results: Vec<PartitionData>,
    version: i16,
) -> FetchResponse {
    let mut responses: Vec<FetchableTopicResponse> = topics
        .iter()
        .map(|(name, id)| {
            let mut t = FetchableTopicResponse::default();
            if version >= 13 {
                t.topic_id = *id;
            } else {
                t.topic = TopicName(str_bytes(name.as_deref().unwrap_or("")));
            }
            t
        })
        .collect();
    for (w, data) in wanted.iter().zip(results) {
        responses[w.topic_index].partitions.push(data);
    }
    FetchResponse::default()
        .with_error_code(code::NONE)
        .with_session_id(0)
        .with_responses(responses)
}
