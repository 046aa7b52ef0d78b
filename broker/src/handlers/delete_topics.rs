//! DeleteTopics: by name (all versions) or by topic id (v6+), proposed to the controller; every
//! broker then deletes its local copy when it applies the change. The internal
//! `__consumer_offsets` and `__transaction_state` cannot be deleted.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::controller::commands::ControllerCommand;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let wanted: Vec<(Option<TopicName>, uuid::Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n), uuid::Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let image = broker.controller.image();
        let name = name.or_else(|| {
            image
                .topic_by_id(id)
                .map(|t| TopicName(StrBytes::from_string(t.name.clone())))
        });
        let result = DeletableTopicResult::default()
            .with_topic_id(id)
            .with_name(name.clone());
        let Some(name) = name else {
            responses.push(result.with_error_code(ResponseError::UnknownTopicId.code()));
            continue;
        };
        if crate::handlers::metadata::is_internal(name.as_str()) {
            // The group coordinator lives in it; deleting it would lose every group's offsets.
            responses.push(
                result
                    .with_error_code(ResponseError::InvalidTopicException.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "internal topics cannot be deleted",
                    ))),
            );
            continue;
        }
        let topic_id = image.topic(&name).map(|t| t.id).unwrap_or(id);
        let command = ControllerCommand::DeleteTopic {
            name: name.to_string(),
        };
        responses.push(match broker.propose(&command).await {
            Ok(_) => {
                if let Some(lake) = &broker.lake {
                    lake.topic_deleted(&name);
                }
                result.with_topic_id(topic_id)
            }
            Err((code, message)) => result
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
