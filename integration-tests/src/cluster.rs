//! Three `inlet` processes as one cluster on loopback (combined mode: each node is broker and
//! controller), for the cluster tests: short broker session timeouts so fencing is quick, the lake
//! off, and any extra `serve` flags a test needs.

use std::time::{Duration, Instant};

use crate::{free_port, Broker, BrokerOptions};

/// How long the cluster tests wait for anything: elections, fencing, a consumer's records.
pub const WAIT: Duration = Duration::from_secs(30);

/// `--broker-session-timeout-ms` of the test clusters: a killed broker is fenced after this.
pub const SESSION_TIMEOUT_MS: u64 = 3000;
/// `--broker-heartbeat-interval-ms` of the test clusters.
pub const HEARTBEAT_INTERVAL_MS: u64 = 500;

/// Starts nodes 1, 2 and 3 as one cluster and waits until each answers; `extra_args` go to every
/// node's `inlet serve`.
pub fn start_cluster_with(extra_args: &[&str]) -> Vec<Broker> {
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
            node_options(
                i as i32 + 1,
                kafka_ports[i],
                controller_ports[i],
                &voters,
                extra_args,
            )
        })
        .collect();
    Broker::start_group(options)
}

/// The options of cluster node `node_id`: its Kafka listener on `kafka_port`, its controller
/// listener on `controller_port`, `voters` as its `--controller-quorum-voters` (each node may be
/// given its own addresses for the others, e.g. proxies), the test clusters' timeouts, the lake
/// off, then `extra_args`.
pub fn node_options(
    node_id: i32,
    kafka_port: u16,
    controller_port: u16,
    voters: &str,
    extra_args: &[&str],
) -> BrokerOptions {
    let mut args: Vec<String> = vec![
        "--controller-quorum-voters".into(),
        voters.to_string(),
        "--controller-listen".into(),
        format!("127.0.0.1:{controller_port}"),
        "--broker-session-timeout-ms".into(),
        SESSION_TIMEOUT_MS.to_string(),
        "--broker-heartbeat-interval-ms".into(),
        HEARTBEAT_INTERVAL_MS.to_string(),
        "--lake-enable".into(),
        "false".into(),
    ];
    args.extend(extra_args.iter().map(|a| a.to_string()));
    BrokerOptions {
        node_id: Some(node_id),
        port: Some(kafka_port),
        extra_args: args,
        ..BrokerOptions::default()
    }
}

/// Starts a broker-only node (`--process-roles broker`, an observer of the controller quorum)
/// that joins the cluster of `voter`, a node started by [`start_cluster_with`], with
/// `extra_args`; waits until it answers.
pub fn start_observer(voter: &Broker, node_id: i32, extra_args: &[&str]) -> Broker {
    let args = &voter.options().extra_args;
    let voters = args
        .iter()
        .position(|a| a == "--controller-quorum-voters")
        .and_then(|i| args.get(i + 1))
        .expect("a cluster node's voters");
    let mut extra: Vec<&str> = vec!["--process-roles", "broker"];
    extra.extend_from_slice(extra_args);
    Broker::start_with(node_options(
        node_id,
        free_port(),
        free_port(),
        voters,
        &extra,
    ))
}

/// [`start_cluster_with`] no extra flags.
pub fn start_cluster() -> Vec<Broker> {
    start_cluster_with(&[])
}

/// A single-threaded runtime for the protocol client, from tests that are synchronous.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Polls `check` until it gives a value, at most [`WAIT`], and returns it with the time it
/// took; panics with `what` otherwise.
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return (value, start.elapsed());
        }
        assert!(
            start.elapsed() < WAIT,
            "timed out after {WAIT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
