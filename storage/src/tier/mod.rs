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
//!
//! Those five modules (and [`TierError`]) need object_store, parquet and arrow and exist only
//! with the crate's `lake` feature (on by default). What the log itself uses, [`extent`] and
//! [`ClosedSegment`], is always compiled: the fuzz targets build the log without the lake.

use bytes::Bytes;

pub mod extent;
pub use extent::LakeExtent;

#[cfg(feature = "lake")]
pub mod error;
#[cfg(feature = "lake")]
mod lru;
#[cfg(feature = "lake")]
pub mod manifest;
#[cfg(feature = "lake")]
pub mod parquet;
#[cfg(feature = "lake")]
pub mod reader;
#[cfg(feature = "lake")]
pub mod store;
#[cfg(feature = "lake")]
pub mod upload;

#[cfg(feature = "lake")]
pub use error::TierError;
#[cfg(feature = "lake")]
pub use manifest::{Manifest, PartitionPaths, RemoteSegment};
#[cfg(feature = "lake")]
pub use reader::LakeReader;
#[cfg(feature = "lake")]
pub use store::{disk_space, DiskSpace, LakeLocation, S3Location};
#[cfg(feature = "lake")]
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
    /// The aborted transactions with records in the segment: the Parquet export leaves their
    /// records out.
    pub aborted: Vec<crate::txn::AbortedTxn>,
}

#[cfg(all(test, feature = "lake"))]
#[path = "tier_tests.rs"]
mod tests;
