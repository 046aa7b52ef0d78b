//! A partition's leader epochs as clients and followers ask for them (KIP-101, KIP-279, KIP-320):
//! the OffsetForLeaderEpoch answers of its epoch cache, and the epoch that wrote a given offset
//! (the `leader_epoch` ListOffsets returns with an offset, which a consumer later validates).
//! A child module of `partition.rs`, so it reads the log through `with_log` like the rest.
//!
//! Every method costs one lock of the log and a binary search of the cache: a request naming
//! many partitions costs work in proportion to its size.

use inlet_storage::leader_epoch::UNDEFINED_EPOCH;
use inlet_storage::LeaderEpochCache;

use super::{Partition, PartitionError};

impl Partition {
    /// The log's epoch cache answer for `epoch` (Kafka's `UnifiedLog.endOffsetForEpoch`):
    /// `(largest known epoch <= epoch, end offset of that epoch)`; `None` is UNDEFINED (-1, -1).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Result<Option<(i32, i64)>, PartitionError> {
        self.with_log(|log| Ok(log.end_offset_for_epoch(epoch)))
    }

    /// The latest epoch that wrote this partition's log, `None` if no batch carried one.
    pub fn latest_epoch(&self) -> Result<Option<i32>, PartitionError> {
        self.with_log(|log| Ok(log.latest_epoch()))
    }

    /// [`Partition::end_offset_for_epoch`] as the leader of epoch [`Partition::leader_epoch`]
    /// answers it. Kafka's leader adds its own epoch to the cache, starting at the log end, the
    /// moment it becomes leader (`maybeAssignEpochStartOffset`); here the cache learns an epoch
    /// from the first batch written in it, so until then the leader's epoch is counted as
    /// starting at the log end. Without that, a follower or consumer asking for the current
    /// epoch before anything was written in it would be told UNDEFINED.
    pub fn leader_end_offset_for_epoch(
        &self,
        epoch: i32,
    ) -> Result<Option<(i32, i64)>, PartitionError> {
        let leader_epoch = self.leader_epoch();
        self.with_log(|log| {
            Ok(leader_end_offset(
                log.leader_epoch_cache(),
                leader_epoch,
                epoch,
                log.log_end_offset(),
            ))
        })
    }

    /// The epoch that wrote `offset` (Kafka's `LeaderEpochFileCache.epochForOffset`): the last
    /// epoch starting at or before it; `None` below the first known epoch.
    pub fn epoch_for_offset(&self, offset: i64) -> Result<Option<i32>, PartitionError> {
        self.with_log(|log| Ok(epoch_for_offset(log.leader_epoch_cache(), offset)))
    }

    /// The epoch of the first offset, `log_start`, as Kafka's ListOffsets EARLIEST reports it:
    /// the earliest cache entry if it covers `log_start`, else `None` (the first epochs went with
    /// segments the cache no longer describes, e.g. those only the lake holds).
    pub fn epoch_at_log_start(&self, log_start: i64) -> Result<Option<i32>, PartitionError> {
        self.with_log(|log| {
            Ok(log
                .leader_epoch_cache()
                .entries()
                .first()
                .filter(|e| e.start_offset <= log_start)
                .map(|e| e.epoch))
        })
    }

    /// Where the current leader epoch started writing (Kafka's `leaderEpochStartOffsetOpt`):
    /// its cache entry's start, or the log end while nothing was written in it yet. Until the
    /// high watermark reaches it after an election, ListOffsets answers OFFSET_NOT_AVAILABLE
    /// (KIP-207) rather than an offset that could later go backwards.
    pub fn leader_epoch_start_offset(&self) -> Result<i64, PartitionError> {
        let leader_epoch = self.leader_epoch();
        self.with_log(|log| {
            Ok(log
                .leader_epoch_cache()
                .latest()
                .filter(|e| e.epoch >= leader_epoch)
                .map_or(log.log_end_offset(), |e| e.start_offset))
        })
    }
}

/// [`Partition::leader_end_offset_for_epoch`] on its data: the cache answer as if
/// `(leader_epoch, log_end)` were its last entry when the cache has no entry for it yet.
fn leader_end_offset(
    cache: &LeaderEpochCache,
    leader_epoch: i32,
    requested: i32,
    log_end: i64,
) -> Option<(i32, i64)> {
    let latest = cache.latest_epoch();
    let cache_has_it = leader_epoch < 0 || latest.is_some_and(|l| l >= leader_epoch);
    if cache_has_it || requested == UNDEFINED_EPOCH {
        return cache.end_offset_for(requested, log_end);
    }
    if requested > leader_epoch {
        return None;
    }
    if requested == leader_epoch {
        return Some((leader_epoch, log_end));
    }
    match latest {
        // An epoch below the latest written one ends where a written entry begins.
        Some(l) if requested < l => cache.end_offset_for(requested, log_end),
        // From the latest written epoch up to the leader's, everything ends at the log end,
        // where the leader's epoch begins.
        Some(l) => Some((l, log_end)),
        None => Some((requested, log_end)),
    }
}

