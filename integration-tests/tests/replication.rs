//! Replication under faults, checked like Kafka's replication system tests and Jepsen's history
//! checker. Three brokers, a topic with replication factor 3 and `min.insync.replicas=2`, an
//! idempotent acks=all librdkafka producer and a consumer run throughout, while the leader of a
//! partition is killed with SIGKILL (then restarted), another leader is stopped with SIGSTOP
//! past the session timeout (then resumed: it must truncate what only it had and rejoin), and the
//! three nodes are restarted one after another; leadership is also moved back to the preferred
//! replicas under load (`inlet cluster elect-leaders`).
//! Afterwards:
//! - every acknowledged record is read back exactly once, at the offset it was acknowledged at,
//!   in the order it was produced per partition;
//! - every record the consumer saw during the run is still there (nothing past the high
//!   watermark was served);
//! - the three replicas' logs are byte-identical up to the high watermark.
//!
//! A second test shows `min.insync.replicas`: with one in-sync replica left, acks=all gets
//! NOT_ENOUGH_REPLICAS and acks=1 still works.

use std::process::Command;
use std::time::{Duration, Instant};

use inlet_integration_tests::cluster::{runtime, start_cluster_with, wait_for};
use inlet_integration_tests::history::{
    acked_count, bootstrap, check_acknowledged, check_replicas_identical, create_topic, node,
    partitions, placement, wait_acked, wait_all_in_sync, History, Recorded,
};
use inlet_integration_tests::inlet_bin;
use inlet_integration_tests::kafka::client_config;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};

const TOPIC: &str = "history";
const PARTITIONS: i32 = 3;
/// Short, so that a stopped follower leaves the ISR within the test's waits.
const LAG_MS: &str = "2000";

#[test]
fn acknowledged_records_survive_a_killed_leader_a_stopped_leader_and_a_rolling_restart() {
    let mut nodes = start_cluster_with(&["--replica-lag-time-max-ms", LAG_MS]);
    let all = bootstrap(&nodes);
    let history = History::on_replicated_topic(
        &nodes[0],
        &all,
        &all,
        TOPIC,
        PARTITIONS,
        "replication-history",
    );
    let acked = &history.acked;
    wait_acked(acked, 3_000);

    // 1. kill -9 the leader of partition 0, keep producing, bring it back.
    let leader = placement(&nodes[0], TOPIC).expect("placement")[&0].0;
    let started = Instant::now();
    node(&mut nodes, leader).kill9();
    let other = if leader == 1 { 1 } else { 0 };
    let (new_leader, _) = wait_for("a new leader for partition 0", || {
        let now = placement(&nodes[other], TOPIC)?[&0].0;
        (now > 0 && now != leader).then_some(now)
    });
    eprintln!(
        "partition 0: leader {leader} killed, {new_leader} leads after {:?}",
        started.elapsed()
    );
    let before = acked_count(acked);
    wait_acked(acked, before + 3_000);
    node(&mut nodes, leader).restart();
    wait_all_in_sync(&nodes[other], TOPIC, PARTITIONS);

    // Leadership back to the preferred replicas while the producer runs (ElectLeaders through
    // the CLI); the partitions that moved change leader once more.
    let output = Command::new(inlet_bin())
        .args(["--bootstrap-server", &all, "cluster", "elect-leaders"])
        .output()
        .expect("run inlet cluster elect-leaders");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("elected"), "{printed}");
    wait_for("preferred leaders", || {
        let partitions = partitions(&nodes[other], TOPIC)?;
        (partitions
            .values()
            .all(|p| p.replicas.first() == Some(&p.leader)))
        .then_some(())
    });

    // 2. SIGSTOP the leader of partition 1 past the session timeout, keep producing, resume it.
    let stopped = placement(&nodes[0], TOPIC).expect("placement")[&1].0;
    let other = if stopped == 1 { 1 } else { 0 };
    node(&mut nodes, stopped).signal(libc::SIGSTOP);
    wait_for("a new leader for partition 1", || {
        let now = placement(&nodes[other], TOPIC)?[&1].0;
        (now > 0 && now != stopped).then_some(())
    });
    let before = acked_count(acked);
    wait_acked(acked, before + 3_000);
    node(&mut nodes, stopped).signal(libc::SIGCONT);
    wait_all_in_sync(&nodes[other], TOPIC, PARTITIONS);
    let before = acked_count(acked);
    wait_acked(acked, before + 1_000);

    // 3. A rolling restart: each node in turn stopped cleanly (leadership moves away first) and
    // started again, waiting for it to be back in sync before the next.
    for id in 1..=3 {
        let via = if id == 1 { 1 } else { 0 };
        assert!(node(&mut nodes, id).terminate().success());
        let before = acked_count(acked);
        wait_acked(acked, before + 500);
        node(&mut nodes, id).restart();
        wait_all_in_sync(&nodes[via], TOPIC, PARTITIONS);
    }
    let before = acked_count(acked);
    wait_acked(acked, before + 1_000);

    let Recorded {
        acked,
        failures,
        seen,
    } = history.stop();
    eprintln!("{} records acknowledged, {failures} not", acked.len());

    // Every acknowledged record, once, where it was acknowledged; per partition in send order;
    // nothing a consumer was served went away afterwards.
    let at = check_acknowledged(&all, TOPIC, PARTITIONS, &acked, &seen);
    // The replicas agree byte for byte up to the high watermark.
    check_replicas_identical(&mut nodes, TOPIC, PARTITIONS, &at);
}

#[test]
fn acks_all_needs_min_insync_replicas_and_acks_1_does_not() {
    let mut nodes = start_cluster_with(&["--replica-lag-time-max-ms", LAG_MS]);
    let all = bootstrap(&nodes);
    // Replication factor 2: with its follower gone, a partition has one in-sync replica while
    // the quorum (three voters) still has a majority.
    create_topic(&all, "guarded", 1, 2, "2");
    let (placed, _) = wait_for("the partition placed", || {
        let p = placement(&nodes[0], "guarded")?;
        let (leader, isr) = p.get(&0)?.clone();
        (leader > 0 && isr.len() == 2).then_some((leader, isr))
    });
    let follower = *placed
        .1
        .iter()
        .find(|&&id| id != placed.0)
        .expect("a follower");
    let leader_node = placed.0;
    let produce = |acks: &str| -> Result<(), KafkaError> {
        let producer: FutureProducer = client_config(&all)
            .set("acks", acks)
            .set("message.timeout.ms", "5000")
            .set("retries", "0")
            .create()
            .expect("producer");
        runtime().block_on(async {
            producer
                .send(
                    FutureRecord::<(), _>::to("guarded")
                        .payload("x")
                        .partition(0),
                    Duration::from_secs(5),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        })
    };
    produce("all").expect("acks=all with two in-sync replicas");

    node(&mut nodes, follower).kill9();
    let via = &nodes[(leader_node - 1) as usize];
    wait_for("the ISR to shrink to the leader", || {
        let p = placement(via, "guarded")?;
        let (leader, isr) = p.get(&0)?;
        (*leader == leader_node && isr.len() == 1).then_some(())
    });
    match produce("all") {
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas)) => {}
        other => panic!("acks=all with one in-sync replica: {other:?}"),
    }
    produce("1").expect("acks=1 needs only the leader");
}
