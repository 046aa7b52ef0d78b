//! A view of a whole cluster from a list of bootstrap addresses: the first reachable one answers
//! metadata and admin requests; per-partition requests go to the partition's leader and group
//! requests to the group's coordinator, each over its own lazily opened [`Client`].
//!
//! Requests are filled with the fields of older protocol versions (topics by name) and sent with
//! a version cap, so the same code speaks to Inlet, Apache Kafka and Redpanda.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, DeleteRecordsRequest, GroupId, ListOffsetsRequest, MetadataRequest, MetadataResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{check, check_with_message, Client, ClientError};

/// Highest Metadata version whose fields we fill (v13 only adds a top-level error code).
const METADATA_CAP: i16 = 12;
/// FindCoordinator v4+ batches keys; we look up one group at a time.
const FIND_COORDINATOR_CAP: i16 = 3;

/// ListOffsets timestamp that asks for the log start offset.
pub const EARLIEST: i64 = -2;
/// ListOffsets timestamp that asks for the log end offset (high watermark).
pub const LATEST: i64 = -1;

/// One partition as Metadata describes it.
#[derive(Debug, Clone)]
pub struct PartitionInfo {
    pub index: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error_code: i16,
}

/// One topic as Metadata describes it, partitions sorted by index.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: String,
    pub id: String,
    pub internal: bool,
    pub partitions: Vec<PartitionInfo>,
}

pub struct Cluster {
    client_id: String,
    bootstrap: Client,
    /// node id -> advertised `host:port`, from the latest Metadata answer.
    brokers: BTreeMap<i32, String>,
    connections: HashMap<i32, Client>,
    controller: i32,
    /// group id -> coordinator node id.
    coordinators: HashMap<String, i32>,
}

/// How long one bootstrap address may take to answer when others could be tried instead.
const BOOTSTRAP_ATTEMPT: std::time::Duration = std::time::Duration::from_secs(10);

