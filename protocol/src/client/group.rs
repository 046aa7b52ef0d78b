//! A member of a classic consumer group (JoinGroup / SyncGroup / Heartbeat / OffsetCommit /
//! LeaveGroup) with the `range` assignor ([`super::consumer_protocol`]), plus the group admin calls
//! the CLI needs (committed offsets, commits on behalf of an empty group).
//!
//! The member is driven by its owner's loop (fetch, then [`Member::heartbeat_if_due`]): with
//! fetches that wait at most a fraction of the heartbeat interval, one task is enough, and the
//! member never heartbeats for a generation whose records it is not processing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::consumer_protocol_assignment::{
    ConsumerProtocolAssignment, TopicPartition as AssignedPartitions,
};
use kafka_protocol::messages::consumer_protocol_subscription::ConsumerProtocolSubscription;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest,
    SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::cluster::{group_id, topic_name, Cluster};
use super::consumer_protocol::{
    decode_assignment, decode_subscription, encode_versioned, range_assign,
};
use super::{check, ClientError};

const OFFSET_FETCH_CAP: i16 = 7;
const OFFSET_COMMIT_CAP: i16 = 8;
const ASSIGNOR: &str = "range";
const SESSION_TIMEOUT_MS: i32 = 10_000;
const REBALANCE_TIMEOUT_MS: i32 = 30_000;
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// Join attempts before giving up (each retriable error costs one and a short pause).
const MAX_JOIN_ATTEMPTS: u32 = 50;

/// (topic, partition) -> offset.
pub type Offsets = BTreeMap<(String, i32), i64>;

pub struct Member {
    group: String,
    topics: Vec<String>,
    member_id: String,
    generation_id: i32,
    assignment: BTreeMap<String, Vec<i32>>,
    last_heartbeat: Instant,
}

