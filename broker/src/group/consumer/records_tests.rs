//! Consumer group records: round trip through the log format, tombstones on removal.

use super::*;
use crate::group::consumer::{ConsumerConfig, HeartbeatRequest, TopicsView};

#[test]
fn a_group_survives_a_round_trip_through_its_records() {
    let view = TopicsView::from([("t".into(), (Uuid::from_u128(5), 4))]);
    let mut group = ConsumerGroup::default();
    for id in ["a", "b"] {
        let request = HeartbeatRequest {
            version: 1,
            member_id: id.into(),
            instance_id: (id == "b").then(|| "inst".to_string()),
            rebalance_timeout_ms: 1000,
            subscribed_topic_names: Some(vec!["t".into()]),
            owned: Some(Assignment::new()),
            ..HeartbeatRequest::default()
        };
        group
            .heartbeat(request, &ConsumerConfig::DEFAULT, &view, 0)
            .unwrap();
    }
    let written = group.diff("g");
    assert_eq!(written.len(), 2 + 3 * 2);
    assert!(group.diff("g").is_empty(), "nothing changed since");
    let records = written
        .into_iter()
        .map(|(k, v)| {
            let mut k = k;
            let kind = k.get_i16();
            (decode_key(kind, &mut k).unwrap(), v.unwrap())
        })
        .collect();
    let restored = Stored { records }.restore(0).unwrap();
    assert_eq!(restored.epoch, group.epoch);
    assert_eq!(restored.assignment_epoch, group.assignment_epoch);
    assert_eq!(restored.target, group.target);
    assert_eq!(
        restored.static_members.get("inst").map(String::as_str),
        Some("b")
    );
    for (id, m) in &group.members {
        assert_eq!(restored.members[id].reconciliation, m.reconciliation);
        assert_eq!(restored.members[id].subscribed_names, m.subscribed_names);
    }
}

#[test]
fn removed_members_leave_tombstones() {
    let view = TopicsView::new();
    let mut group = ConsumerGroup::default();
    let mut request = HeartbeatRequest {
        version: 1,
        member_id: "a".into(),
        rebalance_timeout_ms: 1000,
        subscribed_topic_names: Some(vec![]),
        owned: Some(Assignment::new()),
        ..HeartbeatRequest::default()
    };
    group
        .heartbeat(request.clone(), &ConsumerConfig::DEFAULT, &view, 0)
        .unwrap();
    group.diff("g");
    request.member_epoch = -1;
    group
        .heartbeat(request, &ConsumerConfig::DEFAULT, &view, 1)
        .unwrap();
    let written = group.diff("g");
    assert_eq!(written.iter().filter(|(_, v)| v.is_none()).count(), 3);
}
