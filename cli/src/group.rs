//! `inlet group list|describe|reset-offsets|delete`: consumer group administration through the
//! group coordinator (ListGroups, DescribeGroups, OffsetFetch, OffsetCommit, DeleteGroups).

use std::collections::BTreeMap;

use anyhow::bail;
use clap::{ArgGroup, Args, Subcommand};
use inlet_protocol::client::cluster::{group_id, Cluster, EARLIEST, LATEST};
use inlet_protocol::client::consumer_protocol::decode_assignment;
use inlet_protocol::client::group::{commit_offsets, fetch_offsets, Offsets};
use inlet_protocol::client::{check, check_with_message};
use inlet_protocol::kafka_protocol::messages::describe_groups_response::DescribedGroup;
use inlet_protocol::kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, ListGroupsRequest,
};
use serde_json::{json, Value};

use crate::connect::Context;
use crate::consume::parse_time;
use crate::group_consumer;
use crate::output::{print_json, Output, Table};

#[derive(Args)]
pub struct GroupArgs {
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Subcommand)]
enum GroupCommand {
    /// List consumer groups on every broker.
    List,
    /// Show a group's state, members, assignments, committed offsets and lag.
    Describe { group: String },
    /// Move a group's committed offsets (the group must have no active members).
    #[command(group(ArgGroup::new("to").required(true)))]
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        /// Only these partitions; repeatable (default: all).
        #[arg(long)]
        partition: Vec<i32>,
        #[arg(long, group = "to")]
        to_earliest: bool,
        #[arg(long, group = "to")]
        to_latest: bool,
        #[arg(long, group = "to", value_name = "OFFSET")]
        to_offset: Option<i64>,
        /// The first offset at or after this time (RFC 3339).
        #[arg(long, group = "to", value_name = "RFC3339", value_parser = parse_time)]
        to_time: Option<i64>,
    },
    /// Delete a group and its committed offsets (the group must be empty).
    Delete { group: String },
}

pub async fn run(context: &Context, args: GroupArgs) -> anyhow::Result<()> {
    let mut cluster = context.connect().await?;
    match args.command {
        GroupCommand::List => list(context, &mut cluster).await,
        GroupCommand::Describe { group } => describe(context, &mut cluster, &group).await,
        GroupCommand::ResetOffsets {
            group,
            topic,
            partition,
            to_earliest,
            to_latest,
            to_offset,
            to_time,
        } => {
            let target = match (to_earliest, to_latest, to_offset, to_time) {
                (true, ..) => Target::Timestamp(EARLIEST),
                (_, true, ..) => Target::Timestamp(LATEST),
                (_, _, Some(offset), _) => Target::Offset(offset),
                (_, _, _, Some(ms)) => Target::Timestamp(ms),
                _ => bail!("give one of --to-earliest, --to-latest, --to-offset, --to-time"),
            };
            reset(context, &mut cluster, &group, &topic, partition, target).await
        }
        GroupCommand::Delete { group } => delete(context, &mut cluster, &group).await,
    }
}

async fn list(context: &Context, cluster: &mut Cluster) -> anyhow::Result<()> {
    let nodes: Vec<i32> = cluster.brokers().keys().copied().collect();
    let mut groups = BTreeMap::new();
    for node in nodes {
        let response = cluster
            .broker(node)
            .await?
            .send(ListGroupsRequest::default())
            .await?;
        check(response.error_code, || {
            format!("list groups on broker {node}")
        })?;
        for g in response.groups {
            groups.insert(
                g.group_id.to_string(),
                (
                    g.protocol_type.to_string(),
                    g.group_state.to_string(),
                    g.group_type.to_string(),
                ),
            );
        }
    }
    match context.output {
        Output::Json => print_json(
            &groups
                .iter()
                .map(
                    |(g, (p, s, t))| json!({"group": g, "type": t, "protocol_type": p, "state": s}),
                )
                .collect::<Vec<_>>(),
        ),
        Output::Table => {
            let mut table = Table::new(&["GROUP", "TYPE", "PROTOCOL", "STATE"]);
            for (g, (p, s, t)) in groups {
                table.row(vec![g, t, p, s]);
            }
            table.print()
        }
    }
}

