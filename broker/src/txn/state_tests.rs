//! The transaction state machine alone: Kafka's transitions, and invariants under any sequence
//! of operations (proptest).

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::state::{InitTransit, TxnMetadata, TxnState, NO_PRODUCER_EPOCH};
use super::TxnError;

fn parts(list: &[(&str, i32)]) -> BTreeSet<(String, i32)> {
    list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

fn ready(t: InitTransit) -> TxnMetadata {
    match t {
        InitTransit::Ready(m) => m,
        other => panic!("expected Ready, got {other:?}"),
    }
}

fn initialised() -> TxnMetadata {
    let fresh = TxnMetadata::new("tx", 100, 60_000, 0);
    ready(fresh.init_producer_id(60_000, None, None, 1).unwrap())
}

#[test]
fn a_new_id_starts_at_epoch_0_and_each_init_bumps_the_epoch() {
    let m = initialised();
    assert_eq!(
        (m.producer_id, m.producer_epoch, m.state),
        (100, 0, TxnState::Empty)
    );
    let again = ready(m.init_producer_id(60_000, None, None, 2).unwrap());
    assert_eq!(again.producer_epoch, 1);
}

#[test]
fn commit_goes_through_prepare_to_complete_and_clears_partitions() {
    let m = initialised();
    let ongoing = m.add_partitions(&parts(&[("a", 0)]), 10).unwrap().unwrap();
    assert_eq!((ongoing.state, ongoing.start_ms), (TxnState::Ongoing, 10));
    assert!(ongoing
        .add_partitions(&parts(&[("a", 0)]), 11)
        .unwrap()
        .is_none());
    let more = ongoing
        .add_partitions(&parts(&[("b", 1)]), 12)
        .unwrap()
        .unwrap();
    assert_eq!(more.partitions.len(), 2);
    assert_eq!(more.start_ms, 10, "the start of the transaction stays");
    let prepared = more.end(true, 13).unwrap().unwrap();
    assert_eq!(prepared.state, TxnState::PrepareCommit);
    assert_eq!(
        prepared.end(true, 14),
        Err(TxnError::ConcurrentTransactions)
    );
    assert!(matches!(
        prepared.end(false, 14),
        Err(TxnError::InvalidTxnState(_))
    ));
    let done = prepared.complete(15).unwrap();
    assert_eq!(done.state, TxnState::CompleteCommit);
    assert!(done.partitions.is_empty());
    assert_eq!(done.end(true, 16), Ok(None), "a retried commit succeeds");
    assert!(matches!(
        done.end(false, 16),
        Err(TxnError::InvalidTxnState(_))
    ));
}

#[test]
fn ending_without_a_transaction_is_invalid() {
    assert!(matches!(
        initialised().end(true, 1),
        Err(TxnError::InvalidTxnState(_))
    ));
}

#[test]
fn init_with_an_open_transaction_aborts_it_with_a_bumped_epoch() {
    let ongoing = initialised()
        .add_partitions(&parts(&[("a", 0)]), 5)
        .unwrap()
        .unwrap();
    let InitTransit::AbortFirst(abort) = ongoing.init_producer_id(60_000, None, None, 6).unwrap()
    else {
        panic!("expected AbortFirst")
    };
    assert_eq!(
        (abort.state, abort.producer_epoch),
        (TxnState::PrepareAbort, 1)
    );
    assert_eq!(abort.partitions, ongoing.partitions);
    // The old producer is fenced from now on.
    assert_eq!(abort.check_producer(100, 0), Err(TxnError::ProducerFenced));
    assert_eq!(
        abort.init_producer_id(60_000, None, None, 7),
        Err(TxnError::ConcurrentTransactions)
    );
    let aborted = abort.complete(8).unwrap();
    let next = ready(aborted.init_producer_id(60_000, None, None, 9).unwrap());
    assert_eq!(next.producer_epoch, 2);
}

#[test]
fn a_timed_out_transaction_is_detected_after_its_timeout() {
    let mut m = initialised();
    m.timeout_ms = 1000;
    let ongoing = m.add_partitions(&parts(&[("a", 0)]), 100).unwrap().unwrap();
    assert!(!ongoing.timed_out(1100));
    assert!(ongoing.timed_out(1101));
    let aborted = ongoing.fence_and_abort(1101).unwrap();
    assert_eq!(aborted.state, TxnState::PrepareAbort);
    assert_eq!(aborted.producer_epoch, ongoing.producer_epoch + 1);
}

#[test]
fn kip_360_reinit_with_the_current_epoch_bumps_and_a_retry_is_recognised() {
    let m = initialised(); // epoch 0
    let bumped = ready(m.init_producer_id(60_000, Some((100, 0)), None, 2).unwrap());
    assert_eq!((bumped.producer_epoch, bumped.last_producer_epoch), (1, 0));
    // The answer was lost; the producer retries with epoch 0 again.
    let retried = ready(
        bumped
            .init_producer_id(60_000, Some((100, 0)), None, 3)
            .unwrap(),
    );
    assert_eq!(retried.producer_epoch, 1);
    assert_eq!(
        bumped.init_producer_id(60_000, Some((999, 1)), None, 3),
        Err(TxnError::ProducerFenced)
    );
}

#[test]
fn an_exhausted_epoch_rotates_to_a_new_producer_id() {
    let mut m = initialised();
    m.producer_epoch = i16::MAX - 1;
    assert!(m.needs_new_producer_id(None));
    let rotated = ready(m.init_producer_id(60_000, None, Some(555), 2).unwrap());
    assert_eq!((rotated.producer_id, rotated.producer_epoch), (555, 0));
    assert_eq!(rotated.last_producer_id, 100);
}

#[test]
fn state_ids_and_names_round_trip() {
    for state in TxnState::ALL {
        assert_eq!(TxnState::from_id(state.id()), Some(state));
        assert_eq!(TxnState::from_name(state.name()), Some(state));
    }
    assert_eq!(TxnState::from_id(8), None);
}

#[derive(Debug, Clone)]
enum Op {
    Init(bool),
    Add(u8),
    End(bool),
    Complete,
    Timeout,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<bool>().prop_map(Op::Init),
        (0u8..4).prop_map(Op::Add),
        any::<bool>().prop_map(Op::End),
        Just(Op::Complete),
        Just(Op::Timeout),
    ]
}

