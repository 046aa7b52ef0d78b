//! One `__consumer_offsets` partition as the durable state of the groups it holds: appended to
//! on every offset commit and completed rebalance, and replayed from start to end when this
//! broker becomes the partition's leader (see `ownership`). The topic itself is created through
//! the controller like any other (`ensure_offsets_topic`), with `cleanup.policy=compact`.
//!
//! A commit is acknowledged after its batch is in the partition log, with the same durability as
//! an `acks=1` produce: the bytes are in the page cache at once (a killed process loses nothing)
//! and on disk per the topic's flush policy.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use inlet_protocol::batch::BatchIter;
use inlet_protocol::records::{decode_batch, simple_batch};

use super::log_format::{decode_group, decode_key, decode_offset, RecordKey, StoredGroup};
use super::state::CommittedOffset;
use super::{GroupError, OFFSETS_TOPIC};
use crate::cluster::partition::{Partition, ReadLimit};
use crate::cluster::topic_config::TopicConfig;

/// Segment size of the offsets topic: small, so compaction has closed segments to clean early.
const OFFSETS_SEGMENT_BYTES: &str = "16777216";
/// How much of the log one replay read asks for.
const REPLAY_CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot open {OFFSETS_TOPIC}: {0}")]
    Topic(#[from] crate::cluster::topics::TopicError),
    #[error("cannot read {OFFSETS_TOPIC} at offset {offset}: {reason}")]
    Read { offset: i64, reason: String },
}

/// Everything replay found: the latest value of every key.
#[derive(Debug, Default)]
pub struct Replayed {
    pub offsets: BTreeMap<(String, String, i32), CommittedOffset>,
    pub groups: BTreeMap<String, StoredGroup>,
}

/// One partition of the offsets topic; cheap to clone.
#[derive(Clone)]
pub struct OffsetsStore {
    partition: Arc<Partition>,
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
        OffsetsStore { partition }
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
                for record in batch_records {
                    records += 1;
                    apply(&mut replayed, record.key, record.value);
                }
            }
        }
        tracing::info!(
            partition = self.partition.index,
            records,
            groups = replayed.groups.len(),
            offsets = replayed.offsets.len(),
            "replayed {OFFSETS_TOPIC}"
        );
        Ok(replayed)
    }
}

/// Applies one record; records this broker cannot parse are logged and skipped, so one bad
/// record cannot keep the broker from starting.
fn apply(replayed: &mut Replayed, key: Option<Bytes>, value: Option<Bytes>) {
    let Some(key) = key else { return };
    let key = match decode_key(key) {
        Ok(key) => key,
        Err(error) => {
            tracing::warn!(%error, "skipping an unreadable key in {OFFSETS_TOPIC}");
            return;
        }
    };
    match (key, value) {
        (
            RecordKey::Offset {
                group,
                topic,
                partition,
            },
            Some(value),
        ) => match decode_offset(value) {
            Ok(offset) => {
                replayed.offsets.insert((group, topic, partition), offset);
            }
            Err(error) => {
                tracing::warn!(%error, %group, %topic, partition, "skipping an unreadable offset")
            }
        },
        (
            RecordKey::Offset {
                group,
                topic,
                partition,
            },
            None,
        ) => {
            replayed.offsets.remove(&(group, topic, partition));
        }
        (RecordKey::Group(group), Some(value)) => match decode_group(value) {
            Ok(stored) => {
                replayed.groups.insert(group, stored);
            }
            Err(error) => tracing::warn!(%error, %group, "skipping unreadable group metadata"),
        },
        (RecordKey::Group(group), None) => {
            replayed.groups.remove(&group);
            replayed.offsets.retain(|(g, _, _), _| *g != group);
        }
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
