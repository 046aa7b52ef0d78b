//! DeleteRecords (API 21): moves partitions' log start offsets forward (Kafka's
//! `ReplicaManager.deleteRecords`). Per partition, as Kafka answers:
//! * only the leader accepts (NOT_LEADER_OR_FOLLOWER), a partition not in the metadata image is
//!   UNKNOWN_TOPIC_OR_PARTITION;
//! * a topic whose `cleanup.policy` is `compact` alone is POLICY_VIOLATION (its log start is the
//!   cleaner's business);
//! * offset -1 means the high watermark; past the high watermark (or another negative offset) is
//!   OFFSET_OUT_OF_RANGE; below the current start changes nothing;
//! * `low_watermark` is the partition's log start after the call.
//!
//! The new start is durable on the leader before the answer, in the lake's manifest with the
//! next tiering pass, and followers take it from their next Fetch answer. Kafka also waits (up
//! to `timeout_ms`) for every in-sync follower to report it; this broker does not track its
//! followers' log starts yet, so it answers the leader's at once.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;

use super::errors::partition_error;
use super::offset_for_leader_epoch::{partition_at_epoch, Requester};
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let image = broker.controller.image();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let compact_only = broker.topics.get(&topic.name).is_some_and(|t| {
                let config = t.config();
                let policy = config
                    .overrides()
                    .get("cleanup.policy")
                    .map_or("delete", String::as_str);
                policy.contains("compact") && !policy.contains("delete")
            });
            let partitions = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(wanted.partition_index)
                        .with_low_watermark(-1);
                    let deleted = partition_at_epoch(
                        broker,
                        &image,
                        &topic.name,
                        wanted.partition_index,
                        Requester::Client,
                        -1,
                    )
                    .and_then(|partition| {
                        if compact_only {
                            return Err(ResponseError::PolicyViolation);
                        }
                        partition
                            .delete_records_before(wanted.offset)
                            .map_err(|e| partition_error(&e))
                    });
                    match deleted {
                        Ok(low_watermark) => result.with_low_watermark(low_watermark),
                        Err(code) => result.with_error_code(code.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
