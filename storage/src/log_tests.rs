//! Behaviour tests of [`Log`]: appends, reads, rolls, reopen, crash recovery, truncation,
//! retention, idempotent producers, and a model-based property test.

use super::*;
use inlet_protocol::batch::{BatchHeader, TestBatchBuilder};
use proptest::prelude::*;

pub(super) fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 100,
        flush_ms: None,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// A batch of `n` records with values of `size` bytes and timestamps from `ts`.
fn batch(n: usize, size: usize, ts: i64) -> Vec<u8> {
    let value = vec![b'x'; size];
    let records: Vec<(&[u8], &[u8])> = (0..n).map(|_| (&b"key"[..], &value[..])).collect();
    TestBatchBuilder {
        base_timestamp: ts,
        ..Default::default()
    }
    .build(&records)
}

pub(super) fn idempotent(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let records: Vec<(&[u8], &[u8])> = vec![(b"", b"v"); n];
    TestBatchBuilder {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        ..Default::default()
    }
    .build(&records)
}

/// Appends and returns the stored form of the batch (offset and epoch rewritten).
fn append(log: &mut Log, b: Vec<u8>) -> (AppendOutcome, Vec<u8>) {
    let outcome = log.append(&b, 3).unwrap();
    (outcome, stored_copy(&b, outcome.base_offset, 3))
}

/// What the log stores for `request` appended at `first_offset`: the same bytes with dense base
/// offsets and the leader epoch stamped in.
fn stored_copy(request: &[u8], first_offset: i64, epoch: i32) -> Vec<u8> {
    let mut stored = request.to_vec();
    let mut next = first_offset;
    for item in inlet_protocol::batch::BatchIter::new(request) {
        let (header, range) = item.unwrap();
        inlet_protocol::batch::set_base_offset(&mut stored[range.clone()], next).unwrap();
        inlet_protocol::batch::set_partition_leader_epoch(&mut stored[range], epoch).unwrap();
        next += i64::from(header.last_offset_delta) + 1;
    }
    stored
}

fn base(b: &[u8]) -> i64 {
    BatchHeader::parse(b).unwrap().base_offset
}

#[test]
fn append_assigns_dense_offsets_and_read_returns_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
    let (o1, b1) = append(&mut log, batch(3, 10, 1000));
    let (o2, b2) = append(&mut log, batch(2, 10, 1001));
    assert_eq!(
        (
            o1.base_offset,
            o1.last_offset,
            o2.base_offset,
            o2.last_offset
        ),
        (0, 2, 3, 4)
    );
    assert_eq!(o2.max_timestamp, 1002);
    assert_eq!(log.log_end_offset(), 5);
    let h = BatchHeader::parse(&b2).unwrap();
    assert_eq!((h.base_offset, h.partition_leader_epoch), (3, 3));
    assert_eq!(
        &log.read(0, usize::MAX).unwrap()[..],
        &[b1.clone(), b2.clone()].concat()[..]
    );
    for offset in 0..3 {
        assert_eq!(
            &log.read(offset, 0).unwrap()[..],
            &b1[..],
            "offset {offset}"
        );
    }
    assert_eq!(&log.read(4, 0).unwrap()[..], &b2[..]);
}

#[test]
fn reads_are_views_into_the_mapping_not_copies() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
    append(&mut log, batch(1, 10, 0));
    append(&mut log, batch(1, 10, 0));
    let (all, second) = (log.read(0, usize::MAX).unwrap(), log.read(1, 0).unwrap());
    assert_eq!(
        all.as_ptr().wrapping_add(all.len() - second.len()),
        second.as_ptr()
    );
    assert_eq!(log.segments[0].bytes().as_ptr(), all.as_ptr());
}

#[test]
fn read_returns_whole_batches_up_to_max_bytes_and_at_least_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
    let stored: Vec<Vec<u8>> = (0..4)
        .map(|_| append(&mut log, batch(1, 50, 0)).1)
        .collect();
    let len = stored[0].len();
    assert_eq!(log.read(0, len - 1).unwrap().len(), len);
    assert_eq!(log.read(0, 2 * len + 1).unwrap().len(), 2 * len);
    assert_eq!(log.read(1, usize::MAX).unwrap().len(), 3 * len);
}

#[test]
fn read_outside_the_log_is_out_of_range_and_at_the_end_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert!(log.read(0, 100).unwrap().is_empty());
    append(&mut log, batch(2, 1, 0));
    assert!(log.read(2, 100).unwrap().is_empty());
    assert!(matches!(
        log.read(3, 100),
        Err(StorageError::OffsetOutOfRange {
            offset: 3,
            log_start: 0,
            log_end: 2
        })
    ));
    assert!(matches!(
        log.read(-1, 100),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn read_after_reopen_returns_identical_bytes() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(1000)).unwrap();
        let stored: Vec<Vec<u8>> = (0..20)
            .map(|i| append(&mut log, batch(2, 40, i)).1)
            .collect();
        assert!(log.segments.len() > 2, "segments rolled by size");
        if clean {
            log.close().unwrap();
            assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
        } else {
            log.flush().unwrap();
            drop(log);
        }
        let mut log = Log::open(dir.path(), config(1000)).unwrap();
        assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
        assert_eq!(log.log_end_offset(), 40);
        for b in &stored {
            assert_eq!(&log.read(base(b) + 1, 0).unwrap()[..], &b[..]);
        }
        assert_eq!(append(&mut log, batch(1, 1, 0)).0.base_offset, 40);
    }
}

