//! DescribeTopicPartitions (API 75, v0, KIP-966): Kafka 3.8+ admin clients describe topics with
//! it instead of Metadata, a page at a time. As Kafka's handler: topics sorted by name (all of
//! them when none is named), starting at the request's cursor; at most
//! `min(response_partition_limit, 2000)` partitions per answer, with `next_cursor` naming the
//! first partition left out. Inlet has no eligible leader replicas (KIP-966's ELR), so those lists
//! are empty.

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::metadata::{is_internal, offline_replicas};
use crate::broker::Broker;
use crate::cluster::topics::validate_topic_name;

/// Kafka's `max.request.partition.size.limit`.
const MAX_PARTITIONS: i32 = 2000;
/// `topic_authorized_operations` when not computed (there are no ACLs yet).
const OPERATIONS_OMITTED: i32 = i32::MIN;

pub fn handle(
    broker: &Broker,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let named: Vec<TopicName> = request.topics.iter().map(|t| t.name.clone()).collect();
    describe(broker, request).unwrap_or_else(|error| {
        // As Kafka's error response: every named topic carries the error.
        let topics = named
            .into_iter()
            .map(|name| {
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(error.code())
                    .with_name(Some(name))
                    .with_topic_authorized_operations(OPERATIONS_OMITTED)
            })
            .collect();
        DescribeTopicPartitionsResponse::default().with_topics(topics)
    })
}

fn describe(
    broker: &Broker,
    request: DescribeTopicPartitionsRequest,
) -> Result<DescribeTopicPartitionsResponse, ResponseError> {
    let image = broker.controller.image();
    let all = request.topics.is_empty();
    let (cursor_topic, cursor_partition) = match &request.cursor {
        Some(c) => (c.topic_name.to_string(), c.partition_index),
        None => (String::new(), 0),
    };
    if cursor_partition < 0 {
        return Err(ResponseError::InvalidRequest);
    }
    let mut names: Vec<String> = if all {
        image.topics.keys().cloned().collect()
    } else {
        request.topics.iter().map(|t| t.name.to_string()).collect()
    };
    names.retain(|n| *n >= cursor_topic);
    names.sort();
    names.dedup();
    if !all && request.cursor.is_some() && !names.contains(&cursor_topic) {
        // Kafka: the cursor's topic must be among the named ones.
        return Err(ResponseError::InvalidRequest);
    }
    let mut remaining = request.response_partition_limit.clamp(1, MAX_PARTITIONS);
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        if remaining <= 0 {
            break;
        }
        let Some(topic) = image.topic(&name) else {
            let code = if validate_topic_name(&name).is_ok() {
                ResponseError::UnknownTopicOrPartition
            } else {
                ResponseError::InvalidTopicException
            };
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(code.code())
                    .with_name(Some(TopicName(StrBytes::from_string(name))))
                    .with_topic_authorized_operations(OPERATIONS_OMITTED),
            );
            continue;
        };
        let start = if name == cursor_topic {
            cursor_partition
        } else {
            0
        };
        let count = topic.partitions.len() as i32;
        let end = count.min(start.saturating_add(remaining));
        let ids = |brokers: &[i32]| brokers.iter().map(|&b| BrokerId(b)).collect::<Vec<_>>();
        let partitions: Vec<_> = (start..end)
            .filter_map(|index| {
                let p = topic.partitions.get(usize::try_from(index).ok()?)?;
                let offline = offline_replicas(&image, p);
                Some(
                    DescribeTopicPartitionsResponsePartition::default()
                        .with_partition_index(index)
                        .with_leader_id(BrokerId(p.leader))
                        .with_leader_epoch(p.leader_epoch)
                        .with_replica_nodes(ids(&p.replicas))
                        .with_isr_nodes(ids(&p.isr))
                        .with_eligible_leader_replicas(Some(Vec::new()))
                        .with_last_known_elr(Some(Vec::new()))
                        .with_offline_replicas(ids(&offline)),
                )
            })
            .collect();
        remaining -= partitions.len() as i32;
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                .with_topic_id(topic.id)
                .with_is_internal(is_internal(&name))
                .with_partitions(partitions)
                .with_topic_authorized_operations(OPERATIONS_OMITTED),
        );
        if end < count {
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(TopicName(StrBytes::from_string(name)))
                    .with_partition_index(end),
            );
            break;
        }
    }
    Ok(DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor))
}
