//! `inlet serve`: build the effective configuration (embedded defaults, then `--config FILE`, then
//! `INLET_*` environment variables and flags), set up logging, and run the broker until SIGTERM or
//! SIGINT, after which it finishes in-flight requests, flushes every log and exits 0.
//!
//! The lake's S3 credentials are not flags: they come from `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY` (or `[lake.s3]` in the config file), so they stay out of `ps`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use inlet_broker::BrokerConfig;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML config file; its keys are those `--print-config` shows.
    #[arg(long, env = "INLET_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on for Kafka clients.
    #[arg(long, env = "INLET_LISTEN")]
    listen: Option<SocketAddr>,
    /// host:port that clients are told to connect to.
    #[arg(long, env = "INLET_ADVERTISED_LISTENER")]
    advertised_listener: Option<String>,
    /// Directory for partition data and broker metadata.
    #[arg(long, env = "INLET_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// This broker's node id.
    #[arg(long, env = "INLET_NODE_ID")]
    node_id: Option<i32>,
    /// Partitions of auto-created topics.
    #[arg(long, env = "INLET_NUM_PARTITIONS")]
    num_partitions: Option<i32>,
    /// Create topics on first use.
    #[arg(long, env = "INLET_AUTO_CREATE_TOPICS")]
    auto_create_topics: Option<bool>,
    /// Default segment size in bytes (topic config `segment.bytes`).
    #[arg(long, env = "INLET_LOG_SEGMENT_BYTES")]
    log_segment_bytes: Option<u64>,
    /// Default retention in ms, -1 for forever (topic config `retention.ms`).
    #[arg(long, env = "INLET_LOG_RETENTION_MS", allow_hyphen_values = true)]
    log_retention_ms: Option<i64>,
    /// Default largest age of a record timestamp in ms, relative to the broker's clock (topic
    /// config `message.timestamp.before.max.ms`; default 9223372036854775807: unbounded).
    #[arg(
        long,
        env = "INLET_LOG_MESSAGE_TIMESTAMP_BEFORE_MAX_MS",
        value_parser = clap::value_parser!(i64).range(0..)
    )]
    log_message_timestamp_before_max_ms: Option<i64>,
    /// Default largest lead of a record timestamp in ms over the broker's clock (topic config
    /// `message.timestamp.after.max.ms`; default 3600000).
    #[arg(
        long,
        env = "INLET_LOG_MESSAGE_TIMESTAMP_AFTER_MAX_MS",
        value_parser = clap::value_parser!(i64).range(0..)
    )]
    log_message_timestamp_after_max_ms: Option<i64>,
    /// How long an empty group's first rebalance waits for more members
    /// (`group.initial.rebalance.delay.ms`).
    #[arg(long, env = "INLET_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    group_initial_rebalance_delay_ms: Option<u64>,
    /// How often KIP-848 consumer group members heartbeat
    /// (`group.consumer.heartbeat.interval.ms`, default 5000).
    #[arg(long, env = "INLET_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS", value_parser = clap::value_parser!(i32).range(1..))]
    group_consumer_heartbeat_interval_ms: Option<i32>,
    /// How long a KIP-848 consumer group member may go without a heartbeat before it is removed
    /// (`group.consumer.session.timeout.ms`, default 45000).
    #[arg(long, env = "INLET_GROUP_CONSUMER_SESSION_TIMEOUT_MS", value_parser = clap::value_parser!(i32).range(1..))]
    group_consumer_session_timeout_ms: Option<i32>,
    /// Most members a KIP-848 consumer group may have (`group.consumer.max.size`, default
    /// unbounded).
    #[arg(long, env = "INLET_GROUP_CONSUMER_MAX_SIZE", value_parser = clap::value_parser!(u32).range(1..))]
    group_consumer_max_size: Option<u32>,
    /// Server-side assignors of KIP-848 consumer groups, the first the default
    /// (`group.consumer.assignors`: uniform, range; default "uniform,range").
    #[arg(long, env = "INLET_GROUP_CONSUMER_ASSIGNORS", value_parser = parse_assignors)]
    group_consumer_assignors: Option<String>,
    /// Partitions of `__consumer_offsets` when it is first created
    /// (`offsets.topic.num.partitions`, default 50).
    #[arg(long, env = "INLET_OFFSETS_TOPIC_NUM_PARTITIONS", value_parser = clap::value_parser!(i32).range(1..=10_000))]
    offsets_topic_num_partitions: Option<i32>,
    /// Replication factor of `__consumer_offsets`, capped at the live brokers when it is created
    /// (`offsets.topic.replication.factor`, default 3).
    #[arg(long, env = "INLET_OFFSETS_TOPIC_REPLICATION_FACTOR", value_parser = clap::value_parser!(i16).range(1..))]
    offsets_topic_replication_factor: Option<i16>,
    /// Partitions of `__transaction_state` when it is first created
    /// (`transaction.state.log.num.partitions`, default 50).
    #[arg(long, env = "INLET_TRANSACTION_STATE_LOG_NUM_PARTITIONS", value_parser = clap::value_parser!(i32).range(1..=10_000))]
    transaction_state_log_num_partitions: Option<i32>,
    /// The longest transaction timeout a producer may ask for, in ms
    /// (`transaction.max.timeout.ms`, default 900000).
    #[arg(long, env = "INLET_TRANSACTION_MAX_TIMEOUT_MS", value_parser = clap::value_parser!(i32).range(1..))]
    transaction_max_timeout_ms: Option<i32>,
    /// How long a transactional id is kept after its last transaction, in ms
    /// (`transactional.id.expiration.ms`, default 604800000).
    #[arg(long, env = "INLET_TRANSACTIONAL_ID_EXPIRATION_MS", value_parser = clap::value_parser!(i64).range(1..))]
    transactional_id_expiration_ms: Option<i64>,
    /// How long an idle producer id's state is kept after its last append, in ms
    /// (`producer.id.expiration.ms`).
    #[arg(long, env = "INLET_PRODUCER_ID_EXPIRATION_MS", value_parser = clap::value_parser!(u64).range(1..))]
    producer_id_expiration_ms: Option<u64>,
    /// How often producer ids are checked for expiry, in ms
    /// (`producer.id.expiration.check.interval.ms`).
    #[arg(long, env = "INLET_PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS", value_parser = clap::value_parser!(u64).range(1..))]
    producer_id_expiration_check_interval_ms: Option<u64>,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (off unless set).
    #[arg(long, env = "INLET_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    // Boxed: these flags would make `ServeArgs` the one large variant of the CLI's commands.
    #[command(flatten)]
    lake: Box<LakeArgs>,
    #[command(flatten)]
    limits: Box<LimitArgs>,
    #[command(flatten)]
    cluster: Box<ClusterArgs>,
}