#[test]
fn missing_index_files_of_closed_segments_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    let stored: Vec<Vec<u8>> = (0..20)
        .map(|i| append(&mut log, batch(1, 40, i)).1)
        .collect();
    log.close().unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "index") {
            std::fs::remove_file(path).unwrap();
        } else if path.extension().is_some_and(|e| e == "timeindex") {
            std::fs::write(path, [1u8; 5]).unwrap();
        }
    }
    let log = Log::open(dir.path(), config(1000)).unwrap();
    for b in &stored {
        assert_eq!(&log.read(base(b), 0).unwrap()[..], &b[..]);
    }
    assert_eq!(
        log.offset_for_timestamp(7).unwrap().map(|t| t.offset),
        Some(7)
    );
}

#[test]
fn corrupt_crc_append_is_rejected_and_log_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
    append(&mut log, batch(1, 10, 0));
    let good = batch(1, 10, 0);
    let mut bad = batch(1, 10, 0);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let request = [good.clone(), bad.clone()].concat();
    let err = log.append(&request, 0).unwrap_err();
    assert!(
        matches!(err, StorageError::CorruptBatch { position, .. } if position == good.len()),
        "{err}"
    );
    assert_eq!(&request[..good.len()], &good[..], "request bytes untouched");
    let garbage_tail = [good.clone(), vec![0; 20]].concat();
    assert!(matches!(
        log.append(&garbage_tail, 0),
        Err(StorageError::CorruptBatch { .. })
    ));
    assert!(matches!(
        log.append(&[], 0),
        Err(StorageError::CorruptBatch { .. })
    ));
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(log.read(0, usize::MAX).unwrap().len(), good.len());
}

#[test]
fn batch_larger_than_a_segment_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(500)).unwrap();
    let big = batch(1, 600, 0);
    assert!(matches!(
        log.append(&big, 0),
        Err(StorageError::RecordTooLarge { max: 500, .. })
    ));
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn crash_at_every_byte_of_the_last_batch_keeps_exactly_the_complete_batches() {
    let src = tempfile::tempdir().unwrap();
    let cfg = config(4096);
    let mut log = Log::open(src.path(), cfg.clone()).unwrap();
    let stored: Vec<Vec<u8>> = (0..5)
        .map(|i| append(&mut log, batch(i + 1, 30, 0)).1)
        .collect();
    log.flush().unwrap();
    drop(log);
    let name = "00000000000000000000";
    let full = std::fs::read(src.path().join(format!("{name}.log"))).unwrap();
    let index = std::fs::read(src.path().join(format!("{name}.index"))).unwrap();
    let last_start: usize = stored[..4].iter().map(Vec::len).sum();
    let last_end = last_start + stored[4].len();
    let kept_end = base(&stored[4]);
    for cut in last_start..last_end {
        let dir = tempfile::tempdir().unwrap();
        let mut data = full[..cut].to_vec();
        if cut % 2 == 0 {
            data.resize(full.len(), 0); // preallocated file: zeros after the torn write
        }
        std::fs::write(dir.path().join(format!("{name}.log")), &data).unwrap();
        std::fs::write(dir.path().join(format!("{name}.index")), &index).unwrap();
        // Zero-filling after a cut in the trailing zero bytes of the batch recreates it exactly.
        let intact = data.len() >= last_end && data[..last_end] == full[..last_end];
        let (end, kept) = if intact {
            (kept_end + 5, last_end)
        } else {
            (kept_end, last_start)
        };
        let mut log = Log::open(dir.path(), cfg.clone()).unwrap();
        assert_eq!(log.log_end_offset(), end, "cut at {cut}");
        assert_eq!(
            &log.read(0, usize::MAX).unwrap()[..],
            &full[..kept],
            "cut at {cut}"
        );
        let (outcome, _) = append(&mut log, batch(1, 5, 0));
        assert_eq!(outcome.base_offset, end);
        assert_eq!(log.read(end, 0).unwrap().len(), batch(1, 5, 0).len());
    }
}

#[test]
fn corrupt_byte_in_last_batch_is_cut_by_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(4096)).unwrap();
    let (_, first) = append(&mut log, batch(1, 30, 0));
    append(&mut log, batch(1, 30, 0));
    log.flush().unwrap();
    drop(log);
    let path = dir.path().join("00000000000000000000.log");
    let mut data = std::fs::read(&path).unwrap();
    data[first.len() + 70] ^= 0xff;
    std::fs::write(&path, &data).unwrap();
    let log = Log::open(dir.path(), config(4096)).unwrap();
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(&log.read(0, usize::MAX).unwrap()[..], &first[..]);
}

