//! Topic configs by Kafka's topic names, their broker-level synonyms, and the typed
//! [`LogConfig`] a partition's log runs with.
//!
//! A topic key's effective value is, as in Kafka: the topic's own setting, else the
//! dynamic cluster-wide broker setting of its synonym, else the static broker setting
//! (file, environment, `--override`), else the built-in default.

use std::collections::BTreeMap;

use super::spec::{
    int, long, KeySpec, Kind, CLEANUP_POLICIES, COMPRESSION_TYPES, GZIP_LEVEL, I32_MAX, I64_MAX,
    LZ4_LEVEL, TIMESTAMP_TYPES, ZSTD_LEVEL,
};

/// A topic key and the broker keys Kafka reports as its synonyms, most specific first.
#[derive(Debug, Clone, Copy)]
pub struct TopicKey {
    pub spec: KeySpec,
    pub broker_synonyms: &'static [&'static str],
}

const fn topic(
    name: &'static str,
    default: &'static str,
    kind: Kind,
    broker_synonyms: &'static [&'static str],
    enforced: bool,
    doc: &'static str,
) -> TopicKey {
    TopicKey {
        spec: KeySpec {
            name,
            default,
            kind,
            doc,
            enforced,
        },
        broker_synonyms,
    }
}

/// Every topic config Kafka users set. `enforced: false` ones are stored and shown only.
pub const TOPIC_KEYS: &[TopicKey] = &[
    topic(
        "cleanup.policy",
        "delete",
        Kind::List {
            allowed: CLEANUP_POLICIES,
        },
        &["log.cleanup.policy"],
        false,
        "delete and/or compact old segments (compaction not yet acted on)",
    ),
    topic(
        "compression.type",
        "producer",
        Kind::Enum(COMPRESSION_TYPES),
        &["compression.type"],
        true,
        "final codec of the topic's batches: producer keeps each batch as sent, \
         otherwise batches with another codec are recompressed on append",
    ),
    topic(
        "compression.gzip.level",
        "-1",
        GZIP_LEVEL,
        &["compression.gzip.level"],
        true,
        "gzip level when compression.type=gzip (1-9, -1 = the codec default, 6)",
    ),
    topic(
        "compression.lz4.level",
        "9",
        LZ4_LEVEL,
        &["compression.lz4.level"],
        true,
        "lz4 level when compression.type=lz4 (1-17)",
    ),
    topic(
        "compression.zstd.level",
        "3",
        ZSTD_LEVEL,
        &["compression.zstd.level"],
        true,
        "zstd level when compression.type=zstd (-131072 to 22)",
    ),
    topic(
        "delete.retention.ms",
        "86400000",
        long(0, I64_MAX),
        &["log.cleaner.delete.retention.ms"],
        false,
        "how long tombstones are kept on compacted topics",
    ),
    topic(
        "file.delete.delay.ms",
        "60000",
        long(0, I64_MAX),
        &["log.segment.delete.delay.ms"],
        true,
        "delay before a deleted segment's files are removed",
    ),
    topic(
        "flush.messages",
        "9223372036854775807",
        long(1, I64_MAX),
        &["log.flush.interval.messages"],
        true,
        "fsync after this many messages",
    ),
    topic(
        "flush.ms",
        "9223372036854775807",
        long(0, I64_MAX),
        &["log.flush.interval.ms"],
        true,
        "fsync at least this often",
    ),
    topic(
        "follower.replication.throttled.replicas",
        "",
        Kind::Str,
        &["follower.replication.throttled.replicas"],
        false,
        "replicas throttled on the follower side",
    ),
    topic(
        "index.interval.bytes",
        "4096",
        int(0, I32_MAX),
        &["log.index.interval.bytes"],
        true,
        "bytes between offset index entries",
    ),
    topic(
        "leader.replication.throttled.replicas",
        "",
        Kind::Str,
        &["leader.replication.throttled.replicas"],
        false,
        "replicas throttled on the leader side",
    ),
    topic(
        "local.retention.bytes",
        "-2",
        long(-2, I64_MAX),
        &["log.local.retention.bytes"],
        true,
        "bytes kept locally on a tiered topic (-2 = retention.bytes)",
    ),
    topic(
        "local.retention.ms",
        "-2",
        long(-2, I64_MAX),
        &["log.local.retention.ms"],
        true,
        "time kept locally on a tiered topic (-2 = retention.ms)",
    ),
    topic(
        "max.compaction.lag.ms",
        "9223372036854775807",
        long(1, I64_MAX),
        &["log.cleaner.max.compaction.lag.ms"],
        false,
        "longest a record stays uncompacted",
    ),
    topic(
        "max.message.bytes",
        "1048588",
        int(0, I32_MAX),
        &["message.max.bytes"],
        true,
        "largest record batch accepted",
    ),
    topic(
        "message.downconversion.enable",
        "true",
        Kind::Bool,
        &["log.message.downconversion.enable"],
        false,
        "accepted for compatibility; batches are never down-converted",
    ),
    topic(
        "message.timestamp.after.max.ms",
        "3600000",
        long(0, I64_MAX),
        &["log.message.timestamp.after.max.ms"],
        true,
        "how far in the future a CreateTime timestamp may be",
    ),
    topic(
        "message.timestamp.before.max.ms",
        "9223372036854775807",
        long(0, I64_MAX),
        &["log.message.timestamp.before.max.ms"],
        true,
        "how far in the past a CreateTime timestamp may be",
    ),
    topic(
        "message.timestamp.difference.max.ms",
        "9223372036854775807",
        long(0, I64_MAX),
        &["log.message.timestamp.difference.max.ms"],
        false,
        "deprecated by Kafka; use the before/after keys",
    ),
    topic(
        "message.timestamp.type",
        "CreateTime",
        Kind::Enum(TIMESTAMP_TYPES),
        &["log.message.timestamp.type"],
        true,
        "CreateTime keeps the producer's timestamp, LogAppendTime stamps the broker's",
    ),
    topic(
        "min.cleanable.dirty.ratio",
        "0.5",
        Kind::Double { min: 0.0, max: 1.0 },
        &["log.cleaner.min.cleanable.ratio"],
        false,
        "dirty ratio that triggers compaction",
    ),
    topic(
        "min.compaction.lag.ms",
        "0",
        long(0, I64_MAX),
        &["log.cleaner.min.compaction.lag.ms"],
        false,
        "shortest a record stays uncompacted",
    ),
    topic(
        "min.insync.replicas",
        "1",
        int(1, I32_MAX),
        &["min.insync.replicas"],
        true,
        "replicas that must have a batch for acks=all",
    ),
    topic(
        "preallocate",
        "false",
        Kind::Bool,
        &["log.preallocate"],
        true,
        "preallocate segment files",
    ),
    topic(
        "remote.log.copy.disable",
        "false",
        Kind::Bool,
        &[],
        false,
        "stop copying segments to remote storage",
    ),
    topic(
        "remote.log.delete.on.disable",
        "false",
        Kind::Bool,
        &[],
        false,
        "delete remote data when tiering is disabled",
    ),
    topic(
        "remote.storage.enable",
        "false",
        Kind::Bool,
        &["log.remote.storage.enable"],
        true,
        "tier sealed segments to the object store",
    ),
    topic(
        "retention.bytes",
        "-1",
        long(-1, I64_MAX),
        &["log.retention.bytes"],
        true,
        "partition size beyond which old segments are deleted (-1 = no limit)",
    ),
    topic(
        "retention.ms",
        "604800000",
        long(-1, I64_MAX),
        &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
        true,
        "age beyond which segments are deleted (-1 = forever)",
    ),
    topic(
        "segment.bytes",
        "1073741824",
        int(14, I32_MAX),
        &["log.segment.bytes"],
        true,
        "segment file size that triggers a roll",
    ),
    topic(
        "segment.index.bytes",
        "10485760",
        int(8, I32_MAX),
        &["log.index.size.max.bytes"],
        true,
        "largest offset index per segment; a full index rolls the segment",
    ),
    topic(
        "segment.jitter.ms",
        "0",
        long(0, I64_MAX),
        &["log.roll.jitter.ms", "log.roll.jitter.hours"],
        true,
        "largest random jitter subtracted from segment.ms, drawn per segment",
    ),
    topic(
        "segment.ms",
        "604800000",
        long(1, I64_MAX),
        &["log.roll.ms", "log.roll.hours"],
        true,
        "age that triggers a segment roll",
    ),
    topic(
        "unclean.leader.election.enable",
        "false",
        Kind::Bool,
        &["unclean.leader.election.enable"],
        false,
        "allow leaders outside the ISR",
    ),
];

