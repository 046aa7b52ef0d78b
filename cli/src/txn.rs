//! `inlet txn list|describe|producers`: transactions as the cluster sees them (KIP-664):
//! ListTransactions on every broker, DescribeTransactions at a transactional id's coordinator,
//! and DescribeProducers at the leaders of a topic's partitions.

use std::collections::BTreeMap;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use inlet_protocol::client::cluster::{topic_name, Cluster};
use inlet_protocol::client::{check, check_with_message};
use inlet_protocol::kafka_protocol::messages::describe_producers_request::TopicRequest;
use inlet_protocol::kafka_protocol::messages::{
    DescribeProducersRequest, DescribeTransactionsRequest, FindCoordinatorRequest,
    ListTransactionsRequest, ProducerId, TransactionalId,
};
use inlet_protocol::kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::connect::Context;
use crate::output::{print_json, Output, Table};

/// FindCoordinator's key type for transactional ids.
const TRANSACTION_KEY: i8 = 1;
/// FindCoordinator v4 batches keys; v3 still takes one, which is all this needs.
const FIND_COORDINATOR_CAP: i16 = 3;

#[derive(Args)]
pub struct TxnArgs {
    #[command(subcommand)]
    command: TxnCommand,
}

#[derive(Subcommand, Debug, PartialEq)]
enum TxnCommand {
    /// List transactional ids known to the coordinators of every broker.
    List {
        /// Only transactions in this state (Ongoing, PrepareCommit, CompleteAbort, ...);
        /// repeatable.
        #[arg(long = "state", value_name = "STATE")]
        states: Vec<String>,
        /// Only transactions of this producer id; repeatable.
        #[arg(long = "producer-id", value_name = "ID")]
        producer_ids: Vec<i64>,
    },
    /// Show one transactional id: state, producer, timeout, start time and its partitions.
    Describe {
        #[arg(value_name = "TRANSACTIONAL_ID")]
        transactional_id: String,
    },
    /// Show the active producers of a topic's partitions (DescribeProducers at their leaders).
    Producers {
        topic: String,
        /// Only this partition; repeatable (default: all).
        #[arg(long = "partition", value_name = "P")]
        partitions: Vec<i32>,
    },
}

pub async fn run(context: &Context, args: TxnArgs) -> anyhow::Result<()> {
    let mut cluster = context.connect().await?;
    match args.command {
        TxnCommand::List {
            states,
            producer_ids,
        } => list(context, &mut cluster, states, producer_ids).await,
        TxnCommand::Describe { transactional_id } => {
            describe(context, &mut cluster, &transactional_id).await
        }
        TxnCommand::Producers { topic, partitions } => {
            producers(context, &mut cluster, &topic, partitions).await
        }
    }
}

#[derive(Serialize)]
struct Listed {
    transactional_id: String,
    producer_id: i64,
    state: String,
    coordinator: i32,
}

async fn list(
    context: &Context,
    cluster: &mut Cluster,
    states: Vec<String>,
    producer_ids: Vec<i64>,
) -> anyhow::Result<()> {
    let request = ListTransactionsRequest::default()
        .with_state_filters(states.into_iter().map(StrBytes::from_string).collect())
        .with_producer_id_filters(producer_ids.into_iter().map(ProducerId).collect());
    let nodes: Vec<i32> = cluster.brokers().keys().copied().collect();
    let mut listed: BTreeMap<String, Listed> = BTreeMap::new();
    for node in nodes {
        let response = cluster.broker(node).await?.send(request.clone()).await?;
        check(response.error_code, || {
            format!("list transactions on broker {node}")
        })?;
        if !response.unknown_state_filters.is_empty() {
            let unknown: Vec<String> = response
                .unknown_state_filters
                .iter()
                .map(|s| s.to_string())
                .collect();
            bail!("unknown transaction state(s): {}", unknown.join(", "));
        }
        for t in response.transaction_states {
            listed.insert(
                t.transactional_id.to_string(),
                Listed {
                    transactional_id: t.transactional_id.to_string(),
                    producer_id: t.producer_id.0,
                    state: t.transaction_state.to_string(),
                    coordinator: node,
                },
            );
        }
    }
    match context.output {
        Output::Json => print_json(&listed.into_values().collect::<Vec<_>>()),
        Output::Table => {
            let mut table =
                Table::new(&["TRANSACTIONAL ID", "PRODUCER ID", "STATE", "COORDINATOR"]);
            for t in listed.into_values() {
                table.row(vec![
                    t.transactional_id,
                    t.producer_id.to_string(),
                    t.state,
                    t.coordinator.to_string(),
                ]);
            }
            table.print()
        }
    }
}

#[derive(Serialize)]
struct Described {
    transactional_id: String,
    coordinator: i32,
    state: String,
    producer_id: i64,
    producer_epoch: i16,
    timeout_ms: i32,
    start_time_ms: i64,
    partitions: Vec<(String, i32)>,
}

