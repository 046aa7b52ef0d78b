//! ListTransactions (KIP-664; v1's duration filter, KIP-994): the transactional ids this broker
//! coordinates, filtered by state, producer id and how long their transaction has been open.
//! State names Kafka does not know are echoed back as `unknown_state_filters`.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::{now_ms, Broker};
use crate::txn::state::TxnState;

pub fn handle(broker: &Broker, request: ListTransactionsRequest) -> ListTransactionsResponse {
    broker.txns.follow_broker(broker);
    let (known, unknown): (Vec<StrBytes>, Vec<StrBytes>) = request
        .state_filters
        .into_iter()
        .partition(|s| TxnState::from_name(s).is_some());
    let response = ListTransactionsResponse::default().with_unknown_state_filters(unknown.clone());
    if broker.txns.is_loading() {
        return response.with_error_code(ResponseError::CoordinatorLoadInProgress.code());
    }
    if known.is_empty() && !unknown.is_empty() {
        // Only unknown states asked for: nothing can match.
        return response;
    }
    let states: Vec<String> = known.iter().map(|s| s.to_string()).collect();
    let producer_ids: Vec<i64> = request.producer_id_filters.iter().map(|p| p.0).collect();
    let listed = broker
        .txns
        .list_running_for(&states, &producer_ids, request.duration_filter, now_ms())
        .into_iter()
        .map(|t| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(t.transactional_id)))
                .with_producer_id(ProducerId(t.producer_id))
                .with_transaction_state(StrBytes::from_string(t.state))
        })
        .collect();
    response.with_transaction_states(listed)
}
