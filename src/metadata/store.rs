//! Durable storage of the metadata quorum: the raft log store (vote, entries, committed
//! index, purge point) and the state machine (the [`ClusterImage`] and its snapshots).
//!
//! Everything lives in one directory:
//!
//! - `raft.log`: append-only. Each record is `[u32 LE payload length][u32 LE crc32c of
//!   payload][payload]`, the payload being the serde_json of one raft entry. Appends are
//!   fsynced before openraft is told they are durable. On open, a torn tail (an incomplete
//!   record, a bad record that ends at end-of-file, or a zero-filled tail) is truncated
//!   away; a bad record followed by more data is reported as corruption instead, since it
//!   may hide acknowledged entries. Truncation of conflicting entries shrinks the file in
//!   place; purging rewrites it (temp file + rename).
//! - `vote.json`, `committed.json`, `purged.json`: small json files, each replaced
//!   atomically (temp file, fsync, rename, fsync of the directory).
//! - `snapshot.json`: the latest snapshot (meta + image), replaced atomically. The state
//!   machine itself is in memory and rebuilt on start from this snapshot plus the log.
//!
//! All entries that are not purged are also kept in memory (the metadata log is small and
//! is compacted by snapshots), so reads never touch the disk.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, LogState, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, StorageIOError,
};
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::image::{ApplyReply, ClusterImage};
use super::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote,
};
use super::view::Published;
use super::MetadataError;

pub(crate) const LOG_FILE: &str = "raft.log";
pub(crate) const VOTE_FILE: &str = "vote.json";
pub(crate) const COMMITTED_FILE: &str = "committed.json";
pub(crate) const PURGED_FILE: &str = "purged.json";
pub(crate) const SNAPSHOT_FILE: &str = "snapshot.json";

/// Bytes of a record header: payload length + crc32c.
const HEADER_LEN: usize = 8;

// ---------------------------------------------------------------------------------------
// File helpers
// ---------------------------------------------------------------------------------------

fn io_error(path: &Path, source: io::Error) -> MetadataError {
    MetadataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> MetadataError {
    MetadataError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// fsyncs a directory so that creates, renames and removals in it are durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `dir/name` with `bytes` atomically and durably: write a temp file, fsync it,
/// rename it over the target, fsync the directory.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Reads a json file; a missing file is `None`, an unparsable one is corrupt.
fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, MetadataError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| corrupt(path, format!("not valid json for this file: {e}"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

/// Runs blocking file I/O off the async workers.
async fn blocking<T, F>(f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("blocking I/O task failed: {e}")))?
}

fn storage_io(subject: ErrorSubject<u64>, verb: ErrorVerb, e: io::Error) -> StorageError {
    StorageError::from_io_error(subject, verb, e)
}

// ---------------------------------------------------------------------------------------
// Log record framing
// ---------------------------------------------------------------------------------------

/// Appends one framed record holding `payload` to `out`.
fn encode_record(out: &mut Vec<u8>, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| {
        io::Error::other(format!(
            "log record of {} bytes is too large",
            payload.len()
        ))
    })?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// The valid records of a log file.
#[derive(Debug)]
struct Scanned<'a> {
    /// `(offset of the record, payload)` of each valid record, in file order.
    records: Vec<(u64, &'a [u8])>,
    /// Length of the valid prefix; anything after it is a torn tail to truncate.
    valid_len: usize,
    /// Why the tail was dropped, if it was.
    torn: Option<String>,
}

/// Splits `data` into checksummed records. A damaged record is tolerated only as a torn
/// tail (it is the last thing in the file, or everything after it is zeros); damage
/// followed by more data is corruption.
fn scan_records<'a>(path: &Path, data: &'a [u8]) -> Result<Scanned<'a>, MetadataError> {
    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let rest = &data[pos..];
        let torn = if rest.len() < HEADER_LEN {
            Some(format!("incomplete record header at offset {pos}"))
        } else {
            let mut len_bytes = [0u8; 4];
            len_bytes.copy_from_slice(&rest[0..4]);
            let mut crc_bytes = [0u8; 4];
            crc_bytes.copy_from_slice(&rest[4..8]);
            let len = u32::from_le_bytes(len_bytes) as usize;
            let crc = u32::from_le_bytes(crc_bytes);
            if len == 0 {
                if rest.iter().all(|b| *b == 0) {
                    Some(format!("zero-filled tail at offset {pos}"))
                } else {
                    return Err(corrupt(
                        path,
                        format!("empty record at offset {pos} followed by data"),
                    ));
                }
            } else if rest.len() - HEADER_LEN < len {
                Some(format!(
                    "record at offset {pos} claims {len} bytes but only {} remain",
                    rest.len() - HEADER_LEN
                ))
            } else {
                let payload = &rest[HEADER_LEN..HEADER_LEN + len];
                if crc32c::crc32c(payload) == crc {
                    records.push((pos as u64, payload));
                    pos += HEADER_LEN + len;
                    continue;
                }
                if HEADER_LEN + len == rest.len() {
                    Some(format!(
                        "checksum mismatch in the last record at offset {pos}"
                    ))
                } else {
                    return Err(corrupt(
                        path,
                        format!(
                            "checksum mismatch in record at offset {pos}, followed by {} more bytes",
                            rest.len() - HEADER_LEN - len
                        ),
                    ));
                }
            }
        };
        return Ok(Scanned {
            records,
            valid_len: pos,
            torn,
        });
    }
    Ok(Scanned {
        records,
        valid_len: pos,
        torn: None,
    })
}

