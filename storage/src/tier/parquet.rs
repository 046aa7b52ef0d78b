//! Parquet export of one closed segment, so analytics engines can query a topic in the lake
//! without speaking Kafka. This module owns the Arrow schema of every exported file and the
//! mapping from RecordBatch v2 bytes (see `inlet_protocol::batch`) to rows, one row per record:
//!
//! * `offset` Int64: baseOffset + offsetDelta.
//! * `timestamp` Timestamp(ms, UTC): baseTimestamp + timestampDelta, or the batch's maxTimestamp
//!   when the batch has LogAppendTime (the broker's time replaces every record's).
//! * `key`, `value` Binary, nullable (a null value is a tombstone).
//! * `headers` List<Struct<key Utf8, value Binary nullable>>: in record order, empty when none;
//!   keys that are not UTF-8 are converted lossily, since analytics engines want strings.
//!
//! The partition is not a column: the files sit in Hive-style `partition=<p>` folders, which
//! pandas, pyarrow, DuckDB, Polars and Spark read back as a `partition` column with their
//! defaults (a column of the same name in the files made pandas and pyarrow refuse the folder).
//!
//! Control batches (transaction markers) are skipped, and so are the records of the aborted
//! transactions the caller names (from the partition's aborted-transaction index, which the
//! segment's bytes do not carry). Every batch's CRC is checked, so a corrupt segment is an error
//! rather than a file of wrong rows.

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, Int64Builder, OffsetBufferBuilder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use bytes::{Buf, Bytes};
use inlet_protocol::batch::{verify_crc, BatchHeader, BatchIter};
use inlet_protocol::records::{decode_batch, get_varint, Record};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::tier::TierError;
use crate::txn::AbortedTxn;

/// Rows buffered before they are written as one row group: bounds memory on big segments.
const ROWS_PER_GROUP: usize = 64 * 1024;
/// Key, value and header bytes buffered before a row group is written, for segments of big records.
const BYTES_PER_GROUP: usize = 64 * 1024 * 1024;
/// Arrow binary columns have i32 offsets, so one row group's column must stay under 2 GiB: this cap
/// per record plus [`BYTES_PER_GROUP`] keeps it there. Batches decompress through the bounded
/// stream of `inlet_protocol::record_walk` (at most `MAX_DECOMPRESSED_BATCH_BYTES`, 128 MiB), so
/// even a decompression bomb stored before Produce walked records stays far below it: its batch
/// is an export error and the segment goes to the lake without a Parquet file.
const MAX_RECORD_BYTES: usize = 1024 * 1024 * 1024;

/// A Parquet file made from one segment.
#[derive(Debug, Clone)]
pub struct ParquetExport {
    pub bytes: Vec<u8>,
    pub rows: u64,
}

/// The Arrow schema of every exported file.
pub fn schema() -> SchemaRef {
    let timestamp = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("offset", DataType::Int64, false),
        Field::new("timestamp", timestamp, false),
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, true),
        Field::new("headers", DataType::List(header_item()), false),
    ]))
}

fn header_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Binary, true),
    ])
}

fn header_item() -> FieldRef {
    Arc::new(Field::new("item", DataType::Struct(header_fields()), false))
}

/// `segment`: the segment's batches (none of an aborted transaction).
pub fn export_segment(segment: &[u8]) -> Result<ParquetExport, TierError> {
    let (bytes, rows) = export_segment_to(segment, &[], Vec::new())?;
    Ok(ParquetExport { bytes, rows })
}

