//! OffsetFetch: a group's committed offsets, for the partitions asked for or (null topics) all
//! of them. v8 asks for several groups at once. A partition without a committed offset answers
//! offset -1, which clients read as "use auto.offset.reset". A group coordinated elsewhere
//! answers NOT_COORDINATOR (top level from v2, per group from v8, per partition before v2).
//! v9 names the member and its epoch: for a consumer (KIP-848) group a member must exist at that
//! epoch (UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH); no member id and epoch -1 is an admin fetch.
//! Offsets of open transactions are never shown; with `require_stable` (v7+, KIP-447) a partition
//! that has some answers UNSTABLE_OFFSET_COMMIT, so the consumer waits for the transaction.

use std::collections::BTreeSet;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::group_error;
use crate::broker::Broker;
use crate::group::coordinator::FetchedOffsets;
use crate::group::state::CommittedOffset;

/// OffsetFetch v8 batches groups.
const BATCHED_FROM: i16 = 8;

/// v9 (KIP-848) names the member and its epoch, checked for consumer groups.
const MEMBER_EPOCH_FROM: i16 = 9;

/// KIP-447's `require_stable` exists from v7.
const STABLE_FROM: i16 = 7;

pub fn handle(broker: &Broker, version: i16, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let require_stable = version >= STABLE_FROM && request.require_stable;
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
                let member_check = if version >= MEMBER_EPOCH_FROM {
                    let member = g.member_id.as_deref();
                    broker
                        .groups
                        .check_offset_fetch(&g.group_id, member, g.member_epoch)
                } else {
                    Ok(())
                };
                let fetched =
                    member_check.and_then(|()| broker.groups.fetch_stable(&g.group_id, wanted));
                match fetched {
                    Ok((fetched, unstable)) => {
                        let unstable = if require_stable {
                            unstable
                        } else {
                            Unstable::new()
                        };
                        group_answer(g.group_id, fetched, &unstable)
                    }
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
    let mut unstable = Unstable::new();
    let (fetched, error_code) = match broker
        .groups
        .fetch_stable(&request.group_id, wanted.clone())
    {
        Ok((fetched, pending)) => {
            if require_stable {
                unstable = pending;
            }
            (fetched, 0)
        }
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
            let partitions = partitions
                .into_iter()
                .map(|(index, found)| {
                    let (found, code) = stable(&unstable, &topic, index, found, error_code);
                    let (offset, epoch, metadata) = values(found);
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(index)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(epoch)
                        .with_metadata(Some(metadata))
                        .with_error_code(code)
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partitions(partitions)
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

/// Partitions answering UNSTABLE_OFFSET_COMMIT.
type Unstable = BTreeSet<(String, i32)>;

/// An unstable partition answers no offset and UNSTABLE_OFFSET_COMMIT; the others as fetched.
fn stable(
    unstable: &Unstable,
    topic: &str,
    partition: i32,
    found: Option<CommittedOffset>,
    code: i16,
) -> (Option<CommittedOffset>, i16) {
    if unstable.contains(&(topic.to_string(), partition)) {
        (None, ResponseError::UnstableOffsetCommit.code())
    } else {
        (found, code)
    }
}

fn group_answer(
    group_id: GroupId,
    fetched: FetchedOffsets,
    unstable: &Unstable,
) -> OffsetFetchResponseGroup {
    let topics = fetched
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, found)| {
                    let (found, code) = stable(unstable, &topic, index, found, 0);
                    let (offset, epoch, metadata) = values(found);
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(index)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(epoch)
                        .with_metadata(Some(metadata))
                        .with_error_code(code)
                })
                .collect();
            OffsetFetchResponseTopics::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponseGroup::default()
        .with_group_id(group_id)
        .with_topics(topics)
}