/// Flags that make several nodes one cluster (Kafka's KRaft combined mode: every node is broker
/// and controller).
#[derive(Args, Debug)]
#[command(next_help_heading = "Cluster")]
struct ClusterArgs {
    /// The controller quorum, `id@host:port,...` (`controller.quorum.voters`); this node must be
    /// one of them. Unset: a quorum of this node alone.
    #[arg(long, env = "INLET_CONTROLLER_QUORUM_VOTERS", value_name = "VOTERS")]
    controller_quorum_voters: Option<String>,
    /// Address this node's controller listener binds (Raft traffic between voters, and to
    /// observers).
    #[arg(long, env = "INLET_CONTROLLER_LISTEN", value_name = "ADDR")]
    controller_listen: Option<SocketAddr>,
    /// `broker,controller` (a voter, the default) or `broker` (`process.roles`): a broker-only
    /// node, not among the voters, joins the quorum as an observer; it adds a broker to a cluster.
    #[arg(long, env = "INLET_PROCESS_ROLES", value_name = "ROLES")]
    process_roles: Option<String>,
    /// `host:port` other nodes reach this node's controller listener at, if not its bind address.
    #[arg(
        long,
        env = "INLET_CONTROLLER_ADVERTISED_LISTENER",
        value_name = "HOST:PORT"
    )]
    controller_advertised_listener: Option<String>,
    /// Fence a broker that has not heartbeated for this many ms (`broker.session.timeout.ms`).
    #[arg(long, env = "INLET_BROKER_SESSION_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    broker_session_timeout_ms: Option<u64>,
    /// How often this broker heartbeats to the active controller, in ms
    /// (`broker.heartbeat.interval.ms`).
    #[arg(long, env = "INLET_BROKER_HEARTBEAT_INTERVAL_MS", value_parser = clap::value_parser!(u64).range(1..))]
    broker_heartbeat_interval_ms: Option<u64>,
    /// This broker's rack (`broker.rack`): a partition's replicas go to distinct racks.
    #[arg(long, env = "INLET_BROKER_RACK")]
    broker_rack: Option<String>,
    /// A follower not caught up with its leader for this many ms leaves the ISR
    /// (`replica.lag.time.max.ms`).
    #[arg(long, env = "INLET_REPLICA_LAG_TIME_MAX_MS", value_parser = clap::value_parser!(u64).range(1..))]
    replica_lag_time_max_ms: Option<u64>,
    /// Move leadership back to preferred replicas after failovers (`auto.leader.rebalance.enable`).
    #[arg(long, env = "INLET_AUTO_LEADER_REBALANCE_ENABLE", value_name = "BOOL")]
    auto_leader_rebalance_enable: Option<bool>,
    /// How often the active controller checks leadership balance, in seconds
    /// (`leader.imbalance.check.interval.seconds`).
    #[arg(long, env = "INLET_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    leader_imbalance_check_interval_seconds: Option<u64>,
}

