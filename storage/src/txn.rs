//! Transaction markers in the log (KIP-98): the control batch that ends a producer's
//! transaction on a partition, and the transactions a marker completes.
//!
//! A marker is Kafka's `EndTransactionMarker` written as a control batch: attributes
//! `transactional | control`, the producer's id and epoch, base sequence -1, exactly one
//! uncompressed record whose key is `version i16 (0) | type i16 (0 abort, 1 commit)` and whose
//! value is `version i16 (0) | coordinatorEpoch i32`. Only [`Log::append_txn_marker`](crate::Log::append_txn_marker)
//! writes markers; a client's control batch is refused (see [`crate::append`]).

use bytes::Bytes;
use inlet_protocol::batch::{BatchHeader, MAGIC_V2, NO_SEQUENCE};
use inlet_protocol::records::{decode_batch_bounded, encode_batch, Record};

use crate::error::StorageError;

/// Attribute bits of a marker batch: transactional (0x10) and control (0x20).
const MARKER_ATTRIBUTES: i16 = 0x10 | 0x20;
/// Control record types (Kafka's `ControlRecordType`).
const ABORT: i16 = 0;
const COMMIT: i16 = 1;
/// A marker batch's records never need more than this once decoded (one tiny record; the
/// bound keeps a hostile stored control batch from costing memory).
const MAX_MARKER_RECORDS_BYTES: usize = 64 * 1024;

/// The end of one producer's transaction on a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch of the transaction coordinator that wrote it: markers of an older
    /// coordinator are refused (TRANSACTION_COORDINATOR_FENCED).
    pub coordinator_epoch: i32,
    /// Commit (visible to `read_committed` consumers) or abort (skipped by them).
    pub commit: bool,
}

/// An aborted transaction of a partition: `read_committed` consumers skip that producer's
/// records from `first_offset` up to the abort marker at `last_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// A transaction a marker ended (Kafka's `CompletedTxn`): from the producer's first
/// transactional batch on this partition to the marker's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub aborted: bool,
}

impl CompletedTxn {
    /// The aborted transaction this is, if it was aborted.
    pub fn as_aborted(&self) -> Option<AbortedTxn> {
        self.aborted.then_some(AbortedTxn {
            producer_id: self.producer_id,
            first_offset: self.first_offset,
            last_offset: self.last_offset,
        })
    }
}

impl TxnMarker {
    /// The marker as one control batch at `base_offset`, stamped with `leader_epoch` and
    /// `timestamp_ms` (its CRC computed).
    pub fn encode(&self, base_offset: i64, leader_epoch: i32, timestamp_ms: i64) -> Vec<u8> {
        let kind = if self.commit { COMMIT } else { ABORT };
        let mut key = Vec::with_capacity(4);
        key.extend_from_slice(&0i16.to_be_bytes());
        key.extend_from_slice(&kind.to_be_bytes());
        let mut value = Vec::with_capacity(6);
        value.extend_from_slice(&0i16.to_be_bytes());
        value.extend_from_slice(&self.coordinator_epoch.to_be_bytes());
        let record = Record::new(0, 0, Some(Bytes::from(key)), Some(Bytes::from(value)));
        let header = BatchHeader {
            base_offset,
            batch_length: 0,
            partition_leader_epoch: leader_epoch,
            magic: MAGIC_V2,
            crc: 0,
            attributes: MARKER_ATTRIBUTES,
            last_offset_delta: 0,
            base_timestamp: timestamp_ms,
            max_timestamp: timestamp_ms,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: NO_SEQUENCE,
            records_count: 1,
        };
        // Uncompressed: encoding cannot fail (compression is the only fallible part).
        encode_batch(&header, &[record]).unwrap_or_default()
    }

    /// The marker of the control batch at the start of `batch`; `Ok(None)` for a control
    /// batch holding no marker (one emptied by compaction, or of an unknown control type, as
    /// Kafka ignores those). Errors for a batch that is not a control batch or is malformed.
    pub fn decode(batch: &[u8]) -> Result<Option<TxnMarker>, StorageError> {
        let bad = |reason: String| StorageError::CorruptBatch {
            position: 0,
            reason: format!("transaction marker: {reason}"),
        };
        let header = BatchHeader::parse(batch).map_err(|e| bad(e.to_string()))?;
        if !header.is_control() {
            return Err(bad("not a control batch".into()));
        }
        if header.records_count <= 0 {
            return Ok(None);
        }
        let bytes = Bytes::copy_from_slice(&batch[..header.total_len()]);
        let (_, records) = decode_batch_bounded(&bytes, MAX_MARKER_RECORDS_BYTES)
            .map_err(|e| bad(e.to_string()))?;
        let Some(record) = records.first() else {
            return Ok(None);
        };
        let key = record.key.as_deref().unwrap_or_default();
        let value = record.value.as_deref().unwrap_or_default();
        let (Some(key), Some(value)) = (key.get(..4), value.get(..6)) else {
            return Err(bad("key or value too short".into()));
        };
        let kind = i16::from_be_bytes([key[2], key[3]]);
        let commit = match kind {
            COMMIT => true,
            ABORT => false,
            _ => return Ok(None),
        };
        Ok(Some(TxnMarker {
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            coordinator_epoch: i32::from_be_bytes([value[2], value[3], value[4], value[5]]),
            commit,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlet_protocol::batch::verify_crc;
    use inlet_protocol::records::decode_batch;

    #[test]
    fn marker_encodes_as_kafkas_end_txn_control_batch() {
        let marker = TxnMarker {
            producer_id: 42,
            producer_epoch: 3,
            coordinator_epoch: 7,
            commit: true,
        };
        let batch = marker.encode(100, 5, 1_700_000_000_000);
        verify_crc(&batch).unwrap();
        let (header, records) = decode_batch(&Bytes::from(batch.clone())).unwrap();
        assert!(header.is_control() && header.is_transactional());
        assert_eq!(
            (header.base_offset, header.partition_leader_epoch),
            (100, 5)
        );
        assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
        assert_eq!(header.base_sequence, -1);
        assert_eq!((header.records_count, header.last_offset_delta), (1, 0));
        assert_eq!(header.max_timestamp, 1_700_000_000_000);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].key.as_deref(), Some(&[0u8, 0, 0, 1][..]));
        assert_eq!(records[0].value.as_deref(), Some(&[0u8, 0, 0, 0, 0, 7][..]));
        assert_eq!(TxnMarker::decode(&batch).unwrap(), Some(marker));
    }

    #[test]
    fn abort_marker_round_trips_and_data_batches_are_not_markers() {
        let marker = TxnMarker {
            producer_id: 1,
            producer_epoch: 0,
            coordinator_epoch: -1,
            commit: false,
        };
        let batch = marker.encode(0, 0, 0);
        let (_, records) = decode_batch(&Bytes::from(batch.clone())).unwrap();
        assert_eq!(records[0].key.as_deref(), Some(&[0u8, 0, 0, 0][..]));
        assert_eq!(TxnMarker::decode(&batch).unwrap(), Some(marker));
        let data = inlet_protocol::batch::TestBatchBuilder::default().build(&[(b"", b"v")]);
        assert!(TxnMarker::decode(&data).is_err());
        assert!(TxnMarker::decode(&batch[..30]).is_err());
    }
}
