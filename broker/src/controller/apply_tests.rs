//! Deterministic scenarios for `apply`, broker lifecycle: registration, fencing and leader
//! movement within the ISR, unfencing, restarts, deregistration. Also the helpers that
//! `apply_topic_tests.rs` shares.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::*;
use crate::metadata::image::Endpoint;

/// An image plus the next log index, applying commands as the log would.
pub(super) struct Cluster {
    pub(super) image: MetadataImage,
    pub(super) index: u64,
}

impl Cluster {
    pub(super) fn new() -> Self {
        Cluster {
            image: MetadataImage::default(),
            index: 0,
        }
    }

    pub(super) fn run(&mut self, command: ControllerCommand) -> CommandOutcome {
        self.index += 1;
        apply(&mut self.image, self.index, &command)
    }

    pub(super) fn epoch(&self, id: i32) -> i64 {
        self.image.brokers[&id].epoch
    }

    /// Registers and unfences brokers with the given racks (ids 1..).
    pub(super) fn with_brokers(racks: &[Option<&str>]) -> Self {
        let mut cluster = Cluster::new();
        cluster.run(ControllerCommand::InitCluster {
            cluster_id: "c1".into(),
        });
        for (i, rack) in racks.iter().enumerate() {
            let id = i as i32 + 1;
            let mut command = register(id, 1);
            if let ControllerCommand::RegisterBroker { rack: r, .. } = &mut command {
                *r = rack.map(str::to_string);
            }
            let outcome = cluster.run(command);
            assert!(matches!(outcome, CommandOutcome::BrokerRegistered { .. }));
            let epoch = cluster.epoch(id);
            assert_eq!(
                cluster.run(ControllerCommand::UnfenceBroker { id, epoch }),
                CommandOutcome::Ok
            );
        }
        cluster
    }

    pub(super) fn fence(&mut self, id: i32) -> CommandOutcome {
        let epoch = self.epoch(id);
        self.run(ControllerCommand::FenceBroker { id, epoch })
    }

    pub(super) fn unfence(&mut self, id: i32) -> CommandOutcome {
        let epoch = self.epoch(id);
        self.run(ControllerCommand::UnfenceBroker { id, epoch })
    }

    pub(super) fn partition(&self, topic: &str, index: i32) -> PartitionImage {
        self.image.partition(topic, index).unwrap().clone()
    }
}

pub(super) fn register(id: i32, incarnation: u128) -> ControllerCommand {
    ControllerCommand::RegisterBroker {
        id,
        incarnation_id: Uuid::from_u128(incarnation),
        listeners: vec![Endpoint {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9090 + id as u16,
        }],
        rack: None,
    }
}

/// A distinct id per name (not nil).
pub(super) fn topic_id(name: &str) -> Uuid {
    Uuid::from_u128(name.bytes().fold(1u128, |h, b| {
        h.wrapping_mul(257).wrapping_add(u128::from(b))
    }))
}

pub(super) fn create(name: &str, partitions: i32, rf: i16) -> ControllerCommand {
    ControllerCommand::CreateTopic {
        name: name.into(),
        topic_id: topic_id(name),
        partitions,
        replication_factor: rf,
        assignments: None,
        configs: BTreeMap::new(),
        validate_only: false,
    }
}

pub(super) fn create_assigned(name: &str, assignments: Vec<Vec<i32>>) -> ControllerCommand {
    ControllerCommand::CreateTopic {
        name: name.into(),
        topic_id: topic_id(name),
        partitions: -1,
        replication_factor: -1,
        assignments: Some(assignments),
        configs: BTreeMap::new(),
        validate_only: false,
    }
}

pub(super) fn code(outcome: &CommandOutcome) -> i16 {
    outcome.error_code()
}

#[test]
fn registered_broker_starts_fenced_with_its_log_index_as_epoch() {
    let mut cluster = Cluster::new();
    cluster.run(ControllerCommand::InitCluster {
        cluster_id: "c1".into(),
    });
    assert_eq!(
        cluster.run(register(1, 7)),
        CommandOutcome::BrokerRegistered { epoch: 2 }
    );
    assert!(cluster.image.brokers[&1].fenced);
    assert_eq!(cluster.image.live_brokers().count(), 0);
    // The same incarnation again is a retry: same epoch, nothing changes.
    assert_eq!(
        cluster.run(register(1, 7)),
        CommandOutcome::BrokerRegistered { epoch: 2 }
    );
    assert_eq!(cluster.unfence(1), CommandOutcome::Ok);
    assert_eq!(cluster.image.live_brokers().count(), 1);
    assert_eq!(cluster.image.last_applied, 4);
    // InitCluster again is ignored.
    cluster.run(ControllerCommand::InitCluster {
        cluster_id: "other".into(),
    });
    assert_eq!(cluster.image.cluster_id.as_deref(), Some("c1"));
}

#[test]
fn stale_or_unknown_broker_epochs_change_nothing() {
    let mut cluster = Cluster::with_brokers(&[None, None]);
    let before = cluster.image.clone();
    let stale = cluster.epoch(1) - 1;
    for command in [
        ControllerCommand::FenceBroker {
            id: 1,
            epoch: stale,
        },
        ControllerCommand::UnfenceBroker {
            id: 1,
            epoch: stale,
        },
        ControllerCommand::UnregisterBroker {
            id: 1,
            epoch: stale,
        },
        ControllerCommand::AllocateProducerIds {
            broker_id: 1,
            broker_epoch: stale,
        },
    ] {
        let outcome = cluster.run(command);
        assert_eq!(code(&outcome), ResponseError::StaleBrokerEpoch.code());
    }
    let outcome = cluster.run(ControllerCommand::FenceBroker { id: 9, epoch: 1 });
    assert_eq!(code(&outcome), ResponseError::StaleBrokerEpoch.code());
    let mut expected = before;
    expected.last_applied = cluster.index;
    assert_eq!(cluster.image, expected);
}

