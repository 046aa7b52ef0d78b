//! Tests of the replication primitives of [`Log`]: follower appends, the leader-epoch cache
//! and its checkpoint, the high watermark; and a property test of a log as a replica.

use super::*;
use crate::config::LogConfig;
use crate::leader_epoch::{EpochEntry, LEADER_EPOCH_CHECKPOINT_FILE};
use crate::log::tests::{config, idempotent};
use inlet_protocol::batch::{BatchHeader, BatchIter, TestBatchBuilder};
use proptest::prelude::*;

fn batch(n: usize, ts: i64) -> Vec<u8> {
    let records: Vec<(&[u8], &[u8])> = (0..n).map(|_| (&b"k"[..], &b"value"[..])).collect();
    TestBatchBuilder {
        base_timestamp: ts,
        ..Default::default()
    }
    .build(&records)
}

/// Every stored byte from the log start to the log end (reads stop at segment ends).
fn all_bytes(log: &Log) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let bytes = log.read(offset, usize::MAX).unwrap();
        assert!(!bytes.is_empty(), "no progress at {offset}");
        for item in BatchIter::new(&bytes) {
            offset = item.unwrap().0.last_offset() + 1;
        }
        out.extend_from_slice(&bytes);
    }
    out
}

/// Copies everything the follower lacks from the leader, `max_bytes` per fetch.
fn replicate(leader: &Log, follower: &mut Log, max_bytes: usize) {
    while follower.log_end_offset() < leader.log_end_offset() {
        let bytes = leader.read(follower.log_end_offset(), max_bytes).unwrap();
        follower.append_as_follower(&bytes).unwrap();
    }
}

fn pairs(log: &Log) -> Vec<(i32, i64)> {
    log.leader_epoch_cache()
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

#[test]
fn leader_appends_record_new_epochs_and_the_checkpoint_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
    log.append(&batch(3, 0), 1).unwrap();
    log.append(&batch(2, 0), 1).unwrap();
    log.append(&batch(1, 0), 4).unwrap();
    log.append(&batch(1, 0), 2).unwrap(); // an older epoch adds nothing
    assert_eq!(pairs(&log), [(1, 0), (4, 5)]);
    let text = std::fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE)).unwrap();
    assert_eq!(text, "0\n2\n1 0\n4 5\n");
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 5)));
    assert_eq!(log.end_offset_for_epoch(3), Some((1, 5)));
    assert_eq!(log.end_offset_for_epoch(4), Some((4, 7)));
    assert_eq!(log.end_offset_for_epoch(5), None);
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 0)));
    log.close().unwrap();
    let log = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(pairs(&log), [(1, 0), (4, 5)]);
    assert_eq!(log.latest_epoch(), Some(4));
}

#[test]
fn a_missing_or_damaged_checkpoint_is_rebuilt_from_the_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(300)).unwrap();
    for epoch in [0, 0, 2, 2, 2, 5, 7, 7] {
        log.append(&batch(2, 0), epoch).unwrap();
    }
    let expected = pairs(&log);
    assert_eq!(expected, [(0, 0), (2, 4), (5, 10), (7, 12)]);
    log.close().unwrap();
    let path = dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE);
    for damage in [None, Some(&b"0\n4\n0 0\n2 4\n"[..]), Some(&b"\xff\xfe"[..])] {
        match damage {
            None => std::fs::remove_file(&path).unwrap(),
            Some(bytes) => std::fs::write(&path, bytes).unwrap(),
        }
        let log = Log::open(dir.path(), config(300)).unwrap();
        assert_eq!(pairs(&log), expected, "{damage:?}");
        // The rebuilt cache was checkpointed at once.
        assert_eq!(
            LeaderEpochCache::read_checkpoint(dir.path()).as_ref(),
            Some(log.leader_epoch_cache())
        );
        log.close().unwrap();
    }
}

#[test]
fn checkpoint_entries_past_the_recovered_log_end_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
    log.append(&batch(2, 0), 1).unwrap();
    log.append(&batch(2, 0), 3).unwrap();
    log.close().unwrap();
    // As after a crash that lost the batches of epoch 6 but not their checkpoint entry.
    let cache = LeaderEpochCache::from_entries(vec![
        EpochEntry {
            epoch: 1,
            start_offset: 0,
        },
        EpochEntry {
            epoch: 3,
            start_offset: 2,
        },
        EpochEntry {
            epoch: 6,
            start_offset: 4,
        },
    ])
    .unwrap();
    cache.write_checkpoint(dir.path()).unwrap();
    let log = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(pairs(&log), [(1, 0), (3, 2)]);
}

