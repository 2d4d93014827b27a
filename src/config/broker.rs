//! Broker keys by Kafka's broker names, where values come from, and the typed
//! [`BrokerConfig`] the server is built from.
//!
//! Sources, later wins: built-in defaults → TOML file (tables flatten into dotted
//! keys) → `STRATA_*` environment → `--override key=value`. Every key is checked once
//! here; an unknown key or bad value stops start-up with an error naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::spec::{
    int, long, KeySpec, Kind, CLEANUP_POLICIES, COMPRESSION_TYPES, GZIP_LEVEL, I32_MAX, I64_MAX,
    LZ4_LEVEL, TIMESTAMP_TYPES, ZSTD_LEVEL,
};
use super::topic::{TopicKey, TOPIC_KEYS};
use super::ConfigError;

const fn key(
    name: &'static str,
    default: &'static str,
    kind: Kind,
    enforced: bool,
    doc: &'static str,
) -> KeySpec {
    KeySpec {
        name,
        default,
        kind,
        doc,
        enforced,
    }
}

/// Every broker key Strata knows. `enforced: false` keys are accepted for drop-in
/// compatibility with existing Kafka configs and shown, but have no effect yet.
pub const BROKER_KEYS: &[KeySpec] = &[
    key("node.id", "1", int(0, I32_MAX), true, "this broker's id"),
    key(
        "broker.id",
        "",
        int(-1, I32_MAX),
        true,
        "legacy alias of node.id; must equal it when set",
    ),
    key(
        "process.roles",
        "broker,controller",
        Kind::List {
            allowed: &["broker", "controller"],
        },
        true,
        "KRaft roles: broker,controller (combined), broker (a metadata observer) or controller (a dedicated voter)",
    ),
    key(
        "controller.quorum.voters",
        "",
        Kind::Str,
        true,
        "metadata quorum voters as id@host:port,... (empty = single node)",
    ),
    key(
        "controller.listener.names",
        "",
        Kind::Str,
        true,
        "the listener (in listeners) that carries the metadata quorum's RPCs",
    ),
    key(
        "inter.broker.listener.name",
        "",
        Kind::Str,
        true,
        "listener followers fetch over (default: the first non-controller listener)",
    ),
    key(
        "broker.heartbeat.interval.ms",
        "2000",
        int(1, I32_MAX),
        true,
        "how often a broker heartbeats to the active controller",
    ),
    key(
        "broker.session.timeout.ms",
        "9000",
        int(1, I32_MAX),
        true,
        "a broker silent this long is fenced and loses its leaderships",
    ),
    key(
        "controlled.shutdown.enable",
        "true",
        Kind::Bool,
        true,
        "on SIGTERM, move leaderships away before stopping",
    ),
    key(
        "replica.lag.time.max.ms",
        "30000",
        long(1, I64_MAX),
        true,
        "a follower not caught up for this long leaves the ISR",
    ),
    key(
        "replica.fetch.max.bytes",
        "1048576",
        int(0, I32_MAX),
        true,
        "bytes a follower asks for per partition",
    ),
    key(
        "replica.fetch.response.max.bytes",
        "10485760",
        int(0, I32_MAX),
        true,
        "bytes a follower asks for per fetch",
    ),
    key(
        "replica.fetch.wait.max.ms",
        "500",
        int(0, I32_MAX),
        true,
        "how long a follower's fetch waits for data at the leader",
    ),
    key(
        "replica.fetch.min.bytes",
        "1",
        int(1, I32_MAX),
        true,
        "bytes a follower's fetch waits for",
    ),
    key(
        "replica.fetch.backoff.ms",
        "1000",
        int(0, I32_MAX),
        true,
        "pause after a follower fetch fails",
    ),
    key(
        "replica.socket.timeout.ms",
        "30000",
        int(1, I32_MAX),
        true,
        "a follower fetch with no answer this long is retried on a new connection",
    ),
    key(
        "num.replica.fetchers",
        "1",
        int(1, I32_MAX),
        true,
        "fetcher connections per source broker",
    ),
    key(
        "replica.selector.class",
        "",
        Kind::Str,
        true,
        "org.apache.kafka.common.replica.RackAwareReplicaSelector lets consumers read from their rack (KIP-392)",
    ),
    key(
        "auto.leader.rebalance.enable",
        "true",
        Kind::Bool,
        true,
        "move leadership back to preferred replicas",
    ),
    key(
        "leader.imbalance.check.interval.seconds",
        "300",
        long(1, I64_MAX),
        true,
        "how often the preferred-leader check runs",
    ),
    key(
        "leader.imbalance.per.broker.percentage",
        "10",
        int(0, 100),
        true,
        "imbalance per broker that triggers preferred leader election",
    ),
    key(
        "listeners",
        "PLAINTEXT://127.0.0.1:9092",
        Kind::Str,
        true,
        "comma-separated NAME://host:port listeners to bind",
    ),
    key(
        "advertised.listeners",
        "",
        Kind::Str,
        true,
        "addresses given to clients (default: listeners)",
    ),
    key(
        "listener.security.protocol.map",
        "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        Kind::Str,
        true,
        "listener name → security protocol",
    ),
    key(
        "broker.rack",
        "",
        Kind::Str,
        true,
        "rack reported in metadata",
    ),
    key(
        "log.dirs",
        "./data",
        Kind::List { allowed: &[] },
        true,
        "directories holding partition logs",
    ),
    key(
        "log.dir",
        "",
        Kind::Str,
        true,
        "single log directory, used when log.dirs is not set",
    ),
    key(
        "metadata.log.dir",
        "",
        Kind::Str,
        true,
        "where the metadata quorum keeps its log (default: first of log.dirs)",
    ),
    key(
        "num.partitions",
        "1",
        int(1, I32_MAX),
        true,
        "partitions of an auto-created topic",
    ),
    key(
        "default.replication.factor",
        "1",
        int(1, i16::MAX as i64),
        true,
        "replication factor of an auto-created topic",
    ),
    key(
        "auto.create.topics.enable",
        "true",
        Kind::Bool,
        true,
        "create a topic on first Metadata request naming it",
    ),
    key(
        "delete.topic.enable",
        "true",
        Kind::Bool,
        true,
        "allow DeleteTopics",
    ),
    key(
        "message.max.bytes",
        "1048588",
        int(0, I32_MAX),
        true,
        "largest record batch (topic default of max.message.bytes)",
    ),
    key(
        "socket.request.max.bytes",
        "104857600",
        int(1, I32_MAX),
        true,
        "largest request frame accepted",
    ),
    key(
        "socket.send.buffer.bytes",
        "102400",
        int(-1, I32_MAX),
        true,
        "SO_SNDBUF (-1 = OS default)",
    ),
    key(
        "socket.receive.buffer.bytes",
        "102400",
        int(-1, I32_MAX),
        true,
        "SO_RCVBUF (-1 = OS default)",
    ),
    key(
        "num.network.threads",
        "3",
        int(1, I32_MAX),
        false,
        "no effect in Strata (see --list-config)",
    ),
    key(
        "num.io.threads",
        "8",
        int(1, I32_MAX),
        false,
        "no effect in Strata (see --list-config)",
    ),
    key(
        "num.recovery.threads.per.data.dir",
        "1",
        int(1, I32_MAX),
        true,
        "threads per log dir that open and recover partition logs at start (in parallel)",
    ),
    key(
        "log.segment.bytes",
        "1073741824",
        int(14, I32_MAX),
        true,
        "topic default of segment.bytes",
    ),
    key(
        "log.roll.ms",
        "",
        long(1, I64_MAX),
        true,
        "topic default of segment.ms (wins over log.roll.hours)",
    ),
    key(
        "log.roll.hours",
        "168",
        int(1, I32_MAX),
        true,
        "topic default of segment.ms, in hours",
    ),
    key(
        "log.roll.jitter.ms",
        "",
        long(0, I64_MAX),
        true,
        "topic default of segment.jitter.ms",
    ),
    key(
        "log.roll.jitter.hours",
        "0",
        int(0, I32_MAX),
        true,
        "topic default of segment.jitter.ms, in hours",
    ),
    key(
        "log.retention.ms",
        "",
        long(-1, I64_MAX),
        true,
        "topic default of retention.ms (wins over minutes and hours)",
    ),
    key(
        "log.retention.minutes",
        "",
        int(-1, I32_MAX),
        true,
        "topic default of retention.ms, in minutes",
    ),
    key(
        "log.retention.hours",
        "168",
        int(-1, I32_MAX),
        true,
        "topic default of retention.ms, in hours",
    ),
    key(
        "log.retention.bytes",
        "-1",
        long(-1, I64_MAX),
        true,
        "topic default of retention.bytes",
    ),
    key(
        "log.retention.check.interval.ms",
        "300000",
        long(1, I64_MAX),
        true,
        "how often retention runs",
    ),
    key(
        "log.flush.interval.messages",
        "9223372036854775807",
        long(1, I64_MAX),
        true,
        "topic default of flush.messages",
    ),
    key(
        "log.flush.interval.ms",
        "",
        long(0, I64_MAX),
        true,
        "topic default of flush.ms",
    ),
    key(
        "log.flush.scheduler.interval.ms",
        "9223372036854775807",
        long(0, I64_MAX),
        true,
        "how often logs are checked for flush.ms, so data older than flush.ms is fsynced without further appends",
    ),
    key(
        "log.index.interval.bytes",
        "4096",
        int(0, I32_MAX),
        true,
        "topic default of index.interval.bytes",
    ),
    key(
        "log.index.size.max.bytes",
        "10485760",
        int(8, I32_MAX),
        true,
        "topic default of segment.index.bytes",
    ),
    key(
        "log.cleanup.policy",
        "delete",
        Kind::List {
            allowed: CLEANUP_POLICIES,
        },
        false,
        "topic default of cleanup.policy",
    ),
    key(
        "log.cleaner.enable",
        "true",
        Kind::Bool,
        false,
        "run the log cleaner (compaction not yet implemented)",
    ),
    key(
        "log.cleaner.delete.retention.ms",
        "86400000",
        long(0, I64_MAX),
        false,
        "topic default of delete.retention.ms",
    ),
    key(
        "log.cleaner.min.cleanable.ratio",
        "0.5",
        Kind::Double { min: 0.0, max: 1.0 },
        false,
        "topic default of min.cleanable.dirty.ratio",
    ),
    key(
        "log.cleaner.min.compaction.lag.ms",
        "0",
        long(0, I64_MAX),
        false,
        "topic default of min.compaction.lag.ms",
    ),
    key(
        "log.cleaner.max.compaction.lag.ms",
        "9223372036854775807",
        long(1, I64_MAX),
        false,
        "topic default of max.compaction.lag.ms",
    ),
    key(
        "log.message.timestamp.type",
        "CreateTime",
        Kind::Enum(TIMESTAMP_TYPES),
        true,
        "topic default of message.timestamp.type",
    ),
    key(
        "log.message.timestamp.before.max.ms",
        "9223372036854775807",
        long(0, I64_MAX),
        true,
        "topic default of message.timestamp.before.max.ms",
    ),
    key(
        "log.message.timestamp.after.max.ms",
        "3600000",
        long(0, I64_MAX),
        true,
        "topic default of message.timestamp.after.max.ms",
    ),
    key(
        "log.message.timestamp.difference.max.ms",
        "9223372036854775807",
        long(0, I64_MAX),
        false,
        "deprecated by Kafka",
    ),
    key(
        "log.message.downconversion.enable",
        "true",
        Kind::Bool,
        false,
        "accepted; never down-converts",
    ),
    key(
        "log.preallocate",
        "false",
        Kind::Bool,
        true,
        "topic default of preallocate",
    ),
    key(
        "log.segment.delete.delay.ms",
        "60000",
        long(0, I64_MAX),
        true,
        "topic default of file.delete.delay.ms",
    ),
    key(
        "log.local.retention.ms",
        "-2",
        long(-2, I64_MAX),
        true,
        "topic default of local.retention.ms",
    ),
    key(
        "log.local.retention.bytes",
        "-2",
        long(-2, I64_MAX),
        true,
        "topic default of local.retention.bytes",
    ),
    key(
        "remote.log.storage.system.enable",
        "true",
        Kind::Bool,
        true,
        "allow topics to tier to the object store (Strata's default: on; topics opt in with remote.storage.enable)",
    ),
    key(
        "log.remote.storage.enable",
        "false",
        Kind::Bool,
        true,
        "topic default of remote.storage.enable (a Strata extension: Kafka sets it per topic only)",
    ),
    key(
        "remote.log.manager.task.interval.ms",
        "30000",
        long(1, I64_MAX),
        true,
        "how often sealed segments are uploaded and remote retention applied",
    ),
    key(
        "remote.log.manager.copier.thread.pool.size",
        "10",
        int(1, 1024),
        true,
        "most segment uploads in flight at once",
    ),
    key(
        "remote.log.manager.task.retry.backoff.ms",
        "500",
        long(1, I64_MAX),
        true,
        "first retry delay of a failed upload or delete",
    ),
    key(
        "remote.log.manager.task.retry.backoff.max.ms",
        "30000",
        long(1, I64_MAX),
        true,
        "largest retry delay of a failed upload or delete",
    ),
    key(
        "remote.log.manager.task.retry.jitter",
        "0.2",
        Kind::Double { min: 0.0, max: 0.5 },
        true,
        "random fraction added to or taken from each retry delay",
    ),
    key(
        "remote.log.reader.threads",
        "10",
        int(1, 1024),
        true,
        "most remote reads (object-store range GETs) in flight at once",
    ),
    key(
        "remote.log.reader.chunk.bytes",
        "8388608",
        int(65536, 1 << 30),
        true,
        "size of the chunks remote segments are read and cached in",
    ),
    key(
        "remote.log.reader.prefetch.chunks",
        "4",
        int(0, 64),
        true,
        "chunks read ahead of a sequential remote reader",
    ),
    key(
        "remote.log.cache.memory.bytes",
        "268435456",
        long(1 << 20, I64_MAX),
        true,
        "memory tier of the remote read cache",
    ),
    key(
        "remote.log.cache.disk.bytes",
        "4294967296",
        long(0, I64_MAX),
        true,
        "disk tier of the remote read cache (0 = memory only)",
    ),
    key(
        "remote.log.cache.dir",
        "",
        Kind::Str,
        true,
        "directory of the disk cache tier (default: remote-cache under the first log dir)",
    ),
    key(
        "compression.type",
        "producer",
        Kind::Enum(COMPRESSION_TYPES),
        true,
        "topic default of compression.type",
    ),
    key(
        "compression.gzip.level",
        "-1",
        GZIP_LEVEL,
        true,
        "topic default of compression.gzip.level",
    ),
    key(
        "compression.lz4.level",
        "9",
        LZ4_LEVEL,
        true,
        "topic default of compression.lz4.level",
    ),
    key(
        "compression.zstd.level",
        "3",
        ZSTD_LEVEL,
        true,
        "topic default of compression.zstd.level",
    ),
    key(
        "min.insync.replicas",
        "1",
        int(1, I32_MAX),
        true,
        "topic default of min.insync.replicas",
    ),
    key(
        "unclean.leader.election.enable",
        "false",
        Kind::Bool,
        false,
        "topic default of unclean.leader.election.enable",
    ),
    key(
        "follower.replication.throttled.replicas",
        "",
        Kind::Str,
        false,
        "topic default of follower.replication.throttled.replicas",
    ),
    key(
        "leader.replication.throttled.replicas",
        "",
        Kind::Str,
        false,
        "topic default of leader.replication.throttled.replicas",
    ),
    key(
        "offsets.topic.num.partitions",
        "50",
        int(1, 10_000),
        true,
        "partitions of __consumer_offsets (fixed once the topic exists)",
    ),
    key(
        "offsets.topic.replication.factor",
        "3",
        int(1, i16::MAX as i64),
        true,
        "replication factor of __consumer_offsets",
    ),
    key(
        "offsets.topic.segment.bytes",
        "104857600",
        int(14, I32_MAX),
        true,
        "segment size of __consumer_offsets",
    ),
    key(
        "offsets.retention.minutes",
        "10080",
        int(1, I32_MAX),
        true,
        "how long committed offsets of an empty group are kept",
    ),
    key(
        "offsets.retention.check.interval.ms",
        "600000",
        long(1, I64_MAX),
        true,
        "how often expired offsets are removed",
    ),
    key(
        "offset.metadata.max.bytes",
        "4096",
        int(0, I32_MAX),
        true,
        "largest metadata string of a committed offset",
    ),
    key(
        "group.initial.rebalance.delay.ms",
        "3000",
        int(0, I32_MAX),
        true,
        "how long the first rebalance of an empty group waits for more members",
    ),
    key(
        "group.min.session.timeout.ms",
        "6000",
        int(0, I32_MAX),
        true,
        "smallest session.timeout.ms a consumer may use",
    ),
    key(
        "group.max.session.timeout.ms",
        "1800000",
        int(0, I32_MAX),
        true,
        "largest session.timeout.ms a consumer may use",
    ),
    key(
        "group.max.size",
        "2147483647",
        int(1, I32_MAX),
        true,
        "most members a consumer group may have",
    ),
    key(
        "group.consumer.session.timeout.ms",
        "45000",
        int(1, I32_MAX),
        true,
        "session timeout of KIP-848 consumer group members",
    ),
    key(
        "group.consumer.heartbeat.interval.ms",
        "5000",
        int(1, I32_MAX),
        true,
        "heartbeat interval given to KIP-848 consumer group members",
    ),
    key(
        "group.consumer.assignors",
        "uniform,range",
        Kind::List {
            allowed: &[
                "uniform",
                "range",
                "org.apache.kafka.coordinator.group.assignor.UniformAssignor",
                "org.apache.kafka.coordinator.group.assignor.RangeAssignor",
            ],
        },
        true,
        "server-side assignors of KIP-848 groups a member may ask for (group.remote.assignor); the first is the default",
    ),
    key(
        "object_store.url",
        "",
        Kind::Str,
        true,
        "object store for tiered storage: s3://bucket/prefix, file:///path or memory:// (default: file:// the remote-store directory under the first log dir)",
    ),
    key(
        "object_store.endpoint",
        "",
        Kind::Str,
        true,
        "S3-compatible endpoint URL (MinIO, LocalStack); empty = AWS",
    ),
    key(
        "object_store.region",
        "",
        Kind::Str,
        true,
        "S3 region (default: AWS_REGION, else us-east-1)",
    ),
    key(
        "object_store.allow_http",
        "false",
        Kind::Bool,
        true,
        "allow a plain-http endpoint",
    ),
    key(
        "object_store.sse",
        "",
        Kind::Enum(&["", "aws:kms", "AES256"]),
        true,
        "server-side encryption asked for on every upload: aws:kms (SSE-KMS) or AES256 (SSE-S3); empty = the bucket's default",
    ),
    key(
        "object_store.sse.kms.key.id",
        "",
        Kind::Str,
        true,
        "with object_store.sse=aws:kms: the KMS key (id, ARN or alias); empty = the AWS managed key",
    ),
    key(
        "object_store.sse.bucket.key.enabled",
        "",
        Kind::Enum(&["", "true", "false"]),
        true,
        "with object_store.sse=aws:kms: use an S3 Bucket Key (fewer KMS calls); empty = the bucket's setting",
    ),
    key(
        "object_store.virtual_hosted_style",
        "false",
        Kind::Bool,
        true,
        "address buckets as bucket.endpoint instead of endpoint/bucket",
    ),
    key(
        "object_store.access_key_id",
        "",
        Kind::Str,
        true,
        "S3 access key id (default: the AWS credential chain)",
    ),
    key(
        "object_store.secret_access_key",
        "",
        Kind::Password,
        true,
        "S3 secret access key (default: the AWS credential chain)",
    ),
    key(
        "strata.log.open.files.max",
        "0",
        int(0, I32_MAX),
        true,
        "most segment files held open at once, broker-wide (0 = half of the open-files limit left after a reserve); idle files close first",
    ),
    key(
        "metrics.listener",
        "",
        Kind::Str,
        true,
        "host:port of the Prometheus /metrics endpoint (empty = off)",
    ),
    key(
        "logs.format",
        "text",
        Kind::Enum(&["text", "json"]),
        true,
        "format of the log on stderr: text, or json (one object per line: timestamp, level, target, message, fields, spans, node_id)",
    ),
    key(
        "logs.delivery.url",
        "",
        Kind::Str,
        true,
        "deliver the broker's log as gzip'd JSON lines to s3://bucket/prefix (with the object_store.* endpoint, region and credentials) or file:///path; empty = off",
    ),
    key(
        "logs.delivery.interval.ms",
        "60000",
        int(1000, I32_MAX),
        true,
        "how often delivered log lines are written out as one object",
    ),
    key(
        "logs.delivery.buffer.bytes",
        "8388608",
        int(65536, I32_MAX),
        true,
        "log bytes held for delivery at most (lines beyond are dropped and counted, never blocking the broker)",
    ),
    key(
        "ssl.keystore.type",
        "PEM",
        Kind::Enum(&["PEM"]),
        true,
        "format of the keystore: PEM (KIP-651); per listener as listener.name.<l>.ssl.keystore.type",
    ),
    key(
        "ssl.keystore.location",
        "",
        Kind::Str,
        true,
        "PEM file with the private key and certificate chain of an SSL listener",
    ),
    key(
        "ssl.keystore.key",
        "",
        Kind::Password,
        true,
        "the private key inline (PEM), with ssl.keystore.certificate.chain",
    ),
    key(
        "ssl.keystore.certificate.chain",
        "",
        Kind::Str,
        true,
        "the certificate chain inline (PEM), with ssl.keystore.key",
    ),
    key(
        "ssl.key.password",
        "",
        Kind::Password,
        true,
        "password of the keystore's encrypted (PKCS#8 PBES2) private key",
    ),
    key(
        "ssl.truststore.type",
        "PEM",
        Kind::Enum(&["PEM"]),
        true,
        "format of the truststore: PEM (KIP-651)",
    ),
    key(
        "ssl.truststore.location",
        "",
        Kind::Str,
        true,
        "PEM file of the CAs trusted for client certificates (and by brokers reaching each other)",
    ),
    key(
        "ssl.truststore.certificates",
        "",
        Kind::Str,
        true,
        "the trusted CAs inline (PEM)",
    ),
    key(
        "ssl.client.auth",
        "none",
        Kind::Enum(&["none", "requested", "required"]),
        true,
        "client certificates: none, requested or required (mutual TLS)",
    ),
    key(
        "ssl.enabled.protocols",
        "TLSv1.2,TLSv1.3",
        Kind::List {
            allowed: &["TLSv1.2", "TLSv1.3"],
        },
        true,
        "TLS versions offered",
    ),
    key(
        "ssl.cipher.suites",
        "",
        Kind::List { allowed: &[] },
        true,
        "cipher suites by IANA name (empty = rustls's defaults)",
    ),
    key(
        "ssl.principal.mapping.rules",
        "DEFAULT",
        Kind::Str,
        true,
        "rules mapping a client certificate's subject to a principal (DEFAULT = the subject)",
    ),
    key(
        "security.inter.broker.protocol",
        "",
        Kind::Enum(&["", "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]),
        true,
        "older form of inter.broker.listener.name: the first listener with this protocol",
    ),
    key(
        "sasl.enabled.mechanisms",
        "SCRAM-SHA-512",
        Kind::List {
            allowed: &["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"],
        },
        true,
        "SASL mechanisms of SASL listeners (per listener as listener.name.<l>.sasl.enabled.mechanisms)",
    ),
    key(
        "sasl.mechanism.inter.broker.protocol",
        "GSSAPI",
        Kind::Str,
        true,
        "SASL mechanism brokers log in to each other with over a SASL inter-broker listener (SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN; Kafka's default GSSAPI is not offered)",
    ),
    key(
        "sasl.jaas.config",
        "",
        Kind::Password,
        true,
        "JAAS login line (username and password) a broker logs in to others with, as listener.name.<l>.<mechanism>.sasl.jaas.config",
    ),
    key(
        "connections.max.reauth.ms",
        "0",
        Kind::Long {
            min: 0,
            max: i64::MAX,
        },
        true,
        "SASL session lifetime: clients re-authenticate before it ends (KIP-368); 0 = never",
    ),
    key(
        "sasl.server.max.receive.size",
        "524288",
        int(1, I32_MAX),
        true,
        "largest request frame a SASL listener accepts before the connection has authenticated",
    ),
    key(
        "authorizer.class.name",
        "",
        Kind::Enum(&["", "org.apache.kafka.metadata.authorizer.StandardAuthorizer"]),
        true,
        "ACL authorization: Kafka's StandardAuthorizer name turns on Strata's built-in authorizer; empty = none",
    ),
    key(
        "super.users",
        "",
        Kind::Str,
        true,
        "principals allowed everything, separated by ';' (User:admin;User:CN=broker-1)",
    ),
    key(
        "allow.everyone.if.no.acl.found",
        "false",
        Kind::Bool,
        true,
        "allow an action on a resource that no ACL names at all",
    ),
    key(
        "connection.failed.authentication.delay.ms",
        "100",
        Kind::Int {
            min: 0,
            max: 60_000,
        },
        true,
        "delay before answering a failed authentication and closing the connection",
    ),
    key(
        "security.groups.file",
        "",
        Kind::Str,
        true,
        "JSON file of VPC-style security groups attached to listeners (default deny); required for a listener bound beyond loopback",
    ),
];

pub fn broker_key(name: &str) -> Option<&'static KeySpec> {
    BROKER_KEYS
        .iter()
        .find(|k| k.name == name)
        .or_else(|| per_listener_key(name))
}

/// Keys Kafka also takes per listener, as `listener.name.<listener>.<key>`.
fn is_per_listener(key: &str) -> bool {
    key.starts_with("ssl.") || key.starts_with("sasl.")
}

/// The spec of `listener.name.<listener>.<key>` (that of `<key>`), and of Kafka's
/// `listener.name.<listener>.<mechanism>.sasl.jaas.config`.
fn per_listener_key(name: &str) -> Option<&'static KeySpec> {
    let rest = name.strip_prefix("listener.name.")?;
    let (_, key) = rest.split_once('.')?;
    let key = match key.split_once('.') {
        Some((mechanism, "sasl.jaas.config")) if !mechanism.contains('.') => "sasl.jaas.config",
        _ => key,
    };
    BROKER_KEYS
        .iter()
        .find(|k| k.name == key && is_per_listener(key))
}

