//! What changes in a group with time alone: members whose session expired are removed, join
//! phases end at their deadline, members that did not send SyncGroup within the rebalance
//! timeout are dropped, and member ids handed out with MEMBER_ID_REQUIRED expire.

use super::state::{Group, GroupState};
use super::GroupError;

impl Group {
    /// What changes with time alone: expired sessions, ended join phases, missed syncs.
    pub fn tick(&mut self, now_ms: i64, initial_delay_ms: i64) {
        self.pending_members.retain(|_, expiry| *expiry > now_ms);
        // Members parked in JoinGroup/SyncGroup are alive by definition (Kafka keeps them too).
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none())
            .filter(|m| now_ms - m.last_heartbeat_ms > i64::from(m.session_timeout_ms))
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = %self.id, member = %id, "session timed out; member removed");
            self.remove_member(id);
        }
        if self.is(GroupState::CompletingRebalance) && now_ms >= self.sync_deadline_ms {
            let unsynced: Vec<String> = self
                .members
                .values()
                .filter(|m| m.sync_waiter.is_none())
                .map(|m| m.id.clone())
                .collect();
            for id in &unsynced {
                tracing::info!(group = %self.id, member = %id, "no SyncGroup within the rebalance timeout; member removed");
                self.remove_member(id);
            }
            if !unsynced.is_empty() {
                self.after_membership_change(now_ms, initial_delay_ms, "members did not sync");
            }
        }
        if !expired.is_empty() {
            self.after_membership_change(now_ms, initial_delay_ms, "session timeout");
        }
        self.maybe_complete_join(now_ms);
    }

    /// After members left: rebalance, or become Empty when nobody is left.
    pub fn after_membership_change(&mut self, now_ms: i64, initial_delay_ms: i64, reason: &str) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    // Kafka goes through a (trivial) rebalance to Empty with a new generation.
                    self.prepare_rebalance(now_ms, 0, reason);
                    self.complete_join(now_ms);
                } else {
                    self.prepare_rebalance(now_ms, initial_delay_ms, reason);
                }
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Fails every parked request (broker shutdown or group deletion).
    pub fn fail_waiters(&mut self, error: GroupError) {
        for member in self.members.values_mut() {
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(Err(error.clone()));
            }
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(Err(error.clone()));
            }
        }
    }
}
