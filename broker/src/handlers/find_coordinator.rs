//! FindCoordinator: a consumer group's coordinator is the leader of its `__consumer_offsets`
//! partition (Kafka's hashing of the group id over the topic's partition count), as this broker's
//! image says; COORDINATOR_NOT_AVAILABLE while that partition has no leader. The offsets topic is
//! created through the controller on the first group lookup, as Kafka creates it lazily (if that
//! fails, or the topic is not in this broker's image yet, clients are told
//! COORDINATOR_NOT_AVAILABLE and retry). A transactional id's coordinator (key type 1) is the
//! leader of its `__transaction_state` partition, the same way, and that topic is created on the
//! first transactional lookup.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::group::{ensure_offsets_topic, OFFSETS_TOPIC};
use crate::metadata::image::MetadataImage;
use crate::txn::store::ensure_txn_topic;
use crate::txn::TRANSACTION_STATE_TOPIC;

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
    let wants_txn = request.key_type == KEY_TYPE_TRANSACTION
        && (!request.key.is_empty() || request.coordinator_keys.iter().any(|k| !k.is_empty()));
    if wants_txn {
        if let Err((code, message)) = ensure_txn_topic(broker).await {
            tracing::warn!(?code, %message, "cannot create {TRANSACTION_STATE_TOPIC}");
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
            match leader_listener(&image, image.group_coordinator(&key)) {
                Some(found) => found.with_key(key),
                None => refuse(
                    ResponseError::CoordinatorNotAvailable,
                    "the group's offsets partition has no leader",
                ),
            }
        }
        KEY_TYPE_TRANSACTION if key.is_empty() => refuse(
            ResponseError::InvalidRequest,
            "the transactional id is empty",
        ),
        KEY_TYPE_TRANSACTION => {
            let image = broker.controller.image();
            if image.topic(TRANSACTION_STATE_TOPIC).is_none() {
                return refuse(
                    ResponseError::CoordinatorNotAvailable,
                    "the transaction state topic is being created",
                );
            }
            match leader_listener(&image, image.transaction_coordinator(&key)) {
                Some(found) => found.with_key(key),
                None => refuse(
                    ResponseError::CoordinatorNotAvailable,
                    "the transactional id's state partition has no leader",
                ),
            }
        }
        _ => refuse(
            ResponseError::InvalidRequest,
            "unknown coordinator key type",
        ),
    }
}

/// The coordinator `id` (if any) with its listener, when it is registered and not fenced.
fn leader_listener(image: &MetadataImage, id: Option<i32>) -> Option<Coordinator> {
    let id = id?;
    let registered = image.brokers.get(&id).filter(|b| !b.fenced)?;
    let listener = registered.listeners.first()?;
    Some(
        Coordinator::default()
            .with_node_id(BrokerId(id))
            .with_host(StrBytes::from_string(listener.host.clone()))
            .with_port(i32::from(listener.port)),
    )
}
