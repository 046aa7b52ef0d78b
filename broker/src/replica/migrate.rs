//! The first start of a broker whose data directory predates the metadata log (a single-node
//! Inlet before clusters): its topics become the cluster's, with their ids, partition counts and
//! configs and every replica on this broker, and the controller's producer-id blocks start after
//! the ids it already handed out. Done once: `metadata-migrated` is written after it, and from
//! then on a local topic the image lacks is one deleted while this broker was away. Done again
//! if the metadata log itself is gone (then the local topics are all there is to go by).
//!
//! A local `__consumer_offsets` the cluster does not have yet (a pre-cluster data directory, or
//! one from before the offsets topic was a cluster topic) is registered at every start, with its
//! id and partition count (one, then, for good: the count only matters at creation), so its
//! committed offsets are not deleted as those of a topic the cluster lacks.

use std::io::Write;

use crate::broker::Broker;
use crate::cluster::producer_ids::legacy_reserved_end;
use crate::controller::commands::ControllerCommand;
use crate::group::OFFSETS_TOPIC;

use super::MIGRATED_MARKER;

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "local topic {name} (id {local}) clashes with the cluster's topic of that name (id \
         {cluster}); move topics/{name} out of the data directory, or start this node with an \
         empty one, to join this cluster"
    )]
    Clash {
        name: String,
        local: uuid::Uuid,
        cluster: uuid::Uuid,
    },
    #[error("cannot register local topic {name} with the controller: {message}")]
    Register { name: String, message: String },
    #[error("migration to the metadata log: {0}")]
    Io(#[from] std::io::Error),
}

/// Registers this broker's pre-cluster topics and producer ids with the controller, once, and
/// again whenever the metadata log started empty (`fresh_log`: it was deleted or lost), so that
/// a lost log never makes the replica manager take every local topic for a deleted one.
pub async fn migrate(broker: &Broker, fresh_log: bool) -> Result<(), MigrationError> {
    adopt_local_offsets_topic(broker).await?;
    let marker = broker.config.data_dir.join(MIGRATED_MARKER);
    if marker.exists() && !fresh_log {
        return Ok(());
    }
    let me = broker.node_id();
    for local in broker.topics.list() {
        if local.name == OFFSETS_TOPIC {
            continue; // adopted above
        }
        let image = broker.controller.image();
        match image.topic(&local.name) {
            Some(known) if known.id == local.id => continue,
            Some(known) => {
                return Err(MigrationError::Clash {
                    name: local.name.clone(),
                    local: local.id,
                    cluster: known.id,
                })
            }
            None => {}
        }
        register(broker, &local, me).await?;
    }
    let reserved = legacy_reserved_end(&broker.config.data_dir)?;
    if reserved > 0 {
        let command = ControllerCommand::AdvanceProducerIds { at_least: reserved };
        propose(broker, &command, "producer ids").await?;
    }
    let mut file = std::fs::File::create(&marker)?;
    file.write_all(b"the local topics are in the metadata log\n")?;
    file.sync_all()?;
    Ok(())
}

/// Registers `local` as a cluster topic with its id, every replica on this broker.
async fn register(
    broker: &Broker,
    local: &crate::cluster::topics::Topic,
    me: i32,
) -> Result<(), MigrationError> {
    let count = local.partition_count();
    let command = ControllerCommand::CreateTopic {
        name: local.name.clone(),
        topic_id: local.id,
        partitions: count,
        replication_factor: 1,
        assignments: Some((0..count).map(|_| vec![me]).collect()),
        configs: local.config().overrides().clone(),
        validate_only: false,
    };
    propose(broker, &command, &local.name).await?;
    tracing::info!(topic = %local.name, id = %local.id, partitions = count, "registered a pre-cluster topic with the controller");
    Ok(())
}

/// Registers this broker's local `__consumer_offsets` when the cluster has none. When the
/// cluster already has another one, the cluster's wins (a broker that coordinated its own groups
/// before joining): this broker's copy is replaced by the replica manager, which is said here.
async fn adopt_local_offsets_topic(broker: &Broker) -> Result<(), MigrationError> {
    let Some(local) = broker.topics.get(OFFSETS_TOPIC) else {
        return Ok(());
    };
    match broker.controller.image().topic(OFFSETS_TOPIC) {
        Some(known) if known.id == local.id => Ok(()),
        Some(known) => {
            tracing::warn!(
                local = %local.id,
                cluster = %known.id,
                "this broker's {OFFSETS_TOPIC} differs from the cluster's; the cluster's replaces it"
            );
            Ok(())
        }
        None => register(broker, &local, broker.node_id()).await,
    }
}

/// Proposes without applying the image to the local topics: until every local topic is in the
/// log, the replica manager would take the ones still missing for deleted ones.
async fn propose(
    broker: &Broker,
    command: &ControllerCommand,
    what: &str,
) -> Result<(), MigrationError> {
    broker
        .controller
        .submit(command)
        .await
        .map(|_| ())
        .map_err(|(_, message)| MigrationError::Register {
            name: what.to_string(),
            message,
        })
}
