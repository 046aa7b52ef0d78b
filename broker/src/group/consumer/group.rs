//! One consumer group: its members (a static member that left with epoch -2 keeps its
//! partitions until its session ends or it comes back), the group epoch, the target assignment
//! computed at an assignment epoch, and what time alone changes. The heartbeat rules acting on
//! it are in [`super::heartbeat`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use regex::Regex;
use uuid::Uuid;

use super::assignor::{self, Subscriptions};
use super::reconcile::{MemberState, Reconciliation};
use super::{Assignment, ConsumerConfig, TopicsView, STATIC_LEAVE_EPOCH};

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_names: Vec<String>,
    pub subscribed_regex: Option<(String, Regex)>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub reconciliation: Reconciliation,
    pub last_heartbeat_ms: i64,
    /// UNREVOKED_PARTITIONS: when the member is fenced if it has not revoked yet.
    pub revoke_deadline_ms: Option<i64>,
    /// A static member that left with epoch -2.
    pub departed: bool,
}

impl ConsumerMember {
    pub(super) fn new(id: String, now_ms: i64) -> ConsumerMember {
        ConsumerMember {
            id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            subscribed_names: Vec::new(),
            subscribed_regex: None,
            server_assignor: None,
            rebalance_timeout_ms: 0,
            reconciliation: Reconciliation::new(),
            last_heartbeat_ms: now_ms,
            revoke_deadline_ms: None,
            departed: false,
        }
    }

    pub fn epoch(&self) -> i32 {
        if self.departed {
            STATIC_LEAVE_EPOCH
        } else {
            self.reconciliation.member_epoch
        }
    }

    /// The topics of `topics` this member subscribes to, by name.
    pub fn subscribed<'a>(&self, topics: &'a TopicsView) -> BTreeSet<&'a str> {
        let mut out: BTreeSet<&str> = self
            .subscribed_names
            .iter()
            .filter_map(|n| topics.get_key_value(n).map(|(k, _)| k.as_str()))
            .collect();
        if let Some((_, regex)) = &self.subscribed_regex {
            out.extend(
                topics
                    .keys()
                    .filter(|t| regex.is_match(t))
                    .map(String::as_str),
            );
        }
        out
    }
}

#[derive(Debug, Clone, Default)]
pub struct ConsumerGroup {
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    /// Static members: instance id -> member id.
    pub static_members: HashMap<String, String>,
    pub target: BTreeMap<String, Assignment>,
    /// The subscribed topics' ids and partition counts at the group epoch.
    pub subscribed_metadata: BTreeMap<String, (Uuid, i32)>,
    /// The assignor of the last target assignment.
    pub assignor: String,
    /// Restored from the log: the subscribed topics' metadata is learned again on the next
    /// refresh without counting as a change.
    pub metadata_unknown: bool,
    /// The records last written to `__consumer_offsets` (see `records`).
    pub written: BTreeMap<super::records::ConsumerKey, bytes::Bytes>,
}

impl ConsumerGroup {
    /// Kafka's consumer group states.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch != self.epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.reconciliation.member_epoch != self.assignment_epoch
                || m.reconciliation.state != MemberState::Stable
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Partitions held (assigned or being revoked) by members other than `except`.
    pub fn held_by_others(&self, except: &str) -> HashSet<(Uuid, i32)> {
        let mut held = HashSet::new();
        for member in self.members.values().filter(|m| m.id != except) {
            let r = &member.reconciliation;
            for (topic, partitions) in r.assigned.iter().chain(&r.revoking) {
                held.extend(partitions.iter().map(|p| (*topic, *p)));
            }
        }
        held
    }

    /// Follows membership, subscription and topic metadata: bumps the group epoch when the
    /// subscribed topics changed, and computes a new target assignment when the epoch moved.
    /// `bump`: membership or a subscription changed (one epoch bump with any metadata change).
    pub fn refresh(&mut self, config: &ConsumerConfig, topics: &TopicsView, bump: bool) {
        let mut metadata = BTreeMap::new();
        for member in self.members.values() {
            for name in member.subscribed(topics) {
                if let Some(v) = topics.get(name) {
                    metadata.insert(name.to_string(), *v);
                }
            }
        }
        if self.metadata_unknown {
            self.metadata_unknown = false;
            self.subscribed_metadata.clone_from(&metadata);
        }
        if bump || metadata != self.subscribed_metadata {
            if !bump {
                tracing::info!(
                    topics = metadata.len(),
                    "consumer group: subscribed topic metadata changed"
                );
            }
            self.subscribed_metadata = metadata;
            self.epoch += 1;
        }
        if self.assignment_epoch == self.epoch {
            return;
        }
        let kind = self.chosen_assignor(config);
        let subscriptions: Subscriptions = self
            .members
            .values()
            .map(|m| {
                let ids = m
                    .subscribed(topics)
                    .into_iter()
                    .filter_map(|n| topics.get(n));
                (m.id.clone(), ids.map(|(id, _)| *id).collect())
            })
            .collect();
        let counts: BTreeMap<Uuid, i32> = self.subscribed_metadata.values().copied().collect();
        self.target = assignor::assign(kind, &subscriptions, &counts, &self.target);
        self.assignor = kind.name().to_string();
        self.assignment_epoch = self.epoch;
        tracing::info!(epoch = self.epoch, assignor = %self.assignor, members = self.members.len(), "consumer group: new target assignment");
    }

    /// The members' most requested configured assignor, else the default one.
    fn chosen_assignor(&self, config: &ConsumerConfig) -> super::AssignorKind {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(name) = &m.server_assignor {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let best = votes
            .iter()
            .max_by_key(|(name, n)| (**n, std::cmp::Reverse(**name)));
        best.and_then(|(name, _)| config.assignor(Some(name)))
            .or_else(|| config.assignor(None))
            .unwrap_or(super::AssignorKind::Uniform)
    }

    /// Removes a member (left, expired or fenced): a new group epoch and target assignment.
    pub fn remove_member(
        &mut self,
        member_id: &str,
        config: &ConsumerConfig,
        topics: &TopicsView,
    ) -> Option<ConsumerMember> {
        let member = self.forget(member_id)?;
        self.refresh(config, topics, true);
        Some(member)
    }

    fn forget(&mut self, member_id: &str) -> Option<ConsumerMember> {
        let member = self.members.remove(member_id)?;
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        self.target.remove(member_id);
        Some(member)
    }

    /// What time alone changes: members whose session ended or who did not revoke in time are
    /// removed; topic metadata changes are followed. Returns the removed member ids.
    pub fn tick(
        &mut self,
        now_ms: i64,
        config: &ConsumerConfig,
        topics: &TopicsView,
    ) -> Vec<String> {
        let session = i64::from(config.session_timeout_ms);
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                now_ms - m.last_heartbeat_ms > session
                    || m.revoke_deadline_ms.is_some_and(|d| now_ms > d)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            tracing::info!(member = %id, "consumer group member expired or did not revoke in time; removed");
            self.forget(id);
        }
        self.refresh(config, topics, !gone.is_empty());
        gone
    }
}
