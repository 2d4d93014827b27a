//! Tiered storage: sealed segments go to the object store (S3, MinIO, a local
//! directory) and offsets below the local log start are read back from it through a
//! foyer hybrid cache. `manager` uploads and applies remote retention, `reader` serves
//! remote reads, `cache` wraps foyer, `store` builds the object store and names the
//! objects.
//!
//! Imports `log` (sealed segment files), `metadata` (remote segment records) and
//! `config`; never `replication`: the partitions it tiers reach it through the
//! [`TieredPartitions`] trait, which `replication` implements.

pub mod cache;
pub mod manager;
pub mod reader;
pub mod store;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use uuid::Uuid;

use crate::config::LogConfig;
use crate::log::SealedSegment;

pub use manager::RemoteLogManager;
pub use reader::{RemoteReadError, RemoteReader};
pub use store::{RemoteStore, StoreError};

/// A partition this broker leads whose topic has `remote.storage.enable=true`.
#[derive(Debug, Clone)]
pub struct TieredPartition {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub config: LogConfig,
    pub log_start_offset: i64,
    /// Sealed segments at or below the high watermark, oldest first.
    pub sealed: Vec<SealedSegment>,
    /// (base offset, next offset, size) of every local segment, the active one too.
    pub local_segments: Vec<(i64, i64, u64)>,
    /// The topic's KIP-405 counters (remote copy bytes, requests, failures).
    pub stats: crate::metrics::topic::TopicMetrics,
}

/// What the uploader needs from the replicas; implemented by `replication`.
pub trait TieredPartitions: Send + Sync + 'static {
    fn tiered_partitions(&self) -> Vec<TieredPartition>;
}

type Labels = Vec<(&'static str, &'static str)>;

/// Counters of tiered storage, exported at `/metrics`.
#[derive(Debug)]
pub struct TieredMetrics {
    pub segments_uploaded: Counter,
    pub bytes_uploaded: Counter,
    pub upload_failures: Counter,
    pub upload_lag_segments: Gauge,
    pub upload_lag_bytes: Gauge,
    pub segments_deleted: Counter,
    pub delete_failures: Counter,
    pub remote_fetch_requests: Counter,
    pub remote_fetch_bytes: Counter,
    pub remote_fetch_errors: Counter,
    pub remote_get_requests: Counter,
    pub remote_get_errors: Counter,
    pub remote_read_seconds: Histogram,
    pub prefetches: Counter,
    /// Chunk lookups by result: tier = memory | disk (hits), or object_store (miss).
    pub cache_lookups: Family<Labels, Counter>,
}

impl Default for TieredMetrics {
    fn default() -> Self {
        TieredMetrics {
            segments_uploaded: Counter::default(),
            bytes_uploaded: Counter::default(),
            upload_failures: Counter::default(),
            upload_lag_segments: Gauge::default(),
            upload_lag_bytes: Gauge::default(),
            segments_deleted: Counter::default(),
            delete_failures: Counter::default(),
            remote_fetch_requests: Counter::default(),
            remote_fetch_bytes: Counter::default(),
            remote_fetch_errors: Counter::default(),
            remote_get_requests: Counter::default(),
            remote_get_errors: Counter::default(),
            remote_read_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            prefetches: Counter::default(),
            cache_lookups: Family::default(),
        }
    }
}

impl TieredMetrics {
    /// Registers every metric under `strata_remote_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("strata_remote");
        r.register(
            "segments_uploaded",
            "Segments copied to the object store",
            self.segments_uploaded.clone(),
        );
        r.register(
            "bytes_uploaded",
            "Segment bytes copied to the object store",
            self.bytes_uploaded.clone(),
        );
        r.register(
            "upload_failures",
            "Failed segment uploads (each retried with backoff)",
            self.upload_failures.clone(),
        );
        r.register(
            "upload_lag_segments",
            "Sealed segments of tiered topics not yet uploaded",
            self.upload_lag_segments.clone(),
        );
        r.register(
            "upload_lag_bytes",
            "Bytes of sealed segments of tiered topics not yet uploaded",
            self.upload_lag_bytes.clone(),
        );
        r.register(
            "segments_deleted",
            "Remote segments deleted (retention, DeleteRecords, topic deletion, orphans)",
            self.segments_deleted.clone(),
        );
        r.register(
            "delete_failures",
            "Failed remote deletions (retried)",
            self.delete_failures.clone(),
        );
        r.register(
            "fetch_requests",
            "Partition reads served from the object store",
            self.remote_fetch_requests.clone(),
        );
        r.register(
            "fetch_bytes",
            "Bytes served from the object store",
            self.remote_fetch_bytes.clone(),
        );
        r.register(
            "fetch_errors",
            "Remote reads that failed",
            self.remote_fetch_errors.clone(),
        );
        r.register(
            "get_requests",
            "Ranged GETs sent to the object store",
            self.remote_get_requests.clone(),
        );
        r.register(
            "get_errors",
            "Ranged GETs that failed",
            self.remote_get_errors.clone(),
        );
        r.register(
            "read_seconds",
            "Latency of remote partition reads",
            self.remote_read_seconds.clone(),
        );
        r.register(
            "prefetches",
            "Chunks prefetched for sequential readers",
            self.prefetches.clone(),
        );
        r.register(
            "cache_lookups",
            "Chunk cache lookups by tier that answered: memory, disk or object_store (a miss)",
            self.cache_lookups.clone(),
        );
    }
}
