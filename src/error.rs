//! The one place where module errors become Kafka error codes.

use crate::coordinator::ProducerIdError;
use crate::log::batch::BatchError;
use crate::log::compression::CompressionError;
use crate::log::LogError;
use crate::metadata::{ApplyError, ElectionOutcome, MetadataError, ReassignOutcome};
use crate::replication::PartitionError;

/// Kafka error codes used by the broker (names as in Kafka's `Errors` enum).
pub mod code {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const INVALID_TIMESTAMP: i16 = 32;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    pub const ILLEGAL_SASL_STATE: i16 = 34;
    pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
    pub const RESOURCE_NOT_FOUND: i16 = 91;
    pub const DUPLICATE_RESOURCE: i16 = 92;
    pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const SECURITY_DISABLED: i16 = 54;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_CONFIG: i16 = 40;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const INVALID_REQUEST: i16 = 42;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const TOPIC_DELETION_DISABLED: i16 = 73;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    pub const INVALID_RECORD: i16 = 87;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
    pub const FENCED_MEMBER_EPOCH: i16 = 110;
    pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
    pub const STALE_MEMBER_EPOCH: i16 = 113;
    pub const INVALID_REGULAR_EXPRESSION: i16 = 128;
    pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
    pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
    pub const STALE_BROKER_EPOCH: i16 = 77;
    pub const OFFSET_NOT_AVAILABLE: i16 = 78;
    pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
    pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
    pub const ELECTION_NOT_NEEDED: i16 = 84;
    pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
    pub const INVALID_UPDATE_VERSION: i16 = 95;
    pub const INELIGIBLE_REPLICA: i16 = 107;
    pub const OFFSET_MOVED_TO_TIERED_STORAGE: i16 = 109;
}

pub fn batch_error_code(e: &BatchError) -> i16 {
    match e {
        BatchError::TooLarge { .. } => code::MESSAGE_TOO_LARGE,
        BatchError::UnsupportedMagic(_) => code::UNSUPPORTED_VERSION,
        BatchError::CrcMismatch { .. } | BatchError::Truncated { .. } => code::CORRUPT_MESSAGE,
        BatchError::Malformed(_) => code::INVALID_RECORD,
    }
}

pub fn compression_error_code(e: &CompressionError) -> i16 {
    match e {
        CompressionError::Decompress { .. } | CompressionError::MalformedRecords(_) => {
            code::CORRUPT_MESSAGE
        }
        CompressionError::DecompressedTooLarge { .. } => code::MESSAGE_TOO_LARGE,
        CompressionError::Compress { .. } => code::UNKNOWN_SERVER_ERROR,
        CompressionError::Batch(b) => batch_error_code(b),
    }
}

pub fn log_error_code(e: &LogError) -> i16 {
    match e {
        LogError::Io { .. } => code::KAFKA_STORAGE_ERROR,
        LogError::InvalidBatch(b) => batch_error_code(b),
        LogError::OffsetOutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
        LogError::OutOfOrderSequence { .. } => code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        LogError::ProducerFenced { .. } => code::INVALID_PRODUCER_EPOCH,
        LogError::InvalidTimestamp { .. } => code::INVALID_TIMESTAMP,
        LogError::UnsupportedTransactional => code::TRANSACTIONAL_ID_NOT_FOUND,
    }
}

pub fn partition_error_code(e: &PartitionError) -> i16 {
    match e {
        PartitionError::Log(l) => log_error_code(l),
        PartitionError::NotEnoughReplicas { .. } => code::NOT_ENOUGH_REPLICAS,
        PartitionError::NotEnoughReplicasAfterAppend { .. } => {
            code::NOT_ENOUGH_REPLICAS_AFTER_APPEND
        }
        PartitionError::ReplicationTimeout => code::REQUEST_TIMED_OUT,
        PartitionError::OffsetMovedToTieredStorage { .. } => code::OFFSET_MOVED_TO_TIERED_STORAGE,
        PartitionError::NotLeader => code::NOT_LEADER_OR_FOLLOWER,
        PartitionError::FencedLeaderEpoch { .. } => code::FENCED_LEADER_EPOCH,
        PartitionError::UnknownLeaderEpoch { .. } => code::UNKNOWN_LEADER_EPOCH,
        PartitionError::Remote(_) => code::UNKNOWN_SERVER_ERROR,
        PartitionError::RemoteTimeout => code::REQUEST_TIMED_OUT,
        PartitionError::Compression(c) => compression_error_code(c),
        PartitionError::TaskFailed(_) => code::UNKNOWN_SERVER_ERROR,
    }
}

pub fn metadata_error_code(e: &MetadataError) -> i16 {
    match e {
        MetadataError::NotLeader => code::NOT_CONTROLLER,
        MetadataError::ShuttingDown | MetadataError::NoController(_) => code::REQUEST_TIMED_OUT,
        _ => code::UNKNOWN_SERVER_ERROR,
    }
}

pub fn election_code(o: ElectionOutcome) -> i16 {
    match o {
        ElectionOutcome::Elected => code::NONE,
        ElectionOutcome::NotNeeded => code::ELECTION_NOT_NEEDED,
        ElectionOutcome::PreferredNotAvailable => code::PREFERRED_LEADER_NOT_AVAILABLE,
        ElectionOutcome::NoEligibleLeader => code::ELIGIBLE_LEADERS_NOT_AVAILABLE,
        ElectionOutcome::UnknownPartition => code::UNKNOWN_TOPIC_OR_PARTITION,
    }
}

pub fn reassign_code(o: &ReassignOutcome) -> i16 {
    match o {
        ReassignOutcome::Started => code::NONE,
        ReassignOutcome::UnknownPartition => code::UNKNOWN_TOPIC_OR_PARTITION,
        ReassignOutcome::InvalidAssignment(_) => code::INVALID_REPLICA_ASSIGNMENT,
        ReassignOutcome::NoReassignmentInProgress => code::NO_REASSIGNMENT_IN_PROGRESS,
    }
}

pub fn apply_error_code(e: &ApplyError) -> i16 {
    match e {
        ApplyError::TopicAlreadyExists(_) => code::TOPIC_ALREADY_EXISTS,
        ApplyError::UnknownTopicId(_) => code::UNKNOWN_TOPIC_ID,
        ApplyError::InvalidPartitions { .. } => code::INVALID_PARTITIONS,
        ApplyError::StaleBrokerEpoch { .. } => code::STALE_BROKER_EPOCH,
        ApplyError::NoScramCredential { .. } => code::RESOURCE_NOT_FOUND,
        ApplyError::ProducerIdsExhausted
        | ApplyError::RemoteSegmentExists(_)
        | ApplyError::UnknownRemoteSegment(_) => code::UNKNOWN_SERVER_ERROR,
    }
}

pub fn producer_id_error_code(e: &ProducerIdError) -> i16 {
    match e {
        ProducerIdError::Metadata(m) => metadata_error_code(m),
        ProducerIdError::Refused(_) => code::UNKNOWN_SERVER_ERROR,
    }
}