#[test]
fn truncation_and_retention_keep_the_epoch_cache_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(300)).unwrap();
    for epoch in [1, 1, 1, 2, 2, 3, 3, 3] {
        log.append(&batch(2, 0), epoch).unwrap();
    }
    assert_eq!(pairs(&log), [(1, 0), (2, 6), (3, 10)]);
    log.truncate_to(11).unwrap(); // cuts the batch [10, 11] whole
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(pairs(&log), [(1, 0), (2, 6)]);
    log.append(&batch(2, 0), 4).unwrap();
    assert_eq!(pairs(&log), [(1, 0), (2, 6), (4, 10)]);
    // Retention moves the log start past epoch 1: epoch 2 now starts at the log start.
    let mut cfg = config(300);
    cfg.retention_bytes = Some(1);
    log.set_config(cfg);
    log.roll().unwrap();
    log.apply_retention(0).unwrap();
    let start = log.log_start_offset();
    assert!(start > 0, "retention deleted nothing");
    let first = BatchHeader::parse(&log.read(start, 0).unwrap()).unwrap();
    assert_eq!(
        pairs(&log)[0],
        (first.partition_leader_epoch, start),
        "the covering epoch moved up to the new start"
    );
    assert_eq!(
        log.leader_epoch_cache(),
        &LeaderEpochCache::rebuild(&log.segments)
    );
    // Truncating below the log start restarts the log with no history.
    log.truncate_to(3).unwrap();
    assert!(log.leader_epoch_cache().is_empty());
    let log = {
        drop(log);
        Log::open(dir.path(), config(300)).unwrap()
    };
    assert!(log.leader_epoch_cache().is_empty());
}

#[test]
fn follower_append_keeps_the_leaders_bytes_offsets_and_epochs() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = Log::open(ld.path(), config(1 << 20)).unwrap();
    leader.append(&batch(3, 1_000), 1).unwrap();
    leader.append(&batch(2, 2_000), 1).unwrap();
    leader.append(&batch(4, 3_000), 5).unwrap();
    // A small follower segment: the copy spans several segments.
    let mut follower = Log::open(fd.path(), config(200)).unwrap();
    let bytes = leader.read(0, usize::MAX).unwrap();
    let outcome = follower.append_as_follower(&bytes).unwrap();
    assert_eq!((outcome.base_offset, outcome.last_offset), (0, 8));
    assert_eq!(outcome.max_timestamp, 3_003);
    assert!(follower.segments.len() > 1);
    assert_eq!(all_bytes(&follower), all_bytes(&leader));
    assert_eq!(pairs(&follower), [(1, 0), (5, 5)]);
    follower.close().unwrap();
    let follower = Log::open(fd.path(), config(200)).unwrap();
    assert_eq!(all_bytes(&follower), all_bytes(&leader));
    assert_eq!(pairs(&follower), [(1, 0), (5, 5)]);
}

#[test]
fn follower_append_refuses_a_gap_an_overlap_and_non_contiguous_batches() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = Log::open(ld.path(), config(1 << 20)).unwrap();
    for _ in 0..3 {
        leader.append(&batch(2, 0), 1).unwrap();
    }
    let mut follower = Log::open(fd.path(), config(1 << 20)).unwrap();
    follower
        .append_as_follower(&leader.read(0, 0).unwrap())
        .unwrap();
    let unexpected = |r: Result<AppendOutcome, StorageError>| match r {
        Err(StorageError::UnexpectedAppendOffset {
            position,
            expected,
            received,
        }) => (position, expected, received),
        other => panic!("{other:?}"),
    };
    // A gap: the batch at 4 while the log ends at 2.
    let third = leader.read(4, 0).unwrap();
    assert_eq!(unexpected(follower.append_as_follower(&third)), (0, 2, 4));
    // An overlap: the batch at 0 again.
    let first = leader.read(0, 0).unwrap();
    assert_eq!(unexpected(follower.append_as_follower(&first)), (0, 2, 0));
    // The second batch then the fourth offset range: not contiguous inside the request.
    let second = leader.read(2, 0).unwrap();
    let request = [second.to_vec(), third.to_vec(), third.to_vec()].concat();
    let at = 2 * second.len();
    assert_eq!(
        unexpected(follower.append_as_follower(&request)),
        (at, 6, 4)
    );
    // A damaged batch is refused like any append.
    let mut bad = second.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        follower.append_as_follower(&bad),
        Err(StorageError::CorruptBatch { .. })
    ));
    assert!(follower.append_as_follower(&[]).is_err());
    // Nothing of the refused requests was stored.
    assert_eq!(follower.log_end_offset(), 2);
    follower
        .append_as_follower(&[second.to_vec(), third.to_vec()].concat())
        .unwrap();
    assert_eq!(all_bytes(&follower), all_bytes(&leader));
}

