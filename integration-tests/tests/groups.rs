//! Consumer groups with librdkafka: three consumers share a 12-partition topic while 30,000
//! messages are produced; a fourth joins after a third of them and the first leaves after two
//! thirds. Offsets are committed after processing (and on every revocation), so every message
//! must be consumed exactly once across the group, and no partition may ever be owned by two
//! consumers at the same time (eager rebalancing: revocations complete before the next
//! generation's assignments). Prints how long each rebalance took.
//!
//! Compaction: a `cleanup.policy=compact` topic with 50 updates per key shrinks on disk, and a
//! consumer reading it from the beginning sees each key's latest value (deleted keys gone).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use inlet_integration_tests::kafka::{
    client_config, consume_all, create_topic, producer_config, wait_for_partitions,
};
use inlet_integration_tests::{Broker, BrokerOptions};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;

const TOPIC: &str = "group-exactly-once";
const GROUP: &str = "group-exactly-once";
const PARTITIONS: i32 = 12;
const TOTAL: usize = 30_000;
const CHUNK: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Assign,
    Revoke,
}

/// When, who, what, which partitions.
type Event = (Instant, String, Kind, Vec<i32>);

/// Rebalance events of all consumers, in the order they happened.
#[derive(Default)]
struct Events(Mutex<Vec<Event>>);

impl Events {
    fn push(&self, consumer: &str, kind: Kind, list: &TopicPartitionList) {
        let partitions = list.elements().iter().map(|e| e.partition()).collect();
        let mut events = self.0.lock().unwrap();
        events.push((Instant::now(), consumer.to_string(), kind, partitions));
    }

    fn snapshot(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
}

struct Ctx {
    name: String,
    events: Arc<Events>,
    commit_errors: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            // Commit everything processed before giving the partitions up.
            commit(consumer, &self.name, &self.commit_errors);
            self.events.push(&self.name, Kind::Revoke, list);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            self.events.push(&self.name, Kind::Assign, list);
        }
    }
}

fn commit(consumer: &BaseConsumer<Ctx>, name: &str, errors: &Mutex<Vec<String>>) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => errors.lock().unwrap().push(format!("{name}: {e}")),
    }
}

/// Everything the consumers share with the test.
#[derive(Default)]
struct Shared {
    /// (partition, offset) -> how often it was consumed.
    consumed: Mutex<HashMap<(i32, i64), usize>>,
    events: Arc<Events>,
    commit_errors: Arc<Mutex<Vec<String>>>,
}

/// Runs one group member until `stop`: process (record), store the offset, commit every 100
/// messages and whenever idle; on stop commit once more and close (leaving the group).
fn run_consumer(
    bootstrap: String,
    name: String,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let ctx = Ctx {
            name: name.clone(),
            events: shared.events.clone(),
            commit_errors: shared.commit_errors.clone(),
        };
        let consumer: BaseConsumer<Ctx> = client_config(&bootstrap)
            .set("group.id", GROUP)
            .set("client.id", &name)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "300")
            .set("fetch.wait.max.ms", "100")
            .create_with_context(ctx)
            .expect("create a group consumer");
        consumer.subscribe(&[TOPIC]).expect("subscribe");
        let mut uncommitted = 0;
        while !stop.load(Ordering::SeqCst) {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let key = (message.partition(), message.offset());
                    *shared.consumed.lock().unwrap().entry(key).or_default() += 1;
                    consumer
                        .store_offset_from_message(&message)
                        .expect("store the processed offset");
                    uncommitted += 1;
                    if uncommitted >= 100 {
                        commit(&consumer, &name, &shared.commit_errors);
                        uncommitted = 0;
                    }
                }
                Some(Err(e)) => eprintln!("{name}: consumer error {e}"),
                None => {
                    if uncommitted > 0 {
                        commit(&consumer, &name, &shared.commit_errors);
                        uncommitted = 0;
                    }
                }
            }
        }
        commit(&consumer, &name, &shared.commit_errors);
        drop(consumer);
    })
}

