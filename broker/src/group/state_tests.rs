//! State machine tests: joins, syncs, heartbeats and timers driven with explicit clocks.

use std::collections::HashMap;

use bytes::Bytes;

use super::*;
use crate::group::membership::{self, JoinRequest, Pending};
use crate::group::GroupConfig;

const CONFIG: GroupConfig = GroupConfig {
    initial_rebalance_delay_ms: 100,
    min_session_timeout_ms: 1000,
    max_session_timeout_ms: 60_000,
    consumer: crate::group::consumer::ConsumerConfig::DEFAULT,
};

fn request(member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 1000,
        rebalance_timeout_ms: 5000,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
            .collect(),
        requires_known_member_id: true,
    }
}

/// Joins through the MEMBER_ID_REQUIRED round trip; returns the member id and the parked join.
fn join_new(
    group: &mut Group,
    protocols: &[&str],
    now: i64,
) -> (String, tokio::sync::oneshot::Receiver<JoinReply>) {
    let id = match membership::join(group, request("", protocols), &CONFIG, now) {
        Pending::Now(Err(GroupError::MemberIdRequired(id))) => id,
        _ => panic!("a new dynamic member must be asked to rejoin with an id"),
    };
    match membership::join(group, request(&id, protocols), &CONFIG, now) {
        Pending::Later(rx) => (id, rx),
        Pending::Now(reply) => panic!("join answered at once: {reply:?}"),
    }
}

fn answer<T>(rx: &mut tokio::sync::oneshot::Receiver<T>) -> T {
    rx.try_recv()
        .expect("the parked request must have been answered")
}

fn stable_group_of_one(now: i64) -> (Group, String) {
    let mut group = Group::new("g", now);
    let (id, mut rx) = join_new(&mut group, &["range"], now);
    group.tick(now + 100, CONFIG.initial_rebalance_delay_ms);
    let outcome = answer(&mut rx).unwrap();
    let assignments = HashMap::from([(id.clone(), Bytes::from_static(b"all"))]);
    let Pending::Later(mut sync) = membership::sync(
        &mut group,
        &id,
        None,
        outcome.generation,
        assignments,
        now + 100,
    ) else {
        panic!("leader's sync must park until complete");
    };
    assert_eq!(answer(&mut sync).unwrap().2, Bytes::from_static(b"all"));
    (group, id)
}

#[test]
fn first_join_waits_for_the_initial_delay_then_the_leader_gets_all_metadata() {
    let mut group = Group::new("g", 0);
    let (first, mut rx1) = join_new(&mut group, &["range"], 0);
    assert_eq!(group.state, GroupState::PreparingRebalance);
    group.tick(50, CONFIG.initial_rebalance_delay_ms);
    let (second, mut rx2) = join_new(&mut group, &["range"], 50);
    // The second member pushed the deadline out by another delay.
    group.tick(120, CONFIG.initial_rebalance_delay_ms);
    assert!(rx1.try_recv().is_err());
    group.tick(150, CONFIG.initial_rebalance_delay_ms);
    let leader = answer(&mut rx1).unwrap();
    let follower = answer(&mut rx2).unwrap();
    assert_eq!(group.state, GroupState::CompletingRebalance);
    assert_eq!(
        (leader.generation, leader.leader.as_str()),
        (1, first.as_str())
    );
    assert_eq!(leader.members.len(), 2);
    assert!(follower.members.is_empty());
    assert_eq!(follower.member_id, second);
    assert_eq!(leader.protocol.as_deref(), Some("range"));
}

#[test]
fn the_protocol_all_members_support_wins_the_vote() {
    let mut group = Group::new("g", 0);
    let (_, mut rx1) = join_new(&mut group, &["cooperative-sticky", "range"], 0);
    let (_, mut rx2) = join_new(&mut group, &["range", "roundrobin"], 0);
    group.tick(1000, CONFIG.initial_rebalance_delay_ms);
    assert_eq!(answer(&mut rx1).unwrap().protocol.as_deref(), Some("range"));
    assert!(answer(&mut rx2).is_ok());
    let mut refused = request("", &["roundrobin-only"]);
    refused.requires_known_member_id = false;
    assert!(matches!(
        membership::join(&mut group, refused, &CONFIG, 1000),
        Pending::Now(Err(GroupError::InconsistentGroupProtocol))
    ));
}

#[test]
fn a_new_member_makes_everyone_rejoin_and_heartbeats_say_so() {
    let (mut group, first) = stable_group_of_one(0);
    let (_, mut rx2) = join_new(&mut group, &["range"], 200);
    assert_eq!(group.state, GroupState::PreparingRebalance);
    assert_eq!(
        membership::heartbeat(&mut group, &first, None, 1, 250),
        Err(GroupError::RebalanceInProgress)
    );
    let Pending::Later(mut rx1) =
        membership::join(&mut group, request(&first, &["range"]), &CONFIG, 300)
    else {
        panic!("a rejoin during a rebalance parks");
    };
    // Everyone rejoined: the join phase ends at once, without waiting for the timeout.
    assert_eq!(answer(&mut rx1).unwrap().generation, 2);
    assert_eq!(answer(&mut rx2).unwrap().generation, 2);
    assert_eq!(
        membership::heartbeat(&mut group, &first, None, 1, 300),
        Err(GroupError::IllegalGeneration {
            received: 1,
            current: 2
        })
    );
}

#[test]
fn a_silent_member_is_evicted_after_its_session_timeout() {
    let (mut group, first) = stable_group_of_one(0);
    group.tick(1000, CONFIG.initial_rebalance_delay_ms);
    assert_eq!(group.state, GroupState::Stable);
    group.tick(1101, CONFIG.initial_rebalance_delay_ms);
    assert!(!group.members.contains_key(&first));
    assert_eq!(group.state, GroupState::Empty);
    assert_eq!(group.generation, 2);
}

#[test]
fn heartbeats_keep_a_member_alive() {
    let (mut group, first) = stable_group_of_one(0);
    for now in (500..5000).step_by(500) {
        membership::heartbeat(&mut group, &first, None, 1, now).unwrap();
        group.tick(now + 10, CONFIG.initial_rebalance_delay_ms);
    }
    assert_eq!(group.state, GroupState::Stable);
}

#[test]
fn a_restarted_static_member_replaces_its_old_id_which_is_then_fenced() {
    let mut group = Group::new("g", 0);
    let mut static_request = request("", &["range"]);
    static_request.instance_id = Some("instance-1".into());
    let Pending::Later(mut rx) = membership::join(&mut group, static_request.clone(), &CONFIG, 0)
    else {
        panic!("static members skip MEMBER_ID_REQUIRED");
    };
    group.tick(200, CONFIG.initial_rebalance_delay_ms);
    let old = answer(&mut rx).unwrap().member_id;
    let Pending::Later(mut rx) = membership::join(&mut group, static_request, &CONFIG, 300) else {
        panic!("the replacement joins");
    };
    group.tick(400, CONFIG.initial_rebalance_delay_ms);
    let new = answer(&mut rx).unwrap().member_id;
    assert_ne!(old, new);
    assert!(matches!(
        membership::heartbeat(&mut group, &old, Some("instance-1"), 2, 500),
        Err(GroupError::FencedInstanceId { .. })
    ));
}

#[test]
fn the_last_member_leaving_empties_the_group() {
    let (mut group, first) = stable_group_of_one(0);
    membership::leave(&mut group, &first, None, &CONFIG, 10).unwrap();
    assert_eq!(group.state, GroupState::Empty);
    assert!(group.members.is_empty());
    assert!(membership::leave(&mut group, &first, None, &CONFIG, 10).is_err());
}
