//! Request decoding and response encoding on top of the `kafka-protocol` crate's generated types.
//!
//! A request frame is `api_key i16, api_version i16, correlation_id i32, [client_id, tagged fields]`
//! followed by the body; the header's own version depends on the API and its version. The body is
//! decoded only after the broker has checked the version against its ApiVersions table, which is
//! why decoding is split into [`peek_header`], [`decode_header`] and [`decode_body`]: a request of an
//! unknown API or version can still be answered (or logged) with its correlation id.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request};

/// The three fixed fields at the start of every request, read without trusting the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("request of {len} bytes is shorter than the 8-byte fixed header")]
    ShortHeader { len: usize },
    #[error("unknown API key {api_key}")]
    UnknownApiKey { api_key: i16 },
    #[error("malformed {what} for {api_key:?} v{version}: {reason}")]
    Malformed {
        what: &'static str,
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode {api_key:?} v{version}: {reason}")]
    Encode {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
}

/// Reads the fixed fields of a request frame.
pub fn peek_header(frame: &[u8]) -> Result<RawHeader, CodecError> {
    if frame.len() < 8 {
        return Err(CodecError::ShortHeader { len: frame.len() });
    }
    Ok(RawHeader {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// Decodes the request header, leaving `frame` positioned at the body.
pub fn decode_header(frame: &mut Bytes) -> Result<(ApiKey, RequestHeader), CodecError> {
    let raw = peek_header(frame)?;
    let api_key = ApiKey::try_from(raw.api_key).map_err(|_| CodecError::UnknownApiKey {
        api_key: raw.api_key,
    })?;
    let header_version = api_key.request_header_version(raw.api_version);
    let header =
        RequestHeader::decode(frame, header_version).map_err(|e| CodecError::Malformed {
            what: "request header",
            api_key,
            version: raw.api_version,
            reason: e.to_string(),
        })?;
    Ok((api_key, header))
}

/// Bytes of decoded array elements a request body may cost per byte of the body. An element takes
/// at least one byte on the wire but up to 32 (a name) or more (a struct) in memory; real requests
/// carry names and offsets, which keeps them within a few times their size (a Fetch partition:
/// about 3x, a group or topic name of a few characters: under 8x), while a request of empty names
/// would cost 32x and its response more. See [`decode_allowance`].
pub const DECODED_BYTES_PER_BODY_BYTE: usize = 8;

/// Allowance for the fixed part of every request (structs decoded once, small arrays), so tiny
/// requests are never refused for their size, and for real requests of many very short names
/// (a Metadata request for 10,000 topics named `t0`..`t9999` decodes to ~800 KB from ~60 KB).
/// Requests in flight are bounded by `queued.max.request.bytes`, so this costs at most 1 MiB each.
const DECODE_ALLOWANCE_BASE: usize = 1024 * 1024;

/// How many bytes of array elements decoding a body of `body_len` bytes may allocate: decoded
/// memory stays proportional to the frame, whatever the frame holds.
pub fn decode_allowance(body_len: usize) -> usize {
    body_len
        .saturating_mul(DECODED_BYTES_PER_BODY_BYTE)
        .saturating_add(DECODE_ALLOWANCE_BASE)
}

/// Decodes a request body of a version the caller has already accepted. Bytes left after the
/// body are ignored, as Kafka's own brokers do: librdkafka 2.12, for one, pads some Metadata
/// requests with zeros, and refusing them would cut off real clients.
pub fn decode_body(
    api_key: ApiKey,
    version: i16,
    body: &mut Bytes,
) -> Result<RequestKind, CodecError> {
    let allowance = decode_allowance(body.len());
    let request = kafka_protocol::protocol::types::with_decode_allowance(allowance, || {
        RequestKind::decode(api_key, body, version)
    })
    .map_err(|e| CodecError::Malformed {
        what: "request body",
        api_key,
        version,
        // With its causes: the outer context alone does not say which limit was hit.
        reason: format!("{e:#}"),
    })?;
    if !body.is_empty() {
        tracing::debug!(
            ?api_key,
            version,
            trailing = body.len(),
            "ignoring bytes after the request body"
        );
    }
    Ok(request)
}

/// Encodes a response frame, length prefix included, with the header version its API and version
/// call for.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<Bytes, CodecError> {
    let encode_error = |e: anyhow::Error| CodecError::Encode {
        api_key,
        version,
        reason: e.to_string(),
    };
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(
            &mut buf,
            response_header_version(api_key, version, response),
        )
        .map_err(encode_error)?;
    response.encode(&mut buf, version).map_err(encode_error)?;
    patch_length_prefix(&mut buf);
    Ok(buf.freeze())
}

/// Encodes a response frame as a list of chunks to write in order. The record sets of a Fetch
/// response are passed through by reference (see [`crate::chunked`]) instead of being copied
/// into the frame; every other response is one chunk.
pub fn encode_response_chunks(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<Vec<Bytes>, CodecError> {
    let contiguous = || {
        Ok(vec![encode_response(
            api_key,
            version,
            correlation_id,
            response,
        )?])
    };
    let ResponseKind::Fetch(fetch) = response else {
        return contiguous();
    };
    let records: Vec<Bytes> = fetch
        .responses
        .iter()
        .flat_map(|topic| &topic.partitions)
        .filter_map(|partition| partition.records.clone())
        .filter(|records| records.len() >= crate::chunked::ZERO_COPY_MIN)
        .collect();
    if records.is_empty() {
        return contiguous();
    }
    let encode_error = |e: anyhow::Error| CodecError::Encode {
        api_key,
        version,
        reason: e.to_string(),
    };
    let mut buf = crate::chunked::ChunkedBuf::new(records);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, response.header_version(version))
        .map_err(encode_error)?;
    fetch.encode(&mut buf, version).map_err(encode_error)?;
    let Some(body) = buf.finish() else {
        return contiguous();
    };
    let length: usize = body.iter().map(Bytes::len).sum();
    let length = i32::try_from(length).map_err(|_| CodecError::Encode {
        api_key,
        version,
        reason: format!("a {length}-byte response does not fit a frame"),
    })?;
    let mut chunks = Vec::with_capacity(body.len() + 1);
    chunks.push(Bytes::copy_from_slice(&length.to_be_bytes()));
    chunks.extend(body);
    Ok(chunks)
}

/// ApiVersions always answers with header v0, whatever its version, so that a client that asked
/// for a version we do not know can still read the error (KIP-511).
fn response_header_version(api_key: ApiKey, version: i16, response: &ResponseKind) -> i16 {
    if api_key == ApiKey::ApiVersions {
        0
    } else {
        response.header_version(version)
    }
}

/// Encodes a request frame, length prefix included (used by the client).
pub fn encode_request<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &str,
) -> Result<Bytes, CodecError> {
    let api_key =
        ApiKey::try_from(R::KEY).map_err(|_| CodecError::UnknownApiKey { api_key: R::KEY })?;
    let encode_error = |e: anyhow::Error| CodecError::Encode {
        api_key,
        version,
        reason: e.to_string(),
    };
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.to_string().into()));
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0);
    header
        .encode(&mut buf, R::header_version(version))
        .map_err(encode_error)?;
    request.encode(&mut buf, version).map_err(encode_error)?;
    patch_length_prefix(&mut buf);
    Ok(buf.freeze())
}

