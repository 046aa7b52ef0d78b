//! librdkafka round trip: 100,000 keyed records with headers, in every compression codec, through
//! idempotent `acks=all` producers into a 6-partition topic, read back by an assign-based consumer
//! and checked field by field against the producers' delivery reports.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use inlet_integration_tests::kafka::{consume_all, create_topic, producer_config};
use inlet_integration_tests::Broker;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

const TOPIC: &str = "round-trip";
const PARTITIONS: i32 = 6;
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
const TOTAL: usize = 100_000;
const PER_CODEC: usize = TOTAL / CODECS.len();

/// What record `index` of `codec` carries; regenerated on the consumer side for comparison.
struct Expected {
    key: Vec<u8>,
    value: Vec<u8>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn expected(codec: &str, index: usize) -> Expected {
    let key = format!("{codec}-{index:06}").into_bytes();
    // 16..=527 bytes of a pattern that differs per record and compresses somewhat.
    let len = 16 + (index * 7919) % 512;
    let value = (0..len)
        .map(|j| b"abcdefghijklmnopqrstuvwxyz0123456789"[(index + j * j) % 36])
        .collect();
    let mut headers = vec![("codec".to_string(), Some(codec.as_bytes().to_vec()))];
    if index % 3 >= 1 {
        headers.push(("index".to_string(), Some(index.to_string().into_bytes())));
    }
    if index % 3 == 2 {
        // A header with a null value, and a repeated key: both legal in Kafka.
        headers.push(("index".to_string(), None));
    }
    Expected {
        key,
        value,
        headers,
    }
}

fn parse_key(key: &[u8]) -> (String, usize) {
    let key = std::str::from_utf8(key).expect("keys are UTF-8");
    let (codec, index) = key.rsplit_once('-').expect("key is codec-index");
    (codec.to_string(), index.parse().expect("index is a number"))
}

/// Produces every record of one codec and returns `(partition, offset)` per record index.
async fn produce_codec(bootstrap: String, codec: &'static str) -> Vec<(i32, i64)> {
    let producer: FutureProducer = producer_config(&bootstrap, codec)
        .create()
        .unwrap_or_else(|e| panic!("create the {codec} producer: {e}"));
    let mut futures = Vec::with_capacity(PER_CODEC);
    for index in 0..PER_CODEC {
        let record = expected(codec, index);
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let future = producer
            .send_result(
                FutureRecord::to(TOPIC)
                    .key(&record.key)
                    .payload(&record.value)
                    .headers(headers),
            )
            .unwrap_or_else(|(e, _)| panic!("enqueue {codec} record {index}: {e}"));
        futures.push(future);
    }
    let mut positions = Vec::with_capacity(PER_CODEC);
    for (index, future) in futures.into_iter().enumerate() {
        let delivery = match future.await {
            Ok(Ok(delivery)) => delivery,
            Ok(Err((e, _))) => panic!("{codec} record {index} was not delivered: {e}"),
            Err(_) => panic!("{codec} record {index}: delivery report channel dropped"),
        };
        positions.push((delivery.partition, delivery.offset));
    }
    positions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_records_in_every_codec_round_trip_intact() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, PARTITIONS).await;

    let started = Instant::now();
    let tasks: Vec<_> = CODECS
        .iter()
        .map(|&codec| (codec, tokio::spawn(produce_codec(bootstrap.clone(), codec))))
        .collect();
    // (codec, index) -> (partition, offset) from the delivery reports.
    let mut acked: HashMap<(String, usize), (i32, i64)> = HashMap::with_capacity(TOTAL);
    for (codec, task) in tasks {
        let positions = task.await.expect("producer task panicked");
        for (index, position) in positions.into_iter().enumerate() {
            acked.insert((codec.to_string(), index), position);
        }
    }
    let produced_in = started.elapsed();
    assert_eq!(acked.len(), TOTAL);

    let consume_bootstrap = bootstrap.clone();
    let records = tokio::task::spawn_blocking(move || {
        consume_all(
            &consume_bootstrap,
            TOPIC,
            PARTITIONS,
            TOTAL,
            Duration::from_secs(120),
        )
    })
    .await
    .expect("consumer task panicked");
    let round_trip = started.elapsed();
    eprintln!(
        "rdkafka round trip of {TOTAL} records (5 codecs, 6 partitions, acks=all, idempotent): \
         {:.2} s (produce {:.2} s, consume {:.2} s)",
        round_trip.as_secs_f64(),
        produced_in.as_secs_f64(),
        (round_trip - produced_in).as_secs_f64()
    );

    // Every acknowledged record, once, at the position its delivery report named, intact.
    let mut seen: HashMap<(String, usize), (i32, i64)> = HashMap::with_capacity(TOTAL);
    let mut offsets_per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for record in &records {
        let key = record.key.as_deref().expect("every record has a key");
        let (codec, index) = parse_key(key);
        let want = expected(&codec, index);
        let name = format!("{codec} record {index}");
        assert_eq!(
            record.value.as_deref(),
            Some(&want.value[..]),
            "value of {name}"
        );
        assert_eq!(record.headers, want.headers, "headers of {name}");
        let position = (record.partition, record.offset);
        assert_eq!(
            acked.get(&(codec.clone(), index)),
            Some(&position),
            "{name}: consumed at (partition, offset) {position:?}, acknowledged elsewhere"
        );
        if let Some(previous) = seen.insert((codec, index), position) {
            panic!("{name} consumed twice: at {previous:?} and {position:?}");
        }
        offsets_per_partition
            .entry(record.partition)
            .or_default()
            .push(record.offset);
    }
    let missing: Vec<_> = acked
        .keys()
        .filter(|k| !seen.contains_key(*k))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {TOTAL} acknowledged records never consumed, e.g. {missing:?}",
        TOTAL - seen.len()
    );
    assert_eq!(records.len(), TOTAL, "records consumed");

    // The keyed partitioner spreads the records over all partitions, whose offsets are dense.
    assert_eq!(
        offsets_per_partition.len(),
        PARTITIONS as usize,
        "partitions with records"
    );
    for (partition, offsets) in &offsets_per_partition {
        let dense: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(
            offsets, &dense,
            "offsets of partition {partition} in consume order"
        );
    }
}
