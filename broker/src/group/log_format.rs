//! How the coordinator's state is written to `__consumer_offsets`: the record keys and values
//! Kafka itself uses (so the topic reads the same with Kafka's tools), big-endian, strings as
//! i16 length + UTF-8, bytes as i32 length + data, nullable strings with length -1 for null.
//!
//! ```text
//! offset commit   key:   version i16 = 1 | group string | topic string | partition i32
//!                 value: version i16 = 3 | offset i64 | leader epoch i32 | metadata string
//!                        | commit timestamp i64
//! group metadata  key:   version i16 = 2 | group string
//!                 value: version i16 = 3 | protocol type string | generation i32
//!                        | protocol nullable string | leader nullable string
//!                        | state timestamp i64 | member count i32 | members, each:
//!                          member id string | instance id nullable string | client id string
//!                          | client host string | rebalance timeout i32 | session timeout i32
//!                          | subscription bytes | assignment bytes
//! ```
//!
//! A null value (tombstone) deletes: an offset key's tombstone forgets that committed offset, a
//! group key's tombstone forgets the group. The topic is compacted, so the latest record per key
//! is all that replay needs.

use bytes::Bytes;

use super::state::CommittedOffset;
use crate::record_format::{get_i16, get_i32, get_i64, need, put_string, Malformed};

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group(String),
    /// KIP-848 consumer group records (types 3, 5-8), see `consumer::records`.
    Consumer(super::consumer::records::ConsumerKey),
}

