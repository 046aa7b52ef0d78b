//! ElectLeaders (KIP-183, KIP-460): preferred or unclean leader election for the named partitions,
//! or for every partition when none are named, proposed to the controller one partition at a
//! time. With no partitions named, those that needed no election are left out of the answer, as
//! Kafka does.

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::controller::commands::{ControllerCommand, Election};

pub async fn handle(broker: &Broker, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let election = match request.election_type {
        0 => Election::Preferred,
        1 => Election::Unclean,
        other => {
            return ElectLeadersResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_replica_election_results(
                    request
                        .topic_partitions
                        .unwrap_or_default()
                        .into_iter()
                        .map(|t| {
                            let message = format!("unknown election type {other}");
                            let results = t
                                .partitions
                                .iter()
                                .map(|&p| result(p, ResponseError::InvalidRequest.code(), &message))
                                .collect();
                            ReplicaElectionResult::default()
                                .with_topic(t.topic)
                                .with_partition_result(results)
                        })
                        .collect(),
                );
        }
    };
    let all = request.topic_partitions.is_none();
    let wanted: Vec<(String, Vec<i32>)> = match request.topic_partitions {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.topic.to_string(), t.partitions))
            .collect(),
        None => broker
            .controller
            .image()
            .topics
            .values()
            .map(|t| (t.name.clone(), (0..t.partitions.len() as i32).collect()))
            .collect(),
    };
    let mut results = Vec::with_capacity(wanted.len());
    for (topic, partitions) in wanted {
        let mut partition_results = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let command = ControllerCommand::ElectLeader {
                topic: topic.clone(),
                partition,
                election,
            };
            match broker.propose(&command).await {
                Ok(_) => partition_results.push(result(partition, 0, "")),
                Err((ResponseError::ElectionNotNeeded, _)) if all => {}
                Err((code, message)) => {
                    partition_results.push(result(partition, code.code(), &message))
                }
            }
        }
        if !partition_results.is_empty() {
            results.push(
                ReplicaElectionResult::default()
                    .with_topic(TopicName(StrBytes::from_string(topic)))
                    .with_partition_result(partition_results),
            );
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}

fn result(partition: i32, code: i16, message: &str) -> PartitionResult {
    PartitionResult::default()
        .with_partition_id(partition)
        .with_error_code(code)
        .with_error_message((code != 0).then(|| StrBytes::from_string(message.to_string())))
}
