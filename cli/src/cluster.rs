//! `inlet cluster describe` (brokers and their state from DescribeCluster, or Metadata where that
//! is missing; the controller quorum from DescribeQuorum; the cluster id), `inlet cluster
//! elect-leaders` (in `elect.rs`) and
//! `inlet config describe --topic T | --broker N` (DescribeConfigs).

use anyhow::bail;
use clap::{Args, Subcommand};
use inlet_protocol::client::check_with_message;
use inlet_protocol::client::cluster::Cluster;
use inlet_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use inlet_protocol::kafka_protocol::messages::describe_quorum_response::ReplicaState;
use inlet_protocol::kafka_protocol::messages::{
    describe_quorum_request, DescribeClusterRequest, DescribeConfigsRequest, DescribeQuorumRequest,
    TopicName,
};
use inlet_protocol::kafka_protocol::protocol::StrBytes;
use serde::Serialize;
use serde_json::json;

use crate::connect::Context;
use crate::output::{print_json, Output, Table};
use crate::topic::print_configs;

/// DescribeConfigs resource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

#[derive(Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Show the brokers, the controller and the cluster id.
    Describe,
    /// Elect preferred (or, with --unclean, any live) leaders (ElectLeaders).
    ElectLeaders(crate::elect::ElectArgs),
}

#[derive(Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Show every config of a topic or a broker with its value and source.
    Describe {
        /// The topic to describe.
        #[arg(long, conflicts_with = "broker")]
        topic: Option<String>,
        /// The broker (node id) to describe.
        #[arg(long)]
        broker: Option<i32>,
    },
}

/// One config entry as the CLI prints it.
#[derive(Debug, Serialize)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: String,
    pub read_only: bool,
    pub sensitive: bool,
}

pub async fn run_cluster(context: &Context, args: ClusterArgs) -> anyhow::Result<()> {
    let mut cluster = context.connect().await?;
    if let ClusterCommand::ElectLeaders(elect) = args.command {
        return crate::elect::run(&mut cluster, context.output, elect).await;
    }
    let described = describe_cluster(&mut cluster).await?;
    // DescribeQuorum is answered by KRaft clusters (Inlet, Kafka 3.3+); others have no quorum to
    // show, which is not an error of this command.
    let quorum = describe_quorum(&mut cluster).await;
    match context.output {
        Output::Json => print_json(&json!({
            "cluster_id": described.cluster_id,
            "controller": quorum.as_ref().map_or(described.controller, |q| q.leader),
            "brokers": described.brokers,
            "quorum": match &quorum {
                Ok(q) => serde_json::to_value(q)?,
                Err(e) => json!({ "error": e.to_string() }),
            },
        })),
        Output::Table => {
            println!(
                "cluster id: {}",
                described.cluster_id.as_deref().unwrap_or("-")
            );
            // On KRaft clusters Metadata names any live broker as "controller" (it forwards
            // controller requests); the active controller is the quorum's leader.
            match &quorum {
                Ok(q) => println!("active controller: {}", q.leader),
                Err(_) => println!("controller: {}", described.controller),
            }
            println!();
            let mut table = Table::new(&["ID", "HOST", "PORT", "RACK", "STATE"]);
            for b in &described.brokers {
                table.row(vec![
                    b.id.to_string(),
                    b.host.clone(),
                    b.port.to_string(),
                    b.rack.clone().unwrap_or_else(|| "-".to_string()),
                    b.state.to_string(),
                ]);
            }
            table.print()?;
            println!();
            match &quorum {
                Err(e) => println!("controller quorum: {e}"),
                Ok(q) => {
                    println!(
                        "controller quorum (__cluster_metadata-0): leader {}, epoch {}, high watermark {}",
                        q.leader, q.leader_epoch, q.high_watermark
                    );
                    let mut table = Table::new(&[
                        "NODE",
                        "LOG END OFFSET",
                        "LAG",
                        "LAST FETCH",
                        "LAST CAUGHT UP",
                    ]);
                    let members = q.voters.iter().map(|v| (v, v.id.to_string()));
                    let observers = q
                        .observers
                        .iter()
                        .map(|v| (v, format!("{} (observer)", v.id)));
                    for (v, name) in members.chain(observers) {
                        table.row(vec![
                            name,
                            v.log_end_offset.to_string(),
                            v.lag.to_string(),
                            ago(v.last_fetch_timestamp),
                            ago(v.last_caught_up_timestamp),
                        ]);
                    }
                    table.print()?;
                }
            }
            Ok(())
        }
    }
}

/// One broker as `cluster describe` shows it.
#[derive(Debug, Serialize)]
struct BrokerEntry {
    id: i32,
    host: String,
    port: i32,
    rack: Option<String>,
    /// "live" or "fenced" (fenced brokers are known only through DescribeCluster v2).
    state: &'static str,
}

struct Described {
    cluster_id: Option<String>,
    controller: i32,
    brokers: Vec<BrokerEntry>,
}

