//! The history checker of the replication scenarios (Kafka's replication system tests, Jepsen's
//! checker): a producer that records where every acknowledged record went, a consumer-group
//! member that records everything it was served, and the checks run after a fault:
//! - every acknowledged record is read back exactly once, at the offset it was acknowledged at,
//!   in the order it was produced per partition ([`check_acknowledged`]);
//! - every record a consumer was served is still there: nothing past the high watermark was
//!   served ([`check_acknowledged`]);
//! - the replicas' logs are byte-identical up to the high watermark
//!   ([`check_replicas_identical`]).
//!
//! Records are sequence numbers 0, 1, 2, ... as decimal text; number `n` goes to partition
//! `n % partitions`, so send order per partition is numeric order. Another producer in the same
//! test numbers its records from a multiple of [`STREAM`] up, and send order is checked per
//! producer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use inlet_storage::{Log, LogConfig};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::cluster::{runtime, wait_for};
use crate::kafka::{client_config, consume_all, create_replicated_topic, ConsumedRecord};
use crate::Broker;

/// Acknowledged records: (partition, offset) -> sequence number.
pub type Acked = Arc<Mutex<BTreeMap<(i32, i64), u64>>>;

/// Producer `k` of a test numbers its records from `k * STREAM`.
pub const STREAM: u64 = 1 << 40;

/// Records that `seq` was acknowledged at `place`; two records acknowledged at one offset fail
/// the test (one of them is lost).
pub fn record_ack(acked: &Acked, place: (i32, i64), seq: u64) {
    let before = acked.lock().unwrap().insert(place, seq);
    if let Some(other) = before.filter(|other| *other != seq) {
        panic!("{other} and {seq} were both acknowledged at {place:?}");
    }
}

/// Per partition, (leader, ISR).
pub type Placement = BTreeMap<i32, (i32, BTreeSet<i32>)>;

/// Every node's Kafka address, for `bootstrap.servers`.
pub fn bootstrap(nodes: &[Broker]) -> String {
    nodes
        .iter()
        .map(Broker::bootstrap)
        .collect::<Vec<_>>()
        .join(",")
}

/// Node `id` (1-based) of `nodes`.
pub fn node(nodes: &mut [Broker], id: i32) -> &mut Broker {
    &mut nodes[(id - 1) as usize]
}

/// Creates `name` with `replication` replicas and `min.insync.replicas` = `min_isr`.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32, replication: i32, min_isr: &str) {
    let configs = [("min.insync.replicas", min_isr)];
    runtime().block_on(create_replicated_topic(
        bootstrap,
        name,
        partitions,
        replication,
        &configs,
        Duration::from_secs(20),
    ));
}

/// One partition as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub leader: i32,
    /// In order: the first is the preferred leader.
    pub replicas: Vec<i32>,
    pub isr: BTreeSet<i32>,
}

/// Every partition of `topic` as broker `via` tells it (a client bootstrapped from `via` alone
/// asks it first).
pub fn partitions(via: &Broker, topic: &str) -> Option<BTreeMap<i32, PartitionInfo>> {
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
            .map(|p| {
                let info = PartitionInfo {
                    leader: p.leader(),
                    replicas: p.replicas().to_vec(),
                    isr: p.isr().iter().copied().collect(),
                };
                (p.id(), info)
            })
            .collect(),
    )
}

/// Per partition of `topic`, (leader, ISR) as broker `via` tells it.
pub fn placement(via: &Broker, topic: &str) -> Option<Placement> {
    Some(
        partitions(via, topic)?
            .into_iter()
            .map(|(id, p)| (id, (p.leader, p.isr)))
            .collect(),
    )
}

/// Waits until every partition of `topic` has a leader and nodes 1, 2 and 3 in its ISR, as
/// `via` sees it.
pub fn wait_all_in_sync(via: &Broker, topic: &str, partitions: i32) {
    let all: BTreeSet<i32> = [1, 2, 3].into();
    wait_for("every replica back in the ISR", || {
        let placement = placement(via, topic)?;
        (placement.len() == partitions as usize
            && placement
                .values()
                .all(|(leader, isr)| *leader > 0 && *isr == all))
        .then_some(())
    });
}

/// A librdkafka client context that prints librdkafka's log lines (warnings and errors; with
/// `INLET_IT_RDKAFKA_DEBUG` set, e.g. to `msg,broker,topic,eos`, its debug contexts too) to
/// stderr, where the test harness shows them for a failed test.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrLog;

