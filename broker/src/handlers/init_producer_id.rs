//! InitProducerId. Idempotent producers (no transactional id) get a fresh producer id (from this
//! broker's block, which the controller handed out) with epoch 0, or, when a producer asks to
//! bump its own epoch after an error (KIP-360), the same id with the next epoch. Transactional
//! producers are served by the transaction coordinator: a new id, or the id's epoch bumped
//! (fencing older producers), after aborting an open transaction of the previous producer.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::broker::Broker;

/// First version whose clients know PRODUCER_FENCED (KIP-588); older ones are told
/// INVALID_PRODUCER_EPOCH.
const PRODUCER_FENCED_FROM: i16 = 4;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    if let Some(transactional_id) = &request.transactional_id {
        return transactional(broker, version, transactional_id, &request).await;
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

async fn transactional(
    broker: &Broker,
    version: i16,
    transactional_id: &str,
    request: &InitProducerIdRequest,
) -> InitProducerIdResponse {
    let failed = |code: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if transactional_id.is_empty() {
        return failed(ResponseError::InvalidRequest);
    }
    broker.txns.follow_broker(broker);
    let expected = (request.producer_id.0 >= 0 && request.producer_epoch >= 0)
        .then_some((request.producer_id.0, request.producer_epoch));
    let fresh = match broker.txns.needs_producer_id(transactional_id, expected) {
        Ok(false) => None,
        Ok(true) => match broker.producer_ids.next_id(&broker.controller).await {
            Ok(id) => Some(id),
            Err(code) => {
                tracing::warn!(?code, "cannot allocate a producer id");
                return failed(code);
            }
        },
        Err(error) => return failed(error.code_for(version >= PRODUCER_FENCED_FROM)),
    };
    let outcome = broker
        .txns
        .init_producer_id(
            transactional_id,
            request.transaction_timeout_ms,
            expected,
            fresh,
        )
        .await;
    match outcome {
        Ok((id, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
        Err(error) => {
            tracing::debug!(transactional_id, %error, "InitProducerId refused");
            failed(error.code_for(version >= PRODUCER_FENCED_FROM))
        }
    }
}
