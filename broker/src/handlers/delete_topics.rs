//! DeleteTopics: by name (all versions) or by topic id (v6+). The internal `__consumer_offsets`
//! cannot be deleted.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::topic_error;
use crate::broker::{blocking, Broker};

pub fn handle(broker: &Broker, version: i16, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
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
    let responses = wanted
        .into_iter()
        .map(|(name, id)| {
            let name = name.or_else(|| {
                broker
                    .topics
                    .get_by_id(id)
                    .map(|t| TopicName(StrBytes::from_string(t.name.clone())))
            });
            let result = DeletableTopicResult::default()
                .with_topic_id(id)
                .with_name(name.clone());
            let Some(name) = name else {
                return result.with_error_code(ResponseError::UnknownTopicId.code());
            };
            if name.as_str() == crate::group::OFFSETS_TOPIC {
                // The group coordinator lives in it; deleting it would lose every group's offsets.
                return result
                    .with_error_code(ResponseError::InvalidTopicException.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "internal topics cannot be deleted",
                    )));
            }
            match blocking(|| broker.topics.delete(&name)) {
                Ok(topic) => {
                    if let Some(lake) = &broker.lake {
                        lake.topic_deleted(&name);
                    }
                    result.with_topic_id(topic.id)
                }
                Err(error) => result
                    .with_error_code(topic_error(&error).code())
                    .with_error_message(Some(StrBytes::from_string(error.to_string()))),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
