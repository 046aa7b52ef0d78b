//! Checks on a produce request's batches before they touch the log, and what an append returns.
//!
//! A request is accepted only if it is a non-empty sequence of whole RecordBatch v2 batches with
//! nothing after the last one, each with a valid CRC-32C, a record count consistent with its
//! offset range (`recordsCount == lastOffsetDelta + 1`), records that are really there (walked
//! one by one, decompressed within a bound, see `inlet_protocol::record_walk`), record
//! timestamps within `message.timestamp.before.max.ms` / `after.max.ms` of the broker's clock,
//! as Kafka's `LogValidator` demands, no control batch (only the broker writes those: Kafka's
//! INVALID_RECORD), and the whole request fits in one segment. One bad batch refuses the whole
//! request: a partition's batches of one request are stored all or nothing.

use std::ops::Range;

use inlet_protocol::batch::{verify_crc, BatchHeader, BatchIter};
use inlet_protocol::record_walk::{RecordWalker, WalkError};

use crate::config::LogConfig;
use crate::error::StorageError;

/// Result of a successful [`Log::append`](crate::Log::append).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    /// Largest batch max timestamp of the append (of the original batch for a duplicate).
    pub max_timestamp: i64,
    /// The append was a retry of batches already in the log; nothing was written.
    pub duplicate: bool,
    pub log_start_offset: i64,
}

fn corrupt(position: usize, reason: impl Into<String>) -> StorageError {
    StorageError::CorruptBatch {
        position,
        reason: reason.into(),
    }
}

/// A request's batches that passed [`validate_for_append`], tied to the bytes they were checked
/// in. Only this module makes one, so [`Log::append_validated`](crate::Log::append_validated)
/// stores nothing that was not checked. Validating needs no log (only its config), so callers
/// can do it without the log's lock, and for several partitions at once.
#[derive(Debug)]
pub struct ValidatedRequest<'a> {
    pub(crate) records: &'a [u8],
    pub(crate) batches: Vec<(BatchHeader, Range<usize>)>,
}

/// [`validate_request`], keeping the result for [`Log::append_validated`](crate::Log::append_validated).
pub fn validate_for_append<'a>(
    records: &'a [u8],
    config: &LogConfig,
    now_ms: i64,
    walker: &mut RecordWalker,
) -> Result<ValidatedRequest<'a>, StorageError> {
    let batches = validate_request(records, config, now_ms, walker)?;
    Ok(ValidatedRequest { records, batches })
}

/// Parses and checks every batch of `records` against `config` at wall-clock time `now_ms`;
/// returns each header with its byte range. `walker` is reused across requests.
pub fn validate_request(
    records: &[u8],
    config: &LogConfig,
    now_ms: i64,
    walker: &mut RecordWalker,
) -> Result<Vec<(BatchHeader, Range<usize>)>, StorageError> {
    validate(records, config, now_ms, Some(walker))
}

/// [`validate_request`]; `walker` `None` checks only headers and CRCs (what older versions
/// stored), for tests of logs holding such batches.
pub(crate) fn validate(
    records: &[u8],
    config: &LogConfig,
    now_ms: i64,
    mut walker: Option<&mut RecordWalker>,
) -> Result<Vec<(BatchHeader, Range<usize>)>, StorageError> {
    let max_segment_bytes = config.effective_segment_bytes();
    if records.len() > max_segment_bytes {
        return Err(StorageError::RecordTooLarge {
            size: records.len(),
            max: max_segment_bytes,
        });
    }
    let (min_ts, max_ts) = config.timestamp_range(now_ms);
    let out_of_range = |t: i64| t != -1 && (t < min_ts || t > max_ts);
    let mut batches = Vec::new();
    let mut iter = BatchIter::new(records);
    while let Some(item) = iter.next() {
        let (header, range) = item.map_err(|e| corrupt(iter.position(), e.to_string()))?;
        let batch = &records[range.clone()];
        if header.is_control() {
            // Kafka's LogValidator: only the broker writes control batches (markers).
            return Err(StorageError::ControlBatchFromClient {
                position: range.start,
            });
        }
        verify_crc(batch).map_err(|e| corrupt(range.start, e.to_string()))?;
        if header.records_count <= 0 || header.last_offset_delta != header.records_count - 1 {
            let reason = format!(
                "record count {} does not match last offset delta {}",
                header.records_count, header.last_offset_delta
            );
            return Err(corrupt(range.start, reason));
        }
        let Some(walker) = walker.as_deref_mut() else {
            batches.push((header, range));
            continue;
        };
        let summary = walker
            .walk(batch, config.max_decompressed_batch_bytes)
            .map_err(|e| match e {
                WalkError::TooLarge { limit } => StorageError::DecompressedTooLarge {
                    position: range.start,
                    limit,
                },
                other => corrupt(range.start, other.to_string()),
            })?;
        // Only CreateTime exists here (LogAppendTime topics are not supported), so every
        // timestamp is the producer's; the header's max timestamp is checked too since rolls,
        // retention and the time index trust it.
        let (lowest, highest) = summary
            .timestamps
            .unwrap_or((header.max_timestamp, header.max_timestamp));
        if let Some(timestamp) = [lowest, highest, header.max_timestamp]
            .into_iter()
            .find(|&t| out_of_range(t))
        {
            return Err(StorageError::InvalidTimestamp {
                position: range.start,
                timestamp,
                min: min_ts,
                max: max_ts,
            });
        }
        batches.push((header, range));
    }
    if batches.is_empty() {
        return Err(corrupt(0, "no record batch in the request"));
    }
    Ok(batches)
}

