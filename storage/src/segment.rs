//! One segment: a `.log` file of record batches plus its [`OffsetIndex`] and [`TimeIndex`].
//!
//! File names are the segment's base offset zero-padded to 20 digits:
//! `00000000000000000000.log`, `.index`, `.timeindex`.
//!
//! `.log` format: RecordBatch v2 batches back to back, byte for byte as the producer sent them
//! except `baseOffset` (bytes 0..8, set to the assigned offset) and `partitionLeaderEpoch`
//! (bytes 12..16), both outside the CRC (see `inlet_protocol::batch` for the batch layout). No
//! file header, no padding between batches. Offsets are dense: each batch's `baseOffset` is the
//! previous batch's `baseOffset + lastOffsetDelta + 1`, the first equals the segment base offset.
//!
//! The active segment is mapped for its whole `segment_bytes` and appended to with `pwrite`, while
//! its file grows a reserved chunk at a time ahead of the writes, from the first append on (see
//! [`crate::mmap`]): creating or reopening an active segment needs no free disk space, so a
//! partition opens on a full disk and only its appends fail until space is freed; the bytes
//! after the logical end are zeros, which recovery recognises as the end (a zero `batchLength` is
//! invalid). On roll the file is truncated to its logical size and mapped again at that size. Reads
//! return [`Bytes`] pointing into the mapping (see [`crate::mmap`] for why that is sound).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use inlet_protocol::batch::{BatchHeader, BatchIter};

use crate::error::{IoContext, StorageError};
use crate::index::{points_at_batch, OffsetIndex, TimeIndex};
use crate::mmap::{is_out_of_space, MapWriter, MappedFile};
use crate::scan::{scan, Scan, Tracker};

/// `<dir>/<base offset, 20 digits>.<ext>`.
pub fn segment_path(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// Index entries checked against the log when a closed segment is opened, besides the first
/// and the last (see [`OffsetIndex::matches_log`], [`TimeIndex::matches_log`]).
const INDEX_SAMPLES: usize = 32;

/// What opening a closed segment found wrong with its bytes, and what was done about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Length of the valid prefix that was kept: where the damage starts.
    pub position: usize,
    /// Length of the file as found.
    pub file_len: usize,
    pub reason: String,
    /// Where the original file was kept for an operator to inspect.
    pub set_aside: PathBuf,
}

/// One segment of a partition log.
///
/// Only the active segment holds its `.log` file open; a closed one reads through its mapping,
/// which needs no file descriptor, so a partition's open files do not grow with its segments.
#[derive(Debug)]
pub struct Segment {
    dir: PathBuf,
    /// The open `.log` file: `Some` only while the segment is active.
    file: Option<File>,
    map: Arc<MappedFile>,
    /// `Some` while this is the active (writable) segment.
    writer: Option<MapWriter>,
    offset_index: OffsetIndex,
    /// Replaces `offset_index` once a lookup found it pointing at no batch (see
    /// `lookup_position`); built at most once, from the log itself.
    healed_index: OnceLock<OffsetIndex>,
    time_index: TimeIndex,
    tracker: Tracker,
    /// Wall-clock creation time (ms), for time-based rolls of segments with no timestamps yet.
    pub created_ms: i64,
    /// Bytes known to be on disk (active), or whether a closed file still needs a sync.
    flushed: usize,
    needs_sync: bool,
    /// Pages below this were released and not written since (see `release_idle_pages`).
    released_upto: usize,
    /// A read faulted pages in since the last release.
    read_since_release: AtomicBool,
}

