//! Transaction admin on a real broker: DescribeProducers shows an idempotent librdkafka
//! producer's state per partition (and refuses unknown partitions as Kafka does), `inlet txn
//! producers` prints the same, a TxnOffsetCommit is verified against the open transaction and
//! stays invisible to OffsetFetch (UNSTABLE_OFFSET_COMMIT with `require_stable`) while it is
//! open, and `inlet txn list/describe/producers` follow a librdkafka transaction.

use std::process::Command;
use std::time::{Duration, Instant};

use inlet_integration_tests::kafka::{create_topic, producer_config};
use inlet_integration_tests::{inlet_bin, Broker};
use inlet_protocol::client::Client;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::describe_producers_response::PartitionResponse;
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, DescribeProducersRequest,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, InitProducerIdRequest,
    InitProducerIdResponse, OffsetFetchRequest, ProducerId, TopicName, TransactionalId,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

const TOPIC: &str = "txn-admin";

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn describe_producers(
    client: &mut Client,
    topic: &str,
    partitions: Vec<i32>,
) -> Vec<PartitionResponse> {
    let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(name(topic))
        .with_partition_indexes(partitions)]);
    let response = client.send(request).await.expect("DescribeProducers");
    response
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_producers_and_the_cli_show_an_idempotent_producers_state() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, 2).await;
    let producer: FutureProducer = producer_config(&bootstrap, "none")
        .create()
        .expect("create the producer");
    for (partition, count) in [(0, 10), (1, 5)] {
        for i in 0..count {
            let value = format!("v{i}");
            producer
                .send(
                    FutureRecord::<(), _>::to(TOPIC)
                        .partition(partition)
                        .payload(&value),
                    Duration::from_secs(30),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("produce to {partition}: {e}"));
        }
    }

    let mut client = Client::connect(&bootstrap, "txn-admin-test")
        .await
        .expect("connect");
    let partitions = describe_producers(&mut client, TOPIC, vec![0, 1, 7]).await;
    assert_eq!(partitions.len(), 3);
    let mut producer_ids = Vec::new();
    for (p, last_sequence) in [(0usize, 9), (1, 4)] {
        let answer = &partitions[p];
        assert_eq!(answer.error_code, 0, "{answer:?}");
        assert_eq!(answer.active_producers.len(), 1, "{answer:?}");
        let state = &answer.active_producers[0];
        assert!(state.producer_id.0 >= 0);
        assert_eq!(state.producer_epoch, 0);
        assert_eq!(state.last_sequence, last_sequence);
        assert!(state.last_timestamp > 0);
        assert_eq!(state.coordinator_epoch, -1);
        assert_eq!(state.current_txn_start_offset, -1);
        producer_ids.push(state.producer_id.0);
    }
    assert_eq!(
        producer_ids[0], producer_ids[1],
        "one producer id per producer"
    );
    assert_eq!(
        partitions[2].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let unknown = describe_producers(&mut client, "no-such-topic", vec![0]).await;
    assert_eq!(
        unknown[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );

    let run = |args: &[&str]| {
        Command::new(inlet_bin())
            .arg("--bootstrap-server")
            .arg(&bootstrap)
            .args(args)
            .env_remove("INLET_BOOTSTRAP")
            .output()
            .expect("run inlet")
    };
    let output = run(&["--output", "json", "txn", "producers", TOPIC]);
    assert!(output.status.success(), "{output:?}");
    let rows: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let rows = rows.as_array().expect("an array of producers");
    let seen: Vec<(i64, i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["partition"].as_i64().unwrap(),
                r["producer_id"].as_i64().unwrap(),
                r["last_sequence"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, vec![(0, producer_ids[0], 9), (1, producer_ids[0], 4)]);
    let output = run(&["txn", "producers", TOPIC, "--partition", "1"]);
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("PARTITION"), "{table}");
    assert!(lines[1].starts_with("1 "), "{table}");
    let output = run(&["txn", "producers", TOPIC, "--partition", "9"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no partition 9"),
        "{output:?}"
    );
}

/// FindCoordinator for `group` until the offsets topic exists and the coordinator answers.
async fn wait_for_coordinator(client: &mut Client, group: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let request =
            FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string()));
        let response = client
            .send_capped(request, 3)
            .await
            .expect("FindCoordinator");
        if response.error_code == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no coordinator: {response:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// OffsetFetch v7 of partition 0: (error code, committed offset).
async fn fetch_v7(client: &mut Client, group: &str, require_stable: bool) -> (i16, i64) {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_require_stable(require_stable)
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(name(TOPIC))
            .with_partition_indexes(vec![0])]));
    let response = client.send_capped(request, 7).await.expect("OffsetFetch");
    assert_eq!(response.error_code, 0, "{response:?}");
    let p = &response.topics[0].partitions[0];
    (p.error_code, p.committed_offset)
}

