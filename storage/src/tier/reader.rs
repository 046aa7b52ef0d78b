//! Reading tiered segments back: Fetch and ListOffsets for offsets only the lake holds.
//!
//! A read looks the offset up in the segment's remote offset index (fetched once and cached),
//! then reads the `.log` object in aligned chunks of [`CHUNK_BYTES`] with ranged GETs. Chunks
//! stay in an LRU cache bounded by the configured size, so a consumer reading a segment from
//! start to end costs one GET per chunk, and several consumers replaying the same history share
//! them; the chunk after a read is loaded in the background, so a sequential reader rarely
//! waits for the store. Like a local read, the answer is whole batches: the first one always,
//! then more while they fit `max_bytes`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use inlet_protocol::batch::{BatchHeader, HEADER_LEN};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::index::{OffsetIndex, TimeIndex};
use crate::tier::lru::Lru;
use crate::tier::manifest::{PartitionPaths, RemoteSegment};
use crate::tier::TierError;

/// Size of one cached piece of a remote `.log` object.
pub const CHUNK_BYTES: u64 = 4 * 1024 * 1024;
/// How many segments' indexes stay cached.
const CACHED_INDEXES: usize = 256;

/// Cache keys carry the topic id: a topic deleted and created again under the same name has
/// objects of the same names, which must not be served from the old topic's cached bytes.
type ChunkKey = (String, ObjectPath, u64);
type IndexKey = (String, ObjectPath);

/// One segment's `.log` object, as the read path needs it.
struct LogObject<'a> {
    id: &'a str,
    path: ObjectPath,
    size: u64,
}

impl<'a> LogObject<'a> {
    fn of(paths: &PartitionPaths, topic_id: &'a str, segment: &RemoteSegment) -> LogObject<'a> {
        LogObject {
            id: topic_id,
            path: paths.segment_object(segment.base_offset, segment.last_offset, "log"),
            size: segment.size_bytes,
        }
    }
}

#[derive(Clone)]
struct Indexes {
    offsets: Arc<OffsetIndex>,
    times: Arc<TimeIndex>,
}

/// Serves reads from the lake; shared by every fetch.
pub struct LakeReader {
    store: Arc<dyn ObjectStore>,
    chunks: Arc<Mutex<Lru<ChunkKey, Bytes>>>,
    /// Chunks being read ahead, so they are not requested twice.
    reading_ahead: Arc<Mutex<HashSet<ChunkKey>>>,
    indexes: Mutex<Lru<IndexKey, Indexes>>,
}

impl LakeReader {
    /// A reader keeping up to `cache_bytes` of recently read segment data in memory.
    pub fn new(store: Arc<dyn ObjectStore>, cache_bytes: u64) -> LakeReader {
        LakeReader {
            store,
            chunks: Arc::new(Mutex::new(Lru::new(
                cache_bytes.min(usize::MAX as u64) as usize
            ))),
            reading_ahead: Arc::default(),
            indexes: Mutex::new(Lru::new(CACHED_INDEXES)),
        }
    }

