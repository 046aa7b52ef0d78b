//! What can go wrong between a partition and the lake.

/// A tiering, lake-read or Parquet-export failure. Tiering retries on its next pass; reads map
/// these to Kafka's `KAFKA_STORAGE_ERROR`.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("manifest {path}: {reason}")]
    Manifest { path: String, reason: String },
    #[error("lake object {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("parquet export: {0}")]
    Parquet(String),
    #[error(transparent)]
    Storage(#[from] crate::StorageError),
}
