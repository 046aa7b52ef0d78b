//! Issue 10 items 1, 4 (timestamps), 5, 7a and 9 against the real broker: hostile record batches
//! sent as raw Produce requests on a loopback socket are refused with the right Kafka error, a
//! refused request stores nothing, and what was acknowledged reads back (through librdkafka)
//! after a clean restart.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use inlet_integration_tests::kafka::{consume_all, create_topic, create_topic_with};
use inlet_integration_tests::{raw, Broker};
use inlet_protocol::batch::{compute_crc, BatchHeader, TestBatchBuilder, HEADER_LEN};
use inlet_protocol::records::put_varint;

const CORRUPT_MESSAGE: i16 = 2;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_TIMESTAMP: i16 = 32;
const READ_TIMEOUT: Duration = Duration::from_secs(20);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn produce(broker: &Broker, topic: &str, records: &[u8]) -> (i16, i64) {
    raw::produce(broker.addr(), topic, records)
}

/// A valid uncompressed batch of `values`, record timestamps from `timestamp`.
fn batch_at(timestamp: i64, values: &[&str]) -> Vec<u8> {
    let records: Vec<(&[u8], &[u8])> = values.iter().map(|v| (&b""[..], v.as_bytes())).collect();
    TestBatchBuilder {
        base_timestamp: timestamp,
        ..Default::default()
    }
    .build(&records)
}

fn batch(values: &[&str]) -> Vec<u8> {
    batch_at(now_ms(), values)
}

/// Sets the header's recordsCount and lastOffsetDelta and fixes the CRC.
fn claim_records(batch: &mut [u8], count: i32) {
    batch[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    batch[57..61].copy_from_slice(&count.to_be_bytes());
    fix_crc(batch);
}

fn fix_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch).expect("a parsable batch");
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn values(broker: &Broker, topic: &str, at_least: usize) -> Vec<(i64, String)> {
    consume_all(&broker.bootstrap(), topic, 1, at_least, READ_TIMEOUT)
        .into_iter()
        .map(|r| {
            let value = String::from_utf8_lossy(&r.value.unwrap_or_default()).into_owned();
            (r.offset, value)
        })
        .collect()
}

fn expect_values(broker: &Broker, topic: &str, expected: &[String]) {
    let got = values(broker, topic, expected.len());
    let want: Vec<(i64, String)> = expected
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64, v.clone()))
        .collect();
    assert_eq!(got, want, "records of {topic} as a consumer reads them");
}

/// Issue 10 item 1: a batch whose header claims 2^31-1 records while holding one used to be
/// stored and pushed later offsets past 2^31, and recovery then cut acknowledged records.
#[tokio::test]
async fn a_batch_claiming_more_records_than_it_holds_is_refused_and_acknowledged_records_survive_a_restart(
) {
    let mut broker = Broker::start();
    let topic = "offset-overflow";
    create_topic(&broker.bootstrap(), topic, 1).await;
    let mut acknowledged = Vec::new();
    assert_eq!(produce(&broker, topic, &batch(&["a0", "a1", "a2"])).0, 0);
    acknowledged.extend(["a0", "a1", "a2"].map(String::from));

    let mut liar = batch(&["lie"]);
    claim_records(&mut liar, i32::MAX);
    let request = [liar, batch(&["normal"])].concat();
    assert_eq!(
        produce(&broker, topic, &request).0,
        CORRUPT_MESSAGE,
        "a batch holding fewer records than its header claims"
    );
    for i in 0..20 {
        let value = format!("later-{i}");
        let (code, offset) = produce(&broker, topic, &batch(&[&value]));
        assert_eq!((code, offset), (0, 3 + i), "later record {i}");
        acknowledged.push(value);
    }
    assert!(broker.terminate().success(), "clean shutdown");
    broker.restart();
    expect_values(&broker, topic, &acknowledged);
}

/// Issue 10 item 9: a valid CRC over garbage records used to be stored, and librdkafka then
/// stopped at it silently.
#[tokio::test]
async fn a_batch_with_a_valid_crc_over_garbage_records_is_refused() {
    let broker = Broker::start();
    let topic = "garbage-records";
    create_topic(&broker.bootstrap(), topic, 1).await;
    assert_eq!(produce(&broker, topic, &batch(&["first"])).0, 0);
    let mut garbage = batch(&["0123456789abcdef"]);
    for byte in &mut garbage[HEADER_LEN..] {
        *byte = 0xff;
    }
    fix_crc(&mut garbage);
    assert_eq!(produce(&broker, topic, &garbage).0, CORRUPT_MESSAGE);
    assert_eq!(produce(&broker, topic, &batch(&["second"])).0, 0);
    expect_values(&broker, topic, &["first".into(), "second".into()]);
}

