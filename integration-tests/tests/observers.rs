//! Growing and repairing a cluster, as an operator would, while an idempotent acks=all producer
//! and a consumer group run: a broker-only node (`--process-roles broker`) joins the three voters
//! as an observer of the controller quorum and takes a replica moved to it with
//! `inlet topic reassign`; then that broker, and afterwards a voter, lose their whole data
//! directory (kill -9, wiped, started again with the same id, as a replaced disk would be) and
//! each catches up and rejoins the ISR by itself. Afterwards every acknowledged record is read
//! back once, in order, and each partition's replicas are byte-identical up to the high watermark.

use std::collections::{BTreeMap, BTreeSet};

use inlet_integration_tests::cluster::{start_cluster_with, start_observer, wait_for};
use inlet_integration_tests::history::{
    acked_count, bootstrap, check_acknowledged, check_replica_logs, partitions, wait_acked,
    History, Recorded,
};
use inlet_integration_tests::{inlet, Broker};

const TOPIC: &str = "growing";
const PARTITIONS: i32 = 2;

/// Kills the node, deletes its whole data directory and starts it again with the same id.
fn replace_disk(broker: &mut Broker) {
    broker.kill9();
    std::fs::remove_dir_all(broker.data_dir()).expect("wipe the data directory");
    std::fs::create_dir_all(broker.data_dir()).expect("an empty data directory");
    broker.restart();
}

/// Waits until partition 0 has exactly `replicas` as replicas, and every partition has a leader
/// and all its replicas in the ISR.
fn wait_in_sync(via: &Broker, replicas: &[i32], what: &str) {
    let want: BTreeSet<i32> = replicas.iter().copied().collect();
    let (_, took) = wait_for(what, || {
        let all = partitions(via, TOPIC)?;
        let moved = all
            .get(&0)?
            .replicas
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            == want;
        let in_sync = all
            .values()
            .all(|p| p.leader > 0 && p.isr == p.replicas.iter().copied().collect::<BTreeSet<_>>());
        (moved && in_sync).then_some(())
    });
    eprintln!("{what}: {took:?}");
}

#[test]
fn a_broker_joins_beyond_the_voters_and_wiped_brokers_catch_up() {
    let mut nodes = start_cluster_with(&["--replica-lag-time-max-ms", "2000"]);
    let voters = bootstrap(&nodes);
    let history = History::on_replicated_topic(
        &nodes[0],
        &voters,
        &voters,
        TOPIC,
        PARTITIONS,
        "growing-history",
    );
    wait_acked(&history.acked, 2_000);

    // A fourth broker, not a voter: it joins as an observer and registers.
    let observer = start_observer(&nodes[0], 4, &["--replica-lag-time-max-ms", "2000"]);
    let (quorum, took) = wait_for("broker 4 registered and following the quorum", || {
        let shown: serde_json::Value = serde_json::from_str(&inlet(
            &voters,
            &["cluster", "describe", "--output", "json"],
        ))
        .ok()?;
        let brokers = shown["brokers"].as_array()?.len();
        let observers = shown["quorum"]["observers"].as_array()?.clone();
        (brokers == 4 && observers.iter().any(|o| o["id"] == 4 && o["lag"] == 0))
            .then_some(shown["quorum"].clone())
    });
    eprintln!("broker 4 joined in {took:?}");
    assert_eq!(quorum["voters"].as_array().map(Vec::len), Some(3));
    nodes.push(observer);

    // Move one replica of partition 0 onto it, replacing the partition's leader.
    let before = partitions(&nodes[0], TOPIC).expect("placement")[&0].clone();
    let target: Vec<i32> = std::iter::once(4)
        .chain(
            before
                .replicas
                .iter()
                .copied()
                .filter(|r| *r != before.leader),
        )
        .collect();
    let list = target
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    inlet(
        &voters,
        &[
            "topic",
            "reassign",
            TOPIC,
            "--partition",
            "0",
            "--replicas",
            &list,
        ],
    );
    wait_in_sync(&nodes[0], &target, "partition 0 moved onto broker 4");
    let count = acked_count(&history.acked);
    wait_acked(&history.acked, count + 1_000);

    // Broker 4's disk is replaced: it comes back empty with the same id.
    replace_disk(&mut nodes[3]);
    wait_in_sync(&nodes[0], &target, "wiped broker 4 back in the ISR");
    let count = acked_count(&history.acked);
    wait_acked(&history.acked, count + 1_000);

    // So is a voter's: the quorum brings its metadata log back, the leaders its partitions.
    let voter = *target.last().expect("a voter among the replicas");
    replace_disk(&mut nodes[(voter - 1) as usize]);
    wait_in_sync(&nodes[0], &target, "wiped voter back in the ISR");
    let count = acked_count(&history.acked);
    wait_acked(&history.acked, count + 1_000);

    let placement: BTreeMap<i32, Vec<i32>> = partitions(&nodes[0], TOPIC)
        .expect("placement")
        .into_iter()
        .map(|(p, info)| (p, info.replicas))
        .collect();
    let Recorded {
        acked,
        failures,
        seen,
    } = history.stop();
    eprintln!("{} records acknowledged, {failures} not", acked.len());
    let at = check_acknowledged(&voters, TOPIC, PARTITIONS, &acked, &seen);
    check_replica_logs(&mut nodes, TOPIC, &placement, &at);
}
