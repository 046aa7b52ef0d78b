//! What replaying one `__consumer_offsets` partition yields, batch by batch: the latest value of
//! every key, and the offsets of transactions still open at the end of the log.
//!
//! Transactional batches (TxnOffsetCommit) hold offsets that are *pending* until the control
//! batch (marker) of the same producer is replayed: a commit marker makes them the committed
//! offsets unless a plain commit was written after them (Kafka's `olderThan`, by log position),
//! an abort marker drops them. Offsets still pending at the end of the log stay pending: the
//! marker that completes them comes later, through `GroupCoordinator::complete_transaction`.

use std::collections::{BTreeMap, HashMap};

use bytes::{Buf, Bytes};
use inlet_protocol::batch::BatchHeader;
use inlet_protocol::records::Record;

use super::log_format::{decode_group, decode_key, decode_offset, RecordKey, StoredGroup};
use super::state::LoggedOffset;
use super::OFFSETS_TOPIC;

/// (group, topic, partition)
pub type OffsetKey = (String, String, i32);

/// Everything replay found.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Committed offsets, with where they were written.
    pub offsets: BTreeMap<OffsetKey, LoggedOffset>,
    /// Offsets of open transactions, by producer id.
    pub pending: BTreeMap<i64, BTreeMap<OffsetKey, LoggedOffset>>,
    pub groups: BTreeMap<String, StoredGroup>,
    /// KIP-848 consumer groups' records, by group.
    pub consumer_groups: BTreeMap<String, super::consumer::records::Stored>,
    /// The last (epoch, sequence) of each producer's transactional batches, so the coordinator
    /// continues their sequences (see `OffsetsStore::append_transactional`).
    pub producers: HashMap<i64, (i16, i32)>,
}

/// Control record type of a commit marker (Kafka's `ControlRecordType.COMMIT`; 0 is ABORT).
const COMMIT_MARKER: i16 = 1;
const ABORT_MARKER: i16 = 0;

impl Replayed {
    /// Applies one batch of the log. Records this broker cannot parse are logged and skipped, so
    /// one bad record cannot keep the broker from starting.
    pub fn apply_batch(&mut self, header: &BatchHeader, records: Vec<Record>) {
        if header.is_control() {
            let Some(record) = records.into_iter().next() else {
                return;
            };
            match control_type(record.key) {
                Some(COMMIT_MARKER) => self.complete(header.producer_id, true),
                Some(ABORT_MARKER) => self.complete(header.producer_id, false),
                other => tracing::warn!(
                    ?other,
                    producer_id = header.producer_id,
                    "skipping an unknown control record in {OFFSETS_TOPIC}"
                ),
            }
            return;
        }
        if header.has_producer_id() {
            self.producers.insert(
                header.producer_id,
                (header.producer_epoch, header.last_sequence()),
            );
        }
        let transactional = header.is_transactional().then_some(header.producer_id);
        for record in records {
            let position = header.base_offset + i64::from(record.offset_delta);
            self.apply(transactional, position, record.key, record.value);
        }
    }

    /// A marker of `producer_id`: its pending offsets become committed ones or are dropped.
    pub fn complete(&mut self, producer_id: i64, commit: bool) {
        let Some(pending) = self.pending.remove(&producer_id) else {
            return;
        };
        if !commit {
            return;
        }
        for (key, logged) in pending {
            let newer = self
                .offsets
                .get(&key)
                .is_none_or(|current| current.position < logged.position);
            if newer {
                self.offsets.insert(key, logged);
            }
        }
    }

    fn apply(
        &mut self,
        transactional: Option<i64>,
        position: i64,
        key: Option<Bytes>,
        value: Option<Bytes>,
    ) {
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
                    let key = (group, topic, partition);
                    let logged = LoggedOffset { offset, position };
                    match transactional {
                        Some(producer_id) => {
                            self.pending
                                .entry(producer_id)
                                .or_default()
                                .insert(key, logged);
                        }
                        None => {
                            self.offsets.insert(key, logged);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, %group, %topic, partition,
                        "skipping an unreadable offset");
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
                // OffsetDelete and expiry remove the pending offsets of the partition too.
                let key = (group, topic, partition);
                self.offsets.remove(&key);
                self.drop_pending(|k| *k == key);
            }
            (RecordKey::Group(group), Some(value)) => match decode_group(value) {
                Ok(stored) => {
                    self.groups.insert(group, stored);
                }
                Err(error) => tracing::warn!(%error, %group, "skipping unreadable group metadata"),
            },
            (RecordKey::Consumer(key), value) => {
                let group = key.group.clone();
                let stored = self.consumer_groups.entry(group.clone()).or_default();
                match value {
                    Some(value) => {
                        stored.records.insert(key, value);
                    }
                    None => {
                        stored.records.remove(&key);
                    }
                }
                if stored.records.is_empty() {
                    self.consumer_groups.remove(&group);
                }
            }
            (RecordKey::Group(group), None) => {
                self.groups.remove(&group);
                self.consumer_groups.remove(&group);
                self.offsets.retain(|(g, _, _), _| *g != group);
                self.drop_pending(|(g, _, _)| *g == group);
            }
        }
    }

    fn drop_pending(&mut self, matches: impl Fn(&OffsetKey) -> bool) {
        for pending in self.pending.values_mut() {
            pending.retain(|k, _| !matches(k));
        }
        self.pending.retain(|_, pending| !pending.is_empty());
    }
}

/// The type of a control record (key: version i16, type i16).
fn control_type(key: Option<Bytes>) -> Option<i16> {
    let mut key = key?;
    if key.remaining() < 4 {
        return None;
    }
    let _version = key.get_i16();
    Some(key.get_i16())
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