#[test]
fn unflushed_closed_segment_is_crc_checked_and_later_segments_kept_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    let stored: Vec<Vec<u8>> = (0..20)
        .map(|_| append(&mut log, batch(1, 100, 0)).1)
        .collect();
    let second = log.segments[1].base_offset();
    let third = log.segments[2].base_offset();
    drop(log); // crash: nothing flushed, recovery point 0
    let path = crate::segment::segment_path(dir.path(), second, "log");
    let mut data = std::fs::read(&path).unwrap();
    let victim = stored[second as usize + 1].len() + 80; // inside the segment's second batch
    data[victim] ^= 0xff;
    std::fs::write(&path, &data).unwrap();
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    assert_eq!(log.damaged_segments_at_open(), 1);
    assert_eq!(log.log_end_offset(), 20, "later segments are kept");
    assert_eq!(
        std::fs::read(path.with_extension("log.corrupt")).unwrap(),
        data
    );
    for b in stored[..=second as usize]
        .iter()
        .chain(&stored[third as usize..])
    {
        assert_eq!(&log.read(base(b), 0).unwrap()[..], &b[..]);
    }
    // Offsets lost with the damaged bytes read on from the next segment, as in Kafka.
    for lost in second + 1..third {
        assert_eq!(&log.read(lost, 0).unwrap()[..], &stored[third as usize][..]);
    }
    assert_eq!(append(&mut log, batch(1, 1, 0)).0.base_offset, 20);
}

#[test]
fn crash_during_roll_leaves_zeros_in_a_closed_segment_which_recovery_trims() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    let stored: Vec<Vec<u8>> = (0..12)
        .map(|_| append(&mut log, batch(1, 100, 0)).1)
        .collect();
    log.close().unwrap();
    std::fs::remove_file(dir.path().join(CLEAN_SHUTDOWN_FILE)).unwrap();
    let first = crate::segment::segment_path(dir.path(), 0, "log");
    let len = std::fs::metadata(&first).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(len + 4096)
        .unwrap();
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    assert_eq!(std::fs::metadata(&first).unwrap().len(), len);
    assert_eq!(log.log_end_offset(), 12);
    for b in &stored {
        assert_eq!(&log.read(base(b), 0).unwrap()[..], &b[..]);
    }
    assert_eq!(append(&mut log, batch(1, 1, 0)).0.base_offset, 12);
}

#[test]
fn duplicates_out_of_order_and_epoch_checks_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    append(&mut log, batch(1, 1, 0));
    let (first, _) = append(&mut log, idempotent(7, 1, 0, 3));
    for i in 0..10 {
        append(&mut log, batch(1, 100, i)); // push the producer's batch into a closed segment
    }
    log.flush().unwrap();
    drop(log);
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    let end = log.log_end_offset();
    let dup = log.append(&idempotent(7, 1, 0, 3), 0).unwrap();
    assert!(dup.duplicate);
    assert_eq!(
        (dup.base_offset, dup.last_offset),
        (first.base_offset, first.last_offset)
    );
    assert!(matches!(
        log.append(&idempotent(7, 1, 5, 1), 0),
        Err(StorageError::OutOfOrderSequence {
            expected: 3,
            received: 5,
            ..
        })
    ));
    assert!(matches!(
        log.append(&idempotent(7, 0, 3, 1), 0),
        Err(StorageError::InvalidProducerEpoch {
            current: 1,
            received: 0,
            ..
        })
    ));
    assert!(matches!(
        log.append(&idempotent(7, 2, 3, 1), 0),
        Err(StorageError::OutOfOrderSequence { expected: 0, .. })
    ));
    assert_eq!(log.log_end_offset(), end, "rejected appends wrote nothing");
    assert!(!log.append(&idempotent(7, 1, 3, 1), 0).unwrap().duplicate);
    assert!(!log.append(&idempotent(7, 2, 0, 1), 0).unwrap().duplicate);
}

#[test]
fn producer_state_comes_from_snapshot_plus_replay_and_truncation_forgets_removed_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    for seq in 0..10 {
        log.append(&idempotent(5, 0, seq, 1), 0).unwrap();
        append(&mut log, batch(1, 100, 0)); // rolls every few appends, writing snapshots
    }
    assert!(!snapshot::list(dir.path()).unwrap().is_empty());
    let live = log.producers.clone();
    log.flush().unwrap();
    drop(log);
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    assert_eq!(log.producers, live);
    log.truncate_to(11).unwrap(); // keeps sequences 0..=5 (offsets 0, 2, ..., 10)
    assert!(snapshot::list(dir.path()).unwrap().iter().all(|&o| o <= 11));
    assert!(log.append(&idempotent(5, 0, 5, 1), 0).unwrap().duplicate);
    assert!(!log.append(&idempotent(5, 0, 6, 1), 0).unwrap().duplicate);
    log.close().unwrap();
    let log = Log::open(dir.path(), config(1000)).unwrap();
    let at_close = snapshot::load_latest(dir.path(), log.log_end_offset())
        .unwrap()
        .unwrap();
    assert_eq!(at_close, (log.log_end_offset(), log.producers.clone()));
}

