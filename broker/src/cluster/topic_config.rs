//! Per-topic configuration under Kafka's names (`retention.ms`, `segment.bytes`, ...): which keys
//! exist, how each is validated, what its broker default is, and how a topic's overrides become
//! the storage engine's `LogConfig`. Only overrides are stored; defaults come from `LogDefaults`.

use std::collections::BTreeMap;

use inlet_protocol::record_walk::decompressed_batch_limit;
use inlet_storage::LogConfig;

use crate::config::LogDefaults;

/// Where a config value comes from, as DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on this topic (`DYNAMIC_TOPIC_CONFIG`).
    Topic = 1,
    /// The broker's default (`DEFAULT_CONFIG`).
    Default = 5,
}

/// DescribeConfigs' `config_type` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
}

/// One supported topic config.
pub struct ConfigKey {
    pub name: &'static str,
    pub config_type: ConfigType,
    pub doc: &'static str,
    validate: fn(&str) -> Result<(), String>,
    default: fn(&LogDefaults) -> String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TopicConfigError {
    #[error("unknown topic config {0:?}")]
    UnknownKey(String),
    #[error("invalid value {value:?} for {key}: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("config {0} needs a value")]
    MissingValue(String),
}

fn long_at_least(min: i64) -> impl Fn(&str) -> Result<(), String> {
    move |v| match v.parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        Ok(_) => Err(format!("must be at least {min}")),
        Err(_) => Err("not a whole number".to_string()),
    }
}

fn int_at_least(min: i32) -> impl Fn(&str) -> Result<(), String> {
    move |v| match v.parse::<i32>() {
        Ok(n) if n >= min => Ok(()),
        Ok(_) => Err(format!("must be at least {min}")),
        Err(_) => Err("not a 32-bit whole number".to_string()),
    }
}

fn boolean(v: &str) -> Result<(), String> {
    one_of(&["true", "false"])(v)
}

fn one_of(allowed: &'static [&'static str]) -> impl Fn(&str) -> Result<(), String> {
    move |v| {
        if allowed.contains(&v) {
            Ok(())
        } else {
            Err(format!("supported values: {}", allowed.join(", ")))
        }
    }
}

