//! Replication across a network partition that isolates a leader, checked like the other
//! replication scenarios (`replication.rs`, [`history`]).
//!
//! Three brokers whose traffic to each other (Kafka and controller) goes through cuttable TCP
//! proxies ([`netsplit`]), a topic with replication factor 3 and `min.insync.replicas=2`, an
//! idempotent acks=all librdkafka producer and a consumer-group member running throughout. The
//! leader of partition 0 is cut off from the other two nodes, both directions, for longer than
//! the broker session timeout, while it keeps running. The producer and the consumer connect
//! through the proxies too, so they are with the majority:
//! - the other two elect a new leader and go on acknowledging writes;
//! - the old leader, which cannot hear of that, must not acknowledge an acks=all write (its
//!   in-sync followers cannot confirm it): a write sent straight to its listener (a client
//!   the split does not cut off from it) is refused or times out, and is lost on healing; a
//!   producer bootstrapped from that listener starts from the old leader's stale metadata and
//!   must find the new leader, losing nothing it was told is acknowledged;
//! - when the partition heals, the old leader truncates the tail only it has and rejoins the ISR.
//!
//! Afterwards, as after the other faults: every acknowledged record once, at its acknowledged
//! offset, in send order; nothing a consumer was served is lost; the replicas byte-identical up
//! to the high watermark.

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use inlet_integration_tests::cluster::{runtime, wait_for, SESSION_TIMEOUT_MS};
use inlet_integration_tests::history::{
    acked_count, bootstrap, check_acknowledged, check_replicas_identical, node, placement,
    record_ack, wait_acked, wait_all_in_sync, Acked, History, Recorded, StderrLog, STREAM,
};
use inlet_integration_tests::kafka::producer_config;
use inlet_integration_tests::netsplit;
use inlet_integration_tests::proxy::Peer;
use inlet_integration_tests::raw;
use kafka_protocol::ResponseError;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::producer::{FutureProducer, FutureRecord};

const TOPIC: &str = "netsplit";
const PARTITIONS: i32 = 3;
/// Short, so that followers cut off from a leader leave its ISR within the test's waits.
const LAG_MS: &str = "2000";
/// How long the probe write sent straight to the isolated leader may wait for its ISR.
const PROBE_TIMEOUT_MS: i32 = 3000;
/// The probe's value: a number, as the history checker wants, that the producer never sends.
const PROBE_VALUE: u64 = u64::MAX;

/// One plain (non-idempotent) record batch holding `value`.
fn probe_batch(value: u64) -> Vec<u8> {
    raw::plain_batch(None, Bytes::from(value.to_string()), 0).to_vec()
}

/// How many records the producer bootstrapped from the old leader sends.
const STRANDED: u64 = 300;

/// What a one-shot producer acknowledged: ((partition, offset), sequence number) and when,
/// and how many records it could not get acknowledged.
type Outcome = (Vec<((i32, i64), u64, Instant)>, u64);

/// Sends `count` records numbered from [`STREAM`] to partition 0 with an idempotent acks=all
/// producer bootstrapped from `bootstrap` alone, and waits (at most its 30 s message timeout)
/// for every answer.
fn produce_once(bootstrap: String, count: u64) -> thread::JoinHandle<Outcome> {
    thread::spawn(move || {
        let producer: FutureProducer<StderrLog> = producer_config(&bootstrap, "none")
            .set("message.timeout.ms", "30000")
            .set("request.timeout.ms", "5000")
            .set_log_level(RDKafkaLogLevel::Warning)
            .create_with_context(StderrLog)
            .expect("producer");
        let pending: Vec<_> = (STREAM..STREAM + count)
            .map(|seq| {
                let value = seq.to_string();
                let record = FutureRecord::<(), _>::to(TOPIC)
                    .payload(&value)
                    .partition(0);
                let future = producer
                    .send_result(record)
                    .unwrap_or_else(|(error, _)| panic!("enqueue {seq}: {error}"));
                (seq, future)
            })
            .collect();
        let mut acked = Vec::new();
        let mut failed = 0;
        runtime().block_on(async {
            for (seq, future) in pending {
                match future.await {
                    Ok(Ok(delivery)) => {
                        acked.push(((delivery.partition, delivery.offset), seq, Instant::now()))
                    }
                    _ => failed += 1,
                }
            }
        });
        (acked, failed)
    })
}

/// `text` without the terminal colour codes (`ESC [ ... m`) the broker's log is written with.
fn without_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Records acknowledged in `partition` so far.
fn acked_in(acked: &Acked, partition: i32) -> usize {
    acked
        .lock()
        .unwrap()
        .range((partition, 0)..(partition, i64::MAX))
        .count()
}