pub fn topic_key(name: &str) -> Option<&'static TopicKey> {
    TOPIC_KEYS.iter().find(|k| k.spec.name == name)
}

/// Checks one topic config name and value; the error is human text for INVALID_CONFIG.
pub fn validate_topic_config(name: &str, value: Option<&str>) -> Result<(), String> {
    let key = topic_key(name).ok_or_else(|| format!("unknown topic config '{name}'"))?;
    match value {
        // A null value means "delete": always fine.
        None => Ok(()),
        Some(v) => key
            .spec
            .kind
            .check(v)
            .map_err(|e| format!("invalid value '{v}' for '{name}': {e}")),
    }
}

/// Cross-key rules Kafka enforces on a topic's full set of configs.
pub fn validate_topic_set(effective: &BTreeMap<String, String>) -> Result<(), String> {
    let get = |k: &str| effective.get(k).and_then(|v| v.trim().parse::<i64>().ok());
    if let (Some(local), Some(total)) = (get("local.retention.ms"), get("retention.ms")) {
        if local >= 0 && total >= 0 && local > total {
            return Err(format!(
                "local.retention.ms ({local}) may not exceed retention.ms ({total})"
            ));
        }
    }
    if let (Some(local), Some(total)) = (get("local.retention.bytes"), get("retention.bytes")) {
        if local >= 0 && total >= 0 && local > total {
            return Err(format!(
                "local.retention.bytes ({local}) may not exceed retention.bytes ({total})"
            ));
        }
    }
    Ok(())
}

