//! The edge where library errors become Kafka error codes. Every handler reports failures through
//! these functions, so one storage or topic error always means the same code to a client.

use inlet_storage::StorageError;
use kafka_protocol::ResponseError;

use crate::cluster::partition::PartitionError;
use crate::group::GroupError;

pub fn storage_error(error: &StorageError) -> ResponseError {
    match error {
        StorageError::CorruptBatch { .. } => ResponseError::CorruptMessage,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        StorageError::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::DecompressedTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
        _ => ResponseError::KafkaStorageError,
    }
}

pub fn partition_error(error: &PartitionError) -> ResponseError {
    match error {
        PartitionError::Storage(e) => storage_error(e),
        // A partition closes only while its topic is being deleted or the broker stops.
        PartitionError::Closed { .. } => ResponseError::NotLeaderOrFollower,
        PartitionError::Lake(_) => ResponseError::KafkaStorageError,
        PartitionError::NotLeader { .. } => ResponseError::NotLeaderOrFollower,
    }
}

pub fn group_error(error: &GroupError) -> ResponseError {
    match error {
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::UnknownMemberId(_) => ResponseError::UnknownMemberId,
        GroupError::MemberIdRequired(_) => ResponseError::MemberIdRequired,
        GroupError::IllegalGeneration { .. } => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::FencedInstanceId { .. } => ResponseError::FencedInstanceId,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout(_) => ResponseError::InvalidSessionTimeout,
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        GroupError::CoordinatorNotAvailable(_) => ResponseError::CoordinatorNotAvailable,
        GroupError::GroupIdNotFound(_) => ResponseError::GroupIdNotFound,
        GroupError::NonEmptyGroup(_) => ResponseError::NonEmptyGroup,
        GroupError::GroupSubscribedToTopic(_) => ResponseError::GroupSubscribedToTopic,
        // The offsets topic could not be written: the client retries, as after a coordinator move.
        GroupError::Storage(_) => ResponseError::CoordinatorNotAvailable,
    }
}

/// The Kafka code of a group result: 0 for success.
pub fn group_code<T>(result: &Result<T, GroupError>) -> i16 {
    match result {
        Ok(_) => 0,
        Err(error) => group_error(error).code(),
    }
}