// ---------------------------------------------------------------------------------------
// Log store
// ---------------------------------------------------------------------------------------

/// The non-purged log entries, shared between the store and its readers.
type SharedLog = Arc<RwLock<BTreeMap<u64, Entry>>>;

/// The raft log store: vote, entries, committed log id and purge point.
pub(crate) struct LogStore {
    dir: PathBuf,
    /// `raft.log`, opened for appending.
    file: Arc<Mutex<File>>,
    /// Index of each entry in `log` -> offset of its record in `raft.log`.
    offsets: BTreeMap<u64, u64>,
    /// Length of `raft.log` (all of it is valid records).
    file_len: u64,
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    log: SharedLog,
}

/// Reads entries for openraft (replication, re-apply on start).
#[derive(Clone)]
pub(crate) struct LogReader {
    log: SharedLog,
}

fn read_range<RB: RangeBounds<u64>>(log: &SharedLog, range: RB) -> Vec<Entry> {
    log.read().range(range).map(|(_, e)| e.clone()).collect()
}

impl LogReader {
    /// The entries `after+1 ..= upto` (at most `limit` of them), or `None` when the
    /// first of them is no longer in the log (purged into a snapshot).
    pub(crate) fn entries_after(&self, after: u64, upto: u64, limit: u64) -> Option<Vec<Entry>> {
        let upto = upto.min(after.saturating_add(limit));
        if upto <= after {
            // Nothing new (or the asker is ahead of this log): an empty range, which
            // `BTreeMap::range` would refuse with a panic.
            return Some(Vec::new());
        }
        let entries = read_range(&self.log, after + 1..=upto);
        let contiguous = entries.first().is_some_and(|e| e.log_id.index == after + 1)
            && entries.len() as u64 == upto - after;
        contiguous.then_some(entries)
    }
}

impl LogStore {
    /// A reader sharing this store's entries (observers' metadata fetches).
    pub(crate) fn reader(&self) -> LogReader {
        LogReader {
            log: self.log.clone(),
        }
    }