/// Timestamp handling of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// A topic's `compression.type` with the level of its codec resolved (KIP-390).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicCompression {
    /// Keep every batch as the producer compressed it.
    Producer,
    Uncompressed,
    /// Level 1..=9 (Kafka's -1 is resolved to the codec default, 6).
    Gzip {
        level: u32,
    },
    Snappy,
    /// Level 1..=17.
    Lz4 {
        level: u32,
    },
    /// Level -131072..=22.
    Zstd {
        level: i32,
    },
}

impl TopicCompression {
    /// The gzip level Kafka's -1 ("codec default") stands for.
    pub const GZIP_DEFAULT_LEVEL: u32 = 6;

    /// From the effective values of `compression.type` and the three level keys; bad
    /// values (already refused by validation) fall back to Kafka's defaults.
    pub fn resolve(kind: &str, gzip: i64, lz4: i64, zstd: i64) -> TopicCompression {
        match kind.trim().to_ascii_lowercase().as_str() {
            "uncompressed" => TopicCompression::Uncompressed,
            "gzip" => TopicCompression::Gzip {
                level: if (1..=9).contains(&gzip) {
                    gzip as u32
                } else {
                    Self::GZIP_DEFAULT_LEVEL
                },
            },
            "snappy" => TopicCompression::Snappy,
            "lz4" => TopicCompression::Lz4 {
                level: if (1..=17).contains(&lz4) {
                    lz4 as u32
                } else {
                    9
                },
            },
            "zstd" => TopicCompression::Zstd {
                level: if (-131072..=22).contains(&zstd) {
                    zstd as i32
                } else {
                    3
                },
            },
            _ => TopicCompression::Producer,
        }
    }
}

/// The typed configs a partition's log acts on, resolved from the effective topic map.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub segment_jitter_ms: i64,
    pub segment_index_bytes: u64,
    /// `preallocate`: reserve `segment.bytes` of disk for each new segment.
    pub preallocate: bool,
    /// `file.delete.delay.ms`: a deleted segment's files are renamed `.deleted` and
    /// removed this much later.
    pub file_delete_delay_ms: i64,
    pub index_interval_bytes: u64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub max_message_bytes: usize,
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub timestamp_type: TimestampType,
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    pub min_insync_replicas: i32,
    /// `cleanup.policy` includes `delete`: time and size retention apply.
    pub delete_retention_enabled: bool,
    /// `remote.storage.enable`: sealed segments are uploaded and local copies trimmed
    /// by the local retention below.
    pub remote_storage_enable: bool,
    /// `local.retention.ms` with -2 resolved to `retention.ms`.
    pub local_retention_ms: i64,
    /// `local.retention.bytes` with -2 resolved to `retention.bytes`.
    pub local_retention_bytes: i64,
    /// `compression.type` and its level: the codec batches are stored with.
    pub compression: TopicCompression,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self::from_effective(&BTreeMap::new())
    }
}