impl ClusterArgs {
    fn apply(&self, config: &mut BrokerConfig) {
        if let Some(voters) = &self.controller_quorum_voters {
            config.controller_quorum_voters = voters.clone();
        }
        if let Some(addr) = self.controller_listen {
            config.controller_listen = Some(addr);
        }
        if let Some(roles) = &self.process_roles {
            config.process_roles = roles.clone();
        }
        if let Some(address) = &self.controller_advertised_listener {
            config.controller_advertised_listener = Some(address.clone());
        }
        if let Some(ms) = self.broker_session_timeout_ms {
            config.broker_session_timeout_ms = ms;
        }
        if let Some(ms) = self.broker_heartbeat_interval_ms {
            config.broker_heartbeat_interval_ms = ms;
        }
        if let Some(rack) = &self.broker_rack {
            config.broker_rack = Some(rack.clone());
        }
        if let Some(ms) = self.replica_lag_time_max_ms {
            config.replica_lag_time_max_ms = ms;
        }
        if let Some(enable) = self.auto_leader_rebalance_enable {
            config.auto_leader_rebalance_enable = enable;
        }
        if let Some(seconds) = self.leader_imbalance_check_interval_seconds {
            config.leader_imbalance_check_interval_seconds = seconds;
        }
    }
}

/// Flags bounding what clients can make the broker hold: request memory and connections.
#[derive(Args, Debug)]
#[command(next_help_heading = "Limits")]
struct LimitArgs {
    /// Largest request frame accepted, in bytes (`socket.request.max.bytes`).
    #[arg(long, env = "INLET_SOCKET_REQUEST_MAX_BYTES")]
    socket_request_max_bytes: Option<usize>,
    /// Request bytes read but not yet handled, broker-wide, -1 for unbounded; connections wait
    /// for room before reading a request (`queued.max.request.bytes`).
    #[arg(
        long,
        env = "INLET_QUEUED_MAX_REQUEST_BYTES",
        allow_hyphen_values = true,
        value_parser = clap::value_parser!(i64).range(-1..)
    )]
    queued_max_request_bytes: Option<i64>,
    /// Connections open at once; more are closed on accept (`max.connections`).
    #[arg(long, env = "INLET_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Connections open at once from one client address (`max.connections.per.ip`).
    #[arg(long, env = "INLET_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
    /// Close a connection with no request for this many ms (`connections.max.idle.ms`).
    #[arg(long, env = "INLET_CONNECTIONS_MAX_IDLE_MS")]
    connections_max_idle_ms: Option<u64>,
    /// Close a connection that sent part of a request and then nothing for this many ms.
    #[arg(long, env = "INLET_CONNECTIONS_MAX_STALL_MS")]
    connections_max_stall_ms: Option<u64>,
    /// Client quotas are measured over this many samples (`quota.window.num`).
    #[arg(long, env = "INLET_QUOTA_WINDOW_NUM", value_parser = clap::value_parser!(u64).range(2..))]
    quota_window_num: Option<u64>,
    /// Seconds per client quota sample (`quota.window.size.seconds`).
    #[arg(long, env = "INLET_QUOTA_WINDOW_SIZE_SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    quota_window_size_seconds: Option<u64>,
}

