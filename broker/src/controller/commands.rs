//! What the controller's Raft log carries: the commands (`ControllerCommand`) every node applies
//! in log order to its metadata image, and what applying one yields (`CommandOutcome`). Anything
//! random or time-dependent (topic ids, fencing decisions) is decided by the proposer and carried
//! here, so that applying is deterministic.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::metadata::image::{Endpoint, PartitionImage};

/// Producer ids per block handed to a broker (Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
pub const PRODUCER_ID_BLOCK_SIZE: i32 = 1000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ControllerCommand {
    /// First command of a cluster; ignored (Ok) when a cluster id is already set.
    InitCluster {
        cluster_id: String,
    },
    /// A broker (re)starting. The same incarnation again is a retry (same epoch back); a new
    /// incarnation first fences the old one (its leaderships move), then replaces it with a new
    /// epoch. Registered brokers start FENCED until their first heartbeat unfences them.
    RegisterBroker {
        id: i32,
        incarnation_id: Uuid,
        listeners: Vec<Endpoint>,
        rack: Option<String>,
    },
    /// Decided by the active controller's liveness timer. Moves leadership away (leader choice
    /// from the ISR) and removes the broker from every ISR where that leaves someone.
    FenceBroker {
        id: i32,
        epoch: i64,
    },
    /// Gives leaderless partitions whose ISR holds the broker their leader back.
    UnfenceBroker {
        id: i32,
        epoch: i64,
    },
    /// Explicit deregistration: fencing, then the registration goes (replica lists keep the id).
    UnregisterBroker {
        id: i32,
        epoch: i64,
    },
    /// `assignments`: explicit replica lists per partition, or None for `placement::place`.
    CreateTopic {
        name: String,
        topic_id: Uuid,
        partitions: i32,
        replication_factor: i16,
        assignments: Option<Vec<Vec<i32>>>,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    },
    DeleteTopic {
        name: String,
    },
    /// `count` is the new total (as in Kafka's CreatePartitions); `assignments` are for the new
    /// partitions only.
    CreatePartitions {
        name: String,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    },
    /// IncrementalAlterConfigs (or the legacy AlterConfigs, as Clear + Sets) for one resource,
    /// all ops or none: Set / Delete per key (APPEND / SUBTRACT for list configs are not
    /// supported).
    AlterConfigs {
        resource: ConfigResource,
        ops: Vec<ConfigOp>,
        validate_only: bool,
    },
    /// AlterClientQuotas for one entity, all changes or none: `Some` sets a quota key, `None`
    /// removes it.
    AlterClientQuotas {
        entity: crate::metadata::quotas::QuotaEntity,
        changes: Vec<(String, Option<f64>)>,
        validate_only: bool,
    },
    /// A block of `PRODUCER_ID_BLOCK_SIZE` producer ids for one broker.
    AllocateProducerIds {
        broker_id: i32,
        broker_epoch: i64,
    },
    /// Raises the producer-id high mark to at least `at_least` (never lowers it): seeds the image
    /// from a single-node data dir's local `producer-ids` counter on migration.
    AdvanceProducerIds {
        at_least: i64,
    },
    /// ISR change requested by a partition leader (Kafka's AlterPartition), checked against the
    /// leader epoch and the partition epoch.
    AlterPartition {
        topic: String,
        partition: i32,
        leader_id: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<i32>,
    },
    /// AlterPartitionReassignments for one partition: move it to `target` replicas (the first
    /// becomes the preferred leader), or with None cancel the reassignment in progress.
    ReassignPartition {
        topic: String,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// ElectLeaders for one partition (also the automatic rebalance's preferred elections).
    ElectLeader {
        topic: String,
        partition: i32,
        election: Election,
    },
}

/// Kafka's ElectLeaders `election_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Election {
    /// 0: the preferred replica (the first), if it is live and in the ISR.
    Preferred,
    /// 1: only for a partition without a leader: a live replica even outside the ISR (it may
    /// lack acknowledged records; Kafka's unclean election).
    Unclean,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic(String),
    Broker(i32),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigOp {
    Set {
        name: String,
        value: String,
    },
    Delete {
        name: String,
    },
    /// Drops every override first: the legacy AlterConfigs replaces a resource's whole set.
    Clear,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CommandOutcome {
    Ok,
    /// A Kafka error code; the image is unchanged (but for `last_applied`).
    Error {
        code: i16,
        message: String,
    },
    BrokerRegistered {
        epoch: i64,
    },
    TopicCreated {
        topic_id: Uuid,
        partitions: Vec<PartitionImage>,
    },
    /// The new partitions of a CreatePartitions, in index order.
    PartitionsCreated {
        partitions: Vec<PartitionImage>,
    },
    ProducerIds {
        start: i64,
        len: i32,
    },
    PartitionAltered(PartitionImage),
}

impl CommandOutcome {
    pub fn error(error: ResponseError, message: impl Into<String>) -> CommandOutcome {
        CommandOutcome::Error {
            code: error.code(),
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, CommandOutcome::Error { .. })
    }

    /// The Kafka error code: 0 unless this is an error.
    pub fn error_code(&self) -> i16 {
        match self {
            CommandOutcome::Error { code, .. } => *code,
            _ => 0,
        }
    }
}