#[test]
fn truncate_to_then_append_continues_at_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    let stored: Vec<Vec<u8>> = (0..20)
        .map(|_| append(&mut log, batch(2, 40, 0)).1)
        .collect();
    let held = log.read(30, 0).unwrap();
    log.truncate_to(31).unwrap(); // inside the batch 30..=31: the whole batch goes
    assert_eq!(log.log_end_offset(), 30);
    assert_eq!(
        &held[..],
        &stored[15][..],
        "bytes held by a reader are unchanged"
    );
    assert!(matches!(
        log.read(31, 0),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let (outcome, b) = append(&mut log, batch(1, 3, 0));
    assert_eq!(outcome.base_offset, 30);
    assert_eq!(&log.read(30, 0).unwrap()[..], &b[..]);
    assert_eq!(&log.read(29, 0).unwrap()[..], &stored[14][..]);
    drop(log);
    let log = Log::open(dir.path(), config(1000)).unwrap();
    assert_eq!(log.log_end_offset(), 31);
    assert_eq!(&log.read(30, 0).unwrap()[..], &b[..]);
}

#[test]
fn truncate_to_segment_boundary_and_below_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    for _ in 0..20 {
        append(&mut log, batch(1, 40, 0));
    }
    let boundary = log.segments[1].base_offset();
    log.truncate_to(boundary).unwrap();
    assert_eq!(log.log_end_offset(), boundary);
    assert_eq!(append(&mut log, batch(1, 1, 0)).0.base_offset, boundary);
    log.truncate_to(0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert_eq!(append(&mut log, batch(1, 1, 0)).0.base_offset, 0);
}

#[test]
fn retention_by_time_deletes_old_closed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    let stored: Vec<Vec<u8>> = (0..20)
        .map(|i| append(&mut log, batch(1, 100, i * 1000)).1)
        .collect();
    let held = log.read(0, 0).unwrap();
    log.set_config(LogConfig {
        retention_ms: Some(10_000),
        ..config(1000)
    });
    let outcome = log.apply_retention(25_000).unwrap();
    assert!(outcome.deleted_segments > 0);
    assert_eq!(outcome.log_start_offset, log.log_start_offset());
    assert!(log.log_start_offset() > 0 && log.log_start_offset() <= 15);
    assert!(matches!(
        log.read(0, 0),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(&held[..], &stored[0][..]);
    let start = log.log_start_offset() as usize;
    assert_eq!(&log.read(start as i64, 0).unwrap()[..], &stored[start][..]);
    let everything = log.apply_retention(i64::MAX).unwrap();
    assert_eq!(
        log.segments.len(),
        1,
        "the active segment stays ({everything:?})"
    );
    assert_eq!(log.log_end_offset(), 20);
}

#[test]
fn retention_by_size_keeps_at_least_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    for _ in 0..40 {
        append(&mut log, batch(1, 100, 0));
    }
    log.set_config(LogConfig {
        retention_bytes: Some(2000),
        ..config(1000)
    });
    let outcome = log.apply_retention(0).unwrap();
    let total: usize = log.segments.iter().map(Segment::size).sum();
    assert!(
        total >= 2000 && total - log.segments[0].size() < 2000,
        "total {total}"
    );
    assert!(outcome.deleted_bytes > 0);
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    for i in 0..30 {
        append(&mut log, batch(2, 30, i * 10)); // timestamps i*10, i*10+1
    }
    let at = |ts| {
        log.offset_for_timestamp(ts)
            .unwrap()
            .map(|t| (t.offset, t.timestamp))
    };
    // The record, not its batch (Kafka's answer): 291 is the second record of the last batch.
    assert_eq!(at(0), Some((0, 0)));
    assert_eq!(at(1), Some((1, 1)));
    assert_eq!(at(55), Some((12, 60)));
    assert_eq!(at(291), Some((59, 291)));
    assert_eq!(at(292), None);
    assert_eq!(at(LATEST_TIMESTAMP), Some((60, -1)));
    assert_eq!(at(EARLIEST_TIMESTAMP), Some((0, -1)));
}

#[test]
fn offset_for_timestamp_looks_inside_compressed_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
    // 20 records at base+0..19 s in one lz4 batch (the confluent-kafka example).
    let base = 1_700_000_000_000;
    let records: Vec<inlet_protocol::records::Record> = (0..20)
        .map(|i| inlet_protocol::records::Record {
            attributes: 0,
            timestamp_delta: i * 1000,
            offset_delta: i as i32,
            key: None,
            value: Some(bytes::Bytes::from(format!("v{i}"))),
            headers: bytes::Bytes::from_static(&[0]),
        })
        .collect();
    let header = inlet_protocol::batch::BatchHeader {
        base_offset: 0,
        batch_length: 0,
        partition_leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: 3, // lz4
        last_offset_delta: 19,
        base_timestamp: base,
        max_timestamp: base + 19_000,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        records_count: 20,
    };
    let encoded = inlet_protocol::records::encode_batch(&header, &records).unwrap();
    append(&mut log, encoded);
    let found = log.offset_for_timestamp(base + 10_500).unwrap().unwrap();
    assert_eq!((found.offset, found.timestamp), (11, base + 11_000));
    // MAX_TIMESTAMP (KIP-734): the newest record, even with a later batch of older records.
    append(&mut log, batch(3, 10, base - 5_000));
    let newest = log
        .offset_for_timestamp(crate::MAX_TIMESTAMP)
        .unwrap()
        .unwrap();
    assert_eq!((newest.offset, newest.timestamp), (19, base + 19_000));
}

#[test]
fn segments_roll_by_age_of_first_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            segment_ms: 100,
            ..config(1 << 20)
        },
    )
    .unwrap();
    append(&mut log, batch(1, 1, 1000));
    append(&mut log, batch(1, 1, 1050));
    assert_eq!(log.segments.len(), 1);
    append(&mut log, batch(1, 1, 1101));
    assert_eq!(log.segments.len(), 2);
    assert_eq!(log.segments[1].base_offset(), 2);
}

