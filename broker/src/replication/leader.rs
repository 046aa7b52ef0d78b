//! What a partition leader knows of its followers (Kafka's `Partition` / `Replica` state on the
//! leader): each follower's log end offset as its fetches report it, when it was last caught up,
//! and from those the high watermark and the ISR changes to ask the controller for.
//!
//! Pure bookkeeping, no I/O: the partition calls it under its own lock, the ISR task reads it.

use std::collections::BTreeMap;

/// A follower as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// The follower has every offset below this one (its last fetch offset); -1: unknown, it has
    /// not fetched since this leader took over.
    pub log_end: i64,
    /// When the follower last had everything the leader had (Kafka's `lastCaughtUpTimeMs`).
    pub last_caught_up_ms: i64,
    /// The follower's log start offset as its last fetch reported it (-1: unknown); DeleteRecords
    /// waits for the in-sync followers' to reach the new start.
    pub log_start: i64,
    /// The leader's log end at the follower's previous fetch, and that fetch's time: a fetch
    /// reaching it proves the follower was caught up then.
    last_fetch_leader_end: i64,
    last_fetch_ms: i64,
}

/// The leader's view of one partition at one leader epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderState {
    pub leader_epoch: i32,
    /// The image's partition epoch: AlterPartition must name it.
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// The log end when this broker became leader at `leader_epoch`: a follower joins the ISR
    /// only once it has reached it (it then holds everything the previous leaders committed).
    pub epoch_start_offset: i64,
    /// Followers by broker id (every replica but this broker).
    pub followers: BTreeMap<i32, FollowerState>,
    /// An AlterPartition was sent for this ISR and the image does not show it yet.
    pub pending_isr: Option<Vec<i32>>,
}

impl LeaderState {
    /// The state of a broker that has just become leader: followers are unknown until they fetch,
    /// but the ISR's members count as caught up now, so that they get `replica.lag.time.max.ms`
    /// to show they still are.
    pub fn new(
        me: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: &[i32],
        isr: &[i32],
        log_end: i64,
        now_ms: i64,
    ) -> LeaderState {
        let followers = replicas
            .iter()
            .filter(|&&id| id != me)
            .map(|&id| {
                let caught_up = if isr.contains(&id) { now_ms } else { 0 };
                (
                    id,
                    FollowerState {
                        log_end: -1,
                        last_caught_up_ms: caught_up,
                        log_start: -1,
                        last_fetch_leader_end: -1,
                        last_fetch_ms: 0,
                    },
                )
            })
            .collect();
        LeaderState {
            leader_epoch,
            partition_epoch,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            epoch_start_offset: log_end,
            followers,
            pending_isr: None,
        }
    }

    /// A new image for the same leader epoch (the ISR or replicas changed): followers keep what
    /// their fetches told; new replicas start unknown.
    pub fn update(&mut self, me: i32, partition_epoch: i32, replicas: &[i32], isr: &[i32]) {
        self.partition_epoch = partition_epoch;
        self.replicas = replicas.to_vec();
        self.isr = isr.to_vec();
        self.followers.retain(|id, _| replicas.contains(id));
        for &id in replicas.iter().filter(|&&id| id != me) {
            self.followers.entry(id).or_insert(FollowerState {
                log_end: -1,
                last_caught_up_ms: 0,
                log_start: -1,
                last_fetch_leader_end: -1,
                last_fetch_ms: 0,
            });
        }
        if self.pending_isr.as_deref() == Some(isr) {
            self.pending_isr = None;
        }
    }

    pub fn is_replica(&self, id: i32) -> bool {
        self.followers.contains_key(&id)
    }

