//! Fetch: whole record batches straight from the mapped segments (no decoding, no copy), cut at the
//! high watermark for consumers. Offsets that local retention removed but the lake holds are read
//! from the lake, so a consumer from the beginning replays the whole history. When fewer than
//! `min_bytes` are ready the request parks until one of its partitions changes (log end, high
//! watermark or role) or `max_wait_ms` passes, then answers with whatever is there.
//!
//! A `read_committed` fetch (`isolation_level` 1, KIP-98) reads only below the last stable offset
//! and is told, in `aborted_transactions`, the aborted transactions overlapping the batches it
//! gets (from the partition's aborted-transaction index), so the client drops their records;
//! it wakes when the LSO moves (a marker or the high watermark moving notifies the partition).
//! Every answer carries the LSO, as Kafka's does (`read_uncommitted` reads as before).
//!
//! A fetch with `replica_id` >= 0 comes from a follower replica (`replication::fetcher`): it
//! must name a broker that is a replica of each partition, reads up to the log end (never from
//! the lake), and its fetch offset tells the leader what that replica has, which moves the high
//! watermark. Its `last_fetched_epoch` is checked against the leader's epochs: a log that went
//! another way gets `diverging_epoch` instead of records (KIP-320).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::ProducerId;
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::errors::{check_current_leader_epoch, partition_error};
use crate::broker::{now_ms, Broker};
use crate::cluster::partition::{Partition, PartitionError, PartitionOffsets, ReadLimit};
use inlet_protocol::batch::BatchIter;
use inlet_storage::StorageError;

/// Kafka's `IsolationLevel.READ_COMMITTED`.
const READ_COMMITTED: i8 = 1;

/// Each requested partition, by topic then partition as in the request: the local partition to
/// read, or the error to answer with.
type Resolved = Vec<Vec<Result<Target, ResponseError>>>;

/// A requested partition led here.
struct Target {
    partition: Arc<Partition>,
    /// For a follower whose log parted from this one: `(epoch, end offset)` to answer with
    /// instead of records (it does not change while the request waits: only a leader change
    /// would, and that ends the wait).
    diverging: Option<(i32, i64)>,
}

pub async fn handle(broker: &Broker, request: FetchRequest) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let replica = (request.replica_id.0 >= 0).then_some(request.replica_id.0);
    let resolved = resolve(broker, &request, replica);
    // Subscribed before the first read, so a change between the read and the wait still wakes.
    let mut changes: Vec<watch::Receiver<u64>> = resolved
        .iter()
        .flatten()
        .filter_map(|t| t.as_ref().ok().map(|t| t.partition.subscribe()))
        .collect();
    // A diverging epoch is an answer in itself: the follower truncates before it fetches again.
    let diverged = resolved
        .iter()
        .flatten()
        .any(|t| t.as_ref().is_ok_and(|t| t.diverging.is_some()));
    loop {
        for change in &mut changes {
            change.borrow_and_update();
        }
        let (response, ready) = read_once(broker, &request, &resolved, replica).await;
        if ready >= request.min_bytes.max(0) as usize
            || has_error(&response)
            || diverged
            || changes.is_empty()
            || Instant::now() >= deadline
        {
            return response;
        }
        let any_change = select_all(changes.iter_mut().map(|c| Box::pin(c.changed())));
        tokio::select! {
            (changed, _, _) = any_change => {
                if changed.is_err() {
                    return response;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return read_once(broker, &request, &resolved, replica).await.0
            }
        }
    }
}

