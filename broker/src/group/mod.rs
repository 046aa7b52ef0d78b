//! The group coordinator: Kafka's classic consumer group protocol for the groups whose
//! `__consumer_offsets` partition this broker leads (Kafka's hashing of the group id over
//! `offsets.topic.num.partitions`).
//!
//! * [`state`] is one group's state machine (Empty, PreparingRebalance, CompletingRebalance,
//!   Stable, Dead) with its members, timers and committed offsets; it is plain data driven by
//!   explicit timestamps so it can be tested without a runtime; [`expiry`] is what time alone
//!   changes in it.
//! * [`membership`] holds the JoinGroup / SyncGroup / Heartbeat / LeaveGroup rules on top of it.
//! * [`log_format`] is how groups and offsets are written to `__consumer_offsets`, and [`store`]
//!   writes them through the ordinary partition log and replays them on startup (`replay`:
//!   record by record, transactions' offsets pending until their markers).
//! * [`coordinator`] owns all groups behind one lock, parks JoinGroup and SyncGroup requests until
//!   their rebalance completes, and runs the timers (session, rebalance, initial-join delay);
//!   [`offsets`] adds OffsetCommit / OffsetFetch / OffsetDelete to it, and [`txn_offsets`]
//!   TxnOffsetCommit, whose offsets wait for their transaction's marker.
//! * [`ownership`] follows the metadata image: it creates the offsets topic through the
//!   controller on first need, loads a partition's groups when this broker becomes its leader and
//!   unloads them when it stops leading it.
//!
//! Errors are [`GroupError`]s; handlers turn them into Kafka error codes.

pub mod consumer;
pub mod consumer_coordinator;
pub mod coordinator;
pub mod expiry;
pub mod log_format;
pub mod membership;
pub mod offsets;
pub mod ownership;
#[cfg(test)]
mod ownership_tests;
mod replay;
mod restore;
pub mod state;
pub mod store;
pub mod txn_offsets;

pub use coordinator::GroupCoordinator;
pub use ownership::{ensure_offsets_topic, Replay};

/// Name of the internal topic holding committed offsets and group metadata.
pub use crate::metadata::image::OFFSETS_TOPIC;

/// What a group request can fail with; each maps to one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("group id must not be empty")]
    InvalidGroupId,
    #[error("member {0:?} is not a member of the group")]
    UnknownMemberId(String),
    /// Sent with a freshly minted member id that the client must join with.
    #[error("member id required; rejoin as {0}")]
    MemberIdRequired(String),
    #[error("generation {received} is not the group's generation {current}")]
    IllegalGeneration { received: i32, current: i32 },
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    #[error("static member {instance_id} is now member {current}, not {received}")]
    FencedInstanceId {
        instance_id: String,
        current: String,
        received: String,
    },
    #[error("protocol type or protocols do not match the group's")]
    InconsistentGroupProtocol,
    #[error("session timeout {0} ms is outside the broker's allowed range")]
    InvalidSessionTimeout(i32),
    /// The group's offsets partition is not led by this broker (Kafka's NOT_COORDINATOR): the
    /// client looks for the coordinator again.
    #[error("this broker is not the group's coordinator")]
    NotCoordinator,
    /// The group's offsets partition is being replayed here.
    #[error("the group's offsets partition is still loading")]
    CoordinatorLoadInProgress,
    #[error("the coordinator is not available: {0}")]
    CoordinatorNotAvailable(&'static str),
    #[error("group {0} does not exist")]
    GroupIdNotFound(String),
    #[error("group {0} still has members")]
    NonEmptyGroup(String),
    #[error("the group's members are subscribed to topic {0}")]
    GroupSubscribedToTopic(String),
    /// A TxnOffsetCommit of a producer epoch older than the log knows (a fenced producer).
    #[error("the producer's epoch is older than the offsets partition knows")]
    InvalidProducerEpoch,
    /// ConsumerGroupHeartbeat: the member's epoch is not its current one (it must rejoin).
    #[error("member epoch {received} is fenced; the member's epoch is {current}")]
    FencedMemberEpoch { received: i32, current: i32 },
    /// OffsetCommit/OffsetFetch of a consumer group member with an epoch other than its own.
    #[error("the member epoch is stale")]
    StaleMemberEpoch,
    #[error("static member {0} has not left the group yet")]
    UnreleasedInstanceId(String),
    #[error("assignor {0:?} is not supported")]
    UnsupportedAssignor(String),
    #[error("the group has reached its maximum size")]
    GroupMaxSizeReached,
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("invalid regular expression: {0}")]
    InvalidRegularExpression(String),
    #[error("cannot write to {OFFSETS_TOPIC}: {0}")]
    Storage(String),
}

/// Coordinator settings from the broker config (Kafka's `group.*` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits
    /// for more members, extended by each new member up to the rebalance timeout.
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `group.consumer.*`: the KIP-848 protocol.
    pub consumer: consumer::ConsumerConfig,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            consumer: consumer::ConsumerConfig::default(),
        }
    }
}
