//! Topic commands: CreateTopic, DeleteTopic, CreatePartitions, with Kafka's validation and error
//! codes (ReplicationControlManager's): name, counts, replication factor against live brokers,
//! explicit assignments, configs, duplicates.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::new_partition;
use crate::cluster::topic_config::TopicConfig;
use crate::cluster::topics::{validate_topic_name, MAX_PARTITIONS};
use crate::controller::commands::CommandOutcome;
use crate::controller::placement::place;
use crate::metadata::image::{MetadataImage, PartitionImage, TopicImage};

pub(super) struct NewTopic<'a> {
    pub name: &'a str,
    pub topic_id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    pub assignments: Option<&'a [Vec<i32>]>,
    pub configs: &'a BTreeMap<String, String>,
}

fn seed(topic_id: Uuid) -> u64 {
    let (high, low) = topic_id.as_u64_pair();
    high ^ low
}

fn live_with_racks(image: &MetadataImage) -> Vec<(i32, Option<String>)> {
    image
        .live_brokers()
        .map(|b| (b.id, b.rack.clone()))
        .collect()
}

/// Checks explicit replica lists: each non-empty, of `expected_len` if given, of distinct
/// registered brokers.
fn check_assignments(
    image: &MetadataImage,
    assignments: &[Vec<i32>],
    expected_len: Option<usize>,
) -> Result<(), CommandOutcome> {
    let invalid = |msg: String| CommandOutcome::error(ResponseError::InvalidReplicaAssignment, msg);
    let expected_len = expected_len.or_else(|| assignments.first().map(Vec::len));
    for (i, replicas) in assignments.iter().enumerate() {
        if replicas.is_empty() || Some(replicas.len()) != expected_len {
            return Err(invalid(format!(
                "partition {i}: {} replicas, expected {}",
                replicas.len(),
                expected_len.unwrap_or(0)
            )));
        }
        if replicas.iter().collect::<BTreeSet<_>>().len() != replicas.len() {
            return Err(invalid(format!("partition {i}: duplicate replicas")));
        }
        if let Some(b) = replicas.iter().find(|b| !image.brokers.contains_key(b)) {
            return Err(invalid(format!(
                "partition {i}: broker {b} is not registered"
            )));
        }
    }
    Ok(())
}

/// Builds the new partitions from replica lists; error if one has no live replica.
fn build_partitions(
    image: &MetadataImage,
    first_index: usize,
    replica_lists: Vec<Vec<i32>>,
) -> Result<Vec<PartitionImage>, CommandOutcome> {
    replica_lists
        .into_iter()
        .enumerate()
        .map(|(i, replicas)| {
            new_partition(replicas, image).ok_or_else(|| {
                CommandOutcome::error(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "partition {}: every assigned broker is fenced",
                        first_index + i
                    ),
                )
            })
        })
        .collect()
}

fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), CommandOutcome> {
    let mut config = TopicConfig::default();
    for (key, value) in configs {
        config
            .set(key, value)
            .map_err(|e| CommandOutcome::error(ResponseError::InvalidConfig, e.to_string()))?;
    }
    Ok(())
}

pub(super) fn create_topic(
    image: &mut MetadataImage,
    topic: NewTopic<'_>,
    validate_only: bool,
) -> CommandOutcome {
    match plan_topic(image, &topic) {
        Err(outcome) => outcome,
        Ok(partitions) => {
            if !validate_only {
                image.topics.insert(
                    topic.name.to_string(),
                    TopicImage {
                        id: topic.topic_id,
                        name: topic.name.to_string(),
                        configs: topic.configs.clone(),
                        partitions: partitions.clone(),
                    },
                );
            }
            CommandOutcome::TopicCreated {
                topic_id: topic.topic_id,
                partitions,
            }
        }
    }
}

