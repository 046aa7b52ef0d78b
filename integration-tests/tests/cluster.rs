//! Three `inlet` processes as one cluster (combined mode: each node is broker and controller),
//! driven the way an operator would: they agree on the brokers and the cluster id, the quorum
//! elects a new active controller after the old one is killed with SIGKILL, a broker stopped
//! (SIGSTOP) past `broker.session.timeout.ms` is fenced out of Metadata and unfenced when it
//! resumes, a killed node rejoins and catches up, and a full restart keeps the cluster's identity.
//! The times to elect and to fence are printed (the measured figures).

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use inlet_integration_tests::cluster::{
    runtime, start_cluster, wait_for, SESSION_TIMEOUT_MS, WAIT,
};
use inlet_integration_tests::kafka::{client_config, create_replicated_topic, producer_config};
use inlet_integration_tests::{inlet_bin, Broker};
use inlet_protocol::client::Client;
use kafka_protocol::messages::{
    describe_quorum_request, DescribeClusterRequest, DescribeQuorumRequest, FindCoordinatorRequest,
    InitProducerIdRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

struct Quorum {
    leader: i32,
    epoch: i32,
    high_watermark: i64,
    /// (voter id, log end offset)
    voters: Vec<(i32, i64)>,
}

/// The live brokers and cluster id one broker's Metadata lists.
fn metadata(broker: &Broker) -> Option<(BTreeSet<i32>, String)> {
    runtime().block_on(async {
        let mut client = Client::connect(broker.bootstrap(), "cluster-test")
            .await
            .ok()?;
        let response = client
            .send_capped(MetadataRequest::default().with_topics(Some(vec![])), 12)
            .await
            .ok()?;
        let ids = response.brokers.iter().map(|b| b.node_id.0).collect();
        Some((ids, response.cluster_id?.to_string()))
    })
}

/// Fenced broker ids per DescribeCluster v2 (which lists them when asked to).
fn fenced(broker: &Broker) -> Option<BTreeSet<i32>> {
    runtime().block_on(async {
        let mut client = Client::connect(broker.bootstrap(), "cluster-test")
            .await
            .ok()?;
        let request = DescribeClusterRequest::default().with_include_fenced_brokers(true);
        let response = client.send_capped(request, 2).await.ok()?;
        Some(
            response
                .brokers
                .iter()
                .filter(|b| b.is_fenced)
                .map(|b| b.broker_id.0)
                .collect(),
        )
    })
}

fn describe_quorum(broker: &Broker) -> Option<Quorum> {
    runtime().block_on(async {
        let mut client = Client::connect(broker.bootstrap(), "cluster-test")
            .await
            .ok()?;
        let request = DescribeQuorumRequest::default().with_topics(vec![
            describe_quorum_request::TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
                .with_partitions(vec![describe_quorum_request::PartitionData::default()]),
        ]);
        let response = client.send_capped(request, 1).await.ok()?;
        let partition = response.topics.first()?.partitions.first()?;
        if response.error_code != 0 || partition.error_code != 0 || partition.leader_id.0 < 0 {
            return None;
        }
        Some(Quorum {
            leader: partition.leader_id.0,
            epoch: partition.leader_epoch,
            high_watermark: partition.high_watermark,
            voters: partition
                .current_voters
                .iter()
                .map(|v| (v.replica_id.0, v.log_end_offset))
                .collect(),
        })
    })
}

fn ids(list: &[i32]) -> BTreeSet<i32> {
    list.iter().copied().collect()
}

#[test]
fn three_nodes_agree_fail_over_fence_and_restart() {
    let mut nodes = start_cluster();
    let all = ids(&[1, 2, 3]);

    // Every broker lists the same three brokers and the same cluster id.
    let (cluster_id, _) = wait_for("every broker to list all three", || {
        let answers: Vec<_> = nodes.iter().map(metadata).collect::<Option<_>>()?;
        let first = answers[0].1.clone();
        answers
            .iter()
            .all(|(brokers, id)| *brokers == all && *id == first)
            .then_some(first)
    });
    assert!(!cluster_id.is_empty());

    // The quorum: one leader, three voters, as seen from any broker.
    let (quorum, _) = wait_for("DescribeQuorum", || describe_quorum(&nodes[2]));
    assert!(all.contains(&quorum.leader), "leader {}", quorum.leader);
    assert_eq!(
        ids(&quorum.voters.iter().map(|v| v.0).collect::<Vec<_>>()),
        all
    );
    assert!(quorum.high_watermark > 0);

    // The CLI shows the same cluster.
    let output = Command::new(inlet_bin())
        .args([
            "--bootstrap-server",
            &nodes[0].bootstrap(),
            "--output",
            "json",
        ])
        .args(["cluster", "describe"])
        .output()
        .expect("run inlet cluster describe");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(shown["cluster_id"], cluster_id.as_str());
    assert_eq!(shown["brokers"].as_array().map(Vec::len), Some(3));
    assert!(shown["quorum"]["leader"].as_i64().is_some(), "{shown}");
    assert_eq!(shown["quorum"]["voters"].as_array().map(Vec::len), Some(3));

    // A broker that stops heartbeating (SIGSTOP) is fenced after the session timeout and leaves
    // Metadata; resumed, it is unfenced.
    let paused = (0..3)
        .find(|&i| i as i32 + 1 != quorum.leader)
        .expect("a follower");
    let paused_id = paused as i32 + 1;
    let witness = (0..3).find(|&i| i != paused).expect("another node");
    nodes[paused].signal(libc::SIGSTOP);
    let (_, fenced_after) = wait_for("the paused broker to be fenced", || {
        let (brokers, _) = metadata(&nodes[witness])?;
        (!brokers.contains(&paused_id)).then_some(())
    });
    eprintln!(
        "broker {paused_id} fenced {} ms after it stopped (session timeout {SESSION_TIMEOUT_MS} ms)",
        fenced_after.as_millis()
    );
    assert!(fenced_after >= Duration::from_millis(SESSION_TIMEOUT_MS / 2));
    assert_eq!(fenced(&nodes[witness]), Some(ids(&[paused_id])));
    nodes[paused].signal(libc::SIGCONT);
    let (_, unfenced_after) = wait_for("the resumed broker to be unfenced", || {
        let (brokers, _) = metadata(&nodes[witness])?;
        (brokers == all).then_some(())
    });
    eprintln!(
        "broker {paused_id} unfenced {} ms after it resumed",
        unfenced_after.as_millis()
    );

    // kill -9 the active controller: the others elect a new one and fence the dead broker.
    let (quorum, _) = wait_for("DescribeQuorum", || describe_quorum(&nodes[witness]));
    let old_leader = quorum.leader;
    let dead = (old_leader - 1) as usize;
    let survivor = (0..3).find(|&i| i != dead).expect("a survivor");
    nodes[dead].kill9();
    let (new_quorum, elected_after) = wait_for("a new active controller", || {
        describe_quorum(&nodes[survivor]).filter(|q| q.leader != old_leader)
    });
    eprintln!(
        "new active controller {} elected {} ms after kill -9 of {old_leader} (epoch {} -> {})",
        new_quorum.leader,
        elected_after.as_millis(),
        quorum.epoch,
        new_quorum.epoch
    );
    assert!(new_quorum.epoch > quorum.epoch);
    assert!(elected_after < Duration::from_secs(10));
    let (_, fenced_after) = wait_for("the killed broker to be fenced", || {
        let (brokers, _) = metadata(&nodes[survivor])?;
        (!brokers.contains(&old_leader)).then_some(())
    });
    eprintln!(
        "killed broker {old_leader} fenced {} ms after the new controller was elected",
        fenced_after.as_millis()
    );

    // The killed node rejoins: listed again, its log caught up with the high watermark.
    nodes[dead].restart();
    wait_for("the restarted node to rejoin", || {
        let (brokers, _) = metadata(&nodes[survivor])?;
        let quorum = describe_quorum(&nodes[dead])?;
        let caught_up = quorum
            .voters
            .iter()
            .any(|&(id, end)| id == old_leader && end >= quorum.high_watermark - 1);
        (brokers == all && caught_up).then_some(())
    });

    // A clean stop (SIGTERM) fences the broker on its way out: the others list it no more well
    // before a session timeout would have.
    let stopped_at = Instant::now();
    assert!(nodes[0].terminate().success());
    wait_for("the stopped broker to leave Metadata", || {
        let (brokers, _) = metadata(&nodes[1])?;
        (!brokers.contains(&1)).then_some(())
    });
    let left_after = stopped_at.elapsed();
    eprintln!(
        "a broker stopped with SIGTERM left Metadata after {} ms",
        left_after.as_millis()
    );
    assert!(left_after < Duration::from_millis(SESSION_TIMEOUT_MS));

    // A full stop and start keeps the cluster id and the registrations.
    for node in &mut nodes[1..] {
        assert!(node.terminate().success());
    }
    Broker::restart_group(&mut nodes.iter_mut().collect::<Vec<_>>());
    wait_for("the restarted cluster to list all three", || {
        let answers: Vec<_> = nodes.iter().map(metadata).collect::<Option<_>>()?;
        answers
            .iter()
            .all(|(brokers, id)| *brokers == all && *id == cluster_id)
            .then_some(())
    });
}

/// One topic as a broker's Metadata shows it: (id, [(leader, replicas, isr)]).
type Placement = (String, Vec<(i32, Vec<i32>, Vec<i32>)>);

fn topic_placement(broker: &Broker, topic: &str) -> Option<Placement> {
    runtime().block_on(async {
        let mut client = Client::connect(broker.bootstrap(), "cluster-test")
            .await
            .ok()?;
        let request = MetadataRequest::default().with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(topic.to_string())))),
        ]));
        let response = client.send_capped(request, 12).await.ok()?;
        let found = response.topics.first().filter(|t| t.error_code == 0)?;
        let mut partitions: Vec<_> = found.partitions.iter().collect();
        partitions.sort_by_key(|p| p.partition_index);
        Some((
            found.topic_id.to_string(),
            partitions
                .iter()
                .map(|p| {
                    let ids = |v: &[kafka_protocol::messages::BrokerId]| {
                        v.iter().map(|b| b.0).collect::<Vec<_>>()
                    };
                    (p.leader_id.0, ids(&p.replica_nodes), ids(&p.isr_nodes))
                })
                .collect(),
        ))
    })
}

