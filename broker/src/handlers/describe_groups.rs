//! DescribeGroups: state, protocol and members of each group. Member metadata and assignments
//! are only meaningful (and only shown) once the group is Stable, as in Kafka. An unknown group
//! is described as Dead with no error, which is what clients of these versions expect; a group
//! coordinated elsewhere answers NOT_COORDINATOR. A consumer (KIP-848) group is not a classic
//! group: Kafka 4 describes it as Dead, and so do we.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::errors::group_error;
use crate::broker::Broker;
use crate::group::state::GroupState;

pub fn handle(broker: &Broker, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .into_iter()
        .map(|group_id| match broker.groups.describe(&group_id) {
            Err(error) => DescribedGroup::default()
                .with_group_id(group_id)
                .with_error_code(group_error(&error).code()),
            Ok(Some(summary)) if summary.group_type == "classic" => DescribedGroup::default()
                .with_group_id(group_id)
                .with_group_state(StrBytes::from_static_str(summary.state.name()))
                .with_protocol_type(StrBytes::from_string(summary.protocol_type))
                .with_protocol_data(StrBytes::from_string(summary.protocol))
                .with_members(
                    summary
                        .members
                        .into_iter()
                        .map(|(id, instance, client_id, host, metadata, assignment)| {
                            DescribedGroupMember::default()
                                .with_member_id(StrBytes::from_string(id))
                                .with_group_instance_id(instance.map(StrBytes::from_string))
                                .with_client_id(StrBytes::from_string(client_id))
                                .with_client_host(StrBytes::from_string(host))
                                .with_member_metadata(metadata)
                                .with_member_assignment(assignment)
                        })
                        .collect(),
                ),
            Ok(_) => DescribedGroup::default()
                .with_group_id(group_id)
                .with_group_state(StrBytes::from_static_str(GroupState::Dead.name())),
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
