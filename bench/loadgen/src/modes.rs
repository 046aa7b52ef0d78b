//! The three load shapes. Records are `--record-size` bytes of JSON-like events from
//! [`crate::payload`]; the first 8 bytes carry the send time (microseconds since the Unix epoch)
//! so the consumer can measure end-to-end latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Args;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::json;

use crate::latency::Latencies;
use crate::payload::{Pool, TIMESTAMP_BYTES};

/// The payload pool's seed: every run sends the same records.
const PAYLOAD_SEED: u64 = 0x1e7;

#[derive(Args, Clone)]
pub struct ProduceArgs {
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// 0, 1 or all.
    #[arg(long, default_value = "1")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Replication factor of the topic if this tool creates it.
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,
    /// A topic config (`name=value`, repeatable) for the topic if this tool creates it, e.g.
    /// `min.insync.replicas=2`.
    #[arg(long = "topic-config", value_parser = parse_config)]
    topic_configs: Vec<(String, String)>,
    /// Cap the send rate (MB/s); 0 sends as fast as the client can.
    #[arg(long, default_value_t = 0.0)]
    rate_mb: f64,
    /// librdkafka's linger.ms: batching delay traded for throughput.
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// librdkafka's max.in.flight.requests.per.connection (its default, 1000000, unless set).
    /// A broker answers a connection's requests in order, one at a time, as Kafka does; with
    /// no cap and linger.ms=0, every record that arrives while requests wait goes out as
    /// another small request behind them instead of joining a batch.
    #[arg(long)]
    max_in_flight: Option<u32>,
    /// Produce in transactions (a transactional producer, `transactional.id` inlet-loadgen),
    /// committing one every this many ms; 0: no transactions.
    #[arg(long, default_value_t = 0)]
    transaction_ms: u64,
}

#[derive(Args)]
pub struct ConsumeArgs {
    /// Stop after this long even if the end was not reached.
    #[arg(long, default_value_t = 120)]
    timeout_seconds: u64,
}

#[derive(Args)]
pub struct EndToEndArgs {
    #[command(flatten)]
    produce: ProduceArgs,
}

fn parse_config(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("expected name=value, got {text:?}")),
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

