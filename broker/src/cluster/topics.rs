//! The topics this broker hosts: creation (explicit or automatic), deletion, partition growth,
//! config changes, and their persistence. Layout under the data directory:
//!
//! ```text
//! topics/<name>/topic.toml     id, partition count, config overrides (written atomically)
//! topics/<name>/<partition>/   that partition's segment log
//! ```
//!
//! `topic.toml` is rewritten with write-to-temp, fsync, rename, so a crash leaves either the old or
//! the new file. A topic directory without `topic.toml` is an interrupted creation and is removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use inlet_storage::Log;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use super::partition::{Partition, PartitionError};
use super::topic_config::{TopicConfig, TopicConfigError};
use crate::config::LogDefaults;

const TOPIC_FILE: &str = "topic.toml";
/// Kafka's limit, so that `<topic>-<partition>` fits a 255-byte file name.
const MAX_TOPIC_NAME_LEN: usize = 249;
/// A sanity bound on partitions per topic (each one is a directory and open files).
pub const MAX_PARTITIONS: i32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("topic {0} already exists")]
    AlreadyExists(String),
    #[error("topic {0} does not exist")]
    Unknown(String),
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("invalid replication factor {factor}: this cluster has {brokers} broker(s)")]
    InvalidReplicationFactor { factor: i16, brokers: i16 },
    #[error(transparent)]
    InvalidConfig(#[from] TopicConfigError),
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("corrupt topic metadata {path}: {reason}")]
    CorruptMetadata { path: PathBuf, reason: String },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TopicError {
    let context = context.into();
    move |source| TopicError::Io { context, source }
}

/// Checks a name the way Kafka does: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let invalid = |reason| TopicError::InvalidName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name == "." || name == ".." {
        return Err(invalid("'.' and '..' are not allowed"));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(invalid("it is longer than 249 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(invalid(
            "only ASCII letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    Ok(())
}

/// What `topic.toml` holds.
#[derive(Debug, Serialize, Deserialize)]
struct TopicMetadata {
    id: Uuid,
    partitions: i32,
    #[serde(default)]
    config: TopicConfig,
}

pub struct Topic {
    pub name: String,
    pub id: Uuid,
    dir: PathBuf,
    config: RwLock<TopicConfig>,
    partitions: RwLock<Vec<Arc<Partition>>>,
}

impl Topic {
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        let partitions = self.partitions.read().unwrap_or_else(|e| e.into_inner());
        usize::try_from(index)
            .ok()
            .and_then(|i| partitions.get(i).cloned())
    }

    pub fn partition_count(&self) -> i32 {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len() as i32
    }

    pub fn config(&self) -> TopicConfig {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn persist(&self) -> Result<(), TopicError> {
        let metadata = TopicMetadata {
            id: self.id,
            partitions: self.partition_count(),
            config: self.config(),
        };
        write_atomically(&self.dir.join(TOPIC_FILE), &toml_string(&metadata)?)
    }
}

fn toml_string(metadata: &TopicMetadata) -> Result<String, TopicError> {
    toml::to_string(metadata).map_err(|e| TopicError::CorruptMetadata {
        path: PathBuf::from(TOPIC_FILE),
        reason: e.to_string(),
    })
}

fn write_atomically(path: &Path, contents: &str) -> Result<(), TopicError> {
    use std::io::Write;
    let tmp = path.with_extension("toml.tmp");
    let context = format!("writing {}", path.display());
    let mut file = std::fs::File::create(&tmp).map_err(io_error(context.clone()))?;
    file.write_all(contents.as_bytes())
        .map_err(io_error(context.clone()))?;
    file.sync_all().map_err(io_error(context.clone()))?;
    std::fs::rename(&tmp, path).map_err(io_error(context.clone()))?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_error(context))?;
    }
    Ok(())
}

/// All topics, by name.
pub struct TopicRegistry {
    root: PathBuf,
    defaults: LogDefaults,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    appended: Arc<watch::Sender<u64>>,
}

