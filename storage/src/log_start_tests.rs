//! The DeleteRecords start offset: inside a segment, across reopen and crash, with retention
//! and truncation, and a model-based property test.

use std::path::Path;

use inlet_protocol::batch::{BatchHeader, BatchIter, TestBatchBuilder};
use proptest::prelude::*;

use super::*;
use crate::log::tests::config;

/// A batch of `n` small records.
fn batch(n: usize) -> Vec<u8> {
    let records: Vec<(&[u8], &[u8])> = vec![(&b"k"[..], &b"value"[..]); n];
    TestBatchBuilder {
        base_timestamp: crate::log::wall_clock_ms(),
        ..Default::default()
    }
    .build(&records)
}

/// A log of `batches` batches of 10 records each, in segments of about three batches.
fn filled(dir: &Path, batches: usize) -> Log {
    let mut log = Log::open(dir, config(400)).unwrap();
    for _ in 0..batches {
        log.append(&batch(10), 1).unwrap();
    }
    log
}

fn first_base(log: &Log) -> i64 {
    let bytes = log.read(log.log_start_offset(), 1 << 20).unwrap();
    BatchHeader::parse(&bytes).unwrap().base_offset
}

fn segment_count(log: &Log) -> usize {
    log.segments.len()
}

#[test]
fn a_start_inside_a_segment_refuses_reads_below_and_serves_from_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = filled(dir.path(), 12);
    assert!(segment_count(&log) > 2);
    assert_eq!(log.delete_records_before(55).unwrap(), 55);
    assert_eq!(log.log_start_offset(), 55);
    assert!(matches!(
        log.read(54, 1 << 20),
        Err(StorageError::OffsetOutOfRange { log_start: 55, .. })
    ));
    // The batch holding 55 is served whole, as Kafka serves it (clients skip below).
    assert_eq!(first_base(&log), 50);
    let earliest = log
        .offset_for_timestamp(crate::log::EARLIEST_TIMESTAMP)
        .unwrap();
    assert_eq!(earliest.map(|t| t.offset), Some(55));
    // A timestamp older than everything answers the start, not a deleted record.
    assert_eq!(
        log.offset_for_timestamp(0).unwrap().map(|t| t.offset),
        Some(55)
    );
    // Whole segments below are gone.
    assert!(log.segments[0].base_offset() <= 55 && log.segments[0].next_offset() > 55);
    assert!(log.high_watermark() >= 55);
}

#[test]
fn a_start_at_or_below_the_current_one_changes_nothing_and_past_the_end_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = filled(dir.path(), 4);
    assert_eq!(log.delete_records_before(15).unwrap(), 15);
    assert_eq!(log.delete_records_before(3).unwrap(), 15);
    assert_eq!(log.delete_records_before(15).unwrap(), 15);
    assert!(matches!(
        log.delete_records_before(41),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert!(log.delete_records_before(-5).is_err());
    assert_eq!(log.log_start_offset(), 15);
}

#[test]
fn the_start_survives_a_clean_restart_and_a_crash() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = filled(dir.path(), 9);
        log.delete_records_before(47).unwrap();
        if clean {
            log.close().unwrap();
        } else {
            drop(log); // no close: as kill -9 leaves it
        }
        let mut log = Log::open(dir.path(), config(400)).unwrap();
        assert_eq!(log.log_start_offset(), 47, "clean: {clean}");
        assert!(log.read(46, 1 << 20).is_err());
        assert_eq!(first_base(&log), 40);
        assert!(log.high_watermark() >= 47);
        // Appends continue at the end.
        assert_eq!(log.append(&batch(1), 1).unwrap().base_offset, 90);
    }
}

#[test]
fn deleting_every_record_leaves_an_empty_log_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = filled(dir.path(), 5);
    assert_eq!(log.delete_records_before(50).unwrap(), 50);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (50, 50));
    assert_eq!(segment_count(&log), 1);
    assert!(log.read(50, 100).unwrap().is_empty());
    drop(log);
    let mut log = Log::open(dir.path(), config(400)).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (50, 50));
    assert_eq!(log.append(&batch(2), 1).unwrap().base_offset, 50);
}

#[test]
fn a_checkpoint_past_the_recovered_end_restarts_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), 3);
    drop(log);
    std::fs::write(dir.path().join(LOG_START_FILE), "70\n").unwrap();
    let log = Log::open(dir.path(), config(400)).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (70, 70));
}

#[test]
fn a_damaged_checkpoint_counts_as_no_floor() {
    let dir = tempfile::tempdir().unwrap();
    drop(filled(dir.path(), 3));
    std::fs::write(dir.path().join(LOG_START_FILE), "x").unwrap();
    let log = Log::open(dir.path(), config(400)).unwrap();
    assert_eq!(log.log_start_offset(), 0);
}

#[test]
fn retention_keeps_working_after_the_start_moved() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = filled(dir.path(), 12);
    log.delete_records_before(35).unwrap();
    let before = segment_count(&log);
    let mut cfg = config(400);
    cfg.retention_bytes = Some(1);
    log.set_config(cfg);
    let outcome = log.apply_retention(crate::log::wall_clock_ms()).unwrap();
    assert!(outcome.deleted_segments > 0 && segment_count(&log) < before);
    assert!(log.log_start_offset() > 35);
    assert_eq!(log.log_start_offset(), first_base(&log));
}

