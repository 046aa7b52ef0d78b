//! `inlet quota describe` and `inlet quota alter`: client quotas (DescribeClientQuotas /
//! AlterClientQuotas, as `kafka-configs.sh --entity-type clients|users` manages them). An entity
//! is a client id, a user, or both; `--default-client-id` / `--default-user` name the defaults.

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use inlet_protocol::client::check_with_message;
use inlet_protocol::kafka_protocol::messages::alter_client_quotas_request::{
    EntityData, EntryData, OpData,
};
use inlet_protocol::kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use inlet_protocol::kafka_protocol::messages::{
    AlterClientQuotasRequest, DescribeClientQuotasRequest,
};
use inlet_protocol::kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::connect::Context;
use crate::output::{print_json, Output, Table};

#[derive(Args)]
pub struct QuotaArgs {
    #[command(subcommand)]
    command: QuotaCommand,
}

#[derive(Subcommand)]
enum QuotaCommand {
    /// The quotas of every entity, or of the one named.
    Describe(EntityArgs),
    /// Set (`--set producer_byte_rate=1048576`) or remove (`--delete consumer_byte_rate`) quotas
    /// of one entity. Keys: producer_byte_rate, consumer_byte_rate, request_percentage,
    /// controller_mutation_rate.
    Alter {
        #[command(flatten)]
        entity: EntityArgs,
        /// A quota to set, `key=value`; repeatable.
        #[arg(long, value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A quota to remove; repeatable.
        #[arg(long, value_name = "KEY")]
        delete: Vec<String>,
    },
}

#[derive(Args)]
struct EntityArgs {
    /// The client id (`client.id`) the quota is for.
    #[arg(long, conflicts_with = "default_client_id")]
    client_id: Option<String>,
    /// The default quota of client ids with none of their own.
    #[arg(long)]
    default_client_id: bool,
    /// The user (principal) the quota is for.
    #[arg(long, conflicts_with = "default_user")]
    user: Option<String>,
    /// The default quota of users with none of their own.
    #[arg(long)]
    default_user: bool,
}

impl EntityArgs {
    /// (entity type, name: None for the default), as given.
    fn components(&self) -> Vec<(&'static str, Option<String>)> {
        let mut out = Vec::new();
        if self.user.is_some() || self.default_user {
            out.push(("user", self.user.clone()));
        }
        if self.client_id.is_some() || self.default_client_id {
            out.push(("client-id", self.client_id.clone()));
        }
        out
    }
}

#[derive(Serialize)]
struct QuotaEntry {
    entity: Vec<(String, Option<String>)>,
    values: Vec<(String, f64)>,
}

pub async fn run(context: &Context, args: QuotaArgs) -> anyhow::Result<()> {
    let mut cluster = context.connect().await?;
    let client = cluster.controller().await?;
    match args.command {
        QuotaCommand::Describe(entity) => {
            let components = entity
                .components()
                .into_iter()
                .map(|(kind, name)| {
                    ComponentData::default()
                        .with_entity_type(StrBytes::from_static_str(kind))
                        .with_match_type(if name.is_some() { 0 } else { 1 })
                        .with_match(name.map(StrBytes::from_string))
                })
                .collect();
            let request = DescribeClientQuotasRequest::default().with_components(components);
            let response = client.send_capped(request, 1).await?;
            check_with_message(
                response.error_code,
                response.error_message.as_deref(),
                || "describing client quotas".to_string(),
            )?;
            let entries: Vec<QuotaEntry> = response
                .entries
                .unwrap_or_default()
                .into_iter()
                .map(|e| QuotaEntry {
                    entity: e
                        .entity
                        .iter()
                        .map(|c| {
                            (
                                c.entity_type.to_string(),
                                c.entity_name.as_ref().map(|n| n.to_string()),
                            )
                        })
                        .collect(),
                    values: e
                        .values
                        .iter()
                        .map(|v| (v.key.to_string(), v.value))
                        .collect(),
                })
                .collect();
            match context.output {
                Output::Json => print_json(&entries),
                Output::Table => {
                    if entries.is_empty() {
                        println!("no client quotas");
                        return Ok(());
                    }
                    let mut table = Table::new(&["ENTITY", "QUOTA", "VALUE"]);
                    for e in &entries {
                        let entity = e
                            .entity
                            .iter()
                            .map(|(kind, name)| {
                                format!("{kind}={}", name.as_deref().unwrap_or("<default>"))
                            })
                            .collect::<Vec<_>>()
                            .join(",");
                        for (key, value) in &e.values {
                            table.row(vec![entity.clone(), key.clone(), value.to_string()]);
                        }
                    }
                    table.print()
                }
            }
        }
        QuotaCommand::Alter {
            entity,
            set,
            delete,
        } => {
            let components = entity.components();
            if components.is_empty() {
                bail!(
                    "name the entity: --client-id, --default-client-id, --user or --default-user"
                );
            }
            if set.is_empty() && delete.is_empty() {
                bail!("nothing to change: give --set KEY=VALUE or --delete KEY");
            }
            let mut ops = Vec::new();
            for pair in &set {
                let (key, value) = pair
                    .split_once('=')
                    .with_context(|| format!("--set {pair:?}: expected KEY=VALUE"))?;
                let value: f64 = value
                    .trim()
                    .parse()
                    .with_context(|| format!("--set {pair:?}: {value:?} is not a number"))?;
                ops.push(
                    OpData::default()
                        .with_key(StrBytes::from_string(key.trim().to_string()))
                        .with_value(value),
                );
            }
            for key in &delete {
                ops.push(
                    OpData::default()
                        .with_key(StrBytes::from_string(key.clone()))
                        .with_remove(true),
                );
            }
            let entity_data = components
                .into_iter()
                .map(|(kind, name)| {
                    EntityData::default()
                        .with_entity_type(StrBytes::from_static_str(kind))
                        .with_entity_name(name.map(StrBytes::from_string))
                })
                .collect();
            let request =
                AlterClientQuotasRequest::default().with_entries(vec![EntryData::default()
                    .with_entity(entity_data)
                    .with_ops(ops)]);
            let response = client.send_capped(request, 1).await?;
            for entry in &response.entries {
                check_with_message(entry.error_code, entry.error_message.as_deref(), || {
                    "altering client quotas".to_string()
                })?;
            }
            match context.output {
                Output::Json => print_json(&serde_json::json!({"altered": true})),
                Output::Table => {
                    println!("client quotas altered");
                    Ok(())
                }
            }
        }
    }
}
