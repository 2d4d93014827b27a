//! Fetch: reads whole batches from file ranges up to the high watermark, honours
//! `max_bytes`, per-partition limits and KIP-74's "at least one batch", and long-polls
//! until `min_bytes` are available or `max_wait_ms` passes. Fetch sessions are not
//! kept: every request is answered as a full, sessionless fetch (session id 0).
//!
//! Offsets below a tiered partition's local log start are read from the object store,
//! for every such partition of the request at once. Each remote partition reserves its
//! byte budget when the request is planned, so `max_bytes` holds across local and
//! remote partitions together; a remote read not done by `max_wait_ms` is answered
//! empty (no error) and finishes in the background, warming the cache for the retry.
//!
//! A large local record set is not read at all: the response carries a placeholder
//! for it and the connection sends the file range with `sendfile` (Kafka's zero-copy
//! fetch; see `protocol::chain`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use tokio::time::Instant;
use tracing::warn;
use uuid::Uuid;

use super::authorize::Access;
use super::{leader_hint, partition_exists, str_bytes, Broker};
use crate::error::{code, partition_error_code};
use crate::metadata::acl::Operation;
use crate::metrics::request::remote_wait;
use crate::metrics::topic::TopicCounter;
use crate::protocol::{FileRange, FileRecords};
use crate::replication::{Partition, PartitionError, ReadPlan, ReadSource};
use crate::tiered::RemoteReadError;

pub(super) struct Wanted {
    pub(super) topic_index: usize,
    pub(super) partition: i32,
    pub(super) fetch_offset: i64,
    pub(super) max_bytes: usize,
    pub(super) current_leader_epoch: i32,
    /// The sender may not read the topic (TOPIC_AUTHORIZATION_FAILED).
    pub(super) denied: bool,
}

/// The request's topics by name and id (v13+ names them by id; an unknown id has no
/// name) and its partitions, resolved once per request.
pub(super) fn resolve(
    broker: &Broker,
    access: &Access,
    request: &FetchRequest,
    version: i16,
) -> (Vec<(Option<String>, Uuid)>, Vec<Wanted>) {
    let image = broker.admin.image();
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
        let denied = name
            .as_deref()
            .is_some_and(|n| !access.topic(Operation::Read, n));
        topics.push((name, id));
        for p in &t.partitions {
            wanted.push(Wanted {
                topic_index: topics.len() - 1,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                current_leader_epoch: p.current_leader_epoch,
                denied,
            });
        }
    }
    (topics, wanted)
}

/// A partition's answer carrying records.
pub(super) fn records_partition(
    index: i32,
    offsets: &crate::replication::PartitionOffsets,
    records: Bytes,
) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(code::NONE)
        .with_high_watermark(offsets.high_watermark)
        .with_last_stable_offset(offsets.last_stable_offset)
        .with_log_start_offset(offsets.log_start_offset)
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(records))
}

pub(super) fn empty_partition(index: i32, error: i16) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(error)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(Bytes::new()))
}

/// Record sets at least this large go out straight from the file.
const SEND_FROM_FILE_MIN: usize = 64 << 10;
/// Batches a record set may hold and still go out straight from the file (finding
/// its end reads one header per batch; many small batches are cheaper read whole).
const SEND_FROM_FILE_MAX_BATCHES: usize = 64;

/// A partition's records for a response: a placeholder for a file range in `files`
/// when the set is large, otherwise the bytes read now.
pub(super) fn read_records(
    plan: &ReadPlan,
    budget: usize,
    min_one: bool,
    files: &mut FileRecords,
) -> std::io::Result<Bytes> {
    if plan.length >= SEND_FROM_FILE_MIN {
        if let Some((file, position, length)) =
            plan.slice(budget, min_one, SEND_FROM_FILE_MAX_BATCHES)?
        {
            if length >= SEND_FROM_FILE_MIN {
                let range = FileRange {
                    file,
                    position,
                    length,
                };
                if let Some(placeholder) = files.placeholder(range) {
                    return Ok(placeholder);
                }
            }
        }
    }
    plan.execute(budget, min_one)
}

/// Kafka's rack-aware replica selector (KIP-392), by its class name.
pub const RACK_AWARE_SELECTOR: &str = "org.apache.kafka.common.replica.RackAwareReplicaSelector";

/// How long a remote read may take even when the client asked for no wait at all.
const MIN_REMOTE_WAIT: Duration = Duration::from_millis(100);

/// The response, and the file ranges its placeholders stand for.
pub async fn handle_fetch(
    broker: &Arc<Broker>,
    access: &Access,
    request: FetchRequest,
    version: i16,
    listener: &str,
) -> (FetchResponse, FileRecords) {
    let mut files = FileRecords::default();
    let response = fetch(broker, access, request, version, listener, &mut files).await;
    (response, files)
}

