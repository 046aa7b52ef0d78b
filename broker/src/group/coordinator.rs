//! The coordinator for every group on this broker: one lock over all groups (requests are short
//! and never wait while holding it), parked JoinGroup/SyncGroup requests answered through
//! `oneshot` channels, durable state through [`OffsetsStore`], and a timer loop that expires
//! sessions and ends join phases.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::log_format::{
    encode_group, encode_key, encode_offset, RecordKey, StoredGroup, StoredMember,
};
use super::membership::{self, JoinRequest, Pending};
use super::state::{CommittedOffset, Group, GroupState, JoinReply, Member, SyncReply};
use super::store::{LoadError, OffsetsStore};
use super::{GroupConfig, GroupError};
use crate::broker::{now_ms, Broker};
use crate::cluster::topics::TopicRegistry;

/// How often timers are checked: session and rebalance timeouts are honoured to this precision.
const TICK: Duration = Duration::from_millis(50);

/// Committed offsets by topic, then partition (`None`: nothing committed).
pub type FetchedOffsets = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

/// One partition's result in OffsetCommit / OffsetDelete answers.
pub type PartitionResult = (String, i32, Result<(), GroupError>);

/// A group as DescribeGroups and ListGroups show it.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

pub struct GroupCoordinator {
    config: GroupConfig,
    groups: Mutex<HashMap<String, Group>>,
    store: OffsetsStore,
}

impl GroupCoordinator {
    /// Opens the offsets topic and rebuilds every group from it. Blocking.
    pub fn open(
        topics: &TopicRegistry,
        config: GroupConfig,
    ) -> Result<GroupCoordinator, LoadError> {
        let store = OffsetsStore::open(topics)?;
        let replayed = store.replay()?;
        let now = now_ms();
        let mut groups: HashMap<String, Group> = HashMap::new();
        for (id, stored) in replayed.groups {
            groups.insert(id.clone(), restore_group(&id, stored, now));
        }
        for ((group_id, topic, partition), offset) in replayed.offsets {
            groups
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(&group_id, now))
                .offsets
                .insert((topic, partition), offset);
        }
        Ok(GroupCoordinator {
            config,
            groups: Mutex::new(groups),
            store,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        // Group transitions never leave a half-updated group on panic paths worth refusing.
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the group's metadata if a transition asked for it.
    fn persist_if_needed(&self, group: &mut Group) {
        if !group.needs_persist {
            return;
        }
        group.needs_persist = false;
        let key = encode_key(&RecordKey::Group(group.id.clone()));
        let value = encode_group(&stored_group(group));
        if let Err(error) = self.store.append(&[(key, Some(value))]) {
            tracing::error!(group = %group.id, %error, "cannot persist group metadata");
        }
    }

    pub async fn join(&self, group_id: &str, request: JoinRequest) -> JoinReply {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let pending = {
            let mut groups = self.lock();
            let now = now_ms();
            if !groups.contains_key(group_id) && !request.member_id.is_empty() {
                return Err(GroupError::UnknownMemberId(request.member_id));
            }
            let group = groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id, now));
            let pending = membership::join(group, request, &self.config, now);
            self.persist_if_needed(group);
            pending
        };
        match pending {
            Pending::Now(reply) => reply,
            Pending::Later(rx) => rx.await.unwrap_or(Err(GroupError::CoordinatorNotAvailable(
                "the join was superseded",
            ))),
        }
    }

    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: HashMap<String, Bytes>,
    ) -> SyncReply {
        let pending = {
            let mut groups = self.lock();
            let Some(group) = groups.get_mut(group_id) else {
                return Err(GroupError::UnknownMemberId(member_id.to_string()));
            };
            let pending = membership::sync(
                group,
                member_id,
                instance_id,
                generation,
                assignments,
                now_ms(),
            );
            self.persist_if_needed(group);
            pending
        };
        match pending {
            Pending::Now(reply) => reply,
            Pending::Later(rx) => rx.await.unwrap_or(Err(GroupError::RebalanceInProgress)),
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        let mut groups = self.lock();
        let group = groups
            .get_mut(group_id)
            .ok_or_else(|| GroupError::UnknownMemberId(member_id.to_string()))?;
        membership::heartbeat(group, member_id, instance_id, generation, now_ms())
    }

    /// Removes members; one result per `(member id, instance id)`.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<String, GroupError>>, GroupError> {
        let mut groups = self.lock();
        let group = groups
            .get_mut(group_id)
            .ok_or_else(|| GroupError::UnknownMemberId(String::new()))?;
        let now = now_ms();
        let results = members
            .iter()
            .map(|(member, instance)| {
                membership::leave(group, member, instance.as_deref(), &self.config, now)
            })
            .collect();
        self.persist_if_needed(group);
        Ok(results)
    }

    /// Commits offsets for a group member (or, with generation < 0, for a group with no
    /// members that only stores offsets here). Returns a per-partition result.
    pub fn commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Vec<PartitionResult> {
        let all = |error: GroupError| -> Vec<PartitionResult> {
            offsets
                .iter()
                .map(|(t, p, _)| (t.clone(), *p, Err(error.clone())))
                .collect()
        };
        if group_id.is_empty() {
            return all(GroupError::InvalidGroupId);
        }
        let mut groups = self.lock();
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
        let records: Vec<(Bytes, Option<Bytes>)> = offsets
            .iter()
            .map(|(topic, partition, value)| {
                let key = RecordKey::Offset {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                };
                (encode_key(&key), Some(encode_offset(value)))
            })
            .collect();
        if let Err(error) = self.store.append(&records) {
            tracing::error!(group = %group_id, %error, "offset commit failed");
            return all(error);
        }
        offsets
            .into_iter()
            .map(|(topic, partition, value)| {
                group.offsets.insert((topic.clone(), partition), value);
                (topic, partition, Ok(()))
            })
            .collect()
    }

    /// Committed offsets of `group_id`: the requested partitions (missing ones as `None`), or
    /// every committed partition when `wanted` is `None`.
    pub fn fetch(&self, group_id: &str, wanted: Option<Vec<(String, Vec<i32>)>>) -> FetchedOffsets {
        let groups = self.lock();
        let committed = groups.get(group_id).map(|g| &g.offsets);
        let lookup = |topic: &str, partition: i32| {
            committed.and_then(|o| o.get(&(topic.to_string(), partition)).cloned())
        };
        match wanted {
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
        }
    }

    pub fn list(&self) -> Vec<GroupSummary> {
        let groups = self.lock();
        let mut list: Vec<GroupSummary> = groups.values().map(summary).collect();
        list.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        list
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupSummary> {
        self.lock().get(group_id).map(summary)
    }

    /// Deletes an empty group and its offsets (DeleteGroups).
    pub fn delete(&self, group_id: &str) -> Result<(), GroupError> {
        let mut groups = self.lock();
        let group = groups
            .get(group_id)
            .ok_or_else(|| GroupError::GroupIdNotFound(group_id.to_string()))?;
        if !group.is(GroupState::Empty) {
            return Err(GroupError::NonEmptyGroup(group_id.to_string()));
        }
        let mut tombstones: Vec<(Bytes, Option<Bytes>)> = group
            .offsets
            .keys()
            .map(|(topic, partition)| {
                let key = RecordKey::Offset {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                };
                (encode_key(&key), None)
            })
            .collect();
        tombstones.push((encode_key(&RecordKey::Group(group_id.to_string())), None));
        self.store.append(&tombstones)?;
        if let Some(mut group) = groups.remove(group_id) {
            group.state = GroupState::Dead;
        }
        tracing::info!(group = %group_id, "deleted group");
        Ok(())
    }

    /// Forgets committed offsets of partitions no member is subscribed to (OffsetDelete).
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<PartitionResult>, GroupError> {
        let mut groups = self.lock();
        let group = groups
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
        self.store.append(&tombstones)?;
        for (topic, partition, result) in &results {
            if result.is_ok() {
                group.offsets.remove(&(topic.clone(), *partition));
            }
        }
        Ok(results)
    }

    /// Advances every group's timers.
    pub fn tick(&self, now_ms: i64) {
        let mut groups = self.lock();
        for group in groups.values_mut() {
            group.tick(now_ms, self.config.initial_rebalance_delay_ms);
            self.persist_if_needed(group);
        }
    }

    /// Answers every parked request so connections can finish (broker shutdown).
    pub fn shutdown(&self) {
        for group in self.lock().values_mut() {
            group.fail_waiters(GroupError::CoordinatorNotAvailable(
                "the broker is shutting down",
            ));
        }
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

fn summary(group: &Group) -> GroupSummary {
    let protocol = group.protocol.clone().unwrap_or_default();
    let stable = group.is(GroupState::Stable);
    GroupSummary {
        group_id: group.id.clone(),
        state: group.state,
        protocol_type: group.protocol_type.clone().unwrap_or_default(),
        protocol: if stable {
            protocol.clone()
        } else {
            String::new()
        },
        members: group
            .members
            .values()
            .map(|m| {
                let (metadata, assignment) = if stable {
                    (m.metadata_for(&protocol), m.assignment.clone())
                } else {
                    (Bytes::new(), Bytes::new())
                };
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    metadata,
                    assignment,
                )
            })
            .collect(),
    }
}

fn stored_group(group: &Group) -> StoredGroup {
    let protocol = group.protocol.clone().unwrap_or_default();
    StoredGroup {
        protocol_type: group.protocol_type.clone().unwrap_or_default(),
        generation: group.generation,
        protocol: group.protocol.clone(),
        leader: group.leader.clone(),
        state_timestamp_ms: group.state_since_ms,
        members: group
            .members
            .values()
            .map(|m| StoredMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                subscription: m.metadata_for(&protocol),
                assignment: m.assignment.clone(),
            })
            .collect(),
    }
}

