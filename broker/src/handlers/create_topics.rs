//! CreateTopics: each topic is proposed to the controller, which checks the name, partition
//! count, replication factor (against the live brokers), assignments and configs, and places the
//! replicas; with `validate_only` it only checks. Each topic gets its own result and error. Any
//! broker answers: the proposal reaches the active controller wherever it is.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::cluster::topic_config::TopicConfig;
use crate::controller::commands::{CommandOutcome, ControllerCommand};

pub async fn handle(broker: &Broker, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.clone();
        let result = CreatableTopicResult::default().with_name(name.clone());
        topics.push(match create(broker, topic, request.validate_only).await {
            Ok((partitions, replication_factor, config, id)) => result
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor)
                .with_topic_id(id)
                .with_configs(Some(describe(broker, &config))),
            Err((code, message)) => {
                tracing::info!(topic = %name.0, %message, "create topic refused");
                result
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            }
        });
    }
    CreateTopicsResponse::default().with_topics(topics)
}

async fn create(
    broker: &Broker,
    topic: CreatableTopic,
    validate_only: bool,
) -> Result<(i32, i16, TopicConfig, uuid::Uuid), (ResponseError, String)> {
    let replication_factor = match topic.replication_factor {
        -1 => broker.config.default_replication_factor,
        factor => factor,
    };
    let partitions = match (topic.num_partitions, topic.assignments.len()) {
        (-1, 0) => broker.config.num_partitions,
        (-1, assigned) => assigned as i32,
        (n, _) => n,
    };
    let assignments = (!topic.assignments.is_empty()).then(|| {
        let mut assigned = topic.assignments.clone();
        assigned.sort_by_key(|a| a.partition_index);
        assigned
            .iter()
            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
            .collect::<Vec<Vec<i32>>>()
    });
    // Checked here too, for the precise message; the controller checks again.
    let config = TopicConfig::from_pairs(
        topic
            .configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
    )
    .map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
    let configs: BTreeMap<String, String> = config.overrides().clone();
    broker.check_room_for_new_logs()?;
    let command = ControllerCommand::CreateTopic {
        name: topic.name.to_string(),
        topic_id: uuid::Uuid::new_v4(),
        partitions,
        replication_factor,
        assignments,
        configs,
        validate_only,
    };
    let outcome = broker.propose(&command).await?;
    let (id, placed) = match outcome {
        CommandOutcome::TopicCreated {
            topic_id,
            partitions,
        } => (topic_id, partitions),
        other => {
            return Err((
                ResponseError::UnknownServerError,
                format!("unexpected controller answer {other:?}"),
            ))
        }
    };
    let replication_factor = placed
        .first()
        .map_or(replication_factor, |p| p.replicas.len() as i16);
    let id = if validate_only { uuid::Uuid::nil() } else { id };
    Ok((placed.len() as i32, replication_factor, config, id))
}

fn describe(broker: &Broker, config: &TopicConfig) -> Vec<CreatableTopicConfigs> {
    config
        .resolve(broker.topics.defaults())
        .into_iter()
        .map(|entry| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_static_str(entry.key.name))
                .with_value(Some(StrBytes::from_string(entry.value)))
                .with_config_source(entry.source as i8)
        })
        .collect()
}
