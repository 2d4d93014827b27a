//! Replicas of partitions (ARCHITECTURE.md §4): high watermark, leader epoch, ISR and
//! waits for acknowledgements; the only layer the API handlers use for data.
//! Imports `log`, `metadata` and `config`.

pub mod client;
pub mod end_offsets;
pub mod fetcher;
pub mod metrics;
pub mod partition;
pub mod registry;

pub use partition::{
    Acks, Leadership, Partition, PartitionError, PartitionHealth, PartitionOffsets, ReadSource,
    RemoteBounds,
};
pub use registry::ReplicaManager;

/// A planned local read, as `ReadSource::Local` hands it out.
pub use crate::log::ReadPlan;
