//! Automatic preferred-leader rebalancing (Kafka's `auto.leader.rebalance.enable`): failovers
//! leave leadership piled on the brokers that stayed up; every
//! `leader.imbalance.check.interval.seconds` the active controller counts, per broker, the
//! partitions it is the preferred (first) replica of but does not lead, and when that is more than
//! `leader.imbalance.per.broker.percentage` of them, elects it back wherever it is live and in the
//! ISR. Pure: the caller proposes the elections.

use std::collections::BTreeMap;

use crate::metadata::image::MetadataImage;

/// One preferred broker's partitions.
#[derive(Default)]
struct Preferred {
    total: usize,
    not_led: usize,
    /// Not led by it, but it is live and in the ISR.
    electable: Vec<(String, i32)>,
}

/// The partitions (topic, index) to give back to their preferred leader.
pub fn preferred_elections(image: &MetadataImage, imbalance_percent: u32) -> Vec<(String, i32)> {
    let mut per_broker: BTreeMap<i32, Preferred> = BTreeMap::new();
    for topic in image.topics.values() {
        for (index, partition) in topic.partitions.iter().enumerate() {
            let Some(&preferred) = partition.replicas.first() else {
                continue;
            };
            let entry = per_broker.entry(preferred).or_default();
            entry.total += 1;
            if partition.leader == preferred {
                continue;
            }
            entry.not_led += 1;
            if image.is_live(preferred) && partition.isr.contains(&preferred) {
                entry.electable.push((topic.name.clone(), index as i32));
            }
        }
    }
    per_broker
        .into_values()
        .filter(|b| b.not_led * 100 > b.total * imbalance_percent as usize)
        .flat_map(|b| b.electable)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::image::{BrokerRegistration, PartitionImage, TopicImage};

    fn image(leaders: &[i32], fenced: &[i32]) -> MetadataImage {
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
        let partitions = leaders
            .iter()
            .enumerate()
            .map(|(i, &leader)| {
                let first = (i % 3) as i32 + 1;
                let replicas = vec![first, first % 3 + 1, (first + 1) % 3 + 1];
                PartitionImage {
                    isr: replicas.clone(),
                    replicas,
                    leader,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    adding_replicas: Vec::new(),
                    removing_replicas: Vec::new(),
                }
            })
            .collect();
        image.topics.insert(
            "t".into(),
            TopicImage {
                id: uuid::Uuid::nil(),
                name: "t".into(),
                configs: Default::default(),
                partitions,
            },
        );
        image
    }

    #[test]
    fn balanced_leadership_needs_no_election() {
        assert!(preferred_elections(&image(&[1, 2, 3, 1, 2, 3], &[]), 10).is_empty());
    }

    #[test]
    fn a_broker_back_from_a_failover_gets_its_partitions_back() {
        // Broker 1 was away: its partitions 0 and 3 are led by 2.
        let elections = preferred_elections(&image(&[2, 2, 3, 2, 2, 3], &[]), 10);
        assert_eq!(elections, vec![("t".to_string(), 0), ("t".to_string(), 3)]);
        // Still fenced: nothing to do yet.
        assert!(preferred_elections(&image(&[2, 2, 3, 2, 2, 3], &[1]), 10).is_empty());
    }

    #[test]
    fn an_imbalance_within_the_percentage_is_left_alone() {
        // One of broker 1's three partitions led elsewhere: 33%, under a 50% threshold.
        let leaders = [2, 2, 3, 1, 2, 3, 1, 2, 3];
        assert!(preferred_elections(&image(&leaders, &[]), 50).is_empty());
        assert_eq!(preferred_elections(&image(&leaders, &[]), 10).len(), 1);
    }
}
