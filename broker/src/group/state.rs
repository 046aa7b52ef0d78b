//! One consumer group: its members, generation, chosen protocol, committed offsets, and the
//! transitions between Kafka's group states.
//!
//! ```text
//!            join (first member)                all members joined / rebalance timeout
//!   Empty ─────────────────────▶ PreparingRebalance ─────────────────────▶ CompletingRebalance
//!     ▲                              ▲      │ nobody left                        │ leader's SyncGroup
//!     │ last member leaves/expires   │      ▼                                    ▼
//!     └──────────────────────────────┴── Empty        join/leave/expiry ◀──── Stable
//! ```
//!
//! Dead is a deleted group. What time alone changes (expired sessions and deadlines) is in
//! [`super::expiry`]. Times are milliseconds passed in by the caller, so the whole machine
//! is deterministic under test. Parked JoinGroup/SyncGroup requests are `oneshot` senders kept on
//! their member and answered when the rebalance moves on.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::GroupError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka's DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup request is answered with once its rebalance completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOutcome {
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member's id, instance id and metadata for the chosen protocol: the leader's only.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

pub type JoinReply = Result<JoinOutcome, GroupError>;
/// A SyncGroup answer: protocol type, protocol name and this member's assignment.
pub type SyncReply = Result<(Option<String>, Option<String>, Bytes), GroupError>;

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// Supported protocols with their metadata, in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_heartbeat_ms: i64,
    pub join_waiter: Option<oneshot::Sender<JoinReply>>,
    pub sync_waiter: Option<oneshot::Sender<SyncReply>>,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// An offset as written to `__consumer_offsets`: the value and the log offset of its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedOffset {
    pub offset: CommittedOffset,
    pub position: i64,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Static members: `group.instance.id` -> current member id.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED that have not joined yet, with expiry time.
    pub pending_members: HashMap<String, i64>,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// Where in `__consumer_offsets` each committed offset was written: a transaction's offset
    /// replaces a committed one only if written after it (Kafka's `olderThan`).
    pub offset_positions: HashMap<(String, i32), i64>,
    /// TxnOffsetCommit offsets waiting for their transaction's marker, by producer id (Kafka's
    /// `pendingTransactionalOffsetCommits`); see `txn_offsets`.
    pub pending_txn: BTreeMap<i64, BTreeMap<(String, i32), LoggedOffset>>,
    /// PreparingRebalance: when the join phase ends at the latest.
    pub join_deadline_ms: i64,
    /// PreparingRebalance of an empty group: the initial-join delay's hard limit.
    pub initial_delay_limit_ms: Option<i64>,
    /// CompletingRebalance: when members that have not synced are dropped.
    pub sync_deadline_ms: i64,
    pub state_since_ms: i64,
    /// Group metadata changed in a way that must be written to the offsets topic.
    pub needs_persist: bool,
    /// A KIP-848 consumer group: its members live here and the classic part stays Empty.
    pub consumer: Option<Box<super::consumer::ConsumerGroup>>,
}

