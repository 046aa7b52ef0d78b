//! Offsets committed inside transactions (KIP-98's TxnOffsetCommit, KIP-447's stable offsets).
//!
//! A TxnOffsetCommit is written to the group's `__consumer_offsets` partition at once, as a
//! transactional batch of the producer, but stays *pending* (per group and producer id, Kafka's
//! `pendingTransactionalOffsetCommits`) until the transaction's marker lands on that partition:
//! [`GroupCoordinator::complete_transaction`] then makes the offsets the committed ones (unless a
//! plain commit was written after them) or drops them. OffsetFetch never shows pending offsets,
//! and with `require_stable` answers UNSTABLE_OFFSET_COMMIT for a partition that has some.

use std::collections::BTreeSet;

use super::coordinator::{FetchedOffsets, GroupCoordinator, Inner, Led, PartitionResult};
use super::membership;
use super::offsets::{offset_records, refuse_all};
use super::state::{CommittedOffset, Group, GroupState, LoggedOffset};
use super::store::Appended;
use super::GroupError;
use crate::broker::now_ms;
use crate::metadata::image::MetadataImage;

/// Who sends a TxnOffsetCommit: the transaction's producer and, from v3, the consumer's group
/// membership (KIP-447), checked as OffsetCommit checks it.
#[derive(Debug, Clone)]
pub struct TxnCommitter {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// -1 (and an empty member id) before v3 or outside group management.
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
}

impl Group {
    /// Records an offset committed outside any transaction, written at log offset `position`.
    pub fn set_committed(&mut self, topic: &str, partition: i32, logged: LoggedOffset) {
        let key = (topic.to_string(), partition);
        self.offset_positions.insert(key.clone(), logged.position);
        self.offsets.insert(key, logged.offset);
    }

    /// Records an offset of `producer_id`'s open transaction.
    pub fn add_pending(
        &mut self,
        producer_id: i64,
        topic: &str,
        partition: i32,
        logged: LoggedOffset,
    ) {
        self.pending_txn
            .entry(producer_id)
            .or_default()
            .insert((topic.to_string(), partition), logged);
    }

    /// Ends `producer_id`'s transaction for this group (Kafka's
    /// `completePendingTxnOffsetCommit`): on commit each pending offset becomes the committed
    /// one unless the committed one was written later; on abort they are dropped. Returns how
    /// many offsets were pending.
    pub fn complete_pending(&mut self, producer_id: i64, commit: bool) -> usize {
        let Some(pending) = self.pending_txn.remove(&producer_id) else {
            return 0;
        };
        let count = pending.len();
        if commit {
            for ((topic, partition), logged) in pending {
                let key = (topic, partition);
                let current = self.offset_positions.get(&key).copied();
                let has_current = self.offsets.contains_key(&key);
                // A committed offset without a known position predates this broker's load.
                if !has_current || current.is_none_or(|at| at < logged.position) {
                    self.offset_positions.insert(key.clone(), logged.position);
                    self.offsets.insert(key, logged.offset);
                }
            }
        }
        count
    }

    /// Whether an open transaction holds an offset for the partition.
    pub fn has_pending(&self, topic: &str, partition: i32) -> bool {
        let key = (topic.to_string(), partition);
        self.pending_txn.values().any(|p| p.contains_key(&key))
    }

    /// Forgets a partition's committed and pending offsets (OffsetDelete).
    pub fn remove_offset(&mut self, topic: &str, partition: i32) {
        let key = (topic.to_string(), partition);
        self.offsets.remove(&key);
        self.offset_positions.remove(&key);
        for pending in self.pending_txn.values_mut() {
            pending.remove(&key);
        }
        self.pending_txn.retain(|_, p| !p.is_empty());
    }
}

/// Kafka's `validateOffsetCommit` for transactional commits: a group with no generation accepts
/// them; a request naming a member or a generation must name the current ones. Unlike plain
/// commits, a non-empty group accepts commits without a member (pre-v3 clients send none).
pub fn check_txn_commit(group: &Group, who: &TxnCommitter) -> Result<(), GroupError> {
    if group.is(GroupState::Dead) {
        return Err(GroupError::CoordinatorNotAvailable(
            "the group is being deleted",
        ));
    }
    if let Some(consumer) = &group.consumer {
        // A consumer (KIP-848) group: the member at its epoch; TxnOffsetCommit has no
        // STALE_MEMBER_EPOCH, so a wrong epoch is ILLEGAL_GENERATION (as Kafka answers).
        if who.generation < 0 && who.member_id.is_empty() {
            return Ok(());
        }
        return match consumer.check_commit(&who.member_id, who.generation) {
            Err(GroupError::StaleMemberEpoch) => Err(GroupError::IllegalGeneration {
                received: who.generation,
                current: consumer
                    .members
                    .get(&who.member_id)
                    .map_or(-1, |m| m.reconciliation.member_epoch),
            }),
            other => other,
        };
    }
    if who.generation < 0 && group.is(GroupState::Empty) {
        return Ok(());
    }
    if who.generation >= 0 || !who.member_id.is_empty() || who.instance_id.is_some() {
        membership::check_member(group, &who.member_id, who.instance_id.as_deref())?;
        if who.generation != group.generation {
            return Err(GroupError::IllegalGeneration {
                received: who.generation,
                current: group.generation,
            });
        }
    }
    Ok(())
}