/// Decodes a response frame (without its length prefix) to request type `R`'s response.
pub fn decode_response<R: Request>(
    frame: &mut Bytes,
    version: i16,
) -> Result<(i32, R::Response), CodecError> {
    let api_key =
        ApiKey::try_from(R::KEY).map_err(|_| CodecError::UnknownApiKey { api_key: R::KEY })?;
    let malformed = |what, e: anyhow::Error| CodecError::Malformed {
        what,
        api_key,
        version,
        reason: e.to_string(),
    };
    let header_version = if api_key == ApiKey::ApiVersions {
        0
    } else {
        <R::Response as HeaderVersion>::header_version(version)
    };
    let header = ResponseHeader::decode(frame, header_version)
        .map_err(|e| malformed("response header", e))?;
    let body = R::Response::decode(frame, version).map_err(|e| malformed("response body", e))?;
    Ok((header.correlation_id, body))
}

fn patch_length_prefix(buf: &mut BytesMut) {
    let length = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&length.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

    #[test]
    fn request_round_trips_through_header_and_body() {
        let request = MetadataRequest::default().with_allow_auto_topic_creation(true);
        let mut frame = encode_request(&request, 9, 42, "test").unwrap().slice(4..);
        let (api_key, header) = decode_header(&mut frame).unwrap();
        assert_eq!(api_key, ApiKey::Metadata);
        assert_eq!(header.correlation_id, 42);
        assert_eq!(header.client_id.as_deref(), Some("test"));
        let body = decode_body(api_key, 9, &mut frame).unwrap();
        assert_eq!(body, RequestKind::Metadata(request));
    }

    #[test]
    fn chunked_fetch_response_equals_the_contiguous_encoding() {
        use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        use kafka_protocol::messages::{FetchResponse, TopicName};
        let big = Bytes::from((0..40_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let small = Bytes::from_static(b"tiny records");
        let partitions = vec![
            PartitionData::default()
                .with_partition_index(0)
                .with_records(Some(big.clone())),
            PartitionData::default()
                .with_partition_index(1)
                .with_records(Some(small)),
            PartitionData::default()
                .with_partition_index(2)
                .with_records(Some(big.clone())),
        ];
        let response = ResponseKind::Fetch(FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(TopicName("t".to_string().into()))
                .with_partitions(partitions),
        ]));
        for version in [4, 11, 12] {
            let whole = encode_response(ApiKey::Fetch, version, 9, &response).unwrap();
            let chunks = encode_response_chunks(ApiKey::Fetch, version, 9, &response).unwrap();
            assert!(
                chunks.iter().any(|c| c.as_ptr() == big.as_ptr()),
                "records passed by reference"
            );
            assert_eq!(chunks.concat(), whole.to_vec(), "v{version}");
        }
    }

    #[test]
    fn bytes_after_the_body_are_ignored_like_kafka_does() {
        let request = MetadataRequest::default();
        let frame = encode_request(&request, 12, 5, "padded").unwrap();
        let mut padded = BytesMut::from(&frame[4..]);
        padded.extend_from_slice(&[0, 0, 0]);
        let mut padded = padded.freeze();
        let (api_key, header) = decode_header(&mut padded).unwrap();
        let body = decode_body(api_key, header.request_api_version, &mut padded).unwrap();
        assert_eq!(body, RequestKind::Metadata(request));
    }

    #[test]
    fn unknown_api_key_is_reported_with_its_number() {
        let mut frame = Bytes::from_static(&[0x27, 0x0f, 0, 0, 0, 0, 0, 7]);
        assert!(matches!(
            decode_header(&mut frame),
            Err(CodecError::UnknownApiKey { api_key: 9999 })
        ));
    }

    #[test]
    fn short_frame_is_an_error_not_a_panic() {
        for len in 0..8 {
            let mut frame = Bytes::from(vec![0u8; len]);
            assert!(decode_header(&mut frame).is_err());
        }
    }

    #[test]
    fn truncated_body_is_malformed() {
        let request = ApiVersionsRequest::default()
            .with_client_software_name("x".to_string().into())
            .with_client_software_version("1".to_string().into());
        let frame = encode_request(&request, 3, 1, "c").unwrap();
        let mut cut = frame.slice(4..frame.len() - 2);
        let (api_key, header) = decode_header(&mut cut).unwrap();
        let result = decode_body(api_key, header.request_api_version, &mut cut);
        assert!(
            matches!(result, Err(CodecError::Malformed { .. })),
            "{result:?}"
        );
    }

    proptest::proptest! {
        /// Whatever a peer sends after a known API key and version, decoding returns (Ok or a
        /// typed error): no panic, no allocation sized by a wire count.
        #[test]
        fn decoding_arbitrary_bodies_never_panics(
            api_key in proptest::sample::select(vec![0i16, 1, 2, 3, 18, 19, 20, 22, 32, 37]),
            version in 0i16..14,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let mut frame = bytes::BytesMut::new();
            frame.put_i16(api_key);
            frame.put_i16(version);
            frame.put_i32(1);
            frame.put_i16(-1);
            frame.extend_from_slice(&body);
            let mut frame = frame.freeze();
            if let Ok((key, header)) = decode_header(&mut frame) {
                let _ = decode_body(key, header.request_api_version, &mut frame);
            }
        }
    }

    /// A request of `count` group ids of `name_len` characters, the way the attacker and
    /// a real admin client would send it.
    fn describe_groups(version: i16, count: usize, name_len: usize) -> Bytes {
        use kafka_protocol::messages::{DescribeGroupsRequest, GroupId};
        let name: String = "g".repeat(name_len);
        let groups = (0..count).map(|_| GroupId(name.clone().into())).collect();
        let request = DescribeGroupsRequest::default().with_groups(groups);
        encode_request(&request, version, 1, "c")
            .unwrap()
            .slice(4..)
    }

    #[test]
    fn request_of_empty_names_is_refused_for_its_decoded_size() {
        for version in [0, 5] {
            let mut frame = describe_groups(version, 200_000, 0);
            let (api_key, header) = decode_header(&mut frame).unwrap();
            let result = decode_body(api_key, header.request_api_version, &mut frame);
            assert!(
                matches!(&result, Err(CodecError::Malformed { reason, .. })
                    if reason.contains("allowance")),
                "v{version}: {result:?}"
            );
        }
    }

    #[test]
    fn requests_of_real_names_and_partitions_fit_the_allowance() {
        for version in [0, 5] {
            let mut frame = describe_groups(version, 200_000, 8);
            let (api_key, header) = decode_header(&mut frame).unwrap();
            let RequestKind::DescribeGroups(request) =
                decode_body(api_key, header.request_api_version, &mut frame).unwrap()
            else {
                panic!("not a DescribeGroups request");
            };
            assert_eq!(request.groups.len(), 200_000);
        }
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        use kafka_protocol::messages::{FetchRequest, TopicName};
        let partitions: Vec<FetchPartition> = (0..50_000)
            .map(|p| FetchPartition::default().with_partition(p))
            .collect();
        let request = FetchRequest::default().with_topics(vec![FetchTopic::default()
            .with_topic(TopicName("t".to_string().into()))
            .with_partitions(partitions)]);
        for version in [4, 12] {
            let mut frame = encode_request(&request, version, 1, "c")
                .unwrap()
                .slice(4..);
            let (api_key, header) = decode_header(&mut frame).unwrap();
            let decoded = decode_body(api_key, header.request_api_version, &mut frame);
            assert!(decoded.is_ok(), "Fetch v{version}: {decoded:?}");
        }
    }

    #[test]
    fn metadata_for_ten_thousand_short_topic_names_fits_the_allowance() {
        use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
        use kafka_protocol::messages::{MetadataRequest, TopicName};
        let topics: Vec<MetadataRequestTopic> = (0..10_000)
            .map(|i| {
                MetadataRequestTopic::default().with_name(Some(TopicName(format!("t{i}").into())))
            })
            .collect();
        let request = MetadataRequest::default().with_topics(Some(topics));
        for version in [1, 9, 12] {
            let mut frame = encode_request(&request, version, 1, "c")
                .unwrap()
                .slice(4..);
            let (api_key, header) = decode_header(&mut frame).unwrap();
            let decoded = decode_body(api_key, header.request_api_version, &mut frame);
            assert!(decoded.is_ok(), "Metadata v{version}: {decoded:?}");
        }
    }

    #[test]
    fn huge_declared_array_is_an_error_not_an_abort() {
        // Metadata v1: topics array claiming 2^31-1 entries in a 4-byte body.
        let mut body = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(decode_body(ApiKey::Metadata, 1, &mut body).is_err());
    }
}
