//! Broker configuration: one `BrokerConfig` with embedded defaults, loaded from TOML and then
//! overridden by the command line and `INLET_*` environment variables (the binary owns that layer).
//! Every topic-level default (`log.*`) maps to the Kafka topic config a user would look for.
//! `[lake]` says where closed segments are tiered (KIP-405 style): a directory or an S3 bucket.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use inlet_storage::tier::{LakeLocation, S3Location};
use serde::{Deserialize, Serialize};

/// Everything a broker needs to start. `Default` is what `inlet serve` runs with no arguments.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// This broker's id in the cluster (`node.id`).
    pub node_id: i32,
    /// Address the Kafka listener binds (`listeners`).
    pub listen: SocketAddr,
    /// `host:port` clients are told to connect to (`advertised.listeners`).
    pub advertised_listener: String,
    /// Where partitions and metadata live (`log.dirs`).
    pub data_dir: PathBuf,
    /// Largest request frame accepted (`socket.request.max.bytes`).
    pub socket_request_max_bytes: usize,
    /// Broker-wide budget of request bytes read but not yet handled (`queued.max.request.bytes`);
    /// a connection acquires a frame's declared size before reading its body and waits (without
    /// reading, so TCP pushes back) while the budget is spent. -1: unbounded, as in Kafka. Inlet's
    /// default is 512 MiB, not Kafka's -1: with frames read incrementally and decoding bounded to
    /// a small multiple of the frame, this caps the memory all requests in flight can take at a
    /// few GiB however many connections send at once.
    pub queued_max_request_bytes: i64,
    /// Requests read ahead of the one being processed, per connection.
    pub max_in_flight_requests_per_connection: usize,
    /// Connections open at once (`max.connections`); a connection beyond it is closed as soon
    /// as it is accepted. Also capped by the open-file limit, keeping room for the logs.
    pub max_connections: usize,
    /// Connections open at once from one client address (`max.connections.per.ip`); beyond it a
    /// new connection from that address is closed as soon as it is accepted. Kafka's default is
    /// unlimited; 1000 keeps one address from taking every slot. When the open-file limit caps
    /// `max_connections`, one address gets at most half of that cap.
    pub max_connections_per_ip: usize,
    /// A connection with no request for this long is closed (`connections.max.idle.ms`).
    pub connections_max_idle_ms: u64,
    /// A connection that has sent part of a request frame and then nothing for this long is
    /// closed. Kafka lets its idle timer cover this; Inlet uses a shorter bound, as a client
    /// that has started a request sends the rest at once, and a half-sent frame holds its share
    /// of `queued_max_request_bytes`.
    pub connections_max_stall_ms: u64,
    /// Create a topic on first Metadata/Produce for it (`auto.create.topics.enable`).
    pub auto_create_topics_enable: bool,
    /// Partitions of an auto-created topic or of CreateTopics with -1 (`num.partitions`).
    pub num_partitions: i32,
    /// Replication factor when a request leaves it to the broker (`default.replication.factor`).
    pub default_replication_factor: i16,
    /// How often retention runs (`log.retention.check.interval.ms`).
    pub log_retention_check_interval_ms: u64,
    /// How long the first rebalance of an empty group waits for more members to join
    /// (`group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay_ms: u64,
    /// Session timeouts clients may ask for (`group.min.session.timeout.ms`,
    /// `group.max.session.timeout.ms`).
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// KIP-848 consumer groups: how often members heartbeat
    /// (`group.consumer.heartbeat.interval.ms`), how long without one a member is removed
    /// (`group.consumer.session.timeout.ms`), the most members a group may have
    /// (`group.consumer.max.size`, none: unbounded) and the server-side assignors, the first the
    /// default (`group.consumer.assignors`: uniform, range).
    pub group_consumer_heartbeat_interval_ms: i32,
    pub group_consumer_session_timeout_ms: i32,
    pub group_consumer_max_size: Option<u32>,
    pub group_consumer_assignors: String,
    /// Partitions of `__consumer_offsets` when it is created (`offsets.topic.num.partitions`);
    /// a group's coordinator is the leader of partition `hash(group) % n`. Only used at
    /// creation, as in Kafka: an existing offsets topic keeps its count.
    pub offsets_topic_num_partitions: i32,
    /// Replication factor of `__consumer_offsets` (`offsets.topic.replication.factor`), capped at
    /// the live brokers when it is created, so that a single broker needs no setup.
    pub offsets_topic_replication_factor: i16,
    /// Partitions of `__transaction_state` when it is created
    /// (`transaction.state.log.num.partitions`); a transactional id's coordinator is the leader
    /// of partition `hash(id) % n`.
    pub transaction_state_log_num_partitions: i32,
    /// The longest `transaction.timeout.ms` a producer may ask for
    /// (`transaction.max.timeout.ms`); longer ones get INVALID_TRANSACTION_TIMEOUT.
    pub transaction_max_timeout_ms: i32,
    /// How long a transactional id's state is kept after its last transaction ended
    /// (`transactional.id.expiration.ms`); then it is forgotten (a tombstone is written).
    pub transactional_id_expiration_ms: i64,
    /// How often compacted topics are checked for compaction (`log.cleaner.backoff.ms`).
    pub log_cleaner_backoff_ms: u64,
    /// How long a producer id's state is kept after its last append (`producer.id.expiration.ms`,
    /// KIP-854): idle idempotent producers are then forgotten, so ids do not pile up.
    pub producer_id_expiration_ms: u64,
    /// How often producer ids are checked for expiry
    /// (`producer.id.expiration.check.interval.ms`).
    pub producer_id_expiration_check_interval_ms: u64,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`); None: no endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// The controller quorum's voters, `id@host:port,...` (`controller.quorum.voters`): the
    /// nodes that keep the cluster metadata log, each at its controller listener. A voter is
    /// broker and controller at once (Kafka's combined mode). Empty: a quorum of this node
    /// alone, the single-broker cluster.
    pub controller_quorum_voters: String,
    /// `broker,controller` (a voter, the default) or `broker` (`process.roles`): a broker-only
    /// node is not among the voters; it joins the quorum as an observer that receives the
    /// metadata log, so brokers can be added beyond the voters.
    pub process_roles: String,
    /// The `host:port` other nodes reach this node's controller listener at, when that differs
    /// from the listener's own address (an observer sends it to the leader).
    pub controller_advertised_listener: Option<String>,
    /// Address this node's controller listener binds (Raft traffic between voters); required
    /// when the quorum has other voters.
    pub controller_listen: Option<SocketAddr>,
    /// A broker that has not heartbeated to the active controller for this long is fenced: it
    /// leaves Metadata and its partitions get new leaders (`broker.session.timeout.ms`).
    pub broker_session_timeout_ms: u64,
    /// How often a broker heartbeats to the active controller (`broker.heartbeat.interval.ms`).
    pub broker_heartbeat_interval_ms: u64,
    /// This broker's rack (`broker.rack`): replicas of a partition go to distinct racks.
    pub broker_rack: Option<String>,
    /// A follower that has not caught up with its leader for this long leaves the ISR
    /// (`replica.lag.time.max.ms`).
    pub replica_lag_time_max_ms: u64,
    /// Client quotas are measured over this many samples (`quota.window.num`)...
    pub quota_window_num: usize,
    /// ...of this many seconds each (`quota.window.size.seconds`).
    pub quota_window_size_seconds: u64,
    /// The active controller moves leadership back to preferred replicas
    /// (`auto.leader.rebalance.enable`) ...
    pub auto_leader_rebalance_enable: bool,
    /// ... checking every this many seconds (`leader.imbalance.check.interval.seconds`) ...
    pub leader_imbalance_check_interval_seconds: u64,
    /// ... for brokers not leading more than this share of their preferred partitions
    /// (`leader.imbalance.per.broker.percentage`).
    pub leader_imbalance_per_broker_percentage: u32,
    /// Topic defaults, overridable per topic with Kafka's topic config names.
    pub log: LogDefaults,
    /// The lake: where closed segments of `remote.storage.enable` topics are tiered.
    pub lake: LakeConfig,
}

/// The lake tier (`[lake]`). Which topics are tiered is the topic config `remote.storage.enable`
/// (broker default `log.remote_storage_enable`); this section says whether the broker tiers at
/// all and where to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LakeConfig {
    /// Run the tiering task: closed segments of topics with `remote.storage.enable=true` are
    /// copied into the lake (default true). When false nothing is tiered, so nothing is deleted
    /// locally by `local.retention.*` either.
    pub enable: bool,
    /// Directory of the lake when `s3` is not set (default None: `<data_dir>/lake`).
    pub dir: Option<PathBuf>,
    /// An S3-compatible bucket; when set, the lake is that bucket instead of `dir`. Credentials
    /// left out here come from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and the other
    /// `AWS_*` variables).
    pub s3: Option<S3Location>,
    /// How often the tiering task looks for closed segments to copy, in ms (default 1000).
    pub tier_interval_ms: u64,
    /// Memory for recently read lake data, in bytes (default 256 MiB).
    pub cache_bytes: u64,
    /// Free space tiering leaves producers on the data directory's filesystem, in bytes
    /// (default 1 GiB, a default-sized segment): a segment is tiered only if, after what its
    /// upload writes to that filesystem (the Parquet staging file, and the copy itself when the
    /// lake directory is on the same disk), this much is still free. 0: never hold back.
    pub min_free_bytes: u64,
}

/// Broker-wide defaults for topic configs; each field names the topic config it is the default of.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogDefaults {
    /// `segment.bytes`
    pub segment_bytes: u64,
    /// `segment.ms`
    pub segment_ms: u64,
    /// `retention.ms` (-1: keep forever)
    pub retention_ms: i64,
    /// `retention.bytes` (-1: no size limit)
    pub retention_bytes: i64,
    /// `flush.messages` (-1: no count-based flush)
    pub flush_messages: i64,
    /// `flush.ms` (-1: leave flushing to the OS)
    pub flush_ms: i64,
    /// `index.interval.bytes`
    pub index_interval_bytes: u32,
    /// `max.message.bytes`: largest record batch accepted
    pub max_message_bytes: i32,
    /// `delete.retention.ms`: how long compaction keeps tombstones
    pub delete_retention_ms: i64,
    /// `remote.storage.enable`: tier closed segments into the lake (never for compacted topics)
    pub remote_storage_enable: bool,
    /// `local.retention.ms`: how long tiered segments also stay on local disk (-2: as long as
    /// `retention.ms`, -1: unlimited; never more than `retention.ms`)
    pub local_retention_ms: i64,
    /// `local.retention.bytes`: local size kept of tiered segments (-2: `retention.bytes`,
    /// -1: unlimited; never more than `retention.bytes`)
    pub local_retention_bytes: i64,
    /// `lake.parquet.enable`: also write every tiered segment as a Parquet file
    pub lake_parquet_enable: bool,
    /// `message.timestamp.before.max.ms` (Kafka's `log.message.timestamp.before.max.ms`,
    /// KIP-937): refuse records whose timestamp is further in the past (default: never)
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms` (Kafka's `log.message.timestamp.after.max.ms`,
    /// KIP-937): refuse records whose timestamp is further in the future (default 1 hour)
    pub message_timestamp_after_max_ms: i64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            listen: SocketAddr::from(([0, 0, 0, 0], 9092)),
            advertised_listener: "localhost:9092".to_string(),
            data_dir: PathBuf::from("./inlet-data"),
            socket_request_max_bytes: 100 * 1024 * 1024,
            queued_max_request_bytes: 512 * 1024 * 1024,
            max_in_flight_requests_per_connection: 64,
            max_connections: 10_000,
            max_connections_per_ip: 1000,
            connections_max_idle_ms: 10 * 60 * 1000,
            connections_max_stall_ms: 30_000,
            auto_create_topics_enable: true,
            num_partitions: 1,
            default_replication_factor: 1,
            log_retention_check_interval_ms: 5 * 60 * 1000,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            group_consumer_heartbeat_interval_ms: 5000,
            group_consumer_session_timeout_ms: 45000,
            group_consumer_max_size: None,
            group_consumer_assignors: "uniform,range".to_string(),
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            transaction_state_log_num_partitions: 50,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 604_800_000,
            log_cleaner_backoff_ms: 15_000,
            producer_id_expiration_ms: 24 * 60 * 60 * 1000,
            producer_id_expiration_check_interval_ms: 10 * 60 * 1000,
            metrics_listen: None,
            controller_quorum_voters: String::new(),
            process_roles: "broker,controller".to_string(),
            controller_advertised_listener: None,
            controller_listen: None,
            broker_session_timeout_ms: 9000,
            replica_lag_time_max_ms: 30_000,
            quota_window_num: 11,
            quota_window_size_seconds: 1,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
            leader_imbalance_per_broker_percentage: 10,
            broker_heartbeat_interval_ms: 2000,
            broker_rack: None,
            log: LogDefaults::default(),
            lake: LakeConfig::default(),
        }
    }
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            enable: true,
            dir: None,
            s3: None,
            tier_interval_ms: 1000,
            cache_bytes: 256 * 1024 * 1024,
            min_free_bytes: 1024 * 1024 * 1024,
        }
    }
}

