//! The one metadata transition: `apply(image, index, command)`. Every node runs it on every
//! committed command in log order, so it is pure and deterministic (ordered maps, no clock, no
//! randomness). A command that is invalid against the image changes nothing but `last_applied`
//! and yields a Kafka error code; the log serialises commands, so validation and apply never race.
//!
//! Broker lifecycle lives in `apply/brokers.rs`, topics and partitions in `apply/topics.rs`,
//! configs, producer ids and AlterPartition in `apply/misc.rs`, client quotas in `apply/quotas.rs`, ElectLeaders in
//! `apply/elect.rs`, reassignments in `apply/reassign.rs`; the partition change rule
//! shared by all of them (epochs bump, leader from the ISR) is here.

use kafka_protocol::ResponseError;
use tracing::debug;

use crate::controller::commands::{CommandOutcome, ControllerCommand};
use crate::controller::placement::choose_leader;
use crate::metadata::image::{MetadataImage, PartitionImage};

mod brokers;
mod elect;
mod misc;
mod quotas;
mod reassign;
mod topics;

/// Applies the command at Raft log index `index` to `image`.
pub fn apply(image: &mut MetadataImage, index: u64, command: &ControllerCommand) -> CommandOutcome {
    image.last_applied = index;
    let outcome = match command {
        ControllerCommand::InitCluster { cluster_id } => brokers::init_cluster(image, cluster_id),
        ControllerCommand::RegisterBroker {
            id,
            incarnation_id,
            listeners,
            rack,
        } => brokers::register(image, index, *id, *incarnation_id, listeners, rack),
        ControllerCommand::FenceBroker { id, epoch } => brokers::fence(image, *id, *epoch),
        ControllerCommand::UnfenceBroker { id, epoch } => brokers::unfence(image, *id, *epoch),
        ControllerCommand::UnregisterBroker { id, epoch } => {
            brokers::unregister(image, *id, *epoch)
        }
        ControllerCommand::CreateTopic {
            name,
            topic_id,
            partitions,
            replication_factor,
            assignments,
            configs,
            validate_only,
        } => topics::create_topic(
            image,
            topics::NewTopic {
                name,
                topic_id: *topic_id,
                partitions: *partitions,
                replication_factor: *replication_factor,
                assignments: assignments.as_deref(),
                configs,
            },
            *validate_only,
        ),
        ControllerCommand::DeleteTopic { name } => topics::delete_topic(image, name),
        ControllerCommand::CreatePartitions {
            name,
            count,
            assignments,
            validate_only,
        } => topics::create_partitions(image, name, *count, assignments.as_deref(), *validate_only),
        ControllerCommand::AlterConfigs {
            resource,
            ops,
            validate_only,
        } => misc::alter_configs(image, resource, ops, *validate_only),
        ControllerCommand::AlterClientQuotas {
            entity,
            changes,
            validate_only,
        } => quotas::alter(image, entity, changes, *validate_only),
        ControllerCommand::AllocateProducerIds {
            broker_id,
            broker_epoch,
        } => misc::allocate_producer_ids(image, *broker_id, *broker_epoch),
        ControllerCommand::AdvanceProducerIds { at_least } => {
            misc::advance_producer_ids(image, *at_least)
        }
        ControllerCommand::AlterPartition {
            topic,
            partition,
            leader_id,
            leader_epoch,
            partition_epoch,
            new_isr,
        } => misc::alter_partition(
            image,
            topic,
            *partition,
            misc::AlterRequest {
                leader_id: *leader_id,
                leader_epoch: *leader_epoch,
                partition_epoch: *partition_epoch,
                new_isr,
            },
        ),
        ControllerCommand::ReassignPartition {
            topic,
            partition,
            target,
        } => reassign::reassign(image, topic, *partition, target.as_deref()),
        ControllerCommand::ElectLeader {
            topic,
            partition,
            election,
        } => elect::elect_leader(image, topic, *partition, *election),
    };
    if let CommandOutcome::Error { code, message } = &outcome {
        debug!(index, code, %message, "controller command rejected");
    }
    outcome
}

/// Moves `partition` to `isr` and `leader`, bumping the leader epoch if the leader changes and
/// the partition epoch if anything changes (Kafka's PartitionChangeBuilder rule).
fn change_partition(partition: &mut PartitionImage, isr: Vec<i32>, leader: i32) {
    if partition.isr == isr && partition.leader == leader {
        return;
    }
    if partition.leader != leader {
        partition.leader_epoch = partition.leader_epoch.saturating_add(1);
        partition.leader = leader;
    }
    partition.isr = isr;
    partition.partition_epoch = partition.partition_epoch.saturating_add(1);
}

/// `topic`'s partition `index` to change, or the UNKNOWN_TOPIC_OR_PARTITION outcome.
fn partition_mut<'a>(
    image: &'a mut MetadataImage,
    topic: &str,
    index: i32,
) -> Result<&'a mut PartitionImage, CommandOutcome> {
    usize::try_from(index)
        .ok()
        .and_then(|i| {
            image
                .topics
                .get_mut(topic)
                .and_then(|t| t.partitions.get_mut(i))
        })
        .ok_or_else(|| {
            CommandOutcome::error(
                ResponseError::UnknownTopicOrPartition,
                format!("{topic}-{index} does not exist"),
            )
        })
}

/// A new partition: ISR = its live replicas, leader = the first of them, epochs 0. None when no
/// replica is live (no leader could ever be chosen without an unclean election).
fn new_partition(replicas: Vec<i32>, image: &MetadataImage) -> Option<PartitionImage> {
    let isr: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|r| image.is_live(*r))
        .collect();
    let mut partition = PartitionImage {
        replicas,
        isr,
        leader: -1,
        leader_epoch: 0,
        partition_epoch: 0,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    };
    partition.leader = choose_leader(&partition, |b| image.is_live(b))?;
    Some(partition)
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "apply_topic_tests.rs"]
mod topic_tests;

#[cfg(test)]
#[path = "apply_proptests.rs"]
mod proptests;

#[cfg(test)]
#[path = "apply_reassign_tests.rs"]
mod reassign_tests;
