//! ConsumerGroupHeartbeat (KIP-848): a consumer joins, heartbeats and leaves a consumer group
//! through this one API; the coordinator answers with its member epoch and, when it changed or
//! differs from what the member holds, its assignment. See `group::consumer`.

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;

use super::errors::group_error;
use crate::broker::Broker;
use crate::group::consumer::{self, HeartbeatRequest};

pub fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: ConsumerGroupHeartbeatRequest,
    peer: std::net::SocketAddr,
) -> ConsumerGroupHeartbeatResponse {
    let owned = request.topic_partitions.map(|topics| {
        let mut owned = consumer::Assignment::new();
        for t in topics {
            owned.entry(t.topic_id).or_default().extend(t.partitions);
        }
        owned
    });
    let ask = HeartbeatRequest {
        version: header.request_api_version,
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|s| s.to_string()),
        rack_id: request.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|n| n.to_string()).collect()),
        subscribed_topic_regex: request.subscribed_topic_regex.map(|s| s.to_string()),
        server_assignor: request.server_assignor.map(|s| s.to_string()),
        owned,
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", peer.ip()),
    };
    let topics = consumer::topics_view(&broker.controller.image());
    match broker
        .groups
        .consumer_heartbeat(&request.group_id, ask, &topics)
    {
        Ok(out) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(out.member_id)))
            .with_member_epoch(out.member_epoch)
            .with_heartbeat_interval_ms(out.heartbeat_interval_ms)
            .with_assignment(out.assignment.map(|a| {
                Assignment::default().with_topic_partitions(
                    a.into_iter()
                        .filter(|(_, partitions)| !partitions.is_empty())
                        .map(|(topic_id, partitions)| {
                            TopicPartitions::default()
                                .with_topic_id(topic_id)
                                .with_partitions(partitions.into_iter().collect())
                        })
                        .collect(),
                )
            })),
        Err(error) => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(group_error(&error).code())
            .with_error_message(Some(StrBytes::from_string(error.to_string()))),
    }
}
