//! KIP-848's consumer group protocol (ConsumerGroupHeartbeat): the server computes assignments.
//!
//! * [`assignor`] turns members' subscriptions into a target assignment (`uniform`, `range`).
//! * [`reconcile`] moves one member from its current assignment towards its target, revoking
//!   first and withholding partitions another member still holds (Kafka's
//!   `CurrentAssignmentBuilder`).
//! * [`group`] is one consumer group: members, the group epoch (bumped by membership,
//!   subscription and subscribed-topic metadata changes), the target assignment at its
//!   assignment epoch, and what time alone changes (session and revocation timeouts);
//!   [`heartbeat`] holds the ConsumerGroupHeartbeat rules on it (join, leave, static
//!   membership, fencing).
//! * [`records`] writes a group to `__consumer_offsets` with Kafka's record types and rebuilds it
//!   on replay, so members keep their epochs across a coordinator move.
//!
//! A consumer group lives inside the classic [`super::state::Group`] of the same id (its
//! `consumer` field), so committed offsets, deletion and the offsets partition it lives in are
//! shared with the classic protocol; the classic part of such a group stays Empty.
//!
//! Everything here is plain data driven by explicit timestamps, testable without a runtime.

pub mod assignor;
pub mod group;
pub mod heartbeat;
pub mod reconcile;
pub mod records;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

pub use group::{ConsumerGroup, ConsumerMember};
pub use heartbeat::{HeartbeatOutcome, HeartbeatRequest};

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// Topics as the metadata image shows them: name -> (id, partition count).
pub type TopicsView = BTreeMap<String, (Uuid, i32)>;

/// Kafka's `LEAVE_GROUP_MEMBER_EPOCH`.
pub const LEAVE_EPOCH: i32 = -1;
/// Kafka's `LEAVE_GROUP_STATIC_MEMBER_EPOCH`: a static member leaving for a while.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// The server-side assignors (`group.consumer.assignors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignorKind {
    Uniform,
    Range,
}

impl AssignorKind {
    pub fn name(self) -> &'static str {
        match self {
            AssignorKind::Uniform => "uniform",
            AssignorKind::Range => "range",
        }
    }

    pub fn parse(name: &str) -> Option<AssignorKind> {
        match name {
            "uniform" => Some(AssignorKind::Uniform),
            "range" => Some(AssignorKind::Range),
            _ => None,
        }
    }
}

/// Consumer group settings (Kafka's `group.consumer.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// `group.consumer.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout_ms: i32,
    /// `group.consumer.max.size`: `None` is unbounded.
    pub max_size: Option<u32>,
    /// `group.consumer.assignors`: the first is the default.
    pub assignors: [Option<AssignorKind>; 2],
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig::DEFAULT
    }
}

impl ConsumerConfig {
    /// Kafka's defaults.
    pub const DEFAULT: ConsumerConfig = ConsumerConfig {
        heartbeat_interval_ms: 5000,
        session_timeout_ms: 45000,
        max_size: None,
        assignors: [Some(AssignorKind::Uniform), Some(AssignorKind::Range)],
    };

    /// The assignor named `name` if configured; the default one for `None`.
    pub fn assignor(&self, name: Option<&str>) -> Option<AssignorKind> {
        match name {
            None => self.assignors.iter().flatten().next().copied(),
            Some(name) => self
                .assignors
                .iter()
                .flatten()
                .find(|a| a.name() == name)
                .copied(),
        }
    }

    /// Parses a comma-separated `group.consumer.assignors` value.
    pub fn parse_assignors(value: &str) -> Result<[Option<AssignorKind>; 2], String> {
        let mut out = [None, None];
        let mut count = 0;
        for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let kind = AssignorKind::parse(name)
                .ok_or_else(|| format!("unknown assignor {name:?} (uniform, range)"))?;
            if out.contains(&Some(kind)) {
                continue;
            }
            if count == out.len() {
                return Err("at most two assignors".into());
            }
            out[count] = Some(kind);
            count += 1;
        }
        if count == 0 {
            return Err("at least one assignor".into());
        }
        Ok(out)
    }
}

/// The topics of the image as [`TopicsView`], without internal topics (regexes never match them).
pub fn topics_view(image: &crate::metadata::image::MetadataImage) -> TopicsView {
    image
        .topics
        .values()
        .filter(|t| !is_internal(&t.name))
        .map(|t| {
            let count = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
            (t.name.clone(), (t.id, count))
        })
        .collect()
}

fn is_internal(name: &str) -> bool {
    name == super::OFFSETS_TOPIC || name == "__transaction_state"
}

/// Number of partitions in an assignment.
pub fn count(assignment: &Assignment) -> usize {
    assignment.values().map(BTreeSet::len).sum()
}

/// Whether every partition of `a` is in `b`.
pub fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    a.iter().all(|(topic, partitions)| {
        partitions.is_empty()
            || b.get(topic)
                .is_some_and(|other| partitions.is_subset(other))
    })
}

/// Same partitions (empty topic entries ignored).
pub fn same(a: &Assignment, b: &Assignment) -> bool {
    is_subset(a, b) && is_subset(b, a)
}

/// Whether `a` and `b` share a partition.
pub fn overlaps(a: &Assignment, b: &Assignment) -> bool {
    a.iter().any(|(topic, partitions)| {
        b.get(topic)
            .is_some_and(|other| !partitions.is_disjoint(other))
    })
}
