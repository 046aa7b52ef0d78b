//! Replication under faults, checked like Kafka's replication system tests and Jepsen's history
//! checker. Three brokers, a topic with replication factor 3 and `min.insync.replicas=2`, an
//! idempotent acks=all librdkafka producer and a consumer run throughout, while the leader of a
//! partition is killed with SIGKILL (then restarted), another leader is stopped with SIGSTOP
//! past the session timeout (then resumed: it must truncate what only it had and rejoin), and the
//! three nodes are restarted one after another; leadership is also moved back to the preferred
//! replicas under load (`inlet cluster elect-leaders`).
//! Afterwards:
//! - every acknowledged record is read back exactly once, at the offset it was acknowledged at,
//!   in the order it was produced per partition;
//! - every record the consumer saw during the run is still there (nothing past the high
//!   watermark was served);
//! - the three replicas' logs are byte-identical up to the high watermark.
//!
//! A second test shows `min.insync.replicas`: with one in-sync replica left, acks=all gets
//! NOT_ENOUGH_REPLICAS and acks=1 still works.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use inlet_integration_tests::cluster::{runtime, start_cluster_with, wait_for};
use inlet_integration_tests::kafka::{client_config, consume_all, producer_config, ConsumedRecord};
use inlet_integration_tests::{inlet_bin, Broker};
use inlet_storage::{Log, LogConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

const TOPIC: &str = "history";
const PARTITIONS: i32 = 3;
/// Short, so that a stopped follower leaves the ISR within the test's waits.
const LAG_MS: &str = "2000";

fn bootstrap(nodes: &[Broker]) -> String {
    nodes
        .iter()
        .map(Broker::bootstrap)
        .collect::<Vec<_>>()
        .join(",")
}

fn create_topic(bootstrap: &str, name: &str, partitions: i32, replication: i32, min_isr: &str) {
    runtime().block_on(async {
        let admin: AdminClient<DefaultClientContext> =
            client_config(bootstrap).create().expect("admin client");
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication))
            .set("min.insync.replicas", min_isr);
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        let results = admin
            .create_topics([&topic], &options)
            .await
            .expect("CreateTopics");
        for result in results {
            result.unwrap_or_else(|(name, code)| panic!("CreateTopics {name}: {code:?}"));
        }
    });
}

/// Per partition of `topic`, (leader, ISR) as broker `via` tells it.
fn placement(via: &Broker, topic: &str) -> Option<BTreeMap<i32, (i32, BTreeSet<i32>)>> {
    let consumer: BaseConsumer = client_config(&via.bootstrap()).create().ok()?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(3))
        .ok()?;
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())?;
    Some(
        found
            .partitions()
            .iter()
            .map(|p| (p.id(), (p.leader(), p.isr().iter().copied().collect())))
            .collect(),
    )
}

/// Per partition of `topic`, its preferred leader (first replica) as `via` tells it.
fn preferred_leaders(via: &Broker, topic: &str) -> Option<BTreeMap<i32, i32>> {
    let consumer: BaseConsumer = client_config(&via.bootstrap()).create().ok()?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(3))
        .ok()?;
    let found = metadata.topics().iter().find(|t| t.name() == topic)?;
    Some(
        found
            .partitions()
            .iter()
            .filter_map(|p| Some((p.id(), *p.replicas().first()?)))
            .collect(),
    )
}

fn node(nodes: &mut [Broker], id: i32) -> &mut Broker {
    &mut nodes[(id - 1) as usize]
}

/// Waits until every partition has all three replicas in sync, as `via` sees it.
fn wait_all_in_sync(via: &Broker, topic: &str) {
    let all: BTreeSet<i32> = [1, 2, 3].into();
    wait_for("every replica back in the ISR", || {
        let placement = placement(via, topic)?;
        (placement.len() == PARTITIONS as usize
            && placement
                .values()
                .all(|(leader, isr)| *leader > 0 && *isr == all))
        .then_some(())
    });
}