/// The topic configs Inlet understands. Values a user may set but Inlet does not implement yet
/// (`LogAppendTime`, for example) are refused rather than silently ignored.
pub static TOPIC_CONFIGS: &[ConfigKey] = &[
    ConfigKey {
        name: "cleanup.policy",
        config_type: ConfigType::String,
        doc: "What happens to old segments: delete them past retention, compact them to the latest \
              record per key, or both.",
        validate: |v| one_of(&["delete", "compact", "compact,delete", "delete,compact"])(v),
        default: |_| "delete".to_string(),
    },
    ConfigKey {
        name: "delete.retention.ms",
        config_type: ConfigType::Long,
        doc: "How long compaction keeps tombstones (records with a null value).",
        validate: |v| long_at_least(0)(v),
        default: |d| d.delete_retention_ms.to_string(),
    },
    ConfigKey {
        name: "retention.ms",
        config_type: ConfigType::Long,
        doc: "Delete closed segments whose newest record is older than this (-1: never).",
        validate: |v| long_at_least(-1)(v),
        default: |d| d.retention_ms.to_string(),
    },
    ConfigKey {
        name: "retention.bytes",
        config_type: ConfigType::Long,
        doc: "Delete the oldest closed segments while a partition is larger than this (-1: no limit).",
        validate: |v| long_at_least(-1)(v),
        default: |d| d.retention_bytes.to_string(),
    },
    ConfigKey {
        name: "segment.bytes",
        config_type: ConfigType::Int,
        doc: "Roll to a new segment file when the active one reaches this size.",
        validate: |v| int_at_least(1024)(v),
        default: |d| d.segment_bytes.to_string(),
    },
    ConfigKey {
        name: "segment.ms",
        config_type: ConfigType::Long,
        doc: "Roll to a new segment when the active one is this old.",
        validate: |v| long_at_least(1)(v),
        default: |d| d.segment_ms.to_string(),
    },
    ConfigKey {
        name: "flush.messages",
        config_type: ConfigType::Long,
        doc: "Force a flush to disk after this many batches (-1: not by count).",
        validate: |v| long_at_least(-1)(v),
        default: |d| d.flush_messages.to_string(),
    },
    ConfigKey {
        name: "flush.ms",
        config_type: ConfigType::Long,
        doc: "Force a flush to disk at least this often (-1: leave it to the OS).",
        validate: |v| long_at_least(-1)(v),
        default: |d| d.flush_ms.to_string(),
    },
    ConfigKey {
        name: "index.interval.bytes",
        config_type: ConfigType::Int,
        doc: "Bytes of log between two offset index entries.",
        validate: |v| int_at_least(0)(v),
        default: |d| d.index_interval_bytes.to_string(),
    },
    ConfigKey {
        name: "max.message.bytes",
        config_type: ConfigType::Int,
        doc: "Largest record batch a producer may send.",
        validate: |v| int_at_least(0)(v),
        default: |d| d.max_message_bytes.to_string(),
    },
    ConfigKey {
        name: "message.timestamp.type",
        config_type: ConfigType::String,
        doc: "Record timestamps are the producer's (CreateTime).",
        validate: |v| one_of(&["CreateTime"])(v),
        default: |_| "CreateTime".to_string(),
    },
    ConfigKey {
        name: "message.timestamp.before.max.ms",
        config_type: ConfigType::Long,
        doc: "Refuse (INVALID_TIMESTAMP) a batch with a record timestamp more than this many ms \
              before the broker's clock (KIP-937).",
        validate: |v| long_at_least(0)(v),
        default: |d| d.message_timestamp_before_max_ms.to_string(),
    },
    ConfigKey {
        name: "message.timestamp.after.max.ms",
        config_type: ConfigType::Long,
        doc: "Refuse (INVALID_TIMESTAMP) a batch with a record timestamp more than this many ms \
              after the broker's clock (KIP-937).",
        validate: |v| long_at_least(0)(v),
        default: |d| d.message_timestamp_after_max_ms.to_string(),
    },
    ConfigKey {
        name: "min.insync.replicas",
        config_type: ConfigType::Int,
        doc: "Replicas that must have a write for acks=all to succeed.",
        validate: |v| int_at_least(1)(v),
        default: |_| "1".to_string(),
    },
    ConfigKey {
        name: "compression.type",
        config_type: ConfigType::String,
        doc: "Batches are stored as the producer compressed them.",
        validate: |v| one_of(&["producer"])(v),
        default: |_| "producer".to_string(),
    },
    ConfigKey {
        name: "remote.storage.enable",
        config_type: ConfigType::Boolean,
        doc: "Copy closed segments to the lake (the broker's [lake] directory or S3 bucket). Not \
              for compacted topics: with cleanup.policy=compact the topic is not tiered.",
        validate: boolean,
        default: |d| d.remote_storage_enable.to_string(),
    },
    ConfigKey {
        name: "local.retention.ms",
        config_type: ConfigType::Long,
        doc: "Delete segments already in the lake from local disk once their newest record is \
              older than this (-2: same as retention.ms, -1: unlimited; never more than \
              retention.ms).",
        validate: |v| long_at_least(-2)(v),
        default: |d| d.local_retention_ms.to_string(),
    },
    ConfigKey {
        name: "local.retention.bytes",
        config_type: ConfigType::Long,
        doc: "Delete the oldest segments already in the lake from local disk while a partition is \
              larger than this (-2: same as retention.bytes, -1: unlimited; never more than \
              retention.bytes).",
        validate: |v| long_at_least(-2)(v),
        default: |d| d.local_retention_bytes.to_string(),
    },
    ConfigKey {
        name: "lake.parquet.enable",
        config_type: ConfigType::Boolean,
        doc: "Also write every tiered segment to the lake as a Parquet file, for query engines.",
        validate: boolean,
        default: |d| d.lake_parquet_enable.to_string(),
    },
];

/// Kafka's `local.retention.*` against the total retention (`None`: unlimited): -2 follows the
/// total, -1 is unlimited, and a local retention larger than the total is capped at the total.
fn local_retention(local: i64, total: Option<i64>) -> Option<i64> {
    let local = match local {
        -2 => total,
        n if n < 0 => None,
        n => Some(n),
    };
    match (local, total) {
        (Some(local), Some(total)) => Some(local.min(total)),
        (None, total) => total,
        (local, None) => local,
    }
}

/// A topic's config overrides, validated.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct TopicConfig {
    overrides: BTreeMap<String, String>,
}

