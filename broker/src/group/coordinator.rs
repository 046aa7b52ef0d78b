//! The coordinator for the groups of the `__consumer_offsets` partitions this broker leads: one
//! lock over those groups and the partitions they live in (requests are short and never wait
//! while holding it), parked JoinGroup/SyncGroup requests answered through `oneshot` channels,
//! durable state through each group's [`OffsetsStore`], and a timer loop that expires sessions
//! and ends join phases. Which partitions are led here is [`super::ownership`]'s business; a
//! request for a group of another partition is refused with NOT_COORDINATOR.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::log_format::{encode_group, encode_key, RecordKey};
use super::membership::{self, JoinRequest, Pending};
use super::restore::{stored_group, summary};
use super::state::{CommittedOffset, Group, GroupState, JoinReply, SyncReply};
use super::store::OffsetsStore;
use super::{GroupConfig, GroupError};
use crate::broker::{now_ms, Broker};
use crate::metadata::image::MetadataImage;

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
    /// "classic" or "consumer" (KIP-848).
    pub group_type: &'static str,
    /// The state as ListGroups names it (a consumer group's own states).
    pub state_name: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

pub struct GroupCoordinator {
    pub config: GroupConfig,
    inner: Mutex<Inner>,
    /// One creation of `__consumer_offsets` at a time (many clients look for coordinators at once).
    pub(super) creating: tokio::sync::Mutex<()>,
}

/// The groups this broker coordinates and the offsets partitions they are stored in.
#[derive(Default)]
pub(super) struct Inner {
    pub groups: HashMap<String, Group>,
    /// `__consumer_offsets` as last applied: its id and partition count (None until it exists).
    pub topic: Option<(uuid::Uuid, i32)>,
    /// The partitions this broker leads, by index.
    pub led: HashMap<i32, Led>,
    /// The leader epoch at which each led partition was (or is being) loaded: a new epoch means
    /// the leadership was lost and regained meanwhile, and the log may have changed.
    pub epochs: HashMap<i32, i32>,
    /// Number of the last load started.
    pub loads: u64,
    /// Transaction markers written to a partition while it was being replayed: (producer id,
    /// commit), applied once its groups are installed (see `complete_transaction`).
    pub completed_while_loading: HashMap<i32, Vec<(i64, bool)>>,
}

/// A partition led here: being replayed (by the load numbered so, so that a load overtaken by a
/// later one for the same partition does not install its result), or serving its groups.
pub(super) enum Led {
    Loading(u64),
    Loaded(OffsetsStore),
}

impl Inner {
    /// The offsets partition of `group_id`, if the topic exists.
    pub fn partition_of(&self, group_id: &str) -> Option<i32> {
        let (_, count) = self.topic?;
        Some(MetadataImage::offsets_partition_for(group_id, count))
    }

    /// Where `group_id`'s state is written, if this broker coordinates it (Kafka's
    /// NOT_COORDINATOR otherwise, COORDINATOR_LOAD_IN_PROGRESS while its partition is replayed).
    pub fn store_for(&self, group_id: &str) -> Result<OffsetsStore, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let partition = self
            .partition_of(group_id)
            .ok_or(GroupError::NotCoordinator)?;
        match self.led.get(&partition) {
            Some(Led::Loaded(store)) => Ok(store.clone()),
            Some(Led::Loading(_)) => Err(GroupError::CoordinatorLoadInProgress),
            None => Err(GroupError::NotCoordinator),
        }
    }
}

impl GroupCoordinator {
    /// A coordinator of no group yet: groups come with the partitions this broker is made
    /// leader of (see `ownership`).
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            inner: Mutex::new(Inner::default()),
            creating: tokio::sync::Mutex::new(()),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // Group transitions never leave a half-updated group on panic paths worth refusing.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the group's metadata if a transition asked for it.
    fn persist_if_needed(store: &OffsetsStore, group: &mut Group) {
        if !group.needs_persist {
            return;
        }
        group.needs_persist = false;
        let key = encode_key(&RecordKey::Group(group.id.clone()));
        let value = encode_group(&stored_group(group));
        if let Err(error) = store.append(&[(key, Some(value))]) {
            tracing::error!(group = %group.id, %error, "cannot persist group metadata");
        }
    }