#[test]
fn a_follower_behind_the_leaders_log_start_starts_over_there() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = Log::open(ld.path(), config(1 << 20)).unwrap();
    leader.append(&batch(2, 0), 3).unwrap();
    leader.truncate_fully_and_start_at(100).unwrap();
    assert_eq!(
        (leader.log_start_offset(), leader.log_end_offset()),
        (100, 100)
    );
    assert!(leader.leader_epoch_cache().is_empty());
    leader.append(&batch(2, 0), 4).unwrap();
    let mut follower = Log::open(fd.path(), config(1 << 20)).unwrap();
    follower.append(&idempotent(9, 0, 0, 3), 1).unwrap();
    follower.set_high_watermark(3);
    follower.truncate_fully_and_start_at(100).unwrap();
    assert_eq!(follower.high_watermark(), 100);
    replicate(&leader, &mut follower, usize::MAX);
    assert_eq!(all_bytes(&follower), all_bytes(&leader));
    assert_eq!(pairs(&follower), [(4, 100)]);
    assert!(follower.truncate_fully_and_start_at(-1).is_err());
    follower.close().unwrap();
    let follower = Log::open(fd.path(), config(1 << 20)).unwrap();
    assert_eq!(follower.log_start_offset(), 100);
    assert_eq!(pairs(&follower), [(4, 100)]);
    assert_eq!(follower.high_watermark(), 100);
}

#[test]
fn a_follower_that_becomes_leader_knows_the_idempotent_producers() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = Log::open(ld.path(), config(1 << 20)).unwrap();
    leader.append(&idempotent(7, 0, 0, 2), 1).unwrap();
    leader.append(&idempotent(7, 0, 2, 3), 1).unwrap();
    let mut follower = Log::open(fd.path(), config(1 << 20)).unwrap();
    replicate(&leader, &mut follower, usize::MAX);
    // The producer retries its last batch against the new leader: a duplicate, not stored.
    let retry = follower.append(&idempotent(7, 0, 2, 3), 2).unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, retry.last_offset), (2, 4));
    assert!(matches!(
        follower.append(&idempotent(7, 0, 9, 1), 2),
        Err(StorageError::OutOfOrderSequence { expected: 5, .. })
    ));
    follower.append(&idempotent(7, 0, 5, 1), 2).unwrap();
    assert_eq!(follower.log_end_offset(), 6);
    assert_eq!(pairs(&follower), [(1, 0), (2, 5)]);
}

#[test]
fn high_watermark_is_clamped_checkpointed_and_lowered_by_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let hw_file = dir.path().join(HIGH_WATERMARK_FILE);
    let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(log.high_watermark(), 0);
    for _ in 0..5 {
        log.append(&batch(2, 0), 1).unwrap();
    }
    assert_eq!(log.set_high_watermark(100), 10);
    assert_eq!(log.set_high_watermark(-5), 0);
    log.set_high_watermark(6);
    assert!(!hw_file.exists(), "written by flush, not by the setter");
    log.flush().unwrap();
    assert_eq!(std::fs::read_to_string(&hw_file).unwrap(), "6\n");
    // Reads are not limited by it.
    assert!(!log.read(8, usize::MAX).unwrap().is_empty());
    log.set_high_watermark(8);
    log.close().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(log.high_watermark(), 8);
    // Truncation below it lowers it and writes it at once.
    log.truncate_to(5).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(log.high_watermark(), 4);
    assert_eq!(std::fs::read_to_string(&hw_file).unwrap(), "4\n");
    drop(log);
    // A checkpoint above the recovered end is clamped to it.
    std::fs::write(&hw_file, "50\n").unwrap();
    let log = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(log.high_watermark(), 4);
    drop(log);
    std::fs::write(&hw_file, "junk").unwrap();
    let log = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(log.high_watermark(), 0, "unreadable: the log start");
}

