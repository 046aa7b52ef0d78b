//! One transactional id's state and the transitions Kafka's coordinator allows
//! (`TransactionMetadata`): plain data driven by explicit timestamps, no I/O. Every transition is
//! computed as a new value (Kafka's "transit metadata") that the coordinator writes to
//! `__transaction_state` first and installs only once the write is replicated.

use std::collections::BTreeSet;

use super::TxnError;

/// No producer id / epoch (Kafka's `RecordBatch.NO_PRODUCER_ID` / `NO_PRODUCER_EPOCH`).
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// Kafka's transaction states, with the ids stored in `__transaction_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// The id Kafka stores (`TransactionState.id`).
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The name the admin APIs show (Kafka's `TransactionState.name`).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The states this one may be entered from (Kafka's `validPreviousStates`).
    pub fn valid_previous(self) -> &'static [TxnState] {
        use TxnState::*;
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            PrepareAbort => &[Ongoing, PrepareEpochFence],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteAbort, CompleteCommit],
            PrepareEpochFence => &[Ongoing],
        }
    }

    /// Whether a transaction is open or ending (markers may still be due).
    pub fn is_pending_transaction(self) -> bool {
        matches!(
            self,
            TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
        )
    }

    /// Whether the id holds no transaction (a new one may start; the id may expire).
    pub fn is_idle(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

/// Everything the coordinator knows about one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The producer id before the last rotation (KIP-360: a producer whose epoch ran out).
    pub last_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, so that a producer retrying its InitProducerId after a
    /// lost answer is recognised (KIP-360).
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// (topic, partition) of the transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the transaction started (-1: none).
    pub start_ms: i64,
    pub update_ms: i64,
}

/// What InitProducerId leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitTransit {
    /// The id's new producer id and epoch (state Empty).
    Ready(TxnMetadata),
    /// A transaction of the previous epoch is open: it is aborted first with a bumped epoch (the
    /// producer is told CONCURRENT_TRANSACTIONS and retries).
    AbortFirst(TxnMetadata),
}

/// Whether `epoch` leaves no room for a bump (Kafka keeps `Short.MaxValue` for fencing).
pub fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

