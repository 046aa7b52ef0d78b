//! ElectLeaders (KIP-460) for one partition: a preferred election makes the first replica the
//! leader when it is live and in the ISR; an unclean election gives a partition that has no
//! leader any live replica, ISR or not (what Kafka's `unclean.leader.election.enable` would do,
//! on request only).

use kafka_protocol::ResponseError;

use super::change_partition;
use crate::controller::commands::{CommandOutcome, Election};
use crate::metadata::image::MetadataImage;

pub(super) fn elect_leader(
    image: &mut MetadataImage,
    topic: &str,
    index: i32,
    election: Election,
) -> CommandOutcome {
    let live: Vec<i32> = image.live_brokers().map(|b| b.id).collect();
    let Some(partition) = usize::try_from(index).ok().and_then(|i| {
        image
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(i))
    }) else {
        return CommandOutcome::error(
            ResponseError::UnknownTopicOrPartition,
            format!("{topic}-{index} does not exist"),
        );
    };
    match election {
        Election::Preferred => {
            let Some(&preferred) = partition.replicas.first() else {
                return CommandOutcome::error(
                    ResponseError::PreferredLeaderNotAvailable,
                    "no replicas",
                );
            };
            if partition.leader == preferred {
                return CommandOutcome::error(
                    ResponseError::ElectionNotNeeded,
                    format!("broker {preferred} already leads {topic}-{index}"),
                );
            }
            if !live.contains(&preferred) || !partition.isr.contains(&preferred) {
                return CommandOutcome::error(
                    ResponseError::PreferredLeaderNotAvailable,
                    format!("broker {preferred} is not live and in the ISR of {topic}-{index}"),
                );
            }
            let isr = partition.isr.clone();
            change_partition(partition, isr, preferred);
        }
        Election::Unclean => {
            if partition.leader >= 0 {
                return CommandOutcome::error(
                    ResponseError::ElectionNotNeeded,
                    format!("{topic}-{index} has a leader"),
                );
            }
            let Some(&chosen) = partition.replicas.iter().find(|r| live.contains(r)) else {
                return CommandOutcome::error(
                    ResponseError::EligibleLeadersNotAvailable,
                    format!("no replica of {topic}-{index} is live"),
                );
            };
            change_partition(partition, vec![chosen], chosen);
        }
    }
    CommandOutcome::PartitionAltered(partition.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::apply::apply;
    use crate::controller::commands::ControllerCommand;
    use crate::metadata::image::{BrokerRegistration, PartitionImage, TopicImage};

    fn image(leader: i32, isr: &[i32], fenced: &[i32]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 1..=3 {
            image.brokers.insert(
                id,
                BrokerRegistration {
                    id,
                    incarnation_id: uuid::Uuid::nil(),
                    epoch: 1,
                    listeners: Vec::new(),
                    rack: None,
                    fenced: fenced.contains(&id),
                },
            );
        }
        image.topics.insert(
            "t".into(),
            TopicImage {
                id: uuid::Uuid::nil(),
                name: "t".into(),
                configs: Default::default(),
                partitions: vec![PartitionImage {
                    replicas: vec![1, 2, 3],
                    isr: isr.to_vec(),
                    leader,
                    leader_epoch: 4,
                    partition_epoch: 9,
                    adding_replicas: Vec::new(),
                    removing_replicas: Vec::new(),
                }],
            },
        );
        image
    }

    fn elect(image: &mut MetadataImage, election: Election) -> CommandOutcome {
        let command = ControllerCommand::ElectLeader {
            topic: "t".into(),
            partition: 0,
            election,
        };
        apply(image, 10, &command)
    }

    #[test]
    fn a_preferred_election_moves_leadership_back_to_the_first_replica() {
        let mut image = image(2, &[1, 2, 3], &[]);
        let outcome = elect(&mut image, Election::Preferred);
        let partition = &image.topics["t"].partitions[0];
        assert_eq!(outcome, CommandOutcome::PartitionAltered(partition.clone()));
        assert_eq!(
            (
                partition.leader,
                partition.leader_epoch,
                partition.partition_epoch
            ),
            (1, 5, 10)
        );
        assert_eq!(partition.isr, vec![1, 2, 3]);
    }

    #[test]
    fn a_preferred_election_needs_the_replica_live_and_in_sync() {
        for (isr, fenced) in [(vec![2, 3], vec![]), (vec![1, 2, 3], vec![1])] {
            let mut image = image(2, &isr, &fenced);
            let before = image.clone();
            let code = elect(&mut image, Election::Preferred).error_code();
            assert_eq!(code, ResponseError::PreferredLeaderNotAvailable.code());
            assert_eq!(image.topics, before.topics);
        }
        let mut image = image(1, &[1, 2, 3], &[]);
        assert_eq!(
            elect(&mut image, Election::Preferred).error_code(),
            ResponseError::ElectionNotNeeded.code()
        );
    }

    #[test]
    fn an_unclean_election_only_gives_a_leaderless_partition_a_live_replica() {
        let mut led = image(2, &[2], &[]);
        assert_eq!(
            elect(&mut led, Election::Unclean).error_code(),
            ResponseError::ElectionNotNeeded.code()
        );
        let mut leaderless = image(-1, &[1], &[1]);
        elect(&mut leaderless, Election::Unclean);
        let partition = &leaderless.topics["t"].partitions[0];
        assert_eq!((partition.leader, partition.isr.clone()), (2, vec![2]));
        let mut dead = image(-1, &[1], &[1, 2, 3]);
        assert_eq!(
            elect(&mut dead, Election::Unclean).error_code(),
            ResponseError::EligibleLeadersNotAvailable.code()
        );
    }
}
