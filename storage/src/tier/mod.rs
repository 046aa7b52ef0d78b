//! The lake tier: closed segments copied to an object store, read back for old offsets, and
//! exported as Parquet for analytics engines.

pub mod error;
pub mod parquet;
pub mod store;

pub use error::TierError;
pub use store::{LakeLocation, S3Location};
