//! Zero-copy view of a Kafka RecordBatch (magic v2).
//!
//! The broker never re-encodes producer bytes: it reads the fixed 61-byte header in place,
//! checks the CRC, and rewrites only the two fields that sit outside the CRC.
//!
//! Byte layout (all integers big-endian):
//!
//! | offset | size | field                  | notes                                              |
//! |-------:|-----:|------------------------|----------------------------------------------------|
//! |      0 |    8 | `baseOffset` i64       | rewritten by the broker (outside the CRC)          |
//! |      8 |    4 | `batchLength` i32      | bytes after this field: total = 12 + batchLength   |
//! |     12 |    4 | `partitionLeaderEpoch` | rewritten by the broker (outside the CRC)          |
//! |     16 |    1 | `magic` i8             | must be 2                                          |
//! |     17 |    4 | `crc` u32              | CRC-32C (Castagnoli) of bytes `[21, total)`        |
//! |     21 |    2 | `attributes` i16       | bits 0-2 compression, 3 timestamp type, 4 transactional, 5 control |
//! |     23 |    4 | `lastOffsetDelta` i32  | last offset = baseOffset + lastOffsetDelta         |
//! |     27 |    8 | `baseTimestamp` i64    |                                                    |
//! |     35 |    8 | `maxTimestamp` i64     |                                                    |
//! |     43 |    8 | `producerId` i64       | -1 when not idempotent                             |
//! |     51 |    2 | `producerEpoch` i16    |                                                    |
//! |     53 |    4 | `baseSequence` i32     | -1 when not idempotent                             |
//! |     57 |    4 | `recordsCount` i32     |                                                    |
//! |     61 |  ... | records                | possibly compressed; never decoded here            |

use std::ops::Range;

/// Size of the fixed RecordBatch v2 header.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` counts: `baseOffset` + `batchLength`.
pub const LOG_OVERHEAD: usize = 12;
/// The only supported magic value.
pub const MAGIC_V2: i8 = 2;
/// Sequence number of a batch without a producer.
pub const NO_SEQUENCE: i32 = -1;
/// Smallest legal `batchLength` (a header with no records).
pub const MIN_BATCH_LENGTH: i32 = (HEADER_LEN - LOG_OVERHEAD) as i32;

const BASE_OFFSET_AT: usize = 0;
const LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Why a byte range is not a valid RecordBatch v2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("unsupported magic {0} (only v2 record batches are accepted)")]
    UnsupportedMagic(i8),
    #[error("invalid batchLength {0} (minimum {MIN_BATCH_LENGTH})")]
    InvalidLength(i32),
    #[error("unknown compression codec id {0}")]
    UnknownCompression(u8),
    #[error("CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
}

/// Compression codec named by attribute bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn from_attributes(attributes: i16) -> Result<Compression, BatchError> {
        match attributes & COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(BatchError::UnknownCompression(other as u8)),
        }
    }
}

