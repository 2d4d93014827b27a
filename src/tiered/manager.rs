//! The remote log manager: every `remote.log.manager.task.interval.ms` it uploads the
//! sealed segments of tiered partitions this broker leads, applies total retention
//! (and DeleteRecords) to the remote log, cleans up uploads a crash left half done,
//! and removes the objects of deleted topics.
//!
//! Every state change goes through the metadata quorum first (COPY_STARTED before the
//! first byte is written, COPY_FINISHED after the last, DELETE_STARTED before objects
//! are removed), so a restart knows exactly what is in the store. An object-store
//! failure only delays that partition (retry with backoff and jitter); produce never
//! waits for any of this.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::multipart::PartId;
use object_store::{MultipartId, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use rand::Rng;
use tokio::time::Instant;
use tracing::{info, info_span, warn, Instrument};
use uuid::Uuid;

use super::store::{Multipart, ObjectKind, RemoteStore};
use super::{TieredMetrics, TieredPartition, TieredPartitions};
use crate::log::now_ms;
use crate::log::SealedSegment;
use crate::metadata::{
    ApplyReply, ClusterImage, MetadataQuorum, MetadataRecord, RemoteSegment, RemoteSegmentState,
};
use crate::metrics::topic::TopicCounter;

/// Segments larger than this are uploaded in parts of this size.
const PART_BYTES: usize = 8 << 20;
/// Parts of one segment in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// Why one upload or deletion failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("reading the local segment: {0}")]
    Local(#[from] io::Error),
    #[error("metadata: {0}")]
    Metadata(String),
}

/// Aborts a multipart upload that is dropped unfinished: after an error, or when
/// shutdown cancels the pass mid-upload. Otherwise the store would keep its parts.
struct AbortOnDrop(Option<WriteMultipart>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(writer) = self.0.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(e) = writer.abort().await {
                        warn!(error = %e, "aborting an unfinished multipart upload failed");
                    }
                });
            }
        }
    }
}

/// Retry state of one partition after a failure.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    next_attempt: Instant,
}

/// Settings read once from the broker config.
#[derive(Debug, Clone)]
pub struct ManagerSettings {
    pub node_id: i32,
    pub copiers: usize,
    pub backoff_ms: u64,
    pub backoff_max_ms: u64,
    pub jitter: f64,
}

/// Runs the tiering passes. Owned by the task `server.rs` spawns.
pub struct RemoteLogManager {
    store: RemoteStore,
    quorum: MetadataQuorum,
    partitions: Arc<dyn TieredPartitions>,
    metrics: Arc<TieredMetrics>,
    settings: ManagerSettings,
    backoff: parking_lot::Mutex<HashMap<(Uuid, i32), Backoff>>,
}

