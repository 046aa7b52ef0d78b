//! The broker's side of the lake: the tiering task that copies closed segments of every
//! `remote.storage.enable` partition into the object store (then lets local retention drop them
//! and total retention age them out of the lake), reads of offsets only the lake holds, and the
//! lake's counters.
//!
//! One task does all tiering, partition after partition, so uploads never race each other; a
//! failure is logged, counted and retried on the next pass.
//!
//! Producers get the data disk first: a segment is tiered only while the data directory's
//! filesystem keeps `lake.min_free_bytes` free after what the upload writes there (the Parquet
//! staging file in `<data-dir>/lake-staging`, and the copy itself when the lake is a directory on
//! the same disk, as the default `<data-dir>/lake` is). Otherwise tiering waits, logged once and
//! counted, and resumes by itself when space comes back; retention still runs meanwhile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use inlet_storage::tier::{
    disk_space, manifest, upload, ClosedSegment, LakeLocation, LakeReader, Manifest,
    PartitionPaths, PartitionTier, TierError,
};
use object_store::ObjectStore;
use tokio::sync::watch;

use crate::broker::{now_ms, Broker};
use crate::cluster::partition::{Partition, PartitionError};
use crate::cluster::topics::Topic;
use crate::config::BrokerConfig;

/// Counters of the tiering task and lake reads, exported as metrics.
#[derive(Debug, Default)]
pub struct LakeMetrics {
    pub segments_tiered: AtomicU64,
    pub bytes_tiered: AtomicU64,
    pub failures: AtomicU64,
    /// Bytes of closed segments not yet in the lake, after the last pass.
    pub lag_bytes: AtomicU64,
    pub bytes_read: AtomicU64,
    /// Segment uploads put off because the data disk was short of space.
    pub postponed_low_disk: AtomicU64,
    /// 1 while tiering waits for space on the data disk, else 0.
    pub waiting_for_disk: AtomicU64,
    /// Segments tiered without their Parquet file because its staging file did not fit.
    pub parquet_skipped_low_disk: AtomicU64,
}

/// The data disk's free space that tiering must leave to producers (see the module doc).
#[derive(Debug)]
struct DiskReserve {
    data_dir: std::path::PathBuf,
    min_free: u64,
    /// Lake objects land on the data disk (a local lake on the same filesystem).
    lake_on_data_disk: bool,
}

/// What the data disk allows for the next upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Room {
    /// Upload as configured.
    Upload,
    /// Upload without the Parquet file: only its staging file would not fit, and the upload
    /// itself writes nothing to the data disk (the lake is elsewhere) while letting local
    /// retention free space there. Postponing it instead would keep the disk full.
    WithoutParquet,
    /// Wait: the upload would leave producers less than the reserve.
    Wait { available: u64, needed: u64 },
}

impl DiskReserve {
    /// Bytes an upload of `segment` takes from the data disk at its peak. A Parquet file is
    /// guessed as large as the segment's batches (it is usually smaller); it exists twice for a
    /// moment when the lake is on the data disk (staging file and lake copy).
    fn cost(&self, segment: &ClosedSegment, parquet: bool) -> u64 {
        let log = segment.log.len() as u64;
        let parquet = if parquet { log } else { 0 };
        if self.lake_on_data_disk {
            let copy = log + (segment.offset_index.len() + segment.time_index.len()) as u64;
            copy + 2 * parquet
        } else {
            parquet
        }
    }

    /// What `available` free bytes allow for uploading `segment`.
    fn room(&self, segment: &ClosedSegment, parquet: bool, available: u64) -> Room {
        let fits = |cost: u64| available >= cost.saturating_add(self.min_free);
        let needed = self.cost(segment, parquet);
        // An upload that writes nothing to the data disk never waits.
        if self.min_free == 0 || needed == 0 || fits(needed) {
            Room::Upload
        } else if parquet && !self.lake_on_data_disk {
            Room::WithoutParquet
        } else {
            Room::Wait { available, needed }
        }
    }

    /// [`room`](Self::room) with the data disk's current free space.
    fn check(&self, segment: &ClosedSegment, parquet: bool) -> Room {
        if self.min_free == 0 {
            return Room::Upload;
        }
        match disk_space(&self.data_dir) {
            Ok(space) => self.room(segment, parquet, space.available),
            Err(error) => {
                // Not knowing is no reason to stop tiering (its writes fail cleanly anyway).
                tracing::debug!(%error, dir = %self.data_dir.display(), "cannot stat the data disk");
                Room::Upload
            }
        }
    }
}