#[test]
fn maybe_flush_follows_message_and_time_policy() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            flush_messages: Some(3),
            ..config(1 << 20)
        },
    )
    .unwrap();
    append(&mut log, batch(2, 1, 0));
    log.maybe_flush(0).unwrap();
    assert_eq!(log.unflushed_messages, 2);
    append(&mut log, batch(1, 1, 0));
    log.maybe_flush(0).unwrap();
    assert_eq!(log.unflushed_messages, 0);
    log.set_config(LogConfig {
        flush_ms: Some(1000),
        ..config(1 << 20)
    });
    append(&mut log, batch(1, 1, 0));
    let last = log.last_flush_ms;
    log.maybe_flush(last + 999).unwrap();
    assert_eq!(log.unflushed_messages, 1);
    log.maybe_flush(last + 1000).unwrap();
    assert_eq!(log.unflushed_messages, 0);
}

#[test]
fn log_can_be_shared_across_threads_behind_a_mutex() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Log>();
    assert_send_sync::<Bytes>();
}

#[test]
fn delete_removes_the_partition_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("topic-0");
    let mut log = Log::open(&dir, config(1000)).unwrap();
    append(&mut log, batch(1, 1, 0));
    log.delete().unwrap();
    assert!(!dir.exists());
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        batches: Vec<(usize, usize)>,
    },
    Roll,
    Reopen {
        clean: bool,
    },
    Truncate {
        at: prop::sample::Index,
    },
    /// Append one batch of an idempotent producer with the next sequence.
    Idempotent {
        records: usize,
    },
    /// Resend the producer's last batch still in the log: must be answered as a duplicate.
    RetryLast,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => prop::collection::vec((1usize..4, 0usize..60), 1..3).prop_map(|batches| Op::Append { batches }),
        1 => Just(Op::Roll),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => any::<prop::sample::Index>().prop_map(|at| Op::Truncate { at }),
        2 => (1usize..4).prop_map(|records| Op::Idempotent { records }),
        1 => Just(Op::RetryLast),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn any_sequence_of_operations_keeps_offsets_dense_and_reads_identical(ops in prop::collection::vec(op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(1500);
        let mut log = Some(Log::open(dir.path(), cfg.clone()).unwrap());
        let mut model: Vec<Vec<u8>> = Vec::new();
        // The idempotent producer's batches still in the log: request bytes and offsets.
        let mut sent: Vec<(Vec<u8>, i64, i64)> = Vec::new();
        let mut end = 0i64;
        for op in ops {
            let l = log.as_mut().unwrap();
            match op {
                Op::Append { batches } => {
                    let parts: Vec<Vec<u8>> = batches.iter().map(|&(n, size)| batch(n, size, end)).collect();
                    let request = parts.concat();
                    let outcome = l.append(&request, 1).unwrap();
                    let request = stored_copy(&request, outcome.base_offset, 1);
                    prop_assert_eq!(outcome.base_offset, end);
                    let mut at = 0;
                    for p in &parts {
                        let stored = request[at..at + p.len()].to_vec();
                        prop_assert_eq!(base(&stored), end);
                        end = BatchHeader::parse(&stored).unwrap().last_offset() + 1;
                        model.push(stored);
                        at += p.len();
                    }
                    prop_assert_eq!(outcome.last_offset, end - 1);
                }
                Op::Idempotent { records } => {
                    let seq = sent.last().map_or(0, |(b, _, _)| BatchHeader::parse(b).unwrap().last_sequence() + 1);
                    let original = idempotent(11, 0, seq, records);
                    let outcome = l.append(&original, 1).unwrap();
                    let request = stored_copy(&original, outcome.base_offset, 1);
                    prop_assert!(!outcome.duplicate);
                    prop_assert_eq!(outcome.base_offset, end);
                    end = outcome.last_offset + 1;
                    sent.push((original, outcome.base_offset, outcome.last_offset));
                    model.push(request);
                }
                Op::RetryLast => {
                    if let Some((original, first, last)) = sent.last() {
                        let outcome = l.append(&original.clone(), 1).unwrap();
                        prop_assert!(outcome.duplicate);
                        prop_assert_eq!((outcome.base_offset, outcome.last_offset), (*first, *last));
                    }
                }
                Op::Roll => l.roll().unwrap(),
                Op::Reopen { clean } => {
                    let old = log.take().unwrap();
                    if clean { old.close().unwrap() } else { drop(old) }
                    log = Some(Log::open(dir.path(), cfg.clone()).unwrap());
                }
                Op::Truncate { at } => {
                    let offset = if end == 0 { 0 } else { at.index(end as usize + 1) as i64 };
                    l.truncate_to(offset).unwrap();
                    model.retain(|b| BatchHeader::parse(b).unwrap().last_offset() < offset);
                    sent.retain(|(_, _, last)| *last < offset);
                    end = model.last().map_or(0, |b| BatchHeader::parse(b).unwrap().last_offset() + 1);
                }
            }
            let l = log.as_ref().unwrap();
            prop_assert_eq!(l.log_end_offset(), end);
            prop_assert_eq!(l.log_start_offset(), 0);
            let mut expected_next = 0;
            for b in &model {
                let h = BatchHeader::parse(b).unwrap();
                prop_assert_eq!(h.base_offset, expected_next, "dense offsets");
                expected_next = h.last_offset() + 1;
                for offset in h.base_offset..=h.last_offset() {
                    let read = l.read(offset, 0).unwrap();
                    prop_assert_eq!(&read[..], &b[..]);
                }
            }
        }
    }
}

