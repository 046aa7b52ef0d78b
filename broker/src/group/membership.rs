//! The member-facing rules of the classic protocol, applied to one [`Group`]: who may join and
//! how (MEMBER_ID_REQUIRED for new dynamic members, replacement and fencing for static members),
//! when a join starts a rebalance, and what SyncGroup, Heartbeat and LeaveGroup do in each state.
//! These follow Kafka's `GroupCoordinator` closely so that clients see the answers they expect.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::state::{Group, GroupState, JoinOutcome, JoinReply, Member, SyncReply};
use super::{GroupConfig, GroupError};

/// A JoinGroup request, decoded.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+ clients understand MEMBER_ID_REQUIRED.
    pub requires_known_member_id: bool,
}

/// An answer now, or later through the receiver.
pub enum Pending<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

/// Handles a JoinGroup against `group` (created Empty by the caller if it did not exist).
pub fn join(
    group: &mut Group,
    request: JoinRequest,
    config: &GroupConfig,
    now_ms: i64,
) -> Pending<JoinReply> {
    let fail = |e| Pending::Now(Err(e));
    let timeout = request.session_timeout_ms;
    if timeout < config.min_session_timeout_ms || timeout > config.max_session_timeout_ms {
        return fail(GroupError::InvalidSessionTimeout(timeout));
    }
    if group.is(GroupState::Dead) {
        return fail(GroupError::CoordinatorNotAvailable(
            "the group is being deleted",
        ));
    }
    if !group.supports_protocols(&request.protocol_type, &request.protocols) {
        return fail(GroupError::InconsistentGroupProtocol);
    }
    if let Some(instance) = request.instance_id.clone() {
        return join_static(group, request, instance, config, now_ms);
    }
    if request.member_id.is_empty() {
        let member_id = new_member_id(&request.client_id);
        if request.requires_known_member_id {
            let expiry = now_ms + i64::from(request.session_timeout_ms);
            group.pending_members.insert(member_id.clone(), expiry);
            return fail(GroupError::MemberIdRequired(member_id));
        }
        return add_and_rebalance(group, request, member_id, config, now_ms);
    }
    if group.pending_members.contains_key(&request.member_id) {
        let member_id = request.member_id.clone();
        return add_and_rebalance(group, request, member_id, config, now_ms);
    }
    if !group.members.contains_key(&request.member_id) {
        return fail(GroupError::UnknownMemberId(request.member_id));
    }
    rejoin(group, request, config, now_ms)
}

fn join_static(
    group: &mut Group,
    request: JoinRequest,
    instance: String,
    config: &GroupConfig,
    now_ms: i64,
) -> Pending<JoinReply> {
    let Some(current) = group.static_members.get(&instance).cloned() else {
        if !request.member_id.is_empty() {
            return Pending::Now(Err(GroupError::UnknownMemberId(request.member_id)));
        }
        let member_id = new_member_id(&instance);
        return add_and_rebalance(group, request, member_id, config, now_ms);
    };
    if request.member_id.is_empty() {
        // A restarted static member: it takes over the old member's place under a new id, and the
        // old id is fenced. The group rebalances so the leader sees the new id.
        let old = group.remove_member_quietly(&current);
        let member_id = new_member_id(&instance);
        if let Some(old) = old {
            if group.leader.as_deref() == Some(current.as_str()) {
                group.leader = Some(member_id.clone());
            }
            drop(old);
        }
        return add_and_rebalance(group, request, member_id, config, now_ms);
    }
    if request.member_id != current {
        return Pending::Now(Err(GroupError::FencedInstanceId {
            instance_id: instance,
            current,
            received: request.member_id,
        }));
    }
    rejoin(group, request, config, now_ms)
}

/// A known member joins again.
fn rejoin(
    group: &mut Group,
    request: JoinRequest,
    config: &GroupConfig,
    now_ms: i64,
) -> Pending<JoinReply> {
    let is_leader = group.leader.as_deref() == Some(request.member_id.as_str());
    let Some(member) = group.members.get_mut(&request.member_id) else {
        return Pending::Now(Err(GroupError::UnknownMemberId(request.member_id)));
    };
    let unchanged = member.protocols == request.protocols;
    member.last_heartbeat_ms = now_ms;
    match group.state {
        GroupState::CompletingRebalance | GroupState::Stable if unchanged && !is_leader => {
            // The member missed our answer (or is checking in): give it the current generation.
            let protocol = group.protocol.clone().unwrap_or_default();
            Pending::Now(Ok(JoinOutcome {
                generation: group.generation,
                protocol_type: group.protocol_type.clone(),
                protocol: Some(protocol),
                leader: group.leader.clone().unwrap_or_default(),
                member_id: request.member_id,
                members: Vec::new(),
            }))
        }
        _ => {
            let (tx, rx) = oneshot::channel();
            member.protocols = request.protocols;
            member.session_timeout_ms = request.session_timeout_ms;
            member.rebalance_timeout_ms = request.rebalance_timeout_ms;
            member.join_waiter = Some(tx);
            group.prepare_rebalance(now_ms, config.initial_rebalance_delay_ms, "member rejoined");
            group.maybe_complete_join(now_ms);
            Pending::Later(rx)
        }
    }
}

