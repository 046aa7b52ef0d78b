//! Replay of transactional offsets: pending until their producer's marker, committed or dropped
//! by it, and the same outcome as the live coordinator's rules for any log.

use proptest::prelude::*;

use super::*;
use crate::group::log_format::{encode_key, encode_offset};
use crate::group::state::{CommittedOffset, Group};
use inlet_protocol::batch::MAGIC_V2;

const TRANSACTIONAL: i16 = 0x10;
const CONTROL: i16 = 0x20;

fn header(base_offset: i64, attributes: i16, producer_id: i64, records: usize) -> BatchHeader {
    BatchHeader {
        base_offset,
        batch_length: 0,
        partition_leader_epoch: 0,
        magic: MAGIC_V2,
        crc: 0,
        attributes,
        last_offset_delta: records.saturating_sub(1) as i32,
        base_timestamp: 0,
        max_timestamp: 0,
        producer_id,
        producer_epoch: if producer_id < 0 { -1 } else { 0 },
        base_sequence: if producer_id < 0 { -1 } else { 0 },
        records_count: records as i32,
    }
}

fn offset_record(delta: i32, partition: i32, offset: i64) -> Record {
    let key = RecordKey::Offset {
        group: "g".into(),
        topic: "t".into(),
        partition,
    };
    let value = CommittedOffset {
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 0,
    };
    Record::new(
        delta,
        0,
        Some(encode_key(&key)),
        Some(encode_offset(&value)),
    )
}

/// A log writer: plain commits, transactional commits and markers at dense offsets.
#[derive(Default)]
struct Log {
    next: i64,
    replayed: Replayed,
}

impl Log {
    /// Offsets `(partition, offset)` as one batch of `producer` (None: a plain commit).
    fn commit(&mut self, producer: Option<i64>, offsets: &[(i32, i64)]) {
        let records = offsets
            .iter()
            .zip(0..)
            .map(|(&(p, o), delta)| offset_record(delta, p, o))
            .collect();
        let header = match producer {
            Some(pid) => header(self.next, TRANSACTIONAL, pid, offsets.len()),
            None => header(self.next, 0, -1, offsets.len()),
        };
        self.next += offsets.len() as i64;
        self.replayed.apply_batch(&header, records);
    }

    fn marker(&mut self, producer_id: i64, commit: bool) {
        let mut key = Vec::new();
        key.extend_from_slice(&0i16.to_be_bytes());
        key.extend_from_slice(&i16::from(commit).to_be_bytes());
        let record = Record::new(0, 0, Some(Bytes::from(key)), None);
        let header = header(self.next, TRANSACTIONAL | CONTROL, producer_id, 1);
        self.next += 1;
        self.replayed.apply_batch(&header, vec![record]);
    }

    fn committed(&self) -> Vec<(i32, i64)> {
        self.replayed
            .offsets
            .iter()
            .map(|((_, _, p), logged)| (*p, logged.offset.offset))
            .collect()
    }
}

#[test]
fn aborted_and_committed_transactions_interleaved_with_plain_commits_replay_as_kafka_decides() {
    let mut log = Log::default();
    log.commit(None, &[(0, 10)]); // offset 0
    log.commit(Some(7), &[(0, 20), (1, 21)]); // offsets 1, 2
    log.commit(Some(8), &[(0, 30), (2, 32)]); // offsets 3, 4
    log.commit(None, &[(1, 15)]); // offset 5: written after producer 7's offset of partition 1
    log.marker(8, false); // abort: 30 and 32 never become visible
    log.marker(7, true); // commit: 20 replaces 10; 21 loses to the later plain 15
    log.commit(Some(9), &[(3, 40)]); // still open at the end of the log
    assert_eq!(log.committed(), vec![(0, 20), (1, 15)]);
    let open: Vec<(i64, i32, i64)> = log
        .replayed
        .pending
        .iter()
        .flat_map(|(pid, offsets)| {
            offsets
                .iter()
                .map(move |((_, _, p), l)| (*pid, *p, l.offset.offset))
        })
        .collect();
    assert_eq!(open, vec![(9, 3, 40)]);
    assert_eq!(log.replayed.producers.get(&9), Some(&(0, 0)));
}