async fn describe_group(cluster: &mut Cluster, group: &str) -> anyhow::Result<DescribedGroup> {
    let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
    let response = cluster.coordinator(group).await?.send(request).await?;
    let Some(described) = response.groups.into_iter().next() else {
        bail!("describe group {group}: empty answer");
    };
    check_with_message(
        described.error_code,
        described.error_message.as_deref(),
        || format!("describe group {group}"),
    )?;
    Ok(described)
}

async fn describe(context: &Context, cluster: &mut Cluster, group: &str) -> anyhow::Result<()> {
    if let Some(view) = group_consumer::describe(cluster, group).await? {
        let committed = fetch_offsets(cluster, group, None).await?;
        let offsets = offsets_table(cluster, &view.owner, &committed).await?;
        return match context.output {
            Output::Json => print_json(&json!({
                "group": group,
                "type": "consumer",
                "state": view.state,
                "group_epoch": view.group_epoch,
                "assignment_epoch": view.assignment_epoch,
                "assignor": view.assignor,
                "members": view.members,
                "offsets": offsets,
            })),
            Output::Table => {
                println!(
                    "group: {group}  type: consumer  state: {}  epoch: {}  assignment epoch: {}  assignor: {}  members: {}",
                    view.state,
                    view.group_epoch,
                    view.assignment_epoch,
                    view.assignor,
                    view.members.len()
                );
                println!();
                group_consumer::print_members(&view);
                println!();
                print_offsets(&offsets)
            }
        };
    }
    let described = describe_group(cluster, group).await?;
    let committed = fetch_offsets(cluster, group, None).await?;
    if described.group_state.as_str() == "Dead" && committed.is_empty() {
        bail!("consumer group {group} does not exist");
    }
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    let mut members = Vec::new();
    for m in &described.members {
        // Groups of other protocol types (connect, ...) carry assignments we cannot read.
        let assignment = if described.protocol_type.as_str() == "consumer" {
            decode_assignment(&m.member_assignment).unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        for (topic, partitions) in &assignment {
            for p in partitions {
                owner.insert((topic.clone(), *p), m.member_id.to_string());
            }
        }
        members.push(json!({
            "member_id": m.member_id.as_str(),
            "client_id": m.client_id.as_str(),
            "host": m.client_host.as_str(),
            "assignment": assignment,
        }));
    }
    let offsets = offsets_table(cluster, &owner, &committed).await?;
    match context.output {
        Output::Json => print_json(&json!({
            "group": group,
            "type": "classic",
            "state": described.group_state.as_str(),
            "protocol_type": described.protocol_type.as_str(),
            "protocol": described.protocol_data.as_str(),
            "members": members,
            "offsets": offsets,
        })),
        Output::Table => {
            println!(
                "group: {group}  state: {}  protocol: {}/{}  members: {}",
                described.group_state.as_str(),
                described.protocol_type.as_str(),
                described.protocol_data.as_str(),
                described.members.len()
            );
            println!();
            print_offsets(&offsets)
        }
    }
}

/// Committed offset, log end, lag and owner of every owned or committed partition.
async fn offsets_table(
    cluster: &mut Cluster,
    owner: &BTreeMap<(String, i32), String>,
    committed: &BTreeMap<(String, i32), i64>,
) -> anyhow::Result<Vec<Value>> {
    let mut partitions: BTreeMap<(String, i32), Option<i64>> =
        owner.keys().map(|k| (k.clone(), None)).collect();
    for (k, o) in committed {
        partitions.insert(k.clone(), Some(*o));
    }
    let latest = latest_offsets(cluster, partitions.keys()).await?;
    let offsets: Vec<Value> = partitions
        .iter()
        .map(|((topic, p), committed)| {
            let end = latest.get(&(topic.clone(), *p)).copied();
            let lag = match (committed, end) {
                (Some(c), Some(e)) => Some((e - c).max(0)),
                _ => None,
            };
            json!({
                "topic": topic,
                "partition": p,
                "committed": committed,
                "latest": end,
                "lag": lag,
                "member": owner.get(&(topic.clone(), *p)),
            })
        })
        .collect();
    Ok(offsets)
}

fn print_offsets(offsets: &[Value]) -> anyhow::Result<()> {
    let mut table = Table::new(&["TOPIC", "PARTITION", "COMMITTED", "LATEST", "LAG", "MEMBER"]);
    let show = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for o in offsets {
        table.row(
            ["topic", "partition", "committed", "latest", "lag", "member"]
                .iter()
                .map(|k| show(&o[k]))
                .collect(),
        );
    }
    table.print()
}

/// The log end offset of each (topic, partition).
async fn latest_offsets<'a>(
    cluster: &mut Cluster,
    partitions: impl Iterator<Item = &'a (String, i32)>,
) -> anyhow::Result<Offsets> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, p) in partitions {
        by_topic.entry(topic).or_default().push(*p);
    }
    let mut result = Offsets::new();
    for (topic, partitions) in by_topic {
        let Ok(info) = cluster.topic(topic).await else {
            continue; // A deleted topic still has committed offsets; it has no end.
        };
        for (p, o) in cluster.list_offsets(&info, &partitions, LATEST).await? {
            result.insert((topic.to_string(), p), o);
        }
    }
    Ok(result)
}

