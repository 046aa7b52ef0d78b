//! Metadata: the brokers, and the topics a client asked for (or all), with each partition's leader,
//! replicas and ISR. Asking for a missing topic creates it when auto-creation is on and the client
//! allows it, as Kafka does.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::topic_error;
use crate::broker::Broker;
use crate::cluster::topics::{Topic, TopicError};

pub fn handle(broker: &Broker, version: i16, request: MetadataRequest) -> MetadataResponse {
    // v0 has no null topics: an empty list means "all topics" there.
    let requested = match request.topics {
        Some(topics) if !(version == 0 && topics.is_empty()) => Some(topics),
        _ => None,
    };
    let allow_auto_create = version < 4 || request.allow_auto_topic_creation;
    let topics = match requested {
        // Internal topics are listed only when asked for by name, as in Kafka.
        None => broker
            .topics
            .list()
            .iter()
            .filter(|t| !is_internal(&t.name))
            .map(|t| describe(broker, t))
            .collect(),
        Some(requested) => requested
            .into_iter()
            .map(|wanted| match wanted.name {
                Some(name) => lookup(broker, &name, allow_auto_create),
                None => match broker.topics.get_by_id(wanted.topic_id) {
                    Some(topic) => describe(broker, &topic),
                    None => MetadataResponseTopic::default()
                        .with_topic_id(wanted.topic_id)
                        .with_error_code(ResponseError::UnknownTopicId.code()),
                },
            })
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(broker.node_id()))
            .with_host(StrBytes::from_string(broker.advertised_host.clone()))
            .with_port(broker.advertised_port)])
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(broker.node_id()))
        .with_topics(topics)
}

fn lookup(broker: &Broker, name: &TopicName, allow_auto_create: bool) -> MetadataResponseTopic {
    let found = if allow_auto_create {
        broker.topic_or_auto_create(name)
    } else {
        broker
            .topics
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))
    };
    match found {
        Ok(topic) => describe(broker, &topic),
        Err(error) => MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(topic_error(&error).code()),
    }
}

fn describe(broker: &Broker, topic: &Topic) -> MetadataResponseTopic {
    let me = BrokerId(broker.node_id());
    let partitions = topic
        .partitions()
        .iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_id(me)
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(vec![me])
                .with_isr_nodes(vec![me])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(is_internal(&topic.name))
        .with_partitions(partitions)
}

fn is_internal(name: &str) -> bool {
    name == crate::group::OFFSETS_TOPIC
}