/// A group as it was at its last stored rebalance. Its members get a fresh session, as in Kafka:
/// those still alive keep heartbeating, the others expire after their session timeout.
fn restore_group(id: &str, stored: StoredGroup, now_ms: i64) -> Group {
    let mut group = Group::new(id, now_ms);
    group.generation = stored.generation;
    group.protocol_type = (!stored.protocol_type.is_empty()).then_some(stored.protocol_type);
    group.protocol = stored.protocol.clone();
    group.leader = stored.leader;
    let protocol = stored.protocol.unwrap_or_default();
    for m in stored.members {
        if let Some(instance) = &m.instance_id {
            group
                .static_members
                .insert(instance.clone(), m.member_id.clone());
        }
        group.members.insert(
            m.member_id.clone(),
            Member {
                id: m.member_id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocol_type: group.protocol_type.clone().unwrap_or_default(),
                protocols: vec![(protocol.clone(), m.subscription)],
                assignment: m.assignment,
                last_heartbeat_ms: now_ms,
                join_waiter: None,
                sync_waiter: None,
            },
        );
    }
    group.state = if group.members.is_empty() {
        GroupState::Empty
    } else {
        GroupState::Stable
    };
    group
}

/// Runs the coordinator's timers until `stop`; then answers parked requests so shutdown is quick.
pub async fn run_timers(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => broker.groups.tick(now_ms()),
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    broker.groups.shutdown();
}
