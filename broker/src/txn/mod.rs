//! The transaction coordinator (KIP-98, with KIP-360 epoch bumps): the transactional ids whose
//! `__transaction_state` partition this broker leads (Kafka's hashing of the id over
//! `transaction.state.log.num.partitions`), modelled on the group coordinator.
//!
//! * [`state`] is one id's state machine (Kafka's `TransactionMetadata`), pure and tested alone.
//! * [`log_format`] is Kafka's `__transaction_state` record format; [`store`] appends through
//!   the partition log, replays on becoming leader, and creates the topic through the controller.
//! * [`coordinator`] keeps the ids behind one lock and serves InitProducerId,
//!   AddPartitionsToTxn, AddOffsetsToTxn and EndTxn; [`views`] adds the admin views and
//!   Produce's check ([`TransactionCoordinator::verify`]), which [`produce_check`] applies to a
//!   request's batches; [`ownership`] follows the leadership of the topic's partitions in the
//!   metadata image (load / unload).
//! * [`markers`] writes the end-of-transaction markers: locally through
//!   [`markers::append_local_marker`], or with WriteTxnMarkers to the partition's leader;
//!   [`driver`] is the background task that sends them, completes transactions, aborts those
//!   past their timeout and forgets expired ids.

pub mod coordinator;
#[cfg(test)]
mod coordinator_tests;
pub mod driver;
pub mod log_format;
pub mod markers;
pub mod ownership;
pub mod produce_check;
pub mod state;
#[cfg(test)]
mod state_tests;
pub mod store;
pub mod views;

use kafka_protocol::ResponseError;

pub use crate::metadata::image::TRANSACTION_STATE_TOPIC;
pub use coordinator::TransactionCoordinator;
pub use views::{TxnDescription, TxnListing};

/// What a transactional request can fail with; each maps to one Kafka error code
/// ([`TxnError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    #[error("this broker is not the transaction's coordinator")]
    NotCoordinator,
    #[error("the transaction's state partition is still loading")]
    CoordinatorLoadInProgress,
    #[error("the coordinator is not available: {0}")]
    CoordinatorNotAvailable(&'static str),
    #[error("another operation on the transaction is in progress")]
    ConcurrentTransactions,
    #[error("a newer producer with the same transactional id fenced this one")]
    ProducerFenced,
    #[error("the producer id is not the transactional id's")]
    InvalidProducerIdMapping,
    #[error("{0}")]
    InvalidTxnState(String),
    #[error("transaction timeout {0} ms is not in 1..=transaction.max.timeout.ms")]
    InvalidTransactionTimeout(i32),
    #[error("transactional id {0} is not known")]
    TransactionalIdNotFound(String),
    #[error("cannot write to {TRANSACTION_STATE_TOPIC}: {0}")]
    Storage(String),
}

impl TxnError {
    pub fn code(&self) -> ResponseError {
        match self {
            TxnError::InvalidRequest(_) => ResponseError::InvalidRequest,
            TxnError::NotCoordinator => ResponseError::NotCoordinator,
            TxnError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
            TxnError::CoordinatorNotAvailable(_) | TxnError::Storage(_) => {
                ResponseError::CoordinatorNotAvailable
            }
            TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
            TxnError::ProducerFenced => ResponseError::ProducerFenced,
            TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
            TxnError::InvalidTxnState(_) => ResponseError::InvalidTxnState,
            TxnError::InvalidTransactionTimeout(_) => ResponseError::InvalidTransactionTimeout,
            TxnError::TransactionalIdNotFound(_) => ResponseError::TransactionalIdNotFound,
        }
    }

    /// The code for a request of an API version from before KIP-588's PRODUCER_FENCED:
    /// such clients are told INVALID_PRODUCER_EPOCH instead.
    pub fn code_for(&self, knows_producer_fenced: bool) -> ResponseError {
        match self.code() {
            ResponseError::ProducerFenced if !knows_producer_fenced => {
                ResponseError::InvalidProducerEpoch
            }
            code => code,
        }
    }
}

/// Coordinator settings from the broker config (Kafka's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`.
    pub id_expiration_ms: i64,
    /// `transaction.state.log.num.partitions` (used when the topic is created).
    pub num_partitions: i32,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            max_timeout_ms: 900_000,
            id_expiration_ms: 604_800_000,
            num_partitions: 50,
        }
    }
}
