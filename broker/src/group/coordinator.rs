//! The coordinator for every group on this broker: one lock over all groups (requests are short
//! and never wait while holding it), parked JoinGroup/SyncGroup requests answered through
//! `oneshot` channels, durable state through [`OffsetsStore`], and a timer loop that expires
//! sessions and ends join phases.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::log_format::{encode_group, encode_key, RecordKey};
use super::membership::{self, JoinRequest, Pending};
use super::restore::{restore_group, stored_group, summary};
use super::state::{CommittedOffset, Group, GroupState, JoinReply, SyncReply};
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
    pub(super) config: GroupConfig,
    groups: Mutex<HashMap<String, Group>>,
    pub(super) store: OffsetsStore,
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

    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
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