impl Default for LogDefaults {
    fn default() -> Self {
        LogDefaults {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            flush_messages: -1,
            flush_ms: 1000,
            index_interval_bytes: 4096,
            max_message_bytes: 1024 * 1024 + 12,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            remote_storage_enable: true,
            local_retention_ms: -2,
            local_retention_bytes: -2,
            lake_parquet_enable: true,
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: 60 * 60 * 1000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid advertised listener {0:?}: expected host:port")]
    AdvertisedListener(String),
    #[error(
        "queued_max_request_bytes ({queued}) must be -1 or at least socket_request_max_bytes \
         ({frame}), or the largest request could never be read"
    )]
    QueuedBytesBelowFrame { queued: i64, frame: usize },
    #[error("{key} must be at least 1")]
    Zero { key: &'static str },
    #[error(
        "the lake is on S3 but names no bucket: set `bucket` under [lake.s3] \
         (or --lake-s3-bucket / INLET_LAKE_S3_BUCKET)"
    )]
    LakeBucketMissing,
    #[error("invalid controller_quorum_voters {voters:?}: {reason}")]
    QuorumVoters { voters: String, reason: String },
    #[error(
        "node {node_id} is not among the controller_quorum_voters {voters:?}: a node with \
         process_roles \"broker,controller\" is a voter (a broker-only node sets process_roles \
         \"broker\", --process-roles broker)"
    )]
    NotAVoter { node_id: i32, voters: String },
    #[error(
        "node {node_id} has process_roles \"broker\" but is among the controller_quorum_voters \
         {voters:?}: a voter is broker and controller (leave process_roles at \"broker,controller\")"
    )]
    ObserverIsAVoter { node_id: i32, voters: String },
    #[error(
        "a broker-only node (process_roles \"broker\") joins an existing quorum: set \
         controller_quorum_voters (--controller-quorum-voters) and controller_listen \
         (--controller-listen)"
    )]
    ObserverWithoutQuorum,
    #[error("invalid process_roles {0:?}: expected \"broker,controller\" or \"broker\"")]
    ProcessRoles(String),
    #[error(
        "the controller quorum has other voters, so this node needs a controller listener: set \
         controller_listen (--controller-listen)"
    )]
    ControllerListenMissing,
    #[error("broker_heartbeat_interval_ms ({interval}) must be below broker_session_timeout_ms ({timeout})")]
    HeartbeatAboveSession { interval: u64, timeout: u64 },
}

