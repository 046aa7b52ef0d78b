//! AlterClientQuotas applied to the image: one entity's changes, validated together (entity,
//! keys, values) so that a bad one changes nothing; an entity left with no quota is dropped.

use kafka_protocol::ResponseError;

use crate::controller::commands::CommandOutcome;
use crate::metadata::image::MetadataImage;
use crate::metadata::quotas::{validate_entity, validate_value, ClientQuota, QuotaEntity};

/// At most this many quota entities, so the image stays bounded.
const MAX_ENTITIES: usize = 10_000;

pub(super) fn alter(
    image: &mut MetadataImage,
    entity: &QuotaEntity,
    changes: &[(String, Option<f64>)],
    validate_only: bool,
) -> CommandOutcome {
    let invalid = |why: String| CommandOutcome::error(ResponseError::InvalidRequest, why);
    if let Err(why) = validate_entity(entity) {
        return invalid(why);
    }
    let position = image.client_quotas.iter().position(|q| &q.entity == entity);
    let mut values = position
        .map(|i| image.client_quotas[i].values.clone())
        .unwrap_or_default();
    for (key, value) in changes {
        match value {
            Some(v) => {
                if let Err(why) = validate_value(entity, key, *v) {
                    return invalid(why);
                }
                values.insert(key.clone(), *v);
            }
            None => {
                // Removing an unknown key is refused, a known but unset one is a no-op.
                if let Err(why) = validate_value(entity, key, 1.0) {
                    return invalid(why);
                }
                values.remove(key);
            }
        }
    }
    if position.is_none() && !values.is_empty() && image.client_quotas.len() >= MAX_ENTITIES {
        return invalid(format!("at most {MAX_ENTITIES} quota entities"));
    }
    if validate_only {
        return CommandOutcome::Ok;
    }
    match (position, values.is_empty()) {
        (Some(i), true) => {
            image.client_quotas.remove(i);
        }
        (Some(i), false) => image.client_quotas[i].values = values,
        (None, true) => {}
        (None, false) => {
            image.client_quotas.push(ClientQuota {
                entity: entity.clone(),
                values,
            });
            image.client_quotas.sort_by(|a, b| a.entity.cmp(&b.entity));
        }
    }
    CommandOutcome::Ok
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metadata::quotas::{CLIENT_ID, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE};

    #[test]
    fn set_change_remove_and_refuse_all_or_nothing() {
        let mut image = MetadataImage::default();
        let app: QuotaEntity = BTreeMap::from([(CLIENT_ID.to_string(), Some("app".into()))]);
        let set = |k: &str, v: f64| (k.to_string(), Some(v));
        assert_eq!(
            alter(&mut image, &app, &[set(PRODUCER_BYTE_RATE, 1024.0)], false),
            CommandOutcome::Ok
        );
        let bad = alter(
            &mut image,
            &app,
            &[set(CONSUMER_BYTE_RATE, 10.0), set("nonsense", 1.0)],
            false,
        );
        assert!(bad.is_error());
        assert_eq!(image.client_quotas[0].values.len(), 1);
        assert_eq!(
            alter(&mut image, &app, &[set(CONSUMER_BYTE_RATE, 10.0)], true),
            CommandOutcome::Ok
        );
        assert_eq!(image.client_quotas[0].values.len(), 1);
        let remove = (PRODUCER_BYTE_RATE.to_string(), None);
        assert_eq!(
            alter(&mut image, &app, &[remove], false),
            CommandOutcome::Ok
        );
        assert!(image.client_quotas.is_empty());
    }
}