/// Where a value came from, as Kafka's DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic = 1,
    DynamicBroker = 2,
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
}

/// One listener: `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub security_protocol: String,
    pub host: String,
    pub port: u16,
}

impl Listener {
    /// Bound to a loopback address only (127.0.0.0/8, ::1, localhost): the one kind
    /// of listener that may run without a security group.
    pub fn is_loopback_only(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    pub fn bind_addr(&self) -> String {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// The validated broker configuration. Built once at start; immutable afterwards.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Every known key with its effective value ("" = null).
    pub values: BTreeMap<String, String>,
    /// Keys set by the file, the environment or `--override`.
    pub explicit: BTreeSet<String>,
    pub node_id: i32,
    pub listeners: Vec<Listener>,
    pub advertised_listeners: Vec<Listener>,
    pub rack: Option<String>,
    pub log_dirs: Vec<PathBuf>,
    pub metadata_log_dir: PathBuf,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub auto_create_topics_enable: bool,
    pub delete_topic_enable: bool,
    pub socket_request_max_bytes: usize,
    pub log_retention_check_interval_ms: u64,
    pub remote_storage_system_enable: bool,
    /// `process.roles`.
    pub roles: Roles,
    /// `controller.quorum.voters` by node id; empty for the single-node default.
    pub voters: BTreeMap<i32, VoterAddress>,
    /// The listener named by `controller.listener.names` (not served to clients).
    pub controller_listener: Option<String>,
    /// Its security protocol, PLAINTEXT or SSL (from `listener.security.protocol.map`),
    /// which nodes that do not bind it use to reach it too.
    pub controller_security_protocol: String,
    /// The listener followers fetch over (`inter.broker.listener.name`).
    pub inter_broker_listener: String,
}

/// `process.roles`: what a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub broker: bool,
    pub controller: bool,
}

/// One voter of `controller.quorum.voters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterAddress {
    pub host: String,
    pub port: u16,
}

