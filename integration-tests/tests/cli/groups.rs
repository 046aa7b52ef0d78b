//! `inlet consume --group` (the client side of the classic group protocol with the range
//! assignor) and the group verbs, cross-checked with librdkafka's view of committed offsets.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use inlet_integration_tests::kafka::consumer_config;
use inlet_integration_tests::{inlet_bin, Broker};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use super::{assert_error, inlet, inlet_with_input, json};

/// Produces `count` keyed lines `k<i>|v<i>` starting at `first`, spread over the partitions.
fn produce(b: &str, topic: &str, first: usize, count: usize) {
    let input: String = (first..first + count)
        .map(|i| format!("k{i}|v{i}\n"))
        .collect();
    let run = inlet_with_input(b, &["produce", topic, "--key-separator", "|"], &input);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// The group's committed offsets as librdkafka reads them (OffsetFetch through its coordinator).
fn committed_by_librdkafka(b: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = consumer_config(b)
        .set("group.id", group)
        .create()
        .expect("create an rdkafka consumer");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("librdkafka reads the committed offsets");
    (0..partitions)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                other => panic!("partition {p}: no committed offset ({other:?})"),
            },
        )
        .collect()
}

fn offsets_of(described: &Value) -> Vec<(i64, i64, i64)> {
    described["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| {
            (
                o["committed"].as_i64().expect("committed"),
                o["latest"].as_i64().expect("latest"),
                o["lag"].as_i64().expect("lag"),
            )
        })
        .collect()
}

#[test]
fn a_group_consumer_commits_and_the_group_verbs_see_and_move_its_offsets() {
    let broker = Broker::start();
    let b = broker.bootstrap();
    json(&b, &["topic", "create", "events", "--partitions", "3"]);
    produce(&b, "events", 0, 30);

    let run = inlet(
        &b,
        &[
            "consume",
            "events",
            "--group",
            "readers",
            "--from-beginning",
            "--count",
            "30",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let values: BTreeSet<&str> = run.stdout.lines().collect();
    assert_eq!(values.len(), 30);

    // Everything read is committed: lag 0 everywhere, and librdkafka agrees.
    let described = json(&b, &["group", "describe", "readers"]);
    assert_eq!(described["state"], "Empty", "the member left on exit");
    let offsets = offsets_of(&described);
    assert_eq!(offsets.len(), 3);
    assert!(
        offsets.iter().all(|&(c, l, lag)| c == l && lag == 0),
        "{offsets:?}"
    );
    let latest: Vec<i64> = offsets.iter().map(|o| o.1).collect();
    assert_eq!(latest.iter().sum::<i64>(), 30);
    assert_eq!(committed_by_librdkafka(&b, "readers", "events", 3), latest);

    let groups = json(&b, &["group", "list"]);
    assert!(
        groups
            .as_array()
            .expect("a list")
            .iter()
            .any(|g| g["group"] == "readers"),
        "{groups}"
    );

    // The group resumes where it committed: only the new records come out.
    produce(&b, "events", 30, 5);
    let run = inlet(
        &b,
        &["consume", "events", "--group", "readers", "--count", "5"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut got: Vec<&str> = run.stdout.lines().collect();
    got.sort();
    assert_eq!(got, ["v30", "v31", "v32", "v33", "v34"]);

    // Reset to the beginning, then move partition 0 to offset 2.
    let reset = json(
        &b,
        &[
            "group",
            "reset-offsets",
            "readers",
            "--topic",
            "events",
            "--to-earliest",
        ],
    );
    assert_eq!(reset.as_array().expect("a list").len(), 3);
    assert!(reset
        .as_array()
        .into_iter()
        .flatten()
        .all(|r| r["offset"] == 0));
    json(
        &b,
        &[
            "group",
            "reset-offsets",
            "readers",
            "--topic",
            "events",
            "--partition",
            "0",
            "--to-offset",
            "2",
        ],
    );
    let committed = committed_by_librdkafka(&b, "readers", "events", 3);
    assert_eq!(committed, [2, 0, 0]);
    let lag: i64 = offsets_of(&json(&b, &["group", "describe", "readers"]))
        .iter()
        .map(|o| o.2)
        .sum();
    assert_eq!(lag, 35 - 2);
    let run = inlet(
        &b,
        &["consume", "events", "--group", "readers", "--exit-at-end"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 33);

    assert_eq!(
        json(&b, &["group", "delete", "readers"])["deleted"],
        "readers"
    );
    let run = inlet(&b, &["group", "describe", "readers"]);
    assert_error(&run, 1, &["readers"]);
}

/// Starts `inlet consume TOPIC --group GROUP` that follows the topic until interrupted.
fn spawn_member(b: &str, topic: &str, group: &str) -> Child {
    Command::new(inlet_bin())
        .args(["--bootstrap-server", b, "consume", topic, "--group", group])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn inlet consume")
}

fn interrupt(child: &mut Child) -> i32 {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits in pid_t");
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    let rc = unsafe { libc::kill(pid, libc::SIGINT) };
    assert_eq!(rc, 0);
    child
        .wait()
        .expect("wait for the consumer")
        .code()
        .unwrap_or(-1)
}

#[test]
fn two_members_split_the_partitions_and_block_resets_while_active() {
    let broker = Broker::start();
    let b = broker.bootstrap();
    json(&b, &["topic", "create", "split", "--partitions", "4"]);
    let mut members = [
        spawn_member(&b, "split", "pair"),
        spawn_member(&b, "split", "pair"),
    ];

    // Wait for a stable generation in which both members hold partitions.
    let deadline = Instant::now() + Duration::from_secs(30);
    let described = loop {
        // Until the first member has joined, the group does not exist.
        let run = inlet(&b, &["--output", "json", "group", "describe", "pair"]);
        let described: Value = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
        let stable = described["state"] == "Stable"
            && described["members"].as_array().map_or(0, Vec::len) == 2
            && described["members"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|m| {
                    m["assignment"]["split"]
                        .as_array()
                        .is_some_and(|a| !a.is_empty())
                });
        if stable {
            break described;
        }
        assert!(
            Instant::now() < deadline,
            "no stable 2-member group: {described}"
        );
        thread::sleep(Duration::from_millis(200));
    };
    let mut assigned: Vec<Vec<i64>> = described["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            m["assignment"]["split"]
                .as_array()
                .expect("partitions")
                .iter()
                .filter_map(Value::as_i64)
                .collect()
        })
        .collect();
    assigned.sort();
    // The range assignor: 4 partitions, 2 members -> [0, 1] and [2, 3].
    assert_eq!(assigned, [vec![0, 1], vec![2, 3]]);

    let run = inlet(
        &b,
        &[
            "group",
            "reset-offsets",
            "pair",
            "--topic",
            "split",
            "--to-latest",
        ],
    );
    assert_error(&run, 1, &["group pair has 2 active member(s)"]);

    for member in &mut members {
        assert_eq!(interrupt(member), 0, "Ctrl-C is a clean exit");
    }
    let described = json(&b, &["group", "describe", "pair"]);
    assert_eq!(described["state"], "Empty", "{described}");
}
