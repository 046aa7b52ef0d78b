//! What a [`Log`] does for transactions (KIP-98): appending the markers that end them, and the
//! last stable offset (LSO) that `read_committed` consumers read up to.
//!
//! The LSO is Kafka's: the smaller of the high watermark and the first unstable offset, the
//! first offset of the oldest transaction still open on this partition, or of one whose marker
//! is not yet below the high watermark (see [`crate::producer_state`] for how batches open
//! transactions and markers end them). Aborts are indexed per segment ([`crate::txn_index`]),
//! by leaders and followers alike, and rebuilt on open (see [`load_txn_state`]).

use std::path::Path;

use inlet_protocol::batch::BatchHeader;

use super::{wall_clock_ms, Log};
use crate::append::AppendOutcome;
use crate::error::{IoContext, StorageError};
use crate::producer_state::ProducerStateTable;
use crate::recovery::{replay_from, ReplayedTxn};
use crate::segment::Segment;
use crate::txn::{AbortedTxn, CompletedTxn, TxnMarker};
use crate::txn_index::{TxnIndexEntry, TxnIndexes};

/// The aborted-transaction index and the unreplicated transactions of a log being opened:
/// its index files, checked; the aborts among the markers replayed to rebuild the producer
/// state (`replayed`) are re-indexed, so an entry a crash lost comes back; a damaged file
/// makes every index be rebuilt from a replay of the whole log.
pub(super) fn load_txn_state(
    dir: &Path,
    segments: &[Segment],
    replayed: &[ReplayedTxn],
    high_watermark: i64,
) -> Result<(TxnIndexes, Vec<CompletedTxn>), StorageError> {
    let ctx = || format!("loading the transaction index of {}", dir.display());
    let log_end = segments.last().map_or(0, Segment::next_offset);
    // The last segment's bound is open: recovery may have cut its tail, and entries for the
    // cut markers are dropped below rather than taken as damage.
    let bounds: Vec<(i64, i64)> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let end = if i + 1 == segments.len() {
                i64::MAX
            } else {
                s.next_offset()
            };
            (s.base_offset(), end)
        })
        .collect();
    let (mut index, reindex) = match TxnIndexes::load(dir, &bounds).context(ctx)? {
        Ok(index) => (index, replayed.to_vec()),
        Err(damaged) => {
            tracing::warn!(dir = %dir.display(), segment = damaged.segment,
                "damaged transaction index: rebuilding every index from the log");
            TxnIndexes::remove_files(dir).context(ctx)?;
            let full = replay_from(ProducerStateTable::new(), 0, segments);
            (TxnIndexes::empty(dir), full.txns)
        }
    };
    index.truncate(log_end).context(ctx)?;
    for r in &reindex {
        if let Some(txn) = r.txn.as_aborted() {
            let entry = TxnIndexEntry {
                txn,
                last_stable_offset: r.last_stable_offset,
            };
            index.ensure(r.segment, entry).context(ctx)?;
        }
    }
    let unreplicated = replayed
        .iter()
        .map(|r| r.txn)
        .filter(|t| t.last_offset >= high_watermark)
        .collect();
    Ok((index, unreplicated))
}

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
        if let Some(txn) = completed {
            self.note_completed_txn(txn);
        }
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

    /// A marker just written (by this leader or copied from one) ended `txn`: an abort is
    /// indexed in the active segment, and the transaction stays unstable until its marker is
    /// below the high watermark. A failed index write is logged, not returned: the marker is
    /// in the log, the entry in memory, and the next flush rewrites the file.
    pub(super) fn note_completed_txn(&mut self, txn: CompletedTxn) {
        if let Some(aborted) = txn.as_aborted() {
            let after = txn.last_offset + 1;
            let entry = TxnIndexEntry {
                txn: aborted,
                last_stable_offset: self.first_unstable_offset().map_or(after, |f| f.min(after)),
            };
            let base = self.segments.last().map_or(0, Segment::base_offset);
            if let Err(error) = self.txn_index.append(base, entry) {
                tracing::warn!(dir = %self.dir.display(), %error,
                    "cannot append to the transaction index; the next flush rewrites it");
            }
        }
        if txn.last_offset >= self.high_watermark {
            self.unreplicated_txns.push(txn);
        }
    }

    /// The first unstable offset: the first offset of the oldest transaction still open on this
    /// partition, or ended by a marker not yet below the high watermark. No offset from it on
    /// is stable.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        let hw = self.high_watermark;
        let unreplicated = self
            .unreplicated_txns
            .iter()
            .filter(|t| t.last_offset >= hw)
            .map(|t| t.first_offset)
            .min();
        match (self.producers.first_open_txn_offset(), unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Kafka's `collectAbortedTxns`: the aborted transactions with a marker at or after `from`
    /// and a first offset below `upper`, in marker order: what a `read_committed` fetch of
    /// `[from, upper)` answers as `aborted_transactions`.
    pub fn collect_aborted_transactions(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        self.txn_index.collect(from, upper)
    }

    /// The transactions open on this partition as `(producer id, first offset)`, oldest first
    /// (DescribeProducers' `current_txn_start_offset`).
    pub fn open_transactions(&self) -> Vec<(i64, i64)> {
        self.producers
            .open_txns()
            .map(|(first, pid)| (pid, first))
            .collect()
    }

    /// Every producer the log's producer state knows (expired ones are not), by id.
    pub fn producers(&self) -> Vec<crate::producer_state::ProducerSummary> {
        self.producers.summaries()
    }

    /// Kafka's last stable offset: `read_committed` consumers read below it.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        // A DeleteRecords start past an open transaction's first offset keeps the producer
        // state (as Kafka does), but the LSO never falls below the log start.
        self.first_unstable_offset()
            .map_or(hw, |first| first.min(hw))
            .max(self.log_start_offset().min(hw))
    }
}

#[cfg(test)]
#[path = "log_txn_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "log_txn_proptest.rs"]
mod proptests;
