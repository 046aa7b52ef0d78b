//! Consumer groups in a three-process cluster: a group's coordinator is the leader of its
//! `__consumer_offsets` partition. Every broker's FindCoordinator agrees (single and batched
//! keys), groups spread over several coordinators, librdkafka consumes and commits through a
//! coordinator that is not its bootstrap broker, a broker that is not a group's coordinator
//! refuses its requests with NOT_COORDINATOR, and when the coordinator is killed with SIGKILL the
//! group moves to its partition's new leader and joins and commits there. (Offsets do not move
//! with it yet: replication is the next issue, so nothing here asserts they survive the move.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use inlet_integration_tests::cluster::{runtime, start_cluster_with, wait_for, WAIT};
use inlet_integration_tests::kafka::{client_config, create_replicated_topic, producer_config};
use inlet_integration_tests::Broker;
use inlet_protocol::client::Client;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, JoinGroupRequest, MetadataRequest, OffsetCommitRequest,
    OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// `--offsets-topic-num-partitions` of the test cluster.
const OFFSETS_PARTITIONS: usize = 12;
const TOPIC: &str = "events";
const RECORDS: usize = 30;

async fn client(broker: &Broker) -> Option<Client> {
    Client::connect(broker.bootstrap(), "cluster-groups-test")
        .await
        .ok()
}

/// FindCoordinator v3 (one key): the coordinator's node id, or the error code; None if the
/// broker did not answer.
fn find_coordinator(broker: &Broker, group: &str) -> Option<Result<i32, i16>> {
    runtime().block_on(async {
        let mut client = client(broker).await?;
        let request =
            FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string()));
        let response = client.send_capped(request, 3).await.ok()?;
        Some(match response.error_code {
            0 => Ok(response.node_id.0),
            code => Err(code),
        })
    })
}

/// FindCoordinator v4 (batched keys): every group's coordinator, if all were found.
fn find_coordinators_batched(broker: &Broker, groups: &[String]) -> Option<BTreeMap<String, i32>> {
    runtime().block_on(async {
        let mut client = client(broker).await?;
        let request = FindCoordinatorRequest::default().with_coordinator_keys(
            groups
                .iter()
                .map(|g| StrBytes::from_string(g.clone()))
                .collect(),
        );
        let response = client.send_capped(request, 4).await.ok()?;
        response
            .coordinators
            .iter()
            .map(|c| (c.error_code == 0).then(|| (c.key.to_string(), c.node_id.0)))
            .collect()
    })
}

/// The partition count and replication factors of `__consumer_offsets` per one broker.
fn offsets_topic_shape(broker: &Broker) -> Option<(usize, BTreeSet<usize>)> {
    runtime().block_on(async {
        let mut client = client(broker).await?;
        let request = MetadataRequest::default().with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default().with_name(
                Some(TopicName(StrBytes::from_static_str("__consumer_offsets"))),
            ),
        ]));
        let response = client.send_capped(request, 9).await.ok()?;
        let topic = response.topics.first()?;
        (topic.error_code == 0).then(|| {
            (
                topic.partitions.len(),
                topic
                    .partitions
                    .iter()
                    .map(|p| p.replica_nodes.len())
                    .collect(),
            )
        })
    })
}

/// A JoinGroup (v5) of a new member; the error code of the answer.
fn join_group_error(broker: &Broker, group: &str) -> Option<i16> {
    runtime().block_on(async {
        let mut client = client(broker).await?;
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0]))]);
        let response = client.send_capped(request, 5).await.ok()?;
        Some(response.error_code)
    })
}

/// OffsetFetch (v7) of `group` for partitions 0..3 of [`TOPIC`]: the top-level error code and the
/// committed offsets by partition.
fn offset_fetch(broker: &Broker, group: &str) -> Option<(i16, BTreeMap<i32, i64>)> {
    runtime().block_on(async {
        let mut client = client(broker).await?;
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partition_indexes(vec![0, 1, 2])]));
        let response = client.send_capped(request, 7).await.ok()?;
        let offsets = response
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| (p.partition_index, p.committed_offset))
            .collect();
        Some((response.error_code, offsets))
    })
}

/// Node `id` of the cluster (ids start at 1).
fn at(nodes: &[Broker], id: i32) -> &Broker {
    &nodes[(id - 1) as usize]
}