impl ClientContext for StderrLog {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        eprintln!("librdkafka {level:?} {facility}: {message}");
    }
}

/// Produces sequence numbers 0, 1, 2, ... to `topic` (partition = n % `partitions`) with a
/// producer made from `config` until `stop`, 200 in flight at a time, recording what was
/// acknowledged where. Returns how many were not acknowledged.
pub fn run_producer(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
    acked: Acked,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<u64> {
    let topic = topic.to_string();
    let mut config = config.clone();
    // The rdkafka crate lets through only what the `log` crate's level allows, and no logger
    // is installed here: ask for the levels wanted explicitly.
    config.set_log_level(RDKafkaLogLevel::Warning);
    if let Some(debug) = std::env::var("INLET_IT_RDKAFKA_DEBUG")
        .ok()
        .filter(|d| !d.is_empty())
    {
        config
            .set("debug", debug)
            .set_log_level(RDKafkaLogLevel::Debug);
    }
    thread::spawn(move || {
        let producer: FutureProducer<StderrLog> =
            config.create_with_context(StderrLog).expect("producer");
        let rt = runtime();
        let mut next = 0u64;
        let mut failures = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let mut pending = Vec::new();
            for _ in 0..200 {
                let value = next.to_string();
                let record = FutureRecord::<(), _>::to(&topic)
                    .payload(&value)
                    .partition((next % partitions as u64) as i32);
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
                            record_ack(&acked, (delivery.partition, delivery.offset), seq);
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

/// A member of consumer group `group` reading `topic` from the beginning until `stop`
/// (committing as it goes, so the group coordinator's failover is exercised too), recording
/// everything served.
pub fn run_consumer(
    bootstrap: String,
    topic: &str,
    group: &str,
    seen: Arc<Mutex<Vec<ConsumedRecord>>>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    let topic = topic.to_string();
    let group = group.to_string();
    thread::spawn(move || {
        let consumer: BaseConsumer = client_config(&bootstrap)
            .set("group.id", &group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "200")
            .set("session.timeout.ms", "6000")
            .set("fetch.wait.max.ms", "100")
            .create()
            .expect("consumer");
        consumer.subscribe(&[&topic]).expect("subscribe");
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

/// A producer and a consumer-group member running against a topic until [`History::stop`].
pub struct History {
    pub acked: Acked,
    seen: Arc<Mutex<Vec<ConsumedRecord>>>,
    stop: Arc<AtomicBool>,
    producer: thread::JoinHandle<u64>,
    consumer: thread::JoinHandle<()>,
}

/// What a [`History`] recorded.
pub struct Recorded {
    pub acked: BTreeMap<(i32, i64), u64>,
    /// Records the producer sent that were never acknowledged.
    pub failures: u64,
    pub seen: Vec<ConsumedRecord>,
}

impl History {
    /// The history runs' common start: creates `topic` through `admin` with replication factor 3
    /// and `min.insync.replicas=2`, waits until `via` shows every replica in sync, then starts
    /// an idempotent lz4 acks=all producer (60 s message timeout) and a consumer in `group`,
    /// both bootstrapped from `clients`.
    pub fn on_replicated_topic(
        via: &Broker,
        admin: &str,
        clients: &str,
        topic: &str,
        partitions: i32,
        group: &str,
    ) -> History {
        create_topic(admin, topic, partitions, 3, "2");
        wait_all_in_sync(via, topic, partitions);
        History::start(
            crate::kafka::producer_config(clients, "lz4").set("message.timeout.ms", "60000"),
            clients.to_string(),
            topic,
            partitions,
            group,
        )
    }

    /// Starts [`run_producer`] with `producer` and [`run_consumer`] bootstrapped from
    /// `consumer_bootstrap` in group `group`.
    pub fn start(
        producer: &ClientConfig,
        consumer_bootstrap: String,
        topic: &str,
        partitions: i32,
        group: &str,
    ) -> History {
        let acked: Acked = Arc::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let producer = run_producer(producer, topic, partitions, acked.clone(), stop.clone());
        let consumer = run_consumer(consumer_bootstrap, topic, group, seen.clone(), stop.clone());
        History {
            acked,
            seen,
            stop,
            producer,
            consumer,
        }
    }

    /// Stops both and returns what they recorded.
    pub fn stop(self) -> Recorded {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.producer.join().expect("producer thread");
        self.consumer.join().expect("consumer thread");
        let acked = self.acked.lock().unwrap().clone();
        let seen = self.seen.lock().unwrap().clone();
        Recorded {
            acked,
            failures,
            seen,
        }
    }
}

pub fn acked_count(acked: &Acked) -> usize {
    acked.lock().unwrap().len()
}

/// Waits (bounded, see [`wait_for`]) until at least `at_least` records are acknowledged.
pub fn wait_acked(acked: &Acked, at_least: usize) {
    wait_for(&format!("{at_least} acknowledged records"), || {
        (acked_count(acked) >= at_least).then_some(())
    });
}

fn sequence_number(record: &ConsumedRecord) -> u64 {
    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
        .parse()
        .expect("a sequence number")
}

/// Reads `topic` back through `bootstrap` and checks it against the history: every record of
/// `acked` once, at its acknowledged offset; each partition in send order; every record in
/// `seen` (served to a consumer during the run) still at the offset it was served at.
/// Returns what the log holds: (partition, offset) -> sequence number.
pub fn check_acknowledged(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    acked: &BTreeMap<(i32, i64), u64>,
    seen: &[ConsumedRecord],
) -> BTreeMap<(i32, i64), u64> {
    let log = consume_all(
        bootstrap,
        topic,
        partitions,
        acked.len(),
        Duration::from_secs(60),
    );
    let mut at: BTreeMap<(i32, i64), u64> = BTreeMap::new();
    let mut values = BTreeSet::new();
    for record in &log {
        let value = sequence_number(record);
        assert!(values.insert(value), "{value} is in the log twice");
        at.insert((record.partition, record.offset), value);
    }
    for (place, value) in acked {
        assert_eq!(
            at.get(place),
            Some(value),
            "acknowledged {value} at {place:?}"
        );
    }
    for partition in 0..partitions {
        let mut last_of_producer: BTreeMap<u64, u64> = BTreeMap::new();
        for (offset, value) in at.range((partition, 0)..(partition, i64::MAX)) {
            if let Some(last) = last_of_producer.insert(value / STREAM, *value) {
                assert!(
                    last < *value,
                    "partition {partition} is out of send order: {value} at {offset:?} after {last}"
                );
            }
        }
    }
    for record in seen {
        let value = sequence_number(record);
        assert_eq!(
            at.get(&(record.partition, record.offset)),
            Some(&value),
            "served {value} at {}:{} but the log no longer has it",
            record.partition,
            record.offset
        );
    }
    at
}

/// Stops every node cleanly (which writes each replica's high-watermark checkpoint) and checks
/// that the replicas of each partition of `topic` are byte-identical up to the smallest high
/// watermark, and that it covers the records `at` says the partition holds.
pub fn check_replicas_identical(
    nodes: &mut [Broker],
    topic: &str,
    partitions: i32,
    at: &BTreeMap<(i32, i64), u64>,
) {
    let all: Vec<i32> = nodes.iter().map(Broker::node_id).collect();
    let replicas = (0..partitions).map(|p| (p, all.clone())).collect();
    check_replica_logs(nodes, topic, &replicas, at);
}

/// [`check_replicas_identical`] for partitions whose replicas are on some of the nodes only:
/// `replicas` gives each partition's replica node ids.
pub fn check_replica_logs(
    nodes: &mut [Broker],
    topic: &str,
    replicas: &BTreeMap<i32, Vec<i32>>,
    at: &BTreeMap<(i32, i64), u64>,
) {
    for broker in nodes.iter_mut() {
        assert!(broker.terminate().success());
    }
    for (&partition, hosts) in replicas {
        let dirs: Vec<_> = nodes
            .iter()
            .filter(|b| hosts.contains(&b.node_id()))
            .map(|b| {
                b.data_dir()
                    .join("topics")
                    .join(topic)
                    .join(partition.to_string())
            })
            .collect();
        assert_eq!(
            dirs.len(),
            hosts.len(),
            "partition {partition}: replicas {hosts:?}"
        );
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

/// The batches of `dir`'s log below `end`, as stored.
pub fn log_bytes(dir: &Path, end: i64) -> Vec<u8> {
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

/// A replica's checkpointed high watermark.
pub fn high_watermark(dir: &Path) -> i64 {
    std::fs::read_to_string(dir.join("high-watermark"))
        .expect("a high-watermark checkpoint")
        .trim()
        .parse()
        .expect("a number")
}
