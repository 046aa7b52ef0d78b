//! How one member converges to its target assignment (Kafka's `CurrentAssignmentBuilder`).
//!
//! A member first gives up what is no longer its own: while it still holds such partitions it
//! stays at its epoch, keeps only the partitions it keeps (UNREVOKED_PARTITIONS) and must report
//! them gone within its rebalance timeout. Then it moves to the target epoch and gets its new
//! partitions, except those another member still holds, which it gets on a later heartbeat once
//! released (UNRELEASED_PARTITIONS). So a partition is never held by two members at once.

use std::collections::HashSet;

use uuid::Uuid;

use super::{overlaps, Assignment};

/// Kafka's `MemberState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Stable,
    UnrevokedPartitions,
    UnreleasedPartitions,
}

impl MemberState {
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Stable => "stable",
            MemberState::UnrevokedPartitions => "unrevoked_partitions",
            MemberState::UnreleasedPartitions => "unreleased_partitions",
        }
    }
}

/// A member's position in the reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    pub state: MemberState,
    pub member_epoch: i32,
    pub previous_epoch: i32,
    /// What the member may own now (what it is told).
    pub assigned: Assignment,
    /// What it must give up and may still hold.
    pub revoking: Assignment,
}

impl Reconciliation {
    pub fn new() -> Reconciliation {
        Reconciliation {
            state: MemberState::Stable,
            member_epoch: 0,
            previous_epoch: 0,
            assigned: Assignment::new(),
            revoking: Assignment::new(),
        }
    }
}

impl Default for Reconciliation {
    fn default() -> Self {
        Reconciliation::new()
    }
}

/// One reconciliation step for a member. `owned` is what the member reported holding (`None`:
/// not reported); `held_by_others` are partitions another member holds (assigned or revoking).
/// Returns whether anything changed.
pub fn step(
    current: &mut Reconciliation,
    target: &Assignment,
    target_epoch: i32,
    owned: Option<&Assignment>,
    held_by_others: &HashSet<(Uuid, i32)>,
) -> bool {
    match current.state {
        MemberState::UnrevokedPartitions => {
            // Progress only once the member says it no longer holds what it must give up.
            let still_holds = owned.is_none_or(|owned| overlaps(owned, &current.revoking));
            if still_holds {
                return false;
            }
            current.revoking.clear();
        }
        MemberState::Stable if current.member_epoch == target_epoch => return false,
        MemberState::Stable | MemberState::UnreleasedPartitions => {}
    }
    let before = current.clone();
    let mut keep = Assignment::new();
    let mut revoke = Assignment::new();
    let mut free = Assignment::new();
    let mut unreleased = false;
    for (topic, partitions) in &current.assigned {
        let wanted = target.get(topic);
        for &p in partitions {
            let bucket = if wanted.is_some_and(|w| w.contains(&p)) {
                &mut keep
            } else {
                &mut revoke
            };
            bucket.entry(*topic).or_default().insert(p);
        }
    }
    for (topic, partitions) in target {
        let had = current.assigned.get(topic);
        for &p in partitions {
            if had.is_some_and(|h| h.contains(&p)) {
                continue;
            }
            if held_by_others.contains(&(*topic, p)) {
                unreleased = true;
            } else {
                free.entry(*topic).or_default().insert(p);
            }
        }
    }
    if !revoke.is_empty() {
        current.state = MemberState::UnrevokedPartitions;
        current.assigned = keep;
        current.revoking = revoke;
    } else {
        for (topic, partitions) in free {
            keep.entry(topic).or_default().extend(partitions);
        }
        current.assigned = keep;
        if current.member_epoch != target_epoch {
            current.previous_epoch = current.member_epoch;
            current.member_epoch = target_epoch;
        }
        current.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
    }
    *current != before
}
