//! The per-partition manifest: which offsets live in which lake objects. It is the commit point
//! of tiering: a segment's objects are written first and the manifest naming them last, so a
//! reader that sees a segment in the manifest always finds its objects complete. Objects not
//! named by the manifest are leftovers of an interrupted upload and are overwritten or swept.
//!
//! Lake layout (object keys, relative to the lake root):
//!
//! ```text
//! <topic>/<partition>/manifest.json
//! <topic>/<partition>/<base_offset>-<last_offset>.log        the segment's batches, byte for byte
//! <topic>/<partition>/<base_offset>-<last_offset>.index      its offset index
//! <topic>/<partition>/<base_offset>-<last_offset>.timeindex  its time index
//! tables/<topic>/partition=<p>/<base_offset>-<last_offset>.parquet   (lake.parquet.enable)
//! ```
//!
//! Offsets in names are zero-padded to 20 digits, so listings sort in offset order.

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::tier::TierError;

const MANIFEST_VERSION: u32 = 1;

/// The lake's root folder of Parquet tables (`tables/<topic>/partition=<p>/...`).
pub const TABLES_DIR: &str = "tables";

/// One tiered segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSegment {
    pub base_offset: i64,
    pub last_offset: i64,
    /// Size of the `.log` object.
    pub size_bytes: u64,
    /// Largest batch max timestamp in the segment (-1 if none).
    pub max_timestamp: i64,
    /// A Parquet file was written for it.
    pub parquet: bool,
}

/// Every tiered segment of one partition, oldest first, contiguous or with gaps where local
/// retention removed data before it could be tiered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub topic: String,
    /// The topic's id: a topic deleted and created again under the same name starts afresh.
    pub topic_id: String,
    pub partition: i32,
    pub segments: Vec<RemoteSegment>,
    /// The partition's log start as DeleteRecords moved it: no offset below it is served from
    /// the lake, even inside a segment that holds it. 0 in manifests written before the field.
    #[serde(default)]
    pub log_start_offset: i64,
}

/// The object keys of one partition in the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPaths {
    pub topic: String,
    pub partition: i32,
}

impl PartitionPaths {
    pub fn new(topic: &str, partition: i32) -> PartitionPaths {
        PartitionPaths {
            topic: topic.to_string(),
            partition,
        }
    }

    /// Folder of the segment objects and the manifest.
    pub fn segments_dir(&self) -> ObjectPath {
        ObjectPath::from_iter([self.topic.as_str(), &self.partition.to_string()])
    }

    /// Folder of the Parquet files.
    pub fn table_dir(&self) -> ObjectPath {
        ObjectPath::from_iter([
            TABLES_DIR,
            self.topic.as_str(),
            &format!("partition={}", self.partition),
        ])
    }

    pub fn manifest(&self) -> ObjectPath {
        self.segments_dir().join("manifest.json")
    }

    /// `<base>-<last>.<ext>` in the segments folder (`log`, `index`, `timeindex`).
    pub fn segment_object(&self, base_offset: i64, last_offset: i64, ext: &str) -> ObjectPath {
        self.segments_dir()
            .join(segment_file_name(base_offset, last_offset, ext))
    }

    pub fn parquet_object(&self, base_offset: i64, last_offset: i64) -> ObjectPath {
        self.table_dir()
            .join(segment_file_name(base_offset, last_offset, "parquet"))
    }
}

/// `00000000000000000000-00000000000000000099.log`
pub fn segment_file_name(base_offset: i64, last_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}-{last_offset:020}.{ext}")
}

/// The `(base, last)` offsets in a name made by [`segment_file_name`], whatever its extension.
pub fn parse_segment_file_name(name: &str) -> Option<(i64, i64)> {
    let stem = name.split('.').next()?;
    let (base, last) = stem.split_once('-')?;
    Some((base.parse().ok()?, last.parse().ok()?))
}