enum Target {
    Offset(i64),
    Timestamp(i64),
}

async fn reset(
    context: &Context,
    cluster: &mut Cluster,
    group: &str,
    topic: &str,
    partitions: Vec<i32>,
    target: Target,
) -> anyhow::Result<()> {
    let described = describe_group(cluster, group).await?;
    if !described.members.is_empty() {
        bail!(
            "group {group} has {} active member(s): stop them before resetting offsets",
            described.members.len()
        );
    }
    let info = cluster.topic(topic).await?;
    let partitions = if partitions.is_empty() {
        info.partitions.iter().map(|p| p.index).collect()
    } else {
        for p in &partitions {
            if !info.partitions.iter().any(|q| q.index == *p) {
                bail!("topic {topic} has no partition {p}");
            }
        }
        partitions
    };
    let offsets: BTreeMap<i32, i64> = match target {
        Target::Offset(offset) => {
            // Clamp into the log, as Kafka's tool does, so the group never starts out of range.
            let earliest = cluster.list_offsets(&info, &partitions, EARLIEST).await?;
            let latest = cluster.list_offsets(&info, &partitions, LATEST).await?;
            partitions
                .iter()
                .map(|p| {
                    let lo = earliest.get(p).copied().unwrap_or(0);
                    let hi = latest.get(p).copied().unwrap_or(lo);
                    (*p, offset.clamp(lo, hi.max(lo)))
                })
                .collect()
        }
        Target::Timestamp(ts) => {
            let found = cluster.list_offsets(&info, &partitions, ts).await?;
            let latest = cluster.list_offsets(&info, &partitions, LATEST).await?;
            found
                .into_iter()
                .map(|(p, o)| {
                    (
                        p,
                        if o < 0 {
                            latest.get(&p).copied().unwrap_or(0)
                        } else {
                            o
                        },
                    )
                })
                .collect()
        }
    };
    let commit: Offsets = offsets
        .iter()
        .map(|(&p, &o)| ((topic.to_string(), p), o))
        .collect();
    for code in commit_offsets(cluster, group, -1, "", &commit).await? {
        check(code, || format!("commit offsets for group {group}"))?;
    }
    match context.output {
        Output::Json => print_json(
            &offsets
                .iter()
                .map(|(p, o)| json!({"topic": topic, "partition": p, "offset": o}))
                .collect::<Vec<_>>(),
        ),
        Output::Table => {
            let mut table = Table::new(&["TOPIC", "PARTITION", "NEW OFFSET"]);
            for (p, o) in &offsets {
                table.row(vec![topic.to_string(), p.to_string(), o.to_string()]);
            }
            table.print()
        }
    }
}

async fn delete(context: &Context, cluster: &mut Cluster, group: &str) -> anyhow::Result<()> {
    let request = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
    let response = cluster.coordinator(group).await?.send(request).await?;
    for result in &response.results {
        check(result.error_code, || format!("delete group {group}"))?;
    }
    match context.output {
        Output::Json => print_json(&json!({ "deleted": group })),
        Output::Table => {
            println!("deleted group {group}");
            Ok(())
        }
    }
}
