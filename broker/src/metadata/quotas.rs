//! Client quotas in the metadata image (KIP-546 / Kafka's `ClientQuotasImage`): per entity (a
//! user, a client id, both, or an IP; each name may be the *default*), the quota values. This
//! module owns the entity rules, Kafka's precedence when a request's (user, client id) is matched
//! against the configured entities, and DescribeClientQuotas' filter.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
pub const CONNECTION_CREATION_RATE: &str = "connection_creation_rate";

/// The principal every client has until authentication exists (Kafka's for PLAINTEXT).
pub const ANONYMOUS: &str = "ANONYMOUS";

/// Entity type -> name; `None` is the type's default entity.
pub type QuotaEntity = BTreeMap<String, Option<String>>;

/// One entity's quotas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientQuota {
    pub entity: QuotaEntity,
    pub values: BTreeMap<String, f64>,
}

/// The longest entity name accepted: names come from the network and live in the metadata image
/// on every node.
pub const MAX_ENTITY_NAME: usize = 1024;

/// Why an entity, a key or a value is refused (all INVALID_REQUEST in Kafka).
pub fn validate_entity(entity: &QuotaEntity) -> Result<(), String> {
    if entity.is_empty() {
        return Err("the quota entity has no component".into());
    }
    for (kind, name) in entity {
        if ![USER, CLIENT_ID, IP].contains(&kind.as_str()) {
            return Err(format!("unsupported quota entity type {kind:?}"));
        }
        if name.as_deref().is_some_and(str::is_empty) {
            return Err(format!("empty {kind} name (leave it out for the default)"));
        }
        if name.as_ref().is_some_and(|n| n.len() > MAX_ENTITY_NAME) {
            return Err(format!("{kind} name longer than {MAX_ENTITY_NAME} bytes"));
        }
    }
    if entity.contains_key(IP) && entity.len() > 1 {
        return Err("an ip quota entity cannot be combined with user or client-id".into());
    }
    Ok(())
}

/// Whether `key` may be set on `entity`, and `value` is valid for it.
pub fn validate_value(entity: &QuotaEntity, key: &str, value: f64) -> Result<(), String> {
    let keys: &[&str] = if entity.contains_key(IP) {
        &[CONNECTION_CREATION_RATE]
    } else {
        &[
            PRODUCER_BYTE_RATE,
            CONSUMER_BYTE_RATE,
            REQUEST_PERCENTAGE,
            CONTROLLER_MUTATION_RATE,
        ]
    };
    if !keys.contains(&key) {
        return Err(format!(
            "{key} is not a quota of this entity (valid: {keys:?})"
        ));
    }
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("{key} must be a positive number, not {value}"));
    }
    let integral = [
        PRODUCER_BYTE_RATE,
        CONSUMER_BYTE_RATE,
        CONNECTION_CREATION_RATE,
    ];
    if integral.contains(&key) && value.fract() != 0.0 {
        return Err(format!("{key} must be an integer, not {value}"));
    }
    Ok(())
}

/// The quota `key` that applies to (`user`, `client_id`), by Kafka's precedence: user and client
/// id, user and default client id, user, default user and client id, default user and default
/// client id, default user, client id, default client id.
pub fn quota_for(quotas: &[ClientQuota], user: &str, client_id: &str, key: &str) -> Option<f64> {
    if quotas.is_empty() {
        return None;
    }
    let named = |s: &str| Some(s.to_string());
    let candidates: [&[(&str, Option<String>)]; 8] = [
        &[(USER, named(user)), (CLIENT_ID, named(client_id))],
        &[(USER, named(user)), (CLIENT_ID, None)],
        &[(USER, named(user))],
        &[(USER, None), (CLIENT_ID, named(client_id))],
        &[(USER, None), (CLIENT_ID, None)],
        &[(USER, None)],
        &[(CLIENT_ID, named(client_id))],
        &[(CLIENT_ID, None)],
    ];
    candidates.iter().find_map(|wanted| {
        quotas
            .iter()
            .find(|q| {
                q.entity.len() == wanted.len()
                    && wanted
                        .iter()
                        .all(|(kind, name)| q.entity.get(*kind) == Some(name))
            })
            .and_then(|q| q.values.get(key).copied())
    })
}

