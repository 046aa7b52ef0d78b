//! Tiering one partition: its closed segments are copied to the lake in offset order, each
//! committed by a manifest update once its objects (and Parquet file) are complete; total
//! retention deletes the oldest lake segments; leftovers of an interrupted upload are swept.
//!
//! Every step is safe to repeat: object names depend only on the segment's offsets, so a retried
//! upload overwrites the same objects, and a segment already named by the manifest is skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::mmap::MappedFile;
use crate::tier::manifest::{
    parse_segment_file_name, Manifest, PartitionPaths, RemoteSegment, TABLES_DIR,
};
use crate::tier::{parquet, ClosedSegment, TierError};

/// Test-only fault injection: when this variable is set, the process aborts right after a
/// segment's objects are uploaded and before the manifest names them, as a crash would.
pub const CRASH_BEFORE_MANIFEST_ENV: &str = "INLET_FAULT_CRASH_BEFORE_MANIFEST";

/// What one [`PartitionTier::upload`] wrote.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub segment: RemoteSegment,
    /// Bytes put to the store (segment, indexes and Parquet file).
    pub bytes: u64,
}

/// One partition's side of the lake, owned by the tiering task.
pub struct PartitionTier {
    store: Arc<dyn ObjectStore>,
    paths: PartitionPaths,
    manifest: Arc<Manifest>,
    /// Where Parquet files are written before upload (unnamed files, gone when closed).
    staging: PathBuf,
}