/// Sends `request` until its answer is not a retriable coordinator error (the coordinators load
/// their partitions after the internal topics are created); the final answer's error code.
async fn until_settled<R, F>(
    client: &mut Client,
    request: R,
    version: i16,
    code: F,
) -> (i16, R::Response)
where
    R: kafka_protocol::protocol::Request + kafka_protocol::protocol::Message + Clone,
    F: Fn(&R::Response) -> i16,
{
    let retriable = [
        ResponseError::NotCoordinator.code(),
        ResponseError::CoordinatorLoadInProgress.code(),
        ResponseError::CoordinatorNotAvailable.code(),
        ResponseError::ConcurrentTransactions.code(),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = client
            .send_capped(request.clone(), version)
            .await
            .expect("a response");
        let answer = code(&response);
        if !retriable.contains(&answer) || Instant::now() >= deadline {
            return (answer, response);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// TxnOffsetCommit v3 of offset 17 for partition 0 of [`TOPIC`]; its error code.
async fn txn_offset_commit(client: &mut Client, group: &str, producer_id: i64, epoch: i16) -> i16 {
    let commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(name(TOPIC))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(17)
                .with_committed_leader_epoch(-1)])]);
    until_settled(client, commit, 3, |r: &TxnOffsetCommitResponse| {
        r.topics[0].partitions[0].error_code
    })
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transactions_offsets_are_verified_unstable_and_invisible() {
    let broker = Broker::start_with(inlet_integration_tests::BrokerOptions {
        extra_args: vec!["--transaction-state-log-num-partitions".into(), "2".into()],
        ..Default::default()
    });
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, 1).await;
    let mut client = Client::connect(&bootstrap, "txn-admin-test")
        .await
        .expect("connect");
    let group = "txn-offsets";
    wait_for_coordinator(&mut client, group).await;
    let find = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_static_str("tx"))
        .with_key_type(1);
    let (code, _) = until_settled(&mut client, find, 3, |r: &FindCoordinatorResponse| {
        r.error_code
    })
    .await;
    assert_eq!(code, 0);
    let init = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let (code, init) = until_settled(&mut client, init, 4, |r: &InitProducerIdResponse| {
        r.error_code
    })
    .await;
    assert_eq!(code, 0, "{init:?}");
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);

    // Before AddOffsetsToTxn the offsets partition is not in the transaction.
    assert_eq!(
        txn_offset_commit(&mut client, group, pid, epoch).await,
        ResponseError::InvalidTxnState.code()
    );
    let add = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_group_id(GroupId(StrBytes::from_static_str(group)));
    let (code, _) = until_settled(&mut client, add, 3, |r: &AddOffsetsToTxnResponse| {
        r.error_code
    })
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        txn_offset_commit(&mut client, group, pid, epoch + 1).await,
        ResponseError::InvalidProducerEpoch.code()
    );
    assert_eq!(txn_offset_commit(&mut client, group, pid, epoch).await, 0);

    assert_eq!(fetch_v7(&mut client, group, false).await, (0, -1));
    assert_eq!(
        fetch_v7(&mut client, group, true).await,
        (ResponseError::UnstableOffsetCommit.code(), -1)
    );
    // v8 batches groups; the same answer per group.
    let request = OffsetFetchRequest::default()
        .with_require_stable(true)
        .with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(StrBytes::from_static_str(group)))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(name(TOPIC))
                .with_partition_indexes(vec![0])]))]);
    let response = client
        .send_capped(request, 8)
        .await
        .expect("OffsetFetch v8");
    let p = &response.groups[0].topics[0].partitions[0];
    assert_eq!(
        (p.error_code, p.committed_offset),
        (ResponseError::UnstableOffsetCommit.code(), -1)
    );
}