async fn fetch(
    broker: &Arc<Broker>,
    access: &Access,
    request: FetchRequest,
    version: i16,
    listener: &str,
    files: &mut FileRecords,
) -> FetchResponse {
    let replica = super::replica_fetch::replica_id(&request, version);
    if replica >= 0 && !access.cluster(Operation::ClusterAction) {
        // Only brokers (CLUSTER_ACTION) may fetch as a replica.
        let (topics, wanted) = resolve(broker, &Access::unrestricted(), &request, version);
        let results = wanted
            .iter()
            .map(|w| empty_partition(w.partition, code::TOPIC_AUTHORIZATION_FAILED))
            .collect();
        return build_response(broker, listener, &topics, &wanted, results, version);
    }
    if replica >= 0 {
        return super::replica_fetch::handle_replica_fetch(
            broker, request, version, replica, listener, files,
        )
        .await;
    }
    if request.session_id != 0 {
        // We never hand out sessions, so any id is unknown; the client starts over.
        return FetchResponse::default().with_error_code(code::FETCH_SESSION_ID_NOT_FOUND);
    }
    let (topics, wanted) = resolve(broker, access, &request, version);
    let rack_aware = broker.config.get("replica.selector.class") == RACK_AWARE_SELECTOR;
    let rack = request.rack_id.as_str();
    let from = ReadFrom {
        rack: (rack_aware && version >= 11 && !rack.is_empty()).then_some(rack),
        followers_serve: version >= 11,
    };
    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let deadline = Instant::now() + max_wait;
    let answer = |results| {
        respond(
            broker,
            listener,
            &topics,
            &wanted,
            results,
            version,
            Reader::Consumer,
        )
    };
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
        let ReadOutcome {
            mut results,
            files: mut read_files,
            total,
            any_error,
            remote,
            starved,
        } = read_all(broker, &topics, &wanted, response_max, from);
        if !remote.is_empty() {
            // History is there to read: answer as soon as the remote reads are done.
            read_remote(
                broker,
                remote,
                &mut results,
                deadline.max(Instant::now() + MIN_REMOTE_WAIT),
            )
            .await;
            fill_starved(&mut results, &mut read_files, starved, response_max);
            *files = read_files;
            return answer(results);
        }
        let now = Instant::now();
        if total >= min_bytes || any_error || now >= deadline || watches.is_empty() {
            *files = read_files;
            return answer(results);
        }
        let waits = watches.iter_mut().map(|w| Box::pin(w.changed()));
        let _ = remote_wait(tokio::time::timeout_at(deadline, select_all(waits))).await;
        if Instant::now() >= deadline {
            let outcome = read_all(broker, &topics, &wanted, response_max, from);
            let mut results = outcome.results;
            *files = outcome.files;
            if !outcome.remote.is_empty() {
                let wait = Instant::now() + MIN_REMOTE_WAIT;
                read_remote(broker, outcome.remote, &mut results, wait).await;
                fill_starved(&mut results, files, outcome.starved, response_max);
            }
            return answer(results);
        }
    }
}

/// A partition of the request that must be read from the object store.
struct RemoteWanted {
    /// Index into the results.
    slot: usize,
    partition: Arc<Partition>,
    offset: i64,
    budget: usize,
    min_one: bool,
}

/// A local partition left without budget: (slot, partition, its max bytes, offset).
type Starved = (usize, Arc<Partition>, usize, i64);

struct ReadOutcome {
    results: Vec<PartitionData>,
    files: FileRecords,
    total: usize,
    any_error: bool,
    remote: Vec<RemoteWanted>,
    starved: Vec<Starved>,
}

/// Where a consumer may read (KIP-392).
#[derive(Clone, Copy)]
struct ReadFrom<'a> {
    /// The consumer's `client.rack` when rack-aware replica selection is on.
    rack: Option<&'a str>,
    /// Fetch v11+ (client metadata): a follower may serve it, bounded by its own
    /// high watermark.
    followers_serve: bool,
}

/// The in-sync replica in `rack` a consumer should read from instead of this leader
/// (RackAwareReplicaSelector), if the leader is not in that rack itself.
fn preferred_read_replica(broker: &Broker, partition: &Partition, rack: &str) -> Option<i32> {
    let image = broker.admin.image();
    let in_rack = |id: &i32| {
        image
            .brokers
            .get(id)
            .is_some_and(|b| b.is_usable() && b.rack.as_deref() == Some(rack))
    };
    if in_rack(&partition.node_id) {
        return None;
    }
    partition.isr().into_iter().find(|r| in_rack(r))
}

