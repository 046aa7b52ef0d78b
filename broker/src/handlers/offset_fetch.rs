//! OffsetFetch: a group's committed offsets, for the partitions asked for or (null topics) all
//! of them. v8 asks for several groups at once. A partition without a committed offset answers
//! offset -1, which clients read as "use auto.offset.reset". A group coordinated elsewhere
//! answers NOT_COORDINATOR (top level from v2, per group from v8, per partition before v2).

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::errors::group_error;
use crate::broker::Broker;
use crate::group::coordinator::FetchedOffsets;
use crate::group::state::CommittedOffset;

/// OffsetFetch v8 batches groups.
const BATCHED_FROM: i16 = 8;

pub fn handle(broker: &Broker, version: i16, request: OffsetFetchRequest) -> OffsetFetchResponse {
    if version >= BATCHED_FROM {
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                let wanted = g.topics.map(|topics| {
                    topics
                        .into_iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes))
                        .collect()
                });
                match broker.groups.fetch(&g.group_id, wanted) {
                    Ok(fetched) => group_answer(g.group_id, fetched),
                    Err(error) => OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(group_error(&error).code()),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect()
    });
    let (fetched, error_code) = match broker.groups.fetch(&request.group_id, wanted.clone()) {
        Ok(fetched) => (fetched, 0),
        // Every asked-for partition carries the error too: v0 and v1 have no top-level code.
        Err(error) => (
            wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(topic, partitions)| {
                    (topic, partitions.into_iter().map(|p| (p, None)).collect())
                })
                .collect(),
            group_error(&error).code(),
        ),
    };
    let topics = fetched
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, found)| {
                            let (offset, epoch, metadata) = values(found);
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(index)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(Some(metadata))
                                .with_error_code(error_code)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default()
        .with_topics(topics)
        .with_error_code(error_code)
}

fn values(found: Option<CommittedOffset>) -> (i64, i32, StrBytes) {
    match found {
        Some(c) => (c.offset, c.leader_epoch, StrBytes::from_string(c.metadata)),
        None => (-1, -1, StrBytes::default()),
    }
}

fn group_answer(group_id: GroupId, fetched: FetchedOffsets) -> OffsetFetchResponseGroup {
    let topics = fetched
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetFetchResponseTopics::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, found)| {
                            let (offset, epoch, metadata) = values(found);
                            OffsetFetchResponsePartitions::default()
                                .with_partition_index(index)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(Some(metadata))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponseGroup::default()
        .with_group_id(group_id)
        .with_topics(topics)
}
