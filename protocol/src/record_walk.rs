//! Walks the records inside a RecordBatch v2 without decoding them into values, to check that a
//! batch is what its header says before the broker stores it (Kafka's `LogValidator` does the
//! same): the records are well framed, their count equals `recordsCount` (and therefore
//! `lastOffsetDelta + 1`), their offset deltas run 0..n-1, every record's length matches its
//! content, and nothing trails the last record.
//!
//! Uncompressed batches are walked in place, with no allocation. Compressed batches are walked
//! through a streaming decompressor that never holds more than a small window, and whose output
//! is capped: a batch whose records decompress to more than the caller's limit is refused
//! ([`WalkError::TooLarge`]), so a few KB of zstd inflating to a GiB costs neither memory nor more
//! than `limit` bytes of CPU work. [`decompress_bounded`] is the same stream for the places that
//! need the records themselves (compaction, the Parquet export): bounded by the same rules.

use std::io::{self, Read};

use crate::batch::{BatchError, BatchHeader, Compression, HEADER_LEN};

/// Hard cap on the decompressed records of one batch, wherever they are decompressed.
pub const MAX_DECOMPRESSED_BATCH_BYTES: usize = 128 * 1024 * 1024;
/// At Produce, a batch may decompress to at most this many times `max.message.bytes`
/// (capped at [`MAX_DECOMPRESSED_BATCH_BYTES`], at least [`MIN_DECOMPRESSED_BATCH_BYTES`]).
pub const DECOMPRESSION_RATIO_LIMIT: usize = 64;
/// Floor of the Produce limit, so a tiny `max.message.bytes` does not refuse ordinary batches.
pub const MIN_DECOMPRESSED_BATCH_BYTES: usize = 1024 * 1024;
/// zstd frames may not ask for a window above 2^24 bytes (16 MiB): the window is what the
/// decoder keeps resident. Kafka producers use level 3 (a 2 MiB window at most) by default.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;
/// Decompressed bytes are pulled through a buffer of this size.
const STREAM_CHUNK: usize = 32 * 1024;

/// The Produce-side decompression limit for a topic with this `max.message.bytes`.
pub fn decompressed_batch_limit(max_message_bytes: usize) -> usize {
    max_message_bytes
        .saturating_mul(DECOMPRESSION_RATIO_LIMIT)
        .clamp(MIN_DECOMPRESSED_BATCH_BYTES, MAX_DECOMPRESSED_BATCH_BYTES)
}

/// Why the records of a batch are not what its header claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalkError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("record {index}: {reason}")]
    Malformed { index: usize, reason: &'static str },
    #[error("batch header says {expected} records, the batch holds {found}")]
    CountMismatch { expected: i32, found: usize },
    #[error("bytes after the last record")]
    TrailingBytes,
    #[error("cannot decompress {codec:?} records: {reason}")]
    Codec { codec: Compression, reason: String },
    #[error("records decompress to more than {limit} bytes")]
    TooLarge { limit: usize },
}

/// What a successful walk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkSummary {
    pub records: usize,
    /// Smallest and largest record timestamp (`baseTimestamp + timestampDelta`), ignoring
    /// records without one (-1); `None` when no record has one.
    pub timestamps: Option<(i64, i64)>,
}

/// Reusable state for walking many batches (the decompression buffer), so the hot path does
/// not allocate per batch.
#[derive(Debug, Default)]
pub struct RecordWalker {
    chunk: Vec<u8>,
}

impl RecordWalker {
    pub fn new() -> RecordWalker {
        RecordWalker::default()
    }

