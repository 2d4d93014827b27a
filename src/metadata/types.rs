//! The openraft type configuration of the metadata quorum.
//!
//! This is the only place that names the concrete openraft types (app data, reply, node id,
//! node, entry, snapshot data, runtime). Everything here is `pub(crate)`: no openraft type
//! leaks out of `crate::metadata`.

use std::io::Cursor;

use super::image::{ApplyReply, MetadataRecord};

openraft::declare_raft_types!(
    /// Raft type configuration of the metadata quorum.
    pub(crate) TypeConfig:
        D = MetadataRecord,
        R = ApplyReply,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Id of a metadata voter.
pub(crate) type NodeId = u64;
/// A voter's address as openraft stores it in the membership.
pub(crate) type Node = openraft::BasicNode;
/// One raft log entry.
pub(crate) type Entry = openraft::Entry<TypeConfig>;
/// Position of an entry in the raft log.
pub(crate) type LogId = openraft::LogId<NodeId>;
/// The persisted vote.
pub(crate) type Vote = openraft::Vote<NodeId>;
/// Membership as applied by the state machine.
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, Node>;
/// Metadata describing a snapshot.
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
/// A snapshot as handed to openraft.
pub(crate) type Snapshot = openraft::Snapshot<TypeConfig>;
/// Storage error as openraft wants it.
pub(crate) type StorageError = openraft::StorageError<NodeId>;
/// The raft handle.
pub(crate) type Raft = openraft::Raft<TypeConfig>;
