//! Which closed segments retention deletes. Pure policy over per-segment facts; [`Log`] does
//! the deleting.
//!
//! Like Kafka, only whole closed segments are deleted, oldest first, and only a prefix of the log:
//! * by time (`retention_ms`): segments whose newest batch max timestamp is more than
//!   `retention_ms` before now (a segment without timestamps counts as expired);
//! * by size (`retention_bytes`): while the log would still be at least `retention_bytes` large
//!   after removing the oldest segment.
//!
//! With remote storage on, segments that are already in the lake are also deleted per the local
//! retention (`local_retention_ms` / `local_retention_bytes`), which is usually much shorter.
//!
//! The last (active) segment is never deleted, so the log end offset is kept.
//!
//! [`Log`]: crate::Log

use crate::config::LogConfig;

/// What [`Log::apply_retention`](crate::Log::apply_retention) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOutcome {
    pub deleted_segments: usize,
    pub deleted_bytes: u64,
    pub log_start_offset: i64,
}

/// The facts retention needs about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFacts {
    pub size: u64,
    pub max_timestamp: i64,
    pub closed: bool,
    /// Every offset of the segment is in the lake.
    pub tiered: bool,
}

/// How many segments from the start of `segments` (oldest first) to delete.
pub fn segments_to_delete(segments: &[SegmentFacts], config: &LogConfig, now_ms: i64) -> usize {
    let deletable = segments
        .iter()
        .take(segments.len().saturating_sub(1))
        .take_while(|s| s.closed)
        .count();
    let total = expired_prefix(
        &segments[..deletable],
        segments,
        config.retention_ms,
        config.retention_bytes,
        now_ms,
    );
    let local = if config.remote_storage {
        let tiered = segments[..deletable]
            .iter()
            .take_while(|s| s.tiered)
            .count();
        expired_prefix(
            &segments[..tiered],
            segments,
            config.local_retention_ms,
            config.local_retention_bytes,
            now_ms,
        )
    } else {
        0
    };
    total.max(local)
}

/// How many of `candidates` (a prefix of `segments`) are past `retention_ms` or must go to get
/// `segments` under `retention_bytes`.
fn expired_prefix(
    candidates: &[SegmentFacts],
    segments: &[SegmentFacts],
    retention_ms: Option<i64>,
    retention_bytes: Option<u64>,
    now_ms: i64,
) -> usize {
    let by_time = match retention_ms {
        Some(ms) if ms >= 0 => candidates
            .iter()
            .take_while(|s| now_ms.saturating_sub(s.max_timestamp) > ms)
            .count(),
        _ => 0,
    };
    let by_size = match retention_bytes {
        Some(limit) => {
            let total: u64 = segments.iter().map(|s| s.size).sum();
            let mut excess = total.saturating_sub(limit);
            candidates
                .iter()
                .take_while(|s| {
                    let fits = s.size <= excess;
                    if fits {
                        excess -= s.size;
                    }
                    fits
                })
                .count()
        }
        None => 0,
    };
    by_time.max(by_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(size: u64, max_timestamp: i64) -> SegmentFacts {
        SegmentFacts {
            size,
            max_timestamp,
            closed: true,
            tiered: false,
        }
    }

    fn config(retention_ms: Option<i64>, retention_bytes: Option<u64>) -> LogConfig {
        LogConfig {
            retention_ms,
            retention_bytes,
            ..LogConfig::default()
        }
    }

    #[test]
    fn time_retention_deletes_expired_prefix_but_never_the_last_segment() {
        let segs = [seg(10, 100), seg(10, 500), seg(10, 150), seg(10, 100)];
        assert_eq!(
            segments_to_delete(&segs, &config(Some(1000), None), 1200),
            1
        );
        assert_eq!(
            segments_to_delete(&segs, &config(Some(1000), None), 10_000),
            3
        );
        assert_eq!(segments_to_delete(&segs, &config(None, None), 10_000), 0);
    }

    #[test]
    fn size_retention_keeps_at_least_the_limit() {
        let segs = [seg(100, 0), seg(100, 0), seg(100, 0), seg(50, 0)];
        assert_eq!(segments_to_delete(&segs, &config(None, Some(200)), 0), 1);
        assert_eq!(segments_to_delete(&segs, &config(None, Some(150)), 0), 2);
        assert_eq!(segments_to_delete(&segs, &config(None, Some(0)), 0), 3);
        assert_eq!(segments_to_delete(&segs, &config(None, Some(1000)), 0), 0);
    }

    #[test]
    fn local_retention_deletes_only_what_the_lake_holds() {
        let mut segs = [seg(100, 0), seg(100, 0), seg(100, 0), seg(100, 0)];
        segs[0].tiered = true;
        segs[1].tiered = true;
        let config = LogConfig {
            remote_storage: true,
            local_retention_bytes: Some(0),
            local_retention_ms: Some(10),
            ..config(None, None)
        };
        assert_eq!(segments_to_delete(&segs, &config, 1_000), 2);
        let off = LogConfig {
            remote_storage: false,
            ..config.clone()
        };
        assert_eq!(segments_to_delete(&segs, &off, 1_000), 0);
        // Total retention still applies to segments not yet tiered.
        let total = LogConfig {
            retention_bytes: Some(100),
            ..config
        };
        assert_eq!(segments_to_delete(&segs, &total, 1_000), 3);
    }

    #[test]
    fn open_segments_stop_retention() {
        let mut segs = [seg(100, 0), seg(100, 0), seg(100, 0)];
        segs[0].closed = false;
        assert_eq!(segments_to_delete(&segs, &config(Some(1), Some(0)), 100), 0);
    }
}
