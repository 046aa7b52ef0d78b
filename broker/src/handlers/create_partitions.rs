//! CreatePartitions: grow a topic's partition count (never shrink), proposed to the controller,
//! which places the new partitions' replicas (or takes the request's assignments).

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::controller::commands::ControllerCommand;

pub async fn handle(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        let command = ControllerCommand::CreatePartitions {
            name: topic.name.to_string(),
            count: topic.count,
            // Clients send an empty list as often as null for "place them for me".
            assignments: topic
                .assignments
                .as_ref()
                .filter(|a| !a.is_empty())
                .map(|assigned| {
                    assigned
                        .iter()
                        .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                        .collect()
                }),
            validate_only: request.validate_only,
        };
        let proposed = match broker.check_room_for_new_logs() {
            Ok(()) => broker.propose(&command).await.map(|_| ()),
            Err(refused) => Err(refused),
        };
        results.push(match proposed {
            Ok(_) => result,
            Err((code, message)) => result
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
