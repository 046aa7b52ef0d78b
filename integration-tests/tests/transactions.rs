//! Transactions with librdkafka's transactional producer against the real broker: commit and
//! abort leave their markers (control batches) in the log, a second producer with the same
//! `transactional.id` fences the first, a transaction left open past its timeout is aborted,
//! and so is one left open by a broker killed with `kill -9` (after the restart).

use std::time::{Duration, Instant};

use inlet_integration_tests::kafka::{client_config, consume_all, create_topic};
use inlet_integration_tests::{cluster, Broker, BrokerOptions};
use inlet_protocol::batch::BatchIter;
use inlet_protocol::client::Client;
use inlet_protocol::records::decode_batch;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, FetchRequest, ListTransactionsRequest, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Bound on every wait of these tests.
const WAIT: Duration = Duration::from_secs(15);

fn broker() -> Broker {
    Broker::start_with(BrokerOptions {
        // Few state partitions: quick to create in a debug build.
        extra_args: vec!["--transaction-state-log-num-partitions".into(), "2".into()],
        ..Default::default()
    })
}

fn transactional_producer(bootstrap: &str, id: &str, timeout_ms: u32) -> BaseProducer {
    let timeout = timeout_ms.to_string();
    let producer: BaseProducer = client_config(bootstrap)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", &timeout)
        .set("message.timeout.ms", &timeout)
        .set("socket.timeout.ms", &timeout)
        .set("linger.ms", "5")
        .create()
        .expect("create a transactional producer");
    producer.init_transactions(WAIT).expect("init_transactions");
    producer
}

fn send(producer: &BaseProducer, topic: &str, values: &[&str]) {
    for value in values {
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .payload(*value)
                    .partition(0),
            )
            .unwrap_or_else(|(e, _)| panic!("enqueue {value}: {e}"));
    }
    producer.flush(WAIT).expect("flush");
}

/// Control batches of partition 0 of `topic` as (producer id, commit), read with a raw Fetch
/// (read_uncommitted, so everything up to the high watermark).
fn markers(bootstrap: &str, topic: &str) -> Vec<(i64, bool)> {
    markers_of(bootstrap, topic, 0).unwrap_or_default()
}

/// [`markers`] of `partition`; None when `bootstrap` does not lead it.
fn markers_of(bootstrap: &str, topic: &str, partition: i32) -> Option<Vec<(i64, bool)>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut client = Client::connect(bootstrap, "txn-test")
            .await
            .expect("connect");
        let request = FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_isolation_level(0)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])]);
        let response = client.send_version(request, 11).await.expect("fetch");
        let fetched = &response.responses[0].partitions[0];
        if fetched.error_code != 0 {
            return None;
        }
        let records = fetched.records.clone().unwrap_or_default();
        let mut found = Vec::new();
        for item in BatchIter::new(&records) {
            let (header, range) = item.expect("a valid batch");
            if !header.is_control() {
                continue;
            }
            // The control record's key: version i16, then type i16 (0 abort, 1 commit).
            let (_, control) = decode_batch(&records.slice(range)).expect("a decodable batch");
            let key = control[0].key.clone().expect("a control record has a key");
            let commit = key.get(2..4) == Some(&[0, 1][..]);
            found.push((header.producer_id, commit));
        }
        Some(found)
    })
}

/// DescribeTransactions' state of `id` (it must be known) and ListTransactions' ids.
fn admin_view(bootstrap: &str, id: &str) -> (String, Vec<String>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut client = Client::connect(bootstrap, "txn-admin")
            .await
            .expect("connect");
        let described = client
            .send_version(
                DescribeTransactionsRequest::default().with_transactional_ids(vec![
                    TransactionalId(StrBytes::from_string(id.to_string())),
                ]),
                0,
            )
            .await
            .expect("DescribeTransactions");
        let state = &described.transaction_states[0];
        assert_eq!(state.error_code, 0, "DescribeTransactions error");
        let listed = client
            .send_version(ListTransactionsRequest::default(), 0)
            .await
            .expect("ListTransactions");
        assert_eq!(listed.error_code, 0, "ListTransactions error");
        (
            state.transaction_state.to_string(),
            listed
                .transaction_states
                .iter()
                .map(|t| t.transactional_id.to_string())
                .collect(),
        )
    })
}

