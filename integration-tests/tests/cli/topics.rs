//! Topic, config and cluster verbs; every error path; shell completions.

use std::process::Command;
use std::time::Duration;

use inlet_integration_tests::kafka::wait_for_partitions;
use inlet_integration_tests::{free_port, inlet_bin, Broker};
use serde_json::Value;

use super::{assert_error, config_value, inlet, json};

#[test]
fn topic_verbs_create_describe_grow_configure_and_delete() {
    let broker = Broker::start();
    let b = broker.bootstrap();

    let created = json(
        &b,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=3600000",
        ],
    );
    assert_eq!(created["topic"], "orders");
    assert_eq!(created["partitions"], 3);
    assert_eq!(created["replication_factor"], 1);
    assert_eq!(
        wait_for_partitions(&b, "orders", 3, Duration::from_secs(10)),
        3
    );

    let listed = json(&b, &["topic", "list", "--exclude-internal"]);
    let names: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["orders"]);
    // Without the flag, the internal topics are listed as Kafka lists them, flagged.
    let listed = json(&b, &["topic", "list"]);
    assert!(listed
        .as_array()
        .expect("a list")
        .iter()
        .all(|t| t["internal"] == (t["name"] != "orders")));

    let described = json(&b, &["topic", "describe", "orders"]);
    let partitions = described["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 3);
    for (i, p) in partitions.iter().enumerate() {
        assert_eq!(p["partition"], i);
        assert_eq!(p["leader"], 1);
        assert_eq!(p["replicas"], serde_json::json!([1]));
        assert_eq!(p["isr"], serde_json::json!([1]));
        assert_eq!(p["earliest_offset"], 0);
        assert_eq!(p["latest_offset"], 0);
    }
    let retention = config_value(&described["configs"], "retention.ms");
    assert_eq!(retention, ("3600000".to_string(), "topic".to_string()));

    let grown = json(&b, &["topic", "add-partitions", "orders", "--count", "5"]);
    assert_eq!(grown["partitions"], 5);
    assert_eq!(
        wait_for_partitions(&b, "orders", 5, Duration::from_secs(10)),
        5
    );
    let shrink = inlet(&b, &["topic", "add-partitions", "orders", "--count", "2"]);
    assert_error(&shrink, 1, &["INVALID_PARTITIONS"]);

    json(
        &b,
        &[
            "topic",
            "alter-config",
            "orders",
            "segment.bytes=2097152",
            "max.message.bytes=2000000",
        ],
    );
    json(
        &b,
        &[
            "topic",
            "alter-config",
            "orders",
            "--delete",
            "retention.ms",
        ],
    );
    let configs = json(&b, &["config", "describe", "--topic", "orders"]);
    assert_eq!(
        config_value(&configs, "segment.bytes"),
        ("2097152".into(), "topic".into())
    );
    assert_eq!(config_value(&configs, "max.message.bytes").0, "2000000");
    assert_eq!(config_value(&configs, "retention.ms").1, "default");

    // One bad value rejects the whole change: segment.bytes keeps its value.
    let invalid = inlet(
        &b,
        &[
            "topic",
            "alter-config",
            "orders",
            "segment.bytes=1048576",
            "retention.ms=soon",
        ],
    );
    assert_error(&invalid, 1, &["INVALID_CONFIG", "retention.ms"]);
    let configs = json(&b, &["config", "describe", "--topic", "orders"]);
    assert_eq!(config_value(&configs, "segment.bytes").0, "2097152");

    let duplicate = inlet(&b, &["topic", "create", "orders"]);
    assert_error(&duplicate, 1, &["TOPIC_ALREADY_EXISTS"]);

    assert_eq!(
        json(&b, &["topic", "delete", "orders"])["deleted"],
        "orders"
    );
    assert_eq!(
        json(&b, &["topic", "list", "--exclude-internal"]),
        serde_json::json!([])
    );
    let gone = inlet(&b, &["topic", "describe", "orders"]);
    assert_error(&gone, 1, &["orders", "UNKNOWN_TOPIC_OR_PARTITION"]);
}

