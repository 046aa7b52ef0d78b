//! Sparse per-segment indexes: [`OffsetIndex`] (`.index`) and [`TimeIndex`] (`.timeindex`).
//!
//! On-disk format, a flat array of fixed-size big-endian entries, no header:
//!
//! * `.index`, 8 bytes per entry: `relative_offset: u32` (batch base offset minus the segment
//!   base offset) @0, `position: u32` (byte position of that batch in the `.log`) @4.
//!   Strictly increasing in both fields.
//! * `.timeindex`, 12 bytes per entry: `timestamp: i64` @0 (largest batch max timestamp in the
//!   segment up to and including the batch), `relative_offset: u32` @8 (base offset of that batch,
//!   relative). Strictly increasing timestamps, non-decreasing offsets.
//!
//! Entries are sparse (one per `index_interval_bytes` of batches), so a lookup gives a position
//! at or before the wanted batch and the caller walks batch headers forward from there.
//! The active segment keeps its entries in memory and appends them to the file on flush; a
//! closed segment's index is a read-only mapping of its file. Indexes are derived data: a missing
//! or inconsistent file is rebuilt from the `.log` by recovery. "Consistent" is checked against
//! the log, not only structurally: sampled entries must name a batch that starts at the stated
//! position with the stated offset (see [`OffsetIndex::matches_log`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use inlet_protocol::batch::BatchHeader;

use crate::mmap::MappedFile;

/// Size of one `.index` entry.
pub const OFFSET_ENTRY_LEN: usize = 8;
/// Size of one `.timeindex` entry.
pub const TIME_ENTRY_LEN: usize = 12;

#[derive(Debug)]
enum Entries {
    /// Active segment: `bytes` are the encoded entries, the first `persisted` are in the file.
    Memory { bytes: Vec<u8>, persisted: usize },
    /// Closed segment: the file, mapped read-only.
    Mapped(Arc<MappedFile>),
}

/// An index file of fixed-width entries.
#[derive(Debug)]
struct IndexFile<const W: usize> {
    path: PathBuf,
    entries: Entries,
    /// Written to the file but not yet synced.
    dirty: bool,
    /// Counts writes to the file, so a sync done without the log's lock knows whether the file
    /// was written again since (see `prepare_sync`).
    writes: u64,
}