impl GroupCoordinator {
    /// TxnOffsetCommit: writes `offsets` as one transactional batch of the producer and keeps
    /// them pending until [`GroupCoordinator::complete_transaction`]. A group not known yet is
    /// created empty, as Kafka does.
    pub fn txn_commit(
        &self,
        group_id: &str,
        who: &TxnCommitter,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> (Vec<PartitionResult>, Option<Appended>) {
        let all = |error: GroupError| refuse_all(&offsets, error);
        let mut inner = self.lock();
        let store = match inner.store_for(group_id) {
            Ok(store) => store,
            Err(error) => return all(error),
        };
        let now = now_ms();
        let group = inner
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, now));
        if let Err(error) = check_txn_commit(group, who) {
            return all(error);
        }
        if let Some(member) = group.members.get_mut(&who.member_id) {
            member.last_heartbeat_ms = now;
        }
        let records = offset_records(group_id, &offsets);
        if records.is_empty() {
            return (Vec::new(), None);
        }
        let (first, appended) =
            match store.append_transactional(who.producer_id, who.producer_epoch, &records) {
                Ok(written) => written,
                Err(error) => {
                    tracing::warn!(group = %group_id, producer_id = who.producer_id, %error,
                        "transactional offset commit failed");
                    return all(error);
                }
            };
        let results = offsets
            .into_iter()
            .zip(first..)
            .map(|((topic, partition, offset), position)| {
                group.add_pending(
                    who.producer_id,
                    &topic,
                    partition,
                    LoggedOffset { offset, position },
                );
                (topic, partition, Ok(()))
            })
            .collect();
        tracing::debug!(group = %group_id, producer_id = who.producer_id,
            "pending transactional offsets");
        (results, Some(appended))
    }

    /// Called after a transaction marker of `producer_id` was appended to `__consumer_offsets`
    /// partition `partition`: completes that producer's pending offsets in every group of the
    /// partition (commit: visible to OffsetFetch unless a later plain commit exists; abort:
    /// dropped). On a partition still being replayed the marker may be past what replay read,
    /// so it is applied once the groups are installed: no TxnOffsetCommit is written meanwhile
    /// (they answer COORDINATOR_LOAD_IN_PROGRESS), so it can only complete the transaction it
    /// ended. A partition not led here is left alone: its next load replays the marker.
    pub fn complete_transaction(&self, partition: i32, producer_id: i64, commit: bool) {
        let mut inner = self.lock();
        match inner.led.get(&partition) {
            Some(Led::Loaded(_)) => {
                let completed = inner.complete_in_partition(partition, producer_id, commit);
                tracing::debug!(
                    partition,
                    producer_id,
                    commit,
                    completed,
                    "transaction completed in the group coordinator"
                );
            }
            Some(Led::Loading(_)) => inner
                .completed_while_loading
                .entry(partition)
                .or_default()
                .push((producer_id, commit)),
            None => {}
        }
    }

    /// OffsetFetch with KIP-447's `require_stable`: the committed offsets (as
    /// [`GroupCoordinator::fetch`]) and the partitions among them with pending transactional
    /// offsets, which answer UNSTABLE_OFFSET_COMMIT when the client requires stable offsets.
    pub fn fetch_stable(
        &self,
        group_id: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<(FetchedOffsets, BTreeSet<(String, i32)>), GroupError> {
        let inner = self.lock();
        let fetched = Self::fetch_locked(&inner, group_id, wanted)?;
        let unstable = match inner.groups.get(group_id) {
            Some(group) => fetched
                .iter()
                .flat_map(|(topic, partitions)| {
                    partitions
                        .iter()
                        .filter(|(p, _)| group.has_pending(topic, *p))
                        .map(|(p, _)| (topic.clone(), *p))
                })
                .collect(),
            None => BTreeSet::new(),
        };
        Ok((fetched, unstable))
    }
}

impl Inner {
    /// Completes `producer_id`'s pending offsets in the groups of `partition`; how many.
    fn complete_in_partition(&mut self, partition: i32, producer_id: i64, commit: bool) -> usize {
        let Some((_, count)) = self.topic else {
            return 0;
        };
        self.groups
            .values_mut()
            .filter(|g| MetadataImage::offsets_partition_for(&g.id, count) == partition)
            .map(|g| g.complete_pending(producer_id, commit))
            .sum()
    }

    /// Applies the markers written while `partition` was replayed, in order.
    pub(super) fn apply_completions_of_load(&mut self, partition: i32) {
        for (producer_id, commit) in self
            .completed_while_loading
            .remove(&partition)
            .unwrap_or_default()
        {
            self.complete_in_partition(partition, producer_id, commit);
        }
    }
}

#[cfg(test)]
#[path = "txn_offsets_tests.rs"]
mod tests;
