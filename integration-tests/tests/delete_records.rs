//! DeleteRecords (API 21) against real brokers and librdkafka's admin client:
//! - three brokers, replication factor 3: the log start moves into the middle of a segment, the
//!   answer (which waits for the in-sync followers) finds it checkpointed on every replica, its
//!   low watermark and ListOffsets EARLIEST say so, a fetch below it is
//!   OFFSET_OUT_OF_RANGE; after the leader is killed with SIGKILL the new leader says the same,
//!   and so does the old leader once restarted and leading again; `inlet topic delete-records`
//!   with offset -1 moves the start to the high watermark;
//! - one broker with the lake: records tiered, then deleted past the lake's first offset:
//!   EARLIEST follows, the lake no longer replays offsets below the start, and its manifest
//!   records the start and drops the segments wholly below it.

use std::path::Path;
use std::time::{Duration, Instant};

use inlet_integration_tests::cluster::{runtime, start_cluster, wait_for};
use inlet_integration_tests::history::{bootstrap, node, placement, wait_all_in_sync};
use inlet_integration_tests::kafka::{
    client_config, consumer_config, create_replicated_topic, producer_config,
};
use inlet_integration_tests::{inlet, Broker, BrokerOptions};
use inlet_protocol::client::cluster::{Cluster, EARLIEST};
use inlet_protocol::client::Client;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const RECORDS: usize = 400;

/// Produces `count` records to partition 0 of `topic`, acks=all, in small batches (the test
/// topics have small segments).
async fn produce(bootstrap: &str, topic: &str, count: usize) {
    let producer: FutureProducer = producer_config(bootstrap, "none")
        .set("batch.size", "1024")
        .create()
        .expect("create an rdkafka producer");
    let mut pending = Vec::with_capacity(count);
    for i in 0..count {
        let value = format!("record {i} {}", "x".repeat(40));
        let record = FutureRecord::<(), _>::to(topic)
            .partition(0)
            .payload(&value);
        let future = producer
            .send_result(record)
            .unwrap_or_else(|(e, _)| panic!("enqueue record {i}: {e}"));
        pending.push(future);
    }
    for (i, future) in pending.into_iter().enumerate() {
        future
            .await
            .expect("delivery channel")
            .unwrap_or_else(|(e, _)| panic!("record {i} not delivered: {e}"));
    }
}

/// DeleteRecords through librdkafka's admin client: the low watermark it reports.
async fn delete_records(bootstrap: &str, topic: &str, offset: i64) -> i64 {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap).create().expect("admin client");
    let mut wanted = TopicPartitionList::new();
    wanted
        .add_partition_offset(topic, 0, Offset::Offset(offset))
        .expect("add partition");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let result = admin
        .delete_records(&wanted, &options)
        .await
        .expect("DeleteRecords request");
    let element = &result.elements()[0];
    assert!(
        element.error().is_ok(),
        "DeleteRecords: {:?}",
        element.error()
    );
    match element.offset() {
        Offset::Offset(low) => low,
        other => panic!("DeleteRecords answered {other:?}"),
    }
}

/// ListOffsets EARLIEST of partition 0, asked of its leader; `None` while that fails (no leader
/// yet after a kill).
fn earliest(bootstrap: &str, topic: &str) -> Option<i64> {
    runtime().block_on(async {
        let mut cluster = Cluster::connect(bootstrap, "delete-records-test")
            .await
            .ok()?;
        let info = cluster.topic(topic).await.ok()?;
        let offsets = cluster.list_offsets(&info, &[0], EARLIEST).await.ok()?;
        offsets.get(&0).copied()
    })
}

/// The error code of a consumer Fetch of partition 0 at `offset` sent to `broker`.
fn fetch_error(broker: &Broker, topic: &str, offset: i64) -> i16 {
    runtime().block_on(async {
        let mut client = Client::connect(broker.addr(), "delete-records-test")
            .await
            .expect("connect");
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let response = client.send(request).await.expect("fetch");
        assert_eq!(response.error_code, 0, "fetch error code");
        response.responses[0].partitions[0].error_code
    })
}

