//! Config changes (IncrementalAlterConfigs SET/DELETE), producer-id blocks, and AlterPartition
//! (ISR changes requested by partition leaders, checked as Kafka's ReplicationControlManager does).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;

use super::brokers::check_epoch;
use super::change_partition;
use crate::cluster::topic_config::TopicConfig;
use crate::controller::commands::{
    CommandOutcome, ConfigOp, ConfigResource, PRODUCER_ID_BLOCK_SIZE,
};
use crate::metadata::image::MetadataImage;

/// Bounds on a dynamic broker config (not validated against known keys here).
const MAX_BROKER_CONFIG_KEYS: usize = 256;
const MAX_CONFIG_LEN: usize = 4096;

pub(super) fn alter_configs(
    image: &mut MetadataImage,
    resource: &ConfigResource,
    ops: &[ConfigOp],
    validate_only: bool,
) -> CommandOutcome {
    let result = match resource {
        ConfigResource::Topic(name) => match image.topics.get(name) {
            None => Err(CommandOutcome::error(
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            )),
            Some(topic) => alter_topic_configs(&topic.configs, ops),
        },
        ConfigResource::Broker(id) => {
            if *id < 0 {
                Err(CommandOutcome::error(
                    ResponseError::InvalidRequest,
                    "negative broker id",
                ))
            } else {
                let current = image.broker_configs.get(id).cloned().unwrap_or_default();
                alter_broker_configs(current, ops)
            }
        }
    };
    let configs = match result {
        Ok(configs) => configs,
        Err(outcome) => return outcome,
    };
    if validate_only {
        return CommandOutcome::Ok;
    }
    match resource {
        ConfigResource::Topic(name) => {
            if let Some(topic) = image.topics.get_mut(name) {
                topic.configs = configs;
            }
        }
        ConfigResource::Broker(id) => {
            if configs.is_empty() {
                image.broker_configs.remove(id);
            } else {
                image.broker_configs.insert(*id, configs);
            }
        }
    }
    CommandOutcome::Ok
}

/// The topic's configs after `ops`, every key and value validated by `TopicConfig`.
fn alter_topic_configs(
    current: &BTreeMap<String, String>,
    ops: &[ConfigOp],
) -> Result<BTreeMap<String, String>, CommandOutcome> {
    let invalid = |e: String| CommandOutcome::error(ResponseError::InvalidConfig, e);
    let mut configs = current.clone();
    for op in ops {
        match op {
            ConfigOp::Set { name, value } => {
                TopicConfig::default()
                    .set(name, value)
                    .map_err(|e| invalid(e.to_string()))?;
                configs.insert(name.clone(), value.clone());
            }
            ConfigOp::Delete { name } => {
                // Deleting an override of a known key that is not set is a no-op, as in Kafka.
                TopicConfig::from_pairs([(name.as_str(), None)])
                    .map_err(|e| invalid(e.to_string()))?;
                configs.remove(name);
            }
            ConfigOp::Clear => configs.clear(),
        }
    }
    Ok(configs)
}

fn alter_broker_configs(
    mut configs: BTreeMap<String, String>,
    ops: &[ConfigOp],
) -> Result<BTreeMap<String, String>, CommandOutcome> {
    let invalid = |msg: &str| CommandOutcome::error(ResponseError::InvalidConfig, msg);
    for op in ops {
        match op {
            ConfigOp::Set { name, value } => {
                if name.is_empty() || name.len() > MAX_CONFIG_LEN || value.len() > MAX_CONFIG_LEN {
                    return Err(invalid("broker config name or value empty or too long"));
                }
                configs.insert(name.clone(), value.clone());
            }
            ConfigOp::Delete { name } => {
                configs.remove(name);
            }
            ConfigOp::Clear => configs.clear(),
        }
    }
    if configs.len() > MAX_BROKER_CONFIG_KEYS {
        return Err(invalid("too many broker configs"));
    }
    Ok(configs)
}