impl BrokerConfig {
    /// Reads a TOML file; keys it leaves out keep their defaults.
    pub fn from_file(path: &std::path::Path) -> Result<BrokerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Checks what serde cannot: the advertised listener is `host:port`, an S3 lake names its
    /// bucket.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.advertised_host_port()?;
        let frame = self.socket_request_max_bytes;
        let queued = self.queued_max_request_bytes;
        if queued != -1 && (queued < 0 || (queued as u64) < frame as u64) {
            return Err(ConfigError::QueuedBytesBelowFrame { queued, frame });
        }
        for (key, value) in [
            ("max_connections", self.max_connections as u64),
            ("max_connections_per_ip", self.max_connections_per_ip as u64),
            ("connections_max_idle_ms", self.connections_max_idle_ms),
            ("connections_max_stall_ms", self.connections_max_stall_ms),
            ("replica_lag_time_max_ms", self.replica_lag_time_max_ms),
            ("quota_window_num", self.quota_window_num as u64),
            ("quota_window_size_seconds", self.quota_window_size_seconds),
            (
                "leader_imbalance_check_interval_seconds",
                self.leader_imbalance_check_interval_seconds,
            ),
            (
                "offsets_topic_num_partitions",
                self.offsets_topic_num_partitions.max(0) as u64,
            ),
            (
                "offsets_topic_replication_factor",
                self.offsets_topic_replication_factor.max(0) as u64,
            ),
            (
                "transaction_state_log_num_partitions",
                self.transaction_state_log_num_partitions.max(0) as u64,
            ),
            (
                "transaction_max_timeout_ms",
                self.transaction_max_timeout_ms.max(0) as u64,
            ),
            (
                "transactional_id_expiration_ms",
                self.transactional_id_expiration_ms.max(0) as u64,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { key });
            }
        }
        if self.lake.s3.as_ref().is_some_and(|s3| s3.bucket.is_empty()) {
            return Err(ConfigError::LakeBucketMissing);
        }
        let voters = self.quorum_voters()?;
        if voters.len() > 1 && self.controller_listen.is_none() {
            return Err(ConfigError::ControllerListenMissing);
        }
        if !self.is_controller()?
            && (self.controller_quorum_voters.trim().is_empty() || self.controller_listen.is_none())
        {
            return Err(ConfigError::ObserverWithoutQuorum);
        }
        if let Some(address) = &self.controller_advertised_listener {
            if !valid_host_port(address) {
                return Err(ConfigError::AdvertisedListener(address.clone()));
            }
        }
        if self.broker_heartbeat_interval_ms == 0
            || self.broker_heartbeat_interval_ms >= self.broker_session_timeout_ms
        {
            return Err(ConfigError::HeartbeatAboveSession {
                interval: self.broker_heartbeat_interval_ms,
                timeout: self.broker_session_timeout_ms,
            });
        }
        Ok(())
    }

    /// Whether this node is a voter of the controller quorum (`process_roles`).
    pub fn is_controller(&self) -> Result<bool, ConfigError> {
        let mut roles: Vec<&str> = self.process_roles.split(',').map(str::trim).collect();
        roles.sort_unstable();
        match roles.as_slice() {
            ["broker", "controller"] => Ok(true),
            ["broker"] => Ok(false),
            _ => Err(ConfigError::ProcessRoles(self.process_roles.clone())),
        }
    }

    /// Where the leader reaches this node's controller listener: the advertised address, else
    /// the listener's own.
    pub fn controller_address(&self) -> Option<String> {
        self.controller_advertised_listener
            .clone()
            .or_else(|| self.controller_listen.map(|a| a.to_string()))
    }

    /// The voters by node id, each with its controller address (`host:port`). With no quorum
    /// configured, this node alone (its address unused: a quorum of one needs no network).
    pub fn quorum_voters(&self) -> Result<BTreeMap<i32, String>, ConfigError> {
        let text = self.controller_quorum_voters.trim();
        if text.is_empty() {
            let own = self
                .controller_listen
                .map(|a| a.to_string())
                .unwrap_or_default();
            return Ok(BTreeMap::from([(self.node_id, own)]));
        }
        let invalid = |reason: String| ConfigError::QuorumVoters {
            voters: self.controller_quorum_voters.clone(),
            reason,
        };
        let mut voters = BTreeMap::new();
        for entry in text.split(',') {
            let entry = entry.trim();
            let (id, address) = entry
                .split_once('@')
                .ok_or_else(|| invalid(format!("{entry:?} is not id@host:port")))?;
            let id: i32 = id
                .parse()
                .ok()
                .filter(|id| *id >= 0)
                .ok_or_else(|| invalid(format!("{id:?} is not a node id")))?;
            if !valid_host_port(address) {
                return Err(invalid(format!("{address:?} is not host:port")));
            }
            if voters.insert(id, address.to_string()).is_some() {
                return Err(invalid(format!("node {id} is listed twice")));
            }
        }
        match (self.is_controller()?, voters.contains_key(&self.node_id)) {
            (true, false) => Err(ConfigError::NotAVoter {
                node_id: self.node_id,
                voters: self.controller_quorum_voters.clone(),
            }),
            (false, true) => Err(ConfigError::ObserverIsAVoter {
                node_id: self.node_id,
                voters: self.controller_quorum_voters.clone(),
            }),
            _ => Ok(voters),
        }
    }

    /// The effective configuration as TOML (`--print-config`). A secret access key set in the
    /// config file is shown as `<redacted>`.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        if let Some(secret) = shown
            .lake
            .s3
            .as_mut()
            .and_then(|s3| s3.secret_access_key.as_mut())
        {
            *secret = "<redacted>".to_string();
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// Where the lake lives: the S3 bucket if `[lake.s3]` is set, else `lake.dir`, else
    /// `<data_dir>/lake`.
    pub fn lake_location(&self) -> LakeLocation {
        match (&self.lake.s3, &self.lake.dir) {
            (Some(s3), _) => LakeLocation::S3(s3.clone()),
            (None, Some(dir)) => LakeLocation::Local(dir.clone()),
            (None, None) => LakeLocation::Local(self.data_dir.join("lake")),
        }
    }

    /// The group coordinator's settings.
    pub fn group_config(&self) -> crate::group::GroupConfig {
        crate::group::GroupConfig {
            initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms.min(i64::MAX as u64)
                as i64,
            min_session_timeout_ms: self.group_min_session_timeout_ms,
            max_session_timeout_ms: self.group_max_session_timeout_ms,
            consumer: self.consumer_group_config(),
        }
    }

    /// The KIP-848 settings; an assignor list that does not parse keeps Kafka's default.
    fn consumer_group_config(&self) -> crate::group::consumer::ConsumerConfig {
        use crate::group::consumer::ConsumerConfig;
        let assignors = ConsumerConfig::parse_assignors(&self.group_consumer_assignors)
            .unwrap_or_else(|error| {
                tracing::error!(%error, "group_consumer_assignors; using uniform,range");
                ConsumerConfig::DEFAULT.assignors
            });
        ConsumerConfig {
            heartbeat_interval_ms: self.group_consumer_heartbeat_interval_ms.max(1),
            session_timeout_ms: self.group_consumer_session_timeout_ms.max(1),
            max_size: self.group_consumer_max_size,
            assignors,
        }
    }

    pub fn txn_config(&self) -> crate::txn::TxnConfig {
        crate::txn::TxnConfig {
            max_timeout_ms: self.transaction_max_timeout_ms,
            id_expiration_ms: self.transactional_id_expiration_ms,
            num_partitions: self.transaction_state_log_num_partitions,
        }
    }

    /// The advertised host and port, split for Metadata responses.
    pub fn advertised_host_port(&self) -> Result<(String, i32), ConfigError> {
        let invalid = || ConfigError::AdvertisedListener(self.advertised_listener.clone());
        let (host, port) = self
            .advertised_listener
            .rsplit_once(':')
            .ok_or_else(invalid)?;
        let port: u16 = port.parse().map_err(|_| invalid())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid());
        }
        Ok((host.to_string(), i32::from(port)))
    }
}

