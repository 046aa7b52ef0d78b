//! ListGroups: every group this broker coordinates (as in Kafka, per broker: the groups of the
//! offsets partitions it leads), filtered by state (v4) and type (v5; all
//! groups here are "classic").

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

const GROUP_TYPE: &str = "classic";

pub fn handle(broker: &Broker, request: ListGroupsRequest) -> ListGroupsResponse {
    let wanted_state = |state: &str| {
        request.states_filter.is_empty()
            || request
                .states_filter
                .iter()
                .any(|s| s.eq_ignore_ascii_case(state))
    };
    let wanted_type = request.types_filter.is_empty()
        || request
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case(GROUP_TYPE));
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|g| wanted_type && wanted_state(g.state.name()))
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type))
                .with_group_state(StrBytes::from_static_str(g.state.name()))
                .with_group_type(StrBytes::from_static_str(GROUP_TYPE))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
