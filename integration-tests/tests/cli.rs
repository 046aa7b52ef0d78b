//! The `inlet` admin CLI as an operator runs it: each verb is a subprocess against a real broker;
//! the tests assert on its `--output json`, its exit code and one-line errors, and check the
//! broker's state independently (librdkafka reads what `inlet produce` wrote; `topic describe`
//! and `config describe` are checked after the verbs that change them).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use inlet_integration_tests::kafka::{consume_all, wait_for_partitions};
use inlet_integration_tests::{free_port, inlet_bin, Broker};
use serde_json::Value;

/// What one `inlet` run printed and how it exited.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `inlet --bootstrap-server <bootstrap> ARGS` with `stdin` as its input.
fn inlet_with_input(bootstrap: &str, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(inlet_bin())
        .arg("--bootstrap-server")
        .arg(bootstrap)
        .args(args)
        .env_remove("INLET_BOOTSTRAP")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn inlet {args:?}: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(stdin.as_bytes())
        .expect("write the CLI's stdin");
    drop(input);
    let output = child.wait_with_output().expect("wait for inlet");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn inlet(bootstrap: &str, args: &[&str]) -> Run {
    inlet_with_input(bootstrap, args, "")
}

/// Runs a verb with `--output json`, asserts it succeeded and parses what it printed.
fn json(bootstrap: &str, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let run = inlet(bootstrap, &all);
    assert_eq!(
        run.code, 0,
        "inlet {args:?} failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("inlet {args:?} printed no JSON ({e}):\n{}", run.stdout))
}

/// A failed run: exit code 1 (2 for usage errors), one line on stderr containing every
/// `expected` fragment, nothing on stdout, no panic.
fn assert_error(run: &Run, code: i32, expected: &[&str]) {
    assert_eq!(
        run.code, code,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(!run.stderr.contains("RUST_BACKTRACE"), "{}", run.stderr);
    if code == 1 {
        assert_eq!(run.stderr.trim_end().lines().count(), 1, "{}", run.stderr);
        assert!(run.stderr.starts_with("inlet: "), "{}", run.stderr);
    }
    for fragment in expected {
        assert!(
            run.stderr.contains(fragment),
            "expected {fragment:?} in stderr: {}",
            run.stderr
        );
    }
}

fn config_value(configs: &Value, name: &str) -> (String, String) {
    let entry = configs
        .as_array()
        .expect("configs are a list")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no config {name} in {configs}"));
    (
        entry["value"].as_str().unwrap_or_default().to_string(),
        entry["source"].as_str().unwrap_or_default().to_string(),
    )
}

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

    let listed = json(&b, &["topic", "list"]);
    let names: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["orders"]);

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
    assert_eq!(json(&b, &["topic", "list"]), serde_json::json!([]));
    let gone = inlet(&b, &["topic", "describe", "orders"]);
    assert_error(&gone, 1, &["orders", "UNKNOWN_TOPIC_OR_PARTITION"]);
}

#[test]
fn produced_lines_reach_librdkafka_and_come_back_through_consume() {
    let broker = Broker::start();
    let b = broker.bootstrap();
    json(&b, &["topic", "create", "lines", "--partitions", "2"]);

    let mut input = String::new();
    for i in 0..200 {
        input.push_str(&format!("key-{i}|value {i}\n"));
    }
    let run = inlet_with_input(
        &b,
        &[
            "--output",
            "json",
            "produce",
            "lines",
            "--key-separator",
            "|",
            "--header",
            "source=cli",
            "--compression",
            "zstd",
        ],
        &input,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary: Value = serde_json::from_str(&run.stdout).expect("produce summary is JSON");
    assert_eq!(summary["records"], 200);

    // librdkafka sees every record with its key, value and header.
    let records = consume_all(&b, "lines", 2, 200, Duration::from_secs(20));
    assert_eq!(records.len(), 200);
    for r in &records {
        let key = String::from_utf8(r.key.clone().expect("a key")).expect("UTF-8 key");
        let i: usize = key["key-".len()..].parse().expect("key-N");
        assert_eq!(r.value.as_deref(), Some(format!("value {i}").as_bytes()));
        assert_eq!(
            r.headers,
            vec![("source".to_string(), Some(b"cli".to_vec()))]
        );
    }

    // And `inlet consume` reads them back as JSON lines, partition by partition, in order.
    let run = inlet(
        &b,
        &[
            "consume",
            "lines",
            "--from-beginning",
            "--count",
            "200",
            "--format",
            "json",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 200);
    for l in &lines {
        let i: usize = l["key"].as_str().expect("key")["key-".len()..]
            .parse()
            .expect("key-N");
        assert_eq!(l["value"], format!("value {i}"));
        assert_eq!(l["headers"]["source"], "cli");
        let from_librdkafka = records
            .iter()
            .find(|r| r.key.as_deref() == Some(format!("key-{i}").as_bytes()))
            .expect("the same record");
        assert_eq!(l["partition"], from_librdkafka.partition);
        assert_eq!(l["offset"], from_librdkafka.offset);
    }

    // --partition and --offset select; --format kv prints key TAB value.
    let run = inlet(
        &b,
        &[
            "consume",
            "lines",
            "--partition",
            "1",
            "--offset",
            "3",
            "--count",
            "1",
            "--format",
            "kv",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let expected = records
        .iter()
        .find(|r| r.partition == 1 && r.offset == 3)
        .expect("partition 1 has at least 4 records");
    let line = format!(
        "{}\t{}\n",
        String::from_utf8_lossy(expected.key.as_deref().unwrap_or_default()),
        String::from_utf8_lossy(expected.value.as_deref().unwrap_or_default())
    );
    assert_eq!(run.stdout, line);
}

#[test]
fn every_codec_and_time_based_start() {
    let broker = Broker::start();
    let b = broker.bootstrap();
    json(&b, &["topic", "create", "codecs", "--partitions", "1"]);
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let input: String = (0..50).map(|i| format!("{codec} {i}\n")).collect();
        let run = inlet_with_input(
            &b,
            &["produce", "codecs", "--compression", codec, "--acks", "1"],
            &input,
        );
        assert_eq!(run.code, 0, "{codec}: {}", run.stderr);
        assert!(
            run.stdout.starts_with("produced 50 records"),
            "{}",
            run.stdout
        );
    }
    let run = inlet(
        &b,
        &["consume", "codecs", "--from-beginning", "--exit-at-end"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let expected: Vec<String> = ["none", "gzip", "snappy", "lz4", "zstd"]
        .iter()
        .flat_map(|c| (0..50).map(move |i| format!("{c} {i}")))
        .collect();
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), expected);

    // A time after every record: nothing to read; a time long ago: everything.
    let run = inlet(
        &b,
        &[
            "consume",
            "codecs",
            "--from-time",
            "2100-01-01T00:00:00Z",
            "--exit-at-end",
        ],
    );
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{}", run.stderr);
    let run = inlet(
        &b,
        &[
            "consume",
            "codecs",
            "--from-time",
            "2000-01-01T00:00:00Z",
            "--count",
            "3",
        ],
    );
    assert_eq!(run.stdout, "none 0\nnone 1\nnone 2\n");
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
fn perf_produce_and_consume_report_what_they_moved() {
    let broker = Broker::start();
    let b = broker.bootstrap();
    json(&b, &["topic", "create", "load", "--partitions", "2"]);
    for acks in ["1", "all"] {
        let run = inlet(
            &b,
            &[
                "--output",
                "json",
                "perf",
                "produce",
                "load",
                "--num-records",
                "20000",
                "--record-size",
                "100",
                "--acks",
                acks,
                "--batch-size",
                "8192",
            ],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        // stdout is a pipe: no progress line on stderr.
        assert_eq!(run.stderr, "");
        let report: Value = serde_json::from_str(&run.stdout).expect("JSON report");
        assert_eq!(report["records"], 20000);
        assert_eq!(report["bytes"], 2_000_000);
        assert!(report["records_per_sec"].as_f64().unwrap_or(0.0) > 0.0);
        let latency = &report["latency_ms"];
        let p = |k: &str| latency[k].as_f64().expect("a latency");
        assert!(p("p50") > 0.0 && p("p50") <= p("p99") && p("p99") <= p("p999"));
        assert!(p("p999") <= p("max"));
    }
    let described = json(&b, &["topic", "describe", "load"]);
    let total: i64 = described["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["latest_offset"].as_i64().expect("an offset"))
        .sum();
    assert_eq!(total, 40000);

    let report = json(&b, &["perf", "consume", "load"]);
    assert_eq!(report["records"], 40000);
    let report = json(&b, &["perf", "consume", "load", "--num-records", "100"]);
    assert!(report["records"].as_u64().unwrap_or(0) >= 100);
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
        for word in [
            "inlet",
            "alter-config",
            "reset-offsets",
            "--bootstrap-server",
        ] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let output = Command::new(inlet_bin())
        .args(["completions", "powershell-ish"])
        .output()
        .expect("run inlet completions");
    assert_eq!(output.status.code(), Some(2));
}
