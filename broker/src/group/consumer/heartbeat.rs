//! The ConsumerGroupHeartbeat rules on one [`ConsumerGroup`] (Kafka's
//! `GroupMetadataManager.consumerGroupHeartbeat`): request validation, join with epoch 0 (a
//! static member may take over its departed predecessor's partitions and epoch), heartbeat at the
//! current epoch (or the previous one with the partitions the member may hold, when an answer was
//! lost), leave with -1 or -2, and the member checks of OffsetCommit/OffsetFetch v9.

use std::collections::BTreeSet;

use regex::Regex;
use uuid::Uuid;

use super::group::{ConsumerGroup, ConsumerMember};
use super::reconcile::{self, MemberState};
use super::{
    is_subset, same, Assignment, ConsumerConfig, TopicsView, LEAVE_EPOCH, STATIC_LEAVE_EPOCH,
};
use crate::group::GroupError;

/// A ConsumerGroupHeartbeat as the group sees it.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatRequest {
    pub version: i16,

    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Sent when it changed or differs from what the member reported holding.
    pub assignment: Option<Assignment>,
}

impl ConsumerGroup {
    /// One ConsumerGroupHeartbeat.
    pub fn heartbeat(
        &mut self,
        request: HeartbeatRequest,
        config: &ConsumerConfig,
        topics: &TopicsView,
        now_ms: i64,
    ) -> Result<HeartbeatOutcome, GroupError> {
        validate(&request, config)?;
        if request.member_epoch == LEAVE_EPOCH || request.member_epoch == STATIC_LEAVE_EPOCH {
            return self.leave(&request, config, topics);
        }
        let (member_id, mut changed) = self.member_for(&request, config, now_ms)?;
        let Some(member) = self.members.get_mut(&member_id) else {
            return Err(GroupError::UnknownMemberId(member_id));
        };
        member.last_heartbeat_ms = now_ms;
        // A static member that left for a while and came back under the same id.
        member.departed = false;
        member.client_id.clone_from(&request.client_id);
        member.client_host.clone_from(&request.client_host);
        if request.rebalance_timeout_ms >= 0 {
            member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        if request.rack_id.is_some() {
            member.rack_id.clone_from(&request.rack_id);
        }
        if let Some(names) = request.subscribed_topic_names.clone() {
            let mut names = names;
            names.sort();
            names.dedup();
            if names != member.subscribed_names {
                tracing::debug!(member = %member_id, ?names, "subscribed topics changed");
                changed = true;
            }
            member.subscribed_names = names;
        }
        if let Some(regex) = &request.subscribed_topic_regex {
            // An empty regex is no regex.
            let old = member
                .subscribed_regex
                .as_ref()
                .map_or("", |(s, _)| s.as_str());
            if old != regex {
                member.subscribed_regex = if regex.is_empty() {
                    None
                } else {
                    Some((regex.clone(), compile(regex)?))
                };
                tracing::debug!(member = %member_id, %regex, "subscribed regex changed");
                changed = true;
            }
        }
        if request.server_assignor.is_some() && request.server_assignor != member.server_assignor {
            member.server_assignor.clone_from(&request.server_assignor);
            changed = true;
        }
        self.refresh(config, topics, changed);
        let held = self.held_by_others(&member_id);
        let target = self.target.get(&member_id).cloned().unwrap_or_default();
        let Some(member) = self.members.get_mut(&member_id) else {
            return Err(GroupError::UnknownMemberId(member_id));
        };
        let before = member.reconciliation.clone();
        reconcile::step(
            &mut member.reconciliation,
            &target,
            self.assignment_epoch,
            request.owned.as_ref(),
            &held,
        );
        let r = &member.reconciliation;
        if r.state == MemberState::UnrevokedPartitions {
            let timeout = i64::from(member.rebalance_timeout_ms.max(0));
            member.revoke_deadline_ms.get_or_insert(now_ms + timeout);
        } else {
            member.revoke_deadline_ms = None;
        }
        let send = request.member_epoch == 0
            || r.member_epoch != before.member_epoch
            || !same(&r.assigned, &before.assigned)
            || request
                .owned
                .as_ref()
                .is_some_and(|o| !same(o, &r.assigned));
        Ok(HeartbeatOutcome {
            member_id,
            member_epoch: r.member_epoch,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            assignment: send.then(|| r.assigned.clone()),
        })
    }

    /// The member a (non-leaving) heartbeat is for, created or taken over on join; and whether
    /// membership changed (a new member).
    fn member_for(
        &mut self,
        request: &HeartbeatRequest,
        config: &ConsumerConfig,
        now_ms: i64,
    ) -> Result<(String, bool), GroupError> {
        let id = if request.member_id.is_empty() {
            Uuid::new_v4().simple().to_string()
        } else {
            request.member_id.clone()
        };
        if request.member_epoch != 0 {
            let member = self
                .members
                .get(&id)
                .ok_or_else(|| GroupError::UnknownMemberId(id.clone()))?;
            if let Some(instance) = &request.instance_id {
                if self.static_members.get(instance) != Some(&id) {
                    return Err(fenced_instance(
                        instance,
                        self.static_members.get(instance),
                        &id,
                    ));
                }
            }
            check_epoch(member, request)?;
            return Ok((id, false));
        }
        if let Some(instance) = &request.instance_id {
            if let Some(current) = self.static_members.get(instance).cloned() {
                if current == id {
                    return Ok((id, false));
                }
                let departed = self.members.get(&current).is_some_and(|m| m.departed);
                if !departed {
                    return Err(GroupError::UnreleasedInstanceId(instance.clone()));
                }
                // The static member comes back under a new id with its partitions and epoch.
                if let Some(mut member) = self.members.remove(&current) {
                    tracing::info!(old = %current, new = %id, %instance, "static member replaced");
                    member.id.clone_from(&id);
                    member.departed = false;
                    member.revoke_deadline_ms = None;
                    if let Some(target) = self.target.remove(&current) {
                        self.target.insert(id.clone(), target);
                    }
                    self.members.insert(id.clone(), member);
                    self.static_members.insert(instance.clone(), id.clone());
                }
                return Ok((id, false));
            }
        }
        if self.members.contains_key(&id) {
            return Ok((id, false));
        }
        if config
            .max_size
            .is_some_and(|max| self.members.len() >= max as usize)
        {
            return Err(GroupError::GroupMaxSizeReached);
        }
        let mut member = ConsumerMember::new(id.clone(), now_ms);
        member.instance_id.clone_from(&request.instance_id);
        if let Some(instance) = &request.instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        tracing::info!(member = %id, "consumer group member joined");
        self.members.insert(id.clone(), member);
        Ok((id, true))
    }

    fn leave(
        &mut self,
        request: &HeartbeatRequest,
        config: &ConsumerConfig,
        topics: &TopicsView,
    ) -> Result<HeartbeatOutcome, GroupError> {
        let id = request.member_id.clone();
        if let Some(instance) = &request.instance_id {
            let current = self.static_members.get(instance);
            if current != Some(&id) {
                return Err(match current {
                    None => GroupError::UnknownMemberId(id),
                    Some(_) => fenced_instance(instance, current, &id),
                });
            }
        }
        let member = self
            .members
            .get_mut(&id)
            .ok_or_else(|| GroupError::UnknownMemberId(id.clone()))?;
        if request.member_epoch == STATIC_LEAVE_EPOCH {
            // Kept with its partitions until its session ends or it comes back.
            member.departed = true;
            tracing::info!(member = %id, "static member left temporarily");
        } else {
            tracing::info!(member = %id, "consumer group member left");
            self.remove_member(&id, config, topics);
        }
        Ok(HeartbeatOutcome {
            member_id: id,
            member_epoch: request.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }

    /// OffsetCommit v9+ rules for a member of this group (Kafka's `validateOffsetCommit`).
    pub fn check_commit(&self, member_id: &str, epoch: i32) -> Result<(), GroupError> {
        let member = self
            .members
            .get(member_id)
            .ok_or_else(|| GroupError::UnknownMemberId(member_id.to_string()))?;
        if epoch != member.reconciliation.member_epoch {
            return Err(GroupError::StaleMemberEpoch);
        }
        Ok(())
    }
}

/// Kafka's `throwIfMemberEpochIsInvalid`.
fn check_epoch(member: &ConsumerMember, request: &HeartbeatRequest) -> Result<(), GroupError> {
    let r = &member.reconciliation;
    let received = request.member_epoch;
    if received == r.member_epoch {
        return Ok(());
    }
    let lost_answer = received < r.member_epoch
        && received == r.previous_epoch
        && request
            .owned
            .as_ref()
            .is_some_and(|o| is_subset(o, &r.assigned));
    if lost_answer {
        Ok(())
    } else {
        Err(GroupError::FencedMemberEpoch {
            received,
            current: r.member_epoch,
        })
    }
}

fn fenced_instance(instance: &str, current: Option<&String>, received: &str) -> GroupError {
    GroupError::FencedInstanceId {
        instance_id: instance.to_string(),
        current: current.cloned().unwrap_or_default(),
        received: received.to_string(),
    }
}

fn compile(regex: &str) -> Result<Regex, GroupError> {
    Regex::new(&format!("^(?:{regex})$"))
        .map_err(|e| GroupError::InvalidRegularExpression(e.to_string()))
}

/// Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`.
fn validate(request: &HeartbeatRequest, config: &ConsumerConfig) -> Result<(), GroupError> {
    let invalid = |why: &str| Err(GroupError::InvalidRequest(why.to_string()));

    if request.version >= 1 && request.member_id.is_empty() {
        return invalid("MemberId can't be empty.");
    }
    if request.instance_id.as_deref() == Some("") {
        return invalid("InstanceId can't be empty.");
    }
    match request.member_epoch {
        0 => {
            if request.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if request
                .owned
                .as_ref()
                .is_none_or(|o| !o.values().all(BTreeSet::is_empty))
            {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            if request.subscribed_topic_names.is_none() && request.subscribed_topic_regex.is_none()
            {
                return invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        STATIC_LEAVE_EPOCH if request.instance_id.is_none() => {
            return invalid("InstanceId can't be null when leaving temporarily.");
        }
        e if e < STATIC_LEAVE_EPOCH => return invalid("MemberEpoch is invalid."),
        e if e != 0 && request.member_id.is_empty() => return invalid("MemberId can't be empty."),
        _ => {}
    }
    if let Some(name) = &request.server_assignor {
        if config.assignor(Some(name)).is_none() {
            return Err(GroupError::UnsupportedAssignor(name.clone()));
        }
    }
    Ok(())
}
