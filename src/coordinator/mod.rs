//! Coordinators: producer ids now; consumer groups and transactions with their
//! issues. Imports `replication`, `metadata`, `config`.

pub mod group;
pub mod producer_ids;

pub use group::GroupCoordinator;
pub use producer_ids::{ProducerIdError, ProducerIdPool};
