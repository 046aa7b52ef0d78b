//! The heartbeat rules and reconciliation on scripted scenarios; `tests_prop.rs` checks their
//! invariants under random ones.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::*;
use crate::group::GroupError;

const CONFIG: ConsumerConfig = ConsumerConfig {
    heartbeat_interval_ms: 500,
    session_timeout_ms: 6000,
    max_size: Some(8),
    assignors: [Some(AssignorKind::Uniform), Some(AssignorKind::Range)],
};

fn topic_id() -> Uuid {
    Uuid::from_u128(7)
}

fn topics(partitions: i32) -> TopicsView {
    BTreeMap::from([("t".to_string(), (topic_id(), partitions))])
}

fn join(member: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        version: 1,
        member_id: member.to_string(),
        member_epoch: 0,
        rebalance_timeout_ms: 10_000,
        subscribed_topic_names: Some(vec!["t".to_string()]),
        owned: Some(Assignment::new()),
        ..HeartbeatRequest::default()
    }
}

fn beat(member: &str, epoch: i32, owned: &Assignment) -> HeartbeatRequest {
    HeartbeatRequest {
        version: 1,
        member_id: member.to_string(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: Some(owned.clone()),
        ..HeartbeatRequest::default()
    }
}

/// A client that takes what it is told and reports it on the next heartbeat.
#[derive(Default)]
struct Client {
    epoch: i32,
    owned: Assignment,
}

fn converge(
    group: &mut ConsumerGroup,
    clients: &mut BTreeMap<String, Client>,
    view: &TopicsView,
    now: i64,
) {
    for _ in 0..10 {
        for (id, client) in clients.iter_mut() {
            let out = group
                .heartbeat(beat(id, client.epoch, &client.owned), &CONFIG, view, now)
                .unwrap();
            client.epoch = out.member_epoch;
            if let Some(a) = out.assignment {
                client.owned = a;
            }
        }
    }
}

fn sizes(clients: &BTreeMap<String, Client>) -> Vec<usize> {
    clients.values().map(|c| count(&c.owned)).collect()
}

#[test]
fn a_lone_member_gets_every_partition_at_epoch_one() {
    let mut group = ConsumerGroup::default();
    let out = group.heartbeat(join("a"), &CONFIG, &topics(6), 0).unwrap();
    assert_eq!(out.member_epoch, 1);
    assert_eq!(out.assignment.unwrap()[&topic_id()].len(), 6);
    assert_eq!(group.state_name(), "Stable");
}

#[test]
fn a_second_member_gets_partitions_only_after_the_first_revokes_them() {
    let view = topics(6);
    let mut group = ConsumerGroup::default();
    let a = group.heartbeat(join("a"), &CONFIG, &view, 0).unwrap();
    let a_owned = a.assignment.unwrap();
    let b = group.heartbeat(join("b"), &CONFIG, &view, 1).unwrap();
    assert_eq!(b.member_epoch, 2);
    assert!(
        b.assignment.unwrap().values().all(BTreeSet::is_empty),
        "all still held by a"
    );
    assert_eq!(group.state_name(), "Reconciling");
    // a is told to keep three: it stays at epoch 1 until it reports the others gone.
    let a2 = group
        .heartbeat(beat("a", 1, &a_owned), &CONFIG, &view, 2)
        .unwrap();
    assert_eq!(a2.member_epoch, 1);
    let kept = a2.assignment.unwrap();
    assert_eq!(count(&kept), 3);
    let a3 = group
        .heartbeat(beat("a", 1, &kept), &CONFIG, &view, 3)
        .unwrap();
    assert_eq!(a3.member_epoch, 2);
    let b2 = group
        .heartbeat(beat("b", 2, &Assignment::new()), &CONFIG, &view, 4)
        .unwrap();
    let b_owned = b2.assignment.unwrap();
    assert_eq!(count(&b_owned), 3);
    assert!(!overlaps(&b_owned, &kept));
    assert_eq!(group.state_name(), "Stable");
}

#[test]
fn leaving_gives_the_partitions_back() {
    let view = topics(4);
    let mut group = ConsumerGroup::default();
    let mut clients = BTreeMap::from([
        ("a".to_string(), Client::default()),
        ("b".to_string(), Client::default()),
    ]);
    for id in ["a", "b"] {
        let out = group.heartbeat(join(id), &CONFIG, &view, 0).unwrap();
        clients.get_mut(id).unwrap().epoch = out.member_epoch;
    }
    converge(&mut group, &mut clients, &view, 1);
    assert_eq!(sizes(&clients), vec![2, 2]);
    let left = group.heartbeat(
        beat("b", clients["b"].epoch, &clients["b"].owned).with_epoch(LEAVE_EPOCH),
        &CONFIG,
        &view,
        2,
    );
    assert_eq!(left.unwrap().member_epoch, LEAVE_EPOCH);
    clients.remove("b");
    converge(&mut group, &mut clients, &view, 3);
    assert_eq!(sizes(&clients), vec![4]);
}

#[test]
fn a_member_without_heartbeats_is_removed_after_the_session_timeout() {
    let view = topics(2);
    let mut group = ConsumerGroup::default();
    group.heartbeat(join("a"), &CONFIG, &view, 0).unwrap();
    group.heartbeat(join("b"), &CONFIG, &view, 0).unwrap();
    group
        .heartbeat(beat("a", 1, &Assignment::new()), &CONFIG, &view, 5000)
        .unwrap();
    assert!(group.tick(6001, &CONFIG, &view).contains(&"b".to_string()));
    assert!(group.members.contains_key("a"));
    let err = group.heartbeat(beat("b", 2, &Assignment::new()), &CONFIG, &view, 6002);
    assert!(matches!(err, Err(GroupError::UnknownMemberId(_))));
}

#[test]
fn a_member_that_does_not_revoke_in_time_is_fenced() {
    let view = topics(2);
    let mut group = ConsumerGroup::default();
    let a = group
        .heartbeat(join("a"), &CONFIG, &view, 0)
        .unwrap()
        .assignment
        .unwrap();
    group.heartbeat(join("b"), &CONFIG, &view, 0).unwrap();
    group
        .heartbeat(beat("a", 1, &a), &CONFIG, &view, 10)
        .unwrap();
    // a keeps reporting both partitions past its 10 s rebalance timeout.
    group
        .heartbeat(beat("a", 1, &a), &CONFIG, &view, 5000)
        .unwrap();
    group
        .heartbeat(beat("b", 2, &Assignment::new()), &CONFIG, &view, 5000)
        .unwrap();
    group
        .heartbeat(beat("b", 2, &Assignment::new()), &CONFIG, &view, 10_000)
        .unwrap();
    assert_eq!(group.tick(10_011, &CONFIG, &view), vec!["a".to_string()]);
}

#[test]
fn a_wrong_epoch_is_fenced_and_a_lost_answer_is_forgiven() {
    let view = topics(2);
    let mut group = ConsumerGroup::default();
    let owned = group
        .heartbeat(join("a"), &CONFIG, &view, 0)
        .unwrap()
        .assignment
        .unwrap();
    let err = group.heartbeat(beat("a", 5, &owned), &CONFIG, &view, 1);
    assert!(matches!(err, Err(GroupError::FencedMemberEpoch { .. })));
    group.heartbeat(join("b"), &CONFIG, &view, 1).unwrap();
    let kept = group
        .heartbeat(beat("a", 1, &owned), &CONFIG, &view, 2)
        .unwrap()
        .assignment
        .unwrap();
    assert_eq!(
        group
            .heartbeat(beat("a", 1, &kept), &CONFIG, &view, 3)
            .unwrap()
            .member_epoch,
        2
    );
    // The answer giving epoch 2 was lost: epoch 1 with partitions it may own is accepted.
    assert_eq!(
        group
            .heartbeat(beat("a", 1, &kept), &CONFIG, &view, 4)
            .unwrap()
            .member_epoch,
        2
    );
    // With partitions it may not own, it is fenced.
    assert!(group
        .heartbeat(beat("a", 1, &owned), &CONFIG, &view, 5)
        .is_err());
}

#[test]
fn static_members_are_replaced_only_after_leaving() {
    let view = topics(2);
    let mut group = ConsumerGroup::default();
    let mut first = join("a");
    first.instance_id = Some("i".into());
    let owned = group
        .heartbeat(first.clone(), &CONFIG, &view, 0)
        .unwrap()
        .assignment
        .unwrap();
    let mut other = join("a2");
    other.instance_id = Some("i".into());
    assert!(matches!(
        group.heartbeat(other.clone(), &CONFIG, &view, 1),
        Err(GroupError::UnreleasedInstanceId(_))
    ));
    let mut leave = beat("a", 1, &owned).with_epoch(STATIC_LEAVE_EPOCH);
    leave.instance_id = Some("i".into());
    assert_eq!(
        group
            .heartbeat(leave, &CONFIG, &view, 2)
            .unwrap()
            .member_epoch,
        STATIC_LEAVE_EPOCH
    );
    let back = group.heartbeat(other, &CONFIG, &view, 3).unwrap();
    assert_eq!(back.member_epoch, 1);
    assert_eq!(back.assignment.unwrap(), owned);
    let mut stale = beat("a", 1, &owned);
    stale.instance_id = Some("i".into());
    assert!(matches!(
        group.heartbeat(stale, &CONFIG, &view, 4),
        Err(GroupError::UnknownMemberId(_))
    ));
}

#[test]
fn a_static_member_coming_back_under_its_own_id_is_active_again() {
    let view = topics(2);
    let mut group = ConsumerGroup::default();
    let mut first = join("a");
    first.instance_id = Some("i".into());
    let owned = group
        .heartbeat(first.clone(), &CONFIG, &view, 0)
        .unwrap()
        .assignment
        .unwrap();
    let mut leave = beat("a", 1, &owned).with_epoch(STATIC_LEAVE_EPOCH);
    leave.instance_id = Some("i".into());
    group.heartbeat(leave, &CONFIG, &view, 1).unwrap();
    assert_eq!(group.members["a"].epoch(), STATIC_LEAVE_EPOCH);
    let back = group.heartbeat(first, &CONFIG, &view, 2).unwrap();
    assert_eq!(back.member_epoch, 1);
    assert_eq!(group.members["a"].epoch(), 1);
}

#[test]
fn unknown_assignors_and_bad_joins_are_refused() {
    let view = topics(1);
    let mut group = ConsumerGroup::default();
    let mut request = join("a");
    request.server_assignor = Some("sticky".into());
    assert!(matches!(
        group.heartbeat(request, &CONFIG, &view, 0),
        Err(GroupError::UnsupportedAssignor(_))
    ));
    let mut request = join("a");
    request.subscribed_topic_names = None;
    assert!(matches!(
        group.heartbeat(request, &CONFIG, &view, 0),
        Err(GroupError::InvalidRequest(_))
    ));
    let mut request = join("a");
    request.subscribed_topic_regex = Some("(".into());
    assert!(matches!(
        group.heartbeat(request, &CONFIG, &view, 0),
        Err(GroupError::InvalidRegularExpression(_))
    ));
}

#[test]
fn a_regex_subscription_follows_new_topics() {
    let mut view = topics(1);
    let mut group = ConsumerGroup::default();
    let mut request = join("a");
    request.subscribed_topic_names = None;
    request.subscribed_topic_regex = Some("t.*".into());
    let out = group.heartbeat(request, &CONFIG, &view, 0).unwrap();
    assert_eq!(count(&out.assignment.unwrap()), 1);
    view.insert("t2".into(), (Uuid::from_u128(8), 3));
    group.tick(1, &CONFIG, &view);
    let owned = BTreeMap::from([(topic_id(), BTreeSet::from([0]))]);
    let out = group
        .heartbeat(beat("a", out.member_epoch, &owned), &CONFIG, &view, 2)
        .unwrap();
    assert_eq!(count(&out.assignment.unwrap()), 4);
}

#[test]
fn the_group_size_is_bounded() {
    let view = topics(1);
    let mut group = ConsumerGroup::default();
    for i in 0..8 {
        group
            .heartbeat(join(&format!("m{i}")), &CONFIG, &view, 0)
            .unwrap();
    }
    assert!(matches!(
        group.heartbeat(join("m8"), &CONFIG, &view, 0),
        Err(GroupError::GroupMaxSizeReached)
    ));
}

impl HeartbeatRequest {
    fn with_epoch(mut self, epoch: i32) -> HeartbeatRequest {
        self.member_epoch = epoch;
        self
    }
}

#[path = "tests_prop.rs"]
mod prop;
