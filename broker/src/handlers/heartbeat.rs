//! Heartbeat: keeps a member's session alive and tells it when the group is rebalancing.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::errors::group_code;
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: HeartbeatRequest) -> HeartbeatResponse {
    let result = broker.groups.heartbeat(
        &request.group_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
        request.generation_id,
    );
    HeartbeatResponse::default().with_error_code(group_code(&result))
}
