//! Configuration that speaks Kafka: broker keys by Kafka's broker names, topic keys by
//! Kafka's topic names, validated once at start-up. Imports nothing above it.

pub mod broker;
pub mod jaas;
pub mod spec;
pub mod topic;

pub use broker::{BrokerConfig, ConfigSource, Listener};
pub use topic::{LogConfig, TimestampType, TopicCompression};

/// Why the configuration could not be loaded. Every variant names the key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown config key '{key}' (from {origin})")]
    UnknownKey { key: String, origin: String },
    #[error("invalid value '{value}' for config key '{key}': {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
}
