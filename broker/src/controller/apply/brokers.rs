//! Broker lifecycle commands: cluster init, registration, fencing, unfencing, deregistration,
//! and what fencing and unfencing do to partition leadership and ISRs.

use kafka_protocol::ResponseError;
use tracing::info;
use uuid::Uuid;

use super::change_partition;
use crate::controller::commands::CommandOutcome;
use crate::controller::placement::choose_leader;
use crate::metadata::image::{BrokerRegistration, Endpoint, MetadataImage};

/// Bounds on what a registration carries (it comes from the network).
const MAX_LISTENERS: usize = 64;
const MAX_NAME_LEN: usize = 255;

pub(super) fn init_cluster(image: &mut MetadataImage, cluster_id: &str) -> CommandOutcome {
    if image.cluster_id.is_some() {
        return CommandOutcome::Ok;
    }
    if cluster_id.is_empty() || cluster_id.len() > MAX_NAME_LEN {
        return CommandOutcome::error(ResponseError::InvalidRequest, "invalid cluster id");
    }
    image.cluster_id = Some(cluster_id.to_string());
    CommandOutcome::Ok
}

pub(super) fn register(
    image: &mut MetadataImage,
    index: u64,
    id: i32,
    incarnation_id: Uuid,
    listeners: &[Endpoint],
    rack: &Option<String>,
) -> CommandOutcome {
    if id < 0 {
        return CommandOutcome::error(ResponseError::InvalidRequest, "negative broker id");
    }
    let too_long = |s: &str| s.len() > MAX_NAME_LEN;
    if listeners.len() > MAX_LISTENERS
        || listeners
            .iter()
            .any(|l| too_long(&l.name) || too_long(&l.host))
        || rack.as_deref().is_some_and(too_long)
    {
        return CommandOutcome::error(ResponseError::InvalidRequest, "registration too large");
    }
    let Ok(epoch) = i64::try_from(index) else {
        return CommandOutcome::error(ResponseError::InvalidRequest, "log index out of range");
    };
    if let Some(existing) = image.brokers.get(&id) {
        if existing.incarnation_id == incarnation_id {
            // A retried registration of the same process: same epoch back, nothing changes.
            return CommandOutcome::BrokerRegistered {
                epoch: existing.epoch,
            };
        }
        // A restarted broker: its previous incarnation leads nothing any more.
        fence_partitions(image, id);
    }
    info!(broker = id, epoch, %incarnation_id, "broker registered");
    image.brokers.insert(
        id,
        BrokerRegistration {
            id,
            incarnation_id,
            epoch,
            listeners: listeners.to_vec(),
            rack: rack.clone(),
            fenced: true,
        },
    );
    CommandOutcome::BrokerRegistered { epoch }
}

/// The registration of `id` if `epoch` is its current epoch; else STALE_BROKER_EPOCH.
pub(super) fn check_epoch(
    image: &MetadataImage,
    id: i32,
    epoch: i64,
) -> Result<&BrokerRegistration, CommandOutcome> {
    match image.brokers.get(&id) {
        // Kafka's checkBrokerEpoch answers STALE_BROKER_EPOCH here too: the broker re-registers.
        None => Err(CommandOutcome::error(
            ResponseError::StaleBrokerEpoch,
            format!("broker {id} is not registered"),
        )),
        Some(b) if b.epoch != epoch => Err(CommandOutcome::error(
            ResponseError::StaleBrokerEpoch,
            format!("broker {id} epoch is {}, not {epoch}", b.epoch),
        )),
        Some(b) => Ok(b),
    }
}

pub(super) fn fence(image: &mut MetadataImage, id: i32, epoch: i64) -> CommandOutcome {
    if let Err(outcome) = check_epoch(image, id, epoch) {
        return outcome;
    }
    if let Some(broker) = image.brokers.get_mut(&id) {
        if !broker.fenced {
            info!(broker = id, epoch, "broker fenced");
        }
        broker.fenced = true;
    }
    fence_partitions(image, id);
    CommandOutcome::Ok
}

pub(super) fn unfence(image: &mut MetadataImage, id: i32, epoch: i64) -> CommandOutcome {
    if let Err(outcome) = check_epoch(image, id, epoch) {
        return outcome;
    }
    if let Some(broker) = image.brokers.get_mut(&id) {
        if broker.fenced {
            info!(broker = id, epoch, "broker unfenced");
        }
        broker.fenced = false;
    }
    let live = |b: i32| image.brokers.get(&b).is_some_and(|r| !r.fenced);
    let mut changes = Vec::new();
    for (name, topic) in &image.topics {
        for (index, partition) in topic.partitions.iter().enumerate() {
            if partition.leader == -1 && partition.isr.contains(&id) {
                if let Some(leader) = choose_leader(partition, live) {
                    changes.push((name.clone(), index, leader));
                }
            }
        }
    }
    for (name, index, leader) in changes {
        if let Some(partition) = image
            .topics
            .get_mut(&name)
            .and_then(|t| t.partitions.get_mut(index))
        {
            let isr = partition.isr.clone();
            change_partition(partition, isr, leader);
        }
    }
    CommandOutcome::Ok
}

pub(super) fn unregister(image: &mut MetadataImage, id: i32, epoch: i64) -> CommandOutcome {
    if let Err(outcome) = check_epoch(image, id, epoch) {
        return outcome;
    }
    fence_partitions(image, id);
    // Dynamic broker configs stay: they belong to the id, not to the registration (as in Kafka).
    image.brokers.remove(&id);
    info!(broker = id, epoch, "broker unregistered");
    CommandOutcome::Ok
}

/// Takes broker `id` out of every partition as fencing does: it leaves each ISR unless it is the
/// last member (then the ISR keeps it, so that it can lead again when it returns), and each
/// partition it led gets the first live ISR member in replica order, or no leader.
/// `id` itself is treated as not live whatever its registration says.
pub(super) fn fence_partitions(image: &mut MetadataImage, id: i32) {
    let brokers = &image.brokers;
    let live = |b: i32| b != id && brokers.get(&b).is_some_and(|r| !r.fenced);
    for topic in image.topics.values_mut() {
        for partition in &mut topic.partitions {
            if !partition.isr.contains(&id) && partition.leader != id {
                continue;
            }
            let isr: Vec<i32> = if partition.isr.len() > 1 {
                partition.isr.iter().copied().filter(|b| *b != id).collect()
            } else {
                partition.isr.clone()
            };
            let leader = if partition.leader == id || partition.leader == -1 {
                let mut candidate = partition.clone();
                candidate.isr = isr.clone();
                choose_leader(&candidate, live).unwrap_or(-1)
            } else {
                partition.leader
            };
            change_partition(partition, isr, leader);
        }
    }
}
