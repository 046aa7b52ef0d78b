//! DescribeCluster (KIP-700): the cluster id, the active controller and the brokers, from the
//! metadata image. Fenced brokers are listed only when a v2 client asks for them.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;

/// `endpoint_type` 1: brokers (2 would be controllers, which this API then lists instead).
const ENDPOINT_BROKERS: i8 = 1;

pub fn handle(broker: &Broker, request: DescribeClusterRequest) -> DescribeClusterResponse {
    if request.endpoint_type != ENDPOINT_BROKERS {
        return DescribeClusterResponse::default()
            .with_endpoint_type(request.endpoint_type)
            .with_error_code(ResponseError::UnsupportedEndpointType.code());
    }
    let image = broker.controller.image();
    let brokers = image
        .brokers
        .values()
        .filter(|b| request.include_fenced_brokers || !b.fenced)
        .filter_map(|b| {
            let endpoint = b.listeners.first()?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(endpoint.host.clone()))
                    .with_port(i32::from(endpoint.port))
                    .with_rack(b.rack.clone().map(StrBytes::from_string))
                    .with_is_fenced(b.fenced),
            )
        })
        .collect();
    DescribeClusterResponse::default()
        .with_endpoint_type(ENDPOINT_BROKERS)
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        // KRaft names a live broker here (it forwards controller requests); see Metadata.
        .with_controller_id(BrokerId(broker.node_id()))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}
