//! Property tests: random command sequences over a few brokers (some on racks) and topics keep
//! the image's invariants after every step; replaying a sequence gives the same image and the
//! same outcomes; the image survives a serde round trip unchanged.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::metadata::image::Endpoint;

const BROKERS: i32 = 5;
const TOPICS: usize = 3;

/// An abstract step; turned into a command against the current image (so that most carry the
/// right epochs and hit real partitions, and some deliberately do not).
#[derive(Clone, Debug)]
enum Step {
    Register {
        broker: i32,
        restart: bool,
    },
    Fence {
        broker: i32,
        stale: bool,
    },
    Unfence {
        broker: i32,
        stale: bool,
    },
    Unregister {
        broker: i32,
    },
    Create {
        topic: usize,
        partitions: i32,
        rf: i16,
        explicit: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    },
    Delete {
        topic: usize,
    },
    AddPartitions {
        topic: usize,
        more: i32,
    },
    Alter {
        topic: usize,
        partition: usize,
        keep: u8,
        add: u8,
        tamper: u8,
    },
    AllocateProducerIds {
        broker: i32,
    },
    AdvanceProducerIds {
        at_least: i64,
    },
    Reassign {
        topic: usize,
        partition: usize,
        target: Option<Vec<i32>>,
    },
    Elect {
        topic: usize,
        partition: usize,
        unclean: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let broker = 1..=BROKERS;
    let topic = 0..TOPICS;
    let stale = || prop::bool::weighted(0.1);
    let assignments = prop::collection::vec(prop::collection::vec(1..=BROKERS, 1..4), 1..4);
    prop_oneof![
        3 => (broker.clone(), any::<bool>())
            .prop_map(|(broker, restart)| Step::Register { broker, restart }),
        3 => (broker.clone(), stale()).prop_map(|(broker, stale)| Step::Fence { broker, stale }),
        4 => (broker.clone(), stale()).prop_map(|(broker, stale)| Step::Unfence { broker, stale }),
        1 => broker.clone().prop_map(|broker| Step::Unregister { broker }),
        5 => (
            topic.clone(),
            1i32..6,
            1i16..4,
            prop::option::weighted(0.3, assignments),
            prop::bool::weighted(0.1),
        )
            .prop_map(|(topic, partitions, rf, explicit, validate_only)| Step::Create {
                topic,
                partitions,
                rf,
                explicit,
                validate_only,
            }),
        1 => topic.clone().prop_map(|topic| Step::Delete { topic }),
        1 => (topic.clone(), 1i32..3).prop_map(|(topic, more)| Step::AddPartitions { topic, more }),
        8 => (topic.clone(), 0usize..8, any::<u8>(), any::<u8>(), 0u8..8).prop_map(
            |(topic, partition, keep, add, tamper)| Step::Alter {
                topic,
                partition,
                keep,
                add,
                tamper,
            }
        ),
        2 => broker.clone().prop_map(|broker| Step::AllocateProducerIds { broker }),
        1 => (0i64..20_000).prop_map(|at_least| Step::AdvanceProducerIds { at_least }),
        3 => (
            topic.clone(),
            0usize..8,
            prop::option::weighted(0.8, prop::collection::vec(1..=BROKERS + 1, 0..4)),
        )
            .prop_map(|(topic, partition, target)| Step::Reassign {
                topic,
                partition,
                target,
            }),
        2 => (topic.clone(), 0usize..8, prop::bool::weighted(0.3)).prop_map(
            |(topic, partition, unclean)| Step::Elect {
                topic,
                partition,
                unclean,
            }
        ),
    ]
}

fn fail(e: serde_json::Error) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

fn rack_of(broker: i32) -> Option<String> {
    // Two racks and one broker without a rack ("no rack" counts as a rack of its own).
    match broker % 3 {
        0 => None,
        1 => Some("a".into()),
        _ => Some("b".into()),
    }
}

fn topic_name(topic: usize) -> String {
    format!("t{topic}")
}

/// Turns a step into a concrete command against `image`. `serial` makes fresh ids distinct.
fn command(image: &MetadataImage, step: &Step, serial: u64) -> ControllerCommand {
    let epoch_of = |b: i32, stale: bool| {
        image
            .brokers
            .get(&b)
            .map_or(1, |r| if stale { r.epoch - 1 } else { r.epoch })
    };
    match step.clone() {
        Step::Register { broker, restart } => {
            let incarnation_id = match image.brokers.get(&broker) {
                Some(r) if !restart => r.incarnation_id,
                _ => Uuid::from_u128(u128::from(serial) << 8 | broker as u128),
            };
            ControllerCommand::RegisterBroker {
                id: broker,
                incarnation_id,
                listeners: vec![Endpoint {
                    name: "PLAINTEXT".into(),
                    host: "h".into(),
                    port: 9092,
                }],
                rack: rack_of(broker),
            }
        }
        Step::Fence { broker, stale } => ControllerCommand::FenceBroker {
            id: broker,
            epoch: epoch_of(broker, stale),
        },
        Step::Unfence { broker, stale } => ControllerCommand::UnfenceBroker {
            id: broker,
            epoch: epoch_of(broker, stale),
        },
        Step::Unregister { broker } => ControllerCommand::UnregisterBroker {
            id: broker,
            epoch: epoch_of(broker, false),
        },
        Step::Create {
            topic,
            partitions,
            rf,
            explicit,
            validate_only,
        } => ControllerCommand::CreateTopic {
            name: topic_name(topic),
            topic_id: Uuid::from_u128(u128::from(serial) + 1),
            // As Kafka's clients send them: -1 with a manual assignment.
            partitions: if explicit.is_some() { -1 } else { partitions },
            replication_factor: if explicit.is_some() { -1 } else { rf },
            assignments: explicit,
            configs: BTreeMap::new(),
            validate_only,
        },
        Step::Delete { topic } => ControllerCommand::DeleteTopic {
            name: topic_name(topic),
        },
        Step::AddPartitions { topic, more } => {
            let current = image
                .topic(&topic_name(topic))
                .map_or(0, |t| t.partitions.len() as i32);
            ControllerCommand::CreatePartitions {
                name: topic_name(topic),
                count: current + more,
                assignments: None,
                validate_only: false,
            }
        }
        Step::Alter {
            topic,
            partition,
            keep,
            add,
            tamper,
        } => {
            let name = topic_name(topic);
            let p = image.topic(&name).and_then(|t| {
                (!t.partitions.is_empty()).then(|| {
                    (
                        partition % t.partitions.len(),
                        t.partitions[partition % t.partitions.len()].clone(),
                    )
                })
            });
            let Some((index, p)) = p else {
                return ControllerCommand::AlterPartition {
                    topic: name,
                    partition: 0,
                    leader_id: 1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    new_isr: vec![1],
                };
            };
            // Shrink to a subset of the ISR (leader kept), then grow by live replicas.
            let mut isr: Vec<i32> = p
                .isr
                .iter()
                .enumerate()
                .filter(|(i, b)| **b == p.leader || keep & (1 << i) != 0)
                .map(|(_, b)| *b)
                .collect();
            for (i, r) in p.replicas.iter().enumerate() {
                if add & (1 << i) != 0 && !isr.contains(r) && image.is_live(*r) {
                    isr.push(*r);
                }
            }
            let (mut leader_id, mut leader_epoch, mut partition_epoch) =
                (p.leader, p.leader_epoch, p.partition_epoch);
            match tamper {
                1 => leader_epoch -= 1,
                2 => partition_epoch += 1,
                3 => leader_id = (leader_id % BROKERS) + 1,
                4 => isr.push(BROKERS + 1),
                _ => {}
            }
            ControllerCommand::AlterPartition {
                topic: name,
                partition: index as i32,
                leader_id,
                leader_epoch,
                partition_epoch,
                new_isr: isr,
            }
        }
        Step::AllocateProducerIds { broker } => ControllerCommand::AllocateProducerIds {
            broker_id: broker,
            broker_epoch: epoch_of(broker, false),
        },
        Step::AdvanceProducerIds { at_least } => ControllerCommand::AdvanceProducerIds { at_least },
        Step::Reassign {
            topic,
            partition,
            target,
        } => ControllerCommand::ReassignPartition {
            partition: partition_index(image, topic, partition),
            topic: topic_name(topic),
            target,
        },
        Step::Elect {
            topic,
            partition,
            unclean,
        } => ControllerCommand::ElectLeader {
            partition: partition_index(image, topic, partition),
            topic: topic_name(topic),
            election: if unclean {
                crate::controller::commands::Election::Unclean
            } else {
                crate::controller::commands::Election::Preferred
            },
        },
    }
}

/// Mostly an existing partition of `topic`, sometimes one past its end.
fn partition_index(image: &MetadataImage, topic: usize, partition: usize) -> i32 {
    let count = image
        .topic(&topic_name(topic))
        .map_or(1, |t| t.partitions.len() + 1);
    (partition % count) as i32
}

/// Checks everything that must hold of any image reachable by `apply`.
fn check_image(
    image: &MetadataImage,
    ever_registered: &BTreeSet<i32>,
) -> Result<(), TestCaseError> {
    for (name, topic) in &image.topics {
        prop_assert_eq!(&topic.name, name);
        prop_assert!(!topic.partitions.is_empty());
        for (index, p) in topic.partitions.iter().enumerate() {
            let at = format!("{name}-{index}: {p:?}");
            let replicas: BTreeSet<i32> = p.replicas.iter().copied().collect();
            prop_assert_eq!(
                replicas.len(),
                p.replicas.len(),
                "duplicate replicas {}",
                at
            );
            // Unregistering keeps the id in replica lists (as Kafka does); it was registered once.
            prop_assert!(
                replicas.is_subset(ever_registered),
                "unknown replica {}",
                at
            );
            let isr: BTreeSet<i32> = p.isr.iter().copied().collect();
            prop_assert_eq!(isr.len(), p.isr.len(), "duplicate ISR {}", at);
            prop_assert!(!isr.is_empty(), "empty ISR {}", at);
            prop_assert!(isr.is_subset(&replicas), "ISR not in replicas {}", at);
            if p.leader == -1 {
                // No election was possible: no ISR member is live.
                prop_assert!(
                    p.isr.iter().all(|b| !image.is_live(*b)),
                    "leaderless with live ISR {}",
                    at
                );
            } else {
                prop_assert!(
                    isr.contains(&p.leader) && image.is_live(p.leader),
                    "bad leader {}",
                    at
                );
            }
            // A reassignment's moving replicas are replicas, and none both comes and goes.
            let adding: BTreeSet<i32> = p.adding_replicas.iter().copied().collect();
            let removing: BTreeSet<i32> = p.removing_replicas.iter().copied().collect();
            prop_assert!(adding.is_subset(&replicas), "adding not in replicas {}", at);
            prop_assert!(
                removing.is_subset(&replicas),
                "removing not in replicas {}",
                at
            );
            prop_assert!(adding.is_disjoint(&removing), "adding and removing {}", at);
            prop_assert!(removing.len() < replicas.len(), "no target replica {}", at);
            // A member that is not live stays only as the last one, leaderless.
            if p.isr.iter().any(|b| !image.is_live(*b)) {
                prop_assert!(p.isr.len() == 1 && p.leader == -1, "dead ISR member {}", at);
            }
        }
    }
    let ids: BTreeSet<Uuid> = image.topics.values().map(|t| t.id).collect();
    prop_assert_eq!(ids.len(), image.topics.len(), "topic ids not unique");
    for (id, broker) in &image.brokers {
        prop_assert_eq!(*id, broker.id);
        prop_assert!(broker.epoch >= 1 && broker.epoch as u64 <= image.last_applied);
    }
    let json = serde_json::to_string(image).map_err(fail)?;
    let back: MetadataImage = serde_json::from_str(&json).map_err(fail)?;
    prop_assert_eq!(&back, image, "serde round trip");
    Ok(())
}

/// Epochs only go up, and go up on every change (keyed by topic id, so a re-created topic is new).
fn check_transition(before: &MetadataImage, after: &MetadataImage) -> Result<(), TestCaseError> {
    for topic in after.topics.values() {
        let Some(old) = before.topic_by_id(topic.id) else {
            continue;
        };
        prop_assert!(topic.partitions.len() >= old.partitions.len());
        for (p, q) in old.partitions.iter().zip(&topic.partitions) {
            prop_assert!(
                q.leader_epoch >= p.leader_epoch && q.partition_epoch >= p.partition_epoch
            );
            if q.leader != p.leader {
                prop_assert!(
                    q.leader_epoch > p.leader_epoch,
                    "leader moved without epoch bump: {:?} -> {:?}",
                    p,
                    q
                );
            }
            if q != p {
                prop_assert!(
                    q.partition_epoch > p.partition_epoch,
                    "changed without epoch bump: {:?} -> {:?}",
                    p,
                    q
                );
            }
            // Replicas change only through a reassignment, which keeps the target first.
            if q.replicas != p.replicas {
                let target: Vec<i32> = q
                    .replicas
                    .iter()
                    .copied()
                    .filter(|r| !q.removing_replicas.contains(r))
                    .collect();
                prop_assert_eq!(&q.replicas[..target.len()], &target[..]);
            }
        }
    }
    prop_assert!(after.next_producer_id >= before.next_producer_id);
    Ok(())
}

/// Runs the steps from an empty image; returns the commands, outcomes and final image.
fn run(
    steps: &[Step],
) -> Result<(Vec<ControllerCommand>, Vec<CommandOutcome>, MetadataImage), TestCaseError> {
    let mut image = MetadataImage::default();
    apply(
        &mut image,
        1,
        &ControllerCommand::InitCluster {
            cluster_id: "c".into(),
        },
    );
    let mut ever_registered = BTreeSet::new();
    let mut handed_out: Vec<(i64, i64)> = Vec::new();
    let (mut commands, mut outcomes) = (Vec::new(), Vec::new());
    for (i, step) in steps.iter().enumerate() {
        let index = i as u64 + 2;
        let command = command(&image, step, index);
        let before = image.clone();
        let outcome = apply(&mut image, index, &command);
        prop_assert_eq!(image.last_applied, index);
        if let ControllerCommand::RegisterBroker { id, .. } = &command {
            if !outcome.is_error() {
                ever_registered.insert(*id);
            }
        }
        let validate_only = matches!(
            command,
            ControllerCommand::CreateTopic {
                validate_only: true,
                ..
            }
        );
        if outcome.is_error() || validate_only {
            let mut unchanged = before.clone();
            unchanged.last_applied = index;
            prop_assert_eq!(
                &image,
                &unchanged,
                "{:?} -> {:?} changed the image",
                command,
                outcome
            );
        }
        if let CommandOutcome::ProducerIds { start, len } = outcome {
            let end = start + i64::from(len);
            prop_assert!(handed_out
                .last()
                .is_none_or(|(_, last_end)| start >= *last_end));
            prop_assert!(end <= image.next_producer_id);
            handed_out.push((start, end));
        }
        check_image(&image, &ever_registered)?;
        check_transition(&before, &image)?;
        commands.push(command);
        outcomes.push(outcome);
    }
    Ok((commands, outcomes, image))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_command_sequences_keep_the_image_invariants(
        start_live in prop::bool::weighted(0.8),
        steps in prop::collection::vec(step(), 1..80),
    ) {
        // Start from a live cluster most of the time, so that most steps hit real state.
        let mut all = Vec::new();
        if start_live {
            for broker in 1..=BROKERS {
                all.push(Step::Register { broker, restart: false });
                all.push(Step::Unfence { broker, stale: false });
            }
        }
        all.extend(steps);
        let (commands, outcomes, image) = run(&all)?;
        // Determinism: the same commands applied again give the same outcomes and image.
        let mut replay = MetadataImage::default();
        apply(&mut replay, 1, &ControllerCommand::InitCluster { cluster_id: "c".into() });
        for (i, command) in commands.iter().enumerate() {
            let outcome = apply(&mut replay, i as u64 + 2, command);
            prop_assert_eq!(&outcome, &outcomes[i]);
        }
        prop_assert_eq!(&replay, &image);
        // Commands survive the log's serialisation.
        let json = serde_json::to_string(&commands).map_err(fail)?;
        let back: Vec<ControllerCommand> = serde_json::from_str(&json).map_err(fail)?;
        prop_assert_eq!(back, commands);
    }
}
