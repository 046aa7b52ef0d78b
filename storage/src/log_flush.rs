//! The periodic flush split around the log's lock, so appends and fetches on a partition never
//! wait on the disk for it (the broker's `Partition::maybe_flush` drives the steps):
//!
//! 1. under the lock, [`Log::flush_plan`]: is a flush due; pending index entries are written to
//!    their files, and the plan names what to write back (the active segment's new bytes, a
//!    segment closed since the last flush, index files with unsynced writes);
//! 2. without it, [`FlushPlan::write_back`]: the msyncs and fsyncs, the slow part;
//! 3. under the lock, [`Log::flush_deferring_high_watermark`]: bookkeeping only: what the plan
//!    covered counts as flushed (anything written meanwhile waits for the next flush), the
//!    recovery point moves past the closed segments now synced;
//! 4. without it, [`PendingHighWatermark::prepare`]: the high-watermark checkpoint written to a
//!    temp file and synced;
//! 5. under the lock, [`Log::install_high_watermark`]: the rename, only if the value is still
//!    true (no truncation lowered the high watermark meanwhile, no newer value was written);
//! 6. without it, [`PendingHighWatermark::sync_dir`]: the directory sync that makes the rename
//!    durable.
//!
//! Every fsync under the lock (data, index, checkpoint) had appends to that partition, its
//! follower appends and its fetches wait for the disk, each second with the default `flush.ms`:
//! that was the tail of the RF 3 acks=all end-to-end latency at 20 MB/s.
//! [`Log::flush`] (shutdown, close) still does everything at once under the lock.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use super::Log;
use super::HIGH_WATERMARK_FILE;
use crate::error::{IoContext, StorageError};
use crate::segment::{sync_dir, Segment, SegmentFlush};

/// Temp file of a high-watermark checkpoint written outside the lock; a different name from the
/// one `write_atomically` uses under the lock, so the two never write the same temp file.
const DEFERRED_TMP: &str = "high-watermark.deferred.tmp";

/// What to write back and sync without holding the log.
#[derive(Debug)]
pub struct FlushPlan {
    segments: Vec<SegmentFlush>,
}

