//! Fetch from a follower (a request with a replica id): Kafka's pull replication.
//! Reads go up to the log end, never limited to the high watermark; each fetch offset
//! tells the leader what the follower has, which moves the high watermark and may
//! bring the follower (back) into the ISR.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tokio::time::Instant;

use super::fetch::{empty_partition, read_records, records_partition, resolve, respond, Reader};
use super::Broker;
use crate::error::{code, partition_error_code};
use crate::metrics::request::remote_wait;
use crate::protocol::FileRecords;

/// The replica id a fetch carries (`replica_state` from v15), -1 for consumers.
pub fn replica_id(request: &FetchRequest, version: i16) -> i32 {
    if version >= 15 {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    }
}

pub async fn handle_replica_fetch(
    broker: &Arc<Broker>,
    request: FetchRequest,
    version: i16,
    replica: i32,
    listener: &str,
    files: &mut FileRecords,
) -> FetchResponse {
    let (topics, wanted) = resolve(
        broker,
        &super::authorize::Access::unrestricted(),
        &request,
        version,
    );
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    let response_max = if request.max_bytes <= 0 {
        usize::MAX
    } else {
        request.max_bytes as usize
    };
    loop {
        let mut watches = Vec::new();
        let mut results = Vec::with_capacity(wanted.len());
        // A pass whose answer is not sent leaves no file ranges behind.
        *files = FileRecords::default();
        let mut total = 0usize;
        let mut any_error = false;
        for w in &wanted {
            let partition = topics[w.topic_index]
                .0
                .as_deref()
                .and_then(|name| broker.replicas.get(name, w.partition));
            let Some(partition) = partition else {
                results.push(empty_partition(w.partition, code::NOT_LEADER_OR_FOLLOWER));
                any_error = true;
                continue;
            };
            watches.push(partition.subscribe_log_end());
            let read = partition
                .check_leader_epoch(w.current_leader_epoch)
                .and_then(|()| partition.read_for_follower(replica, w.fetch_offset));
            match read {
                Ok((plan, offsets, isr_change)) => {
                    if let Some(change) = isr_change {
                        broker.replicas.request_isr_change(change);
                    }
                    let budget = w.max_bytes.min(response_max.saturating_sub(total));
                    let bytes = if budget == 0 && total > 0 {
                        Bytes::new()
                    } else {
                        match read_records(&plan, budget, total == 0, files) {
                            Ok(b) => b,
                            Err(_) => {
                                results
                                    .push(empty_partition(w.partition, code::KAFKA_STORAGE_ERROR));
                                any_error = true;
                                continue;
                            }
                        }
                    };
                    total += bytes.len();
                    results.push(records_partition(w.partition, &offsets, bytes));
                }
                Err(e) => {
                    let offsets = partition.offsets();
                    results.push(
                        empty_partition(w.partition, partition_error_code(&e))
                            .with_high_watermark(offsets.high_watermark)
                            .with_log_start_offset(offsets.log_start_offset),
                    );
                    any_error = true;
                }
            }
        }
        if total >= min_bytes.max(1)
            || any_error
            || Instant::now() >= deadline
            || watches.is_empty()
        {
            return respond(
                broker,
                listener,
                &topics,
                &wanted,
                results,
                version,
                Reader::Follower,
            );
        }
        let waits = watches.iter_mut().map(|w| Box::pin(w.changed()));
        let _ = remote_wait(tokio::time::timeout_at(deadline, select_all(waits))).await;
        if Instant::now() >= deadline {
            // One last pass picks up anything that arrived and records the offsets.
            continue;
        }
    }
}
