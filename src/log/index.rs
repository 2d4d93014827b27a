//! Sparse offset and time indexes of one segment.
//!
//! Entries are kept in memory (a few MB per GB of log at the default interval), so
//! lookups need no file and no descriptor. New entries reach the file when the segment
//! is sealed, flushed or closed (`persist`), which opens it only for that write: an idle
//! partition holds no index descriptor. A sealed segment's index files are complete and
//! can be uploaded as they are; an active segment's may lag after a crash, which is why
//! recovery rebuilds the indexes of every segment it scans. File formats follow
//! Kafka's: the offset index holds (relative offset u32, position u32) pairs, the time
//! index holds (timestamp i64, relative offset u32) entries, all big-endian.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub const OFFSET_ENTRY: usize = 8;
pub const TIME_ENTRY: usize = 12;

/// Offset index: relative offset → file position of the batch containing it.
#[derive(Debug)]
pub struct OffsetIndex {
    path: PathBuf,
    entries: Vec<(u32, u32)>,
    /// Entries already in the file.
    written: usize,
    /// Whether the file exists (a new index writes it on the first `persist`).
    on_disk: bool,
}

/// Time index: max timestamp so far → relative offset of the batch that reached it.
#[derive(Debug)]
pub struct TimeIndex {
    path: PathBuf,
    entries: Vec<(i64, u32)>,
    /// Entries already in the file.
    written: usize,
    /// Whether the file exists (a new index writes it on the first `persist`).
    on_disk: bool,
}

