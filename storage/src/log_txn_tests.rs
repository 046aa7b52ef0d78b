//! Behaviour tests of transactions in a [`Log`]: markers, open transactions and the LSO.

use super::super::tests::config;
use super::*;
use inlet_protocol::batch::{BatchIter, TestBatchBuilder};

pub(crate) fn txn_batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let records: Vec<(&[u8], &[u8])> = vec![(b"k", b"v"); n];
    TestBatchBuilder {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        transactional: true,
        // Markers carry the wall clock: so do the batches, or the marker would roll by age.
        base_timestamp: wall_clock_ms(),
        ..Default::default()
    }
    .build(&records)
}

pub(crate) fn marker(pid: i64, epoch: i16, commit: bool) -> TxnMarker {
    TxnMarker {
        producer_id: pid,
        producer_epoch: epoch,
        coordinator_epoch: 0,
        commit,
    }
}

fn open(dir: &std::path::Path) -> Log {
    Log::open(dir, config(1 << 20)).unwrap()
}

/// The first unstable offset with the high watermark at the log end (a sole replica).
fn unstable(log: &mut Log) -> Option<i64> {
    log.set_high_watermark(i64::MAX);
    log.first_unstable_offset()
}

/// The LSO with the high watermark at the log end (a sole replica).
fn lso(log: &mut Log) -> i64 {
    log.set_high_watermark(i64::MAX);
    log.last_stable_offset()
}

#[test]
fn marker_is_stored_as_a_control_batch_our_parser_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.append(&txn_batch(7, 2, 0, 3), 4).unwrap();
    let outcome = log.append_txn_marker(&marker(7, 2, true), 5).unwrap();
    assert_eq!((outcome.base_offset, outcome.last_offset), (3, 3));
    assert!(!outcome.duplicate);
    let bytes = log.read(3, 1 << 20).unwrap();
    let (header, range) = BatchIter::new(&bytes).next().unwrap().unwrap();
    assert!(header.is_control() && header.is_transactional());
    assert_eq!((header.base_offset, header.partition_leader_epoch), (3, 5));
    assert_eq!(
        TxnMarker::decode(&bytes[range]).unwrap(),
        Some(marker(7, 2, true))
    );
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(log.latest_epoch(), Some(5));
}

#[test]
fn an_open_transaction_holds_the_lso_until_its_marker() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.append(&TestBatchBuilder::default().build(&[(b"", b"a")]), 0)
        .unwrap();
    assert_eq!(lso(&mut log), 1);
    log.append(&txn_batch(1, 0, 0, 2), 0).unwrap(); // 1..=2
    log.append(&txn_batch(2, 0, 0, 1), 0).unwrap(); // 3
    log.append(&txn_batch(1, 0, 2, 1), 0).unwrap(); // 4, same transaction
    assert_eq!(unstable(&mut log), Some(1));
    assert_eq!(lso(&mut log), 1);
    log.append_txn_marker(&marker(1, 0, false), 0).unwrap(); // 5
    assert_eq!(lso(&mut log), 3);
    log.append_txn_marker(&marker(2, 0, true), 0).unwrap(); // 6
    assert_eq!(unstable(&mut log), None);
    assert_eq!(lso(&mut log), 7);
    // The LSO never passes the high watermark.
    log.set_high_watermark(2);
    assert_eq!(log.last_stable_offset(), 2);
}