#[test]
fn an_empty_log_writes_no_replication_files_until_they_hold_something() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20)).unwrap();
    log.append(&batch(1, 0), -1).unwrap(); // no leader epoch: no entry
    log.flush().unwrap();
    assert!(!dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE).exists());
    assert!(!dir.path().join(HIGH_WATERMARK_FILE).exists());
    log.set_high_watermark(1);
    log.close().unwrap();
    // Reopening walks the batches once and checkpoints what it found (nothing).
    drop(Log::open(dir.path(), config(1 << 20)).unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE)).unwrap(),
        "0\n0\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(HIGH_WATERMARK_FILE)).unwrap(),
        "1\n"
    );
}

#[test]
fn compaction_keeps_the_epoch_cache_and_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(300);
    cfg.compact = true;
    let mut log = Log::open(dir.path(), cfg).unwrap();
    // Every batch writes the same key, so compaction drops most of them.
    for epoch in [1, 1, 2, 2, 2, 3, 3, 3] {
        log.append(&batch(2, 0), epoch).unwrap();
    }
    log.set_high_watermark(12);
    let before = pairs(&log);
    let end = log.log_end_offset();
    assert!(log.compact(0).unwrap().is_some());
    assert_eq!(pairs(&log), before);
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.high_watermark()
        ),
        (0, end, 12)
    );
}

/// One step of the replica property test.
#[derive(Debug, Clone)]
enum Op {
    /// The leader appends `batches` batches of `records` records in the current epoch.
    LeaderAppend {
        batches: usize,
        records: usize,
    },
    /// A new leader epoch (as after an election).
    BumpEpoch(i32),
    /// The follower fetches up to `max_bytes` from its log end and appends as follower.
    Replicate {
        max_bytes: usize,
    },
    /// The leader's log is truncated at this fraction (per mille) of its offsets (the divergent
    /// tail of a deposed leader); the follower is cut to match and a new epoch starts.
    TruncateLeader(u16),
    /// The follower truncates at this fraction of its offsets (it will fetch them again).
    TruncateFollower(u16),
    Roll {
        follower: bool,
    },
    /// Close (or just drop, as a crash after the page cache has the bytes) and open again,
    /// optionally with the epoch checkpoint removed or damaged first.
    Reopen {
        follower: bool,
        clean: bool,
        checkpoint: u8,
    },
    SetHighWatermark {
        follower: bool,
        per_mille: u16,
    },
    /// Retention by size deletes the oldest closed segments, moving the log start.
    Retention {
        follower: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..4, 1usize..5).prop_map(|(batches, records)| Op::LeaderAppend { batches, records }),
        1 => (1i32..3).prop_map(Op::BumpEpoch),
        3 => prop_oneof![Just(0usize), 100usize..600].prop_map(|max_bytes| Op::Replicate { max_bytes }),
        1 => (0u16..1000).prop_map(Op::TruncateLeader),
        1 => (0u16..1000).prop_map(Op::TruncateFollower),
        1 => any::<bool>().prop_map(|follower| Op::Roll { follower }),
        1 => (any::<bool>(), any::<bool>(), 0u8..3).prop_map(|(follower, clean, checkpoint)| Op::Reopen { follower, clean, checkpoint }),
        1 => (any::<bool>(), 0u16..1100).prop_map(|(follower, per_mille)| Op::SetHighWatermark { follower, per_mille }),
        1 => any::<bool>().prop_map(|follower| Op::Retention { follower }),
    ]
}

fn at(log: &Log, per_mille: u16) -> i64 {
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    start + (end - start) * i64::from(per_mille) / 1000
}

fn reopen(log: Log, dir: &Path, cfg: &LogConfig, clean: bool, checkpoint: u8) -> Log {
    if clean {
        log.close().unwrap();
    } else {
        drop(log);
    }
    let path = dir.join(LEADER_EPOCH_CHECKPOINT_FILE);
    match checkpoint {
        1 => {
            let _ = std::fs::remove_file(&path);
        }
        2 => std::fs::write(&path, b"0\n7\n1 x\n").unwrap(),
        _ => {}
    }
    Log::open(dir, cfg.clone()).unwrap()
}

