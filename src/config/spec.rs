//! Config key specifications: names, defaults, types and validation.
//!
//! One table per scope (broker, topic). A spec knows how to check a raw string value
//! and which Kafka config type it reports in DescribeConfigs. Nothing here knows where
//! a value came from; `config::broker` and `config::topic` do.

use std::fmt;

/// The value type of a key, with its allowed range; mirrors Kafka's ConfigDef types.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Bool,
    Int {
        min: i64,
        max: i64,
    },
    /// An int in `[min, max]` or exactly `or` (Kafka's gzip level: 1..9 or -1).
    IntOr {
        min: i64,
        max: i64,
        or: i64,
    },
    Long {
        min: i64,
        max: i64,
    },
    Double {
        min: f64,
        max: f64,
    },
    Str,
    /// One of a fixed set of strings (case-insensitive, as Kafka compares them).
    Enum(&'static [&'static str]),
    /// A comma-separated list; if `allowed` is non-empty each item must be one of them.
    List {
        allowed: &'static [&'static str],
    },
    Password,
}

impl Kind {
    /// Kafka's DescribeConfigs `config_type` code (KIP-569).
    pub fn kafka_type(&self) -> i8 {
        match self {
            Kind::Bool => 1,
            Kind::Str | Kind::Enum(_) => 2,
            Kind::Int { .. } | Kind::IntOr { .. } => 3,
            Kind::Long { .. } => 5,
            Kind::Double { .. } => 6,
            Kind::List { .. } => 7,
            Kind::Password => 9,
        }
    }

    /// Checks `value` against the type and range; the error says what was expected.
    pub fn check(&self, value: &str) -> Result<(), String> {
        let value = value.trim();
        match *self {
            Kind::Bool => match value.to_ascii_lowercase().as_str() {
                "true" | "false" => Ok(()),
                _ => Err("expected true or false".into()),
            },
            Kind::Int { min, max } | Kind::Long { min, max } => {
                let parsed: i64 = value
                    .parse()
                    .map_err(|_| format!("expected an integer, got '{value}'"))?;
                if parsed < min || parsed > max {
                    return Err(format!("{parsed} is outside [{min}, {max}]"));
                }
                Ok(())
            }
            Kind::IntOr { min, max, or } => {
                let parsed: i64 = value
                    .parse()
                    .map_err(|_| format!("expected an integer, got '{value}'"))?;
                if parsed != or && (parsed < min || parsed > max) {
                    return Err(format!("{parsed} is outside [{min}, {max}] and not {or}"));
                }
                Ok(())
            }
            Kind::Double { min, max } => {
                let parsed: f64 = value
                    .parse()
                    .map_err(|_| format!("expected a number, got '{value}'"))?;
                if !(min..=max).contains(&parsed) {
                    return Err(format!("{parsed} is outside [{min}, {max}]"));
                }
                Ok(())
            }
            Kind::Str | Kind::Password => Ok(()),
            Kind::Enum(allowed) => {
                if allowed.iter().any(|a| a.eq_ignore_ascii_case(value)) {
                    Ok(())
                } else {
                    Err(format!("expected one of {}", allowed.join(", ")))
                }
            }
            Kind::List { allowed } => {
                if allowed.is_empty() {
                    return Ok(());
                }
                for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if !allowed.iter().any(|a| a.eq_ignore_ascii_case(item)) {
                        return Err(format!("'{item}' is not one of {}", allowed.join(", ")));
                    }
                }
                Ok(())
            }
        }
    }
}

/// One known key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    pub name: &'static str,
    /// The built-in default, as Kafka would print it; empty means "no value" (null).
    pub default: &'static str,
    pub kind: Kind,
    pub doc: &'static str,
    /// False for keys accepted and shown but not acted on yet (README lists them).
    pub enforced: bool,
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (default '{}'): {}",
            self.name, self.default, self.doc
        )
    }
}

/// Keys accepted so that existing Kafka configs load unchanged, that can never act in
/// Strata, with the reason `--list-config` prints and a start-up warning repeats when
/// one is set.
pub const NO_EFFECT: &[(&str, &str)] = &[
    (
        "num.network.threads",
        "connections run on the tokio runtime, which sizes itself to the machine's cores; there are no network threads to size",
    ),
    (
        "num.io.threads",
        "requests run on the same tokio runtime as their connections; there is no request-handler pool to size",
    ),
    (
        "log.message.downconversion.enable",
        "removed in Kafka 4.0 (KIP-724): Strata serves only v2 record batches (Fetch v4 and later) and never down-converts",
    ),
    (
        "message.downconversion.enable",
        "removed in Kafka 4.0 (KIP-724): Strata serves only v2 record batches (Fetch v4 and later) and never down-converts",
    ),
    (
        "log.message.timestamp.difference.max.ms",
        "removed in Kafka 4.0 (KIP-937): use log.message.timestamp.before.max.ms and log.message.timestamp.after.max.ms",
    ),
    (
        "message.timestamp.difference.max.ms",
        "removed in Kafka 4.0 (KIP-937): use message.timestamp.before.max.ms and message.timestamp.after.max.ms",
    ),
];

/// Why `key` can never act in Strata, if it is one of those.
pub fn no_effect_reason(key: &str) -> Option<&'static str> {
    NO_EFFECT
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, reason)| *reason)
}

pub const I32_MAX: i64 = i32::MAX as i64;
pub const I64_MAX: i64 = i64::MAX;

pub const fn int(min: i64, max: i64) -> Kind {
    Kind::Int { min, max }
}
pub const fn long(min: i64, max: i64) -> Kind {
    Kind::Long { min, max }
}

/// Kafka's compression level ranges (KIP-390, `CompressionType` in the Java client).
/// gzip: 1..9 or -1 (the codec's default, 6).
pub const GZIP_LEVEL: Kind = Kind::IntOr {
    min: 1,
    max: 9,
    or: -1,
};
pub const LZ4_LEVEL: Kind = int(1, 17);
/// zstd: `ZSTD_minCLevel()` ..= `ZSTD_MAX_CLEVEL`.
pub const ZSTD_LEVEL: Kind = int(-131072, 22);

pub const CLEANUP_POLICIES: &[&str] = &["delete", "compact"];
pub const COMPRESSION_TYPES: &[&str] =
    &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];
pub const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];
