//! One segment: a `.log` file of record batches plus its offset and time indexes.
//!
//! Owned by its [`crate::log::Log`] (under the partition's lock); readers get an
//! `Arc<File>` and positions and read outside the lock, which is safe because bytes
//! below a segment's current size never change (truncation only happens during
//! recovery, before anyone reads). The `.log` descriptor comes from the broker's file
//! pool ([`super::files`]) for each operation and the indexes live in memory, so an
//! idle segment holds no descriptor at all.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::files::PooledFile;

use super::batch::{self, BatchHeader, HEADER_SIZE, LOG_OVERHEAD};
use super::index::{OffsetIndex, TimeIndex, OFFSET_ENTRY};

pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// Reads up to `len` bytes at `pos`; fewer only at end of file.
///
/// The buffer is not zeroed first: `pread` fills it straight from the page cache.
pub fn read_at(file: &File, pos: u64, len: usize) -> io::Result<Bytes> {
    use std::os::fd::AsRawFd;
    let mut buf = BytesMut::with_capacity(len);
    while buf.len() < len {
        let done = buf.len();
        let spare = &mut buf.spare_capacity_mut()[..len - done];
        let at = libc::off_t::try_from(pos + done as u64)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `spare` is writable memory of `spare.len()` bytes owned by `buf`;
        // pread writes at most that many bytes into it and says how many it wrote.
        let n =
            unsafe { libc::pread(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len(), at) };
        match n {
            0 => break,
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            // SAFETY: pread initialised the first `n` bytes of the spare capacity.
            n => unsafe { buf.set_len(done + n as usize) },
        }
    }
    Ok(buf.freeze())
}

/// The total size of the batch at `pos` (from its length field), if that much of a
/// header is there.
pub fn batch_size_at(file: &File, pos: u64) -> io::Result<Option<usize>> {
    let mut buf = [0u8; LOG_OVERHEAD];
    let mut done = 0;
    while done < LOG_OVERHEAD {
        let n = file.read_at(&mut buf[done..], pos + done as u64)?;
        if n == 0 {
            return Ok(None);
        }
        done += n;
    }
    Ok(BatchHeader::total_size_of(&buf))
}

/// Reads the batch header at `pos`, if a whole header is there.
pub fn header_at(file: &File, pos: u64) -> io::Result<Option<BatchHeader>> {
    let mut buf = [0u8; HEADER_SIZE];
    let mut done = 0;
    while done < HEADER_SIZE {
        let n = file.read_at(&mut buf[done..], pos + done as u64)?;
        if n == 0 {
            return Ok(None);
        }
        done += n;
    }
    Ok(BatchHeader::parse(&buf).ok())
}

/// What scanning a segment's file found.
#[derive(Debug, Default)]
pub struct ScanOutcome {
    /// Bytes of valid batches from the start of the file.
    pub valid_bytes: u64,
    /// Bytes dropped from a torn or corrupt tail.
    pub truncated_bytes: u64,
    pub next_offset: Option<i64>,
}

#[derive(Debug)]
pub struct Segment {
    pub base_offset: i64,
    log_path: PathBuf,
    file: Arc<PooledFile>,
    size: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index_entry: u64,
    /// Offset after the last batch in this segment.
    pub next_offset: i64,
    /// Largest batch max-timestamp in this segment, -1 when empty.
    pub max_timestamp: i64,
    /// Max timestamp of the first batch, -1 while there is none (Kafka's
    /// `rollingBasedTimestamp`): `segment.ms` compares record time with it.
    pub first_batch_timestamp: i64,
    /// Wall-clock time the segment was created or opened; `segment.ms` counts from it
    /// only while the segment holds no timestamp.
    pub created_ms: i64,
    pub sealed: bool,
    /// Bytes reserved by `preallocate` (0 = none).
    preallocated: u64,
}

/// Suffix of a segment file waiting out `file.delete.delay.ms`.
pub const DELETED_SUFFIX: &str = ".deleted";

impl Segment {
    pub fn paths(dir: &Path, base_offset: i64) -> (PathBuf, PathBuf, PathBuf) {
        let stem = file_stem(base_offset);
        (
            dir.join(format!("{stem}.log")),
            dir.join(format!("{stem}.index")),
            dir.join(format!("{stem}.timeindex")),
        )
    }

