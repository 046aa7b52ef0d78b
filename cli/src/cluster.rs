//! `inlet cluster describe` (brokers, controller, cluster id, from Metadata) and
//! `inlet config describe --topic T | --broker N` (DescribeConfigs).

use anyhow::bail;
use clap::{Args, Subcommand};
use inlet_protocol::client::check_with_message;
use inlet_protocol::client::cluster::Cluster;
use inlet_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use inlet_protocol::kafka_protocol::messages::DescribeConfigsRequest;
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
    let ClusterCommand::Describe = args.command;
    let mut cluster = context.connect().await?;
    let metadata = cluster.metadata(Some(&[]), false).await?;
    let brokers: Vec<_> = metadata
        .brokers
        .iter()
        .map(|b| {
            json!({
                "id": b.node_id.0,
                "host": b.host.as_str(),
                "port": b.port,
                "rack": b.rack.as_deref(),
            })
        })
        .collect();
    let cluster_id = metadata.cluster_id.as_deref();
    match context.output {
        Output::Json => print_json(&json!({
            "cluster_id": cluster_id,
            "controller": metadata.controller_id.0,
            "brokers": brokers,
        })),
        Output::Table => {
            println!("cluster id: {}", cluster_id.unwrap_or("-"));
            println!("controller: {}", metadata.controller_id.0);
            println!();
            let mut table = Table::new(&["ID", "HOST", "PORT", "RACK"]);
            for b in &metadata.brokers {
                table.row(vec![
                    b.node_id.0.to_string(),
                    b.host.to_string(),
                    b.port.to_string(),
                    b.rack.as_deref().map_or("-".to_string(), |r| r.to_string()),
                ]);
            }
            table.print()
        }
    }
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