/// The stored log of segment `base` and the byte range of each of its batches.
fn batches_of(dir: &Path, base: i64) -> (PathBuf, Vec<u8>, Vec<std::ops::Range<usize>>) {
    let path = crate::segment::segment_path(dir, base, "log");
    let data = std::fs::read(&path).unwrap();
    let ranges = inlet_protocol::batch::BatchIter::new(&data)
        .map(|item| item.unwrap().1)
        .collect();
    (path, data, ranges)
}

#[test]
fn damaged_oldest_segment_keeps_its_valid_prefix_and_every_later_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    let stored: Vec<Vec<u8>> = (0..40)
        .map(|i| append(&mut log, batch(1, 100, i)).1)
        .collect();
    assert!(log.segments.len() >= 5);
    let second = log.segments[1].base_offset();
    log.close().unwrap();
    // One byte of the length of the oldest segment's last batch, then a clean restart.
    let (path, mut data, ranges) = batches_of(dir.path(), 0);
    let last = ranges.last().unwrap().start;
    data[last + 11] ^= 0x01;
    std::fs::write(&path, &data).unwrap();
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    assert_eq!(log.damaged_segments_at_open(), 1);
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.log_end_offset(), 40);
    assert!(path.with_extension("log.corrupt").exists());
    let lost = second - 1; // the damaged batch
    for (i, b) in stored.iter().enumerate() {
        let want = if i as i64 == lost {
            &stored[second as usize]
        } else {
            b
        };
        assert_eq!(&log.read(i as i64, 0).unwrap()[..], &want[..], "offset {i}");
    }
    assert_eq!(append(&mut log, batch(1, 1, 0)).0.base_offset, 40);
    // The next clean restart finds nothing new to complain about.
    log.close().unwrap();
    let log = Log::open(dir.path(), config(1000)).unwrap();
    assert_eq!(log.damaged_segments_at_open(), 0);
    assert_eq!(log.log_end_offset(), 41);
}

#[test]
fn wholly_damaged_segment_is_set_aside_and_the_gap_read_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    let stored: Vec<Vec<u8>> = (0..30)
        .map(|i| append(&mut log, batch(1, 100, i)).1)
        .collect();
    let (second, third) = (log.segments[1].base_offset(), log.segments[2].base_offset());
    log.close().unwrap();
    let (path, mut data, _) = batches_of(dir.path(), second);
    data[11] ^= 0x01; // the first batch's length: nothing of the segment is valid
    std::fs::write(&path, &data).unwrap();
    // After a crash with nothing flushed, every closed segment is walked.
    std::fs::remove_file(dir.path().join(CLEAN_SHUTDOWN_FILE)).unwrap();
    std::fs::remove_file(dir.path().join(crate::recovery::RECOVERY_POINT_FILE)).unwrap();
    let log = Log::open(dir.path(), config(1000)).unwrap();
    assert_eq!(log.damaged_segments_at_open(), 1);
    assert!(!path.exists() && path.with_extension("log.corrupt").exists());
    assert_eq!(
        &log.read(second, 0).unwrap()[..],
        &stored[third as usize][..]
    );
    assert_eq!(&log.read(0, 0).unwrap()[..], &stored[0][..]);
    assert_eq!(log.log_end_offset(), 30);
}

#[test]
fn clean_restart_does_not_rescan_closed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    for i in 0..20 {
        append(&mut log, batch(1, 100, i));
    }
    log.close().unwrap();
    // A flipped value byte is caught only by a CRC walk, which a clean restart does not do.
    let (path, mut data, ranges) = batches_of(dir.path(), 0);
    data[ranges[0].end - 3] ^= 0xff;
    std::fs::write(&path, &data).unwrap();
    let log = Log::open(dir.path(), config(1000)).unwrap();
    assert_eq!(log.damaged_segments_at_open(), 0);
    assert_eq!(std::fs::read(&path).unwrap(), data);
}

/// Rewrites the `.index` of segment `base` with the positions of all its entries but the last
/// moved forward by `shift` bytes: still increasing and inside the file, but naming no batch,
/// while the last entry (which the tail walk at open reads) stays right.
fn shift_index_positions(dir: &Path, base: i64, shift: u32) {
    let path = crate::segment::segment_path(dir, base, "index");
    let mut entries = std::fs::read(&path).unwrap();
    assert!(entries.len() >= 16, "the test needs index entries");
    let last = entries.len() - 8;
    for entry in entries[..last].chunks_mut(8) {
        let pos = u32::from_be_bytes(entry[4..8].try_into().unwrap()) + shift;
        entry[4..8].copy_from_slice(&pos.to_be_bytes());
    }
    std::fs::write(&path, &entries).unwrap();
}

#[test]
fn index_with_wrong_in_range_positions_is_rebuilt_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(4000)).unwrap();
    let stored: Vec<Vec<u8>> = (0..60)
        .map(|i| append(&mut log, batch(1, 100, i)).1)
        .collect();
    log.close().unwrap();
    let index = crate::segment::segment_path(dir.path(), 0, "index");
    let good = std::fs::read(&index).unwrap();
    shift_index_positions(dir.path(), 0, 7);
    let log = Log::open(dir.path(), config(4000)).unwrap();
    assert_eq!(std::fs::read(&index).unwrap(), good, "rebuilt from the log");
    for b in &stored {
        assert_eq!(&log.read(base(b), 0).unwrap()[..], &b[..]);
    }
}

