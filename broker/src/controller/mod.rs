//! The controller: the cluster metadata state machine (commands applied to the metadata image by
//! pure functions, placement and leader choice included) and the Raft quorum that replicates its
//! log (`quorum`, on openraft). Every node runs one (Kafka's combined mode); the active controller
//! is the quorum's leader.

pub mod apply;
pub mod commands;
pub mod liveness;
pub mod placement;
pub mod quorum;
