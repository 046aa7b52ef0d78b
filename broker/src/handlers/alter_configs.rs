//! AlterConfigs (API 33), the legacy form that kafkajs' `alterConfigs` and librdkafka's
//! `AlterConfigs` send: the request carries a topic's *whole* set of overrides, so every override
//! it does not name is removed (Kafka's semantics; IncrementalAlterConfigs changes single keys).
//! Proposed to the controller as one all-or-nothing change, validated like the incremental form.

use kafka_protocol::messages::alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::controller::commands::{ConfigOp, ConfigResource, ControllerCommand};

const TOPIC: i8 = 2;

pub async fn handle(broker: &Broker, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        responses.push(
            match replace(broker, &resource, request.validate_only).await {
                Ok(()) => response,
                Err((code, message)) => response
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            },
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

async fn replace(
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
    let mut ops = vec![ConfigOp::Clear];
    for config in &resource.configs {
        let name = config.name.to_string();
        let Some(value) = &config.value else {
            // As Kafka: the legacy form has no way to say "delete", so null is refused.
            return Err((
                ResponseError::InvalidRequest,
                format!("null value not supported for topic config {name}"),
            ));
        };
        ops.push(ConfigOp::Set {
            name,
            value: value.to_string(),
        });
    }
    let command = ControllerCommand::AlterConfigs {
        resource: ConfigResource::Topic(resource.resource_name.to_string()),
        ops,
        validate_only,
    };
    broker.propose(&command).await.map(|_| ())
}
