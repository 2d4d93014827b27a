//! Idempotent-producer state of one partition: the last batches of each producer id,
//! used to detect duplicates and sequence gaps (Kafka's ProducerStateManager).
//!
//! Rebuilt from batch headers when a log is opened (from a snapshot written at clean
//! shutdown and at each segment roll, then the batches after it), so the state
//! survives restarts exactly as the log does.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::batch::BatchHeader;

/// Kafka keeps the metadata of the last five batches per producer for dedup.
const CACHED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
}

/// The result of checking a batch against a producer's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Accept,
    /// Already written: acknowledge with these original offsets.
    Duplicate(BatchMeta),
    OutOfOrder {
        expected: i32,
        got: i32,
    },
    /// The batch's epoch is older than the producer's current one.
    Fenced {
        current: i16,
        got: i16,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    /// Offset up to which (exclusive) the snapshot reflects the log.
    offset: i64,
    state: ProducerState,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerState {
    /// Checks an incoming batch (not yet offset-assigned) from producer `h.producer_id`.
    pub fn check(&self, h: &BatchHeader) -> SequenceCheck {
        if !h.has_producer_id() {
            return SequenceCheck::Accept;
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // No state for this producer: Kafka (since KIP-360) accepts any sequence,
            // because its earlier records may be gone (retention, DeleteRecords, a lost
            // local disk under tiered storage) and refusing would make the client reset
            // and re-send, duplicating what idempotence exists to prevent.
            return SequenceCheck::Accept;
        };
        if h.producer_epoch < entry.epoch {
            return SequenceCheck::Fenced {
                current: entry.epoch,
                got: h.producer_epoch,
            };
        }
        if h.producer_epoch > entry.epoch {
            return if h.base_sequence == 0 {
                SequenceCheck::Accept
            } else {
                SequenceCheck::OutOfOrder {
                    expected: 0,
                    got: h.base_sequence,
                }
            };
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == h.last_sequence())
        {
            return SequenceCheck::Duplicate(*dup);
        }
        let expected = entry
            .batches
            .back()
            .map(|b| next_seq(b.last_seq))
            .unwrap_or(0);
        if h.base_sequence != expected {
            return SequenceCheck::OutOfOrder {
                expected,
                got: h.base_sequence,
            };
        }
        SequenceCheck::Accept
    }

    /// Records a batch that is now in the log (with its assigned offsets).
    pub fn update(&mut self, h: &BatchHeader) {
        if !h.has_producer_id() || h.is_control() {
            return;
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
            max_timestamp: h.max_timestamp,
        });
        while entry.batches.len() > CACHED_BATCHES {
            entry.batches.pop_front();
        }
    }

    /// Forgets batches at or past `offset` (after a log truncation).
    pub fn truncate_from(&mut self, offset: i64) {
        for entry in self.producers.values_mut() {
            entry.batches.retain(|b| b.last_offset < offset);
        }
        self.producers.retain(|_, e| !e.batches.is_empty());
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Writes a snapshot valid for the log up to `offset`.
    pub fn write_snapshot(&self, dir: &Path, offset: i64) -> std::io::Result<()> {
        self.write_snapshot_files(&[dir.join("producer-state.json")], offset)
    }

    /// Writes the snapshot and keeps a copy as of the segment's end, `<offset>.snapshot`
    /// as Kafka names it, for the tiered uploader to store beside the segment. The
    /// state is serialized once for both.
    pub fn write_snapshot_with_segment_copy(&self, dir: &Path, offset: i64) -> std::io::Result<()> {
        self.write_snapshot_files(
            &[
                dir.join("producer-state.json"),
                segment_snapshot_path(dir, offset),
            ],
            offset,
        )
    }

    fn write_snapshot_files(
        &self,
        paths: &[std::path::PathBuf],
        offset: i64,
    ) -> std::io::Result<()> {
        // Serialized by reference: the same JSON as `Snapshot`, without a clone.
        #[derive(Serialize)]
        struct SnapshotRef<'a> {
            offset: i64,
            state: &'a ProducerState,
        }
        let bytes = serde_json::to_vec(&SnapshotRef {
            offset,
            state: self,
        })
        .map_err(std::io::Error::other)?;
        // Written in place, not through a temp file and a rename: every rename frees
        // an inode and takes a new one, which on a busy ext4 costs more than the write
        // (a broker of thousands of partitions writes one per partition at shutdown).
        // A write torn by a crash cannot parse as JSON, and an unreadable snapshot only
        // means the state is rebuilt from the log's batch headers.
        for path in paths {
            std::fs::write(path, &bytes)?;
        }
        Ok(())
    }

    /// Loads the snapshot if present and readable: (state, offset it is valid to).
    pub fn read_snapshot(dir: &Path) -> Option<(ProducerState, i64)> {
        let bytes = std::fs::read(dir.join("producer-state.json")).ok()?;
        Self::from_snapshot_bytes(&bytes)
    }

    /// Parses a snapshot's bytes (a local file or one fetched from the object store).
    pub fn from_snapshot_bytes(bytes: &[u8]) -> Option<(ProducerState, i64)> {
        let snap: Snapshot = serde_json::from_slice(bytes).ok()?;
        Some((snap.state, snap.offset))
    }

    /// Deletes the `<offset>.snapshot` files for which `drop(offset)` holds.
    pub fn prune_segment_snapshots(dir: &Path, drop: impl Fn(i64) -> bool) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let offset = name
                .to_str()
                .and_then(|n| n.strip_suffix(".snapshot"))
                .and_then(|n| n.parse::<i64>().ok());
            if offset.is_some_and(&drop) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// `<dir>/<20-digit offset>.snapshot`: the producer state as of that offset.
pub fn segment_snapshot_path(dir: &Path, offset: i64) -> std::path::PathBuf {
    dir.join(format!("{offset:020}.snapshot"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{tests::make_batch, BatchHeader};

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, base: i64) -> BatchHeader {
        let mut h = BatchHeader::parse(&make_batch(count, 1, Some((pid, epoch, seq)))).unwrap();
        h.base_offset = base;
        h
    }

    #[test]
    fn duplicates_gaps_and_fencing() {
        let mut s = ProducerState::default();
        let first = header(7, 0, 0, 2, 0);
        assert_eq!(s.check(&first), SequenceCheck::Accept);
        s.update(&first);
        // Retry of the same batch: duplicate with original offsets.
        assert!(
            matches!(s.check(&header(7, 0, 0, 2, 99)), SequenceCheck::Duplicate(m) if m.first_offset == 0)
        );
        // Gap.
        assert!(matches!(
            s.check(&header(7, 0, 5, 1, 2)),
            SequenceCheck::OutOfOrder {
                expected: 2,
                got: 5
            }
        ));
        assert_eq!(s.check(&header(7, 0, 2, 1, 2)), SequenceCheck::Accept);
        // Newer epoch resets, older epoch is fenced.
        s.update(&header(7, 1, 0, 1, 2));
        assert!(matches!(
            s.check(&header(7, 0, 2, 1, 3)),
            SequenceCheck::Fenced { .. }
        ));
        // A producer with no state here is accepted at any sequence, then held to it.
        assert_eq!(s.check(&header(8, 0, 3, 1, 3)), SequenceCheck::Accept);
        s.update(&header(8, 0, 3, 1, 3));
        assert!(matches!(
            s.check(&header(8, 0, 6, 1, 4)),
            SequenceCheck::OutOfOrder {
                expected: 4,
                got: 6
            }
        ));
    }
}