impl Member {
    /// Joins `group` subscribed to `topics` and waits for this generation's assignment.
    pub async fn join(
        cluster: &mut Cluster,
        group: &str,
        topics: Vec<String>,
    ) -> Result<Member, ClientError> {
        let mut member = Member {
            group: group.to_string(),
            topics,
            member_id: String::new(),
            generation_id: -1,
            assignment: BTreeMap::new(),
            last_heartbeat: Instant::now(),
        };
        member.rejoin(cluster).await?;
        Ok(member)
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    /// topic -> partitions assigned to this member in the current generation.
    pub fn assignment(&self) -> &BTreeMap<String, Vec<i32>> {
        &self.assignment
    }

    /// Runs JoinGroup and SyncGroup until a generation is complete.
    pub async fn rejoin(&mut self, cluster: &mut Cluster) -> Result<(), ClientError> {
        let subscription = encode_versioned(
            &ConsumerProtocolSubscription::default().with_topics(
                self.topics
                    .iter()
                    .map(|t| StrBytes::from_string(t.clone()))
                    .collect(),
            ),
            0,
        )?;
        for _ in 0..MAX_JOIN_ATTEMPTS {
            let coordinator = cluster.coordinator(&self.group).await?;
            let version = coordinator.version_for::<JoinGroupRequest>()?;
            let mut request = JoinGroupRequest::default()
                .with_group_id(group_id(&self.group))
                .with_session_timeout_ms(SESSION_TIMEOUT_MS)
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str(ASSIGNOR))
                    .with_metadata(subscription.clone())]);
            if version >= 1 {
                request.rebalance_timeout_ms = REBALANCE_TIMEOUT_MS;
            }
            let joined = coordinator.send_version(request, version).await?;
            match ResponseError::try_from_code(joined.error_code) {
                None => {}
                Some(ResponseError::MemberIdRequired) => {
                    self.member_id = joined.member_id.to_string();
                    continue;
                }
                Some(error) if self.retry_after(cluster, error).await => continue,
                Some(_) => {
                    return check(joined.error_code, || format!("join group {}", self.group))
                }
            }
            self.member_id = joined.member_id.to_string();
            self.generation_id = joined.generation_id;
            let assignments = if joined.leader == joined.member_id {
                let members = joined
                    .members
                    .iter()
                    .map(|m| {
                        let topics = decode_subscription(&m.metadata)?;
                        Ok((m.member_id.to_string(), topics))
                    })
                    .collect::<Result<Vec<_>, ClientError>>()?;
                self.leader_assignments(cluster, &members).await?
            } else {
                Vec::new()
            };
            let coordinator = cluster.coordinator(&self.group).await?;
            let version = coordinator.version_for::<SyncGroupRequest>()?;
            let mut request = SyncGroupRequest::default()
                .with_group_id(group_id(&self.group))
                .with_generation_id(self.generation_id)
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_assignments(assignments);
            if version >= 5 {
                request.protocol_type = Some(StrBytes::from_static_str("consumer"));
                request.protocol_name = Some(StrBytes::from_static_str(ASSIGNOR));
            }
            let synced = coordinator.send_version(request, version).await?;
            match ResponseError::try_from_code(synced.error_code) {
                None => {}
                Some(error) if self.retry_after(cluster, error).await => continue,
                Some(_) => {
                    return check(synced.error_code, || format!("sync group {}", self.group))
                }
            }
            self.assignment = decode_assignment(&synced.assignment)?;
            self.last_heartbeat = Instant::now();
            return Ok(());
        }
        Err(ClientError::Protocol(format!(
            "group {} did not settle after {MAX_JOIN_ATTEMPTS} join attempts",
            self.group
        )))
    }

    /// Whether `error` during a join means "try again" (after adjusting state and pausing).
    async fn retry_after(&mut self, cluster: &mut Cluster, error: ResponseError) -> bool {
        match error {
            ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration => {}
            ResponseError::UnknownMemberId => self.member_id.clear(),
            ResponseError::NotCoordinator
            | ResponseError::CoordinatorNotAvailable
            | ResponseError::CoordinatorLoadInProgress => cluster.forget_coordinator(&self.group),
            _ => return false,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        true
    }

    /// The leader's job: the range assignment of every member's subscribed topics.
    async fn leader_assignments(
        &self,
        cluster: &mut Cluster,
        members: &[(String, Vec<String>)],
    ) -> Result<Vec<SyncGroupRequestAssignment>, ClientError> {
        let mut topics: Vec<String> = members.iter().flat_map(|(_, t)| t.clone()).collect();
        topics.sort();
        topics.dedup();
        let metadata = cluster.metadata(Some(&topics), false).await?;
        let counts: BTreeMap<String, i32> = metadata
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .filter_map(|t| Some((t.name.as_ref()?.to_string(), t.partitions.len() as i32)))
            .collect();
        range_assign(members, &counts)
            .into_iter()
            .map(|(member, assignment)| {
                let partitions = assignment
                    .into_iter()
                    .map(|(topic, partitions)| {
                        AssignedPartitions::default()
                            .with_topic(topic_name(&topic))
                            .with_partitions(partitions)
                    })
                    .collect();
                let bytes = encode_versioned(
                    &ConsumerProtocolAssignment::default().with_assigned_partitions(partitions),
                    0,
                )?;
                Ok(SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member))
                    .with_assignment(bytes))
            })
            .collect()
    }

    /// Sends a heartbeat when one is due. Returns `true` when the group rebalanced (and this
    /// member has rejoined, possibly with a different assignment).
    pub async fn heartbeat_if_due(&mut self, cluster: &mut Cluster) -> Result<bool, ClientError> {
        if self.last_heartbeat.elapsed() < HEARTBEAT_INTERVAL {
            return Ok(false);
        }
        let request = HeartbeatRequest::default()
            .with_group_id(group_id(&self.group))
            .with_generation_id(self.generation_id)
            .with_member_id(StrBytes::from_string(self.member_id.clone()));
        let response = cluster
            .coordinator(&self.group)
            .await?
            .send(request)
            .await?;
        self.last_heartbeat = Instant::now();
        self.rebalance_if_needed(cluster, response.error_code, "heartbeat")
            .await
    }

    /// Commits `offsets` (the next offset to read, per partition) for this generation. Returns
    /// `true` when the group rebalanced instead (the commit was refused and the member rejoined).
    pub async fn commit(
        &mut self,
        cluster: &mut Cluster,
        offsets: &Offsets,
    ) -> Result<bool, ClientError> {
        let codes = commit_offsets(
            cluster,
            &self.group,
            self.generation_id,
            &self.member_id,
            offsets,
        )
        .await?;
        for code in codes {
            if self.rebalance_if_needed(cluster, code, "commit").await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn rebalance_if_needed(
        &mut self,
        cluster: &mut Cluster,
        code: i16,
        what: &str,
    ) -> Result<bool, ClientError> {
        match ResponseError::try_from_code(code) {
            None => Ok(false),
            Some(
                ResponseError::RebalanceInProgress
                | ResponseError::IllegalGeneration
                | ResponseError::UnknownMemberId
                | ResponseError::NotCoordinator,
            ) => {
                if code == ResponseError::UnknownMemberId.code() {
                    self.member_id.clear();
                }
                if code == ResponseError::NotCoordinator.code() {
                    cluster.forget_coordinator(&self.group);
                }
                self.rejoin(cluster).await?;
                Ok(true)
            }
            Some(_) => check(code, || format!("{what} in group {}", self.group)).map(|_| false),
        }
    }

    /// Leaves the group so the others rebalance at once instead of after the session timeout.
    pub async fn leave(self, cluster: &mut Cluster) -> Result<(), ClientError> {
        let coordinator = cluster.coordinator(&self.group).await?;
        let version = coordinator.version_for::<LeaveGroupRequest>()?;
        let mut request = LeaveGroupRequest::default().with_group_id(group_id(&self.group));
        if version >= 3 {
            request.members = vec![
                kafka_protocol::messages::leave_group_request::MemberIdentity::default()
                    .with_member_id(StrBytes::from_string(self.member_id.clone())),
            ];
        } else {
            request.member_id = StrBytes::from_string(self.member_id.clone());
        }
        let response = coordinator.send_version(request, version).await?;
        check(response.error_code, || {
            format!("leave group {}", self.group)
        })
    }
}

/// Committed offsets of `group` (`topics: None`: every partition the group has offsets for).
/// Partitions without a committed offset are left out.
pub async fn fetch_offsets(
    cluster: &mut Cluster,
    group: &str,
    topics: Option<&BTreeMap<String, Vec<i32>>>,
) -> Result<Offsets, ClientError> {
    let request = OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_topics(topics.map(|topics| {
            topics
                .iter()
                .map(|(topic, partitions)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(topic))
                        .with_partition_indexes(partitions.clone())
                })
                .collect()
        }));
    let response = cluster
        .coordinator(group)
        .await?
        .send_capped(request, OFFSET_FETCH_CAP)
        .await?;
    check(response.error_code, || {
        format!("fetch offsets of group {group}")
    })?;
    let mut offsets = Offsets::new();
    for topic in response.topics {
        for p in topic.partitions {
            check(p.error_code, || {
                format!(
                    "fetch offset of {}/{}",
                    topic.name.as_str(),
                    p.partition_index
                )
            })?;
            if p.committed_offset >= 0 {
                offsets.insert(
                    (topic.name.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    Ok(offsets)
}

/// Commits `offsets` for `group`; generation -1 and an empty member id commit for a group with no
/// active members (what `group reset-offsets` does). Returns every partition's error code.
pub async fn commit_offsets(
    cluster: &mut Cluster,
    group: &str,
    generation_id: i32,
    member_id: &str,
    offsets: &Offsets,
) -> Result<Vec<i16>, ClientError> {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((topic, partition), &offset) in offsets {
        by_topic.entry(topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(offset),
        );
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(generation_id)
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let response = cluster
        .coordinator(group)
        .await?
        .send_capped(request, OFFSET_COMMIT_CAP)
        .await?;
    Ok(response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect())
}
