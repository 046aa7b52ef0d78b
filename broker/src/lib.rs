//! The Inlet broker: a Kafka-protocol server over Inlet's segment logs.
//!
//! A request travels `server` (accept) -> `connection` (frames, decode, ordered responses) ->
//! `handlers::<api>` (behaviour) -> `cluster` (topics, partitions) -> `inlet_storage::Log`.

pub mod broker;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod controller;
pub mod fd_limit;
pub mod group;
pub mod handlers;
pub mod lake;
pub mod metadata;
pub mod metrics;
pub mod quota;
pub mod record_format;
pub mod replica;
pub mod replication;
pub mod server;
pub mod txn;

#[cfg(test)]
mod internal_records_tests;

pub use broker::{Broker, BrokerError};
pub use config::BrokerConfig;