    pub async fn join(&self, group_id: &str, request: JoinRequest) -> JoinReply {
        let pending = {
            let mut inner = self.lock();
            let store = inner.store_for(group_id)?;
            let groups = &mut inner.groups;
            let now = now_ms();
            if !groups.contains_key(group_id) && !request.member_id.is_empty() {
                return Err(GroupError::UnknownMemberId(request.member_id));
            }
            let group = groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id, now));
            if group.has_consumer_members() {
                // Kafka (without a migration policy) refuses classic members in a consumer group.
                return Err(GroupError::InconsistentGroupProtocol);
            }
            if let Some(mut consumer) = group.consumer.take() {
                tracing::info!(group = %group_id, "empty consumer group is now a classic group");
                store.append(&consumer.tombstones())?;
            }
            let pending = membership::join(group, request, &self.config, now);
            Self::persist_if_needed(&store, group);
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
            let mut inner = self.lock();
            let store = inner.store_for(group_id)?;
            let Some(group) = inner
                .groups
                .get_mut(group_id)
                .filter(|g| g.consumer.is_none())
            else {
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
            Self::persist_if_needed(&store, group);
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
        let mut inner = self.lock();
        inner.store_for(group_id)?;
        let group = inner
            .groups
            .get_mut(group_id)
            .filter(|g| g.consumer.is_none())
            .ok_or_else(|| GroupError::UnknownMemberId(member_id.to_string()))?;
        membership::heartbeat(group, member_id, instance_id, generation, now_ms())
    }

    /// Removes members; one result per `(member id, instance id)`.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<String, GroupError>>, GroupError> {
        let mut inner = self.lock();
        let store = inner.store_for(group_id)?;
        let group = inner
            .groups
            .get_mut(group_id)
            .filter(|g| g.consumer.is_none())
            .ok_or_else(|| GroupError::UnknownMemberId(String::new()))?;
        let now = now_ms();
        let results = members
            .iter()
            .map(|(member, instance)| {
                membership::leave(group, member, instance.as_deref(), &self.config, now)
            })
            .collect();
        Self::persist_if_needed(&store, group);
        Ok(results)
    }

    /// The groups this broker coordinates (Kafka's ListGroups is per broker too).
    pub fn list(&self) -> Vec<GroupSummary> {
        let inner = self.lock();
        let mut list: Vec<GroupSummary> = inner.groups.values().map(summary).collect();
        list.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        list
    }

    /// `Ok(None)`: a group this broker would coordinate but does not know.
    pub fn describe(&self, group_id: &str) -> Result<Option<GroupSummary>, GroupError> {
        let inner = self.lock();
        inner.store_for(group_id)?;
        Ok(inner.groups.get(group_id).map(summary))
    }

    /// Deletes an empty group and its offsets (DeleteGroups).
    pub fn delete(&self, group_id: &str) -> Result<(), GroupError> {
        let mut inner = self.lock();
        let store = inner.store_for(group_id)?;
        let groups = &mut inner.groups;
        let group = groups
            .get(group_id)
            .ok_or_else(|| GroupError::GroupIdNotFound(group_id.to_string()))?;
        if !group.is(GroupState::Empty) || group.has_consumer_members() {
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
        let consumer = groups.get_mut(group_id).and_then(|g| g.consumer.as_mut());
        if let Some(consumer) = consumer {
            tombstones.extend(consumer.tombstones());
        }
        store.append(&tombstones)?;
        if let Some(mut group) = groups.remove(group_id) {
            group.state = GroupState::Dead;
        }
        tracing::info!(group = %group_id, "deleted group");
        Ok(())
    }

    /// Advances every group's timers.
    pub fn tick(&self, now_ms: i64) {
        let mut inner = self.lock();
        let Inner {
            groups, topic, led, ..
        } = &mut *inner;
        let count = topic.map_or(0, |(_, count)| count);
        for group in groups.values_mut() {
            group.tick(now_ms, self.config.initial_rebalance_delay_ms);
            // Every group held here is in a loaded partition (unloading removes them).
            let partition = MetadataImage::offsets_partition_for(&group.id, count);
            if let Some(Led::Loaded(store)) = led.get(&partition) {
                Self::persist_if_needed(store, group);
            }
        }
    }

    /// Answers every parked request so connections can finish (broker shutdown).
    pub fn shutdown(&self) {
        for group in self.lock().groups.values_mut() {
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
            _ = tick.tick() => {
                let now = now_ms();
                broker.groups.tick(now);
                broker.groups.tick_consumers(now, || {
                    super::consumer::topics_view(&broker.controller.image())
                });
            }
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    broker.groups.shutdown();
}
