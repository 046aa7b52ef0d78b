//! The leader-epoch cache of one partition (Kafka's `LeaderEpochFileCache`, KIP-101/KIP-279):
//! the ordered `(epoch, start offset)` pairs saying from which offset each leader epoch wrote the
//! log, and its checkpoint file.
//!
//! Entries come from the `partitionLeaderEpoch` of appended batches: a batch whose epoch is
//! greater than the latest entry's adds `(epoch, batch base offset)`; batches without an epoch
//! (-1) or with an older one add nothing. Epochs and start offsets strictly increase. The cache
//! follows the log: truncation drops the entries starting at or after the new end
//! ([`LeaderEpochCache::truncate_from_end`]), a moved log start moves the entry covering it up
//! to it ([`LeaderEpochCache::truncate_from_start`]).
//!
//! Checkpoint file `<dir>/leader-epoch-checkpoint`, Kafka's text format:
//!
//! ```text
//! 0            version
//! 2            number of entries
//! 0 0          epoch startOffset
//! 3 1500
//! ```
//!
//! It is replaced atomically (temp file, fsync, rename, directory fsync). A missing or unreadable
//! one is rebuilt from the batches' epochs by [`LeaderEpochCache::rebuild`].

use std::io::{self, Read, Write};
use std::path::Path;

use inlet_protocol::batch::BatchIter;

use crate::segment::{sync_dir, Segment};

/// Name of the checkpoint file in the partition directory.
pub const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// Kafka's `UNDEFINED_EPOCH` / `UNDEFINED_EPOCH_OFFSET` in OffsetForLeaderEpoch answers.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// The checkpoint format version this code reads and writes.
const CHECKPOINT_VERSION: u32 = 0;
/// Entries a checkpoint may claim, and bytes it may have: bound what reading a damaged one
/// allocates (an entry line is at most 32 bytes).
const MAX_CHECKPOINT_ENTRIES: usize = 1 << 20;
const MAX_CHECKPOINT_BYTES: u64 = 64 + 32 * MAX_CHECKPOINT_ENTRIES as u64;

