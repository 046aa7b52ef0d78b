//! What the coordinator shows and checks without changing anything: the admin views
//! (ListTransactions, DescribeTransactions, KIP-664) and Produce's check of transactional
//! batches ([`TransactionCoordinator::verify`]).

use kafka_protocol::ResponseError;

use super::coordinator::TransactionCoordinator;
use super::log_format::grouped;
use super::state::TxnState;
use super::TxnError;
use crate::broker::now_ms;

/// One transactional id as ListTransactions shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnListing {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: String,
}

/// One transactional id as DescribeTransactions shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub state: String,
    pub timeout_ms: i32,
    pub start_ms: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<(String, Vec<i32>)>,
}

impl TransactionCoordinator {
    /// Produce's check of a transactional batch: Ok when the producer is the id's current one
    /// and the partition is in its open transaction. Ids coordinated on another broker are not
    /// checked here (as Kafka before KIP-890 part 1, or with
    /// `transaction.partition.verification.enable=false`): the partition's producer state still
    /// refuses stale epochs.
    pub async fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), ResponseError> {
        self.verify_now(
            transactional_id,
            producer_id,
            producer_epoch,
            topic,
            partition,
        )
    }

    /// [`Self::verify`] without the future: it never waits (one look under the lock).
    pub fn verify_now(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), ResponseError> {
        let inner = self.lock();
        match inner.store_for(transactional_id) {
            Ok(_) => {}
            Err(TxnError::NotCoordinator) => return Ok(()),
            // Retriable for every producer version (Kafka's mapping for Produce).
            Err(_) => return Err(ResponseError::NotEnoughReplicas),
        }
        let Some(entry) = inner.ids.get(transactional_id) else {
            return Err(ResponseError::InvalidProducerIdMapping);
        };
        let meta = &entry.meta;
        if meta.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if meta.producer_epoch != producer_epoch {
            return Err(ResponseError::InvalidProducerEpoch);
        }
        if meta.state != TxnState::Ongoing
            || !meta.partitions.contains(&(topic.to_string(), partition))
        {
            return Err(ResponseError::InvalidTxnState);
        }
        Ok(())
    }

    /// ListTransactions: the ids coordinated here, filtered by state names and producer ids
    /// (empty filters match everything).
    pub fn list(&self, states: &[String], producer_ids: &[i64]) -> Vec<TxnListing> {
        self.list_running_for(states, producer_ids, -1, now_ms())
    }

    /// [`Self::list`] keeping only ids whose transaction started more than `min_duration_ms`
    /// before `now` when it is not negative (ListTransactions v1's duration filter, KIP-994).
    pub fn list_running_for(
        &self,
        states: &[String],
        producer_ids: &[i64],
        min_duration_ms: i64,
        now: i64,
    ) -> Vec<TxnListing> {
        let inner = self.lock();
        let mut list: Vec<TxnListing> = inner
            .ids
            .values()
            .map(|e| &e.meta)
            .filter(|m| m.producer_epoch >= 0 || m.state != TxnState::Empty)
            .filter(|m| states.is_empty() || states.iter().any(|s| s == m.state.name()))
            .filter(|m| producer_ids.is_empty() || producer_ids.contains(&m.producer_id))
            .filter(|m| {
                // Kafka's test, on the start time alone (-1 for an id with no transaction).
                min_duration_ms < 0 || now.saturating_sub(m.start_ms) > min_duration_ms
            })
            .map(|m| TxnListing {
                transactional_id: m.transactional_id.clone(),
                producer_id: m.producer_id,
                state: m.state.name().to_string(),
            })
            .collect();
        list.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        list
    }

    /// Whether a state partition led here is still being replayed (ListTransactions then
    /// answers COORDINATOR_LOAD_IN_PROGRESS, as Kafka does).
    pub fn is_loading(&self) -> bool {
        self.lock()
            .led
            .values()
            .any(|led| matches!(led, super::coordinator::Led::Loading(_)))
    }

    /// DescribeTransactions for one id.
    pub fn describe(&self, transactional_id: &str) -> Result<TxnDescription, TxnError> {
        let inner = self.lock();
        inner.store_for(transactional_id)?;
        let meta = inner
            .ids
            .get(transactional_id)
            .map(|e| &e.meta)
            .ok_or_else(|| TxnError::TransactionalIdNotFound(transactional_id.to_string()))?;
        Ok(TxnDescription {
            transactional_id: meta.transactional_id.clone(),
            state: meta.state.name().to_string(),
            timeout_ms: meta.timeout_ms,
            start_ms: meta.start_ms,
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            partitions: grouped(&meta.partitions)
                .into_iter()
                .map(|(t, p)| (t.to_string(), p))
                .collect(),
        })
    }
}
