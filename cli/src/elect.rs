//! `inlet cluster elect-leaders`: ElectLeaders for a partition, a topic's partitions, or every
//! partition (preferred leaders by default, `--unclean` for a leaderless partition), sent to the
//! controller; prints each partition's outcome.

use anyhow::bail;
use clap::Args;
use inlet_protocol::client::cluster::{topic_name, Cluster};
use inlet_protocol::kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use inlet_protocol::kafka_protocol::messages::ElectLeadersRequest;
use inlet_protocol::kafka_protocol::ResponseError;
use serde_json::json;

use crate::output::{print_json, Output, Table};

#[derive(Args)]
pub struct ElectArgs {
    /// Only this topic's partitions (default: every partition of the cluster).
    #[arg(long)]
    topic: Option<String>,
    /// Only this partition of `--topic`.
    #[arg(long, requires = "topic")]
    partition: Option<i32>,
    /// Unclean election: give a partition that has no leader any live replica, even one outside
    /// the ISR (it may lack acknowledged records).
    #[arg(long)]
    unclean: bool,
}

pub async fn run(cluster: &mut Cluster, output: Output, args: ElectArgs) -> anyhow::Result<()> {
    let topic_partitions = match &args.topic {
        None => None,
        Some(topic) => {
            let partitions = match args.partition {
                Some(p) => vec![p],
                None => {
                    let info = cluster.topic(topic).await?;
                    (0..info.partitions.len() as i32).collect()
                }
            };
            Some(vec![TopicPartitions::default()
                .with_topic(topic_name(topic))
                .with_partitions(partitions)])
        }
    };
    let request = ElectLeadersRequest::default()
        .with_election_type(i8::from(args.unclean))
        .with_topic_partitions(topic_partitions)
        .with_timeout_ms(30_000);
    let response = cluster.controller().await?.send_capped(request, 2).await?;
    if response.error_code != 0 {
        bail!("ElectLeaders refused: error {}", response.error_code);
    }
    let mut rows = Vec::new();
    for topic in &response.replica_election_results {
        for p in &topic.partition_result {
            let outcome = match p.error_code {
                0 => "elected".to_string(),
                code => ResponseError::try_from_code(code)
                    .map_or_else(|| format!("error {code}"), |e| format!("{e:?}")),
            };
            rows.push((
                topic.topic.to_string(),
                p.partition_id,
                outcome,
                p.error_code,
            ));
        }
    }
    match output {
        Output::Json => print_json(&json!(rows
            .iter()
            .map(|(t, p, outcome, code)| json!({"topic": t, "partition": p, "outcome": outcome, "error_code": code}))
            .collect::<Vec<_>>())),
        Output::Table => {
            if rows.is_empty() {
                println!("every partition is led by its preferred replica");
                return Ok(());
            }
            let mut table = Table::new(&["TOPIC", "PARTITION", "OUTCOME"]);
            for (t, p, outcome, _) in &rows {
                table.row(vec![t.clone(), p.to_string(), outcome.clone()]);
            }
            table.print()
        }
    }
}
