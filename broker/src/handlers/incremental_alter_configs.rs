//! IncrementalAlterConfigs for topics: SET and DELETE of config overrides (the operations
//! `inlet topic alter-config` and Kafka's `kafka-configs.sh --alter` use). Every change of one
//! resource is validated before any is applied, so a request with one bad value changes nothing.
//! APPEND and SUBTRACT apply to list-valued configs, which no supported topic config is.

use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::topic_error;
use crate::broker::Broker;
use crate::cluster::topic_config::{ConfigSource, TopicConfig};
use crate::cluster::topics::TopicError;

const TOPIC: i8 = 2;
const SET: i8 = 0;
const DELETE: i8 = 1;

pub fn handle(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let responses = request
        .resources
        .into_iter()
        .map(|resource| {
            let response = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match alter(broker, &resource, request.validate_only) {
                Ok(()) => response,
                Err((code, message)) => response
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

fn alter(
    broker: &Broker,
    resource: &AlterConfigsResource,
    validate_only: bool,
) -> Result<(), (ResponseError, String)> {
    if resource.resource_type != TOPIC {
        return Err((
            ResponseError::InvalidRequest,
            "only topic configs can be altered".to_string(),
        ));
    }
    let name = resource.resource_name.as_str();
    let topic = broker.topics.get(name).ok_or_else(|| {
        let error = TopicError::Unknown(name.to_string());
        (topic_error(&error), error.to_string())
    })?;
    // Start from the current overrides (DescribeConfigs' "topic" source) and apply each change.
    let current = topic.config().resolve(broker.topics.defaults());
    let mut overrides: Vec<(String, String)> = current
        .into_iter()
        .filter(|c| c.source == ConfigSource::Topic)
        .map(|c| (c.key.name.to_string(), c.value))
        .collect();
    for change in &resource.configs {
        let key = change.name.to_string();
        overrides.retain(|(k, _)| *k != key);
        match (change.config_operation, &change.value) {
            (SET, Some(value)) => overrides.push((key, value.to_string())),
            (SET, None) => {
                return Err((
                    ResponseError::InvalidConfig,
                    format!("config {key} needs a value"),
                ))
            }
            (DELETE, _) => {}
            (op, _) => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("config operation {op} is not supported for {key}"),
                ))
            }
        }
    }
    let config = TopicConfig::from_pairs(
        overrides
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_str()))),
    )
    .map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
    // DELETE of a key we do not know is as invalid as SET of one.
    for change in &resource.configs {
        TopicConfig::from_pairs([(change.name.as_str(), None)])
            .map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
    }
    if validate_only {
        return Ok(());
    }
    broker
        .topics
        .set_config(name, config)
        .map_err(|e| (topic_error(&e), e.to_string()))
}
