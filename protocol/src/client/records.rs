//! Building record batches to produce and reading the records out of fetched bytes, through the
//! `kafka-protocol` crate's `RecordBatchEncoder` / `RecordBatchDecoder` (the bytes are the crate's
//! business; this module only decides which records go where).

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::ClientError;
use crate::batch::BatchIter;

/// One record to produce.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Bytes)>,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
}

/// One record read back.
#[derive(Debug, Clone)]
pub struct ConsumedRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Parses a codec name as the `compression.type` config spells it.
pub fn parse_compression(name: &str) -> Result<Compression, String> {
    match name {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        other => Err(format!(
            "unknown compression {other:?} (expected none, gzip, snappy, lz4 or zstd)"
        )),
    }
}

/// Encodes `records` as one v2 batch (offsets 0..n, no producer id).
pub fn encode_batch(
    records: &[ProducerRecord],
    compression: Compression,
) -> Result<Bytes, ClientError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch wherever `offset - sequence` changes and writes the
            // first record's sequence as the batch's base sequence: offset - 1 keeps every record
            // in one batch with base sequence -1 ("no producer").
            sequence: (i as i32).wrapping_sub(1),
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), Some(v.clone())))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options)
        .map_err(|e| ClientError::Protocol(format!("cannot encode a record batch: {e}")))?;
    Ok(buf.freeze())
}

/// The records of every whole batch in `bytes` at or after `from_offset`. A fetch response may
/// end with a partial batch (the broker cuts at `max_bytes`); it is skipped, and fetched again
/// from its first offset next time. Control batches (transaction markers) are skipped.
pub fn decode_records(bytes: &Bytes, from_offset: i64) -> Result<Vec<ConsumedRecord>, ClientError> {
    let mut records = Vec::new();
    for batch in BatchIter::new(bytes) {
        let Ok((header, range)) = batch else { break };
        if range.end > bytes.len() {
            break;
        }
        if header.is_control() || header.last_offset() < from_offset {
            continue;
        }
        let mut slice = bytes.slice(range);
        let set = RecordBatchDecoder::decode(&mut slice).map_err(|e| {
            ClientError::Protocol(format!(
                "cannot decode the batch at offset {}: {e}",
                header.base_offset
            ))
        })?;
        records.extend(
            set.records
                .into_iter()
                .filter(|r| r.offset >= from_offset)
                .map(|r| ConsumedRecord {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key,
                    value: r.value,
                    headers: r
                        .headers
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                }),
        );
    }
    Ok(records)
}

/// What the whole batches of a fetched byte range hold, from their headers alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub records: u64,
    /// Bytes of whole batches (a partial batch at the end is not counted).
    pub bytes: u64,
    /// The offset after the last whole batch.
    pub next_offset: Option<i64>,
}

/// Counts the whole batches in `bytes` without decompressing them: what a load generator needs
/// to count and move on.
pub fn count_records(bytes: &[u8]) -> Counted {
    let mut counted = Counted {
        records: 0,
        bytes: 0,
        next_offset: None,
    };
    for batch in BatchIter::new(bytes) {
        let Ok((header, range)) = batch else { break };
        if range.end > bytes.len() {
            break;
        }
        counted.records += u64::try_from(header.records_count).unwrap_or(0);
        counted.bytes = range.end as u64;
        counted.next_offset = Some(header.last_offset() + 1);
    }
    counted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> ProducerRecord {
        ProducerRecord {
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("value {i}"))),
            headers: vec![("h".to_string(), Bytes::from_static(b"v"))],
            timestamp: 1_700_000_000_000 + i as i64,
        }
    }

    #[test]
    fn encoded_batch_decodes_to_the_same_records_in_every_codec() {
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let records: Vec<_> = (0..5).map(record).collect();
            let bytes = encode_batch(&records, parse_compression(codec).unwrap()).unwrap();
            let decoded = decode_records(&bytes, 0).unwrap();
            assert_eq!(decoded.len(), 5, "{codec}");
            for (i, r) in decoded.iter().enumerate() {
                assert_eq!(r.offset, i as i64);
                assert_eq!(r.key, records[i].key);
                assert_eq!(r.value, records[i].value);
                assert_eq!(r.timestamp, records[i].timestamp);
                assert_eq!(
                    r.headers,
                    vec![("h".to_string(), Some(Bytes::from_static(b"v")))]
                );
            }
            let counted = count_records(&bytes);
            assert_eq!((counted.records, counted.next_offset), (5, Some(5)));
            let headers: Vec<_> = crate::batch::BatchIter::new(&bytes).collect();
            assert_eq!(headers.len(), 1, "{codec}: one batch");
            let (header, _) = headers[0].clone().unwrap();
            assert_eq!((header.producer_id, header.base_sequence), (-1, -1));
            assert_eq!(counted.bytes, bytes.len() as u64);
        }
    }

    #[test]
    fn truncated_tail_and_earlier_offsets_are_skipped() {
        let records: Vec<_> = (0..4).map(record).collect();
        let batch = encode_batch(&records, Compression::None).unwrap();
        let mut two = BytesMut::from(&batch[..]);
        two.extend_from_slice(&batch[..batch.len() / 2]);
        let two = two.freeze();
        let decoded = decode_records(&two, 2).unwrap();
        assert_eq!(decoded.iter().map(|r| r.offset).collect::<Vec<_>>(), [2, 3]);
        let counted = count_records(&two);
        assert_eq!((counted.records, counted.next_offset), (4, Some(4)));
        assert_eq!(counted.bytes, batch.len() as u64);
    }
}
