//! `inlet topic describe` while a killed leader is still in the cluster's metadata (before its
//! session times out): every partition is printed, the live leaders' offsets are read, and the
//! dead leader's partitions are marked unavailable, within the CLI's per-broker timeout.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use inlet_integration_tests::cluster::{node_options, wait_for};
use inlet_integration_tests::{free_port, Broker};
use serde_json::Value;

use super::{inlet, json};

/// Long enough that the killed broker is still every partition's listed leader while the test
/// describes the topic, so the test sees the window it is about rather than a fenced broker.
const LONG_SESSION_TIMEOUT_MS: &str = "60000";
const PARTITIONS: usize = 6;

/// Three nodes as `cluster::start_cluster` makes them, with a long broker session timeout.
fn start_cluster_with_long_sessions() -> Vec<Broker> {
    let kafka_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let controller_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let voters = controller_ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("{}@127.0.0.1:{port}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let options = (0..3)
        .map(|i| {
            let mut options = node_options(
                i as i32 + 1,
                kafka_ports[i],
                controller_ports[i],
                &voters,
                &[],
            );
            let flag = options
                .extra_args
                .iter()
                .position(|a| a == "--broker-session-timeout-ms")
                .expect("node_options sets the session timeout");
            options.extra_args[flag + 1] = LONG_SESSION_TIMEOUT_MS.to_string();
            options
        })
        .collect();
    Broker::start_group(options)
}

fn partitions(described: &Value) -> Vec<Value> {
    described["partitions"]
        .as_array()
        .expect("partitions are a list")
        .clone()
}

#[test]
fn describe_with_a_killed_leader_prints_every_partition_and_marks_its_offsets_unavailable() {
    let mut nodes = start_cluster_with_long_sessions();
    let b = nodes[0].bootstrap();

    // All three brokers registered before the topic is placed, so its partitions spread.
    wait_for("three registered brokers", || {
        let run = inlet(&b, &["--output", "json", "cluster", "describe"]);
        let described: Value = serde_json::from_str(&run.stdout).ok()?;
        (described["brokers"].as_array()?.len() == 3).then_some(())
    });
    json(&b, &["topic", "create", "spread", "-p", "6", "-r", "1"]);
    let (before, _) = wait_for("every partition led and its offsets read", || {
        let run = inlet(&b, &["--output", "json", "topic", "describe", "spread"]);
        let described: Value = serde_json::from_str(&run.stdout).ok()?;
        let ready = partitions(&described).len() == PARTITIONS
            && partitions(&described)
                .iter()
                .all(|p| p["leader"].as_i64().is_some_and(|l| l > 0) && p["latest_offset"] == 0);
        ready.then_some(described)
    });
    let leaders: BTreeSet<i64> = partitions(&before)
        .iter()
        .filter_map(|p| p["leader"].as_i64())
        .collect();
    // Kill a leader other than the broker the CLI bootstraps from (node 1).
    let victim = *leaders
        .iter()
        .find(|&&l| l != 1)
        .unwrap_or_else(|| panic!("every partition is led by node 1: {before}"));
    nodes[victim as usize - 1].kill9();

    let started = Instant::now();
    let after = json(&b, &["topic", "describe", "spread"]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "describe took {took:?}");
    let after_partitions = partitions(&after);
    assert_eq!(after_partitions.len(), PARTITIONS, "{after}");
    let mut dead = 0;
    for p in &after_partitions {
        if p["leader"] == victim {
            dead += 1;
            assert_eq!(p["offsets_available"], false, "{p}");
            assert_eq!(p["earliest_offset"], Value::Null, "{p}");
            assert_eq!(p["latest_offset"], Value::Null, "{p}");
            let why = p["offsets_error"].as_str().unwrap_or_default();
            assert!(why.contains(&format!("leader {victim}")), "{p}");
        } else {
            assert_eq!(p["offsets_available"], true, "{p}");
            assert_eq!(p["earliest_offset"], 0, "{p}");
            assert_eq!(p["latest_offset"], 0, "{p}");
        }
    }
    assert!(
        dead > 0,
        "the killed broker {victim} no longer leads anything: {after}"
    );

    // The table says the same, one line per unavailable partition.
    let table = inlet(&b, &["topic", "describe", "spread"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert_eq!(
        table
            .stdout
            .matches("offsets unavailable: partition")
            .count(),
        dead,
        "{}",
        table.stdout
    );
}