#[test]
fn lookup_through_a_wrong_index_entry_heals_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
    let stored: Vec<Vec<u8>> = (0..200)
        .map(|i| append(&mut log, batch(1, 100, i)).1)
        .collect();
    log.roll().unwrap();
    log.close().unwrap();
    // Break only the second entry: the open-time check samples the first, the last and every
    // n/32-th entry, so this one exercises the lookup's own check.
    let index = crate::segment::segment_path(dir.path(), 0, "index");
    let good = std::fs::read(&index).unwrap();
    let mut bad = good.clone();
    let pos = u32::from_be_bytes(bad[12..16].try_into().unwrap()) + 5;
    bad[12..16].copy_from_slice(&pos.to_be_bytes());
    std::fs::write(&index, &bad).unwrap();
    let (segment, damage) =
        crate::segment::Segment::recover_closed(dir.path(), 0, 100, false, 0).unwrap();
    assert!(damage.is_none());
    assert_eq!(std::fs::read(&index).unwrap(), bad, "the sample missed it");
    for b in &stored {
        let position = segment.find_position(base(b)).unwrap().unwrap();
        assert_eq!(&segment.bytes()[position..position + b.len()], &b[..]);
    }
    assert_eq!(std::fs::read(&index).unwrap(), good, "healed on disk too");
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

#[test]
fn closed_segments_hold_no_file_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
    for i in 0..300 {
        append(&mut log, batch(1, 10, i));
        log.roll().unwrap();
    }
    log.flush().unwrap();
    log.close().unwrap();
    let before = open_fds();
    let log = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(log.segments.len(), 301);
    let after = open_fds();
    // Tests run in parallel threads, so other tests' files may come and go; 300 segments
    // holding their files would add 300.
    assert!(
        after < before + 100,
        "{before} fds before, {after} after opening 301 segments"
    );
    assert_eq!(log.read(150, 0).unwrap().len(), batch(1, 10, 0).len());
}

#[test]
fn opening_a_log_of_many_segments_after_a_clean_shutdown_is_quick() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(64 * 1024)).unwrap();
    let segments = 500;
    for i in 0..segments * 100 {
        append(&mut log, batch(1, 500, i));
    }
    log.close().unwrap();
    // The fastest of a few clean reopens: shared test machines are noisy.
    let (mut fastest, mut opened) = (std::time::Duration::MAX, 0);
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let log = Log::open(dir.path(), config(64 * 1024)).unwrap();
        fastest = fastest.min(started.elapsed());
        opened = log.segments.len();
        log.close().unwrap();
    }
    // 439 segments of 64 KiB in a debug build, warm page cache: 94 ms before the index
    // checks, 89 ms with them (noise: the sampled header reads cost little).
    eprintln!("opened a log of {opened} segments in {fastest:?} (fastest of 5)");
    assert!(opened >= 400);
}

#[test]
fn time_index_naming_no_batch_or_too_old_a_timestamp_is_rebuilt_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(4000)).unwrap();
    for i in 0..60 {
        append(&mut log, batch(1, 100, 1000 + i));
    }
    log.close().unwrap();
    let path = crate::segment::segment_path(dir.path(), 0, "timeindex");
    let good = std::fs::read(&path).unwrap();
    assert!(good.len() >= 36, "the test needs time entries");
    // First entry: same offset, a timestamp below that batch's own (still increasing).
    let mut bad = good.clone();
    bad[..8].copy_from_slice(&1i64.to_be_bytes());
    std::fs::write(&path, &bad).unwrap();
    let log = Log::open(dir.path(), config(4000)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), good, "rebuilt from the log");
    assert_eq!(
        log.offset_for_timestamp(1030).unwrap().map(|t| t.offset),
        Some(30)
    );
}

#[test]
fn segment_overlapping_the_previous_one_is_set_aside_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1000)).unwrap();
    let stored: Vec<Vec<u8>> = (0..30)
        .map(|i| append(&mut log, batch(1, 100, i)).1)
        .collect();
    let second = log.segments[1].base_offset();
    log.close().unwrap();
    // A stray copy of the second segment named one offset later: offsets would go backwards.
    let stray = crate::segment::segment_path(dir.path(), second + 1, "log");
    std::fs::copy(
        crate::segment::segment_path(dir.path(), second, "log"),
        &stray,
    )
    .unwrap();
    let log = Log::open(dir.path(), config(1000)).unwrap();
    assert_eq!(log.damaged_segments_at_open(), 1);
    assert!(!stray.exists() && stray.with_extension("log.corrupt").exists());
    assert_eq!(log.log_end_offset(), 30);
    for b in &stored {
        assert_eq!(&log.read(base(b), 0).unwrap()[..], &b[..]);
    }
}

#[test]
fn a_request_with_one_bad_batch_stores_nothing_and_leaves_producer_state_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
    let first = idempotent(7, 0, 0, 2);
    // Second batch: valid CRC, but its header claims 3 records and it holds 2 (issue 10 item 1).
    let mut lying = idempotent(7, 0, 2, 2);
    lying[23..27].copy_from_slice(&2i32.to_be_bytes());
    lying[57..61].copy_from_slice(&3i32.to_be_bytes());
    let crc = inlet_protocol::batch::compute_crc(&lying).unwrap();
    lying[17..21].copy_from_slice(&crc.to_be_bytes());
    let request = [first.clone(), lying].concat();
    assert!(matches!(
        log.append(&request, 0),
        Err(StorageError::CorruptBatch { .. })
    ));
    assert_eq!(log.log_end_offset(), 0);
    // The producer's corrected retry is stored exactly once, from sequence 0.
    let retry = [first, idempotent(7, 0, 2, 2)].concat();
    let outcome = log.append(&retry, 0).unwrap();
    assert_eq!((outcome.base_offset, outcome.last_offset), (0, 3));
    assert!(log.append(&retry, 0).unwrap().duplicate);
    assert_eq!(log.log_end_offset(), 4);
}

