//! SyncGroup: members collect their assignment; the leader's request carries all of them. Held
//! back until the leader's assignment arrives.

use std::collections::HashMap;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::group_error;
use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: SyncGroupRequest) -> SyncGroupResponse {
    let assignments: HashMap<String, bytes::Bytes> = request
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let reply = broker
        .groups
        .sync(
            &request.group_id,
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id,
            assignments,
        )
        .await;
    match reply {
        Ok((protocol_type, protocol, assignment)) => {
            // v5 clients name the protocol they expect; a mismatch is Kafka's
            // INCONSISTENT_GROUP_PROTOCOL.
            let mismatch = |asked: &Option<StrBytes>, ours: &Option<String>| matches!((asked, ours), (Some(a), Some(o)) if a.as_str() != o.as_str());
            if mismatch(&request.protocol_type, &protocol_type)
                || mismatch(&request.protocol_name, &protocol)
            {
                return SyncGroupResponse::default()
                    .with_error_code(ResponseError::InconsistentGroupProtocol.code());
            }
            SyncGroupResponse::default()
                .with_protocol_type(protocol_type.map(StrBytes::from_string))
                .with_protocol_name(protocol.map(StrBytes::from_string))
                .with_assignment(assignment)
        }
        Err(error) => SyncGroupResponse::default().with_error_code(group_error(&error).code()),
    }
}
