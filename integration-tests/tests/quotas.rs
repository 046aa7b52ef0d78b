//! Client quotas, set with `inlet quota` (AlterClientQuotas) and enforced as Kafka enforces them:
//! a librdkafka producer and a consumer whose client ids have a 512 KiB/s byte-rate quota move
//! 3 MiB at about that rate (answered with `throttle_time_ms`, their connections paused), while
//! clients with other ids are not slowed. The quota window is shortened (`--quota-window-num 2`)
//! so the test is not dominated by Kafka's 10 s minimum measuring window.

use std::process::Command;
use std::time::{Duration, Instant};

use inlet_integration_tests::cluster::runtime;
use inlet_integration_tests::kafka::{client_config, create_topic};
use inlet_integration_tests::{inlet, inlet_bin, Broker, BrokerOptions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const QUOTA: u64 = 512 * 1024;
const TOTAL: usize = 3 << 20;
const RECORD: usize = 16 * 1024;

/// Produces `TOTAL` bytes as client `client_id`, acks=1, as fast as allowed; returns the time.
fn produce(bootstrap: &str, topic: &str, client_id: &str) -> Duration {
    let producer: FutureProducer = client_config(bootstrap)
        .set("client.id", client_id)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let payload = vec![b'q'; RECORD];
    let started = Instant::now();
    runtime().block_on(async {
        let sends: Vec<_> = (0..TOTAL / RECORD)
            .map(|_| {
                producer
                    .send_result(FutureRecord::<(), _>::to(topic).payload(&payload))
                    .expect("enqueue")
            })
            .collect();
        for send in sends {
            send.await.expect("delivered").expect("acknowledged");
        }
    });
    started.elapsed()
}

/// Reads `TOTAL` bytes of partition 0 from the start as client `client_id`; returns the time.
fn consume(bootstrap: &str, topic: &str, client_id: &str) -> Duration {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("client.id", client_id)
        .set("group.id", client_id)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let started = Instant::now();
    let mut bytes = 0;
    while bytes < TOTAL {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{bytes} bytes read"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                bytes += rdkafka::message::Message::payload(&message).map_or(0, <[u8]>::len)
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => panic!("consumer error: {e}"),
        }
    }
    started.elapsed()
}

#[test]
fn byte_rate_quotas_slow_down_only_their_clients() {
    let broker = Broker::start_with(BrokerOptions {
        extra_args: vec!["--quota-window-num".into(), "2".into()],
        ..BrokerOptions::default()
    });
    let b = broker.bootstrap();
    runtime().block_on(create_topic(&b, "metered", 1));
    let rate = QUOTA.to_string();
    inlet(
        &b,
        &[
            "quota",
            "alter",
            "--client-id",
            "slow-producer",
            "--set",
            &format!("producer_byte_rate={rate}"),
        ],
    );
    inlet(
        &b,
        &[
            "quota",
            "alter",
            "--client-id",
            "slow-consumer",
            "--set",
            &format!("consumer_byte_rate={rate}"),
        ],
    );
    let shown: serde_json::Value =
        serde_json::from_str(&inlet(&b, &["--output", "json", "quota", "describe"])).expect("json");
    assert_eq!(shown.as_array().map(Vec::len), Some(2), "{shown}");

    let fast = produce(&b, "metered", "fast-producer");
    let slow = produce(&b, "metered", "slow-producer");
    let fast_read = consume(&b, "metered", "fast-consumer");
    let slow_read = consume(&b, "metered", "slow-consumer");
    eprintln!(
        "3 MiB: produce {fast:?} unthrottled, {slow:?} at 512 KiB/s; consume {fast_read:?}, {slow_read:?}"
    );
    // At 512 KiB/s, 3 MiB takes 6 s, less the one window a new client may burst into.
    for (what, took) in [("produce", slow), ("consume", slow_read)] {
        assert!(
            took >= Duration::from_secs(3),
            "{what} throttled only to {took:?}"
        );
    }
    assert!(fast * 2 < slow, "the unthrottled producer took {fast:?}");
    assert!(
        fast_read * 2 < slow_read,
        "the unthrottled consumer took {fast_read:?}"
    );

    inlet(
        &b,
        &[
            "quota",
            "alter",
            "--client-id",
            "slow-producer",
            "--delete",
            "producer_byte_rate",
        ],
    );
    let shown: serde_json::Value =
        serde_json::from_str(&inlet(&b, &["--output", "json", "quota", "describe"])).expect("json");
    assert_eq!(shown.as_array().map(Vec::len), Some(1), "{shown}");
    let bad = Command::new(inlet_bin())
        .args([
            "--bootstrap-server",
            &b,
            "quota",
            "alter",
            "--client-id",
            "x",
            "--set",
            "producer_byte_rate=1.5",
        ])
        .output()
        .expect("run inlet");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("INVALID_REQUEST"));
}
