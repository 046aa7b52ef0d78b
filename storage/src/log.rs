//! The partition log: an ordered list of [`Segment`]s, the last one active.
//!
//! On-disk layout of a partition directory:
//!
//! ```text
//! <dir>/00000000000000000000.log        batches, see `segment`
//! <dir>/00000000000000000000.index      offset index, see `index`
//! <dir>/00000000000000000000.timeindex  time index, see `index`
//! <dir>/00000000000000012345.log        next segment: base offset = previous segment's end
//! ...
//! <dir>/00000000000000000000.log.corrupt a damaged segment's original bytes, set aside by
//!                                       recovery for an operator; never read back
//! <dir>/.clean_shutdown                 empty; present only between `close` and the next `open`
//! <dir>/leader-epoch-checkpoint         leader epochs, see `leader_epoch` and `log_replica`
//! <dir>/high-watermark                  the high watermark, see `log_replica`
//! <dir>/log-start-offset                where DeleteRecords moved the start, see `log_start`
//! ```
//!
//! Invariants kept here:
//! * segments are sorted by base offset and offsets strictly increase: each base offset is at
//!   or above the previous segment's next offset. Every write path (append, roll, truncation,
//!   compaction, retention) keeps segments contiguous, so offsets are dense from
//!   `log_start_offset` to `log_end_offset` unless recovery found damage: a segment cut to its
//!   valid prefix (see [`crate::recovery`]) leaves a gap before the next segment, which is kept.
//!   A read at an offset in a gap returns the batches from the next segment's base on, as
//!   Kafka's fetch skips forward; appends always continue at the log end;
//! * only the last segment may be active (writable); if it is closed (after a truncation or
//!   recovery), the next append rolls a new one;
//! * an append is validated completely before anything is written, so a rejected append leaves
//!   the log untouched;
//! * bytes handed to readers are never modified: truncation into a segment rewrites the kept
//!   prefix into a new file (see [`Segment::copy_prefix`]) instead of shrinking a mapped one.
//!
//! The log is not internally synchronized; the broker wraps it in a mutex. Every call is short
//! and does no disk sync, except `flush`, `close`, `truncate_to` (rare, replication only) and
//! an append that starts a new leader epoch (its checkpoint, once per epoch).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use inlet_protocol::batch::BatchHeader;
use inlet_protocol::record_walk::RecordWalker;

use crate::append::{validate_for_append, AppendOutcome, ValidatedRequest};
use crate::compaction::{self, CompactionOutcome};
use crate::config::LogConfig;
use crate::error::{IoContext, StorageError};
use crate::leader_epoch::LeaderEpochCache;
use crate::producer_state::{BatchMetadata, ProducerStateTable, SequenceCheck};
use crate::recovery::{self, rebuild_producers, CLEAN_SHUTDOWN_FILE};
use crate::retention::{segments_to_delete, RetentionOutcome, SegmentFacts};
use crate::scan::scan;
use crate::segment::{sync_dir, Segment};
use crate::snapshot;
use crate::tier::LakeExtent;

/// Special `offset_for_timestamp` arguments, as in Kafka's ListOffsets.
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;
/// Kafka's `ListOffsetsRequest.MAX_TIMESTAMP` (ListOffsets v7, KIP-734): the record with the
/// largest timestamp.
pub const MAX_TIMESTAMP: i64 = -3;

/// Answer to [`Log::offset_for_timestamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// Timestamp of the found record (-1 for the special EARLIEST/LATEST queries).
    pub timestamp: i64,
    pub offset: i64,
}