impl FlushPlan {
    /// Writes the data back (msync) and syncs the index files. Mappings outlive truncation and
    /// deletion, and an index file deleted meanwhile is skipped, so this is safe whatever
    /// happened to the log since the plan was made.
    pub fn write_back(&self) -> io::Result<()> {
        for segment in &self.segments {
            if let Some((map, range)) = &segment.data {
                map.flush_range(range.clone())?;
            }
            for (path, _) in segment.indexes.iter().flatten() {
                match File::open(path) {
                    Ok(file) => file.sync_data()?,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

/// A high-watermark checkpoint to write without holding the log.
#[derive(Debug)]
pub struct PendingHighWatermark {
    dir: PathBuf,
    value: i64,
}

impl PendingHighWatermark {
    /// Writes the value to the temp file and syncs it.
    pub fn prepare(&self) -> io::Result<()> {
        let tmp = self.dir.join(DEFERRED_TMP);
        let written = File::create(&tmp).and_then(|mut file| {
            file.write_all(format!("{}\n", self.value).as_bytes())?;
            file.sync_all()
        });
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Makes an installed checkpoint's rename durable.
    pub fn sync_dir(&self) -> io::Result<()> {
        sync_dir(&self.dir)
    }

    /// Removes the temp file of a checkpoint that was not installed.
    fn discard(&self) {
        let _ = std::fs::remove_file(self.dir.join(DEFERRED_TMP));
    }
}

impl Log {
    /// Step 1: `None` unless the flush policy asks for a flush now.
    pub fn flush_plan(&mut self, now_ms: i64) -> Result<Option<FlushPlan>, StorageError> {
        if !self.flush_is_due(now_ms) {
            return Ok(None);
        }
        let segments = self
            .segments
            .iter_mut()
            .map(Segment::prepare_flush)
            .collect::<Result<_, _>>()?;
        Ok(Some(FlushPlan { segments }))
    }

    /// Flushes if `flush_messages` records are unflushed or `flush_ms` passed since the last
    /// flush: the steps above in one go, for a caller that holds the log throughout.
    pub fn maybe_flush(&mut self, now_ms: i64) -> Result<(), StorageError> {
        let Some(plan) = self.flush_plan(now_ms)? else {
            return Ok(());
        };
        let dir = self.dir.clone();
        let io = || format!("flushing {}", dir.display());
        plan.write_back().context(io)?;
        let Some(checkpoint) = self.flush_deferring_high_watermark(&plan, now_ms)? else {
            return Ok(());
        };
        checkpoint.prepare().context(io)?;
        if self.install_high_watermark(&checkpoint)? {
            checkpoint.sync_dir().context(io)?;
        }
        Ok(())
    }

    /// Step 3: records what `plan` wrote back, syncs what rarely needs it (the transaction index
    /// after markers, the directory after rolls), moves the recovery point past the closed
    /// segments now synced, and returns the high-watermark checkpoint to write outside the lock
    /// when it changed. `now_ms` counts as the time of this flush.
    pub fn flush_deferring_high_watermark(
        &mut self,
        plan: &FlushPlan,
        now_ms: i64,
    ) -> Result<Option<PendingHighWatermark>, StorageError> {
        for done in &plan.segments {
            if let Some(segment) = self
                .segments
                .iter_mut()
                .find(|s| s.base_offset() == done.base)
            {
                segment.finish_flush(done);
            }
        }
        self.sync_txn_index_and_dir()?;
        // Offsets below the end of the leading synced closed segments need no check after a crash.
        let synced = self
            .segments
            .iter()
            .take_while(|s| s.is_synced_closed())
            .last()
            .map(Segment::next_offset);
        if let Some(point) = synced.filter(|p| *p > self.recovery_point) {
            self.write_recovery_point(point)?;
        }
        if let Err(error) = self.persist_epochs() {
            tracing::warn!(dir = %self.dir.display(), %error,
                "cannot write the leader-epoch checkpoint; the next flush retries");
        }
        self.unflushed_messages = 0;
        self.last_flush_ms = now_ms;
        Ok(
            (self.high_watermark_written != Some(self.high_watermark)).then(|| {
                PendingHighWatermark {
                    dir: self.dir.clone(),
                    value: self.high_watermark,
                }
            }),
        )
    }

    /// Step 5: installs a prepared checkpoint if it still holds; `true` if it was (the caller
    /// then syncs the directory). It does not hold if the high watermark is now below it (a
    /// truncation lowered it and wrote the lower value) or a newer value was written since:
    /// the file must never claim more than is committed.
    pub fn install_high_watermark(
        &mut self,
        pending: &PendingHighWatermark,
    ) -> Result<bool, StorageError> {
        let stale = pending.value > self.high_watermark
            || self
                .high_watermark_written
                .is_some_and(|w| w >= pending.value);
        if stale {
            pending.discard();
            return Ok(false);
        }
        std::fs::rename(
            self.dir.join(DEFERRED_TMP),
            self.dir.join(HIGH_WATERMARK_FILE),
        )
        .context(|| format!("writing the high watermark of {}", self.dir.display()))?;
        self.high_watermark_written = Some(pending.value);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogConfig;
    use inlet_protocol::batch::TestBatchBuilder;

    fn batch(count: usize) -> Vec<u8> {
        let records: Vec<(&[u8], &[u8])> = vec![(b"k", b"v"); count];
        TestBatchBuilder::default().build(&records)
    }

    fn read_checkpoint(dir: &std::path::Path) -> Option<i64> {
        std::fs::read_to_string(dir.join(HIGH_WATERMARK_FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    #[test]
    fn a_deferred_checkpoint_is_written_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
        log.append(&batch(10), 0).unwrap();
        log.set_high_watermark(7);
        let plan = log.flush_plan(i64::MAX).unwrap().expect("due");
        plan.write_back().unwrap();
        let pending = log
            .flush_deferring_high_watermark(&plan, 0)
            .unwrap()
            .expect("changed");
        pending.prepare().unwrap();
        assert!(log.install_high_watermark(&pending).unwrap());
        pending.sync_dir().unwrap();
        assert_eq!(read_checkpoint(dir.path()), Some(7));
        // Written: nothing more to defer.
        let plan = log.flush_plan(i64::MAX).unwrap().expect("due");
        assert!(log
            .flush_deferring_high_watermark(&plan, 0)
            .unwrap()
            .is_none());
        drop(log);
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(log.high_watermark(), 7);
    }

    #[test]
    fn a_checkpoint_overtaken_by_a_truncation_is_not_installed() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
        for _ in 0..10 {
            log.append(&batch(1), 0).unwrap();
        }
        log.set_high_watermark(10);
        let plan = log.flush_plan(i64::MAX).unwrap().expect("due");
        let pending = log
            .flush_deferring_high_watermark(&plan, 0)
            .unwrap()
            .expect("changed");
        pending.prepare().unwrap();
        // Meanwhile a new leader's log went another way: truncation lowers and writes it.
        log.truncate_to(4).unwrap();
        assert_eq!(read_checkpoint(dir.path()), Some(4));
        assert!(!log.install_high_watermark(&pending).unwrap());
        assert_eq!(read_checkpoint(dir.path()), Some(4));
        assert!(!dir.path().join(DEFERRED_TMP).exists());
    }

    #[test]
    fn an_older_checkpoint_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
        log.append(&batch(10), 0).unwrap();
        log.set_high_watermark(5);
        let plan = log.flush_plan(i64::MAX).unwrap().expect("due");
        let older = log
            .flush_deferring_high_watermark(&plan, 0)
            .unwrap()
            .expect("changed");
        older.prepare().unwrap();
        log.set_high_watermark(9);
        log.flush().unwrap();
        assert_eq!(read_checkpoint(dir.path()), Some(9));
        assert!(!log.install_high_watermark(&older).unwrap());
        assert_eq!(read_checkpoint(dir.path()), Some(9));
    }

    #[test]
    fn what_is_appended_during_the_write_back_waits_for_the_next_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
        log.append(&batch(10), 0).unwrap();
        let plan = log.flush_plan(i64::MAX).unwrap().expect("due");
        // Appended after the plan: not covered by its write-back.
        log.append(&batch(10), 0).unwrap();
        plan.write_back().unwrap();
        log.flush_deferring_high_watermark(&plan, 0).unwrap();
        let next = log.flush_plan(i64::MAX).unwrap().expect("due");
        let active = next.segments.last().expect("a segment");
        let (_, range) = active
            .data
            .as_ref()
            .expect("the later batch is still unflushed");
        assert!(
            range.start > 0,
            "the first batch counts as flushed: {range:?}"
        );
    }
}
