//! Leader epochs as clients see them, on a real broker whose leader epoch moves: records written
//! in one epoch, a `kill -9` and restart (the controller fences the old incarnation and makes the
//! broker leader again, two epochs later), records written in the new epoch. OffsetForLeaderEpoch
//! then reports each epoch's end offset (KIP-101/KIP-279), ListOffsets the epoch that wrote each
//! offset, and both refuse an old `current_leader_epoch` with FENCED_LEADER_EPOCH and a future one
//! with UNKNOWN_LEADER_EPOCH (KIP-320).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use inlet_integration_tests::cluster::{runtime, wait_for};
use inlet_integration_tests::kafka::create_topic_with;
use inlet_integration_tests::{raw, Broker};
use inlet_protocol::client::Client;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    BrokerId, ListOffsetsRequest, MetadataRequest, OffsetForLeaderEpochRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

const TOPIC: &str = "epochs";
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One record with timestamp `timestamp`, produced with acks=all; returns its offset.
fn produce(broker: &Broker, timestamp: i64) -> i64 {
    let batch = raw::plain_batch(None, Bytes::from_static(b"epoch test"), timestamp);
    let (code, offset) = raw::produce(broker.addr(), TOPIC, &batch);
    assert_eq!(code, 0, "produce at {timestamp}");
    offset
}

/// A protocol client with the runtime its connection lives on.
struct Session {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Session {
    fn connect(broker: &Broker) -> Session {
        let runtime = runtime();
        let client = runtime
            .block_on(Client::connect(broker.bootstrap(), "epoch-test"))
            .expect("connect");
        Session { runtime, client }
    }

    fn send<R>(&mut self, request: R, version: i16) -> Result<R::Response, String>
    where
        R: kafka_protocol::protocol::Request,
    {
        self.runtime
            .block_on(self.client.send_version(request, version))
            .map_err(|e| e.to_string())
    }
}

/// The partition's (leader, leader epoch) per Metadata.
fn leader(client: &mut Session) -> Option<(i32, i32)> {
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name(TOPIC))),
    ]));
    let response = client.send(request, 12).ok()?;
    let partition = response.topics.first()?.partitions.first()?;
    (partition.error_code == 0).then_some((partition.leader_id.0, partition.leader_epoch))
}

/// OffsetForLeaderEpoch for partition 0 of `topic` at `version`: (error, epoch, end offset).
fn end_offset(
    client: &mut Session,
    version: i16,
    replica_id: i32,
    topic: &str,
    current_leader_epoch: i32,
    leader_epoch: i32,
) -> (i16, i32, i64) {
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(current_leader_epoch)
                .with_leader_epoch(leader_epoch)])]);
    let response = client.send(request, version).expect("OffsetForLeaderEpoch");
    let p = &response.topics[0].partitions[0];
    assert_eq!((response.topics[0].topic.as_str(), p.partition), (topic, 0));
    (p.error_code, p.leader_epoch, p.end_offset)
}

/// OffsetForLeaderEpoch v4 from a consumer, for the test topic.
fn consumer_end_offset(client: &mut Session, current: i32, epoch: i32) -> (i16, i32, i64) {
    end_offset(client, 4, -1, TOPIC, current, epoch)
}

/// ListOffsets v6 for partition 0: (error, offset, leader epoch).
fn list_offset(client: &mut Session, current_leader_epoch: i32, timestamp: i64) -> (i16, i64, i32) {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(TOPIC))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_current_leader_epoch(current_leader_epoch)
                .with_timestamp(timestamp)])]);
    let response = client.send(request, 6).expect("ListOffsets");
    let p = &response.topics[0].partitions[0];
    (p.error_code, p.offset, p.leader_epoch)
}

const FENCED: i16 = ResponseError::FencedLeaderEpoch.code();
const UNKNOWN_EPOCH: i16 = ResponseError::UnknownLeaderEpoch.code();

