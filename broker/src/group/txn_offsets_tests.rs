//! Transactional offsets through the coordinator: pending until the marker, invisible to
//! OffsetFetch meanwhile, fenced for old producer epochs, and the same after a reload.

use std::sync::Arc;

use bytes::Bytes;
use inlet_storage::txn::TxnMarker;

use super::*;
use crate::cluster::topics::TopicRegistry;
use crate::group::ownership_tests::{commit, committed, leading_everything, registry};
use crate::group::state::Member;
use crate::group::{GroupConfig, OFFSETS_TOPIC};

fn value(offset: i64) -> CommittedOffset {
    CommittedOffset {
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 0,
    }
}

fn producer(producer_id: i64, producer_epoch: i16) -> TxnCommitter {
    TxnCommitter {
        producer_id,
        producer_epoch,
        generation: -1,
        member_id: String::new(),
        instance_id: None,
    }
}

fn txn_commit(
    groups: &GroupCoordinator,
    group: &str,
    who: &TxnCommitter,
    partition: i32,
    offset: i64,
) -> Result<(), GroupError> {
    let (results, _) = groups.txn_commit(group, who, vec![("t".into(), partition, value(offset))]);
    results.into_iter().try_for_each(|(_, _, r)| r)
}

fn coordinator(topics: &TopicRegistry) -> Arc<GroupCoordinator> {
    let groups = Arc::new(GroupCoordinator::new(GroupConfig::default()));
    leading_everything(&groups, topics, uuid::Uuid::from_u128(7), 1);
    groups
}

/// Appends a transaction marker to the offsets partition as the marker writer does.
fn write_marker(topics: &TopicRegistry, producer_id: i64, producer_epoch: i16, commit: bool) {
    let marker = TxnMarker {
        producer_id,
        producer_epoch,
        coordinator_epoch: 0,
        commit,
    };
    let partition = topics.get(OFFSETS_TOPIC).unwrap().partition(0).unwrap();
    partition.append_txn_marker(&marker).unwrap();
}

fn unstable(groups: &GroupCoordinator, group: &str) -> Vec<(String, i32)> {
    let wanted = Some(vec![("t".to_string(), vec![0, 1, 2])]);
    let (_, unstable) = groups.fetch_stable(group, wanted).unwrap();
    unstable.into_iter().collect()
}

#[test]
fn transactional_offsets_are_invisible_until_committed_and_dropped_on_abort() {
    let dir = tempfile::tempdir().unwrap();
    let topics = registry(dir.path());
    let groups = coordinator(&topics);
    commit(&groups, "g", 0, 5);
    txn_commit(&groups, "g", &producer(10, 0), 0, 50).unwrap();
    txn_commit(&groups, "g", &producer(11, 0), 1, 60).unwrap();
    assert_eq!(committed(&groups, "g"), vec![(0, 5)]);
    assert_eq!(
        unstable(&groups, "g"),
        vec![("t".to_string(), 0), ("t".to_string(), 1)]
    );

    groups.complete_transaction(0, 10, true);
    groups.complete_transaction(0, 11, false);
    assert_eq!(committed(&groups, "g"), vec![(0, 50)]);
    assert!(unstable(&groups, "g").is_empty());
}

#[test]
fn a_plain_commit_written_after_the_transactional_one_wins_at_commit() {
    let dir = tempfile::tempdir().unwrap();
    let topics = registry(dir.path());
    let groups = coordinator(&topics);
    txn_commit(&groups, "g", &producer(10, 0), 0, 50).unwrap();
    commit(&groups, "g", 0, 7);
    groups.complete_transaction(0, 10, true);
    assert_eq!(committed(&groups, "g"), vec![(0, 7)]);
}

#[test]
fn an_older_producer_epoch_is_fenced_and_sequences_continue_across_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let topics = registry(dir.path());
    let groups = coordinator(&topics);
    // Several transactions of one producer epoch: each batch must get a new sequence, or the
    // log would take it for a retry and drop it.
    for round in 0..7 {
        txn_commit(&groups, "g", &producer(10, 1), 0, round).unwrap();
        groups.complete_transaction(0, 10, true);
        assert_eq!(committed(&groups, "g"), vec![(0, round)]);
    }
    assert_eq!(
        txn_commit(&groups, "g", &producer(10, 0), 0, 99),
        Err(GroupError::InvalidProducerEpoch)
    );
    txn_commit(&groups, "g", &producer(10, 2), 0, 100).unwrap();
    groups.complete_transaction(0, 10, true);
    assert_eq!(committed(&groups, "g"), vec![(0, 100)]);
}