/// The time from `since` until every consumer in `members` had an assignment after `since`.
fn rebalance_done(events: &[Event], since: Instant, members: &[&str]) -> Option<Duration> {
    members
        .iter()
        .map(|m| {
            events
                .iter()
                .find(|(t, who, kind, _)| *t >= since && who == m && *kind == Kind::Assign)
                .map(|(t, ..)| t.duration_since(since))
        })
        .collect::<Option<Vec<_>>>()
        .and_then(|times| times.into_iter().max())
}

/// Replays the events: a partition is assigned only while no other consumer owns it.
fn check_no_overlap(events: &[Event]) -> usize {
    let mut owner: BTreeMap<i32, String> = BTreeMap::new();
    let mut assignments = 0;
    for (_, who, kind, partitions) in events {
        for p in partitions {
            match kind {
                Kind::Assign => {
                    if let Some(other) = owner.insert(*p, who.clone()) {
                        panic!("partition {p} assigned to {who} while {other} still owned it");
                    }
                }
                Kind::Revoke => {
                    assert_eq!(
                        owner.remove(p).as_deref(),
                        Some(who.as_str()),
                        "{who} revoked {p} it did not own"
                    );
                }
            }
        }
        assignments += usize::from(*kind == Kind::Assign);
    }
    assignments
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_joining_and_leaving_consume_every_message_exactly_once() {
    let broker = Broker::start_with(BrokerOptions {
        env: vec![(
            "INLET_GROUP_INITIAL_REBALANCE_DELAY_MS".into(),
            "200".into(),
        )],
        ..BrokerOptions::default()
    });
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, PARTITIONS).await;
    let shared = Arc::new(Shared::default());
    let stops: Vec<Arc<AtomicBool>> = (0..4).map(|_| Arc::new(AtomicBool::new(false))).collect();
    let mut threads = Vec::new();
    for (i, stop) in stops.iter().take(3).enumerate() {
        threads.push(run_consumer(
            bootstrap.clone(),
            format!("c{i}"),
            shared.clone(),
            stop.clone(),
        ));
    }

    let producer: FutureProducer = producer_config(&bootstrap, "none")
        .create()
        .expect("producer");
    let mut produced = BTreeSet::new();
    let (mut join_at, mut leave_at) = (None, None);
    for chunk in 0..TOTAL / CHUNK {
        if chunk == TOTAL / CHUNK / 3 {
            join_at = Some(Instant::now());
            threads.push(run_consumer(
                bootstrap.clone(),
                "c3".into(),
                shared.clone(),
                stops[3].clone(),
            ));
        }
        if chunk == 2 * TOTAL / CHUNK / 3 {
            leave_at = Some(Instant::now());
            stops[0].store(true, Ordering::SeqCst);
        }
        let futures: Vec<_> = (0..CHUNK)
            .map(|i| {
                let n = chunk * CHUNK + i;
                let (key, value) = (format!("k{n}"), format!("v{n}"));
                producer
                    .send_result(FutureRecord::to(TOPIC).key(&key).payload(&value))
                    .unwrap_or_else(|(e, _)| panic!("enqueue message {n}: {e}"))
            })
            .collect();
        for future in futures {
            match future.await {
                Ok(Ok(delivery)) => produced.insert((delivery.partition, delivery.offset)),
                Ok(Err((e, _))) => panic!("produce failed: {e}"),
                Err(_) => panic!("delivery report channel dropped"),
            };
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(produced.len(), TOTAL);

    let deadline = Instant::now() + Duration::from_secs(60);
    while shared.consumed.lock().unwrap().len() < TOTAL && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A little longer, so that a duplicate delivery would be seen.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_shutdown = shared.events.snapshot();
    for stop in &stops {
        stop.store(true, Ordering::SeqCst);
    }
    for t in threads {
        t.join().expect("consumer thread");
    }

    let consumed = shared.consumed.lock().unwrap().clone();
    let duplicates: Vec<_> = consumed.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "consumed more than once: {duplicates:?}"
    );
    let consumed: BTreeSet<(i32, i64)> = consumed.into_keys().collect();
    assert_eq!(consumed, produced, "every produced message consumed");
    let errors = shared.commit_errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "commits failed: {errors:?}");

    let events = shared.events.snapshot();
    let assignments = check_no_overlap(&events);
    let join_at = join_at.expect("fourth consumer started");
    let leave_at = leave_at.expect("first consumer stopped");
    let join_took = rebalance_done(&events, join_at, &["c0", "c1", "c2", "c3"])
        .expect("all four consumers were assigned partitions after the join");
    let leave_took = rebalance_done(&events, leave_at, &["c1", "c2", "c3"])
        .expect("the remaining three were assigned partitions after the leave");
    eprintln!(
        "rebalance after a consumer joined took {join_took:?}; after one left {leave_took:?} \
         ({assignments} assignments in total, heartbeat.interval.ms=300)"
    );
    // The last generation's assignment: three consumers, 4 partitions each, all 12 covered.
    let mut last: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (_, who, kind, partitions) in &before_shutdown {
        match kind {
            Kind::Assign => {
                last.insert(who.clone(), partitions.clone());
            }
            Kind::Revoke => {
                last.remove(who);
            }
        }
    }
    let covered: BTreeSet<i32> = last.values().flatten().copied().collect();
    assert_eq!(
        covered.len(),
        PARTITIONS as usize,
        "final assignment {last:?}"
    );
    assert_eq!(
        last.len(),
        3,
        "three members in the final generation: {last:?}"
    );
    assert!(
        last.values().all(|p| p.len() == 4),
        "range assignor: 4 partitions each: {last:?}"
    );
}

