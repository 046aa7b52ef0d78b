//! What a [`Log`] offers replication (issue 14): appending batches as a follower, the
//! leader-epoch cache kept in step with the log ([`crate::leader_epoch`]), and the high
//! watermark with its checkpoint.
//!
//! Files in the partition directory, both replaced atomically (temp file, fsync, rename,
//! directory fsync):
//!
//! ```text
//! <dir>/leader-epoch-checkpoint   Kafka's format, see `leader_epoch`; written whenever it changes
//! <dir>/high-watermark            one decimal number; written by flush/close when it changed
//! ```
//!
//! The epoch checkpoint is written *before* the batches that change it, as Kafka does: after a
//! crash it may name an epoch whose batches never reached the disk, and opening drops entries
//! past the recovered log end. A missing or damaged checkpoint is rebuilt from the batches.
//! The high watermark read on open is clamped to the recovered log; `truncate_to` below it
//! lowers it and writes it at once, so a restart never claims truncated offsets as committed.
//! Nothing here changes what [`Log::read`] returns: the broker decides what to serve.

use std::path::Path;

use inlet_protocol::batch::BatchHeader;

use super::Log;
use crate::append::{validate_replicated, AppendOutcome};
use crate::error::{IoContext, StorageError};
use crate::leader_epoch::{read_bounded, write_atomically, LeaderEpochCache};
use crate::segment::Segment;

/// Name of the high-watermark checkpoint in the partition directory.
pub const HIGH_WATERMARK_FILE: &str = "high-watermark";

/// Replication state loaded by [`Log::open`].
#[derive(Debug)]
pub(super) struct ReplicaState {
    pub epochs: LeaderEpochCache,
    /// The in-memory cache differs from the checkpoint file.
    pub epochs_dirty: bool,
    pub high_watermark: i64,
    /// The value in the high-watermark file (`None`: no file yet).
    pub high_watermark_written: Option<i64>,
}

impl ReplicaState {
    /// Reads both checkpoints of `dir` and fits them to the recovered `segments`. Never fails:
    /// a missing or damaged checkpoint is rebuilt, and one that cannot be written now (a full
    /// disk) is written by the next flush.
    pub(super) fn load(dir: &Path, segments: &[Segment]) -> ReplicaState {
        let start = segments.first().map_or(0, Segment::base_offset);
        let end = segments.last().map_or(0, Segment::next_offset);
        let (mut epochs, mut epochs_dirty) = match LeaderEpochCache::read_checkpoint(dir) {
            Some(cache) => (cache, false),
            // An empty log needs no file (rebuilding it is free); a written one is checkpointed
            // so the next open does not walk it again.
            None => (LeaderEpochCache::rebuild(segments), end > start),
        };
        // Entries past the recovered end name batches a crash lost.
        epochs_dirty |= epochs.truncate_from_end(end);
        epochs_dirty |= epochs.truncate_from_start(start);
        if epochs_dirty {
            if let Err(error) = epochs.write_checkpoint(dir) {
                tracing::warn!(dir = %dir.display(), %error,
                    "cannot write the leader-epoch checkpoint yet; the next flush retries");
            } else {
                epochs_dirty = false;
            }
        }
        // Without a (readable) file the high watermark is the log start, as in Kafka, and the
        // file is written once it moves.
        let written = read_bounded(&dir.join(HIGH_WATERMARK_FILE), 64)
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(start);
        ReplicaState {
            epochs,
            epochs_dirty,
            high_watermark: written.clamp(start, end),
            high_watermark_written: Some(written),
        }
    }
}