fn group_coordinator(broker: &Broker, group: &str) -> Option<i32> {
    runtime().block_on(async {
        let mut client = Client::connect(broker.bootstrap(), "cluster-test")
            .await
            .ok()?;
        let request =
            FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string()));
        let response = client.send_capped(request, 3).await.ok()?;
        (response.error_code == 0).then_some(response.node_id.0)
    })
}

fn new_producer_id(broker: &Broker) -> Option<i64> {
    runtime().block_on(async {
        let mut client = Client::connect(broker.bootstrap(), "cluster-test")
            .await
            .ok()?;
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(kafka_protocol::messages::ProducerId(-1))
            .with_producer_epoch(-1);
        let response = client.send_capped(request, 4).await.ok()?;
        if response.error_code != 0 {
            eprintln!("InitProducerId: error {}", response.error_code);
        }
        (response.error_code == 0).then_some(response.producer_id.0)
    })
}

fn create_topic(bootstrap: &str, name: &str, partitions: i32, replication: i32) {
    let configs = [("retention.ms", "3600000")];
    runtime().block_on(create_replicated_topic(
        bootstrap,
        name,
        partitions,
        replication,
        &configs,
        Duration::from_secs(20),
    ));
}

#[test]
fn replicated_topics_clients_and_groups_work_across_the_cluster() {
    let mut nodes = start_cluster();
    let all_bootstrap = nodes
        .iter()
        .map(Broker::bootstrap)
        .collect::<Vec<_>>()
        .join(",");

    // RF 3 through broker 2; every broker's Metadata agrees on the placement.
    create_topic(&nodes[1].bootstrap(), "orders", 6, 3);
    let (placement, _) = wait_for("all brokers to agree on orders", || {
        let seen: Vec<Placement> = nodes
            .iter()
            .map(|n| topic_placement(n, "orders"))
            .collect::<Option<_>>()?;
        seen.iter().all(|p| *p == seen[0]).then(|| seen[0].clone())
    });
    assert_eq!(placement.1.len(), 6);
    for (leader, replicas, isr) in &placement.1 {
        assert_eq!(ids(replicas), ids(&[1, 2, 3]));
        assert_eq!(ids(isr), ids(&[1, 2, 3]));
        assert!(replicas.contains(leader));
    }
    let leaders: BTreeSet<i32> = placement.1.iter().map(|p| p.0).collect();
    assert_eq!(
        leaders,
        ids(&[1, 2, 3]),
        "leaders are spread over the brokers"
    );

    // librdkafka, bootstrapped to broker 3 only, produces to every leader...
    let bootstrap = nodes[2].bootstrap();
    let producer: FutureProducer = producer_config(&bootstrap, "lz4")
        .create()
        .expect("producer");
    runtime().block_on(async {
        for i in 0..600 {
            let key = format!("key-{i}");
            let value = format!("value-{i}");
            producer
                .send(
                    FutureRecord::to("orders").key(&key).payload(&value),
                    Duration::from_secs(20),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("produce {i}: {e}"));
        }
    });

    // ...and a group member consumes all of it through a coordinator on another broker.
    // (A group's coordinator is the leader of its offsets partition: pick one led elsewhere.)
    let group = (0..50)
        .map(|i| format!("orders-readers-{i}"))
        .find(|g| group_coordinator(&nodes[2], g).expect("a coordinator") != 3)
        .expect("a group coordinated by broker 1 or 2");
    let consumer: BaseConsumer = client_config(&bootstrap)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&["orders"]).expect("subscribe");
    let mut values = BTreeSet::new();
    let start = Instant::now();
    while values.len() < 600 && start.elapsed() < WAIT {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume");
            let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
            values.insert(value);
        }
    }
    assert_eq!(values.len(), 600, "every record consumed once");
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    drop(consumer);
    let before_restart = new_producer_id(&nodes[0]).expect("a producer id");

    // kill -9 the active controller: CreateTopics keeps working through the others.
    let (quorum, _) = wait_for("DescribeQuorum", || describe_quorum(&nodes[0]));
    let dead = (quorum.leader - 1) as usize;
    let survivor = (0..3).find(|&i| i != dead).expect("a survivor");
    nodes[dead].kill9();
    create_topic(&nodes[survivor].bootstrap(), "after-failover", 3, 2);
    wait_for("after-failover in Metadata", || {
        topic_placement(&nodes[survivor], "after-failover")
    });
    nodes[dead].restart();

    // A full restart: the same topics, placement and configs; producer ids move on.
    for node in &mut nodes {
        assert!(node.terminate().success());
    }
    Broker::restart_group(&mut nodes.iter_mut().collect::<Vec<_>>());
    let (after, _) = wait_for("orders after the restart", || {
        let seen: Vec<Placement> = nodes
            .iter()
            .map(|n| topic_placement(n, "orders"))
            .collect::<Option<_>>()?;
        seen.iter().all(|p| *p == seen[0]).then(|| seen[0].clone())
    });
    assert_eq!(after.0, placement.0, "same topic id");
    let replicas = |p: &Placement| p.1.iter().map(|x| x.1.clone()).collect::<Vec<_>>();
    assert_eq!(
        replicas(&after),
        replicas(&placement),
        "same replica placement"
    );
    let output = Command::new(inlet_bin())
        .args(["--bootstrap-server", &all_bootstrap, "--output", "json"])
        .args(["config", "describe", "--topic", "orders"])
        .output()
        .expect("inlet config describe");
    let configs = String::from_utf8_lossy(&output.stdout);
    assert!(configs.contains("3600000"), "retention.ms kept: {configs}");
    let (after_restart, _) = wait_for("a producer id", || new_producer_id(&nodes[0]));
    assert!(
        after_restart > before_restart,
        "{after_restart} after {before_restart}"
    );
}

