//! Model-based property test of transactions in a [`Log`]: random plain and transactional
//! appends (several producers), commit and abort markers, rolls, truncations and reopens
//! (clean or crashed). After every step the LSO and `collect_aborted_transactions` match a
//! simple model (a replay of what the log holds), a follower fed the leader's batches agrees,
//! and a reopened log equals the live one.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::super::tests::config;
use super::super::wall_clock_ms;
use super::*;
use crate::txn::AbortedTxn;
use inlet_protocol::batch::TestBatchBuilder;

#[derive(Debug, Clone)]
enum Op {
    Plain,
    Txn {
        pid: i64,
        records: usize,
    },
    Marker {
        pid: i64,
        commit: bool,
    },
    Roll,
    /// Truncate to this fraction (per mille) of the log end.
    Truncate(u16),
    Reopen {
        crash: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Plain),
        5 => (0i64..3, 1usize..4).prop_map(|(pid, records)| Op::Txn { pid, records }),
        4 => (0i64..3, any::<bool>()).prop_map(|(pid, commit)| Op::Marker { pid, commit }),
        1 => Just(Op::Roll),
        1 => (0u16..1000).prop_map(Op::Truncate),
        1 => any::<bool>().prop_map(|crash| Op::Reopen { crash }),
    ]
}

/// What the log holds, in order: data batches `(pid or -1, transactional, base, last)` and
/// markers `(pid, commit, offset)`.
#[derive(Debug, Clone)]
enum Entry {
    Data { pid: i64, base: i64, last: i64 },
    Marker { pid: i64, commit: bool, offset: i64 },
}

impl Entry {
    fn last(&self) -> i64 {
        match self {
            Entry::Data { last, .. } => *last,
            Entry::Marker { offset, .. } => *offset,
        }
    }
}

/// The model's answers: first unstable offset and aborted transactions, by replaying entries.
fn model(entries: &[Entry]) -> (Option<i64>, Vec<AbortedTxn>) {
    let mut open: BTreeMap<i64, i64> = BTreeMap::new(); // pid -> first offset
    let mut aborted = Vec::new();
    for entry in entries {
        match *entry {
            Entry::Data { pid, base, .. } if pid >= 0 => {
                open.entry(pid).or_insert(base);
            }
            Entry::Data { .. } => {}
            Entry::Marker {
                pid,
                commit,
                offset,
            } => {
                if let Some(first) = open.remove(&pid) {
                    if !commit {
                        aborted.push(AbortedTxn {
                            producer_id: pid,
                            first_offset: first,
                            last_offset: offset,
                        });
                    }
                }
            }
        }
    }
    (open.values().min().copied(), aborted)
}

/// The next sequence of `pid`: after its last batch still in the log, 0 if none.
fn next_seq(entries: &[Entry]) -> BTreeMap<i64, i32> {
    let mut seqs = BTreeMap::new();
    for entry in entries {
        if let Entry::Data { pid, base, last } = *entry {
            if pid >= 0 {
                *seqs.entry(pid).or_insert(0) += (last - base + 1) as i32;
            }
        }
    }
    seqs
}

fn observed(log: &mut Log) -> (Option<i64>, Vec<AbortedTxn>) {
    log.set_high_watermark(i64::MAX);
    (
        log.first_unstable_offset(),
        log.collect_aborted_transactions(i64::MIN, i64::MAX),
    )
}

/// Copies the leader's batches the follower lacks (cutting the follower first if it is ahead).
fn sync(leader: &Log, follower: &mut Log) {
    if follower.log_end_offset() > leader.log_end_offset() {
        follower.truncate_to(leader.log_end_offset()).unwrap();
    }
    while follower.log_end_offset() < leader.log_end_offset() {
        let bytes = leader.read(follower.log_end_offset(), 1 << 20).unwrap();
        follower.append_as_follower(&bytes).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn lso_and_aborted_transactions_match_the_model_through_truncation_and_reopen(
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let follower_dir = tempfile::tempdir().unwrap();
        let mut log = Some(Log::open(dir.path(), config(700)).unwrap());
        let mut follower = Log::open(follower_dir.path(), config(700)).unwrap();
        let mut entries: Vec<Entry> = Vec::new();
        for op in ops {
            let l = log.as_mut().unwrap();
            let end = l.log_end_offset();
            match op {
                Op::Plain => {
                    let b = TestBatchBuilder { base_timestamp: wall_clock_ms(), ..Default::default() }
                        .build(&[(b"k", b"v")]);
                    l.append(&b, 0).unwrap();
                    entries.push(Entry::Data { pid: -1, base: end, last: end });
                }
                Op::Txn { pid, records } => {
                    let seq = next_seq(&entries).get(&pid).copied().unwrap_or(0);
                    let recs: Vec<(&[u8], &[u8])> = vec![(b"k", b"v"); records];
                    let b = TestBatchBuilder {
                        producer_id: pid,
                        producer_epoch: 0,
                        base_sequence: seq,
                        transactional: true,
                        base_timestamp: wall_clock_ms(),
                        ..Default::default()
                    }
                    .build(&recs);
                    let o = l.append(&b, 0).unwrap();
                    prop_assert_eq!(o.base_offset, end);
                    entries.push(Entry::Data { pid, base: end, last: o.last_offset });
                }
                Op::Marker { pid, commit } => {
                    let m = TxnMarker { producer_id: pid, producer_epoch: 0, coordinator_epoch: 0, commit };
                    l.append_txn_marker(&m, 0).unwrap();
                    entries.push(Entry::Marker { pid, commit, offset: end });
                }
                Op::Roll => l.roll().unwrap(),
                Op::Truncate(per_mille) => {
                    let to = end * i64::from(per_mille) / 1000;
                    l.truncate_to(to).unwrap();
                    entries.retain(|e| e.last() < to && match e {
                        Entry::Data { base, .. } => *base < to,
                        Entry::Marker { .. } => true,
                    });
                    prop_assert_eq!(l.log_end_offset(), entries.last().map_or(0, |e| e.last() + 1).max(l.log_start_offset()));
                    follower.truncate_to(l.log_end_offset()).unwrap();
                }
                Op::Reopen { crash } => {
                    let mut old = log.take().unwrap();
                    let before = observed(&mut old);
                    old.flush().unwrap();
                    if crash { drop(old) } else { old.close().unwrap() }
                    let mut reopened = Log::open(dir.path(), config(700)).unwrap();
                    prop_assert_eq!(observed(&mut reopened), before);
                    log = Some(reopened);
                }
            }
            let l = log.as_mut().unwrap();
            let expected = model(&entries);
            prop_assert_eq!(&observed(l), &expected);
            let stable = expected.0.unwrap_or(l.log_end_offset());
            prop_assert_eq!(l.last_stable_offset(), stable);
            sync(l, &mut follower);
            prop_assert_eq!(observed(&mut follower), expected);
        }
    }
}
