//! The first start of a broker whose data directory predates the metadata log (a single-node
//! Inlet before clusters): its topics become the cluster's, with their ids, partition counts and
//! configs and every replica on this broker, and the controller's producer-id blocks start after
//! the ids it already handed out. Done once: `metadata-migrated` is written after it, and from
//! then on a local topic the image lacks is one deleted while this broker was away. Done again
//! if the metadata log itself is gone (then the local topics are all there is to go by).

use std::io::Write;

use crate::broker::Broker;
use crate::cluster::producer_ids::legacy_reserved_end;
use crate::controller::commands::{CommandOutcome, ControllerCommand};
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
    let marker = broker.config.data_dir.join(MIGRATED_MARKER);
    if marker.exists() && !fresh_log {
        return Ok(());
    }
    let me = broker.node_id();
    for local in broker.topics.list() {
        if local.name == OFFSETS_TOPIC {
            continue;
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

/// Proposes without applying the image to the local topics: until every local topic is in the
/// log, the replica manager would take the ones still missing for deleted ones.
async fn propose(
    broker: &Broker,
    command: &ControllerCommand,
    what: &str,
) -> Result<(), MigrationError> {
    let refused = |message: String| MigrationError::Register {
        name: what.to_string(),
        message,
    };
    match broker.controller.propose(command).await {
        Ok(CommandOutcome::Error { message, .. }) => Err(refused(message)),
        Ok(_) => Ok(()),
        Err(error) => Err(refused(error.to_string())),
    }
}
