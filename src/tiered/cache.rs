//! The remote read cache: fixed-size chunks of remote segment objects in a foyer
//! `HybridCache` (a memory tier, then a disk tier), keyed by segment uuid, object kind
//! and chunk number. foyer's API moves between versions, so it stays behind this type.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCacheProperties, RecoverMode, Source,
};
use uuid::Uuid;

use prometheus_client::metrics::counter::Counter;

use super::TieredMetrics;

/// One cached chunk: `chunk` counts `chunk_bytes` from the start of the object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChunkKey {
    pub segment: Uuid,
    /// 0 = log, 1 = offset index, 2 = time index.
    pub object: u8,
    pub chunk: u32,
}

impl foyer::Code for ChunkKey {
    fn encode(&self, w: &mut impl std::io::Write) -> foyer::Result<()> {
        w.write_all(self.segment.as_bytes())
            .and_then(|_| w.write_all(&[self.object]))
            .and_then(|_| w.write_all(&self.chunk.to_be_bytes()))
            .map_err(foyer::Error::io_error)
    }

    fn decode(r: &mut impl std::io::Read) -> foyer::Result<Self> {
        let mut id = [0u8; 16];
        let mut object = [0u8; 1];
        let mut chunk = [0u8; 4];
        r.read_exact(&mut id)
            .and_then(|_| r.read_exact(&mut object))
            .and_then(|_| r.read_exact(&mut chunk))
            .map_err(foyer::Error::io_error)?;
        Ok(ChunkKey {
            segment: Uuid::from_bytes(id),
            object: object[0],
            chunk: u32::from_be_bytes(chunk),
        })
    }

    fn estimated_size(&self) -> usize {
        21
    }
}

/// Where a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkSource {
    Memory,
    Disk,
    /// Joined a load another reader (or a prefetch) had started.
    InFlight,
    ObjectStore,
}

/// The chunk cache. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct ChunkCache {
    cache: HybridCache<ChunkKey, Bytes>,
    /// Lookup counters by tier, in `ChunkSource` order: resolved once so a lookup
    /// does not build a label set.
    lookups: [Counter; 4],
}

impl std::fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChunkCache")
    }
}

/// Most files the disk tier keeps open (foyer: one per block).
const MAX_DISK_FILES: usize = 16;

impl ChunkCache {
    /// Builds the cache with `memory_bytes` of memory and, if `disk_bytes` is non-zero,
    /// a disk tier of that size in `dir`. `chunk_bytes` sizes the disk blocks so a
    /// chunk always fits one.
    pub async fn open(
        dir: &Path,
        memory_bytes: usize,
        disk_bytes: usize,
        chunk_bytes: usize,
        metrics: Arc<TieredMetrics>,
    ) -> Result<ChunkCache, foyer::Error> {
        let builder = HybridCacheBuilder::<ChunkKey, Bytes>::new()
            .with_name("strata-remote-chunks")
            .memory(memory_bytes)
            .with_weighter(|_k: &ChunkKey, v: &Bytes| 64 + v.len())
            .storage()
            // The disk tier starts empty: chunks cached by an earlier run may have been
            // cut with another chunk size, and segment ids never repeat anyway.
            .with_recover_mode(RecoverMode::None);
        // A block holds four chunks plus foyer's per-entry headers and index, so little
        // of the disk tier is lost to block tails.
        // foyer's directory device keeps one file (and descriptor) per block, so blocks
        // are at least 1/16 of the disk tier: a handful of files, not one per 32 MiB
        // (foyer's single-file device is not used: it prints to stdout).
        let block = (4 * (chunk_bytes + (64 << 10)))
            .max(disk_bytes / MAX_DISK_FILES)
            .next_multiple_of(4096)
            .max(16 << 20);
        let cache = if disk_bytes >= block * 4 {
            let device = FsDeviceBuilder::new(dir)
                .with_capacity(disk_bytes)
                .build()?;
            let engine = BlockEngineConfig::<ChunkKey, Bytes, HybridCacheProperties>::new(device)
                .with_block_size(block);
            builder.with_engine_config(engine).build().await?
        } else {
            builder.build().await?
        };
        let lookups = ["memory", "disk", "in_flight", "object_store"].map(|tier| {
            metrics
                .cache_lookups
                .get_or_create(&vec![("tier", tier)])
                .clone()
        });
        Ok(ChunkCache { cache, lookups })
    }

    /// The chunk, from memory, disk or `load` (concurrent misses of one key share a
    /// single load). A demand read (`count`) is counted by where it was answered from:
    /// memory, disk, in_flight (it joined a load already running, e.g. a prefetch) or
    /// object_store (its own load ran). Prefetches are not counted as lookups.
    pub async fn get_or_load<F, Fut, E>(
        &self,
        key: ChunkKey,
        count: bool,
        load: F,
    ) -> Result<(Bytes, ChunkSource), foyer::Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Bytes, E>> + Send + 'static,
        E: Into<anyhow::Error>,
    {
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        let fut = load();
        let entry = self
            .cache
            .get_or_fetch(&key, move || async move {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
                fut.await
            })
            .await?;
        let (source, tier) = match entry.source() {
            Source::Memory => (ChunkSource::Memory, 0),
            Source::Disk => (ChunkSource::Disk, 1),
            Source::Outer if ran.load(std::sync::atomic::Ordering::Relaxed) => {
                (ChunkSource::ObjectStore, 3)
            }
            Source::Outer => (ChunkSource::InFlight, 2),
        };
        if count {
            self.lookups[tier].inc();
        }
        Ok((entry.value().clone(), source))
    }

    /// True if the chunk is in memory (for prefetch decisions; disk is not probed).
    pub fn in_memory(&self, key: &ChunkKey) -> bool {
        self.cache.memory().get(key).is_some()
    }

    /// Drops a chunk (e.g. a corrupt one, so the next read fetches it again).
    pub fn remove(&self, key: &ChunkKey) {
        self.cache.remove(key);
    }

    pub async fn close(&self) {
        if let Err(e) = self.cache.close().await {
            tracing::warn!(error = %e, "closing the remote read cache failed");
        }
    }
}
