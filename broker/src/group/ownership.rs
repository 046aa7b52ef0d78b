//! Which groups this broker coordinates: those of the `__consumer_offsets` partitions it leads in
//! the metadata image. The replica manager calls [`GroupCoordinator::follow`] after applying
//! every image (so the partitions' local logs exist by then): a partition newly led here is
//! replayed from its local log, in the background once the broker serves (requests for its
//! groups answer COORDINATOR_LOAD_IN_PROGRESS meanwhile, and other images are applied), and one
//! no longer led here is unloaded (its groups forgotten, their parked joins and syncs answered
//! NOT_COORDINATOR), as Kafka's coordinator does on leader changes.
//!
//! The topic itself is created through the controller on first need ([`ensure_offsets_topic`],
//! from FindCoordinator or a Metadata request naming it), as Kafka creates it lazily.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::coordinator::{GroupCoordinator, Inner, Led};
use super::restore::restore_group;
use super::state::Group;
use super::store::{offsets_topic_config, OffsetsStore, Replayed};
use super::{GroupError, OFFSETS_TOPIC};
use crate::broker::{now_ms, Broker};
use crate::cluster::partition::Partition;
use crate::controller::commands::ControllerCommand;
use crate::metadata::image::MetadataImage;

/// How [`GroupCoordinator::follow`] replays the partitions newly led here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Before returning (start-up: the groups are there before anything is served).
    Inline,
    /// On the runtime's blocking threads (inline when there is no runtime).
    Background,
}

impl GroupCoordinator {
    /// Brings the set of loaded partitions in line with `image`: `me` leads a partition when the
    /// image names it leader. `local(topic id, index)` is the local log of a partition (None if
    /// it is not there yet: the partition is then tried again at the next image).
    pub fn follow(
        self: &Arc<Self>,
        me: i32,
        image: &MetadataImage,
        local: impl Fn(Uuid, i32) -> Option<Arc<Partition>>,
        replay: Replay,
    ) {
        let topic = image.topic(OFFSETS_TOPIC).map(|t| {
            let count = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
            (t.id, count)
        });
        // Led partitions and their leader epochs.
        let wanted: BTreeMap<i32, i32> = image
            .topic(OFFSETS_TOPIC)
            .map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.leader == me)
                    .filter_map(|(index, p)| Some((i32::try_from(index).ok()?, p.leader_epoch)))
                    .collect()
            })
            .unwrap_or_default();
        let to_load: Vec<(i32, u64)> = {
            let mut inner = self.lock();
            if inner.topic != topic {
                // Created, re-created or gone: nothing loaded belongs to the new topic.
                let loaded: Vec<i32> = inner.led.keys().copied().collect();
                for partition in loaded {
                    unload(&mut inner, partition);
                }
                inner.topic = topic;
            }
            // Not led any more, or led again at a new epoch (reloaded below).
            let lost: Vec<i32> = inner
                .led
                .keys()
                .copied()
                .filter(|p| wanted.get(p) != inner.epochs.get(p))
                .collect();
            for partition in lost {
                unload(&mut inner, partition);
            }
            let gained: Vec<(i32, i32)> = wanted
                .iter()
                .filter(|(p, _)| !inner.led.contains_key(p))
                .map(|(p, epoch)| (*p, *epoch))
                .collect();
            gained
                .into_iter()
                .map(|(partition, epoch)| {
                    inner.loads += 1;
                    let load = inner.loads;
                    inner.led.insert(partition, Led::Loading(load));
                    inner.epochs.insert(partition, epoch);
                    (partition, load)
                })
                .collect()
        };
        let Some((topic_id, _)) = topic else { return };
        let background =
            replay == Replay::Background && tokio::runtime::Handle::try_current().is_ok();
        for (partition, load) in to_load {
            let Some(log) = local(topic_id, partition) else {
                tracing::warn!(
                    partition,
                    "led offsets partition has no local log yet; loading it at the next image"
                );
                self.forget_loading(partition, load);
                continue;
            };
            let store = OffsetsStore::new(log);
            if background {
                let this = self.clone();
                tokio::task::spawn_blocking(move || this.load(partition, load, store));
            } else {
                self.load(partition, load, store);
            }
        }
    }

    /// The offsets partitions whose groups this broker serves (loaded), in order.
    pub fn loaded_partitions(&self) -> Vec<i32> {
        let inner = self.lock();
        let mut loaded: Vec<i32> = inner
            .led
            .iter()
            .filter(|(_, led)| matches!(led, Led::Loaded(_)))
            .map(|(p, _)| *p)
            .collect();
        loaded.sort_unstable();
        loaded
    }

    /// Replays one partition marked Loading by `load` and starts serving its groups, unless it
    /// was given up (or given up and led again) meanwhile.
    pub(super) fn load(&self, partition: i32, load: u64, store: OffsetsStore) {
        let started = Instant::now();
        let replayed = match store.replay() {
            Ok(replayed) => replayed,
            Err(error) => {
                tracing::error!(partition, %error, "cannot load offsets partition; retrying at the next image");
                self.forget_loading(partition, load);
                return;
            }
        };
        let groups = rebuild_groups(replayed, now_ms());
        let mut inner = self.lock();
        if !matches!(inner.led.get(&partition), Some(Led::Loading(l)) if *l == load) {
            return;
        }
        let mut loaded = 0usize;
        for (id, group) in groups {
            if inner.partition_of(&id) != Some(partition) {
                tracing::warn!(group = %id, partition, "skipping a group stored in another group's offsets partition");
                continue;
            }
            inner.groups.insert(id, group);
            loaded += 1;
        }
        inner.led.insert(partition, Led::Loaded(store));
        inner.apply_completions_of_load(partition);
        tracing::info!(
            partition,
            groups = loaded,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "coordinating the groups of {OFFSETS_TOPIC} partition"
        );
    }

    fn forget_loading(&self, partition: i32, load: u64) {
        let mut inner = self.lock();
        if matches!(inner.led.get(&partition), Some(Led::Loading(l)) if *l == load) {
            inner.led.remove(&partition);
            inner.epochs.remove(&partition);
            inner.completed_while_loading.remove(&partition);
        }
    }
}