    pub fn create(dir: &Path, base_offset: i64, now_ms: i64) -> io::Result<Segment> {
        let (log_path, index_path, time_path) = Self::paths(dir, base_offset);
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)?;
        Ok(Segment {
            base_offset,
            file: Arc::new(PooledFile::new(log_path.clone())),
            log_path,
            size: 0,
            offset_index: OffsetIndex::create(&index_path)?,
            time_index: TimeIndex::create(&time_path)?,
            bytes_since_index_entry: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            first_batch_timestamp: -1,
            created_ms: now_ms,
            preallocated: 0,
            sealed: false,
        })
    }

    /// Opens an existing segment. With `verify`, every batch's CRC is checked and a
    /// bad tail is truncated; indexes are rebuilt when missing, stale or when the file
    /// was scanned. `on_batch` sees every batch header (for producer state rebuilds)
    /// when the file is scanned.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        verify: bool,
        index_interval: u64,
        now_ms: i64,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> io::Result<(Segment, ScanOutcome)> {
        let (log_path, index_path, time_path) = Self::paths(dir, base_offset);
        let size = std::fs::metadata(&log_path)?.len();
        let offset_index = if verify {
            None
        } else {
            OffsetIndex::load(&index_path, size)?
        };
        let time_index = if verify {
            None
        } else {
            TimeIndex::load(&time_path)?
        };
        let time_index_loaded = time_index.is_some();
        let mut segment = Segment {
            base_offset,
            file: Arc::new(PooledFile::new(log_path.clone())),
            log_path,
            size,
            offset_index: match offset_index {
                Some(i) => i,
                None => OffsetIndex::create(&index_path)?,
            },
            time_index: match time_index {
                Some(t) => t,
                None => TimeIndex::create(&time_path)?,
            },
            bytes_since_index_entry: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            first_batch_timestamp: -1,
            created_ms: now_ms,
            preallocated: 0,
            sealed: false,
        };
        // Both indexes present and sane after a clean shutdown: trust them and only
        // read the last batch to learn the next offset. Otherwise scan the whole file.
        let trusted =
            !verify && time_index_loaded && (!segment.offset_index.is_empty() || size == 0);
        let outcome = if trusted {
            segment.load_tail_from_index()?;
            ScanOutcome {
                valid_bytes: size,
                truncated_bytes: 0,
                next_offset: Some(segment.next_offset),
            }
        } else {
            let outcome = segment.rebuild(verify, index_interval, on_batch)?;
            // Rebuilt indexes go to disk now, as Kafka's recovery writes them.
            segment.offset_index.persist(false)?;
            segment.time_index.persist(false)?;
            outcome
        };
        Ok((segment, outcome))
    }

    /// Finds the next offset and max timestamp from the last index entry onward.
    fn load_tail_from_index(&mut self) -> io::Result<()> {
        let (_, start) = self.offset_index.lookup(u32::MAX);
        let mut pos = start as u64;
        let file = self.file.open()?;
        while let Some(h) = header_at(&file, pos)? {
            if pos + h.total_size() as u64 > self.size {
                break;
            }
            self.next_offset = h.next_offset();
            pos += h.total_size() as u64;
        }
        if let Some((ts, _)) = self.time_index.max_timestamp() {
            self.max_timestamp = ts;
        }
        if let Some(h) = header_at(&file, 0)? {
            self.first_batch_timestamp = h.max_timestamp.max(-1);
        }
        if pos < self.size {
            // Trailing bytes that do not form a whole batch: drop them.
            file.set_len(pos)?;
            self.size = pos;
        }
        Ok(())
    }

    fn rebuild(
        &mut self,
        verify: bool,
        index_interval: u64,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> io::Result<ScanOutcome> {
        let (_, index_path, time_path) = Self::paths(
            self.log_path.parent().unwrap_or(Path::new(".")),
            self.base_offset,
        );
        self.offset_index = OffsetIndex::create(&index_path)?;
        self.time_index = TimeIndex::create(&time_path)?;
        self.bytes_since_index_entry = 0;
        self.max_timestamp = -1;
        let mut pos = 0u64;
        let mut first = true;
        let file = self.file.open()?;
        while let Some(h) = header_at(&file, pos)? {
            let total = h.total_size() as u64;
            if pos + total > self.size || h.base_offset < self.next_offset.min(self.base_offset) {
                break;
            }
            if verify {
                let bytes = read_at(&file, pos, total as usize)?;
                if batch::validate(&bytes).is_err() {
                    break;
                }
            }
            if first {
                self.first_batch_timestamp = h.max_timestamp.max(-1);
                first = false;
            }
            self.index_batch(&h, pos, total, index_interval)?;
            on_batch(&h);
            self.next_offset = h.next_offset();
            pos += total;
        }
        let truncated = self.size - pos;
        if truncated > 0 {
            file.set_len(pos)?;
            self.size = pos;
        }
        Ok(ScanOutcome {
            valid_bytes: pos,
            truncated_bytes: truncated,
            next_offset: Some(self.next_offset),
        })
    }

    fn index_batch(
        &mut self,
        h: &BatchHeader,
        pos: u64,
        total: u64,
        index_interval: u64,
    ) -> io::Result<()> {
        let rel = (h.base_offset - self.base_offset) as u32;
        if self.bytes_since_index_entry >= index_interval || self.offset_index.is_empty() && pos > 0
        {
            if self.offset_index.lookup(rel).1 < pos as u32 || self.offset_index.is_empty() {
                self.offset_index.append(rel, pos as u32)?;
            }
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += total;
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.time_index
                .maybe_append(h.max_timestamp, (h.last_offset() - self.base_offset) as u32)?;
        }
        Ok(())
    }

    /// Appends already-validated, offset-patched batches given as I/O slices that
    /// total `len` bytes. `batches` are (position relative to the first slice, header).
    pub fn append(
        &mut self,
        slices: &mut [io::IoSlice<'_>],
        len: u64,
        batches: &[(usize, BatchHeader)],
        index_interval: u64,
    ) -> io::Result<()> {
        let mut remaining: &mut [io::IoSlice<'_>] = slices;
        let handle = self.file.open()?;
        let mut file = &*handle;
        while !remaining.is_empty() {
            let n = file.write_vectored(remaining)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "segment write returned 0",
                ));
            }
            io::IoSlice::advance_slices(&mut remaining, n);
        }
        let start = self.size;
        if self.size == 0 {
            if let Some((_, h)) = batches.first() {
                self.first_batch_timestamp = h.max_timestamp.max(-1);
            }
        }
        for (pos, h) in batches {
            self.index_batch(
                h,
                start + *pos as u64,
                h.total_size() as u64,
                index_interval,
            )?;
            self.next_offset = h.next_offset();
        }
        self.size += len;
        Ok(())
    }

    /// How long this segment has been open for `segment.ms`, as Kafka's
    /// `LogSegment.timeWaitedForRoll` (KAFKA-4099): record time since the first batch,
    /// so a replay of month-old records rolls by the data's own time span, not once per
    /// batch; wall-clock time since creation only while the segment holds no timestamp.
    pub fn time_waited_for_roll(&self, now_ms: i64, incoming_max_timestamp: i64) -> i64 {
        if self.first_batch_timestamp >= 0 {
            incoming_max_timestamp - self.first_batch_timestamp
        } else {
            now_ms - self.created_ms
        }
    }

    /// Whether the offset index has room for another entry under `segment.index.bytes`.
    pub fn index_full(&self, segment_index_bytes: u64) -> bool {
        self.offset_index.size_bytes() + OFFSET_ENTRY as u64 > segment_index_bytes
    }

    /// Position of the batch that contains `offset` (or the first after it), scanning
    /// from the nearest index entry. `None` if `offset` is past this segment's end.
    pub fn position_of(&self, offset: i64, end: u64) -> io::Result<Option<(u64, BatchHeader)>> {
        let rel = offset
            .saturating_sub(self.base_offset)
            .clamp(0, u32::MAX as i64) as u32;
        let (_, start) = self.offset_index.lookup(rel);
        let mut pos = start as u64;
        if pos + LOG_OVERHEAD as u64 > end {
            return Ok(None);
        }
        let file = self.file.open()?;
        while pos + LOG_OVERHEAD as u64 <= end {
            let Some(h) = header_at(&file, pos)? else {
                return Ok(None);
            };
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_size() as u64;
        }
        Ok(None)
    }

    /// Relative offset lower bound for a timestamp lookup.
    pub fn time_lookup(&self, timestamp: i64) -> Option<i64> {
        self.time_index
            .lookup(timestamp)
            .map(|rel| self.base_offset + rel as i64)
    }

    pub fn offset_of_max_timestamp(&self) -> Option<(i64, i64)> {
        self.time_index
            .max_timestamp()
            .map(|(ts, rel)| (ts, self.base_offset + rel as i64))
    }

    /// The `.log` descriptor from the pool (opened now if the pool had closed it).
    pub fn file(&self) -> io::Result<Arc<File>> {
        self.file.open()
    }

    /// The `.log` file as the pool knows it, for work that opens it later (uploads).
    pub fn pooled_file(&self) -> Arc<PooledFile> {
        self.file.clone()
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Reserves `bytes` of disk for the segment without changing its length
    /// (`fallocate` with FALLOC_FL_KEEP_SIZE), so appends and readers see nothing
    /// different while the file system lays the segment out in one piece, as Kafka's
    /// `preallocate` intends. A file system without fallocate just skips it.
    pub fn preallocate(&mut self, bytes: u64) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let len = bytes.min(i64::MAX as u64) as libc::off_t;
            let Ok(file) = self.file.open() else { return };
            // SAFETY: fallocate on a descriptor we hold; no memory is passed.
            let rc =
                unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
            if rc == 0 {
                self.preallocated = bytes;
            } else {
                tracing::debug!(
                    path = %self.log_path.display(),
                    error = %io::Error::last_os_error(),
                    "preallocation not supported here"
                );
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = bytes;
    }

    /// Gives back what `preallocate` reserved past the data (as Kafka trims a
    /// preallocated segment when it rolls).
    fn release_preallocation(&mut self) -> io::Result<()> {
        if self.preallocated > self.size {
            // Truncating to the current length frees the blocks reserved past it.
            self.file.open()?.set_len(self.size)?;
        }
        self.preallocated = 0;
        Ok(())
    }

    /// Renames the segment's files to `<name>.deleted` (Kafka's marker for a segment
    /// scheduled for deletion) and returns the new paths, to be removed after
    /// `file.delete.delay.ms`. Open handles (readers mid-fetch, the uploader) keep
    /// reading the renamed files until they finish.
    pub fn rename_for_deletion(&mut self) -> io::Result<Vec<PathBuf>> {
        let mut renamed = Vec::with_capacity(3);
        for (i, p) in [
            self.log_path.clone(),
            self.offset_index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
        ]
        .into_iter()
        .enumerate()
        {
            let mut target = p.clone().into_os_string();
            target.push(DELETED_SUFFIX);
            let target = PathBuf::from(target);
            match std::fs::rename(&p, &target) {
                Ok(()) => {
                    match i {
                        0 => self.file.renamed(target.clone()),
                        1 => self.offset_index.renamed(target.clone()),
                        _ => self.time_index.renamed(target.clone()),
                    }
                    renamed.push(target)
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        // The pool lets go of it; a read or upload already holding it finishes.
        self.file.close();
        Ok(renamed)
    }

    /// Marks the segment immutable (it was rolled), writes its index entries out and
    /// returns the paths of its files, for the caller to fsync off the append path.
    pub fn seal(&mut self) -> io::Result<Vec<PathBuf>> {
        self.release_preallocation()?;
        self.offset_index.persist(false)?;
        self.time_index.persist(false)?;
        self.sealed = true;
        Ok(vec![
            self.log_path.clone(),
            self.offset_index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
        ])
    }

    /// fsyncs the data (the indexes are rebuilt by recovery if a crash leaves them
    /// behind).
    pub fn flush(&self) -> io::Result<()> {
        self.file.open()?.sync_data()
    }

    /// Writes the index entries out (clean shutdown), so the next start trusts the
    /// indexes instead of scanning. Not fsynced here: the caller syncs each log dir's
    /// file system once (`LogManager::mark_clean_shutdown`) before the clean-shutdown
    /// marker, instead of three fsyncs per partition.
    pub fn close(&mut self) -> io::Result<()> {
        self.offset_index.persist(false)?;
        self.time_index.persist(false)
    }

    /// Cuts the segment so that it ends before `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> io::Result<()> {
        let end = self.size;
        let (pos, cut_from) = match self.position_of(offset, end)? {
            // The whole batch holding `offset` goes: a log ends at a batch boundary.
            Some((pos, h)) => (pos, h.base_offset.min(offset)),
            None => return Ok(()),
        };
        self.file.open()?.set_len(pos)?;
        self.size = pos;
        self.offset_index.truncate_to_position(pos as u32)?;
        self.time_index
            .truncate_to_offset((cut_from - self.base_offset).max(0) as u32)?;
        self.next_offset = cut_from.max(self.base_offset);
        Ok(())
    }

    /// Removes the segment's files.
    pub fn delete_files(&self) -> io::Result<()> {
        self.file.close();
        for p in [
            self.log_path.clone(),
            self.offset_index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
        ] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
