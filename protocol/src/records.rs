//! The records inside a RecordBatch v2, for the few places the broker must look inside a batch or
//! write one itself: log compaction (which keeps some records of a batch and re-encodes them) and
//! the group coordinator (which writes its own key/value records to `__consumer_offsets`).
//! Producer batches on the produce/fetch path are never decoded here (see [`crate::batch`]).
//!
//! Record layout inside the (possibly compressed) records section, integers zig-zag varints:
//!
//! ```text
//! length varint | attributes i8 | timestampDelta varlong | offsetDelta varint |
//! keyLength varint (-1 = null) | key | valueLength varint (-1 = null) | value |
//! headerCount varint | headers (kept as raw bytes here, never interpreted)
//! ```
//!
//! Compressed batches are decompressed through [`crate::record_walk::decompress_bounded`] (streamed,
//! refused past [`MAX_DECOMPRESSED_BATCH_BYTES`], so a stored decompression bomb is an error, not
//! a GiB of memory) and recompressed with the `kafka-protocol` crate's codecs.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::compression::{self as codecs, Compressor};

use crate::batch::{BatchError, BatchHeader, Compression, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};
use crate::record_walk::{decompress_bounded, WalkError, MAX_DECOMPRESSED_BATCH_BYTES};

/// Why the records of a batch cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("cannot {action} {codec:?} records: {reason}")]
    Codec {
        action: &'static str,
        codec: Compression,
        reason: String,
    },
    #[error("records decompress to more than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("malformed record {index}: {reason}")]
    Malformed { index: usize, reason: &'static str },
}

/// One record of a batch. Offsets and timestamps are relative to the batch, as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<Bytes>,
    /// `None` is a tombstone on a compacted topic.
    pub value: Option<Bytes>,
    /// `headerCount` and the headers, verbatim.
    pub headers: Bytes,
}

/// Header count 0, as a varint.
const NO_HEADERS: &[u8] = &[0];

impl Record {
    /// A record with no headers at `offset_delta` / `timestamp_delta` within its batch.
    pub fn new(
        offset_delta: i32,
        timestamp_delta: i64,
        key: Option<Bytes>,
        value: Option<Bytes>,
    ) -> Record {
        Record {
            attributes: 0,
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers: Bytes::from_static(NO_HEADERS),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(16 + self.headers.len());
        body.push(self.attributes as u8);
        put_varint(&mut body, self.timestamp_delta);
        put_varint(&mut body, i64::from(self.offset_delta));
        put_nullable(&mut body, self.key.as_deref());
        put_nullable(&mut body, self.value.as_deref());
        body.extend_from_slice(&self.headers);
        put_varint(out, body.len() as i64);
        out.extend_from_slice(&body);
    }
}

/// The header and every record of the batch at the start of `batch` (CRC not checked here).
/// Records decompressing to more than [`MAX_DECOMPRESSED_BATCH_BYTES`] are refused.
pub fn decode_batch(batch: &Bytes) -> Result<(BatchHeader, Vec<Record>), RecordsError> {
    decode_batch_bounded(batch, MAX_DECOMPRESSED_BATCH_BYTES)
}

/// [`decode_batch`] with records refused past `limit` decompressed bytes.
pub fn decode_batch_bounded(
    batch: &Bytes,
    limit: usize,
) -> Result<(BatchHeader, Vec<Record>), RecordsError> {
    let header = BatchHeader::parse(batch)?;
    let body = batch.slice(HEADER_LEN..header.total_len());
    let mut body = decompress(header.compression(), body, limit)?;
    let count = usize::try_from(header.records_count).unwrap_or(0);
    // Each record takes at least 7 bytes, which bounds what a lying count can allocate.
    let mut records = Vec::with_capacity(count.min(body.len() / 7 + 1));
    for index in 0..count {
        let malformed = |reason| RecordsError::Malformed { index, reason };
        let len = get_varint(&mut body).ok_or(malformed("bad length"))?;
        let len = usize::try_from(len).map_err(|_| malformed("negative length"))?;
        if len > body.len() || len == 0 {
            return Err(malformed("length past the batch end"));
        }
        let mut rec = body.split_to(len);
        let attributes = rec.get_i8();
        let timestamp_delta = get_varint(&mut rec).ok_or(malformed("bad timestamp delta"))?;
        let offset_delta = get_varint(&mut rec)
            .and_then(|d| i32::try_from(d).ok())
            .ok_or(malformed("bad offset delta"))?;
        let key = get_nullable(&mut rec).ok_or(malformed("bad key"))?;
        let value = get_nullable(&mut rec).ok_or(malformed("bad value"))?;
        records.push(Record {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers: rec,
        });
    }
    Ok((header, records))
}

/// Encodes one batch from `header` (its `batch_length`, `crc` and `records_count` are computed
/// here; the compression codec comes from its attributes) and `records`.
pub fn encode_batch(header: &BatchHeader, records: &[Record]) -> Result<Vec<u8>, RecordsError> {
    let mut body = Vec::new();
    for record in records {
        record.encode(&mut body);
    }
    let body = compress(header.compression(), body)?;
    let mut header = *header;
    header.magic = MAGIC_V2;
    header.records_count = records.len() as i32;
    header.batch_length = (HEADER_LEN - LOG_OVERHEAD + body.len()) as i32;
    let mut out = vec![0u8; HEADER_LEN];
    out.extend_from_slice(&body);
    // The CRC covers everything from the attributes (byte 21) on, so write the header first.
    header.write_to(&mut out);
    header.crc = crc32c::crc32c(&out[21..]);
    header.write_to(&mut out);
    Ok(out)
}

/// An uncompressed, non-idempotent batch of `(key, value)` records with dense offsets from
/// `base_offset`, all stamped `timestamp_ms`: what the broker writes on its own behalf.
pub fn simple_batch(
    base_offset: i64,
    timestamp_ms: i64,
    records: &[(Option<Bytes>, Option<Bytes>)],
) -> Result<Vec<u8>, RecordsError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record::new(i as i32, 0, key.clone(), value.clone()))
        .collect();
    let header = BatchHeader {
        base_offset,
        batch_length: 0,
        partition_leader_epoch: -1,
        magic: MAGIC_V2,
        crc: 0,
        attributes: 0,
        last_offset_delta: records.len().saturating_sub(1) as i32,
        base_timestamp: timestamp_ms,
        max_timestamp: timestamp_ms,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        records_count: 0,
    };
    encode_batch(&header, &records)
}