    /// Whole batches of `segment` from the one containing `offset`, at most about `max_bytes`.
    pub async fn read(
        &self,
        paths: &PartitionPaths,
        topic_id: &str,
        segment: &RemoteSegment,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Bytes, TierError> {
        let obj = LogObject::of(paths, topic_id, segment);
        let relative = offset
            .saturating_sub(segment.base_offset)
            .clamp(0, i64::from(u32::MAX)) as u32;
        let indexes = self.indexes(paths, &obj, segment).await?;
        let start = indexes
            .offsets
            .lookup(relative)
            .map_or(0, |(_, p)| u64::from(p));
        let Some((start, first)) = self
            .find_batch(&obj, start, |h| h.last_offset() >= offset)
            .await?
        else {
            return Ok(Bytes::new());
        };
        let mut end = start + first.total_len() as u64;
        while end < segment.size_bytes {
            let next = self.header_at(&obj, end).await?;
            if end + next.total_len() as u64 - start > max_bytes as u64 {
                break;
            }
            end += next.total_len() as u64;
        }
        self.read_ahead(&obj, end);
        self.read_range(&obj, start, end).await
    }

    /// The first record of `segment` at or after offset `from` (the partition's log start) whose
    /// timestamp is `>= timestamp`: its offset and timestamp (see `segment::record_at_timestamp`).
    pub async fn offset_for_timestamp(
        &self,
        paths: &PartitionPaths,
        topic_id: &str,
        segment: &RemoteSegment,
        timestamp: i64,
        from: i64,
    ) -> Result<Option<(i64, i64)>, TierError> {
        if segment.max_timestamp < timestamp || segment.last_offset < from {
            return Ok(None);
        }
        let obj = LogObject::of(paths, topic_id, segment);
        let indexes = self.indexes(paths, &obj, segment).await?;
        let mut start = match indexes.times.last_before(timestamp) {
            Some((_, rel)) => indexes.offsets.lookup(rel).map_or(0, |(_, p)| u64::from(p)),
            None => 0,
        };
        // A batch whose only records at the time are below `from` answers nothing: go on.
        while let Some((position, header)) = self
            .find_batch(&obj, start, |h| {
                h.max_timestamp >= timestamp && h.last_offset() >= from
            })
            .await?
        {
            let end = position + header.total_len() as u64;
            let batch = self.read_range(&obj, position, end).await?;
            if let Some(found) =
                crate::segment::record_at_timestamp(&header, &batch, timestamp, from)
            {
                return Ok(Some(found));
            }
            start = end;
        }
        Ok(None)
    }

    /// Forgets cached data of segments the lake no longer holds.
    pub fn evict(&self, paths: &PartitionPaths, topic_id: &str, segment: &RemoteSegment) {
        let obj = LogObject::of(paths, topic_id, segment);
        lock(&self.chunks).remove_where(|(id, path, _)| id == obj.id && *path == obj.path);
        lock(&self.indexes).remove_where(|(id, path)| id == obj.id && *path == obj.path);
    }

    async fn indexes(
        &self,
        paths: &PartitionPaths,
        obj: &LogObject<'_>,
        segment: &RemoteSegment,
    ) -> Result<Indexes, TierError> {
        let (base, last) = (segment.base_offset, segment.last_offset);
        let key = (obj.id.to_string(), obj.path.clone());
        if let Some(found) = lock(&self.indexes).get(&key) {
            return Ok(found);
        }
        let fetch = |ext| async move {
            let path = paths.segment_object(base, last, ext);
            let bytes = self.store.get(&path).await?.bytes().await?;
            Ok::<_, TierError>((path, bytes.to_vec()))
        };
        let (offset_path, offsets) = fetch("index").await?;
        let (time_path, times) = fetch("timeindex").await?;
        let corrupt = |path: ObjectPath| TierError::Corrupt {
            path: path.to_string(),
            reason: "not a whole number of index entries".into(),
        };
        let found = Indexes {
            offsets: Arc::new(OffsetIndex::detached(offsets).ok_or_else(|| corrupt(offset_path))?),
            times: Arc::new(TimeIndex::detached(times).ok_or_else(|| corrupt(time_path))?),
        };
        lock(&self.indexes).insert(key, found.clone(), 1);
        Ok(found)
    }

    /// Walks batch headers from `position` to the first batch matching `want`.
    async fn find_batch(
        &self,
        obj: &LogObject<'_>,
        mut position: u64,
        want: impl Fn(&BatchHeader) -> bool,
    ) -> Result<Option<(u64, BatchHeader)>, TierError> {
        while position < obj.size {
            let header = self.header_at(obj, position).await?;
            if want(&header) {
                return Ok(Some((position, header)));
            }
            position += header.total_len() as u64;
        }
        Ok(None)
    }

    async fn header_at(
        &self,
        obj: &LogObject<'_>,
        position: u64,
    ) -> Result<BatchHeader, TierError> {
        let end = (position + HEADER_LEN as u64).min(obj.size);
        let bytes = self.read_range(obj, position, end).await?;
        let corrupt = |reason: String| TierError::Corrupt {
            path: obj.path.to_string(),
            reason: format!("batch at byte {position}: {reason}"),
        };
        let header = BatchHeader::parse_header_only(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if header.total_len() == 0 || position + header.total_len() as u64 > obj.size {
            return Err(corrupt("length runs past the end of the segment".into()));
        }
        Ok(header)
    }

    /// Bytes `start..end` of the `.log` object, from cached chunks where possible. A range
    /// inside one chunk is shared with the cache, not copied.
    async fn read_range(
        &self,
        obj: &LogObject<'_>,
        start: u64,
        end: u64,
    ) -> Result<Bytes, TierError> {
        let first = start / CHUNK_BYTES;
        let last = end.saturating_sub(1) / CHUNK_BYTES;
        if end <= start {
            return Ok(Bytes::new());
        }
        let mut out = BytesMut::new();
        for chunk_no in first..=last {
            let chunk = self.chunk(obj, chunk_no).await?;
            let chunk_start = chunk_no * CHUNK_BYTES;
            let from = (start.max(chunk_start) - chunk_start) as usize;
            let to = ((end - chunk_start) as usize).min(chunk.len());
            let piece = chunk.slice(from.min(to)..to);
            if first == last {
                return Ok(piece);
            }
            out.extend_from_slice(&piece);
        }
        Ok(out.freeze())
    }

    /// Starts loading the chunk holding byte `position` (where a sequential reader continues)
    /// in the background, so the next fetch finds it cached instead of waiting for the store.
    fn read_ahead(&self, obj: &LogObject<'_>, position: u64) {
        if position >= obj.size {
            return;
        }
        let key = (obj.id.to_string(), obj.path.clone(), position / CHUNK_BYTES);
        if lock(&self.chunks).get(&key).is_some() || !lock(&self.reading_ahead).insert(key.clone())
        {
            return;
        }
        let (store, chunks, reading) = (
            self.store.clone(),
            self.chunks.clone(),
            self.reading_ahead.clone(),
        );
        let size = obj.size;
        tokio::spawn(async move {
            let start = key.2 * CHUNK_BYTES;
            let end = (start + CHUNK_BYTES).min(size);
            // A failure is not reported here: the fetch that needs the chunk reads it again.
            if let Ok(bytes) = store.get_range(&key.1, start..end).await {
                if bytes.len() as u64 == end - start {
                    lock(&chunks).insert(key.clone(), bytes.clone(), bytes.len());
                }
            }
            lock(&reading).remove(&key);
        });
    }

    async fn chunk(&self, obj: &LogObject<'_>, chunk_no: u64) -> Result<Bytes, TierError> {
        let key = (obj.id.to_string(), obj.path.clone(), chunk_no);
        if let Some(found) = lock(&self.chunks).get(&key) {
            return Ok(found);
        }
        let start = chunk_no * CHUNK_BYTES;
        let end = (start + CHUNK_BYTES).min(obj.size);
        let bytes = self.store.get_range(&obj.path, start..end).await?;
        if (bytes.len() as u64) < end - start {
            return Err(TierError::Corrupt {
                path: obj.path.to_string(),
                reason: format!(
                    "object shorter than the {} bytes the manifest records",
                    obj.size
                ),
            });
        }
        lock(&self.chunks).insert(key, bytes.clone(), bytes.len());
        Ok(bytes)
    }
}

/// A poisoned cache is still a valid cache: every update leaves it consistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