#[test]
fn new_topic_partitions_lead_on_first_replica_with_full_isr_and_zero_epochs() {
    let mut cluster = Cluster::with_brokers(&[None, None, None]);
    let outcome = cluster.run(create("t", 6, 3));
    let CommandOutcome::TopicCreated { partitions, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(partitions, cluster.image.topic("t").unwrap().partitions);
    for p in &partitions {
        assert_eq!(p.leader, p.replicas[0]);
        assert_eq!(p.isr, p.replicas);
        assert_eq!((p.leader_epoch, p.partition_epoch), (0, 0));
    }
}

#[test]
fn fencing_the_leader_moves_leadership_within_the_isr_and_bumps_epochs() {
    let mut cluster = Cluster::with_brokers(&[None, None, None]);
    cluster.run(create_assigned("t", vec![vec![1, 2, 3]]));
    assert_eq!(cluster.fence(1), CommandOutcome::Ok);
    let p = cluster.partition("t", 0);
    assert_eq!(p.leader, 2);
    assert_eq!(p.isr, vec![2, 3]);
    assert_eq!((p.leader_epoch, p.partition_epoch), (1, 1));

    // Fencing a follower: ISR shrinks, leader (and leader epoch) unchanged.
    assert_eq!(cluster.fence(3), CommandOutcome::Ok);
    let p = cluster.partition("t", 0);
    assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
    assert_eq!((p.leader_epoch, p.partition_epoch), (1, 2));

    // Fencing the last ISR member: no leader, ISR keeps it.
    assert_eq!(cluster.fence(2), CommandOutcome::Ok);
    let p = cluster.partition("t", 0);
    assert_eq!((p.leader, p.isr.clone()), (-1, vec![2]));
    assert_eq!((p.leader_epoch, p.partition_epoch), (2, 3));

    // Broker 1 returns but is not in the ISR: no unclean election.
    assert_eq!(cluster.unfence(1), CommandOutcome::Ok);
    assert_eq!(cluster.partition("t", 0).leader, -1);

    // The last ISR member returns: it leads again.
    assert_eq!(cluster.unfence(2), CommandOutcome::Ok);
    let p = cluster.partition("t", 0);
    assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
    assert_eq!((p.leader_epoch, p.partition_epoch), (3, 4));

    // Fencing an already fenced broker is a no-op.
    let before = cluster.partition("t", 0);
    assert_eq!(cluster.fence(3), CommandOutcome::Ok);
    assert_eq!(cluster.partition("t", 0), before);
}

#[test]
fn restarted_broker_loses_its_leadership_until_unfenced() {
    let mut cluster = Cluster::with_brokers(&[None, None]);
    cluster.run(create_assigned("t", vec![vec![1, 2], vec![2, 1]]));
    let outcome = cluster.run(register(1, 99));
    let CommandOutcome::BrokerRegistered { epoch } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(epoch, cluster.index as i64);
    assert!(cluster.image.brokers[&1].fenced);
    assert_eq!(cluster.partition("t", 0).leader, 2);
    assert_eq!(cluster.partition("t", 0).isr, vec![2]);
    assert_eq!(cluster.partition("t", 1).isr, vec![2]);
    // The old epoch is stale now.
    let stale = cluster.run(ControllerCommand::UnfenceBroker {
        id: 1,
        epoch: epoch - 1,
    });
    assert_eq!(code(&stale), ResponseError::StaleBrokerEpoch.code());
}

#[test]
fn unregistering_fences_then_removes_the_registration() {
    let mut cluster = Cluster::with_brokers(&[None, None]);
    cluster.run(create_assigned("t", vec![vec![1, 2]]));
    let epoch = cluster.epoch(1);
    let outcome = cluster.run(ControllerCommand::UnregisterBroker { id: 1, epoch });
    assert_eq!(outcome, CommandOutcome::Ok);
    assert!(!cluster.image.brokers.contains_key(&1));
    let p = cluster.partition("t", 0);
    assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
    // The replica list keeps the id (it is reassigned explicitly, not silently).
    assert_eq!(p.replicas, vec![1, 2]);
}

#[test]
fn unregistered_last_isr_member_leads_again_after_registering_anew() {
    let mut cluster = Cluster::with_brokers(&[None, None]);
    cluster.run(create_assigned("solo", vec![vec![1]]));
    let epoch = cluster.epoch(1);
    cluster.run(ControllerCommand::UnregisterBroker { id: 1, epoch });
    let p = cluster.partition("solo", 0);
    assert_eq!((p.leader, p.isr.clone()), (-1, vec![1]));
    assert!(matches!(
        cluster.run(register(1, 2)),
        CommandOutcome::BrokerRegistered { .. }
    ));
    assert_eq!(cluster.partition("solo", 0).leader, -1);
    assert_eq!(cluster.unfence(1), CommandOutcome::Ok);
    let p = cluster.partition("solo", 0);
    assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 2, 2));
}