impl PartitionTier {
    /// Loads the partition's manifest. A manifest of an older topic of the same name (another
    /// topic id) is stale: its objects are deleted and tiering starts afresh. Leftover objects of
    /// an interrupted upload are swept.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        staging: &Path,
        topic: &str,
        topic_id: &str,
        partition: i32,
    ) -> Result<PartitionTier, TierError> {
        let paths = PartitionPaths::new(topic, partition);
        let manifest = match Manifest::load(store.as_ref(), &paths).await? {
            Some(m) if m.topic_id == topic_id => m,
            stale => {
                if stale.is_some() {
                    tracing::info!(
                        topic,
                        partition,
                        "deleting lake data of an older topic with this name"
                    );
                }
                let fresh = Manifest::empty(&paths, topic_id);
                fresh.save(store.as_ref(), &paths).await?;
                fresh
            }
        };
        let tier = PartitionTier {
            store,
            paths,
            manifest: Arc::new(manifest),
            staging: staging.to_path_buf(),
        };
        let swept = tier.sweep().await?;
        if swept > 0 {
            tracing::info!(
                topic,
                partition,
                objects = swept,
                "swept lake objects no manifest names"
            );
        }
        Ok(tier)
    }

    /// The committed manifest, shared with readers.
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    pub fn paths(&self) -> &PartitionPaths {
        &self.paths
    }

    /// Where tiering continues: one past the lake's last offset (0 for an empty lake).
    pub fn tiered_end(&self) -> i64 {
        self.manifest.end_offset().unwrap_or(0)
    }

    /// Copies `segment` to the lake, with a Parquet file when `parquet` is set, then commits it.
    pub async fn upload(
        &mut self,
        segment: &ClosedSegment,
        parquet: bool,
    ) -> Result<Uploaded, TierError> {
        let (base, last) = (segment.base_offset, segment.last_offset);
        let object = |ext| self.paths.segment_object(base, last, ext);
        let mut bytes = 0u64;
        for (path, data) in [
            (object("log"), &segment.log),
            (object("index"), &segment.offset_index),
            (object("timeindex"), &segment.time_index),
        ] {
            bytes += data.len() as u64;
            self.store
                .put(&path, PutPayload::from(data.clone()))
                .await?;
        }
        // A segment whose records cannot be decoded (the log checks framing and CRCs, not every
        // record) still goes to the lake for Kafka readers, just without its Parquet file, so
        // one bad batch never stops the partition's tiering.
        let parquet = parquet
            && match self.export_parquet(segment).await {
                Ok(file) => {
                    bytes += file.len() as u64;
                    let path = self.paths.parquet_object(base, last);
                    self.store.put(&path, PutPayload::from(file)).await?;
                    true
                }
                Err(TierError::Parquet(reason)) => {
                    tracing::warn!(topic = %self.paths.topic, partition = self.paths.partition,
                        base_offset = base, %reason, "segment tiered without its Parquet file");
                    false
                }
                Err(other) => return Err(other),
            };
        if std::env::var_os(CRASH_BEFORE_MANIFEST_ENV).is_some() {
            tracing::error!(
                base_offset = base,
                "{CRASH_BEFORE_MANIFEST_ENV} is set: aborting before the manifest update"
            );
            std::process::abort();
        }
        let remote = RemoteSegment {
            base_offset: base,
            last_offset: last,
            size_bytes: segment.log.len() as u64,
            max_timestamp: segment.max_timestamp,
            parquet,
        };
        let mut next = Manifest::clone(&self.manifest);
        next.segments.retain(|s| s.last_offset < base);
        next.segments.push(remote.clone());
        next.save(self.store.as_ref(), &self.paths).await?;
        self.manifest = Arc::new(next);
        Ok(Uploaded {
            segment: remote,
            bytes,
        })
    }

    /// Writes the segment's Parquet file into an unnamed temporary file in the staging
    /// directory and returns it mapped, so a large segment's export costs page cache, not heap.
    async fn export_parquet(&self, segment: &ClosedSegment) -> Result<Bytes, TierError> {
        let log = segment.log.clone();
        let aborted = segment.aborted.clone();
        let staging = self.staging.clone();
        // Decoding and encoding a whole segment is CPU work: keep it off the I/O threads.
        tokio::task::spawn_blocking(move || {
            let io = |context: &str| {
                let context = format!("{context} in {}", staging.display());
                move |source| TierError::Io { context, source }
            };
            std::fs::create_dir_all(&staging).map_err(io("creating the staging directory"))?;
            let file = tempfile::tempfile_in(&staging).map_err(io("creating a staging file"))?;
            let (mut file, _rows) =
                parquet::export_segment_to(&log, &aborted, std::io::BufWriter::new(file))?;
            file.flush().map_err(io("writing a Parquet file"))?;
            let file = file
                .into_inner()
                .map_err(|e| io("writing a Parquet file")(e.into_error()))?;
            let map = MappedFile::read_only(&file).map_err(io("mapping a Parquet file"))?;
            Ok(map.slice(0..map.committed()).unwrap_or_default())
        })
        .await
        .map_err(|e| TierError::Parquet(format!("export task failed: {e}")))?
    }

    /// Total retention in the lake: drops the oldest segments whose newest record is older than
    /// `retention_ms`, and those that keep lake plus `local_bytes` (the local log from
    /// `local_start` on) above `retention_bytes`. Only the manifest is updated here: publish it
    /// to readers, then [`delete_dropped`](Self::delete_dropped) the returned segments' objects,
    /// so no reader is sent to a missing object.
    pub async fn apply_retention(
        &mut self,
        retention_ms: Option<i64>,
        retention_bytes: Option<u64>,
        local_start: i64,
        local_bytes: u64,
        now_ms: i64,
    ) -> Result<Vec<RemoteSegment>, TierError> {
        let segments = &self.manifest.segments;
        let by_time = retention_ms.map_or(0, |ms| {
            segments
                .iter()
                .take_while(|s| now_ms.saturating_sub(s.max_timestamp) > ms)
                .count()
        });
        let by_size = retention_bytes.map_or(0, |limit| {
            let remote_only: u64 = segments
                .iter()
                .filter(|s| s.last_offset < local_start)
                .map(|s| s.size_bytes)
                .sum();
            let mut excess = (remote_only + local_bytes).saturating_sub(limit);
            segments
                .iter()
                .take_while(|s| {
                    // A segment still held locally counts once, in `local_bytes`.
                    let counted = if s.last_offset < local_start {
                        s.size_bytes
                    } else {
                        0
                    };
                    let fits = counted > 0 && counted <= excess;
                    excess -= if fits { counted } else { 0 };
                    fits
                })
                .count()
        });
        let count = by_time.max(by_size);
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut next = Manifest::clone(&self.manifest);
        let dropped: Vec<RemoteSegment> = next.segments.drain(..count).collect();
        next.save(self.store.as_ref(), &self.paths).await?;
        self.manifest = Arc::new(next);
        tracing::info!(topic = %self.paths.topic, partition = self.paths.partition, segments = count,
            lake_start_offset = ?self.manifest.start_offset(), "lake retention dropped segments");
        Ok(dropped)
    }

    /// Records the partition's DeleteRecords start `log_start` in the manifest (when it moved
    /// up) and drops the segments wholly below it, returned for
    /// [`delete_dropped`](Self::delete_dropped) once the manifest is published, as after
    /// retention.
    pub async fn apply_log_start(
        &mut self,
        log_start: i64,
    ) -> Result<Vec<RemoteSegment>, TierError> {
        if log_start <= self.manifest.log_start_offset {
            return Ok(Vec::new());
        }
        let mut next = Manifest::clone(&self.manifest);
        next.log_start_offset = log_start;
        let below = next
            .segments
            .iter()
            .take_while(|s| s.last_offset < log_start)
            .count();
        let dropped: Vec<RemoteSegment> = next.segments.drain(..below).collect();
        next.save(self.store.as_ref(), &self.paths).await?;
        self.manifest = Arc::new(next);
        tracing::info!(topic = %self.paths.topic, partition = self.paths.partition, log_start,
            segments = dropped.len(), "the lake's log start moved (DeleteRecords)");
        Ok(dropped)
    }

    /// Deletes the objects of segments [`apply_retention`](Self::apply_retention) dropped. Ones
    /// left behind by a failure are swept when tiering next starts.
    pub async fn delete_dropped(&self, dropped: &[RemoteSegment]) -> Result<(), TierError> {
        let doomed: Vec<ObjectPath> = dropped.iter().flat_map(|s| self.objects_of(s)).collect();
        delete_objects(self.store.as_ref(), doomed).await
    }

    fn objects_of(&self, s: &RemoteSegment) -> Vec<ObjectPath> {
        let (b, l) = (s.base_offset, s.last_offset);
        let mut paths = ["log", "index", "timeindex"]
            .map(|ext| self.paths.segment_object(b, l, ext))
            .to_vec();
        if s.parquet {
            paths.push(self.paths.parquet_object(b, l));
        }
        paths
    }

    /// Deletes segment objects and Parquet files that the manifest does not name: leftovers of
    /// an upload interrupted before its commit, or of segments retention dropped while their
    /// deletion failed. Returns how many were deleted.
    async fn sweep(&self) -> Result<usize, TierError> {
        let named: std::collections::HashSet<ObjectPath> = self
            .manifest
            .segments
            .iter()
            .flat_map(|s| self.objects_of(s))
            .collect();
        let mut doomed = Vec::new();
        for dir in [self.paths.segments_dir(), self.paths.table_dir()] {
            let listed: Vec<_> = self.store.list(Some(&dir)).try_collect().await?;
            doomed.extend(listed.into_iter().map(|meta| meta.location).filter(|path| {
                let is_segment_file = path
                    .filename()
                    .is_some_and(|name| parse_segment_file_name(name).is_some());
                is_segment_file && !named.contains(path)
            }));
        }
        let count = doomed.len();
        delete_objects(self.store.as_ref(), doomed).await?;
        Ok(count)
    }
}

/// Deletes `paths`; one already gone counts as deleted.
async fn delete_objects(store: &dyn ObjectStore, paths: Vec<ObjectPath>) -> Result<(), TierError> {
    for path in paths {
        match store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Deletes everything the lake holds for `topic` (after the topic is deleted).
pub async fn delete_topic(store: &dyn ObjectStore, topic: &str) -> Result<usize, TierError> {
    let mut count = 0;
    for dir in [
        ObjectPath::from_iter([topic]),
        ObjectPath::from_iter([TABLES_DIR, topic]),
    ] {
        let listed: Vec<ObjectPath> = store
            .list(Some(&dir))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        count += listed.len();
        delete_objects(store, listed).await?;
    }
    Ok(count)
}