/// One partition's log.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// Sorted, offsets strictly increasing (contiguous unless recovery found damage), never
    /// empty.
    segments: Vec<Segment>,
    /// Segments recovery found damaged when this log was opened.
    damaged_at_open: usize,
    producers: ProducerStateTable,
    unflushed_messages: u64,
    last_flush_ms: i64,
    /// Files were created or removed since the directory was last synced.
    dir_dirty: bool,
    /// Last value written to the recovery-point file: every closed segment below it is synced.
    recovery_point: i64,
    /// What the lake holds: offsets below its end may be deleted by local retention.
    lake_extent: LakeExtent,
    /// Reused by every append's record walk.
    walker: RecordWalker,
    /// Leader epochs of the batches (see `log_replica.rs`); `epochs_dirty`: not yet checkpointed.
    epochs: LeaderEpochCache,
    epochs_dirty: bool,
    /// Within `[log_start_offset, log_end_offset]`; `high_watermark_written`: the value in
    /// its checkpoint file.
    high_watermark: i64,
    high_watermark_written: Option<i64>,
    /// The aborted-transaction index of every segment (see `txn_index`).
    txn_index: crate::txn_index::TxnIndexes,
    /// Transactions whose marker is not yet below the high watermark: until it is, the LSO
    /// stays at their first offset (a new leader without the marker would have them open).
    unreplicated_txns: Vec<crate::txn::CompletedTxn>,
    /// No record below it is served (DeleteRecords; see `log_start.rs`); at most the log end.
    start_floor: i64,
}

fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A batch that repeats `original` where a retry cannot be answered with its offsets.
fn out_of_order_retry(header: &BatchHeader, original: &BatchMetadata) -> StorageError {
    StorageError::OutOfOrderSequence {
        producer_id: header.producer_id,
        expected: original.last_seq.wrapping_add(1),
        received: header.base_sequence,
    }
}

fn corrupt(position: usize, reason: impl Into<String>) -> StorageError {
    StorageError::CorruptBatch {
        position,
        reason: reason.into(),
    }
}