/// One resolved entry for DescribeConfigs and CreateTopics responses.
pub struct ResolvedConfig {
    pub key: &'static ConfigKey,
    pub value: String,
    pub source: ConfigSource,
}

fn find_key(name: &str) -> Result<&'static ConfigKey, TopicConfigError> {
    TOPIC_CONFIGS
        .iter()
        .find(|k| k.name == name)
        .ok_or_else(|| TopicConfigError::UnknownKey(name.to_string()))
}

impl TopicConfig {
    /// Builds a config from `(name, value)` pairs, validating every one. A `None` value (as
    /// CreateTopics allows) means "use the default".
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<TopicConfig, TopicConfigError> {
        let mut config = TopicConfig::default();
        for (name, value) in pairs {
            match value {
                Some(value) => config.set(name, value)?,
                None => {
                    find_key(name)?;
                }
            }
        }
        Ok(config)
    }

    /// The overrides, by Kafka name.
    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    /// Sets one override after validating it.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), TopicConfigError> {
        let key = find_key(name)?;
        (key.validate)(value).map_err(|reason| TopicConfigError::InvalidValue {
            key: name.to_string(),
            value: value.to_string(),
            reason,
        })?;
        self.overrides.insert(name.to_string(), value.to_string());
        Ok(())
    }

    /// Every supported key with its effective value and where it came from.
    pub fn resolve(&self, defaults: &LogDefaults) -> Vec<ResolvedConfig> {
        TOPIC_CONFIGS
            .iter()
            .map(|key| match self.overrides.get(key.name) {
                Some(value) => ResolvedConfig {
                    key,
                    value: value.clone(),
                    source: ConfigSource::Topic,
                },
                None => ResolvedConfig {
                    key,
                    value: (key.default)(defaults),
                    source: ConfigSource::Default,
                },
            })
            .collect()
    }

    fn long(&self, name: &str, default: i64) -> i64 {
        self.overrides
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    fn boolean(&self, name: &str, default: bool) -> bool {
        self.overrides
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// The largest batch a producer may send to this topic.
    pub fn max_message_bytes(&self, defaults: &LogDefaults) -> usize {
        self.long("max.message.bytes", i64::from(defaults.max_message_bytes))
            .max(0) as usize
    }

    /// Replicas that must be in sync for an acks=all produce (`min.insync.replicas`).
    pub fn min_insync_replicas(&self) -> usize {
        self.long("min.insync.replicas", 1).max(1) as usize
    }

    /// The storage engine's view of this topic's settings.
    ///
    /// Kafka refuses `remote.storage.enable` on compacted topics; since it is on by default here,
    /// a topic whose `cleanup.policy` includes `compact` is simply not tiered (`remote_storage`
    /// is false whatever the config says).
    pub fn log_config(&self, defaults: &LogDefaults) -> LogConfig {
        let policy = self
            .overrides
            .get("cleanup.policy")
            .map_or("delete", String::as_str);
        // Retention deletes segments only under the `delete` policy, as in Kafka.
        let delete = policy.contains("delete");
        let compact = policy.contains("compact");
        let positive = |n: i64| (n >= 0).then_some(n);
        let retained = |n: i64| (n >= 0 && delete).then_some(n);
        let retention_ms = retained(self.long("retention.ms", defaults.retention_ms));
        let retention_bytes = retained(self.long("retention.bytes", defaults.retention_bytes));
        LogConfig {
            compact,
            delete_retention_ms: self.long("delete.retention.ms", defaults.delete_retention_ms),
            segment_bytes: self
                .long("segment.bytes", defaults.segment_bytes as i64)
                .max(1024) as u64,
            segment_ms: self.long("segment.ms", defaults.segment_ms as i64).max(1),
            index_interval_bytes: self
                .long(
                    "index.interval.bytes",
                    i64::from(defaults.index_interval_bytes),
                )
                .max(0) as u64,
            flush_messages: positive(self.long("flush.messages", defaults.flush_messages))
                .map(|n| n as u64),
            flush_ms: positive(self.long("flush.ms", defaults.flush_ms)).map(|n| n as u64),
            retention_ms,
            retention_bytes: retention_bytes.map(|n| n as u64),
            remote_storage: !compact
                && self.boolean("remote.storage.enable", defaults.remote_storage_enable),
            local_retention_ms: local_retention(
                self.long("local.retention.ms", defaults.local_retention_ms),
                retention_ms,
            ),
            local_retention_bytes: local_retention(
                self.long("local.retention.bytes", defaults.local_retention_bytes),
                retention_bytes,
            )
            .map(|n| n as u64),
            lake_parquet: self.boolean("lake.parquet.enable", defaults.lake_parquet_enable),
            message_timestamp_before_max_ms: self.long(
                "message.timestamp.before.max.ms",
                defaults.message_timestamp_before_max_ms,
            ),
            message_timestamp_after_max_ms: self.long(
                "message.timestamp.after.max.ms",
                defaults.message_timestamp_after_max_ms,
            ),
            max_decompressed_batch_bytes: decompressed_batch_limit(
                self.max_message_bytes(defaults),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacted_topics_still_flush_by_policy() {
        let config = TopicConfig::from_pairs([("cleanup.policy", Some("compact"))]).unwrap();
        assert_eq!(
            config.log_config(&LogDefaults::default()).flush_ms,
            Some(1000)
        );
    }

    #[test]
    fn overrides_reach_the_log_config() {
        let config = TopicConfig::from_pairs([
            ("retention.ms", Some("60000")),
            ("segment.bytes", Some("4096")),
        ])
        .unwrap();
        let log = config.log_config(&LogDefaults::default());
        assert_eq!(log.retention_ms, Some(60000));
        assert_eq!(log.segment_bytes, 4096);
    }

    #[test]
    fn minus_one_means_unlimited() {
        let config = TopicConfig::from_pairs([("retention.ms", Some("-1"))]).unwrap();
        assert_eq!(
            config.log_config(&LogDefaults::default()).retention_ms,
            None
        );
    }

    #[test]
    fn unknown_and_invalid_values_are_refused() {
        assert_eq!(
            TopicConfig::from_pairs([("retention.mss", Some("1"))]),
            Err(TopicConfigError::UnknownKey("retention.mss".into()))
        );
        assert!(matches!(
            TopicConfig::from_pairs([("retention.ms", Some("soon"))]),
            Err(TopicConfigError::InvalidValue { .. })
        ));
        assert!(matches!(
            TopicConfig::from_pairs([("cleanup.policy", Some("shred"))]),
            Err(TopicConfigError::InvalidValue { .. })
        ));
    }

    #[test]
    fn compact_policy_compacts_and_turns_retention_off() {
        let config = TopicConfig::from_pairs([
            ("cleanup.policy", Some("compact")),
            ("delete.retention.ms", Some("5")),
        ])
        .unwrap();
        let log = config.log_config(&LogDefaults::default());
        assert!(log.compact);
        assert_eq!((log.delete_retention_ms, log.retention_ms), (5, None));
        let both = TopicConfig::from_pairs([("cleanup.policy", Some("compact,delete"))]).unwrap();
        let log = both.log_config(&LogDefaults::default());
        assert!(log.compact && log.retention_ms.is_some());
    }

    #[test]
    fn tiering_defaults_reach_the_log_config() {
        let log = TopicConfig::default().log_config(&LogDefaults::default());
        assert!(log.remote_storage && log.lake_parquet);
        // -2: local retention follows the total one (7 days; no size limit).
        assert_eq!(log.local_retention_ms, Some(604_800_000));
        assert_eq!(log.local_retention_bytes, None);
    }

    #[test]
    fn tiering_overrides_reach_the_log_config() {
        let config = TopicConfig::from_pairs([
            ("remote.storage.enable", Some("false")),
            ("lake.parquet.enable", Some("false")),
            ("retention.bytes", Some("1000000")),
            ("local.retention.ms", Some("60000")),
            ("local.retention.bytes", Some("4096")),
        ])
        .unwrap();
        let log = config.log_config(&LogDefaults::default());
        assert!(!log.remote_storage && !log.lake_parquet);
        assert_eq!(log.local_retention_ms, Some(60000));
        assert_eq!(log.local_retention_bytes, Some(4096));
    }

    #[test]
    fn local_retention_minus_two_follows_and_minus_one_is_unlimited() {
        let follow = TopicConfig::from_pairs([
            ("retention.ms", Some("5000")),
            ("retention.bytes", Some("8192")),
            ("local.retention.ms", Some("-2")),
            ("local.retention.bytes", Some("-2")),
        ])
        .unwrap();
        let log = follow.log_config(&LogDefaults::default());
        assert_eq!(
            (log.local_retention_ms, log.local_retention_bytes),
            (Some(5000), Some(8192))
        );
        let unlimited = TopicConfig::from_pairs([
            ("retention.ms", Some("-1")),
            ("local.retention.ms", Some("-1")),
            ("local.retention.bytes", Some("-1")),
        ])
        .unwrap();
        let log = unlimited.log_config(&LogDefaults::default());
        assert_eq!(
            (log.local_retention_ms, log.local_retention_bytes),
            (None, None)
        );
    }

    #[test]
    fn local_retention_is_capped_at_the_total() {
        let config = TopicConfig::from_pairs([
            ("retention.ms", Some("5000")),
            ("retention.bytes", Some("8192")),
            ("local.retention.ms", Some("9000")),
            ("local.retention.bytes", Some("-1")),
        ])
        .unwrap();
        let log = config.log_config(&LogDefaults::default());
        assert_eq!(
            (log.local_retention_ms, log.local_retention_bytes),
            (Some(5000), Some(8192))
        );
        // A finite local retention with unlimited total retention stays as it is.
        let config = TopicConfig::from_pairs([
            ("retention.ms", Some("-1")),
            ("local.retention.ms", Some("9000")),
        ])
        .unwrap();
        let log = config.log_config(&LogDefaults::default());
        assert_eq!(log.local_retention_ms, Some(9000));
    }

    #[test]
    fn timestamp_bounds_and_the_decompression_limit_reach_the_log_config() {
        let log = TopicConfig::default().log_config(&LogDefaults::default());
        assert_eq!(
            (
                log.message_timestamp_before_max_ms,
                log.message_timestamp_after_max_ms
            ),
            (i64::MAX, 3_600_000)
        );
        assert_eq!(log.max_decompressed_batch_bytes, 64 * (1024 * 1024 + 12));
        let config = TopicConfig::from_pairs([
            ("message.timestamp.before.max.ms", Some("1000")),
            ("message.timestamp.after.max.ms", Some("2000")),
            ("max.message.bytes", Some("100000")),
        ])
        .unwrap();
        let log = config.log_config(&LogDefaults::default());
        assert_eq!(
            (
                log.message_timestamp_before_max_ms,
                log.message_timestamp_after_max_ms
            ),
            (1000, 2000)
        );
        assert_eq!(log.max_decompressed_batch_bytes, 6_400_000);
        assert!(TopicConfig::from_pairs([("message.timestamp.after.max.ms", Some("-1"))]).is_err());
    }

    #[test]
    fn compacted_topics_are_never_tiered() {
        for policy in ["compact", "compact,delete", "delete,compact"] {
            let config = TopicConfig::from_pairs([
                ("cleanup.policy", Some(policy)),
                ("remote.storage.enable", Some("true")),
            ])
            .unwrap();
            assert!(
                !config.log_config(&LogDefaults::default()).remote_storage,
                "{policy}"
            );
        }
    }

    #[test]
    fn tiering_configs_are_validated() {
        for (key, bad) in [
            ("remote.storage.enable", "yes"),
            ("lake.parquet.enable", "1"),
            ("local.retention.ms", "-3"),
            ("local.retention.bytes", "lots"),
        ] {
            assert!(
                matches!(
                    TopicConfig::from_pairs([(key, Some(bad))]),
                    Err(TopicConfigError::InvalidValue { .. })
                ),
                "{key}={bad}"
            );
        }
        let resolved = TopicConfig::default().resolve(&LogDefaults::default());
        let remote = resolved
            .iter()
            .find(|r| r.key.name == "remote.storage.enable")
            .unwrap();
        assert_eq!(remote.key.config_type, ConfigType::Boolean);
        assert_eq!(remote.value, "true");
        let local = resolved
            .iter()
            .find(|r| r.key.name == "local.retention.ms")
            .unwrap();
        assert_eq!(local.value, "-2");
    }

    #[test]
    fn resolve_marks_overrides_and_defaults() {
        let config = TopicConfig::from_pairs([("retention.ms", Some("5"))]).unwrap();
        let resolved = config.resolve(&LogDefaults::default());
        let retention = resolved
            .iter()
            .find(|r| r.key.name == "retention.ms")
            .unwrap();
        assert_eq!(
            (retention.value.as_str(), retention.source),
            ("5", ConfigSource::Topic)
        );
        let segment = resolved
            .iter()
            .find(|r| r.key.name == "segment.bytes")
            .unwrap();
        assert_eq!(segment.source, ConfigSource::Default);
    }
}