/// [`export_segment`] into any writer (a file, so a large segment's export needs no memory for
/// the whole file), leaving out the records of the `aborted` transactions (as a
/// `read_committed` consumer would); returns the writer and the number of rows.
pub fn export_segment_to<W: Write + Send>(
    segment: &[u8],
    aborted: &[AbortedTxn],
    out: W,
) -> Result<(W, u64), TierError> {
    let schema = schema();
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
        .build();
    let mut writer = ArrowWriter::try_new(out, schema.clone(), Some(properties))
        .map_err(|e| export_error("cannot start the file", e))?;
    let mut columns = Columns::default();
    let mut rows = 0u64;
    let mut batches = BatchIter::new(segment);
    while let Some(item) = batches.next() {
        // After an error the iterator stays at the start of the bad bytes.
        let at = batches.position();
        let (header, range) = item.map_err(|e| export_error(&format!("segment byte {at}"), e))?;
        let batch_error = |e: &dyn std::fmt::Display| {
            export_error(&format!("batch at offset {}", header.base_offset), e)
        };
        let bytes = &segment[range];
        verify_crc(bytes).map_err(|e| batch_error(&e))?;
        if header.is_control() {
            continue;
        }
        let aborted_from = |offset: i64| {
            header.is_transactional()
                && aborted.iter().any(|t| {
                    t.producer_id == header.producer_id
                        && t.first_offset <= offset
                        && offset <= t.last_offset
                })
        };
        if aborted_from(header.base_offset) && aborted_from(header.last_offset()) {
            continue; // a transaction's batch is wholly in or out of it
        }
        let (_, records) =
            decode_batch(&Bytes::copy_from_slice(bytes)).map_err(|e| batch_error(&e))?;
        for (index, record) in records.iter().enumerate() {
            if aborted_from(header.base_offset + i64::from(record.offset_delta)) {
                continue;
            }
            columns
                .push(&header, record)
                .map_err(|reason| batch_error(&format_args!("record {index}: {reason}")))?;
            rows += 1;
            if columns.rows >= ROWS_PER_GROUP || columns.bytes >= BYTES_PER_GROUP {
                columns.write_group(&mut writer, &schema)?;
            }
        }
    }
    columns.write_group(&mut writer, &schema)?;
    let out = writer
        .into_inner()
        .map_err(|e| export_error("cannot finish the file", e))?;
    Ok((out, rows))
}

fn export_error(context: &str, e: impl std::fmt::Display) -> TierError {
    TierError::Parquet(format!("{context}: {e}"))
}

/// The rows of the row group being built, one builder per leaf column.
struct Columns {
    offset: Int64Builder,
    timestamp: TimestampMillisecondBuilder,
    key: BinaryBuilder,
    value: BinaryBuilder,
    headers_per_row: OffsetBufferBuilder<i32>,
    header_key: StringBuilder,
    header_value: BinaryBuilder,
    rows: usize,
    bytes: usize,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            offset: Int64Builder::new(),
            timestamp: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            key: BinaryBuilder::new(),
            value: BinaryBuilder::new(),
            headers_per_row: OffsetBufferBuilder::new(0),
            header_key: StringBuilder::new(),
            header_value: BinaryBuilder::new(),
            rows: 0,
            bytes: 0,
        }
    }
}

impl Columns {
    /// Appends one record. On error the columns are left half-written: the export is abandoned.
    fn push(&mut self, batch: &BatchHeader, record: &Record) -> Result<(), String> {
        let size = record.key.as_ref().map_or(0, Bytes::len)
            + record.value.as_ref().map_or(0, Bytes::len)
            + record.headers.len();
        if size > MAX_RECORD_BYTES {
            return Err(format!("{size} bytes is too large for one Parquet row"));
        }
        let headers = self.push_headers(record.headers.clone())?;
        self.headers_per_row.push_length(headers);
        let offset = batch
            .base_offset
            .wrapping_add(i64::from(record.offset_delta));
        self.offset.append_value(offset);
        self.timestamp.append_value(if batch.is_log_append_time() {
            batch.max_timestamp
        } else {
            batch.base_timestamp.wrapping_add(record.timestamp_delta)
        });
        self.key.append_option(record.key.as_deref());
        self.value.append_option(record.value.as_deref());
        self.rows += 1;
        self.bytes += size;
        Ok(())
    }

    /// Decodes `headerCount` then each `keyLength key valueLength value` (zig-zag varint lengths,
    /// valueLength -1 for null) into the header columns; returns how many headers there were.
    fn push_headers(&mut self, mut raw: Bytes) -> Result<usize, String> {
        fn length(raw: &mut Bytes, what: &str) -> Result<Option<usize>, String> {
            match get_varint(raw) {
                Some(-1) => Ok(None),
                Some(len) => usize::try_from(len)
                    .ok()
                    .filter(|&len| len <= raw.len())
                    .map(Some)
                    .ok_or_else(|| format!("{what} length {len} is out of bounds")),
                None => Err(format!("truncated {what} length")),
            }
        }
        // A lying count cannot loop for long: every header consumes bytes or fails.
        let count = length(&mut raw, "header count")?.ok_or("header count -1")?;
        for _ in 0..count {
            let key_len = length(&mut raw, "header key")?.ok_or("null header key")?;
            let key = raw.split_to(key_len);
            self.header_key.append_value(String::from_utf8_lossy(&key));
            let value_len = length(&mut raw, "header value")?;
            self.header_value
                .append_option(value_len.map(|len| raw.split_to(len)));
        }
        match raw.remaining() {
            0 => Ok(count),
            extra => Err(format!("{extra} stray bytes after the headers")),
        }
    }