/// Acknowledged records: (partition, offset) -> sequence number.
type Acked = Arc<Mutex<BTreeMap<(i32, i64), u64>>>;

/// Produces sequence numbers 0, 1, 2, ... (partition = n % PARTITIONS) with an idempotent acks=all
/// producer until `stop`, 200 in flight at a time, recording what was acknowledged where.
fn run_producer(bootstrap: String, acked: Acked, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let producer: FutureProducer = producer_config(&bootstrap, "lz4")
            .set("message.timeout.ms", "60000")
            .create()
            .expect("producer");
        let rt = runtime();
        let mut next = 0u64;
        let mut failures = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let mut pending = Vec::new();
            for _ in 0..200 {
                let value = next.to_string();
                let record = FutureRecord::<(), _>::to(TOPIC)
                    .payload(&value)
                    .partition((next % PARTITIONS as u64) as i32);
                match producer.send_result(record) {
                    Ok(future) => pending.push((next, future)),
                    Err((error, _)) => panic!("enqueue {next}: {error}"),
                }
                next += 1;
            }
            rt.block_on(async {
                for (seq, future) in pending {
                    match future.await {
                        Ok(Ok(delivery)) => {
                            acked
                                .lock()
                                .unwrap()
                                .insert((delivery.partition, delivery.offset), seq);
                        }
                        Ok(Err((error, _))) => {
                            failures += 1;
                            eprintln!("not acknowledged: {seq}: {error}");
                        }
                        Err(_) => failures += 1,
                    }
                }
            });
        }
        failures
    })
}

/// A consumer group member reading the topic from the beginning until `stop` (committing as it
/// goes, so the group coordinator's failover is exercised too), recording everything served.
fn run_consumer(
    bootstrap: String,
    seen: Arc<Mutex<Vec<ConsumedRecord>>>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let consumer: BaseConsumer = client_config(&bootstrap)
            .set("group.id", "replication-history")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "200")
            .set("session.timeout.ms", "6000")
            .set("fetch.wait.max.ms", "100")
            .create()
            .expect("consumer");
        consumer.subscribe(&[TOPIC]).expect("subscribe");
        while !stop.load(Ordering::Relaxed) {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => seen.lock().unwrap().push(ConsumedRecord {
                    partition: message.partition(),
                    offset: message.offset(),
                    key: None,
                    value: message.payload().map(<[u8]>::to_vec),
                    headers: Vec::new(),
                }),
                Some(Err(error)) => eprintln!("consumer: {error}"),
                None => {}
            }
        }
    })
}

fn acked_count(acked: &Acked) -> usize {
    acked.lock().unwrap().len()
}

fn wait_acked(acked: &Acked, at_least: usize) {
    wait_for(&format!("{at_least} acknowledged records"), || {
        (acked_count(acked) >= at_least).then_some(())
    });
}

/// The batches of `dir`'s log below `end`, as stored.
fn log_bytes(dir: &std::path::Path, end: i64) -> Vec<u8> {
    let log = Log::open(dir, LogConfig::default()).expect("open a replica's log");
    let mut bytes = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < end {
        let chunk = log.read(offset, 1 << 20).expect("read a replica's log");
        let mut next = offset;
        for item in inlet_protocol::batch::BatchIter::new(&chunk) {
            let (header, range) = item.expect("a stored batch");
            if header.base_offset >= end {
                break;
            }
            bytes.extend_from_slice(&chunk[range]);
            next = header.last_offset() + 1;
        }
        assert!(
            next > offset,
            "no progress reading {} at {offset}",
            dir.display()
        );
        offset = next;
    }
    bytes
}

fn high_watermark(dir: &std::path::Path) -> i64 {
    std::fs::read_to_string(dir.join("high-watermark"))
        .expect("a high-watermark checkpoint")
        .trim()
        .parse()
        .expect("a number")
}