/// `host:port` with a non-empty host and a valid port.
fn valid_host_port(address: &str) -> bool {
    address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_voters_parse_kafka_syntax_and_check_this_node() {
        let mut config = BrokerConfig {
            node_id: 2,
            controller_quorum_voters: "1@localhost:9093, 2@127.0.0.1:9094,3@[::1]:9095".into(),
            controller_listen: Some("127.0.0.1:9094".parse().unwrap()),
            ..BrokerConfig::default()
        };
        let voters = config.quorum_voters().unwrap();
        assert_eq!(voters.len(), 3);
        assert_eq!(voters[&3], "[::1]:9095");
        config.validate().unwrap();
        config.controller_listen = None;
        assert!(matches!(
            config.validate(),
            Err(ConfigError::ControllerListenMissing)
        ));
        config.node_id = 4;
        assert!(matches!(
            config.quorum_voters(),
            Err(ConfigError::NotAVoter { .. })
        ));
        for bad in [
            "1@localhost",
            "x@h:1",
            "1@h:1,1@h:2",
            "1:h:2",
            "-1@h:1",
            "1@:9",
        ] {
            config.controller_quorum_voters = bad.into();
            assert!(
                matches!(
                    config.quorum_voters(),
                    Err(ConfigError::QuorumVoters { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_broker_only_node_is_not_a_voter_and_needs_a_quorum_to_join() {
        let mut config = BrokerConfig {
            node_id: 4,
            process_roles: "broker".into(),
            controller_quorum_voters: "1@h1:9093,2@h2:9093,3@h3:9093".into(),
            controller_listen: Some("127.0.0.1:9099".parse().unwrap()),
            ..BrokerConfig::default()
        };
        config.validate().unwrap();
        assert!(!config.is_controller().unwrap());
        assert_eq!(
            config.controller_address().as_deref(),
            Some("127.0.0.1:9099")
        );
        config.controller_advertised_listener = Some("host4:9099".into());
        assert_eq!(config.controller_address().as_deref(), Some("host4:9099"));

        config.node_id = 2;
        assert!(matches!(
            config.validate(),
            Err(ConfigError::ObserverIsAVoter { .. })
        ));
        config.node_id = 4;
        config.controller_quorum_voters = String::new();
        assert!(matches!(
            config.validate(),
            Err(ConfigError::ObserverWithoutQuorum)
        ));
        config.process_roles = "controller".into();
        assert!(matches!(
            config.validate(),
            Err(ConfigError::ProcessRoles(_))
        ));
        config.process_roles = "controller, broker".into();
        assert!(config.is_controller().unwrap());
    }

    #[test]
    fn no_quorum_is_a_quorum_of_this_node() {
        let config = BrokerConfig::default();
        config.validate().unwrap();
        assert_eq!(
            config.quorum_voters().unwrap().keys().collect::<Vec<_>>(),
            [&1]
        );
    }

    #[test]
    fn empty_file_gives_embedded_defaults() {
        let config: BrokerConfig = toml::from_str("").unwrap();
        assert_eq!(config, BrokerConfig::default());
        assert_eq!(
            config.advertised_host_port().unwrap(),
            ("localhost".to_string(), 9092)
        );
    }

    #[test]
    fn printed_config_reads_back_identically() {
        let mut config = BrokerConfig::default();
        config.log.segment_bytes = 4096;
        config.node_id = 7;
        let back: BrokerConfig = toml::from_str(&config.to_toml()).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<BrokerConfig>("node_idd = 3").is_err());
        let offsets: BrokerConfig = toml::from_str(
            "offsets_topic_num_partitions = 8\noffsets_topic_replication_factor = 2",
        )
        .unwrap();
        assert_eq!(offsets.offsets_topic_num_partitions, 8);
        assert_eq!(offsets.offsets_topic_replication_factor, 2);
    }

    #[test]
    fn lake_and_tiering_defaults() {
        let config = BrokerConfig::default();
        assert!(config.lake.enable);
        assert_eq!(
            (config.lake.dir.as_ref(), config.lake.s3.as_ref()),
            (None, None)
        );
        assert_eq!(config.lake.tier_interval_ms, 1000);
        assert_eq!(config.lake.cache_bytes, 256 * 1024 * 1024);
        assert!(config.log.remote_storage_enable && config.log.lake_parquet_enable);
        assert_eq!(
            (
                config.log.local_retention_ms,
                config.log.local_retention_bytes
            ),
            (-2, -2)
        );
    }

    #[test]
    fn lake_is_under_the_data_dir_unless_a_dir_or_bucket_is_given() {
        let mut config = BrokerConfig {
            data_dir: PathBuf::from("/var/lib/inlet"),
            ..BrokerConfig::default()
        };
        assert_eq!(
            config.lake_location(),
            LakeLocation::Local(PathBuf::from("/var/lib/inlet/lake"))
        );
        config.lake.dir = Some(PathBuf::from("/mnt/lake"));
        assert_eq!(
            config.lake_location(),
            LakeLocation::Local(PathBuf::from("/mnt/lake"))
        );
        let s3 = S3Location {
            bucket: "events".into(),
            ..S3Location::default()
        };
        config.lake.s3 = Some(s3.clone());
        assert_eq!(config.lake_location(), LakeLocation::S3(s3));
    }

    #[test]
    fn lake_s3_section_parses() {
        let config: BrokerConfig = toml::from_str(
            r#"
            [lake]
            tier_interval_ms = 250

            [lake.s3]
            bucket = "events"
            prefix = "inlet/prod"
            endpoint = "http://127.0.0.1:9000"
            region = "eu-west-1"
            path_style = true
            allow_http = true
            "#,
        )
        .unwrap();
        assert_eq!(config.lake.tier_interval_ms, 250);
        let s3 = config.lake.s3.as_ref().unwrap();
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("events", "inlet/prod")
        );
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
        assert!(s3.path_style && s3.allow_http);
        assert_eq!(s3.access_key_id, None);
        assert!(config.validate().is_ok());
        assert!(toml::from_str::<BrokerConfig>("[lake.s3]\nbuckt = \"x\"").is_err());
        assert!(toml::from_str::<BrokerConfig>("[lake]\nenabled = true").is_err());
    }

    #[test]
    fn s3_lake_without_bucket_is_refused() {
        let config: BrokerConfig = toml::from_str("[lake.s3]\nregion = \"us-east-1\"").unwrap();
        assert!(matches!(
            config.validate(),
            Err(ConfigError::LakeBucketMissing)
        ));
    }

    #[test]
    fn printed_config_hides_the_secret_key() {
        let mut config = BrokerConfig::default();
        config.lake.s3 = Some(S3Location {
            bucket: "events".into(),
            secret_access_key: Some("hunter2".into()),
            ..S3Location::default()
        });
        let printed = config.to_toml();
        assert!(!printed.contains("hunter2"), "{printed}");
        let back: BrokerConfig = toml::from_str(&printed).unwrap();
        assert_eq!(back.lake.s3.unwrap().bucket, "events");
    }

    #[test]
    fn connection_limits_have_safe_defaults_and_are_checked() {
        let config = BrokerConfig::default();
        assert_eq!(config.queued_max_request_bytes, 512 * 1024 * 1024);
        assert_eq!(config.max_connections_per_ip, 1000);
        assert_eq!(config.connections_max_idle_ms, 600_000);
        assert_eq!(config.connections_max_stall_ms, 30_000);
        assert!(config.validate().is_ok());
        let unbounded = BrokerConfig {
            queued_max_request_bytes: -1,
            ..BrokerConfig::default()
        };
        assert!(unbounded.validate().is_ok());
        let below_frame = BrokerConfig {
            queued_max_request_bytes: 1024,
            ..BrokerConfig::default()
        };
        assert!(matches!(
            below_frame.validate(),
            Err(ConfigError::QueuedBytesBelowFrame { .. })
        ));
        let no_idle = BrokerConfig {
            connections_max_idle_ms: 0,
            ..BrokerConfig::default()
        };
        assert!(matches!(no_idle.validate(), Err(ConfigError::Zero { .. })));
        for config in [
            BrokerConfig {
                offsets_topic_num_partitions: 0,
                ..BrokerConfig::default()
            },
            BrokerConfig {
                offsets_topic_replication_factor: -1,
                ..BrokerConfig::default()
            },
        ] {
            assert!(matches!(config.validate(), Err(ConfigError::Zero { .. })));
        }
    }

    #[test]
    fn advertised_listener_must_have_a_port() {
        let config = BrokerConfig {
            advertised_listener: "localhost".into(),
            ..BrokerConfig::default()
        };
        assert!(config.advertised_host_port().is_err());
    }
}
