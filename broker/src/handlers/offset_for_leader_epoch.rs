//! OffsetForLeaderEpoch (API 23; KIP-101, KIP-279, KIP-320): for each named partition, the end
//! offset of a leader epoch in the leader's log, which a follower truncates to after a leader
//! change and a consumer uses to detect that its position was truncated away. Only the leader
//! answers; consumers (`replica_id` -1, or -2 before v3 where the field does not exist) and the
//! partition's own replicas may ask.
//!
//! It also owns [`partition_at_epoch`], the one decision, in Kafka's order, of whether a request
//! may read a partition here at the leader epoch it names: ListOffsets uses it too.
//!
//! Each partition costs a few map lookups and a binary search of its epoch cache, so a request
//! costs work in proportion to its size.

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderPartition;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use super::errors::{check_current_leader_epoch, partition_error};
use crate::broker::Broker;
use crate::cluster::partition::Partition;
use crate::metadata::image::{MetadataImage, PartitionImage};

/// Who sends a request, from its `replica_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester {
    /// A consumer or tool: any negative id (-1 consumers, -2 Kafka's "debugging" id and the
    /// value of requests whose version has no replica id).
    Client,
    /// A broker asking as a replica of the partition (a follower).
    Replica(i32),
}

impl Requester {
    pub fn from_replica_id(replica_id: i32) -> Requester {
        if replica_id >= 0 {
            Requester::Replica(replica_id)
        } else {
            Requester::Client
        }
    }
}

pub fn handle(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let image = broker.controller.image();
    let requester = Requester::from_replica_id(request.replica_id.0);
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|wanted| answer(broker, &image, &topic.topic, requester, wanted))
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

fn answer(
    broker: &Broker,
    image: &MetadataImage,
    topic: &str,
    requester: Requester,
    wanted: &OffsetForLeaderPartition,
) -> EpochEndOffset {
    // Defaults: leader epoch and end offset -1, UNDEFINED.
    let response = EpochEndOffset::default().with_partition(wanted.partition);
    let partition = match partition_at_epoch(
        broker,
        image,
        topic,
        wanted.partition,
        requester,
        wanted.current_leader_epoch,
    ) {
        Ok(partition) => partition,
        Err(code) => {
            tracing::debug!(
                topic,
                partition = wanted.partition,
                ?requester,
                current_leader_epoch = wanted.current_leader_epoch,
                ?code,
                "OffsetForLeaderEpoch refused"
            );
            return response.with_error_code(code.code());
        }
    };
    match partition.leader_end_offset_for_epoch(wanted.leader_epoch) {
        Ok(Some((epoch, end_offset))) => response
            .with_leader_epoch(epoch)
            .with_end_offset(end_offset),
        Ok(None) => response,
        Err(error) => response.with_error_code(partition_error(&error).code()),
    }
}

/// The local partition `requester` may read as its leader, having named `current_leader_epoch`
/// (-1: none), or the error it is told. See [`decide`] for the rules.
pub fn partition_at_epoch(
    broker: &Broker,
    image: &MetadataImage,
    topic: &str,
    index: i32,
    requester: Requester,
    current_leader_epoch: i32,
) -> Result<Arc<Partition>, ResponseError> {
    let topic_image = image.topic(topic);
    let placed = image.partition(topic, index);
    // The local replica must be of the topic the image names (a re-created topic has a new id).
    let local = topic_image
        .and_then(|t| broker.topics.get(topic).filter(|l| l.id == t.id))
        .and_then(|l| l.partition(index));
    decide(
        broker.node_id(),
        placed,
        local.as_ref().map(|p| p.leader_epoch()),
        requester,
        current_leader_epoch,
    )?;
    local.ok_or(ResponseError::NotLeaderOrFollower)
}