/// An OffsetCommit (v7) of `offset` for every partition 0..3 of [`TOPIC`] by a group with no
/// members (generation -1); the error codes of the answer.
fn offset_commit(broker: &Broker, group: &str, offset: i64) -> Option<Vec<i16>> {
    runtime().block_on(async {
        let mut client = client(broker).await?;
        let partitions = (0..3)
            .map(|p| {
                OffsetCommitRequestPartition::default()
                    .with_partition_index(p)
                    .with_committed_offset(offset)
            })
            .collect();
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(partitions)]);
        let response = client.send_capped(request, 7).await.ok()?;
        Some(
            response
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| p.error_code)
                .collect(),
        )
    })
}

fn create_topic(bootstrap: &str) {
    runtime().block_on(create_replicated_topic(
        bootstrap,
        TOPIC,
        3,
        3,
        &[],
        Duration::from_secs(20),
    ));
}

fn produce(bootstrap: &str) {
    let producer: FutureProducer = producer_config(bootstrap, "none")
        .create()
        .expect("producer");
    runtime().block_on(async {
        for i in 0..RECORDS {
            let key = format!("key-{i}");
            let value = format!("value-{i}");
            producer
                .send(
                    FutureRecord::to(TOPIC).key(&key).payload(&value),
                    Duration::from_secs(20),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("produce {i}: {e}"));
        }
    });
}

fn group_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    consumer
}

#[test]
fn groups_are_coordinated_by_the_leaders_of_their_offsets_partitions() {
    let mut nodes = start_cluster_with(&[
        "--offsets-topic-num-partitions",
        &OFFSETS_PARTITIONS.to_string(),
        "--group-initial-rebalance-delay-ms",
        "0",
    ]);
    let groups: Vec<String> = (0..12).map(|i| format!("group-{i}")).collect();

    // The first lookup creates __consumer_offsets through the controller; then every broker
    // names the same coordinator for each group, with one key per request or all at once.
    let (coordinators, took) = wait_for("every broker to agree on every coordinator", || {
        let mut agreed = BTreeMap::new();
        for group in &groups {
            let answers: Vec<i32> = nodes
                .iter()
                .map(|n| find_coordinator(n, group)?.ok())
                .collect::<Option<_>>()?;
            if answers.iter().any(|a| *a != answers[0]) {
                return None;
            }
            agreed.insert(group.clone(), answers[0]);
        }
        Some(agreed)
    });
    eprintln!("coordinators {coordinators:?} agreed after {took:?}");
    for node in &nodes {
        let (batched, _) = wait_for("a batched FindCoordinator answer", || {
            find_coordinators_batched(node, &groups)
        });
        assert_eq!(batched, coordinators, "v4 batched keys agree with v3");
    }
    let distinct: BTreeSet<i32> = coordinators.values().copied().collect();
    assert!(
        distinct.len() >= 2,
        "groups spread over several coordinators: {coordinators:?}"
    );
    let (shape, _) = wait_for("__consumer_offsets in Metadata", || {
        offsets_topic_shape(&nodes[0])
    });
    assert_eq!(
        shape.0, OFFSETS_PARTITIONS,
        "--offsets-topic-num-partitions"
    );
    assert_eq!(shape.1, BTreeSet::from([3]), "replication factor 3");

    // librdkafka, bootstrapped to broker 1 only, consumes and commits in a group coordinated by
    // another broker.
    let bootstrap = nodes[0].bootstrap();
    let (group, coordinator) = coordinators
        .iter()
        .find(|(_, &c)| c != 1)
        .map(|(g, &c)| (g.clone(), c))
        .expect("a group coordinated by broker 2 or 3");
    create_topic(&bootstrap);
    produce(&bootstrap);
    let consumer = group_consumer(&bootstrap, &group);
    let mut values = BTreeSet::new();
    let start = Instant::now();
    while values.len() < RECORDS && start.elapsed() < WAIT {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume");
            values.insert(
                String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            );
        }
    }
    assert_eq!(values.len(), RECORDS, "every record consumed");
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit through the coordinator");
    let (fetched, _) = wait_for("the committed offsets at the coordinator", || {
        offset_fetch(at(&nodes, coordinator), &group)
    });
    assert_eq!(fetched.0, 0);
    assert_eq!(
        fetched.1.values().sum::<i64>(),
        RECORDS as i64,
        "committed positions at the coordinator: {fetched:?}"
    );

    // Any other broker refuses the group's requests: the client must go to the coordinator.
    let other = (1..=3)
        .find(|&id| id != coordinator)
        .expect("another broker");
    let not_coordinator = ResponseError::NotCoordinator.code();
    assert_eq!(
        join_group_error(at(&nodes, other), &group),
        Some(not_coordinator)
    );
    assert_eq!(
        offset_fetch(at(&nodes, other), &group).map(|(code, _)| code),
        Some(not_coordinator)
    );
    drop(consumer);

    // kill -9 the coordinator: once it is fenced, the group's partition has a new leader, which
    // every survivor names, and the group joins and commits there.
    nodes[(coordinator - 1) as usize].kill9();
    let survivors: Vec<&Broker> = (1..=3)
        .filter(|&id| id != coordinator)
        .map(|id| &nodes[(id - 1) as usize])
        .collect();
    let (moved, took) = wait_for("the group's coordinator to move", || {
        let answers: Vec<i32> = survivors
            .iter()
            .map(|n| find_coordinator(n, &group)?.ok())
            .collect::<Option<_>>()?;
        (answers.iter().all(|&a| a == answers[0]) && answers[0] != coordinator)
            .then_some(answers[0])
    });
    eprintln!("group {group} moved from broker {coordinator} to {moved} in {took:?}");
    let survivor_bootstrap = at(&nodes, moved).bootstrap();
    let consumer = group_consumer(&survivor_bootstrap, &group);
    let (assigned, _) = wait_for("a member of the group at its new coordinator", || {
        let _ = consumer.poll(Duration::from_millis(100));
        let assignment = consumer.assignment().ok()?;
        (assignment.count() == 3).then_some(assignment)
    });
    let mut positions = TopicPartitionList::new();
    for element in assigned.elements() {
        positions
            .add_partition_offset(TOPIC, element.partition(), Offset::Offset(1))
            .expect("offset");
    }
    consumer
        .commit(&positions, CommitMode::Sync)
        .expect("commit at the new coordinator");
    let (fetched, _) = wait_for("the new commit at the new coordinator", || {
        offset_fetch(at(&nodes, moved), &group)
    });
    assert_eq!(fetched.0, 0);
    assert_eq!(
        fetched.1,
        BTreeMap::from([(0, 1), (1, 1), (2, 1)]),
        "committed at the new coordinator"
    );
}

