//! DescribeTransactions (KIP-664): the state of transactional ids this broker coordinates;
//! NOT_COORDINATOR for the others (the admin client asks their coordinator),
//! TRANSACTIONAL_ID_NOT_FOUND for ids it would coordinate but does not know.

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

pub fn handle(
    broker: &Broker,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    broker.txns.follow_broker(broker);
    let states = request
        .transactional_ids
        .into_iter()
        .map(|id| match broker.txns.describe(&id) {
            Ok(d) => TransactionState::default()
                .with_transactional_id(id)
                .with_transaction_state(StrBytes::from_string(d.state))
                .with_transaction_timeout_ms(d.timeout_ms)
                .with_transaction_start_time_ms(d.start_ms)
                .with_producer_id(ProducerId(d.producer_id))
                .with_producer_epoch(d.producer_epoch)
                .with_topics(
                    d.partitions
                        .into_iter()
                        .map(|(topic, partitions)| {
                            TopicData::default()
                                .with_topic(TopicName(StrBytes::from_string(topic)))
                                .with_partitions(partitions)
                        })
                        .collect(),
                ),
            Err(error) => TransactionState::default()
                .with_transactional_id(id)
                .with_error_code(error.code().code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1),
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