#[test]
fn a_reload_keeps_open_transactions_pending_and_applies_written_markers() {
    let dir = tempfile::tempdir().unwrap();
    {
        let topics = registry(dir.path());
        let groups = coordinator(&topics);
        commit(&groups, "g", 0, 1);
        txn_commit(&groups, "g", &producer(10, 0), 0, 10).unwrap();
        txn_commit(&groups, "g", &producer(11, 0), 1, 11).unwrap();
        txn_commit(&groups, "g", &producer(12, 0), 2, 12).unwrap();
        write_marker(&topics, 10, 0, true);
        write_marker(&topics, 11, 0, false);
        topics.close_all();
    }
    let topics = registry(dir.path());
    let groups = coordinator(&topics);
    assert_eq!(committed(&groups, "g"), vec![(0, 10)]);
    assert_eq!(unstable(&groups, "g"), vec![("t".to_string(), 2)]);
    // The producer still open continues its sequence after the reload.
    txn_commit(&groups, "g", &producer(12, 0), 1, 21).unwrap();
    write_marker(&topics, 12, 0, true);
    groups.complete_transaction(0, 12, true);
    assert_eq!(committed(&groups, "g"), vec![(0, 10), (1, 21), (2, 12)]);
}

fn member(id: &str) -> Member {
    Member {
        id: id.to_string(),
        instance_id: None,
        client_id: String::new(),
        client_host: String::new(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: Vec::new(),
        assignment: Bytes::new(),
        last_heartbeat_ms: 0,
        join_waiter: None,
        sync_waiter: None,
    }
}

#[test]
fn group_membership_is_checked_only_when_the_request_names_it() {
    let mut group = Group::new("g", 0);
    group.state = GroupState::Stable;
    group.generation = 3;
    group.members.insert("m".into(), member("m"));
    // Before v3 a transactional producer names no member: accepted even by a non-empty group.
    assert_eq!(check_txn_commit(&group, &producer(1, 0)), Ok(()));
    let named = |member_id: &str, generation| TxnCommitter {
        generation,
        member_id: member_id.to_string(),
        ..producer(1, 0)
    };
    assert_eq!(check_txn_commit(&group, &named("m", 3)), Ok(()));
    assert!(matches!(
        check_txn_commit(&group, &named("m", 2)),
        Err(GroupError::IllegalGeneration {
            received: 2,
            current: 3
        })
    ));
    assert!(matches!(
        check_txn_commit(&group, &named("x", 3)),
        Err(GroupError::UnknownMemberId(_))
    ));
    group.state = GroupState::Dead;
    assert!(matches!(
        check_txn_commit(&group, &producer(1, 0)),
        Err(GroupError::CoordinatorNotAvailable(_))
    ));
}

#[test]
fn offset_delete_forgets_pending_offsets_of_the_partition() {
    let mut group = Group::new("g", 0);
    let logged = |o| LoggedOffset {
        offset: value(o),
        position: o,
    };
    group.add_pending(1, "t", 0, logged(1));
    group.add_pending(1, "t", 1, logged(2));
    group.remove_offset("t", 0);
    assert!(!group.has_pending("t", 0));
    assert!(group.has_pending("t", 1));
    assert_eq!(group.complete_pending(1, true), 1);
    assert_eq!(group.offsets.len(), 1);
}

#[test]
fn a_marker_written_while_the_partition_is_replayed_is_applied_once_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let topics = registry(dir.path());
    let groups = coordinator(&topics);
    txn_commit(&groups, "g", &producer(10, 0), 0, 50).unwrap();
    txn_commit(&groups, "g", &producer(11, 0), 1, 60).unwrap();
    // A reload starts (a new leader epoch); the marker writer completes both transactions
    // before the replay's groups are installed, after the replay read the log.
    groups
        .lock()
        .led
        .insert(0, super::super::coordinator::Led::Loading(99));
    groups.complete_transaction(0, 10, true);
    groups.complete_transaction(0, 11, false);
    assert_eq!(
        groups.fetch("g", None).err(),
        Some(GroupError::CoordinatorLoadInProgress)
    );
    let partition = topics.get(OFFSETS_TOPIC).unwrap().partition(0).unwrap();
    groups.load(0, 99, crate::group::store::OffsetsStore::new(partition));
    assert_eq!(committed(&groups, "g"), vec![(0, 50)]);
    assert!(unstable(&groups, "g").is_empty());
}
