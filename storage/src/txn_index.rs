//! The aborted-transaction index: per segment, the transactions whose abort marker lies in it
//! (Kafka's `.txnindex`), so a `read_committed` fetch learns which records to skip without
//! reading the log.
//!
//! File `<base, 20 digits>.txnindex`, a sequence of 34-byte entries, big-endian, in marker order:
//!
//! | size | field                                                                      |
//! |-----:|----------------------------------------------------------------------------|
//! |    2 | `version` i16 (0)                                                          |
//! |    8 | `producer_id` i64                                                          |
//! |    8 | `first_offset` i64: the producer's first batch of the transaction          |
//! |    8 | `last_offset` i64: the abort marker's offset                               |
//! |    8 | `last_stable_offset` i64: the LSO right after the abort (lets a search stop) |
//!
//! A file exists only for a segment that holds an abort marker (as Kafka creates them lazily).
//! Entries are appended when an abort marker is written (by a leader or a follower); the files
//! are synced by [`Log::flush`](crate::Log::flush). The whole index is also kept in memory
//! (34 bytes an abort), which is what reads use. On open, files are checked; a damaged one
//! (torn length, unknown version, entries outside its segment or out of order) makes the log
//! rebuild every index from a replay of the whole log, and the markers replayed after the
//! producer snapshot are always re-indexed, so an entry lost with a crash comes back.
//! Truncation cuts entries at or past the new end; a deleted segment's file goes with it.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::segment::segment_path;
use crate::txn::AbortedTxn;

/// Bytes of one entry.
pub const ENTRY_LEN: usize = 34;
const VERSION: i16 = 0;
/// File extension of a segment's index.
pub const EXTENSION: &str = "txnindex";

/// One aborted transaction as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnIndexEntry {
    pub txn: AbortedTxn,
    /// The partition's LSO right after the abort: an entry with one at or past a search's
    /// upper bound ends the search (no later abort can reach below it).
    pub last_stable_offset: i64,
}

impl TxnIndexEntry {
    fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        out[0..2].copy_from_slice(&VERSION.to_be_bytes());
        out[2..10].copy_from_slice(&self.txn.producer_id.to_be_bytes());
        out[10..18].copy_from_slice(&self.txn.first_offset.to_be_bytes());
        out[18..26].copy_from_slice(&self.txn.last_offset.to_be_bytes());
        out[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        out
    }

    fn decode(b: &[u8; ENTRY_LEN]) -> Option<TxnIndexEntry> {
        let i64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            i64::from_be_bytes(a)
        };
        (i16::from_be_bytes([b[0], b[1]]) == VERSION).then(|| TxnIndexEntry {
            txn: AbortedTxn {
                producer_id: i64_at(2),
                first_offset: i64_at(10),
                last_offset: i64_at(18),
            },
            last_stable_offset: i64_at(26),
        })
    }
}

/// Every segment's aborted transactions, by segment base offset (segments without any are
/// absent).
#[derive(Debug, Default)]
pub struct TxnIndexes {
    dir: PathBuf,
    segments: BTreeMap<i64, Vec<TxnIndexEntry>>,
    /// Segments whose file was appended to since the last sync.
    dirty: Vec<i64>,
    /// Segments whose file missed an entry (a write failed): rewritten by the next sync.
    stale: Vec<i64>,
}

/// What [`TxnIndexes::load`] found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damaged {
    pub segment: i64,
}

impl TxnIndexes {
    pub fn empty(dir: &Path) -> TxnIndexes {
        TxnIndexes {
            dir: dir.to_path_buf(),
            ..TxnIndexes::default()
        }
    }

    /// Reads the index files of the segments `[(base, next_offset)]`. Files of no segment are
    /// removed. `Err` names the first damaged file (the caller rebuilds everything).
    pub fn load(dir: &Path, segments: &[(i64, i64)]) -> io::Result<Result<TxnIndexes, Damaged>> {
        let mut indexes = TxnIndexes::empty(dir);
        for base in list(dir)? {
            let Some(&(_, end)) = segments.iter().find(|(b, _)| *b == base) else {
                tracing::info!(dir = %dir.display(), base, "removing transaction index without segment");
                std::fs::remove_file(segment_path(dir, base, EXTENSION))?;
                continue;
            };
            let bytes = std::fs::read(segment_path(dir, base, EXTENSION))?;
            match parse(&bytes, base, end) {
                Some(entries) if !entries.is_empty() => {
                    indexes.segments.insert(base, entries);
                }
                Some(_) => {}
                None => return Ok(Err(Damaged { segment: base })),
            }
        }
        Ok(Ok(indexes))
    }