/// One leader epoch and the first offset it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// A partition's epochs, oldest first; epochs and start offsets strictly increase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// A cache holding `entries`, or `None` if they are not strictly increasing in both epoch
    /// and start offset or hold a negative one.
    pub fn from_entries(entries: Vec<EpochEntry>) -> Option<LeaderEpochCache> {
        let valid = entries.iter().all(|e| e.epoch >= 0 && e.start_offset >= 0)
            && entries
                .windows(2)
                .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset);
        valid.then_some(LeaderEpochCache { entries })
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.latest().map(|e| e.epoch)
    }

    /// Records that a batch of `epoch` starts at `start_offset` (Kafka's `assign`). Only an
    /// epoch above the latest one adds an entry; entries starting at or after `start_offset`
    /// (left by a write that failed) are replaced by it. Returns whether the cache changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 || self.latest_epoch().is_some_and(|l| epoch <= l) {
            return false;
        }
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Drops the entries starting at or after `end_offset` (the log was truncated to it).
    /// Returns whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        self.entries.len() != before
    }

    /// The log now starts at `start_offset`: entries starting at or before it go, and the last
    /// of them (the epoch that wrote `start_offset`) comes back starting at `start_offset`.
    /// Returns whether the cache changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covered = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        let Some(last) = covered.checked_sub(1).map(|i| self.entries[i]) else {
            return false;
        };
        if covered == 1 && last.start_offset == start_offset {
            return false;
        }
        self.entries.drain(..covered);
        self.entries.insert(
            0,
            EpochEntry {
                epoch: last.epoch,
                start_offset,
            },
        );
        true
    }

    /// Empties the cache (the log was emptied and restarted). Returns whether it changed.
    pub fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    /// Kafka's OffsetForLeaderEpoch answer for `requested_epoch` on a log ending at
    /// `log_end_offset`: `(epoch, end offset)`, where the end offset is the start of the first
    /// epoch above the requested one, and `epoch` the largest known epoch at or below it.
    /// `None` is UNDEFINED (`(-1, -1)` on the wire): the requested epoch is -1, above every
    /// known epoch, or the cache is empty. The latest epoch ends at the log end; an epoch below
    /// the first known one (its entries went with old segments) answers `(requested, first
    /// start offset)`, as Kafka does, so a follower replicates from there.
    pub fn end_offset_for(&self, requested_epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        if requested_epoch == UNDEFINED_EPOCH {
            return None;
        }
        let latest = self.latest()?;
        if latest.epoch == requested_epoch {
            return Some((requested_epoch, log_end_offset));
        }
        let higher = self.entries.partition_point(|e| e.epoch <= requested_epoch);
        let next = self.entries.get(higher)?;
        match higher.checked_sub(1).map(|i| self.entries[i]) {
            Some(floor) => Some((floor.epoch, next.start_offset)),
            None => Some((requested_epoch, next.start_offset)),
        }
    }

    /// The cache the batches of `segments` imply: every batch assigned in log order.
    pub fn rebuild(segments: &[Segment]) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::default();
        for segment in segments {
            for (header, _) in BatchIter::new(segment.bytes()).map_while(Result::ok) {
                cache.assign(header.partition_leader_epoch, header.base_offset);
            }
        }
        cache
    }

    /// The checkpoint file's text.
    pub fn encode(&self) -> String {
        let mut out = format!("{CHECKPOINT_VERSION}\n{}\n", self.entries.len());
        for e in &self.entries {
            out.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        out
    }

    /// Parses a checkpoint file's text; `None` if it is not a well-formed, consistent one.
    pub fn decode(text: &str) -> Option<LeaderEpochCache> {
        let mut lines = text.lines();
        let version: u32 = lines.next()?.trim().parse().ok()?;
        if version != CHECKPOINT_VERSION {
            return None;
        }
        let count: usize = lines.next()?.trim().parse().ok()?;
        if count > MAX_CHECKPOINT_ENTRIES {
            return None;
        }
        let mut entries = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let mut fields = lines.next()?.split_whitespace();
            let epoch = fields.next()?.parse().ok()?;
            let start_offset = fields.next()?.parse().ok()?;
            if fields.next().is_some() {
                return None;
            }
            entries.push(EpochEntry {
                epoch,
                start_offset,
            });
        }
        if lines.any(|l| !l.trim().is_empty()) {
            return None;
        }
        LeaderEpochCache::from_entries(entries)
    }

    /// Reads the checkpoint in `dir`: `None` when it is missing, or unreadable (logged).
    pub fn read_checkpoint(dir: &Path) -> Option<LeaderEpochCache> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT_FILE);
        let text = match read_bounded(&path, MAX_CHECKPOINT_BYTES) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                tracing::warn!(file = %path.display(),
                    "oversized leader-epoch checkpoint; rebuilding it from the log");
                return None;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e,
                    "cannot read the leader-epoch checkpoint; rebuilding it from the log");
                return None;
            }
        };
        let cache = std::str::from_utf8(&text)
            .ok()
            .and_then(LeaderEpochCache::decode);
        if cache.is_none() {
            tracing::warn!(file = %path.display(),
                "damaged leader-epoch checkpoint; rebuilding it from the log");
        }
        cache
    }

    /// Atomically replaces the checkpoint in `dir` with this cache.
    pub fn write_checkpoint(&self, dir: &Path) -> io::Result<()> {
        write_atomically(dir, LEADER_EPOCH_CHECKPOINT_FILE, self.encode().as_bytes())
    }
}

