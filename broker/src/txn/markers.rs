//! Writing a transaction's end markers (Kafka's TransactionMarkerChannelManager): one control
//! batch per partition of the transaction, appended here through [`append_local_marker`] when
//! this broker leads the partition, otherwise sent with WriteTxnMarkers (API 27) to its leader.
//! A marker counts once the partition's in-sync replicas have it (Kafka appends markers with
//! acks=all). Partitions that failed are retried by the caller; partitions that no longer exist
//! are done.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use inlet_protocol::client::Client;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

pub use inlet_storage::txn::TxnMarker;

use crate::broker::Broker;
use crate::cluster::partition::Partition;
use crate::handlers::errors::partition_error;

/// How long one marker may take to reach the partition's in-sync replicas.
pub const MARKER_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The only WriteTxnMarkers version there is.
const WRITE_TXN_MARKERS_VERSION: i16 = 1;

/// A marker appended to a local partition, to be waited for.
pub struct LocalMarker {
    pub partition: Arc<Partition>,
    pub end: i64,
    pub epoch: i32,
}

impl LocalMarker {
    /// Waits until the in-sync replicas have the marker.
    pub async fn replicated(&self, timeout: Duration) -> Result<(), ResponseError> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.partition
            .wait_for_high_watermark(self.end, self.epoch, deadline)
            .await
    }
}

/// Appends `marker` to `topic`-`partition`, which this broker must lead: the one place where a
/// marker goes into a local log, for the coordinator and the WriteTxnMarkers handler alike.
pub fn append_local_marker(
    broker: &Broker,
    topic: &str,
    partition: i32,
    marker: &TxnMarker,
) -> Result<LocalMarker, ResponseError> {
    let image = broker.controller.image();
    let (_, log) = broker
        .replicas
        .leader_partition(broker, &image, topic, partition)?;
    let epoch = log.leader_epoch();
    let outcome = log
        .append_txn_marker(marker)
        .map_err(|error| partition_error(&error))?;
    // Pending TxnOffsetCommit offsets become visible (commit) or are dropped (abort) with the
    // marker in their partition's log. Like plain commits, the coordinator's memory moves on
    // the leader's append; a new leader replays the log, where an unreplicated marker is not.
    if topic == crate::group::OFFSETS_TOPIC {
        broker
            .groups
            .complete_transaction(partition, marker.producer_id, marker.commit);
    }
    tracing::debug!(
        topic,
        partition,
        producer_id = marker.producer_id,
        commit = marker.commit,
        offset = outcome.last_offset,
        "wrote transaction marker"
    );
    Ok(LocalMarker {
        partition: log,
        end: outcome.last_offset + 1,
        epoch,
    })
}

/// Writes `marker` to every partition of `partitions` and waits for each to be replicated;
/// returns those still to do (an error to retry on).
pub async fn write_markers(
    broker: &Broker,
    marker: &TxnMarker,
    partitions: &BTreeSet<(String, i32)>,
) -> BTreeSet<(String, i32)> {
    let image = broker.controller.image();
    let me = broker.node_id();
    let mut remote: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    let mut local = Vec::new();
    let mut left = BTreeSet::new();
    for (topic, index) in partitions {
        let Some(placed) = image.partition(topic, *index) else {
            // The topic was deleted (or shrank, which Kafka does not allow): nothing to mark.
            tracing::info!(
                topic,
                partition = index,
                "skipping the marker of a partition that no longer exists"
            );
            continue;
        };
        match placed.leader {
            leader if leader == me => local.push((topic.clone(), *index)),
            leader if leader >= 0 => remote
                .entry(leader)
                .or_default()
                .push((topic.clone(), *index)),
            _ => {
                left.insert((topic.clone(), *index));
            }
        }
    }
    let mut waits = Vec::new();
    for (topic, index) in local {
        match append_local_marker(broker, &topic, index, marker) {
            Ok(appended) => waits.push(((topic, index), appended)),
            // A newer producer epoch already wrote there: this marker is moot.
            Err(ResponseError::InvalidProducerEpoch) => {}
            Err(code) => {
                tracing::debug!(
                    topic,
                    partition = index,
                    ?code,
                    "marker not written; retrying"
                );
                left.insert((topic, index));
            }
        }
    }
    for ((topic, index), appended) in waits {
        if let Err(code) = appended.replicated(MARKER_TIMEOUT).await {
            tracing::debug!(
                topic,
                partition = index,
                ?code,
                "marker not replicated; retrying"
            );
            left.insert((topic, index));
        }
    }
    for (leader, partitions) in remote {
        let Some(addr) = image
            .brokers
            .get(&leader)
            .and_then(|b| b.listeners.first())
            .map(|l| format!("{}:{}", l.host, l.port))
        else {
            left.extend(partitions);
            continue;
        };
        left.extend(send_remote(broker, &addr, marker, partitions).await);
    }
    left
}

/// WriteTxnMarkers to the leader at `addr`; returns the partitions that failed.
async fn send_remote(
    broker: &Broker,
    addr: &str,
    marker: &TxnMarker,
    partitions: Vec<(String, i32)>,
) -> Vec<(String, i32)> {
    let client_id = format!("inlet-txn-markers-{}", broker.node_id());
    let mut client =
        match tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(addr, &client_id)).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => {
                tracing::debug!(%addr, %error, "cannot reach a partition leader for markers");
                return partitions;
            }
            Err(_) => return partitions,
        };
    client.set_timeout(REQUEST_TIMEOUT);
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, index) in &partitions {
        by_topic.entry(topic).or_default().push(*index);
    }
    let topics = by_topic
        .into_iter()
        .map(|(topic, indexes)| {
            WritableTxnMarkerTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_indexes(indexes)
        })
        .collect();
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(marker.producer_id))
            .with_producer_epoch(marker.producer_epoch)
            .with_transaction_result(marker.commit)
            .with_coordinator_epoch(marker.coordinator_epoch)
            .with_topics(topics)]);
    let response = match client
        .send_version(request, WRITE_TXN_MARKERS_VERSION)
        .await
    {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(%addr, %error, "WriteTxnMarkers failed");
            return partitions;
        }
    };
    let mut done = BTreeSet::new();
    for result in response.markers {
        for topic in result.topics {
            for p in topic.partitions {
                match ResponseError::try_from_code(p.error_code) {
                    None => {
                        done.insert((topic.name.to_string(), p.partition_index));
                    }
                    // A newer producer epoch already wrote there: this marker is moot.
                    Some(ResponseError::InvalidProducerEpoch) => {
                        done.insert((topic.name.to_string(), p.partition_index));
                    }
                    Some(code) => {
                        tracing::debug!(%addr, topic = %topic.name.0, partition = p.partition_index, ?code, "marker refused; retrying");
                    }
                }
            }
        }
    }
    partitions
        .into_iter()
        .filter(|p| !done.contains(p))
        .collect()
}