fn read_all(
    broker: &Broker,
    topics: &[(Option<String>, Uuid)],
    wanted: &[Wanted],
    response_max: usize,
    from: ReadFrom<'_>,
) -> ReadOutcome {
    let mut out = Vec::with_capacity(wanted.len());
    let mut files = FileRecords::default();
    let mut total = 0usize;
    let mut any_error = false;
    let mut remote = Vec::new();
    let mut starved = Vec::new();
    for w in wanted {
        let Some(name) = &topics[w.topic_index].0 else {
            out.push(empty_partition(w.partition, code::UNKNOWN_TOPIC_ID));
            any_error = true;
            continue;
        };
        if w.denied {
            out.push(empty_partition(
                w.partition,
                code::TOPIC_AUTHORIZATION_FAILED,
            ));
            any_error = true;
            continue;
        }
        let Some(partition) = broker.replicas.get(name, w.partition) else {
            let error = if partition_exists(broker, name, w.partition) {
                code::NOT_LEADER_OR_FOLLOWER
            } else {
                code::UNKNOWN_TOPIC_OR_PARTITION
            };
            out.push(empty_partition(w.partition, error));
            any_error = true;
            continue;
        };
        let leads = partition.is_leader();
        if leads {
            if let Some(preferred) = from
                .rack
                .and_then(|rack| preferred_read_replica(broker, &partition, rack))
            {
                // Tell the consumer to read from the replica in its rack (no records).
                let offsets = partition.offsets();
                out.push(
                    empty_partition(w.partition, code::NONE)
                        .with_high_watermark(offsets.high_watermark)
                        .with_last_stable_offset(offsets.last_stable_offset)
                        .with_log_start_offset(offsets.log_start_offset)
                        .with_preferred_read_replica(BrokerId(preferred)),
                );
                continue;
            }
        }
        let may_serve = leads || (from.followers_serve && partition.leader() >= 0);
        let allowed = if may_serve {
            Ok(())
        } else {
            Err(PartitionError::NotLeader)
        };
        if let Err(e) = partition
            .check_leader_epoch(w.current_leader_epoch)
            .and(allowed)
        {
            out.push(empty_partition(w.partition, partition_error_code(&e)));
            any_error = true;
            continue;
        }
        let result = partition
            .plan_read(w.fetch_offset)
            .and_then(|(source, offsets)| {
                let budget = w.max_bytes.min(response_max.saturating_sub(total));
                // KIP-74: the first non-empty partition may exceed the limits by one batch.
                let min_one = total == 0;
                if budget == 0 && !min_one {
                    if matches!(source, ReadSource::Local(_)) {
                        // Crowded out, maybe by a remote reservation that may come back
                        // unused: read again once the remote reads are done.
                        starved.push((out.len(), partition.clone(), w.max_bytes, w.fetch_offset));
                    }
                    return Ok((Bytes::new(), offsets));
                }
                let plan = match source {
                    ReadSource::Local(plan) => plan,
                    ReadSource::Remote => {
                        // Reserve the budget now; the bytes come after the local reads.
                        remote.push(RemoteWanted {
                            slot: out.len(),
                            partition: partition.clone(),
                            offset: w.fetch_offset,
                            budget,
                            min_one,
                        });
                        total += budget.max(1);
                        return Ok((Bytes::new(), offsets));
                    }
                };
                let bytes = read_records(&plan, budget, min_one, &mut files).map_err(|source| {
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
                out.push(records_partition(w.partition, &offsets, bytes));
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
    ReadOutcome {
        results: out,
        files,
        total,
        any_error,
        remote,
        starved,
    }
}

/// Gives the budget remote reads left unused to local partitions that were crowded
/// out, in request order.
fn fill_starved(
    results: &mut [PartitionData],
    files: &mut FileRecords,
    starved: Vec<Starved>,
    response_max: usize,
) {
    let mut used: usize = results
        .iter()
        .map(|r| r.records.as_ref().map_or(0, |b| b.len()))
        .sum();
    for (slot, partition, max_bytes, offset) in starved {
        let budget = max_bytes.min(response_max.saturating_sub(used));
        if budget == 0 && used > 0 {
            break;
        }
        let Ok((ReadSource::Local(plan), _)) = partition.plan_read(offset) else {
            continue;
        };
        if let Ok(bytes) = read_records(&plan, budget, used == 0, files) {
            used += bytes.len();
            results[slot].records = Some(bytes);
        }
    }
}

/// Runs the remote reads of a request concurrently and fills their slots; reads not
/// done by `deadline` leave their slot empty and finish in the background.
async fn read_remote(
    broker: &Arc<Broker>,
    remote: Vec<RemoteWanted>,
    results: &mut [PartitionData],
    deadline: Instant,
) {
    let image = broker.admin.image();
    let mut tasks = Vec::with_capacity(remote.len());
    for r in remote {
        let broker = broker.clone();
        let image = image.clone();
        let partition = r.partition.clone();
        let handle = tokio::spawn(async move {
            broker
                .replicas
                .read_remote(&image, &partition, r.offset, r.budget, r.min_one)
                .await
        });
        tasks.push((r.slot, r.partition, handle));
    }
    for (slot, partition, handle) in tasks {
        let result = match remote_wait(tokio::time::timeout_at(deadline, handle)).await {
            Err(_) => continue, // not ready: answered empty, the read goes on
            Ok(Err(join)) => Err(RemoteReadError::Object {
                path: partition.topic.clone(),
                reason: join.to_string(),
            }),
            Ok(Ok(r)) => r,
        };
        match result {
            Ok(bytes) => results[slot].records = Some(bytes),
            Err(e) => {
                let error = match e {
                    // Deleted by retention between planning and reading.
                    RemoteReadError::NotTiered { .. } => code::OFFSET_OUT_OF_RANGE,
                    _ => code::UNKNOWN_SERVER_ERROR,
                };
                let offsets = partition.offsets();
                results[slot] = empty_partition(partition.index, error)
                    .with_high_watermark(offsets.high_watermark)
                    .with_last_stable_offset(offsets.last_stable_offset)
                    .with_log_start_offset(offsets.log_start_offset);
            }
        }
    }
}

/// Who a fetch reads for: its bytes count as BytesOut or ReplicationBytesOut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reader {
    Consumer,
    Follower,
}

/// Whether a fetch partition's error counts in FailedFetchRequests: as in Kafka, not
/// for routing (wrong leader or epoch, unknown partition) or an offset out of range.
fn counts_as_failed_fetch(error: i16) -> bool {
    !matches!(
        error,
        code::NONE
            | code::NOT_LEADER_OR_FOLLOWER
            | code::UNKNOWN_TOPIC_OR_PARTITION
            | code::UNKNOWN_TOPIC_ID
            | code::FENCED_LEADER_EPOCH
            | code::UNKNOWN_LEADER_EPOCH
            | code::OFFSET_OUT_OF_RANGE
            | code::KAFKA_STORAGE_ERROR
    )
}

/// Counts the answer in its topics' BrokerTopicMetrics, then builds it.
pub(super) fn respond(
    broker: &Broker,
    listener: &str,
    topics: &[(Option<String>, Uuid)],
    wanted: &[Wanted],
    results: Vec<PartitionData>,
    version: i16,
    reader: Reader,
) -> FetchResponse {
    let bytes_counter = match reader {
        Reader::Consumer => TopicCounter::BytesOut,
        Reader::Follower => TopicCounter::ReplicationBytesOut,
    };
    for (w, data) in wanted.iter().zip(&results) {
        let Some(name) = topics[w.topic_index].0.as_deref() else {
            continue;
        };
        if data.error_code == code::TOPIC_AUTHORIZATION_FAILED {
            // Refused before any read, as Kafka does: not a fetch of that topic.
            continue;
        }
        let Some(partition) = broker.replicas.get(name, w.partition) else {
            continue;
        };
        let stats = &partition.stats;
        stats.inc(TopicCounter::TotalFetchRequests);
        if counts_as_failed_fetch(data.error_code) {
            stats.inc(TopicCounter::FailedFetchRequests);
        }
        let bytes = data.records.as_ref().map_or(0, |b| b.len());
        if bytes > 0 {
            stats.add(bytes_counter, bytes as u64);
        }
    }
    build_response(broker, listener, topics, wanted, results, version)
}

fn build_response(
    broker: &Broker,
    listener: &str,
    topics: &[(Option<String>, Uuid)],
    wanted: &[Wanted],
    results: Vec<PartitionData>,
    version: i16,
) -> FetchResponse {
    let mut endpoints: Vec<NodeEndpoint> = Vec::new();
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
    for (w, mut data) in wanted.iter().zip(results) {
        if data.error_code == code::NOT_LEADER_OR_FOLLOWER {
            // KIP-951: where the leader is, so the consumer re-routes at once.
            let name = topics[w.topic_index].0.as_deref().unwrap_or("");
            if let Some(hint) = leader_hint(broker, name, w.partition, listener) {
                data.current_leader = LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(hint.leader))
                    .with_leader_epoch(hint.leader_epoch);
                if !endpoints.iter().any(|e| e.node_id.0 == hint.leader) {
                    endpoints.push(
                        NodeEndpoint::default()
                            .with_node_id(BrokerId(hint.leader))
                            .with_host(str_bytes(&hint.host))
                            .with_port(hint.port)
                            .with_rack(hint.rack.as_deref().map(str_bytes)),
                    );
                }
            }
        }
        responses[w.topic_index].partitions.push(data);
    }
    FetchResponse::default()
        .with_error_code(code::NONE)
        .with_session_id(0)
        .with_responses(responses)
        .with_node_endpoints(endpoints)
}
