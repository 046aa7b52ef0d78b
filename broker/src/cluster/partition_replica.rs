//! A partition's role in replication (Kafka's `Partition.makeLeader` / `makeFollower`) and what
//! each role does to the log: the leader tracks its followers' fetches and moves the high
//! watermark to the smallest log end in the ISR; a follower appends what it fetched as it is,
//! takes the leader's high watermark, and truncates a tail the leader does not have.
//!
//! Lock order: the role, then the log. Appends take only the log's lock and read `leading` and
//! `sole_in_sync`, which change only under both locks, so an append never lands in a log that
//! has just become a follower's.

use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

use inlet_storage::{AppendOutcome, Log};
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Partition, PartitionError};
use crate::metadata::image::PartitionImage;
use crate::replication::{LeaderState, Role};

/// An ISR change a leader wants the controller to make (Kafka's AlterPartition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// Where a follower's log stands, for its next fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerPosition {
    pub log_start: i64,
    pub log_end: i64,
    /// The epoch of the last batch in the log, -1 if none carried one.
    pub last_fetched_epoch: i32,
}

impl Partition {
    fn role(&self) -> MutexGuard<'_, Role> {
        self.role.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bumps the partition's change signal.
    pub(super) fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes whenever this partition's log end, high watermark or role does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub(super) fn check_leading(&self) -> Result<(), PartitionError> {
        if self.leading.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(PartitionError::NotLeader {
                topic: self.topic.clone(),
                index: self.index,
            })
        }
    }

    /// After a leader's append, under the log's lock.
    pub(super) fn after_leader_append(&self, log: &mut Log) {
        if self.sole_in_sync.load(Ordering::Acquire) {
            let end = log.log_end_offset();
            log.set_high_watermark(end);
            self.high_watermark.store(end, Ordering::Release);
        }
    }

    /// Sets the high watermark (clamped to the log) in the log, for its checkpoint, and for
    /// readers; wakes waiters when it moved.
    fn store_high_watermark(&self, log: &mut Log, offset: i64) {
        let set = log.set_high_watermark(offset);
        if self.high_watermark.swap(set, Ordering::AcqRel) != set {
            self.notify();
        }
    }

    /// Applies the image's view of this partition for broker `me`: leader, follower, or neither
    /// (no leader, or not a replica). Returns what the role became.
    pub fn apply_image(
        &self,
        me: i32,
        image: &PartitionImage,
        now_ms: i64,
    ) -> Result<RoleChange, PartitionError> {
        self.set_leader_epoch(image.leader_epoch);
        let mut role = self.role();
        let change = self.with_log(|log| {
            let end = log.log_end_offset();
            let change = if image.leader == me {
                match &mut *role {
                    Role::Leader(state) if state.leader_epoch == image.leader_epoch => {
                        state.update(me, image.partition_epoch, &image.replicas, &image.isr);
                        RoleChange::Unchanged
                    }
                    _ => {
                        *role = Role::Leader(LeaderState::new(
                            me,
                            image.leader_epoch,
                            image.partition_epoch,
                            &image.replicas,
                            &image.isr,
                            end,
                            now_ms,
                        ));
                        RoleChange::BecameLeader
                    }
                }
            } else if image.leader >= 0 && image.replicas.contains(&me) {
                let same = matches!(&*role, Role::Follower { leader, leader_epoch }
                    if *leader == image.leader && *leader_epoch == image.leader_epoch);
                *role = Role::Follower {
                    leader: image.leader,
                    leader_epoch: image.leader_epoch,
                };
                if same {
                    RoleChange::Unchanged
                } else {
                    RoleChange::BecameFollower
                }
            } else {
                let same = matches!(&*role, Role::Offline);
                *role = Role::Offline;
                if same {
                    RoleChange::Unchanged
                } else {
                    RoleChange::WentOffline
                }
            };
            let (leading, sole) = match &*role {
                Role::Leader(state) => (true, state.isr == [me] && state.pending_isr.is_none()),
                _ => (false, false),
            };
            self.leading.store(leading, Ordering::Release);
            self.sole_in_sync.store(sole, Ordering::Release);
            if let Role::Leader(state) = &*role {
                // The new ISR may let the high watermark move (a laggard left), never back.
                let hw = if sole {
                    end
                } else {
                    state.high_watermark(me, end)
                };
                if hw > self.high_watermark.load(Ordering::Acquire) {
                    self.store_high_watermark(log, hw);
                }
            } else {
                // A follower's high watermark is the leader's, as its fetches tell.
                let hw = self.high_watermark.load(Ordering::Acquire).min(end);
                self.store_high_watermark(log, hw);
            }
            Ok(change)
        })?;
        drop(role);
        if change != RoleChange::Unchanged {
            // Waiting producers and fetches recheck the role.
            self.notify();
        }
        Ok(change)
    }

    /// Whether this broker leads the partition now (as the last image applied says).
    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// For a follower's fetch at `fetch_offset` whose last batch has `last_fetched_epoch`: the
    /// `(epoch, end offset)` where the leader's log parted from it, if it did (KIP-320), i.e. the
    /// leader ends that epoch earlier, or never had it.
    pub fn diverging_epoch(
        &self,
        last_fetched_epoch: i32,
        fetch_offset: i64,
    ) -> Result<Option<(i32, i64)>, PartitionError> {
        let (epoch, end) = self
            .leader_end_offset_for_epoch(last_fetched_epoch)?
            .unwrap_or((-1, -1));
        Ok((epoch < last_fetched_epoch || end < fetch_offset).then_some((epoch, end)))
    }

    /// Whether this broker leads the partition at `epoch` now.
    pub fn is_leader_at(&self, epoch: i32) -> bool {
        matches!(&*self.role(), Role::Leader(state) if state.leader_epoch == epoch)
    }

    /// The ISR size while this broker leads (for `min.insync.replicas`), else None.
    pub fn isr_size(&self) -> Option<usize> {
        match &*self.role() {
            Role::Leader(state) => Some(state.isr.len()),
            _ => None,
        }
    }

    /// Refuses a replica fetch unless this broker leads and `replica` is one of the partition's
    /// replicas (a client claiming a replica id gets NOT_LEADER_OR_FOLLOWER).
    pub fn check_follower(&self, replica: i32) -> Result<(), ResponseError> {
        match &*self.role() {
            Role::Leader(state) if state.is_replica(replica) => Ok(()),
            _ => Err(ResponseError::NotLeaderOrFollower),
        }
    }

    /// A follower's fetch from `fetch_offset` (it has everything below) with its log starting at
    /// `log_start`: updates what the leader knows of it and moves the high watermark (and wakes
    /// a DeleteRecords waiting for the follower's start). Refused unless this broker leads and
    /// `replica` is one of the partition's replicas.
    pub fn follower_fetched(
        &self,
        me: i32,
        replica: i32,
        fetch_offset: i64,
        log_start: i64,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        let mut role = self.role();
        let Role::Leader(state) = &mut *role else {
            return Err(ResponseError::NotLeaderOrFollower);
        };
        if !state.is_replica(replica) {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        let result = self.with_log(|log| {
            let end = log.log_end_offset();
            if fetch_offset > end {
                // Past this log's end: the follower is answered OFFSET_OUT_OF_RANGE and must
                // truncate; its offset proves nothing.
                return Ok(());
            }
            state.follower_fetched(replica, fetch_offset, end, now_ms);
            if state.follower_log_start(replica, log_start) {
                self.notify();
            }
            if !self.sole_in_sync.load(Ordering::Acquire) {
                let hw = state.high_watermark(me, end);
                if hw > self.high_watermark.load(Ordering::Acquire) {
                    self.store_high_watermark(log, hw);
                }
            }
            Ok(())
        });
        result.map_err(|e| crate::handlers::errors::partition_error(&e))
    }

    /// The ISR change this leader should ask for now, if any (see [`LeaderState::wanted_isr`]);
    /// it is then pending until the image shows it.
    pub fn isr_change(
        &self,
        me: i32,
        now_ms: i64,
        lag_ms: i64,
        live: impl Fn(i32) -> bool,
    ) -> Option<IsrChange> {
        let mut role = self.role();
        let Role::Leader(state) = &mut *role else {
            return None;
        };
        let hw = self.high_watermark.load(Ordering::Acquire);
        let new_isr = state.wanted_isr(me, hw, now_ms, lag_ms, live)?;
        state.pending_isr = Some(new_isr.clone());
        // While an expansion is pending the new member counts for the high watermark at once;
        // appends must stop moving it alone.
        if new_isr.len() > 1 {
            self.sole_in_sync.store(false, Ordering::Release);
        }
        Some(IsrChange {
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            new_isr,
        })
    }

    /// The controller refused or lost an ISR change: forget it so that it is asked again.
    pub fn isr_change_failed(&self, me: i32) {
        let mut role = self.role();
        if let Role::Leader(state) = &mut *role {
            state.pending_isr = None;
            if state.isr == [me] {
                // A closed log needs no high watermark.
                let _ = self.with_log(|log| {
                    self.sole_in_sync.store(true, Ordering::Release);
                    let end = log.log_end_offset();
                    self.store_high_watermark(log, end);
                    Ok(())
                });
            }
        }
    }

    /// Waits until the high watermark reaches `offset` while this broker leads at `epoch`:
    /// Ok once it does; NOT_LEADER_OR_FOLLOWER if leadership moves; REQUEST_TIMED_OUT at
    /// `deadline`. Parks the task (no thread is held).
    pub async fn wait_for_high_watermark(
        &self,
        offset: i64,
        epoch: i32,
        deadline: Instant,
    ) -> Result<(), ResponseError> {
        let mut changed = self.subscribe();
        loop {
            changed.borrow_and_update();
            if !self.is_leader_at(epoch) {
                return Err(ResponseError::NotLeaderOrFollower);
            }
            if self.high_watermark.load(Ordering::Acquire) >= offset {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Err(ResponseError::RequestTimedOut),
            }
        }
    }

    /// Waits until every in-sync replica's log start reached `offset` while this broker leads
    /// at `epoch` (Kafka's `DelayedDeleteRecords`): the low watermark then, NOT_LEADER_OR_FOLLOWER
    /// if leadership moves, REQUEST_TIMED_OUT at `deadline`.
    pub async fn wait_for_low_watermark(
        &self,
        offset: i64,
        epoch: i32,
        deadline: Instant,
    ) -> Result<i64, ResponseError> {
        let mut changed = self.subscribe();
        loop {
            changed.borrow_and_update();
            let low = {
                let role = self.role();
                let Role::Leader(state) = &*role else {
                    return Err(ResponseError::NotLeaderOrFollower);
                };
                if state.leader_epoch != epoch {
                    return Err(ResponseError::NotLeaderOrFollower);
                }
                let start = self
                    .offsets()
                    .map_err(|e| crate::handlers::errors::partition_error(&e))?
                    .log_start;
                state.low_watermark(start)
            };
            if low >= offset {
                return Ok(low);
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Err(ResponseError::RequestTimedOut),
            }
        }
    }

    // --- the follower's side ---------------------------------------------------------------

    /// Where this replica's log stands, for its next fetch from the leader.
    pub fn follower_position(&self) -> Result<FollowerPosition, PartitionError> {
        self.with_log(|log| {
            Ok(FollowerPosition {
                log_start: log.log_start_offset(),
                log_end: log.log_end_offset(),
                last_fetched_epoch: log.latest_epoch().unwrap_or(-1),
            })
        })
    }

    /// Appends batches fetched from the leader at `epoch`, as they are, then takes the leader's
    /// high watermark (never past this log's end). Refused once this broker is no longer a
    /// follower of that epoch (a stale fetch must not write).
    pub fn append_as_follower(
        &self,
        epoch: i32,
        records: &[u8],
        leader_high_watermark: i64,
    ) -> Result<Option<AppendOutcome>, PartitionError> {
        let role = self.role();
        if !matches!(&*role, Role::Follower { leader_epoch, .. } if *leader_epoch == epoch) {
            return Err(PartitionError::NotLeader {
                topic: self.topic.clone(),
                index: self.index,
            });
        }
        let outcome = self.with_log(|log| {
            let outcome = if records.is_empty() {
                None
            } else {
                Some(log.append_as_follower(records)?)
            };
            let hw = leader_high_watermark.min(log.log_end_offset());
            self.store_high_watermark(log, hw);
            Ok(outcome)
        })?;
        drop(role);
        if outcome.is_some() {
            self.notify();
        }
        Ok(outcome)
    }

    /// Takes the leader's log start from its Fetch answer (Kafka's follower
    /// `maybeIncrementLogStartOffset`): records the leader deleted go here too, up to this log's
    /// end (the rest as it catches up). Cheap when the start did not move.
    pub fn adopt_leader_log_start(&self, leader_start: i64) -> Result<(), PartitionError> {
        self.with_log(|log| {
            if leader_start <= log.log_start_floor()
                || log.log_start_floor() >= log.log_end_offset()
            {
                return Ok(());
            }
            log.adopt_leader_log_start(leader_start)?;
            // The log keeps its high watermark at or above its start.
            let hw = log.high_watermark();
            self.store_high_watermark(log, hw);
            Ok(())
        })
    }

    /// After the leader answered that this log diverged at `(epoch, end_offset)` (KIP-320):
    /// truncates to the smaller of that and this log's own end for `epoch`. Returns the new end.
    pub fn truncate_to_divergence(
        &self,
        epoch: i32,
        end_offset: i64,
    ) -> Result<i64, PartitionError> {
        let _role = self.role();
        self.with_log(|log| {
            // As Kafka's follower: with the same epoch, the smaller end; without it, the end of
            // this log's last epoch below it (the next fetch checks that one with the leader).
            let target = match log.end_offset_for_epoch(epoch) {
                Some((own_epoch, own_end)) if own_epoch == epoch => end_offset.min(own_end),
                Some((_, own_end)) => own_end,
                None => log.log_start_offset(),
            }
            .min(log.log_end_offset());
            if target < log.log_end_offset() {
                tracing::info!(topic = %self.topic, partition = self.index, from = log.log_end_offset(),
                    to = target, epoch, "truncating a tail the leader does not have");
                log.truncate_to(target)?;
            }
            let hw = self.high_watermark.load(Ordering::Acquire).min(target);
            self.store_high_watermark(log, hw);
            Ok(log.log_end_offset())
        })
    }

    /// The leader no longer has this log's offsets (its log starts past our end, or ours starts
    /// past its end): empties the log and restarts it at `offset`, as Kafka's follower does.
    pub fn restart_log_at(&self, offset: i64) -> Result<(), PartitionError> {
        let _role = self.role();
        self.with_log(|log| {
            tracing::warn!(topic = %self.topic, partition = self.index, offset,
                "the leader's log does not overlap this replica's: restarting the replica there");
            log.truncate_fully_and_start_at(offset)?;
            self.store_high_watermark(log, offset);
            Ok(())
        })
    }
}

/// What [`Partition::apply_image`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    Unchanged,
    BecameLeader,
    BecameFollower,
    WentOffline,
}
