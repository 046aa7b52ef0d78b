//! LeaveGroup: members leave (one per request before v3, a batch from v3, static members by
//! instance id), and the group rebalances without them.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::errors::{group_code, group_error};
use crate::broker::Broker;

/// LeaveGroup v3 carries a list of member identities instead of one member id.
const BATCHED_FROM: i16 = 3;

pub fn handle(broker: &Broker, version: i16, request: LeaveGroupRequest) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= BATCHED_FROM {
        request
            .members
            .iter()
            .map(|m| {
                let instance = m.group_instance_id.as_ref().map(|s| s.to_string());
                (m.member_id.to_string(), instance)
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let results = match broker.groups.leave(&request.group_id, &members) {
        Ok(results) => results,
        Err(error) => {
            return LeaveGroupResponse::default().with_error_code(group_error(&error).code())
        }
    };
    if version < BATCHED_FROM {
        let code = results.first().map_or(0, group_code);
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let responses = members
        .into_iter()
        .zip(&results)
        .map(|((member_id, instance), result)| {
            MemberResponse::default()
                .with_member_id(StrBytes::from_string(member_id))
                .with_group_instance_id(instance.map(StrBytes::from_string))
                .with_error_code(group_code(result))
        })
        .collect();
    LeaveGroupResponse::default().with_members(responses)
}

#[cfg(test)]
mod tests {
    use bytes::Buf;
    use kafka_protocol::messages::leave_group_response::MemberResponse;
    use kafka_protocol::messages::{ApiKey, LeaveGroupResponse, ResponseHeader, ResponseKind};
    use kafka_protocol::protocol::{Decodable, StrBytes};

    #[test]
    fn batched_answers_decode_at_every_version() {
        for version in 0..=5 {
            let mut response = LeaveGroupResponse::default();
            if version >= 3 {
                response.members = vec![MemberResponse::default()
                    .with_member_id(StrBytes::from_static_str("m"))
                    .with_error_code(25)];
            }
            let kind = ResponseKind::LeaveGroup(response.clone());
            let mut frame =
                inlet_protocol::codec::encode_response(ApiKey::LeaveGroup, version, 7, &kind)
                    .unwrap();
            frame.advance(4);
            let header_version = if version >= 4 { 1 } else { 0 };
            let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
            assert_eq!(header.correlation_id, 7);
            let back = LeaveGroupResponse::decode(&mut frame, version).unwrap();
            assert_eq!(back, response, "v{version}");
        }
    }
}