#[test]
fn a_plain_commit_before_the_transaction_loses_to_it_and_a_marker_without_offsets_is_harmless() {
    let mut log = Log::default();
    log.commit(Some(1), &[(0, 5)]);
    log.commit(None, &[(0, 3)]);
    log.marker(2, true); // another producer: nothing pending
    log.marker(1, true);
    assert_eq!(log.committed(), vec![(0, 3)]);
    log.commit(None, &[(1, 1)]);
    log.commit(Some(1), &[(1, 9)]);
    log.marker(1, true);
    log.marker(1, true); // a repeated marker completes nothing more
    assert_eq!(log.committed(), vec![(0, 3), (1, 9)]);
    assert!(log.replayed.pending.is_empty());
}

#[test]
fn tombstones_drop_pending_offsets_and_unknown_control_records_are_skipped() {
    let mut log = Log::default();
    log.commit(Some(1), &[(0, 5), (1, 6)]);
    let key = encode_key(&RecordKey::Offset {
        group: "g".into(),
        topic: "t".into(),
        partition: 0,
    });
    log.replayed.apply_batch(
        &header(2, 0, -1, 1),
        vec![Record::new(0, 0, Some(key), None)],
    );
    let garbage = Record::new(0, 0, Some(Bytes::from_static(b"\x00")), None);
    log.replayed
        .apply_batch(&header(3, TRANSACTIONAL | CONTROL, 1, 1), vec![garbage]);
    log.next = 4;
    log.marker(1, true);
    assert_eq!(log.committed(), vec![(1, 6)]);
}

/// One step of a generated history.
#[derive(Debug, Clone)]
enum Step {
    Plain(i32, i64),
    Txn(i64, i32, i64),
    Marker(i64, bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..3i32, 0..1000i64).prop_map(|(p, o)| Step::Plain(p, o)),
        (1..4i64, 0..3i32, 0..1000i64).prop_map(|(pid, p, o)| Step::Txn(pid, p, o)),
        (1..4i64, any::<bool>()).prop_map(|(pid, c)| Step::Marker(pid, c)),
    ]
}

proptest! {
    /// Replaying a log gives what the live coordinator had after writing it, for any history:
    /// a restart never shows offsets of an aborted or open transaction, nor hides committed ones.
    #[test]
    fn replay_matches_the_live_coordinators_rules(steps in prop::collection::vec(step(), 0..40)) {
        let mut log = Log::default();
        let mut live = Group::new("g", 0);
        for step in steps {
            let position = log.next;
            let logged = |o: i64| LoggedOffset {
                offset: CommittedOffset {
                    offset: o,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp_ms: 0,
                },
                position,
            };
            match step {
                Step::Plain(p, o) => {
                    log.commit(None, &[(p, o)]);
                    live.set_committed("t", p, logged(o));
                }
                Step::Txn(pid, p, o) => {
                    log.commit(Some(pid), &[(p, o)]);
                    live.add_pending(pid, "t", p, logged(o));
                }
                Step::Marker(pid, commit) => {
                    log.marker(pid, commit);
                    live.complete_pending(pid, commit);
                }
            }
        }
        let live_committed: Vec<(i32, i64)> =
            live.offsets.iter().map(|((_, p), o)| (*p, o.offset)).collect();
        prop_assert_eq!(log.committed(), live_committed);
        let replay_pending: Vec<(i64, i32, i64)> = log.replayed.pending.iter()
            .flat_map(|(pid, m)| m.iter().map(move |((_, _, p), l)| (*pid, *p, l.offset.offset)))
            .collect();
        let live_pending: Vec<(i64, i32, i64)> = live.pending_txn.iter()
            .flat_map(|(pid, m)| m.iter().map(move |((_, p), l)| (*pid, *p, l.offset.offset)))
            .collect();
        prop_assert_eq!(replay_pending, live_pending);
    }
}