/// Waits until partition 0 of `topic` holds `count` markers; returns them.
fn wait_for_markers(bootstrap: &str, topic: &str, count: usize) -> Vec<(i64, bool)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = markers(bootstrap, topic);
        if found.len() >= count || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn commit_and_abort_leave_markers_and_a_new_producer_fences_the_old() {
    let broker = broker();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "txn-out", 1).await;
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let producer = transactional_producer(&b, "tx-basic", 10_000);
        producer.begin_transaction().expect("begin");
        send(&producer, "txn-out", &["c1", "c2", "c3"]);
        producer.commit_transaction(WAIT).expect("commit");
        producer.begin_transaction().expect("begin");
        send(&producer, "txn-out", &["a1", "a2"]);
        producer.abort_transaction(WAIT).expect("abort");
        let found = wait_for_markers(&b, "txn-out", 2);
        assert_eq!(found.len(), 2, "one marker per transaction: {found:?}");
        assert!(found[0].1 && !found[1].1, "commit then abort: {found:?}");
        // librdkafka reads read_committed by default: the aborted records never show.
        let read: Vec<String> = consume_all(&b, "txn-out", 1, 3, WAIT)
            .into_iter()
            .filter_map(|r| r.value.map(|v| String::from_utf8_lossy(&v).into_owned()))
            .collect();
        assert_eq!(
            read,
            ["c1", "c2", "c3"],
            "read_committed sees the committed records only"
        );

        // The admin view (KIP-664) of the id: its last transaction aborted.
        // (Completed just after its markers are written: polled.)
        let deadline = Instant::now() + WAIT;
        let (described, listed) = loop {
            let view = admin_view(&b, "tx-basic");
            if view.0 == "CompleteAbort" || Instant::now() > deadline {
                break view;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(described, "CompleteAbort");
        assert!(listed.contains(&"tx-basic".to_string()), "{listed:?}");

        // Fencing: a second producer with the same id; the first fails at its next call.
        let first = transactional_producer(&b, "tx-fence", 10_000);
        first.begin_transaction().expect("begin");
        send(&first, "txn-out", &["zombie"]);
        let _second = transactional_producer(&b, "tx-fence", 10_000);
        let error = first
            .commit_transaction(WAIT)
            .expect_err("the fenced producer's commit fails");
        let KafkaError::Transaction(error) = error else {
            panic!("unexpected error {error:?}")
        };
        assert!(
            matches!(
                error.code(),
                RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced
            ) || error.is_fatal(),
            "fenced: {error:?}"
        );
        // The zombie's open transaction was aborted when the second producer initialised.
        let found = wait_for_markers(&b, "txn-out", 3);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            !found[2].1,
            "the zombie's transaction is aborted: {found:?}"
        );
    })
    .await
    .expect("the test body");
}

#[tokio::test(flavor = "multi_thread")]
async fn open_transactions_are_aborted_after_their_timeout_and_after_a_kill9_restart() {
    let mut broker = broker();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "txn-timeout", 1).await;
    create_topic(&bootstrap, "txn-crash", 1).await;
    let b = bootstrap.clone();
    let crash_producer = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let idle = transactional_producer(&b, "tx-idle", 2_000);
        idle.begin_transaction().expect("begin");
        send(&idle, "txn-timeout", &["left open"]);
        let found = wait_for_markers(&b, "txn-timeout", 1);
        assert_eq!(
            found.len(),
            1,
            "the timed-out transaction is aborted: {found:?}"
        );
        assert!(!found[0].1, "an abort marker: {found:?}");
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "not before the timeout"
        );

        let crashing = transactional_producer(&b, "tx-crash", 3_000);
        crashing.begin_transaction().expect("begin");
        send(&crashing, "txn-crash", &["in flight"]);
        crashing
    })
    .await
    .expect("the test body");
    broker.kill9();
    drop(crash_producer);
    broker.restart();
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let found = wait_for_markers(&b, "txn-crash", 1);
        assert_eq!(found.len(), 1, "aborted after the restart: {found:?}");
        assert!(!found[0].1, "an abort marker: {found:?}");
    })
    .await
    .expect("the test body");
}

#[tokio::test(flavor = "multi_thread")]
async fn transactional_batches_outside_a_transaction_and_client_markers_are_refused() {
    use inlet_integration_tests::raw;
    use inlet_protocol::batch::{compute_crc, TestBatchBuilder};

    let broker = broker();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "txn-raw", 1).await;
    let transactional = TestBatchBuilder {
        producer_id: 5,
        producer_epoch: 0,
        base_sequence: 0,
        transactional: true,
        ..Default::default()
    }
    .build(&[(b"k", b"v")]);
    // Kafka refuses transactional batches from a request without a transactional id.
    let (code, _) = raw::produce(broker.addr(), "txn-raw", &transactional);
    assert_eq!(code, 53, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED");
    // A control batch (a marker) from a client.
    let mut control =
        TestBatchBuilder::default().build(&[(&[0, 0, 0, 1][..], &[0, 0, 0, 0, 0, 0][..])]);
    control[22] |= 0x20;
    let crc = compute_crc(&control).expect("a parsable batch");
    control[17..21].copy_from_slice(&crc.to_be_bytes());
    let (code, _) = raw::produce(broker.addr(), "txn-raw", &control);
    assert_eq!(code, 87, "INVALID_RECORD");
}