proptest! {
    /// Whatever clients do, every accepted change is one Kafka allows, the epoch never goes
    /// down, partitions exist exactly while a transaction is open or ending, and a fenced
    /// producer stays fenced.
    #[test]
    fn any_sequence_keeps_the_invariants(ops in proptest::collection::vec(op(), 1..40)) {
        let mut m = initialised();
        let mut now = 10;
        for op in ops {
            now += 10;
            let next = match op {
                Op::Init(current) => {
                    let expected = current.then_some((m.producer_id, m.producer_epoch));
                    m.init_producer_id(60_000, expected, None, now).map(|t| match t {
                        InitTransit::Ready(n) | InitTransit::AbortFirst(n) => Some(n),
                    })
                }
                Op::Add(p) => m.add_partitions(&parts(&[("t", i32::from(p))]), now),
                Op::End(commit) => m.end(commit, now),
                Op::Complete => m.complete(now).map(Some),
                Op::Timeout if m.state == TxnState::Ongoing => m.fence_and_abort(now).map(Some),
                Op::Timeout => Ok(None),
            };
            let Ok(Some(next)) = next else { continue };
            let direct = next.state.valid_previous().contains(&m.state);
            let via_fence = m.state == TxnState::Ongoing && next.state == TxnState::PrepareAbort;
            prop_assert!(direct || via_fence, "{:?} -> {:?}", m.state, next.state);
            prop_assert!(next.producer_epoch >= m.producer_epoch);
            prop_assert!(next.producer_epoch != NO_PRODUCER_EPOCH);
            prop_assert_eq!(next.partitions.is_empty(), !next.state.is_pending_transaction());
            if next.producer_epoch > m.producer_epoch {
                prop_assert_eq!(next.check_producer(m.producer_id, m.producer_epoch), Err(TxnError::ProducerFenced));
            }
            m = next;
        }
    }
}
