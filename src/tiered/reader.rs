//! Remote reads: serves offsets below the local log start from tiered segments. Finds
//! the segment in the metadata image, looks the offset up in the segment's offset
//! index, and reads whole batches through the chunk cache, prefetching the next
//! chunks for sequential readers. Object-store GETs run under a semaphore
//! (`remote.log.reader.threads`), so history readers never crowd out anything else.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use object_store::ObjectStoreExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info_span, warn, Instrument};
use uuid::Uuid;

use super::cache::{ChunkCache, ChunkKey, ChunkSource};
use super::store::{ObjectKind, RemoteStore};
use super::TieredMetrics;
use crate::log::batch::{BatchHeader, HEADER_SIZE};
use crate::log::index::{OFFSET_ENTRY, TIME_ENTRY};
use crate::metadata::{ClusterImage, RemoteSegment};

/// Why a remote read failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteReadError {
    #[error("offset {offset} is not in the object store")]
    NotTiered { offset: i64 },
    #[error("remote object {path}: {reason}")]
    Object { path: String, reason: String },
    #[error("remote segment {segment} is corrupt: {reason}")]
    Corrupt { segment: Uuid, reason: String },
}

/// Reads tiered segments. Shared by every fetch; cheap to clone.
#[derive(Debug, Clone)]
pub struct RemoteReader {
    store: RemoteStore,
    cache: ChunkCache,
    chunk_bytes: u64,
    prefetch_chunks: u32,
    gets: Arc<Semaphore>,
    metrics: Arc<TieredMetrics>,
}

/// One remote read: whole batches of a partition from `offset`, at most `max_bytes`
/// (or the first batch alone when `min_one` and it is larger).
#[derive(Debug, Clone, Copy)]
pub struct RemoteRead<'a> {
    pub topic: &'a str,
    pub topic_id: Uuid,
    pub partition: i32,
    pub offset: i64,
    pub max_bytes: usize,
    pub min_one: bool,
}

/// A partition by name, id and index.
#[derive(Debug, Clone, Copy)]
pub struct PartitionRef<'a> {
    pub topic: &'a str,
    pub topic_id: Uuid,
    pub partition: i32,
}

/// The chunk a header scan is in, kept between batches.
#[derive(Default)]
struct Scan {
    chunk: Option<(u64, Bytes)>,
}

/// One segment object being read in chunks.
struct ObjectRef<'a> {
    topic: &'a str,
    topic_id: Uuid,
    partition: i32,
    segment: &'a RemoteSegment,
    kind: ObjectKind,
    /// Object size when known (the log's is in the metadata).
    size: Option<u64>,
}

impl<'a> ObjectRef<'a> {
    /// The `.log` object of a segment (its size is in the metadata).
    fn log(at: PartitionRef<'a>, segment: &'a RemoteSegment) -> ObjectRef<'a> {
        ObjectRef {
            topic: at.topic,
            topic_id: at.topic_id,
            partition: at.partition,
            segment,
            kind: ObjectKind::Log,
            size: Some(segment.size_bytes),
        }
    }
}

impl RemoteReader {
    pub fn new(
        store: RemoteStore,
        cache: ChunkCache,
        chunk_bytes: u64,
        prefetch_chunks: u32,
        max_gets: usize,
        metrics: Arc<TieredMetrics>,
    ) -> RemoteReader {
        RemoteReader {
            store,
            cache,
            chunk_bytes: chunk_bytes.max(4096),
            prefetch_chunks,
            gets: Arc::new(Semaphore::new(max_gets.max(1))),
            metrics,
        }
    }

