//! How a transactional id's state is written to `__transaction_state`: Kafka's
//! `TransactionLogKey` / `TransactionLogValue` records (so the topic reads the same with Kafka's
//! tools), big-endian, strings as i16 length + UTF-8.
//!
//! ```text
//! key:   version i16 = 0 | transactional id string
//! value: version i16 = 0 | producer id i64 | producer epoch i16 | timeout ms i32
//!        | state i8 | partitions: count i32 (-1: null), each topic string
//!          | partition count i32 | partition i32... | last update ms i64 | start ms i64
//! ```
//!
//! A null value (tombstone) forgets the id. Version 1 values (Kafka's flexible version, with
//! tagged fields) are read too: the same fields in compact encodings; tags are skipped.

use std::collections::BTreeSet;

use bytes::{Buf, Bytes};

use crate::record_format::{
    get_i16, get_i32, get_i64, get_varint, need, put_string, skip_tags, take_utf8, Malformed,
};

use super::state::{TxnMetadata, TxnState, NO_PRODUCER_EPOCH, NO_PRODUCER_ID};

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;
/// Bounds what one record may claim to hold, so a corrupt count cannot allocate much.
const MAX_PARTITIONS: usize = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed {TOPIC} record: {0}", TOPIC = super::TRANSACTION_STATE_TOPIC)]
pub struct FormatError(pub &'static str);

impl From<Malformed> for FormatError {
    fn from(Malformed(what): Malformed) -> FormatError {
        FormatError(what)
    }
}

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut out = Vec::with_capacity(4 + transactional_id.len());
    out.extend_from_slice(&KEY_VERSION.to_be_bytes());
    put_string(&mut out, transactional_id);
    out.into()
}

pub fn decode_key(mut buf: Bytes) -> Result<String, FormatError> {
    match get_i16(&mut buf)? {
        0 => get_string(&mut buf),
        // Version 1 would be flexible; Kafka has only ever written version 0 keys.
        _ => Err(FormatError("unknown key version")),
    }
}