impl TopicRegistry {
    /// Opens every topic under `<data_dir>/topics`, recovering each partition's log.
    pub fn open(
        data_dir: &Path,
        defaults: LogDefaults,
        appended: Arc<watch::Sender<u64>>,
    ) -> Result<TopicRegistry, TopicError> {
        let root = data_dir.join("topics");
        std::fs::create_dir_all(&root).map_err(io_error(format!("creating {}", root.display())))?;
        let registry = TopicRegistry {
            root: root.clone(),
            defaults,
            topics: RwLock::new(BTreeMap::new()),
            appended,
        };
        let entries =
            std::fs::read_dir(&root).map_err(io_error(format!("listing {}", root.display())))?;
        let mut topics = BTreeMap::new();
        for entry in entries {
            let dir = entry
                .map_err(io_error(format!("listing {}", root.display())))?
                .path();
            let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                continue;
            };
            if !dir.is_dir() || validate_topic_name(&name).is_err() {
                continue;
            }
            let meta_path = dir.join(TOPIC_FILE);
            if !meta_path.exists() {
                tracing::warn!(topic = %name, "removing a topic directory whose creation did not finish");
                std::fs::remove_dir_all(&dir)
                    .map_err(io_error(format!("removing {}", dir.display())))?;
                continue;
            }
            let text = std::fs::read_to_string(&meta_path)
                .map_err(io_error(format!("reading {}", meta_path.display())))?;
            let metadata: TopicMetadata =
                toml::from_str(&text).map_err(|e| TopicError::CorruptMetadata {
                    path: meta_path.clone(),
                    reason: e.to_string(),
                })?;
            let topic = registry.open_topic(&name, dir, metadata)?;
            tracing::info!(topic = %name, partitions = topic.partition_count(), "opened topic");
            topics.insert(name, topic);
        }
        *registry.topics.write().unwrap_or_else(|e| e.into_inner()) = topics;
        Ok(registry)
    }

    fn open_partition(
        &self,
        name: &str,
        dir: &Path,
        index: i32,
        config: &TopicConfig,
    ) -> Result<Arc<Partition>, TopicError> {
        let log = Log::open(
            &dir.join(index.to_string()),
            config.log_config(&self.defaults),
        )
        .map_err(PartitionError::from)?;
        Ok(Arc::new(Partition::new(
            name,
            index,
            log,
            self.appended.clone(),
        )))
    }

    fn open_topic(
        &self,
        name: &str,
        dir: PathBuf,
        metadata: TopicMetadata,
    ) -> Result<Arc<Topic>, TopicError> {
        let partitions = (0..metadata.partitions)
            .map(|index| self.open_partition(name, &dir, index, &metadata.config))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Topic {
            name: name.to_string(),
            id: metadata.id,
            dir,
            config: RwLock::new(metadata.config),
            partitions: RwLock::new(partitions),
        }))
    }

    pub fn defaults(&self) -> &LogDefaults {
        &self.defaults
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    pub fn get_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        topics.values().find(|t| t.id == id).cloned()
    }

    pub fn list(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Creates a topic; with `validate_only` checks everything and creates nothing.
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        config: TopicConfig,
        validate_only: bool,
    ) -> Result<Option<Arc<Topic>>, TopicError> {
        validate_topic_name(name)?;
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(format!(
                "{partitions} is outside 1..={MAX_PARTITIONS}"
            )));
        }
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        if topics.contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        if validate_only {
            return Ok(None);
        }
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).map_err(io_error(format!("creating {}", dir.display())))?;
        let metadata = TopicMetadata {
            id: Uuid::new_v4(),
            partitions,
            config,
        };
        let persisted = write_atomically(&dir.join(TOPIC_FILE), &toml_string(&metadata)?)
            .and_then(|()| self.open_topic(name, dir.clone(), metadata));
        let topic = match persisted {
            Ok(topic) => topic,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        tracing::info!(topic = %name, partitions, "created topic");
        topics.insert(name.to_string(), topic.clone());
        Ok(Some(topic))
    }

    /// Deletes a topic and its data.
    pub fn delete(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        let topic = self
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        // Remove the metadata file first: a crash midway then leaves a directory that the next
        // start recognises as unfinished and removes.
        std::fs::remove_file(topic.dir.join(TOPIC_FILE))
            .map_err(io_error(format!("deleting topic {name}")))?;
        for partition in topic.partitions() {
            partition.delete()?;
        }
        std::fs::remove_dir_all(&topic.dir).map_err(io_error(format!("deleting topic {name}")))?;
        tracing::info!(topic = %name, "deleted topic");
        Ok(topic)
    }

    /// Grows a topic to `count` partitions.
    pub fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let topic = self
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let mut partitions = topic.partitions.write().unwrap_or_else(|e| e.into_inner());
        let current = partitions.len() as i32;
        if count <= current {
            return Err(TopicError::InvalidPartitions(format!(
                "topic {name} has {current} partitions; the new count must be larger, not {count}"
            )));
        }
        if count > MAX_PARTITIONS {
            return Err(TopicError::InvalidPartitions(format!(
                "{count} is above {MAX_PARTITIONS}"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let config = topic.config();
        for index in current..count {
            partitions.push(self.open_partition(name, &topic.dir, index, &config)?);
        }
        drop(partitions);
        topic.persist()?;
        tracing::info!(topic = %name, from = current, to = count, "added partitions");
        Ok(())
    }

    /// Replaces a topic's config overrides and applies them to its open logs.
    pub fn set_config(&self, name: &str, config: TopicConfig) -> Result<(), TopicError> {
        let topic = self
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        *topic.config.write().unwrap_or_else(|e| e.into_inner()) = config.clone();
        topic.persist()?;
        let log_config = config.log_config(&self.defaults);
        for partition in topic.partitions() {
            partition.set_config(log_config.clone())?;
        }
        Ok(())
    }

    /// Flushes and closes every partition (shutdown).
    pub fn close_all(&self) {
        for topic in self.list() {
            for partition in topic.partitions() {
                if let Err(error) = partition.close() {
                    tracing::error!(topic = %topic.name, partition = partition.index, %error, "closing partition failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(dir: &Path) -> TopicRegistry {
        TopicRegistry::open(dir, LogDefaults::default(), Arc::new(watch::channel(0).0)).unwrap()
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        for bad in ["", ".", "..", "a b", "a/b", "ü", &"x".repeat(250)] {
            assert!(
                validate_topic_name(bad).is_err(),
                "{bad:?} should be invalid"
            );
        }
    }

    #[test]
    fn created_topics_and_configs_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let config = TopicConfig::from_pairs([("retention.ms", Some("1000"))]).unwrap();
        let id = {
            let topics = registry(dir.path());
            let topic = topics
                .create("events", 3, config.clone(), false)
                .unwrap()
                .unwrap();
            topics.add_partitions("events", 5, false).unwrap();
            let id = topic.id;
            topics.close_all();
            id
        };
        let topics = registry(dir.path());
        let topic = topics.get("events").unwrap();
        assert_eq!(
            (topic.id, topic.partition_count(), topic.config()),
            (id, 5, config)
        );
    }

    #[test]
    fn duplicate_and_shrinking_requests_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let topics = registry(dir.path());
        topics
            .create("t", 2, TopicConfig::default(), false)
            .unwrap();
        assert!(matches!(
            topics.create("t", 2, TopicConfig::default(), false),
            Err(TopicError::AlreadyExists(_))
        ));
        assert!(matches!(
            topics.add_partitions("t", 2, false),
            Err(TopicError::InvalidPartitions(_))
        ));
        assert!(matches!(
            topics.create("u", 0, TopicConfig::default(), false),
            Err(TopicError::InvalidPartitions(_))
        ));
    }

    #[test]
    fn validate_only_creates_nothing_and_delete_removes_files() {
        let dir = tempfile::tempdir().unwrap();
        let topics = registry(dir.path());
        assert!(topics
            .create("t", 1, TopicConfig::default(), true)
            .unwrap()
            .is_none());
        assert!(topics.get("t").is_none());
        topics
            .create("t", 1, TopicConfig::default(), false)
            .unwrap();
        topics.delete("t").unwrap();
        assert!(!dir.path().join("topics/t").exists());
        assert!(registry(dir.path()).get("t").is_none());
    }
}