/// A stored member of a group's current generation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's metadata as of its last completed rebalance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredGroup {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<StoredMember>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed {OFFSETS}: {0}", OFFSETS = super::OFFSETS_TOPIC)]
pub struct FormatError(pub &'static str);

impl From<Malformed> for FormatError {
    fn from(Malformed(what): Malformed) -> FormatError {
        FormatError(what)
    }
}

pub fn encode_key(key: &RecordKey) -> Bytes {
    let mut out = Vec::new();
    match key {
        RecordKey::Offset {
            group,
            topic,
            partition,
        } => {
            out.extend_from_slice(&OFFSET_KEY_VERSION.to_be_bytes());
            put_string(&mut out, group);
            put_string(&mut out, topic);
            out.extend_from_slice(&partition.to_be_bytes());
        }
        RecordKey::Group(group) => {
            out.extend_from_slice(&GROUP_KEY_VERSION.to_be_bytes());
            put_string(&mut out, group);
        }
        RecordKey::Consumer(key) => return super::consumer::records::encode_key(key),
    }
    out.into()
}

pub fn decode_key(mut buf: Bytes) -> Result<RecordKey, FormatError> {
    match get_i16(&mut buf)? {
        0 | 1 => Ok(RecordKey::Offset {
            group: get_string(&mut buf)?,
            topic: get_string(&mut buf)?,
            partition: get_i32(&mut buf)?,
        }),
        2 => Ok(RecordKey::Group(get_string(&mut buf)?)),
        kind @ 3..=8 => {
            super::consumer::records::decode_key(kind, &mut buf).map(RecordKey::Consumer)
        }
        _ => Err(FormatError("unknown key version")),
    }
}

pub fn encode_offset(value: &CommittedOffset) -> Bytes {
    let mut out = Vec::new();
    out.extend_from_slice(&OFFSET_VALUE_VERSION.to_be_bytes());
    out.extend_from_slice(&value.offset.to_be_bytes());
    out.extend_from_slice(&value.leader_epoch.to_be_bytes());
    put_string(&mut out, &value.metadata);
    out.extend_from_slice(&value.commit_timestamp_ms.to_be_bytes());
    out.into()
}

pub fn decode_offset(mut buf: Bytes) -> Result<CommittedOffset, FormatError> {
    let version = get_i16(&mut buf)?;
    let offset = get_i64(&mut buf)?;
    let leader_epoch = if version >= 3 { get_i32(&mut buf)? } else { -1 };
    let metadata = get_string(&mut buf)?;
    let commit_timestamp_ms = get_i64(&mut buf)?;
    Ok(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

pub fn encode_group(group: &StoredGroup) -> Bytes {
    let mut out = Vec::new();
    out.extend_from_slice(&GROUP_VALUE_VERSION.to_be_bytes());
    put_string(&mut out, &group.protocol_type);
    out.extend_from_slice(&group.generation.to_be_bytes());
    put_nullable_string(&mut out, group.protocol.as_deref());
    put_nullable_string(&mut out, group.leader.as_deref());
    out.extend_from_slice(&group.state_timestamp_ms.to_be_bytes());
    out.extend_from_slice(&(group.members.len() as i32).to_be_bytes());
    for m in &group.members {
        put_string(&mut out, &m.member_id);
        put_nullable_string(&mut out, m.instance_id.as_deref());
        put_string(&mut out, &m.client_id);
        put_string(&mut out, &m.client_host);
        out.extend_from_slice(&m.rebalance_timeout_ms.to_be_bytes());
        out.extend_from_slice(&m.session_timeout_ms.to_be_bytes());
        put_bytes(&mut out, &m.subscription);
        put_bytes(&mut out, &m.assignment);
    }
    out.into()
}

pub fn decode_group(mut buf: Bytes) -> Result<StoredGroup, FormatError> {
    let version = get_i16(&mut buf)?;
    if !(0..=GROUP_VALUE_VERSION).contains(&version) {
        return Err(FormatError("unknown group value version"));
    }
    let protocol_type = get_string(&mut buf)?;
    let generation = get_i32(&mut buf)?;
    let protocol = get_nullable_string(&mut buf)?;
    let leader = get_nullable_string(&mut buf)?;
    let state_timestamp_ms = if version >= 2 { get_i64(&mut buf)? } else { -1 };
    let count = get_i32(&mut buf)?;
    let mut members = Vec::new();
    for _ in 0..count.max(0) {
        let member_id = get_string(&mut buf)?;
        let instance_id = if version >= 3 {
            get_nullable_string(&mut buf)?
        } else {
            None
        };
        let client_id = get_string(&mut buf)?;
        let client_host = get_string(&mut buf)?;
        let rebalance_timeout_ms = if version >= 1 { get_i32(&mut buf)? } else { -1 };
        let session_timeout_ms = get_i32(&mut buf)?;
        members.push(StoredMember {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms: if rebalance_timeout_ms < 0 {
                session_timeout_ms
            } else {
                rebalance_timeout_ms
            },
            session_timeout_ms,
            subscription: get_bytes(&mut buf)?,
            assignment: get_bytes(&mut buf)?,
        });
    }
    Ok(StoredGroup {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp_ms,
        members,
    })
}

fn put_nullable_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_string(out, s),
        None => out.extend_from_slice(&(-1i16).to_be_bytes()),
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
    out.extend_from_slice(b);
}

fn get_nullable_string(buf: &mut Bytes) -> Result<Option<String>, FormatError> {
    let len = get_i16(buf)?;
    if len < 0 {
        return Ok(None);
    }
    need(buf, len as usize)?;
    let raw = buf.split_to(len as usize);
    String::from_utf8(raw.to_vec())
        .map(Some)
        .map_err(|_| FormatError("string is not UTF-8"))
}

pub(crate) fn get_string(buf: &mut Bytes) -> Result<String, FormatError> {
    get_nullable_string(buf)?.ok_or(FormatError("null where a string is required"))
}

fn get_bytes(buf: &mut Bytes) -> Result<Bytes, FormatError> {
    let len = get_i32(buf)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    need(buf, len as usize)?;
    Ok(buf.split_to(len as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_differ_by_kind() {
        let offset = RecordKey::Offset {
            group: "g".into(),
            topic: "orders".into(),
            partition: 7,
        };
        let group = RecordKey::Group("g".into());
        assert_eq!(decode_key(encode_key(&offset)).unwrap(), offset);
        assert_eq!(decode_key(encode_key(&group)).unwrap(), group);
        assert_ne!(encode_key(&offset), encode_key(&group));
    }

    #[test]
    fn offset_value_matches_kafkas_v3_layout() {
        let value = CommittedOffset {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_timestamp_ms: 1000,
        };
        let bytes = encode_offset(&value);
        assert_eq!(&bytes[..2], &[0, 3]);
        assert_eq!(bytes.len(), 2 + 8 + 4 + 2 + 1 + 8);
        assert_eq!(decode_offset(bytes).unwrap(), value);
    }

    #[test]
    fn group_value_round_trips_with_members() {
        let group = StoredGroup {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp_ms: 99,
            members: vec![StoredMember {
                member_id: "m1".into(),
                instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 10_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group(encode_group(&group)).unwrap(), group);
    }

    #[test]
    fn truncated_values_are_errors() {
        let bytes = encode_offset(&CommittedOffset {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
        });
        for cut in 0..bytes.len() {
            assert!(decode_offset(bytes.slice(..cut)).is_err(), "cut at {cut}");
        }
    }
}
