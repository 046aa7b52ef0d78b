//! `inlet topic create|list|describe|delete|add-partitions|alter-config` (and `delete-records`,
//! in [`crate::delete_records`]): the topic admin verbs,
//! each one Kafka request; `describe` lives in [`crate::topic_describe`].

use std::collections::BTreeMap;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use inlet_protocol::client::cluster::{topic_name, Cluster, TopicInfo};
use inlet_protocol::client::{check_with_message, ClientError};
use inlet_protocol::kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use inlet_protocol::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use inlet_protocol::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use inlet_protocol::kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    IncrementalAlterConfigsRequest,
};
use inlet_protocol::kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

use crate::cluster::{ConfigEntry, RESOURCE_TOPIC};
use crate::connect::Context;
use crate::output::{print_json, Output, Table};

/// DeleteTopics v6 addresses topics by name-or-id; v1-5 by name, which is all we need.
const DELETE_TOPICS_CAP: i16 = 5;
const ADMIN_TIMEOUT_MS: i32 = 30_000;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

#[derive(Args)]
pub struct TopicArgs {
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions (default: the broker's num.partitions).
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Replicas per partition (default: the broker's default.replication.factor).
        #[arg(long, short = 'r')]
        replication_factor: Option<i16>,
        /// A topic config override, `key=value`; repeatable.
        #[arg(long, short = 'c', value_name = "KEY=VALUE", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
    },
    /// List topics, the internal ones (`__consumer_offsets`, `__transaction_state`) included as
    /// Kafka lists them.
    List {
        /// Leave out internal topics.
        #[arg(long)]
        exclude_internal: bool,
    },
    /// Show a topic's partitions (leader, replicas, ISR, offsets) and configs.
    Describe { name: String },
    /// Delete a topic and its data.
    Delete { name: String },
    /// Grow a topic to COUNT partitions in total.
    AddPartitions {
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        count: i32,
    },
    /// Set (`key=value`) or remove (`--delete key`) topic config overrides.
    AlterConfig {
        name: String,
        #[arg(value_name = "KEY=VALUE", value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        /// Remove an override so the default applies again; repeatable.
        #[arg(long, value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Delete the records below an offset (DeleteRecords): the partition's log start moves
    /// there. Prints each partition with its new log start (low watermark).
    DeleteRecords(crate::delete_records::DeleteRecordsArgs),
    /// Move a partition to other brokers (or --cancel a move in progress).
    Reassign(crate::reassign::ReassignArgs),
    /// List the partition moves in progress.
    Reassignments(crate::reassign::ListArgs),
}

/// `key=value` as a pair; used by every verb that takes configs or headers.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

pub async fn run(context: &Context, args: TopicArgs) -> anyhow::Result<()> {
    let mut cluster = context.connect().await?;
    match args.command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            config,
        } => {
            create(
                context,
                &mut cluster,
                name,
                partitions,
                replication_factor,
                config,
            )
            .await
        }
        TopicCommand::List { exclude_internal } => {
            list(context, &mut cluster, exclude_internal).await
        }
        TopicCommand::Describe { name } => {
            crate::topic_describe::describe(context, &mut cluster, &name).await
        }
        TopicCommand::Delete { name } => delete(context, &mut cluster, &name).await,
        TopicCommand::AddPartitions { name, count } => {
            add_partitions(context, &mut cluster, &name, count).await
        }
        TopicCommand::AlterConfig { name, set, delete } => {
            alter_config(context, &mut cluster, &name, set, delete).await
        }
        TopicCommand::DeleteRecords(args) => {
            crate::delete_records::run(context, &mut cluster, args).await
        }
        TopicCommand::Reassign(args) => {
            crate::reassign::reassign(&mut cluster, context.output, args).await
        }
        TopicCommand::Reassignments(args) => {
            crate::reassign::list(&mut cluster, context.output, args).await
        }
    }
}

async fn create(
    context: &Context,
    cluster: &mut Cluster,
    name: String,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    config: Vec<(String, String)>,
) -> anyhow::Result<()> {
    let topic = CreatableTopic::default()
        .with_name(topic_name(&name))
        .with_num_partitions(partitions.unwrap_or(-1))
        .with_replication_factor(replication_factor.unwrap_or(-1))
        .with_configs(
            config
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.clone()))
                        .with_value(Some(StrBytes::from_string(v.clone())))
                })
                .collect(),
        );
    let request = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(ADMIN_TIMEOUT_MS);
    let response = cluster.controller().await?.send(request).await?;
    for result in &response.topics {
        check_with_message(result.error_code, result.error_message.as_deref(), || {
            format!("create topic {name}")
        })?;
    }
    // Read back what the cluster made of the defaults.
    let info = cluster.topic(&name).await?;
    let summary = json!({
        "topic": name,
        "partitions": info.partitions.len(),
        "replication_factor": replication(&info),
        "configs": config.into_iter().collect::<BTreeMap<_, _>>(),
    });
    match context.output {
        Output::Json => print_json(&summary),
        Output::Table => {
            println!(
                "created topic {name} ({} partitions, replication factor {})",
                info.partitions.len(),
                replication(&info)
            );
            Ok(())
        }
    }
}