impl RemoteLogManager {
    pub fn new(
        store: RemoteStore,
        quorum: MetadataQuorum,
        partitions: Arc<dyn TieredPartitions>,
        metrics: Arc<TieredMetrics>,
        settings: ManagerSettings,
    ) -> RemoteLogManager {
        RemoteLogManager {
            store,
            quorum,
            partitions,
            metrics,
            settings,
            backoff: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// One pass over every tiered partition this broker leads, plus topic purges.
    pub async fn run_once(&self) {
        let tiered = self.partitions.tiered_partitions();
        let image = self.quorum.view().current();
        let (mut lag_segments, mut lag_bytes) = (0i64, 0i64);
        for p in &tiered {
            let end = image
                .remote_log(&p.topic_id, p.partition)
                .map(|l| l.end_offset())
                .unwrap_or(0);
            for s in p.sealed.iter().filter(|s| s.next_offset > end) {
                lag_segments += 1;
                lag_bytes += s.size as i64;
            }
        }
        self.metrics.upload_lag_segments.set(lag_segments);
        self.metrics.upload_lag_bytes.set(lag_bytes);
        let now = Instant::now();
        let due: Vec<&TieredPartition> = tiered
            .iter()
            .filter(|p| {
                self.backoff
                    .lock()
                    .get(&(p.topic_id, p.partition))
                    .is_none_or(|b| b.next_attempt <= now)
            })
            .collect();
        stream::iter(due)
            .for_each_concurrent(self.settings.copiers, |p| async move {
                let span = info_span!("tier", topic = %p.topic, partition = p.partition);
                let result = self.tier_partition(p).instrument(span).await;
                let key = (p.topic_id, p.partition);
                match result {
                    Ok(()) => {
                        self.backoff.lock().remove(&key);
                    }
                    Err(e) => {
                        let delay = self.record_failure(key);
                        warn!(topic = %p.topic, partition = p.partition, error = %e, retry_in_ms = delay.as_millis() as u64, "tiering failed; will retry");
                    }
                }
            })
            .await;
        self.purge_deleted_topics(&image).await;
    }

    fn record_failure(&self, key: (Uuid, i32)) -> Duration {
        let mut map = self.backoff.lock();
        let b = map.entry(key).or_insert(Backoff {
            failures: 0,
            next_attempt: Instant::now(),
        });
        b.failures = b.failures.saturating_add(1);
        let base = self
            .settings
            .backoff_ms
            .saturating_mul(1u64 << (b.failures - 1).min(20))
            .min(self.settings.backoff_max_ms);
        let jitter = self.settings.jitter;
        let factor = 1.0 + rand::thread_rng().gen_range(-jitter..=jitter);
        let delay = Duration::from_millis((base as f64 * factor).max(1.0) as u64);
        b.next_attempt = Instant::now() + delay;
        delay
    }

    async fn tier_partition(&self, p: &TieredPartition) -> Result<(), TaskError> {
        let image = self.quorum.view().current();
        // Uploads a crash left half done, and deletions it interrupted.
        if let Some(log) = image.remote_log(&p.topic_id, p.partition) {
            let unfinished: Vec<RemoteSegment> = log
                .segments
                .values()
                .filter(|s| s.state != RemoteSegmentState::CopyFinished)
                .cloned()
                .collect();
            if !unfinished.is_empty() {
                info!(topic = %p.topic, partition = p.partition, segments = unfinished.len(), "removing unfinished remote segments");
                self.delete_segments(p, &unfinished).await?;
            }
        }
        if !p.config.remote_storage_enable {
            // Tiering turned off: nothing more is uploaded, but what is in the store
            // still follows retention and DeleteRecords.
            return self.apply_remote_retention(p).await;
        }
        let mut end = self
            .quorum
            .view()
            .current()
            .remote_log(&p.topic_id, p.partition)
            .map(|l| l.end_offset())
            .unwrap_or(0);
        for segment in &p.sealed {
            // Everything not yet wholly in the store, as Kafka copies it.
            if segment.next_offset <= end {
                continue;
            }
            self.upload(p, segment).await?;
            end = segment.next_offset;
        }
        self.apply_remote_retention(p).await
    }

    async fn upload(&self, p: &TieredPartition, s: &SealedSegment) -> Result<(), TaskError> {
        let id = Uuid::new_v4();
        let index = read_file(&s.index_path).await?;
        let time_index = read_file(&s.time_index_path).await?;
        let epochs = epochs_text(&s.epochs);
        let producer_snapshot = match &s.producer_snapshot {
            // Pruned since it was listed (the segment went too): upload without it.
            Some(path) => read_file(path).await.ok(),
            None => None,
        };
        let path = |kind| {
            self.store
                .segment_object(&p.topic, &p.topic_id, p.partition, s.base_offset, &id, kind)
        };
        // A large segment on a store with low-level multipart calls: start the upload
        // first, so that COPY_STARTED names it and a crash leaves nothing untracked.
        let multipart = match &self.store.multipart {
            Some(mp) if s.size as usize > PART_BYTES => {
                let upload_id = mp.0.create_multipart(&path(ObjectKind::Log)).await?;
                Some((mp.clone(), upload_id))
            }
            _ => None,
        };
        let record = RemoteSegment {
            id,
            base_offset: s.base_offset,
            end_offset: s.next_offset - 1,
            max_timestamp: s.max_timestamp,
            size_bytes: s.size,
            index_bytes: index.len() as u64,
            time_index_bytes: time_index.len() as u64,
            leader_epoch: p.leader_epoch,
            epochs: s.epochs.clone(),
            producer_snapshot_bytes: producer_snapshot.as_ref().map_or(0, |b| b.len() as u64),
            multipart_upload_id: multipart.as_ref().map(|(_, upload_id)| upload_id.clone()),
            broker: self.settings.node_id,
            state: RemoteSegmentState::CopyStarted,
        };
        let proposed = self
            .propose(MetadataRecord::RemoteSegmentCopyStarted {
                topic_id: p.topic_id,
                partition: p.partition,
                segment: record,
            })
            .await;
        if let Err(e) = proposed {
            if let Some((mp, upload_id)) = &multipart {
                let _ =
                    mp.0.abort_multipart(&path(ObjectKind::Log), upload_id)
                        .await;
            }
            return Err(e);
        }
        let started = std::time::Instant::now();
        let copied = async {
            match &multipart {
                Some((mp, upload_id)) => {
                    self.put_log_parts(mp, &path(ObjectKind::Log), upload_id, s)
                        .await?
                }
                None => self.put_log(&path(ObjectKind::Log), s).await?,
            }
            let store = &self.store.store;
            store
                .put(&path(ObjectKind::OffsetIndex), PutPayload::from(index))
                .await?;
            store
                .put(&path(ObjectKind::TimeIndex), PutPayload::from(time_index))
                .await?;
            store
                .put(
                    &path(ObjectKind::Epochs),
                    PutPayload::from(Bytes::from(epochs)),
                )
                .await?;
            if let Some(snapshot) = producer_snapshot {
                store
                    .put(
                        &path(ObjectKind::ProducerSnapshot),
                        PutPayload::from(snapshot),
                    )
                    .await?;
            }
            Ok::<(), TaskError>(())
        }
        .await;
        if let Err(e) = copied {
            self.metrics.upload_failures.inc();
            p.stats.inc(TopicCounter::FailedRemoteCopyRequests);
            // The COPY_STARTED record stays; the next pass deletes what was written.
            return Err(e);
        }
        self.propose(MetadataRecord::RemoteSegmentCopyFinished {
            topic_id: p.topic_id,
            partition: p.partition,
            id,
        })
        .await?;
        self.metrics.segments_uploaded.inc();
        self.metrics.bytes_uploaded.inc_by(s.size);
        p.stats.inc(TopicCounter::RemoteCopyRequests);
        p.stats.add(TopicCounter::RemoteCopyBytes, s.size);
        info!(topic = %p.topic, partition = p.partition, base = s.base_offset, end = s.next_offset - 1, bytes = s.size, ms = started.elapsed().as_millis() as u64, segment = %id, "segment uploaded");
        Ok(())
    }

    /// The segment file: one PUT if small, else a multipart upload read in parts.
    async fn put_log(
        &self,
        path: &object_store::path::Path,
        s: &SealedSegment,
    ) -> Result<(), TaskError> {
        let store = &self.store.store;
        if s.size as usize <= PART_BYTES {
            let bytes = read_at(s.file.clone(), 0, s.size as usize).await?;
            store.put(path, PutPayload::from(bytes)).await?;
            return Ok(());
        }
        let upload = store.put_multipart(path).await?;
        let mut writer = AbortOnDrop(Some(WriteMultipart::new_with_chunk_size(
            upload, PART_BYTES,
        )));
        let mut pos = 0u64;
        while pos < s.size {
            let len = (s.size - pos).min(PART_BYTES as u64) as usize;
            // An error drops `writer`, which aborts the upload.
            let bytes = read_at(s.file.clone(), pos, len).await?;
            let w = writer.0.as_mut().expect("taken only at the end");
            w.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            w.put(bytes);
            pos += len as u64;
        }
        let w = writer.0.take().expect("taken only here");
        w.finish().await?;
        Ok(())
    }

    /// The segment file as the parts of an upload started (and recorded) already,
    /// `PARTS_IN_FLIGHT` at a time; aborted on error. An upload cut short by a crash
    /// is aborted by the cleanup of its COPY_STARTED record.
    async fn put_log_parts(
        &self,
        mp: &Multipart,
        path: &object_store::path::Path,
        upload_id: &MultipartId,
        s: &SealedSegment,
    ) -> Result<(), TaskError> {
        let parts = (s.size as usize).div_ceil(PART_BYTES);
        let uploaded = async {
            let ids: Vec<PartId> = stream::iter(0..parts)
                .map(|i| {
                    let file = s.file.clone();
                    async move {
                        let pos = (i * PART_BYTES) as u64;
                        let len = (s.size - pos).min(PART_BYTES as u64) as usize;
                        let bytes = read_at(file, pos, len).await?;
                        let part =
                            mp.0.put_part(path, upload_id, i, PutPayload::from(bytes))
                                .await?;
                        Ok::<PartId, TaskError>(part)
                    }
                })
                .buffered(PARTS_IN_FLIGHT)
                .try_collect()
                .await?;
            mp.0.complete_multipart(path, upload_id, ids).await?;
            Ok::<(), TaskError>(())
        }
        .await;
        if uploaded.is_err() {
            let _ = mp.0.abort_multipart(path, upload_id).await;
        }
        uploaded
    }

    /// Total retention (`retention.ms`, `retention.bytes`) and the log start offset
    /// (DeleteRecords) applied to the remote log.
    async fn apply_remote_retention(&self, p: &TieredPartition) -> Result<(), TaskError> {
        let image = self.quorum.view().current();
        let Some(log) = image.remote_log(&p.topic_id, p.partition) else {
            return Ok(());
        };
        let finished: Vec<&RemoteSegment> = log.finished().collect();
        let remote_end = log.end_offset();
        let mut doomed: Vec<RemoteSegment> = Vec::new();
        // Below the log start offset (DeleteRecords, or local retention of a plain log).
        for s in &finished {
            if s.end_offset < p.log_start_offset {
                doomed.push((*s).clone());
            }
        }
        if p.config.delete_retention_enabled {
            let now = now_ms();
            if p.config.retention_ms >= 0 {
                for s in &finished {
                    if now - s.max_timestamp > p.config.retention_ms {
                        if !doomed.iter().any(|d| d.id == s.id) {
                            doomed.push((*s).clone());
                        }
                    } else {
                        break;
                    }
                }
            }
            if p.config.retention_bytes >= 0 {
                // Total size: remote segments plus local data not uploaded yet.
                let local_only: u64 = p
                    .local_segments
                    .iter()
                    .filter(|(base, _, _)| *base >= remote_end)
                    .map(|(_, _, size)| size)
                    .sum();
                let mut total: i64 =
                    finished.iter().map(|s| s.size_bytes as i64).sum::<i64>() + local_only as i64;
                for s in &finished {
                    if total - s.size_bytes as i64 >= p.config.retention_bytes {
                        total -= s.size_bytes as i64;
                        if !doomed.iter().any(|d| d.id == s.id) {
                            doomed.push((*s).clone());
                        }
                    } else {
                        break;
                    }
                }
            }
        }
        if doomed.is_empty() {
            if p.log_start_offset > log.log_start_offset && log.start_offset().is_some() {
                // Remember a DeleteRecords inside a remote segment, for a restart
                // without the local copy.
                self.propose(MetadataRecord::RemoteLogStartOffset {
                    topic_id: p.topic_id,
                    partition: p.partition,
                    offset: p.log_start_offset,
                })
                .await?;
            }
            return Ok(());
        }
        doomed.sort_by_key(|s| s.base_offset);
        let new_start = doomed
            .iter()
            .map(|s| s.end_offset + 1)
            .max()
            .unwrap_or(0)
            .max(p.log_start_offset);
        // The log start moves first, so nothing is served from what is being deleted.
        self.propose(MetadataRecord::RemoteLogStartOffset {
            topic_id: p.topic_id,
            partition: p.partition,
            offset: new_start,
        })
        .await?;
        info!(topic = %p.topic, partition = p.partition, segments = doomed.len(), log_start = new_start, "remote retention deleting segments");
        self.delete_segments(p, &doomed).await
    }

    /// DELETE_STARTED, delete every object, then drop the records.
    async fn delete_segments(
        &self,
        p: &TieredPartition,
        segments: &[RemoteSegment],
    ) -> Result<(), TaskError> {
        let ids: Vec<Uuid> = segments.iter().map(|s| s.id).collect();
        self.propose(MetadataRecord::RemoteSegmentsDeleteStarted {
            topic_id: p.topic_id,
            partition: p.partition,
            ids: ids.clone(),
        })
        .await?;
        for s in segments {
            if let (Some(upload_id), Some(mp)) = (&s.multipart_upload_id, &self.store.multipart) {
                // An upload a crash cut short: abort it so its parts are freed. (One
                // already completed or aborted answers NoSuchUpload: nothing to do.)
                let log = self.store.segment_object(
                    &p.topic,
                    &p.topic_id,
                    p.partition,
                    s.base_offset,
                    &s.id,
                    ObjectKind::Log,
                );
                if let Err(e) = mp.0.abort_multipart(&log, upload_id).await {
                    info!(segment = %s.id, error = %e, "multipart upload not aborted (already gone?)");
                }
            }
            for kind in ObjectKind::ALL {
                let path = self.store.segment_object(
                    &p.topic,
                    &p.topic_id,
                    p.partition,
                    s.base_offset,
                    &s.id,
                    kind,
                );
                match self.store.store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        self.metrics.delete_failures.inc();
                        return Err(e.into());
                    }
                }
            }
            self.metrics.segments_deleted.inc();
        }
        self.propose(MetadataRecord::RemoteSegmentsDeleted {
            topic_id: p.topic_id,
            partition: p.partition,
            ids,
        })
        .await
    }

