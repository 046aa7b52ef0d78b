//! `inlet produce`, `inlet consume` and `inlet perf`, cross-checked with librdkafka.

use std::time::Duration;

use inlet_integration_tests::kafka::consume_all;
use inlet_integration_tests::Broker;
use serde_json::Value;

use super::{inlet, inlet_with_input, json};

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

    // --file instead of stdin, and acks=0 (nothing comes back; the records still land).
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(file.path(), "from file 1\r\nfrom file 2\n").expect("write the input file");
    let path = file.path().to_str().expect("a UTF-8 path");
    let run = inlet(&b, &["produce", "codecs", "--file", path, "--acks", "0"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = inlet(
        &b,
        &["consume", "codecs", "--offset", "250", "--count", "2"],
    );
    assert_eq!(run.stdout, "from file 1\nfrom file 2\n");

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