/// A data directory from before the metadata log (topics on disk, a cluster id, a producer-id
/// reservation, no `__cluster_metadata-0`) keeps its topics, ids, configs, records and cluster
/// id when a broker that keeps its metadata in the log first starts on it.
#[test]
fn a_pre_cluster_data_directory_is_migrated_into_the_metadata_log() {
    use inlet_integration_tests::kafka::{consume_all, create_topic_with};

    let mut broker = Broker::start();
    runtime().block_on(create_topic_with(
        &broker.bootstrap(),
        "legacy",
        3,
        &[("retention.ms", "7200000")],
    ));
    let producer: FutureProducer = producer_config(&broker.bootstrap(), "none")
        .create()
        .expect("producer");
    runtime().block_on(async {
        for i in 0..50 {
            let value = format!("legacy-{i}");
            producer
                .send(
                    FutureRecord::<(), _>::to("legacy").payload(&value),
                    Duration::from_secs(20),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("produce {i}: {e}"));
        }
    });
    drop(producer);
    runtime().block_on(create_topic_with(&broker.bootstrap(), "legacy-too", 2, &[]));
    let (before, _) = wait_for("legacy in Metadata", || topic_placement(&broker, "legacy"));
    let (before_too, _) = wait_for("legacy-too", || topic_placement(&broker, "legacy-too"));
    let (_, cluster_id) = metadata(&broker).expect("metadata");
    assert!(broker.terminate().success());

    // Make it what an older Inlet left: no metadata log, no migration marker, and the end of
    // the last producer-id block it reserved.
    let data = broker.data_dir().to_path_buf();
    std::fs::remove_dir_all(data.join("__cluster_metadata-0")).expect("remove the metadata log");
    std::fs::remove_file(data.join("metadata-migrated")).expect("remove the marker");
    std::fs::write(data.join("producer-id-block"), "5000").expect("write producer-id-block");

    broker.restart();
    let (after, _) = wait_for("legacy after migration", || {
        topic_placement(&broker, "legacy")
    });
    assert_eq!(after, before, "same id, partitions and placement");
    let (after_too, _) = wait_for("legacy-too", || topic_placement(&broker, "legacy-too"));
    assert_eq!(after_too, before_too, "every local topic is migrated");
    assert_eq!(
        metadata(&broker).expect("metadata").1,
        cluster_id,
        "same cluster id"
    );
    let records = consume_all(&broker.bootstrap(), "legacy", 3, 50, WAIT);
    assert_eq!(records.len(), 50);
    let output = Command::new(inlet_bin())
        .args([
            "--bootstrap-server",
            &broker.bootstrap(),
            "--output",
            "json",
        ])
        .args(["config", "describe", "--topic", "legacy"])
        .output()
        .expect("inlet config describe");
    assert!(String::from_utf8_lossy(&output.stdout).contains("7200000"));
    let id = new_producer_id(&broker).expect("a producer id");
    assert!(
        id >= 5000,
        "producer ids continue after the old reservation, got {id}"
    );

    // A lost metadata log (the marker still there) does not make the local topics look deleted.
    assert!(broker.terminate().success());
    std::fs::remove_dir_all(data.join("__cluster_metadata-0")).expect("remove the metadata log");
    broker.restart();
    let (again, _) = wait_for("legacy after losing the log", || {
        topic_placement(&broker, "legacy")
    });
    assert_eq!(again, before);
    assert_eq!(
        consume_all(&broker.bootstrap(), "legacy", 3, 50, WAIT).len(),
        50
    );
}

