//! The edge where library errors become Kafka error codes. Every handler reports failures through
//! these functions, so one storage or topic error always means the same code to a client.

use inlet_storage::StorageError;
use kafka_protocol::ResponseError;

use crate::cluster::partition::PartitionError;
use crate::cluster::topics::TopicError;

pub fn storage_error(error: &StorageError) -> ResponseError {
    match error {
        StorageError::CorruptBatch { .. } => ResponseError::CorruptMessage,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        StorageError::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        _ => ResponseError::KafkaStorageError,
    }
}

pub fn partition_error(error: &PartitionError) -> ResponseError {
    match error {
        PartitionError::Storage(e) => storage_error(e),
        // A partition closes only while its topic is being deleted or the broker stops.
        PartitionError::Closed { .. } => ResponseError::NotLeaderOrFollower,
    }
}

pub fn topic_error(error: &TopicError) -> ResponseError {
    match error {
        TopicError::InvalidName { .. } => ResponseError::InvalidTopicException,
        TopicError::AlreadyExists(_) => ResponseError::TopicAlreadyExists,
        TopicError::Unknown(_) => ResponseError::UnknownTopicOrPartition,
        TopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        TopicError::InvalidReplicationFactor { .. } => ResponseError::InvalidReplicationFactor,
        TopicError::InvalidConfig(_) => ResponseError::InvalidConfig,
        TopicError::Partition(e) => partition_error(e),
        TopicError::Io { .. } | TopicError::CorruptMetadata { .. } => {
            ResponseError::KafkaStorageError
        }
    }
}