/// The whole file at `path`, or `None` if it is longer than `limit` bytes.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// Replaces `<dir>/<name>` with `contents`: temp file, fsync, rename, directory fsync, so a
/// crash leaves the old file or the new one, never a mix (recovery deletes stray `*.tmp`).
pub(crate) fn write_atomically(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(contents)?;
        file.sync_all()
    });
    if let Err(error) = written {
        // Best effort: a full disk should not also keep a partial file (open removes it anyway).
        let _ = std::fs::remove_file(&tmp);
        return Err(error);
    }
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(pairs: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::default();
        for &(epoch, start) in pairs {
            assert!(c.assign(epoch, start));
        }
        c
    }

    fn pairs(c: &LeaderEpochCache) -> Vec<(i32, i64)> {
        c.entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn only_a_newer_epoch_adds_an_entry() {
        let mut c = cache(&[(1, 0), (3, 10)]);
        assert!(!c.assign(3, 12), "same epoch");
        assert!(!c.assign(2, 15), "older epoch");
        assert!(!c.assign(-1, 15), "no epoch");
        assert!(c.assign(4, 20));
        assert_eq!(pairs(&c), [(1, 0), (3, 10), (4, 20)]);
        // A newer epoch starting where an entry left by a failed write starts replaces it.
        assert!(c.assign(5, 20));
        assert_eq!(pairs(&c), [(1, 0), (3, 10), (5, 20)]);
    }

    #[test]
    fn end_offsets_follow_kafka() {
        // Kafka's LeaderEpochFileCacheTest examples.
        let c = cache(&[(0, 10), (2, 13), (4, 17)]);
        let leo = 20;
        assert_eq!(c.end_offset_for(0, leo), Some((0, 13)));
        assert_eq!(c.end_offset_for(1, leo), Some((0, 13)));
        assert_eq!(c.end_offset_for(2, leo), Some((2, 17)));
        assert_eq!(c.end_offset_for(3, leo), Some((2, 17)));
        assert_eq!(c.end_offset_for(4, leo), Some((4, 20)), "latest: log end");
        assert_eq!(c.end_offset_for(5, leo), None, "above every epoch");
        assert_eq!(c.end_offset_for(UNDEFINED_EPOCH, leo), None);
        let c = cache(&[(5, 11), (6, 12), (7, 13)]);
        assert_eq!(
            c.end_offset_for(4, 20),
            Some((4, 11)),
            "below the first epoch: its start"
        );
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, 0), None);
    }

    #[test]
    fn truncation_from_end_drops_entries_at_or_after_the_new_end() {
        let mut c = cache(&[(2, 6), (3, 8), (4, 11)]);
        assert!(!c.truncate_from_end(12));
        assert!(c.truncate_from_end(11));
        assert_eq!(pairs(&c), [(2, 6), (3, 8)]);
        assert!(c.truncate_from_end(7));
        assert_eq!(pairs(&c), [(2, 6)]);
        assert!(c.truncate_from_end(0));
        assert!(c.is_empty());
    }

    #[test]
    fn truncation_from_start_moves_the_covering_entry_up() {
        let mut c = cache(&[(2, 6), (3, 8), (4, 11)]);
        assert!(!c.truncate_from_start(5), "below the first entry");
        assert!(!c.truncate_from_start(6), "at the first entry");
        assert!(c.truncate_from_start(9));
        assert_eq!(pairs(&c), [(3, 9), (4, 11)]);
        assert!(c.truncate_from_start(11));
        assert_eq!(pairs(&c), [(4, 11)]);
        assert!(c.truncate_from_start(15));
        assert_eq!(pairs(&c), [(4, 15)]);
    }

    #[test]
    fn checkpoint_round_trips_in_kafkas_format() {
        let c = cache(&[(0, 0), (3, 1500)]);
        assert_eq!(c.encode(), "0\n2\n0 0\n3 1500\n");
        assert_eq!(LeaderEpochCache::decode(&c.encode()), Some(c.clone()));
        let empty = LeaderEpochCache::default();
        assert_eq!(LeaderEpochCache::decode(&empty.encode()), Some(empty));
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LeaderEpochCache::read_checkpoint(dir.path()), None);
        c.write_checkpoint(dir.path()).unwrap();
        assert_eq!(LeaderEpochCache::read_checkpoint(dir.path()), Some(c));
    }

    #[test]
    fn damaged_checkpoints_are_refused() {
        for text in [
            "",
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\n1\n0 0 7\n",
            "0\n1\nx 0\n",
            "0\n2\n3 0\n2 5\n",
            "0\n2\n1 5\n2 5\n",
            "0\n1\n0 0\n9 9\n",
            "0\n99999999999\n",
            "0\n1\n-1 0\n",
        ] {
            assert_eq!(LeaderEpochCache::decode(text), None, "{text:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE), [0xff, 0, 1]).unwrap();
        assert_eq!(LeaderEpochCache::read_checkpoint(dir.path()), None);
    }
}
