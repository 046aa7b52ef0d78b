//! The coordinator of the transactional ids of the `__transaction_state` partitions this broker
//! leads: one lock over the ids (requests never wait while holding it), and every state change
//! made in three steps, as Kafka's `TransactionStateManager.appendTransactionToLog`: the new
//! state is computed and marked pending (other requests for the id meanwhile get
//! CONCURRENT_TRANSACTIONS), its record is appended, and once the in-sync replicas have it the
//! state is installed and the request answered. Transactions that reached PrepareCommit or
//! PrepareAbort are queued for [`super::driver`], which writes their markers and completes them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::state::{InitTransit, TxnMetadata, TxnState};
use super::store::{Appended, TxnStore};
use super::{TxnConfig, TxnError};
use crate::broker::now_ms;
use crate::metadata::image::MetadataImage;

/// How long a state change may take to reach the in-sync replicas before the request fails
/// (with a retriable error: the client tries again).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct TransactionCoordinator {
    pub(super) config: TxnConfig,
    inner: Mutex<Inner>,
    /// One creation of `__transaction_state` at a time.
    pub creating: tokio::sync::Mutex<()>,
    /// Wakes the driver when a transaction's markers are due.
    pub(super) wake: tokio::sync::Notify,
}

/// An id's state, and the state being written for it (if any).
pub(super) struct Entry {
    pub meta: TxnMetadata,
    pub pending: Option<TxnState>,
}

#[derive(Default)]
pub(super) struct Inner {
    pub ids: HashMap<String, Entry>,
    /// `__transaction_state` as last followed: its id and partition count.
    pub topic: Option<(uuid::Uuid, i32)>,
    pub led: HashMap<i32, Led>,
    /// Leader epoch at which each led partition was loaded.
    pub epochs: HashMap<i32, i32>,
    pub loads: u64,
    /// Ids in PrepareCommit / PrepareAbort whose markers are to be written.
    pub due: BTreeSet<String>,
    /// Ids whose markers are being written now.
    pub completing: HashSet<String>,
}

pub(super) enum Led {
    Loading(u64),
    Loaded(TxnStore),
}

impl Inner {
    pub fn partition_of(&self, transactional_id: &str) -> Option<i32> {
        let (_, count) = self.topic?;
        Some(MetadataImage::offsets_partition_for(
            transactional_id,
            count,
        ))
    }

    /// Where the id's state is written, if this broker coordinates it.
    pub fn store_for(&self, transactional_id: &str) -> Result<TxnStore, TxnError> {
        if transactional_id.is_empty() {
            return Err(TxnError::InvalidRequest("the transactional id is empty"));
        }
        let partition = self
            .partition_of(transactional_id)
            .ok_or(TxnError::NotCoordinator)?;
        match self.led.get(&partition) {
            Some(Led::Loaded(store)) => Ok(store.clone()),
            Some(Led::Loading(_)) => Err(TxnError::CoordinatorLoadInProgress),
            None => Err(TxnError::NotCoordinator),
        }
    }

    /// The id's settled state: CONCURRENT_TRANSACTIONS while a change is being written.
    pub(super) fn settled(&self, transactional_id: &str) -> Result<Option<&TxnMetadata>, TxnError> {
        match self.ids.get(transactional_id) {
            Some(Entry {
                pending: Some(_), ..
            }) => Err(TxnError::ConcurrentTransactions),
            Some(entry) => Ok(Some(&entry.meta)),
            None => Ok(None),
        }
    }

