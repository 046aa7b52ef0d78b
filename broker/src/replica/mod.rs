//! The replica manager: the only code that creates, grows, reconfigures or deletes this broker's
//! local topics, by applying the metadata image to them (Kafka's ReplicaManager applying a
//! metadata delta). A broker holds a topic locally when it is a replica of any of its partitions;
//! the topic carries the controller's id, partition count and config overrides. Handlers never
//! create or delete logs: they propose to the controller, then ask for the image to be applied.
//!
//! It also answers "does this broker lead this partition now?" in one place, gives each local
//! partition its role from the image (leader, follower, or neither: `Partition::apply_image`),
//! and hands the followed partitions to the fetchers (`replication::fetcher`).
//!
//! `__consumer_offsets` is a cluster topic like any other here; after each image is applied, the
//! group coordinator is told which of its partitions this broker now leads
//! ([`crate::group::GroupCoordinator::follow`]): it loads and unloads their groups.

mod migrate;

pub use migrate::{migrate, MigrationError};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::broker::{blocking, now_ms, Broker};
use crate::cluster::partition::{Partition, RoleChange};
use crate::cluster::topic_config::TopicConfig;
use crate::cluster::topics::{Topic, TopicError};
use crate::group::{Replay, OFFSETS_TOPIC};
use crate::metadata::image::{MetadataImage, TopicImage};
use crate::replication::fetcher::{FetcherManager, Followed, LeaderFeed};

/// Written once this broker's pre-cluster topics are in the metadata log: from then on a local
/// topic the image lacks was deleted while the broker was away, and is deleted here too.
pub const MIGRATED_MARKER: &str = "metadata-migrated";

pub struct ReplicaManager {
    /// Serialises reconciliations: the image task and handlers that just changed the image.
    /// Holds the `last_applied` of the newest image applied: an older image arriving late (the
    /// image task's copy, taken before a handler's proposal was applied) is skipped, or it
    /// would delete the topic that proposal just created.
    applying: Mutex<u64>,
    fetchers: FetcherManager,
}

/// Whether `node` holds a replica of any partition of `topic`.
fn hosts(topic: &TopicImage, node: i32) -> bool {
    topic.partitions.iter().any(|p| p.replicas.contains(&node))
}

fn local_config(topic: &TopicImage) -> Result<TopicConfig, TopicError> {
    TopicConfig::from_pairs(
        topic
            .configs
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_str()))),
    )
    .map_err(TopicError::InvalidConfig)
}

impl ReplicaManager {
    pub fn new(node_id: i32) -> ReplicaManager {
        ReplicaManager {
            applying: Mutex::new(0),
            fetchers: FetcherManager::new(node_id),
        }
    }

    /// Stops fetching from leaders (shutdown).
    pub fn stop_fetchers(&self) {
        self.fetchers.stop();
    }

    /// Brings the local topics in line with `image`. Failures are logged and retried at the next
    /// image: one bad topic must not keep the others from being applied. Offsets partitions
    /// newly led here are replayed in the background.
    pub fn apply(&self, broker: &Broker, image: &MetadataImage) {
        self.apply_with(broker, image, Replay::Background);
    }

    /// [`Self::apply`], replaying newly led offsets partitions as `replay` says (start-up loads
    /// them before the broker serves).
    pub fn apply_with(&self, broker: &Broker, image: &MetadataImage, replay: Replay) {
        let mut applied = self.applying.lock().unwrap_or_else(|e| e.into_inner());
        if image.last_applied < *applied {
            return;
        }
        *applied = image.last_applied;
        let me = broker.node_id();
        let wanted: Vec<&TopicImage> = image.topics.values().filter(|t| hosts(t, me)).collect();
        let wanted_ids: BTreeSet<Uuid> = wanted.iter().map(|t| t.id).collect();
        // Deletions first: a topic re-created under the same name has a new id.
        for local in broker.topics.list() {
            if wanted_ids.contains(&local.id) {
                continue;
            }
            match blocking(|| broker.topics.delete(&local.name)) {
                Ok(_) => {
                    tracing::info!(topic = %local.name, id = %local.id, "deleted local topic: not in the metadata image")
                }
                Err(error) => {
                    tracing::error!(topic = %local.name, %error, "cannot delete local topic")
                }
            }
        }
        let mut feeds: BTreeMap<i32, LeaderFeed> = BTreeMap::new();
        for topic in wanted {
            if let Err(error) = self.apply_topic(broker, image, topic, &mut feeds) {
                tracing::error!(topic = %topic.name, %error, "cannot apply topic metadata locally");
            }
        }
        self.fetchers.follow(feeds);
        // After the local logs: a partition this broker now leads is replayed from its log.
        blocking(|| {
            let local = |id: Uuid, index: i32| {
                let local = broker.topics.get(OFFSETS_TOPIC).filter(|t| t.id == id)?;
                local.partition(index)
            };
            broker.groups.follow(me, image, local, replay)
        });
    }

