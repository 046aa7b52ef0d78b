//! One `__transaction_state` partition as the durable state of the transactional ids it holds:
//! one record per state change, replayed from start to end when this broker becomes the
//! partition's leader (see `ownership`). A change counts only once the in-sync replicas have it
//! ([`Appended::replicated`]), as Kafka's coordinator writes with acks=all.
//!
//! The topic is created lazily through the controller ([`ensure_txn_topic`]), compacted, with
//! `transaction.state.log.num.partitions` partitions and min(3, live brokers) replicas.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use inlet_protocol::batch::BatchIter;
use inlet_protocol::records::{decode_batch, simple_batch};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::log_format::{decode_key, decode_value, encode_key, encode_value};
use super::state::{TxnMetadata, TxnState};
use super::{TxnError, TRANSACTION_STATE_TOPIC};
use crate::broker::Broker;
use crate::cluster::partition::{Partition, ReadLimit};
use crate::cluster::topic_config::TopicConfig;
use crate::controller::commands::ControllerCommand;

/// Replication factor Kafka uses (`transaction.state.log.replication.factor`), capped at the
/// live brokers.
const REPLICATION_FACTOR: i16 = 3;
const SEGMENT_BYTES: &str = "104857600";
const REPLAY_CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[error("cannot read {TRANSACTION_STATE_TOPIC} at offset {offset}: {reason}")]
pub struct LoadError {
    pub offset: i64,
    pub reason: String,
}

/// One partition of the transaction state topic; cheap to clone.
#[derive(Clone)]
pub struct TxnStore {
    partition: Arc<Partition>,
}

/// A write to the state partition, durable once the high watermark reaches `end` while the
/// partition is still led at `epoch`.
pub struct Appended {
    pub partition: Arc<Partition>,
    pub end: i64,
    pub epoch: i32,
}

impl Appended {
    /// Waits until the in-sync replicas have the write, at most `timeout`.
    pub async fn replicated(&self, timeout: Duration) -> Result<(), TxnError> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.partition
            .wait_for_high_watermark(self.end, self.epoch, deadline)
            .await
            .map_err(|code| match code {
                ResponseError::NotLeaderOrFollower => TxnError::NotCoordinator,
                _ => TxnError::CoordinatorNotAvailable("the state partition is not replicated"),
            })
    }
}

impl TxnStore {
    pub fn new(partition: Arc<Partition>) -> TxnStore {
        TxnStore { partition }
    }

    /// Whether this store writes to `partition` (and not to a log since deleted or re-created).
    pub fn writes_to(&self, partition: &Arc<Partition>) -> bool {
        Arc::ptr_eq(&self.partition, partition)
    }

    pub fn index(&self) -> i32 {
        self.partition.index
    }

    /// The coordinator epoch: the partition's leader epoch, stamped in the markers so that a
    /// deposed coordinator's late markers are recognisable.
    pub fn coordinator_epoch(&self) -> i32 {
        self.partition.leader_epoch()
    }

    /// Writes `m` (a tombstone when it is Dead).
    pub fn write(&self, m: &TxnMetadata) -> Result<Appended, TxnError> {
        let value = (m.state != TxnState::Dead).then(|| encode_value(m));
        let records = [(Some(encode_key(&m.transactional_id)), value)];
        let epoch = self.partition.leader_epoch();
        let mut batch = simple_batch(0, crate::broker::now_ms(), &records)
            .map_err(|e| TxnError::Storage(e.to_string()))?;
        let outcome = self
            .partition
            .append(batch.as_mut_slice())
            .map_err(|e| TxnError::Storage(e.to_string()))?;
        Ok(Appended {
            partition: self.partition.clone(),
            end: outcome.last_offset + 1,
            epoch,
        })
    }

