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
    let partition = match super::partition_mut(image, topic, index) {
        Ok(partition) => partition,
        Err(unknown) => return unknown,
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
    use crate::controller::apply::tests::{create_assigned, Cluster};
    use crate::controller::commands::ControllerCommand;

    /// Brokers 1-3, topic `t` with one partition on [1, 2, 3], led by 1.
    fn cluster() -> Cluster {
        let mut cluster = Cluster::with_brokers(&[None, None, None]);
        cluster.run(create_assigned("t", vec![vec![1, 2, 3]]));
        cluster
    }

    fn elect(cluster: &mut Cluster, election: Election) -> CommandOutcome {
        cluster.run(ControllerCommand::ElectLeader {
            topic: "t".into(),
            partition: 0,
            election,
        })
    }

    #[test]
    fn a_preferred_election_moves_leadership_back_to_the_first_replica() {
        let mut cluster = cluster();
        cluster.fence(1);
        cluster.unfence(1);
        let failed_over = cluster.partition("t", 0);
        assert_eq!(failed_over.leader, 2, "a failover moved leadership away");
        // Broker 1 caught up again: its new leader adds it back to the ISR.
        cluster.run(ControllerCommand::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader_id: 2,
            leader_epoch: failed_over.leader_epoch,
            partition_epoch: failed_over.partition_epoch,
            new_isr: vec![2, 3, 1],
        });
        let moved = cluster.partition("t", 0);
        let outcome = elect(&mut cluster, Election::Preferred);
        let back = cluster.partition("t", 0);
        assert_eq!(outcome, CommandOutcome::PartitionAltered(back.clone()));
        assert_eq!(back.leader, 1);
        assert_eq!(back.leader_epoch, moved.leader_epoch + 1);
        assert!(back.partition_epoch > moved.partition_epoch);
    }

    #[test]
    fn a_preferred_election_needs_the_replica_live_and_in_sync() {
        let mut cluster = cluster();
        assert_eq!(
            elect(&mut cluster, Election::Preferred).error_code(),
            ResponseError::ElectionNotNeeded.code()
        );
        // Fenced, broker 1 leaves the ISR; unfenced, it is not in sync until its leader says so.
        cluster.fence(1);
        let before = cluster.image.topics.clone();
        assert_eq!(
            elect(&mut cluster, Election::Preferred).error_code(),
            ResponseError::PreferredLeaderNotAvailable.code()
        );
        cluster.unfence(1);
        assert_eq!(
            elect(&mut cluster, Election::Preferred).error_code(),
            ResponseError::PreferredLeaderNotAvailable.code()
        );
        assert_eq!(cluster.image.topics, before);
    }

    #[test]
    fn an_unclean_election_only_gives_a_leaderless_partition_a_live_replica() {
        let mut cluster = cluster();
        assert_eq!(
            elect(&mut cluster, Election::Unclean).error_code(),
            ResponseError::ElectionNotNeeded.code()
        );
        cluster.fence(2);
        cluster.fence(3);
        cluster.fence(1);
        assert_eq!(cluster.partition("t", 0).leader, -1);
        assert_eq!(
            elect(&mut cluster, Election::Unclean).error_code(),
            ResponseError::EligibleLeadersNotAvailable.code()
        );
        // Broker 3 comes back; the ISR's last member (1) is still away.
        cluster.unfence(3);
        elect(&mut cluster, Election::Unclean);
        let p = cluster.partition("t", 0);
        assert_eq!((p.leader, p.isr.clone()), (3, vec![3]));
    }
}
