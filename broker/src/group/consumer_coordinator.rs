//! The coordinator's side of KIP-848 consumer groups: ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe on the groups of the offsets partitions led here, the consumer groups'
//! timers, and the rule that a group id is either a classic or a consumer group (an empty one
//! may change type, keeping its offsets).

use super::consumer::{ConsumerGroup, HeartbeatOutcome, HeartbeatRequest, TopicsView};
use super::coordinator::{GroupCoordinator, Inner, Led};
use super::state::{Group, GroupState};
use super::GroupError;
use crate::broker::now_ms;
use crate::metadata::image::MetadataImage;

impl GroupCoordinator {
    /// One ConsumerGroupHeartbeat.
    pub fn consumer_heartbeat(
        &self,
        group_id: &str,
        request: HeartbeatRequest,
        topics: &TopicsView,
    ) -> Result<HeartbeatOutcome, GroupError> {
        tracing::debug!(group = %group_id, member = %request.member_id, epoch = request.member_epoch, owned = ?request.owned, "consumer group heartbeat");
        if group_id.is_empty() {
            return Err(GroupError::InvalidRequest("GroupId can't be empty.".into()));
        }
        let mut inner = self.lock();
        let store = inner.store_for(group_id)?;
        let now = now_ms();
        let joining = request.member_epoch == 0;
        let group = match inner.groups.get_mut(group_id) {
            Some(group) => group,
            // Kafka creates a group only on a join; otherwise the member must rejoin.
            None if !joining => return Err(GroupError::UnknownMemberId(request.member_id)),
            None => inner
                .groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id, now)),
        };
        if group.consumer.is_none() {
            if !group.members.is_empty() || !group.is(GroupState::Empty) {
                return Err(GroupError::GroupIdNotFound(format!(
                    "{group_id} is not a consumer group"
                )));
            }
            if !joining {
                return Err(GroupError::UnknownMemberId(request.member_id));
            }
            tracing::info!(group = %group_id, "group is now a consumer group");
            group.consumer = Some(Box::default());
        }
        let consumer = group
            .consumer
            .as_mut()
            .ok_or(GroupError::CoordinatorNotAvailable(
                "consumer group vanished",
            ))?;
        let result = consumer.heartbeat(request, &self.config.consumer, topics, now);
        if let Err(error) = &result {
            tracing::debug!(group = %group_id, %error, "consumer group heartbeat refused");
        }
        let records = consumer.diff(group_id);
        if !records.is_empty() {
            // Written before the answer leaves, as Kafka's coordinator does (without waiting
            // for the in-sync replicas: a lost record makes members rejoin, nothing worse).
            store.append(&records)?;
        }
        result
    }

    /// A consumer group as ConsumerGroupDescribe shows it; `Ok(None)`: no such consumer group.
    pub fn consumer_describe(&self, group_id: &str) -> Result<Option<ConsumerGroup>, GroupError> {
        let inner = self.lock();
        inner.store_for(group_id)?;
        Ok(inner
            .groups
            .get(group_id)
            .and_then(|g| g.consumer.as_deref().cloned()))
    }

    /// OffsetFetch v9's member check for consumer groups (Kafka's `validateOffsetFetch`): an
    /// admin fetch (no member id, epoch -1) always passes; a member must exist at that epoch.
    pub fn check_offset_fetch(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), GroupError> {
        if member_id.is_none() && member_epoch < 0 {
            return Ok(());
        }
        let inner = self.lock();
        let Some(consumer) = inner.groups.get(group_id).and_then(|g| g.consumer.as_ref()) else {
            return Ok(());
        };
        consumer.check_commit(member_id.unwrap_or_default(), member_epoch)
    }

    /// Advances every consumer group's timers and follows topic metadata; `topics` is only
    /// computed when there is a consumer group.
    pub fn tick_consumers(&self, now_ms: i64, topics: impl FnOnce() -> TopicsView) {
        let mut inner = self.lock();
        let Inner {
            groups, topic, led, ..
        } = &mut *inner;
        let count = topic.map_or(0, |(_, count)| count);
        let mut consumers = groups
            .iter_mut()
            .filter_map(|(id, g)| g.consumer.as_mut().map(|c| (id, c)))
            .peekable();
        if consumers.peek().is_none() {
            return;
        }
        let topics = topics();
        for (id, consumer) in consumers {
            let removed = consumer.tick(now_ms, &self.config.consumer, &topics);
            if !removed.is_empty() {
                tracing::info!(group = %id, ?removed, epoch = consumer.epoch, "consumer group members removed");
            }
            let partition = MetadataImage::offsets_partition_for(id, count);
            if let Some(Led::Loaded(store)) = led.get(&partition) {
                let records = consumer.diff(id);
                if !records.is_empty() {
                    if let Err(error) = store.append(&records) {
                        tracing::error!(group = %id, %error, "cannot persist consumer group");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::consumer::Assignment;
    use crate::group::ownership_tests::{leading_everything, registry};
    use crate::group::{GroupConfig, GroupCoordinator};

    fn join(member: &str) -> HeartbeatRequest {
        HeartbeatRequest {
            version: 1,
            member_id: member.into(),
            rebalance_timeout_ms: 1000,
            subscribed_topic_names: Some(vec!["t".into()]),
            owned: Some(Assignment::new()),
            ..HeartbeatRequest::default()
        }
    }

    #[test]
    fn a_group_id_is_either_classic_or_consumer_and_an_empty_one_changes_type() {
        let dir = tempfile::tempdir().unwrap();
        let topics = registry(dir.path());
        let groups = std::sync::Arc::new(GroupCoordinator::new(GroupConfig::default()));
        leading_everything(&groups, &topics, uuid::Uuid::from_u128(1), 1);
        let view = TopicsView::from([("t".into(), (uuid::Uuid::from_u128(9), 2))]);
        crate::group::ownership_tests::commit(&groups, "g", 0, 5);
        let out = groups.consumer_heartbeat("g", join("a"), &view).unwrap();
        assert_eq!(out.member_epoch, 1);
        assert_eq!(groups.list()[0].group_type, "consumer");
        assert_eq!(
            crate::group::ownership_tests::committed(&groups, "g"),
            vec![(0, 5)]
        );
        assert!(matches!(
            groups.delete("g"),
            Err(GroupError::NonEmptyGroup(_))
        ));
        let mut leave = join("a");
        leave.member_epoch = -1;
        groups.consumer_heartbeat("g", leave, &view).unwrap();
        assert_eq!(groups.list()[0].state_name, "Empty");
        groups.delete("g").unwrap();
        assert!(groups.list().is_empty());
    }

    #[test]
    fn a_heartbeat_for_an_unknown_group_must_rejoin() {
        let dir = tempfile::tempdir().unwrap();
        let topics = registry(dir.path());
        let groups = std::sync::Arc::new(GroupCoordinator::new(GroupConfig::default()));
        leading_everything(&groups, &topics, uuid::Uuid::from_u128(1), 1);
        let mut beat = join("a");
        beat.member_epoch = 3;
        let err = groups.consumer_heartbeat("g", beat, &TopicsView::new());
        assert!(matches!(err, Err(GroupError::UnknownMemberId(_))));
    }

    #[test]
    fn members_keep_their_epochs_when_the_partition_is_loaded_again() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::from_u128(1);
        let view = TopicsView::from([("t".into(), (uuid::Uuid::from_u128(9), 4))]);
        let before = {
            let topics = registry(dir.path());
            let groups = std::sync::Arc::new(GroupCoordinator::new(GroupConfig::default()));
            leading_everything(&groups, &topics, id, 1);
            groups.consumer_heartbeat("g", join("a"), &view).unwrap();
            groups.consumer_heartbeat("g", join("b"), &view).unwrap();
            groups.consumer_heartbeat("gone", join("x"), &view).unwrap();
            let mut leave = join("x");
            leave.member_epoch = -1;
            groups.consumer_heartbeat("gone", leave, &view).unwrap();
            groups.delete("gone").unwrap();
            let before = groups.consumer_describe("g").unwrap().unwrap();
            topics.close_all();
            before
        };
        let topics = registry(dir.path());
        let groups = std::sync::Arc::new(GroupCoordinator::new(GroupConfig::default()));
        leading_everything(&groups, &topics, id, 1);
        let after = groups.consumer_describe("g").unwrap().unwrap();
        assert_eq!(after.epoch, before.epoch);
        assert_eq!(after.target, before.target);
        for (member, m) in &before.members {
            assert_eq!(after.members[member].reconciliation, m.reconciliation);
        }
        assert!(groups.consumer_describe("gone").unwrap().is_none());
        // b heartbeats at its epoch and carries on, with no new group epoch.
        let mut beat = join("b");
        beat.member_epoch = before.members["b"].reconciliation.member_epoch;
        beat.rebalance_timeout_ms = -1;
        beat.subscribed_topic_names = None;
        let out = groups.consumer_heartbeat("g", beat, &view).unwrap();
        assert_eq!(
            out.member_epoch,
            before.members["b"].reconciliation.member_epoch
        );
        assert_eq!(
            groups.consumer_describe("g").unwrap().unwrap().epoch,
            before.epoch
        );
    }

    #[test]
    fn offset_commits_of_a_consumer_group_check_the_member_and_its_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let topics = registry(dir.path());
        let groups = std::sync::Arc::new(GroupCoordinator::new(GroupConfig::default()));
        leading_everything(&groups, &topics, uuid::Uuid::from_u128(1), 1);
        let view = TopicsView::from([("t".into(), (uuid::Uuid::from_u128(9), 1))]);
        let epoch = groups
            .consumer_heartbeat("g", join("a"), &view)
            .unwrap()
            .member_epoch;
        let offset = || {
            vec![(
                "t".to_string(),
                0,
                crate::group::state::CommittedOffset {
                    offset: 3,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp_ms: 0,
                },
            )]
        };
        let result = |r: (Vec<crate::group::coordinator::PartitionResult>, _)| r.0[0].2.clone();
        assert_eq!(
            result(groups.commit("g", epoch, "a", None, offset())),
            Ok(())
        );
        assert_eq!(
            result(groups.commit("g", epoch + 1, "a", None, offset())),
            Err(GroupError::StaleMemberEpoch)
        );
        assert!(matches!(
            result(groups.commit("g", epoch, "zz", None, offset())),
            Err(GroupError::UnknownMemberId(_))
        ));
        // From outside the group only while it has no members.
        assert!(result(groups.commit("g", -1, "", None, offset())).is_err());
        assert_eq!(groups.check_offset_fetch("g", Some("a"), epoch), Ok(()));
        assert_eq!(
            groups.check_offset_fetch("g", Some("a"), epoch - 1),
            Err(GroupError::StaleMemberEpoch)
        );
        assert_eq!(groups.check_offset_fetch("g", None, -1), Ok(()));
    }
}