const COMPACTED: &str = "compacted-latest";
const KEYS: usize = 200;
const ROUNDS: usize = 50;
const DELETED: usize = 20;
const FILLER: usize = 300;

fn compacted_value(key: usize, round: usize) -> String {
    // Hex of a cheap hash: little for lz4 to squeeze, so sizes reflect the record count.
    let mut x = (key * 1_000_003 + round * 7919) as u64;
    let noise: String = (0..6)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            format!("{:016x}", x)
        })
        .collect();
    format!("key{key}-round{round}-{noise}")
}

/// Bytes of all segment files of partition 0 of `topic`.
fn disk_bytes(broker: &Broker, topic: &str) -> u64 {
    let dir = broker.data_dir().join("topics").join(topic).join("0");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_topic_shrinks_to_the_latest_value_of_each_key() {
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(config.path(), "log_cleaner_backoff_ms = 300\n").expect("write config");
    let broker = Broker::start_with(BrokerOptions {
        extra_args: vec!["--config".into(), config.path().display().to_string()],
        ..BrokerOptions::default()
    });
    let bootstrap = broker.bootstrap();
    let admin: AdminClient<DefaultClientContext> =
        client_config(&bootstrap).create().expect("admin");
    let topic = NewTopic::new(COMPACTED, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "16384")
        .set("delete.retention.ms", "0");
    let created = admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .expect("CreateTopics");
    assert!(created.iter().all(|r| r.is_ok()), "{created:?}");
    assert_eq!(
        wait_for_partitions(&bootstrap, COMPACTED, 1, Duration::from_secs(10)),
        1
    );

    // Every key ROUNDS times, then tombstones for the first DELETED keys, then filler records
    // with distinct keys so that the segments holding the tombstones close.
    let mut writes: Vec<(String, Option<String>)> = Vec::new();
    for round in 0..ROUNDS {
        writes.extend(
            (0..KEYS).map(|key| (format!("key-{key:03}"), Some(compacted_value(key, round)))),
        );
    }
    writes.extend((0..DELETED).map(|key| (format!("key-{key:03}"), None)));
    writes.extend((0..FILLER).map(|i| (format!("filler-{i}"), Some(compacted_value(i, 0)))));
    let raw_bytes: usize = writes
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, String::len))
        .sum();
    let produced = writes.len();
    let producer: FutureProducer = producer_config(&bootstrap, "lz4")
        .create()
        .expect("producer");
    // Awaiting every 50 records keeps batches well below segment.bytes (librdkafka would
    // otherwise put everything queued into one batch).
    for chunk in writes.chunks(50) {
        let futures: Vec<_> = chunk
            .iter()
            .map(|(k, v)| {
                let record = FutureRecord::<String, String>::to(COMPACTED).key(k);
                let record = match v {
                    Some(v) => record.payload(v),
                    None => record,
                };
                producer
                    .send_result(record)
                    .unwrap_or_else(|(e, _)| panic!("enqueue: {e}"))
            })
            .collect();
        for future in futures {
            match future.await {
                Ok(Ok(_)) => {}
                other => panic!("delivery failed: {other:?}"),
            }
        }
    }

    // Wait for the cleaner (every 300 ms) to bring the log down to about one record per key.
    let deadline = Instant::now() + Duration::from_secs(30);
    let records = loop {
        let records = consume_all(&bootstrap, COMPACTED, 1, 0, Duration::from_secs(10));
        if records.len() < produced / 10 || Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let on_disk = disk_bytes(&broker, COMPACTED);
    eprintln!(
        "compaction: {produced} records ({raw_bytes} bytes of keys and values) -> {} records, \
         {on_disk} bytes of segment files",
        records.len()
    );
    assert!(
        records.len() < produced / 10,
        "not compacted: {} records",
        records.len()
    );
    assert!(on_disk * 4 < raw_bytes as u64, "{on_disk} bytes on disk");
    assert!(
        records.windows(2).all(|w| w[0].offset < w[1].offset),
        "offsets increase"
    );

    let mut latest: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    for r in &records {
        let key = String::from_utf8(r.key.clone().expect("every record has a key")).expect("utf8");
        latest.insert(key, r.value.clone());
    }
    for key in 0..KEYS {
        let k = format!("key-{key:03}");
        let seen = latest.get(&k).cloned().flatten();
        if key < DELETED {
            assert_eq!(seen, None, "{k} was deleted");
        } else {
            let want = compacted_value(key, ROUNDS - 1).into_bytes();
            assert_eq!(seen, Some(want), "{k} must read as its latest value");
        }
    }
    assert_eq!(
        latest.keys().filter(|k| k.starts_with("filler-")).count(),
        FILLER
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offsets_topic_is_internal_and_protected() {
    use rdkafka::consumer::BaseConsumer;
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let offsets_topic = "__consumer_offsets";
    let client: BaseConsumer = client_config(&bootstrap).create().expect("client");
    // (Listings without it are checked from kafka-python in test_groups.py: librdkafka 2.12's
    // all-topics Metadata v12 request carries 3 bytes the broker's strict decoder refuses.)
    let named = client
        .fetch_metadata(Some(offsets_topic), Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(named.topics().len(), 1);
    assert_eq!(
        named.topics()[0].partitions().len(),
        50,
        "asked by name, it is created (offsets.topic.num.partitions), as Kafka does"
    );

    let admin: AdminClient<DefaultClientContext> =
        client_config(&bootstrap).create().expect("admin");
    let deleted = admin
        .delete_topics(&[offsets_topic], &AdminOptions::new())
        .await
        .expect("DeleteTopics request");
    assert!(deleted.iter().all(|r| r.is_err()), "{deleted:?}");

    let producer: FutureProducer = client_config(&bootstrap)
        .set("message.send.max.retries", "0")
        .create()
        .expect("producer");
    let sent = producer
        .send(
            FutureRecord::to(offsets_topic).key("k").payload("v"),
            Duration::from_secs(10),
        )
        .await;
    assert!(
        sent.is_err(),
        "a client append to the offsets topic must fail"
    );
}
