//! Tiering to the lake with a real broker and librdkafka: closed segments reach the local lake
//! directory with a manifest and a Parquet file each, local segments past `local.retention.bytes`
//! disappear, and a consumer from offset 0 still reads every record byte for byte, now served
//! from the lake. A crash between an upload and its manifest update loses and duplicates nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inlet_integration_tests::kafka::{
    consume_all, consumer_config, create_topic_with, producer_config, ConsumedRecord,
};
use inlet_integration_tests::{free_port, Broker, BrokerOptions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 2;
/// Small segments so a few thousand records roll many of them.
const TOPIC_CONFIGS: &[(&str, &str)] =
    &[("segment.bytes", "16384"), ("local.retention.bytes", "0")];

/// The body of `GET /metrics`.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: inlet\r\n\r\n")
        .expect("send the metrics request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read metrics");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of an unlabelled metric.
fn metric(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
}

/// Produces `count` records (acks=all, zstd, one header each) and returns them as a consumer
/// must read them back, in acknowledgement order.
async fn produce(bootstrap: &str, topic: &str, count: usize) -> Vec<ConsumedRecord> {
    // Batches must fit the small segments.
    let producer: FutureProducer = producer_config(bootstrap, "zstd")
        .set("batch.size", "4096")
        .create()
        .expect("create an rdkafka producer");
    let mut pending = Vec::with_capacity(count);
    for i in 0..count {
        let key = format!("key-{i}").into_bytes();
        let value = format!("value {i} {}", noise(i, i % 300)).into_bytes();
        let headers = OwnedHeaders::new().insert(Header {
            key: "n",
            value: Some(&i.to_string()),
        });
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&value)
            .headers(headers);
        let future = producer
            .send_result(record)
            .unwrap_or_else(|(e, _)| panic!("enqueue record {i}: {e}"));
        pending.push((key, value, i, future));
    }
    let mut acked = Vec::with_capacity(count);
    for (key, value, i, future) in pending {
        let delivery = future
            .await
            .expect("delivery channel")
            .unwrap_or_else(|(e, _)| panic!("record {i} not delivered: {e}"));
        acked.push(ConsumedRecord {
            partition: delivery.partition,
            offset: delivery.offset,
            key: Some(key),
            value: Some(value),
            headers: vec![("n".to_string(), Some(i.to_string().into_bytes()))],
        });
    }
    acked
}

/// `len` hex digits that compression cannot shrink much, so records fill segments.
fn noise(seed: usize, len: usize) -> String {
    let mut x = seed as u64 ^ 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_digit((x % 16) as u32, 16).unwrap_or('0')
        })
        .collect()
}

fn sorted(mut records: Vec<ConsumedRecord>) -> Vec<ConsumedRecord> {
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

async fn consume_everything(bootstrap: &str, topic: &str, expected: usize) -> Vec<ConsumedRecord> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    let records = tokio::task::spawn_blocking(move || {
        consume_all(
            &bootstrap,
            &topic,
            PARTITIONS,
            expected,
            Duration::from_secs(60),
        )
    })
    .await
    .expect("consumer thread");
    sorted(records)
}