impl Log {
    /// Appends batches fetched from the leader as they are: base offsets, leader epochs,
    /// timestamps and producer fields unchanged (Kafka's `appendAsFollower`). Framing, magic and
    /// CRC are checked as for any append (records are not walked, timestamps not bounded: the
    /// leader did that); the first batch must start at the log end and each next one where the
    /// previous ended, else [`StorageError::UnexpectedAppendOffset`] (the replication layer
    /// truncates first).
    /// Nothing is written unless every batch passes. The batches may span several segments: if
    /// writing fails part way, the batches before the failure stay (the log end says which).
    /// Indexes, the epoch cache and the producer state (replayed as recovery does, so a
    /// follower that becomes leader knows its idempotent producers) follow.
    pub fn append_as_follower(&mut self, records: &[u8]) -> Result<AppendOutcome, StorageError> {
        let batches = validate_replicated(records, &self.config)?;
        let mut expected = self.log_end_offset();
        for (header, range) in &batches {
            if header.base_offset != expected {
                return Err(StorageError::UnexpectedAppendOffset {
                    position: range.start,
                    expected,
                    received: header.base_offset,
                });
            }
            expected = header.last_offset() + 1;
        }
        let mut i = 0;
        while i < batches.len() {
            let (first, range) = &batches[i];
            if self.needs_roll(range.len(), first.max_timestamp, first.last_offset()) {
                self.start_new_segment()?;
            }
            // The run of batches that fits the active segment: at least one (it fits an
            // empty segment, validation saw to that).
            let (mut j, mut max_timestamp) = (i + 1, first.max_timestamp);
            while let Some((next, next_range)) = batches.get(j) {
                let size = next_range.end - range.start;
                let ts = max_timestamp.max(next.max_timestamp);
                if self.needs_roll(size, ts, next.last_offset()) {
                    break;
                }
                (j, max_timestamp) = (j + 1, ts);
            }
            self.write_replicated(records, &batches[i..j])?;
            i = j;
        }
        Ok(AppendOutcome {
            base_offset: batches[0].0.base_offset,
            last_offset: expected - 1,
            max_timestamp: batches
                .iter()
                .map(|(h, _)| h.max_timestamp)
                .max()
                .unwrap_or(-1),
            duplicate: false,
            log_start_offset: self.log_start_offset(),
        })
    }

    /// Writes `run` (consecutive batches of `records`) to the active segment as one write.
    fn write_replicated(
        &mut self,
        records: &[u8],
        run: &[(BatchHeader, std::ops::Range<usize>)],
    ) -> Result<(), StorageError> {
        let (Some((_, first)), Some((_, last))) = (run.first(), run.last()) else {
            return Ok(());
        };
        let (from, to) = (first.start, last.end);
        let rebased: Vec<_> = run
            .iter()
            .map(|(h, r)| (*h, r.start - from..r.end - from))
            .collect();
        let mut epochs_changed = false;
        for (header, _) in run {
            epochs_changed |= self
                .epochs
                .assign(header.partition_leader_epoch, header.base_offset);
        }
        self.note_epochs_changed(epochs_changed)?;
        let written = match self.segments.last_mut() {
            Some(active) => active.append_batches(&records[from..to], &rebased),
            None => Err(StorageError::CorruptBatch {
                position: 0,
                reason: "log has no segment".into(),
            }),
        };
        if let Err(error) = written {
            self.undo_epochs_past_end();
            return Err(error);
        }
        for (header, range) in run {
            // A leader's marker ends the transaction here too, so a follower that becomes
            // leader has the same LSO and aborted-transaction index.
            if let Some(txn) = self.producers.replay(header, &records[range.clone()]) {
                self.note_completed_txn(txn);
            }
            self.unflushed_messages += header.records_count.max(0) as u64;
        }
        Ok(())
    }

    /// After an epoch-cache change: marks it and writes the checkpoint before the batches
    /// that caused it. If the write fails, the change is undone and the append refused.
    pub(super) fn note_epochs_changed(&mut self, changed: bool) -> Result<(), StorageError> {
        if !changed {
            return Ok(());
        }
        self.epochs_dirty = true;
        if let Err(error) = self.persist_epochs() {
            self.undo_epochs_past_end();
            return Err(error);
        }
        Ok(())
    }

