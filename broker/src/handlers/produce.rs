//! Produce: append each partition's record batches to its log, exactly as the producer encoded
//! them (compression included), and report the assigned base offset. With one broker the leader
//! is the whole ISR, so acks=1 and acks=all are both satisfied once the local append returns;
//! acks=0 gets no response at all (the connection layer drops it).

use inlet_protocol::batch::BatchIter;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::{partition_error, topic_error};
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: ProduceRequest) -> ProduceResponse {
    if !matches!(request.acks, -1..=1) {
        return reject_all(
            request,
            ResponseError::InvalidRequiredAcks,
            "acks must be 0, 1 or -1",
        );
    }
    if request.transactional_id.is_some() {
        return reject_all(
            request,
            ResponseError::InvalidRequest,
            "transactions are not supported yet",
        );
    }
    let responses = request
        .topic_data
        .into_iter()
        .map(|topic_data| {
            let topic = broker.topic_or_auto_create(&topic_data.name);
            let partition_responses = topic_data
                .partition_data
                .into_iter()
                .map(|data| {
                    let response = PartitionProduceResponse::default().with_index(data.index);
                    let topic = match &topic {
                        Ok(topic) => topic,
                        Err(error) => return failed(response, topic_error(error), &error.to_string()),
                    };
                    let Some(partition) = topic.partition(data.index) else {
                        return failed(response, ResponseError::UnknownTopicOrPartition, "no such partition");
                    };
                    let Some(records) = data.records else {
                        return failed(response, ResponseError::CorruptMessage, "no records");
                    };
                    if topic.name == crate::group::OFFSETS_TOPIC {
                        // Only the group coordinator writes there (Kafka refuses this too).
                        return failed(response, ResponseError::InvalidTopicException, "cannot append to an internal topic");
                    }
                    let max_batch = topic.config().max_message_bytes(broker.topics.defaults());
                    if let Some(size) = oversized_batch(&records, max_batch) {
                        let reason = format!("a {size}-byte batch exceeds max.message.bytes ({max_batch})");
                        return failed(response, ResponseError::MessageTooLarge, &reason);
                    }
                    match partition.append(&records) {
                        Ok(outcome) => response
                            .with_base_offset(outcome.base_offset)
                            .with_log_append_time_ms(-1)
                            .with_log_start_offset(outcome.log_start_offset),
                        Err(error) => {
                            tracing::debug!(topic = %topic.name, partition = data.index, %error, "produce rejected");
                            failed(response, partition_error(&error), &error.to_string())
                        }
                    }
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_partition_responses(partition_responses)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

/// The size of the first batch larger than `max`, if any.
fn oversized_batch(records: &[u8], max: usize) -> Option<usize> {
    BatchIter::new(records)
        .filter_map(Result::ok)
        .map(|(header, _)| header.total_len())
        .find(|&len| len > max)
}

fn failed(
    response: PartitionProduceResponse,
    error: ResponseError,
    message: &str,
) -> PartitionProduceResponse {
    response
        .with_error_code(error.code())
        .with_base_offset(-1)
        .with_error_message(Some(StrBytes::from_string(message.to_string())))
}

fn reject_all(request: ProduceRequest, error: ResponseError, message: &str) -> ProduceResponse {
    let responses = request
        .topic_data
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partition_data
                .iter()
                .map(|p| {
                    failed(
                        PartitionProduceResponse::default().with_index(p.index),
                        error,
                        message,
                    )
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}
