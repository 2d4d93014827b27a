//! The log of one partition: ordered segments, append, read, roll, retention,
//! log-start-offset moves, recovery. Owned by `replication::Partition`, which holds it
//! behind a mutex; nothing here is async or knows about replication.

use super::now_ms;
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::batch::{self, BatchError, BatchHeader};
use super::epoch::LeaderEpochCache;
use super::producer_state::{segment_snapshot_path, BatchMeta, ProducerState, SequenceCheck};
use super::segment::{self, Segment};
use crate::config::{LogConfig, TimestampType};

/// Why an append or read failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    InvalidBatch(#[from] BatchError),
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("out-of-order sequence from producer {producer_id}: expected {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id} epoch {got} is older than the current epoch {current}")]
    ProducerFenced {
        producer_id: i64,
        current: i16,
        got: i16,
    },
    #[error("timestamp {timestamp} of a batch is out of the accepted range")]
    InvalidTimestamp { timestamp: i64 },
    #[error("transactional and control batches are not supported yet")]
    UnsupportedTransactional,
}

pub type LogResult<T> = Result<T, LogError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A point in the log: an offset and where its batch starts on disk (Kafka's
/// LogOffsetMetadata). Reads bounded by the high watermark stop at its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetPosition {
    pub offset: i64,
    pub segment_base: i64,
    pub position: u64,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// -1 unless the topic uses LogAppendTime.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// True when the batch was a retried duplicate and nothing was written.
    pub duplicate: bool,
}

/// A sealed segment as the uploader sees it. A descriptor opened from `file` keeps the
/// data readable even if retention deletes the files meanwhile (and `file` follows the
/// rename of a delayed deletion).
#[derive(Debug, Clone)]
pub struct SealedSegment {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size: u64,
    pub max_timestamp: i64,
    /// The `.log` file through the broker's file pool: open it for the upload only.
    pub file: Arc<super::files::PooledFile>,
    pub log_path: PathBuf,
    pub index_path: PathBuf,
    pub time_index_path: PathBuf,
    /// Leader epochs (epoch, start offset) covering the segment.
    pub epochs: Vec<(i32, i64)>,
    /// The producer state as of the segment's end, when one was kept at its roll.
    pub producer_snapshot: Option<PathBuf>,
}

/// Bytes to send for a fetch: whole batches, straight from the file.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    pub file: Option<Arc<File>>,
    pub position: u64,
    pub length: usize,
}

impl ReadPlan {
    pub fn empty() -> Self {
        ReadPlan {
            file: None,
            position: 0,
            length: 0,
        }
    }

    /// The part of the planned range that `execute` would read, found from the batch
    /// headers alone so that it can be sent straight from the file: `(file, position,
    /// length)`. `None` when there is nothing to send or the range holds more than
    /// `max_batches` batches (reading it whole is then cheaper than a header each).
    pub fn slice(
        &self,
        max_bytes: usize,
        min_one: bool,
        max_batches: usize,
    ) -> io::Result<Option<(Arc<File>, u64, usize)>> {
        let Some(file) = &self.file else {
            return Ok(None);
        };
        let want = self.length.min(max_bytes.max(batch::LOG_OVERHEAD));
        let mut len = 0;
        let mut batches = 0;
        while len < want {
            if batches == max_batches {
                return Ok(None);
            }
            let Some(size) = segment::batch_size_at(file, self.position + len as u64)? else {
                break;
            };
            // A torn or corrupt header, or a batch beyond the plan, ends the range.
            if size < batch::HEADER_SIZE || len + size > self.length {
                break;
            }
            if len + size > want {
                if len == 0 && min_one {
                    // The first batch alone is larger than the limit: send it whole.
                    len = size;
                }
                break;
            }
            len += size;
            batches += 1;
        }
        Ok((len > 0).then(|| (file.clone(), self.position, len)))
    }

    /// Reads the planned range and trims it to whole batches (keeping at least one
    /// batch when `min_one` is set, as KIP-74 requires).
    pub fn execute(&self, max_bytes: usize, min_one: bool) -> io::Result<Bytes> {
        let Some(file) = &self.file else {
            return Ok(Bytes::new());
        };
        if self.length == 0 {
            return Ok(Bytes::new());
        }
        let want = self.length.min(max_bytes.max(batch::LOG_OVERHEAD));
        let mut bytes = segment::read_at(file, self.position, want)?;
        let (complete, _) = batch::complete_prefix(&bytes);
        if complete == 0 && min_one {
            // The first batch alone is larger than the limit: send it whole.
            if let Some(size) = BatchHeader::total_size_of(&bytes) {
                let size = size.min(self.length);
                return segment::read_at(file, self.position, size);
            }
        }
        bytes.truncate(complete);
        Ok(bytes)
    }
}

#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    producers: ProducerState,
    epochs: LeaderEpochCache,
    unflushed_messages: i64,
    last_flush_ms: i64,
    recovery: Arc<RecoveryPoint>,
    /// The active segment's random share of `segment.jitter.ms`, drawn when it became
    /// active (Kafka's `LogConfig.randomSegmentJitter`), so many partitions created
    /// together do not all roll at once.
    roll_jitter_ms: i64,
}

/// A random jitter in `[0, min(jitter, segment.ms))`, as Kafka draws per segment.
fn random_roll_jitter(config: &LogConfig) -> i64 {
    let bound = config.segment_jitter_ms.min(config.segment_ms);
    if bound <= 0 {
        return 0;
    }
    rand::Rng::gen_range(&mut rand::thread_rng(), 0..bound)
}

const LOG_START_FILE: &str = "log-start-offset";
const RECOVERY_POINT_FILE: &str = "recovery-point";

/// Files of a sealed segment to fsync, and the recovery point to advance after.
struct FlushJob {
    /// The sealed segment's files, opened only to be fsynced.
    files: Vec<PathBuf>,
    dir: PathBuf,
    recovery: Arc<RecoveryPoint>,
    up_to: i64,
}

/// One background thread fsyncs every sealed segment in roll order, so a burst of
/// rolls (e.g. a producer sending old timestamps) never spawns a thread each.
struct Flusher {
    tx: parking_lot::Mutex<std::sync::mpsc::Sender<FlushJob>>,
}

impl Flusher {
    fn send(&self, job: FlushJob) {
        if self.tx.lock().send(job).is_err() {
            warn!("segment flusher is gone; sealed segment left to the OS to write back");
        }
    }
}