fn codec_error(action: &'static str, codec: Compression, e: anyhow::Error) -> RecordsError {
    RecordsError::Codec {
        action,
        codec,
        reason: e.to_string(),
    }
}

fn decompress(codec: Compression, body: Bytes, limit: usize) -> Result<Bytes, RecordsError> {
    if codec == Compression::None {
        return Ok(body);
    }
    decompress_bounded(codec, &body, limit)
        .map(Bytes::from)
        .map_err(|e| match e {
            WalkError::TooLarge { limit } => RecordsError::TooLarge { limit },
            other => RecordsError::Codec {
                action: "decompress",
                codec,
                reason: other.to_string(),
            },
        })
}

fn compress(codec: Compression, body: Vec<u8>) -> Result<Vec<u8>, RecordsError> {
    fn run<C: Compressor<BytesMut, BufMut = BytesMut>>(body: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut out = BytesMut::new();
        C::compress(&mut out, |buf| {
            buf.extend_from_slice(body);
            Ok(())
        })?;
        Ok(out.to_vec())
    }
    let result = match codec {
        Compression::None => return Ok(body),
        Compression::Gzip => run::<codecs::Gzip>(&body),
        Compression::Snappy => run::<codecs::Snappy>(&body),
        Compression::Lz4 => run::<codecs::Lz4>(&body),
        Compression::Zstd => run::<codecs::Zstd>(&body),
    };
    result.map_err(|e| codec_error("compress", codec, e))
}

/// Zig-zag LEB128 varint, as used inside Kafka records.
pub fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a zig-zag varint; `None` when truncated or longer than 10 bytes.
pub fn get_varint(buf: &mut Bytes) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        if !buf.has_remaining() {
            return None;
        }
        let byte = buf.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => put_varint(out, -1),
    }
}

/// `Some(None)` for a null field, `None` when malformed.
fn get_nullable(buf: &mut Bytes) -> Option<Option<Bytes>> {
    match get_varint(buf)? {
        -1 => Some(None),
        len => {
            let len = usize::try_from(len).ok()?;
            (len <= buf.len()).then(|| Some(buf.split_to(len)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{verify_crc, TestBatchBuilder};

    #[test]
    fn decodes_what_the_test_builder_writes() {
        let batch = TestBatchBuilder::default().build(&[(b"k1", b"v1"), (b"", b"v2")]);
        let (header, records) = decode_batch(&Bytes::from(batch)).unwrap();
        assert_eq!(header.records_count, 2);
        assert_eq!(records[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(records[1].key, None);
        assert_eq!(records[1].value.as_deref(), Some(&b"v2"[..]));
        assert_eq!(records[1].offset_delta, 1);
    }

    #[test]
    fn every_codec_round_trips_with_a_valid_crc() {
        for (codec, bits) in [
            (Compression::None, 0),
            (Compression::Gzip, 1),
            (Compression::Snappy, 2),
            (Compression::Lz4, 3),
            (Compression::Zstd, 4),
        ] {
            let plain = simple_batch(
                100,
                5,
                &[(Some(Bytes::from("k")), None), (None, Some("v".into()))],
            )
            .unwrap();
            let (mut header, records) = decode_batch(&Bytes::from(plain)).unwrap();
            header.attributes = bits;
            let encoded = encode_batch(&header, &records).unwrap();
            verify_crc(&encoded).unwrap();
            let (back_header, back) = decode_batch(&Bytes::from(encoded)).unwrap();
            assert_eq!(back_header.compression(), codec);
            assert_eq!((back_header.base_offset, back), (100, records));
        }
    }

    #[test]
    fn decoding_is_bounded_for_every_codec() {
        let big = Bytes::from(vec![0u8; 4 << 20]);
        for bits in 1..5 {
            let plain = simple_batch(0, 5, &[(None, Some(big.clone()))]).unwrap();
            let (mut header, records) = decode_batch(&Bytes::from(plain)).unwrap();
            header.attributes = bits;
            let bomb = Bytes::from(encode_batch(&header, &records).unwrap());
            assert!(matches!(
                decode_batch_bounded(&bomb, 1 << 20),
                Err(RecordsError::TooLarge { limit }) if limit == 1 << 20
            ));
            assert_eq!(decode_batch(&bomb).unwrap().1, records);
        }
    }

    #[test]
    fn truncated_records_are_reported_not_panicked_on() {
        let mut batch = TestBatchBuilder::default().build(&[(b"key", b"value")]);
        batch[57..61].copy_from_slice(&5i32.to_be_bytes());
        assert!(matches!(
            decode_batch(&Bytes::from(batch)),
            Err(RecordsError::Malformed { index: 1, .. })
        ));
    }
}