impl TxnMetadata {
    /// A transactional id seen for the first time, with a fresh producer id.
    pub fn new(transactional_id: &str, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id,
            last_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            update_ms: now_ms,
        }
    }

    /// The same id in `state` with the other changes `change` makes, if Kafka allows the move.
    fn transit(
        &self,
        state: TxnState,
        change: impl FnOnce(&mut TxnMetadata),
    ) -> Result<Self, TxnError> {
        if !state.valid_previous().contains(&self.state) {
            return Err(TxnError::InvalidTxnState(format!(
                "{} cannot go from {} to {}",
                self.transactional_id,
                self.state.name(),
                state.name()
            )));
        }
        let mut next = self.clone();
        next.state = state;
        change(&mut next);
        Ok(next)
    }

    /// Whether InitProducerId must hand out a new producer id (the epoch ran out); the caller
    /// then allocates one and passes it to [`Self::init_producer_id`].
    pub fn needs_new_producer_id(&self, expected: Option<(i64, i16)>) -> bool {
        self.state.is_idle()
            && epoch_exhausted(self.producer_epoch)
            && expected.is_none_or(|(_, epoch)| epoch == self.producer_epoch)
    }

    /// InitProducerId (Kafka's `prepareInitProducerIdTransit`): `expected` is the producer id and
    /// epoch of a producer re-initialising itself (KIP-360), `fresh_id` a new producer id when
    /// [`Self::needs_new_producer_id`] said so.
    pub fn init_producer_id(
        &self,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        fresh_id: Option<i64>,
        now_ms: i64,
    ) -> Result<InitTransit, TxnError> {
        if let Some((id, epoch)) = expected {
            let valid = self.producer_epoch == NO_PRODUCER_EPOCH
                || id == self.producer_id
                || (id == self.last_producer_id && epoch_exhausted(epoch));
            if !valid {
                return Err(TxnError::ProducerFenced);
            }
        }
        match self.state {
            TxnState::PrepareAbort | TxnState::PrepareCommit => {
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Ongoing => Ok(InitTransit::AbortFirst(self.fence_and_abort(now_ms)?)),
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                if self.needs_new_producer_id(expected) {
                    let Some(fresh) = fresh_id else {
                        return Err(TxnError::CoordinatorNotAvailable(
                            "no producer id for a rotation",
                        ));
                    };
                    let last_epoch = if expected.is_some() {
                        self.producer_epoch
                    } else {
                        NO_PRODUCER_EPOCH
                    };
                    return self
                        .transit(TxnState::Empty, |m| {
                            m.last_producer_id = m.producer_id;
                            m.producer_id = fresh;
                            m.producer_epoch = 0;
                            m.last_producer_epoch = last_epoch;
                            m.timeout_ms = timeout_ms;
                            m.partitions.clear();
                            m.start_ms = -1;
                            m.update_ms = now_ms;
                        })
                        .map(InitTransit::Ready);
                }
                let bumped = self.producer_epoch.saturating_add(1).max(0);
                let (epoch, last_epoch) = match expected {
                    None => (bumped, NO_PRODUCER_EPOCH),
                    Some((_, e))
                        if self.producer_epoch == NO_PRODUCER_EPOCH || e == self.producer_epoch =>
                    {
                        (bumped, self.producer_epoch)
                    }
                    // A retry whose first answer was lost: the bump already happened.
                    Some((_, e)) if e == self.last_producer_epoch => {
                        (self.producer_epoch, self.last_producer_epoch)
                    }
                    Some(_) => return Err(TxnError::ProducerFenced),
                };
                self.transit(TxnState::Empty, |m| {
                    m.producer_epoch = epoch;
                    m.last_producer_epoch = last_epoch;
                    m.timeout_ms = timeout_ms;
                    m.partitions.clear();
                    m.start_ms = -1;
                    m.update_ms = now_ms;
                })
                .map(InitTransit::Ready)
            }
            TxnState::Dead | TxnState::PrepareEpochFence => Err(TxnError::InvalidTxnState(
                format!("{} is {}", self.transactional_id, self.state.name()),
            )),
        }
    }

    /// Checks that a request comes from the id's current producer (Kafka's order: unknown
    /// producer id first, then a stale epoch).
    pub fn check_producer(&self, producer_id: i64, producer_epoch: i16) -> Result<(), TxnError> {
        if producer_id != self.producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if producer_epoch != self.producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        Ok(())
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: the transaction (started now if none is open)
    /// with `added` partitions; `None` when they are all in it already (nothing to write).
    pub fn add_partitions(
        &self,
        added: &BTreeSet<(String, i32)>,
        now_ms: i64,
    ) -> Result<Option<Self>, TxnError> {
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Ongoing if added.is_subset(&self.partitions) => return Ok(None),
            _ => {}
        }
        let start = if self.state.is_idle() {
            now_ms
        } else {
            self.start_ms
        };
        self.transit(TxnState::Ongoing, |m| {
            m.partitions.extend(added.iter().cloned());
            m.start_ms = start;
            m.update_ms = now_ms;
        })
        .map(Some)
    }

    /// EndTxn from the client (transaction version 0/1: the epoch is not bumped):
    /// `Ok(None)` for a retry of an end that already completed.
    pub fn end(&self, commit: bool, now_ms: i64) -> Result<Option<Self>, TxnError> {
        let refuse = || {
            Err(TxnError::InvalidTxnState(format!(
                "{} cannot {} in state {}",
                self.transactional_id,
                if commit { "commit" } else { "abort" },
                self.state.name()
            )))
        };
        match (self.state, commit) {
            (TxnState::Ongoing, _) => {
                let state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                self.transit(state, |m| m.update_ms = now_ms).map(Some)
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(None),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(TxnError::ConcurrentTransactions)
            }
            _ => refuse(),
        }
    }

    /// The coordinator's own abort of an open transaction (timed out, or a new producer
    /// initialised): the epoch is bumped so the old producer is fenced, then PrepareAbort.
    pub fn fence_and_abort(&self, now_ms: i64) -> Result<Self, TxnError> {
        if self.producer_epoch == i16::MAX {
            return Err(TxnError::InvalidTxnState(format!(
                "{} has no epoch left to fence with",
                self.transactional_id
            )));
        }
        let fenced = self.transit(TxnState::PrepareEpochFence, |m| {
            m.producer_epoch = m.producer_epoch.saturating_add(1);
            m.last_producer_epoch = NO_PRODUCER_EPOCH;
        })?;
        fenced.transit(TxnState::PrepareAbort, |m| m.update_ms = now_ms)
    }

    /// After every marker is written: CompleteCommit or CompleteAbort, with no partitions.
    pub fn complete(&self, now_ms: i64) -> Result<Self, TxnError> {
        let state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            other => {
                return Err(TxnError::InvalidTxnState(format!(
                    "{} cannot complete from {}",
                    self.transactional_id,
                    other.name()
                )))
            }
        };
        self.transit(state, |m| {
            m.last_producer_epoch = m.producer_epoch;
            m.partitions.clear();
            m.update_ms = now_ms;
        })
    }

    /// Whether the open transaction ran past its timeout at `now_ms`.
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing
            && self.start_ms >= 0
            && now_ms.saturating_sub(self.start_ms) > i64::from(self.timeout_ms)
    }

    /// Whether the id has been idle for `expiration_ms` and may be forgotten.
    pub fn expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        self.state.is_idle() && now_ms.saturating_sub(self.update_ms) > expiration_ms
    }

    /// The id forgotten (its tombstone is written).
    pub fn dead(&self) -> Result<Self, TxnError> {
        self.transit(TxnState::Dead, |_| {})
    }
}
