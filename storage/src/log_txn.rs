//! What a [`Log`] does for transactions (KIP-98): appending the markers that end them, and the
//! last stable offset (LSO) that `read_committed` consumers read up to.
//!
//! The LSO is Kafka's: the smaller of the high watermark and the first offset of the oldest
//! transaction still open on this partition (see [`crate::producer_state`] for how batches
//! open transactions and markers end them).

use inlet_protocol::batch::BatchHeader;

use super::{wall_clock_ms, Log};
use crate::append::AppendOutcome;
use crate::error::StorageError;
use crate::txn::TxnMarker;

impl Log {
    /// Appends `marker` as one control batch at the log end, stamped with `leader_epoch`
    /// (Kafka's `appendAsLeader` with `AppendOrigin.COORDINATOR`). It ends the producer's open
    /// transaction here. Refused when the producer's epoch on record is newer
    /// ([`StorageError::InvalidProducerEpoch`]) or the last marker came from a newer
    /// coordinator ([`StorageError::TransactionCoordinatorFenced`]); the log is then untouched.
    pub fn append_txn_marker(
        &mut self,
        marker: &TxnMarker,
        leader_epoch: i32,
    ) -> Result<AppendOutcome, StorageError> {
        let offset = self.log_end_offset();
        let now = wall_clock_ms();
        let mut staged = self.producers.stage_at(now);
        let completed = staged.check_marker(marker, offset)?;
        let updates = staged.into_updates();
        let batch = marker.encode(offset, leader_epoch, now);
        let header = BatchHeader::parse(&batch).map_err(|e| StorageError::CorruptBatch {
            position: 0,
            reason: e.to_string(),
        })?;
        self.write_batches(
            &batch,
            &[(header, 0..batch.len())],
            leader_epoch,
            now,
            offset,
        )?;
        self.producers.apply(updates);
        tracing::debug!(dir = %self.dir.display(), offset, producer_id = marker.producer_id,
            commit = marker.commit, first_offset = completed.map(|c| c.first_offset),
            "appended transaction marker");
        Ok(AppendOutcome {
            base_offset: offset,
            last_offset: offset,
            max_timestamp: now,
            duplicate: false,
            log_start_offset: self.log_start_offset(),
        })
    }

    /// First offset of the oldest transaction still open on this partition, if any: no offset
    /// from it on is stable.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers.first_open_txn_offset()
    }

    /// Kafka's last stable offset: `read_committed` consumers read below it.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        self.first_unstable_offset()
            .map_or(hw, |first| first.min(hw))
    }
}

#[cfg(test)]
#[path = "log_txn_tests.rs"]
mod tests;