#[test]
fn truncation_below_the_start_lowers_it_and_a_full_one_restarts_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = filled(dir.path(), 6);
    log.delete_records_before(25).unwrap();
    // Into the batch holding the start: the batch goes whole, the start follows the end.
    log.truncate_to(27).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (20, 20));
    log.append(&batch(10), 2).unwrap();
    log.delete_records_before(25).unwrap();
    log.truncate_fully_and_start_at(100).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 100));
    drop(log);
    let log = Log::open(dir.path(), config(400)).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 100));
}

#[test]
fn a_follower_adopts_its_leaders_start_only_up_to_its_own_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = filled(dir.path(), 3);
    assert_eq!(log.adopt_leader_log_start(45).unwrap(), 30);
    assert_eq!(log.adopt_leader_log_start(10).unwrap(), 30);
    assert_eq!(log.log_start_floor(), 30);
}

#[test]
fn the_lso_never_falls_below_the_start_past_an_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = filled(dir.path(), 2);
    let records: Vec<(&[u8], &[u8])> = vec![(&b"k"[..], &b"v"[..]); 5];
    let txn = TestBatchBuilder {
        producer_id: 7,
        producer_epoch: 0,
        base_sequence: 0,
        transactional: true,
        ..Default::default()
    }
    .build(&records);
    log.append(&txn, 1).unwrap();
    log.append(&batch(5), 1).unwrap();
    log.set_high_watermark(log.log_end_offset());
    assert_eq!(log.last_stable_offset(), 20);
    log.delete_records_before(27).unwrap();
    assert_eq!(log.last_stable_offset(), 27);
    assert_eq!(log.open_transactions(), vec![(7, 20)]);
}

/// Every batch's base offset from the log start on.
fn bases(log: &Log) -> Vec<i64> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let bytes = log.read(at, 1 << 20).unwrap();
        for item in BatchIter::new(&bytes) {
            let (h, _) = item.unwrap();
            out.push(h.base_offset);
            at = h.last_offset() + 1;
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Delete(u16),
    Reopen { clean: bool },
    Retention,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..8).prop_map(Op::Append),
        2 => (0u16..=1000).prop_map(Op::Delete),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => Just(Op::Retention),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The start only moves up, reads below it always fail, reads from it always succeed, and
    /// it never passes the log end, whatever appends, restarts and retention come in between.
    #[test]
    fn the_start_is_monotone_and_durable(ops in proptest::collection::vec(op(), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Some(Log::open(dir.path(), config(400)).unwrap());
        let mut model_start = 0i64;
        for op in ops {
            let l = log.as_mut().unwrap();
            match op {
                Op::Append(n) => { l.append(&batch(n), 1).unwrap(); }
                Op::Delete(per_mille) => {
                    let end = l.log_end_offset();
                    let target = end * i64::from(per_mille) / 1000;
                    let got = l.delete_records_before(target).unwrap();
                    model_start = model_start.max(target);
                    prop_assert_eq!(got, model_start);
                }
                Op::Reopen { clean } => {
                    let old = log.take().unwrap();
                    if clean { old.close().unwrap() } else { drop(old) }
                    log = Some(Log::open(dir.path(), config(400)).unwrap());
                }
                Op::Retention => { l.apply_retention(0).unwrap(); }
            }
            let l = log.as_ref().unwrap();
            prop_assert_eq!(l.log_start_offset(), model_start);
            prop_assert!(l.log_start_offset() <= l.log_end_offset());
            if model_start > 0 {
                prop_assert!(l.read(model_start - 1, 100).is_err());
            }
            let seen = bases(l);
            prop_assert!(seen.windows(2).all(|w| w[0] < w[1]));
        }
    }
}

#[test]
fn a_timestamp_lookup_answers_the_first_record_from_the_start_with_its_own_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(400)).unwrap();
    // Batch k holds offsets 10k..10k+9 with timestamps 1000k..1000k+9.
    for k in 0..8i64 {
        let records: Vec<(&[u8], &[u8])> = vec![(&b"k"[..], &b"value"[..]); 10];
        let batch = TestBatchBuilder {
            base_timestamp: 1_000_000 + 1000 * k,
            ..Default::default()
        }
        .build(&records);
        log.append(&batch, 1).unwrap();
    }
    log.delete_records_before(55).unwrap();
    let found = |t: i64| {
        log.offset_for_timestamp(1_000_000 + t)
            .unwrap()
            .map(|f| (f.offset, f.timestamp - 1_000_000))
    };
    // The first record at the time is 52, deleted: the answer is 55 with 55's timestamp.
    assert_eq!(found(5002), Some((55, 5005)));
    assert_eq!(found(5007), Some((57, 5007)));
    assert_eq!(found(5000), Some((55, 5005)));
    // Past the start's batch, as before.
    assert_eq!(found(6003), Some((63, 6003)));
}