    /// Writes the buffered rows, if any, as one row group and empties the builders.
    fn write_group<W: Write + Send>(
        &mut self,
        writer: &mut ArrowWriter<W>,
        schema: &SchemaRef,
    ) -> Result<(), TierError> {
        if self.rows == 0 {
            return Ok(());
        }
        let batch = std::mem::take(self)
            .finish(schema)
            .map_err(|e| export_error("cannot build a row group", e))?;
        // Closing the row group now keeps the writer's buffers, like ours, to one bounded group.
        writer
            .write(&batch)
            .and_then(|()| writer.flush())
            .map_err(|e| export_error("cannot write a row group", e))
    }

    fn finish(mut self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        let header_columns: Vec<ArrayRef> = vec![
            Arc::new(self.header_key.finish()),
            Arc::new(self.header_value.finish()),
        ];
        let headers = StructArray::try_new(header_fields(), header_columns, None)?;
        let headers_per_row = (self.headers_per_row.try_finish())
            .map_err(|e| ArrowError::InvalidArgumentError(e.to_string()))?;
        let headers = ListArray::try_new(header_item(), headers_per_row, Arc::new(headers), None)?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.value.finish()),
            Arc::new(headers),
        ];
        RecordBatch::try_new(schema.clone(), columns)
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMillisecondType};
    use arrow_array::{Array, BinaryArray};
    use inlet_protocol::records::{encode_batch, put_varint};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    const NONE: i16 = 0;
    const GZIP: i16 = 1;
    const SNAPPY: i16 = 2;
    const LZ4: i16 = 3;
    const ZSTD: i16 = 4;
    const LOG_APPEND_TIME: i16 = 0x08;
    const TRANSACTIONAL_CONTROL: i16 = 0x30;

    type Header = (String, Option<Vec<u8>>);

    /// One exported row; also what a test puts into a batch.
    #[derive(Debug, Clone, PartialEq)]
    struct Row {
        offset: i64,
        timestamp: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<Header>,
    }

    fn row(offset: i64, timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Row {
        let (key, value) = (key.map(<[u8]>::to_vec), value.map(<[u8]>::to_vec));
        Row {
            offset,
            timestamp,
            key,
            value,
            headers: Vec::new(),
        }
    }

    fn encode_headers(headers: &[(&[u8], Option<&[u8]>)]) -> Bytes {
        let mut out = Vec::new();
        put_varint(&mut out, headers.len() as i64);
        for (key, value) in headers {
            put_varint(&mut out, key.len() as i64);
            out.extend_from_slice(key);
            put_varint(&mut out, value.map_or(-1, |v| v.len() as i64));
            out.extend_from_slice(value.unwrap_or_default());
        }
        out.into()
    }

    fn encode(attributes: i16, base_offset: i64, times: (i64, i64), records: &[Record]) -> Vec<u8> {
        let (base_timestamp, max_timestamp) = times;
        let last_offset_delta = records.last().map_or(0, |r| r.offset_delta);
        let header = BatchHeader {
            base_offset,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records_count: 0,
        };
        encode_batch(&header, records).unwrap()
    }

    /// One create-time batch holding `rows`, its base offset and timestamp those of the first row.
    fn batch(attributes: i16, rows: &[Row]) -> Vec<u8> {
        let (base_offset, base_ts) = (rows[0].offset, rows[0].timestamp);
        let records: Vec<Record> = rows
            .iter()
            .map(|r| Record {
                headers: encode_headers(
                    &(r.headers.iter())
                        .map(|(k, v)| (k.as_bytes(), v.as_deref()))
                        .collect::<Vec<_>>(),
                ),
                ..Record::new(
                    (r.offset - base_offset) as i32,
                    r.timestamp - base_ts,
                    r.key.clone().map(Bytes::from),
                    r.value.clone().map(Bytes::from),
                )
            })
            .collect();
        let max_ts = rows.iter().map(|r| r.timestamp).max().unwrap();
        encode(attributes, base_offset, (base_ts, max_ts), &records)
    }

    fn binary(array: &BinaryArray, i: usize) -> Option<Vec<u8>> {
        array.is_valid(i).then(|| array.value(i).to_vec())
    }

    fn read_back(bytes: Vec<u8>) -> (SchemaRef, Vec<Row>) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).unwrap();
        let schema = reader.schema().clone();
        let mut rows = Vec::new();
        for batch in reader.build().unwrap() {
            let batch = batch.unwrap();
            let offset = batch.column(0).as_primitive::<Int64Type>();
            let timestamp = batch.column(1).as_primitive::<TimestampMillisecondType>();
            let (key, value) = (batch.column(2).as_binary(), batch.column(3).as_binary());
            let headers = batch.column(4).as_list::<i32>();
            for i in 0..batch.num_rows() {
                let list = headers.value(i);
                let (h_key, h_value) = (list.as_struct().column(0), list.as_struct().column(1));
                let (h_key, h_value) = (h_key.as_string::<i32>(), h_value.as_binary());
                rows.push(Row {
                    offset: offset.value(i),
                    timestamp: timestamp.value(i),
                    key: binary(key, i),
                    value: binary(value, i),
                    headers: (0..list.len())
                        .map(|h| (h_key.value(h).to_string(), binary(h_value, h)))
                        .collect(),
                });
            }
        }
        (schema, rows)
    }

    fn error_of(segment: &[u8]) -> String {
        match export_segment(segment) {
            Err(TierError::Parquet(message)) => message,
            other => panic!("expected a Parquet error, got {other:?}"),
        }
    }

    #[test]
    fn every_codec_round_trips_every_column_and_control_batches_are_skipped() {
        let (mut segment, mut expected) = (Vec::new(), Vec::new());
        let mut add = |attributes, rows: &[Row]| {
            segment.extend(batch(attributes, rows));
            if attributes & TRANSACTIONAL_CONTROL == 0 {
                expected.extend_from_slice(rows);
            }
        };
        let mut traced = row(0, 1_700_000_000_000, Some(b"user-1"), Some(b"{\"n\":1}"));
        traced.headers = vec![
            ("trace".into(), Some(b"abc".to_vec())),
            ("none".into(), None),
        ];
        // Timestamps need not increase within a batch: deltas may be negative.
        add(
            NONE,
            &[
                traced,
                row(1, 1_699_999_999_000, Some(b"user-2"), Some(b"")),
                row(2, 1, None, None),
            ],
        );
        add(
            GZIP,
            &[
                row(3, 5, None, Some(b"gz")),
                row(4, 6, Some(b"k"), Some(b"gz2")),
            ],
        );
        // An abort marker: key = version 0, type 0; value = version, coordinator epoch.
        add(
            TRANSACTIONAL_CONTROL,
            &[row(5, 7, Some(&[0; 4]), Some(&[0; 6]))],
        );
        let mut empty_header = row(6, 1_700_000_000_500, Some(b"user-3"), None);
        empty_header.headers = vec![(String::new(), Some(Vec::new()))];
        add(SNAPPY, &[empty_header]);
        // A gap in the offsets, as compaction leaves.
        add(
            LZ4,
            &[
                row(7, 10, Some(b"a"), Some(b"lz4")),
                row(9, 11, Some(b"b"), None),
            ],
        );
        let big = vec![b'x'; 10_000];
        add(
            ZSTD,
            &[
                row(10, 12, None, Some(&big)),
                row(11, 12, Some(&big), Some(b"z")),
            ],
        );

        let export = export_segment(&segment).unwrap();
        assert_eq!(export.rows, expected.len() as u64);
        assert_eq!(read_back(export.bytes), (schema(), expected));
    }

    #[test]
    fn records_of_aborted_transactions_are_left_out() {
        let txn = |pid: i64, base_offset: i64, n: usize| {
            let records: Vec<(&[u8], &[u8])> = vec![(b"k", b"v"); n];
            inlet_protocol::batch::TestBatchBuilder {
                producer_id: pid,
                producer_epoch: 0,
                base_sequence: 0,
                base_offset,
                transactional: true,
                ..Default::default()
            }
            .build(&records)
        };
        // Producer 1 (aborted at 5) writes 0..=1 and 3; producer 2 (committed) writes 2 and 4.
        let segment = [txn(1, 0, 2), txn(2, 2, 1), txn(1, 3, 1), txn(2, 4, 1)].concat();
        let aborted = [AbortedTxn {
            producer_id: 1,
            first_offset: 0,
            last_offset: 5,
        }];
        let (bytes, rows) = export_segment_to(&segment, &aborted, Vec::new()).unwrap();
        assert_eq!(rows, 2);
        let (_, rows) = read_back(bytes);
        assert_eq!(rows.iter().map(|r| r.offset).collect::<Vec<_>>(), [2, 4]);
        // Without the abort every record is exported.
        assert_eq!(export_segment(&segment).unwrap().rows, 5);
    }

    #[test]
    fn log_append_time_batches_take_the_batch_max_timestamp() {
        let records = [
            Record::new(0, 1, None, Some(Bytes::from("a"))),
            Record::new(1, 2, None, Some(Bytes::from("b"))),
        ];
        let segment = encode(LOG_APPEND_TIME, 40, (1_000, 5_000), &records);
        let (_, rows) = read_back(export_segment(&segment).unwrap().bytes);
        let got: Vec<_> = rows.iter().map(|r| (r.offset, r.timestamp)).collect();
        assert_eq!(got, vec![(40, 5_000), (41, 5_000)]);
    }

    #[test]
    fn header_keys_that_are_not_utf8_are_converted_lossily() {
        let mut record = Record::new(0, 0, None, None);
        record.headers = encode_headers(&[(b"k\xff", Some(b"v"))]);
        let segment = encode(NONE, 0, (0, 0), &[record]);
        let (_, rows) = read_back(export_segment(&segment).unwrap().bytes);
        let expected = vec![("k\u{fffd}".to_string(), Some(b"v".to_vec()))];
        assert_eq!(rows[0].headers, expected);
    }

    #[test]
    fn an_empty_segment_gives_a_readable_file_with_no_rows() {
        let export = export_segment(&[]).unwrap();
        assert_eq!(export.rows, 0);
        assert_eq!(read_back(export.bytes), (schema(), Vec::new()));
    }

    #[test]
    fn a_large_segment_is_written_in_bounded_row_groups() {
        let (per_batch, mut segment) = (30_000, Vec::new());
        for b in 0..3 {
            let rows: Vec<Row> = (0..per_batch)
                .map(|i| row(b * per_batch + i, i, None, Some(b"v")))
                .collect();
            segment.extend(batch(ZSTD, &rows));
        }
        let export = export_segment(&segment).unwrap();
        let file = Bytes::from(export.bytes);
        let reader = ParquetRecordBatchReaderBuilder::try_new(file.clone()).unwrap();
        let groups: Vec<i64> = reader
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        let first = ROWS_PER_GROUP as i64;
        assert_eq!(groups, vec![first, 3 * per_batch - first]);
        let (_, rows) = read_back(file.to_vec());
        let offsets: Vec<i64> = rows.iter().map(|r| r.offset).collect();
        assert_eq!(
            (export.rows, offsets),
            (3 * per_batch as u64, (0..3 * per_batch).collect())
        );
    }

    #[test]
    fn corrupt_segments_are_errors_that_name_the_place() {
        let good = batch(NONE, &[row(7, 1, Some(b"k"), Some(b"v"))]);
        let garbage = [good.clone(), vec![0xff; 20]].concat();
        assert!(error_of(&garbage).starts_with(&format!("segment byte {}: ", good.len())));

        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(error_of(&flipped).starts_with("batch at offset 7: CRC-32C mismatch"));

        // The CRC is right, but the one header has a key and no value length.
        let mut record = Record::new(0, 0, None, None);
        record.headers = Bytes::from_static(&[2, 2, b'k']);
        let message = error_of(&encode(GZIP, 3, (0, 0), &[record]));
        assert_eq!(
            message,
            "batch at offset 3: record 0: truncated header value length"
        );

        let mut record = Record::new(0, 0, None, None);
        record.headers = Bytes::from_static(&[0, 9]);
        let message = error_of(&encode(NONE, 3, (0, 0), &[record]));
        assert_eq!(
            message,
            "batch at offset 3: record 0: 1 stray bytes after the headers"
        );
    }

    #[test]
    fn a_segment_cut_or_flipped_at_any_byte_fails_cleanly() {
        let mut first = row(0, 1, Some(b"key"), Some(b"value"));
        first.headers = vec![("h".into(), None)];
        let first = batch(NONE, &[first]);
        let segment = [first.clone(), batch(SNAPPY, &[row(1, 2, None, Some(b"v"))])].concat();
        for at in 0..segment.len() {
            let whole_batches = at == 0 || at == first.len();
            assert_eq!(
                export_segment(&segment[..at]).is_ok(),
                whole_batches,
                "cut at {at}"
            );
            let mut flipped = segment.clone();
            flipped[at] ^= 0x5a;
            let _ = export_segment(&flipped);
        }
    }
}