fn add_and_rebalance(
    group: &mut Group,
    request: JoinRequest,
    member_id: String,
    config: &GroupConfig,
    now_ms: i64,
) -> Pending<JoinReply> {
    let (tx, rx) = oneshot::channel();
    let was_delaying = group.initial_delay_limit_ms.is_some();
    group.add_member(Member {
        id: member_id.clone(),
        instance_id: request.instance_id,
        client_id: request.client_id,
        client_host: request.client_host,
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        protocol_type: request.protocol_type,
        protocols: request.protocols,
        assignment: Bytes::new(),
        last_heartbeat_ms: now_ms,
        join_waiter: Some(tx),
        sync_waiter: None,
    });
    tracing::info!(group = %group.id, member = %member_id, state = group.state.name(), "member joining");
    if was_delaying {
        group.extend_initial_delay(now_ms, config.initial_rebalance_delay_ms);
    } else {
        group.prepare_rebalance(now_ms, config.initial_rebalance_delay_ms, "member joined");
    }
    group.maybe_complete_join(now_ms);
    Pending::Later(rx)
}

/// Checks that `member_id` (and, for static members, its instance id) is current in `group`.
pub fn check_member(
    group: &Group,
    member_id: &str,
    instance_id: Option<&str>,
) -> Result<(), GroupError> {
    if let Some(instance) = instance_id {
        match group.static_members.get(instance) {
            Some(current) if current != member_id => {
                return Err(GroupError::FencedInstanceId {
                    instance_id: instance.to_string(),
                    current: current.clone(),
                    received: member_id.to_string(),
                })
            }
            _ => {}
        }
    }
    if group.members.contains_key(member_id) {
        Ok(())
    } else {
        Err(GroupError::UnknownMemberId(member_id.to_string()))
    }
}

/// Handles a SyncGroup: the leader's call carries everyone's assignment.
pub fn sync(
    group: &mut Group,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
    assignments: HashMap<String, Bytes>,
    now_ms: i64,
) -> Pending<SyncReply> {
    if let Err(e) = check_member(group, member_id, instance_id) {
        return Pending::Now(Err(e));
    }
    if generation != group.generation {
        return Pending::Now(Err(GroupError::IllegalGeneration {
            received: generation,
            current: group.generation,
        }));
    }
    match group.state {
        GroupState::CompletingRebalance => {
            let (tx, rx) = oneshot::channel();
            if let Some(member) = group.members.get_mut(member_id) {
                member.sync_waiter = Some(tx);
                member.last_heartbeat_ms = now_ms;
            }
            if group.leader.as_deref() == Some(member_id) {
                group.complete_sync(assignments, now_ms);
            }
            Pending::Later(rx)
        }
        GroupState::Stable => {
            let Some(member) = group.members.get_mut(member_id) else {
                return Pending::Now(Err(GroupError::UnknownMemberId(member_id.to_string())));
            };
            member.last_heartbeat_ms = now_ms;
            Pending::Now(Ok((
                group.protocol_type.clone(),
                group.protocol.clone(),
                member.assignment.clone(),
            )))
        }
        GroupState::PreparingRebalance => Pending::Now(Err(GroupError::RebalanceInProgress)),
        GroupState::Empty | GroupState::Dead => {
            Pending::Now(Err(GroupError::UnknownMemberId(member_id.to_string())))
        }
    }
}

/// Handles a Heartbeat: keeps the session alive and tells the member about rebalances.
pub fn heartbeat(
    group: &mut Group,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
    now_ms: i64,
) -> Result<(), GroupError> {
    if group.is(GroupState::Dead) {
        return Err(GroupError::CoordinatorNotAvailable(
            "the group is being deleted",
        ));
    }
    check_member(group, member_id, instance_id)?;
    if generation != group.generation {
        return Err(GroupError::IllegalGeneration {
            received: generation,
            current: group.generation,
        });
    }
    if let Some(member) = group.members.get_mut(member_id) {
        member.last_heartbeat_ms = now_ms;
    }
    match group.state {
        GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
        GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
        GroupState::Empty | GroupState::Dead => {
            Err(GroupError::UnknownMemberId(member_id.to_string()))
        }
    }
}

/// Removes one member (by member id, or by instance id for static members) and rebalances.
pub fn leave(
    group: &mut Group,
    member_id: &str,
    instance_id: Option<&str>,
    config: &GroupConfig,
    now_ms: i64,
) -> Result<String, GroupError> {
    let target = match instance_id {
        Some(instance) => {
            let current = group
                .static_members
                .get(instance)
                .cloned()
                .ok_or_else(|| GroupError::UnknownMemberId(member_id.to_string()))?;
            if !member_id.is_empty() && member_id != current {
                return Err(GroupError::FencedInstanceId {
                    instance_id: instance.to_string(),
                    current,
                    received: member_id.to_string(),
                });
            }
            current
        }
        None => member_id.to_string(),
    };
    if group.pending_members.remove(&target).is_some() {
        group.maybe_complete_join(now_ms);
        return Ok(target);
    }
    group
        .remove_member(&target)
        .ok_or_else(|| GroupError::UnknownMemberId(target.clone()))?;
    tracing::info!(group = %group.id, member = %target, "member left");
    group.after_membership_change(now_ms, config.initial_rebalance_delay_ms, "member left");
    Ok(target)
}

impl Group {
    /// Removes a member without answering its parked requests as failed (a static member's
    /// replacement: the old connection's requests just end).
    fn remove_member_quietly(&mut self, member_id: &str) -> Option<Member> {
        let member = self.members.remove(member_id)?;
        if let Some(instance) = &member.instance_id {
            self.static_members.remove(instance);
        }
        Some(member)
    }
}

/// `<client id>-<uuid>`, as Kafka forms member ids.
fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}
