//! AddOffsetsToTxn: adds the group's `__consumer_offsets` partition to the producer's
//! transaction, so that its TxnOffsetCommit offsets get the transaction's marker (Kafka's
//! `handleAddOffsetsToTransaction`).

use std::collections::BTreeSet;

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::group::{ensure_offsets_topic, OFFSETS_TOPIC};
use crate::metadata::image::MetadataImage;

/// First version whose clients know PRODUCER_FENCED (KIP-588).
const PRODUCER_FENCED_FROM: i16 = 2;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let respond =
        |code: ResponseError| AddOffsetsToTxnResponse::default().with_error_code(code.code());
    if request.group_id.is_empty() {
        return respond(ResponseError::InvalidGroupId);
    }
    if let Err((code, message)) = ensure_offsets_topic(broker).await {
        tracing::warn!(?code, %message, "cannot create {OFFSETS_TOPIC}");
        return respond(ResponseError::CoordinatorNotAvailable);
    }
    let image = broker.controller.image();
    let Some(count) = image
        .topic(OFFSETS_TOPIC)
        .and_then(|t| i32::try_from(t.partitions.len()).ok())
    else {
        return respond(ResponseError::CoordinatorNotAvailable);
    };
    let partition = MetadataImage::offsets_partition_for(&request.group_id, count);
    broker.txns.follow_broker(broker);
    let outcome = broker
        .txns
        .add_partitions(
            &request.transactional_id,
            request.producer_id.0,
            request.producer_epoch,
            BTreeSet::from([(OFFSETS_TOPIC.to_string(), partition)]),
        )
        .await;
    match outcome {
        Ok(()) => AddOffsetsToTxnResponse::default(),
        Err(error) => {
            tracing::debug!(transactional_id = %request.transactional_id.0, %error, "AddOffsetsToTxn refused");
            respond(error.code_for(version >= PRODUCER_FENCED_FROM))
        }
    }
}