/// Kafka's decision (ReplicaManager, then `Partition.getLocalLog` with `requireLeader`) on a
/// partition `placed` in the image, whose local replica here has leader epoch `local_epoch`
/// (`None`: no local replica yet):
/// 1. not in the image: UNKNOWN_TOPIC_OR_PARTITION;
/// 2. a broker that is not one of its replicas asks as a follower: NOT_LEADER_OR_FOLLOWER (only
///    replicas replicate; Kafka refuses such a follower the same way in Fetch);
/// 3. not hosted here (this broker is no replica, or has not applied the image yet):
///    NOT_LEADER_OR_FOLLOWER, whatever epoch was named;
/// 4. the named epoch is checked against the local replica's, before leadership, so a follower
///    tells a client with old metadata FENCED_LEADER_EPOCH rather than only "not leader";
/// 5. this broker is not the leader: NOT_LEADER_OR_FOLLOWER.
fn decide(
    me: i32,
    placed: Option<&PartitionImage>,
    local_epoch: Option<i32>,
    requester: Requester,
    current_leader_epoch: i32,
) -> Result<(), ResponseError> {
    let placed = placed.ok_or(ResponseError::UnknownTopicOrPartition)?;
    if let Requester::Replica(id) = requester {
        if !placed.replicas.contains(&id) {
            return Err(ResponseError::NotLeaderOrFollower);
        }
    }
    let local_epoch = local_epoch
        .filter(|_| placed.replicas.contains(&me))
        .ok_or(ResponseError::NotLeaderOrFollower)?;
    check_current_leader_epoch(current_leader_epoch, local_epoch)?;
    if placed.leader != me {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: i32 = 1;

    fn placed(leader: i32, leader_epoch: i32) -> PartitionImage {
        PartitionImage {
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            leader,
            leader_epoch,
            partition_epoch: leader_epoch,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    #[test]
    fn a_partition_missing_from_the_image_is_unknown() {
        assert_eq!(
            decide(ME, None, Some(0), Requester::Client, -1),
            Err(ResponseError::UnknownTopicOrPartition)
        );
    }

    #[test]
    fn the_leader_answers_consumers_and_its_followers_at_its_epoch_or_none() {
        let p = placed(ME, 4);
        for requester in [
            Requester::Client,
            Requester::Replica(2),
            Requester::Replica(3),
        ] {
            assert_eq!(decide(ME, Some(&p), Some(4), requester, -1), Ok(()));
            assert_eq!(decide(ME, Some(&p), Some(4), requester, 4), Ok(()));
        }
    }

    #[test]
    fn a_broker_that_is_no_replica_cannot_ask_as_a_follower() {
        let p = placed(ME, 4);
        assert_eq!(
            decide(ME, Some(&p), Some(4), Requester::Replica(7), 4),
            Err(ResponseError::NotLeaderOrFollower)
        );
    }

    #[test]
    fn old_and_future_epochs_are_fenced_and_unknown_even_on_a_follower() {
        for leader in [ME, 2] {
            let p = placed(leader, 4);
            assert_eq!(
                decide(ME, Some(&p), Some(4), Requester::Client, 3),
                Err(ResponseError::FencedLeaderEpoch)
            );
            assert_eq!(
                decide(ME, Some(&p), Some(4), Requester::Client, 5),
                Err(ResponseError::UnknownLeaderEpoch)
            );
        }
    }

    #[test]
    fn the_epoch_compared_is_the_local_replicas() {
        // The image moved to epoch 5 but this replica has not applied it yet: a client that
        // already knows 5 is told to retry, not served from a replica of epoch 4.
        let p = placed(ME, 5);
        assert_eq!(
            decide(ME, Some(&p), Some(4), Requester::Client, 5),
            Err(ResponseError::UnknownLeaderEpoch)
        );
    }

    #[test]
    fn followers_and_brokers_without_a_replica_are_not_the_leader() {
        let followed = placed(2, 4);
        assert_eq!(
            decide(ME, Some(&followed), Some(4), Requester::Client, 4),
            Err(ResponseError::NotLeaderOrFollower)
        );
        let leaderless = placed(-1, 4);
        assert_eq!(
            decide(ME, Some(&leaderless), Some(4), Requester::Client, -1),
            Err(ResponseError::NotLeaderOrFollower)
        );
        // Led here by the image, not applied locally yet: no epoch check possible.
        let led = placed(ME, 4);
        assert_eq!(
            decide(ME, Some(&led), None, Requester::Client, 3),
            Err(ResponseError::NotLeaderOrFollower)
        );
        // A local log of a partition this broker is no replica of (its topic has other
        // partitions here): not hosted, so no epoch check either.
        let elsewhere = PartitionImage {
            replicas: vec![2, 3],
            ..placed(2, 4)
        };
        assert_eq!(
            decide(ME, Some(&elsewhere), Some(4), Requester::Client, 3),
            Err(ResponseError::NotLeaderOrFollower)
        );
    }

    #[test]
    fn a_replica_id_is_a_follower_only_when_not_negative() {
        assert_eq!(Requester::from_replica_id(-1), Requester::Client);
        assert_eq!(Requester::from_replica_id(-2), Requester::Client);
        assert_eq!(Requester::from_replica_id(0), Requester::Replica(0));
        assert_eq!(Requester::from_replica_id(3), Requester::Replica(3));
    }
}