impl Group {
    pub fn new(id: &str, now_ms: i64) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            offsets: BTreeMap::new(),
            offset_positions: HashMap::new(),
            pending_txn: BTreeMap::new(),
            join_deadline_ms: 0,
            initial_delay_limit_ms: None,
            sync_deadline_ms: 0,
            state_since_ms: now_ms,
            needs_persist: false,
            consumer: None,
        }
    }

    fn set_state(&mut self, state: GroupState, now_ms: i64) {
        tracing::debug!(group = %self.id, from = self.state.name(), to = state.name(), generation = self.generation, "group state");
        self.state = state;
        self.state_since_ms = now_ms;
    }

    /// The longest rebalance timeout any member asked for: how long a rebalance phase may wait.
    fn max_rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    pub fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    /// A consumer (KIP-848) group with members.
    pub fn has_consumer_members(&self) -> bool {
        self.consumer
            .as_ref()
            .is_some_and(|c| !c.members.is_empty())
    }

    /// Kafka's group type: "consumer" or "classic".
    pub fn group_type(&self) -> &'static str {
        if self.consumer.is_some() {
            "consumer"
        } else {
            "classic"
        }
    }

    /// The state name ListGroups shows (a consumer group's own states).
    pub fn state_name(&self) -> &'static str {
        match &self.consumer {
            Some(consumer) => consumer.state_name(),
            None => self.state.name(),
        }
    }

    /// Protocols every member (and `candidate`, if given) supports.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|(name, _)| self.members.values().all(|m| m.supports(name)))
    }

    /// Kafka's vote: among protocols all members support, each member votes for the first one in
    /// its own preference order; most votes wins, ties go to the earliest in the leader's list.
    pub fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut votes: Vec<usize> = vec![0; candidates.len()];
        for member in self.members.values() {
            if let Some(choice) = member
                .protocols
                .iter()
                .find_map(|(name, _)| candidates.iter().position(|c| *c == name))
            {
                votes[choice] += 1;
            }
        }
        let best = votes.iter().copied().max()?;
        let winner = votes.iter().position(|&v| v == best)?;
        candidates.get(winner).map(|s| s.to_string())
    }

    /// Adds a member, parked on its JoinGroup.
    pub fn add_member(&mut self, member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if let Some(instance) = &member.instance_id {
            self.static_members
                .insert(instance.clone(), member.id.clone());
        }
        self.pending_members.remove(&member.id);
        // As in Kafka, the first member to join leads until it leaves.
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        self.members.insert(member.id.clone(), member);
    }

    /// Removes a member and answers its parked requests with UNKNOWN_MEMBER_ID.
    pub fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let mut member = self.members.remove(member_id)?;
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        let gone = GroupError::UnknownMemberId(member_id.to_string());
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.send(Err(gone.clone()));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.send(Err(gone));
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        Some(member)
    }

    /// Starts (or continues) a rebalance: every member must rejoin within the rebalance timeout.
    pub fn prepare_rebalance(&mut self, now_ms: i64, initial_delay_ms: i64, reason: &str) {
        if self.is(GroupState::CompletingRebalance) {
            // The assignment being distributed is void: members must rejoin first.
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(waiter) = member.sync_waiter.take() {
                    let _ = waiter.send(Err(GroupError::RebalanceInProgress));
                }
            }
        }
        let rebalance_timeout = self.max_rebalance_timeout_ms();
        if self.is(GroupState::Empty) && initial_delay_ms > 0 {
            self.join_deadline_ms = now_ms + initial_delay_ms.min(rebalance_timeout.max(1));
            self.initial_delay_limit_ms = Some(now_ms + rebalance_timeout.max(initial_delay_ms));
        } else if !self.is(GroupState::PreparingRebalance) {
            self.join_deadline_ms = now_ms + rebalance_timeout;
            self.initial_delay_limit_ms = None;
        }
        if !self.is(GroupState::PreparingRebalance) {
            tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), reason, "preparing rebalance");
            self.set_state(GroupState::PreparingRebalance, now_ms);
        }
    }

    /// During the initial-join delay a new member pushes the end of the join phase out again.
    pub fn extend_initial_delay(&mut self, now_ms: i64, initial_delay_ms: i64) {
        if let Some(limit) = self.initial_delay_limit_ms {
            self.join_deadline_ms = (now_ms + initial_delay_ms).min(limit);
        }
    }

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// Ends the join phase if everyone rejoined (outside the initial delay) or its deadline passed.
    pub fn maybe_complete_join(&mut self, now_ms: i64) {
        if !self.is(GroupState::PreparingRebalance) {
            return;
        }
        let in_initial_delay = self.initial_delay_limit_ms.is_some();
        let everyone = self.all_members_joined() && !in_initial_delay;
        if everyone || now_ms >= self.join_deadline_ms {
            self.complete_join(now_ms);
        }
    }

    /// Drops members that did not rejoin, starts the next generation and answers the joins.
    pub(super) fn complete_join(&mut self, now_ms: i64) {
        let absent: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in absent {
            tracing::info!(group = %self.id, member = %id, "member did not rejoin in time; removed");
            self.remove_member(&id);
        }
        self.pending_members.clear();
        self.initial_delay_limit_ms = None;
        self.generation += 1;
        self.needs_persist = true;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now_ms);
            return;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let all: Vec<(String, Option<String>, Bytes)> = self
            .members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.metadata_for(&protocol),
                )
            })
            .collect();
        let rebalance_timeout = self.max_rebalance_timeout_ms();
        self.sync_deadline_ms = now_ms + rebalance_timeout;
        self.set_state(GroupState::CompletingRebalance, now_ms);
        tracing::info!(group = %self.id, generation = self.generation, protocol = %protocol, leader = %leader, members = self.members.len(), "rebalance: join phase complete");
        for member in self.members.values_mut() {
            member.last_heartbeat_ms = now_ms;
            member.assignment = Bytes::new();
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(Ok(JoinOutcome {
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    leader: leader.clone(),
                    member_id: member.id.clone(),
                    members: if member.id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                }));
            }
        }
    }

    /// The leader's assignment arrived: store it, go Stable and answer every parked SyncGroup.
    pub fn complete_sync(&mut self, assignments: HashMap<String, Bytes>, now_ms: i64) {
        for member in self.members.values_mut() {
            member.assignment = assignments.get(&member.id).cloned().unwrap_or_default();
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(Ok((
                    self.protocol_type.clone(),
                    self.protocol.clone(),
                    member.assignment.clone(),
                )));
            }
        }
        self.needs_persist = true;
        self.set_state(GroupState::Stable, now_ms);
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), "rebalance complete: stable");
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