/// Stops coordinating the groups of `partition`: members waiting in a join or sync are told
/// NOT_COORDINATOR and find the new coordinator.
fn unload(inner: &mut Inner, partition: i32) {
    let gone: Vec<String> = inner
        .groups
        .keys()
        .filter(|id| inner.partition_of(id) == Some(partition))
        .cloned()
        .collect();
    for id in &gone {
        if let Some(mut group) = inner.groups.remove(id) {
            group.fail_waiters(GroupError::NotCoordinator);
        }
    }
    inner.epochs.remove(&partition);
    inner.completed_while_loading.remove(&partition);
    if inner.led.remove(&partition).is_some() {
        tracing::info!(
            partition,
            groups = gone.len(),
            "no longer coordinating the groups of {OFFSETS_TOPIC} partition"
        );
    }
}

/// Groups as replay found them: stored metadata first, then committed offsets and the pending
/// ones of open transactions (a group with offsets but no stored metadata is an Empty group that
/// only stores offsets).
fn rebuild_groups(replayed: Replayed, now: i64) -> HashMap<String, Group> {
    let mut groups: HashMap<String, Group> = HashMap::new();
    for (id, stored) in replayed.groups {
        groups.insert(id.clone(), restore_group(&id, stored, now));
    }
    // KIP-848 groups keep their members and epochs; sessions start again now.
    for (id, stored) in replayed.consumer_groups {
        match stored.restore(now) {
            Ok(consumer) => {
                groups
                    .entry(id.clone())
                    .or_insert_with(|| Group::new(&id, now))
                    .consumer = Some(Box::new(consumer));
            }
            Err(error) => {
                tracing::warn!(group = %id, %error, "skipping an unreadable consumer group")
            }
        }
    }
    for ((group_id, topic, partition), logged) in replayed.offsets {
        groups
            .entry(group_id.clone())
            .or_insert_with(|| Group::new(&group_id, now))
            .set_committed(&topic, partition, logged);
    }
    // Transactions still open at the end of the log: their markers come later.
    for (producer_id, pending) in replayed.pending {
        for ((group_id, topic, partition), logged) in pending {
            groups
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(&group_id, now))
                .add_pending(producer_id, &topic, partition, logged);
        }
    }
    groups
}

/// The CreateTopic command for `__consumer_offsets`: `partitions` partitions (Kafka's
/// `offsets.topic.num.partitions`) with `replication_factor` replicas, compacted, with the
/// segment size the coordinator's replay expects.
pub fn offsets_topic_command(partitions: i32, replication_factor: i16) -> ControllerCommand {
    ControllerCommand::CreateTopic {
        name: OFFSETS_TOPIC.to_string(),
        topic_id: Uuid::new_v4(),
        partitions,
        replication_factor,
        assignments: None,
        configs: offsets_topic_config().overrides().clone(),
        validate_only: false,
    }
}

/// Makes sure the cluster has `__consumer_offsets`, creating it through the controller when it
/// is missing, with `offsets.topic.num.partitions` partitions and a replication factor of
/// `offsets.topic.replication.factor` or the number of live brokers if fewer (so that one broker
/// works with no setup). On success from this broker's own proposal the topic is in this
/// broker's image, applied locally, and the partitions it leads are loaded.
pub async fn ensure_offsets_topic(broker: &Broker) -> Result<(), (ResponseError, String)> {
    if broker.controller.image().topic(OFFSETS_TOPIC).is_some() {
        return Ok(());
    }
    let _one_at_a_time = broker.groups.creating.lock().await;
    let image = broker.controller.image();
    if image.topic(OFFSETS_TOPIC).is_some() {
        return Ok(());
    }
    broker.check_room_for_new_logs()?;
    let live = i16::try_from(image.live_brokers().count()).unwrap_or(i16::MAX);
    let replication_factor = broker
        .config
        .offsets_topic_replication_factor
        .min(live)
        .max(1);
    let command = offsets_topic_command(
        broker.config.offsets_topic_num_partitions,
        replication_factor,
    );
    match broker.propose(&command).await {
        Ok(_) => {
            tracing::info!(
                partitions = broker.config.offsets_topic_num_partitions,
                replication_factor,
                "created {OFFSETS_TOPIC}"
            );
            Ok(())
        }
        // Another broker created it first; this broker's image has it shortly.
        Err((ResponseError::TopicAlreadyExists, _)) => Ok(()),
        Err(refused) => Err(refused),
    }
}
