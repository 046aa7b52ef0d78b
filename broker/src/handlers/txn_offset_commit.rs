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

use super::errors::group_code;
use super::offset_commit::checked_offset;
use crate::broker::{now_ms, Broker};
use crate::group::txn_offsets::TxnCommitter;
use crate::group::OFFSETS_TOPIC;
use crate::metadata::image::MetadataImage;

/// How long a commit waits for the offsets partition's in-sync replicas
/// (`offsets.commit.timeout.ms`).
const OFFSETS_COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
    let (mut results, appended) = if offsets.is_empty() {
        (Vec::new(), None)
    } else {
        broker.groups.txn_commit(&request.group_id, &who, offsets)
    };
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
    let mut topics: Vec<TxnOffsetCommitResponseTopic> = Vec::new();
    for (topic, partition, code) in answers {
        let entry = TxnOffsetCommitResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(code);
        match topics.iter_mut().find(|t| t.name.as_str() == topic) {
            Some(t) => t.partitions.push(entry),
            None => topics.push(
                TxnOffsetCommitResponseTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic)))
                    .with_partitions(vec![entry]),
            ),
        }
    }
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