/// Every batch of the log with its base offset.
fn batches(log: &Log) -> Vec<(i64, Vec<u8>)> {
    log.segments
        .iter()
        .flat_map(|s| {
            BatchIter::new(s.bytes())
                .map(|item| {
                    let (header, range) = item.unwrap();
                    (header.base_offset, s.bytes()[range].to_vec())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Where their offsets overlap, the follower's batches are the leader's, byte for byte.
fn assert_follower_copies_leader(leader: &Log, follower: &Log) {
    assert!(follower.log_end_offset() <= leader.log_end_offset());
    let leader_batches: std::collections::HashMap<i64, Vec<u8>> =
        batches(leader).into_iter().collect();
    for (base, bytes) in batches(follower) {
        if base >= leader.log_start_offset() {
            assert!(
                leader_batches.get(&base) == Some(&bytes),
                "follower batch at {base} differs from the leader's"
            );
        }
    }
}

fn apply_retention(log: &mut Log) {
    let cfg = log.config().clone();
    log.set_config(LogConfig {
        retention_bytes: Some(500),
        ..cfg.clone()
    });
    log.apply_retention(0).unwrap();
    log.set_config(cfg);
}

fn check_replica_invariants(log: &Log) {
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    let mut next = start;
    for segment in &log.segments {
        for item in BatchIter::new(segment.bytes()) {
            let header = item.unwrap().0;
            assert_eq!(header.base_offset, next, "offsets dense");
            next = header.last_offset() + 1;
        }
    }
    assert_eq!(next, end);
    assert_eq!(
        log.leader_epoch_cache(),
        &LeaderEpochCache::rebuild(&log.segments),
        "the epoch cache is what the batches say"
    );
    let hw = log.high_watermark();
    assert!(start <= hw && hw <= end, "{start} <= {hw} <= {end}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_follower_copies_its_leader_exactly_and_the_epoch_cache_follows_the_log(
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // Different segment sizes: the copy rolls at other places than the original.
        let (lcfg, fcfg) = (config(400), config(700));
        let mut leader = Log::open(ld.path(), lcfg.clone()).unwrap();
        let mut follower = Log::open(fd.path(), fcfg.clone()).unwrap();
        let mut epoch = 0;
        let mut ts = 1_000;
        for op in ops {
            match op {
                Op::LeaderAppend { batches, records } => {
                    let request: Vec<u8> = (0..batches)
                        .flat_map(|_| { ts += 10; batch(records, ts) })
                        .collect();
                    leader.append(&request, epoch).unwrap();
                }
                Op::BumpEpoch(by) => epoch += by,
                Op::Replicate { max_bytes } => {
                    if follower.log_end_offset() < leader.log_start_offset() {
                        // Behind the leader's retention: start over at its log start.
                        follower.truncate_fully_and_start_at(leader.log_start_offset()).unwrap();
                    }
                    if follower.log_end_offset() < leader.log_end_offset() {
                        let bytes = leader.read(follower.log_end_offset(), max_bytes).unwrap();
                        follower.append_as_follower(&bytes).unwrap();
                    }
                }
                Op::TruncateLeader(per_mille) => {
                    leader.truncate_to(at(&leader, per_mille)).unwrap();
                    if follower.log_end_offset() > leader.log_end_offset() {
                        follower.truncate_to(leader.log_end_offset()).unwrap();
                    }
                    epoch += 1;
                }
                Op::TruncateFollower(per_mille) => {
                    follower.truncate_to(at(&follower, per_mille)).unwrap();
                }
                Op::Roll { follower: f } => {
                    if f { follower.roll().unwrap() } else { leader.roll().unwrap() }
                }
                Op::Reopen { follower: f, clean, checkpoint } => {
                    if f {
                        follower = reopen(follower, fd.path(), &fcfg, clean, checkpoint);
                    } else {
                        leader = reopen(leader, ld.path(), &lcfg, clean, checkpoint);
                    }
                }
                Op::SetHighWatermark { follower: f, per_mille } => {
                    let log = if f { &mut follower } else { &mut leader };
                    let (start, end) = (log.log_start_offset(), log.log_end_offset());
                    let target = start + (end - start) * i64::from(per_mille) / 1000;
                    let set = log.set_high_watermark(target);
                    prop_assert_eq!(set, target.min(end));
                    log.flush().unwrap();
                }
                Op::Retention { follower: f } => {
                    apply_retention(if f { &mut follower } else { &mut leader });
                }
            }
            check_replica_invariants(&leader);
            check_replica_invariants(&follower);
            assert_follower_copies_leader(&leader, &follower);
        }
        if follower.log_end_offset() < leader.log_start_offset() {
            follower.truncate_fully_and_start_at(leader.log_start_offset()).unwrap();
        }
        replicate(&leader, &mut follower, 500);
        assert_follower_copies_leader(&leader, &follower);
        if follower.log_start_offset() == leader.log_start_offset() {
            prop_assert_eq!(all_bytes(&leader), all_bytes(&follower));
            prop_assert_eq!(leader.leader_epoch_cache(), follower.leader_epoch_cache());
        }
    }
}