    /// Records a follower's fetch at `fetch_offset` while the leader's log ends at `leader_end`.
    /// Returns false if `id` is not a follower of this partition.
    pub fn follower_fetched(
        &mut self,
        id: i32,
        fetch_offset: i64,
        leader_end: i64,
        now_ms: i64,
    ) -> bool {
        let Some(follower) = self.followers.get_mut(&id) else {
            return false;
        };
        if fetch_offset >= leader_end {
            follower.last_caught_up_ms = now_ms;
        } else if follower.last_fetch_leader_end >= 0
            && fetch_offset >= follower.last_fetch_leader_end
        {
            follower.last_caught_up_ms = follower.last_caught_up_ms.max(follower.last_fetch_ms);
        }
        follower.log_end = fetch_offset;
        follower.last_fetch_leader_end = leader_end;
        follower.last_fetch_ms = now_ms;
        true
    }

    /// Records the log start a follower's fetch reported; true if it changed.
    pub fn follower_log_start(&mut self, id: i32, log_start: i64) -> bool {
        match self.followers.get_mut(&id) {
            Some(follower) if follower.log_start != log_start => {
                follower.log_start = log_start;
                true
            }
            _ => false,
        }
    }

    /// Kafka's low watermark: the smallest log start among the in-sync replicas (the leader's
    /// is `leader_start`; every other member is a follower). A follower that has not reported
    /// one holds it at -1.
    pub fn low_watermark(&self, leader_start: i64) -> i64 {
        self.isr
            .iter()
            .filter_map(|id| self.followers.get(id))
            .map(|f| f.log_start)
            .fold(leader_start, i64::min)
    }

    /// The ISR the high watermark is computed over: while an expansion is pending, the larger
    /// set (Kafka's "maximal ISR"), so the new member's acknowledgement counts at once.
    fn maximal_isr(&self) -> &[i32] {
        match &self.pending_isr {
            Some(pending) if pending.len() > self.isr.len() => pending,
            _ => &self.isr,
        }
    }

    /// The smallest log end among the in-sync replicas (the leader's is `leader_end`): every
    /// offset below it is on all of them. A follower that has not fetched yet holds it back.
    pub fn high_watermark(&self, me: i32, leader_end: i64) -> i64 {
        self.maximal_isr()
            .iter()
            .filter(|&&id| id != me)
            .map(|id| self.followers.get(id).map_or(-1, |f| f.log_end))
            .fold(leader_end, i64::min)
    }

