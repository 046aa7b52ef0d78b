//! The log start offset that DeleteRecords moves (Kafka's `logStartOffset`, kept there in the
//! `log-start-offset-checkpoint`): a floor below which no record is served, even when it falls
//! inside a segment. Whole segments below it are deleted at once; the rest of the segment that
//! holds it stays until retention takes it, but reads, ListOffsets EARLIEST and the high
//! watermark never go below the floor.
//!
//! File in the partition directory, replaced atomically (temp file, fsync, rename, directory
//! fsync) *before* the floor moves in memory, so a crash right after a DeleteRecords answer
//! never serves the deleted records again:
//!
//! ```text
//! <dir>/log-start-offset   one decimal number; absent until a DeleteRecords (or a follower's
//!                          adoption of its leader's start) moves it
//! ```
//!
//! Truncation keeps the floor within the log: a full truncation restarts the log (and its
//! floor) at the given offset, as Kafka's `truncateFullyAndStartAt`; a truncation below the
//! floor lowers it to the new log end (Kafka's `min(targetOffset, logStartOffset)`).

use std::path::Path;

use super::Log;
use crate::error::{IoContext, StorageError};
use crate::leader_epoch::{read_bounded, write_atomically};

/// Name of the log-start checkpoint in the partition directory.
pub const LOG_START_FILE: &str = "log-start-offset";

/// The checkpointed floor of `dir`; 0 (no floor) when the file is missing or unreadable.
pub(super) fn read_floor(dir: &Path) -> i64 {
    read_bounded(&dir.join(LOG_START_FILE), 64)
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|&offset| offset >= 0)
        .unwrap_or(0)
}

impl Log {
    /// Moves the log start offset up to `offset` (Kafka's `deleteRecordsBefore` /
    /// `maybeIncrementLogStartOffset`): records below it are no longer served (nor lake records,
    /// see [`Log::log_start_floor`]). Durable before it returns. An offset at or below the
    /// current floor changes nothing; one past the log end
    /// is [`StorageError::OffsetOutOfRange`] (the broker also refuses one past the high
    /// watermark). Whole segments below the new start are deleted. Returns the log start.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, StorageError> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if offset > end || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: start,
                log_end: end,
            });
        }
        // Compared with the floor, not the local start: a lake may hold offsets below the
        // local segments, and the floor hides those too.
        if offset <= self.start_floor {
            return Ok(start);
        }
        self.write_floor(offset)?;
        // The active segment may lie wholly below (every record deleted): roll it so that it
        // can go too.
        let last_below = self
            .segments
            .last()
            .is_some_and(|s| s.is_active() && !s.is_empty() && s.next_offset() <= offset);
        if last_below {
            self.roll()?;
        }
        self.delete_segments_below_floor()?;
        self.fit_replica_state_or_warn();
        tracing::info!(dir = %self.dir.display(), log_start_offset = self.log_start_offset(),
            "moved the log start offset");
        Ok(self.log_start_offset())
    }

    /// A follower takes its leader's log start (from the leader's Fetch answers), never past
    /// its own log end: the rest follows as it catches up. Returns the log start.
    pub fn adopt_leader_log_start(&mut self, leader_start: i64) -> Result<i64, StorageError> {
        let wanted = leader_start.min(self.log_end_offset());
        if wanted <= self.start_floor {
            return Ok(self.log_start_offset());
        }
        self.delete_records_before(wanted)
    }

    /// The offset DeleteRecords (or the leader's) last moved the start to: the log starts at
    /// the larger of it and the first segment's base. A lake may hold offsets below the local
    /// segments, but never below this.
    pub fn log_start_floor(&self) -> i64 {
        self.start_floor
    }

    /// Writes the checkpoint, then sets the floor.
    fn write_floor(&mut self, offset: i64) -> Result<(), StorageError> {
        let text = format!("{offset}\n");
        write_atomically(&self.dir, LOG_START_FILE, text.as_bytes())
            .context(|| format!("writing the log start offset of {}", self.dir.display()))?;
        self.start_floor = offset;
        Ok(())
    }

    /// Deletes the leading closed segments whose every offset is below the floor.
    fn delete_segments_below_floor(&mut self) -> Result<(), StorageError> {
        let floor = self.start_floor;
        let count = self
            .segments
            .iter()
            .take(self.segments.len().saturating_sub(1))
            .take_while(|s| !s.is_active() && s.next_offset() <= floor)
            .count();
        self.delete_leading_segments(count).map(|_| ())
    }

    /// After opening: a floor past the recovered log end (a crash lost records below it, which
    /// only a follower can have acknowledged) restarts the log empty at the floor, as Kafka's
    /// loader does; otherwise the high watermark and epochs are fitted to the floor.
    pub(super) fn fit_floor_after_open(&mut self) -> Result<(), StorageError> {
        if self.start_floor > self.log_end_offset() {
            tracing::warn!(dir = %self.dir.display(), log_start_offset = self.start_floor,
                log_end_offset = self.log_end_offset(),
                "the log ends below its start offset: restarting it empty at the start");
            return self.truncate_fully_and_start_at(self.start_floor);
        }
        if self.start_floor > self.segments.first().map_or(0, |s| s.base_offset()) {
            self.delete_segments_below_floor()?;
            self.fit_replica_state_or_warn();
        }
        Ok(())
    }

    /// After a truncation to a new end (`restart_at`: a full one restarting there): keeps the
    /// floor within the log and its checkpoint in step.
    pub(super) fn fit_floor_after_truncation(
        &mut self,
        restart_at: Option<i64>,
    ) -> Result<(), StorageError> {
        let wanted = match restart_at {
            Some(offset) => offset,
            None => self.start_floor.min(self.log_end_offset()),
        };
        if wanted != self.start_floor {
            self.write_floor(wanted)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "log_start_tests.rs"]
mod tests;