    fn apply_topic(
        &self,
        broker: &Broker,
        image: &MetadataImage,
        topic: &TopicImage,
        feeds: &mut BTreeMap<i32, LeaderFeed>,
    ) -> Result<(), TopicError> {
        let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        let config = local_config(topic)?;
        let local = match broker.topics.get(&topic.name) {
            Some(local) => {
                if local.partition_count() < count {
                    blocking(|| broker.topics.add_partitions(&topic.name, count, false))?;
                }
                if local.config() != config {
                    blocking(|| broker.topics.set_config(&topic.name, config))?;
                }
                local
            }
            None => blocking(|| {
                broker
                    .topics
                    .create_with_id(&topic.name, topic.id, count, config, false)
            })?
            .ok_or_else(|| TopicError::Unknown(topic.name.clone()))?,
        };
        // Each partition's role, and the leader epoch its appended batches are stamped with.
        let me = broker.node_id();
        let now = now_ms();
        for (index, placed) in topic.partitions.iter().enumerate() {
            let partition = i32::try_from(index).ok().and_then(|i| local.partition(i));
            let Some(partition) = partition else { continue };
            match partition.apply_image(me, placed, now) {
                Ok(RoleChange::Unchanged) => {}
                Ok(change) => {
                    tracing::info!(topic = %topic.name, partition = index, ?change,
                        leader = placed.leader, leader_epoch = placed.leader_epoch, "partition role")
                }
                Err(error) => {
                    tracing::warn!(topic = %topic.name, partition = index, %error, "cannot apply the partition's role")
                }
            }
            if placed.leader == me || placed.leader < 0 || !placed.replicas.contains(&me) {
                continue;
            }
            let Some(addr) = image
                .brokers
                .get(&placed.leader)
                .and_then(|b| b.listeners.first())
                .map(|l| format!("{}:{}", l.host, l.port))
            else {
                continue;
            };
            let feed = feeds.entry(placed.leader).or_default();
            feed.addr = addr;
            feed.partitions.push(Followed {
                topic: topic.name.clone(),
                partition,
                leader_epoch: placed.leader_epoch,
            });
        }
        Ok(())
    }

    /// The local partition if this broker leads it in `image`; otherwise the error a client is
    /// told (it refreshes its metadata and retries at the leader).
    pub fn leader_partition(
        &self,
        broker: &Broker,
        image: &MetadataImage,
        topic: &str,
        index: i32,
    ) -> Result<(Arc<Topic>, Arc<Partition>), ResponseError> {
        let Some(placed) = image.topic(topic) else {
            return Err(ResponseError::UnknownTopicOrPartition);
        };
        let Some(partition) = usize::try_from(index)
            .ok()
            .and_then(|i| placed.partitions.get(i))
        else {
            return Err(ResponseError::UnknownTopicOrPartition);
        };
        if partition.leader != broker.node_id() {
            return Err(if partition.leader < 0 {
                ResponseError::LeaderNotAvailable
            } else {
                ResponseError::NotLeaderOrFollower
            });
        }
        // Led here by the image but not applied yet (a moment after creation): retriable.
        let local = broker
            .topics
            .get(topic)
            .filter(|t| t.id == placed.id)
            .ok_or(ResponseError::NotLeaderOrFollower)?;
        let partition = local
            .partition(index)
            .ok_or(ResponseError::NotLeaderOrFollower)?;
        Ok((local, partition))
    }
}

/// Applies every new image to the local topics until `stop`.
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut images = broker.controller.view().subscribe();
    loop {
        let image = images.borrow_and_update().clone();
        broker.replicas.apply(&broker, &image);
        tokio::select! {
            changed = images.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}
