//! Committed offsets: OffsetCommit (who may commit in which group state, as Kafka decides),
//! OffsetFetch and OffsetDelete. Every change is written to `__consumer_offsets` before the
//! in-memory map is updated, and a commit is acknowledged once the offsets partition's in-sync
//! replicas have it, so an acknowledged commit survives a crash and a coordinator move.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::coordinator::{FetchedOffsets, GroupCoordinator, Inner, PartitionResult};
use super::log_format::{encode_key, encode_offset, RecordKey};
use super::membership;
use super::state::{CommittedOffset, Group, GroupState, LoggedOffset};
use super::store::Appended;
use super::GroupError;
use crate::broker::now_ms;

impl GroupCoordinator {
    /// Commits offsets for a group member (or, with generation < 0, for a group with no
    /// members that only stores offsets here). Returns a per-partition result.
    pub fn commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> (Vec<PartitionResult>, Option<Appended>) {
        let all = |error: GroupError| refuse_all(&offsets, error);
        let mut inner = self.lock();
        let store = match inner.store_for(group_id) {
            Ok(store) => store,
            Err(error) => return all(error),
        };
        let groups = &mut inner.groups;
        let now = now_ms();
        if !groups.contains_key(group_id) {
            if generation >= 0 {
                return all(GroupError::IllegalGeneration {
                    received: generation,
                    current: -1,
                });
            }
            groups.insert(group_id.to_string(), Group::new(group_id, now));
        }
        let Some(group) = groups.get_mut(group_id) else {
            return all(GroupError::CoordinatorNotAvailable("group vanished"));
        };
        if let Err(error) = check_commit(group, generation, member_id, instance_id) {
            return all(error);
        }
        if let Some(member) = group.members.get_mut(member_id) {
            member.last_heartbeat_ms = now;
        }
        let records = offset_records(group_id, &offsets);
        let appended = match store.append(&records) {
            Ok(appended) => appended,
            Err(error) => {
                tracing::error!(group = %group_id, %error, "offset commit failed");
                return all(error);
            }
        };
        // One record per offset, in order, ending just before `appended.end`.
        let first = appended.end - offsets.len() as i64;
        let results = offsets
            .into_iter()
            .zip(first..)
            .map(|((topic, partition, offset), position)| {
                group.set_committed(&topic, partition, LoggedOffset { offset, position });
                (topic, partition, Ok(()))
            })
            .collect();
        (results, Some(appended))
    }

