//! The lake tier: closed segments copied to an object store, read back for offsets that local
//! retention has removed, and exported as Parquet for analytics engines.
//!
//! * [`store`]: where the lake is (a local directory or an S3-compatible bucket).
//! * [`manifest`]: the per-partition list of tiered segments and the lake's object layout.
//! * [`upload`]: [`PartitionTier`] copies one partition's closed segments and applies total
//!   retention to the lake.
//! * [`reader`]: [`LakeReader`] serves fetches and timestamp lookups from lake objects through a
//!   small cache of recently read chunks.
//! * [`parquet`]: one Parquet file per tiered segment.
//!
//! The log itself only learns which offsets the lake holds ([`crate::Log::set_lake_extent`],
//! checkpointed in [`extent`]), so local retention never deletes what the lake does not hold yet.

use bytes::Bytes;

pub mod error;
pub mod extent;
mod lru;
pub mod manifest;
pub mod parquet;
pub mod reader;
pub mod store;
pub mod upload;

pub use error::TierError;
pub use extent::LakeExtent;
pub use manifest::{Manifest, PartitionPaths, RemoteSegment};
pub use reader::LakeReader;
pub use store::{disk_space, DiskSpace, LakeLocation, S3Location};
pub use upload::{PartitionTier, Uploaded};

/// A closed segment's immutable contents (see [`crate::Log::closed_segment_from`]).
#[derive(Debug, Clone)]
pub struct ClosedSegment {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    /// The `.log` bytes, shared with the log's mapping.
    pub log: Bytes,
    pub offset_index: Bytes,
    pub time_index: Bytes,
}

#[cfg(test)]
#[path = "tier_tests.rs"]
mod tests;
