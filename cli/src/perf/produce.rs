//! `inlet perf produce`: generated records of a fixed size, batched per partition (partitions in
//! turn), with up to `--max-in-flight` Produce requests outstanding per connection. Latency is
//! per request, from writing it to reading its answer, and counts once for each record in it.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::Args;
use inlet_protocol::client::check_with_message;
use inlet_protocol::client::cluster::topic_name;
use inlet_protocol::client::pipeline::{Pipeline, ResponseFuture};
use inlet_protocol::client::records::{encode_batch, parse_compression, ProducerRecord};
use inlet_protocol::client::Client;
use inlet_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use inlet_protocol::kafka_protocol::messages::ProduceRequest;
use inlet_protocol::kafka_protocol::records::Compression;

use super::{parse_duration, Latencies, Progress, Report};
use crate::connect::Context;
use crate::produce::{now_ms, parse_acks, PRODUCE_CAP};

#[derive(Args)]
pub struct PerfProduceArgs {
    topic: String,
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Records to send (default 1,000,000 unless --duration is given).
    #[arg(long, conflicts_with = "duration")]
    num_records: Option<u64>,
    /// Send for this long instead (e.g. 30s).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Records per second at most (default: as fast as possible).
    #[arg(long)]
    throughput: Option<f64>,
    /// 0, 1 or all.
    #[arg(long, default_value = "1", value_parser = parse_acks)]
    acks: i16,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    compression: Compression,
    /// Bytes of record values per batch (one batch per partition per request).
    #[arg(long, default_value_t = 64 * 1024)]
    batch_size: usize,
    /// Produce requests outstanding per connection.
    #[arg(long, default_value_t = 32)]
    max_in_flight: usize,
}

struct InFlight {
    sent: Instant,
    records: u64,
    partition: i32,
    response: ResponseFuture<ProduceRequest>,
}

pub async fn run(context: &Context, args: PerfProduceArgs) -> anyhow::Result<Report> {
    if args.record_size == 0 || args.max_in_flight == 0 {
        bail!("--record-size and --max-in-flight must be at least 1");
    }
    let mut cluster = context.connect().await?;
    cluster
        .metadata(Some(std::slice::from_ref(&args.topic)), true)
        .await?;
    let topic = cluster.topic(&args.topic).await?;
    let mut pipelines: BTreeMap<i32, Pipeline> = BTreeMap::new();
    for p in &topic.partitions {
        if let std::collections::btree_map::Entry::Vacant(e) = pipelines.entry(p.leader) {
            let addr = cluster.brokers().get(&p.leader).cloned().with_context(|| {
                format!(
                    "partition {} has no reachable leader ({})",
                    p.index, p.leader
                )
            })?;
            let client = Client::connect(addr.as_str(), "inlet-perf").await?;
            e.insert(Pipeline::new(client));
        }
    }
    let per_batch = (args.batch_size / args.record_size).max(1);
    let limit = match (args.num_records, args.duration) {
        (Some(n), _) => Limit::Records(n),
        (None, Some(d)) => Limit::Until(Instant::now() + d),
        (None, None) => Limit::Records(1_000_000),
    };
    let pool = payload_pool(args.record_size);
    let mut in_flight: BTreeMap<i32, VecDeque<InFlight>> = BTreeMap::new();
    let mut latencies = Latencies::default();
    let mut progress = Progress::new();
    let (mut sent, mut acked, mut acked_bytes) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    let mut next_partition = 0usize;
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    while limit.more(sent) {
        let n = match limit {
            Limit::Records(total) => per_batch.min((total - sent) as usize),
            Limit::Until(_) => per_batch,
        };
        if let Some(rate) = args.throughput.filter(|r| *r > 0.0) {
            let due = started + Duration::from_secs_f64(sent as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let partition = &topic.partitions[next_partition % topic.partitions.len()];
        next_partition += 1;
        let timestamp = now_ms();
        let records: Vec<ProducerRecord> = (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed % (pool.len() - args.record_size) as u64) as usize;
                ProducerRecord {
                    value: Some(pool.slice(at..at + args.record_size)),
                    timestamp,
                    ..ProducerRecord::default()
                }
            })
            .collect();
        let batch = encode_batch(&records, args.compression)?;
        let request = ProduceRequest::default()
            .with_acks(args.acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&topic.name))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition.index)
                    .with_records(Some(batch))])]);
        let queue = in_flight.entry(partition.leader).or_default();
        // Responses come back in order, so the oldest request is the one to wait for.
        while queue.len() >= args.max_in_flight {
            if let Some(done) = queue.pop_front() {
                let records = complete(done, &topic.name, &mut latencies).await?;
                acked += records;
                acked_bytes += records * args.record_size as u64;
            }
        }
        let pipeline = pipelines
            .get_mut(&partition.leader)
            .context("no connection to the partition leader")?;
        let version = pipeline.version_capped::<ProduceRequest>(PRODUCE_CAP)?;
        let before = Instant::now();
        match pipeline.send(&request, version, args.acks != 0).await? {
            Some(response) => queue.push_back(InFlight {
                sent: before,
                records: n as u64,
                partition: partition.index,
                response,
            }),
            None => {
                // acks=0: nothing comes back; count the record as done once written.
                latencies.record(before.elapsed(), n as u64);
                acked += n as u64;
                acked_bytes += (n * args.record_size) as u64;
            }
        }
        sent += n as u64;
        progress.tick(acked, acked_bytes);
    }
    for (_, queue) in in_flight {
        for done in queue {
            complete(done, &topic.name, &mut latencies).await?;
        }
    }
    let elapsed = started.elapsed();
    progress.finish();
    Ok(Report {
        what: "produce",
        records: sent,
        bytes: sent * args.record_size as u64,
        elapsed,
        latencies,
        latency_of: if args.acks == 0 {
            "acks=0: time to write each request (no answers)"
        } else {
            "per request, from write to acknowledgement, weighted by its records"
        },
    })
}

/// Waits for one request's answer, checks it and records its latency; returns its records.
async fn complete(done: InFlight, topic: &str, latencies: &mut Latencies) -> anyhow::Result<u64> {
    let (response, received) = done.response.wait_timed().await?;
    for t in &response.responses {
        for p in &t.partition_responses {
            check_with_message(p.error_code, p.error_message.as_deref(), || {
                format!("produce to {topic}/{}", done.partition)
            })?;
        }
    }
    latencies.record(received.duration_since(done.sent), done.records);
    Ok(done.records)
}

enum Limit {
    Records(u64),
    Until(Instant),
}

impl Limit {
    fn more(&self, sent: u64) -> bool {
        match self {
            Limit::Records(n) => sent < *n,
            Limit::Until(t) => Instant::now() < *t,
        }
    }
}

/// Random upper-case letters (as Kafka's perf tool sends), 1 MiB plus one record, from which
/// each record takes a slice at a random position: varied, somewhat compressible, no copies.
fn payload_pool(record_size: usize) -> Bytes {
    let len = (1 << 20) + record_size + 1;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let pool: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b'A' + (state % 26) as u8
        })
        .collect();
    Bytes::from(pool)
}
