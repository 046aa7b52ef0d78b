//! Fetch: whole record batches straight from the mapped segments (no decoding, no copy), cut at the
//! high watermark for consumers. Offsets that local retention removed but the lake holds are read
//! from the lake, so a consumer from the beginning replays the whole history. When fewer than
//! `min_bytes` are ready the request parks until an append anywhere wakes it or `max_wait_ms`
//! passes, then answers with whatever is there.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::errors::partition_error;
use crate::broker::Broker;
use crate::cluster::partition::{Partition, PartitionError, PartitionOffsets, ReadLimit};
use inlet_storage::StorageError;

pub async fn handle(broker: &Broker, request: FetchRequest) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    // Subscribe before the first read so an append between the read and the wait still wakes us.
    let mut appends = broker.subscribe_appends();
    loop {
        appends.borrow_and_update();
        let (response, ready) = read_once(broker, &request).await;
        if ready >= request.min_bytes.max(0) as usize
            || has_error(&response)
            || Instant::now() >= deadline
        {
            return response;
        }
        tokio::select! {
            changed = appends.changed() => {
                if changed.is_err() {
                    return response;
                }
            }
            _ = tokio::time::sleep_until(deadline) => return read_once(broker, &request).await.0,
        }
    }
}

fn has_error(response: &FetchResponse) -> bool {
    response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .any(|p| p.error_code != 0)
}

/// One pass over the requested partitions; returns the response and the record bytes in it.
async fn read_once(broker: &Broker, request: &FetchRequest) -> (FetchResponse, usize) {
    let limit = if request.replica_id.0 >= 0 {
        ReadLimit::LogEnd
    } else {
        ReadLimit::HighWatermark
    };
    let mut remaining = request.max_bytes.max(0) as usize;
    let mut total = 0usize;
    let mut responses = Vec::with_capacity(request.topics.len());
    let image = broker.controller.image();
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let partition = match broker.replicas.leader_partition(
                broker,
                &image,
                &topic.topic,
                wanted.partition,
            ) {
                Ok((_, partition)) => partition,
                Err(code) => {
                    partitions.push(failed(wanted, code));
                    continue;
                }
            };
            let max = (wanted.partition_max_bytes.max(0) as usize).min(remaining);
            if max == 0 && total > 0 {
                partitions.push(empty(wanted, &partition.offsets()));
                continue;
            }
            let data = match read(broker, &partition, wanted.fetch_offset, max.max(1), limit).await
            {
                // Only the first data in a response may exceed the limits (KIP-74).
                Ok((records, offsets)) if total > 0 && records.len() > remaining => {
                    empty(wanted, &Ok(offsets))
                }
                Ok((records, offsets)) => {
                    total += records.len();
                    remaining = remaining.saturating_sub(records.len());
                    with_records(wanted, records, offsets.high_watermark, offsets.log_start)
                }
                Err(error) => {
                    let offsets = partition.offsets().ok();
                    let data = failed(wanted, partition_error(&error));
                    match offsets {
                        Some(o) => data
                            .with_high_watermark(o.high_watermark)
                            .with_last_stable_offset(o.high_watermark)
                            .with_log_start_offset(o.log_start),
                        None => data,
                    }
                }
            };
            partitions.push(data);
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    (FetchResponse::default().with_responses(responses), total)
}

/// Reads the local log, or the lake for an offset below the local log's start.
async fn read(
    broker: &Broker,
    partition: &Partition,
    offset: i64,
    max_bytes: usize,
    limit: ReadLimit,
) -> Result<(Bytes, PartitionOffsets), PartitionError> {
    let local = partition.read(offset, max_bytes, limit);
    let (
        Err(PartitionError::Storage(StorageError::OffsetOutOfRange { log_start, .. })),
        Some(lake),
    ) = (&local, &broker.lake)
    else {
        return local;
    };
    let local_start = *log_start;
    if offset >= local_start || offset < partition.offsets()?.log_start {
        return local;
    }
    match lake.read(partition, offset, max_bytes).await {
        Some(records) => Ok((records?, partition.offsets()?)),
        // Past the lake's end but before the local log (a gap total retention left while the
        // lake was unreachable): continue at the local start, as over a compacted gap.
        None => partition.read(local_start, max_bytes, limit),
    }
}

fn with_records(
    wanted: &FetchPartition,
    records: Bytes,
    high_watermark: i64,
    log_start: i64,
) -> PartitionData {
    PartitionData::default()
        .with_partition_index(wanted.partition)
        .with_high_watermark(high_watermark)
        .with_last_stable_offset(high_watermark)
        .with_log_start_offset(log_start)
        .with_records(Some(records))
}

fn empty(
    wanted: &FetchPartition,
    offsets: &Result<PartitionOffsets, PartitionError>,
) -> PartitionData {
    match offsets {
        Ok(o) => with_records(wanted, Bytes::new(), o.high_watermark, o.log_start),
        Err(error) => failed(wanted, partition_error(error)),
    }
}

fn failed(wanted: &FetchPartition, error: ResponseError) -> PartitionData {
    PartitionData::default()
        .with_partition_index(wanted.partition)
        .with_error_code(error.code())
        .with_high_watermark(-1)
        .with_records(Some(Bytes::new()))
}
