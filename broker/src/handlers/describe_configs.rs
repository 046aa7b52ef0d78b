//! DescribeConfigs for topics (every supported topic config with its value and source) and for
//! this broker (the topic defaults it applies).

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::cluster::topic_config::{ResolvedConfig, TopicConfig};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// DescribeConfigs' source code for a broker's static configuration.
const STATIC_BROKER_CONFIG: i8 = 4;

pub fn handle(broker: &Broker, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let image = broker.controller.image();
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let entries = match resource.resource_type {
                TOPIC => match image.topic(&resource.resource_name).map(|t| {
                    TopicConfig::from_pairs(
                        t.configs
                            .iter()
                            .map(|(k, v)| (k.as_str(), Some(v.as_str()))),
                    )
                }) {
                    Some(Ok(config)) => config.resolve(broker.topics.defaults()),
                    Some(Err(e)) => {
                        return error(result, ResponseError::InvalidConfig, &e.to_string())
                    }
                    None => {
                        return error(
                            result,
                            ResponseError::UnknownTopicOrPartition,
                            "no such topic",
                        )
                    }
                },
                BROKER
                    if resource.resource_name.as_str() == broker.node_id().to_string()
                        || resource.resource_name.is_empty() =>
                {
                    TopicConfig::default().resolve(broker.topics.defaults())
                }
                BROKER => {
                    return error(
                        result,
                        ResponseError::InvalidRequest,
                        "not this broker's id",
                    )
                }
                _ => {
                    return error(
                        result,
                        ResponseError::InvalidRequest,
                        "only topic and broker configs can be described",
                    )
                }
            };
            let wanted = resource.configuration_keys.as_ref();
            let configs = entries
                .into_iter()
                .filter(|e| wanted.is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.key.name)))
                .map(|e| {
                    entry(
                        e,
                        resource.resource_type == BROKER,
                        request.include_documentation,
                    )
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn entry(
    config: ResolvedConfig,
    broker_level: bool,
    documentation: bool,
) -> DescribeConfigsResourceResult {
    let source = match (broker_level, config.source) {
        (true, _) => STATIC_BROKER_CONFIG,
        (false, source) => source as i8,
    };
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_static_str(config.key.name))
        .with_value(Some(StrBytes::from_string(config.value)))
        .with_read_only(broker_level)
        .with_config_source(source)
        .with_config_type(config.key.config_type as i8)
        .with_documentation(documentation.then(|| StrBytes::from_static_str(config.key.doc)))
}

fn error(
    result: DescribeConfigsResult,
    code: ResponseError,
    message: &str,
) -> DescribeConfigsResult {
    result
        .with_error_code(code.code())
        .with_error_message(Some(StrBytes::from_string(message.to_string())))
}
