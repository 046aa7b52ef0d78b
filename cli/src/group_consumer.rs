//! `inlet group describe` for KIP-848 consumer groups: ConsumerGroupDescribe's state, epochs,
//! assignor and members with their current and target assignments.

use std::collections::BTreeMap;

use inlet_protocol::client::check_with_message;
use inlet_protocol::client::cluster::{group_id, Cluster};
use inlet_protocol::kafka_protocol::messages::consumer_group_describe_response::Assignment;
use inlet_protocol::kafka_protocol::messages::ConsumerGroupDescribeRequest;
use inlet_protocol::kafka_protocol::ResponseError;
use serde_json::{json, Value};

/// A consumer group as the CLI shows it.
pub struct ConsumerView {
    pub state: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    /// One JSON object per member.
    pub members: Vec<Value>,
    /// Which member owns each (topic, partition) now.
    pub owner: BTreeMap<(String, i32), String>,
}

fn partitions(assignment: &Assignment) -> BTreeMap<String, Vec<i32>> {
    assignment
        .topic_partitions
        .iter()
        .map(|t| (t.topic_name.to_string(), t.partitions.clone()))
        .collect()
}

/// The group if it is a consumer group; `None` for a classic group (GROUP_ID_NOT_FOUND) or a
/// broker without ConsumerGroupDescribe.
pub async fn describe(cluster: &mut Cluster, group: &str) -> anyhow::Result<Option<ConsumerView>> {
    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id(group)]);
    let Ok(response) = cluster.coordinator(group).await?.send(request).await else {
        return Ok(None);
    };
    let Some(described) = response.groups.into_iter().next() else {
        return Ok(None);
    };
    if described.error_code == ResponseError::GroupIdNotFound.code() {
        return Ok(None);
    }
    check_with_message(
        described.error_code,
        described.error_message.as_deref(),
        || format!("describe consumer group {group}"),
    )?;
    let mut owner = BTreeMap::new();
    let members = described
        .members
        .iter()
        .map(|m| {
            let assignment = partitions(&m.assignment);
            for (topic, ps) in &assignment {
                for p in ps {
                    owner.insert((topic.clone(), *p), m.member_id.to_string());
                }
            }
            json!({
                "member_id": m.member_id.as_str(),
                "instance_id": m.instance_id.as_deref(),
                "client_id": m.client_id.as_str(),
                "host": m.client_host.as_str(),
                "member_epoch": m.member_epoch,
                "subscribed_topics": m.subscribed_topic_names.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
                "subscribed_regex": m.subscribed_topic_regex.as_deref(),
                "assignment": assignment,
                "target_assignment": partitions(&m.target_assignment),
            })
        })
        .collect();
    Ok(Some(ConsumerView {
        state: described.group_state.to_string(),
        group_epoch: described.group_epoch,
        assignment_epoch: described.assignment_epoch,
        assignor: described.assignor_name.to_string(),
        members,
        owner,
    }))
}

/// The members table of a consumer group.
pub fn print_members(view: &ConsumerView) {
    let mut table =
        crate::output::Table::new(&["MEMBER", "EPOCH", "CLIENT", "HOST", "ASSIGNED", "TARGET"]);
    let show = |v: &Value| {
        v.as_object()
            .map(|topics| {
                topics
                    .iter()
                    .map(|(t, ps)| format!("{t}:{ps}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    for m in &view.members {
        table.row(vec![
            m["member_id"].as_str().unwrap_or_default().to_string(),
            m["member_epoch"].to_string(),
            m["client_id"].as_str().unwrap_or_default().to_string(),
            m["host"].as_str().unwrap_or_default().to_string(),
            show(&m["assignment"]),
            show(&m["target_assignment"]),
        ]);
    }
    let _ = table.print();
}
