//! Consumer groups in `__consumer_offsets`, with Kafka's record types (the key's version is the
//! record type; keys are classic-encoded, values are flexible, version 0):
//!
//! ```text
//! 3 ConsumerGroupMetadata              key: group            value: epoch
//! 5 ConsumerGroupMemberMetadata        key: group, member    value: instance, rack, client id,
//!                                        client host, subscribed names, regex, rebalance
//!                                        timeout, server assignor
//! 6 ConsumerGroupTargetAssignmentMetadata key: group         value: assignment epoch
//! 7 ConsumerGroupTargetAssignmentMember   key: group, member value: topic partitions
//! 8 ConsumerGroupCurrentMemberAssignment  key: group, member value: member epoch, previous
//!                                        epoch, state, assigned, pending revocation
//! ```
//!
//! A group's records are derived from its state ([`group_records`]); the coordinator writes those
//! that changed since the last write and tombstones for those gone ([`ConsumerGroup::diff`]),
//! and replay ([`Stored`]) rebuilds the group from the latest value of each key.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, Bytes};
use uuid::Uuid;

use super::group::{ConsumerGroup, ConsumerMember};
use super::reconcile::{MemberState, Reconciliation};
use super::Assignment;
use crate::group::log_format::{get_string, FormatError};
use crate::record_format::{get_i16, get_i32, get_u8, get_varint, need, put_string, skip_tags};

pub const METADATA: i16 = 3;
pub const MEMBER: i16 = 5;
pub const TARGET_METADATA: i16 = 6;
pub const TARGET_MEMBER: i16 = 7;
pub const CURRENT_MEMBER: i16 = 8;

/// A consumer group record key: (record type, group, member for the per-member ones).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConsumerKey {
    pub kind: i16,
    pub group: String,
    pub member: Option<String>,
}

pub fn encode_key(key: &ConsumerKey) -> Bytes {
    let mut out = key.kind.to_be_bytes().to_vec();
    put_string(&mut out, &key.group);
    if let Some(member) = &key.member {
        put_string(&mut out, member);
    }
    out.into()
}

/// Decodes the rest of a key whose version (`kind`) was read already.
pub fn decode_key(kind: i16, buf: &mut Bytes) -> Result<ConsumerKey, FormatError> {
    let group = get_string(buf)?;
    let member = match kind {
        METADATA | TARGET_METADATA => None,
        MEMBER | TARGET_MEMBER | CURRENT_MEMBER => Some(get_string(buf)?),
        _ => return Err(FormatError("unknown consumer group record type")),
    };
    Ok(ConsumerKey {
        kind,
        group,
        member,
    })
}

/// Every record of `group` (id `group_id`), by key.
pub fn group_records(group_id: &str, group: &ConsumerGroup) -> BTreeMap<ConsumerKey, Bytes> {
    let key = |kind, member: Option<&str>| ConsumerKey {
        kind,
        group: group_id.to_string(),
        member: member.map(str::to_string),
    };
    let mut out = BTreeMap::new();
    out.insert(key(METADATA, None), int32_value(group.epoch));
    out.insert(
        key(TARGET_METADATA, None),
        int32_value(group.assignment_epoch),
    );
    for (id, member) in &group.members {
        out.insert(key(MEMBER, Some(id)), member_value(member));
        let target = group.target.get(id).cloned().unwrap_or_default();
        let mut value = value_header();
        put_assignment(&mut value, &target);
        value.push(0);
        out.insert(key(TARGET_MEMBER, Some(id)), value.into());
        out.insert(
            key(CURRENT_MEMBER, Some(id)),
            current_value(&member.reconciliation),
        );
    }
    out
}

impl ConsumerGroup {
    /// The records to write so the log matches the group: changed values, and tombstones
    /// (`None`) for keys no longer there. Remembers them as written.
    pub fn diff(&mut self, group_id: &str) -> Vec<(Bytes, Option<Bytes>)> {
        let now = group_records(group_id, self);
        let mut out = Vec::new();
        // Tombstones first, member records before the group's (Kafka's order on removal).
        for key in self.written.keys().rev() {
            if !now.contains_key(key) {
                out.push((encode_key(key), None));
            }
        }
        for (key, value) in &now {
            if self.written.get(key) != Some(value) {
                out.push((encode_key(key), Some(value.clone())));
            }
        }
        self.written = now;
        out
    }

    /// Tombstones for every record written for the group (deletion, type change).
    pub fn tombstones(&mut self) -> Vec<(Bytes, Option<Bytes>)> {
        let written = std::mem::take(&mut self.written);
        written
            .keys()
            .rev()
            .map(|k| (encode_key(k), None))
            .collect()
    }
}

/// A consumer group as replay finds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    pub records: BTreeMap<ConsumerKey, Bytes>,
}

impl Stored {
    /// Rebuilds the group; members without metadata or a current assignment are skipped.
    pub fn restore(self, now_ms: i64) -> Result<ConsumerGroup, FormatError> {
        let mut group = ConsumerGroup {
            metadata_unknown: true,
            ..ConsumerGroup::default()
        };
        for (key, value) in &self.records {
            let mut buf = value.clone();
            get_i16(&mut buf)?;
            match (key.kind, key.member.as_deref()) {
                (METADATA, None) => group.epoch = get_i32(&mut buf)?,
                (TARGET_METADATA, None) => group.assignment_epoch = get_i32(&mut buf)?,
                (MEMBER, Some(id)) => {
                    let member = decode_member(id, &mut buf, now_ms)?;
                    if let Some(instance) = &member.instance_id {
                        group
                            .static_members
                            .insert(instance.clone(), id.to_string());
                    }
                    group.members.insert(id.to_string(), member);
                }
                (TARGET_MEMBER, Some(id)) => {
                    group
                        .target
                        .insert(id.to_string(), get_assignment(&mut buf)?);
                }
                _ => {}
            }
        }
        for (key, value) in &self.records {
            if let (CURRENT_MEMBER, Some(id)) = (key.kind, key.member.as_deref()) {
                let mut buf = value.clone();
                get_i16(&mut buf)?;
                if let Some(member) = group.members.get_mut(id) {
                    member.reconciliation = decode_current(&mut buf)?;
                }
            }
        }
        group.written = self.records;
        Ok(group)
    }
}

