//! AlterPartitionReassignments (v0-1, KIP-455 / KIP-860) and ListPartitionReassignments (v0):
//! move partitions to other brokers, cancel such moves, and list the moves in progress. Each
//! partition's change is a controller command (`apply/reassign.rs`); the new replicas then fetch
//! like any follower and the move completes once they are in sync.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::controller::commands::ControllerCommand;

pub async fn alter(
    broker: &Broker,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in topic.partitions {
            let target: Option<Vec<i32>> = wanted
                .replicas
                .map(|replicas| replicas.iter().map(|b| b.0).collect());
            let result = ReassignablePartitionResponse::default()
                .with_partition_index(wanted.partition_index);
            let refused = match &target {
                Some(target) if !request.allow_replication_factor_change => {
                    let image = broker.controller.image();
                    let current = image
                        .partition(&topic.name, wanted.partition_index)
                        .map(|p| p.replicas.len() - p.adding_replicas.len());
                    (current.is_some_and(|n| n != target.len())).then(|| {
                        (
                            ResponseError::InvalidReplicationFactor,
                            "the replication factor would change".to_string(),
                        )
                    })
                }
                _ => None,
            };
            let outcome = match refused {
                Some(refused) => Err(refused),
                None => {
                    let command = ControllerCommand::ReassignPartition {
                        topic: topic.name.to_string(),
                        partition: wanted.partition_index,
                        target,
                    };
                    broker.propose(&command).await.map(|_| ())
                }
            };
            partitions.push(match outcome {
                Ok(()) => result,
                Err((code, message)) => result
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            });
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(request.allow_replication_factor_change)
        .with_responses(responses)
}

pub fn list(
    broker: &Broker,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let image = broker.controller.image();
    let ids = |list: &[i32]| list.iter().map(|&b| BrokerId(b)).collect::<Vec<_>>();
    let wanted: Vec<(String, Option<Vec<i32>>)> = match request.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.name.to_string(), Some(t.partition_indexes)))
            .collect(),
        None => image
            .topics
            .keys()
            .map(|name| (name.clone(), None))
            .collect(),
    };
    let mut topics = Vec::new();
    for (name, indexes) in wanted {
        let Some(topic) = image.topic(&name) else {
            continue;
        };
        let partitions: Vec<OngoingPartitionReassignment> = topic
            .partitions
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                let listed = indexes
                    .as_ref()
                    .is_none_or(|list| list.contains(&(*i as i32)));
                listed && !(p.adding_replicas.is_empty() && p.removing_replicas.is_empty())
            })
            .map(|(i, p)| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(i as i32)
                    .with_replicas(ids(&p.replicas))
                    .with_adding_replicas(ids(&p.adding_replicas))
                    .with_removing_replicas(ids(&p.removing_replicas))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(partitions),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
