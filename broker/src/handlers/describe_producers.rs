//! DescribeProducers (v0, KIP-664): the active producers of each requested partition this broker
//! leads, as its producer state knows them (Kafka's `ProducerStateManager` view): id, epoch, last
//! sequence, last timestamp, the coordinator epoch of its last marker and the first offset of its
//! open transaction (-1 for none). Producers idle past `producer.id.expiration.ms` have left that
//! state already. A partition not in the metadata is UNKNOWN_TOPIC_OR_PARTITION; one led elsewhere
//! (or not hosted here) NOT_LEADER_OR_FOLLOWER.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::protocol::StrBytes;

use super::errors::partition_error;
use super::offset_for_leader_epoch::{partition_at_epoch, Requester};
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: DescribeProducersRequest) -> DescribeProducersResponse {
    let image = broker.controller.image();
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
        for index in topic.partition_indexes {
            let answer = PartitionResponse::default().with_partition_index(index);
            let led = partition_at_epoch(broker, &image, &topic.name, index, Requester::Client, -1);
            partitions.push(match led {
                Err(code) => answer.with_error_code(code.code()),
                Ok(partition) => match partition.producers() {
                    Ok(producers) => answer.with_active_producers(
                        producers
                            .into_iter()
                            .map(|p| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(p.producer_id))
                                    .with_producer_epoch(i32::from(p.epoch))
                                    .with_last_sequence(p.last_sequence)
                                    .with_last_timestamp(p.last_timestamp)
                                    .with_coordinator_epoch(p.coordinator_epoch)
                                    .with_current_txn_start_offset(p.txn_first_offset.unwrap_or(-1))
                            })
                            .collect(),
                    ),
                    Err(error) => answer
                        .with_error_code(partition_error(&error).code())
                        .with_error_message(Some(StrBytes::from_string(error.to_string()))),
                },
            });
        }
        topics.push(
            TopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DescribeProducersResponse::default().with_topics(topics)
}