struct Acks {
    latencies: Latencies,
    acked: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Instant>) {
        match result {
            Ok(_) => {
                self.latencies.record(sent.elapsed());
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn create_topic(bootstrap: &str, topic: &str, args: &ProduceArgs) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating the admin client")?;
    let mut new = NewTopic::new(
        topic,
        args.partitions,
        TopicReplication::Fixed(args.replication_factor),
    );
    for (name, value) in &args.topic_configs {
        new = new.set(name, value);
    }
    let results = block_on(admin.create_topics([&new], &AdminOptions::new()))?
        .context("creating the topic")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}

/// rdkafka's admin calls are futures; this tool has no runtime, so poll on a thread.
fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let mut future = Box::pin(future);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Ok(out);
        }
        if Instant::now() > deadline {
            bail!("admin request timed out");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn producer(bootstrap: &str, args: &ProduceArgs) -> anyhow::Result<ThreadedProducer<Acks>> {
    let acks = Acks {
        latencies: Latencies::default(),
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    };
    let mut config = ClientConfig::new();
    if let Some(max) = args.max_in_flight {
        config.set("max.in.flight.requests.per.connection", max.to_string());
    }
    if args.transaction_ms > 0 {
        config.set("transactional.id", "inlet-loadgen");
    }
    config
        .set("bootstrap.servers", bootstrap)
        .set("acks", &args.acks)
        .set("compression.codec", &args.compression)
        .set("linger.ms", args.linger_ms.to_string())
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(acks)
        .context("creating the producer")
        .and_then(|producer: ThreadedProducer<Acks>| {
            if args.transaction_ms > 0 {
                producer
                    .init_transactions(Duration::from_secs(30))
                    .context("init_transactions")?;
            }
            Ok(producer)
        })
}

/// Sends for `args.seconds`, paced by `args.rate_mb` if set; returns (records sent, elapsed).
fn send_for(producer: &ThreadedProducer<Acks>, topic: &str, args: &ProduceArgs) -> (u64, Duration) {
    // Made before the clock starts: the loop only stamps and sends.
    let mut pool = Pool::new(args.record_size, PAYLOAD_SEED);
    let record_size = args.record_size.max(TIMESTAMP_BYTES);
    let start = Instant::now();
    let duration = Duration::from_secs(args.seconds);
    let bytes_per_sec = args.rate_mb * 1024.0 * 1024.0;
    let mut sent = 0u64;
    let transactions =
        (args.transaction_ms > 0).then(|| Duration::from_millis(args.transaction_ms));
    let mut transaction_started = Instant::now();
    if transactions.is_some() {
        if let Err(error) = producer.begin_transaction() {
            eprintln!("begin_transaction failed: {error}");
            return (0, start.elapsed());
        }
    }
    while start.elapsed() < duration {
        if let Some(every) = transactions {
            if transaction_started.elapsed() >= every {
                let commit = producer
                    .commit_transaction(Duration::from_secs(60))
                    .and_then(|()| producer.begin_transaction());
                if let Err(error) = commit {
                    eprintln!("committing a transaction failed: {error}");
                    return (sent, start.elapsed());
                }
                transaction_started = Instant::now();
            }
        }
        if bytes_per_sec > 0.0 {
            let due = Duration::from_secs_f64(sent as f64 * record_size as f64 / bytes_per_sec);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait.min(Duration::from_millis(1)));
                continue;
            }
        }
        let payload = pool.next_record();
        payload[..TIMESTAMP_BYTES].copy_from_slice(&now_micros().to_be_bytes());
        let mut record: BaseRecord<'_, (), [u8], Box<Instant>> =
            BaseRecord::with_opaque_to(topic, Box::new(Instant::now())).payload(&payload[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((error, _)) => {
                    eprintln!("send failed: {error}");
                    break;
                }
            }
        }
        sent += 1;
    }
    if transactions.is_some() {
        if let Err(error) = producer.commit_transaction(Duration::from_secs(60)) {
            eprintln!("committing the last transaction failed: {error}");
        }
    }
    (sent, start.elapsed())
}

pub fn produce(
    bootstrap: &str,
    topic: &str,
    args: &ProduceArgs,
) -> anyhow::Result<serde_json::Value> {
    create_topic(bootstrap, topic, args)?;
    let producer = producer(bootstrap, args)?;
    let start = Instant::now();
    let (sent, _) = send_for(&producer, topic, args);
    producer
        .flush(Duration::from_secs(60))
        .context("flushing the producer")?;
    // Throughput counts the time until the last acknowledgement, not just the sending loop.
    let elapsed = start.elapsed().as_secs_f64();
    let start_to_acked = producer.context();
    let acked = start_to_acked.acked.load(Ordering::Relaxed);
    let failed = start_to_acked.failed.load(Ordering::Relaxed);
    let (p50, p99, p999) = start_to_acked.latencies.percentiles_ms();
    let bytes = acked * args.record_size as u64;
    Ok(json!({
        "mode": "produce", "acks": args.acks, "compression": args.compression,
        "transaction_ms": args.transaction_ms,
        "record_size": args.record_size, "replication_factor": args.replication_factor,
        "sent": sent, "acked": acked, "failed": failed,
        "seconds": elapsed, "records_per_sec": acked as f64 / elapsed,
        "mb_per_sec": mb(bytes) / elapsed, "p50_ms": p50, "p99_ms": p99, "p999_ms": p999,
    }))
}

fn consumer(bootstrap: &str) -> anyhow::Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "inlet-loadgen")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set("queued.max.messages.kbytes", "262144")
        .create()
        .context("creating the consumer")
}

/// Assigns every partition of `topic` from `from`; returns the end offsets seen now.
fn assign_all(
    consumer: &BaseConsumer,
    topic: &str,
    from: Offset,
) -> anyhow::Result<Vec<(i32, i64)>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("fetching metadata")?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::new();
    for &p in &partitions {
        assignment.add_partition_offset(topic, p, from)?;
        let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        ends.push((p, high));
    }
    consumer.assign(&assignment)?;
    Ok(ends)
}

