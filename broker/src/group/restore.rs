//! Converting between a live [`Group`] and what is stored about it in `__consumer_offsets`
//! ([`StoredGroup`]), and the summary DescribeGroups and ListGroups show.

use bytes::Bytes;

use super::coordinator::GroupSummary;
use super::log_format::{StoredGroup, StoredMember};
use super::state::{Group, GroupState, Member};

pub(super) fn summary(group: &Group) -> GroupSummary {
    let protocol = group.protocol.clone().unwrap_or_default();
    let stable = group.is(GroupState::Stable);
    GroupSummary {
        group_id: group.id.clone(),
        state: group.state,
        group_type: group.group_type(),
        state_name: group.state_name(),
        // Kafka's consumer groups have the protocol type of the consumers they replace.
        protocol_type: match &group.consumer {
            Some(_) => "consumer".to_string(),
            None => group.protocol_type.clone().unwrap_or_default(),
        },
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

pub(super) fn stored_group(group: &Group) -> StoredGroup {
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
pub(super) fn restore_group(id: &str, stored: StoredGroup, now_ms: i64) -> Group {
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