pub fn encode_value(m: &TxnMetadata) -> Bytes {
    let mut out = Vec::new();
    out.extend_from_slice(&VALUE_VERSION.to_be_bytes());
    out.extend_from_slice(&m.producer_id.to_be_bytes());
    out.extend_from_slice(&m.producer_epoch.to_be_bytes());
    out.extend_from_slice(&m.timeout_ms.to_be_bytes());
    out.push(m.state.id() as u8);
    let topics = grouped(&m.partitions);
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for (topic, partitions) in topics {
        put_string(&mut out, topic);
        out.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
        for p in partitions {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    out.extend_from_slice(&m.update_ms.to_be_bytes());
    out.extend_from_slice(&m.start_ms.to_be_bytes());
    out.into()
}

/// The partitions by topic, in order.
pub fn grouped(partitions: &BTreeSet<(String, i32)>) -> Vec<(&str, Vec<i32>)> {
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in partitions {
        match topics.last_mut() {
            Some((last, list)) if *last == topic.as_str() => list.push(*partition),
            _ => topics.push((topic.as_str(), vec![*partition])),
        }
    }
    topics
}

pub fn decode_value(transactional_id: &str, mut buf: Bytes) -> Result<TxnMetadata, FormatError> {
    let version = get_i16(&mut buf)?;
    let flexible = match version {
        0 => false,
        1 => true,
        _ => return Err(FormatError("unknown value version")),
    };
    let producer_id = get_i64(&mut buf)?;
    let producer_epoch = get_i16(&mut buf)?;
    let timeout_ms = get_i32(&mut buf)?;
    need(&buf, 1)?;
    let state = TxnState::from_id(buf.get_i8()).ok_or(FormatError("unknown state"))?;
    let mut partitions = BTreeSet::new();
    let topics = get_len(&mut buf, flexible)?;
    for _ in 0..topics.unwrap_or(0) {
        let topic = if flexible {
            get_compact_string(&mut buf)?
        } else {
            get_string(&mut buf)?
        };
        let count = get_len(&mut buf, flexible)?.unwrap_or(0);
        for _ in 0..count {
            partitions.insert((topic.clone(), get_i32(&mut buf)?));
        }
        if flexible {
            skip_tags(&mut buf)?;
        }
    }
    let update_ms = get_i64(&mut buf)?;
    let start_ms = get_i64(&mut buf)?;
    Ok(TxnMetadata {
        transactional_id: transactional_id.to_string(),
        producer_id,
        last_producer_id: NO_PRODUCER_ID,
        producer_epoch,
        last_producer_epoch: NO_PRODUCER_EPOCH,
        timeout_ms,
        state,
        partitions,
        start_ms,
        update_ms,
    })
}

fn get_string(buf: &mut Bytes) -> Result<String, FormatError> {
    let len = get_i16(buf)?;
    let len = usize::try_from(len).map_err(|_| FormatError("null where a string is required"))?;
    Ok(take_utf8(buf, len)?)
}

fn get_compact_string(buf: &mut Bytes) -> Result<String, FormatError> {
    let len = get_varint(buf)?;
    let len = usize::try_from(len.checked_sub(1).ok_or(FormatError("null string"))?)
        .map_err(|_| FormatError("string too long"))?;
    Ok(take_utf8(buf, len)?)
}

/// An array length (None: null), bounded.
fn get_len(buf: &mut Bytes, flexible: bool) -> Result<Option<usize>, FormatError> {
    let len = if flexible {
        match get_varint(buf)? {
            0 => return Ok(None),
            n => (n - 1) as usize,
        }
    } else {
        match usize::try_from(get_i32(buf)?) {
            Ok(n) => n,
            Err(_) => return Ok(None),
        }
    };
    if len > MAX_PARTITIONS || len > buf.remaining() {
        return Err(FormatError("array length beyond the record"));
    }
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TxnMetadata {
        let mut m = TxnMetadata::new("tx-1", 4000, 60_000, 1_000);
        m.producer_epoch = 3;
        m.state = TxnState::Ongoing;
        m.partitions = [
            ("a".to_string(), 0),
            ("a".to_string(), 2),
            ("b".to_string(), 1),
        ]
        .into_iter()
        .collect();
        m.start_ms = 900;
        m
    }

    #[test]
    fn key_is_version_0_and_the_id() {
        let key = encode_key("tx-1");
        assert_eq!(&key[..], &[0, 0, 0, 4, b't', b'x', b'-', b'1']);
        assert_eq!(decode_key(key).unwrap(), "tx-1");
    }

    #[test]
    fn value_round_trips_in_kafkas_v0_layout() {
        let m = sample();
        let bytes = encode_value(&m);
        // version, pid, epoch, timeout, state, 2 topics: "a" [0,2], "b" [1], two timestamps.
        assert_eq!(
            bytes.len(),
            2 + 8 + 2 + 4 + 1 + 4 + (3 + 4 + 8) + (3 + 4 + 4) + 8 + 8
        );
        assert_eq!(bytes[16], 1, "Ongoing is state 1");
        assert_eq!(decode_value("tx-1", bytes).unwrap(), m);
    }

    #[test]
    fn truncated_or_corrupt_values_are_errors() {
        let bytes = encode_value(&sample());
        for cut in 0..bytes.len() {
            assert!(
                decode_value("t", bytes.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        let mut bad = bytes.to_vec();
        bad[16] = 42;
        assert!(decode_value("t", bad.into()).is_err());
    }

    #[test]
    fn flexible_values_are_read() {
        // Version 1: same fields, compact array/string lengths and tagged fields.
        let mut v = vec![0, 1];
        v.extend_from_slice(&7i64.to_be_bytes());
        v.extend_from_slice(&2i16.to_be_bytes());
        v.extend_from_slice(&1000i32.to_be_bytes());
        v.push(4);
        v.push(2); // one topic
        v.push(2);
        v.push(b't');
        v.push(2); // one partition
        v.extend_from_slice(&5i32.to_be_bytes());
        v.push(0); // topic's tags
        v.extend_from_slice(&11i64.to_be_bytes());
        v.extend_from_slice(&10i64.to_be_bytes());
        v.push(0); // value's tags
        let m = decode_value("x", v.into()).unwrap();
        assert_eq!(m.producer_id, 7);
        assert_eq!(m.state, TxnState::CompleteCommit);
        assert!(m.partitions.contains(&("t".to_string(), 5)));
        assert_eq!((m.update_ms, m.start_ms), (11, 10));
    }
}