pub fn consume(
    bootstrap: &str,
    topic: &str,
    args: &ConsumeArgs,
) -> anyhow::Result<serde_json::Value> {
    let consumer = consumer(bootstrap)?;
    let ends = assign_all(&consumer, topic, Offset::Beginning)?;
    let mut remaining: std::collections::HashMap<i32, i64> =
        ends.into_iter().filter(|&(_, end)| end > 0).collect();
    let start = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    while !remaining.is_empty() && start.elapsed() < Duration::from_secs(args.timeout_seconds) {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.context("consuming")?;
        records += 1;
        bytes += message.payload_len() as u64;
        if let Some(&end) = remaining.get(&message.partition()) {
            if message.offset() + 1 >= end {
                remaining.remove(&message.partition());
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    if !remaining.is_empty() {
        bail!(
            "did not reach the end of partitions {:?} in time",
            remaining.keys()
        );
    }
    Ok(json!({
        "mode": "consume", "records": records, "seconds": elapsed,
        "records_per_sec": records as f64 / elapsed, "mb_per_sec": mb(bytes) / elapsed,
    }))
}

/// Sends one untimed record (its timestamp bytes zero) to every partition and waits for their
/// acks, so the timed records do not wait for the producer's start (metadata, connections to
/// every leader): a latency run measures the steady state, as benchmarks' warm-up phases do.
/// Without it the first tens of milliseconds of records (over 1% of a 6 s run at 20 MB/s)
/// carried the connection setup and set the p99.
fn warm_up(producer: &ThreadedProducer<Acks>, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let payload = [0u8; TIMESTAMP_BYTES];
    for partition in 0..partitions {
        let record: BaseRecord<'_, (), [u8], Box<Instant>> =
            BaseRecord::with_opaque_to(topic, Box::new(Instant::now()))
                .payload(&payload[..])
                .partition(partition);
        producer
            .send(record)
            .map_err(|(error, _)| anyhow::anyhow!("warm-up send failed: {error}"))?;
    }
    producer
        .flush(Duration::from_secs(30))
        .context("flushing the warm-up records")
}

pub fn end_to_end(
    bootstrap: &str,
    topic: &str,
    args: &EndToEndArgs,
) -> anyhow::Result<serde_json::Value> {
    let args = &args.produce;
    create_topic(bootstrap, topic, args)?;
    let consumer = consumer(bootstrap)?;
    assign_all(&consumer, topic, Offset::End)?;
    let latencies = Arc::new(Latencies::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (latencies, stop) = (latencies.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut received = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) else {
                    continue;
                };
                if let Some(sent) = message.payload().and_then(|p| p.get(..8)) {
                    let sent = u64::from_be_bytes(sent.try_into().unwrap_or([0; 8]));
                    if sent == 0 {
                        // A warm-up record (see below): not timed.
                        continue;
                    }
                    latencies.record(Duration::from_micros(now_micros().saturating_sub(sent)));
                    received += 1;
                }
            }
            received
        })
    };
    // Let the consumer's first fetches start before producing.
    std::thread::sleep(Duration::from_secs(2));
    let producer = producer(bootstrap, args)?;
    warm_up(&producer, topic, args.partitions)?;
    let (sent, elapsed) = send_for(&producer, topic, args);
    producer
        .flush(Duration::from_secs(60))
        .context("flushing the producer")?;
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let received = reader
        .join()
        .map_err(|_| anyhow::anyhow!("consumer thread panicked"))?;
    let (p50, p99, p999) = latencies.percentiles_ms();
    Ok(json!({
        "mode": "end-to-end", "rate_mb": args.rate_mb, "acks": args.acks,
        "linger_ms": args.linger_ms, "max_in_flight": args.max_in_flight,
        "replication_factor": args.replication_factor, "sent": sent, "received": received,
        "seconds": elapsed.as_secs_f64(), "p50_ms": p50, "p99_ms": p99, "p999_ms": p999,
    }))
}
