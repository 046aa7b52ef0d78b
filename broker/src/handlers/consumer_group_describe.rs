//! ConsumerGroupDescribe (KIP-848): a consumer group's state, epochs, assignor and members with
//! their current and target assignments. A group that is not a consumer group answers
//! GROUP_ID_NOT_FOUND, as Kafka does.

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::group_error;
use crate::broker::Broker;
use crate::group::consumer::{self, ConsumerGroup};
use crate::metadata::image::MetadataImage;

/// Kafka's "authorized operations not requested".
const NO_OPERATIONS: i32 = i32::MIN;

pub fn handle(
    broker: &Broker,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let image = broker.controller.image();
    let groups = request
        .group_ids
        .into_iter()
        .map(
            |group_id| match broker.groups.consumer_describe(&group_id) {
                Ok(Some(group)) => describe(group_id, &group, &image),
                Ok(None) => DescribedGroup::default()
                    .with_group_id(group_id.clone())
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "Group {} not found.",
                        group_id.as_str()
                    ))))
                    .with_authorized_operations(NO_OPERATIONS),
                Err(error) => DescribedGroup::default()
                    .with_group_id(group_id)
                    .with_error_code(group_error(&error).code())
                    .with_authorized_operations(NO_OPERATIONS),
            },
        )
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

fn describe(group_id: GroupId, group: &ConsumerGroup, image: &MetadataImage) -> DescribedGroup {
    let members = group
        .members
        .values()
        .map(|m| {
            let target = group.target.get(&m.id).cloned().unwrap_or_default();
            Member::default()
                .with_member_id(StrBytes::from_string(m.id.clone()))
                .with_instance_id(m.instance_id.clone().map(StrBytes::from_string))
                .with_rack_id(m.rack_id.clone().map(StrBytes::from_string))
                .with_member_epoch(m.epoch())
                .with_client_id(StrBytes::from_string(m.client_id.clone()))
                .with_client_host(StrBytes::from_string(m.client_host.clone()))
                .with_subscribed_topic_names(
                    m.subscribed_names
                        .iter()
                        .map(|n| TopicName(StrBytes::from_string(n.clone())))
                        .collect(),
                )
                .with_subscribed_topic_regex(
                    m.subscribed_regex
                        .as_ref()
                        .map(|(s, _)| StrBytes::from_string(s.clone())),
                )
                .with_assignment(assignment(&m.reconciliation.assigned, image))
                .with_target_assignment(assignment(&target, image))
                // 1: a member of the consumer protocol (0 would be a classic one).
                .with_member_type(1)
        })
        .collect();
    DescribedGroup::default()
        .with_group_id(group_id)
        .with_group_state(StrBytes::from_static_str(group.state_name()))
        .with_group_epoch(group.epoch)
        .with_assignment_epoch(group.assignment_epoch)
        .with_assignor_name(StrBytes::from_string(group.assignor.clone()))
        .with_members(members)
        .with_authorized_operations(NO_OPERATIONS)
}

fn assignment(a: &consumer::Assignment, image: &MetadataImage) -> Assignment {
    let names: std::collections::HashMap<uuid::Uuid, &str> = image
        .topics
        .values()
        .map(|t| (t.id, t.name.as_str()))
        .collect();
    Assignment::default().with_topic_partitions(
        a.iter()
            .filter(|(_, partitions)| !partitions.is_empty())
            .map(|(id, partitions)| {
                let name = names.get(id).copied().unwrap_or_default();
                TopicPartitions::default()
                    .with_topic_id(*id)
                    .with_topic_name(TopicName(StrBytes::from_string(name.to_string())))
                    .with_partitions(partitions.iter().copied().collect())
            })
            .collect(),
    )
}