impl<const W: usize> IndexFile<W> {
    /// Replaces the file at `path` with `bytes` and keeps them in memory (synced by `flush`).
    /// Writes a temp file and renames it, so an existing mapping of the old file is never shrunk.
    fn create(path: &Path, bytes: Vec<u8>) -> io::Result<Self> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        File::create(&tmp)?.write_all(&bytes)?;
        std::fs::rename(&tmp, path)?;
        let persisted = bytes.len();
        Ok(IndexFile {
            path: path.to_path_buf(),
            entries: Entries::Memory { bytes, persisted },
            dirty: true,
            writes: 0,
        })
    }

    /// Maps an existing file read-only; `None` if it is missing or not a whole number of entries.
    fn open_mapped(path: &Path) -> io::Result<Option<Self>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let map = MappedFile::read_only(&file)?;
        if map.committed() % W != 0 {
            return Ok(None);
        }
        Ok(Some(IndexFile {
            path: path.to_path_buf(),
            entries: Entries::Mapped(map),
            dirty: false,
            writes: 0,
        }))
    }

    /// An index held only in memory, e.g. one read back from the lake. `None` unless `bytes`
    /// are whole entries. Never written anywhere: everything counts as persisted.
    fn detached(bytes: Vec<u8>) -> Option<Self> {
        bytes.len().is_multiple_of(W).then(|| IndexFile {
            path: PathBuf::new(),
            entries: Entries::Memory {
                persisted: bytes.len(),
                bytes,
            },
            dirty: false,
            writes: 0,
        })
    }

    fn bytes(&self) -> &[u8] {
        match &self.entries {
            Entries::Memory { bytes, .. } => bytes,
            Entries::Mapped(map) => map.bytes(),
        }
    }

    fn len(&self) -> usize {
        self.bytes().len() / W
    }

    fn entry(&self, i: usize) -> [u8; W] {
        let mut e = [0u8; W];
        e.copy_from_slice(&self.bytes()[i * W..(i + 1) * W]);
        e
    }

    /// Index of the last entry for which `before(entry)` holds, given `before` is true for a
    /// prefix of the entries.
    fn last_where(&self, before: impl Fn(&[u8; W]) -> bool) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if before(&self.entry(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }

    fn push(&mut self, entry: [u8; W]) {
        if let Entries::Mapped(map) = &self.entries {
            // Closed indexes do not grow today; copy back to memory rather than fail if one does.
            let bytes = map.bytes().to_vec();
            let persisted = bytes.len();
            self.entries = Entries::Memory { bytes, persisted };
        }
        if let Entries::Memory { bytes, .. } = &mut self.entries {
            bytes.extend_from_slice(&entry);
        }
    }

    /// Writes entries not yet in the file after those that are (no sync). At their position, not
    /// in append mode: a write cut short by a full disk is overwritten by the retry instead of
    /// leaving a torn entry in the middle of the file.
    fn write_pending(&mut self) -> io::Result<()> {
        if let Entries::Memory { bytes, persisted } = &mut self.entries {
            if *persisted < bytes.len() {
                let file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&self.path)?;
                file.write_all_at(&bytes[*persisted..], *persisted as u64)?;
                *persisted = bytes.len();
                self.dirty = true;
                self.writes += 1;
            }
        }
        Ok(())
    }

    /// Writes pending entries and syncs the file.
    fn flush(&mut self) -> io::Result<()> {
        self.write_pending()?;
        if self.dirty {
            File::open(&self.path)?.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Writes pending entries; if the file has unsynced writes, its path and a mark of them for
    /// [`IndexFile::synced`], so that the sync itself can happen without the log's lock.
    fn prepare_sync(&mut self) -> io::Result<Option<(PathBuf, u64)>> {
        self.write_pending()?;
        Ok(self.dirty.then(|| (self.path.clone(), self.writes)))
    }

    /// The file was synced after `prepare_sync` returned `mark`: clean unless written since.
    fn synced(&mut self, mark: u64) {
        if self.writes == mark {
            self.dirty = false;
        }
    }

    /// Writes pending entries (sync left to `flush`), then swaps the in-memory entries for a
    /// read-only mapping of the file.
    fn freeze(&mut self) -> io::Result<()> {
        self.write_pending()?;
        if let Entries::Memory { .. } = self.entries {
            let map = MappedFile::read_only(&File::open(&self.path)?)?;
            self.entries = Entries::Mapped(map);
        }
        Ok(())
    }
}

/// Sparse map from relative offset to byte position in the segment.
#[derive(Debug)]
pub struct OffsetIndex(IndexFile<OFFSET_ENTRY_LEN>);

fn encode_offset_entry(relative_offset: u32, position: u32) -> [u8; OFFSET_ENTRY_LEN] {
    let mut e = [0u8; OFFSET_ENTRY_LEN];
    e[..4].copy_from_slice(&relative_offset.to_be_bytes());
    e[4..].copy_from_slice(&position.to_be_bytes());
    e
}

fn decode_offset_entry(e: &[u8; OFFSET_ENTRY_LEN]) -> (u32, u32) {
    (
        u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
        u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
    )
}

impl OffsetIndex {
    /// Writes a new index file holding `entries` (relative offset, position).
    pub fn create(path: &Path, entries: &[(u32, u32)]) -> io::Result<OffsetIndex> {
        let bytes = entries
            .iter()
            .flat_map(|&(o, p)| encode_offset_entry(o, p))
            .collect();
        Ok(OffsetIndex(IndexFile::create(path, bytes)?))
    }

    /// Opens an existing index of a closed segment of `segment_len` bytes. `None` if the file is
    /// missing or inconsistent (not whole entries, not strictly increasing, position out of file).
    pub fn open(path: &Path, segment_len: usize) -> io::Result<Option<OffsetIndex>> {
        let Some(file) = IndexFile::open_mapped(path)? else {
            return Ok(None);
        };
        let mut prev: Option<(u32, u32)> = None;
        for i in 0..file.len() {
            let (o, p) = decode_offset_entry(&file.entry(i));
            let increasing = prev.is_none_or(|(po, pp)| o > po && p > pp);
            if !increasing || p as usize >= segment_len {
                return Ok(None);
            }
            prev = Some((o, p));
        }
        Ok(Some(OffsetIndex(file)))
    }

    /// An index of `entries` kept only in memory, written nowhere.
    pub fn in_memory(entries: &[(u32, u32)]) -> OffsetIndex {
        OffsetIndex(IndexFile {
            path: PathBuf::new(),
            entries: Entries::Memory {
                bytes: entries
                    .iter()
                    .flat_map(|&(o, p)| encode_offset_entry(o, p))
                    .collect(),
                persisted: entries.len() * OFFSET_ENTRY_LEN,
            },
            dirty: false,
            writes: 0,
        })
    }

    /// An index over encoded entries kept in memory (a copy fetched from the lake); `None` if
    /// `bytes` are not whole entries.
    pub fn detached(bytes: Vec<u8>) -> Option<OffsetIndex> {
        IndexFile::detached(bytes).map(OffsetIndex)
    }

    /// The encoded entries, as the `.index` file holds them.
    pub fn entry_bytes(&self) -> &[u8] {
        self.0.bytes()
    }

    pub fn append(&mut self, relative_offset: u32, position: u32) {
        self.0.push(encode_offset_entry(relative_offset, position));
    }

    /// The entry with the largest relative offset `<= relative_offset`, if any.
    pub fn lookup(&self, relative_offset: u32) -> Option<(u32, u32)> {
        let i = self
            .0
            .last_where(|e| decode_offset_entry(e).0 <= relative_offset)?;
        Some(decode_offset_entry(&self.0.entry(i)))
    }

    pub fn last(&self) -> Option<(u32, u32)> {
        let n = self.0.len();
        (n > 0).then(|| decode_offset_entry(&self.0.entry(n - 1)))
    }

    /// Whether the sampled entries point where they say: at the start of a batch whose base
    /// offset is the entry's offset, in `log` (the segment's batches, based at `base_offset`).
    /// The structural checks of [`OffsetIndex::open`] cannot see an index rewritten with
    /// increasing, in-range but wrong positions; this can. It reads one batch header per
    /// sampled entry: the first and last entries and up to `samples` spread between them, so
    /// the cost of opening a segment does not grow with its size (every page of a cold log is
    /// not read at start-up). Lookups check the entry they use as well (see
    /// `Segment::find_position`), so an entry this misses cannot misplace a read.
    pub fn matches_log(&self, log: &[u8], base_offset: i64, samples: usize) -> bool {
        let n = self.0.len();
        if n == 0 {
            return true;
        }
        let step = (n / samples.max(1)).max(1);
        (0..n).step_by(step).chain(std::iter::once(n - 1)).all(|i| {
            let (rel, pos) = decode_offset_entry(&self.0.entry(i));
            points_at_batch(log, base_offset, rel, pos)
        })
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }

    /// See `IndexFile::prepare_sync`.
    pub fn prepare_sync(&mut self) -> io::Result<Option<(PathBuf, u64)>> {
        self.0.prepare_sync()
    }

    pub fn synced(&mut self, mark: u64) {
        self.0.synced(mark)
    }

    pub fn freeze(&mut self) -> io::Result<()> {
        self.0.freeze()
    }
}

/// Whether a batch whose base offset is `base_offset + relative_offset` starts at `position`.
pub fn points_at_batch(log: &[u8], base_offset: i64, relative_offset: u32, position: u32) -> bool {
    log.get(position as usize..)
        .and_then(|rest| BatchHeader::parse_header_only(rest).ok())
        .is_some_and(|h| h.base_offset == base_offset + i64::from(relative_offset))
}

/// Sparse map from (running max) timestamp to relative offset.
#[derive(Debug)]
pub struct TimeIndex(IndexFile<TIME_ENTRY_LEN>);

fn encode_time_entry(timestamp: i64, relative_offset: u32) -> [u8; TIME_ENTRY_LEN] {
    let mut e = [0u8; TIME_ENTRY_LEN];
    e[..8].copy_from_slice(&timestamp.to_be_bytes());
    e[8..].copy_from_slice(&relative_offset.to_be_bytes());
    e
}

fn decode_time_entry(e: &[u8; TIME_ENTRY_LEN]) -> (i64, u32) {
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&e[..8]);
    (
        i64::from_be_bytes(ts),
        u32::from_be_bytes([e[8], e[9], e[10], e[11]]),
    )
}

