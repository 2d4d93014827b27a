//! The log directories of this broker: where each partition lives, the clean-shutdown
//! marker that decides whether logs need a CRC scan, and discovery of partition
//! directories on disk.

use std::io;
use std::path::{Path, PathBuf};

use tracing::{info, warn};
use uuid::Uuid;

use super::log::{Log, LogError, LogResult};
use crate::config::LogConfig;

/// The metadata quorum's directory name prefix (as Kafka's `__cluster_metadata-0`),
/// which may share a log dir and is not a partition.
pub const METADATA_DIR_PREFIX: &str = "__cluster_metadata";

/// Kafka's marker file: present only after a clean shutdown.
const CLEAN_SHUTDOWN_MARKER: &str = ".kafka_cleanshutdown";

#[derive(Debug)]
pub struct LogManager {
    dirs: Vec<PathBuf>,
    /// True when every log dir had the clean-shutdown marker at start.
    clean_start: bool,
}

/// Parses a partition directory name `<topic>-<partition>`.
pub fn parse_partition_dir(name: &str) -> Option<(String, i32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    let partition: i32 = partition.parse().ok()?;
    if topic.is_empty() || partition < 0 {
        return None;
    }
    Some((topic.to_string(), partition))
}

/// `syncfs(2)` on the file system holding `dir`: every dirty page of it reaches the
/// disk, which at shutdown costs one call instead of an fsync per file.
fn sync_file_system(dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let handle = std::fs::File::open(dir)?;
    // SAFETY: syncfs takes a descriptor we hold open for the call.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl LogManager {
    /// Creates the directories if needed, checks they are writable and consumes the
    /// clean-shutdown markers.
    pub fn open(dirs: &[PathBuf]) -> io::Result<LogManager> {
        let mut clean = true;
        for dir in dirs {
            std::fs::create_dir_all(dir)
                .map_err(|e| io::Error::new(e.kind(), format!("log dir {}: {e}", dir.display())))?;
            let probe = dir.join(".strata-write-probe");
            std::fs::write(&probe, b"ok").map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("log dir {} is not writable: {e}", dir.display()),
                )
            })?;
            let _ = std::fs::remove_file(probe);
            let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
            let had_partitions = std::fs::read_dir(dir)?.filter_map(|e| e.ok()).any(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                !name.starts_with(METADATA_DIR_PREFIX) && parse_partition_dir(&name).is_some()
            });
            if marker.exists() {
                std::fs::remove_file(&marker)?;
            } else if had_partitions {
                clean = false;
            }
        }
        if !clean {
            warn!("no clean-shutdown marker: logs will be verified batch by batch");
        }
        Ok(LogManager {
            dirs: dirs.to_vec(),
            clean_start: clean,
        })
    }

    pub fn clean_start(&self) -> bool {
        self.clean_start
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Partition directories found on disk: (topic, partition, dir).
    pub fn existing_partitions(&self) -> Vec<(String, i32, PathBuf)> {
        let mut out = Vec::new();
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.filter_map(|e| e.ok()) {
                if !e.path().is_dir() {
                    continue;
                }
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with(METADATA_DIR_PREFIX) {
                    continue;
                }
                if let Some((t, p)) = parse_partition_dir(&name) {
                    out.push((t, p, e.path()));
                }
            }
        }
        out
    }

    /// The directory of a partition: an existing one, else in the log dir with the
    /// fewest partitions (Kafka's placement rule).
    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        let name = format!("{topic}-{partition}");
        if let Some(existing) = self.dirs.iter().map(|d| d.join(&name)).find(|p| p.exists()) {
            return existing;
        }
        if self.dirs.len() == 1 {
            return self.dirs[0].join(name);
        }
        let count = |d: &Path| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
        let dir = self
            .dirs
            .iter()
            .min_by_key(|d| count(d))
            .unwrap_or(&self.dirs[0]);
        dir.join(name)
    }

    /// Opens (creating if needed) a partition's log and records its topic id.
    pub fn open_log(
        &self,
        topic: &str,
        partition: i32,
        topic_id: Uuid,
        config: LogConfig,
    ) -> LogResult<Log> {
        let dir = self.partition_dir(topic, partition);
        let log = Log::open(&dir, config, self.clean_start)?;
        let meta = dir.join("partition.metadata");
        let expected = format!("version: 0\ntopic_id: {topic_id}\n");
        if std::fs::read_to_string(&meta).ok().as_deref() != Some(expected.as_str()) {
            std::fs::write(&meta, expected)
                .map_err(|source| LogError::Io { path: meta, source })?;
        }
        Ok(log)
    }

    /// The topic id recorded in a partition directory, if any.
    pub fn recorded_topic_id(dir: &Path) -> Option<Uuid> {
        let text = std::fs::read_to_string(dir.join("partition.metadata")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("topic_id: "))
            .and_then(|s| s.trim().parse().ok())
    }

    /// Writes the clean-shutdown markers (after every log was closed).
    /// Makes everything the closed logs wrote durable with one `syncfs` per log dir
    /// (the data, indexes and snapshots of every partition at once), then writes the
    /// clean-shutdown marker. Without a successful sync there is no marker, and the
    /// next start verifies the logs as after a crash.
    pub fn mark_clean_shutdown(&self) {
        for dir in &self.dirs {
            if let Err(e) = sync_file_system(dir) {
                warn!(dir = %dir.display(), error = %e, "could not sync the log dir at shutdown; the next start will verify its logs");
                return;
            }
        }
        for dir in &self.dirs {
            let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
            if let Err(e) = std::fs::write(&marker, b"").and_then(|()| sync_file_system(dir)) {
                warn!(dir = %dir.display(), error = %e, "could not write clean-shutdown marker");
            }
        }
        info!("clean shutdown recorded");
    }
}