#[test]
fn acknowledged_records_survive_a_killed_leader_a_stopped_leader_and_a_rolling_restart() {
    let mut nodes = start_cluster_with(&["--replica-lag-time-max-ms", LAG_MS]);
    let all = bootstrap(&nodes);
    create_topic(&all, TOPIC, PARTITIONS, 3, "2");
    wait_all_in_sync(&nodes[0], TOPIC);

    let acked: Acked = Arc::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = run_producer(all.clone(), acked.clone(), stop.clone());
    let consumer = run_consumer(all.clone(), seen.clone(), stop.clone());
    wait_acked(&acked, 3_000);

    // 1. kill -9 the leader of partition 0, keep producing, bring it back.
    let leader = placement(&nodes[0], TOPIC).expect("placement")[&0].0;
    let started = Instant::now();
    node(&mut nodes, leader).kill9();
    let other = if leader == 1 { 1 } else { 0 };
    let (new_leader, _) = wait_for("a new leader for partition 0", || {
        let now = placement(&nodes[other], TOPIC)?[&0].0;
        (now > 0 && now != leader).then_some(now)
    });
    eprintln!(
        "partition 0: leader {leader} killed, {new_leader} leads after {:?}",
        started.elapsed()
    );
    let before = acked_count(&acked);
    wait_acked(&acked, before + 3_000);
    node(&mut nodes, leader).restart();
    wait_all_in_sync(&nodes[other], TOPIC);

    // Leadership back to the preferred replicas while the producer runs (ElectLeaders through
    // the CLI); the partitions that moved change leader once more.
    let output = Command::new(inlet_bin())
        .args(["--bootstrap-server", &all, "cluster", "elect-leaders"])
        .output()
        .expect("run inlet cluster elect-leaders");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("elected"), "{printed}");
    wait_for("preferred leaders", || {
        let placement = placement(&nodes[other], TOPIC)?;
        let preferred = preferred_leaders(&nodes[other], TOPIC)?;
        (placement
            .iter()
            .all(|(p, (l, _))| preferred.get(p) == Some(l)))
        .then_some(())
    });

    // 2. SIGSTOP the leader of partition 1 past the session timeout, keep producing, resume it.
    let stopped = placement(&nodes[0], TOPIC).expect("placement")[&1].0;
    let other = if stopped == 1 { 1 } else { 0 };
    node(&mut nodes, stopped).signal(libc::SIGSTOP);
    wait_for("a new leader for partition 1", || {
        let now = placement(&nodes[other], TOPIC)?[&1].0;
        (now > 0 && now != stopped).then_some(())
    });
    let before = acked_count(&acked);
    wait_acked(&acked, before + 3_000);
    node(&mut nodes, stopped).signal(libc::SIGCONT);
    wait_all_in_sync(&nodes[other], TOPIC);
    let before = acked_count(&acked);
    wait_acked(&acked, before + 1_000);

    // 3. A rolling restart: each node in turn stopped cleanly (leadership moves away first) and
    // started again, waiting for it to be back in sync before the next.
    for id in 1..=3 {
        let via = if id == 1 { 1 } else { 0 };
        assert!(node(&mut nodes, id).terminate().success());
        let before = acked_count(&acked);
        wait_acked(&acked, before + 500);
        node(&mut nodes, id).restart();
        wait_all_in_sync(&nodes[via], TOPIC);
    }
    let before = acked_count(&acked);
    wait_acked(&acked, before + 1_000);

    stop.store(true, Ordering::Relaxed);
    let failures = producer.join().expect("producer thread");
    consumer.join().expect("consumer thread");
    let acked = acked.lock().unwrap().clone();
    eprintln!("{} records acknowledged, {failures} not", acked.len());

    // Every acknowledged record, once, where it was acknowledged; per partition in send order.
    let log = consume_all(
        &all,
        TOPIC,
        PARTITIONS,
        acked.len(),
        Duration::from_secs(60),
    );
    let mut at: BTreeMap<(i32, i64), u64> = BTreeMap::new();
    let mut values = BTreeSet::new();
    for record in &log {
        let value: u64 = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
            .parse()
            .expect("a sequence number");
        assert!(values.insert(value), "{value} is in the log twice");
        at.insert((record.partition, record.offset), value);
    }
    for (place, value) in &acked {
        assert_eq!(
            at.get(place),
            Some(value),
            "acknowledged {value} at {place:?}"
        );
    }
    for partition in 0..PARTITIONS {
        let order: Vec<u64> = at
            .range((partition, 0)..(partition, i64::MAX))
            .map(|(_, v)| *v)
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "partition {partition} is out of send order"
        );
    }
    // Nothing a consumer was served went away afterwards.
    for record in seen.lock().unwrap().iter() {
        let value: u64 = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
            .parse()
            .expect("a sequence number");
        assert_eq!(
            at.get(&(record.partition, record.offset)),
            Some(&value),
            "served {value} at {}:{} but the log no longer has it",
            record.partition,
            record.offset
        );
    }

    // The replicas agree byte for byte up to the high watermark (after a clean stop, which
    // writes each replica's checkpoint).
    for broker in nodes.iter_mut() {
        assert!(broker.terminate().success());
    }
    for partition in 0..PARTITIONS {
        let dirs: Vec<_> = nodes
            .iter()
            .map(|b| {
                b.data_dir()
                    .join("topics")
                    .join(TOPIC)
                    .join(partition.to_string())
            })
            .collect();
        let end = dirs.iter().map(|d| high_watermark(d)).min().unwrap_or(0);
        let most = at.range((partition, 0)..(partition, i64::MAX)).count() as i64;
        assert!(
            end >= most,
            "partition {partition}: high watermark {end} below {most}"
        );
        let first = log_bytes(&dirs[0], end);
        for dir in &dirs[1..] {
            assert!(
                first == log_bytes(dir, end),
                "{} differs from {}",
                dir.display(),
                dirs[0].display()
            );
        }
    }
}