    /// Whole batches from `offset` on, at most `max_bytes` of them (or the first batch
    /// alone when `min_one` and it is larger), from the tiered segment holding
    /// `offset`. Like a local read it never crosses a segment boundary, so the bytes
    /// are identical to what the local log served.
    pub async fn read(
        &self,
        image: &ClusterImage,
        req: RemoteRead<'_>,
    ) -> Result<Bytes, RemoteReadError> {
        let RemoteRead {
            topic,
            topic_id,
            partition,
            offset,
            max_bytes,
            min_one,
        } = req;
        let segment = image
            .remote_log(&topic_id, partition)
            .and_then(|l| l.segment_for(offset).cloned())
            .ok_or(RemoteReadError::NotTiered { offset })?;
        let span = info_span!("remote_read", topic, partition, offset, segment = %segment.id);
        let started = Instant::now();
        let at = PartitionRef {
            topic,
            topic_id,
            partition,
        };
        let result = self
            .read_segment(at, &segment, offset, max_bytes, min_one)
            .instrument(span)
            .await;
        self.metrics
            .remote_read_seconds
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(bytes) => {
                self.metrics.remote_fetch_requests.inc();
                self.metrics.remote_fetch_bytes.inc_by(bytes.len() as u64);
            }
            Err(e) => {
                self.metrics.remote_fetch_errors.inc();
                warn!(topic, partition, offset, error = %e, "remote read failed");
            }
        }
        result
    }

    async fn read_segment(
        &self,
        at: PartitionRef<'_>,
        segment: &RemoteSegment,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<Bytes, RemoteReadError> {
        let log = ObjectRef::log(at, segment);
        let size = segment.size_bytes;
        let mut scan = Scan::default();
        let mut pos = self
            .index_position(&log, offset.max(segment.base_offset))
            .await?;
        // Skip to the batch holding `offset`.
        let start = loop {
            if pos + HEADER_SIZE as u64 > size {
                return Ok(Bytes::new());
            }
            let h = self.header_at(&log, &mut scan, pos).await?;
            if h.last_offset() >= offset {
                break pos;
            }
            pos += h.total_size() as u64;
        };
        // Whole batches up to `max_bytes`.
        let mut end = start;
        while end + HEADER_SIZE as u64 <= size {
            let h = self.header_at(&log, &mut scan, end).await?;
            let next = end + h.total_size() as u64;
            let first = end == start;
            if next - start > max_bytes as u64 && !(first && min_one) {
                break;
            }
            end = next;
            if next - start >= max_bytes as u64 {
                break;
            }
        }
        if end == start {
            return Ok(Bytes::new());
        }
        let bytes = self.read_range(&log, start, end - start).await?;
        self.prefetch(&log, end);
        Ok(bytes)
    }

    /// The batch header at `pos` of a log object, checked to lie within the segment.
    /// Keeps the current chunk in `scan`, so a scan costs one cache lookup per chunk
    /// rather than one per batch.
    async fn header_at(
        &self,
        log: &ObjectRef<'_>,
        scan: &mut Scan,
        pos: u64,
    ) -> Result<BatchHeader, RemoteReadError> {
        let corrupt = |reason: String| RemoteReadError::Corrupt {
            segment: log.segment.id,
            reason,
        };
        let index = pos / self.chunk_bytes;
        let offset_in_chunk = (pos - index * self.chunk_bytes) as usize;
        let header = if offset_in_chunk + HEADER_SIZE <= self.chunk_bytes as usize {
            if scan.chunk.as_ref().map(|c| c.0) != Some(index) {
                let bytes = self.chunk(log, index as u32, None).await?;
                scan.chunk = Some((index, bytes));
            }
            let chunk = &scan.chunk.as_ref().expect("just loaded").1;
            if offset_in_chunk + HEADER_SIZE > chunk.len() {
                return Err(corrupt(format!(
                    "object is shorter than {}",
                    pos + HEADER_SIZE as u64
                )));
            }
            chunk.slice(offset_in_chunk..offset_in_chunk + HEADER_SIZE)
        } else {
            self.read_range(log, pos, HEADER_SIZE as u64).await?
        };
        let h = BatchHeader::parse(&header).map_err(|e| corrupt(e.to_string()))?;
        let size = log.size.unwrap_or(0);
        if h.total_size() < HEADER_SIZE || pos + h.total_size() as u64 > size {
            return Err(corrupt(format!(
                "batch at position {pos} overruns the segment"
            )));
        }
        Ok(h)
    }

    /// The first batch in `[min_offset, below_offset)` holding a record with timestamp
    /// ≥ `timestamp` (ListOffsets by time into the remote range), with its bytes.
    pub async fn batch_for_timestamp(
        &self,
        image: &ClusterImage,
        at: PartitionRef<'_>,
        timestamp: i64,
        offsets: std::ops::Range<i64>,
    ) -> Result<Option<Bytes>, RemoteReadError> {
        let (min_offset, below_offset) = (offsets.start, offsets.end);
        let Some(log) = image.remote_log(&at.topic_id, at.partition) else {
            return Ok(None);
        };
        let candidates: Vec<RemoteSegment> = log
            .finished()
            .filter(|s| {
                s.end_offset >= min_offset
                    && s.base_offset < below_offset
                    && s.max_timestamp >= timestamp
            })
            .cloned()
            .collect();
        for segment in &candidates {
            let object = ObjectRef::log(at, segment);
            // The time index bounds where to start: the last entry below the target.
            let times = self
                .read_whole(&ObjectRef {
                    kind: ObjectKind::TimeIndex,
                    size: Some(segment.time_index_bytes),
                    ..object
                })
                .await?;
            let mut from = segment.base_offset;
            for e in times.chunks_exact(TIME_ENTRY) {
                let ts = i64::from_be_bytes(e[0..8].try_into().expect("8 bytes"));
                let rel = u32::from_be_bytes(e[8..12].try_into().expect("4 bytes"));
                if ts >= timestamp {
                    break;
                }
                from = segment.base_offset + rel as i64;
            }
            let mut scan = Scan::default();
            let mut pos = self.index_position(&object, from.max(min_offset)).await?;
            while pos + HEADER_SIZE as u64 <= segment.size_bytes {
                let h = self.header_at(&object, &mut scan, pos).await?;
                let size = h.total_size() as u64;
                if h.base_offset >= below_offset {
                    return Ok(None);
                }
                if h.max_timestamp >= timestamp && h.last_offset() >= min_offset {
                    return Ok(Some(self.read_range(&object, pos, size).await?));
                }
                pos += size;
            }
        }
        Ok(None)
    }

    /// The file position to start scanning from: the offset index entry at or below
    /// `offset`, or 0.
    async fn index_position(
        &self,
        log: &ObjectRef<'_>,
        offset: i64,
    ) -> Result<u64, RemoteReadError> {
        let index = ObjectRef {
            kind: ObjectKind::OffsetIndex,
            size: Some(log.segment.index_bytes),
            ..*log
        };
        let bytes = self.read_whole(&index).await?;
        let relative = (offset - log.segment.base_offset).clamp(0, u32::MAX as i64) as u32;
        let entries = bytes.len() / OFFSET_ENTRY;
        let entry = |i: usize| {
            let e = &bytes[i * OFFSET_ENTRY..(i + 1) * OFFSET_ENTRY];
            (
                u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
                u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
            )
        };
        // Binary search for the last entry with relative offset ≤ the wanted one.
        let (mut lo, mut hi) = (0usize, entries);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if entry(mid).0 <= relative {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(if lo == 0 { 0 } else { entry(lo - 1).1 as u64 })
    }

    /// A small object (an index) read whole through the cache.
    async fn read_whole(&self, object: &ObjectRef<'_>) -> Result<Bytes, RemoteReadError> {
        let size = object.size.unwrap_or(0);
        if size == 0 {
            return Ok(Bytes::new());
        }
        self.read_range(object, 0, size).await
    }

    /// `len` bytes at `pos` of the object, across chunks (zero-copy within one chunk).
    async fn read_range(
        &self,
        object: &ObjectRef<'_>,
        pos: u64,
        len: u64,
    ) -> Result<Bytes, RemoteReadError> {
        let first = pos / self.chunk_bytes;
        let last = (pos + len.max(1) - 1) / self.chunk_bytes;
        if first == last {
            let chunk = self.chunk(object, first as u32, None).await?;
            let from = (pos - first * self.chunk_bytes) as usize;
            let to = from + len as usize;
            if to > chunk.len() {
                return Err(RemoteReadError::Corrupt {
                    segment: object.segment.id,
                    reason: format!("object is shorter than {}", pos + len),
                });
            }
            return Ok(chunk.slice(from..to));
        }
        let mut out = BytesMut::with_capacity(len as usize);
        for c in first..=last {
            let chunk = self.chunk(object, c as u32, None).await?;
            let chunk_start = c * self.chunk_bytes;
            let from = pos.max(chunk_start) - chunk_start;
            let to = (pos + len).min(chunk_start + chunk.len() as u64) - chunk_start;
            if from > to || to > chunk.len() as u64 {
                return Err(RemoteReadError::Corrupt {
                    segment: object.segment.id,
                    reason: format!("object is shorter than {}", pos + len),
                });
            }
            out.extend_from_slice(&chunk[from as usize..to as usize]);
        }
        if out.len() as u64 != len {
            return Err(RemoteReadError::Corrupt {
                segment: object.segment.id,
                reason: format!("object is shorter than {}", pos + len),
            });
        }
        Ok(out.freeze())
    }

    /// One chunk, from the cache or the object store. A prefetch comes with the GET
    /// slot it already holds; a demand read waits for one.
    async fn chunk(
        &self,
        object: &ObjectRef<'_>,
        chunk: u32,
        prefetch: Option<OwnedSemaphorePermit>,
    ) -> Result<Bytes, RemoteReadError> {
        let demand = prefetch.is_none();
        let key = ChunkKey {
            segment: object.segment.id,
            object: object.kind.cache_tag(),
            chunk,
        };
        let path = self.store.segment_object(
            object.topic,
            &object.topic_id,
            object.partition,
            object.segment.base_offset,
            &object.segment.id,
            object.kind,
        );
        let store = self.store.store.clone();
        let gets = self.gets.clone();
        let start = chunk as u64 * self.chunk_bytes;
        let mut end = start + self.chunk_bytes;
        if let Some(size) = object.size {
            end = end.min(size);
        }
        let metrics = self.metrics.clone();
        let shown = path.to_string();
        let key_copy = key.clone();
        let loaded = self
            .cache
            .get_or_load(key, demand, move || async move {
                let _permit = match prefetch {
                    Some(p) => p,
                    None => gets.acquire_owned().await.map_err(anyhow::Error::from)?,
                };
                let got = fetch_range(&*store, &path, start, end).await;
                match &got {
                    Ok(_) => metrics.remote_get_requests.inc(),
                    Err(_) => metrics.remote_get_errors.inc(),
                };
                got.map_err(anyhow::Error::from)
            })
            .await;
        match loaded {
            Ok((bytes, source)) => {
                if source == ChunkSource::ObjectStore {
                    debug!(object = %shown, chunk, bytes = bytes.len(), "remote chunk fetched");
                }
                if bytes.len() as u64 != end.saturating_sub(start) {
                    // A short object: never serve (or keep) a chunk of the wrong size.
                    self.cache.remove(&key_copy);
                    return Err(RemoteReadError::Corrupt {
                        segment: object.segment.id,
                        reason: format!(
                            "chunk {chunk} of {shown} has {} bytes, expected {}",
                            bytes.len(),
                            end.saturating_sub(start)
                        ),
                    });
                }
                Ok(bytes)
            }
            Err(e) => Err(RemoteReadError::Object {
                path: shown,
                reason: error_chain(&e),
            }),
        }
    }

    /// Starts loading the chunks after `pos` in the background, so a sequential
    /// reader finds them cached.
    fn prefetch(&self, log: &ObjectRef<'_>, pos: u64) {
        let size = log.segment.size_bytes;
        let first = pos / self.chunk_bytes;
        // The chunk the next read starts in, and the ones after it.
        for c in first..=first + self.prefetch_chunks as u64 {
            if c * self.chunk_bytes >= size {
                break;
            }
            let key = ChunkKey {
                segment: log.segment.id,
                object: ObjectKind::Log.cache_tag(),
                chunk: c as u32,
            };
            if self.cache.in_memory(&key) {
                continue;
            }
            // Only with a free GET slot in hand: prefetch never queues ahead of demand
            // reads.
            let Ok(permit) = self.gets.clone().try_acquire_owned() else {
                return;
            };
            let reader = self.clone();
            let segment = log.segment.clone();
            let (topic, topic_id, partition) = (log.topic.to_string(), log.topic_id, log.partition);
            self.metrics.prefetches.inc();
            tokio::spawn(async move {
                let at = PartitionRef {
                    topic: &topic,
                    topic_id,
                    partition,
                };
                let object = ObjectRef::log(at, &segment);
                if let Err(e) = reader.chunk(&object, c as u32, Some(permit)).await {
                    debug!(error = %e, "prefetch failed");
                }
            });
        }
    }

    pub fn cache(&self) -> &ChunkCache {
        &self.cache
    }

    /// The producer-state snapshot uploaded with `segment` (read once, when a lost
    /// local log restarts after it; not cached).
    pub async fn producer_snapshot(
        &self,
        part: PartitionRef<'_>,
        segment: &RemoteSegment,
    ) -> Result<Bytes, RemoteReadError> {
        let path = self.store.segment_object(
            part.topic,
            &part.topic_id,
            part.partition,
            segment.base_offset,
            &segment.id,
            ObjectKind::ProducerSnapshot,
        );
        let _permit = self
            .gets
            .acquire()
            .await
            .map_err(|e| RemoteReadError::Object {
                path: path.to_string(),
                reason: e.to_string(),
            })?;
        let got = async { self.store.store.get(&path).await?.bytes().await }.await;
        got.map_err(|e| RemoteReadError::Object {
            path: path.to_string(),
            reason: error_chain(&e),
        })
    }
}

async fn fetch_range(
    store: &dyn object_store::ObjectStore,
    path: &object_store::path::Path,
    start: u64,
    end: u64,
) -> Result<Bytes, object_store::Error> {
    if end <= start {
        return Ok(Bytes::new());
    }
    store.get_range(path, start..end).await
}

/// The error with its sources, for a log line or an error message.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