fn replication(topic: &TopicInfo) -> usize {
    topic.partitions.first().map_or(0, |p| p.replicas.len())
}

async fn list(
    context: &Context,
    cluster: &mut Cluster,
    exclude_internal: bool,
) -> anyhow::Result<()> {
    let mut topics = cluster.topics().await?;
    if exclude_internal {
        topics.retain(|t| !t.internal);
    }
    let rows: Vec<Value> = topics
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "partitions": t.partitions.len(),
                "replication_factor": replication(t),
                "internal": t.internal,
            })
        })
        .collect();
    match context.output {
        Output::Json => print_json(&rows),
        Output::Table => {
            let mut table = Table::new(&["NAME", "PARTITIONS", "REPLICAS"]);
            for t in &topics {
                table.row(vec![
                    t.name.clone(),
                    t.partitions.len().to_string(),
                    replication(t).to_string(),
                ]);
            }
            table.print()
        }
    }
}

/// The config table shared with `inlet config describe`.
pub fn print_configs(configs: &[ConfigEntry]) -> anyhow::Result<()> {
    let mut table = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
    for c in configs {
        table.row(vec![
            c.name.clone(),
            c.value.clone().unwrap_or_else(|| "-".to_string()),
            c.source.clone(),
        ]);
    }
    table.print()
}

async fn delete(context: &Context, cluster: &mut Cluster, name: &str) -> anyhow::Result<()> {
    let request = DeleteTopicsRequest::default()
        .with_topic_names(vec![topic_name(name)])
        .with_timeout_ms(ADMIN_TIMEOUT_MS);
    let response = cluster
        .controller()
        .await?
        .send_capped(request, DELETE_TOPICS_CAP)
        .await?;
    for result in &response.responses {
        check_with_message(result.error_code, result.error_message.as_deref(), || {
            format!("delete topic {name}")
        })?;
    }
    match context.output {
        Output::Json => print_json(&json!({ "deleted": name })),
        Output::Table => {
            println!("deleted topic {name}");
            Ok(())
        }
    }
}

async fn add_partitions(
    context: &Context,
    cluster: &mut Cluster,
    name: &str,
    count: i32,
) -> anyhow::Result<()> {
    let request = CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(topic_name(name))
            .with_count(count)])
        .with_timeout_ms(ADMIN_TIMEOUT_MS);
    let response = cluster.controller().await?.send(request).await?;
    for result in &response.results {
        check_with_message(result.error_code, result.error_message.as_deref(), || {
            format!("add partitions to {name}")
        })?;
    }
    match context.output {
        Output::Json => print_json(&json!({ "topic": name, "partitions": count })),
        Output::Table => {
            println!("topic {name} now has {count} partitions");
            Ok(())
        }
    }
}

async fn alter_config(
    context: &Context,
    cluster: &mut Cluster,
    name: &str,
    set: Vec<(String, String)>,
    delete: Vec<String>,
) -> anyhow::Result<()> {
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give KEY=VALUE pairs or --delete KEY");
    }
    let mut configs: Vec<AlterableConfig> = set
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(OP_SET)
                .with_value(Some(StrBytes::from_string(v.clone())))
        })
        .collect();
    configs.extend(delete.iter().map(|k| {
        AlterableConfig::default()
            .with_name(StrBytes::from_string(k.clone()))
            .with_config_operation(OP_DELETE)
    }));
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configs(configs),
    ]);
    let client = cluster.controller().await?;
    let response = client
        .send(request)
        .await
        .map_err(|e| match e {
            ClientError::NoCommonVersion { .. } => {
                anyhow::anyhow!("the broker does not support IncrementalAlterConfigs (Kafka 2.3+)")
            }
            other => other.into(),
        })
        .with_context(|| format!("alter configs of topic {name}"))?;
    for result in &response.responses {
        check_with_message(result.error_code, result.error_message.as_deref(), || {
            format!("alter configs of topic {name}")
        })?;
    }
    let summary = json!({
        "topic": name,
        "set": set.into_iter().collect::<BTreeMap<_, _>>(),
        "deleted": delete,
    });
    match context.output {
        Output::Json => print_json(&summary),
        Output::Table => {
            println!("updated configs of topic {name}");
            Ok(())
        }
    }
}
