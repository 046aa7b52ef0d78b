//! Which transactional ids this broker coordinates: those of the `__transaction_state`
//! partitions it leads in the metadata image. [`TransactionCoordinator::follow`] is called by the
//! driver on every tick (and by the transaction handlers before they serve): a partition newly
//! led here is replayed from its local log (requests for its ids answer
//! COORDINATOR_LOAD_IN_PROGRESS meanwhile), its transactions left in PrepareCommit/PrepareAbort
//! get their markers (again); one no longer led here is unloaded, as Kafka's coordinator does on
//! leader changes. The coordinator epoch of a loaded partition is its leader epoch.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use super::coordinator::{Entry, Inner, Led, TransactionCoordinator};
use super::store::TxnStore;
use super::TRANSACTION_STATE_TOPIC;
use crate::broker::Broker;
use crate::cluster::partition::Partition;
use crate::metadata::image::MetadataImage;

pub use crate::group::Replay;

impl TransactionCoordinator {
    /// Follows `broker`'s current image with its local logs; loads in the background.
    pub fn follow_broker(self: &Arc<Self>, broker: &Broker) {
        let image = broker.controller.image();
        let local = |id: Uuid, index: i32| {
            let local = broker
                .topics
                .get(TRANSACTION_STATE_TOPIC)
                .filter(|t| t.id == id)?;
            local.partition(index)
        };
        self.follow(broker.node_id(), &image, local, Replay::Background);
    }

    /// Brings the loaded partitions in line with `image` (`me` leads a partition when the image
    /// names it leader); `local(topic id, index)` is a partition's local log.
    pub fn follow(
        self: &Arc<Self>,
        me: i32,
        image: &MetadataImage,
        local: impl Fn(Uuid, i32) -> Option<Arc<Partition>>,
        replay: Replay,
    ) {
        let placed = image.topic(TRANSACTION_STATE_TOPIC);
        let topic = placed.map(|t| (t.id, i32::try_from(t.partitions.len()).unwrap_or(i32::MAX)));
        let wanted: BTreeMap<i32, i32> = placed
            .map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.leader == me)
                    .filter_map(|(i, p)| Some((i32::try_from(i).ok()?, p.leader_epoch)))
                    .collect()
            })
            .unwrap_or_default();
        let to_load: Vec<(i32, u64, i32)> = {
            let mut inner = self.lock();
            if inner.topic != topic {
                let loaded: Vec<i32> = inner.led.keys().copied().collect();
                for partition in loaded {
                    unload(&mut inner, partition);
                }
                inner.topic = topic;
            }
            // Not led any more, led again at a new epoch, or loaded from a local log that has
            // since been replaced (deleted and re-created by an image application).
            let replaced = |p: i32, led: &Led| match (led, topic) {
                (Led::Loaded(store), Some((id, _))) => {
                    local(id, p).is_none_or(|log| !store.writes_to(&log))
                }
                _ => false,
            };
            let lost: Vec<i32> = inner
                .led
                .iter()
                .filter(|(p, led)| wanted.get(p) != inner.epochs.get(p) || replaced(**p, led))
                .map(|(p, _)| *p)
                .collect();
            for partition in lost {
                unload(&mut inner, partition);
            }
            let gained: Vec<(i32, i32)> = wanted
                .iter()
                .filter(|(p, _)| !inner.led.contains_key(p))
                .map(|(p, e)| (*p, *e))
                .collect();
            gained
                .into_iter()
                .map(|(partition, epoch)| {
                    inner.loads += 1;
                    let load = inner.loads;
                    inner.led.insert(partition, Led::Loading(load));
                    inner.epochs.insert(partition, epoch);
                    (partition, load, epoch)
                })
                .collect()
        };
        let Some((topic_id, _)) = topic else { return };
        let background =
            replay == Replay::Background && tokio::runtime::Handle::try_current().is_ok();
        for (partition, load, epoch) in to_load {
            let Some(log) = local(topic_id, partition) else {
                self.forget_loading(partition, load);
                continue;
            };
            // The partition's role may lag the image by an application: replayed only once the
            // local log knows it leads (its leader epoch is then the coordinator epoch).
            if !log.is_leader_at(epoch) {
                self.forget_loading(partition, load);
                continue;
            }
            let store = TxnStore::new(log);
            if background {
                let this = self.clone();
                tokio::task::spawn_blocking(move || this.load(partition, load, store));
            } else {
                self.load(partition, load, store);
            }
        }
    }

    fn load(&self, partition: i32, load: u64, store: TxnStore) {
        let replayed = match store.replay() {
            Ok(replayed) => replayed,
            Err(error) => {
                tracing::error!(partition, %error, "cannot load transaction state partition; retrying");
                self.forget_loading(partition, load);
                return;
            }
        };
        let mut inner = self.lock();
        if !matches!(inner.led.get(&partition), Some(Led::Loading(l)) if *l == load) {
            return;
        }
        let mut loaded = 0usize;
        for (id, meta) in replayed {
            if inner.partition_of(&id) != Some(partition) {
                tracing::warn!(transactional_id = %id, partition, "skipping an id stored in another partition");
                continue;
            }
            if meta.state.is_pending_transaction() && meta.state != super::state::TxnState::Ongoing
            {
                // Its markers may not all be written: written (again) now.
                inner.due.insert(id.clone());
            }
            inner.ids.insert(
                id,
                Entry {
                    meta,
                    pending: None,
                },
            );
            loaded += 1;
        }
        inner.led.insert(partition, Led::Loaded(store));
        drop(inner);
        self.wake.notify_one();
        tracing::info!(
            partition,
            ids = loaded,
            "coordinating the transactions of {TRANSACTION_STATE_TOPIC} partition"
        );
    }

    fn forget_loading(&self, partition: i32, load: u64) {
        let mut inner = self.lock();
        if matches!(inner.led.get(&partition), Some(Led::Loading(l)) if *l == load) {
            inner.led.remove(&partition);
            inner.epochs.remove(&partition);
        }
    }
}

fn unload(inner: &mut Inner, partition: i32) {
    let gone: Vec<String> = inner
        .ids
        .keys()
        .filter(|id| inner.partition_of(id) == Some(partition))
        .cloned()
        .collect();
    for id in &gone {
        inner.ids.remove(id);
        inner.due.remove(id);
    }
    inner.epochs.remove(&partition);
    if inner.led.remove(&partition).is_some() {
        tracing::info!(
            partition,
            ids = gone.len(),
            "no longer coordinating the transactions of {TRANSACTION_STATE_TOPIC} partition"
        );
    }
}