/// A data directory from before the offsets topic was a cluster topic (its one-partition
/// `__consumer_offsets` local, no metadata log) keeps its committed offsets: the topic is
/// registered with its id and its one partition, and its groups are loaded from it. Restarting
/// then keeps them too.
#[test]
fn a_local_offsets_topic_is_adopted_with_its_committed_offsets() {
    let mut broker = Broker::start_with(inlet_integration_tests::BrokerOptions {
        extra_args: vec!["--offsets-topic-num-partitions".into(), "1".into()],
        ..Default::default()
    });
    create_topic_rf1(&broker.bootstrap());
    let group = "legacy-readers";
    let (found, _) = wait_for("a coordinator", || find_coordinator(&broker, group)?.ok());
    assert_eq!(found, 1);
    let (codes, _) = wait_for("a commit", || offset_commit(&broker, group, 42));
    assert_eq!(codes, vec![0, 0, 0]);
    assert!(broker.terminate().success());

    // What an older Inlet left: no metadata log, no migration marker.
    let data = broker.data_dir().to_path_buf();
    std::fs::remove_dir_all(data.join("__cluster_metadata-0")).expect("remove the metadata log");
    std::fs::remove_file(data.join("metadata-migrated")).expect("remove the marker");
    broker.options_mut().extra_args.clear();
    broker.restart();
    let (shape, _) = wait_for("__consumer_offsets in Metadata", || {
        offsets_topic_shape(&broker)
    });
    assert_eq!(
        shape.0, 1,
        "the local topic's one partition, not the default 50"
    );
    let (fetched, _) = wait_for("the committed offsets", || offset_fetch(&broker, group));
    assert_eq!(fetched, (0, BTreeMap::from([(0, 42), (1, 42), (2, 42)])));

    // A plain restart replays the led partition before serving.
    broker.restart();
    let (fetched, _) = wait_for("the committed offsets again", || {
        offset_fetch(&broker, group)
    });
    assert_eq!(fetched, (0, BTreeMap::from([(0, 42), (1, 42), (2, 42)])));
}

fn create_topic_rf1(bootstrap: &str) {
    runtime().block_on(inlet_integration_tests::kafka::create_topic(
        bootstrap, TOPIC, 3,
    ));
}