impl Cluster {
    /// Connects to the first address of a comma-separated `bootstrap` list that answers: the
    /// connection, version negotiation and a first metadata request. With more than one address
    /// each gets [`BOOTSTRAP_ATTEMPT`] (Kafka's `socket.connection.setup.timeout.ms`), so a hung
    /// broker (stopped, but its kernel still accepting connections) costs seconds, not the whole
    /// request timeout, before the next is tried.
    pub async fn connect(bootstrap: &str, client_id: &str) -> Result<Cluster, ClientError> {
        let addrs: Vec<&str> = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        let mut last_error = None;
        for addr in &addrs {
            let attempt = Cluster::connect_one(addr, client_id);
            let outcome = if addrs.len() > 1 {
                tokio::time::timeout(BOOTSTRAP_ATTEMPT, attempt)
                    .await
                    .unwrap_or(Err(ClientError::Timeout(BOOTSTRAP_ATTEMPT)))
            } else {
                attempt.await
            };
            match outcome {
                Ok(cluster) => return Ok(cluster),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            ClientError::Protocol(format!("no bootstrap address in {bootstrap:?}"))
        }))
    }

    async fn connect_one(addr: &str, client_id: &str) -> Result<Cluster, ClientError> {
        let client = Client::connect(addr, client_id).await?;
        let mut cluster = Cluster {
            client_id: client_id.to_string(),
            bootstrap: client,
            brokers: BTreeMap::new(),
            connections: HashMap::new(),
            controller: -1,
            coordinators: HashMap::new(),
        };
        cluster.metadata(Some(&[]), false).await?;
        Ok(cluster)
    }

    /// The connection to the bootstrap broker, for cluster-wide admin requests.
    pub fn any(&mut self) -> &mut Client {
        &mut self.bootstrap
    }

    /// Node id -> `host:port` of every broker in the latest metadata.
    pub fn brokers(&self) -> &BTreeMap<i32, String> {
        &self.brokers
    }

    /// Metadata for `topics` (`None`: every topic; `Some(&[])`: none, brokers only).
    pub async fn metadata(
        &mut self,
        topics: Option<&[String]>,
        allow_auto_create: bool,
    ) -> Result<MetadataResponse, ClientError> {
        let version = self
            .bootstrap
            .version_capped::<MetadataRequest>(METADATA_CAP)?;
        let topics = topics.map(|names| {
            names
                .iter()
                .map(|n| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                })
                .collect()
        });
        let mut request = MetadataRequest::default().with_topics(topics);
        if version >= 4 {
            request.allow_auto_topic_creation = allow_auto_create;
        }
        let response = self.bootstrap.send_version(request, version).await?;
        self.brokers = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        self.controller = response.controller_id.0;
        Ok(response)
    }

    /// The connection admin requests (create/delete topics, configs) go to: the controller
    /// when metadata names a reachable one (older Kafka requires it), else the bootstrap broker.
    pub async fn controller(&mut self) -> Result<&mut Client, ClientError> {
        if self.brokers.contains_key(&self.controller) {
            let node = self.controller;
            return self.broker(node).await;
        }
        Ok(&mut self.bootstrap)
    }

    /// One topic's partitions and leaders; an unknown topic is an error.
    pub async fn topic(&mut self, name: &str) -> Result<TopicInfo, ClientError> {
        let response = self.metadata(Some(&[name.to_string()]), false).await?;
        let topic = response
            .topics
            .into_iter()
            .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(name))
            .ok_or_else(|| {
                ClientError::Protocol(format!("metadata has no entry for topic {name}"))
            })?;
        let hint = (topic.error_code == ResponseError::UnknownTopicOrPartition.code())
            .then_some("the topic does not exist");
        check_with_message(topic.error_code, hint, || format!("topic {name}"))?;
        Ok(topic_info(topic))
    }

    /// Every topic the cluster reports, sorted by name.
    pub async fn topics(&mut self) -> Result<Vec<TopicInfo>, ClientError> {
        let response = self.metadata(None, false).await?;
        let mut topics: Vec<TopicInfo> = response.topics.into_iter().map(topic_info).collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// The connection to broker `node`, opened on first use.
    pub async fn broker(&mut self, node: i32) -> Result<&mut Client, ClientError> {
        if !self.connections.contains_key(&node) {
            let addr = self.brokers.get(&node).cloned().ok_or_else(|| {
                ClientError::Protocol(format!("broker {node} is not in the cluster metadata"))
            })?;
            let client = Client::connect(addr.as_str(), &self.client_id).await?;
            self.connections.insert(node, client);
        }
        self.connections
            .get_mut(&node)
            .ok_or_else(|| ClientError::Protocol(format!("no connection to broker {node}")))
    }

    /// Offsets of `partitions` of `topic` at `timestamp` ([`EARLIEST`], [`LATEST`] or a time in
    /// ms; for a time past the last record the answer is -1), asked of each partition's leader.
    pub async fn list_offsets(
        &mut self,
        topic: &TopicInfo,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<BTreeMap<i32, i64>, ClientError> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in &topic.partitions {
            if partitions.contains(&p.index) {
                by_leader.entry(p.leader).or_default().push(p.index);
            }
        }
        let mut offsets = BTreeMap::new();
        for (leader, indexes) in by_leader {
            let request = list_offsets_request(&topic.name, &indexes, timestamp);
            let response = self.broker(leader).await?.send(request).await?;
            for t in response.topics {
                for p in t.partitions {
                    check(p.error_code, || {
                        format!("list offsets of {}/{}", topic.name, p.partition_index)
                    })?;
                    offsets.insert(p.partition_index, p.offset);
                }
            }
        }
        Ok(offsets)
    }

    /// DeleteRecords: moves the log start of each `(partition, offset)` of `topic` up to
    /// `offset` (-1: the high watermark), asked of each partition's leader. Per partition, the
    /// new log start (Kafka's low watermark) or the broker's refusal; a partition the metadata
    /// shows without a leader is refused as LEADER_NOT_AVAILABLE.
    pub async fn delete_records(
        &mut self,
        topic: &TopicInfo,
        offsets: &[(i32, i64)],
        timeout_ms: i32,
    ) -> Result<BTreeMap<i32, Result<i64, ClientError>>, ClientError> {
        let mut by_leader: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
        let mut results = BTreeMap::new();
        for &(index, offset) in offsets {
            match topic.partitions.iter().find(|p| p.index == index) {
                Some(p) if p.leader >= 0 => {
                    by_leader.entry(p.leader).or_default().push((index, offset))
                }
                Some(_) => {
                    results.insert(
                        index,
                        check(ResponseError::LeaderNotAvailable.code(), || {
                            format!("delete records of {}/{index}", topic.name)
                        })
                        .map(|()| -1),
                    );
                }
                None => {
                    results.insert(
                        index,
                        check(ResponseError::UnknownTopicOrPartition.code(), || {
                            format!("delete records of {}/{index}", topic.name)
                        })
                        .map(|()| -1),
                    );
                }
            }
        }
        for (leader, wanted) in by_leader {
            let request = DeleteRecordsRequest::default()
                .with_timeout_ms(timeout_ms)
                .with_topics(vec![DeleteRecordsTopic::default()
                    .with_name(topic_name(&topic.name))
                    .with_partitions(
                        wanted
                            .iter()
                            .map(|&(index, offset)| {
                                DeleteRecordsPartition::default()
                                    .with_partition_index(index)
                                    .with_offset(offset)
                            })
                            .collect(),
                    )]);
            let response = self.broker(leader).await?.send(request).await?;
            for t in response.topics {
                for p in t.partitions {
                    let index = p.partition_index;
                    let result =
                        check_with_message(p.error_code, delete_records_hint(p.error_code), || {
                            format!("delete records of {}/{index}", topic.name)
                        })
                        .map(|()| p.low_watermark);
                    results.insert(index, result);
                }
            }
        }
        Ok(results)
    }

    /// The connection to `group`'s coordinator, found with FindCoordinator on first use.
    pub async fn coordinator(&mut self, group: &str) -> Result<&mut Client, ClientError> {
        if let Some(&node) = self.coordinators.get(group) {
            return self.broker(node).await;
        }
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_string()))
            .with_key_type(0);
        // The coordinator may be elected on first use: Kafka answers COORDINATOR_NOT_AVAILABLE
        // for a moment, so retry briefly.
        let mut attempts = 0;
        let response = loop {
            let response = self
                .bootstrap
                .send_capped(request.clone(), FIND_COORDINATOR_CAP)
                .await?;
            let retriable =
                ResponseError::try_from_code(response.error_code).is_some_and(|e| e.is_retriable());
            attempts += 1;
            if !retriable || attempts >= 20 {
                break response;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        };
        check_with_message(
            response.error_code,
            response.error_message.as_deref(),
            || format!("find the coordinator of group {group}"),
        )?;
        let node = response.node_id.0;
        self.brokers
            .entry(node)
            .or_insert_with(|| format!("{}:{}", response.host.as_str(), response.port));
        self.coordinators.insert(group.to_string(), node);
        self.broker(node).await
    }

    /// Forgets a group's coordinator (after NOT_COORDINATOR), so the next call looks it up again.
    pub fn forget_coordinator(&mut self, group: &str) {
        self.coordinators.remove(group);
    }
}