    /// Loads the log store from `dir` (which must exist), truncating a torn log tail.
    /// Blocking.
    pub(crate) fn open(dir: &Path) -> Result<Self, MetadataError> {
        let vote: Option<Vote> = read_json(&dir.join(VOTE_FILE))?;
        let committed: Option<LogId> =
            read_json::<Option<LogId>>(&dir.join(COMMITTED_FILE))?.flatten();
        let last_purged: Option<LogId> =
            read_json::<Option<LogId>>(&dir.join(PURGED_FILE))?.flatten();

        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        sync_dir(dir).map_err(|e| io_error(dir, e))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(|e| io_error(&path, e))?;

        let scanned = scan_records(&path, &data)?;
        if let Some(reason) = &scanned.torn {
            tracing::warn!(
                path = %path.display(),
                valid_len = scanned.valid_len,
                file_len = data.len(),
                "truncating torn tail of the metadata log: {reason}"
            );
            file.set_len(scanned.valid_len as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error(&path, e))?;
        }

        let mut entries = BTreeMap::new();
        let mut offsets = BTreeMap::new();
        let mut prev: Option<u64> = None;
        for (offset, payload) in &scanned.records {
            let entry: Entry = serde_json::from_slice(payload).map_err(|e| {
                corrupt(
                    &path,
                    format!("record at offset {offset} is not a log entry: {e}"),
                )
            })?;
            let index = entry.log_id.index;
            if let Some(p) = prev {
                if Some(index) != p.checked_add(1) {
                    return Err(corrupt(
                        &path,
                        format!("entry {index} at offset {offset} does not follow entry {p}"),
                    ));
                }
            }
            prev = Some(index);
            // Purged but not yet rewritten away (a crash in the middle of a purge).
            if last_purged.is_some_and(|p| index <= p.index) {
                continue;
            }
            offsets.insert(index, *offset);
            entries.insert(index, entry);
        }
        if let (Some(purged), Some(first)) = (last_purged, entries.keys().next()) {
            if Some(*first) != purged.index.checked_add(1) {
                return Err(corrupt(
                    &path,
                    format!(
                        "log resumes at entry {first} but was purged only up to entry {}",
                        purged.index
                    ),
                ));
            }
        }

        tracing::info!(
            dir = %dir.display(),
            entries = entries.len(),
            first = ?entries.keys().next(),
            last = ?entries.keys().next_back(),
            committed = ?committed.map(|c| c.index),
            purged = ?last_purged.map(|p| p.index),
            "opened metadata log"
        );

        Ok(Self {
            dir: dir.to_path_buf(),
            file: Arc::new(Mutex::new(file)),
            offsets,
            file_len: scanned.valid_len as u64,
            vote,
            committed,
            last_purged,
            log: Arc::new(RwLock::new(entries)),
        })
    }

    pub(crate) fn last_purged(&self) -> Option<LogId> {
        self.last_purged
    }

    pub(crate) fn committed(&self) -> Option<LogId> {
        self.committed
    }

    /// The last log id present, or the purge point if the log is empty.
    pub(crate) fn last_log_id(&self) -> Option<LogId> {
        self.log
            .read()
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(self.last_purged)
    }