    /// Walks the records of the batch at the start of `batch` (its header already parsed, its
    /// CRC already checked by the caller). `limit` bounds the decompressed size of compressed
    /// records.
    pub fn walk(&mut self, batch: &[u8], limit: usize) -> Result<WalkSummary, WalkError> {
        let header = BatchHeader::parse(batch)?;
        let body = &batch[HEADER_LEN..header.total_len()];
        match header.compression() {
            Compression::None => walk_records(&header, SliceSource { buf: body, pos: 0 }),
            codec => {
                if self.chunk.len() != STREAM_CHUNK {
                    self.chunk = vec![0; STREAM_CHUNK];
                }
                let reader = decompressor(codec, body, limit)?;
                let source = StreamSource {
                    inner: reader,
                    codec,
                    buf: &mut self.chunk,
                    start: 0,
                    end: 0,
                    produced: 0,
                    limit,
                };
                walk_records(&header, source)
            }
        }
    }
}

/// Walks one batch with a fresh [`RecordWalker`].
pub fn walk_batch(batch: &[u8], limit: usize) -> Result<WalkSummary, WalkError> {
    RecordWalker::new().walk(batch, limit)
}

/// The decompressed records section of a batch with `codec`, refused past `limit` bytes.
pub fn decompress_bounded(
    codec: Compression,
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, WalkError> {
    if codec == Compression::None {
        if body.len() > limit {
            return Err(WalkError::TooLarge { limit });
        }
        return Ok(body.to_vec());
    }
    let reader = decompressor(codec, body, limit)?;
    let mut out = Vec::new();
    let read = reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| io_error(codec, limit, &e))?;
    if read > limit {
        return Err(WalkError::TooLarge { limit });
    }
    Ok(out)
}

/// Marks the error a bounded decompressor raises when a block would exceed the limit.
#[derive(Debug)]
struct OverLimit;

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("decompression limit exceeded")
    }
}

impl std::error::Error for OverLimit {}

fn io_error(codec: Compression, limit: usize, e: &io::Error) -> WalkError {
    if e.get_ref().is_some_and(|inner| inner.is::<OverLimit>()) {
        WalkError::TooLarge { limit }
    } else {
        WalkError::Codec {
            codec,
            reason: e.to_string(),
        }
    }
}

fn decompressor<'a>(
    codec: Compression,
    body: &'a [u8],
    limit: usize,
) -> Result<Box<dyn Read + 'a>, WalkError> {
    let codec_error = |e: io::Error| WalkError::Codec {
        codec,
        reason: e.to_string(),
    };
    Ok(match codec {
        Compression::None => Box::new(body),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(body)),
        Compression::Snappy => Box::new(SnappyReader::new(body, limit)),
        Compression::Lz4 => Box::new(lz4::Decoder::new(body).map_err(codec_error)?),
        Compression::Zstd => {
            let mut decoder =
                zstd::stream::read::Decoder::with_buffer(body).map_err(codec_error)?;
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(codec_error)?;
            Box::new(decoder)
        }
    })
}

/// Kafka's snappy: the xerial framing (a 16-byte header starting `\x82SNAPPY\0`, then blocks of
/// a big-endian u32 length and a raw snappy block), or one raw block without the header, as
/// Kafka's reader also accepts. Each block's declared size is checked against the limit before
/// it is decompressed, so a lying block costs nothing.
struct SnappyReader<'a> {
    input: &'a [u8],
    block: Vec<u8>,
    pos: usize,
    produced: usize,
    limit: usize,
    raw: bool,
    started: bool,
}

const SNAPPY_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const SNAPPY_HEADER_LEN: usize = 16;