#[tokio::test(flavor = "multi_thread")]
async fn markers_reach_partitions_led_by_other_brokers() {
    let brokers = cluster::start_cluster_with(&["--transaction-state-log-num-partitions", "1"]);
    let bootstraps: Vec<String> = brokers.iter().map(Broker::bootstrap).collect();
    let bootstrap = bootstraps.join(",");
    // One partition per broker (single replicas are spread over the brokers).
    create_topic(&bootstrap, "txn-spread", 3).await;
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let producer = transactional_producer(&b, "tx-spread", 10_000);
        producer.begin_transaction().expect("begin");
        for partition in 0..3 {
            producer
                .send(
                    BaseRecord::<(), str>::to("txn-spread")
                        .payload("spread")
                        .partition(partition),
                )
                .unwrap_or_else(|(e, _)| panic!("enqueue: {e}"));
        }
        producer.flush(WAIT).expect("flush");
        producer.commit_transaction(WAIT).expect("commit");
        let deadline = Instant::now() + WAIT;
        for partition in 0..3 {
            let found = loop {
                let found = bootstraps
                    .iter()
                    .find_map(|one| markers_of(one, "txn-spread", partition))
                    .unwrap_or_default();
                if !found.is_empty() || Instant::now() > deadline {
                    break found;
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            assert_eq!(found.len(), 1, "partition {partition}: {found:?}");
            assert!(found[0].1, "a commit marker on partition {partition}");
        }
    })
    .await
    .expect("the test body");
}

/// The coordinator of a transactional id is the leader of its `__transaction_state` partition,
/// so it moves when that broker dies: after kill -9 of the coordinator, a new producer with the
/// same `transactional.id` initialises against the new leader (which replayed the state), the
/// transaction the dead one left open is aborted, and committed ones stay committed.
#[tokio::test(flavor = "multi_thread")]
async fn the_coordinator_moves_with_its_state_partition_when_its_broker_dies() {
    use inlet_integration_tests::kafka::create_replicated_topic;
    use kafka_protocol::messages::FindCoordinatorRequest;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};

    let mut brokers = cluster::start_cluster_with(&["--transaction-state-log-num-partitions", "1"]);
    let bootstrap = brokers
        .iter()
        .map(Broker::bootstrap)
        .collect::<Vec<_>>()
        .join(",");
    create_replicated_topic(
        &bootstrap,
        "txn-moving",
        1,
        3,
        &[("min.insync.replicas", "2")],
        WAIT,
    )
    .await;
    async fn coordinator(bootstrap: &str) -> Option<i32> {
        for one in bootstrap.split(',') {
            let Ok(mut client) = Client::connect(one, "txn-test").await else {
                continue;
            };
            let request = FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_key(StrBytes::from_static_str("tx-moving"));
            if let Ok(found) = client.send_capped(request, 3).await {
                if found.error_code == 0 {
                    return Some(found.node_id.0);
                }
            }
        }
        None
    }
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let first = transactional_producer(&b, "tx-moving", 20_000);
        first.begin_transaction().expect("begin");
        send(&first, "txn-moving", &["a1", "a2"]);
        first.commit_transaction(WAIT).expect("commit");
        first.begin_transaction().expect("begin");
        send(&first, "txn-moving", &["left-open"]);
        std::mem::forget(first); // its process "dies" with the broker below
    })
    .await
    .expect("the first producer");
    let dead = coordinator(&bootstrap).await.expect("a coordinator");
    brokers[(dead - 1) as usize].kill9();
    let alive = brokers
        .iter()
        .filter(|b| b.node_id() != dead)
        .map(Broker::bootstrap)
        .collect::<Vec<_>>()
        .join(",");
    let b = alive.clone();
    let started = Instant::now();
    tokio::task::spawn_blocking(move || {
        let second: BaseProducer = client_config(&b)
            .set("transactional.id", "tx-moving")
            .set("transaction.timeout.ms", "20000")
            .set("message.timeout.ms", "20000")
            .set("linger.ms", "5")
            .create()
            .expect("create");
        second
            .init_transactions(Duration::from_secs(30))
            .expect("init_transactions at the new coordinator");
        second.begin_transaction().expect("begin");
        send(&second, "txn-moving", &["c1"]);
        second.commit_transaction(WAIT).expect("commit");
    })
    .await
    .expect("the second producer");
    eprintln!(
        "a new producer committed {:?} after the coordinator died",
        started.elapsed()
    );
    let moved = coordinator(&alive).await.expect("a new coordinator");
    assert_ne!(moved, dead);

    let b = alive.clone();
    let committed = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client_config(&b)
            .set("group.id", "txn-moving-reader")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset("txn-moving", 0, Offset::Beginning)
            .expect("assignment");
        consumer.assign(&assignment).expect("assign");
        let mut values = Vec::new();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => values
                    .push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()),
                Some(Err(KafkaError::PartitionEOF(_))) if values.len() >= 3 => break,
                _ => {}
            }
        }
        values
    })
    .await
    .expect("the reader");
    assert_eq!(committed, ["a1", "a2", "c1"]);
}