/// The parsed fixed header of one batch. Cheap to copy; holds no borrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the header at the start of `buf`. Checks that the header is present, magic is 2,
    /// the compression codec is known, and the whole batch (`12 + batchLength` bytes) fits in `buf`.
    /// Does not check the CRC (see [`verify_crc`]).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let header = BatchHeader::parse_header_only(buf)?;
        if header.total_len() > buf.len() {
            return Err(BatchError::Truncated {
                needed: header.total_len(),
                available: buf.len(),
            });
        }
        Ok(header)
    }

    /// Like [`parse`](Self::parse) but needs only the first [`HEADER_LEN`] bytes, for walking a
    /// log whose batches are read piecemeal (the lake reader).
    pub fn parse_header_only(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        let batch_length = be_i32(buf, LENGTH_AT);
        if batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::InvalidLength(batch_length));
        }
        let magic = buf[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        let attributes = be_i16(buf, ATTRIBUTES_AT);
        Compression::from_attributes(attributes)?;
        Ok(BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET_AT),
            batch_length,
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH_AT),
            magic,
            crc: be_i32(buf, CRC_AT) as u32,
            attributes,
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        })
    }

    /// Encodes this header into the first 61 bytes of `out` (the inverse of [`parse`](Self::parse)).
    /// Panics if `out` is shorter than [`HEADER_LEN`].
    pub fn write_to(&self, out: &mut [u8]) {
        let out = &mut out[..HEADER_LEN];
        out[0..8].copy_from_slice(&self.base_offset.to_be_bytes());
        out[8..12].copy_from_slice(&self.batch_length.to_be_bytes());
        out[12..16].copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out[16] = self.magic as u8;
        out[17..21].copy_from_slice(&self.crc.to_be_bytes());
        out[21..23].copy_from_slice(&self.attributes.to_be_bytes());
        out[23..27].copy_from_slice(&self.last_offset_delta.to_be_bytes());
        out[27..35].copy_from_slice(&self.base_timestamp.to_be_bytes());
        out[35..43].copy_from_slice(&self.max_timestamp.to_be_bytes());
        out[43..51].copy_from_slice(&self.producer_id.to_be_bytes());
        out[51..53].copy_from_slice(&self.producer_epoch.to_be_bytes());
        out[53..57].copy_from_slice(&self.base_sequence.to_be_bytes());
        out[57..61].copy_from_slice(&self.records_count.to_be_bytes());
    }

    /// Total size of the batch in bytes: `12 + batchLength`.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Offset of the last record: `baseOffset + lastOffsetDelta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// Sequence of the last record, wrapping from `i32::MAX` to 0 like Kafka's
    /// `DefaultRecordBatch.incrementSequence`. [`NO_SEQUENCE`] stays [`NO_SEQUENCE`].
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }

    /// The compression codec (validated by [`parse`](Self::parse)).
    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes).unwrap_or(Compression::None)
    }

    /// Whether timestamps are broker append times (attribute bit 3) rather than create times.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Whether the batch comes from an idempotent or transactional producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// `sequence + increment`, wrapping to 0 past `i32::MAX` (Kafka's sequence arithmetic).
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    let sum = i64::from(sequence) + i64::from(increment);
    sum.rem_euclid(i64::from(i32::MAX) + 1) as i32
}

/// CRC-32C over `[21, total)` of the batch at the start of `batch`.
pub fn compute_crc(batch: &[u8]) -> Result<u32, BatchError> {
    let header = BatchHeader::parse(batch)?;
    Ok(crc32c::crc32c(&batch[ATTRIBUTES_AT..header.total_len()]))
}

/// Checks the stored CRC of the batch at the start of `batch` against its contents.
pub fn verify_crc(batch: &[u8]) -> Result<(), BatchError> {
    let header = BatchHeader::parse(batch)?;
    let computed = crc32c::crc32c(&batch[ATTRIBUTES_AT..header.total_len()]);
    if computed == header.crc {
        Ok(())
    } else {
        Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        })
    }
}

fn check_header_room(batch: &[u8]) -> Result<(), BatchError> {
    if batch.len() < HEADER_LEN {
        return Err(BatchError::Truncated {
            needed: HEADER_LEN,
            available: batch.len(),
        });
    }
    Ok(())
}

/// Rewrites `baseOffset` in place. The field is outside the CRC, so the CRC stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    check_header_room(batch)?;
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
    Ok(())
}

/// Rewrites `partitionLeaderEpoch` in place. Outside the CRC, so the CRC stays valid.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    check_header_room(batch)?;
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
    Ok(())
}

