//! Produce's transactional checks (used by `handlers::produce`): which batches are
//! transactional or control batches, and whether a partition's transactional batches belong to
//! their producer's open transaction.

use inlet_protocol::batch::BatchIter;
use kafka_protocol::ResponseError;

use crate::broker::Broker;

/// Whether `records` hold a batch with the transactional attribute.
pub fn has_transactional_batch(records: &[u8]) -> bool {
    BatchIter::new(records)
        .filter_map(Result::ok)
        .any(|(header, _)| header.is_transactional())
}

/// Whether `records` hold a control batch (a transaction marker).
pub fn has_control_batch(records: &[u8]) -> bool {
    BatchIter::new(records)
        .filter_map(Result::ok)
        .any(|(header, _)| header.is_control())
}

/// Checks a partition's transactional batches with the transaction coordinator: their producer
/// must be `transactional_id`'s current one, in an open transaction holding the partition
/// (Kafka's errors: INVALID_PRODUCER_ID_MAPPING, INVALID_PRODUCER_EPOCH, INVALID_TXN_STATE;
/// NOT_ENOUGH_REPLICAS, retriable, while the coordinator is loading).
pub fn verify_transactional(
    broker: &Broker,
    transactional_id: &str,
    topic: &str,
    partition: i32,
    records: &[u8],
) -> Result<(), ResponseError> {
    let mut checked = None;
    for (header, _) in BatchIter::new(records).filter_map(Result::ok) {
        if !header.is_transactional() {
            continue;
        }
        let producer = (header.producer_id, header.producer_epoch);
        if checked == Some(producer) {
            continue;
        }
        broker
            .txns
            .verify_now(transactional_id, producer.0, producer.1, topic, partition)?;
        checked = Some(producer);
    }
    Ok(())
}