/// The node coordinating `transactional_id`.
async fn transaction_coordinator(
    cluster: &mut Cluster,
    transactional_id: &str,
) -> anyhow::Result<i32> {
    let request = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(transactional_id.to_string()))
        .with_key_type(TRANSACTION_KEY);
    let response = cluster
        .any()
        .send_capped(request, FIND_COORDINATOR_CAP)
        .await?;
    check_with_message(
        response.error_code,
        response.error_message.as_deref(),
        || format!("find the coordinator of transactional id {transactional_id}"),
    )?;
    Ok(response.node_id.0)
}

async fn describe(
    context: &Context,
    cluster: &mut Cluster,
    transactional_id: &str,
) -> anyhow::Result<()> {
    let node = transaction_coordinator(cluster, transactional_id).await?;
    let request =
        DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
            StrBytes::from_string(transactional_id.to_string()),
        )]);
    let response = cluster
        .broker(node)
        .await
        .with_context(|| format!("connect to transaction coordinator {node}"))?
        .send(request)
        .await?;
    let Some(state) = response.transaction_states.into_iter().next() else {
        bail!("describe transaction {transactional_id}: empty answer");
    };
    check(state.error_code, || {
        format!("describe transaction {transactional_id}")
    })?;
    let mut partitions: Vec<(String, i32)> = state
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
        .collect();
    partitions.sort();
    let described = Described {
        transactional_id: transactional_id.to_string(),
        coordinator: node,
        state: state.transaction_state.to_string(),
        producer_id: state.producer_id.0,
        producer_epoch: state.producer_epoch,
        timeout_ms: state.transaction_timeout_ms,
        start_time_ms: state.transaction_start_time_ms,
        partitions,
    };
    match context.output {
        Output::Json => print_json(&described),
        Output::Table => {
            let mut table = Table::new(&[
                "TRANSACTIONAL ID",
                "COORDINATOR",
                "STATE",
                "PRODUCER ID",
                "EPOCH",
                "TIMEOUT MS",
                "START TIME MS",
                "PARTITIONS",
            ]);
            let partitions: Vec<String> = described
                .partitions
                .iter()
                .map(|(t, p)| format!("{t}-{p}"))
                .collect();
            table.row(vec![
                described.transactional_id,
                described.coordinator.to_string(),
                described.state,
                described.producer_id.to_string(),
                described.producer_epoch.to_string(),
                described.timeout_ms.to_string(),
                described.start_time_ms.to_string(),
                partitions.join(","),
            ]);
            table.print()
        }
    }
}

#[derive(Serialize)]
struct Producer {
    partition: i32,
    producer_id: i64,
    producer_epoch: i32,
    last_sequence: i32,
    last_timestamp: i64,
    coordinator_epoch: i32,
    current_txn_start_offset: i64,
}

async fn producers(
    context: &Context,
    cluster: &mut Cluster,
    topic: &str,
    only: Vec<i32>,
) -> anyhow::Result<()> {
    let info = cluster.topic(topic).await?;
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in &info.partitions {
        if only.is_empty() || only.contains(&p.index) {
            by_leader.entry(p.leader).or_default().push(p.index);
        }
    }
    if let Some(missing) = only
        .iter()
        .find(|p| !info.partitions.iter().any(|i| i.index == **p))
    {
        bail!("topic {topic} has no partition {missing}");
    }
    let mut rows = Vec::new();
    for (leader, partitions) in by_leader {
        if leader < 0 {
            bail!("partitions {partitions:?} of {topic} have no leader");
        }
        let request = DescribeProducersRequest::default()
            .with_topics(vec![TopicRequest::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(partitions)]);
        let response = cluster.broker(leader).await?.send(request).await?;
        for t in response.topics {
            for p in t.partitions {
                check_with_message(p.error_code, p.error_message.as_deref(), || {
                    format!("describe producers of {topic}-{}", p.partition_index)
                })?;
                rows.extend(p.active_producers.into_iter().map(|s| Producer {
                    partition: p.partition_index,
                    producer_id: s.producer_id.0,
                    producer_epoch: s.producer_epoch,
                    last_sequence: s.last_sequence,
                    last_timestamp: s.last_timestamp,
                    coordinator_epoch: s.coordinator_epoch,
                    current_txn_start_offset: s.current_txn_start_offset,
                }));
            }
        }
    }
    rows.sort_by_key(|r| (r.partition, r.producer_id));
    match context.output {
        Output::Json => print_json(&rows),
        Output::Table => {
            let mut table = Table::new(&[
                "PARTITION",
                "PRODUCER ID",
                "EPOCH",
                "LAST SEQUENCE",
                "LAST TIMESTAMP",
                "COORDINATOR EPOCH",
                "TXN START OFFSET",
            ]);
            for r in rows {
                table.row(vec![
                    r.partition.to_string(),
                    r.producer_id.to_string(),
                    r.producer_epoch.to_string(),
                    r.last_sequence.to_string(),
                    r.last_timestamp.to_string(),
                    r.coordinator_epoch.to_string(),
                    r.current_txn_start_offset.to_string(),
                ]);
            }
            table.print()
        }
    }
}

#[cfg(test)]
#[path = "txn_tests.rs"]
mod tests;