    /// The id's settled state for a request of its producer: Kafka's order of checks (unknown
    /// id or producer id, then a stale epoch, then a change being written).
    fn current_producer(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<&TxnMetadata, TxnError> {
        let entry = self
            .ids
            .get(transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        entry.meta.check_producer(producer_id, producer_epoch)?;
        if entry.pending.is_some() {
            return Err(TxnError::ConcurrentTransactions);
        }
        Ok(&entry.meta)
    }

    /// Step 1 of a change: marks it pending and appends its record.
    pub fn begin(&mut self, store: &TxnStore, next: &TxnMetadata) -> Result<Appended, TxnError> {
        let Some(entry) = self.ids.get_mut(&next.transactional_id) else {
            return Err(TxnError::NotCoordinator);
        };
        let appended = store.write(next)?;
        entry.pending = Some(next.state);
        Ok(appended)
    }
}

impl TransactionCoordinator {
    pub fn new(config: TxnConfig) -> TransactionCoordinator {
        TransactionCoordinator {
            config,
            inner: Mutex::new(Inner::default()),
            creating: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Steps 2 and 3 of a change: waits for the replicas, then installs `next` (or forgets the
    /// pending mark if the write failed). PrepareCommit / PrepareAbort are queued for markers.
    /// Runs as its own task: a request dropped meanwhile (its client went away) must not leave
    /// the id marked pending forever.
    pub(super) async fn finish(
        self: &Arc<Self>,
        next: TxnMetadata,
        appended: Appended,
    ) -> Result<(), TxnError> {
        let this = self.clone();
        tokio::spawn(async move { this.settle(next, appended).await })
            .await
            .unwrap_or(Err(TxnError::CoordinatorNotAvailable(
                "the state change was interrupted",
            )))
    }

    async fn settle(&self, next: TxnMetadata, appended: Appended) -> Result<(), TxnError> {
        let replicated = appended.replicated(WRITE_TIMEOUT).await;
        let mut inner = self.lock();
        let id = next.transactional_id.clone();
        let Some(entry) = inner.ids.get_mut(&id) else {
            // Unloaded meanwhile: the new coordinator replays the record (if it is committed).
            return Err(TxnError::NotCoordinator);
        };
        if entry.pending != Some(next.state) {
            return Err(TxnError::ConcurrentTransactions);
        }
        entry.pending = None;
        if let Err(error) = replicated {
            if entry.meta.producer_epoch < 0 && entry.meta.state == TxnState::Empty {
                // Created by this request and never stored.
                inner.ids.remove(&id);
            }
            return Err(error);
        }
        let state = next.state;
        tracing::debug!(transactional_id = %id, state = state.name(), producer_id = next.producer_id,
            producer_epoch = next.producer_epoch, "transaction state");
        if state == TxnState::Dead {
            inner.ids.remove(&id);
            return Ok(());
        }
        entry.meta = next;
        if matches!(state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            inner.due.insert(id);
            drop(inner);
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Whether InitProducerId for `transactional_id` needs a fresh producer id (a new id, or
    /// one whose epochs ran out); the handler allocates it before [`Self::init_producer_id`].
    pub fn needs_producer_id(
        &self,
        transactional_id: &str,
        expected: Option<(i64, i16)>,
    ) -> Result<bool, TxnError> {
        let inner = self.lock();
        inner.store_for(transactional_id)?;
        Ok(match inner.settled(transactional_id)? {
            None => true,
            Some(meta) => meta.needs_new_producer_id(expected),
        })
    }

    /// InitProducerId with a transactional id: the producer id and (bumped) epoch to use.
    /// An open transaction of an earlier producer is aborted first (CONCURRENT_TRANSACTIONS
    /// until that is done; the client retries).
    pub async fn init_producer_id(
        self: &Arc<Self>,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        fresh_id: Option<i64>,
    ) -> Result<(i64, i16), TxnError> {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout(timeout_ms));
        }
        let now = now_ms();
        let (transit, appended) = {
            let mut inner = self.lock();
            let store = inner.store_for(transactional_id)?;
            let current = match inner.settled(transactional_id)? {
                Some(meta) => meta.clone(),
                None => {
                    let Some(id) = fresh_id else {
                        return Err(TxnError::ConcurrentTransactions);
                    };
                    // Known in memory from now on (Kafka's putTransactionStateIfNotExists);
                    // forgotten again if its first record cannot be written.
                    let fresh = TxnMetadata::new(transactional_id, id, timeout_ms, now);
                    inner.ids.insert(
                        transactional_id.to_string(),
                        Entry {
                            meta: fresh.clone(),
                            pending: None,
                        },
                    );
                    fresh
                }
            };
            let transit = current.init_producer_id(timeout_ms, expected, fresh_id, now)?;
            let next = match &transit {
                InitTransit::Ready(next) | InitTransit::AbortFirst(next) => next,
            };
            let appended = inner.begin(&store, next)?;
            (transit, appended)
        };
        match transit {
            InitTransit::Ready(next) => {
                let answer = (next.producer_id, next.producer_epoch);
                self.finish(next, appended).await?;
                tracing::info!(
                    transactional_id,
                    producer_id = answer.0,
                    producer_epoch = answer.1,
                    "initialised transactional producer"
                );
                Ok(answer)
            }
            InitTransit::AbortFirst(next) => {
                tracing::info!(
                    transactional_id,
                    "aborting the previous producer's open transaction"
                );
                self.finish(next, appended).await?;
                Err(TxnError::ConcurrentTransactions)
            }
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn with the group's offsets partition).
    pub async fn add_partitions(
        self: &Arc<Self>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: BTreeSet<(String, i32)>,
    ) -> Result<(), TxnError> {
        let (next, appended) = {
            let mut inner = self.lock();
            let store = inner.store_for(transactional_id)?;
            let current = inner.current_producer(transactional_id, producer_id, producer_epoch)?;
            let Some(next) = current.add_partitions(&partitions, now_ms())? else {
                return Ok(());
            };
            let appended = inner.begin(&store, &next)?;
            (next, appended)
        };
        self.finish(next, appended).await
    }

    /// EndTxn: PrepareCommit / PrepareAbort is written and replicated before the answer; the
    /// markers and the completion follow in the background.
    pub async fn end_txn(
        self: &Arc<Self>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> Result<(), TxnError> {
        let (next, appended) = {
            let mut inner = self.lock();
            let store = inner.store_for(transactional_id)?;
            let current = inner.current_producer(transactional_id, producer_id, producer_epoch)?;
            let Some(next) = current.end(commit, now_ms())? else {
                return Ok(());
            };
            let appended = inner.begin(&store, &next)?;
            (next, appended)
        };
        self.finish(next, appended).await
    }

    /// The partitions whose ids this broker serves (loaded), in order.
    pub fn loaded_partitions(&self) -> Vec<i32> {
        let inner = self.lock();
        let mut loaded: Vec<i32> = inner
            .led
            .iter()
            .filter(|(_, led)| matches!(led, Led::Loaded(_)))
            .map(|(p, _)| *p)
            .collect();
        loaded.sort_unstable();
        loaded
    }
}
