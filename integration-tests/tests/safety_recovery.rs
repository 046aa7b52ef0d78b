//! Issue 10, items 2, 8 and the descriptor half of 4, against the real binary: a damaged closed
//! segment costs only its damaged bytes (never the segments after it), an index rewritten with
//! wrong positions is not trusted, and thousands of closed segments do not exhaust a low
//! `ulimit -n`, at run time or at restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inlet_integration_tests::kafka::{
    consume_all, consumer_config, create_topic, create_topic_with, producer_config,
};
use inlet_integration_tests::{free_port, Broker, BrokerOptions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Produces `values` to partition 0 of `topic`, one record per batch, and returns the offset
/// each was acknowledged at. With `first_timestamp`, record `i` gets timestamp
/// `first_timestamp + 10 * i` (ms) instead of its creation time.
async fn produce_one_per_batch(
    bootstrap: &str,
    topic: &str,
    values: &[String],
    first_timestamp: Option<i64>,
) -> Vec<i64> {
    let producer: FutureProducer = producer_config(bootstrap, "none")
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .create()
        .expect("create an rdkafka producer");
    let mut pending = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let mut record = FutureRecord::<(), _>::to(topic).partition(0).payload(value);
        if let Some(first) = first_timestamp {
            record = record.timestamp(first + 10 * i as i64);
        }
        let future = producer
            .send_result(record)
            .unwrap_or_else(|(e, _)| panic!("enqueue {value}: {e}"));
        pending.push(future);
    }
    let mut offsets = Vec::with_capacity(values.len());
    for (future, value) in pending.into_iter().zip(values) {
        let delivery = future
            .await
            .expect("delivery report channel dropped")
            .unwrap_or_else(|(e, _)| panic!("{value} not delivered: {e}"));
        offsets.push(delivery.offset);
    }
    offsets
}

/// The directory of partition 0 of `topic` under the broker's data directory.
fn partition_dir(data_dir: &Path, topic: &str) -> PathBuf {
    data_dir.join("topics").join(topic).join("0")
}

/// Options for these tests: no lake, so every read is served by the local log under test.
fn options() -> BrokerOptions {
    BrokerOptions {
        extra_args: vec!["--lake-enable".into(), "false".into()],
        ..BrokerOptions::default()
    }
}

/// Base offsets of the `.log` segment files in `dir`, sorted.
fn segment_bases(dir: &Path) -> Vec<i64> {
    let mut bases: Vec<i64> = std::fs::read_dir(dir)
        .expect("list the partition directory")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    bases
}

fn segment_file(dir: &Path, base: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

/// (position, base offset) of every batch in a segment file: a v2 batch is the 8-byte base
/// offset, the 4-byte length of the rest, then the rest.
fn batch_starts(log: &[u8]) -> Vec<(usize, i64)> {
    let mut starts = Vec::new();
    let mut at = 0;
    while at + 12 <= log.len() {
        let base = i64::from_be_bytes(log[at..at + 8].try_into().expect("8 bytes"));
        let len = i32::from_be_bytes(log[at + 8..at + 12].try_into().expect("4 bytes"));
        starts.push((at, base));
        at += 12 + usize::try_from(len).expect("a stored batch length is positive");
    }
    starts
}

/// Records of partition 0 of `topic` from `offset` on, until `count` arrived or the end of the
/// partition was seen after at least one record, within a deadline. Consumer errors other than
/// end-of-partition are returned too, so a test can show them.
fn consume_from(
    bootstrap: &str,
    topic: &str,
    offset: i64,
    count: usize,
) -> (Vec<(i64, String)>, Vec<String>) {
    let consumer: BaseConsumer = consumer_config(bootstrap)
        .create()
        .expect("create an rdkafka consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(offset))
        .expect("add the partition to the assignment");
    consumer.assign(&assignment).expect("assign the partition");
    let (mut records, mut errors) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && records.len() < count {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) if !records.is_empty() => break,
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => errors.push(e.to_string()),
            Some(Ok(m)) => records.push((
                m.offset(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            )),
        }
    }
    (records, errors)
}

/// The body of `GET /metrics`.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: inlet\r\n\r\n")
        .expect("send the metrics request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read metrics");
    response
}

/// Item 2: one byte changed in the length of the last batch of the oldest closed segment, then a
/// clean restart. The four-plus healthy later segments and the damaged segment's valid prefix
/// are all still readable; the log names the damage and the metric counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_oldest_segment_costs_only_its_damaged_batch() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut broker = Broker::start_with(BrokerOptions {
        segment_bytes: Some(4096),
        extra_args: [
            &options().extra_args[..],
            &["--metrics-listen".into(), metrics.clone()],
        ]
        .concat(),
        ..options()
    });
    let bootstrap = broker.bootstrap();
    let topic = "damaged-segment";
    create_topic(&bootstrap, topic, 1).await;
    let values: Vec<String> = (0..600).map(|i| format!("record {i:04}")).collect();
    let offsets = produce_one_per_batch(&bootstrap, topic, &values, None).await;
    assert_eq!(offsets, (0..600).collect::<Vec<i64>>());
    assert!(broker.terminate().success(), "clean shutdown");

    let dir = partition_dir(broker.data_dir(), topic);
    let bases = segment_bases(&dir);
    assert!(bases.len() >= 6, "at least 5 closed segments: {bases:?}");
    let oldest = segment_file(&dir, bases[0], "log");
    let mut data = std::fs::read(&oldest).expect("read the oldest segment");
    let (last_batch, lost_offset) = *batch_starts(&data).last().expect("a batch");
    data[last_batch + 11] ^= 0x01; // low byte of the batch length
    std::fs::write(&oldest, &data).expect("damage the oldest segment");

    broker.restart();
    let records = tokio::task::spawn_blocking({
        let (bootstrap, topic) = (bootstrap.clone(), topic.to_string());
        move || consume_all(&bootstrap, &topic, 1, 599, TIMEOUT)
    })
    .await
    .expect("consumer task");
    let read: Vec<(i64, Vec<u8>)> = records
        .into_iter()
        .map(|r| (r.offset, r.value.unwrap_or_default()))
        .collect();
    let expected: Vec<(i64, Vec<u8>)> = (0..600)
        .filter(|&o| o != lost_offset)
        .map(|o| (o, values[o as usize].clone().into_bytes()))
        .collect();
    assert_eq!(
        read.len(),
        expected.len(),
        "records readable after the restart (only offset {lost_offset} was damaged)"
    );
    assert_eq!(read, expected);

    let log = broker.log();
    assert!(
        log.contains("damaged closed segment"),
        "the broker log names the damage"
    );
    assert!(
        oldest.with_extension("log.corrupt").exists(),
        "original set aside"
    );
    let body = scrape(&metrics);
    assert!(
        body.lines()
            .any(|l| l == "inlet_log_recovery_damaged_segments_total 1"),
        "metric counts one damaged segment:\n{body}"
    );
}

