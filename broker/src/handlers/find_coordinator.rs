//! FindCoordinator: a consumer group's coordinator is the leader of its `__consumer_offsets`
//! partition (Kafka's hashing of the group id over the topic's partition count), as this broker's
//! image says; COORDINATOR_NOT_AVAILABLE while that partition has no leader. The offsets topic is
//! created through the controller on the first group lookup, as Kafka creates it lazily (if that
//! fails, or the topic is not in this broker's image yet, clients are told
//! COORDINATOR_NOT_AVAILABLE and retry). Transactions do not exist yet, so transaction keys are answered with COORDINATOR_NOT_AVAILABLE and a message that
//! says why (a client retrying it learns nothing new, but fails clearly instead of hanging on us).

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::group::{ensure_offsets_topic, OFFSETS_TOPIC};

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// v4 asks for many keys at once; older versions for one.
const BATCHED_FROM: i16 = 4;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let wants_group = request.key_type == KEY_TYPE_GROUP
        && (!request.key.is_empty() || request.coordinator_keys.iter().any(|k| !k.is_empty()));
    if wants_group {
        if let Err((code, message)) = ensure_offsets_topic(broker).await {
            tracing::warn!(?code, %message, "cannot create {OFFSETS_TOPIC}");
        }
    }
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
            if image.topic(OFFSETS_TOPIC).is_none() {
                return refuse(
                    ResponseError::CoordinatorNotAvailable,
                    "the offsets topic is being created",
                );
            }
            let coordinator = image.group_coordinator(&key).and_then(|id| {
                let registered = image.brokers.get(&id).filter(|b| !b.fenced)?;
                registered.listeners.first().map(|l| (id, l))
            });
            match coordinator {
                Some((id, listener)) => Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_string(listener.host.clone()))
                    .with_port(i32::from(listener.port)),
                None => refuse(
                    ResponseError::CoordinatorNotAvailable,
                    "the group's offsets partition has no leader",
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
