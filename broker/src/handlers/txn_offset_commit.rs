//! TxnOffsetCommit (v0-3): a transactional producer commits a group's consumed offsets as part of
//! its transaction (`send_offsets_to_transaction`). The offsets are written to the group's
//! `__consumer_offsets` partition as the producer's transactional batch and stay invisible to
//! OffsetFetch until the transaction's marker lands there (see `group::txn_offsets`). v3 carries
//! the consumer's generation and member id (KIP-447), checked as OffsetCommit checks them.
//!
//! First the transaction coordinator verifies (KIP-890) that the producer is the transactional
//! id's current one and that the group's offsets partition is in its open transaction
//! (AddOffsetsToTxn), as Kafka does with `transaction.partition.verification.enable`: a commit
//! outside the transaction would otherwise stay pending with no marker to end it.

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TopicName, TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::offset_commit::{checked_offset, settle};
use crate::broker::{now_ms, Broker};
use crate::group::txn_offsets::TxnCommitter;
use crate::group::OFFSETS_TOPIC;
use crate::metadata::image::MetadataImage;

pub async fn handle(broker: &Broker, request: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let now = now_ms();
    let image = broker.controller.image();
    let mut refused: Vec<(String, i32, i16)> = Vec::new();
    let mut offsets = Vec::new();
    for topic in &request.topics {
        let name = topic.name.to_string();
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
    let who = TxnCommitter {
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        generation: request.generation_id,
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
    };
    if let Err(code) = verify(broker, &request).await {
        refused.extend(offsets.drain(..).map(|(t, p, _)| (t, p, code.code())));
    }
    let (results, appended) = if offsets.is_empty() {
        (Vec::new(), None)
    } else {
        broker.groups.txn_commit(&request.group_id, &who, offsets)
    };
    let topics = settle(results, appended, refused)
        .await
        .into_iter()
        .map(|(topic, partitions)| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, code)| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// The transaction coordinator's check that the group's offsets partition is in the producer's
/// open transaction. Without the offsets topic there is nothing to verify: the group
/// coordinator answers NOT_COORDINATOR. Ids coordinated on another broker pass (see
/// `TransactionCoordinator::verify`).
async fn verify(broker: &Broker, request: &TxnOffsetCommitRequest) -> Result<(), ResponseError> {
    let image = broker.controller.image();
    let Some(count) = image
        .topic(OFFSETS_TOPIC)
        .and_then(|t| i32::try_from(t.partitions.len()).ok())
    else {
        return Ok(());
    };
    let partition = MetadataImage::offsets_partition_for(&request.group_id, count);
    broker
        .txns
        .verify(
            &request.transactional_id,
            request.producer_id.0,
            request.producer_epoch,
            OFFSETS_TOPIC,
            partition,
        )
        .await
        .map_err(|code| match code {
            // Verify's retriable answer for Produce; a commit's retriable one is this
            // (Kafka's storeOffsets mapping of NOT_ENOUGH_REPLICAS).
            ResponseError::NotEnoughReplicas => ResponseError::CoordinatorNotAvailable,
            other => other,
        })
}
