//! `inlet serve`: build the effective configuration (embedded defaults, then `--config FILE`, then
//! `INLET_*` environment variables and flags), set up logging, and run the broker until SIGTERM or
//! SIGINT, after which it finishes in-flight requests, flushes every log and exits 0.

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
    /// How long an empty group's first rebalance waits for more members
    /// (`group.initial.rebalance.delay.ms`).
    #[arg(long, env = "INLET_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    group_initial_rebalance_delay_ms: Option<u64>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
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
        if let Some(ms) = self.log_retention_ms {
            config.log.retention_ms = ms;
        }
        if let Some(ms) = self.group_initial_rebalance_delay_ms {
            config.group_initial_rebalance_delay_ms = ms;
        }
        config.advertised_host_port()?;
        Ok(config)
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.effective_config()?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    init_logging();
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
    let filter = tracing_subscriber::EnvFilter::try_from_env("INLET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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
