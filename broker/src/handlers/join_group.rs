//! JoinGroup: enter (or re-enter) a group's rebalance. The response is held back until the
//! rebalance's join phase ends (see `group::state`), which is what every client expects.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;

use super::errors::group_error;
use crate::broker::Broker;
use crate::group::membership::JoinRequest;
use crate::group::GroupError;

/// JoinGroup v4 and later clients handle MEMBER_ID_REQUIRED (KIP-394).
const KNOWS_MEMBER_ID_REQUIRED: i16 = 4;
/// Before v1 there is no separate rebalance timeout: the session timeout is used.
const HAS_REBALANCE_TIMEOUT: i16 = 1;

pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    request: JoinGroupRequest,
    peer: std::net::SocketAddr,
) -> JoinGroupResponse {
    let version = header.request_api_version;
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|s| s.to_string()),
        client_id: header
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        // As Kafka shows it (Java's InetAddress text): "/127.0.0.1".
        client_host: format!("/{}", peer.ip()),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: if version >= HAS_REBALANCE_TIMEOUT {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        requires_known_member_id: version >= KNOWS_MEMBER_ID_REQUIRED,
    };
    match broker.groups.join(&request.group_id, join).await {
        Ok(outcome) => JoinGroupResponse::default()
            .with_generation_id(outcome.generation)
            .with_protocol_type(outcome.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(outcome.protocol.map(StrBytes::from_string))
            .with_leader(StrBytes::from_string(outcome.leader))
            .with_member_id(StrBytes::from_string(outcome.member_id))
            .with_members(
                outcome
                    .members
                    .into_iter()
                    .map(|(id, instance, metadata)| {
                        JoinGroupResponseMember::default()
                            .with_member_id(StrBytes::from_string(id))
                            .with_group_instance_id(instance.map(StrBytes::from_string))
                            .with_metadata(metadata)
                    })
                    .collect(),
            ),
        Err(error) => {
            let member_id = match &error {
                GroupError::MemberIdRequired(id) => id.clone(),
                _ => request.member_id.to_string(),
            };
            JoinGroupResponse::default()
                .with_error_code(group_error(&error).code())
                .with_generation_id(-1)
                .with_member_id(StrBytes::from_string(member_id))
        }
    }
}
