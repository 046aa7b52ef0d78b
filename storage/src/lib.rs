//! Inlet's storage engine: one append-only [`Log`] per partition, made of segments.
//!
//! A [`Log`] is a directory of segments (`.log` batches, `.index` offset index, `.timeindex`
//! time index; formats in [`log`], [`segment`] and [`index`]). Producer batches are stored byte
//! for byte (only `baseOffset` and `partitionLeaderEpoch` are stamped into the stored copy), and reads hand
//! out [`bytes::Bytes`] that point straight into the memory-mapped segment.
//!
//! * [`Log::append`] validates every batch (framing, magic, CRC-32C, idempotent-producer
//!   sequence) before writing anything, assigns dense offsets, updates the sparse indexes and
//!   rolls segments by size or age.
//! * [`Log::read`] returns whole batches starting with the one containing the offset (or the
//!   next one, in a gap recovery left): at least one batch, then more while they fit in
//!   `max_bytes`, from one segment.
//! * [`Log::open`] recovers after a crash: the tail of the last segment is checked batch by
//!   batch and cut at the first torn or corrupt one; a damaged closed segment keeps its valid
//!   prefix and costs no other segment anything ([`recovery`]).
//! * [`Log::apply_retention`] deletes old closed segments by time and size ([`retention`]).
//! * [`Log::compact`] keeps the latest record per key in closed segments ([`compaction`]).
//! * For replication: [`Log::append_as_follower`] stores a leader's batches as they are, the
//!   [`LeaderEpochCache`] answers OffsetForLeaderEpoch ([`Log::end_offset_for_epoch`]), and
//!   [`Log::high_watermark`] is kept and checkpointed ([`leader_epoch`], `log_replica.rs`); the
//!   periodic flush writes data and that checkpoint back without holding the log
//!   (`log_flush.rs`).
//! * [`Log::delete_records_before`] (DeleteRecords) moves the log start offset, possibly inside a
//!   segment, checkpointed in `log-start-offset` (`log_start.rs`).
//!
//! * Closed segments are copied to an object store and read back from it ([`tier`], the lake).
//!   That needs object_store, parquet and arrow, so it sits behind the `lake` feature (on by
//!   default); without it the crate is the log alone, which is what the fuzz targets build.
//!
//! `unsafe` lives only in [`mmap`] (enforced: `unsafe_code` is denied everywhere else).

#![deny(unsafe_code)]

pub mod append;
pub mod compaction;
pub mod config;
pub mod error;
pub mod index;
pub mod leader_epoch;
pub mod log;
pub mod mmap;
pub mod producer_state;
pub mod recovery;
pub mod retention;
pub mod scan;
pub mod segment;
pub mod snapshot;
pub mod tier;
pub mod txn;
pub mod txn_index;

pub use append::{validate_for_append, AppendOutcome, ValidatedRequest};
pub use compaction::CompactionOutcome;
pub use config::LogConfig;
pub use error::StorageError;
pub use leader_epoch::{EpochEntry, LeaderEpochCache};
pub use log::{Log, TimestampOffset, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, MAX_TIMESTAMP};
pub use retention::RetentionOutcome;