/// The manifest's segments as `(base_offset, last_offset)`, empty if there is no manifest.
fn manifest_segments(lake: &Path, topic: &str, partition: i32) -> Vec<(i64, i64)> {
    let path = lake
        .join(topic)
        .join(partition.to_string())
        .join("manifest.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    manifest["segments"]
        .as_array()
        .expect("segments array")
        .iter()
        .map(|s| {
            (
                s["base_offset"].as_i64().expect("base_offset"),
                s["last_offset"].as_i64().expect("last_offset"),
            )
        })
        .collect()
}

fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == ext))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Waits until, in every partition, the lake holds everything below the local active segment
/// and nothing but that active segment is left locally.
fn wait_until_tiered(broker: &Broker, topic: &str) {
    let lake = broker.data_dir().join("lake");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = (0..PARTITIONS).all(|p| {
            let local = files_with_extension(
                &broker
                    .data_dir()
                    .join("topics")
                    .join(topic)
                    .join(p.to_string()),
                "log",
            );
            let segments = manifest_segments(&lake, topic, p);
            let active_base = local
                .first()
                .and_then(|f| f.file_stem()?.to_str()?.parse::<i64>().ok());
            local.len() == 1
                && segments.last().map(|s| s.1 + 1) == active_base
                && segments.first().map(|s| s.0) == Some(0)
        });
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "tiering did not finish within 60 s; log:\n{}",
            broker.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The lake of every partition: segments contiguous from 0, one `.log`, `.index`,
/// `.timeindex` and Parquet file per manifest segment and no other segment file.
fn assert_lake_is_exact(lake: &Path, topic: &str) {
    for p in 0..PARTITIONS {
        let segments = manifest_segments(lake, topic, p);
        assert!(segments.len() >= 2, "partition {p}: {segments:?}");
        for pair in segments.windows(2) {
            assert_eq!(pair[0].1 + 1, pair[1].0, "partition {p}: {segments:?}");
        }
        let name = |(b, l): (i64, i64), ext: &str| format!("{b:020}-{l:020}.{ext}");
        let dirs = [
            (
                lake.join(topic).join(p.to_string()),
                vec!["log", "index", "timeindex"],
            ),
            (
                lake.join("tables")
                    .join(topic)
                    .join(format!("partition={p}")),
                vec!["parquet"],
            ),
        ];
        for (dir, exts) in dirs {
            for ext in exts {
                let found: Vec<String> = files_with_extension(&dir, ext)
                    .iter()
                    .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
                    .collect();
                let expected: Vec<String> = segments.iter().map(|s| name(*s, ext)).collect();
                assert_eq!(found, expected, "{ext} objects of partition {p}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_moves_to_the_lake_and_stays_readable_from_offset_zero() {
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let broker = Broker::start_with(BrokerOptions {
        extra_args: [
            "--lake-tier-interval-ms",
            "200",
            "--metrics-listen",
            &metrics_addr,
        ]
        .map(String::from)
        .to_vec(),
        ..BrokerOptions::default()
    });
    let bootstrap = broker.bootstrap();
    let topic = "tiered";
    create_topic_with(&bootstrap, topic, PARTITIONS, TOPIC_CONFIGS).await;
    let produced = sorted(produce(&bootstrap, topic, 3000).await);
    wait_until_tiered(&broker, topic);
    assert_lake_is_exact(&broker.data_dir().join("lake"), topic);

    let before = scrape(&metrics_addr);
    let consumed = consume_everything(&bootstrap, topic, produced.len()).await;
    assert_eq!(consumed.len(), produced.len());
    let after = scrape(&metrics_addr);
    assert!(metric(&before, "inlet_lake_segments_tiered_total") >= 4);
    assert!(metric(&before, "inlet_lake_bytes_tiered_total") > 0);
    assert_eq!(metric(&before, "inlet_lake_tiering_failures_total"), 0);
    assert!(
        metric(&after, "inlet_lake_bytes_read_total")
            > metric(&before, "inlet_lake_bytes_read_total"),
        "the consumer's old offsets were served from the lake"
    );
    assert!(after.contains(&format!(
        "inlet_partition_log_start_offset{{topic=\"{topic}\",partition=\"0\"}} 0"
    )));
    assert!(
        consumed == produced,
        "every record comes back byte-identical from the lake"
    );

    // The earliest offset clients see is the lake's, and timestamps resolve into the lake.
    let consumer: BaseConsumer = consumer_config(&bootstrap).create().expect("consumer");
    for p in 0..PARTITIONS {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(5))
            .expect("watermarks");
        assert_eq!(low, 0, "partition {p} starts at the lake's first offset");
        assert_eq!(
            high,
            produced.iter().filter(|r| r.partition == p).count() as i64
        );
    }
    let mut by_time = TopicPartitionList::new();
    by_time
        .add_partition_offset(topic, 0, Offset::Offset(0))
        .expect("add partition");
    let found = consumer
        .offsets_for_times(by_time, Duration::from_secs(5))
        .expect("offsets for times");
    let offset = found.elements()[0].offset();
    assert_eq!(
        offset,
        Offset::Offset(0),
        "timestamp 0 resolves to offset 0 in the lake"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_upload_and_manifest_loses_and_duplicates_nothing() {
    let fault = (
        "INLET_FAULT_CRASH_BEFORE_MANIFEST".to_string(),
        "1".to_string(),
    );
    let mut broker = Broker::start_with(BrokerOptions {
        // Long enough that producing finishes before the first tiering pass finds a segment.
        extra_args: vec!["--lake-tier-interval-ms".into(), "3000".into()],
        env: vec![fault],
        ..BrokerOptions::default()
    });
    let bootstrap = broker.bootstrap();
    let topic = "crashy";
    create_topic_with(&bootstrap, topic, PARTITIONS, TOPIC_CONFIGS).await;
    let produced = sorted(produce(&bootstrap, topic, 1500).await);

    let deadline = Instant::now() + Duration::from_secs(30);
    while broker.is_running() {
        assert!(
            Instant::now() < deadline,
            "the fault did not fire:\n{}",
            broker.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let lake = broker.data_dir().join("lake");
    let uncommitted: usize = (0..PARTITIONS)
        .map(|p| files_with_extension(&lake.join(topic).join(p.to_string()), "log").len())
        .sum();
    assert_eq!(uncommitted, 1, "one segment was uploaded before the crash");
    assert!((0..PARTITIONS).all(|p| manifest_segments(&lake, topic, p).is_empty()));

    broker.options_mut().env.clear();
    broker.options_mut().extra_args = vec!["--lake-tier-interval-ms".into(), "200".into()];
    broker.restart();
    wait_until_tiered(&broker, topic);
    assert_lake_is_exact(&lake, topic);
    let consumed = consume_everything(&bootstrap, topic, produced.len()).await;
    assert!(
        consumed == produced,
        "nothing lost or duplicated across the crash"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_lake_turned_off_clients_are_given_the_local_start() {
    let mut broker = Broker::start_with(BrokerOptions {
        extra_args: vec!["--lake-tier-interval-ms".into(), "200".into()],
        ..BrokerOptions::default()
    });
    let bootstrap = broker.bootstrap();
    let topic = "lake-off";
    create_topic_with(&bootstrap, topic, PARTITIONS, TOPIC_CONFIGS).await;
    let produced = sorted(produce(&bootstrap, topic, 1500).await);
    wait_until_tiered(&broker, topic);
    broker.terminate();
    broker.options_mut().extra_args = vec!["--lake-enable".into(), "false".into()];
    broker.restart();

    let consumer: BaseConsumer = consumer_config(&bootstrap).create().expect("consumer");
    let mut local_starts = Vec::new();
    for p in 0..PARTITIONS {
        let (low, _) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(5))
            .expect("watermarks");
        assert!(low > 0, "partition {p}: the lake's offsets are not offered");
        local_starts.push(low);
    }
    // A consumer from the beginning reads exactly the local records, without errors.
    let expected: Vec<ConsumedRecord> = produced
        .into_iter()
        .filter(|r| r.offset >= local_starts[r.partition as usize])
        .collect();
    let consumed = consume_everything(&bootstrap, topic, expected.len()).await;
    assert!(
        consumed == expected,
        "the local records, from the local start"
    );
}
