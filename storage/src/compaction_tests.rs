//! Compaction tests: survivors, offsets, batch validity, tombstones, reopen and crash recovery.

use std::collections::BTreeMap;

use bytes::Bytes;
use inlet_protocol::batch::{verify_crc, BatchIter};
use inlet_protocol::records::{decode_batch, encode_batch, simple_batch};

use super::*;
use crate::Log;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        flush_ms: None,
        retention_ms: None,
        compact: true,
        delete_retention_ms: 1000,
        ..LogConfig::default()
    }
}

/// One batch of `(key, value)` records at `timestamp`, compressed with codec `codec_bits`.
fn batch(records: &[(&str, Option<&str>)], timestamp: i64, codec_bits: i16) -> Vec<u8> {
    let records: Vec<(Option<Bytes>, Option<Bytes>)> = records
        .iter()
        .map(|(k, v)| {
            (
                Some(Bytes::from(k.to_string())),
                v.map(|v| Bytes::from(v.to_string())),
            )
        })
        .collect();
    let plain = simple_batch(0, timestamp, &records).unwrap();
    let (mut header, records) = decode_batch(&Bytes::from(plain)).unwrap();
    header.attributes = codec_bits;
    encode_batch(&header, &records).unwrap()
}

/// Every record in the log as (offset, key, value), checking batch CRCs and dense batch ranges.
fn read_all(log: &Log) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let bytes = log.read(next, 1 << 20).unwrap();
        for item in BatchIter::new(&bytes) {
            let (header, range) = item.unwrap();
            assert_eq!(header.base_offset, next, "batch offset ranges are dense");
            verify_crc(&bytes[range.clone()]).unwrap();
            let (_, records) = decode_batch(&bytes.slice(range)).unwrap();
            for r in records {
                let offset = header.base_offset + i64::from(r.offset_delta);
                assert!(offset <= header.last_offset());
                let text = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
                out.push((offset, text(r.key).unwrap(), text(r.value)));
            }
            next = header.last_offset() + 1;
        }
    }
    out
}

/// Appends `rounds` updates of keys k0..k9 (value = round), with the given codec.
fn fill(log: &mut Log, rounds: usize, codec_bits: i16, now: i64) {
    for round in 0..rounds {
        let value = round.to_string();
        let records: Vec<(String, Option<&str>)> = (0..10)
            .map(|k| (format!("k{k}"), Some(value.as_str())))
            .collect();
        let records: Vec<(&str, Option<&str>)> =
            records.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        log.append(batch(&records, now, codec_bits).as_mut_slice(), 0)
            .unwrap();
    }
}

#[test]
fn only_the_latest_value_per_key_survives_at_its_original_offset() {
    for codec_bits in [0, 1, 3, 4] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config()).unwrap();
        log.append(&batch(&[("k10", Some("once"))], 10_000, codec_bits), 0)
            .unwrap();
        fill(&mut log, 60, codec_bits, 10_000);
        let before = read_all(&log);
        let end = log.log_end_offset();
        // Keys k0..k9 are overwritten 60 times; k10 is written once, early, and survives.
        let outcome = log
            .compact(10_000)
            .unwrap()
            .expect("there is garbage to remove");
        assert!(outcome.records_after < outcome.records_before);
        assert!(outcome.bytes_after < outcome.bytes_before, "{outcome:?}");
        let after = read_all(&log);
        assert_eq!(log.log_start_offset(), 0);
        assert_eq!(log.log_end_offset(), end);
        // Offsets only grow, every surviving record is one that was written at that offset...
        assert!(after.windows(2).all(|w| w[0].0 < w[1].0));
        for record in &after {
            assert!(
                before.contains(record),
                "{record:?} was never written there"
            );
        }
        // ...and reading it all gives each key's latest value.
        let latest = |records: &[(i64, String, Option<String>)]| {
            records
                .iter()
                .map(|(_, k, v)| (k.clone(), v.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(latest(&after), latest(&before));
        // A second pass finds nothing new to do, and a reopen reads the same records.
        assert!(log.compact(10_000).unwrap().is_none());
        log.close().unwrap();
        let log = Log::open(dir.path(), config()).unwrap();
        assert_eq!(read_all(&log), after);
    }
}

#[test]
fn tombstones_are_kept_until_delete_retention_passes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    fill(&mut log, 10, 0, 0);
    log.append(batch(&[("k3", None)], 5_000, 0).as_mut_slice(), 0)
        .unwrap();
    fill(&mut log, 1, 0, 5_000); // k3 is written again after its tombstone...
    log.append(batch(&[("k4", None)], 5_000, 0).as_mut_slice(), 0)
        .unwrap();
    // ...and enough other data follows to close the segments holding both tombstones.
    for i in 0..40 {
        let key = format!("other{i}");
        log.append(&batch(&[(key.as_str(), Some("x"))], 5_000, 0), 0)
            .unwrap();
    }
    log.compact(5_500).unwrap();
    let keys = |log: &Log| {
        read_all(log)
            .into_iter()
            .map(|(_, k, v)| (k, v))
            .collect::<Vec<_>>()
    };
    assert!(
        keys(&log).contains(&("k4".to_string(), None)),
        "a fresh tombstone stays"
    );
    log.compact(7_000).unwrap();
    let left = keys(&log);
    assert!(
        !left.iter().any(|(k, _)| k == "k4"),
        "an old tombstone goes: {left:?}"
    );
    assert!(left.contains(&("k3".to_string(), Some("0".to_string()))));
}