impl TimeIndex {
    /// Writes a new index file holding `entries` (timestamp, relative offset).
    pub fn create(path: &Path, entries: &[(i64, u32)]) -> io::Result<TimeIndex> {
        let bytes = entries
            .iter()
            .flat_map(|&(t, o)| encode_time_entry(t, o))
            .collect();
        Ok(TimeIndex(IndexFile::create(path, bytes)?))
    }

    /// Opens an existing index of a closed segment whose relative offsets are all below
    /// `relative_end`. `None` if missing or inconsistent.
    pub fn open(path: &Path, relative_end: u64) -> io::Result<Option<TimeIndex>> {
        let Some(file) = IndexFile::open_mapped(path)? else {
            return Ok(None);
        };
        let mut prev: Option<(i64, u32)> = None;
        for i in 0..file.len() {
            let (t, o) = decode_time_entry(&file.entry(i));
            let increasing = prev.is_none_or(|(pt, po)| t > pt && o >= po);
            if !increasing || u64::from(o) >= relative_end {
                return Ok(None);
            }
            prev = Some((t, o));
        }
        Ok(Some(TimeIndex(file)))
    }

    /// Whether the sampled entries agree with the log: each names the base offset of a batch
    /// (found through `offsets`, a checked offset index of the same segment) whose own max
    /// timestamp is at most the entry's timestamp (the running max up to that batch). Samples
    /// as [`OffsetIndex::matches_log`] does; a few header reads per sample.
    pub fn matches_log(
        &self,
        offsets: &OffsetIndex,
        log: &[u8],
        base_offset: i64,
        samples: usize,
    ) -> bool {
        let n = self.0.len();
        if n == 0 {
            return true;
        }
        let step = (n / samples.max(1)).max(1);
        (0..n).step_by(step).chain(std::iter::once(n - 1)).all(|i| {
            let (timestamp, rel) = decode_time_entry(&self.0.entry(i));
            let target = base_offset + i64::from(rel);
            let start = offsets.lookup(rel).map_or(0, |(_, p)| p as usize);
            // The batches from the indexed one on, until the one at `target` or past it.
            let found = inlet_protocol::batch::BatchIter::new(log.get(start..).unwrap_or(&[]))
                .map_while(Result::ok)
                .map(|(h, _)| h)
                .find(|h| h.base_offset >= target);
            found.is_some_and(|h| h.base_offset == target && h.max_timestamp <= timestamp)
        })
    }