/// The voters are static: a data directory whose metadata log another quorum wrote (here, the
/// same directory started with another `--node-id`) is refused at start with a message saying
/// so, instead of waiting forever for an election that cannot happen.
#[test]
fn a_changed_node_id_on_a_data_directory_is_refused_at_start() {
    let mut broker = Broker::start();
    let data = broker.data_dir().to_path_buf();
    assert!(broker.terminate().success());
    let listen = format!("127.0.0.1:{}", inlet_integration_tests::free_port());
    let mut child = Command::new(inlet_bin())
        .args(["serve", "--node-id", "2", "--lake-enable", "false"])
        .args(["--listen", &listen, "--advertised-listener", &listen])
        .arg("--data-dir")
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start inlet");
    let (status, _) = wait_for("inlet to exit", || child.try_wait().ok().flatten());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert!(!status.success());
    assert!(
        stderr.contains("belongs to a quorum of voters [1]") && stderr.contains("node 2"),
        "{stderr}"
    );
}

/// A partition's leader epoch is the metadata image's everywhere: a clean restart fences and
/// unfences the broker, which moves the epoch, and ListOffsets (v4+) reports the same epoch as
/// Metadata (the epoch the broker stamps into the batches it appends).
#[test]
fn leader_epochs_follow_the_metadata_image() {
    use inlet_integration_tests::kafka::create_topic_with;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::ListOffsetsRequest;

    let mut broker = Broker::start();
    runtime().block_on(create_topic_with(&broker.bootstrap(), "epochs", 1, &[]));
    assert!(broker.terminate().success());
    broker.restart();
    let (epoch, _) = wait_for("a leader with a new epoch", || {
        runtime().block_on(async {
            let mut client = Client::connect(broker.bootstrap(), "cluster-test")
                .await
                .ok()?;
            let request = MetadataRequest::default().with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("epochs")))),
            ]));
            let response = client.send_capped(request, 12).await.ok()?;
            let partition = response.topics.first()?.partitions.first()?;
            (partition.leader_id.0 == 1 && partition.leader_epoch > 0)
                .then_some(partition.leader_epoch)
        })
    });
    let listed = runtime().block_on(async {
        let mut client = Client::connect(broker.bootstrap(), "cluster-test")
            .await
            .expect("connect");
        let request = ListOffsetsRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("epochs")))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])]);
        let response = client.send_capped(request, 6).await.expect("ListOffsets");
        response.topics[0].partitions[0].leader_epoch
    });
    assert_eq!(
        listed, epoch,
        "ListOffsets and Metadata agree on the leader epoch"
    );
}