impl LimitArgs {
    fn apply(&self, config: &mut BrokerConfig) {
        if let Some(bytes) = self.socket_request_max_bytes {
            config.socket_request_max_bytes = bytes;
        }
        if let Some(bytes) = self.queued_max_request_bytes {
            config.queued_max_request_bytes = bytes;
        }
        if let Some(n) = self.max_connections {
            config.max_connections = n;
        }
        if let Some(n) = self.max_connections_per_ip {
            config.max_connections_per_ip = n;
        }
        if let Some(ms) = self.connections_max_idle_ms {
            config.connections_max_idle_ms = ms;
        }
        if let Some(ms) = self.connections_max_stall_ms {
            config.connections_max_stall_ms = ms;
        }
        if let Some(n) = self.quota_window_num {
            config.quota_window_num = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(s) = self.quota_window_size_seconds {
            config.quota_window_size_seconds = s;
        }
    }
}

/// Flags of the lake tier: where closed segments go and how long they also stay local.
#[derive(Args, Debug)]
#[command(next_help_heading = "Lake (tiered storage)")]
struct LakeArgs {
    /// Default local retention of tiered segments in ms: -2 as `retention.ms`, -1 unlimited
    /// (topic config `local.retention.ms`).
    #[arg(
        long,
        env = "INLET_LOG_LOCAL_RETENTION_MS",
        allow_hyphen_values = true,
        value_parser = clap::value_parser!(i64).range(-2..)
    )]
    log_local_retention_ms: Option<i64>,
    /// Default local size kept of tiered segments in bytes: -2 as `retention.bytes`, -1
    /// unlimited (topic config `local.retention.bytes`).
    #[arg(
        long,
        env = "INLET_LOG_LOCAL_RETENTION_BYTES",
        allow_hyphen_values = true,
        value_parser = clap::value_parser!(i64).range(-2..)
    )]
    log_local_retention_bytes: Option<i64>,
    /// Tier closed segments into the lake (topics choose with `remote.storage.enable`).
    #[arg(long, env = "INLET_LAKE_ENABLE")]
    lake_enable: Option<bool>,
    /// Directory of the lake when it is not on S3 (default `<data-dir>/lake`).
    #[arg(long, env = "INLET_LAKE_DIR")]
    lake_dir: Option<PathBuf>,
    /// Put the lake in this S3 bucket; any `--lake-s3-*` setting moves the lake to S3.
    /// Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "INLET_LAKE_S3_BUCKET")]
    lake_s3_bucket: Option<String>,
    /// Endpoint of a non-AWS S3 store, e.g. `http://127.0.0.1:9000` for MinIO.
    #[arg(long, env = "INLET_LAKE_S3_ENDPOINT")]
    lake_s3_endpoint: Option<String>,
    /// Region of the lake's bucket.
    #[arg(long, env = "INLET_LAKE_S3_REGION")]
    lake_s3_region: Option<String>,
    /// Key prefix of the lake inside the bucket.
    #[arg(long, env = "INLET_LAKE_S3_PREFIX")]
    lake_s3_prefix: Option<String>,
    /// Path-style S3 addressing (`endpoint/bucket/key`), which most self-hosted stores need.
    #[arg(long, env = "INLET_LAKE_S3_PATH_STYLE")]
    lake_s3_path_style: Option<bool>,
    /// Allow a plain `http://` S3 endpoint.
    #[arg(long, env = "INLET_LAKE_S3_ALLOW_HTTP")]
    lake_s3_allow_http: Option<bool>,
    /// How often the tiering task looks for closed segments, in ms.
    #[arg(long, env = "INLET_LAKE_TIER_INTERVAL_MS")]
    lake_tier_interval_ms: Option<u64>,
}

