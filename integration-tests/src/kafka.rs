//! librdkafka helpers shared by the tests: client configs, topic creation, reading a topic back.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// A client config pointing at `bootstrap`, with timeouts short enough for tests.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "10000")
        .set("message.timeout.ms", "30000");
    config
}

/// An `acks=all`, idempotent producer config with the given compression codec.
pub fn producer_config(bootstrap: &str, compression: &str) -> ClientConfig {
    let mut config = client_config(bootstrap);
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.codec", compression)
        .set("linger.ms", "5");
    config
}

/// A consumer config for assign-based consuming: partitions are assigned by hand from explicit
/// offsets and nothing is committed, so no group membership or committed offset is involved.
/// librdkafka refuses `assign` without a `group.id`, so one is set, as a label only.
pub fn consumer_config(bootstrap: &str) -> ClientConfig {
    let mut config = client_config(bootstrap);
    config
        .set("group.id", "inlet-integration-tests")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "100");
    config
}

/// Creates `topic` with `partitions` partitions through the admin API and waits until metadata
/// shows all of them.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    create_topic_with(bootstrap, topic, partitions, &[]).await;
}

/// [`create_topic`] with topic config overrides (`segment.bytes`, `local.retention.bytes`, ...).
pub async fn create_topic_with(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    create_replicated_topic(
        bootstrap,
        topic,
        partitions,
        1,
        configs,
        Duration::from_secs(10),
    )
    .await;
    let count = wait_for_partitions(bootstrap, topic, partitions, Duration::from_secs(10));
    assert_eq!(count, partitions, "partition count of {topic} in metadata");
}

/// Creates `topic` through the admin API with `replication` replicas and config overrides,
/// giving the broker `timeout` to do it; panics unless it is created.
pub async fn create_replicated_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
    timeout: Duration,
) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap)
        .create()
        .expect("create an rdkafka admin client");
    let new_topic = configs.iter().fold(
        NewTopic::new(topic, partitions, TopicReplication::Fixed(replication)),
        |t, (key, value)| t.set(key, value),
    );
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .unwrap_or_else(|e| panic!("CreateTopics request for {topic}: {e}"));
    assert_eq!(results.len(), 1, "one result per requested topic");
    for result in results {
        match result {
            Ok(name) => assert_eq!(name, topic),
            Err((name, code)) => panic!("CreateTopics {name} failed: {code:?}"),
        }
    }
}

/// Polls metadata until `topic` has at least `expected` partitions, or `timeout` passes; returns
/// the last partition count seen.
pub fn wait_for_partitions(bootstrap: &str, topic: &str, expected: i32, timeout: Duration) -> i32 {
    let consumer: BaseConsumer = consumer_config(bootstrap)
        .create()
        .expect("create an rdkafka consumer for metadata");
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(metadata) => metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| t.partitions().len() as i32)
                .unwrap_or(0),
            Err(_) => 0,
        };
        if seen >= expected || Instant::now() >= deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One record as a consumer received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Reads partitions `0..partitions` of `topic` from the beginning with an assign-based consumer
/// (no group) until every partition has reported end-of-partition and at least `at_least`
/// records arrived, or `timeout` passes. Returns the records in arrival order.
/// Any consumer error other than end-of-partition fails the test.
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    at_least: usize,
    timeout: Duration,
) -> Vec<ConsumedRecord> {
    let consumer: BaseConsumer = consumer_config(bootstrap)
        .create()
        .expect("create an rdkafka consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("add a partition to the assignment");
    }
    consumer.assign(&assignment).expect("assign partitions");

    let mut records = Vec::with_capacity(at_least);
    let mut at_eof = BTreeSet::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if at_eof.len() == partitions as usize && records.len() >= at_least {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_eof.insert(partition);
            }
            Some(Err(e)) => panic!(
                "consumer error on {topic} after {} records: {e}",
                records.len()
            ),
            Some(Ok(message)) => {
                at_eof.remove(&message.partition());
                let headers = message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|header| {
                                (header.key.to_string(), header.value.map(<[u8]>::to_vec))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                records.push(ConsumedRecord {
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
        }
    }
    records
}
