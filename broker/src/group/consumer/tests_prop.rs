//! A property test of the consumer group under random joins, leaves, heartbeats reporting owned
//! partitions, session expiries and partition-count changes: no partition is held by two
//! members, member epochs never go backwards, and once members converge every partition is
//! assigned exactly once, balanced.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Join(u8),
    Leave(u8),
    Beat(u8),
    Expire(u8),
    Partitions(i32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..5).prop_map(Op::Join),
        (0u8..5).prop_map(Op::Leave),
        (0u8..5).prop_map(Op::Beat),
        (0u8..5).prop_map(Op::Beat),
        (0u8..5).prop_map(Op::Beat),
        (0u8..5).prop_map(Op::Expire),
        (1i32..12).prop_map(Op::Partitions),
    ]
}

/// No partition held by two members (what they were told plus what they are revoking).
fn exclusive(group: &ConsumerGroup) -> bool {
    let mut seen = BTreeSet::new();
    group.members.values().all(|m| {
        let r = &m.reconciliation;
        r.assigned
            .iter()
            .chain(&r.revoking)
            .all(|(t, ps)| ps.iter().all(|p| seen.insert((*t, *p))))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn ownership_is_exclusive_epochs_advance_and_members_converge(ops in proptest::collection::vec(op(), 1..60)) {
        let mut group = ConsumerGroup::default();
        let mut clients: BTreeMap<String, Client> = BTreeMap::new();
        let mut epochs: HashMap<String, i32> = HashMap::new();
        let mut partitions = 6;
        let mut now = 0i64;
        for op in ops {
            now += 100;
            let view = topics(partitions);
            match op {
                Op::Join(i) => {
                    let id = format!("m{i}");
                    if let std::collections::btree_map::Entry::Vacant(slot) = clients.entry(id.clone()) {
                        let out = group.heartbeat(join(&id), &CONFIG, &view, now).unwrap();
                        slot.insert(Client { epoch: out.member_epoch, owned: out.assignment.unwrap_or_default() });
                    }
                }
                Op::Leave(i) => {
                    let id = format!("m{i}");
                    if let Some(c) = clients.remove(&id) {
                        group.heartbeat(beat(&id, c.epoch, &c.owned).with_epoch(LEAVE_EPOCH), &CONFIG, &view, now).unwrap();
                        epochs.remove(&id);
                    }
                }
                Op::Beat(i) => {
                    let id = format!("m{i}");
                    if let Some(c) = clients.get_mut(&id) {
                        let out = group.heartbeat(beat(&id, c.epoch, &c.owned), &CONFIG, &view, now).unwrap();
                        c.epoch = out.member_epoch;
                        if let Some(a) = out.assignment { c.owned = a; }
                    }
                }
                Op::Expire(i) => {
                    let id = format!("m{i}");
                    if clients.remove(&id).is_some() {
                        group.remove_member(&id, &CONFIG, &view);
                        epochs.remove(&id);
                    }
                }
                Op::Partitions(n) => {
                    partitions = partitions.max(n);
                    group.tick(now, &CONFIG, &topics(partitions));
                }
            }
            prop_assert!(exclusive(&group));
            for (id, m) in &group.members {
                let e = m.reconciliation.member_epoch;
                let last = epochs.entry(id.clone()).or_insert(e);
                prop_assert!(e >= *last, "epoch of {} went from {} to {}", id, last, e);
                *last = e;
                prop_assert!(m.reconciliation.member_epoch <= group.epoch);
            }
        }
        let view = topics(partitions);
        converge(&mut group, &mut clients, &view, now + 1);
        prop_assert!(exclusive(&group));
        if !clients.is_empty() {
            prop_assert_eq!(group.state_name(), "Stable");
            let total: usize = sizes(&clients).iter().sum();
            prop_assert_eq!(total, partitions as usize);
            let s = sizes(&clients);
            prop_assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1, "{:?}", s);
        }
    }
}