    /// Deletes every object under a deleted topic's directory, then the purge entry.
    async fn purge_deleted_topics(&self, image: &ClusterImage) {
        for (id, name) in &image.remote_purges {
            let dir = self.store.topic_dir(name, id);
            let purged = async {
                let mut listing = self.store.store.list(Some(&dir));
                let mut count = 0usize;
                while let Some(meta) = listing.next().await {
                    let meta = meta?;
                    match self.store.store.delete(&meta.location).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => count += 1,
                        Err(e) => return Err(TaskError::from(e)),
                    }
                }
                Ok(count)
            }
            .await;
            match purged {
                Ok(count) => {
                    if count > 0 {
                        info!(topic = %name, objects = count, "deleted the objects of a deleted topic");
                    }
                    if let Err(e) = self
                        .propose(MetadataRecord::RemoteTopicPurged { topic_id: *id })
                        .await
                    {
                        warn!(topic = %name, error = %e, "recording a topic purge failed");
                    }
                }
                Err(e) => {
                    self.metrics.delete_failures.inc();
                    warn!(topic = %name, error = %e, "deleting the objects of a deleted topic failed; will retry");
                }
            }
        }
    }

    async fn propose(&self, record: MetadataRecord) -> Result<(), TaskError> {
        match self.quorum.propose(record).await {
            Ok(ApplyReply::Refused(e)) => Err(TaskError::Metadata(e.to_string())),
            Ok(_) => Ok(()),
            Err(e) => Err(TaskError::Metadata(e.to_string())),
        }
    }
}

async fn read_file(path: &std::path::Path) -> Result<Bytes, TaskError> {
    let path = path.to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(path))
        .await
        .map_err(|e| io::Error::other(e.to_string()))??;
    Ok(Bytes::from(bytes))
}

async fn read_at(
    file: Arc<crate::log::files::PooledFile>,
    pos: u64,
    len: usize,
) -> Result<Bytes, TaskError> {
    let bytes = tokio::task::spawn_blocking(move || {
        let file = file.open()?;
        crate::log::segment::read_at(&file, pos, len)
    })
    .await
    .map_err(|e| io::Error::other(e.to_string()))??;
    if bytes.len() != len {
        return Err(TaskError::Local(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("segment ended at {} of {len} bytes", bytes.len()),
        )));
    }
    Ok(bytes)
}

/// Kafka's leader-epoch-checkpoint text for the segment's epochs.
fn epochs_text(epochs: &[(i32, i64)]) -> String {
    let mut text = format!("0\n{}\n", epochs.len());
    for (e, o) in epochs {
        text.push_str(&format!("{e} {o}\n"));
    }
    text
}
