//! Checks on a produce request's batches before they touch the log, and what an append returns.
//!
//! A request is accepted only if it is a non-empty sequence of whole RecordBatch v2 batches with
//! nothing after the last one, each with a valid CRC-32C and a record count consistent with its
//! offset range (`recordsCount == lastOffsetDelta + 1`, as Kafka's `LogValidator` demands), and
//! the whole request fits in one segment.

use std::ops::Range;

use inlet_protocol::batch::{verify_crc, BatchHeader, BatchIter};

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

/// Parses and checks every batch of `records`; returns each header with its byte range.
pub fn validate_request(
    records: &[u8],
    max_segment_bytes: usize,
) -> Result<Vec<(BatchHeader, Range<usize>)>, StorageError> {
    let mut batches = Vec::new();
    let mut iter = BatchIter::new(records);
    while let Some(item) = iter.next() {
        let (header, range) = item.map_err(|e| corrupt(iter.position(), e.to_string()))?;
        verify_crc(&records[range.clone()]).map_err(|e| corrupt(range.start, e.to_string()))?;
        if header.records_count <= 0 || header.last_offset_delta != header.records_count - 1 {
            let reason = format!(
                "record count {} does not match last offset delta {}",
                header.records_count, header.last_offset_delta
            );
            return Err(corrupt(range.start, reason));
        }
        batches.push((header, range));
    }
    if batches.is_empty() {
        return Err(corrupt(0, "no record batch in the request"));
    }
    if records.len() > max_segment_bytes {
        return Err(StorageError::RecordTooLarge {
            size: records.len(),
            max: max_segment_bytes,
        });
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlet_protocol::batch::TestBatchBuilder;

    #[test]
    fn inconsistent_record_count_is_corrupt() {
        let mut b = TestBatchBuilder::default().build(&[(b"", b"a"), (b"", b"b")]);
        b[57..61].copy_from_slice(&3i32.to_be_bytes()); // recordsCount, covered by the CRC
        let crc = inlet_protocol::batch::compute_crc(&b).unwrap();
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_request(&b, 1 << 20),
            Err(StorageError::CorruptBatch { position: 0, .. })
        ));
    }

    #[test]
    fn request_larger_than_a_segment_is_too_large() {
        let b = TestBatchBuilder::default().build(&[(b"", &[0u8; 300][..])]);
        assert!(matches!(
            validate_request(&b, 200),
            Err(StorageError::RecordTooLarge { max: 200, .. })
        ));
        assert_eq!(validate_request(&b, 1 << 20).unwrap().len(), 1);
    }
}
