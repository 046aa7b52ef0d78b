//! Server-side assignors: from members' subscribed topics (by id) and the topics' partition
//! counts to a target assignment, every subscribed partition to exactly one subscribed member.
//!
//! * `uniform` (Kafka's `UniformAssignor`): balanced (for identical subscriptions no member has
//!   two partitions more than another; otherwise no partition moves to a member that has two
//!   fewer) and sticky: partitions stay with their current target owner where balance allows.
//! * `range` (Kafka's `RangeAssignor`): per topic, its subscribers sorted by member id get
//!   consecutive ranges, the first `partitions % members` one partition more.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::{count, Assignment, AssignorKind};

/// Member id -> subscribed topic ids.
pub type Subscriptions = BTreeMap<String, BTreeSet<Uuid>>;

/// The target assignment of `members` over `topics` (topic id -> partition count).
pub fn assign(
    kind: AssignorKind,
    members: &Subscriptions,
    topics: &BTreeMap<Uuid, i32>,
    current: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    match kind {
        AssignorKind::Uniform => uniform(members, topics, current),
        AssignorKind::Range => range(members, topics),
    }
}

fn empty_for(members: &Subscriptions) -> BTreeMap<String, Assignment> {
    members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect()
}

pub fn range(
    members: &Subscriptions,
    topics: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out = empty_for(members);
    for (&topic, &partitions) in topics {
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, subscribed)| subscribed.contains(&topic))
            .map(|(m, _)| m)
            .collect();
        if subscribers.is_empty() || partitions <= 0 {
            continue;
        }
        let n = subscribers.len() as i32;
        let (each, extra) = (partitions / n, partitions % n);
        let mut next = 0;
        for (i, member) in subscribers.into_iter().enumerate() {
            let size = each + i32::from((i as i32) < extra);
            if size == 0 {
                continue;
            }
            let set: BTreeSet<i32> = (next..next + size).collect();
            next += size;
            if let Some(assignment) = out.get_mut(member) {
                assignment.insert(topic, set);
            }
        }
    }
    out
}

pub fn uniform(
    members: &Subscriptions,
    topics: &BTreeMap<Uuid, i32>,
    current: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let mut out = empty_for(members);
    // Every subscribed partition with the members that may own it.
    let mut partitions: Vec<((Uuid, i32), Vec<&String>)> = Vec::new();
    for (&topic, &count) in topics {
        let eligible: Vec<&String> = members
            .iter()
            .filter(|(_, s)| s.contains(&topic))
            .map(|(m, _)| m)
            .collect();
        if eligible.is_empty() {
            continue;
        }
        for p in 0..count.max(0) {
            partitions.push(((topic, p), eligible.clone()));
        }
    }
    let total = partitions.len();
    let members_n = members.len().max(1);
    // The most any member keeps from its current assignment: the balanced share, rounded up.
    let cap = total.div_ceil(members_n);
    let mut unassigned = Vec::new();
    for ((topic, p), eligible) in &partitions {
        let owner = current
            .iter()
            .find(|(m, a)| a.get(topic).is_some_and(|s| s.contains(p)) && eligible.contains(m));
        match owner.and_then(|(m, _)| out.get_mut(m).map(|a| (m, a))) {
            Some((_, assignment)) if count(assignment) < cap => {
                assignment.entry(*topic).or_default().insert(*p);
            }
            _ => unassigned.push(((*topic, *p), eligible)),
        }
    }
    // The rest to the least loaded eligible member (ties: smallest member id).
    for ((topic, p), eligible) in unassigned {
        let best = eligible
            .iter()
            .min_by_key(|m| (out.get(m.as_str()).map_or(0, count), m.as_str()));
        if let Some(assignment) = best.and_then(|m| out.get_mut(m.as_str())) {
            assignment.entry(topic).or_default().insert(p);
        }
    }
    balance(&mut out, &partitions);
    out.values_mut()
        .for_each(|a| a.retain(|_, partitions| !partitions.is_empty()));
    out
}