impl VoterAddress {
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses `controller.quorum.voters`: `id@host:port,...`.
fn parse_voters(raw: &str) -> Result<BTreeMap<i32, VoterAddress>, ConfigError> {
    let bad = |reason: String| ConfigError::InvalidValue {
        key: "controller.quorum.voters".into(),
        value: raw.to_string(),
        reason,
    };
    let mut out = BTreeMap::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('@')
            .ok_or_else(|| bad(format!("'{item}' is not id@host:port")))?;
        let id: i32 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| bad(format!("'{id}' in '{item}' is not a node id")))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| bad(format!("'{item}' has no port")))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(format!("'{port}' in '{item}' is not a port number")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host == "0.0.0.0" || host == "::" {
            return Err(bad(format!(
                "'{item}' needs a host the other voters can reach"
            )));
        }
        if out
            .insert(
                id,
                VoterAddress {
                    host: host.to_string(),
                    port,
                },
            )
            .is_some()
        {
            return Err(bad(format!("node id {id} appears twice")));
        }
    }
    Ok(out)
}

/// A raw key/value pair and where it came from, before validation.
#[derive(Debug, Clone)]
pub struct RawSetting {
    pub key: String,
    pub value: String,
    pub origin: String,
}

/// Flattens a TOML document into dotted keys: `[object_store] url = "x"` → `object_store.url`.
pub fn flatten_toml(text: &str, origin: &str) -> Result<Vec<RawSetting>, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::File {
            path: origin.to_string(),
            reason: e.to_string(),
        })?;
    let mut out = Vec::new();
    flatten_table(&table, "", origin, &mut out)?;
    Ok(out)
}

