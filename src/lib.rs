//! Strata: a Kafka-compatible broker.
//!
//! Imports go one way (ARCHITECTURE.md §2): network → protocol → api → {admin,
//! coordinator} → replication → {tiered, log} → metadata → config / error. A lower
//! module never imports a higher one; `server` is where the parts meet.

// The connection future over a TLS stream nests deeper than the default limit allows
// when the compiler computes its layout.
#![recursion_limit = "256"]

pub mod admin;
pub mod api;
pub mod cli;
pub mod config;
pub mod coordinator;
pub mod error;
pub mod log;
pub mod logs;
pub mod metadata;
pub mod metrics;
pub mod network;
pub mod protocol;
pub mod replication;
pub mod scram;
pub mod server;
pub mod tiered;
