//! Disk full (issue 10, item 7), against the real broker on a small tmpfs the test mounts as its
//! data directory: the broker starts with less free space than one segment's old preallocation,
//! Produce answers KAFKA_STORAGE_ERROR once the disk is full while the broker keeps serving reads,
//! writes resume by themselves when space is freed, every acknowledged record is read back
//! exactly once, and the lake (on the data disk by default) does not take the freed space.
//!
//! Mounting needs root (tests run as root here and in CI); where mounting is not permitted the
//! tests say so and skip.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use inlet_integration_tests::kafka::{
    client_config, consume_all, consumer_config, create_topic, producer_config,
};
use inlet_integration_tests::{Broker, BrokerOptions};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "diskfull";
/// The tmpfs size. Small, so filling it is quick, but room for several 1 MiB segments.
const DISK_MIB: u64 = 32;
/// Free space left when the broker starts: less than the 8 MiB an empty segment used to take.
const FREE_AT_START: u64 = 4 << 20;
/// Record values: large, so the disk fills in a few dozen records.
const VALUE_BYTES: usize = 64 * 1024;

/// A tmpfs of `DISK_MIB` mounted on a temporary directory, unmounted on drop.
struct SmallDisk {
    mount_point: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` (after saying why) when this process may not mount.
    fn mount() -> Option<SmallDisk> {
        let parent = tempfile::Builder::new()
            .prefix("inlet-diskfull-")
            .tempdir()
            .expect("create a temporary directory");
        let mount_point = parent.path().join("disk");
        std::fs::create_dir(&mount_point).expect("create the mount point");
        let size = format!("size={DISK_MIB}m");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(&mount_point)
            .output();
        match output {
            Ok(out) if out.status.success() => Some(SmallDisk {
                mount_point,
                _parent: parent,
            }),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        &self.mount_point
    }

    /// Fills the disk with a filler file, then frees `leave` bytes of it. Returns the filler.
    fn fill_leaving(&self, leave: u64) -> PathBuf {
        let path = (0..)
            .map(|i| self.mount_point.join(format!("filler-{i}")))
            .find(|p| !p.exists())
            .expect("a free filler name");
        let mut file = File::create(&path).expect("create the filler file");
        let chunk = vec![0xa5u8; 1 << 20];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("write the filler file: {e}"),
            }
        }
        file.set_len(written.saturating_sub(leave))
            .expect("shrink the filler file");
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a broker killed a moment ago may still be releasing its files.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mount_point)
            .status();
    }
}

/// A producer that reports the broker's answer instead of retrying it (not idempotent).
fn probe_producer(bootstrap: &str) -> FutureProducer {
    producer_config(bootstrap, "none")
        .set("enable.idempotence", "false")
        .set("retries", "0")
        .set("linger.ms", "0")
        .create()
        .expect("create the probe producer")
}

const GROUP: &str = "diskfull-group";

/// Commits `offset` for partition 0 of [`TOPIC`] in [`GROUP`] (a group with no members).
fn commit_offset(bootstrap: &str, offset: i64) -> Result<(), KafkaError> {
    let consumer: BaseConsumer = consumer_config(bootstrap)
        .set("group.id", GROUP)
        .create()
        .expect("create a consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(TOPIC, 0, Offset::Offset(offset))
        .expect("add a partition");
    consumer.commit(&list, CommitMode::Sync)
}

/// The offset [`GROUP`] committed for partition 0 of [`TOPIC`].
fn committed_offset(bootstrap: &str) -> Option<i64> {
    let consumer: BaseConsumer = consumer_config(bootstrap)
        .set("group.id", GROUP)
        .create()
        .expect("create a consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition(TOPIC, 0);
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("OffsetFetch");
    committed
        .find_partition(TOPIC, 0)
        .and_then(|p| p.offset().to_raw())
}

/// CreateTopics of one single-partition topic: `Err` with the broker's error code.
async fn try_create_topic(bootstrap: &str, topic: &str) -> Result<(), RDKafkaErrorCode> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap)
        .create()
        .expect("create an admin client");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(
            [&NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .unwrap_or_else(|e| panic!("CreateTopics request for {topic}: {e}"));
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(()),
        Some(Err((_, code))) => Err(code),
        None => panic!("no CreateTopics result for {topic}"),
    }
}

fn value(tag: &str, i: usize) -> Vec<u8> {
    let mut v = format!("{tag}-{i:06}-").into_bytes();
    v.resize(VALUE_BYTES, b'a' + (i % 26) as u8);
    v
}

/// Every file under `dir` whose name ends in one of `suffixes`.
fn files_ending_in(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_ending_in(&path, suffixes));
        } else if suffixes.iter().any(|s| path.to_string_lossy().ends_with(s)) {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_writes_cleanly_keeps_reads_and_resumes_when_space_is_freed() {
    let Some(disk) = SmallDisk::mount() else {
        return;
    };
    let filler = disk.fill_leaving(FREE_AT_START);
    let data_dir = disk.path().join("data");
    // (a) The broker starts with less free space than an empty segment used to preallocate.
    let mut broker = Broker::start_with(BrokerOptions {
        data_dir: Some(data_dir.clone()),
        extra_args: vec!["--lake-tier-interval-ms".into(), "100".into()],
        ..BrokerOptions::default()
    });
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, 1).await;

    // (b) Produce until the disk is full: the answer is KAFKA_STORAGE_ERROR, and the broker lives.
    let probe = probe_producer(&bootstrap);
    let mut acked: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        assert!(
            Instant::now() < deadline,
            "the disk never filled: {} records acknowledged",
            acked.len()
        );
        let v = value("before", acked.len());
        let key = format!("k{}", acked.len());
        let sent = probe
            .send(
                FutureRecord::to(TOPIC).key(&key).payload(&v),
                Duration::from_secs(10),
            )
            .await;
        match sent {
            Ok(_) => acked.push(v),
            Err((e, _)) => break e,
        }
    };
    assert_eq!(
        refused,
        KafkaError::MessageProduction(RDKafkaErrorCode::KafkaStorageError),
        "a write on a full disk must get KAFKA_STORAGE_ERROR (56)"
    );
    let before_full = acked.len();
    eprintln!(
        "{before_full} records ({} KiB) acknowledged before the disk filled",
        before_full * VALUE_BYTES / 1024
    );
    assert!(
        before_full * VALUE_BYTES > (2 << 20),
        "only {before_full} records fit"
    );
    assert!(broker.is_running(), "the broker died on a full disk");
    // A crash on the full disk, and a start with no free space at all.
    let topup = disk.fill_leaving(0);
    broker.kill9();
    broker.restart();
    // The start used the metadata log's space reserve (its registration is a write); what is
    // left of it is filled too, so the disk is full again for what follows.
    let reserve_left = disk.fill_leaving(0);
    // Reads keep working on the full disk (Metadata, ListOffsets and Fetch).
    let read = consume_all(&bootstrap, TOPIC, 1, before_full, Duration::from_secs(20));
    let read_values: Vec<Vec<u8>> = read.iter().filter_map(|r| r.value.clone()).collect();
    assert_eq!(
        read_values, acked,
        "every record acknowledged before the disk filled, once, in order"
    );
    // An offset commit on the full disk is not acknowledged (librdkafka retries the
    // coordinator's error); it is once space is freed.
    let commit = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || commit_offset(&bootstrap, 7)
    });
    tokio::pin!(commit);
    let early = tokio::time::timeout(Duration::from_secs(1), &mut commit).await;
    assert!(
        !matches!(early, Ok(Ok(Ok(())))),
        "an offset commit was acknowledged on a full disk"
    );
    // Creating a topic on the full disk fails cleanly and leaves nothing half-made behind.
    let created = try_create_topic(&bootstrap, "later").await;
    assert_eq!(
        created,
        Err(RDKafkaErrorCode::KafkaStorageError),
        "CreateTopics on a disk with no free space"
    );

    // (c) An idempotent acks=all producer sends while the disk is still full: nothing can be
    // acknowledged until space is freed, then everything is, without a restart.
    let producer: FutureProducer = producer_config(&bootstrap, "none")
        .set("message.timeout.ms", "60000")
        .set("retry.backoff.ms", "50")
        .set("retry.backoff.max.ms", "200")
        .create()
        .expect("create the idempotent producer");
    const AFTER: usize = 60;
    let mut pending = Vec::new();
    for i in 0..AFTER {
        let v = value("after", i);
        let key = format!("a{i}");
        let future = producer
            .send_result(FutureRecord::to(TOPIC).key(&key).payload(&v))
            .unwrap_or_else(|(e, _)| panic!("enqueue record {i}: {e}"));
        pending.push((v, future));
    }
    let (_, first) = pending.first_mut().expect("records were sent");
    assert!(
        tokio::time::timeout(Duration::from_secs(1), first)
            .await
            .is_err(),
        "a record was acknowledged on a full disk"
    );
    std::fs::remove_file(&filler).expect("delete the filler file");
    std::fs::remove_file(&topup).expect("delete the second filler file");
    std::fs::remove_file(&reserve_left).expect("delete the third filler file");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    for (i, (v, future)) in pending.into_iter().enumerate() {
        let delivery = tokio::time::timeout_at(deadline, future)
            .await
            .unwrap_or_else(|_| panic!("record {i} not acknowledged 40 s after space was freed"))
            .expect("delivery channel");
        if let Err((e, _)) = delivery {
            panic!("record {i} failed after space was freed: {e}");
        }
        acked.push(v);
    }
    assert!(broker.is_running(), "the broker died");
    // The offset commit goes through (the first one, if librdkafka was still retrying it).
    let committed = match early {
        Ok(done) => done.expect("commit task").is_ok() || commit_offset(&bootstrap, 7).is_ok(),
        Err(_) => tokio::time::timeout(Duration::from_secs(20), commit)
            .await
            .expect("the offset commit did not finish 20 s after space was freed")
            .expect("commit task")
            .is_ok(),
    };
    assert!(committed, "no offset commit after space was freed");
    assert_eq!(committed_offset(&bootstrap), Some(7));
    // The topic refused on the full disk can be created now.
    try_create_topic(&bootstrap, "later")
        .await
        .expect("create the topic refused on the full disk");

    let read = consume_all(&bootstrap, TOPIC, 1, acked.len(), Duration::from_secs(30));
    let mut counts: BTreeMap<&[u8], usize> = BTreeMap::new();
    for r in &read {
        *counts
            .entry(r.value.as_deref().unwrap_or_default())
            .or_default() += 1;
    }
    let missing = acked
        .iter()
        .filter(|v| !counts.contains_key(&v[..]))
        .count();
    let duplicated = counts.values().filter(|&&n| n > 1).count();
    assert_eq!(
        (missing, duplicated, read.len()),
        (0, 0, acked.len()),
        "every acknowledged record read back exactly once"
    );

    // (d) The lake lives on the data disk by default: it did not copy segments into the space
    // producers needed, and it said why.
    let copies = files_ending_in(&data_dir.join("lake"), &[".log", ".parquet"]);
    assert!(
        copies.is_empty(),
        "the lake copied segments onto the nearly full data disk: {copies:?}"
    );
    assert!(
        broker.log().contains("tiering waits"),
        "no log line says tiering waits for disk space"
    );
    broker.terminate();
}

/// Produces `count` records of [`VALUE_BYTES`] with the probe producer; every one must be
/// acknowledged.
async fn produce_all(producer: &FutureProducer, tag: &str, count: usize) {
    for i in 0..count {
        let v = value(tag, i);
        let key = format!("{tag}{i}");
        if let Err((e, _)) = producer
            .send(
                FutureRecord::to(TOPIC).key(&key).payload(&v),
                Duration::from_secs(10),
            )
            .await
        {
            panic!("record {tag} {i} refused: {e}");
        }
    }
}

/// Waits (bounded) until the lake directory holds at least `want` segment copies; returns how
/// many it holds.
fn wait_for_lake_segments(lake: &Path, want: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let n = files_ending_in(lake, &[".log"]).len();
        if n >= want || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Item 7b: the default lake is a directory on the data disk, so tiering copies every closed
/// segment (and a Parquet file) onto the disk producers write to. With room to spare it does;
/// once the disk has less than `lake.min_free_bytes` free it waits, producers keep the space,
/// and it resumes by itself when space comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiering_leaves_the_last_free_space_to_producers() {
    let Some(disk) = SmallDisk::mount() else {
        return;
    };
    let config_dir = tempfile::tempdir().expect("create a config directory");
    let config = config_dir.path().join("inlet.toml");
    std::fs::write(
        &config,
        "[lake]\ntier_interval_ms = 100\nmin_free_bytes = 8388608\n",
    )
    .expect("write the broker config");
    let data_dir = disk.path().join("data");
    let lake = data_dir.join("lake");
    let broker = Broker::start_with(BrokerOptions {
        data_dir: Some(data_dir.clone()),
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..BrokerOptions::default()
    });
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, 1).await;
    let probe = probe_producer(&bootstrap);

    // Plenty of room: three 1 MiB segments close and are tiered.
    produce_all(&probe, "roomy", 56).await;
    let tiered = wait_for_lake_segments(&lake, 3, Duration::from_secs(20));
    assert!(
        tiered >= 3,
        "only {tiered} segments tiered with room to spare"
    );

    // 6 MiB left, under the 8 MiB reserve: 4 MiB of records all fit, and no segment is copied
    // (copies and Parquet files of those four segments would not have left them room).
    let filler = disk.fill_leaving(6 << 20);
    produce_all(&probe, "tight", 64).await;
    let still = wait_for_lake_segments(&lake, tiered + 1, Duration::from_secs(1));
    assert_eq!(
        still, tiered,
        "tiering copied segments into the data disk's last free space"
    );
    assert!(
        broker.log().contains("tiering waits"),
        "no log line says tiering waits for disk space"
    );

    // Space is back: tiering catches up without a restart.
    std::fs::remove_file(&filler).expect("delete the filler file");
    let caught_up = wait_for_lake_segments(&lake, tiered + 3, Duration::from_secs(20));
    assert!(
        caught_up >= tiered + 3,
        "tiering did not resume: {caught_up} segments in the lake"
    );
    assert!(broker.log().contains("tiering resumes"));
}

/// Issue 10 item 7a: one Produce request of two idempotent batches on a disk with room for only
/// one of them stores neither (KAFKA_STORAGE_ERROR), and the producer's retry once space is freed
/// stores each batch exactly once, at consecutive offsets.
#[test]
fn a_request_that_does_not_fit_stores_none_of_its_batches_and_its_retry_stores_each_once() {
    use inlet_integration_tests::raw;
    use inlet_protocol::batch::TestBatchBuilder;
    const KAFKA_STORAGE_ERROR: i16 = 56;
    let Some(disk) = SmallDisk::mount() else {
        return;
    };
    let broker = Broker::start_with(BrokerOptions {
        data_dir: Some(disk.path().join("data")),
        ..BrokerOptions::default()
    });
    let topic = "all-or-nothing";
    tokio::runtime::Runtime::new()
        .expect("a tokio runtime")
        .block_on(create_topic(&broker.bootstrap(), topic, 1));
    // Filled before the partition's first append, so its segment has reserved nothing yet.
    let filler = disk.fill_leaving(VALUE_BYTES as u64 * 3 / 2);
    let batch = |sequence: i32, value: &[u8]| {
        TestBatchBuilder {
            producer_id: 4242,
            producer_epoch: 0,
            base_sequence: sequence,
            base_timestamp: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            ..TestBatchBuilder::default()
        }
        .build(&[(&b"k"[..], value)])
    };
    let (first, second) = (value("first", 0), value("second", 1));
    let request = [batch(0, &first), batch(1, &second)].concat();

    let (code, _) = raw::produce(broker.addr(), topic, &request);
    assert_eq!(code, KAFKA_STORAGE_ERROR, "a request that does not fit");
    std::fs::remove_file(&filler).expect("free the disk");
    let (code, base) = raw::produce(broker.addr(), topic, &request);
    assert_eq!((code, base), (0, 0), "the retry once space is freed");
    let (code, base) = raw::produce(broker.addr(), topic, &request);
    assert_eq!((code, base), (0, 0), "a second retry is a duplicate");

    let records = consume_all(&broker.bootstrap(), topic, 1, 2, Duration::from_secs(20));
    let stored: Vec<(i64, Vec<u8>)> = records
        .into_iter()
        .map(|r| (r.offset, r.value.unwrap_or_default()))
        .collect();
    assert_eq!(stored, vec![(0, first), (1, second)]);
}
