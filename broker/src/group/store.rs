//! One `__consumer_offsets` partition as the durable state of the groups it holds: appended to
//! on every offset commit and completed rebalance, and replayed from start to end when this
//! broker becomes the partition's leader (see `ownership`). The topic itself is created through
//! the controller like any other (`ensure_offsets_topic`), with `cleanup.policy=compact`.
//!
//! A commit is acknowledged after its batch is in the partition log, with the same durability as
//! an `acks=1` produce: the bytes are in the page cache at once (a killed process loses nothing)
//! and on disk per the topic's flush policy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use inlet_protocol::batch::{increment_sequence, BatchHeader, BatchIter, MAGIC_V2};
use inlet_protocol::records::{decode_batch, encode_batch, simple_batch, Record};
use inlet_storage::StorageError;

pub use super::replay::Replayed;
use super::{GroupError, OFFSETS_TOPIC};
use crate::cluster::partition::{Partition, PartitionError, ReadLimit};
use crate::cluster::topic_config::TopicConfig;

/// Segment size of the offsets topic: small, so compaction has closed segments to clean early.
const OFFSETS_SEGMENT_BYTES: &str = "16777216";
/// Kafka's transactional bit in a batch's attributes.
const TRANSACTIONAL_ATTRIBUTE: i16 = 0x10;
/// How much of the log one replay read asks for.
const REPLAY_CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot open {OFFSETS_TOPIC}: {0}")]
    Topic(#[from] crate::cluster::topics::TopicError),
    #[error("cannot read {OFFSETS_TOPIC} at offset {offset}: {reason}")]
    Read { offset: i64, reason: String },
}

/// One partition of the offsets topic; cheap to clone.
#[derive(Clone)]
pub struct OffsetsStore {
    partition: Arc<Partition>,
    /// The last (epoch, sequence) this coordinator wrote for each transactional producer: its
    /// batches carry the producer's id, so the log checks their sequences like a producer's.
    sequences: Arc<Mutex<HashMap<i64, (i16, i32)>>>,
}

/// The offsets topic's configuration.
pub fn offsets_topic_config() -> TopicConfig {
    let mut config = TopicConfig::default();
    // Both values are valid by construction; a failure here would be a bug in the table.
    for (key, value) in [
        ("cleanup.policy", "compact"),
        ("segment.bytes", OFFSETS_SEGMENT_BYTES),
        ("retention.ms", "-1"),
    ] {
        if let Err(error) = config.set(key, value) {
            tracing::error!(%error, "offsets topic config");
        }
    }
    config
}

/// A write to the offsets partition: durable once the high watermark reaches `end` while the
/// partition is still led at `epoch` (the coordinator writes with acks=all, as Kafka's does).
pub struct Appended {
    pub partition: Arc<Partition>,
    pub end: i64,
    pub epoch: i32,
}

impl Appended {
    /// Waits until the in-sync replicas have the write, at most `timeout`.
    pub async fn replicated(&self, timeout: std::time::Duration) -> Result<(), GroupError> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.partition
            .wait_for_high_watermark(self.end, self.epoch, deadline)
            .await
            .map_err(|code| match code {
                kafka_protocol::ResponseError::NotLeaderOrFollower => GroupError::NotCoordinator,
                _ => GroupError::CoordinatorNotAvailable("the offsets partition is not replicated"),
            })
    }
}

impl OffsetsStore {
    pub fn new(partition: Arc<Partition>) -> OffsetsStore {
        OffsetsStore {
            partition,
            sequences: Arc::default(),
        }
    }

    /// The partition's index in the offsets topic.
    pub fn index(&self) -> i32 {
        self.partition.index
    }

