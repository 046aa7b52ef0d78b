//! DescribeLogDirs (API 35, v1-4): the one log directory of this broker (its data directory)
//! with the size of every partition replica it hosts, and the filesystem's total and usable
//! bytes (v4), which kafka-ui, Cruise Control and `kafka-log-dirs.sh` read. Only replicas the
//! metadata image places here are listed; `offset_lag` is Kafka's `max(HW - log end, 0)` for a
//! current (not future) replica.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;

pub fn handle(broker: &Broker, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    // None: every topic; Some: the named partitions of the named topics.
    let wanted: Option<BTreeMap<String, Vec<i32>>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.topic.to_string(), t.partitions))
            .collect()
    });
    let me = broker.node_id();
    let image = broker.controller.image();
    let mut topics = Vec::new();
    for topic in broker.topics.list() {
        let asked = match &wanted {
            None => None,
            Some(w) => match w.get(&topic.name) {
                Some(partitions) => Some(partitions),
                None => continue,
            },
        };
        let Some(placed) = image.topic(&topic.name) else {
            continue;
        };
        let partitions: Vec<_> = topic
            .partitions()
            .into_iter()
            .filter(|p| asked.is_none_or(|a| a.contains(&p.index)))
            .filter(|p| {
                usize::try_from(p.index)
                    .ok()
                    .and_then(|i| placed.partitions.get(i))
                    .is_some_and(|pi| pi.replicas.contains(&me))
            })
            .filter_map(|p| {
                let size = p.local_extent().ok()?.bytes;
                let offsets = p.offsets().ok()?;
                Some(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(p.index)
                        .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
                        .with_offset_lag((offsets.high_watermark - offsets.log_end).max(0))
                        .with_is_future_key(false),
                )
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.name.clone())))
                    .with_partitions(partitions),
            );
        }
    }
    let dir = &broker.config.data_dir;
    let (total, usable) = match rustix::fs::statvfs(dir) {
        Ok(s) => (
            s.f_blocks.saturating_mul(s.f_frsize),
            s.f_bavail.saturating_mul(s.f_frsize),
        ),
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot stat the log directory");
            let result = DescribeLogDirsResult::default()
                .with_error_code(ResponseError::KafkaStorageError.code())
                .with_log_dir(StrBytes::from_string(dir.display().to_string()))
                .with_total_bytes(-1)
                .with_usable_bytes(-1);
            return DescribeLogDirsResponse::default().with_results(vec![result]);
        }
    };
    let result = DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(i64::try_from(total).unwrap_or(i64::MAX))
        .with_usable_bytes(i64::try_from(usable).unwrap_or(i64::MAX));
    DescribeLogDirsResponse::default().with_results(vec![result])
}
