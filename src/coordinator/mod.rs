//! Coordinators: producer ids now; consumer groups and transactions with their
//! issues. Imports `replication`, `metadata`, `config`.

pub mod producer_ids;

pub use producer_ids::{ProducerIdError, ProducerIdPool};
