//! ListOffsets: a partition's earliest offset (-2), latest visible offset (-1, the high
//! watermark), or the first offset at or after a timestamp.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::errors::partition_error;
use crate::broker::Broker;
use crate::cluster::partition::Partition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub fn handle(broker: &Broker, version: i16, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let found = broker.topics.get(&topic.name);
            let partitions = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(wanted.partition_index);
                    match found
                        .as_ref()
                        .and_then(|t| t.partition(wanted.partition_index))
                    {
                        Some(partition) => lookup(&partition, version, wanted.timestamp, response),
                        None => {
                            response.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        }
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn lookup(
    partition: &Partition,
    version: i16,
    timestamp: i64,
    response: ListOffsetsPartitionResponse,
) -> ListOffsetsPartitionResponse {
    // The leader epoch field exists from v4; the encoder refuses it set on older versions.
    let leader_epoch = if version >= 4 {
        partition.leader_epoch
    } else {
        -1
    };
    let found = match timestamp {
        LATEST => partition.offsets().map(|o| Some((o.high_watermark, -1))),
        EARLIEST => partition.offsets().map(|o| Some((o.log_start, -1))),
        t if t >= 0 => partition.offset_for_timestamp(t),
        _ => return response.with_error_code(ResponseError::InvalidRequest.code()),
    };
    match found {
        Ok(Some((offset, timestamp))) => response
            .with_offset(offset)
            .with_timestamp(timestamp)
            .with_leader_epoch(leader_epoch),
        Ok(None) => response.with_offset(-1).with_timestamp(-1),
        Err(error) => response.with_error_code(partition_error(&error).code()),
    }
}
