//! Crash points: idempotent `acks=all` producers keep writing while the broker is killed with
//! SIGKILL at random moments, over and over, and restarted on the same data directory. Afterwards
//! every record the broker acknowledged is read back exactly once, at the offset it was
//! acknowledged with, and no record (acknowledged or not) is in the log twice.
//!
//! The kill moments come from a seeded generator; the seed is printed, and `INLET_CRASH_SEED`
//! replays a run. The number of kills and each wait are bounded, so the test ends by itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use inlet_integration_tests::kafka::{consume_all, create_topic, producer_config};
use inlet_integration_tests::Broker;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

const TOPIC: &str = "crash-points";
const PARTITIONS: i32 = 3;
const PRODUCERS: usize = 2;
const KILLS: usize = 22;
/// How long the broker runs between its restart and the next kill: a random point in this range.
const UPTIME_MS: std::ops::Range<u64> = 150..900;
/// Records per second per producer: enough to have batches in flight at every kill, few enough
/// for a debug broker on a shared 2-core machine to keep up.
const RATE_PER_PRODUCER: u64 = 4_000;

/// Where the broker said a record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Placement {
    partition: i32,
    offset: i64,
}

/// Delivery reports of one producer: acknowledged keys with their placement, and failures.
#[derive(Default)]
struct Reports {
    acked: Mutex<HashMap<Vec<u8>, Placement>>,
    failed: Mutex<Vec<(Vec<u8>, KafkaError)>>,
}

struct Recorder(Arc<Reports>);

impl ClientContext for Recorder {}

impl ProducerContext for Recorder {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        match result {
            Ok(message) => {
                let key = message.key().unwrap_or_default().to_vec();
                let placement = Placement {
                    partition: message.partition(),
                    offset: message.offset(),
                };
                let previous = self
                    .0
                    .acked
                    .lock()
                    .expect("reports lock")
                    .insert(key, placement);
                assert!(previous.is_none(), "a key was acknowledged twice");
            }
            Err((error, message)) => {
                let key = message.key().unwrap_or_default().to_vec();
                self.0
                    .failed
                    .lock()
                    .expect("reports lock")
                    .push((key, error.clone()));
            }
        }
    }
}

/// A small xorshift generator: the test needs reproducible randomness, not a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn in_range(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.next() % (range.end - range.start)
    }
}

/// Sends records keyed `p{id}-{seq}` at [`RATE_PER_PRODUCER`] until `stop`, then waits for every
/// delivery report. Returns how many records were handed to librdkafka.
fn run_producer(bootstrap: String, id: usize, stop: Arc<AtomicBool>, reports: Arc<Reports>) -> u64 {
    let producer: BaseProducer<Recorder> = producer_config(&bootstrap, "lz4")
        .set("message.timeout.ms", "60000")
        .set("retry.backoff.ms", "20")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .create_with_context(Recorder(reports))
        .expect("create an idempotent producer");
    let started = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = started.elapsed().as_millis() as u64 * RATE_PER_PRODUCER / 1000;
        if sent >= due {
            producer.poll(Duration::from_millis(2));
            continue;
        }
        let key = format!("p{id}-{sent}");
        let value = format!("{key} {}", "v".repeat((sent % 97) as usize));
        let mut record = BaseRecord::to(TOPIC).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("producer {id}: enqueue {key}: {e}"),
            }
        }
        sent += 1;
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("producer {id}: flush after the kills: {e}"));
    if let Some(fatal) = producer.client().fatal_error() {
        panic!("producer {id} hit a fatal idempotence error: {fatal:?}");
    }
    sent
}

#[test]
fn acknowledged_records_survive_repeated_kill_9_exactly_once() {
    let seed = std::env::var("INLET_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("crash points: seed {seed} (INLET_CRASH_SEED replays it)");
    let mut rng = Rng(seed);

    let mut broker = Broker::start();
    let bootstrap = broker.bootstrap();
    tokio::runtime::Runtime::new()
        .expect("a tokio runtime")
        .block_on(create_topic(&bootstrap, TOPIC, PARTITIONS));

    let stop = Arc::new(AtomicBool::new(false));
    let reports: Vec<Arc<Reports>> = (0..PRODUCERS).map(|_| Arc::default()).collect();
    let producers: Vec<_> = reports
        .iter()
        .enumerate()
        .map(|(id, reports)| {
            let (bootstrap, stop, reports) = (bootstrap.clone(), stop.clone(), reports.clone());
            thread::spawn(move || run_producer(bootstrap, id, stop, reports))
        })
        .collect();

    let started = Instant::now();
    for kill in 0..KILLS {
        thread::sleep(Duration::from_millis(rng.in_range(UPTIME_MS)));
        broker.kill9();
        // Sometimes come back at once, sometimes after producers have piled up retries.
        thread::sleep(Duration::from_millis(rng.in_range(0..300)));
        broker.restart();
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{kill} kills took over two minutes"
        );
    }
    // Let the producers catch up with a live broker, then stop them.
    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = producers
        .into_iter()
        .map(|p| p.join().expect("producer thread"))
        .sum();

    let mut acked: HashMap<Vec<u8>, Placement> = HashMap::new();
    let mut failed = Vec::new();
    for r in &reports {
        acked.extend(r.acked.lock().expect("reports lock").drain());
        failed.append(&mut r.failed.lock().expect("reports lock"));
    }
    eprintln!(
        "crash points: {KILLS} kills in {:.1} s, {sent} sent, {} acknowledged, {} failed{}",
        started.elapsed().as_secs_f64(),
        acked.len(),
        failed.len(),
        failed
            .first()
            .map(|(k, e)| format!(" (first: {} {e})", String::from_utf8_lossy(k)))
            .unwrap_or_default()
    );
    assert!(
        acked.len() as u64 >= sent / 2,
        "only {} of {sent} records were acknowledged: the load did not get through",
        acked.len()
    );

    let records = consume_all(
        &bootstrap,
        TOPIC,
        PARTITIONS,
        acked.len(),
        Duration::from_secs(90),
    );
    let mut in_log: HashMap<Vec<u8>, Placement> = HashMap::with_capacity(records.len());
    let mut last_offset: HashMap<i32, i64> = HashMap::new();
    for record in &records {
        let key = record.key.clone().unwrap_or_default();
        let placement = Placement {
            partition: record.partition,
            offset: record.offset,
        };
        if let Some(first) = in_log.insert(key.clone(), placement) {
            panic!(
                "{} is in the log twice: {first:?} and {placement:?}",
                String::from_utf8_lossy(&key)
            );
        }
        let last = last_offset.entry(record.partition).or_insert(-1);
        assert!(
            record.offset > *last,
            "partition {} went back from offset {last} to {}",
            record.partition,
            record.offset
        );
        *last = record.offset;
    }
    let mut missing = 0;
    for (key, placement) in &acked {
        match in_log.get(key) {
            Some(found) => assert_eq!(
                found,
                placement,
                "{} is not where it was acknowledged",
                String::from_utf8_lossy(key)
            ),
            None => missing += 1,
        }
    }
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged records are missing after {KILLS} kills",
        acked.len()
    );
    eprintln!(
        "crash points: all {} acknowledged records read back once; {} records in the log",
        acked.len(),
        records.len()
    );
}
