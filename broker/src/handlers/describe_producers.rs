//! DescribeProducers (v0, KIP-664): the active producers of each requested partition this broker
//! leads: id, epoch, last sequence, last timestamp, the coordinator epoch of its last marker and
//! the first offset of its open transaction (-1 for none). A partition not in the metadata is
//! UNKNOWN_TOPIC_OR_PARTITION; one led elsewhere (or not hosted here) NOT_LEADER_OR_FOLLOWER.
//!
//! The producer state is rebuilt from the partition's batch headers (and marker values) here,
//! on the blocking threads, as the log rebuilds its own table without a snapshot: the log does
//! not expose its live table. Producers idle past `producer.id.expiration.ms` are left out, as
//! the live table drops them.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use inlet_protocol::batch::{BatchHeader, BatchIter};
use inlet_protocol::records::decode_batch;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::partition_error;
use super::offset_for_leader_epoch::{partition_at_epoch, Requester};
use crate::broker::{now_ms, Broker};
use crate::cluster::partition::{Partition, PartitionError, ReadLimit};

/// How much of the log one read of the scan asks for.
const SCAN_CHUNK: usize = 1 << 20;

/// One producer as DescribeProducers shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    pub current_txn_start_offset: i64,
}

pub async fn handle(
    broker: &Broker,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let image = broker.controller.image();
    let expiration_ms = i64::try_from(broker.config.producer_id_expiration_ms).unwrap_or(i64::MAX);
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
        for index in topic.partition_indexes {
            let answer = PartitionResponse::default().with_partition_index(index);
            let led = partition_at_epoch(broker, &image, &topic.name, index, Requester::Client, -1);
            let scanned = match led {
                Ok(partition) => scan_off_runtime(partition).await,
                Err(code) => Err((code, None)),
            };
            partitions.push(match scanned {
                Ok(producers) => {
                    let cutoff = now_ms().saturating_sub(expiration_ms);
                    let active = producers
                        .into_iter()
                        .filter(|p| p.last_timestamp > cutoff || p.current_txn_start_offset >= 0)
                        .map(producer_state)
                        .collect();
                    answer.with_active_producers(active)
                }
                Err((code, message)) => answer
                    .with_error_code(code.code())
                    .with_error_message(message.map(StrBytes::from_string)),
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

fn producer_state(p: ActiveProducer) -> ProducerState {
    ProducerState::default()
        .with_producer_id(ProducerId(p.producer_id))
        .with_producer_epoch(i32::from(p.producer_epoch))
        .with_last_sequence(p.last_sequence)
        .with_last_timestamp(p.last_timestamp)
        .with_coordinator_epoch(p.coordinator_epoch)
        .with_current_txn_start_offset(p.current_txn_start_offset)
}

type ScanError = (ResponseError, Option<String>);

async fn scan_off_runtime(partition: Arc<Partition>) -> Result<Vec<ActiveProducer>, ScanError> {
    let failed = |error: PartitionError| (partition_error(&error), Some(error.to_string()));
    match tokio::task::spawn_blocking(move || active_producers(&partition)).await {
        Ok(result) => result.map_err(failed),
        Err(error) => Err((ResponseError::UnknownServerError, Some(error.to_string()))),
    }
}

/// The producers of `partition`'s local log, by id.
pub fn active_producers(partition: &Partition) -> Result<Vec<ActiveProducer>, PartitionError> {
    let mut scan = ProducerScan::default();
    let mut next = partition.local_extent()?.start;
    loop {
        let (bytes, offsets) = partition.read(next, SCAN_CHUNK, ReadLimit::LogEnd)?;
        if bytes.is_empty() || next >= offsets.log_end {
            break;
        }
        let before = next;
        for item in BatchIter::new(&bytes) {
            // A batch the log holds but cannot parse ends the scan where it is.
            let Ok((header, range)) = item else { break };
            next = header.last_offset() + 1;
            let marker_value = if header.is_control() {
                decode_batch(&bytes.slice(range))
                    .ok()
                    .and_then(|(_, records)| records.into_iter().next())
                    .and_then(|r| r.value)
            } else {
                None
            };
            scan.apply(&header, marker_value);
        }
        if next <= before {
            break;
        }
    }
    Ok(scan.producers.into_values().collect())
}

/// Producer state as the batches of a log build it.
#[derive(Debug, Default)]
pub struct ProducerScan {
    pub producers: BTreeMap<i64, ActiveProducer>,
}

impl ProducerScan {
    /// Applies one batch; `marker_value` is a control batch's record value (version i16,
    /// coordinator epoch i32).
    pub fn apply(&mut self, header: &BatchHeader, marker_value: Option<Bytes>) {
        if !header.has_producer_id() {
            return;
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert(ActiveProducer {
                producer_id: header.producer_id,
                producer_epoch: header.producer_epoch,
                last_sequence: -1,
                last_timestamp: -1,
                coordinator_epoch: -1,
                current_txn_start_offset: -1,
            });
        if header.producer_epoch < entry.producer_epoch {
            return;
        }
        if header.producer_epoch > entry.producer_epoch {
            entry.producer_epoch = header.producer_epoch;
            entry.last_sequence = -1;
        }
        entry.last_timestamp = entry.last_timestamp.max(header.max_timestamp);
        if header.is_control() {
            entry.current_txn_start_offset = -1;
            if let Some(mut value) = marker_value.filter(|v| v.len() >= 6) {
                let _version = value.get_i16();
                entry.coordinator_epoch = value.get_i32();
            }
            return;
        }
        entry.last_sequence = header.last_sequence();
        if header.is_transactional() && entry.current_txn_start_offset < 0 {
            entry.current_txn_start_offset = header.base_offset;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlet_protocol::batch::MAGIC_V2;

    fn header(base_offset: i64, attributes: i16, pid: i64, epoch: i16, seq: i32) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: MAGIC_V2,
            crc: 0,
            attributes,
            last_offset_delta: 1,
            base_timestamp: base_offset * 10,
            max_timestamp: base_offset * 10,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: 2,
        }
    }

    #[test]
    fn open_transactions_show_their_first_offset_until_their_marker() {
        let mut scan = ProducerScan::default();
        scan.apply(&header(0, 0, -1, -1, -1), None); // not a producer's
        scan.apply(&header(2, 0, 5, 0, 0), None); // idempotent
        scan.apply(&header(4, 0x10, 6, 1, 0), None); // transactional, opens at 4
        scan.apply(&header(6, 0x10, 6, 1, 2), None);
        let mut marker = Vec::new();
        marker.extend_from_slice(&0i16.to_be_bytes());
        marker.extend_from_slice(&9i32.to_be_bytes());
        scan.apply(&header(8, 0x10, 7, 0, 0), None);
        scan.apply(&header(10, 0x30, 7, 0, -1), Some(Bytes::from(marker)));
        let got: Vec<ActiveProducer> = scan.producers.into_values().collect();
        assert_eq!(got.len(), 2 + 1);
        assert_eq!(
            (
                got[0].producer_id,
                got[0].last_sequence,
                got[0].current_txn_start_offset
            ),
            (5, 1, -1)
        );
        assert_eq!(
            (
                got[1].producer_epoch,
                got[1].last_sequence,
                got[1].current_txn_start_offset
            ),
            (1, 3, 4)
        );
        assert_eq!(
            (
                got[2].last_sequence,
                got[2].coordinator_epoch,
                got[2].current_txn_start_offset,
                got[2].last_timestamp
            ),
            (1, 9, -1, 100)
        );
    }

    #[test]
    fn an_older_epoch_is_ignored_and_a_newer_one_restarts_the_sequence() {
        let mut scan = ProducerScan::default();
        scan.apply(&header(0, 0, 5, 2, 7), None);
        scan.apply(&header(2, 0, 5, 1, 40), None);
        assert_eq!(scan.producers[&5].last_sequence, 8);
        scan.apply(&header(4, 0x30, 5, 3, -1), None);
        assert_eq!(
            (
                scan.producers[&5].producer_epoch,
                scan.producers[&5].last_sequence
            ),
            (3, -1)
        );
    }
}