/// The log-start checkpoint of partition 0 of `topic` in `broker`'s data directory.
fn checkpointed_start(broker: &Broker, topic: &str) -> Option<i64> {
    let path = broker
        .data_dir()
        .join("topics")
        .join(topic)
        .join("0")
        .join("log-start-offset");
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn the_log_start_moves_on_every_replica_and_survives_a_killed_leader() {
    const TOPIC: &str = "delrec";
    let mut nodes = start_cluster();
    let all = bootstrap(&nodes);
    runtime().block_on(create_replicated_topic(
        &all,
        TOPIC,
        1,
        3,
        &[("segment.bytes", "4096"), ("min.insync.replicas", "2")],
        Duration::from_secs(20),
    ));
    wait_all_in_sync(&nodes[0], TOPIC, 1);
    runtime().block_on(produce(&all, TOPIC, RECORDS));

    // Into the middle of a segment (each holds a few dozen records).
    let start = 201;
    let low = runtime().block_on(delete_records(&all, TOPIC, start));
    assert_eq!(low, start, "the low watermark is the new log start");
    assert_eq!(earliest(&all, TOPIC), Some(start));
    let consumer: BaseConsumer = consumer_config(&all).create().expect("consumer");
    let (low, high) = consumer
        .fetch_watermarks(TOPIC, 0, Duration::from_secs(5))
        .expect("watermarks");
    assert_eq!((low, high), (start, RECORDS as i64));
    drop(consumer);
    let leader = placement(&nodes[0], TOPIC).expect("placement")[&0].0;
    let out_of_range = ResponseError::OffsetOutOfRange.code();
    assert_eq!(
        fetch_error(node(&mut nodes, leader), TOPIC, start - 1),
        out_of_range
    );
    assert_eq!(fetch_error(node(&mut nodes, leader), TOPIC, start), 0);
    // The answer waited for every in-sync replica: each has it durably already.
    for n in &nodes {
        assert_eq!(
            checkpointed_start(n, TOPIC),
            Some(start),
            "node {}",
            n.node_id()
        );
    }

    // kill -9 the leader: the new one starts at the same offset.
    node(&mut nodes, leader).kill9();
    let other = nodes
        .iter()
        .position(|n| n.node_id() != leader)
        .expect("a live node");
    let live = nodes[other].bootstrap();
    let (new_leader, _) = wait_for("a new leader", || {
        let now = placement(&nodes[other], TOPIC)?[&0].0;
        (now > 0 && now != leader).then_some(now)
    });
    let (after_kill, _) = wait_for("EARLIEST from the new leader", || earliest(&live, TOPIC));
    assert_eq!(
        after_kill, start,
        "the new leader {new_leader} starts there too"
    );
    assert_eq!(
        fetch_error(node(&mut nodes, new_leader), TOPIC, start - 1),
        out_of_range
    );

    // The old leader comes back, catches up, and leads again: same start.
    node(&mut nodes, leader).restart();
    assert_eq!(
        checkpointed_start(node(&mut nodes, leader), TOPIC),
        Some(start)
    );
    wait_all_in_sync(&nodes[other], TOPIC, 1);
    inlet(&all, &["cluster", "elect-leaders"]);
    wait_for("the preferred leader back", || {
        (placement(&nodes[other], TOPIC)?[&0].0 == leader).then_some(())
    });
    let (restarted, _) = wait_for("EARLIEST from the restarted leader", || {
        earliest(&all, TOPIC)
    });
    assert_eq!(restarted, start);
    assert_eq!(
        fetch_error(node(&mut nodes, leader), TOPIC, start - 1),
        out_of_range
    );

    // The CLI: -1 is the high watermark.
    let printed = inlet(
        &all,
        &[
            "topic",
            "delete-records",
            "--topic",
            TOPIC,
            "--partition",
            "0",
            "--offset",
            "-1",
        ],
    );
    assert!(
        printed
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["0", "400"]),
        "{printed}"
    );
    assert_eq!(earliest(&all, TOPIC), Some(RECORDS as i64));
}

/// The manifest's log start and segments as `(base_offset, last_offset)`.
fn manifest(lake: &Path, topic: &str) -> (i64, Vec<(i64, i64)>) {
    let path = lake.join(topic).join("0").join("manifest.json");
    let Ok(text) = std::fs::read_to_string(path) else {
        return (0, Vec::new());
    };
    let m: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    let segments = m["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| {
            (
                s["base_offset"].as_i64().unwrap(),
                s["last_offset"].as_i64().unwrap(),
            )
        })
        .collect();
    (m["log_start_offset"].as_i64().unwrap_or(0), segments)
}

#[test]
fn records_deleted_past_the_lakes_start_are_no_longer_replayed() {
    const TOPIC: &str = "delrec-lake";
    let broker = Broker::start_with(BrokerOptions {
        extra_args: ["--lake-tier-interval-ms", "200"]
            .map(String::from)
            .to_vec(),
        ..BrokerOptions::default()
    });
    let b = broker.bootstrap();
    runtime().block_on(create_replicated_topic(
        &b,
        TOPIC,
        1,
        1,
        &[("segment.bytes", "4096"), ("local.retention.bytes", "0")],
        Duration::from_secs(10),
    ));
    runtime().block_on(produce(&b, TOPIC, RECORDS));
    let lake = broker.data_dir().join("lake");
    // Tiered, and the first segments gone from the local disk.
    let (segments, _) = wait_for("segments in the lake", || {
        let (_, segments) = manifest(&lake, TOPIC);
        (segments.len() >= 3).then_some(segments)
    });
    assert_eq!(earliest(&b, TOPIC), Some(0), "the lake serves from 0");
    let (base, last) = segments[1];
    let start = base + (last - base) / 2 + 1;
    assert!(start > base && start <= last);

    let low = runtime().block_on(delete_records(&b, TOPIC, start));
    assert_eq!(low, start);
    assert_eq!(earliest(&b, TOPIC), Some(start));
    let out_of_range = ResponseError::OffsetOutOfRange.code();
    assert_eq!(fetch_error(&broker, TOPIC, 0), out_of_range);
    assert_eq!(fetch_error(&broker, TOPIC, start - 1), out_of_range);
    assert_eq!(
        fetch_error(&broker, TOPIC, start),
        0,
        "from the start, the lake replays"
    );

    // The manifest records the start and the segment wholly below it goes.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (recorded, now) = manifest(&lake, TOPIC);
        if recorded == start && now.first() == Some(&(base, last)) {
            break;
        }
        assert!(Instant::now() < deadline, "manifest: {recorded} {now:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let first_object = lake
        .join(TOPIC)
        .join("0")
        .join(format!("{:020}-{:020}.log", segments[0].0, segments[0].1));
    assert!(
        !first_object.exists(),
        "{} is deleted",
        first_object.display()
    );
    assert_eq!(earliest(&b, TOPIC), Some(start));
}