    /// Removes every entry with index >= `index`, in memory and on disk.
    async fn truncate_from(&mut self, index: u64) -> Result<(), StorageError> {
        let Some(offset) = self.offsets.range(index..).next().map(|(_, o)| *o) else {
            return Ok(());
        };
        drop(self.log.write().split_off(&index));
        drop(self.offsets.split_off(&index));
        self.file_len = offset;
        let file = self.file.clone();
        blocking(move || {
            let f = file.lock();
            f.set_len(offset)?;
            f.sync_all()
        })
        .await
        .map_err(|e| storage_io(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(read_range(&self.log, range))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(read_range(&self.log, range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        Ok(LogState {
            last_purged_log_id: self.last_purged,
            last_log_id: self.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            log: self.log.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes =
            serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        let dir = self.dir.clone();
        blocking(move || write_atomic(&dir, VOTE_FILE, &bytes))
            .await
            .map_err(|e| storage_io(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        self.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        if committed == self.committed {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&committed)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        let dir = self.dir.clone();
        blocking(move || write_atomic(&dir, COMMITTED_FILE, &bytes))
            .await
            .map_err(|e| storage_io(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut buf = Vec::new();
        let mut batch = Vec::new();
        for entry in entries {
            let payload = serde_json::to_vec(&entry)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, AnyError::new(&e)))?;
            let relative = buf.len() as u64;
            encode_record(&mut buf, &payload)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, AnyError::new(&e)))?;
            batch.push((relative, entry));
        }
        let Some(first) = batch.first().map(|(_, e)| e.log_id.index) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        // Raft truncates conflicting entries before appending; never leave duplicates.
        if self.offsets.range(first..).next().is_some() {
            tracing::warn!(
                first,
                "append overlaps existing metadata log entries; truncating them"
            );
            self.truncate_from(first).await?;
        }

        let base = self.file_len;
        {
            let mut log = self.log.write();
            for (relative, entry) in batch {
                let index = entry.log_id.index;
                self.offsets.insert(index, base + relative);
                log.insert(index, entry);
            }
        }
        self.file_len += buf.len() as u64;

        let file = self.file.clone();
        let written = blocking(move || {
            let mut f = file.lock();
            f.write_all(&buf)?;
            f.sync_data()
        })
        .await;
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "failed to append to the metadata log");
                let err = storage_io(
                    ErrorSubject::Logs,
                    ErrorVerb::Write,
                    io::Error::new(e.kind(), e.to_string()),
                );
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(index = log_id.index, "truncating metadata log");
        self.truncate_from(log_id.index).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(index = log_id.index, "purging metadata log");
        if self.last_purged.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        // 1. Record the purge point first: a crash in the middle of the rewrite then only
        //    leaves extra (ignored) entries at the head of the file, never a hole.
        let bytes = serde_json::to_vec(&Some(log_id))
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        let dir = self.dir.clone();
        blocking(move || write_atomic(&dir, PURGED_FILE, &bytes))
            .await
            .map_err(|e| storage_io(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        self.last_purged = Some(log_id);

        // 2. Drop the entries from memory.
        let keep_from_index = log_id.index.saturating_add(1);
        {
            let mut log = self.log.write();
            let kept = log.split_off(&keep_from_index);
            *log = kept;
        }
        let keep_from = self
            .offsets
            .range(keep_from_index..)
            .next()
            .map(|(_, o)| *o)
            .unwrap_or(self.file_len);
        self.offsets = self
            .offsets
            .split_off(&keep_from_index)
            .into_iter()
            .map(|(i, o)| (i, o - keep_from))
            .collect();
        let old_len = self.file_len;
        self.file_len -= keep_from;
        if keep_from == 0 {
            return Ok(());
        }

        // 3. Rewrite raft.log without them: copy the kept tail to a temp file, fsync,
        //    rename over the log, fsync the directory, switch the append handle.
        let dir = self.dir.clone();
        let file = self.file.clone();
        blocking(move || {
            let path = dir.join(LOG_FILE);
            let tmp = dir.join(format!("{LOG_FILE}.tmp"));
            let mut tail = Vec::new();
            {
                let mut old = File::open(&path)?;
                old.seek(SeekFrom::Start(keep_from))?;
                old.take(old_len - keep_from).read_to_end(&mut tail)?;
            }
            {
                let mut new = File::create(&tmp)?;
                new.write_all(&tail)?;
                new.sync_all()?;
            }
            let mut handle = file.lock();
            fs::rename(&tmp, &path)?;
            sync_dir(&dir)?;
            *handle = OpenOptions::new().read(true).append(true).open(&path)?;
            Ok(())
        })
        .await
        .map_err(|e| storage_io(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

// ---------------------------------------------------------------------------------------
// State machine
// ---------------------------------------------------------------------------------------

/// Contents of `snapshot.json`.
#[derive(Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    image: ClusterImage,
}

/// Borrowing twin of [`SnapshotFile`] for writing.
#[derive(Serialize)]
struct SnapshotFileRef<'a> {
    meta: &'a SnapshotMeta,
    image: &'a ClusterImage,
}

/// The persisted snapshot as served to openraft; `data` is the serde_json of the image.
#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

type SharedSnapshot = Arc<tokio::sync::Mutex<Option<StoredSnapshot>>>;

/// The state machine: the cluster image, what was applied last, and the snapshot.
pub(crate) struct StateMachineStore {
    dir: PathBuf,
    image: ClusterImage,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    publish: watch::Sender<Published>,
    snapshot: SharedSnapshot,
}

/// Builds a snapshot from a copy of the state machine taken when it was asked for.
pub(crate) struct SnapshotBuilder {
    dir: PathBuf,
    image: ClusterImage,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    snapshot: SharedSnapshot,
}

fn snapshot_id(last: Option<LogId>) -> String {
    let unique = uuid::Uuid::new_v4().simple();
    match last {
        Some(l) => format!("{}-{}-{unique}", l.leader_id.term, l.index),
        None => format!("empty-{unique}"),
    }
}

/// Persists a snapshot to `snapshot.json` (unless a newer one is already there) and
/// returns it.
async fn persist_snapshot(
    dir: &Path,
    current: &SharedSnapshot,
    meta: SnapshotMeta,
    image: &ClusterImage,
) -> Result<Snapshot, StorageError> {
    let signature = meta.signature();
    let to_err = |e: &dyn std::error::Error| {
        StorageError::from(StorageIOError::write_snapshot(
            Some(signature.clone()),
            AnyError::error(e.to_string()),
        ))
    };
    let data = serde_json::to_vec(image).map_err(|e| to_err(&e))?;
    let file_bytes =
        serde_json::to_vec(&SnapshotFileRef { meta: &meta, image }).map_err(|e| to_err(&e))?;

    let mut guard = current.lock().await;
    let newer_exists = guard
        .as_ref()
        .is_some_and(|s| s.meta.last_log_id > meta.last_log_id);
    if newer_exists {
        tracing::info!(snapshot = %meta, "not replacing a newer metadata snapshot");
    } else {
        let dir = dir.to_path_buf();
        blocking(move || write_atomic(&dir, SNAPSHOT_FILE, &file_bytes))
            .await
            .map_err(|e| to_err(&e))?;
        *guard = Some(StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        });
        tracing::info!(snapshot = %meta, "persisted metadata snapshot");
    }
    Ok(Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(data)),
    })
}

impl StateMachineStore {
    /// Restores the state machine from `dir/snapshot.json` if present. Returns it with a
    /// receiver of the image it publishes after every apply. Blocking.
    pub(crate) fn open(dir: &Path) -> Result<(Self, watch::Receiver<Published>), MetadataError> {
        let path = dir.join(SNAPSHOT_FILE);
        let (image, last_applied, last_membership, snapshot) =
            match read_json::<SnapshotFile>(&path)? {
                Some(file) => {
                    let data = serde_json::to_vec(&file.image)
                        .map_err(|e| corrupt(&path, format!("cannot re-encode image: {e}")))?;
                    tracing::info!(snapshot = %file.meta, "restoring metadata state from snapshot");
                    (
                        file.image,
                        file.meta.last_log_id,
                        file.meta.last_membership.clone(),
                        Some(StoredSnapshot {
                            meta: file.meta,
                            data,
                        }),
                    )
                }
                None => (
                    ClusterImage::default(),
                    None,
                    StoredMembership::default(),
                    None,
                ),
            };
        let (publish, rx) = watch::channel(Published {
            index: last_applied.map(|l| l.index),
            image: Arc::new(image.clone()),
        });
        Ok((
            Self {
                dir: dir.to_path_buf(),
                image,
                last_applied,
                last_membership,
                publish,
                snapshot: Arc::new(tokio::sync::Mutex::new(snapshot)),
            },
            rx,
        ))
    }

    fn publish_image(&self) {
        self.publish.send_replace(Published {
            index: self.last_applied.map(|l| l.index),
            image: Arc::new(self.image.clone()),
        });
    }

    /// The log id the restored state machine (i.e. the snapshot) covers.
    pub(crate) fn last_applied(&self) -> Option<LogId> {
        self.last_applied
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id: snapshot_id(self.last_applied),
        };
        persist_snapshot(&self.dir, &self.snapshot, meta, &self.image).await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyReply>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Blank => ApplyReply::Done,
                EntryPayload::Normal(record) => self.image.apply(record),
                EntryPayload::Membership(membership) => {
                    self.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    ApplyReply::Done
                }
            };
            replies.push(reply);
        }
        // Published after every batch, even one of blank or membership entries only,
        // so the published index is always the state machine's last applied entry
        // (observers are served exactly that pair).
        if !replies.is_empty() {
            self.publish_image();
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            dir: self.dir.clone(),
            image: self.image.clone(),
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot: self.snapshot.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let image: ClusterImage = serde_json::from_slice(&data).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e))
        })?;
        persist_snapshot(&self.dir, &self.snapshot, meta.clone(), &image).await?;
        self.image = image;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        self.publish_image();
        tracing::info!(snapshot = %meta, "installed metadata snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.snapshot.lock().await.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode_record(&mut out, p).expect("encode");
        }
        out
    }