fn flatten_table(
    table: &toml::Table,
    prefix: &str,
    origin: &str,
    out: &mut Vec<RawSetting>,
) -> Result<(), ConfigError> {
    for (k, v) in table {
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) => flatten_table(inner, &name, origin, out)?,
            other => out.push(RawSetting {
                value: toml_scalar(other).ok_or_else(|| ConfigError::InvalidValue {
                    key: name.clone(),
                    value: other.to_string(),
                    reason: format!("unsupported TOML value in {origin}"),
                })?,
                key: name,
                origin: origin.to_string(),
            }),
        }
    }
    Ok(())
}

fn toml_scalar(value: &toml::Value) -> Option<String> {
    Some(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(toml_scalar)
            .collect::<Option<Vec<_>>>()?
            .join(","),
        toml::Value::Table(_) => return None,
    })
}

/// The environment variable that sets `key`: `log.dirs` → `STRATA_LOG_DIRS`.
pub fn env_name(key: &str) -> String {
    format!(
        "STRATA_{}",
        key.replace(['.', '-'], "_").to_ascii_uppercase()
    )
}

/// A `STRATA_*` environment variable that names no key. The environment is shared with
/// everything else the user runs (`STRATA_HOME`, `STRATA_VERSION` in images and units),
/// so such a variable is reported and skipped, never fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownEnvVar {
    pub name: String,
    /// The closest key's variable, when one is close enough to be a likely typo.
    pub suggestion: Option<String>,
}

impl std::fmt::Display for UnknownEnvVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "environment variable {} names no config key; ignored",
            self.name
        )?;
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean {s}?)")?;
        }
        Ok(())
    }
}

