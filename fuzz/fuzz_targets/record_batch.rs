//! Fuzzes the Produce-side validation of record batches (`validate_request`, what `Log::append`
//! runs first) and, when it accepts the bytes, appends them to a real log in a temporary
//! directory, reads them back, checks every stored batch decodes, and reopens the log. Run with
//! `cargo fuzz run record_batch` (on stable: `RUSTC_BOOTSTRAP=1`, see scripts/test.sh).
//!
//! The first input byte picks whether the CRCs are fixed up before validation: random bytes
//! almost never carry a valid CRC-32C, and the record walk behind it is what needs exploring.
#![no_main]

use inlet_protocol::batch::{compute_crc, BatchHeader, BatchIter};
use inlet_protocol::record_walk::RecordWalker;
use inlet_protocol::records::decode_batch;
use inlet_storage::append::validate_request;
use inlet_storage::{Log, LogConfig, StorageError};
use libfuzzer_sys::fuzz_target;

fn fix_crcs(records: &mut [u8]) {
    let ranges: Vec<_> = BatchIter::new(records)
        .filter_map(Result::ok)
        .map(|(_, range)| range)
        .collect();
    for range in ranges {
        if let Ok(crc) = compute_crc(&records[range.clone()]) {
            records[range.start + 17..range.start + 21].copy_from_slice(&crc.to_be_bytes());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut records = rest.to_vec();
    if mode & 1 == 1 {
        fix_crcs(&mut records);
    }
    let config = LogConfig {
        segment_bytes: 1 << 20,
        flush_ms: None,
        message_timestamp_before_max_ms: i64::MAX,
        message_timestamp_after_max_ms: i64::MAX,
        max_decompressed_batch_bytes: 1 << 20,
        ..LogConfig::default()
    };
    let Ok(batches) = validate_request(&records, &config, 0, &mut RecordWalker::new()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut log = Log::open(dir.path(), config.clone()).expect("open an empty log");
    let outcome = match log.append(&records, 5) {
        Ok(outcome) => outcome,
        // Producer-state checks come after validation (a fresh log knows no producer), and so
        // do the transaction rules (a plain batch inside an open transaction; a control batch
        // from a client): a refusal must leave the log empty.
        Err(
            StorageError::OutOfOrderSequence { .. }
            | StorageError::InvalidProducerEpoch { .. }
            | StorageError::InvalidTxnState { .. }
            | StorageError::ControlBatchFromClient { .. },
        ) => {
            assert_eq!(log.log_end_offset(), 0);
            return;
        }
        Err(e) => panic!("a validated request failed to append: {e}"),
    };
    let count: i64 = batches
        .iter()
        .map(|(h, _)| i64::from(h.records_count))
        .sum();
    assert_eq!(outcome.last_offset - outcome.base_offset + 1, count);
    assert_eq!(log.log_end_offset(), count);
    let stored = log.read(0, usize::MAX).expect("read back");
    assert_eq!(stored.len(), records.len());
    let mut next = 0;
    for ((header, range), item) in batches.iter().zip(BatchIter::new(&stored)) {
        let (back, back_range) = item.expect("a stored batch parses");
        assert_eq!(*range, back_range);
        assert_eq!(back.base_offset, next);
        assert_eq!(back.partition_leader_epoch, 5);
        // Everything but the two stamped fields is stored as sent.
        assert_eq!(
            stored[range.start + 8..range.start + 12],
            records[range.start + 8..range.start + 12]
        );
        assert_eq!(
            stored[range.start + 16..range.end],
            records[range.start + 16..range.end]
        );
        let (_, decoded) =
            decode_batch(&stored.slice(range.clone())).expect("a stored batch decodes");
        assert_eq!(decoded.len() as i32, header.records_count);
        next = BatchHeader::parse(&stored[range.clone()])
            .expect("parses")
            .last_offset()
            + 1;
    }
    log.close().expect("close");
    let reopened = Log::open(dir.path(), config).expect("reopen");
    assert_eq!(reopened.log_end_offset(), count);
});
