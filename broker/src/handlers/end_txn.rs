//! EndTxn: commits or aborts the producer's transaction. Answered once PrepareCommit /
//! PrepareAbort is replicated in `__transaction_state` (transaction version 0/1: the epoch is
//! not bumped); the markers and the completion follow in the background, and the producer's
//! next transactional request gets CONCURRENT_TRANSACTIONS until they are done.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use crate::broker::Broker;

/// First version whose clients know PRODUCER_FENCED (KIP-588).
const PRODUCER_FENCED_FROM: i16 = 2;

pub async fn handle(broker: &Broker, version: i16, request: EndTxnRequest) -> EndTxnResponse {
    broker.txns.follow_broker(broker);
    let outcome = broker
        .txns
        .end_txn(
            &request.transactional_id,
            request.producer_id.0,
            request.producer_epoch,
            request.committed,
        )
        .await;
    let response = EndTxnResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    match outcome {
        Ok(()) => response,
        Err(error) => {
            tracing::debug!(transactional_id = %request.transactional_id.0, %error, "EndTxn refused");
            response.with_error_code(error.code_for(version >= PRODUCER_FENCED_FROM).code())
        }
    }
}