/// The known key variable closest to `name`, if within a typo's distance.
fn closest_env_name(name: &str) -> Option<String> {
    let suffix = name.trim_start_matches("STRATA_");
    let (best, distance) = BROKER_KEYS
        .iter()
        .map(|k| env_name(k.name))
        .map(|candidate| {
            let d = strsim::levenshtein(suffix, candidate.trim_start_matches("STRATA_"));
            (candidate, d)
        })
        .min_by_key(|(_, d)| *d)?;
    // One edit in four characters, at most three: STRATA_LOG_DIR_S is a typo of
    // STRATA_LOG_DIRS, STRATA_HOME is nothing of ours.
    (distance > 0 && distance <= (suffix.len() / 4).clamp(1, 3)).then_some(best)
}

/// Picks the `STRATA_*` variables out of an environment: the settings they make, and
/// the ones that name no key (for the caller to warn about).
pub fn settings_from_env(
    vars: impl IntoIterator<Item = (String, String)>,
) -> (Vec<RawSetting>, Vec<UnknownEnvVar>) {
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    for (name, value) in vars {
        if !name.starts_with("STRATA_") {
            continue;
        }
        match BROKER_KEYS.iter().find(|k| env_name(k.name) == name) {
            Some(key) => out.push(RawSetting {
                key: key.name.to_string(),
                value,
                origin: format!("environment variable {name}"),
            }),
            None => unknown.push(UnknownEnvVar {
                suggestion: closest_env_name(&name),
                name,
            }),
        }
    }
    (out, unknown)
}

/// Parses `key=value` from `--override`.
pub fn setting_from_override(arg: &str) -> Result<RawSetting, ConfigError> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| ConfigError::InvalidValue {
            key: arg.to_string(),
            value: String::new(),
            reason: "--override takes key=value".into(),
        })?;
    Ok(RawSetting {
        key: key.trim().to_string(),
        value: value.trim().to_string(),
        origin: "--override".into(),
    })
}

fn parse_listeners(
    key: &str,
    raw: &str,
    protocol_map: &BTreeMap<String, String>,
) -> Result<Vec<Listener>, ConfigError> {
    let bad = |reason: String| ConfigError::InvalidValue {
        key: key.to_string(),
        value: raw.to_string(),
        reason,
    };
    let mut out: Vec<Listener> = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, rest) = item
            .split_once("://")
            .ok_or_else(|| bad(format!("'{item}' is not NAME://host:port")))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad(format!("'{item}' has no port")))?;
        let port: u16 = port
            .parse()
            .map_err(|_| bad(format!("'{port}' is not a port number")))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = name.to_ascii_uppercase();
        let protocol = protocol_map.get(&name).cloned().ok_or_else(|| {
            bad(format!(
                "listener name '{name}' is not in listener.security.protocol.map"
            ))
        })?;
        if !["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"].contains(&protocol.as_str()) {
            return Err(bad(format!(
                "security protocol {protocol} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
            )));
        }
        if out.iter().any(|l| l.name == name) {
            return Err(bad(format!("listener name '{name}' appears twice")));
        }
        out.push(Listener {
            name,
            security_protocol: protocol,
            host,
            port,
        });
    }
    if out.is_empty() {
        return Err(bad("at least one listener is required".into()));
    }
    Ok(out)
}

/// `replica.selector.class` values: none (consumers read from leaders), Kafka's
/// leader selector (the same) and its rack-aware selector (KIP-392).
const REPLICA_SELECTORS: &[&str] = &[
    "",
    "org.apache.kafka.common.replica.LeaderSelector",
    "org.apache.kafka.common.replica.RackAwareReplicaSelector",
];

/// The validated quorum and listener roles of a node.
struct QuorumSettings {
    roles: Roles,
    voters: BTreeMap<i32, VoterAddress>,
    controller_listener: Option<String>,
    inter_broker_listener: String,
}

/// Checks `process.roles`, `controller.quorum.voters`, `controller.listener.names` and
/// `inter.broker.listener.name` against each other and `listeners`, as Kafka's
/// `KafkaConfig` validation does, so a misconfigured voter stops start-up naming the key.
fn validate_quorum<'a>(
    get: impl Fn(&str) -> &'a str,
    node_id: i32,
    listeners: &[Listener],
    controller_names: &[String],
) -> Result<QuorumSettings, ConfigError> {
    let invalid = |key: &str, reason: String| ConfigError::InvalidValue {
        key: key.to_string(),
        value: get(key).to_string(),
        reason,
    };
    let roles_raw = get("process.roles");
    let roles = Roles {
        broker: roles_raw.split(',').any(|r| r.trim() == "broker"),
        controller: roles_raw.split(',').any(|r| r.trim() == "controller"),
    };
    if !roles.broker && !roles.controller {
        return Err(invalid(
            "process.roles",
            "name broker, controller or both".into(),
        ));
    }
    let voters = parse_voters(get("controller.quorum.voters"))?;
    if controller_names.len() > 1 {
        return Err(invalid(
            "controller.listener.names",
            "Strata carries the quorum on one listener; name exactly one".into(),
        ));
    }
    let controller_listener = controller_names.first().cloned();
    if voters.is_empty() {
        if !(roles.broker && roles.controller) {
            return Err(invalid(
                "process.roles",
                "a single node (no controller.quorum.voters) must be broker,controller".into(),
            ));
        }
    } else if roles.controller {
        let Some(voter) = voters.get(&node_id) else {
            return Err(invalid(
                "controller.quorum.voters",
                format!("node.id {node_id} has the controller role but is not among the voters"),
            ));
        };
        let Some(name) = &controller_listener else {
            return Err(invalid(
                "controller.listener.names",
                "a controller needs the listener that carries the quorum (e.g. CONTROLLER)".into(),
            ));
        };
        let Some(listener) = listeners.iter().find(|l| &l.name == name) else {
            return Err(invalid(
                "controller.listener.names",
                format!("listener '{name}' is not in listeners"),
            ));
        };
        if listener.port != 0 && listener.port != voter.port {
            return Err(invalid(
                "controller.quorum.voters",
                format!(
                    "voter {node_id} is at port {} but listener {name} binds port {}",
                    voter.port, listener.port
                ),
            ));
        }
    } else {
        if voters.contains_key(&node_id) {
            return Err(invalid(
                "controller.quorum.voters",
                format!("node.id {node_id} is a voter, so process.roles must include controller"),
            ));
        }
        if let Some(name) = &controller_listener {
            if listeners.iter().any(|l| &l.name == name) {
                return Err(invalid(
                    "listeners",
                    format!("a broker-only node must not bind the controller listener {name}"),
                ));
            }
        }
    }
    if roles.controller && !roles.broker && listeners.len() > 1 {
        return Err(invalid(
            "listeners",
            "a controller-only node binds only its controller listener".into(),
        ));
    }
    let client_listeners: Vec<&Listener> = listeners
        .iter()
        .filter(|l| Some(&l.name) != controller_listener.as_ref())
        .collect();
    if roles.broker && client_listeners.is_empty() {
        return Err(invalid(
            "listeners",
            "a broker needs a listener besides the controller listener".into(),
        ));
    }
    // Kafka parses each super user as a principal `Type:name`.
    for user in get("super.users").split(';').map(str::trim) {
        if user.is_empty() {
            continue;
        }
        if !user
            .split_once(':')
            .is_some_and(|(kind, name)| !kind.is_empty() && !name.is_empty())
        {
            return Err(invalid(
                "super.users",
                format!("'{user}' is not a principal of the form User:name"),
            ));
        }
    }
    let by_protocol = get("security.inter.broker.protocol")
        .trim()
        .to_ascii_uppercase();
    let inter_broker_listener = match get("inter.broker.listener.name").trim() {
        // Kafka's older key: the first listener speaking that protocol.
        "" if !by_protocol.is_empty() => match client_listeners
            .iter()
            .find(|l| l.security_protocol == by_protocol)
        {
            Some(l) => l.name.clone(),
            None if !roles.broker => String::new(),
            None => {
                return Err(invalid(
                    "security.inter.broker.protocol",
                    format!("no (non-controller) listener speaks {by_protocol}"),
                ))
            }
        },
        "" => client_listeners
            .first()
            .map(|l| l.name.clone())
            .unwrap_or_default(),
        _ if !by_protocol.is_empty() => {
            return Err(invalid(
                "security.inter.broker.protocol",
                "set either it or inter.broker.listener.name, not both (as Kafka)".into(),
            ))
        }
        name => {
            let name = name.to_ascii_uppercase();
            if roles.broker && !client_listeners.iter().any(|l| l.name == name) {
                return Err(invalid(
                    "inter.broker.listener.name",
                    format!("'{name}' is not a (non-controller) listener in listeners"),
                ));
            }
            name
        }
    };
    Ok(QuorumSettings {
        roles,
        voters,
        controller_listener,
        inter_broker_listener,
    })
}