/// Item 8: a closed segment's `.index` rewritten with increasing, in-range but wrong positions is
/// rebuilt on restart; fetching from offsets all through that segment works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_with_wrong_positions_is_not_trusted() {
    let mut broker = Broker::start_with(BrokerOptions {
        segment_bytes: Some(32 * 1024),
        ..options()
    });
    let bootstrap = broker.bootstrap();
    let topic = "wrong-index";
    create_topic(&bootstrap, topic, 1).await;
    let values: Vec<String> = (0..900)
        .map(|i| format!("value {i:04} {}", "y".repeat(40)))
        .collect();
    produce_one_per_batch(&bootstrap, topic, &values, None).await;
    assert!(broker.terminate().success(), "clean shutdown");

    let dir = partition_dir(broker.data_dir(), topic);
    let bases = segment_bases(&dir);
    assert!(bases.len() >= 2, "a closed segment: {bases:?}");
    let index = segment_file(&dir, bases[0], "index");
    let mut entries = std::fs::read(&index).expect("read the index");
    assert!(entries.len() >= 16, "the closed segment has index entries");
    // Every entry but the last moves 9 bytes on: still increasing and inside the file, and the
    // last entry (the one a tail check would read) stays right.
    let last = entries.len() - 8;
    for entry in entries[..last].chunks_mut(8) {
        let position = u32::from_be_bytes(entry[4..8].try_into().expect("4 bytes")) + 9;
        entry[4..8].copy_from_slice(&position.to_be_bytes());
    }
    std::fs::write(&index, &entries).expect("rewrite the index");
    let segment_end = bases[1];

    broker.restart();
    for from in [
        segment_end / 4,
        segment_end / 2,
        3 * segment_end / 4,
        segment_end - 3,
    ] {
        let (bootstrap, topic) = (bootstrap.clone(), topic.to_string());
        let (records, errors) =
            tokio::task::spawn_blocking(move || consume_from(&bootstrap, &topic, from, 5))
                .await
                .expect("consumer task");
        let expected: Vec<(i64, String)> = (from..from + 5)
            .map(|o| (o, values[o as usize].clone()))
            .collect();
        assert_eq!(
            records.into_iter().take(5).collect::<Vec<_>>(),
            expected,
            "fetch from offset {from}; consumer errors: {errors:?}"
        );
    }
}

/// Item 4 (descriptors): a segment per batch under `ulimit -n 256`. Closed segments must not
/// keep files open: producing keeps working past the limit, and the broker restarts with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_closed_segments_fit_a_low_open_files_limit() {
    let mut broker = Broker::start_with(BrokerOptions {
        open_files_limit: Some(256),
        ..options()
    });
    let bootstrap = broker.bootstrap();
    let topic = "many-segments";
    // A segment per batch: each one is older than `segment.ms` by the next batch's timestamp.
    create_topic_with(&bootstrap, topic, 1, &[("segment.ms", "1")]).await;
    let values: Vec<String> = (0..400).map(|i| format!("r{i}")).collect();
    // Distinct timestamps in the recent past (a broker may refuse future ones).
    let ten_minutes_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
        - 600_000;
    let offsets = produce_one_per_batch(&bootstrap, topic, &values, Some(ten_minutes_ago)).await;
    assert_eq!(offsets.len(), 400);
    let dir = partition_dir(broker.data_dir(), topic);
    assert!(
        segment_bases(&dir).len() >= 390,
        "a segment per batch, more than the open-files limit"
    );

    assert!(broker.terminate().success(), "clean shutdown");
    broker.restart();
    let records = tokio::task::spawn_blocking({
        let (bootstrap, topic) = (bootstrap.clone(), topic.to_string());
        move || consume_all(&bootstrap, &topic, 1, 400, TIMEOUT)
    })
    .await
    .expect("consumer task");
    let read: Vec<Vec<u8>> = records
        .into_iter()
        .map(|r| r.value.unwrap_or_default())
        .collect();
    let expected: Vec<Vec<u8>> = values.iter().map(|v| v.clone().into_bytes()).collect();
    assert_eq!(read, expected);
    // And producing still works after the restart.
    let more = produce_one_per_batch(&bootstrap, topic, &["after restart".to_string()], None).await;
    assert_eq!(more, vec![400]);
    assert!(!broker.log().contains("Too many open files"));
}