impl Log {
    /// Opens (creating if missing) the partition directory `dir` and recovers it. One `Log`
    /// per directory: two open logs on the same directory would truncate each other's files.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Log, StorageError> {
        let now = wall_clock_ms();
        compaction::finish_interrupted(dir)?;
        let recovered = recovery::recover(dir, &config, now)?;
        let replica = replica::ReplicaState::load(dir, &recovered.segments);
        let (txn_index, unreplicated_txns) = txn::load_txn_state(
            dir,
            &recovered.segments,
            &recovered.replayed_txns,
            replica.high_watermark,
        )?;
        tracing::info!(dir = %dir.display(), segments = recovered.segments.len(),
            log_end_offset = recovered.segments.last().map_or(0, Segment::next_offset),
            damaged_segments = recovered.damaged_segments,
            high_watermark = replica.high_watermark,
            latest_epoch = replica.epochs.latest_epoch().unwrap_or(-1), "opened log");
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments: recovered.segments,
            damaged_at_open: recovered.damaged_segments,
            producers: recovered.producers,
            unflushed_messages: 0,
            last_flush_ms: now,
            dir_dirty: false,
            recovery_point: recovery::read_recovery_point(dir),
            lake_extent: LakeExtent::read(dir),
            walker: RecordWalker::new(),
            epochs: replica.epochs,
            epochs_dirty: replica.epochs_dirty,
            high_watermark: replica.high_watermark,
            high_watermark_written: replica.high_watermark_written,
            txn_index,
            unreplicated_txns,
            start_floor: start::read_floor(dir),
        };
        log.fit_floor_after_open()?;
        Ok(log)
    }

    /// How many segments recovery found damaged (cut to their valid prefix or set aside) when
    /// this log was opened; see also [`recovery::damaged_segments_total`].
    pub fn damaged_segments_at_open(&self) -> usize {
        self.damaged_at_open
    }

    /// The first offset served: the first segment's base, or the floor DeleteRecords set
    /// inside it (see `log_start.rs`).
    pub fn log_start_offset(&self) -> i64 {
        self.segments
            .first()
            .map_or(0, Segment::base_offset)
            .max(self.start_floor)
    }

    /// The offset the next appended record gets.
    pub fn log_end_offset(&self) -> i64 {
        self.segments.last().map_or(0, Segment::next_offset)
    }

    /// Appends one or more v2 batches as a producer sent them (see the module doc).
    pub fn append(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
    ) -> Result<AppendOutcome, StorageError> {
        // 1. Validate every batch: framing, magic, CRC, records, timestamps, size.
        let request =
            validate_for_append(records, &self.config, wall_clock_ms(), &mut self.walker)?;
        self.append_validated(request, leader_epoch)
    }

    /// Appends without walking the records, as versions before the record walk did: for tests
    /// of what such logs may hold (hostile batches stored before the fix).
    #[cfg(test)]
    pub(crate) fn append_unwalked(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
    ) -> Result<AppendOutcome, StorageError> {
        let batches = crate::append::validate(records, &self.config, wall_clock_ms(), None)?;
        self.append_validated(ValidatedRequest { records, batches }, leader_epoch)
    }

    /// Appends a request checked by [`validate_for_append`] (with this log's config, or one
    /// read from it just before): steps 2 and 3 of [`Log::append`].
    pub fn append_validated(
        &mut self,
        request: ValidatedRequest<'_>,
        leader_epoch: i32,
    ) -> Result<AppendOutcome, StorageError> {
        let ValidatedRequest {
            records,
            mut batches,
        } = request;
        // 2. Assign offsets and check producer sequences, staging the producer updates.
        let mut next = self.log_end_offset();
        let mut staged = self.producers.stage();
        let end = next;
        // Retries of stored batches, answered with the stored offsets as Kafka does, but only
        // when the whole request is such a retry: otherwise the answer would acknowledge the
        // request's other batches without writing them (and a repeat of a batch earlier in this
        // very request names offsets never written). Those get OutOfOrderSequence, as Kafka's
        // sequence check finds them (its clients send one batch per partition).
        let mut retried: Vec<BatchMetadata> = Vec::new();
        let mut fresh = None;
        for (header, _) in &mut batches {
            header.base_offset = next;
            header.partition_leader_epoch = leader_epoch;
            match staged.check(header)? {
                SequenceCheck::Duplicate(original) if original.base_offset < end => {
                    retried.push(original);
                    continue;
                }
                SequenceCheck::Duplicate(original) => {
                    return Err(out_of_order_retry(header, &original));
                }
                _ => fresh = Some(*header),
            }
            next = header.last_offset() + 1;
        }
        if let (Some(first), Some(last)) = (retried.first(), retried.last()) {
            if let Some(header) = fresh {
                return Err(out_of_order_retry(&header, last));
            }
            return Ok(AppendOutcome {
                base_offset: first.base_offset,
                last_offset: last.last_offset,
                max_timestamp: batches
                    .iter()
                    .map(|(h, _)| h.max_timestamp)
                    .max()
                    .unwrap_or(-1),
                duplicate: true,
                log_start_offset: self.log_start_offset(),
            });
        }
        let updates = staged.into_updates();
        let max_timestamp = batches
            .iter()
            .map(|(h, _)| h.max_timestamp)
            .max()
            .unwrap_or(-1);

        // 3. Write, then apply the producer updates.
        self.write_batches(records, &batches, leader_epoch, max_timestamp, next - 1)?;
        self.producers.apply(updates);
        Ok(AppendOutcome {
            base_offset: batches[0].0.base_offset,
            last_offset: next - 1,
            max_timestamp,
            duplicate: false,
            log_start_offset: self.log_start_offset(),
        })
    }

    /// Writes checked `batches` (their offsets assigned, the last one ending at
    /// `last_offset`) of a leader's append. A new leader epoch is checkpointed before its first
    /// batch is written (see `replica`). Rolls if the append does not fit or the segment is
    /// old; then writes all batches as one write, so a failure (ENOSPC) stores none of them and
    /// the caller leaves the producer state as it was: a producer's retry then stores each
    /// batch exactly once.
    pub(crate) fn write_batches(
        &mut self,
        records: &[u8],
        batches: &[(inlet_protocol::batch::BatchHeader, std::ops::Range<usize>)],
        leader_epoch: i32,
        max_timestamp: i64,
        last_offset: i64,
    ) -> Result<(), StorageError> {
        let Some((first, _)) = batches.first() else {
            return Ok(());
        };
        let epochs_changed = self.epochs.assign(leader_epoch, first.base_offset);
        self.note_epochs_changed(epochs_changed)?;
        let written = self.roll_and_write(records, batches, max_timestamp, last_offset);
        if let Err(error) = written {
            self.undo_epochs_past_end();
            return Err(error);
        }
        self.unflushed_messages += batches
            .iter()
            .map(|(h, _)| h.records_count as u64)
            .sum::<u64>();
        Ok(())
    }

    fn roll_and_write(
        &mut self,
        records: &[u8],
        batches: &[(inlet_protocol::batch::BatchHeader, std::ops::Range<usize>)],
        max_timestamp: i64,
        last_offset: i64,
    ) -> Result<(), StorageError> {
        if self.needs_roll(records.len(), max_timestamp, last_offset) {
            self.start_new_segment()?;
        }
        let active = self
            .segments
            .last_mut()
            .ok_or_else(|| corrupt(0, "log has no segment"))?;
        active.append_batches(records, batches)
    }

    fn needs_roll(&self, size: usize, max_timestamp: i64, last_offset: i64) -> bool {
        let Some(active) = self.segments.last() else {
            return true;
        };
        if !active.is_active() || size > active.remaining() {
            return true;
        }
        if active.is_empty() {
            return false;
        }
        let too_big = active.size() + size > self.config.effective_segment_bytes();
        // Age by the first batch's timestamp (as Kafka does), or by creation time without one.
        let age = match active.first_batch_timestamp().filter(|&t| t >= 0) {
            Some(first) => max_timestamp.saturating_sub(first),
            None => wall_clock_ms().saturating_sub(active.created_ms),
        };
        let too_old = age > self.config.segment_ms;
        // Relative offsets in the indexes are 32-bit: a segment holds at most i32::MAX offsets.
        // The record walk makes `last_offset` trustworthy (one offset per record held), so an
        // append never spans that many offsets on its own and an empty segment always fits it.
        let offsets_overflow = last_offset - active.base_offset() >= i64::from(i32::MAX);
        too_big || too_old || offsets_overflow
    }

    /// Closes the active segment and starts a new one at the log end. A no-op when the active
    /// segment is empty.
    pub fn roll(&mut self) -> Result<(), StorageError> {
        if self
            .segments
            .last()
            .is_some_and(|s| s.is_active() && s.is_empty())
        {
            return Ok(());
        }
        self.start_new_segment()
    }

    fn start_new_segment(&mut self) -> Result<(), StorageError> {
        let end = self.log_end_offset();
        if let Some(last) = self.segments.last_mut() {
            if last.is_empty() {
                // An empty segment (possibly too small after a config change) is replaced.
                if let Some(empty) = self.segments.pop() {
                    empty.delete()?;
                }
            } else {
                last.freeze()?;
            }
        }
        let interval = self.config.index_interval();
        let segment = Segment::create(
            &self.dir,
            end,
            self.config.effective_segment_bytes(),
            interval,
            wall_clock_ms(),
        )?;
        self.segments.push(segment);
        self.dir_dirty = true;
        tracing::debug!(dir = %self.dir.display(), base_offset = end, "rolled segment");
        self.write_snapshot()
    }

    fn write_snapshot(&self) -> Result<(), StorageError> {
        let end = self.log_end_offset();
        snapshot::write(&self.dir, end, &self.producers)
            .context(|| format!("writing producer snapshot {end} in {}", self.dir.display()))
    }

    /// Whole batches from the one containing `offset`; see the crate docs for the exact rules.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, StorageError> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if offset == end {
            return Ok(Bytes::new());
        }
        if offset < start || offset > end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: start,
                log_end: end,
            });
        }
        let first = self
            .segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1);
        for segment in &self.segments[first..] {
            // An offset in a gap left by damage reads on from the next segment's first batch.
            if let Some(position) = segment.find_position(offset.max(segment.base_offset()))? {
                return Ok(segment.read_at(position, max_bytes));
            }
        }
        Ok(Bytes::new())
    }

    /// The first record whose timestamp is `>= timestamp_ms`, with that timestamp, as Kafka
    /// finds it: the batch by its max timestamp (time index, then a scan), then the record inside
    /// it (decompressed if need be). `LATEST_TIMESTAMP` (-1) and `EARLIEST_TIMESTAMP` (-2)
    /// return the log end and start offsets. `None` if no record is that new.
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampOffset>, StorageError> {
        match timestamp_ms {
            LATEST_TIMESTAMP => {
                return Ok(Some(TimestampOffset {
                    timestamp: -1,
                    offset: self.log_end_offset(),
                }))
            }
            EARLIEST_TIMESTAMP => {
                return Ok(Some(TimestampOffset {
                    timestamp: -1,
                    offset: self.log_start_offset(),
                }))
            }
            MAX_TIMESTAMP => {
                // Kafka: the (first) segment with the largest timestamp, then its record.
                let Some(newest) =
                    self.segments
                        .iter()
                        .filter(|s| !s.is_empty())
                        .reduce(|best, s| {
                            if s.max_timestamp() > best.max_timestamp() {
                                s
                            } else {
                                best
                            }
                        })
                else {
                    return Ok(None);
                };
                return Ok(newest
                    .record_for_timestamp(newest.max_timestamp(), i64::MIN)?
                    .map(|(offset, timestamp, _)| TimestampOffset { timestamp, offset }));
            }
            _ => {}
        }
        // Records below a DeleteRecords start are gone: the answer is the first record from it.
        let from = self.log_start_offset();
        for segment in &self.segments {
            if let Some((offset, timestamp, _)) =
                segment.record_for_timestamp(timestamp_ms, from)?
            {
                return Ok(Some(TimestampOffset { timestamp, offset }));
            }
        }
        Ok(None)
    }

    /// Removes every batch with an offset `>= offset`. A batch containing `offset` is removed
    /// whole (like Kafka), so the new log end may be below `offset`. Truncating below the log
    /// start empties the log and restarts it at `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if offset >= end {
            return Ok(());
        }
        if offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: start,
                log_end: end,
            });
        }
        self.truncate(offset, offset <= start)
    }

    /// Removes every batch and restarts the log empty at `offset` (Kafka's
    /// `truncateFullyAndStartAt`): for a follower whose log end is below its leader's log
    /// start, which [`Log::truncate_to`] cannot move up to. The epoch cache is emptied.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), StorageError> {
        if offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset(),
                log_end: self.log_end_offset(),
            });
        }
        self.truncate(offset, true)
    }

    /// [`Log::truncate_to`] `offset`; with `fully`, removes everything and restarts at `offset`.
    fn truncate(&mut self, offset: i64, fully: bool) -> Result<(), StorageError> {
        self.dir_dirty = true;
        let now = wall_clock_ms();
        let capacity = self.config.effective_segment_bytes();
        if fully {
            for segment in self.segments.drain(..) {
                segment.delete()?;
            }
            // Nothing of the old history is left, so none of its producer state either.
            snapshot::delete_above(&self.dir, -1)
                .context(|| format!("deleting producer snapshots in {}", self.dir.display()))?;
            let segment = Segment::create(
                &self.dir,
                offset,
                capacity,
                self.config.index_interval(),
                now,
            )?;
            self.segments.push(segment);
        } else {
            while self
                .segments
                .last()
                .is_some_and(|s| s.base_offset() >= offset)
            {
                if let Some(segment) = self.segments.pop() {
                    segment.delete()?;
                }
            }
            let last = self
                .segments
                .last()
                .ok_or_else(|| corrupt(0, "log has no segment"))?;
            if let Some(position) = last.find_position(offset)? {
                last.copy_prefix(position)?;
                let walk = scan(
                    &last.bytes()[..position],
                    last.base_offset(),
                    self.config.index_interval(),
                    false,
                );
                // Drop the old segment (its index files are replaced next); readers keep its map.
                self.segments.pop();
                self.segments
                    .push(Segment::open_active(&self.dir, walk, capacity, now)?);
            }
        }
        snapshot::delete_above(&self.dir, self.log_end_offset())
            .and_then(|()| sync_dir(&self.dir))
            .context(|| format!("deleting producer snapshots in {}", self.dir.display()))?;
        if fully {
            self.txn_index.clear()
        } else {
            self.txn_index.truncate(self.log_end_offset())
        }
        .context(|| format!("cutting the transaction index of {}", self.dir.display()))?;
        self.fit_floor_after_truncation(fully.then_some(offset))?;
        let rebuilt = rebuild_producers(&self.dir, &self.segments)?;
        self.producers = rebuilt.producers;
        if fully {
            self.epochs_dirty |= self.epochs.clear();
        }
        self.fit_replica_state_to_log()?;
        let hw = self.high_watermark;
        self.unreplicated_txns = rebuilt
            .txns
            .iter()
            .map(|r| r.txn)
            .filter(|t| t.last_offset >= hw)
            .collect();
        let point = self.closed_end();
        if self.recovery_point > point {
            // Offsets above it may be written again, unsynced: they must be checked after a crash.
            self.write_recovery_point(point)?;
        }
        tracing::info!(dir = %self.dir.display(), offset, log_end_offset = self.log_end_offset(), "truncated log");
        Ok(())
    }

    /// Writes all appended data and indexes durably (msync / fsync).
    pub fn flush(&mut self) -> Result<(), StorageError> {
        for segment in &mut self.segments {
            segment.flush()?;
        }
        self.sync_txn_index_and_dir()?;
        let point = self.closed_end();
        if point != self.recovery_point {
            self.write_recovery_point(point)?;
        }
        // The checkpoints can be rebuilt (epochs) or are conservative (an older high watermark),
        // so failing to write them (a full disk) does not fail the flush of the data: the next
        // flush retries.
        if let Err(error) = self
            .persist_epochs()
            .and_then(|()| self.persist_high_watermark())
        {
            tracing::warn!(dir = %self.dir.display(), %error,
                "cannot write a replication checkpoint; the next flush retries");
        }
        self.unflushed_messages = 0;
        self.last_flush_ms = wall_clock_ms();
        Ok(())
    }

    /// The syncs a flush needs only now and then: the transaction index after markers, the
    /// directory after files were created or removed.
    fn sync_txn_index_and_dir(&mut self) -> Result<(), StorageError> {
        self.txn_index
            .sync()
            .context(|| format!("syncing the transaction index of {}", self.dir.display()))?;
        if self.dir_dirty {
            sync_dir(&self.dir).context(|| format!("syncing {}", self.dir.display()))?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Whether the flush policy asks for a flush now.
    pub fn flush_is_due(&self, now_ms: i64) -> bool {
        let by_count = self
            .config
            .flush_messages
            .is_some_and(|n| self.unflushed_messages >= n.max(1));
        let by_time = self
            .config
            .flush_ms
            .is_some_and(|ms| now_ms.saturating_sub(self.last_flush_ms) >= ms as i64);
        by_count || by_time
    }

    /// The next thing to tier after `offset`: the first non-empty segment holding records from
    /// `offset` on, copied from `offset` (a new leader's segment may straddle where the old
    /// leader's tiering stopped; skipping it would leave a gap in the lake), if it is closed and
    /// lies wholly below the last stable offset (as Kafka tiers), with the aborted transactions
    /// that have records in it. Nothing while that segment cannot be copied: never a later one.
    pub fn closed_segment_from(&self, offset: i64) -> Option<crate::tier::ClosedSegment> {
        let stable = self.last_stable_offset();
        let mut closed = self
            .segments
            .iter()
            .find(|s| s.next_offset() > offset && !s.is_empty())?
            .closed_copy_from(offset)
            .filter(|s| s.last_offset < stable)?;
        closed.aborted =
            self.collect_aborted_transactions(closed.base_offset, closed.last_offset + 1);
        Some(closed)
    }

    /// Bytes of all segments, the active one included.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size() as u64).sum()
    }

    /// Bytes of closed segments starting at or after `offset`: what tiering still has to copy.
    pub fn closed_bytes_from(&self, offset: i64) -> u64 {
        self.segments
            .iter()
            .filter(|s| !s.is_active() && s.base_offset() >= offset)
            .map(|s| s.size() as u64)
            .sum()
    }

    /// Records (and checkpoints) which offsets the lake holds; local retention may then delete
    /// segments below its end (see `local_retention_*`).
    pub fn set_lake_extent(&mut self, extent: LakeExtent) -> Result<(), StorageError> {
        if extent != self.lake_extent {
            extent
                .write(&self.dir)
                .context(|| format!("writing the lake extent of {}", self.dir.display()))?;
            self.lake_extent = extent;
            // Aborts of segments the lake dropped are of no use any more.
            let lake_start = if extent.is_empty() {
                i64::MAX
            } else {
                extent.start
            };
            self.txn_index.trim_lake(lake_start).context(|| {
                format!(
                    "trimming the lake's transaction index in {}",
                    self.dir.display()
                )
            })?;
        }
        Ok(())
    }

    /// The lake's offsets as last recorded, even before the lake is reachable after a restart.
    pub fn lake_extent(&self) -> Option<LakeExtent> {
        (!self.lake_extent.is_empty()).then_some(self.lake_extent)
    }

    /// Deletes old closed segments per `retention_ms` / `retention_bytes`, and, with remote
    /// storage, segments already in the lake per `local_retention_ms` / `local_retention_bytes`.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<RetentionOutcome, StorageError> {
        let facts: Vec<SegmentFacts> = self
            .segments
            .iter()
            .map(|s| SegmentFacts {
                size: s.size() as u64,
                max_timestamp: s.max_timestamp(),
                closed: !s.is_active(),
                tiered: s.next_offset() <= self.lake_extent.end,
            })
            .collect();
        // Segments wholly below the start DeleteRecords set go too (Kafka's
        // `deleteLogStartOffsetBreachedSegments`).
        let below_floor = self
            .segments
            .iter()
            .take_while(|s| !s.is_active() && s.next_offset() <= self.start_floor)
            .count();
        let count = segments_to_delete(&facts, &self.config, now_ms).max(below_floor);
        self.delete_leading_segments(count)
    }

    /// Deletes the first `count` segments (never the last one) and fits the transaction index
    /// and replication state to the new start.
    fn delete_leading_segments(&mut self, count: usize) -> Result<RetentionOutcome, StorageError> {
        let count = count.min(self.segments.len().saturating_sub(1));
        let mut outcome = RetentionOutcome::default();
        for segment in self.segments.drain(..count) {
            outcome.deleted_segments += 1;
            outcome.deleted_bytes += segment.size() as u64;
            segment.delete()?;
        }
        if count > 0 {
            // Keyed by segment base: the first kept segment's, not a floor inside it.
            let start = self.segments.first().map_or(0, Segment::base_offset);
            let lake = (self.lake_extent.start, self.lake_extent.end);
            self.txn_index
                .drop_below(start, lake)
                .context(|| format!("deleting transaction indexes of {}", self.dir.display()))?;
        }
        if count > 0 {
            self.dir_dirty = true;
            tracing::info!(dir = %self.dir.display(), segments = count, log_start_offset = self.log_start_offset(), "retention deleted segments");
            self.fit_replica_state_or_warn();
        }
        outcome.log_start_offset = self.log_start_offset();
        Ok(outcome)
    }

    /// End of the closed segments. Recovery always CRC-walks the active segment, so the
    /// recovery point only needs to cover closed ones: it changes on rolls, not on every flush.
    fn closed_end(&self) -> i64 {
        match self.segments.last() {
            Some(s) if s.is_active() => s.base_offset(),
            Some(s) => s.next_offset(),
            None => 0,
        }
    }

    fn write_recovery_point(&mut self, point: i64) -> Result<(), StorageError> {
        recovery::write_recovery_point(&self.dir, point)
            .context(|| format!("writing recovery point of {}", self.dir.display()))?;
        self.recovery_point = point;
        Ok(())
    }

    /// With `compact` set, rewrites the leading closed segments keeping the latest record per
    /// key (see [`crate::compaction`]); `None` when there was nothing to remove.
    pub fn compact(&mut self, now_ms: i64) -> Result<Option<CompactionOutcome>, StorageError> {
        if !self.config.compact {
            return Ok(None);
        }
        let txns = compaction::TxnFacts {
            first_unstable: self.first_unstable_offset(),
            aborted: self.collect_aborted_transactions(i64::MIN, i64::MAX),
        };
        let Some(done) =
            compaction::compact(&self.dir, &self.segments, &self.config, now_ms, &txns)?
        else {
            return Ok(None);
        };
        // The replaced segments' files are gone; readers keep their mappings.
        let (start, end) = (done.segment.base_offset(), done.segment.next_offset());
        self.segments.drain(..done.replaced);
        self.segments.insert(0, done.segment);
        // Their aborted transactions move to the new segment's index.
        self.txn_index
            .merge(start, end)
            .context(|| format!("merging transaction indexes of {}", self.dir.display()))?;
        // Compaction keeps every batch's offset range and the log start, so which epoch wrote
        // which offsets is unchanged: the cache stays as it is (as Kafka's cleaner leaves it).
        self.fit_replica_state_or_warn();
        let o = done.outcome;
        tracing::info!(dir = %self.dir.display(), segments = o.segments_replaced, bytes_before = o.bytes_before,
            bytes_after = o.bytes_after, records_before = o.records_before, records_after = o.records_after,
            log_start_offset = self.log_start_offset(), "compacted log");
        Ok(Some(o))
    }

    /// Replaces the configuration; takes effect for later appends, rolls and retention.
    /// Lets idle mapped data stop counting as resident memory (see
    /// [`Segment::release_idle_pages`]); call it now and then, e.g. every few seconds. Memory
    /// then tracks what is being read and written, not how much the log holds.
    pub fn release_idle_pages(&mut self) -> Result<(), StorageError> {
        /// The recently written tail that tailing consumers read is kept mapped.
        const KEEP_TAIL: usize = 16 * 1024 * 1024;
        self.segments
            .iter_mut()
            .try_for_each(|segment| segment.release_idle_pages(KEEP_TAIL))
    }

    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Flushes, cuts the active file to its logical size and writes the clean-shutdown marker.
    pub fn close(mut self) -> Result<(), StorageError> {
        if let Some(active) = self.segments.last_mut() {
            active.freeze()?;
        }
        self.write_snapshot()?;
        self.flush()?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        let ctx = || format!("writing {}", marker.display());
        std::fs::File::create(&marker)
            .context(ctx)?
            .sync_all()
            .context(ctx)?;
        sync_dir(&self.dir).context(ctx)
    }

    /// Removes the partition directory and everything in it.
    pub fn delete(self) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).context(|| format!("deleting {}", dir.display()))
    }

    /// Drops producers idle for `expiration_ms` or more (`producer.id.expiration.ms`). When any
    /// went, a snapshot of the table at the log end is written, so a restart (even after a crash)
    /// starts from the table without them rather than from an older snapshot that has them.
    /// Returns how many expired.
    pub fn expire_producers(
        &mut self,
        now_ms: i64,
        expiration_ms: i64,
    ) -> Result<usize, StorageError> {
        let expired = self.producers.expire(now_ms, expiration_ms);
        if expired > 0 {
            self.write_snapshot()?;
            tracing::debug!(dir = %self.dir.display(), expired, remaining = self.producers.len(),
                "expired idle producer ids");
        }
        Ok(expired)
    }
}

#[path = "log_replica.rs"]
mod replica;

#[path = "log_txn.rs"]
mod txn;

#[path = "log_start.rs"]
mod start;
pub use replica::HIGH_WATERMARK_FILE;
pub use start::LOG_START_FILE;

#[path = "log_flush.rs"]
mod flush;
pub use flush::{FlushPlan, PendingHighWatermark};

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