impl<'a> SnappyReader<'a> {
    fn new(input: &'a [u8], limit: usize) -> SnappyReader<'a> {
        SnappyReader {
            input,
            block: Vec::new(),
            pos: 0,
            produced: 0,
            limit,
            raw: false,
            started: false,
        }
    }

    /// Decompresses the next block into `self.block`; false at the end of the input.
    fn next_block(&mut self) -> io::Result<bool> {
        if !self.started {
            self.started = true;
            if self.input.len() >= SNAPPY_HEADER_LEN && self.input.starts_with(SNAPPY_MAGIC) {
                self.input = &self.input[SNAPPY_HEADER_LEN..];
            } else {
                self.raw = true;
                let whole = std::mem::take(&mut self.input);
                self.decompress(whole)?;
                return Ok(true);
            }
        }
        if self.raw || self.input.is_empty() {
            return Ok(false);
        }
        if self.input.len() < 4 {
            return Err(io::Error::other("truncated snappy block length"));
        }
        let len = u32::from_be_bytes([self.input[0], self.input[1], self.input[2], self.input[3]])
            as usize;
        let rest = &self.input[4..];
        if len > rest.len() {
            return Err(io::Error::other("snappy block past the end of the batch"));
        }
        let (block, rest) = rest.split_at(len);
        self.input = rest;
        self.decompress(block)?;
        Ok(true)
    }

    fn decompress(&mut self, block: &[u8]) -> io::Result<()> {
        let len = snap::raw::decompress_len(block).map_err(io::Error::other)?;
        if len > self.limit.saturating_sub(self.produced) {
            return Err(io::Error::other(OverLimit));
        }
        self.block.resize(len, 0);
        let n = snap::raw::Decoder::new()
            .decompress(block, &mut self.block)
            .map_err(io::Error::other)?;
        self.block.truncate(n);
        self.produced += n;
        self.pos = 0;
        Ok(())
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.block.len() - self.pos);
        out[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Where the walk reads record bytes from.
trait Source {
    /// The next byte; `None` at the end of the records.
    fn byte(&mut self) -> Result<Option<u8>, WalkError>;
    /// Skips `n` bytes; false if the records end first.
    fn skip(&mut self, n: usize) -> Result<bool, WalkError>;
    /// Bytes consumed so far.
    fn consumed(&self) -> usize;
}

struct SliceSource<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Source for SliceSource<'_> {
    fn byte(&mut self) -> Result<Option<u8>, WalkError> {
        let b = self.buf.get(self.pos).copied();
        self.pos += usize::from(b.is_some());
        Ok(b)
    }

    fn skip(&mut self, n: usize) -> Result<bool, WalkError> {
        if n > self.buf.len() - self.pos {
            self.pos = self.buf.len();
            return Ok(false);
        }
        self.pos += n;
        Ok(true)
    }

    fn consumed(&self) -> usize {
        self.pos
    }
}

struct StreamSource<'b, R> {
    inner: R,
    codec: Compression,
    buf: &'b mut [u8],
    start: usize,
    end: usize,
    /// Decompressed bytes pulled from `inner` so far.
    produced: usize,
    limit: usize,
}

impl<R: Read> StreamSource<'_, R> {
    /// Refills the buffer; false at the end of the stream.
    fn fill(&mut self) -> Result<bool, WalkError> {
        loop {
            match self.inner.read(&mut *self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.produced += n;
                    if self.produced > self.limit {
                        return Err(WalkError::TooLarge { limit: self.limit });
                    }
                    self.start = 0;
                    self.end = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(self.codec, self.limit, &e)),
            }
        }
    }
}

impl<R: Read> Source for StreamSource<'_, R> {
    fn byte(&mut self) -> Result<Option<u8>, WalkError> {
        if self.start == self.end && !self.fill()? {
            return Ok(None);
        }
        let b = self.buf[self.start];
        self.start += 1;
        Ok(Some(b))
    }

    fn skip(&mut self, mut n: usize) -> Result<bool, WalkError> {
        loop {
            let here = n.min(self.end - self.start);
            self.start += here;
            n -= here;
            if n == 0 {
                return Ok(true);
            }
            if !self.fill()? {
                return Ok(false);
            }
        }
    }

    fn consumed(&self) -> usize {
        self.produced - (self.end - self.start)
    }
}

/// Reads a zig-zag varint of at most `max_bytes` bytes (5 for an int, 10 for a long).
fn varint<S: Source>(
    source: &mut S,
    max_bytes: u32,
    index: usize,
    what: &'static str,
) -> Result<i64, WalkError> {
    let malformed = WalkError::Malformed {
        index,
        reason: what,
    };
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        let Some(byte) = source.byte()? else {
            return Err(malformed);
        };
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(malformed)
}