    /// Records an abort whose marker is in segment `base`, appending it to its file. The entry
    /// is in memory (what reads use) even if the write fails; the next [`sync`](Self::sync)
    /// then rewrites the file.
    pub fn append(&mut self, base: i64, entry: TxnIndexEntry) -> io::Result<()> {
        self.segments.entry(base).or_default().push(entry);
        let path = segment_path(&self.dir, base, EXTENSION);
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(&entry.encode()));
        let list = if written.is_ok() {
            &mut self.dirty
        } else {
            &mut self.stale
        };
        if !list.contains(&base) {
            list.push(base);
        }
        written
    }

    /// Adds an entry unless an entry for the same marker is there (re-indexing replayed
    /// markers on open).
    pub fn ensure(&mut self, base: i64, entry: TxnIndexEntry) -> io::Result<()> {
        let known = self.segments.get(&base).is_some_and(|entries| {
            entries.iter().any(|e| {
                e.txn.last_offset == entry.txn.last_offset
                    && e.txn.producer_id == entry.txn.producer_id
            })
        });
        if known {
            return Ok(());
        }
        let keeps_order = self
            .segments
            .get(&base)
            .and_then(|entries| entries.last())
            .is_none_or(|last| last.txn.last_offset < entry.txn.last_offset);
        if keeps_order {
            return self.append(base, entry);
        }
        let entries = self.segments.entry(base).or_default();
        entries.push(entry);
        entries.sort_by_key(|e| e.txn.last_offset);
        self.rewrite(base)
    }

    /// Removes entries whose marker is at or past `offset` (truncation), rewriting or
    /// removing the files that change.
    pub fn truncate(&mut self, offset: i64) -> io::Result<()> {
        let affected: Vec<i64> = self
            .segments
            .iter()
            .filter(|(_, entries)| entries.iter().any(|e| e.txn.last_offset >= offset))
            .map(|(&base, _)| base)
            .collect();
        for base in affected {
            if let Some(entries) = self.segments.get_mut(&base) {
                entries.retain(|e| e.txn.last_offset < offset);
            }
            self.rewrite(base)?;
        }
        Ok(())
    }

    /// Forgets (and deletes the files of) segments below `log_start` (retention).
    pub fn drop_below(&mut self, log_start: i64) -> io::Result<()> {
        let gone: Vec<i64> = self.segments.range(..log_start).map(|(&b, _)| b).collect();
        for base in gone {
            self.segments.remove(&base);
            remove_if_present(&segment_path(&self.dir, base, EXTENSION))?;
        }
        Ok(())
    }

    /// Segments `[start, end)` were replaced by one segment at `start` (compaction): their
    /// entries move to it.
    pub fn merge(&mut self, start: i64, end: i64) -> io::Result<()> {
        let moved: Vec<i64> = self
            .segments
            .range(start..end)
            .map(|(&b, _)| b)
            .filter(|&b| b != start)
            .collect();
        if moved.is_empty() {
            return Ok(());
        }
        for base in &moved {
            if let Some(entries) = self.segments.remove(base) {
                self.segments.entry(start).or_default().extend(entries);
            }
        }
        self.rewrite(start)?;
        for base in moved {
            remove_if_present(&segment_path(&self.dir, base, EXTENSION))?;
        }
        Ok(())
    }

    /// Empties everything (a full truncation), removing the files.
    pub fn clear(&mut self) -> io::Result<()> {
        for base in std::mem::take(&mut self.segments).into_keys() {
            remove_if_present(&segment_path(&self.dir, base, EXTENSION))?;
        }
        self.dirty.clear();
        self.stale.clear();
        Ok(())
    }

    /// Removes every index file in `dir` (before rebuilding them all).
    pub fn remove_files(dir: &Path) -> io::Result<()> {
        for base in list(dir)? {
            remove_if_present(&segment_path(dir, base, EXTENSION))?;
        }
        Ok(())
    }

    /// Syncs the files appended to since the last call (rewriting those a write missed).
    pub fn sync(&mut self) -> io::Result<()> {
        while let Some(&base) = self.stale.last() {
            self.rewrite(base)?;
            self.stale.pop();
        }
        for base in std::mem::take(&mut self.dirty) {
            match std::fs::File::open(segment_path(&self.dir, base, EXTENSION)) {
                Ok(file) => file.sync_all()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Kafka's `collectAbortedTxns`: aborted transactions with a marker at or after `from` and
    /// a first offset below `upper`, in marker order. Stops at the first entry whose LSO
    /// reaches `upper`.
    pub fn collect(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        // The entry of a marker at or after `from` lives in the segment holding `from` or a
        // later one.
        let first_segment = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(&b, _)| b);
        let mut out = Vec::new();
        for entries in self.segments.range(first_segment..).map(|(_, e)| e) {
            for entry in entries {
                if entry.txn.last_offset >= from && entry.txn.first_offset < upper {
                    out.push(entry.txn);
                }
                if entry.last_stable_offset >= upper {
                    return out;
                }
            }
        }
        out
    }

    /// Every entry, by segment, for tests and equality checks.
    pub fn entries(&self) -> impl Iterator<Item = (i64, &TxnIndexEntry)> {
        self.segments
            .iter()
            .flat_map(|(&b, entries)| entries.iter().map(move |e| (b, e)))
    }

    /// Rewrites segment `base`'s file from memory (temp file + rename), or removes it when it
    /// has no entry left.
    fn rewrite(&mut self, base: i64) -> io::Result<()> {
        let path = segment_path(&self.dir, base, EXTENSION);
        let entries = self.segments.get(&base).map_or(&[][..], Vec::as_slice);
        if entries.is_empty() {
            self.segments.remove(&base);
            return remove_if_present(&path);
        }
        let mut bytes = Vec::with_capacity(entries.len() * ENTRY_LEN);
        for entry in entries {
            bytes.extend_from_slice(&entry.encode());
        }
        let tmp = segment_path(&self.dir, base, "txnindex.tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The entries of a file of segment `[base, end)`, or `None` if it is damaged.
fn parse(bytes: &[u8], base: i64, end: i64) -> Option<Vec<TxnIndexEntry>> {
    if !bytes.len().is_multiple_of(ENTRY_LEN) {
        return None;
    }
    let mut entries = Vec::with_capacity(bytes.len() / ENTRY_LEN);
    let mut previous = i64::MIN;
    for chunk in bytes.chunks_exact(ENTRY_LEN) {
        let entry = TxnIndexEntry::decode(chunk.try_into().ok()?)?;
        let t = entry.txn;
        let sane = t.last_offset >= base
            && t.last_offset < end
            && t.first_offset <= t.last_offset
            && t.last_offset > previous;
        if !sane {
            return None;
        }
        previous = t.last_offset;
        entries.push(entry);
    }
    Some(entries)
}

/// Segment base offsets with an index file in `dir`.
fn list(dir: &Path) -> io::Result<Vec<i64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".txnindex")) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            bases.extend(stem.parse::<i64>().ok());
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: i64, first: i64, last: i64, lso: i64) -> TxnIndexEntry {
        TxnIndexEntry {
            txn: AbortedTxn {
                producer_id: pid,
                first_offset: first,
                last_offset: last,
            },
            last_stable_offset: lso,
        }
    }

    #[test]
    fn entries_are_34_bytes_and_round_trip_through_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = TxnIndexes::empty(dir.path());
        idx.append(0, entry(1, 2, 5, 6)).unwrap();
        idx.append(0, entry(2, 3, 8, 9)).unwrap();
        idx.append(10, entry(3, 9, 12, 13)).unwrap();
        let file = segment_path(dir.path(), 0, EXTENSION);
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 2 * 34);
        let loaded = TxnIndexes::load(dir.path(), &[(0, 10), (10, 20)])
            .unwrap()
            .unwrap();
        assert_eq!(
            loaded.entries().collect::<Vec<_>>(),
            idx.entries().collect::<Vec<_>>()
        );
        // A torn file, an entry outside its segment, or no segment at all.
        let mut torn = std::fs::read(&file).unwrap();
        torn.pop();
        std::fs::write(&file, &torn).unwrap();
        assert_eq!(
            TxnIndexes::load(dir.path(), &[(0, 10), (10, 20)])
                .unwrap()
                .unwrap_err(),
            Damaged { segment: 0 }
        );
        assert_eq!(
            TxnIndexes::load(dir.path(), &[(0, 10), (10, 12)])
                .unwrap()
                .unwrap_err(),
            Damaged { segment: 0 }
        );
        std::fs::remove_file(&file).unwrap();
        let loaded = TxnIndexes::load(dir.path(), &[(0, 10)]).unwrap().unwrap();
        assert_eq!(loaded.entries().count(), 0);
        assert!(!segment_path(dir.path(), 10, EXTENSION).exists());
    }

    #[test]
    fn collect_finds_overlapping_aborts_and_stops_at_the_upper_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = TxnIndexes::empty(dir.path());
        // Transaction 2 was open (since 2) when 1 aborted, 3 (since 6) when 2 aborted.
        idx.append(0, entry(1, 0, 4, 2)).unwrap();
        idx.append(0, entry(2, 2, 7, 6)).unwrap();
        idx.append(10, entry(3, 6, 12, 13)).unwrap();
        idx.append(10, entry(4, 13, 15, 16)).unwrap();
        let pids = |v: Vec<AbortedTxn>| v.into_iter().map(|t| t.producer_id).collect::<Vec<_>>();
        assert_eq!(pids(idx.collect(0, 3)), [1, 2]);
        assert_eq!(pids(idx.collect(5, 7)), [2, 3]);
        assert_eq!(pids(idx.collect(8, 20)), [3, 4]);
        assert_eq!(pids(idx.collect(16, 20)), Vec::<i64>::new());
        idx.truncate(12).unwrap();
        assert_eq!(pids(idx.collect(0, 20)), [1, 2]);
        assert!(!segment_path(dir.path(), 10, EXTENSION).exists());
        idx.drop_below(10).unwrap();
        assert_eq!(idx.entries().count(), 0);
    }
}
