//! DeleteGroups: removes empty groups and their committed offsets (tombstones in
//! `__consumer_offsets`). Groups with members answer NON_EMPTY_GROUP.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::errors::group_code;
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = request
        .groups_names
        .into_iter()
        .map(|group_id| {
            let result = broker.groups.delete(&group_id);
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(group_code(&result))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
