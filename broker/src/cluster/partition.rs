//! One partition replica on this broker: its log, its high watermark, the signal that wakes
//! long-polling fetches and acks=all producers waiting on it, and the manifest of what it has in
//! the lake. Its role (leader or follower at an epoch) and the replication state that goes with it
//! are in `partition_replica.rs`. When the in-sync replica set is the leader alone, the high
//! watermark follows the log end as soon as an append returns; otherwise followers' fetches move
//! it.
//!
//! A write the disk refuses (full, or failing) fails that request with a storage error and
//! leaves the partition as it was: reads go on, and the next append simply tries again, so
//! writes resume by themselves once space is freed. The first failure and the recovery are
//! logged once each, not per request.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use inlet_protocol::batch::BatchIter;
use inlet_protocol::record_walk::RecordWalker;
use inlet_storage::tier::{ClosedSegment, LakeExtent, Manifest, TierError};
use inlet_storage::{
    validate_for_append, AppendOutcome, CompactionOutcome, Log, LogConfig, StorageError,
    ValidatedRequest,
};
use tokio::sync::watch;

/// Who is reading, which decides how far they may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLimit {
    /// Consumers see only what every in-sync replica has.
    HighWatermark,
    /// `read_committed` consumers see only what is below the last stable offset: no record of
    /// a transaction still open (nor of one whose marker is not yet replicated).
    LastStable,
    /// Follower replicas copy up to the log end.
    LogEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start: i64,
    pub high_watermark: i64,
    /// Kafka's last stable offset (at most the high watermark).
    pub last_stable: i64,
    pub log_end: i64,
}

/// The partition's local segments, as opposed to what the lake holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalExtent {
    pub start: i64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("partition {topic}-{index} is closed")]
    Closed { topic: String, index: i32 },
    #[error("reading from the lake: {0}")]
    Lake(#[from] TierError),
    #[error("this broker does not lead partition {topic}-{index}")]
    NotLeader { topic: String, index: i32 },
}

pub struct Partition {
    pub topic: String,
    pub index: i32,
    /// The partition's leader epoch in the metadata image, stamped into every appended batch.
    leader_epoch: AtomicI32,
    log: Mutex<Option<Log>>,
    high_watermark: AtomicI64,
    /// Bumped whenever the log end or the high watermark moves, or the role changes: wakes the
    /// fetches and acks=all producers waiting on this partition.
    changed: watch::Sender<u64>,
    /// Appends are taken only while this is set (written under the log's lock, with the role).
    leading: AtomicBool,
    /// The ISR is this broker alone: an append moves the high watermark to the log end.
    sole_in_sync: AtomicBool,
    /// Leader or follower, with the replication state of the role.
    role: Mutex<crate::replication::Role>,
    /// What the lake holds of this partition (set by the tiering task once it has looked).
    lake: Mutex<Option<Arc<Manifest>>>,
    /// The last append failed on the disk (see the module doc).
    write_failing: AtomicBool,
}

impl Partition {
    /// A partition that acts as the sole replica until the replica manager gives it a role from
    /// the metadata image (which happens before the broker serves).
    pub fn new(topic: &str, index: i32, log: Log) -> Partition {
        // The checkpoint, not the log end: after a restart, offsets past it may never have
        // reached the ISR. A sole in-sync leader moves it to the log end when its role is set.
        let high_watermark = AtomicI64::new(log.high_watermark());
        Partition {
            topic: topic.to_string(),
            index,
            leader_epoch: AtomicI32::new(0),
            log: Mutex::new(Some(log)),
            high_watermark,
            changed: watch::channel(0).0,
            leading: AtomicBool::new(true),
            sole_in_sync: AtomicBool::new(true),
            role: Mutex::new(crate::replication::Role::Unassigned),
            lake: Mutex::new(None),
            write_failing: AtomicBool::new(false),
        }
    }

    /// Runs `f` on the open log. A panic elsewhere while holding the lock leaves the log in a
    /// consistent on-disk state (every write is validated before it starts), so poisoning is
    /// not a reason to stop serving the partition.
    fn with_log<T>(
        &self,
        f: impl FnOnce(&mut Log) -> Result<T, StorageError>,
    ) -> Result<T, PartitionError> {
        let mut guard = self.lock_log();
        Ok(f(self.open_log(&mut guard)?)?)
    }