fn epoch_for_offset(cache: &LeaderEpochCache, offset: i64) -> Option<i32> {
    let entries = cache.entries();
    let covering = entries.partition_point(|e| e.start_offset <= offset);
    covering.checked_sub(1).map(|i| entries[i].epoch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlet_storage::EpochEntry;
    use proptest::prelude::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        LeaderEpochCache::from_entries(
            entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect(),
        )
        .expect("a valid cache")
    }

    #[test]
    fn a_leader_whose_epoch_is_in_the_cache_answers_as_the_cache() {
        let c = cache(&[(0, 0), (2, 10), (5, 30)]);
        assert_eq!(leader_end_offset(&c, 5, 0, 40), Some((0, 10)));
        assert_eq!(leader_end_offset(&c, 5, 1, 40), Some((0, 10)));
        assert_eq!(leader_end_offset(&c, 5, 2, 40), Some((2, 30)));
        assert_eq!(leader_end_offset(&c, 5, 4, 40), Some((2, 30)));
        assert_eq!(leader_end_offset(&c, 5, 5, 40), Some((5, 40)));
        assert_eq!(leader_end_offset(&c, 5, 6, 40), None);
        assert_eq!(leader_end_offset(&c, 5, -1, 40), None);
    }

    #[test]
    fn a_new_leaders_epoch_starts_at_the_log_end_before_it_writes() {
        // Epochs 0 and 2 wrote; this broker leads epoch 4 and has written nothing in it.
        let c = cache(&[(0, 0), (2, 10)]);
        assert_eq!(leader_end_offset(&c, 4, 0, 25), Some((0, 10)));
        assert_eq!(leader_end_offset(&c, 4, 2, 25), Some((2, 25)));
        assert_eq!(leader_end_offset(&c, 4, 3, 25), Some((2, 25)));
        assert_eq!(leader_end_offset(&c, 4, 4, 25), Some((4, 25)));
        assert_eq!(leader_end_offset(&c, 4, 5, 25), None);
        assert_eq!(leader_end_offset(&c, 4, -1, 25), None);
        // An empty log led in epoch 1.
        let empty = LeaderEpochCache::default();
        assert_eq!(leader_end_offset(&empty, 1, 1, 0), Some((1, 0)));
        assert_eq!(leader_end_offset(&empty, 1, 0, 0), Some((0, 0)));
        assert_eq!(leader_end_offset(&empty, 1, 2, 0), None);
    }

    #[test]
    fn the_epoch_of_an_offset_is_the_last_starting_at_or_before_it() {
        let c = cache(&[(1, 5), (3, 10)]);
        assert_eq!(epoch_for_offset(&c, 4), None);
        assert_eq!(epoch_for_offset(&c, 5), Some(1));
        assert_eq!(epoch_for_offset(&c, 9), Some(1));
        assert_eq!(epoch_for_offset(&c, 10), Some(3));
        assert_eq!(epoch_for_offset(&c, 1000), Some(3));
        assert_eq!(epoch_for_offset(&LeaderEpochCache::default(), 0), None);
    }

    fn partition(dir: &std::path::Path) -> Partition {
        let log = inlet_storage::Log::open(dir, inlet_storage::LogConfig::default()).unwrap();
        Partition::new("t", 0, log)
    }

    fn records(n: usize) -> Vec<u8> {
        let records: Vec<(&[u8], &[u8])> = (0..n).map(|_| (&b"k"[..], &b"v"[..])).collect();
        inlet_protocol::batch::TestBatchBuilder::default().build(&records)
    }

    #[test]
    fn a_partition_answers_from_its_log_and_its_leader_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path());
        assert_eq!(p.latest_epoch().unwrap(), None);
        p.append(&records(3)).unwrap();
        // Led again two epochs later, nothing written yet.
        p.set_leader_epoch(2);
        assert_eq!(p.latest_epoch().unwrap(), Some(0));
        assert_eq!(p.end_offset_for_epoch(2).unwrap(), None);
        assert_eq!(p.leader_end_offset_for_epoch(2).unwrap(), Some((2, 3)));
        assert_eq!(p.leader_end_offset_for_epoch(0).unwrap(), Some((0, 3)));
        assert_eq!(p.leader_epoch_start_offset().unwrap(), 3);
        p.append(&records(2)).unwrap();
        assert_eq!(p.latest_epoch().unwrap(), Some(2));
        assert_eq!(p.end_offset_for_epoch(0).unwrap(), Some((0, 3)));
        assert_eq!(p.end_offset_for_epoch(1).unwrap(), Some((0, 3)));
        assert_eq!(p.leader_end_offset_for_epoch(2).unwrap(), Some((2, 5)));
        assert_eq!(p.leader_end_offset_for_epoch(3).unwrap(), None);
        assert_eq!(p.leader_epoch_start_offset().unwrap(), 3);
        assert_eq!(p.epoch_for_offset(2).unwrap(), Some(0));
        assert_eq!(p.epoch_for_offset(4).unwrap(), Some(2));
        assert_eq!(p.epoch_at_log_start(0).unwrap(), Some(0));
        p.close().unwrap();
        assert!(matches!(
            p.latest_epoch(),
            Err(PartitionError::Closed { .. })
        ));
    }

    proptest! {
        /// The leader's answer is the cache's answer once the leader's epoch is appended to it
        /// at the log end, which is what Kafka's cache holds (checked against a real cache).
        #[test]
        fn the_leaders_answer_is_the_cache_with_its_epoch_assigned_at_the_log_end(
            steps in proptest::collection::vec((1i32..4, 1i64..20), 0..6),
            extra in 0i32..4,
            requested in -1i32..25,
        ) {
            let mut entries = Vec::new();
            let (mut epoch, mut offset) = (0, 0);
            for (de, doff) in steps {
                entries.push((epoch, offset));
                epoch += de;
                offset += doff;
            }
            let log_end = offset;
            let c = cache(&entries);
            let leader_epoch = c.latest_epoch().unwrap_or(0) + extra;
            // Kafka's cache: the leader's epoch assigned at the log end (a no-op if written).
            let mut kafka = c.clone();
            kafka.assign(leader_epoch, log_end);
            let expected = kafka.end_offset_for(requested, log_end);
            prop_assert_eq!(leader_end_offset(&c, leader_epoch, requested, log_end), expected);
        }
    }
}
