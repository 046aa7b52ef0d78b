//! The errors storage returns. Each variant carries what the broker needs to pick a Kafka error
//! code (`CORRUPT_MESSAGE`, `OFFSET_OUT_OF_RANGE`, `OUT_OF_ORDER_SEQUENCE_NUMBER`,
//! `INVALID_PRODUCER_EPOCH`, `INVALID_RECORD`, `TRANSACTION_COORDINATOR_FENCED`,
//! `INVALID_TXN_STATE`, `RECORD_LIST_TOO_LARGE`, `MESSAGE_TOO_LARGE`, `INVALID_TIMESTAMP`,
//! `KAFKA_STORAGE_ERROR`).

use std::io;

/// Everything that can go wrong in a [`Log`](crate::Log) call.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A batch in an append request is malformed; `position` is its byte position in the request.
    #[error("corrupt record batch at byte {position}: {reason}")]
    CorruptBatch { position: usize, reason: String },
    /// A record timestamp lies outside `message.timestamp.before.max.ms` /
    /// `message.timestamp.after.max.ms` of the broker's clock.
    #[error("record timestamp {timestamp} of the batch at byte {position} is outside the accepted range [{min}, {max}]")]
    InvalidTimestamp {
        position: usize,
        timestamp: i64,
        min: i64,
        max: i64,
    },
    /// The records of a compressed batch decompress to more than the limit.
    #[error("the records of the batch at byte {position} decompress to more than {limit} bytes")]
    DecompressedTooLarge { position: usize, limit: usize },
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    #[error("out of order sequence for producer {producer_id}: expected {expected}, received {received}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        received: i32,
    },
    #[error("producer {producer_id} has epoch {current}, request has older epoch {received}")]
    InvalidProducerEpoch {
        producer_id: i64,
        current: i16,
        received: i16,
    },
    /// A client sent a control batch (Kafka's `InvalidRecordException`, INVALID_RECORD): only
    /// the broker writes transaction markers.
    #[error(
        "the batch at byte {position} is a control batch; clients may not write control records"
    )]
    ControlBatchFromClient { position: usize },
    /// A transaction marker from a coordinator older than the last one that wrote a marker for
    /// this producer (TRANSACTION_COORDINATOR_FENCED).
    #[error("transaction marker for producer {producer_id} from coordinator epoch {received}, older than {current}")]
    TransactionCoordinatorFenced {
        producer_id: i64,
        current: i32,
        received: i32,
    },
    /// A non-transactional batch from a producer with a transaction open on this partition
    /// (Kafka's `InvalidTxnStateException`, INVALID_TXN_STATE).
    #[error(
        "producer {producer_id} wrote a non-transactional batch while its transaction is open"
    )]
    InvalidTxnState { producer_id: i64 },
    /// A follower append whose batch does not start where the log (or the previous batch)
    /// ends: Kafka's `UnexpectedAppendOffsetException`. The replication layer truncates the
    /// log (or fetches from its end) first.
    #[error(
        "replicated batch at byte {position} starts at offset {received}, expected {expected}"
    )]
    UnexpectedAppendOffset {
        position: usize,
        expected: i64,
        received: i64,
    },
    /// The append (or one batch of it) cannot fit in a segment.
    #[error("record batches of {size} bytes exceed the segment size of {max} bytes")]
    RecordTooLarge { size: usize, max: usize },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

/// Attaches a description of what was being done to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StorageError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StorageError> {
        self.map_err(|source| StorageError::Io {
            context: what(),
            source,
        })
    }
}
