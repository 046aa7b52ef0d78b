//! InitProducerId for idempotent producers: a fresh producer id (from this broker's block, which
//! the controller handed out) with epoch 0, or, when a producer
//! asks to bump its own epoch after an error (KIP-360), the same id with the next epoch.
//! Transactional producers are refused until transactions exist.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    if request.transactional_id.is_some() {
        return response.with_error_code(ResponseError::InvalidRequest.code());
    }
    if request.producer_id.0 >= 0
        && request.producer_epoch >= 0
        && request.producer_epoch < i16::MAX - 1
    {
        return response
            .with_producer_id(request.producer_id)
            .with_producer_epoch(request.producer_epoch + 1);
    }
    match broker.producer_ids.next_id(&broker.controller).await {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(code) => {
            tracing::warn!(?code, "cannot allocate a producer id");
            response.with_error_code(code.code())
        }
    }
}
