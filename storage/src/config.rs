//! Per-log configuration. Field names follow Kafka's topic configs (`segment.bytes`,
//! `segment.ms`, `index.interval.bytes`, `flush.messages`, `flush.ms`, `retention.ms`,
//! `retention.bytes`, `remote.storage.enable`, `local.retention.ms`, `local.retention.bytes`,
//! `lake.parquet.enable`, `message.timestamp.before.max.ms`, `message.timestamp.after.max.ms`).

use inlet_protocol::record_walk::decompressed_batch_limit;
use serde::{Deserialize, Serialize};

/// Largest segment we support: positions in the offset index are `u32`, and Kafka caps
/// `segment.bytes` at `i32::MAX`.
pub const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;
/// Smallest segment we honour, so a segment always has room for a header.
pub const MIN_SEGMENT_BYTES: u64 = 128;

/// Kafka's default `log.message.timestamp.after.max.ms` (3.6+): one hour.
pub const DEFAULT_TIMESTAMP_AFTER_MAX_MS: i64 = 60 * 60 * 1000;
/// Kafka's default `max.message.bytes`.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024 + 12;

/// How a [`Log`](crate::Log) rolls, indexes, flushes and retains its segments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `segment.bytes`: a segment is rolled before it would exceed this size (default 1 GiB).
    pub segment_bytes: u64,
    /// `segment.ms`: a non-empty segment is rolled once its first batch is this old (default 7 days).
    pub segment_ms: i64,
    /// `index.interval.bytes`: bytes of batches between two sparse index entries (default 4096).
    pub index_interval_bytes: u64,
    /// `flush.messages`: flush after this many records (default None: no count-based flush).
    pub flush_messages: Option<u64>,
    /// `flush.ms`: flush when this long has passed since the last flush (default 1000).
    pub flush_ms: Option<u64>,
    /// `retention.ms`: closed segments whose newest timestamp is older are deleted
    /// (default 7 days; None keeps forever).
    pub retention_ms: Option<i64>,
    /// `retention.bytes`: oldest closed segments are deleted while the log is larger
    /// (default None: no size limit).
    pub retention_bytes: Option<u64>,
    /// `cleanup.policy` includes `compact`: [`Log::compact`](crate::Log::compact) keeps the
    /// latest record per key in closed segments (default false).
    pub compact: bool,
    /// `delete.retention.ms`: how long compaction keeps tombstones (default 1 day).
    pub delete_retention_ms: i64,
    /// `remote.storage.enable`: closed segments are copied to the lake (see [`crate::tier`])
    /// (default false here; the broker turns it on).
    pub remote_storage: bool,
    /// `local.retention.ms`, with Kafka's -2 ("same as `retention.ms`") already resolved:
    /// closed segments already in the lake are deleted locally once older than this.
    pub local_retention_ms: Option<i64>,
    /// `local.retention.bytes`, resolved like `local_retention_ms`: segments already in the
    /// lake are deleted locally while the local log is larger than this.
    pub local_retention_bytes: Option<u64>,
    /// `lake.parquet.enable`: every tiered segment is also written as a Parquet file.
    pub lake_parquet: bool,
    /// `message.timestamp.before.max.ms` (KIP-937): an append whose record timestamps are more
    /// than this far in the past is refused (default `i64::MAX`: never, as in Kafka).
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms` (KIP-937): an append whose record timestamps are more
    /// than this far in the future is refused (default 1 hour, as in Kafka 3.6+).
    pub message_timestamp_after_max_ms: i64,
    /// How many bytes the records of one compressed batch may decompress to at append; derived
    /// from `max.message.bytes` (see `inlet_protocol::record_walk::decompressed_batch_limit`).
    pub max_decompressed_batch_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            flush_messages: None,
            flush_ms: Some(1000),
            retention_ms: Some(7 * 24 * 60 * 60 * 1000),
            retention_bytes: None,
            compact: false,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            remote_storage: false,
            local_retention_ms: None,
            local_retention_bytes: None,
            lake_parquet: true,
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: DEFAULT_TIMESTAMP_AFTER_MAX_MS,
            max_decompressed_batch_bytes: decompressed_batch_limit(DEFAULT_MAX_MESSAGE_BYTES),
        }
    }
}

impl LogConfig {
    /// `segment_bytes` clamped to what the on-disk format can address.
    pub fn effective_segment_bytes(&self) -> usize {
        self.segment_bytes
            .clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES) as usize
    }

    /// The record timestamps an append may carry at wall-clock time `now_ms`: `[now - before,
    /// now + after]`, saturating (the default `before` is unbounded).
    pub fn timestamp_range(&self, now_ms: i64) -> (i64, i64) {
        // i64::MAX is Kafka's "no bound", and stays one whatever the clock says (a bound of
        // now - i64::MAX would refuse the oldest timestamps, and differently as time passes).
        let bound = |ms: i64, unbounded: i64, bounded: fn(i64, i64) -> i64| {
            if ms == i64::MAX {
                unbounded
            } else {
                bounded(now_ms, ms.max(0))
            }
        };
        (
            bound(
                self.message_timestamp_before_max_ms,
                i64::MIN,
                i64::saturating_sub,
            ),
            bound(
                self.message_timestamp_after_max_ms,
                i64::MAX,
                i64::saturating_add,
            ),
        )
    }

    pub(crate) fn index_interval(&self) -> usize {
        self.index_interval_bytes.min(MAX_SEGMENT_BYTES) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unbounded_timestamp_window_accepts_every_timestamp_at_any_clock() {
        let config = LogConfig {
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: i64::MAX,
            ..LogConfig::default()
        };
        for now in [0, 1_700_000_000_000, i64::MAX] {
            assert_eq!(config.timestamp_range(now), (i64::MIN, i64::MAX));
        }
        let config = LogConfig {
            message_timestamp_before_max_ms: 1000,
            message_timestamp_after_max_ms: 2000,
            ..LogConfig::default()
        };
        assert_eq!(config.timestamp_range(10_000), (9_000, 12_000));
    }

    #[test]
    fn defaults_match_kafka() {
        let c = LogConfig::default();
        assert_eq!(c.segment_bytes, 1 << 30);
        assert_eq!(c.flush_ms, Some(1000));
        assert_eq!(c.retention_bytes, None);
        assert_eq!(c.retention_ms, Some(604_800_000));
    }

    #[test]
    fn segment_size_is_clamped_to_addressable_range() {
        let big = LogConfig {
            segment_bytes: u64::MAX,
            ..LogConfig::default()
        };
        assert_eq!(big.effective_segment_bytes(), i32::MAX as usize);
        let tiny = LogConfig {
            segment_bytes: 1,
            ..LogConfig::default()
        };
        assert_eq!(tiny.effective_segment_bytes(), 128);
    }
}