impl ServeArgs {
    fn effective_config(&self) -> anyhow::Result<BrokerConfig> {
        let mut config = match &self.config {
            Some(path) => BrokerConfig::from_file(path)?,
            None => BrokerConfig::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(advertised) = &self.advertised_listener {
            config.advertised_listener = advertised.clone();
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(id) = self.node_id {
            config.node_id = id;
        }
        if let Some(n) = self.num_partitions {
            config.num_partitions = n;
        }
        if let Some(on) = self.auto_create_topics {
            config.auto_create_topics_enable = on;
        }
        if let Some(bytes) = self.log_segment_bytes {
            config.log.segment_bytes = bytes;
        }
        if let Some(addr) = self.metrics_listen {
            config.metrics_listen = Some(addr);
        }
        if let Some(ms) = self.log_retention_ms {
            config.log.retention_ms = ms;
        }
        if let Some(ms) = self.log_message_timestamp_before_max_ms {
            config.log.message_timestamp_before_max_ms = ms;
        }
        if let Some(ms) = self.log_message_timestamp_after_max_ms {
            config.log.message_timestamp_after_max_ms = ms;
        }
        if let Some(ms) = self.group_initial_rebalance_delay_ms {
            config.group_initial_rebalance_delay_ms = ms;
        }
        if let Some(ms) = self.group_consumer_heartbeat_interval_ms {
            config.group_consumer_heartbeat_interval_ms = ms;
        }
        if let Some(ms) = self.group_consumer_session_timeout_ms {
            config.group_consumer_session_timeout_ms = ms;
        }
        if let Some(n) = self.group_consumer_max_size {
            config.group_consumer_max_size = Some(n);
        }
        if let Some(names) = &self.group_consumer_assignors {
            config.group_consumer_assignors.clone_from(names);
        }
        if let Some(ms) = self.producer_id_expiration_ms {
            config.producer_id_expiration_ms = ms;
        }
        if let Some(n) = self.offsets_topic_num_partitions {
            config.offsets_topic_num_partitions = n;
        }
        if let Some(n) = self.offsets_topic_replication_factor {
            config.offsets_topic_replication_factor = n;
        }
        if let Some(n) = self.transaction_state_log_num_partitions {
            config.transaction_state_log_num_partitions = n;
        }
        if let Some(ms) = self.transaction_max_timeout_ms {
            config.transaction_max_timeout_ms = ms;
        }
        if let Some(ms) = self.transactional_id_expiration_ms {
            config.transactional_id_expiration_ms = ms;
        }
        if let Some(ms) = self.producer_id_expiration_check_interval_ms {
            config.producer_id_expiration_check_interval_ms = ms;
        }
        self.lake.apply(&mut config);
        self.limits.apply(&mut config);
        self.cluster.apply(&mut config);
        config.validate()?;
        Ok(config)
    }
}

impl LakeArgs {
    fn apply(&self, config: &mut BrokerConfig) {
        if let Some(ms) = self.log_local_retention_ms {
            config.log.local_retention_ms = ms;
        }
        if let Some(bytes) = self.log_local_retention_bytes {
            config.log.local_retention_bytes = bytes;
        }
        if let Some(on) = self.lake_enable {
            config.lake.enable = on;
        }
        if let Some(dir) = &self.lake_dir {
            config.lake.dir = Some(dir.clone());
        }
        if let Some(ms) = self.lake_tier_interval_ms {
            config.lake.tier_interval_ms = ms;
        }
        self.apply_s3(config);
    }

    /// Any `--lake-s3-*` setting puts the lake on S3, on top of the file's `[lake.s3]` if any.
    fn apply_s3(&self, config: &mut BrokerConfig) {
        let any = self.lake_s3_bucket.is_some()
            || self.lake_s3_endpoint.is_some()
            || self.lake_s3_region.is_some()
            || self.lake_s3_prefix.is_some()
            || self.lake_s3_path_style.is_some()
            || self.lake_s3_allow_http.is_some();
        if !any {
            return;
        }
        let s3 = config.lake.s3.get_or_insert_with(Default::default);
        if let Some(bucket) = &self.lake_s3_bucket {
            s3.bucket = bucket.clone();
        }
        if let Some(endpoint) = &self.lake_s3_endpoint {
            s3.endpoint = Some(endpoint.clone());
        }
        if let Some(region) = &self.lake_s3_region {
            s3.region = Some(region.clone());
        }
        if let Some(prefix) = &self.lake_s3_prefix {
            s3.prefix = prefix.clone();
        }
        if let Some(on) = self.lake_s3_path_style {
            s3.path_style = on;
        }
        if let Some(on) = self.lake_s3_allow_http {
            s3.allow_http = on;
        }
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.effective_config()?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    init_logging();
    inlet_broker::fd_limit::raise_to_hard_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("inlet")
        .build()
        .context("starting the async runtime")?;
    runtime
        .block_on(inlet_broker::server::run(config, shutdown_signal()))
        .context("broker failed")
}

fn init_logging() {
    // openraft narrates every vote and replication step at info, warns of routine races and logs
    // an unreachable peer as an error twice a second; the quorum module logs what an operator
    // needs (leadership changes). INLET_LOG=info,openraft=info shows openraft again.
    let spec = std::env::var("INLET_LOG").unwrap_or_else(|_| "info".to_string());
    let spec = if spec.contains("openraft") {
        spec
    } else {
        format!("{spec},openraft=off")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=off"));
    // Colour only for a person at a terminal: a log file or a pipe gets plain text, without
    // escape codes that make it hard to grep.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}

/// `--group-consumer-assignors`: a comma-separated list of uniform and range.
fn parse_assignors(value: &str) -> Result<String, String> {
    inlet_broker::group::consumer::ConsumerConfig::parse_assignors(value)?;
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use inlet_broker::config::LakeLocation;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn config(args: &[&str]) -> anyhow::Result<BrokerConfig> {
        let cli = Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))?;
        cli.serve.effective_config()
    }

    #[test]
    fn lake_flags_reach_the_config() {
        let config = config(&[
            "--data-dir",
            "/data",
            "--lake-enable",
            "false",
            "--lake-tier-interval-ms",
            "250",
            "--log-local-retention-ms",
            "-1",
            "--log-local-retention-bytes",
            "1048576",
        ])
        .unwrap();
        assert!(!config.lake.enable);
        assert_eq!(config.lake.tier_interval_ms, 250);
        assert_eq!(config.log.local_retention_ms, -1);
        assert_eq!(config.log.local_retention_bytes, 1_048_576);
        assert_eq!(
            config.lake_location(),
            LakeLocation::Local(PathBuf::from("/data/lake"))
        );
        let config = self::config(&["--lake-dir", "/mnt/lake"]).unwrap();
        assert_eq!(
            config.lake_location(),
            LakeLocation::Local(PathBuf::from("/mnt/lake"))
        );
    }

    #[test]
    fn limit_flags_reach_the_config() {
        let config = config(&[
            "--socket-request-max-bytes",
            "1048576",
            "--queued-max-request-bytes",
            "2097152",
            "--max-connections",
            "50",
            "--max-connections-per-ip",
            "5",
            "--connections-max-idle-ms",
            "1000",
            "--connections-max-stall-ms",
            "200",
        ])
        .unwrap();
        assert_eq!(config.socket_request_max_bytes, 1_048_576);
        assert_eq!(config.queued_max_request_bytes, 2_097_152);
        assert_eq!(
            (config.max_connections, config.max_connections_per_ip),
            (50, 5)
        );
        assert_eq!(config.connections_max_idle_ms, 1000);
        assert_eq!(config.connections_max_stall_ms, 200);
        let unbounded = self::config(&["--queued-max-request-bytes", "-1"]).unwrap();
        assert_eq!(unbounded.queued_max_request_bytes, -1);
        assert!(self::config(&["--queued-max-request-bytes", "1024"]).is_err());
    }

    #[test]
    fn local_retention_below_minus_two_is_a_usage_error() {
        assert!(config(&["--log-local-retention-ms", "-3"]).is_err());
    }

    #[test]
    fn s3_flags_move_the_lake_to_the_bucket() {
        let config = config(&[
            "--lake-dir",
            "/mnt/lake",
            "--lake-s3-bucket",
            "events",
            "--lake-s3-endpoint",
            "http://127.0.0.1:9000",
            "--lake-s3-region",
            "eu-west-1",
            "--lake-s3-prefix",
            "inlet",
            "--lake-s3-path-style",
            "true",
            "--lake-s3-allow-http",
            "true",
        ])
        .unwrap();
        let LakeLocation::S3(s3) = config.lake_location() else {
            panic!("the lake should be on S3: {:?}", config.lake_location());
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("events", "inlet")
        );
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
        assert!(s3.path_style && s3.allow_http);
    }

    #[test]
    fn s3_flags_without_a_bucket_are_refused() {
        let error = config(&["--lake-s3-region", "eu-west-1"]).unwrap_err();
        assert!(
            format!("{error:#}").contains("--lake-s3-bucket"),
            "{error:#}"
        );
    }

    #[test]
    fn s3_flags_merge_with_the_config_file() {
        let path =
            std::env::temp_dir().join(format!("inlet-serve-test-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "[lake.s3]\nbucket = \"events\"\nregion = \"us-east-1\"\npath_style = true\n",
        )
        .unwrap();
        let merged = config(&[
            "--config",
            path.to_str().unwrap(),
            "--lake-s3-region",
            "eu-west-1",
        ]);
        std::fs::remove_file(&path).unwrap();
        let s3 = merged.unwrap().lake.s3.unwrap();
        assert_eq!(s3.bucket, "events");
        assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
        assert!(s3.path_style);
    }

    #[test]
    fn offsets_topic_flags_reach_the_config() {
        let defaults = config(&[]).unwrap();
        assert_eq!(defaults.offsets_topic_num_partitions, 50);
        assert_eq!(defaults.offsets_topic_replication_factor, 3);
        assert!(config(&["--offsets-topic-num-partitions", "0"]).is_err());
        let config = config(&[
            "--offsets-topic-num-partitions",
            "12",
            "--offsets-topic-replication-factor",
            "1",
        ])
        .unwrap();
        assert_eq!(config.offsets_topic_num_partitions, 12);
        assert_eq!(config.offsets_topic_replication_factor, 1);
    }
}