    /// [`Self::with_log`] for appends: refused unless this broker leads the partition, checked
    /// under the log's lock (see `partition_replica.rs`).
    fn with_leader_log<T>(
        &self,
        f: impl FnOnce(&mut Log) -> Result<T, StorageError>,
    ) -> Result<T, PartitionError> {
        let mut guard = self.lock_log();
        let log = self.open_log(&mut guard)?;
        self.check_leading()?;
        Ok(f(log)?)
    }

    fn lock_log(&self) -> MutexGuard<'_, Option<Log>> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open_log<'a>(&self, guard: &'a mut Option<Log>) -> Result<&'a mut Log, PartitionError> {
        guard.as_mut().ok_or_else(|| PartitionError::Closed {
            topic: self.topic.clone(),
            index: self.index,
        })
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// Set by the replica manager from the metadata image.
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.leader_epoch.store(epoch, Ordering::Release);
    }

    /// Appends producer batches (validated; offsets stamped into the stored copy) and wakes
    /// waiting fetches.
    pub fn append(&self, records: &[u8]) -> Result<AppendOutcome, PartitionError> {
        let epoch = self.leader_epoch();
        self.finish_append(self.with_leader_log(|log| {
            let outcome = log.append(records, epoch)?;
            self.after_leader_append(log);
            Ok(outcome)
        }))
    }

    /// Checks `records` for an append with the log's current config. The record walk (which
    /// decompresses compressed batches) runs without the log's lock, so it neither holds up
    /// other producers and readers of this partition nor keeps a request's partitions from
    /// being checked in parallel.
    pub fn validate<'a>(
        &self,
        records: &'a [u8],
        walker: &mut RecordWalker,
    ) -> Result<ValidatedRequest<'a>, PartitionError> {
        let config = self.log_config()?;
        Ok(validate_for_append(
            records,
            &config,
            crate::broker::now_ms(),
            walker,
        )?)
    }

    /// [`Partition::append`] of a request [`Partition::validate`] checked.
    pub fn append_validated(
        &self,
        request: ValidatedRequest<'_>,
    ) -> Result<AppendOutcome, PartitionError> {
        let epoch = self.leader_epoch();
        self.finish_append(self.with_leader_log(|log| {
            let outcome = log.append_validated(request, epoch)?;
            self.after_leader_append(log);
            Ok(outcome)
        }))
    }

    /// What every append does after the log's: notes a failing or recovered disk once, and
    /// wakes waiting fetches.
    fn finish_append(
        &self,
        outcome: Result<AppendOutcome, PartitionError>,
    ) -> Result<AppendOutcome, PartitionError> {
        let outcome = match outcome {
            Err(PartitionError::Storage(StorageError::Io { context, source })) => {
                if !self.write_failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(topic = %self.topic, partition = self.index, %context,
                        error = %source, "writes to this partition fail; retried on every append");
                }
                return Err(StorageError::Io { context, source }.into());
            }
            other => other?,
        };
        if self.write_failing.swap(false, Ordering::Relaxed) {
            tracing::info!(topic = %self.topic, partition = self.index, "writes resumed");
        }
        if !outcome.duplicate {
            self.notify();
        }
        Ok(outcome)
    }

    /// Whole batches from `offset`, at most about `max_bytes` (the first batch always whole),
    /// cut at the high watermark for consumers.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        limit: ReadLimit,
    ) -> Result<(Bytes, PartitionOffsets), PartitionError> {
        let (records, offsets) = self.with_log(|log| {
            let offsets = self.offsets_of(log);
            let end = match limit {
                ReadLimit::HighWatermark => offsets.high_watermark,
                ReadLimit::LastStable => offsets.last_stable,
                ReadLimit::LogEnd => offsets.log_end,
            };
            if offset >= end && offset <= offsets.log_end {
                return Ok((Bytes::new(), offsets));
            }
            Ok((log.read(offset, max_bytes)?, offsets))
        })?;
        let visible = match limit {
            ReadLimit::HighWatermark => cut_at(&records, offsets.high_watermark),
            ReadLimit::LastStable => cut_at(&records, offsets.last_stable),
            ReadLimit::LogEnd => records,
        };
        Ok((visible, offsets))
    }

    /// Offsets as clients see them: the log starts at the lake's first offset when the lake
    /// reaches further back than the local segments.
    fn offsets_of(&self, log: &Log) -> PartitionOffsets {
        let local_start = log.log_start_offset();
        // Before the manifest is loaded (just after a restart), the checkpoint tells.
        let lake_start = match self.lake_manifest() {
            Some(manifest) => manifest.start_offset(),
            None => log.lake_extent().map(|e| e.start),
        }
        .unwrap_or(local_start);
        let high_watermark = self.high_watermark.load(Ordering::Acquire);
        PartitionOffsets {
            // Never below where DeleteRecords moved the start, in the lake either.
            log_start: local_start.min(lake_start).max(log.log_start_floor()),
            high_watermark,
            // The log's high watermark is the same value (both are set together, under the
            // log's lock); the min keeps the LSO from passing the one readers see.
            last_stable: log.last_stable_offset().min(high_watermark),
            log_end: log.log_end_offset(),
        }
    }

    /// DeleteRecords on the leader (Kafka's `deleteRecordsOnLeader`): moves the log start up to
    /// `offset` (-1: the high watermark), durably, and returns the new log start (the low
    /// watermark as this replica sees it). An offset past the high watermark, or negative other
    /// than -1, is OFFSET_OUT_OF_RANGE; one below the start changes nothing. Waiting fetches
    /// are woken so that followers learn the new start from their next answer.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, PartitionError> {
        let start = self.with_leader_log(|log| {
            let hw = self.high_watermark.load(Ordering::Acquire);
            let target = if offset == -1 { hw } else { offset };
            if target < 0 || target > hw {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start: self.offsets_of(log).log_start,
                    log_end: hw,
                });
            }
            log.delete_records_before(target)?;
            Ok(self.offsets_of(log).log_start)
        })?;
        tracing::info!(topic = %self.topic, partition = self.index, offset, log_start_offset = start,
            "deleted records");
        self.notify();
        Ok(start)
    }

    pub fn offsets(&self) -> Result<PartitionOffsets, PartitionError> {
        self.with_log(|log| Ok(self.offsets_of(log)))
    }

    /// The first offset whose batch has a timestamp at or after `timestamp_ms`, with that
    /// timestamp; `None` when every record is older.
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, PartitionError> {
        self.with_log(|log| {
            Ok(log
                .offset_for_timestamp(timestamp_ms)?
                .map(|found| (found.offset, found.timestamp)))
        })
    }

    /// Flushes per policy, holding the log's lock only for the bookkeeping: the dirty data and
    /// the high-watermark checkpoint are written without it, so producers, followers and fetches
    /// on this partition do not wait on the disk (the steps are in `inlet_storage`'s
    /// `log_flush.rs`).
    pub fn maybe_flush(&self, now_ms: i64) -> Result<(), PartitionError> {
        let io = |source| StorageError::Io {
            context: format!("flushing {}-{}", self.topic, self.index),
            source,
        };
        let Some(plan) = self.with_log(|log| log.flush_plan(now_ms))? else {
            return Ok(());
        };
        plan.write_back().map_err(io)?;
        let Some(checkpoint) =
            self.with_log(|log| log.flush_deferring_high_watermark(&plan, now_ms))?
        else {
            return Ok(());
        };
        checkpoint.prepare().map_err(io)?;
        if self.with_log(|log| log.install_high_watermark(&checkpoint))? {
            checkpoint.sync_dir().map_err(io)?;
        }
        Ok(())
    }

    pub fn flush(&self) -> Result<(), PartitionError> {
        self.with_log(|log| log.flush())
    }

    pub fn apply_retention(&self, now_ms: i64) -> Result<(), PartitionError> {
        self.with_log(|log| log.apply_retention(now_ms).map(|_| ()))
    }

    /// Compacts the log if its topic uses `cleanup.policy=compact`.
    pub fn compact(&self, now_ms: i64) -> Result<Option<CompactionOutcome>, PartitionError> {
        self.with_log(|log| log.compact(now_ms))
    }

    /// Forgets producers idle for `expiration_ms` or more; returns how many.
    pub fn expire_producers(
        &self,
        now_ms: i64,
        expiration_ms: i64,
    ) -> Result<usize, PartitionError> {
        self.with_log(|log| log.expire_producers(now_ms, expiration_ms))
    }

    pub fn release_idle_pages(&self) -> Result<(), PartitionError> {
        self.with_log(|log| log.release_idle_pages())
    }

    /// The manifest of this partition's lake data, once the tiering task has loaded it.
    pub fn lake_manifest(&self) -> Option<Arc<Manifest>> {
        self.lake.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Publishes a committed manifest: readers may now be sent to it, and local retention may
    /// delete what it covers.
    /// A manifest whose DeleteRecords start is past the log's (a previous leader's, which this
    /// replica missed) moves the log's up too.
    pub fn set_lake_manifest(&self, manifest: Arc<Manifest>) -> Result<(), PartitionError> {
        let end = manifest.end_offset().unwrap_or(0);
        let extent = LakeExtent {
            start: manifest.start_offset().unwrap_or(end),
            end,
        };
        let lake_start = manifest.log_start_offset;
        *self.lake.lock().unwrap_or_else(|e| e.into_inner()) = Some(manifest);
        self.with_log(|log| {
            if lake_start > log.log_start_floor() {
                log.adopt_leader_log_start(lake_start)?;
            }
            log.set_lake_extent(extent)
        })
    }

    /// Where DeleteRecords last moved this log's start (see [`Log::log_start_floor`]).
    pub fn log_start_floor(&self) -> Result<i64, PartitionError> {
        self.with_log(|log| Ok(log.log_start_floor()))
    }

    /// Publishes a manifest a reader loaded because the tiering task had not yet: only if none
    /// is known, so it never replaces a newer one.
    pub fn init_lake_manifest(&self, manifest: Arc<Manifest>) -> Arc<Manifest> {
        self.lake
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(manifest)
            .clone()
    }

    /// Drops what is known of the lake (the lake is turned off): offsets are the local log's.
    pub fn forget_lake(&self) -> Result<(), PartitionError> {
        *self.lake.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.with_log(|log| log.set_lake_extent(LakeExtent::default()))
    }

    /// What the lake holds according to the partition's checkpoint, `None` if nothing.
    pub fn lake_extent(&self) -> Result<Option<LakeExtent>, PartitionError> {
        self.with_log(|log| Ok(log.lake_extent()))
    }

    /// The next closed segment to tier, from `offset` on.
    pub fn closed_segment_from(
        &self,
        offset: i64,
    ) -> Result<Option<ClosedSegment>, PartitionError> {
        self.with_log(|log| Ok(log.closed_segment_from(offset)))
    }

    /// Where the local log starts and how large it is, for lake retention and metrics.
    pub fn local_extent(&self) -> Result<LocalExtent, PartitionError> {
        self.with_log(|log| {
            Ok(LocalExtent {
                start: log.log_start_offset(),
                bytes: log.size_bytes(),
            })
        })
    }

    /// Bytes of closed segments from `offset` on: what tiering has yet to copy.
    pub fn closed_bytes_from(&self, offset: i64) -> Result<u64, PartitionError> {
        self.with_log(|log| Ok(log.closed_bytes_from(offset)))
    }

    pub fn log_config(&self) -> Result<LogConfig, PartitionError> {
        self.with_log(|log| Ok(log.config().clone()))
    }

    pub fn set_config(&self, config: LogConfig) -> Result<(), PartitionError> {
        self.with_log(|log| {
            log.set_config(config);
            Ok(())
        })
    }

    /// Flushes and closes the log cleanly; later calls see [`PartitionError::Closed`].
    pub fn close(&self) -> Result<(), PartitionError> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner()).take();
        match log {
            Some(log) => Ok(log.close()?),
            None => Ok(()),
        }
    }

    /// Closes the log without flushing or touching its files: its topic is being deleted and
    /// its directory moved away. Later calls see [`PartitionError::Closed`].
    pub fn detach(&self) {
        drop(self.log.lock().unwrap_or_else(|e| e.into_inner()).take());
    }

    /// Closes the log and removes its files.
    pub fn delete(&self) -> Result<(), PartitionError> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner()).take();
        match log {
            Some(log) => Ok(log.delete()?),
            None => Ok(()),
        }
    }
}

/// The prefix of `records` made of batches that end below `limit`.
fn cut_at(records: &Bytes, limit: i64) -> Bytes {
    let mut visible = 0;
    for item in BatchIter::new(records) {
        match item {
            Ok((header, range)) if header.last_offset() < limit => visible = range.end,
            _ => break,
        }
    }
    records.slice(..visible)
}

#[path = "partition_replica.rs"]
mod replica;
pub use replica::{FollowerPosition, IsrChange, RoleChange};

#[path = "partition_epochs.rs"]
mod epochs;

#[path = "partition_txn.rs"]
mod txn;

#[cfg(test)]
#[path = "partition_delete_tests.rs"]
mod delete_tests;