    /// Appends `(key, value)` records as one batch; `None` values are tombstones. Returns
    /// where the batch ends, for callers that wait until the in-sync replicas have it.
    pub fn append(&self, records: &[(Bytes, Option<Bytes>)]) -> Result<Appended, GroupError> {
        let epoch = self.partition.leader_epoch();
        if records.is_empty() {
            let end = self
                .partition
                .offsets()
                .map_err(|e| GroupError::Storage(e.to_string()))?
                .log_end;
            return Ok(self.appended(end, epoch));
        }
        let keyed: Vec<(Option<Bytes>, Option<Bytes>)> = records
            .iter()
            .map(|(k, v)| (Some(k.clone()), v.clone()))
            .collect();
        let mut batch = simple_batch(0, crate::broker::now_ms(), &keyed)
            .map_err(|e| GroupError::Storage(e.to_string()))?;
        let outcome = self
            .partition
            .append(batch.as_mut_slice())
            .map_err(|e| GroupError::Storage(e.to_string()))?;
        Ok(self.appended(outcome.last_offset + 1, epoch))
    }

    /// Appends TxnOffsetCommit records as one transactional batch of `producer_id` at
    /// `producer_epoch` (Kafka writes them so, and the transaction's marker later ends them).
    /// Returns the log offset of the first record and the write to wait for. An epoch older
    /// than the partition knows for the producer is INVALID_PRODUCER_EPOCH (a zombie).
    pub fn append_transactional(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        records: &[(Bytes, Option<Bytes>)],
    ) -> Result<(i64, Appended), GroupError> {
        let epoch = self.partition.leader_epoch();
        let count = i32::try_from(records.len())
            .map_err(|_| GroupError::Storage("too many offsets in one commit".into()))?;
        let records: Vec<Record> = records
            .iter()
            .zip(0..)
            .map(|((key, value), i)| Record::new(i, 0, Some(key.clone()), value.clone()))
            .collect();
        let mut sequences = self.lock_sequences();
        let mut sequence = match sequences.get(&producer_id) {
            Some(&(known, last)) if known == producer_epoch => increment_sequence(last, 1),
            _ => 0,
        };
        // The sequence this coordinator remembers may be behind the log's (a batch written by an
        // earlier leader and compacted away): the log then names the one it expects.
        for _ in 0..3 {
            let mut batch = transactional_batch(producer_id, producer_epoch, sequence, &records)?;
            match self.partition.append(batch.as_mut_slice()) {
                Ok(outcome) if !outcome.duplicate => {
                    let last = increment_sequence(sequence, count.saturating_sub(1));
                    sequences.insert(producer_id, (producer_epoch, last));
                    let appended = self.appended(outcome.last_offset + 1, epoch);
                    return Ok((outcome.base_offset, appended));
                }
                // Taken for a retry of an earlier batch: a sequence far off makes the log say
                // which one it expects.
                Ok(_) => sequence = increment_sequence(sequence, 1 << 30),
                Err(PartitionError::Storage(StorageError::OutOfOrderSequence {
                    expected, ..
                })) => sequence = expected,
                Err(error) => return Err(append_error(error)),
            }
        }
        Err(GroupError::Storage(format!(
            "no sequence of producer {producer_id} accepted"
        )))
    }

    fn lock_sequences(&self) -> MutexGuard<'_, HashMap<i64, (i16, i32)>> {
        // Plain data: a panic elsewhere cannot leave it half-updated.
        self.sequences.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn appended(&self, end: i64, epoch: i32) -> Appended {
        Appended {
            partition: self.partition.clone(),
            end,
            epoch,
        }
    }

