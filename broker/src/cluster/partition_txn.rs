//! A partition's side of transactions: writing the markers that end them (the only way
//! markers get into a log) and the last stable offset `read_committed` readers stop at.

use inlet_storage::txn::{AbortedTxn, TxnMarker};
use inlet_storage::AppendOutcome;

use super::{Partition, PartitionError};

impl Partition {
    /// Appends `marker` (a control batch ending that producer's transaction here) stamped with
    /// the partition's current leader epoch, and wakes waiting fetches (the LSO may move).
    /// Only on the leader, checked under the log's lock as ordinary appends are
    /// ([`PartitionError::NotLeader`] otherwise); an older producer epoch than the partition
    /// knows is refused (INVALID_PRODUCER_EPOCH), as is an older coordinator epoch than the
    /// last marker's (TRANSACTION_COORDINATOR_FENCED). Callers wanting it replicated wait with
    /// [`Partition::wait_for_high_watermark`] for `last_offset + 1`.
    pub fn append_txn_marker(&self, marker: &TxnMarker) -> Result<AppendOutcome, PartitionError> {
        let epoch = self.leader_epoch();
        self.finish_append(self.with_leader_log(|log| {
            let outcome = log.append_txn_marker(marker, epoch)?;
            self.after_leader_append(log);
            Ok(outcome)
        }))
    }

    /// Kafka's last stable offset: the smaller of the high watermark and the first offset of
    /// the oldest transaction still open here.
    pub fn last_stable_offset(&self) -> Result<i64, PartitionError> {
        Ok(self.offsets()?.last_stable)
    }

    /// The transactions open here as `(producer id, first offset)`, oldest first.
    pub fn open_transactions(&self) -> Result<Vec<(i64, i64)>, PartitionError> {
        self.with_log(|log| Ok(log.open_transactions()))
    }

    /// Every producer the partition's producer state knows, by id (DescribeProducers).
    pub fn producers(
        &self,
    ) -> Result<Vec<inlet_storage::producer_state::ProducerSummary>, PartitionError> {
        self.with_log(|log| Ok(log.producers()))
    }

    /// The aborted transactions with a marker at or after `from` and a first offset below
    /// `upper`: what a `read_committed` fetch of `[from, upper)` must skip.
    pub fn aborted_transactions(
        &self,
        from: i64,
        upper: i64,
    ) -> Result<Vec<AbortedTxn>, PartitionError> {
        self.with_log(|log| Ok(log.collect_aborted_transactions(from, upper)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    use inlet_protocol::batch::{BatchIter, TestBatchBuilder};

    fn partition(dir: &std::path::Path) -> Partition {
        let log = inlet_storage::Log::open(dir, inlet_storage::LogConfig::default()).unwrap();
        Partition::new("t", 0, log)
    }

    fn txn_batch(pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
        TestBatchBuilder {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            transactional: true,
            ..Default::default()
        }
        .build(&[(b"k", b"v"), (b"k", b"w")])
    }

    fn marker(pid: i64, epoch: i16, commit: bool) -> TxnMarker {
        TxnMarker {
            producer_id: pid,
            producer_epoch: epoch,
            coordinator_epoch: 1,
            commit,
        }
    }

    #[test]
    fn a_marker_ends_the_transaction_stamped_with_the_leader_epoch_and_moves_the_lso() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path());
        p.set_leader_epoch(4);
        p.append(&txn_batch(9, 0, 0)).unwrap();
        assert_eq!(p.last_stable_offset().unwrap(), 0);
        assert_eq!(p.open_transactions().unwrap(), [(9, 0)]);
        let mut changed = p.subscribe();
        changed.borrow_and_update();
        let outcome = p.append_txn_marker(&marker(9, 0, true)).unwrap();
        assert_eq!((outcome.base_offset, outcome.last_offset), (2, 2));
        assert!(changed.has_changed().unwrap(), "waiting fetches are woken");
        assert_eq!(p.last_stable_offset().unwrap(), 3);
        let (bytes, _) = p.read(2, 1 << 20, super::super::ReadLimit::LogEnd).unwrap();
        let (header, range) = BatchIter::new(&bytes).next().unwrap().unwrap();
        assert_eq!(header.partition_leader_epoch, 4);
        assert_eq!(
            TxnMarker::decode(&bytes[range]).unwrap(),
            Some(marker(9, 0, true))
        );
    }

    #[test]
    fn read_committed_reads_stop_at_the_lso_and_name_the_aborted_transactions() {
        use super::super::ReadLimit;
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path());
        p.append(&txn_batch(1, 0, 0)).unwrap(); // 0..=1
        p.append(&TestBatchBuilder::default().build(&[(b"", b"plain")]))
            .unwrap(); // 2
        p.append(&txn_batch(2, 0, 0)).unwrap(); // 3..=4
        let (records, offsets) = p.read(0, 1 << 20, ReadLimit::LastStable).unwrap();
        assert!(records.is_empty(), "nothing is stable yet");
        assert_eq!((offsets.last_stable, offsets.high_watermark), (0, 5));
        let (records, _) = p.read(0, 1 << 20, ReadLimit::HighWatermark).unwrap();
        assert_eq!(BatchIter::new(&records).count(), 3);
        p.append_txn_marker(&marker(1, 0, false)).unwrap(); // 5
        let (records, offsets) = p.read(0, 1 << 20, ReadLimit::LastStable).unwrap();
        assert_eq!(offsets.last_stable, 3);
        let last = BatchIter::new(&records)
            .map(|b| b.unwrap().0)
            .last()
            .unwrap();
        assert_eq!(last.last_offset(), 2);
        let aborted = p.aborted_transactions(0, 3).unwrap();
        assert_eq!(
            aborted,
            [AbortedTxn {
                producer_id: 1,
                first_offset: 0,
                last_offset: 5
            }]
        );
        p.append_txn_marker(&marker(2, 0, true)).unwrap(); // 6
        assert_eq!(p.last_stable_offset().unwrap(), 7);
        assert_eq!(p.aborted_transactions(6, 7).unwrap(), []);
    }

    #[test]
    fn markers_are_refused_off_the_leader_and_with_an_old_producer_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path());
        p.append(&txn_batch(9, 2, 0)).unwrap();
        let refused = p.append_txn_marker(&marker(9, 1, false)).unwrap_err();
        assert_eq!(
            crate::handlers::errors::partition_error(&refused),
            kafka_protocol::ResponseError::InvalidProducerEpoch
        );
        p.leading.store(false, Ordering::Release);
        let refused = p.append_txn_marker(&marker(9, 2, false)).unwrap_err();
        assert!(matches!(refused, PartitionError::NotLeader { .. }));
        assert_eq!(p.offsets().unwrap().log_end, 2);
        assert_eq!(p.last_stable_offset().unwrap(), 0);
    }
}
