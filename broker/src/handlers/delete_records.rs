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
//! The new start is durable on the leader before anything waits, followers take it from their
//! next Fetch answer (and report theirs in their next Fetch request), and the lake's manifest
//! records it on the next tiering pass. As Kafka's `DelayedDeleteRecords`, the answer waits (up to
//! `timeout_ms`) until every in-sync replica's log start reached the new start: its
//! `low_watermark` is then the smallest of them; past the timeout, REQUEST_TIMED_OUT.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;

use tokio::time::{Duration, Instant};

use super::errors::partition_error;
use super::offset_for_leader_epoch::{partition_at_epoch, Requester};
use crate::broker::Broker;

/// What one partition's deletion started: the new start to wait for on its in-sync replicas.
struct Started {
    partition: std::sync::Arc<crate::cluster::partition::Partition>,
    epoch: i32,
    start: i64,
}

pub async fn handle(broker: &Broker, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let image = broker.controller.image();
    // Bounded like a produce's acks=all wait.
    let deadline =
        Instant::now() + Duration::from_millis(request.timeout_ms.clamp(0, 300_000) as u64);
    let mut started: Vec<Vec<Option<Started>>> = Vec::with_capacity(request.topics.len());
    let mut topics: Vec<DeleteRecordsTopicResult> = request
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
                        let epoch = partition.leader_epoch();
                        let start = partition
                            .delete_records_before(wanted.offset)
                            .map_err(|e| partition_error(&e))?;
                        Ok(Started {
                            partition,
                            epoch,
                            start,
                        })
                    });
                    match deleted {
                        Ok(s) => (result.with_low_watermark(s.start), Some(s)),
                        Err(code) => (result.with_error_code(code.code()), None),
                    }
                })
                .collect::<Vec<_>>();
            let (partitions, waits): (Vec<_>, Vec<_>) = partitions.into_iter().unzip();
            started.push(waits);
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    // Every partition's start moved already; now wait for the followers, one deadline for all.
    for (topic, waits) in topics.iter_mut().zip(started) {
        for (result, wait) in topic.partitions.iter_mut().zip(waits) {
            let Some(s) = wait else { continue };
            match s
                .partition
                .wait_for_low_watermark(s.start, s.epoch, deadline)
                .await
            {
                Ok(low) => result.low_watermark = low,
                Err(code) => result.error_code = code.code(),
            }
        }
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
