//! CreateTopics: validate name, partition count, replication factor and configs, then create (or,
//! with `validate_only`, only check). Each topic gets its own result and error.

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::errors::topic_error;
use crate::broker::{blocking, Broker};
use crate::cluster::topic_config::TopicConfig;
use crate::cluster::topics::TopicError;

/// Brokers in this cluster; replication will make this the live broker count.
const BROKERS: i16 = 1;

pub fn handle(broker: &Broker, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.clone();
            let result = CreatableTopicResult::default().with_name(name.clone());
            match create(broker, topic, request.validate_only) {
                Ok((partitions, config, id)) => result
                    .with_num_partitions(partitions)
                    .with_replication_factor(BROKERS)
                    .with_topic_id(id.unwrap_or_default())
                    .with_configs(Some(describe(broker, &config))),
                Err(error) => {
                    tracing::info!(topic = %name.0, %error, "create topic refused");
                    result
                        .with_error_code(topic_error(&error).code())
                        .with_error_message(Some(StrBytes::from_string(error.to_string())))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                }
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

fn create(
    broker: &Broker,
    topic: CreatableTopic,
    validate_only: bool,
) -> Result<(i32, TopicConfig, Option<uuid::Uuid>), TopicError> {
    let replication_factor = match topic.replication_factor {
        -1 => broker.config.default_replication_factor,
        factor => factor,
    };
    if replication_factor < 1 || replication_factor > BROKERS {
        return Err(TopicError::InvalidReplicationFactor {
            factor: replication_factor,
            brokers: BROKERS,
        });
    }
    let partitions = match (topic.num_partitions, topic.assignments.len()) {
        (-1, 0) => broker.config.num_partitions,
        (-1, assigned) => assigned as i32,
        (n, _) => n,
    };
    let config = TopicConfig::from_pairs(
        topic
            .configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
    )?;
    let created = blocking(|| {
        broker
            .topics
            .create(&topic.name, partitions, config.clone(), validate_only)
    })?;
    Ok((partitions, config, created.map(|t| t.id)))
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
