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
        StorageError::ControlBatchFromClient { .. } => ResponseError::InvalidRecord,
        StorageError::TransactionCoordinatorFenced { .. } => {
            ResponseError::TransactionCoordinatorFenced
        }
        StorageError::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
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
        GroupError::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
        GroupError::FencedMemberEpoch { .. } => ResponseError::FencedMemberEpoch,
        GroupError::StaleMemberEpoch => ResponseError::StaleMemberEpoch,
        GroupError::UnreleasedInstanceId(_) => ResponseError::UnreleasedInstanceId,
        GroupError::UnsupportedAssignor(_) => ResponseError::UnsupportedAssignor,
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        GroupError::InvalidRequest(_) => ResponseError::InvalidRequest,
        GroupError::InvalidRegularExpression(_) => ResponseError::InvalidRegularExpression,
        // The offsets topic could not be written: the client retries, as after a coordinator move.
        GroupError::Storage(_) => ResponseError::CoordinatorNotAvailable,
    }
}

/// Kafka's `NO_PARTITION_LEADER_EPOCH`: the client did not say which leader epoch it knows.
pub const NO_LEADER_EPOCH: i32 = -1;

/// Kafka's `Partition.checkCurrentLeaderEpoch` (KIP-320): a client or follower names the leader
/// epoch it knows (`current_leader_epoch`) and is refused when that is not this replica's
/// `actual` one. An older epoch is FENCED_LEADER_EPOCH (its metadata is stale: refresh it); a
/// newer one is UNKNOWN_LEADER_EPOCH (this broker has not yet learned of it: retry). -1 (no
/// epoch given, as old clients send) always passes.
pub fn check_current_leader_epoch(requested: i32, actual: i32) -> Result<(), ResponseError> {
    if requested == NO_LEADER_EPOCH {
        return Ok(());
    }
    match requested.cmp(&actual) {
        std::cmp::Ordering::Less => Err(ResponseError::FencedLeaderEpoch),
        std::cmp::Ordering::Greater => Err(ResponseError::UnknownLeaderEpoch),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// The Kafka code of a group result: 0 for success.
pub fn group_code<T>(result: &Result<T, GroupError>) -> i16 {
    match result {
        Ok(_) => 0,
        Err(error) => group_error(error).code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn no_current_leader_epoch_always_passes() {
        for actual in [-1, 0, 5, i32::MAX] {
            assert_eq!(check_current_leader_epoch(NO_LEADER_EPOCH, actual), Ok(()));
        }
    }

    #[test]
    fn older_epoch_is_fenced_newer_is_unknown_equal_passes() {
        assert_eq!(
            check_current_leader_epoch(2, 3),
            Err(ResponseError::FencedLeaderEpoch)
        );
        assert_eq!(
            check_current_leader_epoch(4, 3),
            Err(ResponseError::UnknownLeaderEpoch)
        );
        assert_eq!(check_current_leader_epoch(3, 3), Ok(()));
        assert_eq!(check_current_leader_epoch(0, 0), Ok(()));
        // Only -1 means "not given": other negative epochs are older than any real one.
        assert_eq!(
            check_current_leader_epoch(-2, 0),
            Err(ResponseError::FencedLeaderEpoch)
        );
    }

    proptest! {
        #[test]
        fn the_check_passes_exactly_when_absent_or_equal(requested in -3i32..50, actual in 0i32..50) {
            let result = check_current_leader_epoch(requested, actual);
            prop_assert_eq!(result.is_ok(), requested == -1 || requested == actual);
        }
    }
}