fn plan_topic(
    image: &MetadataImage,
    topic: &NewTopic<'_>,
) -> Result<Vec<PartitionImage>, CommandOutcome> {
    validate_topic_name(topic.name)
        .map_err(|e| CommandOutcome::error(ResponseError::InvalidTopicException, e.to_string()))?;
    if image.topics.contains_key(topic.name) {
        return Err(CommandOutcome::error(
            ResponseError::TopicAlreadyExists,
            format!("topic {} already exists", topic.name),
        ));
    }
    // Kafka refuses names that differ from an existing one only by '.' against '_': they
    // collide in metric names.
    let normalized = |n: &str| n.replace('.', "_");
    let wanted = normalized(topic.name);
    if let Some(other) = image.topics.keys().find(|n| normalized(n) == wanted) {
        return Err(CommandOutcome::error(
            ResponseError::InvalidTopicException,
            format!("topic {} collides with existing topic {other}", topic.name),
        ));
    }
    if topic.topic_id.is_nil() || image.topic_by_id(topic.topic_id).is_some() {
        // Kafka reserves the zero id; a collision of random v4 ids means a proposer bug.
        return Err(CommandOutcome::error(
            ResponseError::InvalidRequest,
            format!("topic id {} is reserved or in use", topic.topic_id),
        ));
    }
    validate_configs(topic.configs)?;
    let replica_lists = match topic.assignments {
        Some(assignments) => {
            let count = assignments.len();
            if count == 0 || count > MAX_PARTITIONS as usize {
                return Err(CommandOutcome::error(
                    ResponseError::InvalidReplicaAssignment,
                    format!("{count} partitions assigned, need 1 to {MAX_PARTITIONS}"),
                ));
            }
            // Kafka wants -1 for both with a manual assignment; matching values are accepted too.
            let rf_matches = topic.replication_factor == -1
                || assignments
                    .first()
                    .is_some_and(|r| r.len() == topic.replication_factor as usize);
            if (topic.partitions != -1 && topic.partitions as usize != count) || !rf_matches {
                return Err(CommandOutcome::error(
                    ResponseError::InvalidRequest,
                    "a manual assignment needs partitions and replication factor -1",
                ));
            }
            check_assignments(image, assignments, None)?;
            assignments.to_vec()
        }
        None => {
            if topic.partitions < 1 || topic.partitions > MAX_PARTITIONS {
                return Err(CommandOutcome::error(
                    ResponseError::InvalidPartitions,
                    format!(
                        "{} partitions: need 1 to {MAX_PARTITIONS}",
                        topic.partitions
                    ),
                ));
            }
            let brokers = live_with_racks(image);
            place(
                &brokers,
                topic.partitions,
                0,
                topic.replication_factor,
                seed(topic.topic_id),
            )
            .map_err(|e| CommandOutcome::error(e.kafka_error(), e.to_string()))?
        }
    };
    build_partitions(image, 0, replica_lists)
}

pub(super) fn delete_topic(image: &mut MetadataImage, name: &str) -> CommandOutcome {
    match image.topics.remove(name) {
        Some(_) => CommandOutcome::Ok,
        None => CommandOutcome::error(
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        ),
    }
}

pub(super) fn create_partitions(
    image: &mut MetadataImage,
    name: &str,
    count: i32,
    assignments: Option<&[Vec<i32>]>,
    validate_only: bool,
) -> CommandOutcome {
    let Some(topic) = image.topics.get(name) else {
        return CommandOutcome::error(
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        );
    };
    let current = topic.partitions.len();
    let Ok(wanted) = usize::try_from(count) else {
        return CommandOutcome::error(ResponseError::InvalidPartitions, "negative count");
    };
    if wanted <= current || count > MAX_PARTITIONS {
        return CommandOutcome::error(
            ResponseError::InvalidPartitions,
            format!(
                "topic {name} has {current} partitions; asked for {count} (max {MAX_PARTITIONS})"
            ),
        );
    }
    let rf = topic.partitions.first().map_or(1, |p| p.replicas.len());
    let replica_lists = match assignments {
        Some(assignments) => {
            if assignments.len() != wanted - current {
                return CommandOutcome::error(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "{} assignments for {} new partitions",
                        assignments.len(),
                        wanted - current
                    ),
                );
            }
            if let Err(outcome) = check_assignments(image, assignments, Some(rf)) {
                return outcome;
            }
            assignments.to_vec()
        }
        None => {
            let brokers = live_with_racks(image);
            let rf = i16::try_from(rf).unwrap_or(i16::MAX);
            // Both casts are in range: wanted and current are at most MAX_PARTITIONS.
            match place(
                &brokers,
                (wanted - current) as i32,
                current as i32,
                rf,
                seed(topic.id),
            ) {
                Ok(lists) => lists,
                Err(e) => return CommandOutcome::error(e.kafka_error(), e.to_string()),
            }
        }
    };
    let partitions = match build_partitions(image, current, replica_lists) {
        Ok(partitions) => partitions,
        Err(outcome) => return outcome,
    };
    if !validate_only {
        if let Some(topic) = image.topics.get_mut(name) {
            topic.partitions.extend(partitions.iter().cloned());
        }
    }
    CommandOutcome::PartitionsCreated { partitions }
}