/// Finds each requested partition led here, checks the leader epoch the client or follower
/// believes in, and records a follower's position (once per request: it does not move while
/// the request waits).
fn resolve(broker: &Broker, request: &FetchRequest, replica: Option<i32>) -> Resolved {
    let image = broker.controller.image();
    let now = now_ms();
    request
        .topics
        .iter()
        .map(|topic| {
            topic
                .partitions
                .iter()
                .map(|wanted| {
                    let (_, partition) = broker.replicas.leader_partition(
                        broker,
                        &image,
                        &topic.topic,
                        wanted.partition,
                    )?;
                    check_current_leader_epoch(
                        wanted.current_leader_epoch,
                        partition.leader_epoch(),
                    )?;
                    let mut diverging = None;
                    if let Some(replica) = replica {
                        partition.check_follower(replica)?;
                        if wanted.last_fetched_epoch >= 0 {
                            diverging = partition
                                .diverging_epoch(wanted.last_fetched_epoch, wanted.fetch_offset)
                                .map_err(|e| partition_error(&e))?;
                        }
                        // A follower whose log went another way has nothing to report yet: its
                        // fetch offset says nothing about what it shares with this log.
                        if diverging.is_none() {
                            partition.follower_fetched(
                                broker.node_id(),
                                replica,
                                wanted.fetch_offset,
                                wanted.log_start_offset,
                                now,
                            )?;
                        }
                    }
                    Ok(Target {
                        partition,
                        diverging,
                    })
                })
                .collect()
        })
        .collect()
}

fn has_error(response: &FetchResponse) -> bool {
    response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .any(|p| p.error_code != 0)
}

