//! Idempotent-producer state: per producer id, its epoch and its last five batches.
//!
//! Rules, following Kafka's `ProducerStateManager` (`ProducerAppendInfo.checkSequence`):
//! * Batches without a producer id (`producerId < 0`) and control batches are not checked.
//! * Older epoch than the one on record: `InvalidProducerEpoch`.
//! * Newer epoch: the sequence must restart at 0, else `OutOfOrderSequence`.
//! * Same epoch: a batch whose `(first_seq, last_seq)` equals a cached batch's is a duplicate
//!   (answered with the original offsets, not appended); otherwise `first_seq` must be the last
//!   cached `last_seq + 1` (wrapping at `i32::MAX` to 0), else `OutOfOrderSequence`.
//! * Unknown producer: any sequence is accepted, as Kafka does, because its state may have been
//!   removed by retention while the producer is still alive.
//!
//! Idle producers expire (KIP-854, Kafka's `producer.id.expiration.ms`): each entry keeps the
//! wall-clock time of its last append, and [`ProducerStateTable::expire`] drops those idle for
//! longer than the expiration, so invented or abandoned producer ids do not accumulate. A
//! producer that comes back after expiring is unknown again, and accepted at any sequence.
//!
//! Transactions (KIP-98, Kafka's `ProducerAppendInfo`): a transactional batch of a producer
//! with no transaction open on this partition opens one at its base offset; a non-transactional
//! batch while one is open is refused (`InvalidTxnState`). A marker
//! ([`StagedAppend::check_marker`]) ends it: a marker with an older producer epoch than recorded
//! is refused (`InvalidProducerEpoch`), as is one from an older coordinator epoch than the last
//! marker's (`TransactionCoordinatorFenced`); it sets the producer's epoch (forgetting its
//! batches when that changes) and coordinator epoch. Open transactions are indexed by first
//! offset, so the oldest one (which bounds the last stable offset) is found in O(log n); a
//! producer with an open transaction never expires (as in Kafka). Batches without a producer
//! id cost nothing here: no lookup, no allocation.
//!
//! [`Log::open`](crate::Log::open) and truncation rebuild the table from the newest usable
//! snapshot ([`crate::snapshot`], written at every roll and at close) plus a replay of the batch
//! headers after it ([`ProducerStateTable::replay`]); with no snapshot, from the whole log.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use inlet_protocol::batch::{increment_sequence, BatchHeader};

use crate::error::StorageError;
use crate::txn::{CompletedTxn, TxnMarker};

/// How many recent batches per producer are remembered for duplicate detection (Kafka: 5).
pub const CACHED_BATCHES: usize = 5;

/// One producer as DescribeProducers shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSummary {
    pub producer_id: i64,
    pub epoch: i16,
    /// The last sequence of its newest batch (-1 before any).
    pub last_sequence: i32,
    pub last_timestamp: i64,
    /// Of its last transaction marker (-1 before any).
    pub coordinator_epoch: i32,
    /// First offset of its open transaction on this partition.
    pub txn_first_offset: Option<i64>,
}

/// Sequence range and assigned offsets of one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

impl BatchMetadata {
    fn of(header: &BatchHeader) -> BatchMetadata {
        BatchMetadata {
            first_seq: header.base_sequence,
            last_seq: header.last_sequence(),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
        }
    }
}

#[derive(Debug, Clone)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMetadata>,
    /// Wall-clock ms of the producer's last append (Kafka's `lastTimestamp`); replayed batches
    /// give their max timestamp, as Kafka does when it reloads producer state.
    last_timestamp: i64,
    /// Epoch of the coordinator that wrote this producer's last marker (-1: none yet).
    coordinator_epoch: i32,
    /// First offset of the producer's open transaction on this partition, if one is open.
    txn_first_offset: Option<i64>,
}

/// Entries are equal when they decide sequence checks alike. The last-append time only decides
/// expiry, and a table rebuilt by replay has the batches' timestamps where the live one has the
/// append times, so it is left out.
impl PartialEq for ProducerEntry {
    fn eq(&self, other: &ProducerEntry) -> bool {
        self.epoch == other.epoch
            && self.batches == other.batches
            && self.coordinator_epoch == other.coordinator_epoch
            && self.txn_first_offset == other.txn_first_offset
    }
}