    /// Committed offsets of `group_id`: the requested partitions (missing ones as `None`), or
    /// every committed partition when `wanted` is `None`.
    pub fn fetch(
        &self,
        group_id: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<FetchedOffsets, GroupError> {
        Self::fetch_locked(&self.lock(), group_id, wanted)
    }

    pub(super) fn fetch_locked(
        inner: &Inner,
        group_id: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<FetchedOffsets, GroupError> {
        inner.store_for(group_id)?;
        let committed = inner.groups.get(group_id).map(|g| &g.offsets);
        let lookup = |topic: &str, partition: i32| {
            committed.and_then(|o| o.get(&(topic.to_string(), partition)).cloned())
        };
        Ok(match wanted {
            Some(wanted) => wanted
                .into_iter()
                .map(|(topic, partitions)| {
                    let found = partitions.iter().map(|&p| (p, lookup(&topic, p))).collect();
                    (topic, found)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>> =
                    BTreeMap::new();
                for ((topic, partition), offset) in committed.into_iter().flatten() {
                    by_topic
                        .entry(topic.clone())
                        .or_default()
                        .push((*partition, Some(offset.clone())));
                }
                by_topic.into_iter().collect()
            }
        })
    }

    /// Forgets committed offsets of partitions no member is subscribed to (OffsetDelete).
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<PartitionResult>, GroupError> {
        let mut inner = self.lock();
        let store = inner.store_for(group_id)?;
        let group = inner
            .groups
            .get_mut(group_id)
            .ok_or_else(|| GroupError::GroupIdNotFound(group_id.to_string()))?;
        let subscribed = subscribed_topics(group);
        let mut results = Vec::new();
        let mut tombstones = Vec::new();
        for (topic, partition) in partitions {
            if subscribed.contains(&topic) {
                results.push((
                    topic.clone(),
                    partition,
                    Err(GroupError::GroupSubscribedToTopic(topic)),
                ));
                continue;
            }
            if group.offsets.contains_key(&(topic.clone(), partition)) {
                let key = RecordKey::Offset {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition,
                };
                tombstones.push((encode_key(&key), None));
            }
            results.push((topic, partition, Ok(())));
        }
        store.append(&tombstones)?;
        for (topic, partition, result) in &results {
            if result.is_ok() {
                group.remove_offset(topic, *partition);
            }
        }
        Ok(results)
    }
}

/// Kafka's OffsetCommit rules for who may commit in which state.
fn check_commit(
    group: &Group,
    generation: i32,
    member_id: &str,
    instance_id: Option<&str>,
) -> Result<(), GroupError> {
    if group.is(GroupState::Dead) {
        return Err(GroupError::CoordinatorNotAvailable(
            "the group is being deleted",
        ));
    }
    if let Some(consumer) = &group.consumer {
        // Kafka's `ConsumerGroup.validateOffsetCommit`: a commit from outside the group (epoch
        // < 0) only while it has no members; a member commits at its current epoch.
        if generation < 0 && consumer.members.is_empty() {
            return Ok(());
        }
        return consumer.check_commit(member_id, generation);
    }
    if generation < 0 && group.is(GroupState::Empty) {
        return Ok(());
    }
    membership::check_member(group, member_id, instance_id)?;
    if group.is(GroupState::CompletingRebalance) {
        return Err(GroupError::RebalanceInProgress);
    }
    if generation != group.generation {
        return Err(GroupError::IllegalGeneration {
            received: generation,
            current: group.generation,
        });
    }
    Ok(())
}

/// Topics the members' subscriptions name (consumer protocol metadata v0+: version i16, then an
/// array of topic strings).
fn subscribed_topics(group: &Group) -> Vec<String> {
    if let Some(consumer) = &group.consumer {
        // Topics matched by a member's regex are in the subscribed metadata.
        let mut topics: Vec<String> = consumer.subscribed_metadata.keys().cloned().collect();
        for member in consumer.members.values() {
            topics.extend(member.subscribed_names.iter().cloned());
        }
        return topics;
    }
    let protocol = group.protocol.clone().unwrap_or_default();
    let mut topics = Vec::new();
    for member in group.members.values() {
        let metadata = member.metadata_for(&protocol);
        let mut at = 2;
        let read_i32 = |b: &[u8], at: usize| {
            b.get(at..at + 4)
                .map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        };
        let Some(count) = read_i32(&metadata, at) else {
            continue;
        };
        at += 4;
        for _ in 0..count.max(0) {
            let Some(len) = metadata
                .get(at..at + 2)
                .map(|s| i16::from_be_bytes([s[0], s[1]]))
            else {
                break;
            };
            at += 2;
            let Some(name) = metadata.get(at..at + len.max(0) as usize) else {
                break;
            };
            topics.push(String::from_utf8_lossy(name).into_owned());
            at += len.max(0) as usize;
        }
    }
    topics
}

/// A commit refused as a whole: every partition gets `error`, nothing is written.
pub(super) fn refuse_all(
    offsets: &[(String, i32, CommittedOffset)],
    error: GroupError,
) -> (Vec<PartitionResult>, Option<Appended>) {
    let results = offsets
        .iter()
        .map(|(t, p, _)| (t.clone(), *p, Err(error.clone())))
        .collect();
    (results, None)
}

/// The `__consumer_offsets` records (key, value) of a group's commit, one per partition.
pub(super) fn offset_records(
    group_id: &str,
    offsets: &[(String, i32, CommittedOffset)],
) -> Vec<(Bytes, Option<Bytes>)> {
    offsets
        .iter()
        .map(|(topic, partition, value)| {
            let key = RecordKey::Offset {
                group: group_id.to_string(),
                topic: topic.clone(),
                partition: *partition,
            };
            (encode_key(&key), Some(encode_offset(value)))
        })
        .collect()
}