/// A DescribeClientQuotas filter: exact names (or the default: `None`) and types that must be
/// present; `strict` keeps only entities with no other component.
#[derive(Debug, Default)]
pub struct QuotaFilter {
    pub exact: BTreeMap<String, Option<String>>,
    pub present: Vec<String>,
    pub strict: bool,
}

impl QuotaFilter {
    pub fn matches(&self, entity: &QuotaEntity) -> bool {
        if self.strict && entity.len() != self.exact.len() + self.present.len() {
            return false;
        }
        self.exact
            .iter()
            .all(|(kind, name)| entity.get(kind) == Some(name))
            && self.present.iter().all(|kind| entity.contains_key(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(parts: &[(&str, Option<&str>)], key: &str, value: f64) -> ClientQuota {
        ClientQuota {
            entity: parts
                .iter()
                .map(|(k, n)| (k.to_string(), n.map(str::to_string)))
                .collect(),
            values: BTreeMap::from([(key.to_string(), value)]),
        }
    }

    #[test]
    fn the_most_specific_entity_wins_in_kafkas_order() {
        let key = PRODUCER_BYTE_RATE;
        let mut quotas = vec![quota(&[(CLIENT_ID, None)], key, 1.0)];
        assert_eq!(quota_for(&quotas, ANONYMOUS, "app", key), Some(1.0));
        quotas.push(quota(&[(CLIENT_ID, Some("app"))], key, 2.0));
        assert_eq!(quota_for(&quotas, ANONYMOUS, "app", key), Some(2.0));
        assert_eq!(quota_for(&quotas, ANONYMOUS, "other", key), Some(1.0));
        quotas.push(quota(&[(USER, None)], key, 3.0));
        assert_eq!(quota_for(&quotas, ANONYMOUS, "app", key), Some(3.0));
        quotas.push(quota(
            &[(USER, Some(ANONYMOUS)), (CLIENT_ID, Some("app"))],
            key,
            4.0,
        ));
        assert_eq!(quota_for(&quotas, ANONYMOUS, "app", key), Some(4.0));
        assert_eq!(quota_for(&quotas, ANONYMOUS, "other", key), Some(3.0));
        assert_eq!(
            quota_for(&quotas, ANONYMOUS, "app", CONSUMER_BYTE_RATE),
            None
        );
    }

    #[test]
    fn entities_keys_and_values_are_checked_as_kafka_checks_them() {
        let client: QuotaEntity = BTreeMap::from([(CLIENT_ID.to_string(), Some("a".into()))]);
        assert!(validate_entity(&client).is_ok());
        let mixed: QuotaEntity =
            BTreeMap::from([(IP.to_string(), None), (USER.to_string(), Some("u".into()))]);
        assert!(validate_entity(&mixed).is_err());
        assert!(validate_entity(&BTreeMap::from([("group".to_string(), None)])).is_err());
        let long = "x".repeat(MAX_ENTITY_NAME + 1);
        assert!(validate_entity(&BTreeMap::from([(CLIENT_ID.to_string(), Some(long))])).is_err());
        assert!(validate_value(&client, PRODUCER_BYTE_RATE, 1024.0).is_ok());
        assert!(validate_value(&client, PRODUCER_BYTE_RATE, 10.5).is_err());
        assert!(validate_value(&client, PRODUCER_BYTE_RATE, 0.0).is_err());
        assert!(validate_value(&client, REQUEST_PERCENTAGE, 12.5).is_ok());
        assert!(validate_value(&client, CONNECTION_CREATION_RATE, 10.0).is_err());
    }

    #[test]
    fn filters_match_exact_default_and_present_components() {
        let both: QuotaEntity = BTreeMap::from([
            (USER.to_string(), Some("u".into())),
            (CLIENT_ID.to_string(), None),
        ]);
        let mut filter = QuotaFilter::default();
        filter.exact.insert(USER.into(), Some("u".into()));
        assert!(filter.matches(&both));
        filter.strict = true;
        assert!(!filter.matches(&both));
        filter.exact.insert(CLIENT_ID.into(), None);
        assert!(filter.matches(&both));
        let present = QuotaFilter {
            present: vec![IP.into()],
            ..QuotaFilter::default()
        };
        assert!(!present.matches(&both));
    }
}