impl Eq for ProducerEntry {}

impl ProducerEntry {
    fn new(epoch: i16, last_timestamp: i64) -> ProducerEntry {
        ProducerEntry {
            epoch,
            batches: VecDeque::new(),
            last_timestamp,
            coordinator_epoch: -1,
            txn_first_offset: None,
        }
    }

    /// A marker of `epoch` from coordinator `coordinator_epoch` ended the open transaction
    /// (Kafka's `ProducerStateEntry.update`).
    fn end_txn(&mut self, epoch: i16, coordinator_epoch: i32, now_ms: i64) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
        self.coordinator_epoch = coordinator_epoch;
        self.txn_first_offset = None;
        self.last_timestamp = now_ms;
    }

    fn record(&mut self, epoch: i16, meta: BatchMetadata) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
        if self.batches.len() == CACHED_BATCHES {
            self.batches.pop_front();
        }
        self.batches.push_back(meta);
    }
}

/// What to do with a batch that passed the sequence checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// Already in the log at these offsets.
    Duplicate(BatchMetadata),
}

/// Producer id -> epoch and recent batches, and the open transactions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
    /// First offset of each open transaction -> its producer id (kept in step with the
    /// entries' `txn_first_offset`).
    ongoing: BTreeMap<i64, i64>,
}

/// Keeps `ongoing` in step when a producer's open transaction changed from `before` to `after`.
fn move_txn(ongoing: &mut BTreeMap<i64, i64>, pid: i64, before: Option<i64>, after: Option<i64>) {
    if before == after {
        return;
    }
    if let Some(first) = before {
        if ongoing.get(&first) == Some(&pid) {
            ongoing.remove(&first);
        }
    }
    if let Some(first) = after {
        ongoing.insert(first, pid);
    }
}

/// Checks for the batches of one append, staged until the append is written.
#[derive(Debug)]
pub struct StagedAppend<'a> {
    table: &'a ProducerStateTable,
    updates: HashMap<i64, ProducerEntry>,
    /// When this append happens: the producers it touches were last seen now.
    now_ms: i64,
}

/// Producer changes of a validated append, to [`apply`](ProducerStateTable::apply) once written.
#[derive(Debug, Default)]
pub struct ProducerUpdates(HashMap<i64, ProducerEntry>);

impl ProducerStateTable {
    pub fn new() -> ProducerStateTable {
        ProducerStateTable::default()
    }