/// `inlet --output json ARGS` against `bootstrap`: exit code and parsed stdout (Null if none).
fn inlet_json(bootstrap: &str, args: &[&str]) -> (i32, Value, String) {
    let output = Command::new(inlet_bin())
        .arg("--bootstrap-server")
        .arg(bootstrap)
        .args(["--output", "json"])
        .args(args)
        .env_remove("INLET_BOOTSTRAP")
        .output()
        .expect("run inlet");
    let value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), value, stderr)
}

/// The `transactional_id`s `inlet txn list ARGS` prints.
fn listed(bootstrap: &str, args: &[&str]) -> Vec<(String, String, i64)> {
    let mut all = vec!["txn", "list"];
    all.extend_from_slice(args);
    let (code, value, stderr) = inlet_json(bootstrap, &all);
    assert_eq!(code, 0, "{stderr}");
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|t| {
            (
                t["transactional_id"].as_str().unwrap().to_string(),
                t["state"].as_str().unwrap().to_string(),
                t["producer_id"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn inlet_txn_list_describe_and_producers_follow_a_transaction() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let wait = Duration::from_secs(15);
    let broker = Broker::start_with(inlet_integration_tests::BrokerOptions {
        extra_args: vec!["--transaction-state-log-num-partitions".into(), "2".into()],
        ..Default::default()
    });
    let bootstrap = broker.bootstrap();
    let topic = "txn-cli";
    inlet_integration_tests::cluster::runtime().block_on(create_topic(&bootstrap, topic, 1));
    let producer: BaseProducer = inlet_integration_tests::kafka::client_config(&bootstrap)
        .set("transactional.id", "cli-tx")
        .set("linger.ms", "5")
        .create()
        .expect("create a transactional producer");
    // The transaction coordinator may still be loading its partition: retriable errors.
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(error) = producer.init_transactions(wait) {
        assert!(Instant::now() < deadline, "init_transactions: {error}");
        std::thread::sleep(Duration::from_millis(200));
    }
    producer.begin_transaction().expect("begin_transaction");
    for value in ["a", "b", "c"] {
        producer
            .send(BaseRecord::<(), str>::to(topic).payload(value).partition(0))
            .unwrap_or_else(|(e, _)| panic!("enqueue {value}: {e}"));
    }
    producer.flush(wait).expect("flush");

    let ongoing = listed(&bootstrap, &[]);
    assert_eq!(ongoing.len(), 1, "{ongoing:?}");
    let (id, state, producer_id) = ongoing[0].clone();
    assert_eq!((id.as_str(), state.as_str()), ("cli-tx", "Ongoing"));
    let pid = producer_id.to_string();
    assert_eq!(
        listed(&bootstrap, &["--state", "Ongoing", "--producer-id", &pid]).len(),
        1
    );
    assert!(listed(&bootstrap, &["--state", "CompleteAbort"]).is_empty());
    assert!(listed(&bootstrap, &["--producer-id", "999999"]).is_empty());

    let (code, described, stderr) = inlet_json(&bootstrap, &["txn", "describe", "cli-tx"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(described["state"], "Ongoing", "{described}");
    assert_eq!(described["producer_id"].as_i64(), Some(producer_id));
    assert_eq!(described["partitions"], serde_json::json!([[topic, 0]]));

    // The open transaction started at offset 0 of the partition.
    let (code, producers, stderr) = inlet_json(&bootstrap, &["txn", "producers", topic]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        producers[0]["producer_id"].as_i64(),
        Some(producer_id),
        "{producers}"
    );
    assert_eq!(producers[0]["current_txn_start_offset"], 0, "{producers}");
    assert_eq!(producers[0]["last_sequence"], 2, "{producers}");

    producer
        .commit_transaction(wait)
        .expect("commit_transaction");
    let deadline = Instant::now() + wait;
    loop {
        let (_, described, _) = inlet_json(&bootstrap, &["txn", "describe", "cli-tx"]);
        if described["state"] == "CompleteCommit" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never CompleteCommit: {described}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, producers, _) = inlet_json(&bootstrap, &["txn", "producers", topic]);
    assert_eq!(producers[0]["current_txn_start_offset"], -1, "{producers}");
    assert!(
        producers[0]["coordinator_epoch"].as_i64() >= Some(0),
        "{producers}"
    );

    let (code, _, stderr) = inlet_json(&bootstrap, &["txn", "describe", "no-such-tx"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no-such-tx"), "{stderr}");
    let (code, _, stderr) = inlet_json(&bootstrap, &["txn", "list", "--state", "Bogus"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("Bogus"), "{stderr}");
}

/// OffsetFetch v7 of partition 0 with `require_stable`, retried while UNSTABLE_OFFSET_COMMIT.
fn stable_offset(bootstrap: &str, group: &str, topic: &str) -> i64 {
    inlet_integration_tests::cluster::runtime().block_on(async {
        let mut client = Client::connect(bootstrap, "txn-admin-test")
            .await
            .expect("connect");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let request = OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                .with_require_stable(true)
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(name(topic))
                    .with_partition_indexes(vec![0])]));
            let response = client.send_capped(request, 7).await.expect("OffsetFetch");
            let p = &response.topics[0].partitions[0];
            if p.error_code == 0 {
                return p.committed_offset;
            }
            assert_eq!(p.error_code, ResponseError::UnstableOffsetCommit.code());
            assert!(Instant::now() < deadline, "offsets never stable");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// The marker writer completes the group's pending offsets (`txn::markers::append_local_marker`
/// calls `GroupCoordinator::complete_transaction` for `__consumer_offsets` partitions).
#[test]
fn send_offsets_to_transaction_commits_offsets_with_the_transaction_and_abort_drops_them() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{Offset, TopicPartitionList};
    let wait = Duration::from_secs(15);
    let broker = Broker::start_with(inlet_integration_tests::BrokerOptions {
        extra_args: vec!["--transaction-state-log-num-partitions".into(), "2".into()],
        ..Default::default()
    });
    let bootstrap = broker.bootstrap();
    let (input, output, group) = ("eos-in", "eos-out", "eos-group");
    inlet_integration_tests::cluster::runtime().block_on(async {
        create_topic(&bootstrap, input, 1).await;
        create_topic(&bootstrap, output, 1).await;
    });
    let consumer: BaseConsumer = inlet_integration_tests::kafka::client_config(&bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("create the consumer");
    let metadata = consumer.group_metadata().expect("group metadata");
    let producer: BaseProducer = inlet_integration_tests::kafka::client_config(&bootstrap)
        .set("transactional.id", "eos-tx")
        .set("linger.ms", "5")
        .create()
        .expect("create a transactional producer");
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(error) = producer.init_transactions(wait) {
        assert!(Instant::now() < deadline, "init_transactions: {error}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let transaction = |position: i64, commit: bool| {
        producer.begin_transaction().expect("begin_transaction");
        producer
            .send(BaseRecord::<(), str>::to(output).payload("r").partition(0))
            .unwrap_or_else(|(e, _)| panic!("enqueue: {e}"));
        // Delivery reports are served by polling; abort refuses to run with some unserved.
        producer.flush(wait).expect("flush");
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(input, 0, Offset::Offset(position))
            .expect("offset");
        producer
            .send_offsets_to_transaction(&offsets, &metadata, wait)
            .expect("send_offsets_to_transaction");
        if commit {
            producer
                .commit_transaction(wait)
                .expect("commit_transaction");
        } else {
            producer.abort_transaction(wait).expect("abort_transaction");
        }
    };
    transaction(5, true);
    assert_eq!(stable_offset(&bootstrap, group, input), 5);
    transaction(9, false);
    assert_eq!(stable_offset(&bootstrap, group, input), 5);
    transaction(12, true);
    assert_eq!(stable_offset(&bootstrap, group, input), 12);
}
