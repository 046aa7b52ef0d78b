//! `inlet topic reassign` (AlterPartitionReassignments: move a partition's replicas to other
//! brokers, or `--cancel` a move) and `inlet topic reassignments` (ListPartitionReassignments:
//! the moves in progress, with the replicas being added and removed).

use anyhow::bail;
use clap::Args;
use inlet_protocol::client::check_with_message;
use inlet_protocol::client::cluster::{topic_name, Cluster};
use inlet_protocol::kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use inlet_protocol::kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use inlet_protocol::kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ListPartitionReassignmentsRequest,
};
use serde_json::json;

use crate::output::{ids, print_json, Output, Table};

#[derive(Args)]
pub struct ReassignArgs {
    name: String,
    /// The partition to move.
    #[arg(long)]
    partition: i32,
    /// The target replicas, comma-separated broker ids; the first is the preferred leader.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "cancel",
        conflicts_with = "cancel"
    )]
    replicas: Vec<i32>,
    /// Cancel the move in progress: back to the original replicas.
    #[arg(long)]
    cancel: bool,
}

#[derive(Args)]
pub struct ListArgs {
    /// Only this topic (default: every topic).
    name: Option<String>,
}

pub async fn reassign(
    cluster: &mut Cluster,
    output: Output,
    args: ReassignArgs,
) -> anyhow::Result<()> {
    let replicas = (!args.cancel).then(|| args.replicas.iter().map(|&b| BrokerId(b)).collect());
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_allow_replication_factor_change(true)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(topic_name(&args.name))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(args.partition)
                .with_replicas(replicas)])]);
    let response = cluster.controller().await?.send_capped(request, 1).await?;
    check_with_message(
        response.error_code,
        response.error_message.as_deref(),
        || "reassigning".to_string(),
    )?;
    for topic in &response.responses {
        for p in &topic.partitions {
            check_with_message(p.error_code, p.error_message.as_deref(), || {
                format!("reassigning {}-{}", args.name, p.partition_index)
            })?;
        }
    }
    let what = if args.cancel {
        "cancelled the move of"
    } else {
        "moving"
    };
    match output {
        Output::Json => print_json(&json!({
            "topic": args.name, "partition": args.partition,
            "cancelled": args.cancel, "replicas": args.replicas,
        })),
        Output::Table => {
            println!("{what} {}-{}", args.name, args.partition);
            if !args.cancel {
                println!(
                    "target replicas {}; it completes once they are all in sync (see `inlet topic reassignments`)",
                    ids(&args.replicas)
                );
            }
            Ok(())
        }
    }
}

pub async fn list(cluster: &mut Cluster, output: Output, args: ListArgs) -> anyhow::Result<()> {
    let topics = match &args.name {
        None => None,
        Some(name) => {
            let info = cluster.topic(name).await?;
            Some(vec![ListPartitionReassignmentsTopics::default()
                .with_name(topic_name(name))
                .with_partition_indexes(
                    (0..info.partitions.len() as i32).collect(),
                )])
        }
    };
    let request = ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(topics);
    let response = cluster.controller().await?.send_capped(request, 0).await?;
    if response.error_code != 0 {
        bail!(
            "ListPartitionReassignments refused: error {}",
            response.error_code
        );
    }
    let plain = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    let mut rows = Vec::new();
    for topic in &response.topics {
        for p in &topic.partitions {
            rows.push((
                topic.name.to_string(),
                p.partition_index,
                plain(&p.replicas),
                plain(&p.adding_replicas),
                plain(&p.removing_replicas),
            ));
        }
    }
    match output {
        Output::Json => print_json(&json!(rows
            .iter()
            .map(|(t, p, r, a, d)| json!({"topic": t, "partition": p, "replicas": r, "adding": a, "removing": d}))
            .collect::<Vec<_>>())),
        Output::Table => {
            if rows.is_empty() {
                println!("no reassignment in progress");
                return Ok(());
            }
            let mut table = Table::new(&["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"]);
            for (t, p, r, a, d) in &rows {
                table.row(vec![t.clone(), p.to_string(), ids(r), ids(a), ids(d)]);
            }
            table.print()
        }
    }
}
