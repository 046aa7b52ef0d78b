//! Partition reassignment (KIP-455, as KRaft's controller does it): a request names the target
//! replicas; until they are all in sync the partition's `replicas` are the old and the target
//! together (target first), with `adding_replicas` and `removing_replicas` saying which is which,
//! so the new replicas fetch and catch up while the old ones still serve. When the ISR holds every
//! target replica (checked here and after each AlterPartition), the reassignment completes: the
//! replicas become the target, the ISR keeps only target members, and a leader that is leaving
//! hands over to the first target replica in sync. A cancel goes back to the original replicas.

use kafka_protocol::ResponseError;

use super::change_partition;
use crate::controller::commands::CommandOutcome;
use crate::metadata::image::{MetadataImage, PartitionImage};

pub(super) fn reassign(
    image: &mut MetadataImage,
    topic: &str,
    index: i32,
    target: Option<&[i32]>,
) -> CommandOutcome {
    let live: Vec<i32> = image.live_brokers().map(|b| b.id).collect();
    let registered: Vec<i32> = image.brokers.keys().copied().collect();
    let partition = match super::partition_mut(image, topic, index) {
        Ok(partition) => partition,
        Err(unknown) => return unknown,
    };
    let original: Vec<i32> = partition
        .replicas
        .iter()
        .copied()
        .filter(|r| !partition.adding_replicas.contains(r))
        .collect();
    let Some(target) = target else {
        if partition.adding_replicas.is_empty() && partition.removing_replicas.is_empty() {
            return CommandOutcome::error(
                ResponseError::NoReassignmentInProgress,
                format!("no reassignment of {topic}-{index} is in progress"),
            );
        }
        if !set_replicas(partition, original, &live) {
            return CommandOutcome::error(
                ResponseError::InvalidReplicaAssignment,
                format!("cannot cancel: no original replica of {topic}-{index} is in sync"),
            );
        }
        return CommandOutcome::PartitionAltered(partition.clone());
    };
    let mut distinct = target.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if target.is_empty() || distinct.len() != target.len() {
        return CommandOutcome::error(
            ResponseError::InvalidReplicaAssignment,
            format!("target replicas {target:?} must be distinct and not empty"),
        );
    }
    if let Some(unknown) = target.iter().find(|r| !registered.contains(r)) {
        return CommandOutcome::error(
            ResponseError::InvalidReplicaAssignment,
            format!("broker {unknown} is not registered"),
        );
    }
    let adding: Vec<i32> = target
        .iter()
        .copied()
        .filter(|r| !original.contains(r))
        .collect();
    let removing: Vec<i32> = original
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    let mut replicas = target.to_vec();
    replicas.extend(removing.iter().copied());
    // A reassignment replacing one in progress drops the replicas the first one was adding:
    // they leave the ISR too, and so may the leader.
    let Some((isr, leader)) = isr_and_leader_within(partition, &replicas, &live) else {
        return CommandOutcome::error(
            ResponseError::InvalidReplicaAssignment,
            format!("{topic}-{index} would have no in-sync replica"),
        );
    };
    partition.replicas = replicas;
    partition.adding_replicas = adding;
    partition.removing_replicas = removing;
    // The replica set changed: a new partition epoch, whether or not the ISR or leader did.
    partition.partition_epoch = partition.partition_epoch.saturating_add(1);
    change_partition(partition, isr, leader);
    maybe_complete(partition, &live);
    CommandOutcome::PartitionAltered(partition.clone())
}

/// The ISR members among `replicas`, and the leader: the current one if it stays, else the first
/// of `replicas` in sync and live (-1 if none). None if no ISR member stays (the ISR is never
/// empty).
fn isr_and_leader_within(
    partition: &PartitionImage,
    replicas: &[i32],
    live: &[i32],
) -> Option<(Vec<i32>, i32)> {
    let isr: Vec<i32> = partition
        .isr
        .iter()
        .copied()
        .filter(|r| replicas.contains(r))
        .collect();
    if isr.is_empty() {
        return None;
    }
    let leader = if replicas.contains(&partition.leader) {
        partition.leader
    } else {
        replicas
            .iter()
            .copied()
            .find(|r| isr.contains(r) && live.contains(r))
            .unwrap_or(-1)
    };
    Some((isr, leader))
}

/// Completes a reassignment whose target replicas are all in the ISR.
pub(super) fn maybe_complete(partition: &mut PartitionImage, live: &[i32]) {
    if partition.adding_replicas.is_empty() && partition.removing_replicas.is_empty() {
        return;
    }
    let target: Vec<i32> = partition
        .replicas
        .iter()
        .copied()
        .filter(|r| !partition.removing_replicas.contains(r))
        .collect();
    if target.iter().all(|r| partition.isr.contains(r)) {
        set_replicas(partition, target, live);
    }
}

/// Makes `replicas` the partition's replicas (ending any reassignment): the ISR keeps its
/// members among them, and the leader stays unless it left, then the first replica in sync and
/// live leads (none live: no leader, as after fencing the whole ISR). False, and nothing
/// changed, if no member of the ISR is among `replicas` (the ISR is never empty).
fn set_replicas(partition: &mut PartitionImage, replicas: Vec<i32>, live: &[i32]) -> bool {
    let Some((isr, leader)) = isr_and_leader_within(partition, &replicas, live) else {
        return false;
    };
    partition.replicas = replicas;
    partition.adding_replicas.clear();
    partition.removing_replicas.clear();
    partition.partition_epoch = partition.partition_epoch.saturating_add(1);
    change_partition(partition, isr, leader);
    true
}