fn int_varint<S: Source>(
    source: &mut S,
    index: usize,
    what: &'static str,
) -> Result<i32, WalkError> {
    let v = varint(source, 5, index, what)?;
    i32::try_from(v).map_err(|_| WalkError::Malformed {
        index,
        reason: what,
    })
}

/// Skips a length-prefixed field that must end by `end` (a [`Source::consumed`] position: the
/// end of its record); `nullable` allows the length -1.
fn skip_field<S: Source>(
    source: &mut S,
    index: usize,
    end: usize,
    nullable: bool,
    what: &'static str,
) -> Result<(), WalkError> {
    let len = int_varint(source, index, what)?;
    let malformed = WalkError::Malformed {
        index,
        reason: what,
    };
    match len {
        -1 if nullable => Ok(()),
        n if n < 0 => Err(malformed),
        n => {
            // Checked before skipping, so a lying length is not followed through the stream.
            let fits = (n as usize) <= end.saturating_sub(source.consumed());
            if fits && source.skip(n as usize)? {
                Ok(())
            } else {
                Err(malformed)
            }
        }
    }
}

fn walk_records<S: Source>(header: &BatchHeader, mut source: S) -> Result<WalkSummary, WalkError> {
    let expected = header.records_count;
    let mut index = 0usize;
    let mut timestamps: Option<(i64, i64)> = None;
    // Until the end of the records; `first` is the first byte of the next record's length.
    while let Some(first) = source.byte()? {
        if index as i64 >= i64::from(expected) {
            // More records than the header claims, or garbage after the last one.
            return Err(WalkError::TrailingBytes);
        }
        let malformed = |reason| WalkError::Malformed { index, reason };
        // The length varint, whose first byte is already read.
        let length = {
            let mut value = u64::from(first & 0x7f);
            let mut more = first & 0x80 != 0;
            let mut shift = 7;
            while more {
                if shift > 28 {
                    return Err(malformed("record length varint too long"));
                }
                let b = source.byte()?.ok_or(malformed("truncated record length"))?;
                value |= u64::from(b & 0x7f) << shift;
                more = b & 0x80 != 0;
                shift += 7;
            }
            ((value >> 1) as i64) ^ -((value & 1) as i64)
        };
        if length <= 0 || length > i64::from(i32::MAX) {
            return Err(malformed("record length not positive"));
        }
        let end = source.consumed() + length as usize;
        source.byte()?.ok_or(malformed("truncated attributes"))?;
        let timestamp_delta = varint(&mut source, 10, index, "bad timestamp delta")?;
        let offset_delta = int_varint(&mut source, index, "bad offset delta")?;
        if i64::from(offset_delta) != index as i64 {
            return Err(malformed("offset delta out of sequence"));
        }
        skip_field(&mut source, index, end, true, "bad key")?;
        skip_field(&mut source, index, end, true, "bad value")?;
        let headers = int_varint(&mut source, index, "bad header count")?;
        if headers < 0 {
            return Err(malformed("negative header count"));
        }
        for _ in 0..headers {
            if source.consumed() >= end {
                return Err(malformed("headers past the record length"));
            }
            skip_field(&mut source, index, end, false, "bad header key")?;
            skip_field(&mut source, index, end, true, "bad header value")?;
        }
        if source.consumed() != end {
            return Err(malformed("record length does not match its content"));
        }
        let timestamp = header.base_timestamp.wrapping_add(timestamp_delta);
        if timestamp != -1 {
            timestamps = Some(match timestamps {
                None => (timestamp, timestamp),
                Some((lo, hi)) => (lo.min(timestamp), hi.max(timestamp)),
            });
        }
        index += 1;
    }
    if index as i64 != i64::from(expected) {
        return Err(WalkError::CountMismatch {
            expected,
            found: index,
        });
    }
    Ok(WalkSummary {
        records: index,
        timestamps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{TestBatchBuilder, LOG_OVERHEAD};
    use crate::records::{encode_batch, put_varint, simple_batch, Record};
    use bytes::Bytes;
    use proptest::prelude::*;

    const LIMIT: usize = 1 << 20;

    /// A batch with the header of `template` (count and last delta as given) around `body`
    /// (already compressed as `codec_bits` says), with a valid CRC.
    fn raw_batch(body: &[u8], codec_bits: i16, count: i32, last_delta: i32) -> Vec<u8> {
        let mut header = BatchHeader::parse(&TestBatchBuilder::default().build(&[(b"", b"x")]))
            .expect("builder output parses");
        header.attributes = codec_bits;
        header.records_count = count;
        header.last_offset_delta = last_delta;
        header.batch_length = (HEADER_LEN - LOG_OVERHEAD + body.len()) as i32;
        let mut out = vec![0u8; HEADER_LEN];
        out.extend_from_slice(body);
        header.write_to(&mut out);
        header.crc = crc32c::crc32c(&out[21..]);
        header.write_to(&mut out);
        out
    }

    fn record(offset_delta: i64, value: &[u8]) -> Vec<u8> {
        let mut rec = vec![0u8];
        put_varint(&mut rec, offset_delta); // timestampDelta
        put_varint(&mut rec, offset_delta);
        put_varint(&mut rec, -1);
        put_varint(&mut rec, value.len() as i64);
        rec.extend_from_slice(value);
        put_varint(&mut rec, 0);
        let mut out = Vec::new();
        put_varint(&mut out, rec.len() as i64);
        out.extend_from_slice(&rec);
        out
    }

    fn compressed(bits: i16, records: usize, value: &[u8]) -> Vec<u8> {
        let records: Vec<Record> = (0..records)
            .map(|i| {
                Record::new(
                    i as i32,
                    i as i64,
                    None,
                    Some(Bytes::copy_from_slice(value)),
                )
            })
            .collect();
        let mut header =
            BatchHeader::parse(&simple_batch(0, 1_000, &[(None, None)]).unwrap()).unwrap();
        header.attributes = bits;
        header.last_offset_delta = records.len() as i32 - 1;
        encode_batch(&header, &records).unwrap()
    }

    #[test]
    fn every_codec_walks_and_counts() {
        for bits in 0..5 {
            let batch = compressed(bits, 300, b"some value bytes");
            let summary = walk_batch(&batch, LIMIT).unwrap();
            assert_eq!(summary.records, 300, "codec {bits}");
            assert_eq!(summary.timestamps, Some((1_000, 1_299)), "codec {bits}");
        }
    }

    #[test]
    fn a_header_claiming_more_records_than_it_holds_is_refused() {
        // Issue 10 item 1: lastOffsetDelta 2^31-2, recordsCount 2^31-1, one record.
        let batch = raw_batch(&record(0, b"v"), 0, i32::MAX, i32::MAX - 1);
        assert_eq!(
            walk_batch(&batch, LIMIT),
            Err(WalkError::CountMismatch {
                expected: i32::MAX,
                found: 1
            })
        );
        for bits in 1..5 {
            let mut one = compressed(bits, 1, b"v");
            let mut header = BatchHeader::parse(&one).unwrap();
            header.records_count = 3;
            header.last_offset_delta = 2;
            header.write_to(&mut one);
            header.crc = crc32c::crc32c(&one[21..]);
            header.write_to(&mut one);
            assert!(
                matches!(
                    walk_batch(&one, LIMIT),
                    Err(WalkError::CountMismatch { .. })
                ),
                "codec {bits}"
            );
        }
    }

    #[test]
    fn garbage_truncated_and_trailing_records_are_refused() {
        // Valid CRC, garbage body (issue 10 item 9).
        let garbage = raw_batch(&[0xff; 40], 0, 1, 0);
        assert!(matches!(
            walk_batch(&garbage, LIMIT),
            Err(WalkError::Malformed { index: 0, .. })
        ));
        let good = record(0, b"value");
        let truncated = raw_batch(&good[..good.len() - 2], 0, 1, 0);
        assert!(matches!(
            walk_batch(&truncated, LIMIT),
            Err(WalkError::Malformed { index: 0, .. })
        ));
        let trailing = raw_batch(&[good.clone(), vec![0]].concat(), 0, 1, 0);
        assert_eq!(walk_batch(&trailing, LIMIT), Err(WalkError::TrailingBytes));
        let two = raw_batch(&[record(0, b"a"), record(1, b"b")].concat(), 0, 1, 0);
        assert_eq!(walk_batch(&two, LIMIT), Err(WalkError::TrailingBytes));
        let fewer = raw_batch(&good, 0, 2, 1);
        assert!(matches!(
            walk_batch(&fewer, LIMIT),
            Err(WalkError::CountMismatch {
                expected: 2,
                found: 1
            })
        ));
    }

    #[test]
    fn record_length_must_match_content_and_offsets_run_in_order() {
        let mut long = record(0, b"value");
        long[0] += 2; // declared length 2 more than the content
        long.extend_from_slice(&[0, 0]);
        assert!(matches!(
            walk_batch(&raw_batch(&long, 0, 1, 0), LIMIT),
            Err(WalkError::Malformed { index: 0, .. })
        ));
        let swapped = raw_batch(&[record(1, b"a"), record(0, b"b")].concat(), 0, 2, 1);
        assert!(matches!(
            walk_batch(&swapped, LIMIT),
            Err(WalkError::Malformed { index: 0, .. })
        ));
        let gap = raw_batch(&[record(0, b"a"), record(2, b"b")].concat(), 0, 2, 1);
        assert!(matches!(
            walk_batch(&gap, LIMIT),
            Err(WalkError::Malformed { index: 1, .. })
        ));
    }

    #[test]
    fn compressed_garbage_is_a_codec_error() {
        for bits in 1..5 {
            let batch = raw_batch(&[0x5a; 64], bits, 1, 0);
            assert!(walk_batch(&batch, LIMIT).is_err(), "codec {bits}");
        }
    }

    #[test]
    fn decompression_bombs_are_refused_for_every_codec() {
        // One record whose 8 MiB value of zeros compresses to a few KB.
        let value = vec![0u8; 8 << 20];
        for bits in 1..5 {
            let batch = compressed(bits, 1, &value);
            assert!(batch.len() < 1 << 20, "codec {bits}: {} bytes", batch.len());
            assert_eq!(
                walk_batch(&batch, LIMIT),
                Err(WalkError::TooLarge { limit: LIMIT }),
                "codec {bits}"
            );
            let codec = BatchHeader::parse(&batch).unwrap().compression();
            assert_eq!(
                decompress_bounded(codec, &batch[HEADER_LEN..], LIMIT),
                Err(WalkError::TooLarge { limit: LIMIT })
            );
            assert_eq!(walk_batch(&batch, 16 << 20).unwrap().records, 1);
            assert!(
                decompress_bounded(codec, &batch[HEADER_LEN..], 16 << 20)
                    .unwrap()
                    .len()
                    > 8 << 20
            );
        }
    }

    #[test]
    fn limit_follows_max_message_bytes_within_bounds() {
        assert_eq!(decompressed_batch_limit(1 << 20), 64 << 20);
        assert_eq!(decompressed_batch_limit(100), MIN_DECOMPRESSED_BATCH_BYTES);
        assert_eq!(
            decompressed_batch_limit(usize::MAX),
            MAX_DECOMPRESSED_BATCH_BYTES
        );
    }

    proptest! {
        #[test]
        fn walk_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200),
                             bits in 0i16..5, count in -2i32..5) {
            let batch = raw_batch(&body, bits, count, count.saturating_sub(1));
            let _ = walk_batch(&batch, 4096);
        }
    }
}
