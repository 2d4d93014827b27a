//! Command-line tools built into the `strata` binary beside the broker itself.
//!
//! Most are Kafka *clients*: they talk to a running broker (ours or any Kafka) over
//! the wire protocol and never touch the broker's internals, so they work against a
//! remote cluster just as well. `security-groups` instead reads the broker's own
//! configuration and decides with the broker's code. Each tool parses its own arguments (`clap::Args`),
//! does its work in [`consumer_groups::run`]-style functions that return text, and
//! leaves printing and exit codes to `main.rs`.

pub mod cluster;
pub mod consumer_groups;
pub mod security_groups;
pub mod storage;