    /// Drops epoch entries an append added before its write failed.
    pub(super) fn undo_epochs_past_end(&mut self) {
        if self.epochs.truncate_from_end(self.log_end_offset()) {
            self.epochs_dirty = true;
            // Harmless if this fails too: opening drops entries past the log end.
            if let Err(error) = self.persist_epochs() {
                tracing::warn!(dir = %self.dir.display(), %error,
                    "cannot rewrite the leader-epoch checkpoint after a failed append");
            }
        }
    }

    /// Writes the epoch checkpoint if the cache changed since it was last written.
    pub(super) fn persist_epochs(&mut self) -> Result<(), StorageError> {
        if self.epochs_dirty {
            self.epochs.write_checkpoint(&self.dir).context(|| {
                format!(
                    "writing the leader-epoch checkpoint of {}",
                    self.dir.display()
                )
            })?;
            self.epochs_dirty = false;
        }
        Ok(())
    }

    /// Writes the high-watermark checkpoint if it changed since it was last written.
    pub(super) fn persist_high_watermark(&mut self) -> Result<(), StorageError> {
        if self.high_watermark_written != Some(self.high_watermark) {
            let text = format!("{}\n", self.high_watermark);
            write_atomically(&self.dir, HIGH_WATERMARK_FILE, text.as_bytes())
                .context(|| format!("writing the high watermark of {}", self.dir.display()))?;
            self.high_watermark_written = Some(self.high_watermark);
        }
        Ok(())
    }

    /// Keeps the epoch cache and the high watermark within the log after its start or end
    /// moved (truncation, retention); writes what changed.
    pub(super) fn fit_replica_state_to_log(&mut self) -> Result<(), StorageError> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        self.epochs_dirty |= self.epochs.truncate_from_end(end);
        self.epochs_dirty |= self.epochs.truncate_from_start(start);
        self.persist_epochs()?;
        let lowered = self.high_watermark > end;
        self.high_watermark = self.high_watermark.clamp(start, end);
        if lowered {
            // Offsets above the new end may be written again with other data: a restart must
            // not count them as committed.
            self.persist_high_watermark()?;
        }
        Ok(())
    }

    /// [`Log::fit_replica_state_to_log`] after a move of the log start (retention, compaction):
    /// the segments are already gone, and a stale checkpoint is fitted again on open, so a
    /// failed checkpoint write (a full disk, which retention is freeing) is only logged; the
    /// next flush retries it.
    pub(super) fn fit_replica_state_or_warn(&mut self) {
        if let Err(error) = self.fit_replica_state_to_log() {
            tracing::warn!(dir = %self.dir.display(), %error,
                "cannot write the leader-epoch checkpoint; the next flush retries");
        }
    }

    /// The partition's leader epochs and where each started.
    pub fn leader_epoch_cache(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    /// The latest leader epoch that wrote this log, if any batch carried one.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// OffsetForLeaderEpoch for this log: see [`LeaderEpochCache::end_offset_for`]. `None`
    /// is UNDEFINED (`(-1, -1)`).
    pub fn end_offset_for_epoch(&self, requested_epoch: i32) -> Option<(i32, i64)> {
        self.epochs
            .end_offset_for(requested_epoch, self.log_end_offset())
    }

    /// The high watermark: offsets below it are replicated to the in-sync replicas. The log
    /// keeps it and its checkpoint; the replication layer moves it.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Sets the high watermark, clamped to `[log start, log end]`; returns the value set. The
    /// checkpoint is written by the next [`Log::flush`] or [`Log::close`].
    pub fn set_high_watermark(&mut self, offset: i64) -> i64 {
        self.high_watermark = offset.clamp(self.log_start_offset(), self.log_end_offset());
        let hw = self.high_watermark;
        if !self.unreplicated_txns.is_empty() {
            self.unreplicated_txns.retain(|t| t.last_offset >= hw);
        }
        self.high_watermark
    }
}

#[cfg(test)]
#[path = "log_replica_tests.rs"]
mod tests;
