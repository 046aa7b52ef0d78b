//! `inlet topic delete-records --topic T [--partition P] --offset O`: DeleteRecords (Kafka's
//! `kafka-delete-records.sh`). The partition's log start moves to `O` (-1: its high watermark);
//! without `--partition`, every partition of the topic. Prints each partition with its new log
//! start (the low watermark); a partition the broker refused is reported on stderr with Kafka's
//! error and the command fails once all are printed.

use anyhow::{bail, Context as _};
use clap::Args;
use inlet_protocol::client::cluster::Cluster;
use serde_json::json;

use crate::connect::Context;
use crate::output::{print_json, Output, Table};

/// How long the leader may wait for its followers (Kafka's `timeout_ms`).
const TIMEOUT_MS: i32 = 30_000;

#[derive(Args)]
pub struct DeleteRecordsArgs {
    /// The topic.
    #[arg(long)]
    topic: String,
    /// The partition (default: every partition of the topic).
    #[arg(long)]
    partition: Option<i32>,
    /// Records below this offset are deleted; -1 means the partition's high watermark.
    #[arg(long, allow_negative_numbers = true)]
    offset: i64,
}

pub async fn run(
    context: &Context,
    cluster: &mut Cluster,
    args: DeleteRecordsArgs,
) -> anyhow::Result<()> {
    if args.offset < -1 {
        bail!(
            "--offset must be -1 (the high watermark) or an offset, not {}",
            args.offset
        );
    }
    let topic = cluster
        .topic(&args.topic)
        .await
        .with_context(|| format!("cannot find topic {}", args.topic))?;
    let partitions: Vec<i32> = match args.partition {
        Some(p) => vec![p],
        None => topic.partitions.iter().map(|p| p.index).collect(),
    };
    let wanted: Vec<(i32, i64)> = partitions.iter().map(|&p| (p, args.offset)).collect();
    let results = cluster
        .delete_records(&topic, &wanted, TIMEOUT_MS)
        .await
        .with_context(|| format!("delete records of {}", args.topic))?;
    let mut failed = 0;
    let mut table = Table::new(&["PARTITION", "LOW_WATERMARK"]);
    let mut rows = Vec::new();
    for (partition, result) in &results {
        match result {
            Ok(low) => {
                table.row(vec![partition.to_string(), low.to_string()]);
                rows.push(json!({ "partition": partition, "low_watermark": low }));
            }
            Err(error) => {
                failed += 1;
                eprintln!("partition {partition}: {error}");
                rows.push(json!({ "partition": partition, "error": error.to_string() }));
            }
        }
    }
    match context.output {
        Output::Json => print_json(&json!({ "topic": args.topic, "partitions": rows }))?,
        Output::Table if failed < results.len() => table.print()?,
        Output::Table => {}
    }
    if failed > 0 {
        bail!(
            "{failed} of {} partitions of {} refused the deletion",
            results.len(),
            args.topic
        );
    }
    Ok(())
}