    /// Reads the whole log and keeps the latest state of every id.
    pub fn replay(&self) -> Result<BTreeMap<String, TxnMetadata>, LoadError> {
        let mut ids = BTreeMap::new();
        let offsets = self.partition.offsets().map_err(|e| LoadError {
            offset: 0,
            reason: e.to_string(),
        })?;
        let mut next = offsets.log_start;
        while next < offsets.log_end {
            let at = next;
            let fail = |reason: String| LoadError { offset: at, reason };
            let (bytes, _) = self
                .partition
                .read(next, REPLAY_CHUNK, ReadLimit::LogEnd)
                .map_err(|e| fail(e.to_string()))?;
            if bytes.is_empty() {
                break;
            }
            for item in BatchIter::new(&bytes) {
                let (header, range) = item.map_err(|e| fail(e.to_string()))?;
                next = header.last_offset() + 1;
                if header.is_control() {
                    continue;
                }
                let (_, records) =
                    decode_batch(&bytes.slice(range)).map_err(|e| fail(e.to_string()))?;
                for record in records {
                    apply(&mut ids, record.key, record.value);
                }
            }
        }
        tracing::info!(
            partition = self.partition.index,
            ids = ids.len(),
            "replayed {TRANSACTION_STATE_TOPIC}"
        );
        Ok(ids)
    }
}

/// Applies one record; unreadable records are logged and skipped, so one bad record cannot keep
/// the coordinator from loading.
fn apply(ids: &mut BTreeMap<String, TxnMetadata>, key: Option<Bytes>, value: Option<Bytes>) {
    let Some(key) = key else { return };
    let id = match decode_key(key) {
        Ok(id) => id,
        Err(error) => {
            tracing::warn!(%error, "skipping an unreadable key in {TRANSACTION_STATE_TOPIC}");
            return;
        }
    };
    match value {
        None => {
            ids.remove(&id);
        }
        Some(value) => match decode_value(&id, value) {
            Ok(m) => {
                ids.insert(id, m);
            }
            Err(error) => {
                tracing::warn!(%error, transactional_id = %id, "skipping an unreadable state")
            }
        },
    }
}

/// The topic's configuration: compacted, and min.insync.replicas 2 with 3 replicas (Kafka's
/// `transaction.state.log.min.isr`).
pub fn txn_topic_configs(replication_factor: i16) -> BTreeMap<String, String> {
    let mut configs: BTreeMap<String, String> = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", SEGMENT_BYTES),
        ("retention.ms", "-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if replication_factor >= 3 {
        configs.insert("min.insync.replicas".into(), "2".into());
    }
    configs
}

/// The local configuration of the topic (for tests and replay).
pub fn txn_topic_config() -> TopicConfig {
    let mut config = TopicConfig::default();
    for (key, value) in txn_topic_configs(1) {
        if let Err(error) = config.set(&key, &value) {
            tracing::error!(%error, "transaction state topic config");
        }
    }
    config
}

/// Makes sure the cluster has `__transaction_state`, creating it through the controller when it
/// is missing (from FindCoordinator or InitProducerId, as Kafka creates it lazily).
pub async fn ensure_txn_topic(broker: &Broker) -> Result<(), (ResponseError, String)> {
    if broker
        .controller
        .image()
        .topic(TRANSACTION_STATE_TOPIC)
        .is_some()
    {
        return Ok(());
    }
    let _one_at_a_time = broker.txns.creating.lock().await;
    let image = broker.controller.image();
    if image.topic(TRANSACTION_STATE_TOPIC).is_some() {
        return Ok(());
    }
    broker.check_room_for_new_logs()?;
    let live = i16::try_from(image.live_brokers().count()).unwrap_or(i16::MAX);
    let replication_factor = REPLICATION_FACTOR.min(live).max(1);
    let partitions = broker.config.transaction_state_log_num_partitions.max(1);
    let command = ControllerCommand::CreateTopic {
        name: TRANSACTION_STATE_TOPIC.to_string(),
        topic_id: Uuid::new_v4(),
        partitions,
        replication_factor,
        assignments: None,
        configs: txn_topic_configs(replication_factor),
        validate_only: false,
    };
    match broker.propose(&command).await {
        Ok(_) => {
            tracing::info!(
                partitions,
                replication_factor,
                "created {TRANSACTION_STATE_TOPIC}"
            );
            Ok(())
        }
        Err((ResponseError::TopicAlreadyExists, _)) => Ok(()),
        Err(refused) => Err(refused),
    }
}