#[test]
fn cluster_and_broker_config_describe() {
    let broker = Broker::start();
    let b = broker.bootstrap();
    let cluster = json(&b, &["cluster", "describe"]);
    assert_eq!(cluster["controller"], 1);
    assert!(!cluster["cluster_id"]
        .as_str()
        .unwrap_or_default()
        .is_empty());
    let brokers = cluster["brokers"].as_array().expect("brokers");
    assert_eq!(brokers.len(), 1);
    assert_eq!(brokers[0]["id"], 1);
    assert_eq!(brokers[0]["host"], "127.0.0.1");
    assert_eq!(brokers[0]["port"], broker.port());

    let configs = json(&b, &["config", "describe", "--broker", "1"]);
    assert_eq!(config_value(&configs, "retention.ms").1, "static-broker");

    // The table form is for people, but it must name the broker too.
    let run = inlet(&b, &["cluster", "describe"]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.contains(&broker.port().to_string()),
        "{}",
        run.stdout
    );

    // INLET_BOOTSTRAP stands in for --bootstrap-server.
    let output = Command::new(inlet_bin())
        .args(["--output", "json", "cluster", "describe"])
        .env("INLET_BOOTSTRAP", &b)
        .output()
        .expect("run inlet");
    assert!(output.status.success());
    let via_env: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(via_env["cluster_id"], cluster["cluster_id"]);
}

#[test]
fn errors_are_one_line_with_a_nonzero_exit_code() {
    let broker = Broker::start();
    let b = broker.bootstrap();

    // Nothing listens on a port we just freed.
    let closed = format!("127.0.0.1:{}", free_port());
    let run = inlet(&closed, &["topic", "list"]);
    assert_error(
        &run,
        1,
        &["cannot reach the cluster at", &closed, "refused"],
    );

    let run = inlet(&b, &["topic", "describe", "missing"]);
    assert_error(&run, 1, &["topic missing", "does not exist"]);
    let run = inlet(&b, &["consume", "missing", "--count", "1"]);
    assert_error(&run, 1, &["topic missing", "UNKNOWN_TOPIC_OR_PARTITION"]);
    let run = inlet(&b, &["topic", "alter-config", "missing", "retention.ms=1"]);
    assert_error(&run, 1, &["UNKNOWN_TOPIC_OR_PARTITION"]);

    let run = inlet(
        &b,
        &[
            "topic",
            "create",
            "bad-config",
            "--config",
            "cleanup.policy=sometimes",
        ],
    );
    assert_error(&run, 1, &["INVALID_CONFIG", "cleanup.policy"]);
    let run = inlet(&b, &["topic", "create", "bad/name"]);
    assert_error(&run, 1, &["INVALID_TOPIC_EXCEPTION"]);

    // Usage errors come from clap: exit code 2 and a message naming the argument.
    let run = inlet(&b, &["produce", "t", "--acks", "7"]);
    assert_error(&run, 2, &["--acks", "acks must be 0, 1 or all"]);
    let run = inlet(&b, &["topic", "create", "t", "--partitions", "many"]);
    assert_error(&run, 2, &["--partitions"]);
    let run = inlet(&b, &["topic", "alter-config", "t", "no-equals-sign"]);
    assert_error(&run, 2, &["expected KEY=VALUE"]);
    let run = inlet(&b, &["consume", "t", "--from-time", "yesterday"]);
    assert_error(&run, 2, &["--from-time"]);

    let run = inlet(&b, &["topic", "create", "p", "--partitions", "1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = inlet(&b, &["produce", "p", "--partition", "4"]);
    assert_error(&run, 1, &["topic p has no partition 4"]);
}

#[test]
fn a_hung_bootstrap_broker_is_passed_over_for_the_next_address() {
    let broker = Broker::start();
    // A stopped broker: its kernel still completes connections, nothing ever answers.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hung_addr = hung.local_addr().expect("address").to_string();
    let bootstrap = format!("{hung_addr},{}", broker.bootstrap());
    let started = std::time::Instant::now();
    let run = inlet(&bootstrap, &["topic", "list"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // One bootstrap attempt (10 s), not the request timeout (30 s).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    drop(hung);
}

#[test]
fn completions_for_each_shell_name_the_verbs() {
    for shell in ["bash", "zsh", "fish"] {
        let output = Command::new(inlet_bin())
            .args(["completions", shell])
            .output()
            .expect("run inlet completions");
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&output.stdout);
        for word in ["inlet", "alter-config", "reset-offsets", "bootstrap-server"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let output = Command::new(inlet_bin())
        .args(["completions", "powershell-ish"])
        .output()
        .expect("run inlet completions");
    assert_eq!(output.status.code(), Some(2));
}
