//! DescribeClientQuotas and AlterClientQuotas (APIs 48 and 49, v0-1, KIP-546): the quotas in the
//! metadata image, read with Kafka's filter rules and changed through the controller, one entity
//! at a time, all of an entity's changes or none. Enforcement is in [`crate::quota`].

use std::collections::BTreeSet;

use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlteredEntity, EntryData as AlteredEntry,
};
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::controller::commands::ControllerCommand;
use crate::metadata::quotas::{validate_entity, QuotaEntity, QuotaFilter, CLIENT_ID, IP, USER};

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

pub fn describe(
    broker: &Broker,
    request: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let filter = match filter(&request) {
        Ok(f) => f,
        Err((code, why)) => {
            return DescribeClientQuotasResponse::default()
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(why)))
        }
    };
    let image = broker.controller.image();
    let entries = image
        .client_quotas
        .iter()
        .filter(|q| filter.matches(&q.entity))
        .map(|q| {
            EntryData::default()
                .with_entity(
                    q.entity
                        .iter()
                        .map(|(kind, name)| {
                            EntityData::default()
                                .with_entity_type(StrBytes::from_string(kind.clone()))
                                .with_entity_name(name.clone().map(StrBytes::from_string))
                        })
                        .collect(),
                )
                .with_values(
                    q.values
                        .iter()
                        .map(|(key, value)| {
                            ValueData::default()
                                .with_key(StrBytes::from_string(key.clone()))
                                .with_value(*value)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

/// Kafka's rules for the request's filter components (`ClientQuotasImage.describe`).
fn filter(request: &DescribeClientQuotasRequest) -> Result<QuotaFilter, (ResponseError, String)> {
    let invalid = |why: String| (ResponseError::InvalidRequest, why);
    let mut filter = QuotaFilter {
        strict: request.strict,
        ..QuotaFilter::default()
    };
    for c in &request.components {
        let kind = c.entity_type.to_string();
        if kind.is_empty() {
            return Err(invalid("invalid empty entity type".into()));
        }
        if filter.exact.contains_key(&kind) || filter.present.contains(&kind) {
            return Err(invalid(format!(
                "entity type {kind} cannot appear more than once in the filter"
            )));
        }
        if ![USER, CLIENT_ID, IP].contains(&kind.as_str()) {
            return Err((
                ResponseError::UnsupportedVersion,
                format!("unsupported entity type {kind}"),
            ));
        }
        match (c.match_type, &c._match) {
            (MATCH_EXACT, Some(name)) => {
                filter.exact.insert(kind, Some(name.to_string()));
            }
            (MATCH_DEFAULT, None) => {
                filter.exact.insert(kind, None);
            }
            (MATCH_SPECIFIED, None) => filter.present.push(kind),
            (t @ (MATCH_EXACT | MATCH_DEFAULT | MATCH_SPECIFIED), _) => {
                return Err(invalid(format!(
                    "match type {t} and match string {:?} do not go together",
                    c._match
                )))
            }
            (t, _) => return Err(invalid(format!("unknown match type {t}"))),
        }
    }
    let has = |k: &str| filter.exact.contains_key(k) || filter.present.iter().any(|p| p == k);
    if has(IP) && (has(USER) || has(CLIENT_ID)) {
        return Err(invalid(
            "an ip filter component cannot be combined with user or client-id".into(),
        ));
    }
    Ok(filter)
}

pub async fn alter(
    broker: &Broker,
    request: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let mut entries = Vec::with_capacity(request.entries.len());
    for entry in request.entries {
        let shown = entry
            .entity
            .iter()
            .map(|e| {
                AlteredEntity::default()
                    .with_entity_type(e.entity_type.clone())
                    .with_entity_name(e.entity_name.clone())
            })
            .collect();
        let mut entity = QuotaEntity::new();
        let mut duplicate = false;
        for e in &entry.entity {
            duplicate |= entity
                .insert(
                    e.entity_type.to_string(),
                    e.entity_name.as_ref().map(|n| n.to_string()),
                )
                .is_some();
        }
        let changes: Vec<(String, Option<f64>)> = entry
            .ops
            .iter()
            .map(|op| (op.key.to_string(), (!op.remove).then_some(op.value)))
            .collect();
        let keys: BTreeSet<&str> = changes.iter().map(|(k, _)| k.as_str()).collect();
        let result = if duplicate {
            Err((
                ResponseError::InvalidRequest,
                "an entity type appears twice".to_string(),
            ))
        } else if keys.len() != changes.len() {
            Err((
                ResponseError::InvalidRequest,
                "a quota key appears twice".to_string(),
            ))
        } else if let Err(why) = validate_entity(&entity) {
            Err((ResponseError::InvalidRequest, why))
        } else {
            let command = ControllerCommand::AlterClientQuotas {
                entity,
                changes,
                validate_only: request.validate_only,
            };
            broker.propose(&command).await.map(|_| ())
        };
        let altered = AlteredEntry::default().with_entity(shown);
        entries.push(match result {
            Ok(()) => altered,
            Err((code, why)) => altered
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(why))),
        });
    }
    AlterClientQuotasResponse::default().with_entries(entries)
}