    /// The ISR to propose, if it should change: followers not caught up for longer than
    /// `lag_ms` leave; followers out of it that have reached the high watermark and this
    /// epoch's start join. `live` says whether a broker is unfenced (fenced ones never join).
    pub fn wanted_isr(
        &self,
        me: i32,
        high_watermark: i64,
        now_ms: i64,
        lag_ms: i64,
        live: impl Fn(i32) -> bool,
    ) -> Option<Vec<i32>> {
        if self.pending_isr.is_some() {
            return None;
        }
        let mut isr: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|&id| {
                id == me
                    || self
                        .followers
                        .get(&id)
                        .is_some_and(|f| now_ms - f.last_caught_up_ms <= lag_ms)
            })
            .collect();
        for (&id, follower) in &self.followers {
            if !isr.contains(&id)
                && live(id)
                && follower.log_end >= high_watermark
                && follower.log_end >= self.epoch_start_offset
                && now_ms - follower.last_caught_up_ms <= lag_ms
            {
                isr.push(id);
            }
        }
        if !isr.contains(&me) {
            isr.insert(0, me);
        }
        let mut current = self.isr.clone();
        current.sort_unstable();
        let mut sorted = isr.clone();
        sorted.sort_unstable();
        (sorted != current).then_some(isr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: i32 = 1;

    fn leader(isr: &[i32]) -> LeaderState {
        LeaderState::new(ME, 5, 7, &[1, 2, 3], isr, 100, 1_000)
    }

    #[test]
    fn high_watermark_waits_for_every_isr_member() {
        let mut state = leader(&[1, 2, 3]);
        assert_eq!(
            state.high_watermark(ME, 120),
            -1,
            "followers not heard from yet"
        );
        state.follower_fetched(2, 120, 120, 1_010);
        assert_eq!(state.high_watermark(ME, 120), -1);
        state.follower_fetched(3, 110, 120, 1_010);
        assert_eq!(state.high_watermark(ME, 120), 110);
        state.follower_fetched(3, 120, 120, 1_020);
        assert_eq!(state.high_watermark(ME, 120), 120);
    }

    #[test]
    fn a_replica_outside_the_isr_does_not_hold_the_high_watermark_back() {
        let mut state = leader(&[1, 2]);
        state.follower_fetched(2, 130, 130, 1_010);
        assert_eq!(state.high_watermark(ME, 130), 130);
        assert!(!state.follower_fetched(9, 130, 130, 1_010), "not a replica");
    }

    #[test]
    fn a_lagging_follower_leaves_the_isr_and_rejoins_once_caught_up() {
        let mut state = leader(&[1, 2, 3]);
        state.follower_fetched(2, 100, 100, 1_000);
        state.follower_fetched(3, 100, 100, 1_000);
        // Broker 3 stops fetching; broker 2 keeps up.
        state.follower_fetched(2, 200, 200, 40_000);
        let isr = state.wanted_isr(ME, 200, 40_000, 30_000, |_| true);
        assert_eq!(isr, Some(vec![1, 2]));
        state.update(ME, 8, &[1, 2, 3], &[1, 2]);
        // Broker 3 comes back, first behind, then at the end.
        state.follower_fetched(3, 150, 200, 41_000);
        assert_eq!(state.wanted_isr(ME, 200, 41_000, 30_000, |_| true), None);
        state.follower_fetched(3, 200, 200, 41_100);
        assert_eq!(
            state.wanted_isr(ME, 200, 41_100, 30_000, |_| true),
            Some(vec![1, 2, 3])
        );
        assert_eq!(
            state.wanted_isr(ME, 200, 41_100, 30_000, |id| id != 3),
            None,
            "a fenced broker does not join"
        );
    }

    #[test]
    fn a_follower_behind_the_epoch_start_does_not_join() {
        let mut state = leader(&[1]);
        state.follower_fetched(2, 90, 100, 1_001);
        assert_eq!(state.wanted_isr(ME, 90, 1_001, 30_000, |_| true), None);
        state.follower_fetched(2, 100, 100, 1_002);
        assert_eq!(
            state.wanted_isr(ME, 100, 1_002, 30_000, |_| true),
            Some(vec![1, 2])
        );
    }

    #[test]
    fn fetching_up_to_the_previous_leader_end_counts_as_caught_up_then() {
        let mut state = leader(&[1, 2]);
        state.follower_fetched(2, 100, 150, 10_000);
        // The leader has moved on to 180, but the follower now has what it had at 10_000.
        state.follower_fetched(2, 150, 180, 50_000);
        let follower = state.followers[&2];
        assert_eq!(follower.last_caught_up_ms, 10_000);
        assert_eq!(
            state.wanted_isr(ME, 150, 50_000, 30_000, |_| true),
            Some(vec![1])
        );
    }

    #[test]
    fn a_pending_expansion_counts_its_new_member() {
        let mut state = leader(&[1]);
        state.follower_fetched(2, 100, 100, 1_001);
        state.pending_isr = Some(vec![1, 2]);
        assert_eq!(state.high_watermark(ME, 120), 100);
        assert_eq!(state.wanted_isr(ME, 100, 1_001, 30_000, |_| true), None);
        state.update(ME, 8, &[1, 2, 3], &[1, 2]);
        assert_eq!(state.pending_isr, None);
    }

    #[test]
    fn low_watermark_is_the_smallest_in_sync_log_start() {
        let mut state = leader(&[1, 2, 3]);
        assert_eq!(state.low_watermark(50), -1, "followers not heard from yet");
        assert!(state.follower_log_start(2, 50));
        assert!(!state.follower_log_start(2, 50), "unchanged");
        state.follower_log_start(3, 40);
        assert_eq!(state.low_watermark(50), 40);
        // Out of the ISR, a laggard no longer holds it back.
        state.update(ME, 8, &[1, 2, 3], &[1, 2]);
        assert_eq!(state.low_watermark(50), 50);
        assert!(!state.follower_log_start(9, 1), "not a replica");
    }
}
