//! Placement and leader choice: balance, rack spread, determinism, errors.
//!
//! What holds (and is checked): leaders of a fresh topic are spread within 1 of each other over
//! the brokers; replicas of a partition are distinct and, when `rf <= racks`, on distinct racks;
//! without racks, each broker holds exactly `partitions * rf / n` replicas when `n` divides
//! `partitions`, and otherwise the counts differ by at most `rf` (the last, partial round).
//! With uneven racks replica counts are not balanced (Kafka's placer has the same property).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

fn brokers(n: i32) -> Vec<(i32, Option<String>)> {
    (1..=n).map(|id| (id, None)).collect()
}

fn racked(spec: &[(i32, &str)]) -> Vec<(i32, Option<String>)> {
    spec.iter()
        .map(|(id, rack)| (*id, Some(rack.to_string())))
        .collect()
}

fn counts(lists: &[Vec<i32>], pick: impl Fn(&Vec<i32>) -> Vec<i32>) -> BTreeMap<i32, usize> {
    let mut counts = BTreeMap::new();
    for list in lists {
        for b in pick(list) {
            *counts.entry(b).or_insert(0) += 1;
        }
    }
    counts
}

/// Most minus fewest per broker over `n` brokers (a broker absent from `counts` has 0).
fn spread(counts: &BTreeMap<i32, usize>, n: usize) -> usize {
    let most = counts.values().max().copied().unwrap_or(0);
    let fewest = if counts.len() < n {
        0
    } else {
        counts.values().min().copied().unwrap_or(0)
    };
    most - fewest
}

#[test]
fn replication_factor_out_of_range_is_invalid_replication_factor() {
    for rf in [0, -1, 4] {
        let err = place(&brokers(3), 3, 0, rf, 0).unwrap_err();
        assert_eq!(err.kafka_error(), ResponseError::InvalidReplicationFactor);
    }
    assert!(place(&[], 1, 0, 1, 0).is_err());
}

#[test]
fn rack_alternated_list_takes_one_broker_per_rack_in_turn() {
    let brokers = racked(&[(1, "a"), (2, "a"), (3, "b"), (4, "c"), (5, "c")]);
    let list = rack_alternated(&brokers);
    let ids: Vec<i32> = list.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![1, 3, 4, 2, 5]);
}

#[test]
fn kafka_round_robin_without_racks_seed_zero() {
    // Kafka's AdminUtils with startIndex 0 and shift 0 over brokers 1..=4 gives these lists.
    let lists = place(&brokers(4), 5, 0, 3, 0).unwrap();
    assert_eq!(
        lists,
        vec![
            vec![1, 2, 3],
            vec![2, 3, 4],
            vec![3, 4, 1],
            vec![4, 1, 2],
            // Partition 4: the shift grows every n partitions.
            vec![1, 3, 4],
        ]
    );
}

#[test]
fn choose_leader_takes_first_live_isr_member_in_replica_order() {
    let partition = PartitionImage {
        replicas: vec![3, 1, 2],
        isr: vec![2, 1],
        leader: -1,
        leader_epoch: 0,
        partition_epoch: 0,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    };
    assert_eq!(choose_leader(&partition, |_| true), Some(1));
    assert_eq!(choose_leader(&partition, |b| b != 1), Some(2));
    // 3 is live but not in the ISR: no unclean election.
    assert_eq!(choose_leader(&partition, |b| b == 3), None);
}

proptest! {
    #[test]
    fn leaders_spread_within_one_and_replicas_distinct(
        n in 1i32..8, partitions in 1i32..60, rf_pick in 0u16..8, seed in any::<u64>()
    ) {
        let rf = (rf_pick % n as u16 + 1) as i16;
        let lists = place(&brokers(n), partitions, 0, rf, seed).unwrap();
        prop_assert_eq!(lists.len(), partitions as usize);
        for list in &lists {
            prop_assert_eq!(list.len(), rf as usize);
            let mut sorted = list.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), list.len());
        }
        let leaders = counts(&lists, |l| vec![l[0]]);
        prop_assert!(spread(&leaders, n as usize) <= 1, "leaders {:?}", leaders);

        let replicas = counts(&lists, |l| l.clone());
        if partitions % n == 0 {
            prop_assert_eq!(spread(&replicas, n as usize), 0, "replicas {:?}", replicas);
        } else {
            prop_assert!(spread(&replicas, n as usize) <= rf as usize, "replicas {:?}", replicas);
        }
        // Deterministic in its inputs.
        prop_assert_eq!(place(&brokers(n), partitions, 0, rf, seed).unwrap(), lists);
    }

    #[test]
    fn replicas_on_distinct_racks_when_rf_at_most_racks(
        rack_of in proptest::collection::vec(0u8..4, 1..10),
        partitions in 1i32..40,
        first in 0i32..20,
        rf_pick in 0u16..8,
        seed in any::<u64>(),
    ) {
        let brokers: Vec<(i32, Option<String>)> = rack_of
            .iter()
            .enumerate()
            .map(|(i, r)| (i as i32 + 1, Some(format!("rack-{r}"))))
            .collect();
        let racks = rack_of.iter().collect::<BTreeSet<_>>().len();
        let rf = (rf_pick as usize % brokers.len() + 1) as i16;
        let lists = place(&brokers, partitions, first, rf, seed).unwrap();
        let rack = |id: i32| rack_of[(id - 1) as usize];
        for list in &lists {
            prop_assert_eq!(list.len(), rf as usize);
            let distinct_brokers = list.iter().collect::<BTreeSet<_>>().len();
            prop_assert_eq!(distinct_brokers, list.len());
            let distinct_racks = list.iter().map(|b| rack(*b)).collect::<BTreeSet<_>>().len();
            // Racks are used up before any is used twice.
            prop_assert_eq!(distinct_racks, (rf as usize).min(racks), "{:?}", list);
        }
        let leaders = counts(&lists, |l| vec![l[0]]);
        prop_assert!(spread(&leaders, brokers.len()) <= 1, "leaders {:?}", leaders);
    }
}