impl Segment {
    /// Creates a new, empty active segment of up to `capacity` bytes. Its files start empty:
    /// disk is reserved by the appends (see [`crate::mmap::MapWriter`]).
    pub fn create(
        dir: &Path,
        base_offset: i64,
        capacity: usize,
        interval: usize,
        now_ms: i64,
    ) -> Result<Segment, StorageError> {
        let path = segment_path(dir, base_offset, "log");
        // Never truncate an existing file in place: a reader may still map it. Unlink it (its
        // mappings keep the old inode) and create a new one.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(e).context(|| format!("replacing {}", path.display()));
            }
            _ => {}
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .context(|| format!("creating {}", path.display()))?;
        let scan = scan(&[], base_offset, interval, false);
        Segment::activate(dir, file, scan, capacity, now_ms)
    }

    /// Reopens the existing `.log` at `base_offset` as the active segment, keeping its first
    /// `scan.valid_len` bytes (the rest is cut off) and rebuilding its indexes from `scan`.
    pub fn open_active(
        dir: &Path,
        scan: Scan,
        capacity: usize,
        now_ms: i64,
    ) -> Result<Segment, StorageError> {
        let path = segment_path(dir, scan.tracker.base_offset, "log");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .context(|| format!("opening {}", path.display()))?;
        file.set_len(scan.valid_len as u64)
            .context(|| format!("truncating {}", path.display()))?;
        Segment::activate(dir, file, scan, capacity, now_ms)
    }

    fn activate(
        dir: &Path,
        file: File,
        scan: Scan,
        capacity: usize,
        now_ms: i64,
    ) -> Result<Segment, StorageError> {
        let base = scan.tracker.base_offset;
        let path = segment_path(dir, base, "log");
        let map_len = capacity.max(scan.valid_len);
        let writer = MappedFile::writable(&file, map_len, scan.valid_len)
            .context(|| format!("mapping {}", path.display()))?;
        let (offset_index, time_index) = write_indexes(dir, base, &scan, "writing")?;
        Ok(Segment {
            dir: dir.to_path_buf(),
            file: Some(file),
            map: Arc::clone(writer.map()),
            writer: Some(writer),
            offset_index,
            healed_index: OnceLock::new(),
            time_index,
            tracker: scan.tracker,
            created_ms: now_ms,
            flushed: scan.valid_len,
            // The file was created or cut: its metadata needs a sync.
            needs_sync: true,
            released_upto: 0,
            read_since_release: AtomicBool::new(false),
        })
    }

    /// Opens a closed segment. Unless `verify` is set, trusts its index files if they are
    /// consistent, sampled entries match the log, and the batches after the last indexed
    /// position end exactly at the end of the file. Otherwise walks the whole file (with CRC
    /// checks) and rebuilds the indexes from the walk.
    ///
    /// Bytes after the last valid batch are cut. Zeros there are an unfinished preallocation
    /// and simply dropped; anything else is damage: the original file is kept as
    /// `<base>.log.corrupt` (see [`set_aside`]) and returned as [`Damage`]. Only this
    /// segment's bytes from the damage on are affected; what the caller does about the offsets
    /// they held is its business (recovery keeps later segments, see [`crate::recovery`]).
    pub fn open_closed(
        dir: &Path,
        base_offset: i64,
        interval: usize,
        verify: bool,
        now_ms: i64,
    ) -> Result<Segment, StorageError> {
        Segment::recover_closed(dir, base_offset, interval, verify, now_ms).map(|(s, _)| s)
    }

    /// [`Segment::open_closed`], also saying what damage was found (already logged).
    pub fn recover_closed(
        dir: &Path,
        base_offset: i64,
        interval: usize,
        verify: bool,
        now_ms: i64,
    ) -> Result<(Segment, Option<Damage>), StorageError> {
        let path = segment_path(dir, base_offset, "log");
        let ctx = || format!("opening {}", path.display());
        // The mapping is all a closed segment reads through; the descriptor is closed at once.
        let map = MappedFile::read_only(&File::open(&path).context(ctx)?).context(ctx)?;
        if !verify {
            if let Some(segment) =
                Segment::closed_from_indexes(dir, &map, base_offset, interval, now_ms)?
            {
                return Ok((segment, None));
            }
        }
        let scan = scan(map.bytes(), base_offset, interval, true);
        let mut damage = None;
        if let Some(rest) = map.bytes().get(scan.valid_len..).filter(|r| !r.is_empty()) {
            let reason = scan.stopped.clone().unwrap_or_default();
            if rest.iter().all(|&b| b == 0) {
                tracing::info!(segment = %path.display(), valid_len = scan.valid_len,
                    dropped = rest.len(), "dropping preallocated zeros after a closed segment");
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(scan.valid_len as u64))
                    .context(ctx)?;
            } else {
                let aside = set_aside(&path, &map.bytes()[..scan.valid_len], now_ms)
                    .context(|| format!("setting aside damaged {}", path.display()))?;
                tracing::warn!(segment = %path.display(), position = scan.valid_len,
                    file_len = map.bytes().len(), %reason, set_aside = %aside.display(),
                    "damaged closed segment: keeping its valid prefix, original set aside");
                damage = Some(Damage {
                    position: scan.valid_len,
                    file_len: map.bytes().len(),
                    reason,
                    set_aside: aside,
                });
            }
        }
        drop(map);
        let map = MappedFile::read_only(&File::open(&path).context(ctx)?).context(ctx)?;
        let idx = |e| format!("rebuilding {e} of segment {base_offset}");
        let (mut offset_index, mut time_index) =
            write_indexes(dir, base_offset, &scan, "rebuilding")?;
        if let Some((t, o)) = scan.tracker.final_time_entry() {
            time_index.maybe_append(t, o);
        }
        // On a full disk the entries stay in memory and the next flush writes them.
        keep_if_out_of_space(offset_index.freeze(), base_offset).context(|| idx("offset index"))?;
        keep_if_out_of_space(time_index.freeze(), base_offset).context(|| idx("time index"))?;
        let segment = Segment {
            dir: dir.to_path_buf(),
            file: None,
            map,
            writer: None,
            offset_index,
            healed_index: OnceLock::new(),
            time_index,
            tracker: scan.tracker,
            created_ms: now_ms,
            flushed: scan.valid_len,
            // Rebuilt index files are written but not synced.
            needs_sync: true,
            released_upto: 0,
            read_since_release: AtomicBool::new(false),
        };
        Ok((segment, damage))
    }

    fn closed_from_indexes(
        dir: &Path,
        map: &Arc<MappedFile>,
        base: i64,
        interval: usize,
        now_ms: i64,
    ) -> Result<Option<Segment>, StorageError> {
        let bytes = map.bytes();
        let ctx = || format!("reading indexes of segment {base}");
        let Some(offset_index) =
            OffsetIndex::open(&segment_path(dir, base, "index"), bytes.len()).context(ctx)?
        else {
            return Ok(None);
        };
        if !offset_index.matches_log(bytes, base, INDEX_SAMPLES) {
            tracing::warn!(segment = base, dir = %dir.display(),
                "offset index does not match the log; rebuilding it");
            return Ok(None);
        }
        // Walk from the last indexed batch to the end: it must land exactly on the file end.
        let (rel, pos) = offset_index.last().unwrap_or((0, 0));
        let tail = scan(
            &bytes[pos as usize..],
            base + i64::from(rel),
            usize::MAX,
            false,
        );
        if tail.stopped.is_some()
            || tail.tracker.next_offset == base + i64::from(rel) && !bytes.is_empty()
        {
            return Ok(None);
        }
        let relative_end = (tail.tracker.next_offset - base) as u64;
        let Some(time_index) =
            TimeIndex::open(&segment_path(dir, base, "timeindex"), relative_end).context(ctx)?
        else {
            return Ok(None);
        };
        if !time_index.matches_log(&offset_index, bytes, base, INDEX_SAMPLES) {
            tracing::warn!(segment = base, dir = %dir.display(),
                "time index does not match the log; rebuilding the indexes");
            return Ok(None);
        }
        let mut tracker = Tracker::new(base, interval);
        tracker.next_offset = tail.tracker.next_offset;
        tracker.first_batch_timestamp = BatchHeader::parse(bytes).ok().map(|h| h.max_timestamp);
        let (ts, ts_rel) = time_index.last().unwrap_or((-1, 0));
        tracker.max_timestamp = ts.max(tail.tracker.max_timestamp);
        tracker.max_timestamp_offset = if ts >= tail.tracker.max_timestamp {
            base + i64::from(ts_rel)
        } else {
            tail.tracker.max_timestamp_offset
        };
        Ok(Some(Segment {
            dir: dir.to_path_buf(),
            file: None,
            map: Arc::clone(map),
            writer: None,
            offset_index,
            healed_index: OnceLock::new(),
            time_index,
            tracker,
            created_ms: now_ms,
            flushed: bytes.len(),
            needs_sync: false,
            released_upto: 0,
            read_since_release: AtomicBool::new(false),
        }))
    }

    pub fn base_offset(&self) -> i64 {
        self.tracker.base_offset
    }
    /// Offset after the last batch (the base offset when empty).
    pub fn next_offset(&self) -> i64 {
        self.tracker.next_offset
    }
    pub fn size(&self) -> usize {
        self.map.committed()
    }
    pub fn is_empty(&self) -> bool {
        self.size() == 0
    }
    pub fn is_active(&self) -> bool {
        self.writer.is_some()
    }
    /// Largest batch max timestamp, -1 if empty.
    pub fn max_timestamp(&self) -> i64 {
        self.tracker.max_timestamp
    }
    pub fn first_batch_timestamp(&self) -> Option<i64> {
        self.tracker.first_batch_timestamp
    }
    /// Free bytes in the active segment's mapping (0 for a closed one).
    pub fn remaining(&self) -> usize {
        self.writer.as_ref().map_or(0, MapWriter::remaining)
    }
    /// The committed batches, for header walks.
    pub fn bytes(&self) -> &[u8] {
        self.map.bytes()
    }

    /// Appends one validated batch; `header.base_offset` (this segment's next offset) and
    /// `header.partition_leader_epoch` are stamped into the stored copy.
    pub fn append(&mut self, batch: &[u8], header: &BatchHeader) -> Result<(), StorageError> {
        self.append_batches(batch, &[(*header, 0..batch.len())])
    }

    /// Appends the validated batches of one request (`records`, whose `batches` ranges cover it
    /// back to back) as one write: all of them or, if the write fails, none (see
    /// [`MapWriter::append_patched_at`]). Each header's `base_offset` and
    /// `partition_leader_epoch` are stamped into the stored copy.
    pub fn append_batches(
        &mut self,
        records: &[u8],
        batches: &[(BatchHeader, std::ops::Range<usize>)],
    ) -> Result<(), StorageError> {
        let position = self.size();
        let base = self.base_offset();
        let writer = self.writer.as_mut().ok_or_else(|| StorageError::Io {
            context: format!("appending to closed segment {base}"),
            source: io::Error::other("segment is closed"),
        })?;
        let Some(end) = batches.last().map(|(_, range)| range.end) else {
            return Ok(());
        };
        let starts: Vec<usize> = batches.iter().map(|(_, range)| range.start).collect();
        let stamp = |i: usize, copy: &mut [u8]| {
            let header = &batches[i].0;
            if let Some(field) = copy.get_mut(0..8) {
                field.copy_from_slice(&header.base_offset.to_be_bytes());
            }
            if let Some(field) = copy.get_mut(12..16) {
                field.copy_from_slice(&header.partition_leader_epoch.to_be_bytes());
            }
        };
        writer
            .append_patched_at(&records[..end], &starts, stamp)
            .context(|| format!("appending to segment {base}"))?;
        for (header, range) in batches {
            let entries = self.tracker.observe(position + range.start, header);
            if let Some((o, p)) = entries.offset {
                self.offset_index.append(o, p);
            }
            if let Some((t, o)) = entries.time {
                self.time_index.maybe_append(t, o);
            }
        }
        Ok(())
    }

    /// The immutable contents of a closed, non-empty segment, for copying to the lake without
    /// holding the log. The batches are shared with the mapping, not copied.
    pub fn closed_copy(&self) -> Option<crate::tier::ClosedSegment> {
        if self.is_active() || self.is_empty() {
            return None;
        }
        Some(crate::tier::ClosedSegment {
            base_offset: self.base_offset(),
            last_offset: self.next_offset() - 1,
            max_timestamp: self.max_timestamp(),
            log: self.map.slice(0..self.size())?,
            offset_index: Bytes::copy_from_slice(self.offset_index().entry_bytes()),
            time_index: Bytes::copy_from_slice(self.time_index.entry_bytes()),
            aborted: Vec::new(),
        })
    }

    /// [`closed_copy`](Self::closed_copy) of the part from `offset` on, for a lake whose end is
    /// inside this segment (a new leader's segments need not start where the old leader's did).
    /// `offset` must be where a batch starts, as it is on every replica below the high watermark;
    /// otherwise (or if the segment does not hold `offset`) there is nothing to copy. The indexes
    /// are re-based on the copy's start, and the max timestamp is the copied batches'.
    pub fn closed_copy_from(&self, offset: i64) -> Option<crate::tier::ClosedSegment> {
        let base = self.base_offset();
        if offset <= base {
            return self.closed_copy();
        }
        if self.is_active() || offset >= self.next_offset() {
            return None;
        }
        let pos = self.find_position(offset).ok()??;
        let header = BatchHeader::parse(&self.bytes()[pos..]).ok()?;
        if header.base_offset != offset {
            tracing::warn!(
                segment = base,
                offset,
                batch = header.base_offset,
                "the lake ends inside a batch of this segment; not copying it"
            );
            return None;
        }
        let delta = u32::try_from(offset - base).ok()?;
        let cut = u32::try_from(pos).ok()?;
        let mut max_timestamp = -1;
        for item in BatchIter::new(self.bytes().get(pos..).unwrap_or_default()) {
            let (h, _) = item.ok()?;
            max_timestamp = max_timestamp.max(h.max_timestamp);
        }
        let mut offset_index = Vec::new();
        for e in self.offset_index().entry_bytes().chunks_exact(8) {
            let rel = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            let at = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
            if at >= cut && rel >= delta {
                offset_index.extend_from_slice(&(rel - delta).to_be_bytes());
                offset_index.extend_from_slice(&(at - cut).to_be_bytes());
            }
        }
        let mut time_index = Vec::new();
        for e in self.time_index.entry_bytes().chunks_exact(12) {
            let rel = u32::from_be_bytes([e[8], e[9], e[10], e[11]]);
            if rel >= delta {
                time_index.extend_from_slice(&e[..8]);
                time_index.extend_from_slice(&(rel - delta).to_be_bytes());
            }
        }
        Some(crate::tier::ClosedSegment {
            base_offset: offset,
            last_offset: self.next_offset() - 1,
            max_timestamp,
            log: self.map.slice(pos..self.size())?,
            offset_index: Bytes::from(offset_index),
            time_index: Bytes::from(time_index),
            aborted: Vec::new(),
        })
    }

    /// Byte position of the batch containing `offset`, if this segment holds it.
    pub fn find_position(&self, offset: i64) -> Result<Option<usize>, StorageError> {
        if offset < self.base_offset() || offset >= self.next_offset() {
            return Ok(None);
        }
        let rel = (offset - self.base_offset()) as u32;
        self.first_batch_from(self.lookup_position(rel), |h| h.last_offset() >= offset)
    }

    /// The offset index in use: the one on disk, or the one rebuilt from the log after a lookup
    /// found the disk one wrong.
    fn offset_index(&self) -> &OffsetIndex {
        self.healed_index.get().unwrap_or(&self.offset_index)
    }

    /// Position of the indexed batch at or before relative offset `rel` (0 without one).
    ///
    /// The entry used is checked to name a batch starting at its position with its offset (one
    /// header read, which the walk that follows needs anyway). If it does not, the index is not
    /// trusted again: it is rebuilt from the log once, in memory and on disk, so a bad entry
    /// that the sampling at open missed costs one walk, not a failed read on every fetch.
    fn lookup_position(&self, rel: u32) -> usize {
        let Some((entry_rel, pos)) = self.offset_index().lookup(rel) else {
            return 0;
        };
        if points_at_batch(self.bytes(), self.base_offset(), entry_rel, pos) {
            return pos as usize;
        }
        let base = self.base_offset();
        tracing::warn!(segment = base, dir = %self.dir.display(), entry_offset = entry_rel,
            entry_position = pos, "offset index entry names no batch; not trusting the index");
        if self.is_active() {
            // The active index is built by the appends themselves and still growing: never
            // replaced under them. Walking from the start is slow but right.
            return 0;
        }
        let healed = self.healed_index.get_or_init(|| {
            let walk = scan(self.bytes(), base, self.tracker.interval(), false);
            let path = segment_path(&self.dir, base, "index");
            let entries = &walk.offset_entries;
            match OffsetIndex::create(&path, entries).and_then(|mut i| i.freeze().map(|()| i)) {
                Ok(index) => index,
                Err(error) => {
                    tracing::warn!(segment = base, %error,
                        "cannot rewrite the offset index; keeping the rebuilt one in memory");
                    OffsetIndex::in_memory(entries)
                }
            }
        });
        match healed.lookup(rel) {
            Some((r, p)) if points_at_batch(self.bytes(), base, r, p) => p as usize,
            _ => 0,
        }
    }

    /// Walks batches from `start` and returns the position of the first one matching `want`.
    fn first_batch_from(
        &self,
        start: usize,
        want: impl Fn(&BatchHeader) -> bool,
    ) -> Result<Option<usize>, StorageError> {
        let bytes = self.bytes();
        for item in BatchIter::new(bytes.get(start..).unwrap_or_default()) {
            let (header, range) = item.map_err(|e| StorageError::CorruptBatch {
                position: start,
                reason: format!("in segment {}: {e}", self.base_offset()),
            })?;
            if want(&header) {
                return Ok(Some(start + range.start));
            }
        }
        Ok(None)
    }

    /// Whole batches from `position`: the first always, then more while the total fits `max_bytes`.
    pub fn read_at(&self, position: usize, max_bytes: usize) -> Bytes {
        self.read_since_release.store(true, Ordering::Relaxed);
        let bytes = self.bytes();
        let mut end = position;
        for item in BatchIter::new(bytes.get(position..).unwrap_or_default()) {
            let Ok((_, range)) = item else { break };
            if end > position && range.end > max_bytes {
                break;
            }
            end = position + range.end;
        }
        self.map.slice(position..end).unwrap_or_default()
    }

    /// The first record at or after offset `from` with a timestamp `>= timestamp`, as Kafka's
    /// `findOffsetByTimestamp(timestamp, startingOffset)`: the batch is found by its max
    /// timestamp, then its records (decompressed if need be) are searched. A LogAppendTime batch's records all carry the batch's time. Returns (offset,
    /// timestamp, the batch's leader epoch).
    pub fn record_for_timestamp(
        &self,
        timestamp: i64,
        from: i64,
    ) -> Result<Option<(i64, i64, i32)>, StorageError> {
        if self.max_timestamp() < timestamp || self.next_offset() <= from {
            return Ok(None);
        }
        let by_time = match self.time_index.last_before(timestamp) {
            Some((_, rel)) => self.lookup_position(rel),
            None => 0,
        };
        // Records below `from` (a DeleteRecords start) are not candidates: start at its batch.
        let by_offset = match u32::try_from(from.saturating_sub(self.base_offset())) {
            Ok(rel) if from > self.base_offset() => self.lookup_position(rel),
            _ => 0,
        };
        let mut start = by_time.max(by_offset);
        // A batch whose only records at the time are below `from` answers nothing: go on.
        while let Some(pos) = self.first_batch_from(start, |h| {
            h.max_timestamp >= timestamp && h.last_offset() >= from
        })? {
            let Ok(header) = BatchHeader::parse(&self.bytes()[pos..]) else {
                return Ok(None);
            };
            let end = pos.saturating_add(header.total_len()).min(self.size());
            let batch = self.map.slice(pos..end).unwrap_or_default();
            if let Some((offset, at)) = record_at_timestamp(&header, &batch, timestamp, from) {
                return Ok(Some((offset, at, header.partition_leader_epoch)));
            }
            start = end;
        }
        Ok(None)
    }

    /// Makes the active segment read-only: writes the final time-index entry, maps the indexes
    /// read-only, cuts the reserved tail, maps the file read-only and drops the writer. Does not
    /// sync (see `flush`).
    ///
    /// The steps that need disk space (the index entries) come first, and the writer goes last:
    /// on a full disk a failed freeze leaves the segment active and whole, and the roll that
    /// asked for it is simply tried again by a later append.
    pub fn freeze(&mut self) -> Result<(), StorageError> {
        if self.writer.is_none() {
            return Ok(());
        }
        let base = self.base_offset();
        let ctx = || format!("closing segment {base}");
        let size = self.size();
        if let Some((t, o)) = self.tracker.final_time_entry() {
            self.time_index.maybe_append(t, o);
        }
        self.offset_index.freeze().context(ctx)?;
        self.time_index.freeze().context(ctx)?;
        // No sync here (rolls must stay fast): written pages stay dirty in the page cache after
        // the mapping is replaced, and the next `flush` fsyncs the file. Cutting the file needs
        // no free space. The descriptor is dropped: a closed segment reads through its mapping.
        if let Some(file) = self.file.take() {
            file.set_len(size as u64).context(ctx)?;
            self.map = MappedFile::read_only(&file).context(ctx)?;
        }
        self.writer = None;
        self.flushed = size;
        self.needs_sync = true;
        Ok(())
    }

    /// Written but unflushed bytes, with the mapping they live in, so a caller can write them
    /// back without holding the log (see `prepare_flush`): the active segment's new bytes,
    /// or all of a segment closed since the last flush (syncing a shared mapping's range writes
    /// back the file's dirty pages in it, however they were written). The fsync a later `flush`
    /// still does then finds the data clean.
    pub fn unflushed(&self) -> Option<(Arc<MappedFile>, std::ops::Range<usize>)> {
        let size = self.size();
        let range = if self.writer.is_some() {
            self.flushed..size
        } else if self.needs_sync {
            0..size
        } else {
            return None;
        };
        (!range.is_empty()).then(|| (Arc::clone(&self.map), range))
    }

    /// The first step of a flush without the log's lock (see `log_flush.rs`): writes pending
    /// index entries to their files and says what to write back and sync.
    pub fn prepare_flush(&mut self) -> Result<SegmentFlush, StorageError> {
        let base = self.base_offset();
        let ctx = || format!("flushing segment {base}");
        let indexes = [
            self.offset_index.prepare_sync().context(ctx)?,
            self.time_index.prepare_sync().context(ctx)?,
        ];
        Ok(SegmentFlush {
            base,
            size: self.size(),
            closed: self.writer.is_none(),
            data: self.unflushed(),
            indexes,
        })
    }

    /// The last step: records what `flush` wrote back and synced (nothing written since counts).
    pub fn finish_flush(&mut self, done: &SegmentFlush) {
        if self.writer.is_some() {
            self.flushed = self.flushed.max(done.size.min(self.size()));
        } else if done.closed && done.size == self.size() {
            self.needs_sync = false;
        }
        let [offsets, times] = &done.indexes;
        if let Some((_, mark)) = offsets {
            self.offset_index.synced(*mark);
        }
        if let Some((_, mark)) = times {
            self.time_index.synced(*mark);
        }
    }

    /// Whether every byte and index entry of this closed segment is on disk.
    pub fn is_synced_closed(&self) -> bool {
        self.writer.is_none() && !self.needs_sync
    }

    /// Writes data and indexes durably to disk.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        let base = self.base_offset();
        let ctx = || format!("flushing segment {base}");
        let size = self.size();
        if self.writer.is_some() {
            self.map.flush_range(self.flushed..size).context(ctx)?;
        }
        if self.needs_sync {
            match &self.file {
                Some(file) => file.sync_all().context(ctx)?,
                // A closed segment holds no descriptor: open one just for the sync (fsync
                // writes back the file's dirty pages whichever descriptor asks).
                None => sync_path(&segment_path(&self.dir, base, "log")).context(ctx)?,
            }
        }
        self.flushed = size;
        self.needs_sync = false;
        self.offset_index.flush().context(ctx)?;
        self.time_index.flush().context(ctx)
    }

    /// Stops holding idle pages resident: all of a closed segment, all but the last
    /// `keep_tail` flushed bytes of the active one (the tail consumers are reading). Only what
    /// was written or read since the last call is touched, so calling it often is cheap.
    pub fn release_idle_pages(&mut self, keep_tail: usize) -> Result<(), StorageError> {
        let end = if self.writer.is_some() {
            self.flushed.saturating_sub(keep_tail)
        } else {
            self.size()
        };
        let start = if self.read_since_release.swap(false, Ordering::Relaxed) {
            0
        } else {
            self.released_upto.min(end)
        };
        let base = self.base_offset();
        self.map
            .release_pages(start..end)
            .context(|| format!("releasing pages of segment {base}"))?;
        self.released_upto = self.released_upto.max(end);
        Ok(())
    }

    /// Writes the first `len` bytes to a temp file and renames it over this segment's `.log`.
    /// Readers keep the old inode through their mappings, so no mapped byte is ever changed.
    pub fn copy_prefix(&self, len: usize) -> Result<(), StorageError> {
        let path = segment_path(&self.dir, self.base_offset(), "log");
        let tmp = path.with_extension("log.tmp");
        let ctx = || format!("rewriting {} to {len} bytes", path.display());
        let mut file = File::create(&tmp).context(ctx)?;
        file.write_all(&self.bytes()[..len.min(self.size())])
            .context(ctx)?;
        file.sync_all().context(ctx)?;
        std::fs::rename(&tmp, &path).context(ctx)?;
        sync_dir(&self.dir).context(ctx)
    }

    /// Removes the segment's files. Open readers keep their mapping alive.
    pub fn delete(self) -> Result<(), StorageError> {
        // The transaction index goes with its segment (retention, truncation, compaction).
        for ext in ["log", "index", "timeindex", crate::txn_index::EXTENSION] {
            let path = segment_path(&self.dir, self.base_offset(), ext);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(e).context(|| format!("deleting {}", path.display()));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Writes the index files of segment `base` with the entries `scan` found. Indexes are derived
/// data, so a full disk does not stop a segment (and the broker) from opening: the files are
/// then created empty (which needs no data blocks) and the entries kept in memory, as pending
/// appends that the next flush writes once there is room. An empty or short index on disk is
/// only slower to use, never wrong: lookups walk forward from the last entry they find.
fn write_indexes(
    dir: &Path,
    base: i64,
    scan: &Scan,
    what: &str,
) -> Result<(OffsetIndex, TimeIndex), StorageError> {
    let offset_path = segment_path(dir, base, "index");
    let time_path = segment_path(dir, base, "timeindex");
    let full = match (
        OffsetIndex::create(&offset_path, &scan.offset_entries),
        TimeIndex::create(&time_path, &scan.time_entries),
    ) {
        (Ok(offsets), Ok(times)) => return Ok((offsets, times)),
        (Err(e), _) | (_, Err(e)) if !is_out_of_space(&e) => {
            return Err(e).context(|| format!("{what} indexes of segment {base}"));
        }
        (Err(e), _) | (_, Err(e)) => e,
    };
    tracing::warn!(segment = base, dir = %dir.display(), error = %full,
        "no space for index files: keeping the entries in memory until a flush has room");
    let ctx = || format!("{what} empty indexes of segment {base}");
    let mut offsets = OffsetIndex::create(&offset_path, &[]).context(ctx)?;
    for &(o, p) in &scan.offset_entries {
        offsets.append(o, p);
    }
    let mut times = TimeIndex::create(&time_path, &[]).context(ctx)?;
    for &(t, o) in &scan.time_entries {
        times.maybe_append(t, o);
    }
    Ok((offsets, times))
}

/// `Ok` when `result` failed only for lack of disk space (the caller keeps its state in memory).
fn keep_if_out_of_space(result: io::Result<()>, base: i64) -> io::Result<()> {
    match result {
        Err(e) if is_out_of_space(&e) => {
            tracing::warn!(segment = base, error = %e, "index entries stay in memory until a flush has room");
            Ok(())
        }
        other => other,
    }
}

/// Syncs the file at `path`; a file deleted meanwhile (retention, truncation) needs no sync.
fn sync_path(path: &Path) -> io::Result<()> {
    match File::open(path) {
        Ok(file) => file.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Keeps the damaged segment file at `path` as `<base>.log.corrupt` (or
/// `<base>.log.corrupt.<now_ms>` if that exists) and puts a copy of its valid prefix `valid` in
/// its place. The original is hard-linked aside before the prefix is renamed over `.log`, so a
/// crash at any point leaves a whole `.log` (original or cut); recovery never reads the
/// `.corrupt` file, which stays until an operator removes it. Returns the set-aside path.
pub fn set_aside(path: &Path, valid: &[u8], now_ms: i64) -> io::Result<PathBuf> {
    let aside = aside_path(path, now_ms);
    let tmp = path.with_extension("log.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(valid)?;
    file.sync_all()?;
    std::fs::hard_link(path, &aside)?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(aside)
}

/// A name for a set-aside copy of the segment file `path` that does not exist yet:
/// `<base>.log.corrupt`, else `<base>.log.corrupt.<now_ms>`. Recovery lists only `<base>.log`
/// files, so set-aside files are never read back.
pub fn aside_path(path: &Path, now_ms: i64) -> PathBuf {
    let aside = path.with_extension("log.corrupt");
    if aside.exists() {
        path.with_extension(format!("log.corrupt.{now_ms}"))
    } else {
        aside
    }
}

/// What one segment's flush writes back and syncs without the log's lock
/// ([`Segment::prepare_flush`]).
#[derive(Debug)]
pub struct SegmentFlush {
    pub base: i64,
    size: usize,
    closed: bool,
    /// Dirty data: the active segment's new bytes, or all of a segment closed since the last
    /// flush.
    pub data: Option<(Arc<MappedFile>, std::ops::Range<usize>)>,
    /// Index files (offset, time) with unsynced writes, and the mark of those writes.
    pub indexes: [Option<(PathBuf, u64)>; 2],
}

/// Makes renames and deletions in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// In a batch whose max timestamp is `>= timestamp`, the first record at or after `timestamp`
/// whose offset is at least `from` (a DeleteRecords start inside the batch): `(offset, its
/// timestamp)`, `None` if the only such records are below `from`. A LogAppendTime batch's records
/// all carry the batch's time; a batch that cannot be decoded (or whose records contradict its
/// max timestamp) answers with its first offset from `from` and its max timestamp.
pub(crate) fn record_at_timestamp(
    header: &BatchHeader,
    batch: &Bytes,
    timestamp: i64,
    from: i64,
) -> Option<(i64, i64)> {
    if header.last_offset() < from {
        return None;
    }
    let whole = Some((header.base_offset.max(from), header.max_timestamp));
    if header.is_log_append_time() {
        return whole;
    }
    let Ok((_, records)) = inlet_protocol::records::decode_batch(batch) else {
        return whole;
    };
    let found = records.iter().find_map(|r| {
        let at = header.base_timestamp.saturating_add(r.timestamp_delta);
        let offset = header.base_offset + i64::from(r.offset_delta);
        (at >= timestamp && offset >= from).then_some((offset, at))
    });
    found.or(if header.base_offset >= from {
        whole
    } else {
        None
    })
}