#[test]
fn epoch_end_offsets_and_epoch_checks_follow_a_leader_change() {
    let mut broker = Broker::start();
    runtime().block_on(create_topic_with(&broker.bootstrap(), TOPIC, 1, &[]));
    let mut c = Session::connect(&broker);
    let ((_, first), _) = wait_for("the broker to lead the partition", || {
        leader(&mut c).filter(|(l, _)| *l == 1)
    });
    assert_eq!(first, 0, "a new partition starts at leader epoch 0");

    // Three records in epoch 0.
    let t0 = now_ms();
    for i in 0..3 {
        assert_eq!(produce(&broker, t0 + i), i);
    }
    assert_eq!(consumer_end_offset(&mut c, 0, 0), (0, 0, 3));

    // kill -9, restart: the new incarnation fences the old one (no leader, epoch 1), then is
    // unfenced and leads again (epoch 2).
    broker.kill9();
    broker.restart();
    let mut c = Session::connect(&broker);
    let ((_, second), _) = wait_for("the restarted broker to lead in a new epoch", || {
        leader(&mut c).filter(|&(l, e)| l == 1 && e > first)
    });
    assert_eq!(second, 2, "fenced, then led again: two leader changes");

    // Nothing written in the new epoch yet: it starts at the log end.
    assert_eq!(consumer_end_offset(&mut c, second, second), (0, second, 3));
    assert_eq!(consumer_end_offset(&mut c, second, first), (0, first, 3));

    // Two records in the new epoch.
    assert_eq!(produce(&broker, t0 + 10), 3);
    assert_eq!(produce(&broker, t0 + 11), 4);

    // Each epoch ends where the next written one starts; the latest at the log end; an epoch
    // that never wrote (1) answers with the last one at or below it; a future one is UNDEFINED.
    assert_eq!(consumer_end_offset(&mut c, second, 0), (0, 0, 3));
    assert_eq!(consumer_end_offset(&mut c, second, 1), (0, 0, 3));
    assert_eq!(consumer_end_offset(&mut c, second, second), (0, second, 5));
    assert_eq!(consumer_end_offset(&mut c, second, second + 1), (0, -1, -1));
    // Without a current epoch (-1) nothing is checked.
    assert_eq!(consumer_end_offset(&mut c, -1, 0), (0, 0, 3));
    // v2 (no replica id) and a follower naming itself (broker 1 is the only replica) alike.
    assert_eq!(end_offset(&mut c, 2, -2, TOPIC, second, 0), (0, 0, 3));
    assert_eq!(
        end_offset(&mut c, 4, 1, TOPIC, second, second),
        (0, second, 5)
    );

    // Stale and future current epochs.
    assert_eq!(consumer_end_offset(&mut c, first, 0), (FENCED, -1, -1));
    assert_eq!(
        consumer_end_offset(&mut c, second + 1, 0),
        (UNKNOWN_EPOCH, -1, -1)
    );

    // Who may not ask: a broker that is no replica; a partition that does not exist.
    assert_eq!(
        end_offset(&mut c, 4, 7, TOPIC, second, 0).0,
        ResponseError::NotLeaderOrFollower.code()
    );
    assert_eq!(
        end_offset(&mut c, 4, -1, "no-such-topic", -1, 0).0,
        ResponseError::UnknownTopicOrPartition.code()
    );

    // ListOffsets: the same epoch check, and each offset with the epoch that wrote it.
    assert_eq!(list_offset(&mut c, second, LATEST), (0, 5, second));
    assert_eq!(list_offset(&mut c, -1, LATEST), (0, 5, second));
    assert_eq!(list_offset(&mut c, second, EARLIEST), (0, 0, 0));
    assert_eq!(list_offset(&mut c, second, t0 + 1), (0, 1, 0));
    assert_eq!(list_offset(&mut c, second, t0 + 5), (0, 3, second));
    assert_eq!(list_offset(&mut c, second, t0 + 1000), (0, -1, -1));
    assert_eq!(list_offset(&mut c, first, LATEST).0, FENCED);
    assert_eq!(list_offset(&mut c, second + 1, LATEST).0, UNKNOWN_EPOCH);
}