pub(super) fn allocate_producer_ids(
    image: &mut MetadataImage,
    broker_id: i32,
    broker_epoch: i64,
) -> CommandOutcome {
    if let Err(outcome) = check_epoch(image, broker_id, broker_epoch) {
        return outcome;
    }
    let start = image.next_producer_id;
    let Some(next) = start.checked_add(i64::from(PRODUCER_ID_BLOCK_SIZE)) else {
        return CommandOutcome::error(ResponseError::UnknownServerError, "producer ids exhausted");
    };
    image.next_producer_id = next;
    CommandOutcome::ProducerIds {
        start,
        len: PRODUCER_ID_BLOCK_SIZE,
    }
}

pub(super) fn advance_producer_ids(image: &mut MetadataImage, at_least: i64) -> CommandOutcome {
    if at_least < 0 {
        return CommandOutcome::error(ResponseError::InvalidRequest, "negative producer id");
    }
    image.next_producer_id = image.next_producer_id.max(at_least);
    CommandOutcome::Ok
}

pub(super) struct AlterRequest<'a> {
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: &'a [i32],
}

/// Kafka's AlterPartition checks (ReplicationControlManager.validateAlterPartitionData), in its
/// order: unknown partition (UNKNOWN_TOPIC_OR_PARTITION); a leader or partition epoch above ours
/// (NOT_CONTROLLER: the requester saw a newer image, so this one is behind; retriable); a lower
/// leader epoch (FENCED_LEADER_EPOCH); requester not the leader (INVALID_REQUEST); a lower
/// partition epoch (INVALID_UPDATE_VERSION); an ISR with duplicates or non-replicas
/// (INVALID_REQUEST); an ISR without the leader (INVALID_REQUEST); an ISR member not registered or
/// fenced (INELIGIBLE_REPLICA, AlterPartition v2+). Only the ISR changes; the leader stays.
pub(super) fn alter_partition(
    image: &mut MetadataImage,
    topic: &str,
    index: i32,
    request: AlterRequest<'_>,
) -> CommandOutcome {
    let live = |b: i32| image.is_live(b);
    let Some(partition) = image.partition(topic, index) else {
        return CommandOutcome::error(
            ResponseError::UnknownTopicOrPartition,
            format!("{topic}-{index} does not exist"),
        );
    };
    let epochs = format!(
        "leader epoch {} and partition epoch {} against {} and {}",
        request.leader_epoch,
        request.partition_epoch,
        partition.leader_epoch,
        partition.partition_epoch
    );
    if request.leader_epoch > partition.leader_epoch
        || request.partition_epoch > partition.partition_epoch
    {
        return CommandOutcome::error(ResponseError::NotController, epochs);
    }
    if request.leader_epoch < partition.leader_epoch {
        return CommandOutcome::error(ResponseError::FencedLeaderEpoch, epochs);
    }
    if request.leader_id != partition.leader {
        return CommandOutcome::error(
            ResponseError::InvalidRequest,
            format!("broker {} does not lead {topic}-{index}", request.leader_id),
        );
    }
    if request.partition_epoch < partition.partition_epoch {
        return CommandOutcome::error(ResponseError::InvalidUpdateVersion, epochs);
    }
    let distinct: BTreeSet<i32> = request.new_isr.iter().copied().collect();
    if distinct.len() != request.new_isr.len()
        || request
            .new_isr
            .iter()
            .any(|b| !partition.replicas.contains(b))
    {
        return CommandOutcome::error(
            ResponseError::InvalidRequest,
            format!(
                "ISR {:?} is not a set of replicas of {topic}-{index}",
                request.new_isr
            ),
        );
    }
    if !request.new_isr.contains(&partition.leader) {
        return CommandOutcome::error(
            ResponseError::InvalidRequest,
            "the new ISR does not contain the leader",
        );
    }
    if let Some(b) = request.new_isr.iter().find(|b| !live(**b)) {
        return CommandOutcome::error(
            ResponseError::IneligibleReplica,
            format!("broker {b} is fenced or not registered"),
        );
    }
    let leader = partition.leader;
    let live_ids: Vec<i32> = image.live_brokers().map(|b| b.id).collect();
    let partition = match super::partition_mut(image, topic, index) {
        Ok(partition) => partition,
        Err(unknown) => return unknown,
    };
    change_partition(partition, request.new_isr.to_vec(), leader);
    // A reassignment completes once its new replicas are in sync.
    super::reassign::maybe_complete(partition, &live_ids);
    CommandOutcome::PartitionAltered(partition.clone())
}
