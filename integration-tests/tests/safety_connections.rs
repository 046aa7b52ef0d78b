//! Clients that try to exhaust the broker's memory or connections (issue 10 item 6): stalled
//! half-frames, a request of empty names that decodes to many times its size, a flood of idle
//! connections under a low open-file limit, and idle connections. The broker stays small and
//! alive, closes what it should, and real clients keep working.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use inlet_integration_tests::kafka::{client_config, consume_all, consumer_config};
use inlet_integration_tests::{free_port, Broker, BrokerOptions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const MIB: u64 = 1024 * 1024;

/// The broker's resident memory in bytes (VmRSS).
fn rss(broker: &Broker) -> u64 {
    let pid = broker.pid().expect("the broker is running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/<pid>/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

/// Samples the broker's RSS every 10 ms on a thread until dropped; `peak()` is the highest seen.
struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(broker: &Broker) -> RssSampler {
        let pid = broker.pid().expect("the broker is running");
        let peak = Arc::new(AtomicU64::new(rss(broker)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            thread::spawn(move || {
                let path = format!("/proc/{pid}/status");
                while !stop.load(Ordering::Relaxed) {
                    let kib = std::fs::read_to_string(&path).ok().and_then(|status| {
                        status
                            .lines()
                            .find(|line| line.starts_with("VmRSS:"))
                            .and_then(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
                    });
                    if let Some(kib) = kib {
                        peak.fetch_max(kib * 1024, Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(10));
                }
            })
        };
        RssSampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether the broker answers an ApiVersions v0 request on a new connection.
fn answers_api_versions(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(&api_versions_v0(7)).is_err() {
        return false;
    }
    let mut head = [0u8; 8];
    stream.read_exact(&mut head).is_ok()
        && i32::from_be_bytes([head[4], head[5], head[6], head[7]]) == 7
}

/// An ApiVersions v0 request frame (length prefix included).
fn api_versions_v0(correlation_id: i32) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14);
    frame.extend_from_slice(&10i32.to_be_bytes());
    frame.extend_from_slice(&18i16.to_be_bytes());
    frame.extend_from_slice(&0i16.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(&0i16.to_be_bytes());
    frame
}

/// Waits until the broker closes `stream` (EOF or reset), discarding what it sends; returns how
/// long that took, or None if it was still open at `deadline`.
fn wait_closed(stream: &mut TcpStream, deadline: Instant) -> Option<Duration> {
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("set a read timeout");
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Some(start.elapsed()),
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
}

/// (a) Ten connections each declare a 100 MiB - 1 request, send all of it but the last byte and
/// stall. The request budget lets two bodies in at a time (the others wait unread), a stalled one
/// is closed after `connections.max.stall.ms` and gives its bytes back: peak memory stays near
/// the budget instead of a gigabyte, and every connection is closed.
#[test]
fn stalled_half_frames_are_bounded_by_the_budget_and_closed() {
    const BUDGET: u64 = 200 * MIB;
    // Settings by environment rather than flags, so that a broker without them runs (with its
    // defaults) and shows what they fix instead of failing to start.
    let broker = Broker::start_with(BrokerOptions {
        env: vec![
            ("INLET_QUEUED_MAX_REQUEST_BYTES".into(), BUDGET.to_string()),
            ("INLET_CONNECTIONS_MAX_STALL_MS".into(), "500".into()),
        ],
        ..BrokerOptions::default()
    });
    let before = rss(&broker);
    let sampler = RssSampler::start(&broker);
    let declared = 100 * MIB as usize - 1;
    let body = Arc::new(vec![0u8; declared - 1]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let clients: Vec<_> = (0..10)
        .map(|i| {
            let (addr, body) = (broker.addr(), body.clone());
            thread::spawn(move || {
                let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                    .unwrap_or_else(|e| panic!("connection {i}: connect: {e}"));
                stream
                    .set_write_timeout(Some(Duration::from_millis(100)))
                    .expect("set a write timeout");
                let pending = (declared as i32).to_be_bytes();
                let (mut sent_head, mut sent_body) = (0, 0);
                // Send everything but the last byte, waiting while the broker does not read.
                while sent_head < pending.len() || sent_body < body.len() {
                    let chunk = if sent_head < pending.len() {
                        &pending[sent_head..]
                    } else {
                        &body[sent_body..(sent_body + MIB as usize).min(body.len())]
                    };
                    match stream.write(chunk) {
                        Ok(n) if sent_head < pending.len() => sent_head += n,
                        Ok(n) => sent_body += n,
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        // Closed by the broker (stalled while it waited for budget is not a
                        // reason, but a reset here is a close too).
                        Err(_) => return Some(Duration::ZERO),
                    }
                    if Instant::now() >= deadline {
                        return None;
                    }
                }
                wait_closed(&mut stream, deadline)
            })
        })
        .collect();
    let closed: Vec<Option<Duration>> = clients
        .into_iter()
        .map(|client| client.join().expect("client thread panicked"))
        .collect();
    let peak = sampler.peak();
    drop(sampler);
    eprintln!(
        "stalled half-frames: RSS before {} MiB, peak {} MiB",
        before / MIB,
        peak / MIB
    );
    assert!(
        closed.iter().all(Option::is_some),
        "every stalled connection is closed: {closed:?}"
    );
    assert!(
        peak.saturating_sub(before) < BUDGET + 150 * MIB,
        "ten stalled 100 MiB requests grew the broker from {} MiB to {} MiB (budget {} MiB)",
        before / MIB,
        peak / MIB,
        BUDGET / MIB
    );
    assert!(
        answers_api_versions(broker.addr()),
        "the broker still serves"
    );
    assert!(
        broker.log().contains("closing stalled connection"),
        "the log names the stall"
    );
}

/// (b) A 10 MB DescribeGroups request of five million empty group names: decoded with no bound
/// it cost over a gigabyte. Now its decoded size is bounded by the frame: the request is refused
/// (connection closed) while memory stays within a few times the frame, and the broker serves on.
#[test]
fn request_of_empty_names_does_not_inflate_memory() {
    let broker = Broker::start();
    let names: usize = 5_000_000;
    let mut body = Vec::with_capacity(12 + 2 * names);
    body.extend_from_slice(&15i16.to_be_bytes()); // DescribeGroups
    body.extend_from_slice(&0i16.to_be_bytes()); // v0
    body.extend_from_slice(&1i32.to_be_bytes()); // correlation id
    body.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    body.extend_from_slice(&(names as i32).to_be_bytes());
    body.resize(body.len() + 2 * names, 0); // each name: length 0
    let frame_len = body.len() as u64;
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    drop(body);

    let before = rss(&broker);
    let sampler = RssSampler::start(&broker);
    let mut stream = TcpStream::connect_timeout(&broker.addr(), Duration::from_secs(5))
        .expect("connect to the broker");
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .expect("set a write timeout");
    // The broker may close before reading it all.
    let _ = stream.write_all(&frame);
    let closed = wait_closed(&mut stream, Instant::now() + Duration::from_secs(20));
    // Memory freed at close is not the point; what it took while handling the request is.
    thread::sleep(Duration::from_millis(200));
    let peak = sampler.peak();
    drop(sampler);
    eprintln!(
        "10 MB of empty names: RSS before {} MiB, peak {} MiB",
        before / MIB,
        peak / MIB
    );
    assert!(
        peak.saturating_sub(before) < 20 * frame_len,
        "a {frame_len}-byte request grew the broker from {} MiB to {} MiB",
        before / MIB,
        peak / MIB
    );
    assert!(
        closed.is_some(),
        "the request is refused and the connection closed"
    );
    assert!(broker.log().contains("allowance"), "the log says why");
    assert!(
        answers_api_versions(broker.addr()),
        "the broker still serves"
    );
}

fn producer(bootstrap: &str) -> FutureProducer {
    client_config(bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("create an rdkafka producer")
}

async fn produce(producer: &FutureProducer, topic: &str, from: i64, count: i64, who: &str) {
    for i in from..from + count {
        let value = format!("value-{i}");
        let delivery = producer
            .send(
                FutureRecord::to(topic).key(who).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("{who}: produce record {i}: {e}"));
        assert_eq!(
            (delivery.partition, delivery.offset),
            (0, i),
            "{who}: record {i}"
        );
    }
}

/// Polls `consumer` until it has `count` records from `from` on, within 20 s.
fn poll_records(consumer: &BaseConsumer, from: i64, count: i64, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut next = from;
    while next < from + count {
        assert!(
            Instant::now() < deadline,
            "{who}: only offsets {from}..{next} of {count} arrived"
        );
        match consumer.poll(Duration::from_millis(100)) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => panic!("{who}: consumer error: {e}"),
            Some(Ok(message)) => {
                assert_eq!(message.offset(), next, "{who}");
                assert_eq!(
                    message.payload(),
                    Some(format!("value-{next}").as_bytes()),
                    "{who}"
                );
                next += 1;
            }
        }
    }
}

/// (c) Under `ulimit -n 1024`, 1,100 idle connections from one address (127.0.0.2) would use up
/// every descriptor. The per-address limit closes those over it at once, so a producer and
/// consumer connected before, and new clients from another address, keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_keep_working_beside_1100_idle_connections_under_ulimit_1024() {
    let broker = Broker::start_with(BrokerOptions {
        open_files_limit: Some(1024),
        ..BrokerOptions::default()
    });
    let bootstrap = broker.bootstrap();
    let topic = "beside-the-flood";
    let early_producer = producer(&bootstrap);
    produce(&early_producer, topic, 0, 5, "early producer").await;
    let early_consumer: BaseConsumer = consumer_config(&bootstrap)
        .create()
        .expect("create an rdkafka consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("add a partition");
    early_consumer.assign(&assignment).expect("assign");
    let early_consumer = tokio::task::spawn_blocking(move || {
        poll_records(&early_consumer, 0, 5, "early consumer");
        early_consumer
    })
    .await
    .expect("consumer task");

    // The flood, in waves of 100 so as not to overflow the listen queue (whose overflow only
    // delays connections), each connect bounded in time (a broker out of descriptors leaves
    // them in its listen queue).
    let addr = broker.addr();
    let mut idle: Vec<std::net::TcpStream> = Vec::with_capacity(1100);
    for _ in 0..11 {
        let wave = (0..100).map(|_| async move {
            let socket = tokio::net::TcpSocket::new_v4().ok()?;
            socket.bind(SocketAddr::from(([127, 0, 0, 2], 0))).ok()?;
            tokio::time::timeout(Duration::from_secs(2), socket.connect(addr))
                .await
                .ok()?
                .ok()
        });
        idle.extend(
            futures_join_all(wave)
                .await
                .into_iter()
                .flatten()
                .filter_map(|stream| stream.into_std().ok()),
        );
    }
    eprintln!("{} of 1100 idle connections were established", idle.len());
    // Those over the per-address limit are closed at once, leaving descriptors for others.
    let closed = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let closed = idle.iter().filter(|s| closed_by_peer(s)).count();
            if closed >= 600 || Instant::now() >= deadline {
                return (closed, idle);
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let (closed, idle) = closed.await.expect("closed-count task");
    assert!(
        closed >= 600,
        "the broker closed only {closed} of 1100 connections from one address"
    );

    produce(&early_producer, topic, 5, 5, "early producer").await;
    let early_consumer = tokio::task::spawn_blocking(move || {
        poll_records(&early_consumer, 5, 5, "early consumer");
        early_consumer
    })
    .await
    .expect("consumer task");
    let new_producer = producer(&bootstrap);
    produce(&new_producer, topic, 10, 5, "new producer").await;
    let bootstrap_owned = bootstrap.clone();
    let records = tokio::task::spawn_blocking(move || {
        consume_all(&bootstrap_owned, topic, 1, 15, Duration::from_secs(20))
    })
    .await
    .expect("consumer task");
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        (0..15).collect::<Vec<_>>(),
        "a new consumer reads everything"
    );
    assert!(
        broker.log().contains("refusing connections over the limit"),
        "the per-address limit refused part of the flood"
    );
    drop(early_consumer);
    drop(idle);
}

/// Whether the peer has closed `stream`, without waiting (the stream is non-blocking).
fn closed_by_peer(mut stream: &std::net::TcpStream) -> bool {
    match stream.read(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

/// Awaits every future, in order (a tiny `join_all`, to need no `futures` crate).
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("task panicked"));
    }
    out
}

/// (d) Connections with no request for `connections.max.idle.ms` are closed, whether they never
/// sent anything or went quiet after a request; one that keeps sending requests stays open.
#[test]
fn idle_connections_are_closed_after_connections_max_idle_ms() {
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let broker = Broker::start_with(BrokerOptions {
        env: vec![
            ("INLET_CONNECTIONS_MAX_IDLE_MS".into(), "600".into()),
            ("INLET_METRICS_LISTEN".into(), metrics.to_string()),
        ],
        ..BrokerOptions::default()
    });
    let connect =
        || TcpStream::connect_timeout(&broker.addr(), Duration::from_secs(5)).expect("connect");
    let mut silent = connect();
    let mut quiet_after_request = connect();
    let mut busy = connect();
    silent
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("set a read timeout");
    let early = silent.read(&mut [0u8; 1]);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "open before the idle timeout: {early:?}"
    );
    quiet_after_request
        .write_all(&api_versions_v0(1))
        .expect("send ApiVersions");
    let mut head = [0u8; 8];
    quiet_after_request
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout");
    quiet_after_request
        .read_exact(&mut head)
        .expect("ApiVersions answered");
    let size = i32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let mut rest = vec![0u8; size - 4];
    quiet_after_request
        .read_exact(&mut rest)
        .expect("read the rest of the answer");

    // The busy one sends a request every 200 ms for 1.5 s: never idle for 600 ms.
    busy.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout");
    for i in 0..8 {
        busy.write_all(&api_versions_v0(100 + i))
            .expect("a busy connection stays open");
        let mut head = [0u8; 8];
        busy.read_exact(&mut head).expect("answered");
        let size = i32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let mut rest = vec![0u8; size - 4];
        busy.read_exact(&mut rest).expect("answered");
        thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let silent_closed = wait_closed(&mut silent, deadline);
    let quiet_closed = wait_closed(&mut quiet_after_request, deadline);
    assert!(
        silent_closed.is_some(),
        "a connection that never sent anything is closed"
    );
    assert!(
        quiet_closed.is_some(),
        "a connection quiet after a request is closed"
    );
    busy.write_all(&api_versions_v0(9))
        .expect("the busy connection is still open");
    busy.read_exact(&mut head).expect("and still answered");
    let scraped = scrape(metrics);
    assert!(
        scraped.contains("inlet_connections_closed_idle_total 2\n"),
        "{scraped}"
    );
}

/// The broker's `GET /metrics` text.
fn scrape(addr: SocketAddr) -> String {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to /metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: inlet\r\n\r\n")
        .expect("send the scrape");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}