fn value_header() -> Vec<u8> {
    0i16.to_be_bytes().to_vec()
}

fn int32_value(v: i32) -> Bytes {
    let mut out = value_header();
    out.extend_from_slice(&v.to_be_bytes());
    out.push(0); // no tagged fields
    out.into()
}

fn member_value(m: &ConsumerMember) -> Bytes {
    let mut out = value_header();
    put_compact(&mut out, m.instance_id.as_deref());
    put_compact(&mut out, m.rack_id.as_deref());
    put_compact(&mut out, Some(&m.client_id));
    put_compact(&mut out, Some(&m.client_host));
    put_varint(&mut out, m.subscribed_names.len() as u64 + 1);
    for name in &m.subscribed_names {
        put_compact(&mut out, Some(name));
    }
    put_compact(
        &mut out,
        m.subscribed_regex.as_ref().map(|(s, _)| s.as_str()),
    );
    out.extend_from_slice(&m.rebalance_timeout_ms.to_be_bytes());
    put_compact(&mut out, m.server_assignor.as_deref());
    out.push(0);
    out.into()
}

fn decode_member(id: &str, buf: &mut Bytes, now_ms: i64) -> Result<ConsumerMember, FormatError> {
    let mut m = ConsumerMember::new(id.to_string(), now_ms);
    m.instance_id = get_compact(buf)?;
    m.rack_id = get_compact(buf)?;
    m.client_id = get_compact(buf)?.unwrap_or_default();
    m.client_host = get_compact(buf)?.unwrap_or_default();
    let n = get_varint(buf)?.saturating_sub(1);
    for _ in 0..n {
        m.subscribed_names
            .push(get_compact(buf)?.unwrap_or_default());
    }
    if let Some(regex) = get_compact(buf)? {
        match regex::Regex::new(&format!("^(?:{regex})$")) {
            Ok(compiled) => m.subscribed_regex = Some((regex, compiled)),
            Err(_) => return Err(FormatError("stored regex does not compile")),
        }
    }
    m.rebalance_timeout_ms = get_i32(buf)?;
    m.server_assignor = get_compact(buf)?;
    Ok(m)
}

fn current_value(r: &Reconciliation) -> Bytes {
    let mut out = value_header();
    out.extend_from_slice(&r.member_epoch.to_be_bytes());
    out.extend_from_slice(&r.previous_epoch.to_be_bytes());
    out.push(match r.state {
        MemberState::Stable => 0,
        MemberState::UnrevokedPartitions => 1,
        MemberState::UnreleasedPartitions => 2,
    });
    put_assignment(&mut out, &r.assigned);
    put_assignment(&mut out, &r.revoking);
    out.push(0);
    out.into()
}

fn decode_current(buf: &mut Bytes) -> Result<Reconciliation, FormatError> {
    let member_epoch = get_i32(buf)?;
    let previous_epoch = get_i32(buf)?;
    let state = match get_u8(buf)? {
        0 => MemberState::Stable,
        1 => MemberState::UnrevokedPartitions,
        2 => MemberState::UnreleasedPartitions,
        _ => return Err(FormatError("unknown member state")),
    };
    Ok(Reconciliation {
        state,
        member_epoch,
        previous_epoch,
        assigned: get_assignment(buf)?,
        revoking: get_assignment(buf)?,
    })
}

/// `[]TopicPartitions` (topic id, `[]int32`), each element with its empty tagged fields.
fn put_assignment(out: &mut Vec<u8>, a: &Assignment) {
    let topics: Vec<_> = a.iter().filter(|(_, p)| !p.is_empty()).collect();
    put_varint(out, topics.len() as u64 + 1);
    for (topic, partitions) in topics {
        out.extend_from_slice(topic.as_bytes());
        put_varint(out, partitions.len() as u64 + 1);
        for p in partitions {
            out.extend_from_slice(&p.to_be_bytes());
        }
        out.push(0);
    }
}

fn get_assignment(buf: &mut Bytes) -> Result<Assignment, FormatError> {
    let mut out = Assignment::new();
    let topics = get_varint(buf)?.saturating_sub(1);
    for _ in 0..topics {
        need(buf, 16)?;
        let mut id = [0u8; 16];
        buf.copy_to_slice(&mut id);
        let count = get_varint(buf)?.saturating_sub(1);
        let mut partitions = BTreeSet::new();
        for _ in 0..count {
            partitions.insert(get_i32(buf)?);
        }
        skip_tags(buf)?;
        out.insert(Uuid::from_bytes(id), partitions);
    }
    Ok(out)
}

fn put_compact(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            put_varint(out, s.len() as u64 + 1);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_compact(buf: &mut Bytes) -> Result<Option<String>, FormatError> {
    let len = get_varint(buf)?;
    if len == 0 {
        return Ok(None);
    }
    let len = (len - 1) as usize;
    need(buf, len)?;
    String::from_utf8(buf.split_to(len).to_vec())
        .map(Some)
        .map_err(|_| FormatError("string is not UTF-8"))
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
