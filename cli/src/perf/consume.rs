//! `inlet perf consume`: read a topic from its earliest offsets with large fetches, counting
//! records from batch headers (no decompression), until `--num-records`, `--duration`, or the
//! end offsets seen at start are reached. Latency is per Fetch round trip.

use std::time::{Duration, Instant};

use clap::Args;
use inlet_protocol::client::check;
use inlet_protocol::client::cluster::{EARLIEST, LATEST};
use inlet_protocol::client::records::count_records;

use super::{parse_duration, Latencies, Progress, Report};
use crate::connect::Context;
use crate::consume::fetch;

#[derive(Args)]
pub struct PerfConsumeArgs {
    topic: String,
    /// Stop after this many records (default: at the end offsets the topic had at start).
    #[arg(long)]
    num_records: Option<u64>,
    /// Stop after this long (e.g. 30s).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Bytes per partition per fetch.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    fetch_size: i32,
}

pub async fn run(context: &Context, args: PerfConsumeArgs) -> anyhow::Result<Report> {
    let mut cluster = context.connect().await?;
    let topic = cluster.topic(&args.topic).await?;
    let indexes: Vec<i32> = topic.partitions.iter().map(|p| p.index).collect();
    let mut positions = cluster.list_offsets(&topic, &indexes, EARLIEST).await?;
    let ends = cluster.list_offsets(&topic, &indexes, LATEST).await?;
    let deadline = args.duration.map(|d| Instant::now() + d);
    let mut latencies = Latencies::default();
    let mut progress = Progress::new();
    let (mut records, mut bytes) = (0u64, 0u64);
    let started = Instant::now();
    loop {
        let done = match (args.num_records, deadline) {
            (Some(n), _) if records >= n => true,
            (_, Some(t)) if Instant::now() >= t => true,
            (None, None) => positions
                .iter()
                .all(|(p, o)| ends.get(p).is_none_or(|end| o >= end)),
            _ => false,
        };
        if done {
            break;
        }
        let before = Instant::now();
        let fetched = fetch(&mut cluster, &topic, &positions, 500, args.fetch_size).await?;
        let mut round = 0u64;
        for f in fetched {
            check(f.error_code, || {
                format!("fetch {}/{}", topic.name, f.partition)
            })?;
            let counted = count_records(&f.records);
            if let Some(next) = counted.next_offset {
                positions.insert(f.partition, next);
            }
            round += counted.records;
            bytes += counted.bytes;
        }
        latencies.record(before.elapsed(), round.max(1));
        records += round;
        progress.tick(records, bytes);
    }
    let elapsed = started.elapsed();
    progress.finish();
    Ok(Report {
        what: "consume",
        records,
        bytes,
        elapsed,
        latencies,
        latency_of: "per fetch round trip, weighted by its records",
    })
}