fn flusher() -> &'static Flusher {
    static FLUSHER: std::sync::OnceLock<Flusher> = std::sync::OnceLock::new();
    FLUSHER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<FlushJob>();
        let spawned = std::thread::Builder::new().name("segment-flush".into()).spawn(move || {
            for job in rx {
                let synced = job.files.iter().try_for_each(|path| match File::open(path) {
                    Ok(f) => f.sync_data(),
                    // Deleted (retention) before its turn: nothing left to make durable.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e),
                });
                match synced {
                    Ok(()) => job.recovery.advance(&job.dir, job.up_to),
                    Err(e) => warn!(dir = %job.dir.display(), error = %e, "fsync of a sealed segment failed"),
                }
            }
        });
        if let Err(e) = spawned {
            warn!(error = %e, "could not start the segment flush thread");
        }
        Flusher {
            tx: parking_lot::Mutex::new(tx),
        }
    })
}

/// Files of deleted segments, renamed `.deleted`, to remove once their delay is over.
struct DeleteJob {
    due: std::time::Instant,
    files: Vec<PathBuf>,
}

/// One background thread removes the renamed files of deleted segments when their
/// `file.delete.delay.ms` is over (Kafka's delayed segment deletion), so a read that
/// planned a range of the segment before it was deleted ends cleanly. Files still
/// waiting when the process stops are removed by the next `Log::open`.
struct Deleter {
    tx: parking_lot::Mutex<std::sync::mpsc::Sender<DeleteJob>>,
}

fn remove_files(files: &[PathBuf]) {
    for f in files {
        if let Err(e) = std::fs::remove_file(f) {
            if e.kind() != io::ErrorKind::NotFound {
                warn!(path = %f.display(), error = %e, "could not remove a deleted segment file");
            }
        }
    }
}

fn deleter() -> &'static Deleter {
    static DELETER: std::sync::OnceLock<Deleter> = std::sync::OnceLock::new();
    DELETER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<DeleteJob>();
        let spawned = std::thread::Builder::new()
            .name("segment-delete".into())
            .spawn(move || {
                let mut pending: Vec<DeleteJob> = Vec::new();
                loop {
                    let now = std::time::Instant::now();
                    pending.retain(|job| {
                        let due = job.due <= now;
                        if due {
                            remove_files(&job.files);
                        }
                        !due
                    });
                    let wait = pending
                        .iter()
                        .map(|j| j.due.saturating_duration_since(now))
                        .min()
                        .unwrap_or(std::time::Duration::from_secs(3600));
                    match rx.recv_timeout(wait) {
                        Ok(job) => pending.push(job),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            });
        if let Err(e) = spawned {
            warn!(error = %e, "could not start the segment delete thread");
        }
        Deleter {
            tx: parking_lot::Mutex::new(tx),
        }
    })
}

/// Removes `files` after `delay_ms` (at once when 0).
fn delete_later(files: Vec<PathBuf>, delay_ms: i64) {
    if delay_ms <= 0 {
        remove_files(&files);
        return;
    }
    let job = DeleteJob {
        due: std::time::Instant::now() + std::time::Duration::from_millis(delay_ms as u64),
        files,
    };
    if let Err(e) = deleter().tx.lock().send(job) {
        remove_files(&e.0.files);
    }
}

/// The offset below which every segment is known to be on stable storage; persisted
/// so that recovery after a crash scans only what may be torn.
#[derive(Debug, Default)]
pub struct RecoveryPoint {
    offset: parking_lot::Mutex<i64>,
}

