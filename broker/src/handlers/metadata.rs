//! Metadata: the live brokers, and the topics a client asked for (or all), with each partition's
//! leader, replicas and ISR, all from the metadata image. Asking for a missing topic creates it
//! (through the controller) when auto-creation is on and the client allows it, as Kafka does.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::group::OFFSETS_TOPIC;
use crate::metadata::image::{MetadataImage, TopicImage};

pub async fn handle(broker: &Broker, version: i16, request: MetadataRequest) -> MetadataResponse {
    // v0 has no null topics: an empty list means "all topics" there.
    let requested = match request.topics {
        Some(topics) if !(version == 0 && topics.is_empty()) => Some(topics),
        _ => None,
    };
    let allow_auto_create = version < 4 || request.allow_auto_topic_creation;
    // Missing topics are created first, so that the answer below (one image) includes them.
    let mut refused = Vec::new();
    if let Some(requested) = &requested {
        for name in requested.iter().filter_map(|t| t.name.as_ref()) {
            let known = broker.controller.image().topic(name).is_some();
            if known {
                continue;
            }
            if name.as_str() == OFFSETS_TOPIC {
                // Kafka (2.x) creates its internal topic when it is asked for by name, with its
                // own settings, whatever the request or `auto.create.topics.enable` say.
                if let Err((code, _)) = crate::group::ensure_offsets_topic(broker).await {
                    refused.push((name.clone(), code));
                }
                continue;
            }
            let created = if allow_auto_create {
                broker.ensure_topic(name).await
            } else {
                Err(ResponseError::UnknownTopicOrPartition)
            };
            if let Err(code) = created {
                refused.push((name.clone(), code));
            }
        }
    }
    let image = broker.controller.image();
    let topics = match requested {
        // All topics, the internal ones flagged `is_internal` as Kafka lists them (clients
        // leave them out of pattern subscriptions themselves).
        None => image.topics.values().map(|t| describe(&image, t)).collect(),
        Some(requested) => requested
            .into_iter()
            .map(|wanted| match wanted.name {
                Some(name) => match image.topic(&name) {
                    Some(topic) => describe(&image, topic),
                    None => {
                        let code = refused
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map_or(ResponseError::UnknownTopicOrPartition, |(_, c)| *c);
                        unknown(name, code)
                    }
                },
                None => match image.topic_by_id(wanted.topic_id) {
                    Some(topic) => describe(&image, topic),
                    None => MetadataResponseTopic::default()
                        .with_topic_id(wanted.topic_id)
                        .with_error_code(ResponseError::UnknownTopicId.code()),
                },
            })
            .collect(),
    };
    let brokers = image
        .live_brokers()
        .filter_map(|b| {
            let endpoint = b.listeners.first()?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(endpoint.host.clone()))
                    .with_port(i32::from(endpoint.port))
                    .with_rack(b.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        // As in KRaft: clients send admin requests to "the controller", any live broker
        // forwards them to the active controller, so this broker (alive, since it answers) is
        // named; naming the quorum leader would send clients to a dead node during an election.
        .with_controller_id(BrokerId(broker.node_id()))
        .with_topics(topics)
}

fn unknown(name: TopicName, code: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(name))
        .with_error_code(code.code())
}

fn describe(image: &MetadataImage, topic: &TopicImage) -> MetadataResponseTopic {
    let ids = |brokers: &[i32]| brokers.iter().map(|&b| BrokerId(b)).collect::<Vec<_>>();
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let offline = offline_replicas(image, p);
            let error = if p.leader < 0 {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_offline_replicas(ids(&offline))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(is_internal(&topic.name))
        .with_partitions(partitions)
}

/// A partition's replicas on brokers that are not live (fenced or unregistered), as Kafka
/// lists them in `offline_replicas`.
pub(crate) fn offline_replicas(
    image: &MetadataImage,
    partition: &crate::metadata::image::PartitionImage,
) -> Vec<i32> {
    partition
        .replicas
        .iter()
        .copied()
        .filter(|&r| !image.is_live(r))
        .collect()
}

/// Kafka's internal topics, flagged `is_internal` in answers.
pub(crate) fn is_internal(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == crate::metadata::image::TRANSACTION_STATE_TOPIC
}
