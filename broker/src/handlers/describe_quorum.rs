//! DescribeQuorum (KIP-595): the controller quorum of the metadata log `__cluster_metadata`
//! partition 0: its leader, epoch and high watermark, and each voter's log end offset and last
//! fetch, as the active controller sees them. Any broker answers: it asks the active controller.

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;

/// The metadata log's topic, as Kafka names it.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let asks_for_metadata_log = request.topics.len() == 1
        && request.topics[0].topic_name.0.as_str() == METADATA_TOPIC
        && request.topics[0].partitions.len() == 1
        && request.topics[0].partitions[0].partition_index == 0;
    if !asks_for_metadata_log {
        return error(
            version,
            ResponseError::UnknownTopicOrPartition,
            "only __cluster_metadata-0 has a quorum",
        );
    }
    let controller = &broker.controller;
    let status = match controller.status().await {
        Ok(status) => status,
        Err(e) => return error(version, e.code(), &e.to_string()),
    };
    let replica_state = |v: &crate::controller::quorum::VoterStatus| {
        ReplicaState::default()
            .with_replica_id(BrokerId(v.replica_id))
            .with_log_end_offset(i64::try_from(v.log_end_offset).unwrap_or(i64::MAX))
            .with_last_fetch_timestamp(v.last_fetch_timestamp)
            .with_last_caught_up_timestamp(v.last_caught_up_timestamp)
    };
    let voters = status.voters.iter().map(replica_state).collect();
    let observers = status.observers.iter().map(replica_state).collect();
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(status.leader_id))
        .with_leader_epoch(i32::try_from(status.leader_epoch).unwrap_or(i32::MAX))
        .with_high_watermark(i64::try_from(status.high_watermark).unwrap_or(i64::MAX))
        .with_current_voters(voters)
        .with_observers(observers);
    // v2 adds the voters' listeners (and error messages); older versions cannot carry them.
    if version < 2 {
        return DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
            .with_partitions(vec![partition])]);
    }
    let nodes = controller
        .voters()
        .iter()
        .filter_map(|(id, address)| {
            let (host, port) = address.rsplit_once(':')?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Some(Node::default().with_node_id(BrokerId(*id)).with_listeners(
                vec![Listener::default()
                    .with_name(StrBytes::from_static_str("CONTROLLER"))
                    .with_host(StrBytes::from_string(host.to_string()))
                    .with_port(port.parse().ok()?)],
            ))
        })
        .collect();
    DescribeQuorumResponse::default()
        .with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
            .with_partitions(vec![partition])])
        .with_nodes(nodes)
}

fn error(version: i16, code: ResponseError, message: &str) -> DescribeQuorumResponse {
    let response = DescribeQuorumResponse::default().with_error_code(code.code());
    if version < 2 {
        return response;
    }
    response.with_error_message(Some(StrBytes::from_string(message.to_string())))
}
