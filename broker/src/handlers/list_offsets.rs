//! ListOffsets: a partition's earliest offset (-2, the lake's first offset when the lake reaches
//! further back), latest visible offset (-1, the high watermark), or the first offset at or after
//! a timestamp (looked up in the lake first for timestamps older than the local log).

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::errors::partition_error;
use crate::broker::Broker;
use crate::cluster::partition::{Partition, PartitionError};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    let image = broker.controller.image();
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let response = ListOffsetsPartitionResponse::default()
                .with_partition_index(wanted.partition_index);
            let led = broker.replicas.leader_partition(
                broker,
                &image,
                &topic.name,
                wanted.partition_index,
            );
            partitions.push(match led {
                Ok((_, partition)) => {
                    lookup(broker, &partition, version, wanted.timestamp, response).await
                }
                Err(code) => response.with_error_code(code.code()),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// The first offset at or after `timestamp`: from the lake when it holds such a batch below the
/// local log, else from the local log.
async fn offset_for_timestamp(
    broker: &Broker,
    partition: &Partition,
    timestamp: i64,
) -> Result<Option<(i64, i64)>, PartitionError> {
    if let Some(lake) = &broker.lake {
        let local_start = partition.local_extent()?.start;
        if let Some(found) = lake
            .offset_for_timestamp(partition, timestamp, local_start)
            .await?
        {
            return Ok(Some(found));
        }
    }
    partition.offset_for_timestamp(timestamp)
}

async fn lookup(
    broker: &Broker,
    partition: &Partition,
    version: i16,
    timestamp: i64,
    response: ListOffsetsPartitionResponse,
) -> ListOffsetsPartitionResponse {
    // The leader epoch field exists from v4; the encoder refuses it set on older versions.
    let leader_epoch = if version >= 4 {
        partition.leader_epoch()
    } else {
        -1
    };
    let found = match timestamp {
        LATEST => partition.offsets().map(|o| Some((o.high_watermark, -1))),
        EARLIEST => partition.offsets().map(|o| Some((o.log_start, -1))),
        t if t >= 0 => offset_for_timestamp(broker, partition, t).await,
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