/// Checks batches copied from a leader ([`Log::append_as_follower`](crate::Log::append_as_follower)):
/// framing, magic, CRC-32C, an offset range that holds the records (`recordsCount <=
/// lastOffsetDelta + 1`: compaction leaves fewer records than offsets, and empty batches), and
/// that each batch fits in a segment. The records are not walked and timestamps not bounded:
/// the leader checked them when it accepted the batch, and a follower stores what it has.
pub(crate) fn validate_replicated(
    records: &[u8],
    config: &LogConfig,
) -> Result<Vec<(BatchHeader, Range<usize>)>, StorageError> {
    let max_segment_bytes = config.effective_segment_bytes();
    let mut batches = Vec::new();
    let mut iter = BatchIter::new(records);
    while let Some(item) = iter.next() {
        let (header, range) = item.map_err(|e| corrupt(iter.position(), e.to_string()))?;
        verify_crc(&records[range.clone()]).map_err(|e| corrupt(range.start, e.to_string()))?;
        if header.last_offset_delta < 0
            || header.records_count < 0
            || header.records_count > header.last_offset_delta.saturating_add(1)
        {
            let reason = format!(
                "record count {} does not fit last offset delta {}",
                header.records_count, header.last_offset_delta
            );
            return Err(corrupt(range.start, reason));
        }
        if range.len() > max_segment_bytes {
            return Err(StorageError::RecordTooLarge {
                size: range.len(),
                max: max_segment_bytes,
            });
        }
        batches.push((header, range));
    }
    if batches.is_empty() {
        return Err(corrupt(0, "no record batch in the request"));
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlet_protocol::batch::TestBatchBuilder;

    fn config(segment_bytes: u64) -> LogConfig {
        LogConfig {
            segment_bytes,
            ..LogConfig::default()
        }
    }

    fn check(
        records: &[u8],
        segment_bytes: u64,
    ) -> Result<Vec<(BatchHeader, Range<usize>)>, StorageError> {
        validate_request(records, &config(segment_bytes), 0, &mut RecordWalker::new())
    }

    #[test]
    fn record_count_must_match_the_records_held() {
        // Issue 10 item 1: one record, header claiming 2^31-1 (consistent with its last delta).
        let mut b = TestBatchBuilder::default().build(&[(b"", b"a")]);
        b[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
        b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = inlet_protocol::batch::compute_crc(&b).unwrap();
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let good = TestBatchBuilder::default().build(&[(b"", b"b")]);
        let request = [good.clone(), b].concat();
        assert!(matches!(
            check(&request, 1 << 20),
            Err(StorageError::CorruptBatch { position, .. }) if position == good.len()
        ));
    }

    #[test]
    fn timestamps_outside_the_configured_range_are_refused() {
        let now = 1_700_000_000_000;
        let at = |ts: i64| {
            TestBatchBuilder {
                base_timestamp: ts,
                ..Default::default()
            }
            .build(&[(b"", b"a"), (b"", b"b")])
        };
        let config = LogConfig {
            message_timestamp_before_max_ms: 1000,
            ..LogConfig::default()
        };
        let check = |b: &[u8]| validate_request(b, &config, now, &mut RecordWalker::new());
        assert!(check(&at(now)).is_ok());
        assert!(check(&at(now - 1000)).is_ok());
        assert!(matches!(
            check(&at(now - 1001)),
            Err(StorageError::InvalidTimestamp { .. })
        ));
        // after.max.ms defaults to one hour; the second record is at base + 1.
        assert!(check(&at(now + 3_600_000 - 1)).is_ok());
        assert!(matches!(
            check(&at(now + 3_600_000)),
            Err(StorageError::InvalidTimestamp { .. })
        ));
        // By default nothing is too old.
        assert!(
            validate_request(&at(0), &LogConfig::default(), now, &mut RecordWalker::new()).is_ok()
        );
    }

    #[test]
    fn inconsistent_record_count_is_corrupt() {
        let mut b = TestBatchBuilder::default().build(&[(b"", b"a"), (b"", b"b")]);
        b[57..61].copy_from_slice(&3i32.to_be_bytes()); // recordsCount, covered by the CRC
        let crc = inlet_protocol::batch::compute_crc(&b).unwrap();
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            check(&b, 1 << 20),
            Err(StorageError::CorruptBatch { position: 0, .. })
        ));
    }

    #[test]
    fn request_larger_than_a_segment_is_too_large() {
        let b = TestBatchBuilder::default().build(&[(b"", &[0u8; 300][..])]);
        assert!(matches!(
            check(&b, 200),
            Err(StorageError::RecordTooLarge { max: 200, .. })
        ));
        assert_eq!(check(&b, 1 << 20).unwrap().len(), 1);
    }
}