impl Manifest {
    pub fn empty(paths: &PartitionPaths, topic_id: &str) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            topic: paths.topic.clone(),
            topic_id: topic_id.to_string(),
            partition: paths.partition,
            segments: Vec::new(),
            log_start_offset: 0,
        }
    }

    /// First offset the lake serves: its first segment's base, or the DeleteRecords start
    /// inside it.
    pub fn start_offset(&self) -> Option<i64> {
        self.segments
            .first()
            .map(|s| s.base_offset.max(self.log_start_offset))
    }

    /// One past the last offset the lake holds: where tiering continues.
    pub fn end_offset(&self) -> Option<i64> {
        self.segments.last().map(|s| s.last_offset + 1)
    }

    /// The segment holding `offset`, or else the first one after it (a gap in the lake is
    /// skipped, as a compacted log skips missing offsets). None below the log start: those
    /// records are deleted.
    pub fn segment_for(&self, offset: i64) -> Option<&RemoteSegment> {
        if offset < self.log_start_offset {
            return None;
        }
        let i = self.segments.partition_point(|s| s.last_offset < offset);
        self.segments.get(i)
    }

    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size_bytes).sum()
    }

    /// Reads the manifest; `None` if there is none (nothing tiered yet).
    pub async fn load(
        store: &dyn ObjectStore,
        paths: &PartitionPaths,
    ) -> Result<Option<Manifest>, TierError> {
        let path = paths.manifest();
        let bytes = match store.get(&path).await {
            Ok(got) => got.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| TierError::Manifest {
                path: path.to_string(),
                reason: e.to_string(),
            })?;
        if manifest.version != MANIFEST_VERSION {
            return Err(TierError::Manifest {
                path: path.to_string(),
                reason: format!("unsupported version {}", manifest.version),
            });
        }
        Ok(Some(manifest))
    }

    /// Replaces the manifest in one put: object stores make a put visible all at once.
    pub async fn save(
        &self,
        store: &dyn ObjectStore,
        paths: &PartitionPaths,
    ) -> Result<(), TierError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| TierError::Manifest {
            path: paths.manifest().to_string(),
            reason: e.to_string(),
        })?;
        store.put(&paths.manifest(), PutPayload::from(json)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: i64, last: i64) -> RemoteSegment {
        RemoteSegment {
            base_offset: base,
            last_offset: last,
            size_bytes: 10,
            max_timestamp: 0,
            parquet: true,
        }
    }

    #[test]
    fn names_sort_in_offset_order_and_parse_back() {
        let name = segment_file_name(42, 99, "timeindex");
        assert_eq!(name, "00000000000000000042-00000000000000000099.timeindex");
        assert_eq!(parse_segment_file_name(&name), Some((42, 99)));
        assert!(segment_file_name(9, 10, "log") < segment_file_name(10, 11, "log"));
        assert_eq!(parse_segment_file_name("manifest.json"), None);
    }

    #[test]
    fn paths_follow_the_documented_layout() {
        let p = PartitionPaths::new("clicks", 3);
        assert_eq!(p.manifest().as_ref(), "clicks/3/manifest.json");
        assert_eq!(
            p.parquet_object(0, 9).as_ref(),
            "tables/clicks/partition=3/00000000000000000000-00000000000000000009.parquet"
        );
    }

    #[test]
    fn segment_for_finds_the_holder_or_the_next_after_a_gap() {
        let mut m = Manifest::empty(&PartitionPaths::new("t", 0), "id");
        m.segments = vec![seg(0, 9), seg(10, 19), seg(30, 39)];
        assert_eq!(m.segment_for(0).map(|s| s.base_offset), Some(0));
        assert_eq!(m.segment_for(15).map(|s| s.base_offset), Some(10));
        assert_eq!(m.segment_for(25).map(|s| s.base_offset), Some(30));
        assert_eq!(m.segment_for(40), None);
        assert_eq!((m.start_offset(), m.end_offset()), (Some(0), Some(40)));
    }

    #[test]
    fn a_log_start_inside_a_segment_hides_the_offsets_below_it() {
        let mut m = Manifest::empty(&PartitionPaths::new("t", 0), "id");
        m.segments = vec![seg(0, 9), seg(10, 19)];
        m.log_start_offset = 14;
        assert_eq!(m.segment_for(13), None);
        assert_eq!(m.segment_for(14).map(|s| s.base_offset), Some(10));
        assert_eq!(m.start_offset(), Some(14));
    }

    #[test]
    fn a_manifest_written_before_the_log_start_field_loads_with_none() {
        let old = r#"{"version":1,"topic":"t","topic_id":"id","partition":0,"segments":[
            {"base_offset":0,"last_offset":9,"size_bytes":10,"max_timestamp":0,"parquet":true}]}"#;
        let m: Manifest = serde_json::from_str(old).unwrap();
        assert_eq!((m.log_start_offset, m.start_offset()), (0, Some(0)));
    }

    #[tokio::test]
    async fn save_then_load_round_trips_and_absent_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let paths = PartitionPaths::new("t", 1);
        assert_eq!(Manifest::load(&store, &paths).await.unwrap(), None);
        let mut m = Manifest::empty(&paths, "id");
        m.segments.push(seg(0, 9));
        m.save(&store, &paths).await.unwrap();
        assert_eq!(Manifest::load(&store, &paths).await.unwrap(), Some(m));
    }
}
