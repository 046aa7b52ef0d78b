//! Scenarios for partition reassignment (`apply/reassign.rs`): the replicas while it runs, its
//! completion once the new replicas are in sync, cancelling, and refused requests.

use kafka_protocol::ResponseError;

use super::tests::{code, create_assigned, Cluster};
use super::*;

fn reassign(target: Option<Vec<i32>>) -> ControllerCommand {
    ControllerCommand::ReassignPartition {
        topic: "t".into(),
        partition: 0,
        target,
    }
}

fn alter(cluster: &Cluster, new_isr: Vec<i32>) -> ControllerCommand {
    let p = cluster.partition("t", 0);
    ControllerCommand::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader_id: p.leader,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        new_isr,
    }
}

fn four_brokers() -> Cluster {
    let mut cluster = Cluster::with_brokers(&[None, None, None, None]);
    cluster.run(create_assigned("t", vec![vec![1, 2]]));
    cluster
}

#[test]
fn a_reassignment_runs_until_the_new_replicas_are_in_sync_then_the_leader_moves() {
    let mut cluster = four_brokers();
    let before = cluster.partition("t", 0);
    cluster.run(reassign(Some(vec![3, 4])));
    let running = cluster.partition("t", 0);
    assert_eq!(running.replicas, vec![3, 4, 1, 2]);
    assert_eq!(running.adding_replicas, vec![3, 4]);
    assert_eq!(running.removing_replicas, vec![1, 2]);
    assert_eq!((running.leader, running.isr.clone()), (1, vec![1, 2]));
    assert!(running.partition_epoch > before.partition_epoch);
    assert_eq!(running.leader_epoch, before.leader_epoch);

    // Broker 3 catches up: not done yet.
    cluster.run(alter(&cluster, vec![1, 2, 3]));
    assert_eq!(cluster.partition("t", 0).adding_replicas, vec![3, 4]);
    // Broker 4 too: done, and the leaving leader hands over to the first target replica.
    let outcome = cluster.run(alter(&cluster, vec![1, 2, 3, 4]));
    let done = cluster.partition("t", 0);
    assert_eq!(outcome, CommandOutcome::PartitionAltered(done.clone()));
    assert_eq!(done.replicas, vec![3, 4]);
    assert_eq!(done.isr, vec![3, 4]);
    assert_eq!(done.leader, 3);
    assert_eq!(done.leader_epoch, before.leader_epoch + 1);
    assert!(done.adding_replicas.is_empty() && done.removing_replicas.is_empty());
}

#[test]
fn a_target_already_in_sync_completes_at_once_and_keeps_a_staying_leader() {
    let mut cluster = four_brokers();
    cluster.run(reassign(Some(vec![2])));
    let done = cluster.partition("t", 0);
    assert_eq!(
        (done.replicas.clone(), done.isr.clone(), done.leader),
        (vec![2], vec![2], 2)
    );

    let mut cluster = four_brokers();
    cluster.run(reassign(Some(vec![2, 1, 3])));
    let running = cluster.partition("t", 0);
    assert_eq!(
        running.leader, 1,
        "the leader stays while it remains a replica"
    );
    assert_eq!(running.adding_replicas, vec![3]);
    cluster.run(alter(&cluster, vec![1, 2, 3]));
    let done = cluster.partition("t", 0);
    assert_eq!((done.replicas.clone(), done.leader), (vec![2, 1, 3], 1));
}

#[test]
fn cancelling_goes_back_to_the_original_replicas() {
    let mut cluster = four_brokers();
    assert_eq!(
        code(&cluster.run(reassign(None))),
        ResponseError::NoReassignmentInProgress.code()
    );
    cluster.run(reassign(Some(vec![3, 4])));
    cluster.run(alter(&cluster, vec![1, 2, 3]));
    cluster.run(reassign(None));
    let back = cluster.partition("t", 0);
    assert_eq!(
        (back.replicas.clone(), back.isr.clone(), back.leader),
        (vec![1, 2], vec![1, 2], 1)
    );
    assert!(back.adding_replicas.is_empty() && back.removing_replicas.is_empty());
}

#[test]
fn a_bad_target_is_refused_and_changes_nothing() {
    let mut cluster = four_brokers();
    let before = cluster.image.topics.clone();
    for target in [vec![], vec![1, 1], vec![9]] {
        let outcome = cluster.run(reassign(Some(target.clone())));
        assert_eq!(
            code(&outcome),
            ResponseError::InvalidReplicaAssignment.code(),
            "{target:?}"
        );
    }
    let unknown = cluster.run(ControllerCommand::ReassignPartition {
        topic: "t".into(),
        partition: 5,
        target: Some(vec![1]),
    });
    assert_eq!(
        code(&unknown),
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(cluster.image.topics, before);
}

#[test]
fn a_new_reassignment_drops_the_replicas_the_previous_one_was_adding_from_the_isr() {
    let mut cluster = four_brokers();
    cluster.run(reassign(Some(vec![3, 4])));
    cluster.fence(4);
    cluster.run(alter(&cluster, vec![1, 2, 3]));
    // Back to the original replicas before 4 caught up: 3 leaves the ISR with it.
    cluster.run(reassign(Some(vec![1, 2])));
    let p = cluster.partition("t", 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (vec![1, 2], vec![1, 2], 1)
    );
    assert!(p.adding_replicas.is_empty() && p.removing_replicas.is_empty());
}
