//! The controller quorum: a Raft-replicated state machine node on **openraft** (0.9). Consensus,
//! election and membership are openraft's; this module supplies what openraft leaves to the
//! application:
//!
//! - `log_store` (record format in `log_record`, file helpers in `files`): the Raft log and the
//!   vote on disk under `dir`, fsynced, checksummed, recovered after kill -9 (a torn tail is
//!   dropped, a damaged middle is an error);
//! - `state_machine`: the bridge to a [`ReplicatedState`] plus snapshots on disk;
//! - `wire`, `network`, `server`: the controller network, our own TCP listener (wire format in
//!   `wire`'s doc);
//! - `node`: [`QuorumNode`], the public face: start, propose, leader calls, status.
//!
//! Fail-over time: openraft 0.9 keeps a leader lease, so a follower starts an election only
//! `election_timeout_max + random(election_timeout_min..max)` after the last heartbeat: measured
//! 3.2–3.9 s with the default (1000, 2000) ms, 1.7 s with (500, 1000).
//!
//! The voter set is static, given at start-up like `controller.quorum.voters`; voters are broker
//! and controller at once (Kafka's combined mode). Other nodes join as *observers* (Kafka's
//! broker-only nodes, `process.roles=broker`): openraft learners that ask the leader to add them
//! ([`wire::Request::AddLearner`]), receive the log, never vote and never lead. Their addresses
//! travel in the membership, so every voter can reach them once it leads. Commands are opaque
//! bytes; the metadata state machine plugs in through [`ReplicatedState`].
//!
//! Index convention: openraft's first log entry has index 0, so a Raft index is a Kafka offset;
//! the high watermark in [`QuorumStatus`] is `committed index + 1` (Kafka's high watermark is
//! the offset *after* the last committed record) and a voter's log end offset is its matched
//! index + 1.

mod files;
mod log_record;
pub mod log_store;
mod network;
mod node;
mod reserve;
mod server;
pub mod state_machine;
mod wire;

#[cfg(test)]
mod storage_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use node::QuorumNode;

/// What the quorum replicates into. Applied in log order on every node.
pub trait ReplicatedState: Send + 'static {
    /// Apply one committed command; the returned bytes go back to the proposer.
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8>;
    /// The whole state as bytes, for a snapshot (taken at the last applied index).
    fn snapshot(&self) -> Vec<u8>;
    /// Replace the state with a snapshot's (taken at `index`).
    fn restore(&mut self, index: u64, snapshot: &[u8]) -> Result<(), String>;
}

/// Answers [`QuorumNode::leader_call`] requests on the leader (not logged).
pub type LeaderHandler = Arc<dyn Fn(Vec<u8>) -> BoxFuture<'static, Vec<u8>> + Send + Sync>;

/// The largest command [`QuorumNode::propose`] accepts (and leader-call request/response).
pub const MAX_COMMAND_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node_id: i32,
    /// id -> "host:port" of its controller listener.
    pub voters: BTreeMap<i32, String>,
    /// Where this node's controller listener binds (None: quorum of one).
    pub listen: Option<SocketAddr>,
    /// Set for an observer (not among `voters`): the `host:port` the leader reaches this node's
    /// controller listener at, sent along when it asks to be added as a learner.
    pub observer_address: Option<String>,
    /// The metadata log dir.
    pub dir: PathBuf,
    /// (min, max) ms; fail-over takes about max + a random value in [min, max] (see module doc).
    pub election_timeout_ms: (u64, u64),
    /// Also openraft's bound on one AppendEntries round trip, follower fsync included.
    pub heartbeat_interval_ms: u64,
    /// Entries between snapshots; also how many entries are kept behind a snapshot.
    pub snapshot_every: u64,
    /// Every RPC is bounded by this.
    pub rpc_timeout_ms: u64,
}

