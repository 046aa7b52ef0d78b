//! IncrementalAlterConfigs for topics: SET and DELETE of config overrides (the operations
//! `inlet topic alter-config` and Kafka's `kafka-configs.sh --alter` use), proposed to the
//! controller, which validates every change of one resource before applying any, so a request
//! with one bad value changes nothing. APPEND and SUBTRACT apply to list-valued configs, which no
//! supported topic config is.

use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::controller::commands::{ConfigOp, ConfigResource, ControllerCommand};

const TOPIC: i8 = 2;
const SET: i8 = 0;
const DELETE: i8 = 1;

pub async fn handle(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        responses.push(
            match alter(broker, &resource, request.validate_only).await {
                Ok(()) => response,
                Err((code, message)) => response
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            },
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

async fn alter(
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
    let ops = resource
        .configs
        .iter()
        .map(|change| {
            let name = change.name.to_string();
            match (change.config_operation, &change.value) {
                (SET, Some(value)) => Ok(ConfigOp::Set {
                    name,
                    value: value.to_string(),
                }),
                (SET, None) => Err((
                    ResponseError::InvalidConfig,
                    format!("config {name} needs a value"),
                )),
                (DELETE, _) => Ok(ConfigOp::Delete { name }),
                (op, _) => Err((
                    ResponseError::InvalidRequest,
                    format!("config operation {op} is not supported for {name}"),
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let command = ControllerCommand::AlterConfigs {
        resource: ConfigResource::Topic(resource.resource_name.to_string()),
        ops,
        validate_only,
    };
    broker.propose(&command).await.map(|_| ())
}
