//! The coordinator's background work, one task per broker ([`run`]): following the leadership
//! of `__transaction_state` partitions, writing the markers of transactions in PrepareCommit /
//! PrepareAbort and then completing them, aborting transactions open past their
//! `transaction.timeout.ms` (with an epoch bump, fencing their producer, as Kafka does), and
//! forgetting ids idle past `transactional.id.expiration.ms` (a tombstone).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::markers::{write_markers, TxnMarker};
use super::state::TxnState;
use super::TxnError;
use crate::broker::{now_ms, Broker};

/// How often timeouts are checked and leadership followed.
const TICK: Duration = Duration::from_millis(100);
/// Pause between two attempts at a transaction's remaining markers.
const RETRY: Duration = Duration::from_millis(200);

/// Runs until `stop`.
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = broker.txns.wake.notified() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        broker.txns.follow_broker(&broker);
        start_completions(&broker);
        expire(&broker, now_ms());
    }
}

/// Starts a completion task for every due transaction not being completed.
fn start_completions(broker: &Arc<Broker>) {
    let starting: Vec<String> = {
        let mut inner = broker.txns.lock();
        let due: Vec<String> = inner
            .due
            .iter()
            .filter(|id| !inner.completing.contains(*id))
            .cloned()
            .collect();
        for id in &due {
            inner.completing.insert(id.clone());
        }
        due
    };
    for id in starting {
        let broker = broker.clone();
        tokio::spawn(async move {
            let outcome = complete(&broker, &id).await;
            let mut inner = broker.txns.lock();
            inner.completing.remove(&id);
            match outcome {
                Ok(()) => {
                    inner.due.remove(&id);
                }
                Err(error) => {
                    tracing::debug!(transactional_id = %id, %error, "transaction not completed yet");
                    // Retried at the next tick while still due (not if unloaded meanwhile).
                    if !inner.ids.contains_key(&id) {
                        inner.due.remove(&id);
                    }
                }
            }
        });
    }
}

/// Writes every marker of `id`'s ending transaction (retrying until done, or until the id is
/// no longer coordinated here), then writes CompleteCommit / CompleteAbort.
async fn complete(broker: &Broker, id: &str) -> Result<(), TxnError> {
    let (marker, mut left) = {
        let inner = broker.txns.lock();
        let store = inner.store_for(id)?;
        let meta = &inner.ids.get(id).ok_or(TxnError::NotCoordinator)?.meta;
        let commit = match meta.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort => false,
            _ => return Ok(()),
        };
        let marker = TxnMarker {
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            coordinator_epoch: store.coordinator_epoch(),
            commit,
        };
        (marker, meta.partitions.clone())
    };
    loop {
        left = write_markers(broker, &marker, &left).await;
        if left.is_empty() {
            break;
        }
        // Still ours? A new coordinator takes over the markers after replaying.
        broker.txns.lock().store_for(id)?;
        tokio::time::sleep(RETRY).await;
    }
    let (next, appended) = {
        let mut inner = broker.txns.lock();
        let store = inner.store_for(id)?;
        let meta = &inner.ids.get(id).ok_or(TxnError::NotCoordinator)?.meta;
        let next = meta.complete(now_ms())?;
        let appended = inner.begin(&store, &next)?;
        (next, appended)
    };
    let commit = marker.commit;
    broker.txns.finish(next, appended).await?;
    tracing::info!(
        transactional_id = id,
        producer_id = marker.producer_id,
        commit,
        "transaction completed"
    );
    Ok(())
}

/// Aborts timed-out transactions and forgets expired ids.
fn expire(broker: &Arc<Broker>, now: i64) {
    let expiration_ms = broker.txns.config.id_expiration_ms;
    let changes = {
        let mut inner = broker.txns.lock();
        let candidates: Vec<(String, bool)> = inner
            .ids
            .values()
            .filter(|e| e.pending.is_none())
            .filter_map(|e| {
                if e.meta.timed_out(now) {
                    Some((e.meta.transactional_id.clone(), true))
                } else if e.meta.expired(now, expiration_ms)
                    && !inner.due.contains(&e.meta.transactional_id)
                {
                    Some((e.meta.transactional_id.clone(), false))
                } else {
                    None
                }
            })
            .collect();
        let mut changes = Vec::new();
        for (id, timed_out) in candidates {
            let Ok(store) = inner.store_for(&id) else {
                continue;
            };
            let Some(entry) = inner.ids.get(&id) else {
                continue;
            };
            let next = if timed_out {
                entry.meta.fence_and_abort(now)
            } else {
                entry.meta.dead()
            };
            let next = match next {
                Ok(next) => next,
                Err(error) => {
                    tracing::warn!(transactional_id = %id, %error, "cannot expire");
                    continue;
                }
            };
            match inner.begin(&store, &next) {
                Ok(appended) => changes.push((next, appended, timed_out)),
                Err(error) => tracing::warn!(transactional_id = %id, %error, "cannot write expiry"),
            }
        }
        changes
    };
    for (next, appended, timed_out) in changes {
        if timed_out {
            tracing::info!(transactional_id = %next.transactional_id, timeout_ms = next.timeout_ms,
                "aborting a transaction open past its timeout");
        } else {
            tracing::info!(transactional_id = %next.transactional_id, "forgetting an expired transactional id");
        }
        let broker = broker.clone();
        tokio::spawn(async move {
            if let Err(error) = broker.txns.finish(next, appended).await {
                tracing::debug!(%error, "expiry not written; retried at the next tick");
            }
        });
    }
}
