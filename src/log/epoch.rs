//! The leader-epoch checkpoint of a partition: (epoch, start offset) pairs in Kafka's
//! `leader-epoch-checkpoint` text format, rewritten atomically on every change.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    pub fn open(dir: &Path) -> io::Result<LeaderEpochCache> {
        let path = dir.join("leader-epoch-checkpoint");
        let mut entries = Vec::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            // Format: version line, count line, then "epoch offset" lines.
            for line in text.lines().skip(2) {
                let mut parts = line.split_whitespace();
                if let (Some(e), Some(o)) = (parts.next(), parts.next()) {
                    if let (Ok(e), Ok(o)) = (e.parse(), o.parse()) {
                        entries.push((e, o));
                    }
                }
            }
        }
        Ok(LeaderEpochCache { path, entries })
    }

    fn persist(&self) -> io::Result<()> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            text.push_str(&format!("{e} {o}\n"));
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, &self.path)
    }

    /// Records that `epoch` starts at `start_offset`, if it is newer than the latest.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> io::Result<()> {
        if epoch < 0 || self.entries.last().is_some_and(|&(e, _)| e >= epoch) {
            return Ok(());
        }
        self.entries.push((epoch, start_offset));
        self.persist()
    }

    /// Drops entries that start at or past `offset` (after truncating the log's end).
    pub fn truncate_from_end(&mut self, offset: i64) -> io::Result<()> {
        let before = self.entries.len();
        self.entries.retain(|&(_, o)| o < offset);
        if self.entries.len() != before {
            self.persist()?;
        }
        Ok(())
    }

    /// Moves the first entry up to the new log start offset (Kafka's truncateFromStart).
    pub fn truncate_from_start(&mut self, start: i64) -> io::Result<()> {
        let keep_from = self
            .entries
            .iter()
            .rposition(|&(_, o)| o <= start)
            .unwrap_or(0);
        if keep_from == 0 && self.entries.first().is_none_or(|&(_, o)| o >= start) {
            return Ok(());
        }
        self.entries.drain(..keep_from);
        if let Some(first) = self.entries.first_mut() {
            first.1 = first.1.max(start);
        }
        self.persist()
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|&(e, _)| e)
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// The entries covering offsets `[start, end)`, the first moved up to `start`: the
    /// leader-epoch checkpoint uploaded with a tiered segment.
    pub fn entries_within(&self, start: i64, end: i64) -> Vec<(i32, i64)> {
        let first = self.entries.iter().rposition(|&(_, o)| o <= start);
        let mut out: Vec<(i32, i64)> = first
            .map(|i| (self.entries[i].0, start))
            .into_iter()
            .collect();
        out.extend(
            self.entries
                .iter()
                .filter(|&&(_, o)| o > start && o < end)
                .copied(),
        );
        out
    }

    /// Kafka's endOffsetForEpoch: the start offset of the first epoch after `epoch`
    /// (or `log_end` for the latest), and the largest epoch ≤ the requested one.
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> (i32, i64) {
        match self.entries.iter().rposition(|&(e, _)| e <= epoch) {
            None => (-1, -1),
            Some(i) if i + 1 == self.entries.len() => (self.entries[i].0, log_end),
            Some(i) => (self.entries[i].0, self.entries[i + 1].1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_and_answers_end_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochCache::open(dir.path()).unwrap();
        c.assign(0, 0).unwrap();
        c.assign(2, 10).unwrap();
        c.assign(1, 12).unwrap(); // older: ignored
        let c = LeaderEpochCache::open(dir.path()).unwrap();
        assert_eq!(c.entries(), &[(0, 0), (2, 10)]);
        assert_eq!(c.end_offset_for(0, 20), (0, 10));
        assert_eq!(c.end_offset_for(1, 20), (0, 10));
        assert_eq!(c.end_offset_for(2, 20), (2, 20));
        assert_eq!(c.entries_within(5, 12), vec![(0, 5), (2, 10)]);
        assert_eq!(c.entries_within(10, 12), vec![(2, 10)]);
    }
}