/// Status line `VmRSS` of the broker process, in KiB.
fn rss_kib(broker: &Broker) -> u64 {
    let pid = broker.pid().expect("the broker runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read its status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("a VmRSS line")
}

/// A zstd batch of one record whose value is `inflated` zero bytes.
fn zstd_bomb(inflated: usize) -> Vec<u8> {
    let mut record = vec![0u8]; // attributes
    put_varint(&mut record, 0); // timestampDelta
    put_varint(&mut record, 0); // offsetDelta
    put_varint(&mut record, -1); // null key
    put_varint(&mut record, inflated as i64);
    let length = record.len() + inflated + 1; // + the header count after the value
    let mut prefix = Vec::new();
    put_varint(&mut prefix, length as i64);
    prefix.extend_from_slice(&record);
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("a zstd encoder");
    encoder.write_all(&prefix).expect("compress");
    let zeros = vec![0u8; 1 << 20];
    let mut left = inflated;
    while left > 0 {
        let n = left.min(zeros.len());
        encoder.write_all(&zeros[..n]).expect("compress");
        left -= n;
    }
    encoder.write_all(&[0]).expect("compress"); // no headers
    let body = encoder.finish().expect("finish the zstd frame");

    let mut out = batch(&["x"]);
    out.truncate(HEADER_LEN);
    let mut header = BatchHeader::parse_header_only(&out).expect("a header");
    header.attributes |= 4; // zstd
    header.batch_length = (HEADER_LEN - 12 + body.len()) as i32;
    header.write_to(&mut out);
    out.extend_from_slice(&body);
    fix_crc(&mut out);
    out
}

/// Issue 10 item 5: a few KB of zstd inflating far past the bound is refused at Produce without
/// the broker's memory growing, and is never stored.
#[tokio::test]
async fn a_zstd_bomb_is_refused_without_inflating_the_broker() {
    let broker = Broker::start();
    let topic = "zstd-bomb";
    create_topic(&broker.bootstrap(), topic, 1).await;
    let bomb = zstd_bomb(256 << 20);
    assert!(bomb.len() < 64 << 10, "the bomb is {} bytes", bomb.len());
    let before = rss_kib(&broker);
    let (code, _) = produce(&broker, topic, &bomb);
    assert!(
        code == MESSAGE_TOO_LARGE || code == CORRUPT_MESSAGE,
        "a batch inflating to 256 MiB got error {code}"
    );
    let after = rss_kib(&broker);
    eprintln!(
        "zstd bomb of {} bytes (256 MiB inflated): broker VmRSS {before} KiB before, {after} KiB after",
        bomb.len()
    );
    assert!(
        after < before + 64 * 1024,
        "broker RSS grew from {before} KiB to {after} KiB"
    );
    assert_eq!(produce(&broker, topic, &batch(&["after"])).0, 0);
    expect_values(&broker, topic, &["after".into()]);
}

/// Issue 10 items 1 and 7a: one request's batches for a partition are stored all or nothing.
#[tokio::test]
async fn a_request_whose_second_batch_is_bad_stores_nothing() {
    let broker = Broker::start();
    let topic = "all-or-nothing";
    create_topic(&broker.bootstrap(), topic, 1).await;
    // The second batch claims three records (its count and last offset delta agree) and holds two.
    let mut short = batch(&["b0", "b1"]);
    claim_records(&mut short, 3);
    let request = [batch(&["a0"]), short].concat();
    assert_eq!(produce(&broker, topic, &request).0, CORRUPT_MESSAGE);
    let (code, offset) = produce(&broker, topic, &batch(&["c0"]));
    assert_eq!(
        (code, offset),
        (0, 0),
        "the refused request took no offsets"
    );
    expect_values(&broker, topic, &["c0".into()]);
}

/// KIP-937 (issue 10 item 4): record timestamps further than `message.timestamp.before.max.ms`
/// in the past or `message.timestamp.after.max.ms` (default one hour) in the future are refused.
#[tokio::test]
async fn timestamps_outside_the_configured_window_get_invalid_timestamp() {
    let broker = Broker::start();
    let topic = "timestamps";
    let day = 24 * 60 * 60 * 1000;
    create_topic_with(
        &broker.bootstrap(),
        topic,
        1,
        &[("message.timestamp.before.max.ms", &day.to_string())],
    )
    .await;
    let now = now_ms();
    assert_eq!(produce(&broker, topic, &batch_at(now, &["now"])).0, 0);
    assert_eq!(
        produce(&broker, topic, &batch_at(now - 8 * day, &["old"])).0,
        INVALID_TIMESTAMP
    );
    // The fd-exhaustion scenario: each batch 8 days after the previous one rolled a segment.
    for weeks in 1..4 {
        let ts = now + weeks * 8 * day;
        assert_eq!(
            produce(&broker, topic, &batch_at(ts, &["future"])).0,
            INVALID_TIMESTAMP
        );
    }
    assert_eq!(
        produce(
            &broker,
            topic,
            &batch_at(now + 2 * 60 * 60 * 1000, &["in 2 h"])
        )
        .0,
        INVALID_TIMESTAMP
    );
    assert_eq!(
        produce(&broker, topic, &batch_at(now + 60_000, &["in 1 min"])).0,
        0
    );
    expect_values(&broker, topic, &["now".into(), "in 1 min".into()]);
}