impl RecoveryPoint {
    fn read(dir: &Path) -> i64 {
        std::fs::read_to_string(dir.join(RECOVERY_POINT_FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Moves the recovery point back to a truncation point.
    fn retreat(&self, dir: &Path, offset: i64) {
        let mut current = self.offset.lock();
        if offset >= *current {
            return;
        }
        let tmp = dir.join(format!("{RECOVERY_POINT_FILE}.tmp"));
        if std::fs::write(&tmp, offset.to_string())
            .and_then(|_| std::fs::rename(&tmp, dir.join(RECOVERY_POINT_FILE)))
            .is_ok()
        {
            *current = offset;
        }
    }

    /// Moves the recovery point forward (never back) and persists it.
    fn advance(&self, dir: &Path, offset: i64) {
        let mut current = self.offset.lock();
        if offset <= *current {
            return;
        }
        let tmp = dir.join(format!("{RECOVERY_POINT_FILE}.tmp"));
        let written = std::fs::write(&tmp, offset.to_string())
            .and_then(|_| std::fs::rename(&tmp, dir.join(RECOVERY_POINT_FILE)));
        match written {
            Ok(()) => *current = offset,
            // The directory may be gone (topic deleted); nothing to recover then.
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "recovery point not written")
            }
        }
    }
}

/// Applies to `producers` the header of every batch at or after `from` in `segments`.
fn replay_producers(
    dir: &Path,
    segments: &BTreeMap<i64, Segment>,
    producers: &mut ProducerState,
    from: i64,
) -> LogResult<()> {
    for seg in segments.values() {
        if seg.next_offset <= from || seg.is_empty() {
            continue;
        }
        let file = seg.file().map_err(io_err(dir))?;
        let mut pos = match seg
            .position_of(from.max(seg.base_offset), seg.size())
            .map_err(io_err(dir))?
        {
            Some((p, _)) => p,
            None => continue,
        };
        while let Some(h) = segment::header_at(&file, pos).map_err(io_err(dir))? {
            if pos + h.total_size() as u64 > seg.size() {
                break;
            }
            if h.base_offset >= from {
                producers.update(&h);
            }
            pos += h.total_size() as u64;
        }
    }
    Ok(())
}

impl Log {
    /// Opens or creates the log in `dir`. `clean` says the broker shut down cleanly
    /// last time; otherwise every segment's CRCs are verified and a torn tail cut.
    pub fn open(dir: &Path, config: LogConfig, clean: bool) -> LogResult<Log> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let now = now_ms();
        // Segments deleted before a stop whose delay had not run out.
        let leftovers: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.to_str()
                    .is_some_and(|n| n.ends_with(segment::DELETED_SUFFIX))
            })
            .collect();
        remove_files(&leftovers);
        let mut bases: Vec<i64> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_suffix(".log")
                    .and_then(|s| s.parse::<i64>().ok())
            })
            .collect();
        bases.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut truncate_rest = false;
        // After a crash, segments wholly below the recovery point were fsynced when
        // they rolled; only the rest can hold a torn or corrupt tail.
        let recovery_point = RecoveryPoint::read(dir);
        let ends: Vec<i64> = bases
            .iter()
            .skip(1)
            .copied()
            .chain(std::iter::once(i64::MAX))
            .collect();
        for (base, end) in bases.into_iter().zip(ends) {
            if truncate_rest {
                // Everything after a corrupt batch is gone, as in Kafka's recovery.
                let (log, index, time) = Segment::paths(dir, base);
                for p in [log, index, time] {
                    let _ = std::fs::remove_file(p);
                }
                continue;
            }
            let verify = !clean && end > recovery_point;
            let (seg, outcome) = Segment::open(
                dir,
                base,
                verify,
                config.index_interval_bytes,
                now,
                &mut |_| {},
            )
            .map_err(io_err(dir))?;
            if outcome.truncated_bytes > 0 {
                warn!(dir = %dir.display(), segment = base, bytes = outcome.truncated_bytes, "truncated a torn or corrupt segment tail");
                truncate_rest = true;
            }
            segments.insert(base, seg);
        }
        // Producer state: the latest snapshot that the recovered log still covers, then
        // the batch headers after it.
        let log_end = segments
            .values()
            .next_back()
            .map(|s| s.next_offset)
            .unwrap_or(0);
        let (mut producers, replay_from) = match ProducerState::read_snapshot(dir) {
            Some((state, offset)) if offset <= log_end => (state, offset),
            _ => (ProducerState::default(), i64::MIN),
        };
        replay_producers(dir, &segments, &mut producers, replay_from)?;
        // Segment-end snapshots past the recovered end describe batches that are gone.
        ProducerState::prune_segment_snapshots(dir, |offset| offset > log_end);
        let stored_start: i64 = std::fs::read_to_string(dir.join(LOG_START_FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if segments.is_empty() {
            let base = stored_start.max(0);
            let mut seg = Segment::create(dir, base, now).map_err(io_err(dir))?;
            if config.preallocate {
                seg.preallocate(config.segment_bytes);
            }
            segments.insert(base, seg);
        }
        let first_base = *segments.keys().next().unwrap_or(&0);
        let mut epochs = LeaderEpochCache::open(dir).map_err(io_err(dir))?;
        // A tiered log's start may lie below its first local segment: that range is
        // served from the object store.
        let log_start_offset = if config.remote_storage_enable {
            stored_start
        } else {
            stored_start.max(first_base)
        };
        let roll_jitter_ms = random_roll_jitter(&config);
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            producers,
            epochs: LeaderEpochCache::open(dir).map_err(io_err(dir))?,
            unflushed_messages: 0,
            last_flush_ms: now,
            roll_jitter_ms,
            recovery: Arc::new(RecoveryPoint {
                offset: parking_lot::Mutex::new(recovery_point),
            }),
        };
        let end = log.log_end_offset();
        epochs.truncate_from_end(end + 1).map_err(io_err(dir))?;
        log.epochs = epochs;
        if log.log_start_offset > end {
            log.log_start_offset = end;
        }
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }
    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }
    /// The log end as an offset with its position (Kafka's logEndOffsetMetadata).
    pub fn log_end(&self) -> OffsetPosition {
        let a = self.active();
        OffsetPosition {
            offset: a.next_offset,
            segment_base: a.base_offset,
            position: a.size(),
        }
    }
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size()).sum()
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
    pub fn leader_epochs(&self) -> &LeaderEpochCache {
        &self.epochs
    }
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// Records the start of a new leader epoch at the current log end.
    pub fn assign_epoch(&mut self, epoch: i32) -> LogResult<()> {
        let end = self.log_end_offset();
        self.epochs.assign(epoch, end).map_err(io_err(&self.dir))
    }

    /// Validates producer sequences and timestamps, assigns offsets, patches the
    /// batches in place and appends them. `records` holds exactly `batches`.
    pub fn append_as_leader(
        &mut self,
        records: &[u8],
        batches: &[(usize, BatchHeader)],
        leader_epoch: i32,
    ) -> LogResult<AppendInfo> {
        let now = now_ms();
        // Producer sequence checks first: a duplicate is acknowledged, not re-written.
        let mut duplicate: Option<BatchMeta> = None;
        for (_, h) in batches {
            if h.is_transactional() || h.is_control() {
                return Err(LogError::UnsupportedTransactional);
            }
            match self.producers.check(h) {
                SequenceCheck::Accept => {}
                SequenceCheck::Duplicate(meta) => duplicate = Some(meta),
                SequenceCheck::OutOfOrder { expected, got } => {
                    return Err(LogError::OutOfOrderSequence {
                        producer_id: h.producer_id,
                        expected,
                        got,
                    })
                }
                SequenceCheck::Fenced { current, got } => {
                    return Err(LogError::ProducerFenced {
                        producer_id: h.producer_id,
                        current,
                        got,
                    })
                }
            }
            if self.config.timestamp_type == TimestampType::CreateTime {
                let ts = h.max_timestamp;
                if ts >= 0
                    && (ts < now.saturating_sub(self.config.timestamp_before_max_ms)
                        || ts > now.saturating_add(self.config.timestamp_after_max_ms))
                {
                    return Err(LogError::InvalidTimestamp { timestamp: ts });
                }
            }
        }
        if let Some(meta) = duplicate {
            return Ok(AppendInfo {
                base_offset: meta.first_offset,
                last_offset: meta.last_offset,
                log_append_time: -1,
                log_start_offset: self.log_start_offset,
                duplicate: true,
            });
        }
        let total_records: i64 = batches.iter().map(|(_, h)| h.record_count as i64).sum();
        let base_offset = self.log_end_offset();
        let log_append_time = if self.config.timestamp_type == TimestampType::LogAppendTime {
            now
        } else {
            -1
        };
        let incoming_max_timestamp = if log_append_time >= 0 {
            now
        } else {
            batches
                .iter()
                .map(|(_, h)| h.max_timestamp)
                .max()
                .unwrap_or(-1)
        };
        self.maybe_roll(
            records.len() as u64,
            base_offset + total_records,
            incoming_max_timestamp,
            now,
        )?;
        // Only each batch's 61-byte header is copied and patched; the record bytes go
        // to the file straight from the request buffer.
        let mut headers: Vec<[u8; batch::HEADER_SIZE]> = Vec::with_capacity(batches.len());
        let mut next = base_offset;
        let mut patched = Vec::with_capacity(batches.len());
        for (pos, h) in batches {
            let mut header = [0u8; batch::HEADER_SIZE];
            header.copy_from_slice(&records[*pos..*pos + batch::HEADER_SIZE]);
            batch::patch_offset_and_epoch(&mut header, next, leader_epoch);
            if log_append_time >= 0 {
                batch::patch_log_append_time_header(
                    &mut header,
                    &records[*pos + batch::HEADER_SIZE..*pos + h.total_size()],
                    now,
                );
            }
            let mut h = *h;
            h.base_offset = next;
            h.partition_leader_epoch = leader_epoch;
            if log_append_time >= 0 {
                h.max_timestamp = now;
                h.attributes |= 0x08;
            }
            next = h.next_offset();
            headers.push(header);
            patched.push((*pos, h));
        }
        let mut slices: Vec<std::io::IoSlice<'_>> = Vec::with_capacity(batches.len() * 2);
        for ((pos, h), header) in patched.iter().zip(headers.iter()) {
            slices.push(std::io::IoSlice::new(header));
            slices.push(std::io::IoSlice::new(
                &records[*pos + batch::HEADER_SIZE..*pos + h.total_size()],
            ));
        }
        let interval = self.config.index_interval_bytes;
        let dir = self.dir.clone();
        self.active_mut()
            .append(&mut slices, records.len() as u64, &patched, interval)
            .map_err(io_err(&dir))?;
        for (_, h) in &patched {
            self.producers.update(h);
        }
        self.unflushed_messages += total_records;
        if self.unflushed_messages >= self.config.flush_messages
            || now - self.last_flush_ms >= self.config.flush_ms
        {
            self.flush()?;
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_append_time,
            log_start_offset: self.log_start_offset,
            duplicate: false,
        })
    }

    /// Appends batches fetched from the leader exactly as the leader stored them
    /// (offsets, epochs and timestamps already assigned), so replicas stay byte for
    /// byte identical. The first batch must start at this log's end. Producer state
    /// and the leader-epoch cache follow the batches, as on the leader.
    pub fn append_as_follower(
        &mut self,
        records: &[u8],
        batches: &[(usize, BatchHeader)],
    ) -> LogResult<i64> {
        let Some((_, first)) = batches.first() else {
            return Ok(self.log_end_offset());
        };
        let end = self.log_end_offset();
        if first.base_offset != end {
            return Err(LogError::OffsetOutOfRange {
                offset: first.base_offset,
                start: end,
                end,
            });
        }
        let mut expected = end;
        for (_, h) in batches {
            if h.base_offset != expected {
                return Err(LogError::OffsetOutOfRange {
                    offset: h.base_offset,
                    start: expected,
                    end: expected,
                });
            }
            expected = h.next_offset();
        }
        let now = now_ms();
        let max_timestamp = batches
            .iter()
            .map(|(_, h)| h.max_timestamp)
            .max()
            .unwrap_or(-1);
        self.maybe_roll(records.len() as u64, expected, max_timestamp, now)?;
        for (_, h) in batches {
            if self
                .epochs
                .latest_epoch()
                .is_none_or(|e| h.partition_leader_epoch > e)
            {
                self.epochs
                    .assign(h.partition_leader_epoch, h.base_offset)
                    .map_err(io_err(&self.dir))?;
            }
        }
        let mut slices = [std::io::IoSlice::new(records)];
        let interval = self.config.index_interval_bytes;
        let dir = self.dir.clone();
        self.active_mut()
            .append(&mut slices, records.len() as u64, batches, interval)
            .map_err(io_err(&dir))?;
        for (_, h) in batches {
            if h.producer_id >= 0 && !h.is_control() {
                self.producers.update(h);
            }
        }
        let total_records: i64 = batches.iter().map(|(_, h)| h.record_count as i64).sum();
        self.unflushed_messages += total_records;
        if self.unflushed_messages >= self.config.flush_messages
            || now - self.last_flush_ms >= self.config.flush_ms
        {
            self.flush()?;
        }
        Ok(expected)
    }

    /// Cuts the log so it ends before `offset` (a follower whose log diverged from
    /// its leader's): later segments are deleted, the epoch cache and producer state
    /// forget what was cut. An offset at or below the log start empties the log and
    /// starts it at `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> LogResult<()> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        let dir = self.dir.clone();
        warn!(dir = %dir.display(), from = self.log_end_offset(), to = offset, "truncating the log to the leader's");
        if offset <= self.local_log_start_offset() {
            let start = self.log_start_offset.min(offset);
            return self.reset_to(offset, start);
        }
        let later: Vec<i64> = self.segments.range(offset + 1..).map(|(b, _)| *b).collect();
        for base in later {
            if self.segments.len() == 1 {
                break;
            }
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete_files().map_err(io_err(&dir))?;
            }
        }
        let active = self.active_mut();
        active.truncate_to(offset).map_err(io_err(&dir))?;
        // A sealed segment that now ends the log takes appends again.
        active.sealed = false;
        // The log ends at a batch boundary, at or below `offset`.
        let end = self.log_end_offset();
        self.epochs.truncate_from_end(end).map_err(io_err(&dir))?;
        self.producers.truncate_from(end);
        ProducerState::prune_segment_snapshots(&dir, |at| at > end);
        // A snapshot from before the truncation may describe batches that are gone;
        // replace it so a restart never replays state the log no longer has.
        self.producers
            .write_snapshot(&dir, end)
            .map_err(io_err(&dir))?;
        self.recovery.retreat(&dir, end);
        Ok(())
    }

    /// The position of the batch starting at `offset` (a batch boundary, such as a
    /// follower's fetch offset), for a high watermark that reads stop at.
    pub fn offset_position(&self, offset: i64) -> LogResult<OffsetPosition> {
        let end = self.log_end();
        if offset >= end.offset {
            return Ok(end);
        }
        let Some((&base, seg)) = self.segments.range(..=offset).next_back() else {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.log_start_offset,
                end: end.offset,
            });
        };
        let position = seg
            .position_of(offset, seg.size())
            .map_err(io_err(&self.dir))?
            .map_or(seg.size(), |(pos, _)| pos);
        Ok(OffsetPosition {
            offset,
            segment_base: base,
            position,
        })
    }

    /// Kafka's endOffsetForEpoch: (the largest epoch ≤ `epoch`, where it ended).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// The epoch of the last entry in the leader-epoch cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// Rolls before an append when Kafka would (`LogSegment.shouldRoll`): the batch
    /// does not fit `segment.bytes`, the segment's time (record time, see
    /// `Segment::time_waited_for_roll`) exceeds `segment.ms` minus this segment's
    /// jitter, the index is full, or offsets would overflow the relative index.
    fn maybe_roll(
        &mut self,
        incoming: u64,
        next_offset_after: i64,
        incoming_max_timestamp: i64,
        now: i64,
    ) -> LogResult<()> {
        let cfg = &self.config;
        let active = self.active();
        if active.is_empty() {
            return Ok(());
        }
        let too_big = active.size() + incoming > cfg.segment_bytes;
        let too_old = active.time_waited_for_roll(now, incoming_max_timestamp)
            > cfg.segment_ms - self.roll_jitter_ms;
        let index_full = active.index_full(cfg.segment_index_bytes);
        let offset_overflow = next_offset_after - active.base_offset > u32::MAX as i64;
        if too_big || too_old || index_full || offset_overflow {
            self.roll(now)?;
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at the log end. The sealed
    /// segment's files are fsynced on a background thread (as Kafka flushes rolled
    /// segments asynchronously), which then advances the recovery point: after an
    /// unclean shutdown only segments past it need a CRC scan.
    pub fn roll(&mut self, now: i64) -> LogResult<()> {
        let dir = self.dir.clone();
        let base = self.log_end_offset();
        if self.active().is_empty() {
            return Ok(());
        }
        let handles = self.active_mut().seal().map_err(io_err(&dir))?;
        if self.config.remote_storage_enable {
            // The segment-end copy is uploaded with the sealed segment, so a log rebuilt
            // from the object store still knows its idempotent producers.
            self.producers
                .write_snapshot_with_segment_copy(&dir, base)
                .map_err(io_err(&dir))?;
        } else {
            self.producers
                .write_snapshot(&dir, base)
                .map_err(io_err(&dir))?;
        }
        let mut seg = Segment::create(&dir, base, now).map_err(io_err(&dir))?;
        if self.config.preallocate {
            seg.preallocate(self.config.segment_bytes);
        }
        self.segments.insert(base, seg);
        self.roll_jitter_ms = random_roll_jitter(&self.config);
        debug!(dir = %dir.display(), base, "rolled segment");
        flusher().send(FlushJob {
            files: handles,
            dir,
            recovery: self.recovery.clone(),
            up_to: base,
        });
        Ok(())
    }

    /// Flushes when unflushed records have waited `flush.ms` (Kafka's flush scheduler,
    /// run every `log.flush.scheduler.interval.ms`): the append path checks the same
    /// rule, but only when records arrive. Returns whether it flushed.
    pub fn flush_if_due(&mut self, now: i64) -> LogResult<bool> {
        if self.unflushed_messages == 0 || now - self.last_flush_ms < self.config.flush_ms {
            return Ok(false);
        }
        self.flush()?;
        Ok(true)
    }

    /// Records appended since the last fsync of the active segment.
    pub fn unflushed_messages(&self) -> i64 {
        self.unflushed_messages
    }

    pub fn flush(&mut self) -> LogResult<()> {
        let dir = self.dir.clone();
        self.active().flush().map_err(io_err(&dir))?;
        self.unflushed_messages = 0;
        self.last_flush_ms = now_ms();
        Ok(())
    }

    /// Plans a read of whole batches from `offset`, bounded by `upper` (the high
    /// watermark). The bytes are read later, outside the partition lock.
    pub fn plan_read(&self, offset: i64, upper: OffsetPosition) -> LogResult<ReadPlan> {
        let end = self.log_end_offset();
        if offset < self.log_start_offset || offset > end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.log_start_offset,
                end,
            });
        }
        if offset >= upper.offset {
            return Ok(ReadPlan::empty());
        }
        for (&base, seg) in self
            .segments
            .range(..=offset)
            .rev()
            .take(1)
            .chain(self.segments.range(offset + 1..))
        {
            if base > upper.offset {
                break;
            }
            let limit = if base == upper.segment_base {
                upper.position
            } else if base > upper.segment_base {
                0
            } else {
                seg.size()
            };
            if let Some((pos, _)) = seg.position_of(offset, limit).map_err(io_err(&self.dir))? {
                return Ok(ReadPlan {
                    file: Some(seg.file().map_err(io_err(&self.dir))?),
                    position: pos,
                    length: (limit - pos) as usize,
                });
            }
        }
        Ok(ReadPlan::empty())
    }

    /// The first offset whose batch max timestamp is ≥ `timestamp`, with the batch
    /// bytes so the caller can find the exact record: (batch bytes, base offset).
    pub fn find_batch_by_timestamp(&self, timestamp: i64, upper: i64) -> LogResult<Option<Bytes>> {
        for seg in self.segments.values() {
            if seg.max_timestamp < timestamp {
                continue;
            }
            let from = seg
                .time_lookup(timestamp)
                .unwrap_or(seg.base_offset)
                .max(self.log_start_offset);
            let file = seg.file().map_err(io_err(&self.dir))?;
            let Some((mut pos, _)) = seg
                .position_of(from, seg.size())
                .map_err(io_err(&self.dir))?
            else {
                continue;
            };
            while let Some(h) = segment::header_at(&file, pos).map_err(io_err(&self.dir))? {
                if h.base_offset >= upper || pos + h.total_size() as u64 > seg.size() {
                    break;
                }
                if h.max_timestamp >= timestamp && h.last_offset() >= self.log_start_offset {
                    return Ok(Some(
                        segment::read_at(&file, pos, h.total_size()).map_err(io_err(&self.dir))?,
                    ));
                }
                pos += h.total_size() as u64;
            }
        }
        Ok(None)
    }

    /// The batch holding the largest timestamp below `upper` (ListOffsets -3).
    pub fn max_timestamp_batch(&self, upper: i64) -> LogResult<Option<Bytes>> {
        let best = self
            .segments
            .values()
            .filter_map(|s| s.offset_of_max_timestamp().map(|(ts, off)| (ts, off, s)))
            .filter(|&(_, off, _)| off < upper && off >= self.log_start_offset)
            .max_by_key(|&(ts, off, _)| (ts, -off));
        let Some((_, off, seg)) = best else {
            return Ok(None);
        };
        match seg
            .position_of(off, seg.size())
            .map_err(io_err(&self.dir))?
        {
            Some((pos, h)) => Ok(Some(
                segment::read_at(
                    &*seg.file().map_err(io_err(&self.dir))?,
                    pos,
                    h.total_size(),
                )
                .map_err(io_err(&self.dir))?,
            )),
            None => Ok(None),
        }
    }

    /// Moves the log start offset forward (DeleteRecords) and drops whole segments
    /// below it. Returns the new log start offset.
    pub fn advance_log_start(&mut self, offset: i64) -> LogResult<i64> {
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        let offset = offset.min(self.log_end_offset());
        self.log_start_offset = offset;
        self.write_log_start(offset)?;
        let removable: Vec<i64> = self
            .segments
            .iter()
            .filter(|(_, s)| s.sealed || s.next_offset < self.log_end_offset())
            .filter(|(_, s)| s.next_offset <= offset)
            .map(|(&b, _)| b)
            .collect();
        self.delete_segments(&removable)?;
        self.epochs
            .truncate_from_start(offset)
            .map_err(io_err(&self.dir))?;
        Ok(self.log_start_offset)
    }

    fn delete_segments(&mut self, bases: &[i64]) -> LogResult<()> {
        self.delete_local_segments(bases)?;
        if let Some(&first) = self.segments.keys().next() {
            if first > self.log_start_offset && !self.config.remote_storage_enable {
                self.log_start_offset = first;
            }
        }
        Ok(())
    }

    /// Applies retention to whole sealed segments and returns how many were deleted.
    ///
    /// A plain topic applies `retention.ms` / `retention.bytes` and moves the log start
    /// offset past what it deletes. A tiered topic (`remote.storage.enable`) applies
    /// the local retention instead, and only to segments wholly below `uploaded_end`
    /// (the offset after the last segment the object store holds): its log start stays
    /// where it is, since the deleted range is still served from remote.
    pub fn apply_retention(&mut self, now: i64, uploaded_end: i64) -> LogResult<usize> {
        let cfg = self.config.clone();
        if !cfg.delete_retention_enabled {
            // Compacted-only topics keep their segments (Kafka's cleanup.policy=compact).
            return Ok(0);
        }
        let tiered = cfg.remote_storage_enable;
        let (retention_ms, retention_bytes, eligible_end) = if tiered {
            (
                cfg.local_retention_ms,
                cfg.local_retention_bytes,
                uploaded_end,
            )
        } else {
            (cfg.retention_ms, cfg.retention_bytes, i64::MAX)
        };
        let mut doomed = Vec::new();
        let sealed: Vec<(i64, u64, i64)> = self
            .segments
            .values()
            .take(self.segments.len().saturating_sub(1))
            .take_while(|s| s.next_offset <= eligible_end)
            .map(|s| (s.base_offset, s.size(), s.max_timestamp))
            .collect();
        if retention_ms >= 0 {
            for &(base, _, max_ts) in &sealed {
                if now - max_ts > retention_ms {
                    doomed.push(base);
                } else {
                    break;
                }
            }
        }
        if retention_bytes >= 0 {
            let mut size = self.size_bytes() as i64;
            for &(base, seg_size, _) in &sealed {
                if size - seg_size as i64 >= retention_bytes {
                    size -= seg_size as i64;
                    if !doomed.contains(&base) {
                        doomed.push(base);
                    }
                } else {
                    break;
                }
            }
        }
        doomed.sort_unstable();
        let count = doomed.len();
        if count == 0 {
            return Ok(0);
        }
        if tiered {
            self.delete_local_segments(&doomed)?;
            return Ok(count);
        }
        self.delete_segments(&doomed)?;
        let start = self.log_start_offset;
        self.write_log_start(start)?;
        self.epochs
            .truncate_from_start(start)
            .map_err(io_err(&self.dir))?;
        Ok(count)
    }

    fn write_log_start(&self, start: i64) -> LogResult<()> {
        let tmp = self.dir.join(format!("{LOG_START_FILE}.tmp"));
        std::fs::write(&tmp, start.to_string()).map_err(io_err(&self.dir))?;
        std::fs::rename(&tmp, self.dir.join(LOG_START_FILE)).map_err(io_err(&self.dir))
    }

    /// Deletes sealed segments (never the active one). The log start offset does not
    /// move: a tiered log still serves them from the object store, and
    /// `delete_segments` moves it for a plain one.
    fn delete_local_segments(&mut self, bases: &[i64]) -> LogResult<()> {
        let active_base = self.active().base_offset;
        for base in bases {
            if *base == active_base {
                continue;
            }
            if let Some(mut seg) = self.segments.remove(base) {
                let renamed = seg.rename_for_deletion().map_err(io_err(&self.dir))?;
                delete_later(renamed, self.config.file_delete_delay_ms);
                info!(dir = %self.dir.display(), base, tiered = self.config.remote_storage_enable, "deleted segment");
            }
        }
        // A segment's snapshot (named by its end) goes with it.
        let first = self.segments.keys().next().copied().unwrap_or(i64::MAX);
        ProducerState::prune_segment_snapshots(&self.dir, |offset| offset <= first);
        Ok(())
    }

    /// The first offset still on local disk (Kafka's local log start offset).
    pub fn local_log_start_offset(&self) -> i64 {
        let first = self.segments.keys().next().copied().unwrap_or(0);
        first.max(self.log_start_offset)
    }

    /// (base offset, next offset, size) of every local segment, oldest first.
    pub fn segment_sizes(&self) -> Vec<(i64, i64, u64)> {
        self.segments
            .values()
            .map(|s| (s.base_offset, s.next_offset, s.size()))
            .collect()
    }

    /// Sealed segments (every one but the active), oldest first, for the uploader.
    pub fn sealed_segments(&self) -> Vec<SealedSegment> {
        let count = self.segments.len().saturating_sub(1);
        self.segments
            .values()
            .take(count)
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (log, index, time_index) = Segment::paths(&self.dir, s.base_offset);
                SealedSegment {
                    base_offset: s.base_offset,
                    next_offset: s.next_offset,
                    size: s.size(),
                    max_timestamp: s.max_timestamp,
                    file: s.pooled_file(),
                    log_path: log,
                    index_path: index,
                    time_index_path: time_index,
                    epochs: self.epochs.entries_within(s.base_offset, s.next_offset),
                    producer_snapshot: Some(segment_snapshot_path(&self.dir, s.next_offset))
                        .filter(|p| p.exists()),
                }
            })
            .collect()
    }

    /// Starts the log over at `offset` with no local data: the local copy was lost
    /// but the object store holds everything below `offset`. `log_start` is the
    /// partition's log start offset (in the remote range).
    pub fn reset_to(&mut self, offset: i64, log_start: i64) -> LogResult<()> {
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        for base in bases {
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete_files().map_err(io_err(&self.dir))?;
            }
        }
        let now = now_ms();
        let seg = Segment::create(&self.dir, offset, now).map_err(io_err(&self.dir))?;
        self.segments.insert(offset, seg);
        self.log_start_offset = log_start.min(offset);
        self.write_log_start(self.log_start_offset)?;
        self.epochs
            .truncate_from_end(offset)
            .map_err(io_err(&self.dir))?;
        ProducerState::prune_segment_snapshots(&self.dir, |_| true);
        self.producers = ProducerState::default();
        self.producers
            .write_snapshot(&self.dir, offset)
            .map_err(io_err(&self.dir))?;
        warn!(dir = %self.dir.display(), offset, log_start, "local log restarted after the last tiered offset");
        Ok(())
    }

    /// Installs the producer state of a snapshot taken at `offset`, fetched from the
    /// object store after [`Log::reset_to`]; ignored unless the log is still empty at
    /// exactly that offset, so it never describes batches the log does not have.
    pub fn restore_producers(&mut self, state: ProducerState, offset: i64) -> LogResult<bool> {
        // Only the log that restarted at `offset` and still starts there; batches a
        // follower appended meanwhile are replayed on top of the snapshot.
        if self.segments.keys().next() != Some(&offset) {
            return Ok(false);
        }
        let mut state = state;
        replay_producers(&self.dir, &self.segments, &mut state, offset)?;
        self.producers = state;
        let end = self.log_end_offset();
        self.producers
            .write_snapshot(&self.dir, end)
            .map_err(io_err(&self.dir))?;
        info!(dir = %self.dir.display(), offset, producers = self.producers.len(), "producer state restored from the object store");
        Ok(true)
    }

    /// Flushes everything and writes the producer snapshot (clean shutdown).
    pub fn close(&mut self) -> LogResult<()> {
        let dir = self.dir.clone();
        // Sealed segments were written out and fsynced when they rolled.
        self.active_mut().close().map_err(io_err(&dir))?;
        let end = self.log_end_offset();
        self.producers
            .write_snapshot(&dir, end)
            .map_err(io_err(&dir))
    }

    /// Deletes the log's directory (topic deletion).
    pub fn delete(self) -> LogResult<()> {
        std::fs::remove_dir_all(&self.dir).map_err(io_err(&self.dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::make_batch;

    #[test]
    fn roll_jitter_is_drawn_below_both_the_jitter_and_segment_ms() {
        let config = |ms: i64, jitter: i64| LogConfig {
            segment_ms: ms,
            segment_jitter_ms: jitter,
            ..LogConfig::default()
        };
        assert_eq!(random_roll_jitter(&config(1000, 0)), 0);
        let draws: Vec<i64> = (0..200)
            .map(|_| random_roll_jitter(&config(1000, 50)))
            .collect();
        assert!(draws.iter().all(|j| (0..50).contains(j)), "{draws:?}");
        assert!(
            draws.iter().any(|j| *j > 0),
            "jitter is random, not always 0"
        );
        let draws: Vec<i64> = (0..200)
            .map(|_| random_roll_jitter(&config(100, i64::MAX)))
            .collect();
        assert!(draws.iter().all(|j| (0..100).contains(j)), "{draws:?}");
    }

    #[test]
    fn the_flush_scheduler_flushes_only_what_waited_flush_ms() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            flush_ms: 60_000,
            ..LogConfig::default()
        };
        let mut log = Log::open(dir.path(), config, true).unwrap();
        assert!(
            !log.flush_if_due(now_ms() + 120_000).unwrap(),
            "nothing to flush"
        );
        append(&mut log, 2);
        assert_eq!(log.unflushed_messages(), 2);
        assert!(!log.flush_if_due(now_ms()).unwrap(), "not due yet");
        assert_eq!(log.unflushed_messages(), 2);
        assert!(log.flush_if_due(now_ms() + 60_000).unwrap());
        assert_eq!(log.unflushed_messages(), 0);
    }

    /// A follower copies a leader's batches byte for byte, truncates a diverged tail
    /// across segments, and after a crash (no clean close) reopens at the truncated
    /// end with the same bytes.
    #[test]
    fn follower_appends_are_identical_and_truncation_survives_a_crash() {
        let leader_dir = tempfile::tempdir().unwrap();
        let follower_dir = tempfile::tempdir().unwrap();
        let mut leader = Log::open(leader_dir.path(), small_segments(), true).unwrap();
        let mut follower = Log::open(follower_dir.path(), small_segments(), true).unwrap();
        leader.assign_epoch(3).unwrap();
        for _ in 0..6 {
            let b = make_batch(2, now_ms(), None);
            let batches = batch::split_and_validate(&b, 1 << 20).unwrap();
            leader.append_as_leader(&b, &batches, 3).unwrap();
        }
        // Copy everything the leader has, as fetches would.
        let mut at = 0;
        while at < leader.log_end_offset() {
            let plan = leader.plan_read(at, leader.log_end()).unwrap();
            let bytes = plan.execute(1 << 20, true).unwrap();
            let batches = batch::split_and_validate(&bytes, usize::MAX).unwrap();
            at = follower.append_as_follower(&bytes, &batches).unwrap();
        }
        assert_eq!(follower.log_end_offset(), 12);
        assert_eq!(follower.latest_epoch(), Some(3));
        assert_eq!(follower.end_offset_for_epoch(3), (3, 12));
        let read_all = |log: &Log| {
            log.plan_read(log.log_start_offset(), log.log_end())
                .unwrap()
                .execute(1 << 20, true)
                .unwrap()
        };
        assert!(follower.segment_count() > 1, "the copy rolled too");
        // A batch not starting at the log end is refused.
        let stray = make_batch(1, now_ms(), None);
        let stray_batches = batch::split_and_validate(&stray, 1 << 20).unwrap();
        assert!(follower.append_as_follower(&stray, &stray_batches).is_err());

        follower.truncate_to(5).unwrap_or_else(|e| panic!("{e}"));
        // Offsets are batch boundaries (2 records per batch): 5 is inside one, so the
        // whole batch holding it goes (Kafka truncates to a batch boundary the same way).
        assert!(follower.log_end_offset() <= 5);
        let end = follower.log_end_offset();
        drop(follower); // a crash: no close
        let follower = Log::open(follower_dir.path(), small_segments(), false).unwrap();
        assert_eq!(follower.log_end_offset(), end);
        let prefix = read_all(&follower);
        let leader_bytes = read_all(&leader);
        assert_eq!(&leader_bytes[..prefix.len()], &prefix[..]);
    }

    /// `slice` (sent with sendfile) covers exactly the bytes `execute` reads, for any
    /// limit, with and without KIP-74's first batch, or leaves the plan to `execute`.
    #[test]
    fn a_slice_covers_exactly_what_execute_reads() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 1 << 20,
            ..LogConfig::default()
        };
        let mut log = Log::open(dir.path(), config, true).unwrap();
        for count in [1, 5, 2, 9, 3, 1, 4] {
            append(&mut log, count);
        }
        let plan = log.plan_read(0, log.log_end()).unwrap();
        let mut sliced = 0;
        for max_bytes in [0, 1, 12, 60, 61, 80, 100, 150, 200, 300, 1 << 20] {
            for min_one in [false, true] {
                let bytes = plan.execute(max_bytes, min_one).unwrap();
                match plan.slice(max_bytes, min_one, 64).unwrap() {
                    Some((file, position, length)) => {
                        sliced += 1;
                        assert_eq!(position, plan.position);
                        let read = segment::read_at(&file, position, length).unwrap();
                        assert_eq!(read, bytes, "max_bytes {max_bytes}, min_one {min_one}");
                    }
                    None => assert!(
                        bytes.is_empty(),
                        "max_bytes {max_bytes}: {} bytes",
                        bytes.len()
                    ),
                }
            }
        }
        assert!(sliced >= 10, "only {sliced} slices");
        // More batches than allowed: left to `execute`.
        assert!(plan.slice(1 << 20, true, 3).unwrap().is_none());
        assert!(plan.slice(1 << 20, true, 7).unwrap().is_some());
    }

    fn append(log: &mut Log, count: i32) -> AppendInfo {
        let b = make_batch(count, now_ms(), None);
        let batches = batch::split_and_validate(&b, 1 << 20).unwrap();
        log.append_as_leader(&b, &batches, 0).unwrap()
    }

    fn small_segments() -> LogConfig {
        LogConfig {
            segment_bytes: 300,
            index_interval_bytes: 100,
            ..LogConfig::default()
        }
    }

    #[test]
    fn append_read_roll_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_segments(), true).unwrap();
        for i in 0..20 {
            assert_eq!(append(&mut log, 2).base_offset, i * 2);
        }
        assert!(log.segment_count() > 2);
        let plan = log.plan_read(13, log.log_end()).unwrap();
        let bytes = plan.execute(1 << 20, true).unwrap();
        let h = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(h.base_offset, 12);
        log.close().unwrap();
        drop(log);
        let log = Log::open(dir.path(), small_segments(), true).unwrap();
        assert_eq!(log.log_end_offset(), 40);
        let log = Log::open(dir.path(), small_segments(), false).unwrap();
        assert_eq!(log.log_end_offset(), 40);
        assert!(matches!(
            log.plan_read(41, log.log_end()),
            Err(LogError::OffsetOutOfRange { .. })
        ));
    }

    #[test]
    fn torn_tail_is_truncated_on_unclean_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), true).unwrap();
        for _ in 0..5 {
            append(&mut log, 1);
        }
        drop(log);
        let path = dir.path().join("00000000000000000000.log");
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let log = Log::open(dir.path(), LogConfig::default(), false).unwrap();
        assert_eq!(log.log_end_offset(), 4);
    }

    #[test]
    fn tiered_local_retention_keeps_the_log_start_and_only_drops_uploaded_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = small_segments();
        cfg.remote_storage_enable = true;
        cfg.local_retention_bytes = 0;
        let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
        for _ in 0..30 {
            append(&mut log, 1);
        }
        let sealed = log.sealed_segments();
        assert!(sealed.len() >= 3);
        // Nothing uploaded: nothing may go.
        assert_eq!(log.apply_retention(now_ms(), 0).unwrap(), 0);
        // The first two segments uploaded: exactly those go; the log start stays.
        let uploaded_end = sealed[1].next_offset;
        assert_eq!(log.apply_retention(now_ms(), uploaded_end).unwrap(), 2);
        assert_eq!(log.log_start_offset(), 0);
        assert_eq!(log.local_log_start_offset(), uploaded_end);
        drop(log);
        let log = Log::open(dir.path(), cfg, false).unwrap();
        assert_eq!(
            log.log_start_offset(),
            0,
            "reopened tiered log keeps its start"
        );
        assert_eq!(log.local_log_start_offset(), uploaded_end);
    }

    #[test]
    fn retention_by_bytes_and_delete_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_segments(), true).unwrap();
        for _ in 0..30 {
            append(&mut log, 1);
        }
        let mut cfg = small_segments();
        cfg.retention_bytes = 600;
        log.set_config(cfg);
        assert!(log.apply_retention(now_ms(), 0).unwrap() > 0);
        assert!(log.size_bytes() <= 600 + 300);
        assert!(log.log_start_offset() > 0);
        let start = log.advance_log_start(25).unwrap();
        assert_eq!(start, 25);
        assert!(matches!(
            log.plan_read(24, log.log_end()),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        let bytes = log
            .plan_read(25, log.log_end())
            .unwrap()
            .execute(1 << 20, true)
            .unwrap();
        assert_eq!(BatchHeader::parse(&bytes).unwrap().base_offset, 25);
    }
}

#[cfg(test)]
mod rebuild_tests {
    use super::*;
    use crate::log::batch::tests::make_batch;

    #[test]
    fn timestamp_lookup_after_index_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 600,
            index_interval_bytes: 100,
            ..LogConfig::default()
        };
        let base = 1_700_000_000_000i64;
        let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
        for i in 0..40 {
            let b = make_batch(1, base + i, None);
            let batches = batch::split_and_validate(&b, 1 << 20).unwrap();
            log.append_as_leader(&b, &batches, 0).unwrap();
        }
        let before =
            BatchHeader::parse(&log.find_batch_by_timestamp(base + 27, 40).unwrap().unwrap())
                .unwrap()
                .base_offset;
        assert_eq!(before, 27);
        log.close().unwrap();
        drop(log);
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "timeindex") {
                std::fs::remove_file(p).unwrap();
            }
        }
        let log = Log::open(dir.path(), cfg, true).unwrap();
        let after =
            BatchHeader::parse(&log.find_batch_by_timestamp(base + 27, 40).unwrap().unwrap())
                .unwrap()
                .base_offset;
        assert_eq!(after, 27);
    }
}
