//! ListOffsets: a partition's earliest offset (-2, the lake's first offset when the lake reaches
//! further back), latest visible offset (-1, the high watermark), or the first offset at or after
//! a timestamp (looked up in the lake first for timestamps older than the local log), each with
//! the leader epoch that wrote it (v4+).
//!
//! As in Kafka: only the leader answers, after checking the `current_leader_epoch` the client
//! names (v4+; FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH, KIP-320). Consumers see up to the high
//! watermark: LATEST is the high watermark, a timestamp found at or past it is "none", and while
//! a new leader's high watermark has not reached the start of its epoch both answer
//! OFFSET_NOT_AVAILABLE (KIP-207), so an offset never goes backwards. A `read_committed`
//! consumer (`isolation_level` 1) sees up to the last stable offset instead: LATEST is the LSO.
//! The partition's replicas (`replica_id` >= 0, e.g. a follower resetting after
//! OFFSET_OUT_OF_RANGE) see up to the log end.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::errors::partition_error;
use super::offset_for_leader_epoch::{partition_at_epoch, Requester};
use crate::broker::Broker;
use crate::cluster::partition::{Partition, PartitionError, PartitionOffsets};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    let image = broker.controller.image();
    let requester = Requester::from_replica_id(request.replica_id.0);
    let view = View::of(requester, request.isolation_level);
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let response = ListOffsetsPartitionResponse::default()
                .with_partition_index(wanted.partition_index);
            // Before v4 the field does not exist and decodes as -1: no check.
            let led = partition_at_epoch(
                broker,
                &image,
                &topic.name,
                wanted.partition_index,
                requester,
                wanted.current_leader_epoch,
            );
            partitions.push(match led {
                Ok(partition) => {
                    lookup(
                        broker,
                        &partition,
                        version,
                        view,
                        wanted.timestamp,
                        response,
                    )
                    .await
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

/// How far a requester may see (Kafka's isolation level: consumers read-uncommitted up to the
/// high watermark, read-committed up to the last stable offset, replicas none: the log end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Consumer,
    Committed,
    Replica,
}

/// Kafka's `IsolationLevel.READ_COMMITTED`.
const READ_COMMITTED: i8 = 1;

impl View {
    /// A replica id counts only from the partition's replicas: `partition_at_epoch` refused
    /// any other broker id already.
    fn of(requester: Requester, isolation_level: i8) -> View {
        match requester {
            Requester::Client if isolation_level == READ_COMMITTED => View::Committed,
            Requester::Client => View::Consumer,
            Requester::Replica(_) => View::Replica,
        }
    }

    /// The first offset this view may not see.
    fn last_fetchable(self, offsets: &PartitionOffsets) -> i64 {
        match self {
            View::Consumer => offsets.high_watermark,
            View::Committed => offsets.last_stable,
            View::Replica => offsets.log_end,
        }
    }
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

/// What a lookup found: an offset with its timestamp and leader epoch, nothing (-1s), or a
/// Kafka error.
type Found = Result<Option<(i64, i64, Option<i32>)>, ResponseError>;

async fn lookup(
    broker: &Broker,
    partition: &Partition,
    version: i16,
    view: View,
    timestamp: i64,
    response: ListOffsetsPartitionResponse,
) -> ListOffsetsPartitionResponse {
    match find(broker, partition, view, timestamp).await {
        // The leader epoch field exists from v4; the encoder refuses it set on older versions.
        Ok(Some((offset, timestamp, epoch))) => response
            .with_offset(offset)
            .with_timestamp(timestamp)
            .with_leader_epoch(epoch.filter(|_| version >= 4).unwrap_or(-1)),
        Ok(None) => response.with_offset(-1).with_timestamp(-1),
        Err(code) => response.with_error_code(code.code()),
    }
}

async fn find(broker: &Broker, partition: &Partition, view: View, timestamp: i64) -> Found {
    let failed = |error: PartitionError| partition_error(&error);
    let offsets = partition.offsets().map_err(failed)?;
    let last_fetchable = view.last_fetchable(&offsets);
    let lagging = view != View::Replica
        && partition.leader_epoch_start_offset().map_err(failed)? > offsets.high_watermark;
    match timestamp {
        LATEST => {
            let offset = visible_latest(last_fetchable, lagging)?;
            Ok(Some((offset, -1, Some(partition.leader_epoch()))))
        }
        EARLIEST => {
            let epoch = partition
                .epoch_at_log_start(offsets.log_start)
                .map_err(failed)?;
            Ok(Some((offsets.log_start, -1, epoch)))
        }
        t if t >= 0 => {
            let found = offset_for_timestamp(broker, partition, t)
                .await
                .map_err(failed)?;
            match visible_found(found, last_fetchable, lagging)? {
                Some((offset, ts)) => {
                    let epoch = partition.epoch_for_offset(offset).map_err(failed)?;
                    Ok(Some((offset, ts, epoch)))
                }
                None => Ok(None),
            }
        }
        _ => Err(ResponseError::InvalidRequest),
    }
}

/// LATEST: the first offset the requester may not read, unless a new leader's high watermark
/// still lags the start of its epoch (Kafka answers OFFSET_NOT_AVAILABLE then: the offset could
/// otherwise go backwards).
fn visible_latest(last_fetchable: i64, lagging: bool) -> Result<i64, ResponseError> {
    if lagging {
        return Err(ResponseError::OffsetNotAvailable);
    }
    Ok(last_fetchable)
}

/// A timestamp lookup's `(offset, timestamp)` if the requester may read it; a result at or past
/// what it may read counts as none, and none while lagging is OFFSET_NOT_AVAILABLE (Kafka's
/// `ReplicaManager.fetchOffset`).
fn visible_found(
    found: Option<(i64, i64)>,
    last_fetchable: i64,
    lagging: bool,
) -> Result<Option<(i64, i64)>, ResponseError> {
    match found {
        Some((offset, timestamp)) if offset < last_fetchable => Ok(Some((offset, timestamp))),
        _ if lagging => Err(ResponseError::OffsetNotAvailable),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFSETS: PartitionOffsets = PartitionOffsets {
        log_start: 0,
        high_watermark: 7,
        last_stable: 5,
        log_end: 10,
    };

    #[test]
    fn consumers_see_the_high_watermark_or_the_lso_and_replicas_the_log_end() {
        assert_eq!(View::of(Requester::Client, 0).last_fetchable(&OFFSETS), 7);
        assert_eq!(View::of(Requester::Client, 1).last_fetchable(&OFFSETS), 5);
        assert_eq!(
            View::of(Requester::Replica(2), 1).last_fetchable(&OFFSETS),
            10
        );
        assert_eq!(visible_found(Some((5, 100)), 5, false), Ok(None));
        assert_eq!(visible_latest(7, false), Ok(7));
    }

    #[test]
    fn a_timestamp_found_past_the_high_watermark_is_none_for_consumers() {
        assert_eq!(visible_found(Some((6, 100)), 7, false), Ok(Some((6, 100))));
        assert_eq!(visible_found(Some((7, 100)), 7, false), Ok(None));
        assert_eq!(visible_found(Some((9, 100)), 10, false), Ok(Some((9, 100))));
        assert_eq!(visible_found(None, 7, false), Ok(None));
    }

    #[test]
    fn a_lagging_new_leader_answers_offset_not_available_instead_of_a_smaller_offset() {
        assert_eq!(
            visible_latest(7, true),
            Err(ResponseError::OffsetNotAvailable)
        );
        assert_eq!(
            visible_found(Some((8, 100)), 7, true),
            Err(ResponseError::OffsetNotAvailable)
        );
        assert_eq!(
            visible_found(None, 7, true),
            Err(ResponseError::OffsetNotAvailable)
        );
        // What is visible is still answered.
        assert_eq!(visible_found(Some((3, 100)), 7, true), Ok(Some((3, 100))));
    }
}