/// The brokers with their state from DescribeCluster v2 when the cluster speaks it, else the
/// live brokers from Metadata.
async fn describe_cluster(cluster: &mut Cluster) -> anyhow::Result<Described> {
    let client = cluster.any();
    if client.version_capped::<DescribeClusterRequest>(2).ok() == Some(2) {
        let request = DescribeClusterRequest::default().with_include_fenced_brokers(true);
        let response = client.send_capped(request, 2).await?;
        check_with_message(
            response.error_code,
            response.error_message.as_deref(),
            || "describing the cluster".to_string(),
        )?;
        return Ok(Described {
            cluster_id: Some(response.cluster_id.to_string()),
            controller: response.controller_id.0,
            brokers: response
                .brokers
                .iter()
                .map(|b| BrokerEntry {
                    id: b.broker_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                    state: if b.is_fenced { "fenced" } else { "live" },
                })
                .collect(),
        });
    }
    let metadata = cluster.metadata(Some(&[]), false).await?;
    Ok(Described {
        cluster_id: metadata.cluster_id.as_ref().map(|id| id.to_string()),
        controller: metadata.controller_id.0,
        brokers: metadata
            .brokers
            .iter()
            .map(|b| BrokerEntry {
                id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
                state: "live",
            })
            .collect(),
    })
}

/// The controller quorum as DescribeQuorum shows it.
#[derive(Debug, Serialize)]
struct Quorum {
    leader: i32,
    leader_epoch: i32,
    high_watermark: i64,
    voters: Vec<Voter>,
    /// Broker-only nodes receiving the metadata log.
    observers: Vec<Voter>,
}

#[derive(Debug, Serialize)]
struct Voter {
    id: i32,
    log_end_offset: i64,
    /// How far the voter's log end is behind the high watermark.
    lag: i64,
    last_fetch_timestamp: i64,
    last_caught_up_timestamp: i64,
}

async fn describe_quorum(cluster: &mut Cluster) -> anyhow::Result<Quorum> {
    let request = DescribeQuorumRequest::default().with_topics(vec![
        describe_quorum_request::TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
            .with_partitions(vec![describe_quorum_request::PartitionData::default()]),
    ]);
    let response = cluster.any().send_capped(request, 1).await?;
    check_with_message(
        response.error_code,
        response.error_message.as_deref(),
        || "describing the controller quorum".to_string(),
    )?;
    let partition = response
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| anyhow::anyhow!("DescribeQuorum answered without the metadata partition"))?;
    check_with_message(
        partition.error_code,
        partition.error_message.as_deref(),
        || "describing the controller quorum".to_string(),
    )?;
    let high_watermark = partition.high_watermark;
    let voter = |v: &ReplicaState| Voter {
        id: v.replica_id.0,
        log_end_offset: v.log_end_offset,
        lag: (high_watermark - v.log_end_offset).max(0),
        last_fetch_timestamp: v.last_fetch_timestamp,
        last_caught_up_timestamp: v.last_caught_up_timestamp,
    };
    Ok(Quorum {
        leader: partition.leader_id.0,
        leader_epoch: partition.leader_epoch,
        high_watermark,
        voters: partition.current_voters.iter().map(&voter).collect(),
        observers: partition.observers.iter().map(&voter).collect(),
    })
}

/// A timestamp as "123 ms ago", or "-" when unknown.
fn ago(timestamp_ms: i64) -> String {
    if timestamp_ms < 0 {
        return "-".to_string();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    format!("{} ms ago", (now - timestamp_ms).max(0))
}

pub async fn run_config(context: &Context, args: ConfigArgs) -> anyhow::Result<()> {
    let ConfigCommand::Describe { topic, broker } = args.command;
    let (resource_type, name) = match (topic, broker) {
        (Some(topic), None) => (RESOURCE_TOPIC, topic),
        (None, Some(broker)) => (RESOURCE_BROKER, broker.to_string()),
        _ => bail!("give --topic NAME or --broker ID"),
    };
    let mut cluster = context.connect().await?;
    let configs = describe_configs(&mut cluster, resource_type, &name).await?;
    match context.output {
        Output::Json => print_json(&configs),
        Output::Table => print_configs(&configs),
    }
}

/// Every config of one resource, sorted by name.
pub async fn describe_configs(
    cluster: &mut Cluster,
    resource_type: i8,
    name: &str,
) -> anyhow::Result<Vec<ConfigEntry>> {
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configuration_keys(None)]);
    // Broker configs must be asked of that broker; topic configs of any.
    let client = if resource_type == RESOURCE_BROKER {
        let node: i32 = name.parse()?;
        cluster.broker(node).await?
    } else {
        cluster.any()
    };
    let response = client.send(request).await?;
    let what = if resource_type == RESOURCE_TOPIC {
        "topic"
    } else {
        "broker"
    };
    let mut entries = Vec::new();
    for result in response.results {
        check_with_message(result.error_code, result.error_message.as_deref(), || {
            format!("describe configs of {what} {name}")
        })?;
        entries.extend(result.configs.into_iter().map(|c| ConfigEntry {
            name: c.name.to_string(),
            value: c.value.map(|v| v.to_string()),
            source: source_name(c.config_source).to_string(),
            read_only: c.read_only,
            sensitive: c.is_sensitive,
        }));
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// DescribeConfigs' source codes as Kafka's tools print them.
fn source_name(source: i8) -> &'static str {
    match source {
        1 => "topic",
        2 => "dynamic-broker",
        3 => "dynamic-default-broker",
        4 => "static-broker",
        5 => "default",
        6 => "dynamic-broker-logger",
        7 => "client-metrics",
        8 => "group",
        _ => "unknown",
    }
}