impl LogConfig {
    /// Builds from an effective topic map (every key present and already validated);
    /// a missing or unparsable key falls back to the built-in default.
    pub fn from_effective(effective: &BTreeMap<String, String>) -> Self {
        let raw = |name: &str| -> String {
            effective.get(name).cloned().unwrap_or_else(|| {
                topic_key(name)
                    .map(|k| k.spec.default.to_string())
                    .unwrap_or_default()
            })
        };
        let num = |name: &str| -> i64 {
            raw(name).trim().parse().unwrap_or_else(|_| {
                topic_key(name)
                    .and_then(|k| k.spec.default.parse().ok())
                    .unwrap_or(0)
            })
        };
        LogConfig {
            segment_bytes: num("segment.bytes").max(14) as u64,
            segment_ms: num("segment.ms").max(1),
            segment_jitter_ms: num("segment.jitter.ms").max(0),
            preallocate: raw("preallocate").eq_ignore_ascii_case("true"),
            file_delete_delay_ms: num("file.delete.delay.ms").max(0),
            segment_index_bytes: num("segment.index.bytes").max(8) as u64,
            index_interval_bytes: num("index.interval.bytes").max(0) as u64,
            retention_ms: num("retention.ms"),
            retention_bytes: num("retention.bytes"),
            max_message_bytes: num("max.message.bytes").max(0) as usize,
            flush_messages: num("flush.messages"),
            flush_ms: num("flush.ms"),
            timestamp_type: if raw("message.timestamp.type").eq_ignore_ascii_case("LogAppendTime") {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            timestamp_before_max_ms: num("message.timestamp.before.max.ms"),
            timestamp_after_max_ms: num("message.timestamp.after.max.ms"),
            min_insync_replicas: num("min.insync.replicas").clamp(1, i32::MAX as i64) as i32,
            delete_retention_enabled: raw("cleanup.policy")
                .split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("delete")),
            // Compacted topics never tier (as in Kafka), even when a broker-wide
            // log.remote.storage.enable would turn tiering on.
            remote_storage_enable: raw("remote.storage.enable").eq_ignore_ascii_case("true")
                && !raw("cleanup.policy")
                    .split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("compact")),
            local_retention_ms: match num("local.retention.ms") {
                -2 => num("retention.ms"),
                v => v,
            },
            local_retention_bytes: match num("local.retention.bytes") {
                -2 => num("retention.bytes"),
                v => v,
            },
            compression: TopicCompression::resolve(
                &raw("compression.type"),
                num("compression.gzip.level"),
                num("compression.lz4.level"),
                num("compression.zstd.level"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_and_bad_values() {
        assert!(validate_topic_config("retention.ms", Some("1000")).is_ok());
        assert!(validate_topic_config("retention.ms", Some("soon")).is_err());
        assert!(validate_topic_config("no.such.key", Some("1")).is_err());
        assert!(validate_topic_config("cleanup.policy", Some("compact,delete")).is_ok());
        assert!(validate_topic_config("cleanup.policy", Some("shred")).is_err());
        assert!(validate_topic_config("message.timestamp.type", Some("LogAppendTime")).is_ok());
    }

    #[test]
    fn compression_keys_are_checked_and_resolved() {
        assert!(validate_topic_config("compression.type", Some("zstd")).is_ok());
        assert!(validate_topic_config("compression.type", Some("brotli")).is_err());
        for (key, ok, bad) in [
            (
                "compression.gzip.level",
                &["-1", "1", "9"][..],
                &["0", "10", "-2"][..],
            ),
            ("compression.lz4.level", &["1", "17"][..], &["0", "18"][..]),
            (
                "compression.zstd.level",
                &["-131072", "0", "22"][..],
                &["23", "-131073"][..],
            ),
        ] {
            for v in ok {
                assert!(validate_topic_config(key, Some(v)).is_ok(), "{key}={v}");
            }
            for v in bad {
                assert!(validate_topic_config(key, Some(v)).is_err(), "{key}={v}");
            }
        }
        assert_eq!(LogConfig::default().compression, TopicCompression::Producer);
        let mut m = BTreeMap::new();
        m.insert("compression.type".to_string(), "gzip".to_string());
        assert_eq!(
            LogConfig::from_effective(&m).compression,
            TopicCompression::Gzip { level: 6 }
        );
        m.insert("compression.type".to_string(), "ZSTD".to_string());
        m.insert("compression.zstd.level".to_string(), "-5".to_string());
        assert_eq!(
            LogConfig::from_effective(&m).compression,
            TopicCompression::Zstd { level: -5 }
        );
        m.insert("compression.type".to_string(), "lz4".to_string());
        assert_eq!(
            LogConfig::from_effective(&m).compression,
            TopicCompression::Lz4 { level: 9 }
        );
    }

    #[test]
    fn local_retention_may_not_exceed_total() {
        let mut m = BTreeMap::new();
        m.insert("retention.ms".to_string(), "1000".to_string());
        m.insert("local.retention.ms".to_string(), "2000".to_string());
        assert!(validate_topic_set(&m).is_err());
        m.insert("local.retention.ms".to_string(), "-2".to_string());
        assert!(validate_topic_set(&m).is_ok());
    }
}
