//! Local log storage on NVMe (ARCHITECTURE.md §3): record batches kept byte for byte
//! in segments with sparse offset and time indexes, recovery, retention.
//! Imports only `config`; knows nothing about replication, tiering or the network.

pub mod batch;
pub mod compression;
pub mod epoch;
pub mod files;
pub mod index;
#[allow(clippy::module_inception)]
pub mod log;
pub mod manager;
pub mod producer_state;
pub mod segment;

pub use self::log::{
    AppendInfo, Log, LogError, LogResult, OffsetPosition, ReadPlan, SealedSegment,
};
pub use manager::LogManager;

/// Wall-clock milliseconds since the Unix epoch (Kafka's timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