#[test]
fn markers_with_an_old_producer_or_coordinator_epoch_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.append(&txn_batch(1, 3, 0, 1), 0).unwrap();
    let end = log.log_end_offset();
    assert!(matches!(
        log.append_txn_marker(&marker(1, 2, false), 0),
        Err(StorageError::InvalidProducerEpoch {
            current: 3,
            received: 2,
            ..
        })
    ));
    let newer_coordinator = TxnMarker {
        coordinator_epoch: 5,
        ..marker(1, 3, true)
    };
    log.append_txn_marker(&newer_coordinator, 0).unwrap();
    log.append(&txn_batch(1, 3, 1, 1), 0).unwrap();
    let end_before = log.log_end_offset();
    let older_coordinator = TxnMarker {
        coordinator_epoch: 4,
        ..marker(1, 3, false)
    };
    assert!(matches!(
        log.append_txn_marker(&older_coordinator, 0),
        Err(StorageError::TransactionCoordinatorFenced {
            current: 5,
            received: 4,
            ..
        })
    ));
    assert_eq!(log.log_end_offset(), end_before);
    assert_eq!(unstable(&mut log), Some(end_before - 1));
    assert!(end < end_before);
}

#[test]
fn a_marker_bumping_the_epoch_restarts_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.append(&txn_batch(1, 0, 0, 2), 0).unwrap();
    // The coordinator aborts with the bumped epoch (KIP-890 / a fenced producer).
    log.append_txn_marker(&marker(1, 1, false), 0).unwrap();
    assert!(matches!(
        log.append(&txn_batch(1, 0, 2, 1), 0),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    log.append(&txn_batch(1, 1, 0, 1), 0).unwrap();
}

#[test]
fn non_transactional_batch_inside_an_open_transaction_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.append(&txn_batch(1, 0, 0, 1), 0).unwrap();
    let plain = super::super::tests::idempotent(1, 0, 1, 1);
    assert!(matches!(
        log.append(&plain, 0),
        Err(StorageError::InvalidTxnState { producer_id: 1 })
    ));
    log.append_txn_marker(&marker(1, 0, true), 0).unwrap();
    log.append(&plain, 0).unwrap();
}

#[test]
fn a_clients_control_batch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    let control = marker(1, 0, true).encode(0, 0, 0);
    assert!(matches!(
        log.append(&control, 0),
        Err(StorageError::ControlBatchFromClient { position: 0 })
    ));
    assert_eq!(log.log_end_offset(), 0);
}

fn aborted(pid: i64, first: i64, last: i64) -> crate::txn::AbortedTxn {
    crate::txn::AbortedTxn {
        producer_id: pid,
        first_offset: first,
        last_offset: last,
    }
}

/// Producer 1 aborts [0, 2], producer 2 commits [1, 3]; producer 3 aborts [4, 6] in the next
/// segment (rolled by hand).
fn two_segments_with_aborts(log: &mut Log) {
    log.append(&txn_batch(1, 0, 0, 1), 0).unwrap(); // 0
    log.append(&txn_batch(2, 0, 0, 1), 0).unwrap(); // 1
    log.append_txn_marker(&marker(1, 0, false), 0).unwrap(); // 2
    log.append_txn_marker(&marker(2, 0, true), 0).unwrap(); // 3
    log.roll().unwrap();
    log.append(&txn_batch(3, 0, 0, 2), 0).unwrap(); // 4..=5
    log.append_txn_marker(&marker(3, 0, false), 0).unwrap(); // 6
}

#[test]
fn aborts_are_indexed_per_segment_and_collected_by_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    two_segments_with_aborts(&mut log);
    assert_eq!(
        log.collect_aborted_transactions(0, 7),
        [aborted(1, 0, 2), aborted(3, 4, 6)]
    );
    assert_eq!(log.collect_aborted_transactions(3, 7), [aborted(3, 4, 6)]);
    assert_eq!(log.collect_aborted_transactions(0, 1), [aborted(1, 0, 2)]);
    assert!(dir.path().join("00000000000000000000.txnindex").exists());
    assert!(dir.path().join("00000000000000000004.txnindex").exists());
    assert_eq!(
        std::fs::metadata(dir.path().join("00000000000000000004.txnindex"))
            .unwrap()
            .len(),
        34
    );
}