impl QuorumConfig {
    /// A config with the defaults; for a quorum of one pass `voters` = {node_id: ""} and no
    /// `listen`.
    pub fn new(
        node_id: i32,
        voters: BTreeMap<i32, String>,
        listen: Option<SocketAddr>,
        dir: PathBuf,
    ) -> Self {
        QuorumConfig {
            node_id,
            voters,
            listen,
            observer_address: None,
            dir,
            election_timeout_ms: (1000, 2000),
            heartbeat_interval_ms: 250,
            snapshot_every: 1000,
            rpc_timeout_ms: 1000,
        }
    }
}

/// Parses Kafka's `controller.quorum.voters` syntax: `1@host:port,2@host:port`.
pub fn parse_voters(s: &str) -> Result<BTreeMap<i32, String>, QuorumError> {
    let mut voters = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || QuorumError::Config(format!("bad voter {part:?}: expected id@host:port"));
        let (id, addr) = part.split_once('@').ok_or_else(bad)?;
        let id: i32 = id.trim().parse().map_err(|_| bad())?;
        if id < 0 || addr.rsplit_once(':').is_none() {
            return Err(bad());
        }
        if voters.insert(id, addr.trim().to_string()).is_some() {
            return Err(QuorumError::Config(format!("voter {id} given twice")));
        }
    }
    Ok(voters)
}

/// Who leads, in which term (Kafka's leader epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Leadership {
    pub leader: Option<i32>,
    pub term: u64,
}

/// DescribeQuorum's view, from the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    pub leader_id: i32,
    /// The Raft term.
    pub leader_epoch: u64,
    /// Committed index + 1 (Kafka: the offset after the last committed record).
    pub high_watermark: u64,
    pub voters: Vec<VoterStatus>,
    /// The learners (observer brokers), as DescribeQuorum's `observers`.
    #[serde(default)]
    pub observers: Vec<VoterStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterStatus {
    pub replica_id: i32,
    /// Matched index + 1 as the leader sees it; 0 when nothing is known to match.
    pub log_end_offset: u64,
    /// Ms since the epoch of the last successful AppendEntries to it; -1 when unknown.
    pub last_fetch_timestamp: i64,
    /// Ms since the epoch when it was last seen matching the leader's log end; -1 when unknown.
    pub last_caught_up_timestamp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("controller quorum: {0}")]
    Config(String),
    #[error("metadata log storage: {0}")]
    Storage(String),
    #[error("controller listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("not the leader; the leader is {0}")]
    NotLeader(i32),
    #[error("no leader elected")]
    NoLeader,
    #[error("timed out")]
    Timeout,
    #[error("the quorum node is shut down")]
    Shutdown,
    #[error("command too large: {0} bytes")]
    TooLarge(usize),
    #[error("peer failure: {0}")]
    Remote(String),
}

impl QuorumError {
    /// Kafka's error code for this error, for handlers that answer with one.
    pub fn code(&self) -> i16 {
        use kafka_protocol::ResponseError as E;
        match self {
            QuorumError::NotLeader(_) | QuorumError::NoLeader => E::NotController.code(),
            QuorumError::Timeout => E::RequestTimedOut.code(),
            QuorumError::TooLarge(_) => E::MessageTooLarge.code(),
            _ => E::UnknownServerError.code(),
        }
    }
}

openraft::declare_raft_types!(
    /// openraft's type configuration for the controller quorum.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A replicated command: opaque bytes (hex on the wire and on disk, not a JSON number array).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command(#[serde(with = "hex_bytes")] pub Vec<u8>);

/// What applying a command produced, and at which index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub index: u64,
    #[serde(with = "hex_bytes")]
    pub reply: Vec<u8>,
}

/// Bytes as a lowercase hex string.
pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let digit = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(serde::de::Error::custom("bad hex digit")),
        };
        let b = s.as_bytes();
        if b.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd hex length"));
        }
        b.chunks(2)
            .map(|p| Ok(digit(p[0])? << 4 | digit(p[1])?))
            .collect()
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