#[test]
fn an_isolated_leader_acknowledges_nothing_and_rejoins_after_the_partition_heals() {
    // Each step's time since the start, for reading a slow or failed run.
    let clock = Instant::now();
    let say = |what: String| eprintln!("[{:>5.1}s] {what}", clock.elapsed().as_secs_f64());
    let (mut nodes, net) = netsplit::start_cluster_with(&["--replica-lag-time-max-ms", LAG_MS]);
    let all = bootstrap(&nodes);
    // The clients that run throughout connect through the proxies: a split puts them with the
    // majority.
    let proxied = net.bootstrap();
    let history = History::on_replicated_topic(
        &nodes[0],
        &all,
        &proxied,
        TOPIC,
        PARTITIONS,
        "netsplit-history",
    );
    let acked = &history.acked;
    wait_acked(acked, 3_000);
    say("3000 records acknowledged".into());

    // The proxies know who is who: every follower's fetch connection is attributed to its node,
    // so the split below cuts it.
    let leaders: BTreeSet<i32> = placement(&nodes[0], TOPIC)
        .expect("placement")
        .values()
        .map(|(leader, _)| *leader)
        .collect();
    let expected: BTreeSet<(i32, i32)> = leaders
        .iter()
        .flat_map(|to| {
            (1..=3)
                .filter(move |from| from != to)
                .map(move |from| (from, *to))
        })
        .collect();
    let (fetchers, _) = wait_for("the followers' connections attributed to them", || {
        let connections = net.kafka_connections();
        let fetchers: BTreeSet<(i32, i32)> = connections
            .iter()
            .filter_map(|(from, to)| match from {
                Peer::Node(node) if node != to => Some((*node, *to)),
                _ => None,
            })
            .collect();
        let unknown = connections.iter().any(|(from, _)| *from == Peer::Unknown);
        (!unknown && fetchers.is_superset(&expected)).then_some(fetchers)
    });
    say(format!("follower connections (from, to): {fetchers:?}"));

    // Cut the leader of partition 0 off from the other two nodes.
    let leader = placement(&nodes[0], TOPIC).expect("placement")[&0].0;
    let majority: Vec<i32> = (1..=3).filter(|id| *id != leader).collect();
    let via = (majority[0] - 1) as usize;
    let acked_before = acked_in(acked, 0);
    let started = Instant::now();
    net.isolate(leader);
    let (new_leader, _) = wait_for("the majority to elect a new leader for partition 0", || {
        let now = placement(&nodes[via], TOPIC)?[&0].0;
        (now > 0 && now != leader).then_some(now)
    });
    say(format!(
        "partition 0: node {leader} isolated, node {new_leader} leads after {:?}",
        started.elapsed()
    ));

    // A producer bootstrapped from the old leader's own listener (which the split does not cut
    // it off from), so its first metadata is the old leader's stale view: whatever it gets
    // acknowledged, during the split or after, must be in the log.
    let stranded = produce_once(node(&mut nodes, leader).bootstrap(), STRANDED);

    // Two nodes may now believe they lead partition 0; the isolated one must not acknowledge
    // an acks=all write, which only its unreachable followers could confirm.
    let (code, offset) = raw::produce_to(
        node(&mut nodes, leader).addr(),
        TOPIC,
        0,
        &probe_batch(PROBE_VALUE),
        PROBE_TIMEOUT_MS,
    );
    assert_ne!(
        code, 0,
        "the isolated old leader {leader} acknowledged an acks=all write at offset {offset}"
    );
    let probe_error = ResponseError::try_from_code(code);
    say(format!(
        "the isolated leader answered an acks=all write with {probe_error:?}"
    ));
    // Appended to its log, then not confirmed: a tail only the old leader has.
    let diverged = matches!(
        probe_error,
        Some(ResponseError::RequestTimedOut | ResponseError::NotEnoughReplicasAfterAppend)
    );

    // The majority goes on acknowledging writes, partition 0's included.
    wait_for(
        "partition 0 acknowledging writes under its new leader",
        || (acked_in(acked, 0) >= acked_before + 500).then_some(()),
    );
    let before = acked_count(acked);
    wait_acked(acked, before + 1_000);
    // Split for longer than the broker session timeout (the old leader is fenced meanwhile).
    let split_for = Duration::from_millis(2 * SESSION_TIMEOUT_MS);
    if let Some(rest) = split_for.checked_sub(started.elapsed()) {
        thread::sleep(rest);
    }
    assert!(net.cut_count() > 0, "the split cut no connection");
    say(format!(
        "healing after {:?}; {} connections cut or refused",
        started.elapsed(),
        net.cut_count()
    ));

    // Healed: the old leader follows again, truncates what only it had, and rejoins the ISR.
    net.heal();
    let healed = Instant::now();
    wait_all_in_sync(&nodes[via], TOPIC, PARTITIONS);
    say(format!(
        "node {leader} back in every ISR after {:?}",
        healed.elapsed()
    ));
    let before = acked_count(acked);
    wait_acked(acked, before + 1_000);

    let (stranded_acked, stranded_failed) = stranded.join().expect("stranded producer");
    let during_split = stranded_acked
        .iter()
        .filter(|(_, _, at)| *at < healed)
        .count();
    say(format!(
        "the producer bootstrapped from node {leader}: {} acknowledged ({during_split} during \
         the split), {stranded_failed} not",
        stranded_acked.len()
    ));
    for (place, seq, _) in stranded_acked {
        record_ack(acked, place, seq);
    }

    let Recorded {
        acked,
        failures,
        seen,
    } = history.stop();
    say(format!(
        "{} records acknowledged, {failures} not; {} served to the consumer",
        acked.len(),
        seen.len()
    ));

    if diverged {
        let log = without_colours(&node(&mut nodes, leader).log());
        assert!(
            log.lines().any(
                |line| line.contains("truncating a tail the leader does not have")
                    && line.contains(&format!("topic={TOPIC}"))
                    && line.contains("partition=0")
            ),
            "node {leader} appended the probe but never truncated partition 0 ({})",
            node(&mut nodes, leader).log_path().display()
        );
    }

    let at = check_acknowledged(&all, TOPIC, PARTITIONS, &acked, &seen);
    assert!(
        !at.values().any(|v| *v == PROBE_VALUE),
        "the probe only the isolated leader had is in the log"
    );
    say("every acknowledged record read back".into());
    check_replicas_identical(&mut nodes, TOPIC, PARTITIONS, &at);
    say("replicas identical up to the high watermark".into());
}