/// A group id for the generated request types.
/// What a DeleteRecords refusal usually means, for people reading it.
fn delete_records_hint(code: i16) -> Option<&'static str> {
    match ResponseError::try_from_code(code)? {
        ResponseError::OffsetOutOfRange => {
            Some("the offset is past the partition's high watermark")
        }
        ResponseError::PolicyViolation => Some("the topic's cleanup.policy is compact only"),
        ResponseError::RequestTimedOut => {
            Some("the leader moved its start, but not every in-sync replica did in time")
        }
        _ => None,
    }
}

pub fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_string()))
}

/// A consumer's ListOffsets request for `indexes` of `topic` at `timestamp` (or `EARLIEST`,
/// `LATEST`).
pub fn list_offsets_request(topic: &str, indexes: &[i32], timestamp: i64) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                indexes
                    .iter()
                    .map(|&i| {
                        ListOffsetsPartition::default()
                            .with_partition_index(i)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )])
}

/// A topic name for the generated request types.
pub fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn topic_info(
    topic: kafka_protocol::messages::metadata_response::MetadataResponseTopic,
) -> TopicInfo {
    let mut partitions: Vec<PartitionInfo> = topic
        .partitions
        .into_iter()
        .map(|p| PartitionInfo {
            index: p.partition_index,
            leader: p.leader_id.0,
            leader_epoch: p.leader_epoch,
            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
            error_code: p.error_code,
        })
        .collect();
    partitions.sort_by_key(|p| p.index);
    TopicInfo {
        name: topic.name.map(|n| n.to_string()).unwrap_or_default(),
        id: topic.topic_id.to_string(),
        internal: topic.is_internal,
        partitions,
    }
}
