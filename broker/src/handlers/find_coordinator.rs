//! FindCoordinator: every consumer group is coordinated by the live broker with the lowest id,
//! which every broker's image agrees on. (Each broker keeps its groups in a local, one-partition
//! `__consumer_offsets`; spreading groups over the partitions' leaders with Kafka's hashing comes
//! with a cluster-wide offsets topic.) Transactions do not
//! exist yet, so transaction keys are answered with COORDINATOR_NOT_AVAILABLE and a message that
//! says why (a client retrying it learns nothing new, but fails clearly instead of hanging on us).

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// v4 asks for many keys at once; older versions for one.
const BATCHED_FROM: i16 = 4;

pub fn handle(
    broker: &Broker,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    if version >= BATCHED_FROM {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| coordinator(broker, request.key_type, key))
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let found = coordinator(broker, request.key_type, request.key);
    FindCoordinatorResponse::default()
        .with_error_code(found.error_code)
        .with_error_message(found.error_message)
        .with_node_id(found.node_id)
        .with_host(found.host)
        .with_port(found.port)
}

fn coordinator(broker: &Broker, key_type: i8, key: StrBytes) -> Coordinator {
    let refuse = |error: ResponseError, message: &str| {
        Coordinator::default()
            .with_key(key.clone())
            .with_node_id(BrokerId(-1))
            .with_port(-1)
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message.to_string())))
    };
    match key_type {
        KEY_TYPE_GROUP if key.is_empty() => {
            refuse(ResponseError::InvalidRequest, "the group id is empty")
        }
        KEY_TYPE_GROUP => {
            let image = broker.controller.image();
            let coordinator = image
                .live_brokers()
                .next()
                .and_then(|b| b.listeners.first().map(|l| (b.id, l)));
            match coordinator {
                Some((id, listener)) => Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_string(listener.host.clone()))
                    .with_port(i32::from(listener.port)),
                None => refuse(
                    ResponseError::CoordinatorNotAvailable,
                    "no live broker is registered yet",
                ),
            }
        }
        KEY_TYPE_TRANSACTION => refuse(
            ResponseError::CoordinatorNotAvailable,
            "this broker does not support transactions",
        ),
        _ => refuse(
            ResponseError::InvalidRequest,
            "unknown coordinator key type",
        ),
    }
}
