//! The broker's open-file budget: the process limit (raised to the hard limit at
//! start, as the JVM does for Kafka) and one bounded pool of open segment files for
//! the whole broker, so open descriptors follow activity, not the partition count.
//!
//! A segment knows its file by a [`PooledFile`] (an id and a path); reading or writing
//! asks the pool for the descriptor, which opens the file on a miss and closes the
//! least recently used one past the pool's capacity. A caller keeps its `Arc<File>`
//! only for the one operation (a fetch's read, an upload), so an evicted file's
//! descriptor closes as soon as the last such operation ends. The pool is sharded so
//! partitions do not contend on one lock. Imports nothing above `log`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

const SHARDS: usize = 16;

/// Descriptors kept for everything but segment files: client connections, the
/// metadata log, the remote-read cache, snapshots and checkpoints written in passing.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// The process's open-files limit after [`raise_open_files_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFilesLimit {
    pub soft: u64,
    pub hard: u64,
    /// The soft limit before start-up raised it.
    pub was: u64,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (what the JVM does for Kafka), so a
/// broker started from a login shell or a systemd unit (soft 1024) is bounded by what
/// the administrator allowed, not by a default. Never lowers anything.
pub fn raise_open_files_limit() -> io::Result<OpenFilesLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let was = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    Ok(OpenFilesLimit {
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
        was,
    })
}

/// The pool size when `strata.log.open.files.max` is 0 (automatic): half of what the
/// limit leaves after the reserve, at least 32, so connections and everything else
/// keep the other half.
pub fn default_pool_capacity(soft_limit: u64) -> usize {
    (soft_limit.saturating_sub(RESERVED_DESCRIPTORS) / 2).clamp(32, 1 << 20) as usize
}

/// How a segment file is opened: every segment file is read and (while active)
/// appended to.
fn open_segment_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).append(true).open(path)
}

/// Whether an error means the process (or system) ran out of descriptors.
pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

struct Entry {
    file: Arc<File>,
    last_use: u64,
}

#[derive(Default)]
struct Shard {
    open: HashMap<u64, Entry>,
}

/// The pool of open segment files. One per process (`pool()`): the descriptor limit it
/// guards is per process too.
pub struct FilePool {
    shards: Vec<Mutex<Shard>>,
    per_shard: AtomicUsize,
    clock: AtomicU64,
    opened: AtomicU64,
}

impl FilePool {
    fn new(capacity: usize) -> FilePool {
        FilePool {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: AtomicUsize::new((capacity / SHARDS).max(2)),
            clock: AtomicU64::new(0),
            opened: AtomicU64::new(0),
        }
    }

    /// Sets the capacity (from `strata.log.open.files.max`); files over it close as
    /// they are next touched.
    pub fn set_capacity(&self, capacity: usize) {
        self.per_shard
            .store((capacity / SHARDS).max(2), Ordering::Relaxed);
    }

    pub fn capacity(&self) -> usize {
        self.per_shard.load(Ordering::Relaxed) * SHARDS
    }

    /// Files the pool holds open now.
    pub fn open_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().open.len()).sum()
    }

    /// Files opened since start (misses), for the benchmark and tests.
    pub fn opened_total(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    fn shard(&self, id: u64) -> &Mutex<Shard> {
        &self.shards[(id as usize) % SHARDS]
    }

    /// The open file for `id`, opening `path` on a miss. Out of descriptors, the pool
    /// closes what it can and tries once more before giving up.
    fn get(&self, id: u64, path: &Path) -> io::Result<Arc<File>> {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        {
            let mut shard = self.shard(id).lock();
            if let Some(e) = shard.open.get_mut(&id) {
                e.last_use = tick;
                return Ok(e.file.clone());
            }
        }
        let file = match open_segment_file(path) {
            Ok(f) => f,
            Err(e) if is_out_of_descriptors(&e) => {
                self.shed();
                open_segment_file(path).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("too many open files (RLIMIT_NOFILE reached even after closing idle segment files): {e}"),
                    )
                })?
            }
            Err(e) => return Err(e),
        };
        self.opened.fetch_add(1, Ordering::Relaxed);
        let file = Arc::new(file);
        let limit = self.per_shard.load(Ordering::Relaxed);
        let mut shard = self.shard(id).lock();
        // Another caller may have opened it meanwhile: keep one.
        if let Some(e) = shard.open.get_mut(&id) {
            e.last_use = tick;
            return Ok(e.file.clone());
        }
        while shard.open.len() >= limit {
            let Some((&oldest, _)) = shard.open.iter().min_by_key(|(_, e)| e.last_use) else {
                break;
            };
            shard.open.remove(&oldest);
        }
        shard.open.insert(
            id,
            Entry {
                file: file.clone(),
                last_use: tick,
            },
        );
        Ok(file)
    }

    /// Closes every file the pool holds (out of descriptors: make room for what is
    /// needed now; operations holding a file keep it). Returns how many it let go.
    pub fn shed(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let mut s = shard.lock();
                let n = s.open.len();
                s.open.clear();
                n
            })
            .sum()
    }

    fn forget(&self, id: u64) {
        self.shard(id).lock().open.remove(&id);
    }
}

/// The process's pool (64 files until the server configures it).
pub fn pool() -> &'static FilePool {
    static POOL: OnceLock<FilePool> = OnceLock::new();
    POOL.get_or_init(|| FilePool::new(64))
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A segment's `.log` file as the pool knows it.
#[derive(Debug)]
pub struct PooledFile {
    id: u64,
    path: Mutex<PathBuf>,
}

impl PooledFile {
    pub fn new(path: PathBuf) -> PooledFile {
        PooledFile {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            path: Mutex::new(path),
        }
    }

    /// The open descriptor (opened now if the pool had closed it). Hold it only for
    /// the operation at hand.
    pub fn open(&self) -> io::Result<Arc<File>> {
        let path = self.path.lock().clone();
        pool().get(self.id, &path)
    }

    pub fn path(&self) -> PathBuf {
        self.path.lock().clone()
    }

    /// The file was renamed (deletion): later opens use the new name; an operation
    /// holding the descriptor goes on reading it.
    pub fn renamed(&self, to: PathBuf) {
        *self.path.lock() = to;
    }

    /// Closes the pool's descriptor (the file is being deleted or truncated away).
    pub fn close(&self) {
        pool().forget(self.id);
    }
}

impl Drop for PooledFile {
    fn drop(&mut self) {
        pool().forget(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_keeps_at_most_its_capacity_open_and_reopens_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let pool = FilePool::new(32);
        let files: Vec<(u64, PathBuf)> = (0..200)
            .map(|i| {
                let p = dir.path().join(format!("{i}.log"));
                std::fs::write(&p, format!("file {i}")).unwrap();
                (1_000_000 + i, p)
            })
            .collect();
        for (id, p) in &files {
            let f = pool.get(*id, p).unwrap();
            let mut buf = String::new();
            use std::io::Read;
            (&*f).read_to_string(&mut buf).unwrap();
            assert!(buf.starts_with("file"));
            assert!(pool.open_count() <= pool.capacity());
        }
        assert_eq!(pool.opened_total(), 200);
        // The most recent ones are still open; an old one is opened again.
        let last = files.last().unwrap();
        pool.get(last.0, &last.1).unwrap();
        assert_eq!(pool.opened_total(), 200);
        pool.get(files[0].0, &files[0].1).unwrap();
        assert_eq!(pool.opened_total(), 201);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let limit = raise_open_files_limit().unwrap();
        assert_eq!(limit.soft, limit.hard);
        assert!(limit.soft >= limit.was);
    }
}
