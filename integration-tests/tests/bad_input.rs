//! Hostile and broken bytes on the wire. For each, the broker closes that one connection promptly
//! and keeps serving everyone else: a connection opened before the bad one, a fresh ApiVersions
//! exchange, and a librdkafka producer and consumer.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use inlet_integration_tests::kafka::{client_config, consume_all};
use inlet_integration_tests::Broker;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// A consumed record reduced to what the round trip checks.
type OffsetKeyValue = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// How long the broker has to close a connection after bad input.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

fn connect(broker: &Broker) -> TcpStream {
    let stream = TcpStream::connect_timeout(&broker.addr(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {}: {e}", broker.addr()));
    stream
        .set_read_timeout(Some(Duration::from_millis(250)))
        .expect("set a read timeout");
    stream.set_nodelay(true).expect("set TCP_NODELAY");
    stream
}

/// Reads until the broker closes the connection (EOF or reset) and fails the test if it is still
/// open after [`CLOSE_WITHIN`]. Bytes the broker sends before closing are ignored.
fn assert_closed_by_broker(mut stream: TcpStream, what: &str) {
    let deadline = Instant::now() + CLOSE_WITHIN;
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if matches!(e.kind(), ErrorKind::Interrupted) => {}
            // A reset or an aborted connection is the broker closing too.
            Err(_) => return,
        }
        assert!(
            Instant::now() < deadline,
            "after {what}, the broker kept the connection open for {CLOSE_WITHIN:?}"
        );
    }
}

/// Sends `bytes`, tolerating a broker that closes before it has read them all.
fn send(stream: &mut TcpStream, bytes: &[u8]) {
    match stream.write_all(bytes) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {}
        Err(e) => panic!("write to the broker: {e}"),
    }
}

/// Prefixes `body` with its 4-byte big-endian length.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Reads one length-prefixed response frame (without its length), within a few seconds.
fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout");
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).expect("read a response size");
    let size = i32::from_be_bytes(size);
    assert!(
        (0..=16 << 20).contains(&size),
        "implausible response size {size}"
    );
    let mut body = vec![0u8; size as usize];
    stream.read_exact(&mut body).expect("read a response body");
    body
}

/// An encoded ApiVersions request frame at `version` (0..=3) with the right header version.
fn api_versions_request(version: i16, correlation_id: i32) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("inlet-bad-input-test")));
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("inlet-integration-tests"))
        .with_client_software_version(StrBytes::from_static_str("0.1.0"));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, ApiVersionsRequest::header_version(version))
        .expect("encode a request header");
    request
        .encode(&mut buf, version)
        .expect("encode an ApiVersions request");
    frame(&buf)
}

/// One ApiVersions v3 exchange on `stream`; checks the answer is a success listing the core APIs.
fn assert_api_versions_works(stream: &mut TcpStream, correlation_id: i32) {
    send(stream, &api_versions_request(3, correlation_id));
    let response = read_frame(stream);
    let mut buf = bytes::Bytes::from(response);
    // ApiVersions responses always use response header v0: just the correlation id.
    assert!(buf.len() >= 4, "response too short for a header");
    let got_id = i32::from_be_bytes(buf[..4].try_into().expect("four bytes"));
    assert_eq!(got_id, correlation_id, "correlation id");
    let _ = bytes::Buf::copy_to_bytes(&mut buf, 4);
    let response =
        ApiVersionsResponse::decode(&mut buf, 3).expect("decode an ApiVersions v3 response");
    assert_eq!(response.error_code, 0, "ApiVersions v3 error code");
    for key in [
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::Metadata,
        ApiKey::ApiVersions,
    ] {
        assert!(
            response.api_keys.iter().any(|k| k.api_key == key as i16),
            "ApiVersions response lists {key:?}"
        );
    }
}

/// A fresh connection still gets ApiVersions answered.
fn assert_broker_serves_new_connections(broker: &Broker) {
    let mut stream = connect(broker);
    assert_api_versions_works(&mut stream, 7);
}

