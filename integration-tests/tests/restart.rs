//! Durability across restarts: every record acknowledged with `acks=all` is still there, intact and
//! at the same offset, after `kill -9` and after a graceful SIGTERM; new records continue the
//! offsets densely.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use inlet_integration_tests::kafka::{
    consume_all, create_topic, producer_config, wait_for_partitions, ConsumedRecord,
};
use inlet_integration_tests::Broker;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

const PARTITIONS: i32 = 3;

/// A record the test produced and the broker acknowledged.
#[derive(Debug, Clone)]
struct Acked {
    key: Vec<u8>,
    value: Vec<u8>,
    partition: i32,
    offset: i64,
}

/// Produces `count` records keyed `{prefix}-{i}` with `acks=all` and returns them once every
/// delivery report has succeeded. The producer is dropped before returning.
async fn produce(bootstrap: &str, topic: &str, prefix: &str, count: usize) -> Vec<Acked> {
    let producer: FutureProducer = producer_config(bootstrap, "lz4")
        .create()
        .expect("create an rdkafka producer");
    let mut pending = Vec::with_capacity(count);
    for i in 0..count {
        let key = format!("{prefix}-{i}").into_bytes();
        let value = format!("{prefix} value {i} {}", "x".repeat(i % 200)).into_bytes();
        let headers = OwnedHeaders::new().insert(Header {
            key: "prefix",
            value: Some(prefix),
        });
        let future = producer
            .send_result(
                FutureRecord::to(topic)
                    .key(&key)
                    .payload(&value)
                    .headers(headers),
            )
            .unwrap_or_else(|(e, _)| panic!("enqueue record {prefix}-{i}: {e}"));
        pending.push((key, value, future));
    }
    let mut acked = Vec::with_capacity(count);
    for (key, value, future) in pending {
        let delivery = future
            .await
            .expect("delivery report channel dropped")
            .unwrap_or_else(|(e, _)| {
                panic!(
                    "record {} not delivered: {e}",
                    String::from_utf8_lossy(&key)
                )
            });
        acked.push(Acked {
            key,
            value,
            partition: delivery.partition,
            offset: delivery.offset,
        });
    }
    acked
}

/// Reads the whole topic and checks it holds exactly `acked`, each record at its acknowledged
/// position with its key, value and header, and that every partition's offsets are dense from 0.
async fn assert_topic_holds_exactly(bootstrap: &str, topic: &str, acked: &[Acked]) {
    let (bootstrap_owned, topic_owned, expected_count) =
        (bootstrap.to_string(), topic.to_string(), acked.len());
    let records: Vec<ConsumedRecord> = tokio::task::spawn_blocking(move || {
        consume_all(
            &bootstrap_owned,
            &topic_owned,
            PARTITIONS,
            expected_count,
            Duration::from_secs(60),
        )
    })
    .await
    .expect("consumer task panicked");

    let mut by_position: HashMap<(i32, i64), &ConsumedRecord> = HashMap::new();
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for record in &records {
        if by_position
            .insert((record.partition, record.offset), record)
            .is_some()
        {
            panic!(
                "offset {} of partition {} consumed twice",
                record.offset, record.partition
            );
        }
        offsets
            .entry(record.partition)
            .or_default()
            .push(record.offset);
    }
    for want in acked {
        let key = String::from_utf8_lossy(&want.key);
        let got = by_position.get(&(want.partition, want.offset)).unwrap_or_else(|| {
            panic!(
                "acknowledged record {key} at partition {} offset {} is missing ({} records consumed)",
                want.partition,
                want.offset,
                records.len()
            )
        });
        assert_eq!(
            got.key.as_deref(),
            Some(&want.key[..]),
            "key at the position of {key}"
        );
        assert_eq!(
            got.value.as_deref(),
            Some(&want.value[..]),
            "value of {key}"
        );
        let prefix = key.rsplit_once('-').map(|(p, _)| p).unwrap_or_default();
        assert_eq!(
            got.headers,
            vec![("prefix".to_string(), Some(prefix.as_bytes().to_vec()))],
            "headers of {key}"
        );
    }
    assert_eq!(records.len(), acked.len(), "records in the topic");
    for (partition, offsets) in offsets {
        let dense: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, dense, "offsets of partition {partition}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill9_and_offsets_continue() {
    let topic = "survives-kill9";
    let mut broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, topic, PARTITIONS).await;
    let mut acked = produce(&bootstrap, topic, "before", 5_000).await;

    broker.kill9();
    broker.restart();

    assert_eq!(
        wait_for_partitions(&bootstrap, topic, PARTITIONS, Duration::from_secs(10)),
        PARTITIONS,
        "partition count after restart"
    );
    assert_topic_holds_exactly(&bootstrap, topic, &acked).await;

    // New records continue each partition's offsets where the recovered log ends.
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for record in &acked {
        let next = next_offset.entry(record.partition).or_default();
        *next = (*next).max(record.offset + 1);
    }
    let after = produce(&bootstrap, topic, "after", 2_000).await;
    for partition in 0..PARTITIONS {
        let mut new_offsets: Vec<i64> = after
            .iter()
            .filter(|r| r.partition == partition)
            .map(|r| r.offset)
            .collect();
        new_offsets.sort_unstable();
        if let Some(first) = new_offsets.first() {
            assert_eq!(
                *first,
                next_offset.get(&partition).copied().unwrap_or(0),
                "first offset in partition {partition} after the restart"
            );
        }
    }
    acked.extend(after);
    assert_topic_holds_exactly(&bootstrap, topic, &acked).await;

    // And a second crash keeps both generations.
    broker.kill9();
    broker.restart();
    assert_topic_holds_exactly(&bootstrap, topic, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_and_keeps_every_record() {
    let topic = "survives-sigterm";
    let mut broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, topic, PARTITIONS).await;
    let acked = produce(&bootstrap, topic, "graceful", 3_000).await;

    let status = broker.terminate();
    assert!(
        status.success(),
        "inlet should exit 0 on SIGTERM, got {status}; log:\n{}",
        broker.log_tail(30)
    );
    assert!(!broker.is_running());

    broker.restart();
    assert_topic_holds_exactly(&bootstrap, topic, &acked).await;
}