    /// Starts validating the batches of one append, happening now.
    pub fn stage(&self) -> StagedAppend<'_> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.stage_at(now_ms)
    }

    /// Starts validating the batches of one append happening at `now_ms`.
    pub fn stage_at(&self, now_ms: i64) -> StagedAppend<'_> {
        StagedAppend {
            table: self,
            updates: HashMap::new(),
            now_ms,
        }
    }

    /// Drops producers whose last append is `expiration_ms` or more before `now_ms` (Kafka's
    /// `producer.id.expiration.ms` check). Returns how many were dropped.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        // A producer in a transaction stays: its open transaction bounds the LSO until a
        // marker (from the coordinator's timeout, at the latest) ends it.
        self.producers.retain(|_, e| {
            e.txn_first_offset.is_some() || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    pub fn apply(&mut self, updates: ProducerUpdates) {
        for (pid, entry) in updates.0 {
            let before = self.producers.get(&pid).and_then(|e| e.txn_first_offset);
            move_txn(&mut self.ongoing, pid, before, entry.txn_first_offset);
            self.producers.insert(pid, entry);
        }
    }

    /// Records a batch already in the log, without checks (rebuilding on open or truncation,
    /// or a follower's append: Kafka's `AppendOrigin.REPLICATION`, which only warns where a
    /// client append is refused). `batch` holds the batch's bytes: a control batch's marker is
    /// read from them. Returns the transaction a marker completed.
    pub fn replay(&mut self, header: &BatchHeader, batch: &[u8]) -> Option<CompletedTxn> {
        if !header.has_producer_id() {
            return None;
        }
        if header.is_control() {
            let marker = match TxnMarker::decode(batch) {
                Ok(Some(marker)) => marker,
                Ok(None) => return None,
                Err(error) => {
                    tracing::warn!(offset = header.base_offset, %error, "skipping unreadable control batch");
                    return None;
                }
            };
            return self.replay_marker(header, &marker);
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry::new(header.producer_epoch, header.max_timestamp));
        if header.producer_epoch >= entry.epoch {
            entry.record(header.producer_epoch, BatchMetadata::of(header));
            entry.last_timestamp = header.max_timestamp;
            if header.is_transactional() && entry.txn_first_offset.is_none() {
                entry.txn_first_offset = Some(header.base_offset);
                self.ongoing.insert(header.base_offset, header.producer_id);
            }
        }
        None
    }

    /// [`ProducerStateTable::replay`] of a marker at `header.base_offset`.
    pub fn replay_marker(
        &mut self,
        header: &BatchHeader,
        marker: &TxnMarker,
    ) -> Option<CompletedTxn> {
        let pid = marker.producer_id;
        let entry = self
            .producers
            .entry(pid)
            .or_insert_with(|| ProducerEntry::new(marker.producer_epoch, header.max_timestamp));
        let completed = entry.txn_first_offset.map(|first_offset| CompletedTxn {
            producer_id: pid,
            first_offset,
            last_offset: header.base_offset,
            aborted: !marker.commit,
        });
        let before = entry.txn_first_offset;
        entry.end_txn(
            marker.producer_epoch,
            marker.coordinator_epoch,
            header.max_timestamp,
        );
        move_txn(&mut self.ongoing, pid, before, None);
        completed
    }

    /// First offset of the oldest open transaction: no offset at or above it is stable.
    pub fn first_open_txn_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Open transactions as (first offset, producer id), oldest first.
    pub fn open_txns(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing.iter().map(|(&first, &pid)| (first, pid))
    }

    /// One producer's transaction state: coordinator epoch of its last marker (-1: none) and
    /// the first offset of its open transaction.
    pub fn txn_state(&self, producer_id: i64) -> Option<(i32, Option<i64>)> {
        self.producers
            .get(&producer_id)
            .map(|e| (e.coordinator_epoch, e.txn_first_offset))
    }

    /// Every producer: id, epoch, last append time and cached batches (oldest first), in no
    /// particular order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, i16, i64, &VecDeque<BatchMetadata>)> {
        self.producers
            .iter()
            .map(|(&pid, e)| (pid, e.epoch, e.last_timestamp, &e.batches))
    }

    /// What DescribeProducers shows of every producer (Kafka's `ProducerStateManager` view),
    /// by producer id.
    pub fn summaries(&self) -> Vec<ProducerSummary> {
        let mut all: Vec<ProducerSummary> = self
            .producers
            .iter()
            .map(|(&producer_id, e)| ProducerSummary {
                producer_id,
                epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: e.last_timestamp,
                coordinator_epoch: e.coordinator_epoch,
                txn_first_offset: e.txn_first_offset,
            })
            .collect();
        all.sort_by_key(|p| p.producer_id);
        all
    }

    /// Sets one producer's state (loading a snapshot). Keeps the last five batches given.
    pub fn restore(
        &mut self,
        producer_id: i64,
        epoch: i16,
        last_timestamp: i64,
        batches: impl IntoIterator<Item = BatchMetadata>,
    ) {
        let mut entry = ProducerEntry::new(epoch, last_timestamp);
        for meta in batches {
            entry.record(epoch, meta);
        }
        if let Some(old) = self.producers.insert(producer_id, entry) {
            move_txn(&mut self.ongoing, producer_id, old.txn_first_offset, None);
        }
    }

    /// Sets the transaction state of a producer [`restore`](Self::restore)d before (loading a
    /// snapshot); does nothing for an unknown producer.
    pub fn restore_txn(
        &mut self,
        producer_id: i64,
        coordinator_epoch: i32,
        txn_first_offset: Option<i64>,
    ) {
        if let Some(entry) = self.producers.get_mut(&producer_id) {
            let before = entry.txn_first_offset;
            entry.coordinator_epoch = coordinator_epoch;
            entry.txn_first_offset = txn_first_offset;
            move_txn(&mut self.ongoing, producer_id, before, txn_first_offset);
        }
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

impl StagedAppend<'_> {
    fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.updates
            .get(&producer_id)
            .or_else(|| self.table.producers.get(&producer_id))
    }

    /// Checks `header` (whose `base_offset` is the offset it would get) and stages it.
    pub fn check(&mut self, header: &BatchHeader) -> Result<SequenceCheck, StorageError> {
        if !header.has_producer_id() || header.is_control() {
            return Ok(SequenceCheck::Append);
        }
        let (pid, epoch, first_seq) = (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
        );
        let out_of_order = |expected| StorageError::OutOfOrderSequence {
            producer_id: pid,
            expected,
            received: first_seq,
        };
        if first_seq < 0 {
            return Err(out_of_order(0));
        }
        // Read with the sequence checks' lookup: no second lookup on the hot path.
        let mut open_txn = None;
        if let Some(entry) = self.entry(pid) {
            open_txn = entry.txn_first_offset;
            if epoch < entry.epoch {
                return Err(StorageError::InvalidProducerEpoch {
                    producer_id: pid,
                    current: entry.epoch,
                    received: epoch,
                });
            }
            if epoch > entry.epoch {
                if first_seq != 0 {
                    return Err(out_of_order(0));
                }
            } else {
                let meta = BatchMetadata::of(header);
                let same_range = |b: &&BatchMetadata| {
                    b.first_seq == meta.first_seq && b.last_seq == meta.last_seq
                };
                if let Some(original) = entry.batches.iter().find(same_range) {
                    return Ok(SequenceCheck::Duplicate(*original));
                }
                if let Some(last) = entry.batches.back() {
                    let expected = increment_sequence(last.last_seq, 1);
                    if first_seq != expected {
                        return Err(out_of_order(expected));
                    }
                }
            }
        }
        if open_txn.is_some() && !header.is_transactional() {
            return Err(StorageError::InvalidTxnState { producer_id: pid });
        }
        let mut entry = self
            .entry(pid)
            .cloned()
            .unwrap_or_else(|| ProducerEntry::new(epoch, self.now_ms));
        entry.record(epoch, BatchMetadata::of(header));
        entry.last_timestamp = self.now_ms;
        if header.is_transactional() && open_txn.is_none() {
            entry.txn_first_offset = Some(header.base_offset);
        }
        self.updates.insert(pid, entry);
        Ok(SequenceCheck::Append)
    }

    /// Checks a transaction marker to be written at `offset` and stages its effect; returns the
    /// transaction it completes (`None` when the producer had none open here: such a marker
    /// changes no LSO and no index, as in Kafka).
    pub fn check_marker(
        &mut self,
        marker: &TxnMarker,
        offset: i64,
    ) -> Result<Option<CompletedTxn>, StorageError> {
        let pid = marker.producer_id;
        let mut entry = match self.entry(pid) {
            Some(entry) => {
                if marker.producer_epoch < entry.epoch {
                    return Err(StorageError::InvalidProducerEpoch {
                        producer_id: pid,
                        current: entry.epoch,
                        received: marker.producer_epoch,
                    });
                }
                if entry.coordinator_epoch > marker.coordinator_epoch {
                    return Err(StorageError::TransactionCoordinatorFenced {
                        producer_id: pid,
                        current: entry.coordinator_epoch,
                        received: marker.coordinator_epoch,
                    });
                }
                entry.clone()
            }
            None => ProducerEntry::new(marker.producer_epoch, self.now_ms),
        };
        let completed = entry.txn_first_offset.map(|first_offset| CompletedTxn {
            producer_id: pid,
            first_offset,
            last_offset: offset,
            aborted: !marker.commit,
        });
        entry.end_txn(marker.producer_epoch, marker.coordinator_epoch, self.now_ms);
        self.updates.insert(pid, entry);
        Ok(completed)
    }

    pub fn into_updates(self) -> ProducerUpdates {
        ProducerUpdates(self.updates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlet_protocol::batch::TestBatchBuilder;

    fn header(pid: i64, epoch: i16, seq: i32, records: usize, base_offset: i64) -> BatchHeader {
        let recs: Vec<(&[u8], &[u8])> = vec![(b"", b"v"); records];
        let b = TestBatchBuilder {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            base_offset,
            ..Default::default()
        }
        .build(&recs);
        BatchHeader::parse(&b).unwrap()
    }

    fn append(
        table: &mut ProducerStateTable,
        h: &BatchHeader,
    ) -> Result<SequenceCheck, StorageError> {
        let mut staged = table.stage_at(h.max_timestamp);
        let r = staged.check(h)?;
        let updates = staged.into_updates();
        table.apply(updates);
        Ok(r)
    }

    #[test]
    fn summaries_show_each_producers_epoch_and_last_sequence_by_id() {
        let mut t = ProducerStateTable::new();
        append(&mut t, &header(9, 2, 0, 3, 0)).unwrap();
        append(&mut t, &header(4, 0, 0, 1, 3)).unwrap();
        append(&mut t, &header(9, 2, 3, 2, 4)).unwrap();
        let shown: Vec<_> = t
            .summaries()
            .into_iter()
            .map(|p| {
                (
                    p.producer_id,
                    p.epoch,
                    p.last_sequence,
                    p.coordinator_epoch,
                    p.txn_first_offset,
                )
            })
            .collect();
        assert_eq!(shown, [(4, 0, 0, -1, None), (9, 2, 4, -1, None)]);
    }

    #[test]
    fn in_sequence_batches_are_accepted_and_retries_are_duplicates() {
        let mut t = ProducerStateTable::new();
        assert_eq!(
            append(&mut t, &header(1, 0, 0, 3, 0)).unwrap(),
            SequenceCheck::Append
        );
        assert_eq!(
            append(&mut t, &header(1, 0, 3, 2, 3)).unwrap(),
            SequenceCheck::Append
        );
        let dup = append(&mut t, &header(1, 0, 0, 3, 99)).unwrap();
        assert_eq!(
            dup,
            SequenceCheck::Duplicate(BatchMetadata {
                first_seq: 0,
                last_seq: 2,
                base_offset: 0,
                last_offset: 2
            })
        );
    }

    #[test]
    fn gaps_and_old_epochs_are_rejected_new_epoch_must_restart_at_zero() {
        let mut t = ProducerStateTable::new();
        append(&mut t, &header(1, 2, 0, 1, 0)).unwrap();
        assert!(matches!(
            append(&mut t, &header(1, 2, 5, 1, 1)),
            Err(StorageError::OutOfOrderSequence {
                expected: 1,
                received: 5,
                ..
            })
        ));
        assert!(matches!(
            append(&mut t, &header(1, 1, 1, 1, 1)),
            Err(StorageError::InvalidProducerEpoch {
                current: 2,
                received: 1,
                ..
            })
        ));
        assert!(matches!(
            append(&mut t, &header(1, 3, 1, 1, 1)),
            Err(StorageError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(
            append(&mut t, &header(1, 3, 0, 1, 1)).unwrap(),
            SequenceCheck::Append
        );
    }

    #[test]
    fn unknown_producer_may_start_at_any_sequence_and_sequences_wrap() {
        let mut t = ProducerStateTable::new();
        assert_eq!(
            append(&mut t, &header(9, 0, i32::MAX, 1, 0)).unwrap(),
            SequenceCheck::Append
        );
        assert_eq!(
            append(&mut t, &header(9, 0, 0, 1, 1)).unwrap(),
            SequenceCheck::Append
        );
    }

    #[test]
    fn only_last_five_batches_are_remembered() {
        let mut t = ProducerStateTable::new();
        for i in 0..6 {
            append(&mut t, &header(1, 0, i, 1, i64::from(i))).unwrap();
        }
        assert!(matches!(
            append(&mut t, &header(1, 0, 0, 1, 6)),
            Err(StorageError::OutOfOrderSequence { .. })
        ));
        assert!(matches!(
            append(&mut t, &header(1, 0, 1, 1, 6)).unwrap(),
            SequenceCheck::Duplicate(_)
        ));
    }

    #[test]
    fn replay_rebuilds_the_same_table() {
        let mut live = ProducerStateTable::new();
        let mut replayed = ProducerStateTable::new();
        for h in [
            header(1, 0, 0, 2, 0),
            header(2, 0, 7, 1, 2),
            header(1, 0, 2, 1, 3),
            header(1, 1, 0, 1, 4),
        ] {
            append(&mut live, &h).unwrap();
            replayed.replay(&h, &[]);
        }
        assert_eq!(live, replayed);
    }

    #[test]
    fn idle_producers_expire_and_come_back_unknown() {
        const EXPIRATION: i64 = 1_000;
        let mut t = ProducerStateTable::new();
        let appended_at = |t: &mut ProducerStateTable, h: &BatchHeader, now: i64| {
            let mut staged = t.stage_at(now);
            let check = staged.check(h).unwrap();
            let updates = staged.into_updates();
            t.apply(updates);
            check
        };
        appended_at(&mut t, &header(1, 0, 0, 1, 0), 10_000);
        appended_at(&mut t, &header(2, 0, 0, 1, 1), 10_000);
        // Producer 2 stays active; producer 1 goes idle.
        appended_at(&mut t, &header(2, 0, 1, 1, 2), 10_900);
        assert_eq!(
            t.expire(10_999, EXPIRATION),
            0,
            "idle for less than the expiration"
        );
        assert_eq!(t.expire(11_000, EXPIRATION), 1);
        assert_eq!(t.iter().map(|(pid, ..)| pid).collect::<Vec<_>>(), [2]);
        // The active producer's retry is still a duplicate...
        assert!(matches!(
            appended_at(&mut t, &header(2, 0, 1, 1, 3), 11_000),
            SequenceCheck::Duplicate(_)
        ));
        // ...while the expired one is unknown again: its old batch is appended anew.
        assert_eq!(
            appended_at(&mut t, &header(1, 0, 0, 1, 3), 11_000),
            SequenceCheck::Append
        );
    }

    proptest::proptest! {
        /// Against a model (producer id -> last append time): after any mix of appends and
        /// expiry checks, exactly the producers appended within the expiration remain.
        #[test]
        fn expiry_keeps_exactly_the_producers_seen_within_the_expiration(
            ops in proptest::collection::vec((0i64..6, 0i64..50, proptest::bool::ANY), 1..60),
            expiration in 1i64..40,
        ) {
            let mut t = ProducerStateTable::new();
            let mut model: HashMap<i64, i64> = HashMap::new();
            let mut next_seq: HashMap<i64, i32> = HashMap::new();
            let mut now = 0i64;
            for (pid, advance, is_check) in ops {
                now += advance;
                if is_check {
                    t.expire(now, expiration);
                    model.retain(|_, &mut last| now - last < expiration);
                } else {
                    let seq = next_seq.entry(pid).or_insert(0);
                    let mut staged = t.stage_at(now);
                    staged.check(&header(pid, 0, *seq, 1, 0)).unwrap();
                    let updates = staged.into_updates();
                    t.apply(updates);
                    *seq += 1;
                    model.insert(pid, now);
                }
                let mut kept: Vec<(i64, i64)> = t.iter().map(|(p, _, last, _)| (p, last)).collect();
                kept.sort_unstable();
                let mut expected: Vec<(i64, i64)> = model.iter().map(|(&p, &l)| (p, l)).collect();
                expected.sort_unstable();
                proptest::prop_assert_eq!(kept, expected);
            }
        }
    }

    #[test]
    fn staged_checks_see_earlier_batches_of_the_same_append() {
        let t = ProducerStateTable::new();
        let mut staged = t.stage();
        staged.check(&header(1, 0, 0, 2, 0)).unwrap();
        assert!(staged.check(&header(1, 0, 5, 1, 2)).is_err());
        staged.check(&header(1, 0, 2, 1, 2)).unwrap();
        assert!(t.is_empty(), "nothing applied before the append is written");
    }
}