/// Drops any stale index file at `path`; the new one is written by the first
/// `persist` (an index file costs an inode, and a fresh partition needs none yet).
fn remove_stale(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Appends `bytes` to the file at `path` (created if missing), optionally fsyncing it,
/// with a descriptor held only for the write.
fn append_to(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let mut file = OpenOptions::new().append(true).create(true).open(path)?;
    file.write_all(bytes)?;
    if sync {
        file.sync_all()?;
    }
    Ok(())
}

/// Cuts the file at `path` to `len` bytes.
fn truncate_file(path: &Path, len: u64) -> io::Result<()> {
    match OpenOptions::new().write(true).open(path) {
        Ok(f) => f.set_len(len),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn read_all(path: &Path) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    File::open(path)?.read_to_end(&mut buf)?;
    Ok(buf)
}

impl OffsetIndex {
    /// Opens an index file and loads its entries. Entries are trusted only if they are
    /// strictly increasing and within `log_size`; otherwise `None` (the caller rebuilds).
    pub fn load(path: &Path, log_size: u64) -> io::Result<Option<OffsetIndex>> {
        if !path.exists() {
            return Ok(None);
        }
        let raw = read_all(path)?;
        if raw.len() % OFFSET_ENTRY != 0 {
            return Ok(None);
        }
        let mut entries = Vec::with_capacity(raw.len() / OFFSET_ENTRY);
        for chunk in raw.chunks_exact(OFFSET_ENTRY) {
            let rel = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let pos = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            if let Some(&(last_rel, last_pos)) = entries.last() {
                if rel <= last_rel || pos <= last_pos {
                    return Ok(None);
                }
            }
            if pos as u64 >= log_size.max(1) {
                return Ok(None);
            }
            entries.push((rel, pos));
        }
        let written = entries.len();
        Ok(Some(OffsetIndex {
            path: path.to_path_buf(),
            entries,
            written,
            on_disk: true,
        }))
    }

    /// Creates an empty index, replacing any file at `path`.
    pub fn create(path: &Path) -> io::Result<OffsetIndex> {
        remove_stale(path)?;
        Ok(OffsetIndex {
            path: path.to_path_buf(),
            entries: Vec::new(),
            written: 0,
            on_disk: false,
        })
    }

    pub fn append(&mut self, relative_offset: u32, position: u32) -> io::Result<()> {
        self.entries.push((relative_offset, position));
        Ok(())
    }

    /// Writes the entries the file lacks (fsynced with `sync`).
    pub fn persist(&mut self, sync: bool) -> io::Result<()> {
        if self.written == self.entries.len() && !sync && self.on_disk {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity((self.entries.len() - self.written) * OFFSET_ENTRY);
        for &(rel, pos) in &self.entries[self.written..] {
            bytes.extend_from_slice(&rel.to_be_bytes());
            bytes.extend_from_slice(&pos.to_be_bytes());
        }
        append_to(&self.path, &bytes, sync)?;
        self.written = self.entries.len();
        self.on_disk = true;
        Ok(())
    }

    /// The last entry at or before `relative_offset`: where to start scanning.
    pub fn lookup(&self, relative_offset: u32) -> (u32, u32) {
        let idx = self
            .entries
            .partition_point(|&(rel, _)| rel <= relative_offset);
        if idx == 0 {
            (0, 0)
        } else {
            self.entries[idx - 1]
        }
    }

    /// Drops entries at or past `position` (after a truncation).
    pub fn truncate_to_position(&mut self, position: u32) -> io::Result<()> {
        let keep = self.entries.partition_point(|&(_, pos)| pos < position);
        self.entries.truncate(keep);
        if self.written > keep {
            truncate_file(&self.path, (keep * OFFSET_ENTRY) as u64)?;
            self.written = keep;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn size_bytes(&self) -> u64 {
        (self.entries.len() * OFFSET_ENTRY) as u64
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn renamed(&mut self, to: PathBuf) {
        self.path = to;
    }
}

impl TimeIndex {
    pub fn load(path: &Path) -> io::Result<Option<TimeIndex>> {
        if !path.exists() {
            return Ok(None);
        }
        let raw = read_all(path)?;
        if raw.len() % TIME_ENTRY != 0 {
            return Ok(None);
        }
        let mut entries = Vec::with_capacity(raw.len() / TIME_ENTRY);
        for chunk in raw.chunks_exact(TIME_ENTRY) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&chunk[..8]);
            let ts = i64::from_be_bytes(ts);
            let rel = u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
            if let Some(&(last_ts, last_rel)) = entries.last() {
                if ts <= last_ts || rel < last_rel {
                    return Ok(None);
                }
            }
            entries.push((ts, rel));
        }
        let written = entries.len();
        Ok(Some(TimeIndex {
            path: path.to_path_buf(),
            entries,
            written,
            on_disk: true,
        }))
    }

    pub fn create(path: &Path) -> io::Result<TimeIndex> {
        remove_stale(path)?;
        Ok(TimeIndex {
            path: path.to_path_buf(),
            entries: Vec::new(),
            written: 0,
            on_disk: false,
        })
    }

    /// Writes the entries the file lacks (fsynced with `sync`).
    pub fn persist(&mut self, sync: bool) -> io::Result<()> {
        if self.written == self.entries.len() && !sync && self.on_disk {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity((self.entries.len() - self.written) * TIME_ENTRY);
        for &(ts, rel) in &self.entries[self.written..] {
            bytes.extend_from_slice(&ts.to_be_bytes());
            bytes.extend_from_slice(&rel.to_be_bytes());
        }
        append_to(&self.path, &bytes, sync)?;
        self.written = self.entries.len();
        self.on_disk = true;
        Ok(())
    }

    /// Adds an entry when `timestamp` is a new maximum for the segment.
    pub fn maybe_append(&mut self, timestamp: i64, relative_offset: u32) -> io::Result<()> {
        if self.entries.last().is_some_and(|&(ts, _)| timestamp <= ts) {
            return Ok(());
        }
        self.entries.push((timestamp, relative_offset));
        Ok(())
    }

    /// The relative offset of the first batch whose max timestamp is ≥ `timestamp`
    /// (a lower bound to scan from), or `None` if the segment has none.
    pub fn lookup(&self, timestamp: i64) -> Option<u32> {
        let idx = self.entries.partition_point(|&(ts, _)| ts < timestamp);
        self.entries.get(idx).map(|&(_, rel)| rel)
    }

    pub fn max_timestamp(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    pub fn truncate_to_offset(&mut self, relative_offset: u32) -> io::Result<()> {
        let keep = self
            .entries
            .partition_point(|&(_, rel)| rel < relative_offset);
        self.entries.truncate(keep);
        if self.written > keep {
            truncate_file(&self.path, (keep * TIME_ENTRY) as u64)?;
            self.written = keep;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn renamed(&mut self, to: PathBuf) {
        self.path = to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.index");
        let mut idx = OffsetIndex::create(&p).unwrap();
        idx.append(10, 100).unwrap();
        idx.append(20, 200).unwrap();
        idx.persist(false).unwrap();
        assert_eq!(idx.lookup(5), (0, 0));
        assert_eq!(idx.lookup(15), (10, 100));
        assert_eq!(idx.lookup(25), (20, 200));
        idx.append(30, 300).unwrap();
        idx.persist(true).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            3 * OFFSET_ENTRY as u64
        );
        idx.truncate_to_position(300).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            2 * OFFSET_ENTRY as u64
        );
        drop(idx);
        let idx = OffsetIndex::load(&p, 1000).unwrap().unwrap();
        assert_eq!(idx.len(), 2);
        // An entry past the end of the log means the index is stale.
        assert!(OffsetIndex::load(&p, 150).unwrap().is_none());
    }

    #[test]
    fn time_index_finds_first_at_or_after() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TimeIndex::create(&dir.path().join("0.timeindex")).unwrap();
        t.maybe_append(100, 0).unwrap();
        t.maybe_append(90, 1).unwrap(); // not a new max: skipped
        t.maybe_append(200, 5).unwrap();
        assert_eq!(t.lookup(50), Some(0));
        assert_eq!(t.lookup(150), Some(5));
        assert_eq!(t.lookup(250), None);
    }
}