/// Iterates over consecutive batches in a byte slice, yielding each header and its byte range.
/// Stops after yielding one error for a truncated or garbage tail; does not check CRCs.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> BatchIter<'a> {
        BatchIter {
            buf,
            pos: 0,
            failed: false,
        }
    }

    /// Byte position of the next batch (after an error: the start of the bad tail).
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(BatchHeader, Range<usize>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        match BatchHeader::parse(&self.buf[self.pos..]) {
            Ok(header) => {
                let range = self.pos..self.pos + header.total_len();
                self.pos = range.end;
                Some(Ok((header, range)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Builds valid uncompressed batches for tests and benchmarks (not for production use).
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct TestBatchBuilder {
    pub base_offset: i64,
    pub base_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub partition_leader_epoch: i32,
    pub transactional: bool,
}

impl Default for TestBatchBuilder {
    fn default() -> Self {
        TestBatchBuilder {
            base_offset: 0,
            base_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: NO_SEQUENCE,
            partition_leader_epoch: -1,
            transactional: false,
        }
    }
}

impl TestBatchBuilder {
    /// Encodes `records` as `(key, value)`; an empty key is written as a null key. Record `i`
    /// gets timestamp `base_timestamp + i` and offset delta `i`. Panics on an empty record list.
    pub fn build(&self, records: &[(&[u8], &[u8])]) -> Vec<u8> {
        assert!(!records.is_empty(), "a batch needs at least one record");
        let mut body = Vec::new();
        for (i, (key, value)) in records.iter().enumerate() {
            let mut rec = vec![0u8]; // attributes
            put_varint(&mut rec, i as i64); // timestampDelta
            put_varint(&mut rec, i as i64); // offsetDelta
            if key.is_empty() {
                put_varint(&mut rec, -1);
            } else {
                put_varint(&mut rec, key.len() as i64);
                rec.extend_from_slice(key);
            }
            put_varint(&mut rec, value.len() as i64);
            rec.extend_from_slice(value);
            put_varint(&mut rec, 0); // headers count
            put_varint(&mut body, rec.len() as i64);
            body.extend_from_slice(&rec);
        }
        let n = records.len() as i32;
        let header = BatchHeader {
            base_offset: self.base_offset,
            batch_length: (HEADER_LEN - LOG_OVERHEAD + body.len()) as i32,
            partition_leader_epoch: self.partition_leader_epoch,
            magic: MAGIC_V2,
            crc: 0,
            attributes: if self.transactional {
                TRANSACTIONAL_BIT
            } else {
                0
            },
            last_offset_delta: n - 1,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.base_timestamp + i64::from(n - 1),
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            records_count: n,
        };
        let mut out = vec![0u8; HEADER_LEN];
        header.write_to(&mut out);
        out.extend_from_slice(&body);
        let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

/// Zig-zag LEB128 varint, as used inside Kafka records.
fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        TestBatchBuilder {
            base_timestamp: 1_000,
            producer_id: 7,
            producer_epoch: 1,
            base_sequence: 5,
            ..Default::default()
        }
        .build(&[(b"k1", b"v1"), (b"", b"value-two"), (b"k3", b"")])
    }

    #[test]
    fn built_batch_parses_and_has_valid_crc() {
        let b = sample();
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.total_len(), b.len());
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset(), 2);
        assert_eq!(h.max_timestamp, 1_002);
        assert_eq!(h.last_sequence(), 7);
        assert_eq!(h.compression(), Compression::None);
        assert!(h.has_producer_id() && !h.is_transactional() && !h.is_control());
        verify_crc(&b).unwrap();
        assert_eq!(compute_crc(&b).unwrap(), h.crc);
    }

    #[test]
    fn record_varints_match_kafka_encoding() {
        // One record, null key, value "a": length 7, attrs 0, tsDelta 0, offDelta 0, key -1, len 1, 'a', 0 headers.
        let b = TestBatchBuilder::default().build(&[(b"", b"a")]);
        assert_eq!(&b[HEADER_LEN..], &[14, 0, 0, 0, 1, 2, b'a', 0]);
    }

    #[test]
    fn rewriting_offset_and_epoch_keeps_crc_valid() {
        let mut b = sample();
        set_base_offset(&mut b, 1234).unwrap();
        set_partition_leader_epoch(&mut b, 9).unwrap();
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(
            (h.base_offset, h.partition_leader_epoch, h.last_offset()),
            (1234, 9, 1236)
        );
        verify_crc(&b).unwrap();
    }

    #[test]
    fn flipped_payload_byte_fails_crc() {
        let mut b = sample();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(
            verify_crc(&b),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn parse_rejects_short_wrong_magic_bad_length_and_codec() {
        let b = sample();
        assert!(matches!(
            BatchHeader::parse(&b[..60]),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            BatchHeader::parse(&b[..b.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
        let mut m = b.clone();
        m[MAGIC_AT] = 1;
        assert_eq!(BatchHeader::parse(&m), Err(BatchError::UnsupportedMagic(1)));
        let mut l = b.clone();
        l[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert_eq!(BatchHeader::parse(&l), Err(BatchError::InvalidLength(10)));
        let mut c = b.clone();
        c[22] |= 0x07;
        assert_eq!(
            BatchHeader::parse(&c),
            Err(BatchError::UnknownCompression(7))
        );
        assert_eq!(
            BatchHeader::parse(&[0u8; 100]),
            Err(BatchError::InvalidLength(0))
        );
    }

    #[test]
    fn last_sequence_wraps_like_kafka() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 0), 5);
        let h = BatchHeader::parse(&TestBatchBuilder::default().build(&[(b"", b"x")])).unwrap();
        assert_eq!(h.last_sequence(), NO_SEQUENCE);
    }

    #[test]
    fn iterator_walks_batches_and_stops_on_garbage_tail() {
        let a = sample();
        let b = TestBatchBuilder::default().build(&[(b"", b"x")]);
        let mut buf = [a.clone(), b.clone()].concat();
        let ranges: Vec<_> = BatchIter::new(&buf).map(|r| r.unwrap().1).collect();
        assert_eq!(ranges, vec![0..a.len(), a.len()..a.len() + b.len()]);
        buf.extend_from_slice(&[0u8; 30]);
        let mut it = BatchIter::new(&buf);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_err());
        assert_eq!(it.position(), a.len() + b.len());
        assert!(it.next().is_none());
    }

    #[test]
    fn setters_reject_short_buffers() {
        assert!(set_base_offset(&mut [0u8; 10], 1).is_err());
        assert!(set_partition_leader_epoch(&mut [0u8; 60], 1).is_err());
    }

    proptest! {
        #[test]
        fn parse_and_iter_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = BatchHeader::parse(&bytes);
            let _ = verify_crc(&bytes);
            for item in BatchIter::new(&bytes) { let _ = item; }
        }

        #[test]
        fn parse_never_panics_on_header_like_bytes(mut bytes in proptest::collection::vec(any::<u8>(), 61..200), len in any::<i32>()) {
            bytes[8..12].copy_from_slice(&len.to_be_bytes());
            bytes[MAGIC_AT] = 2;
            if let Ok(h) = BatchHeader::parse(&bytes) { prop_assert!(h.total_len() <= bytes.len()); }
        }

        #[test]
        fn header_round_trips(base_offset in any::<i64>(), epoch in any::<i32>(), crc in any::<u32>(),
                              codec in 0i16..5, flags in 0i16..8, delta in any::<i32>(), ts in any::<i64>(),
                              max_ts in any::<i64>(), pid in any::<i64>(), pepoch in any::<i16>(),
                              seq in any::<i32>(), count in any::<i32>(), extra in 0usize..40) {
            let h = BatchHeader {
                base_offset, batch_length: MIN_BATCH_LENGTH + extra as i32, partition_leader_epoch: epoch,
                magic: MAGIC_V2, crc, attributes: codec | (flags << 3), last_offset_delta: delta,
                base_timestamp: ts, max_timestamp: max_ts, producer_id: pid, producer_epoch: pepoch,
                base_sequence: seq, records_count: count,
            };
            let mut buf = vec![0u8; HEADER_LEN + extra];
            h.write_to(&mut buf);
            prop_assert_eq!(BatchHeader::parse(&buf), Ok(h));
        }
    }
}