    /// Reads the whole log and keeps the latest value per key.
    pub fn replay(&self) -> Result<Replayed, LoadError> {
        let mut replayed = Replayed::default();
        let offsets = self.partition.offsets().map_err(|e| LoadError::Read {
            offset: 0,
            reason: e.to_string(),
        })?;
        let mut next = offsets.log_start;
        let mut records = 0u64;
        while next < offsets.log_end {
            let at = next;
            let read_error = |reason: String| LoadError::Read { offset: at, reason };
            let (bytes, _) = self
                .partition
                .read(next, REPLAY_CHUNK, ReadLimit::LogEnd)
                .map_err(|e| read_error(e.to_string()))?;
            if bytes.is_empty() {
                break;
            }
            for item in BatchIter::new(&bytes) {
                let (header, range) = item.map_err(|e| read_error(e.to_string()))?;
                next = header.last_offset() + 1;
                let (_, batch_records) =
                    decode_batch(&bytes.slice(range)).map_err(|e| read_error(e.to_string()))?;
                records += batch_records.len() as u64;
                replayed.apply_batch(&header, batch_records);
            }
        }
        tracing::info!(
            partition = self.partition.index,
            records,
            groups = replayed.groups.len(),
            offsets = replayed.offsets.len(),
            open_transactions = replayed.pending.len(),
            "replayed {OFFSETS_TOPIC}"
        );
        self.lock_sequences().clone_from(&replayed.producers);
        Ok(replayed)
    }
}

/// One uncompressed transactional batch of `records` (Kafka's `withTransactionalRecords`).
fn transactional_batch(
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records: &[Record],
) -> Result<Vec<u8>, GroupError> {
    let now = crate::broker::now_ms();
    let header = BatchHeader {
        base_offset: 0,
        batch_length: 0,
        partition_leader_epoch: -1,
        magic: MAGIC_V2,
        crc: 0,
        attributes: TRANSACTIONAL_ATTRIBUTE,
        last_offset_delta: i32::try_from(records.len().saturating_sub(1)).unwrap_or(i32::MAX),
        base_timestamp: now,
        max_timestamp: now,
        producer_id,
        producer_epoch,
        base_sequence,
        records_count: 0,
    };
    encode_batch(&header, records).map_err(|e| GroupError::Storage(e.to_string()))
}

fn append_error(error: PartitionError) -> GroupError {
    match error {
        PartitionError::Storage(StorageError::InvalidProducerEpoch { .. }) => {
            GroupError::InvalidProducerEpoch
        }
        PartitionError::NotLeader { .. } | PartitionError::Closed { .. } => {
            GroupError::NotCoordinator
        }
        other => GroupError::Storage(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::ownership_tests::{commit, committed, leading_everything, registry};
    use crate::group::{GroupConfig, GroupCoordinator};

    #[test]
    fn offsets_survive_a_restart_after_the_offsets_topic_is_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::from_u128(42);
        {
            let topics = registry(dir.path());
            let groups = std::sync::Arc::new(GroupCoordinator::new(GroupConfig::default()));
            leading_everything(&groups, &topics, id, 1);
            // Small segments, so the many commits below fill closed segments to compact.
            let mut config = offsets_topic_config();
            config.set("segment.bytes", "1024").unwrap();
            topics.set_config(OFFSETS_TOPIC, config).unwrap();
            for round in 0..200 {
                commit(&groups, "a", round % 3, i64::from(round));
                commit(&groups, "b", 0, 1000 + i64::from(round));
            }
            commit(&groups, "gone", 0, 5);
            groups.delete("gone").unwrap();
            let partition = topics.get(OFFSETS_TOPIC).unwrap().partition(0).unwrap();
            let outcome = partition.compact(crate::broker::now_ms()).unwrap().unwrap();
            assert!(
                outcome.records_after * 10 < outcome.records_before,
                "{outcome:?}"
            );
            topics.close_all();
        }
        let topics = registry(dir.path());
        let groups = std::sync::Arc::new(GroupCoordinator::new(GroupConfig::default()));
        leading_everything(&groups, &topics, id, 1);
        assert_eq!(committed(&groups, "a"), vec![(0, 198), (1, 199), (2, 197)]);
        assert_eq!(committed(&groups, "b"), vec![(0, 1199)]);
        assert!(committed(&groups, "gone").is_empty());
        assert!(groups.describe("gone").unwrap().is_none());
    }
}
