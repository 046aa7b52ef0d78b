//! OffsetCommit: store a group's consumed positions in `__consumer_offsets`. Partitions of unknown
//! topics and oversized metadata are refused per partition; the rest are written as one batch.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::group_code;
use crate::broker::{now_ms, Broker};
use crate::group::coordinator::PartitionResult;
use crate::group::state::CommittedOffset;
use crate::group::store::Appended;

/// How long a commit waits for the offsets partition's in-sync replicas
/// (`offsets.commit.timeout.ms`).
const OFFSETS_COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Kafka's `offset.metadata.max.bytes` default.
const MAX_METADATA_BYTES: usize = 4096;

/// One partition's offset to commit (plain or transactional), or why it is refused: a partition
/// the topic does not have, metadata over `offset.metadata.max.bytes`.
pub(super) fn checked_offset(
    topic: Option<&crate::metadata::image::TopicImage>,
    partition: i32,
    metadata: Option<&StrBytes>,
    (offset, leader_epoch): (i64, i32),
    now: i64,
) -> Result<CommittedOffset, ResponseError> {
    let metadata = metadata.map(|m| m.to_string()).unwrap_or_default();
    let exists =
        topic.is_some_and(|t| usize::try_from(partition).is_ok_and(|i| i < t.partitions.len()));
    if !exists {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    if metadata.len() > MAX_METADATA_BYTES {
        return Err(ResponseError::OffsetMetadataTooLarge);
    }
    Ok(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms: now,
    })
}

pub async fn handle(broker: &Broker, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let now = now_ms();
    let mut refused: Vec<(String, i32, i16)> = Vec::new();
    let mut offsets = Vec::new();
    for topic in &request.topics {
        let name = topic.name.to_string();
        let image = broker.controller.image();
        let known = image.topic(&name);
        for p in &topic.partitions {
            let committed = checked_offset(
                known,
                p.partition_index,
                p.committed_metadata.as_ref(),
                (p.committed_offset, p.committed_leader_epoch),
                now,
            );
            match committed {
                Err(error) => refused.push((name.clone(), p.partition_index, error.code())),
                Ok(offset) => offsets.push((name.clone(), p.partition_index, offset)),
            }
        }
    }
    let (results, appended) = broker.groups.commit(
        &request.group_id,
        request.generation_id_or_member_epoch,
        &request.member_id,
        request.group_instance_id.as_deref(),
        offsets,
    );
    let topics = settle(results, appended, refused)
        .await
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetCommitResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, code)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// The answer of a commit (plain or transactional), per topic in answer order: each partition's
/// error code once the offsets partition's in-sync replicas have the written offsets (Kafka's
/// `offsets.commit.timeout.ms`; failing that, every written partition gets the error), then the
/// partitions refused before writing.
pub(super) async fn settle(
    mut results: Vec<PartitionResult>,
    appended: Option<Appended>,
    refused: Vec<(String, i32, i16)>,
) -> Vec<(String, Vec<(i32, i16)>)> {
    if let Some(appended) = appended {
        if let Err(error) = appended.replicated(OFFSETS_COMMIT_TIMEOUT).await {
            for (_, _, result) in results.iter_mut().filter(|(_, _, r)| r.is_ok()) {
                *result = Err(error.clone());
            }
        }
    }
    let answers = results
        .iter()
        .map(|(t, p, r)| (t.clone(), *p, group_code(r)))
        .chain(refused);
    let mut topics: Vec<(String, Vec<(i32, i16)>)> = Vec::new();
    for (topic, partition, code) in answers {
        match topics.iter_mut().find(|(name, _)| *name == topic) {
            Some((_, partitions)) => partitions.push((partition, code)),
            None => topics.push((topic, vec![(partition, code)])),
        }
    }
    topics
}