/// Waits (briefly: logging may lag) for a broker log line that names the client address
/// `peer` and contains `mention`, i.e. a logged reason for closing that connection.
fn assert_logged_reason(broker: &Broker, peer: SocketAddr, mention: &str, what: &str) {
    let peer = peer.to_string();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let log = broker.log();
        if log
            .lines()
            .any(|line| line.contains(&peer) && line.contains(mention))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {what}, no broker log line names the connection {peer} and {mention:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Opens a healthy connection, sends `bad` on another one, checks the bad one is closed with a
/// reason in the log (naming the client's address and containing `log_mentions`), and that both
/// the healthy connection and a new one are still served.
fn check_bad_input(what: &str, bad: &[u8], half_close: bool, log_mentions: &str) {
    let broker = Broker::start();
    let mut healthy = connect(&broker);
    assert_api_versions_works(&mut healthy, 1);

    let mut victim = connect(&broker);
    let victim_addr = victim
        .local_addr()
        .expect("local address of a connected socket");
    send(&mut victim, bad);
    if half_close {
        // Tell the broker no more bytes are coming, so a partial frame can never complete.
        let _ = victim.shutdown(Shutdown::Write);
    }
    assert_closed_by_broker(victim, what);
    assert_logged_reason(&broker, victim_addr, log_mentions, what);

    assert_api_versions_works(&mut healthy, 2);
    assert_broker_serves_new_connections(&broker);
}

#[test]
fn http_request_closes_the_connection() {
    // "GET " read as a length is about 1.2 GB, past socket.request.max.bytes.
    check_bad_input(
        "an HTTP request",
        b"GET / HTTP/1.1\r\nHost: inlet\r\n\r\n",
        false,
        "",
    );
}

#[test]
fn garbage_frame_closes_the_connection() {
    // A Metadata v12 header followed by 0xff bytes: the header's tagged-field count is a varint
    // that never ends, which no decoder can accept.
    let mut body = vec![0x00, 0x03, 0x00, 0x0c];
    body.extend_from_slice(&[0xff; 60]);
    check_bad_input("a frame of garbage", &frame(&body), false, "");
}

#[test]
fn length_prefix_of_2_gib_closes_the_connection() {
    // 2 GiB - 1 as a positive i32, then a few bytes of a "body".
    let mut bad = 0x7fff_ffffu32.to_be_bytes().to_vec();
    bad.extend_from_slice(&[0u8; 16]);
    check_bad_input("a length prefix of 2 GiB - 1", &bad, false, "");
}

#[test]
fn length_prefix_of_exactly_2_gib_closes_the_connection() {
    // 0x8000_0000: 2 GiB as an unsigned length, i32::MIN as Kafka's signed one.
    let mut bad = 0x8000_0000u32.to_be_bytes().to_vec();
    bad.extend_from_slice(&[0u8; 16]);
    check_bad_input("a length prefix of 2 GiB", &bad, false, "");
}

#[test]
fn length_prefix_over_socket_request_max_bytes_closes_the_connection() {
    // 100 MiB + 1: one byte over the default socket.request.max.bytes.
    let mut bad = ((100u32 << 20) + 1).to_be_bytes().to_vec();
    bad.extend_from_slice(&[0u8; 16]);
    check_bad_input("a length prefix of 100 MiB + 1", &bad, false, "");
}

#[test]
fn truncated_header_closes_the_connection() {
    // The length says 100 bytes, but only 6 bytes of a header (Metadata v4) arrive before EOF.
    let mut bad = 100u32.to_be_bytes().to_vec();
    bad.extend_from_slice(&[0x00, 0x03, 0x00, 0x04, 0x00, 0x00]);
    check_bad_input("a truncated request header", &bad, true, "");
}

#[test]
fn complete_frame_with_truncated_body_closes_the_connection() {
    // A Metadata v4 request whose frame length matches the bytes sent, but whose body stops in
    // the middle of the one topic name it announces.
    let mut body = BytesMut::new();
    body.put_i16(ApiKey::Metadata as i16);
    body.put_i16(4);
    body.put_i32(77); // correlation id
    body.put_i16(4);
    body.put_slice(b"test"); // client id
    body.put_i32(1); // one topic
    body.put_i16(12);
    body.put_slice(b"topi"); // ... of a 12-byte name, and nothing after
    check_bad_input("a request body cut short", &frame(&body), false, "");
}

#[test]
fn unknown_api_key_closes_the_connection() {
    let mut body = BytesMut::new();
    body.put_i16(9999); // api key
    body.put_i16(0); // api version
    body.put_i32(5); // correlation id
    body.put_i16(4);
    body.put_slice(b"test"); // client id
    body.put_slice(&[1, 2, 3, 4]);
    check_bad_input("an unknown API key (9999)", &frame(&body), false, "9999");
}

#[test]
fn api_versions_with_unsupported_version_gets_a_v0_error_response() {
    let broker = Broker::start();
    let mut stream = connect(&broker);
    // ApiVersions v99 with a v2 request header (what a newer client would send), hand-built.
    let mut body = BytesMut::new();
    body.put_i16(ApiKey::ApiVersions as i16);
    body.put_i16(99);
    body.put_i32(4242); // correlation id
    body.put_i16(4);
    body.put_slice(b"test"); // client id
    body.put_u8(0); // no tagged fields in the header
    body.put_u8(5);
    body.put_slice(b"test"); // client_software_name, compact string
    body.put_u8(4);
    body.put_slice(b"0.1"); // client_software_version, compact string
    body.put_u8(0); // no tagged fields in the body
    send(&mut stream, &frame(&body));

    let response = read_frame(&mut stream);
    let mut at = 0;
    let mut take = |n: usize| {
        assert!(
            at + n <= response.len(),
            "v0 ApiVersions response is {} bytes, too short",
            response.len()
        );
        let slice = &response[at..at + n];
        at += n;
        slice.to_vec()
    };
    let correlation_id = i32::from_be_bytes(take(4).try_into().expect("4 bytes"));
    let error_code = i16::from_be_bytes(take(2).try_into().expect("2 bytes"));
    let count = i32::from_be_bytes(take(4).try_into().expect("4 bytes"));
    assert_eq!(correlation_id, 4242, "correlation id");
    assert_eq!(error_code, 35, "error code UNSUPPORTED_VERSION");
    assert!(
        count > 0,
        "the v0 error response lists the supported APIs, got {count}"
    );
    let mut api_versions = None;
    for _ in 0..count {
        let key = i16::from_be_bytes(take(2).try_into().expect("2 bytes"));
        let min = i16::from_be_bytes(take(2).try_into().expect("2 bytes"));
        let max = i16::from_be_bytes(take(2).try_into().expect("2 bytes"));
        assert!(
            min <= max,
            "api key {key}: min version {min} > max version {max}"
        );
        if key == ApiKey::ApiVersions as i16 {
            api_versions = Some((min, max));
        }
    }
    assert_eq!(
        at,
        response.len(),
        "a v0 response has nothing after the API list"
    );
    let (min, max) = api_versions.expect("the list includes ApiVersions itself");
    assert!(
        min == 0 && max >= 3,
        "ApiVersions versions {min}..={max}, expected 0..=3 or more"
    );

    // The connection stays usable after the error response.
    assert_api_versions_works(&mut stream, 4243);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_round_trip_works_after_every_kind_of_bad_input() {
    let broker = Broker::start();
    let bad_inputs: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "garbage",
            b"\x00\x00\x00\x08\xde\xad\xbe\xef\xde\xad\xbe\xef".to_vec(),
            false,
        ),
        ("2 GiB length", 0x8000_0000u32.to_be_bytes().to_vec(), false),
        (
            "truncated header",
            b"\x00\x00\x00\x64\x00\x03".to_vec(),
            true,
        ),
        (
            "unknown api key",
            frame(&[0x27, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0xff]),
            false,
        ),
    ];
    for (what, bad, half_close) in bad_inputs {
        let mut victim = connect(&broker);
        send(&mut victim, &bad);
        if half_close {
            let _ = victim.shutdown(Shutdown::Write);
        }
        assert_closed_by_broker(victim, what);
    }

    let bootstrap = broker.bootstrap();
    let topic = "after-bad-input";
    let producer: FutureProducer = client_config(&bootstrap)
        .set("acks", "all")
        .create()
        .expect("create an rdkafka producer");
    for i in 0..10 {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let delivery = producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce record {i} to the auto-created topic: {e}"));
        assert_eq!(
            (delivery.partition, delivery.offset),
            (0, i),
            "position of record {i}"
        );
    }
    drop(producer);

    let bootstrap_owned = bootstrap.clone();
    let records = tokio::task::spawn_blocking(move || {
        consume_all(&bootstrap_owned, topic, 1, 10, Duration::from_secs(30))
    })
    .await
    .expect("consumer task panicked");
    let got: Vec<OffsetKeyValue> = records
        .into_iter()
        .map(|r| (r.offset, r.key, r.value))
        .collect();
    let want: Vec<OffsetKeyValue> = (0..10)
        .map(|i| {
            (
                i,
                Some(format!("key-{i}").into_bytes()),
                Some(format!("value-{i}").into_bytes()),
            )
        })
        .collect();
    assert_eq!(got, want, "records read back after the bad input");
}