#[test]
fn an_interrupted_swap_is_completed_when_the_log_opens() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    fill(&mut log, 60, 0, 0);
    let expected_end = log.log_end_offset();
    let compacted = {
        let mut copy = Vec::new();
        log.compact(0).unwrap().expect("compacted");
        copy.extend_from_slice(&std::fs::read(segment_path(dir.path(), 0, "log")).unwrap());
        copy
    };
    log.close().unwrap();
    // Pretend we crashed after the commit point: the swap file exists, the old segment is back.
    let second = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".log").and_then(|b| b.parse::<i64>().ok()))
        .filter(|&b| b > 0)
        .min()
        .unwrap();
    std::fs::write(swap_path(dir.path(), 0, second), &compacted).unwrap();
    std::fs::write(
        segment_path(dir.path(), 0, "log"),
        b"old bytes that must be replaced",
    )
    .unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.log_end_offset(), expected_end);
    assert_eq!(
        std::fs::read(segment_path(dir.path(), 0, "log")).unwrap(),
        compacted
    );
    assert!(!swap_path(dir.path(), 0, second).exists());
}

#[test]
fn idempotent_batches_keep_every_records_sequence() {
    use inlet_protocol::batch::TestBatchBuilder;
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    // Producer 7 writes batches of 10 records with sequences equal to their offsets; "solo" in
    // the first batch is never overwritten, everything else is.
    for n in 0..40 {
        let keys: Vec<String> = (0..10)
            .map(|k| {
                if n == 0 && k == 3 {
                    "solo".to_string()
                } else {
                    format!("k{k}")
                }
            })
            .collect();
        let records: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (k.as_bytes(), &b"v"[..])).collect();
        let mut batch = TestBatchBuilder {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: n * 10,
            ..TestBatchBuilder::default()
        }
        .build(&records);
        log.append(batch.as_mut_slice(), 0).unwrap();
    }
    log.compact(0).unwrap().expect("compacted");
    let bytes = log.read(0, 1 << 20).unwrap();
    let (first, range) = BatchIter::new(&bytes).next().unwrap().unwrap();
    let (_, records) = decode_batch(&bytes.slice(range)).unwrap();
    assert_eq!(records.len(), 1);
    let offset = first.base_offset + i64::from(records[0].offset_delta);
    assert_eq!(offset, 3);
    assert_eq!(
        i64::from(first.base_sequence + records[0].offset_delta),
        offset
    );
    assert_eq!(
        first.last_sequence(),
        9,
        "the batch's last sequence did not move"
    );
    // Everything after it up to the cleaned end is one empty batch; reads stay dense.
    assert_eq!(
        read_all(&log)
            .iter()
            .filter(|(_, k, _)| k == "solo")
            .count(),
        1
    );
}

#[test]
fn a_stored_batch_that_cannot_be_decompressed_stops_compaction_and_changes_nothing() {
    // What older versions stored without walking records: gzip flagged over a plain body (a
    // decompression bomb fails the same way, past the bounded stream's limit).
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    fill(&mut log, 3, 0, 0);
    let mut bad = batch(&[("k0", Some("x"))], 0, 0);
    bad[22] |= 1;
    let crc = inlet_protocol::batch::compute_crc(&bad).unwrap();
    bad[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(log.append(&bad, 0).is_err(), "the record walk refuses it");
    log.append_unwalked(&bad, 0).unwrap();
    fill(&mut log, 40, 0, 0);
    let end = log.log_end_offset();
    let error = log.compact(10_000).unwrap_err();
    assert!(error.to_string().contains("decompress"), "{error}");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, end));
}
