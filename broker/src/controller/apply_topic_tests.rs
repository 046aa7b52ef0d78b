//! Deterministic scenarios for `apply`, topics and the rest: topic validation with Kafka's error
//! codes, validate-only, CreatePartitions, DeleteTopic, configs, producer ids, AlterPartition.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::tests::{code, create, create_assigned, register, Cluster};
use super::*;
use crate::controller::commands::{ConfigOp, ConfigResource};

#[test]
fn create_topic_validation_uses_kafka_error_codes() {
    let mut cluster = Cluster::with_brokers(&[None, None, None]);
    cluster.fence(3);
    for name in ["t", "a.b"] {
        let created = cluster.run(create(name, 1, 1));
        assert!(matches!(created, CommandOutcome::TopicCreated { .. }));
    }
    let cases: Vec<(ControllerCommand, ResponseError)> = vec![
        (create("t", 1, 1), ResponseError::TopicAlreadyExists),
        (
            create("bad/name", 1, 1),
            ResponseError::InvalidTopicException,
        ),
        // "a.b" exists: itself is TOPIC_ALREADY_EXISTS, its '.'/'_' twin collides.
        (create("a.b", 1, 1), ResponseError::TopicAlreadyExists),
        (create("a_b", 1, 1), ResponseError::InvalidTopicException),
        (create("x", 0, 1), ResponseError::InvalidPartitions),
        (create("x", 10_001, 1), ResponseError::InvalidPartitions),
        (create("x", 1, 0), ResponseError::InvalidReplicationFactor),
        // Three registered, but broker 3 is fenced: two live.
        (create("x", 1, 3), ResponseError::InvalidReplicationFactor),
        (
            create_assigned("x", vec![vec![1, 1]]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            create_assigned("x", vec![vec![1, 9]]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            create_assigned("x", vec![vec![1, 2], vec![1]]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            create_assigned("x", vec![]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            ControllerCommand::CreateTopic {
                name: "x".into(),
                topic_id: Uuid::from_u128(77),
                partitions: 2,
                replication_factor: -1,
                assignments: Some(vec![vec![1]]),
                configs: BTreeMap::new(),
                validate_only: false,
            },
            ResponseError::InvalidRequest,
        ),
        // Registered but fenced only: no replica could lead.
        (
            create_assigned("x", vec![vec![3]]),
            ResponseError::InvalidReplicaAssignment,
        ),
    ];
    let before = cluster.image.clone();
    for (command, expected) in cases {
        let outcome = cluster.run(command.clone());
        assert_eq!(code(&outcome), expected.code(), "{command:?}: {outcome:?}");
    }
    let mut with_config = create("x", 1, 1);
    if let ControllerCommand::CreateTopic { configs, .. } = &mut with_config {
        configs.insert("retention.ms".into(), "not-a-number".into());
    }
    assert_eq!(
        code(&cluster.run(with_config)),
        ResponseError::InvalidConfig.code()
    );
    let mut same_id = create("y", 1, 1);
    if let ControllerCommand::CreateTopic { topic_id, .. } = &mut same_id {
        *topic_id = cluster.image.topic("t").unwrap().id;
    }
    assert_eq!(
        code(&cluster.run(same_id)),
        ResponseError::InvalidRequest.code()
    );
    let mut expected = before;
    expected.last_applied = cluster.index;
    assert_eq!(cluster.image, expected);
}

#[test]
fn validate_only_answers_as_if_created_and_changes_nothing() {
    let mut cluster = Cluster::with_brokers(&[None, None]);
    let mut command = create("t", 4, 2);
    let real = {
        let mut copy = cluster.image.clone();
        apply(&mut copy, 99, &command)
    };
    if let ControllerCommand::CreateTopic { validate_only, .. } = &mut command {
        *validate_only = true;
    }
    let before = cluster.image.clone();
    let outcome = cluster.run(command);
    assert_eq!(outcome, real);
    assert!(matches!(outcome, CommandOutcome::TopicCreated { .. }));
    assert_eq!(cluster.image.topics, before.topics);
}

#[test]
fn fenced_replica_in_explicit_assignment_is_left_out_of_the_isr() {
    let mut cluster = Cluster::with_brokers(&[None, None]);
    cluster.fence(1);
    cluster.run(create_assigned("t", vec![vec![1, 2]]));
    let p = cluster.partition("t", 0);
    assert_eq!(
        (p.leader, p.isr.clone(), p.replicas.clone()),
        (2, vec![2], vec![1, 2])
    );
}

#[test]
fn delete_and_create_partitions() {
    let mut cluster = Cluster::with_brokers(&[None, None, None]);
    cluster.run(create("t", 2, 2));
    let outcome = cluster.run(ControllerCommand::CreatePartitions {
        name: "t".into(),
        count: 5,
        assignments: None,
        validate_only: false,
    });
    let CommandOutcome::PartitionsCreated { partitions } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(partitions.len(), 3);
    let topic = cluster.image.topic("t").unwrap();
    assert_eq!(topic.partitions.len(), 5);
    assert!(topic.partitions.iter().all(|p| p.replicas.len() == 2));
    let errors = [
        (("t", 5, None), ResponseError::InvalidPartitions),
        (("t", 3, None), ResponseError::InvalidPartitions),
        (("nope", 9, None), ResponseError::UnknownTopicOrPartition),
        (
            ("t", 6, Some(vec![vec![1, 2, 3]])),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            ("t", 7, Some(vec![vec![1, 2]])),
            ResponseError::InvalidReplicaAssignment,
        ),
    ];
    for ((name, count, assignments), expected) in errors {
        let outcome = cluster.run(ControllerCommand::CreatePartitions {
            name: name.into(),
            count,
            assignments,
            validate_only: false,
        });
        assert_eq!(
            code(&outcome),
            expected.code(),
            "{name} {count}: {outcome:?}"
        );
    }
    let outcome = cluster.run(ControllerCommand::CreatePartitions {
        name: "t".into(),
        count: 6,
        assignments: Some(vec![vec![3, 1]]),
        validate_only: false,
    });
    assert!(matches!(outcome, CommandOutcome::PartitionsCreated { .. }));
    assert_eq!(cluster.partition("t", 5).replicas, vec![3, 1]);

    assert_eq!(
        cluster.run(ControllerCommand::DeleteTopic { name: "t".into() }),
        CommandOutcome::Ok
    );
    assert!(cluster.image.topic("t").is_none());
    let again = cluster.run(ControllerCommand::DeleteTopic { name: "t".into() });
    assert_eq!(code(&again), ResponseError::UnknownTopicOrPartition.code());
}

#[test]
fn alter_configs_is_all_or_nothing_and_validated() {
    let mut cluster = Cluster::with_brokers(&[None]);
    cluster.run(create("t", 1, 1));
    let topic = ConfigResource::Topic("t".into());
    let set = |name: &str, value: &str| ConfigOp::Set {
        name: name.into(),
        value: value.into(),
    };
    let alter = |ops: Vec<ConfigOp>, validate_only| ControllerCommand::AlterConfigs {
        resource: topic.clone(),
        ops,
        validate_only,
    };
    assert_eq!(
        cluster.run(alter(vec![set("retention.ms", "1000")], false)),
        CommandOutcome::Ok
    );
    let bad = cluster.run(alter(
        vec![set("segment.ms", "5"), set("retention.ms", "x")],
        false,
    ));
    assert_eq!(code(&bad), ResponseError::InvalidConfig.code());
    let unknown = cluster.run(alter(
        vec![ConfigOp::Delete {
            name: "nope".into(),
        }],
        false,
    ));
    assert_eq!(code(&unknown), ResponseError::InvalidConfig.code());
    assert_eq!(
        cluster.run(alter(vec![set("cleanup.policy", "compact")], true)),
        CommandOutcome::Ok
    );
    let configs = &cluster.image.topic("t").unwrap().configs;
    assert_eq!(configs.len(), 1);
    assert_eq!(configs["retention.ms"], "1000");
    let delete = alter(
        vec![ConfigOp::Delete {
            name: "retention.ms".into(),
        }],
        false,
    );
    assert_eq!(cluster.run(delete), CommandOutcome::Ok);
    assert!(cluster.image.topic("t").unwrap().configs.is_empty());
    // The legacy AlterConfigs: Clear, then the new whole set.
    cluster.run(alter(
        vec![set("retention.ms", "1000"), set("segment.ms", "60000")],
        false,
    ));
    let replace = alter(
        vec![ConfigOp::Clear, set("cleanup.policy", "compact")],
        false,
    );
    assert_eq!(cluster.run(replace), CommandOutcome::Ok);
    let configs = &cluster.image.topic("t").unwrap().configs;
    assert_eq!(configs.len(), 1);
    assert_eq!(configs["cleanup.policy"], "compact");
    let missing = cluster.run(ControllerCommand::AlterConfigs {
        resource: ConfigResource::Topic("nope".into()),
        ops: vec![],
        validate_only: false,
    });
    assert_eq!(
        code(&missing),
        ResponseError::UnknownTopicOrPartition.code()
    );

    let broker = ControllerCommand::AlterConfigs {
        resource: ConfigResource::Broker(1),
        ops: vec![set("log.retention.ms", "5")],
        validate_only: false,
    };
    assert_eq!(cluster.run(broker), CommandOutcome::Ok);
    assert_eq!(cluster.image.broker_configs[&1]["log.retention.ms"], "5");
}

#[test]
fn producer_id_blocks_are_contiguous_and_never_go_back() {
    let mut cluster = Cluster::with_brokers(&[None, None]);
    let allocate = |cluster: &mut Cluster, id| {
        let broker_epoch = cluster.epoch(id);
        cluster.run(ControllerCommand::AllocateProducerIds {
            broker_id: id,
            broker_epoch,
        })
    };
    assert_eq!(
        allocate(&mut cluster, 1),
        CommandOutcome::ProducerIds {
            start: 0,
            len: 1000
        }
    );
    assert_eq!(
        allocate(&mut cluster, 2),
        CommandOutcome::ProducerIds {
            start: 1000,
            len: 1000
        }
    );
    assert_eq!(
        cluster.run(ControllerCommand::AdvanceProducerIds { at_least: 5000 }),
        CommandOutcome::Ok
    );
    assert_eq!(
        cluster.run(ControllerCommand::AdvanceProducerIds { at_least: 10 }),
        CommandOutcome::Ok
    );
    assert_eq!(
        allocate(&mut cluster, 1),
        CommandOutcome::ProducerIds {
            start: 5000,
            len: 1000
        }
    );
    cluster.image.next_producer_id = i64::MAX - 10;
    assert_eq!(
        code(&allocate(&mut cluster, 1)),
        ResponseError::UnknownServerError.code()
    );
    assert_eq!(cluster.image.next_producer_id, i64::MAX - 10);
}

#[test]
fn alter_partition_checks_epochs_leader_and_eligibility() {
    let mut cluster = Cluster::with_brokers(&[None, None, None]);
    cluster.run(create_assigned("t", vec![vec![1, 2, 3]]));
    cluster.run(register(4, 4));
    let alter = |leader_id, leader_epoch, partition_epoch, new_isr: Vec<i32>| {
        ControllerCommand::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader_id,
            leader_epoch,
            partition_epoch,
            new_isr,
        }
    };
    let cases = [
        (alter(1, 1, 0, vec![1]), ResponseError::NotController),
        (alter(1, 0, 5, vec![1]), ResponseError::NotController),
        (alter(2, 0, 0, vec![1, 2]), ResponseError::InvalidRequest),
        (alter(1, 0, 0, vec![1, 4]), ResponseError::InvalidRequest),
        (alter(1, 0, 0, vec![2, 3]), ResponseError::InvalidRequest),
        (alter(1, 0, 0, vec![1, 1]), ResponseError::InvalidRequest),
        (alter(1, 0, 0, vec![]), ResponseError::InvalidRequest),
    ];
    for (command, expected) in cases {
        let outcome = cluster.run(command.clone());
        assert_eq!(code(&outcome), expected.code(), "{command:?}: {outcome:?}");
    }
    let shrunk = cluster.run(alter(1, 0, 0, vec![1, 2]));
    let expected = PartitionImage {
        replicas: vec![1, 2, 3],
        isr: vec![1, 2],
        leader: 1,
        leader_epoch: 0,
        partition_epoch: 1,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    };
    assert_eq!(shrunk, CommandOutcome::PartitionAltered(expected));
    let stale = cluster.run(alter(1, 0, 0, vec![1, 2, 3]));
    assert_eq!(code(&stale), ResponseError::InvalidUpdateVersion.code());
    // A fenced broker cannot rejoin the ISR.
    cluster.fence(3);
    let outcome = cluster.run(alter(1, 0, 1, vec![1, 2, 3]));
    assert_eq!(code(&outcome), ResponseError::IneligibleReplica.code());
    cluster.unfence(3);
    let grown = cluster.run(alter(1, 0, 1, vec![1, 2, 3]));
    assert!(matches!(grown, CommandOutcome::PartitionAltered(ref p) if p.partition_epoch == 2));
    // Leadership moves: the old leader's epoch is fenced.
    cluster.fence(1);
    assert_eq!(cluster.partition("t", 0).leader_epoch, 1);
    let old_leader = cluster.run(alter(1, 0, 3, vec![1, 2]));
    assert_eq!(code(&old_leader), ResponseError::FencedLeaderEpoch.code());
    let new_leader = cluster.run(alter(2, 1, 3, vec![2]));
    assert!(matches!(new_leader, CommandOutcome::PartitionAltered(ref p) if p.isr == vec![2]));
    let unknown = cluster.run(ControllerCommand::AlterPartition {
        topic: "t".into(),
        partition: 7,
        leader_id: 1,
        leader_epoch: 1,
        partition_epoch: 4,
        new_isr: vec![2],
    });
    assert_eq!(
        code(&unknown),
        ResponseError::UnknownTopicOrPartition.code()
    );
}

#[test]
fn placement_uses_live_brokers_and_their_racks() {
    let mut cluster = Cluster::with_brokers(&[Some("a"), Some("a"), Some("b"), Some("b")]);
    cluster.fence(4);
    let created = cluster.run(create("t", 6, 2));
    let CommandOutcome::TopicCreated { partitions, .. } = created else {
        panic!("{created:?}");
    };
    let rack = |b: i32| cluster.image.brokers[&b].rack.clone();
    for p in &partitions {
        assert!(!p.replicas.contains(&4), "fenced broker placed: {p:?}");
        assert_ne!(rack(p.replicas[0]), rack(p.replicas[1]), "{p:?}");
    }
}
