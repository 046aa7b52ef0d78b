//! Hand-built requests on a plain loopback socket, for what no client library sends: hostile or
//! exactly shaped record batches.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use inlet_protocol::client::records::{encode_batch, ProducerRecord};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

/// The Produce version the raw requests use.
pub const PRODUCE_VERSION: i16 = 8;

/// Sends one Produce request (acks=all) whose partition 0 of `topic` carries `records` as they
/// are; returns that partition's error code and base offset.
pub fn produce(addr: SocketAddr, topic: &str, records: &[u8]) -> (i16, i64) {
    produce_to(addr, topic, 0, records, 10_000)
}

/// [`produce`] to partition `partition`, with the request's `timeout_ms` (how long an acks=all
/// append may wait for the in-sync replicas).
pub fn produce_to(
    addr: SocketAddr,
    topic: &str,
    partition: i32,
    records: &[u8],
    timeout_ms: i32,
) -> (i16, i64) {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the broker");
    let wait = Duration::from_millis(timeout_ms.max(0) as u64) + Duration::from_secs(10);
    stream
        .set_read_timeout(Some(wait))
        .expect("set a read timeout");
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(PRODUCE_VERSION)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("inlet-raw")));
    let partition = PartitionProduceData::default()
        .with_index(partition)
        .with_records(Some(Bytes::copy_from_slice(records)));
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![partition])]);
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, ProduceRequest::header_version(PRODUCE_VERSION))
        .expect("encode the request header");
    request
        .encode(&mut buf, PRODUCE_VERSION)
        .expect("encode the Produce request");
    let mut frame = (buf.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf);
    stream.write_all(&frame).expect("send the Produce request");
    let mut size = [0u8; 4];
    stream
        .read_exact(&mut size)
        .expect("read the response size");
    let mut body = vec![0u8; u32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).expect("read the response");
    let mut body = Bytes::from(body);
    ResponseHeader::decode(&mut body, ProduceResponse::header_version(PRODUCE_VERSION))
        .expect("decode the response header");
    let response =
        ProduceResponse::decode(&mut body, PRODUCE_VERSION).expect("decode the Produce response");
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

/// One plain record batch (not idempotent, not compressed) holding one record.
pub fn plain_batch(key: Option<Bytes>, value: Bytes, timestamp: i64) -> Bytes {
    let record = ProducerRecord {
        key,
        value: Some(value),
        headers: Vec::new(),
        timestamp,
    };
    encode_batch(&[record], kafka_protocol::records::Compression::None)
        .expect("encode a record batch")
}
