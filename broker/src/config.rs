//! Broker configuration: one `BrokerConfig` with embedded defaults, loaded from TOML and then
//! overridden by the command line and `INLET_*` environment variables (the binary owns that layer).
//! Every topic-level default (`log.*`) maps to the Kafka topic config a user would look for.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// Requests read ahead of the one being processed, per connection.
    pub max_in_flight_requests_per_connection: usize,
    /// Connections served at once; further ones wait in the accept queue.
    pub max_connections: usize,
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
    /// How often compacted topics are checked for compaction (`log.cleaner.backoff.ms`).
    pub log_cleaner_backoff_ms: u64,
    /// Topic defaults, overridable per topic with Kafka's topic config names.
    pub log: LogDefaults,
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
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            listen: SocketAddr::from(([0, 0, 0, 0], 9092)),
            advertised_listener: "localhost:9092".to_string(),
            data_dir: PathBuf::from("./inlet-data"),
            socket_request_max_bytes: 100 * 1024 * 1024,
            max_in_flight_requests_per_connection: 64,
            max_connections: 10_000,
            auto_create_topics_enable: true,
            num_partitions: 1,
            default_replication_factor: 1,
            log_retention_check_interval_ms: 5 * 60 * 1000,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            log_cleaner_backoff_ms: 15_000,
            log: LogDefaults::default(),
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

    /// The effective configuration as TOML (`--print-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// The group coordinator's settings.
    pub fn group_config(&self) -> crate::group::GroupConfig {
        crate::group::GroupConfig {
            initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms.min(i64::MAX as u64)
                as i64,
            min_session_timeout_ms: self.group_min_session_timeout_ms,
            max_session_timeout_ms: self.group_max_session_timeout_ms,
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

#[cfg(test)]
mod tests {
    use super::*;

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