/// Moves partitions from the most to the least loaded members that may own them until no move
/// narrows a gap of two or more; bounded by the number of partitions times members.
fn balance(out: &mut BTreeMap<String, Assignment>, partitions: &[((Uuid, i32), Vec<&String>)]) {
    let eligible: BTreeMap<(Uuid, i32), &Vec<&String>> =
        partitions.iter().map(|(tp, e)| (*tp, e)).collect();
    let limit = partitions.len().saturating_mul(out.len()).max(1);
    for _ in 0..limit {
        let mut by_load: Vec<(usize, String)> =
            out.iter().map(|(m, a)| (count(a), m.clone())).collect();
        by_load.sort();
        let mut moved = false;
        'outer: for (high_load, high) in by_load.iter().rev() {
            for (low_load, low) in by_load.iter() {
                if low_load + 1 >= *high_load {
                    break;
                }
                let candidate = out.get(high).and_then(|a| {
                    a.iter()
                        .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
                        .find(|tp| eligible.get(tp).is_some_and(|e| e.contains(&low)))
                });
                if let Some((topic, p)) = candidate {
                    if let Some(a) = out.get_mut(high) {
                        a.entry(topic).or_default().remove(&p);
                    }
                    if let Some(a) = out.get_mut(low) {
                        a.entry(topic).or_default().insert(p);
                    }
                    moved = true;
                    break 'outer;
                }
            }
        }
        if !moved {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn subs(members: &[(&str, &[u128])]) -> Subscriptions {
        members
            .iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| topic(*t)).collect()))
            .collect()
    }

    fn loads(out: &BTreeMap<String, Assignment>) -> Vec<usize> {
        out.values().map(count).collect()
    }

    fn all_once(out: &BTreeMap<String, Assignment>, topics: &BTreeMap<Uuid, i32>) -> bool {
        let mut seen = BTreeSet::new();
        for a in out.values() {
            for (t, ps) in a {
                for p in ps {
                    if !seen.insert((*t, *p)) {
                        return false;
                    }
                }
            }
        }
        seen.len() == topics.values().map(|c| *c as usize).sum::<usize>()
    }

    #[test]
    fn uniform_balances_identical_subscriptions() {
        let topics = BTreeMap::from([(topic(1), 6), (topic(2), 1)]);
        let members = subs(&[("a", &[1, 2]), ("b", &[1, 2]), ("c", &[1, 2])]);
        let out = uniform(&members, &topics, &BTreeMap::new());
        assert!(all_once(&out, &topics));
        let l = loads(&out);
        assert!(
            l.iter().max().unwrap() - l.iter().min().unwrap() <= 1,
            "{l:?}"
        );
    }

    #[test]
    fn uniform_keeps_current_owners_when_a_member_joins() {
        let topics = BTreeMap::from([(topic(1), 6)]);
        let before = uniform(
            &subs(&[("a", &[1]), ("b", &[1])]),
            &topics,
            &BTreeMap::new(),
        );
        let after = uniform(
            &subs(&[("a", &[1]), ("b", &[1]), ("c", &[1])]),
            &topics,
            &before,
        );
        assert_eq!(loads(&after), vec![2, 2, 2]);
        // a and b each keep two of their three partitions: only two partitions move.
        for m in ["a", "b"] {
            let kept = &after[m][&topic(1)] & &before[m][&topic(1)];
            assert_eq!(kept.len(), 2, "{m}");
        }
    }

    #[test]
    fn uniform_gives_everything_back_when_a_member_leaves() {
        let topics = BTreeMap::from([(topic(1), 6)]);
        let before = uniform(
            &subs(&[("a", &[1]), ("b", &[1])]),
            &topics,
            &BTreeMap::new(),
        );
        let after = uniform(&subs(&[("a", &[1])]), &topics, &before);
        assert_eq!(after["a"][&topic(1)].len(), 6);
        assert!(before["a"][&topic(1)].is_subset(&after["a"][&topic(1)]));
    }

    #[test]
    fn uniform_respects_heterogeneous_subscriptions() {
        let topics = BTreeMap::from([(topic(1), 4), (topic(2), 4)]);
        let members = subs(&[("a", &[1]), ("b", &[1, 2]), ("c", &[2])]);
        let out = uniform(&members, &topics, &BTreeMap::new());
        assert!(all_once(&out, &topics));
        assert!(!out["a"].contains_key(&topic(2)));
        assert!(!out["c"].contains_key(&topic(1)));
        let l = loads(&out);
        assert!(
            l.iter().max().unwrap() - l.iter().min().unwrap() <= 1,
            "{l:?}"
        );
    }

    #[test]
    fn range_splits_each_topic_in_member_order() {
        let topics = BTreeMap::from([(topic(1), 5)]);
        let out = range(&subs(&[("b", &[1]), ("a", &[1])]), &topics);
        assert_eq!(out["a"][&topic(1)], BTreeSet::from([0, 1, 2]));
        assert_eq!(out["b"][&topic(1)], BTreeSet::from([3, 4]));
    }
}