pub struct Lake {
    pub location: LakeLocation,
    store: Arc<dyn ObjectStore>,
    reader: LakeReader,
    tier_interval: Duration,
    /// Where Parquet files are built before upload: `<data-dir>/lake-staging`.
    staging: std::path::PathBuf,
    pub metrics: LakeMetrics,
    /// Topics deleted since the last pass; their lake data goes before anything is tiered.
    deleted_topics: Mutex<Vec<String>>,
    reserve: DiskReserve,
}

impl Lake {
    /// Opens the configured store (creating a local lake directory); `None` when the lake is off.
    pub fn open(config: &BrokerConfig) -> Result<Option<Lake>, TierError> {
        if !config.lake.enable {
            return Ok(None);
        }
        let location = config.lake_location();
        let store = location.open()?;
        let reserve = DiskReserve {
            data_dir: config.data_dir.clone(),
            min_free: config.lake.min_free_bytes,
            lake_on_data_disk: location.shares_filesystem_with(&config.data_dir),
        };
        Ok(Some(Lake {
            location,
            reader: LakeReader::new(store.clone(), config.lake.cache_bytes),
            store,
            tier_interval: Duration::from_millis(config.lake.tier_interval_ms.max(10)),
            staging: config.data_dir.join("lake-staging"),
            metrics: LakeMetrics::default(),
            deleted_topics: Mutex::new(Vec::new()),
            reserve,
        }))
    }

