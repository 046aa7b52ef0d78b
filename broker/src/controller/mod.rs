//! The controller: the cluster metadata state machine (commands applied to the metadata image by
//! pure functions, placement and leader choice included) and the Raft quorum that replicates its
//! log (`quorum`, on openraft). Every node runs one (Kafka's combined mode); the active controller
//! is the quorum's leader.
//!
//! `service` is what the rest of the broker uses (propose, read the image); `lifecycle` registers
//! this broker and heartbeats; `active` is what only the active controller does (heartbeats,
//! fencing, a new cluster's id); `machine` plugs the image into the quorum.

pub mod active;
pub mod apply;
pub mod commands;
pub mod lifecycle;
pub mod liveness;
pub mod machine;
pub mod placement;
pub mod quorum;
pub mod rebalance;
pub mod service;

pub use service::{BrokerIdentity, Controller, ControllerError};
