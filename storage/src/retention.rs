//! Which closed segments retention deletes. Pure policy over per-segment facts; [`Log`] does
//! the deleting.
//!
//! Like Kafka, only whole closed segments are deleted, oldest first, and only a prefix of the log:
//! * by time (`retention_ms`): segments whose newest batch max timestamp is more than
//!   `retention_ms` before now (a segment without timestamps counts as expired);
//! * by size (`retention_bytes`): while the log would still be at least `retention_bytes` large
//!   after removing the oldest segment.
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
}

/// How many segments from the start of `segments` (oldest first) to delete.
pub fn segments_to_delete(segments: &[SegmentFacts], config: &LogConfig, now_ms: i64) -> usize {
    let deletable = segments
        .iter()
        .take(segments.len().saturating_sub(1))
        .take_while(|s| s.closed)
        .count();
    let by_time = match config.retention_ms {
        Some(ms) if ms >= 0 => segments[..deletable]
            .iter()
            .take_while(|s| now_ms.saturating_sub(s.max_timestamp) > ms)
            .count(),
        _ => 0,
    };
    let by_size = match config.retention_bytes {
        Some(limit) => {
            let total: u64 = segments.iter().map(|s| s.size).sum();
            let mut excess = total.saturating_sub(limit);
            segments[..deletable]
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
    fn open_segments_stop_retention() {
        let mut segs = [seg(100, 0), seg(100, 0), seg(100, 0)];
        segs[0].closed = false;
        assert_eq!(segments_to_delete(&segs, &config(Some(1), Some(0)), 100), 0);
    }
}