#[test]
fn transaction_state_survives_reopen_and_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    two_segments_with_aborts(&mut log);
    log.append(&txn_batch(4, 0, 0, 1), 0).unwrap(); // 7, left open
    log.set_high_watermark(i64::MAX);
    log.flush().unwrap();
    let expected = log.collect_aborted_transactions(0, 100);
    drop(log); // a crash: no clean close, no snapshot at the end
    let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(log.collect_aborted_transactions(0, 100), expected);
    assert_eq!(unstable(&mut log), Some(7));
    log.close().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(log.collect_aborted_transactions(0, 100), expected);
    assert_eq!(unstable(&mut log), Some(7));
    log.append_txn_marker(&marker(4, 0, true), 0).unwrap();
    assert_eq!(lso(&mut log), 9);
}

#[test]
fn damaged_or_lost_indexes_are_rebuilt_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    two_segments_with_aborts(&mut log);
    let expected = log.collect_aborted_transactions(0, 100);
    log.close().unwrap();
    // A torn first index: everything is rebuilt from the log.
    let first = dir.path().join("00000000000000000000.txnindex");
    std::fs::write(&first, [0u8; 20]).unwrap();
    let log = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(log.collect_aborted_transactions(0, 100), expected);
    assert_eq!(std::fs::metadata(&first).unwrap().len(), 34);
    drop(log);
    // A crash that lost the last segment's index: its marker is after the newest producer
    // snapshot (the one of the roll at 4), so the replay on open indexes it again. (Below the
    // newest snapshot a missing file goes unnoticed, as in Kafka; a damaged one does not.)
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    two_segments_with_aborts(&mut log);
    drop(log);
    std::fs::remove_file(dir.path().join("00000000000000000004.txnindex")).unwrap();
    let log = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(log.collect_aborted_transactions(0, 100), expected);
}

#[test]
fn truncation_cuts_the_index_and_reopens_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    two_segments_with_aborts(&mut log);
    log.truncate_to(6).unwrap(); // the abort of producer 3 goes
    assert_eq!(log.collect_aborted_transactions(0, 100), [aborted(1, 0, 2)]);
    assert_eq!(unstable(&mut log), Some(4), "producer 3 is open again");
    log.truncate_to(3).unwrap(); // the commit of producer 2 goes, its segment too
    assert_eq!(unstable(&mut log), Some(1));
    assert!(!dir.path().join("00000000000000000004.txnindex").exists());
    log.truncate_fully_and_start_at(10).unwrap();
    assert!(log.collect_aborted_transactions(0, 100).is_empty());
    assert!(!dir.path().join("00000000000000000000.txnindex").exists());
    assert_eq!(unstable(&mut log), None);
}

#[test]
fn an_unreplicated_marker_keeps_its_transaction_unstable() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.append(&txn_batch(1, 0, 0, 2), 0).unwrap(); // 0..=1
    log.set_high_watermark(2);
    log.append_txn_marker(&marker(1, 0, true), 0).unwrap(); // 2
                                                            // The marker is not replicated: a new leader without it would have the transaction open.
    assert_eq!(log.first_unstable_offset(), Some(0));
    assert_eq!(log.last_stable_offset(), 0);
    log.set_high_watermark(3);
    assert_eq!(log.first_unstable_offset(), None);
    assert_eq!(log.last_stable_offset(), 3);
}

#[test]
fn retention_deletes_a_segments_index_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    two_segments_with_aborts(&mut log);
    log.roll().unwrap();
    log.set_config(crate::LogConfig {
        retention_bytes: Some(1),
        ..config(1 << 20)
    });
    log.apply_retention(wall_clock_ms()).unwrap();
    assert_eq!(log.log_start_offset(), 4);
    assert_eq!(log.collect_aborted_transactions(0, 100), [aborted(3, 4, 6)]);
    assert!(!dir.path().join("00000000000000000000.txnindex").exists());
    assert!(dir.path().join("00000000000000000004.txnindex").exists());
}