    #[test]
    fn a_fetch_with_nothing_new_or_from_ahead_gets_no_entries() {
        let reader = LogReader {
            log: SharedLog::default(),
        };
        // Before: `BTreeMap::range(6..=5)` panicked in the connection's task.
        assert_eq!(reader.entries_after(5, 5, 100).map(|e| e.len()), Some(0));
        assert_eq!(reader.entries_after(7, 5, 100).map(|e| e.len()), Some(0));
        // Entries wanted but gone (purged into a snapshot): None.
        assert!(reader.entries_after(1, 3, 100).is_none());
    }

    #[test]
    fn scan_accepts_clean_log() {
        let data = framed(&[b"one", b"two"]);
        let s = scan_records(Path::new("x"), &data).expect("scan");
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.valid_len, data.len());
        assert!(s.torn.is_none());
    }

    #[test]
    fn scan_truncates_torn_tails() {
        let good = framed(&[b"one", b"two"]);
        // Half-written record.
        let mut data = good.clone();
        data.extend_from_slice(&framed(&[b"three"])[..10]);
        let s = scan_records(Path::new("x"), &data).expect("scan");
        assert_eq!((s.records.len(), s.valid_len), (2, good.len()));
        // Last record with a bad checksum.
        let mut data = good.clone();
        let mut last = framed(&[b"three"]);
        let n = last.len();
        last[n - 1] ^= 0xff;
        data.extend_from_slice(&last);
        let s = scan_records(Path::new("x"), &data).expect("scan");
        assert_eq!((s.records.len(), s.valid_len), (2, good.len()));
        // Zero fill.
        let mut data = good.clone();
        data.extend_from_slice(&[0u8; 100]);
        let s = scan_records(Path::new("x"), &data).expect("scan");
        assert_eq!((s.records.len(), s.valid_len), (2, good.len()));
        // A few header bytes.
        let mut data = good.clone();
        data.extend_from_slice(&[1, 2, 3]);
        let s = scan_records(Path::new("x"), &data).expect("scan");
        assert_eq!((s.records.len(), s.valid_len), (2, good.len()));
    }

    #[test]
    fn scan_reports_damage_in_the_middle() {
        let mut data = framed(&[b"one", b"two", b"three"]);
        data[HEADER_LEN] ^= 0xff; // first payload byte
        let err = scan_records(Path::new("/d/raft.log"), &data).expect_err("corrupt");
        match err {
            MetadataError::Corrupt { path, .. } => assert_eq!(path, Path::new("/d/raft.log")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn corrupt_small_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(VOTE_FILE), b"{not json").expect("write");
        match LogStore::open(dir.path()) {
            Err(MetadataError::Corrupt { path, .. }) => {
                assert_eq!(path, dir.path().join(VOTE_FILE))
            }
            Err(other) => panic!("unexpected {other:?}"),
            Ok(_) => panic!("corrupt vote accepted"),
        }
        fs::remove_file(dir.path().join(VOTE_FILE)).expect("rm");
        fs::write(dir.path().join(SNAPSHOT_FILE), b"[]").expect("write");
        match StateMachineStore::open(dir.path()) {
            Err(MetadataError::Corrupt { path, .. }) => {
                assert_eq!(path, dir.path().join(SNAPSHOT_FILE))
            }
            Err(other) => panic!("unexpected {other:?}"),
            Ok(_) => panic!("corrupt snapshot accepted"),
        }
    }
}