impl BrokerConfig {
    /// Defaults only: the embedded single-node broker.
    pub fn embedded_default() -> Self {
        Self::from_settings(Vec::new()).expect("built-in defaults are valid")
    }

    /// Validates `settings` (applied in order; later wins) on top of the defaults.
    pub fn from_settings(settings: Vec<RawSetting>) -> Result<Self, ConfigError> {
        let mut values: BTreeMap<String, String> = BROKER_KEYS
            .iter()
            .map(|k| (k.name.to_string(), k.default.to_string()))
            .collect();
        let mut explicit = BTreeSet::new();
        for s in settings {
            let spec = broker_key(&s.key).ok_or_else(|| ConfigError::UnknownKey {
                key: s.key.clone(),
                origin: s.origin.clone(),
            })?;
            spec.kind
                .check(&s.value)
                .map_err(|reason| ConfigError::InvalidValue {
                    key: s.key.clone(),
                    value: s.value.clone(),
                    reason: format!("{reason} (from {})", s.origin),
                })?;
            values.insert(s.key.clone(), s.value.trim().to_string());
            explicit.insert(s.key);
        }
        Self::build(values, explicit)
    }

    fn build(
        values: BTreeMap<String, String>,
        explicit: BTreeSet<String>,
    ) -> Result<Self, ConfigError> {
        let get = |k: &str| values.get(k).map(String::as_str).unwrap_or("");
        let num = |k: &str| get(k).parse::<i64>().unwrap_or(0);
        let mut protocol_map: BTreeMap<String, String> = get("listener.security.protocol.map")
            .split(',')
            .filter_map(|pair| pair.split_once(':'))
            .map(|(n, p)| (n.trim().to_ascii_uppercase(), p.trim().to_ascii_uppercase()))
            .collect();
        let controller_names: Vec<String> = get("controller.listener.names")
            .split(',')
            .map(|n| n.trim().to_ascii_uppercase())
            .filter(|n| !n.is_empty())
            .collect();
        // As Kafka: a controller listener missing from the map is PLAINTEXT.
        for name in &controller_names {
            protocol_map
                .entry(name.clone())
                .or_insert_with(|| "PLAINTEXT".to_string());
        }
        let listeners = parse_listeners("listeners", get("listeners"), &protocol_map)?;
        let advertised_listeners = if get("advertised.listeners").is_empty() {
            listeners
                .iter()
                .map(|l| Listener {
                    host: if l.host.is_empty() || l.host == "0.0.0.0" || l.host == "::" {
                        "127.0.0.1".to_string()
                    } else {
                        l.host.clone()
                    },
                    ..l.clone()
                })
                .collect()
        } else {
            parse_listeners(
                "advertised.listeners",
                get("advertised.listeners"),
                &protocol_map,
            )?
        };
        let node_id = num("node.id") as i32;
        if !get("broker.id").is_empty()
            && num("broker.id") != node_id as i64
            && explicit.contains("node.id")
        {
            return Err(ConfigError::InvalidValue {
                key: "broker.id".into(),
                value: get("broker.id").into(),
                reason: format!("must equal node.id ({node_id})"),
            });
        }
        let node_id = if !get("broker.id").is_empty() && !explicit.contains("node.id") {
            num("broker.id") as i32
        } else {
            node_id
        };
        let log_dirs: Vec<PathBuf> = if explicit.contains("log.dirs") || get("log.dir").is_empty() {
            get("log.dirs")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect()
        } else {
            vec![PathBuf::from(get("log.dir"))]
        };
        if log_dirs.is_empty() {
            return Err(ConfigError::InvalidValue {
                key: "log.dirs".into(),
                value: get("log.dirs").into(),
                reason: "at least one directory is required".into(),
            });
        }
        let metadata_log_dir = if get("metadata.log.dir").is_empty() {
            log_dirs[0].clone()
        } else {
            PathBuf::from(get("metadata.log.dir"))
        };
        let rack = Some(get("broker.rack").to_string()).filter(|r| !r.is_empty());
        let sse = get("object_store.sse").trim().to_ascii_lowercase();
        for dependent in [
            "object_store.sse.kms.key.id",
            "object_store.sse.bucket.key.enabled",
        ] {
            if !get(dependent).trim().is_empty() && sse != "aws:kms" {
                return Err(ConfigError::InvalidValue {
                    key: dependent.into(),
                    value: get(dependent).into(),
                    reason: "applies only with object_store.sse=aws:kms".into(),
                });
            }
        }
        let delivery = get("logs.delivery.url").trim();
        if !delivery.is_empty() {
            let ok = match url::Url::parse(delivery) {
                Ok(u) if matches!(u.scheme(), "s3" | "s3a") => {
                    u.host_str().is_some_and(|h| !h.is_empty())
                }
                Ok(u) => u.scheme() == "file" && !u.path().trim_matches('/').is_empty(),
                Err(_) => false,
            };
            if !ok {
                return Err(ConfigError::InvalidValue {
                    key: "logs.delivery.url".into(),
                    value: delivery.into(),
                    reason: "expected s3://bucket/prefix or file:///path".into(),
                });
            }
        }
        let quorum = validate_quorum(get, node_id, &listeners, &controller_names)?;
        let controller_security_protocol = quorum
            .controller_listener
            .as_ref()
            .and_then(|name| protocol_map.get(name))
            .cloned()
            .unwrap_or_else(|| "PLAINTEXT".to_string());
        if !quorum.voters.is_empty()
            && !["PLAINTEXT", "SSL"].contains(&controller_security_protocol.as_str())
        {
            return Err(ConfigError::InvalidValue {
                key: "listener.security.protocol.map".into(),
                value: get("listener.security.protocol.map").into(),
                reason: format!(
                    "the controller listener {} is {controller_security_protocol}: it carries the quorum over PLAINTEXT or SSL (mutual TLS with ssl.client.auth=required), not SASL",
                    quorum.controller_listener.as_deref().unwrap_or_default()
                ),
            });
        }
        let selector = get("replica.selector.class").trim();
        if !REPLICA_SELECTORS.contains(&selector) {
            return Err(ConfigError::InvalidValue {
                key: "replica.selector.class".into(),
                value: selector.into(),
                reason: format!("Strata knows {}", REPLICA_SELECTORS[1..].join(" and ")),
            });
        }
        Ok(BrokerConfig {
            roles: quorum.roles,
            voters: quorum.voters,
            controller_listener: quorum.controller_listener,
            controller_security_protocol,
            inter_broker_listener: quorum.inter_broker_listener,
            node_id,
            listeners,
            advertised_listeners,
            rack,
            log_dirs,
            metadata_log_dir,
            num_partitions: num("num.partitions") as i32,
            default_replication_factor: num("default.replication.factor") as i16,
            auto_create_topics_enable: get("auto.create.topics.enable")
                .eq_ignore_ascii_case("true"),
            delete_topic_enable: get("delete.topic.enable").eq_ignore_ascii_case("true"),
            socket_request_max_bytes: num("socket.request.max.bytes") as usize,
            log_retention_check_interval_ms: num("log.retention.check.interval.ms") as u64,
            remote_storage_system_enable: get("remote.log.storage.system.enable")
                .eq_ignore_ascii_case("true"),
            values,
            explicit,
        })
    }