/// Recomputes the CRC of every parsable batch of `records`, so mutations reach the record walk.
fn fix_crcs(records: &mut [u8]) {
    let ranges: Vec<_> = inlet_protocol::batch::BatchIter::new(records)
        .filter_map(Result::ok)
        .map(|(_, range)| range)
        .collect();
    for range in ranges {
        if let Ok(crc) = inlet_protocol::batch::compute_crc(&records[range.clone()]) {
            records[range.start + 17..range.start + 21].copy_from_slice(&crc.to_be_bytes());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Mutated requests (bytes flipped in record bodies, CRCs fixed up) are either refused with
    /// nothing stored, or stored whole with every record decodable and offsets dense.
    #[test]
    fn mutated_requests_are_refused_whole_or_stored_whole(
        flips in proptest::collection::vec((0usize..400, any::<u8>()), 0..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
        let mut request = [batch(3, 10, 0), batch(2, 5, 1)].concat();
        let len = request.len();
        for (at, byte) in flips {
            request[at % len] ^= byte;
        }
        fix_crcs(&mut request);
        match log.append(&request, 0) {
            Err(_) => prop_assert_eq!(log.log_end_offset(), 0),
            Ok(outcome) => {
                prop_assert_eq!(outcome.base_offset, 0);
                prop_assert_eq!(log.log_end_offset(), outcome.last_offset + 1);
                let stored = log.read(0, usize::MAX).unwrap();
                prop_assert_eq!(stored.len(), request.len());
                let mut next = 0;
                for item in inlet_protocol::batch::BatchIter::new(&stored) {
                    let (header, range) = item.unwrap();
                    prop_assert_eq!(header.base_offset, next);
                    let (_, records) =
                        inlet_protocol::records::decode_batch(&stored.slice(range)).unwrap();
                    prop_assert_eq!(records.len() as i32, header.records_count);
                    next = header.last_offset() + 1;
                }
                prop_assert_eq!(next, log.log_end_offset());
            }
        }
    }
}

/// A new leader's segments need not start where the old leader's tiering stopped: the segment
/// holding the lake's end is copied from there on (indexes re-based), so the lake gets no gap.
#[test]
fn tiering_resumes_inside_a_segment_that_straddles_the_lakes_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(2000)).unwrap();
    for i in 0..12 {
        append(&mut log, batch(2, 100, i * 10));
    }
    log.set_high_watermark(log.log_end_offset());
    let first = log.closed_segment_from(0).expect("a closed segment");
    assert_eq!(first.base_offset, 0);
    // Resume at a batch boundary inside the first segment.
    let resumed = log.closed_segment_from(4).expect("the rest of the segment");
    assert_eq!(
        (resumed.base_offset, resumed.last_offset),
        (4, first.last_offset)
    );
    let batches: Vec<_> = inlet_protocol::batch::BatchIter::new(&resumed.log)
        .map(|b| b.unwrap().0)
        .collect();
    assert_eq!(batches[0].base_offset, 4);
    assert_eq!(
        resumed.max_timestamp,
        batches.iter().map(|h| h.max_timestamp).max().unwrap()
    );
    for e in resumed.offset_index.chunks_exact(8) {
        let rel = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
        let at = u32::from_be_bytes([e[4], e[5], e[6], e[7]]) as usize;
        let h = BatchHeader::parse(&resumed.log[at..]).unwrap();
        assert!(h.base_offset <= 4 + i64::from(rel) && 4 + i64::from(rel) <= h.last_offset());
    }
    // Inside a batch there is no boundary to resume at: nothing, and never a later segment.
    assert!(log.closed_segment_from(5).is_none());
}

#[test]
fn a_duplicate_inside_a_request_of_several_batches_is_out_of_sequence_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
    // The same batch twice in one request: the second repeats the first, which is not written
    // yet; answering "duplicate" would acknowledge offsets never written.
    let twice = [idempotent(7, 0, 0, 1), idempotent(7, 0, 0, 1)].concat();
    assert!(matches!(
        log.append(&twice, 0),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    assert_eq!(log.log_end_offset(), 0);
    // A new batch with a retry of a stored one: the new one must not be dropped silently.
    log.append(&idempotent(7, 0, 0, 1), 0).unwrap();
    let mixed = [idempotent(7, 0, 1, 1), idempotent(7, 0, 0, 1)].concat();
    assert!(matches!(
        log.append(&mixed, 0),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    assert_eq!(log.log_end_offset(), 1);
    // A lone retry, or a retry of a whole stored request, is still answered with the stored
    // offsets.
    let retry = log.append(&idempotent(7, 0, 0, 1), 0).unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, log.log_end_offset()), (0, 1));
    let pair = [idempotent(7, 0, 1, 1), idempotent(7, 0, 2, 1)].concat();
    assert_eq!(log.append(&pair, 0).unwrap().last_offset, 2);
    let again = log.append(&pair, 0).unwrap();
    assert!(again.duplicate);
    assert_eq!((again.base_offset, again.last_offset), (1, 2));
    assert_eq!(log.log_end_offset(), 3);
}
