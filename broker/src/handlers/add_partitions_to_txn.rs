//! AddPartitionsToTxn (v0-3, the client's form): adds partitions to the producer's transaction,
//! starting it if none is open. Partitions of unknown topics fail with
//! UNKNOWN_TOPIC_OR_PARTITION and the others with OPERATION_NOT_ATTEMPTED, as Kafka answers;
//! otherwise every partition gets the coordinator's answer.

use std::collections::BTreeSet;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use kafka_protocol::ResponseError;

use crate::broker::Broker;

/// First version whose clients know PRODUCER_FENCED (KIP-588).
const PRODUCER_FENCED_FROM: i16 = 2;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let image = broker.controller.image();
    let requested: Vec<(String, i32)> = request
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), *p)))
        .collect();
    let unknown: BTreeSet<(String, i32)> = requested
        .iter()
        .filter(|(topic, p)| image.partition(topic, *p).is_none())
        .cloned()
        .collect();
    // None: refused per partition (unknown topics); Some(code): the coordinator's answer.
    let answer: Option<i16> = if unknown.is_empty() {
        broker.txns.follow_broker(broker);
        let outcome = broker
            .txns
            .add_partitions(
                &request.v3_and_below_transactional_id,
                request.v3_and_below_producer_id.0,
                request.v3_and_below_producer_epoch,
                requested.iter().cloned().collect(),
            )
            .await;
        Some(match outcome {
            Ok(()) => 0,
            Err(error) => {
                tracing::debug!(transactional_id = %request.v3_and_below_transactional_id.0, %error, "AddPartitionsToTxn refused");
                error.code_for(version >= PRODUCER_FENCED_FROM).code()
            }
        })
    } else {
        None
    };
    let code_of = |tp: &(String, i32)| match answer {
        Some(code) => code,
        None if unknown.contains(tp) => ResponseError::UnknownTopicOrPartition.code(),
        None => ResponseError::OperationNotAttempted.code(),
    };
    let results = request
        .v3_and_below_topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let code = code_of(&(topic.name.to_string(), *p));
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*p)
                        .with_partition_error_code(code)
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name)
                .with_results_by_partition(partitions)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}