    /// Loads the file (if any), the environment and the overrides, in that order.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<Self, ConfigError> {
        let mut settings = Vec::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            settings.extend(flatten_toml(&text, &path.display().to_string())?);
        }
        let (from_env, unknown_env) = settings_from_env(env);
        for var in &unknown_env {
            tracing::warn!("{var}");
        }
        settings.extend(from_env);
        for o in overrides {
            settings.push(setting_from_override(o)?);
        }
        let config = Self::from_settings(settings)?;
        for key in &config.explicit {
            if let Some(reason) = super::spec::no_effect_reason(key) {
                tracing::warn!("{key} is set but has no effect in Strata: {reason}");
            }
        }
        Ok(config)
    }

    pub fn get(&self, key: &str) -> &str {
        self.values.get(key).map(String::as_str).unwrap_or("")
    }

    /// The value of `key` if it was set (a per-listener key has no default).
    pub fn explicit_value(&self, key: &str) -> Option<&str> {
        self.explicit.contains(key).then(|| self.get(key))
    }

    /// A numeric key's value (validated at load, so it parses).
    pub fn num(&self, key: &str) -> i64 {
        self.get(key).trim().parse().unwrap_or(0)
    }

    /// True when `controller.quorum.voters` names a quorum (a cluster), false for the
    /// embedded single node.
    pub fn is_cluster(&self) -> bool {
        !self.voters.is_empty()
    }

    /// `offsets.topic.replication.factor`: Kafka's default is 3; the single node
    /// (no quorum configured) uses 1 unless the key is set, so it works out of the box.
    pub fn offsets_topic_replication_factor(&self) -> i16 {
        if !self.is_cluster() && !self.explicit.contains("offsets.topic.replication.factor") {
            return 1;
        }
        self.num("offsets.topic.replication.factor") as i16
    }

    /// The listeners that serve the Kafka protocol (all but the controller listener).
    pub fn client_listeners(&self) -> impl Iterator<Item = &Listener> {
        self.listeners
            .iter()
            .filter(|l| Some(&l.name) != self.controller_listener.as_ref())
    }

    /// The value and source of a broker key, with dynamic cluster-wide overrides applied.
    pub fn broker_value(
        &self,
        key: &str,
        dynamic: &BTreeMap<String, String>,
    ) -> (String, ConfigSource) {
        if let Some(v) = dynamic.get(key) {
            return (v.clone(), ConfigSource::DynamicDefaultBroker);
        }
        let source = if self.explicit.contains(key) {
            ConfigSource::StaticBroker
        } else {
            ConfigSource::Default
        };
        (self.get(key).to_string(), source)
    }

    /// Every place a topic key's value could come from, most specific first (Kafka's
    /// synonyms): the topic's own value, then dynamic then static broker synonyms,
    /// then the built-in default. Values of `*.hours`/`*.minutes` synonyms are
    /// converted to the topic key's milliseconds.
    pub fn topic_synonyms(
        &self,
        key: &TopicKey,
        topic_configs: &BTreeMap<String, String>,
        dynamic: &BTreeMap<String, String>,
    ) -> Vec<(String, String, ConfigSource)> {
        let mut out = Vec::new();
        if let Some(v) = topic_configs.get(key.spec.name) {
            out.push((
                key.spec.name.to_string(),
                v.clone(),
                ConfigSource::DynamicTopic,
            ));
        }
        for syn in key.broker_synonyms {
            if let Some(v) = dynamic.get(*syn) {
                out.push((
                    syn.to_string(),
                    to_topic_units(syn, v),
                    ConfigSource::DynamicDefaultBroker,
                ));
            }
        }
        for syn in key.broker_synonyms {
            if self.explicit.contains(*syn) {
                out.push((
                    syn.to_string(),
                    to_topic_units(syn, self.get(syn)),
                    ConfigSource::StaticBroker,
                ));
            }
        }
        // Kafka lists the broker key's default as a synonym too (e.g. log.retention.hours=168).
        for syn in key.broker_synonyms {
            let v = self.get(syn);
            if !self.explicit.contains(*syn) && !v.is_empty() {
                out.push((
                    syn.to_string(),
                    to_topic_units(syn, v),
                    ConfigSource::Default,
                ));
                break;
            }
        }
        if out.is_empty() {
            out.push((
                key.spec.name.to_string(),
                key.spec.default.to_string(),
                ConfigSource::Default,
            ));
        }
        out
    }

    /// The effective value of every topic key for a topic with `topic_configs` set.
    pub fn effective_topic_configs(
        &self,
        topic_configs: &BTreeMap<String, String>,
        dynamic: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        TOPIC_KEYS
            .iter()
            .map(|k| {
                let (_, v, _) = self
                    .topic_synonyms(k, topic_configs, dynamic)
                    .swap_remove(0);
                (k.spec.name.to_string(), v)
            })
            .collect()
    }

    /// Lines for the start-up log: every key and its effective value.
    pub fn describe(&self) -> String {
        self.values
            .iter()
            .map(|(k, v)| {
                let mark = if self.explicit.contains(k) { "*" } else { " " };
                let secret = broker_key(k).is_some_and(|s| matches!(s.kind, Kind::Password));
                // Inline keys and passwords are never shown, per listener too.
                if secret && !v.is_empty() {
                    format!("{mark} {k} = [hidden]")
                } else {
                    format!("{mark} {k} = {v}")
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Converts an hours/minutes broker synonym to the milliseconds of its topic key.
fn to_topic_units(synonym: &str, value: &str) -> String {
    let factor = if synonym.ends_with(".hours") {
        3_600_000
    } else if synonym.ends_with(".minutes") {
        60_000
    } else {
        return value.to_string();
    };
    match value.trim().parse::<i64>() {
        Ok(v) if v < 0 => v.to_string(),
        Ok(v) => v.saturating_mul(factor).to_string(),
        Err(_) => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn over(pairs: &[&str]) -> Result<BrokerConfig, ConfigError> {
        BrokerConfig::load(
            None,
            Vec::new(),
            &pairs.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn embedded_default_is_single_node_on_9092() {
        let c = BrokerConfig::embedded_default();
        assert_eq!(c.listeners[0].bind_addr(), "127.0.0.1:9092");
        assert_eq!(c.log_dirs, vec![PathBuf::from("./data")]);
        assert_eq!(c.node_id, 1);
    }

    #[test]
    fn unknown_and_bad_keys_are_named() {
        let err = over(&["log.retention.mss=5"]).unwrap_err().to_string();
        assert!(err.contains("log.retention.mss"), "{err}");
        let err = over(&["num.partitions=zero"]).unwrap_err().to_string();
        assert!(err.contains("num.partitions"), "{err}");
    }

    #[test]
    fn labels_agree_between_topic_keys_and_their_broker_defaults() {
        for t in TOPIC_KEYS {
            for synonym in t.broker_synonyms {
                let Some(b) = broker_key(synonym) else {
                    continue;
                };
                assert_eq!(
                    b.enforced, t.spec.enforced,
                    "{} and its broker default {synonym} disagree on whether they act",
                    t.spec.name
                );
            }
        }
        for (key, _) in super::super::spec::NO_EFFECT {
            let spec = broker_key(key)
                .or_else(|| super::super::topic::topic_key(key).map(|t| &t.spec))
                .unwrap_or_else(|| panic!("{key} is not a key"));
            assert!(!spec.enforced, "{key} cannot both act and have no effect");
        }
    }

    #[test]
    fn unrelated_environment_variables_are_reported_not_fatal() {
        let (settings, unknown) = settings_from_env(vec![
            ("STRATA_HOME".into(), "/opt/strata".into()),
            ("STRATA_LOG_DIR_S".into(), "/x".into()),
            ("STRATA_NUM_PARTITIONS".into(), "3".into()),
            ("PATH".into(), "/bin".into()),
        ]);
        assert_eq!(settings.len(), 1);
        assert_eq!(settings[0].key, "num.partitions");
        assert_eq!(unknown.len(), 2);
        assert_eq!(unknown[0].name, "STRATA_HOME");
        assert_eq!(unknown[0].suggestion, None);
        assert_eq!(unknown[1].suggestion.as_deref(), Some("STRATA_LOG_DIRS"));
        assert!(unknown[1]
            .to_string()
            .contains("did you mean STRATA_LOG_DIRS?"));
        // A known key with a bad value still stops start-up.
        let err = BrokerConfig::load(
            None,
            vec![("STRATA_NUM_PARTITIONS".into(), "zero".into())],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("num.partitions"), "{err}");
        assert!(BrokerConfig::load(None, vec![("STRATA_BIN".into(), "x".into())], &[]).is_ok());
    }

    #[test]
    fn toml_tables_flatten_to_dotted_keys() {
        let s = flatten_toml(
            "log.dirs = \"/x\"\n[object_store]\nurl = \"memory://\"\n[log.retention]\nms = 5\n",
            "t",
        )
        .unwrap();
        let keys: Vec<_> = s
            .iter()
            .map(|s| (s.key.as_str(), s.value.as_str()))
            .collect();
        assert!(keys.contains(&("log.dirs", "/x")));
        assert!(keys.contains(&("object_store.url", "memory://")));
        assert!(keys.contains(&("log.retention.ms", "5")));
    }

    #[test]
    fn shipped_example_config_is_valid() {
        let settings = flatten_toml(
            include_str!("../../config/single-node.toml"),
            "single-node.toml",
        )
        .unwrap();
        let c = BrokerConfig::from_settings(settings).unwrap();
        assert_eq!(c.listeners[0].bind_addr(), "127.0.0.1:9092");
        for (name, text) in [
            ("moto.toml", include_str!("../../config/moto.toml")),
            ("minio.toml", include_str!("../../config/minio.toml")),
            (
                "localstack.toml",
                include_str!("../../config/localstack.toml"),
            ),
        ] {
            let c = BrokerConfig::from_settings(flatten_toml(text, name).unwrap()).unwrap();
            assert!(c.get("object_store.url").starts_with("s3://"), "{name}");
            assert!(c.remote_storage_system_enable, "{name}");
        }
        for (n, text) in [
            include_str!("../../config/cluster-3-node/broker-1.toml"),
            include_str!("../../config/cluster-3-node/broker-2.toml"),
            include_str!("../../config/cluster-3-node/broker-3.toml"),
        ]
        .into_iter()
        .enumerate()
        {
            let c = BrokerConfig::from_settings(flatten_toml(text, "cluster").unwrap()).unwrap();
            assert_eq!(c.node_id, n as i32 + 1);
            assert_eq!(c.voters.len(), 3);
            assert_eq!(c.controller_listener.as_deref(), Some("CONTROLLER"));
            assert_eq!(c.inter_broker_listener, "PLAINTEXT");
            assert_eq!(c.client_listeners().count(), 1);
        }
        let c = BrokerConfig::from_settings(
            flatten_toml(include_str!("../../config/msk-like.toml"), "msk-like").unwrap(),
        )
        .unwrap();
        let protocols: Vec<(&str, &str)> = c
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l.security_protocol.as_str()))
            .collect();
        assert_eq!(
            protocols,
            [
                ("PLAINTEXT", "PLAINTEXT"),
                ("REPLICATION", "SSL"),
                ("SSL", "SSL"),
                ("SASL_SSL", "SASL_SSL")
            ]
        );
        assert_eq!(c.inter_broker_listener, "REPLICATION");
        let dedicated = [
            include_str!("../../config/cluster-3-node/dedicated-controllers/controller-1.toml"),
            include_str!("../../config/cluster-3-node/dedicated-controllers/controller-2.toml"),
            include_str!("../../config/cluster-3-node/dedicated-controllers/controller-3.toml"),
            include_str!("../../config/cluster-3-node/dedicated-controllers/broker-4.toml"),
            include_str!("../../config/cluster-3-node/dedicated-controllers/broker-5.toml"),
            include_str!("../../config/cluster-3-node/dedicated-controllers/broker-6.toml"),
        ];
        for (n, text) in dedicated.into_iter().enumerate() {
            let c = BrokerConfig::from_settings(flatten_toml(text, "dedicated").unwrap()).unwrap();
            assert_eq!(c.node_id, n as i32 + 1);
            assert_eq!(c.voters.len(), 3);
            let controller = n < 3;
            assert_eq!(
                (c.roles.controller, c.roles.broker),
                (controller, !controller)
            );
            assert_eq!(c.client_listeners().count(), usize::from(!controller));
        }
    }

    #[test]
    fn security_inter_broker_protocol_picks_the_listener() {
        let listeners = "listeners=PLAINTEXT://127.0.0.1:9092,INTERNAL://127.0.0.1:9093";
        let map = "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,INTERNAL:SSL";
        let c = over(&[listeners, map, "security.inter.broker.protocol=SSL"]).unwrap();
        assert_eq!(c.inter_broker_listener, "INTERNAL");
        let err = over(&[listeners, map, "security.inter.broker.protocol=SASL_SSL"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("security.inter.broker.protocol"), "{err}");
        let err = over(&[
            listeners,
            map,
            "security.inter.broker.protocol=SSL",
            "inter.broker.listener.name=INTERNAL",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("not both"), "{err}");
    }

    #[test]
    fn roles_are_checked_against_voters_and_listeners() {
        let voters =
            "controller.quorum.voters=1@127.0.0.1:19091,2@127.0.0.1:19092,3@127.0.0.1:19093";
        let ok = |o: &[&str]| over(o).map(|_| ()).map_err(|e| e.to_string());
        let controller_only = [
            "process.roles=controller",
            "node.id=1",
            voters,
            "controller.listener.names=CONTROLLER",
            "listeners=CONTROLLER://127.0.0.1:19091",
        ];
        // A controller-only voter binds its controller listener alone.
        assert_eq!(ok(&controller_only), Ok(()));
        let err = ok(&[
            "process.roles=controller",
            "node.id=1",
            voters,
            "controller.listener.names=CONTROLLER",
            "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:19091",
        ])
        .unwrap_err();
        assert!(err.contains("listeners"), "{err}");
        // A broker-only node is not a voter and does not bind the controller listener.
        assert_eq!(
            ok(&[
                "process.roles=broker",
                "node.id=4",
                voters,
                "controller.listener.names=CONTROLLER",
                "listeners=PLAINTEXT://127.0.0.1:9092",
            ]),
            Ok(())
        );
        let err = ok(&[
            "process.roles=broker",
            "node.id=2",
            voters,
            "listeners=PLAINTEXT://127.0.0.1:9092",
        ])
        .unwrap_err();
        assert!(err.contains("controller.quorum.voters"), "{err}");
        let err = ok(&[
            "process.roles=controller",
            "node.id=4",
            voters,
            "controller.listener.names=CONTROLLER",
            "listeners=CONTROLLER://127.0.0.1:19094",
        ])
        .unwrap_err();
        assert!(err.contains("controller.quorum.voters"), "{err}");
        // The quorum runs over PLAINTEXT or SSL; SASL there is refused by name.
        let on = |protocol: &str| {
            let map = format!("listener.security.protocol.map=CONTROLLER:{protocol}");
            let mut settings = controller_only.to_vec();
            settings.push(&map);
            ok(&settings)
        };
        assert_eq!(on("SSL"), Ok(()));
        let err = on("SASL_SSL").unwrap_err();
        assert!(err.contains("listener.security.protocol.map"), "{err}");
        // A single node (no voters) runs both roles.
        let err = ok(&["process.roles=broker"]).unwrap_err();
        assert!(err.contains("process.roles"), "{err}");
    }

    #[test]
    fn retention_hours_become_topic_ms() {
        let c = over(&["log.retention.hours=1"]).unwrap();
        let eff = c.effective_topic_configs(&BTreeMap::new(), &BTreeMap::new());
        assert_eq!(eff["retention.ms"], "3600000");
        let c = over(&["log.retention.hours=1", "log.retention.ms=42"]).unwrap();
        let eff = c.effective_topic_configs(&BTreeMap::new(), &BTreeMap::new());
        assert_eq!(eff["retention.ms"], "42");
        let eff = BrokerConfig::embedded_default()
            .effective_topic_configs(&BTreeMap::new(), &BTreeMap::new());
        assert_eq!(eff["retention.ms"], "604800000");
        assert_eq!(eff["max.message.bytes"], "1048588");
    }
}