#[test]
fn acks_all_needs_min_insync_replicas_and_acks_1_does_not() {
    let mut nodes = start_cluster_with(&["--replica-lag-time-max-ms", LAG_MS]);
    let all = bootstrap(&nodes);
    // Replication factor 2: with its follower gone, a partition has one in-sync replica while
    // the quorum (three voters) still has a majority.
    create_topic(&all, "guarded", 1, 2, "2");
    let (placed, _) = wait_for("the partition placed", || {
        let p = placement(&nodes[0], "guarded")?;
        let (leader, isr) = p.get(&0)?.clone();
        (leader > 0 && isr.len() == 2).then_some((leader, isr))
    });
    let follower = *placed
        .1
        .iter()
        .find(|&&id| id != placed.0)
        .expect("a follower");
    let leader_node = placed.0;
    let produce = |acks: &str| -> Result<(), KafkaError> {
        let producer: FutureProducer = client_config(&all)
            .set("acks", acks)
            .set("message.timeout.ms", "5000")
            .set("retries", "0")
            .create()
            .expect("producer");
        runtime().block_on(async {
            producer
                .send(
                    FutureRecord::<(), _>::to("guarded")
                        .payload("x")
                        .partition(0),
                    Duration::from_secs(5),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        })
    };
    produce("all").expect("acks=all with two in-sync replicas");

    node(&mut nodes, follower).kill9();
    let via = &nodes[(leader_node - 1) as usize];
    wait_for("the ISR to shrink to the leader", || {
        let p = placement(via, "guarded")?;
        let (leader, isr) = p.get(&0)?;
        (*leader == leader_node && isr.len() == 1).then_some(())
    });
    match produce("all") {
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas)) => {}
        other => panic!("acks=all with one in-sync replica: {other:?}"),
    }
    produce("1").expect("acks=1 needs only the leader");
}