    /// A time index over encoded entries kept in memory; `None` if not whole entries.
    pub fn detached(bytes: Vec<u8>) -> Option<TimeIndex> {
        IndexFile::detached(bytes).map(TimeIndex)
    }

    /// The encoded entries, as the `.timeindex` file holds them.
    pub fn entry_bytes(&self) -> &[u8] {
        self.0.bytes()
    }

    /// Adds an entry if `timestamp` is newer than the last one.
    pub fn maybe_append(&mut self, timestamp: i64, relative_offset: u32) {
        if self.last().is_none_or(|(t, _)| timestamp > t) {
            self.0.push(encode_time_entry(timestamp, relative_offset));
        }
    }

    /// The last entry whose timestamp is `< timestamp`: every batch up to and including the one
    /// it names has a max timestamp below `timestamp`.
    pub fn last_before(&self, timestamp: i64) -> Option<(i64, u32)> {
        let i = self.0.last_where(|e| decode_time_entry(e).0 < timestamp)?;
        Some(decode_time_entry(&self.0.entry(i)))
    }

    pub fn last(&self) -> Option<(i64, u32)> {
        let n = self.0.len();
        (n > 0).then(|| decode_time_entry(&self.0.entry(n - 1)))
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }

    /// See `IndexFile::prepare_sync`.
    pub fn prepare_sync(&mut self) -> io::Result<Option<(PathBuf, u64)>> {
        self.0.prepare_sync()
    }

    pub fn synced(&mut self, mark: u64) {
        self.0.synced(mark)
    }

    pub fn freeze(&mut self) -> io::Result<()> {
        self.0.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_finds_floor_entry_and_survives_freeze() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut idx = OffsetIndex::create(&path, &[]).unwrap();
        assert_eq!(idx.lookup(5), None);
        idx.append(0, 0);
        idx.append(10, 100);
        idx.append(20, 250);
        assert_eq!(idx.lookup(9), Some((0, 0)));
        assert_eq!(idx.lookup(10), Some((10, 100)));
        assert_eq!(idx.lookup(u32::MAX), Some((20, 250)));
        idx.freeze().unwrap();
        assert_eq!(idx.lookup(15), Some((10, 100)));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
        let reopened = OffsetIndex::open(&path, 300).unwrap().unwrap();
        assert_eq!(reopened.last(), Some((20, 250)));
    }

    #[test]
    fn inconsistent_offset_index_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        OffsetIndex::create(&path, &[(5, 50), (4, 60)]).unwrap();
        assert!(OffsetIndex::open(&path, 100).unwrap().is_none());
        OffsetIndex::create(&path, &[(5, 50), (6, 160)]).unwrap();
        assert!(
            OffsetIndex::open(&path, 100).unwrap().is_none(),
            "position past end"
        );
        std::fs::write(&path, [0u8; 7]).unwrap();
        assert!(
            OffsetIndex::open(&path, 100).unwrap().is_none(),
            "partial entry"
        );
        assert!(OffsetIndex::open(&dir.path().join("missing"), 100)
            .unwrap()
            .is_none());
    }

    #[test]
    fn time_index_keeps_only_increasing_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.timeindex");
        let mut idx = TimeIndex::create(&path, &[]).unwrap();
        idx.maybe_append(100, 0);
        idx.maybe_append(90, 3);
        idx.maybe_append(200, 5);
        assert_eq!(idx.last(), Some((200, 5)));
        assert_eq!(idx.last_before(100), None);
        assert_eq!(idx.last_before(150), Some((100, 0)));
        idx.flush().unwrap();
        assert!(TimeIndex::open(&path, 6).unwrap().is_some());
        assert!(
            TimeIndex::open(&path, 5).unwrap().is_none(),
            "offset beyond segment"
        );
    }
}
