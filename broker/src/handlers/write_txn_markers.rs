//! WriteTxnMarkers (API 27), the broker side: a transaction coordinator on another broker asks
//! this one, the leader of some of the transaction's partitions, to write its markers. Each
//! marker goes through `txn::markers::append_local_marker` (the one local path) and is answered
//! once the partition's in-sync replicas have it.

use futures::future::join_all;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use crate::broker::Broker;
use crate::txn::markers::{append_local_marker, TxnMarker, MARKER_TIMEOUT};

pub async fn handle(broker: &Broker, request: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let mut results = Vec::with_capacity(request.markers.len());
    for marker in request.markers {
        let txn_marker = TxnMarker {
            producer_id: marker.producer_id.0,
            producer_epoch: marker.producer_epoch,
            coordinator_epoch: marker.coordinator_epoch,
            commit: marker.transaction_result,
        };
        let mut topics = Vec::with_capacity(marker.topics.len());
        for topic in marker.topics {
            let appended: Vec<_> = topic
                .partition_indexes
                .iter()
                .map(|&p| (p, append_local_marker(broker, &topic.name, p, &txn_marker)))
                .collect();
            let waits = appended.into_iter().map(|(p, appended)| async move {
                let outcome = match appended {
                    Ok(local) => local.replicated(MARKER_TIMEOUT).await,
                    Err(code) => Err(code),
                };
                let code = outcome.err().map_or(0, |c| c.code());
                WritableTxnMarkerPartitionResult::default()
                    .with_partition_index(p)
                    .with_error_code(code)
            });
            let partitions = join_all(waits).await;
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(topic.name)
                    .with_partitions(partitions),
            );
        }
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}