    /// Whole batches from `offset` for an offset below the local log: `None` when the lake
    /// does not hold it either.
    pub async fn read(
        &self,
        partition: &Partition,
        offset: i64,
        max_bytes: usize,
    ) -> Option<Result<Bytes, PartitionError>> {
        let manifest = match self.manifest(partition).await {
            Ok(manifest) => manifest?,
            Err(error) => return Some(Err(error)),
        };
        let segment = manifest.segment_for(offset)?;
        let paths = PartitionPaths::new(&partition.topic, partition.index);
        let read = self
            .reader
            .read(&paths, &manifest.topic_id, segment, offset, max_bytes)
            .await;
        if let Ok(bytes) = &read {
            self.metrics
                .bytes_read
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        Some(read.map_err(PartitionError::from))
    }

    /// The first lake batch at or after `timestamp` below `local_start` (the local log answers
    /// from there): `(offset, timestamp)`.
    pub async fn offset_for_timestamp(
        &self,
        partition: &Partition,
        timestamp: i64,
        local_start: i64,
    ) -> Result<Option<(i64, i64)>, PartitionError> {
        let Some(manifest) = self.manifest(partition).await? else {
            return Ok(None);
        };
        let floor = manifest.log_start_offset;
        let paths = PartitionPaths::new(&partition.topic, partition.index);
        let candidates = manifest
            .segments
            .iter()
            .take_while(|s| s.base_offset < local_start)
            .filter(|s| s.last_offset >= floor && s.max_timestamp >= timestamp);
        for segment in candidates {
            // Records below the DeleteRecords start are gone: never answer one of them.
            let found = self
                .reader
                .offset_for_timestamp(&paths, &manifest.topic_id, segment, timestamp, floor)
                .await?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// The partition's manifest. Right after a restart the tiering task may not have loaded it
    /// yet; if the partition's checkpoint says the lake holds data, it is loaded here, so reads
    /// never skip tiered offsets (an unreachable lake is an error the client retries).
    async fn manifest(
        &self,
        partition: &Partition,
    ) -> Result<Option<Arc<Manifest>>, PartitionError> {
        if let Some(manifest) = partition.lake_manifest() {
            return Ok(Some(manifest));
        }
        if partition.lake_extent()?.is_none() {
            return Ok(None);
        }
        let paths = PartitionPaths::new(&partition.topic, partition.index);
        Ok(Manifest::load(self.store.as_ref(), &paths)
            .await?
            .map(|loaded| partition.init_lake_manifest(Arc::new(loaded))))
    }

    /// Whether and how `segment` may be uploaded with the data disk's free space; logs when
    /// tiering starts and stops waiting for space. `None`: wait.
    fn upload_parquet(&self, segment: &ClosedSegment, parquet: bool) -> Option<bool> {
        let room = self.reserve.check(segment, parquet);
        if let Room::Wait { available, needed } = room {
            self.metrics
                .postponed_low_disk
                .fetch_add(1, Ordering::Relaxed);
            if self.metrics.waiting_for_disk.swap(1, Ordering::Relaxed) == 0 {
                tracing::warn!(dir = %self.reserve.data_dir.display(), available, needed,
                    min_free_bytes = self.reserve.min_free,
                    "the data disk is short of space: tiering waits, producers come first");
            }
            return None;
        }
        if self.metrics.waiting_for_disk.swap(0, Ordering::Relaxed) == 1 {
            tracing::info!(dir = %self.reserve.data_dir.display(),
                "the data disk has room again: tiering resumes");
        }
        if room == Room::WithoutParquet {
            self.metrics
                .parquet_skipped_low_disk
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(dir = %self.reserve.data_dir.display(), base_offset = segment.base_offset,
                min_free_bytes = self.reserve.min_free,
                "the data disk is short of space for a Parquet staging file: tiering the segment without it");
            return Some(false);
        }
        Some(parquet)
    }

    /// Schedules the deletion of a deleted topic's lake data.
    pub fn topic_deleted(&self, name: &str) {
        self.deleted_topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.to_string());
    }
}

/// A topic of this name is never tiered: its objects would live in `tables/`, the folder of
/// every topic's Parquet files (the lake layout puts both at the root).
const TABLES_TOPIC: &str = manifest::TABLES_DIR;

/// Per-partition tiering state, keyed by topic name and partition, with the topic id it was
/// opened for.
type Tiers = HashMap<(String, i32), (uuid::Uuid, PartitionTier)>;

/// Runs tiering passes every `lake.tier_interval_ms` until `stop`. Dropping a pass midway is
/// safe: an upload only counts once its manifest is written.
pub async fn run_tiering(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let Some(lake) = broker.lake.as_ref() else {
        return;
    };
    tracing::info!(lake = %lake.location, "tiering closed segments to the lake");
    let mut tiers = Tiers::new();
    let mut tick = tokio::time::interval(lake.tier_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        tokio::select! {
            _ = pass(&broker, lake, &mut tiers) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

async fn pass(broker: &Broker, lake: &Lake, tiers: &mut Tiers) {
    let deleted: Vec<String> = std::mem::take(
        &mut *lake
            .deleted_topics
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    for topic in deleted {
        tiers.retain(|(name, _), _| *name != topic);
        // Recreated since: its tiering discards the old incarnation's objects (other topic id),
        // and deleting by name now would take the new topic's objects with them.
        if topic == TABLES_TOPIC || broker.topics.get(&topic).is_some() {
            continue;
        }
        match upload::delete_topic(lake.store.as_ref(), &topic).await {
            Ok(objects) => tracing::info!(topic, objects, "deleted the topic's lake data"),
            Err(error) => {
                lake.metrics.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic, %error, "cannot delete the topic's lake data; retrying");
                lake.topic_deleted(&topic);
            }
        }
    }
    let mut lag = 0;
    for topic in broker.topics.list() {
        for partition in topic.partitions() {
            // The lake is one copy, written by the partition's leader. A replica that is not
            // leading forgets its tiering state, so that on becoming leader it reloads the
            // manifest the previous leader left and continues from there.
            if !partition.is_leading() {
                tiers.remove(&(topic.name.clone(), partition.index));
                continue;
            }
            match tier_partition(lake, tiers, &topic, &partition).await {
                Ok(pending) => lag += pending,
                Err(error) => {
                    lake.metrics.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(topic = %topic.name, partition = partition.index, %error,
                        "tiering failed; retrying on the next pass");
                }
            }
        }
    }
    lake.metrics.lag_bytes.store(lag, Ordering::Relaxed);
}

/// Uploads every closed segment the lake lacks, then applies local and lake retention.
/// Returns the bytes still waiting (non-zero only if the partition is not tiered).
async fn tier_partition(
    lake: &Lake,
    tiers: &mut Tiers,
    topic: &Topic,
    partition: &Partition,
) -> Result<u64, PartitionError> {
    let config = partition.log_config()?;
    if !config.remote_storage || topic.name == TABLES_TOPIC {
        return Ok(0);
    }
    let key = (topic.name.clone(), partition.index);
    let tier = match tiers.get_mut(&key) {
        Some((id, tier)) if *id == topic.id => tier,
        _ => {
            let tier = PartitionTier::open(
                lake.store.clone(),
                &lake.staging,
                &topic.name,
                &topic.id.to_string(),
                partition.index,
            )
            .await?;
            partition.set_lake_manifest(tier.manifest().clone())?;
            &mut tiers.entry(key).insert_entry((topic.id, tier)).into_mut().1
        }
    };
    // DeleteRecords moved the start: the manifest records it, then the segments below go.
    let log_start = partition.log_start_floor()?;
    let recorded = tier.manifest().log_start_offset;
    let below_start = tier.apply_log_start(log_start).await?;
    if tier.manifest().log_start_offset != recorded {
        partition.set_lake_manifest(tier.manifest().clone())?;
    }
    if !below_start.is_empty() {
        tier.delete_dropped(&below_start).await?;
        for segment in &below_start {
            lake.reader
                .evict(tier.paths(), &topic.id.to_string(), segment);
        }
    }
    let mut uploaded = false;
    // Nothing below the start is worth copying.
    while let Some(segment) = partition.closed_segment_from(tier.tiered_end().max(log_start))? {
        let Some(parquet) = lake.upload_parquet(&segment, config.lake_parquet) else {
            break;
        };
        let started = Instant::now();
        let done = tier.upload(&segment, parquet).await?;
        partition.set_lake_manifest(tier.manifest().clone())?;
        let elapsed = started.elapsed();
        lake.metrics.segments_tiered.fetch_add(1, Ordering::Relaxed);
        lake.metrics
            .bytes_tiered
            .fetch_add(done.bytes, Ordering::Relaxed);
        tracing::info!(topic = %topic.name, partition = partition.index,
            base_offset = done.segment.base_offset, last_offset = done.segment.last_offset,
            bytes = done.bytes, elapsed_ms = elapsed.as_millis() as u64, "tiered segment");
        uploaded = true;
    }
    let now = now_ms();
    if uploaded {
        // What the lake now holds may leave the local disk.
        partition.apply_retention(now)?;
    }
    let local = partition.local_extent()?;
    let dropped = tier
        .apply_retention(
            config.retention_ms,
            config.retention_bytes,
            local.start,
            local.bytes,
            now,
        )
        .await?;
    if !dropped.is_empty() {
        partition.set_lake_manifest(tier.manifest().clone())?;
        tier.delete_dropped(&dropped).await?;
        for segment in &dropped {
            lake.reader
                .evict(tier.paths(), &topic.id.to_string(), segment);
        }
    }
    partition.closed_bytes_from(tier.tiered_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(log_bytes: usize) -> ClosedSegment {
        ClosedSegment {
            aborted: Vec::new(),
            base_offset: 0,
            last_offset: 9,
            max_timestamp: 0,
            log: Bytes::from(vec![0; log_bytes]),
            offset_index: Bytes::new(),
            time_index: Bytes::new(),
        }
    }

    fn reserve(min_free: u64, lake_on_data_disk: bool) -> DiskReserve {
        DiskReserve {
            data_dir: std::path::PathBuf::from("/nonexistent"),
            min_free,
            lake_on_data_disk,
        }
    }

    #[test]
    fn a_lake_on_the_data_disk_waits_unless_copy_and_parquet_leave_the_reserve() {
        let on_disk = reserve(100, true);
        let s = segment(10);
        // Copy 10 + Parquet staged and copied 2 * 10, plus the reserve.
        assert_eq!(on_disk.room(&s, true, 130), Room::Upload);
        assert_eq!(
            on_disk.room(&s, true, 129),
            Room::Wait {
                available: 129,
                needed: 30
            }
        );
        assert_eq!(on_disk.room(&s, false, 110), Room::Upload);
        assert!(matches!(on_disk.room(&s, false, 109), Room::Wait { .. }));
    }

    #[test]
    fn a_lake_elsewhere_only_drops_the_parquet_file_when_its_staging_does_not_fit() {
        let elsewhere = reserve(100, false);
        let s = segment(10);
        assert_eq!(elsewhere.room(&s, true, 110), Room::Upload);
        assert_eq!(elsewhere.room(&s, true, 109), Room::WithoutParquet);
        assert_eq!(elsewhere.room(&s, false, 0), Room::Upload);
    }

    #[test]
    fn a_zero_reserve_never_holds_tiering_back() {
        assert_eq!(reserve(0, true).room(&segment(10), true, 0), Room::Upload);
        assert_eq!(reserve(0, true).check(&segment(10), true), Room::Upload);
    }
}
