//! CreatePartitions: grow a topic's partition count (never shrink).

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::errors::topic_error;
use crate::broker::{blocking, Broker};

pub fn handle(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let results = request
        .topics
        .into_iter()
        .map(|topic| {
            let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            let grown = blocking(|| {
                broker
                    .topics
                    .add_partitions(&topic.name, topic.count, request.validate_only)
            });
            match grown {
                Ok(()) => result,
                Err(error) => result
                    .with_error_code(topic_error(&error).code())
                    .with_error_message(Some(StrBytes::from_string(error.to_string()))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
