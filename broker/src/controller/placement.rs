//! Replica placement and leader choice, as pure functions of their inputs.
//!
//! Placement is Kafka's rack-aware round robin (`AdminUtils.assignReplicasToBrokersRackAware`):
//! brokers are laid out rack-alternated (first broker of each rack, then the second of each, ...);
//! partition `p`'s first replica is broker `(p + start) % n`, so leaders spread evenly; followers
//! follow at a shift that grows every `n` partitions, skipping brokers on racks that already hold
//! a replica while unused racks remain. A broker without a rack counts as one more rack ("no
//! rack"), as KRaft's placer does, so that all-unset racks is plain round robin. `start` and the
//! first shift come from `seed` instead of Kafka's random draw, so every node computes the same.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;

use crate::metadata::image::PartitionImage;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("replication factor {factor} is below 1 or above the {brokers} live broker(s)")]
    InvalidReplicationFactor { factor: i16, brokers: usize },
    #[error("invalid partition count {0}")]
    InvalidPartitions(i32),
}

impl PlacementError {
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            PlacementError::InvalidReplicationFactor { .. } => {
                ResponseError::InvalidReplicationFactor
            }
            PlacementError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        }
    }
}

/// Brokers ordered rack by rack in turn: racks sorted (no rack first), brokers of a rack by id.
fn rack_alternated(brokers: &[(i32, Option<String>)]) -> Vec<(i32, Option<&str>)> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for (id, rack) in brokers {
        by_rack.entry(rack.as_deref()).or_default().push(*id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
        ids.dedup();
    }
    let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for depth in 0..deepest {
        for (rack, ids) in &by_rack {
            if let Some(id) = ids.get(depth) {
                out.push((*id, *rack));
            }
        }
    }
    out
}

/// Kafka's `replicaIndex`: the follower position `k` after `first`, never `first` itself.
fn replica_index(first: usize, shift: usize, k: usize, n: usize) -> usize {
    let offset = 1 + (shift + k) % (n - 1);
    (first + offset) % n
}

/// Replica lists for `partitions` new partitions (indexes `first_partition..`) with
/// `replication_factor` replicas over `brokers` (the live ones, with their racks). Deterministic
/// in its inputs; duplicate broker ids count once.
pub fn place(
    brokers: &[(i32, Option<String>)],
    partitions: i32,
    first_partition: i32,
    replication_factor: i16,
    seed: u64,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    let list = rack_alternated(brokers);
    let n = list.len();
    let rf = usize::try_from(replication_factor).unwrap_or(0);
    if rf < 1 || rf > n {
        return Err(PlacementError::InvalidReplicationFactor {
            factor: replication_factor,
            brokers: n,
        });
    }
    if partitions < 0 || first_partition < 0 {
        return Err(PlacementError::InvalidPartitions(partitions));
    }
    let num_racks = list
        .iter()
        .map(|(_, rack)| *rack)
        .collect::<BTreeSet<_>>()
        .len();
    // Kafka draws both at random; here they come from the seed (the topic id).
    let start = (seed % n as u64) as usize;
    let mut shift = ((seed >> 32) % n as u64) as usize;
    // The capacity is a hint: callers bound `partitions`, this only keeps a bad one from
    // reserving memory up front.
    let mut out = Vec::with_capacity(usize::try_from(partitions).unwrap_or(0).min(1024));
    for p in first_partition..first_partition.saturating_add(partitions) {
        let p = p as usize; // non-negative, checked above
        if p > 0 && p.is_multiple_of(n) {
            shift += 1;
        }
        let first = (p + start) % n;
        let (leader, leader_rack) = list[first];
        let mut replicas = vec![leader];
        let mut racks = BTreeSet::from([leader_rack]);
        let mut k = 0;
        // Every n-1 consecutive k visit every other broker once, so each follower is found
        // within n-1 steps; the bound only guards that reasoning.
        while replicas.len() < rf && k < rf * n {
            let (broker, rack) = list[replica_index(first, shift * num_racks, k, n)];
            k += 1;
            let rack_ok = !racks.contains(&rack) || racks.len() == num_racks;
            if rack_ok && !replicas.contains(&broker) {
                replicas.push(broker);
                racks.insert(rack);
            }
        }
        out.push(replicas);
    }
    Ok(out)
}

/// Leader choice with `unclean.leader.election.enable=false`: the first replica, in replica
/// order, that is in the ISR and live; None when there is none.
pub fn choose_leader(partition: &PartitionImage, is_live: impl Fn(i32) -> bool) -> Option<i32> {
    partition
        .replicas
        .iter()
        .copied()
        .find(|r| partition.isr.contains(r) && is_live(*r))
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
