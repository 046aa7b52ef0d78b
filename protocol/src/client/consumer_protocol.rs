//! The `consumer` embedded protocol of classic groups: the subscription a member sends in
//! JoinGroup, the assignment the leader sends in SyncGroup (each a version i16 followed by the
//! body), and the `range` assignor the leader runs.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::ConsumerProtocolAssignment;
use kafka_protocol::messages::consumer_protocol_subscription::ConsumerProtocolSubscription;
use kafka_protocol::protocol::{Decodable, Encodable};

use super::ClientError;

/// The range assignor: per topic, the subscribed members sorted by id each take a consecutive
/// run of partitions, the first `partitions % members` of them one more.
pub fn range_assign(
    members: &[(String, Vec<String>)],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut result: BTreeMap<String, BTreeMap<String, Vec<i32>>> = members
        .iter()
        .map(|(id, _)| (id.clone(), BTreeMap::new()))
        .collect();
    for (topic, &count) in partitions {
        let mut subscribed: Vec<&String> = members
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(id, _)| id)
            .collect();
        subscribed.sort();
        if subscribed.is_empty() {
            continue;
        }
        let n = subscribed.len() as i32;
        let (each, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, id) in subscribed.into_iter().enumerate() {
            let take = each + i32::from((i as i32) < extra);
            let assigned: Vec<i32> = (next..next + take).collect();
            next += take;
            if !assigned.is_empty() {
                if let Some(member) = result.get_mut(id) {
                    member.insert(topic.clone(), assigned);
                }
            }
        }
    }
    result
}

/// The topics of a member's `consumer` protocol subscription.
pub fn decode_subscription(bytes: &Bytes) -> Result<Vec<String>, ClientError> {
    let subscription: ConsumerProtocolSubscription = decode_versioned(bytes, "subscription")?;
    Ok(subscription.topics.iter().map(|t| t.to_string()).collect())
}

/// topic -> partitions of a `consumer` protocol assignment (empty bytes: nothing assigned).
pub fn decode_assignment(bytes: &Bytes) -> Result<BTreeMap<String, Vec<i32>>, ClientError> {
    if bytes.is_empty() {
        return Ok(BTreeMap::new());
    }
    let assignment: ConsumerProtocolAssignment = decode_versioned(bytes, "assignment")?;
    let mut topics = BTreeMap::new();
    for tp in assignment.assigned_partitions {
        let mut partitions = tp.partitions;
        partitions.sort();
        topics.insert(tp.topic.to_string(), partitions);
    }
    Ok(topics)
}

/// Consumer protocol payloads are a version (i16) followed by the body at that version.
pub fn encode_versioned<T: Encodable>(message: &T, version: i16) -> Result<Bytes, ClientError> {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    message
        .encode(&mut buf, version)
        .map_err(|e| ClientError::Protocol(format!("cannot encode consumer protocol: {e}")))?;
    Ok(buf.freeze())
}

/// Newer consumer protocol versions only append fields, so a version above the newest this crate
/// knows is read as the newest (what Kafka's own clients do).
fn decode_versioned<T: Decodable>(bytes: &Bytes, what: &str) -> Result<T, ClientError> {
    const NEWEST: i16 = 3;
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return Err(ClientError::Protocol(format!(
            "{what} of {} bytes",
            buf.len()
        )));
    }
    let version = buf.get_i16().clamp(0, NEWEST);
    T::decode(&mut buf, version)
        .map_err(|e| ClientError::Protocol(format!("malformed consumer protocol {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::cluster::topic_name;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;

    fn members(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        list.iter()
            .map(|(id, topics)| {
                (
                    id.to_string(),
                    topics.iter().map(|t| t.to_string()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn range_gives_the_first_members_the_extra_partitions() {
        let members = members(&[("b", &["t"]), ("a", &["t"])]);
        let counts = BTreeMap::from([("t".to_string(), 5)]);
        let result = range_assign(&members, &counts);
        assert_eq!(result["a"]["t"], vec![0, 1, 2]);
        assert_eq!(result["b"]["t"], vec![3, 4]);
    }

    #[test]
    fn range_assigns_every_partition_to_exactly_one_subscriber() {
        let members = members(&[("a", &["x", "y"]), ("b", &["y"]), ("c", &["x", "y"])]);
        let counts = BTreeMap::from([("x".to_string(), 7), ("y".to_string(), 2)]);
        let result = range_assign(&members, &counts);
        for (topic, count) in &counts {
            let mut all: Vec<i32> = result
                .values()
                .filter_map(|m| m.get(topic))
                .flatten()
                .copied()
                .collect();
            all.sort();
            assert_eq!(all, (0..*count).collect::<Vec<_>>(), "{topic}");
        }
        assert!(!result["b"].contains_key("x"));
        assert!(
            !result["c"].contains_key("y"),
            "2 partitions, 3 members: c gets none"
        );
    }

    #[test]
    fn assignment_round_trips_through_the_consumer_protocol() {
        let bytes = encode_versioned(
            &ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
                AssignedPartitions::default()
                    .with_topic(topic_name("t"))
                    .with_partitions(vec![2, 0]),
            ]),
            0,
        )
        .unwrap();
        let decoded = decode_assignment(&bytes).unwrap();
        assert_eq!(decoded, BTreeMap::from([("t".to_string(), vec![0, 2])]));
        assert!(decode_assignment(&Bytes::from_static(&[0])).is_err());
    }
}