/// One pass over the requested partitions; returns the response and the record bytes in it.
async fn read_once(
    broker: &Broker,
    request: &FetchRequest,
    resolved: &Resolved,
    replica: Option<i32>,
) -> (FetchResponse, usize) {
    let limit = if replica.is_some() {
        ReadLimit::LogEnd
    } else if request.isolation_level == READ_COMMITTED {
        ReadLimit::LastStable
    } else {
        ReadLimit::HighWatermark
    };
    let mut remaining = request.max_bytes.max(0) as usize;
    let mut total = 0usize;
    let mut responses = Vec::with_capacity(request.topics.len());
    for (topic, resolved) in request.topics.iter().zip(resolved) {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for (wanted, target) in topic.partitions.iter().zip(resolved) {
            let partition = match target {
                Ok(target) if target.partition.is_leading() => &target.partition,
                Ok(_) => {
                    partitions.push(failed(wanted, ResponseError::NotLeaderOrFollower));
                    continue;
                }
                Err(code) => {
                    partitions.push(failed(wanted, *code));
                    continue;
                }
            };
            if let Some((epoch, end_offset)) = target.as_ref().ok().and_then(|t| t.diverging) {
                let data = empty(wanted, &partition.offsets()).with_diverging_epoch(
                    EpochEndOffset::default()
                        .with_epoch(epoch)
                        .with_end_offset(end_offset),
                );
                partitions.push(data);
                continue;
            }
            let max = (wanted.partition_max_bytes.max(0) as usize).min(remaining);
            if max == 0 && total > 0 {
                partitions.push(empty(wanted, &partition.offsets()));
                continue;
            }
            let read = if replica.is_some() {
                // Followers copy the local log only: the lake is one copy, kept by the leader.
                partition.read(wanted.fetch_offset, max.max(1), limit)
            } else {
                read(broker, partition, wanted.fetch_offset, max.max(1), limit).await
            };
            let data = match read {
                // Only the first data in a response may exceed the limits (KIP-74).
                Ok((records, offsets)) if total > 0 && records.len() > remaining => {
                    empty(wanted, &Ok(offsets))
                }
                Ok((records, offsets)) => {
                    total += records.len();
                    remaining = remaining.saturating_sub(records.len());
                    let aborted = match limit {
                        ReadLimit::LastStable => aborted_in(partition, wanted, &records),
                        _ => Ok(None),
                    };
                    match aborted {
                        Ok(aborted) => with_records(wanted, records, &offsets)
                            .with_aborted_transactions(aborted),
                        Err(error) => failed(wanted, partition_error(&error)),
                    }
                }
                Err(error) => {
                    let offsets = partition.offsets().ok();
                    let data = failed(wanted, partition_error(&error));
                    match offsets {
                        Some(o) => data
                            .with_high_watermark(o.high_watermark)
                            .with_last_stable_offset(o.last_stable)
                            .with_log_start_offset(match (&error, replica) {
                                // A follower restarts its log at the leader's local start.
                                (
                                    PartitionError::Storage(StorageError::OffsetOutOfRange {
                                        log_start,
                                        ..
                                    }),
                                    Some(_),
                                ) => *log_start,
                                _ => o.log_start,
                            }),
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

/// For a `read_committed` answer holding `records` from `wanted.fetch_offset`: the aborted
/// transactions overlapping them (Kafka's `collectAbortedTxns` up to the offset after the
/// last batch), an empty list when there are no records (as Kafka answers).
fn aborted_in(
    partition: &Partition,
    wanted: &FetchPartition,
    records: &Bytes,
) -> Result<Option<Vec<AbortedTransaction>>, PartitionError> {
    let Some(upper) = BatchIter::new(records)
        .map_while(Result::ok)
        .last()
        .map(|(header, _)| header.last_offset() + 1)
    else {
        return Ok(Some(Vec::new()));
    };
    let aborted = partition.aborted_transactions(wanted.fetch_offset, upper)?;
    Ok(Some(
        aborted
            .into_iter()
            .map(|t| {
                AbortedTransaction::default()
                    .with_producer_id(ProducerId(t.producer_id))
                    .with_first_offset(t.first_offset)
            })
            .collect(),
    ))
}

fn with_records(
    wanted: &FetchPartition,
    records: Bytes,
    offsets: &PartitionOffsets,
) -> PartitionData {
    PartitionData::default()
        .with_partition_index(wanted.partition)
        .with_high_watermark(offsets.high_watermark)
        .with_last_stable_offset(offsets.last_stable)
        .with_log_start_offset(offsets.log_start)
        .with_records(Some(records))
}

fn empty(
    wanted: &FetchPartition,
    offsets: &Result<PartitionOffsets, PartitionError>,
) -> PartitionData {
    match offsets {
        Ok(o) => with_records(wanted, Bytes::new(), o),
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

#[cfg(test)]
mod tests {
    use super::*;
    use inlet_protocol::batch::TestBatchBuilder;
    use inlet_storage::txn::TxnMarker;

    #[test]
    fn a_read_committed_answer_names_the_aborts_overlapping_its_batches_only() {
        let dir = tempfile::tempdir().unwrap();
        let log =
            inlet_storage::Log::open(dir.path(), inlet_storage::LogConfig::default()).unwrap();
        let p = Partition::new("t", 0, log);
        let txn = |pid| {
            TestBatchBuilder {
                producer_id: pid,
                producer_epoch: 0,
                base_sequence: 0,
                transactional: true,
                ..Default::default()
            }
            .build(&[(b"k", b"v")])
        };
        let abort = |pid| TxnMarker {
            producer_id: pid,
            producer_epoch: 0,
            coordinator_epoch: 0,
            commit: false,
        };
        p.append(&txn(1)).unwrap(); // 0
        p.append_txn_marker(&abort(1)).unwrap(); // 1
        p.append(&txn(2)).unwrap(); // 2
        p.append_txn_marker(&abort(2)).unwrap(); // 3
        let wanted = FetchPartition::default().with_fetch_offset(0);
        let (records, offsets) = p.read(0, 1, ReadLimit::LastStable).unwrap();
        assert_eq!(offsets.last_stable, 4);
        let data = with_records(&wanted, records.clone(), &offsets)
            .with_aborted_transactions(aborted_in(&p, &wanted, &records).unwrap());
        assert_eq!(data.last_stable_offset, 4);
        let aborted = data.aborted_transactions.unwrap();
        // One batch returned (offset 0): only producer 1's abort overlaps it.
        assert_eq!(aborted.len(), 1);
        assert_eq!((aborted[0].producer_id.0, aborted[0].first_offset), (1, 0));
        let none = aborted_in(&p, &wanted, &Bytes::new()).unwrap();
        assert_eq!(none, Some(Vec::new()));
    }
}
