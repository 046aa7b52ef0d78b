//! The topics this broker hosts: creation (explicit or automatic), deletion, partition growth,
//! config changes, and their persistence. Layout under the data directory:
//!
//! ```text
//! topics/<name>/topic.toml     id, partition count, config overrides (written atomically)
//! topics/<name>/<partition>/   that partition's segment log
//! topics/<id>~creating/        a topic being built; renamed to topics/<name> once complete
//! topics/<id>~delete/          a deleted topic, renamed away, its files being removed
//! topics/<id>~orphan/          data of an old broker's topic that had lost its topic.toml
//! ```
//!
//! Creation and deletion are atomic on disk, as in Kafka. A topic is built (its `topic.toml`
//! fsynced, its partition directories made) in `<id>~creating` and renamed into place, so a
//! live topic's directory always has its metadata; it is registered only after its logs are
//! open. Deletion takes it out of the registry, closes its logs and renames its directory to
//! `<id>~delete` before anything is removed, so files being deleted are never under a live
//! name and a new topic of the same name starts from an empty directory. `~` is outside the
//! topic-name alphabet: no topic, whatever its name, is mistaken for one of these.
//!
//! File work (creating directories, opening logs, removing files) is done without the registry
//! lock, so Metadata and Produce lookups never wait on the disk. Operations on one name
//! (create, delete, add partitions, change config) are serialized by claiming the name instead.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use inlet_storage::Log;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::partition::{Partition, PartitionError};
use super::topic_config::{TopicConfig, TopicConfigError};
use crate::config::LogDefaults;

const TOPIC_FILE: &str = "topic.toml";
/// Suffixes of directories under `topics/` that are not live topics (see the module doc).
const CREATING_SUFFIX: &str = "~creating";
const DELETING_SUFFIX: &str = "~delete";
const ORPHAN_SUFFIX: &str = "~orphan";
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

    /// Rewrites `topic.toml` with `partitions` and the current config. Called with the name
    /// claimed, so the directory is this topic's and not a later one's of the same name.
    fn persist_with(&self, partitions: i32) -> Result<(), TopicError> {
        let metadata = TopicMetadata {
            id: self.id,
            partitions,
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

fn sync_dir(dir: &Path) -> Result<(), TopicError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(format!("syncing {}", dir.display())))
}

/// Removes a renamed-away topic directory on a thread of its own: a large topic takes a while,
/// and nothing waits for it (a crash midway leaves a `~delete` directory the next start removes).
fn remove_in_background(dir: PathBuf) {
    fn remove(dir: &Path) {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => tracing::info!(dir = %dir.display(), "removed deleted topic files"),
            Err(error) => {
                tracing::error!(dir = %dir.display(), %error, "removing deleted topic files failed")
            }
        }
    }
    let spawned = std::thread::Builder::new()
        .name("topic-delete".into())
        .spawn({
            let dir = dir.clone();
            move || remove(&dir)
        });
    if spawned.is_err() {
        // No thread to be had: do it here rather than leave it to the next start.
        remove(&dir);
    }
}

/// Whether an old broker's topic directory without `topic.toml` holds any record data.
fn holds_data(dir: &Path) -> bool {
    let Ok(partitions) = std::fs::read_dir(dir) else {
        return true;
    };
    partitions.flatten().any(|partition| {
        std::fs::read_dir(partition.path()).is_ok_and(|files| {
            files.flatten().any(|f| {
                f.path().extension().is_some_and(|e| e == "log")
                    && f.metadata().is_ok_and(|m| m.len() > 0)
            })
        })
    })
}

/// Names with a creation, deletion or change on disk in progress. Those run without the
/// registry lock, so the operations on one name are serialized here instead.
#[derive(Default)]
struct BusyNames {
    names: Mutex<HashSet<String>>,
    freed: Condvar,
}

/// The claim on one name; released on drop.
struct NameClaim<'a> {
    busy: &'a BusyNames,
    name: String,
}

impl BusyNames {
    /// Claims `name`, or `None` if another operation holds it.
    fn try_claim(&self, name: &str) -> Option<NameClaim<'_>> {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.insert(name.to_string()).then(|| NameClaim {
            busy: self,
            name: name.to_string(),
        })
    }

    /// Claims `name`, waiting for the operation holding it. Holders never wait on anything
    /// else, so this cannot deadlock.
    fn claim(&self, name: &str) -> NameClaim<'_> {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        while names.contains(name) {
            names = self.freed.wait(names).unwrap_or_else(|e| e.into_inner());
        }
        names.insert(name.to_string());
        NameClaim {
            busy: self,
            name: name.to_string(),
        }
    }
}

impl Drop for NameClaim<'_> {
    fn drop(&mut self) {
        self.busy
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.name);
        self.busy.freed.notify_all();
    }
}

/// All topics, by name.
pub struct TopicRegistry {
    root: PathBuf,
    defaults: LogDefaults,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    busy: BusyNames,
}

impl TopicRegistry {
    /// Opens every topic under `<data_dir>/topics`, recovering each partition's log, and
    /// finishes what a crash interrupted: half-built topics and deleted ones are removed.
    pub fn open(data_dir: &Path, defaults: LogDefaults) -> Result<TopicRegistry, TopicError> {
        let root = data_dir.join("topics");
        std::fs::create_dir_all(&root).map_err(io_error(format!("creating {}", root.display())))?;
        let registry = TopicRegistry {
            root: root.clone(),
            defaults,
            topics: RwLock::new(BTreeMap::new()),
            busy: BusyNames::default(),
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
            if !dir.is_dir() {
                continue;
            }
            if name.ends_with(DELETING_SUFFIX) {
                tracing::info!(dir = %dir.display(), "finishing an interrupted topic deletion");
                remove_in_background(dir);
                continue;
            }
            if name.ends_with(CREATING_SUFFIX) {
                // Never registered, so it holds no record anyone was told about.
                tracing::info!(dir = %dir.display(), "removing an unfinished topic creation");
                std::fs::remove_dir_all(&dir)
                    .map_err(io_error(format!("removing {}", dir.display())))?;
                continue;
            }
            if validate_topic_name(&name).is_err() {
                continue;
            }
            let meta_path = dir.join(TOPIC_FILE);
            if !meta_path.exists() {
                registry.discard_legacy_dir(&name, &dir)?;
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

    /// A topic directory without `topic.toml` can only come from an older broker, which created
    /// the file after the directory and removed it first on deletion, and could lose it to a
    /// delete/create race on a live topic. Empty ones are removed; ones holding records are set
    /// aside (never deleted) for an operator to look at.
    fn discard_legacy_dir(&self, name: &str, dir: &Path) -> Result<(), TopicError> {
        if !holds_data(dir) {
            tracing::warn!(topic = %name, "removing a topic directory whose creation did not finish");
            return std::fs::remove_dir_all(dir)
                .map_err(io_error(format!("removing {}", dir.display())));
        }
        let aside = self
            .root
            .join(format!("{}{ORPHAN_SUFFIX}", Uuid::new_v4().simple()));
        tracing::error!(topic = %name, moved_to = %aside.display(),
            "a topic directory holds records but no topic.toml: set aside, not deleted");
        std::fs::rename(dir, &aside).map_err(io_error(format!("moving {}", dir.display())))?;
        sync_dir(&self.root)
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
        Ok(Arc::new(Partition::new(name, index, log)))
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

    /// Creates a topic; with `validate_only` checks everything and creates nothing. A name
    /// another operation is busy with (a deletion still moving files away, a concurrent
    /// creation) is refused as existing, as Kafka refuses a topic marked for deletion.
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        config: TopicConfig,
        validate_only: bool,
    ) -> Result<Option<Arc<Topic>>, TopicError> {
        self.create_with_id(name, Uuid::new_v4(), partitions, config, validate_only)
    }

    /// [`create`](Self::create) with the topic id given: the controller chose it, and every
    /// broker's copy of the topic carries the same one.
    pub fn create_with_id(
        &self,
        name: &str,
        id: Uuid,
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
        let exists = || TopicError::AlreadyExists(name.to_string());
        if self.get(name).is_some() {
            return Err(exists());
        }
        if validate_only {
            return Ok(None);
        }
        let claim = self.busy.try_claim(name).ok_or_else(exists)?;
        // Checked again: a creation may have finished between the lookup and the claim.
        if self.get(name).is_some() {
            return Err(exists());
        }
        let metadata = TopicMetadata {
            id,
            partitions,
            config,
        };
        let id = metadata.id;
        let dir = self.build_topic_dir(name, &metadata)?;
        let topic = match self.open_topic(name, dir.clone(), metadata) {
            Ok(topic) => topic,
            Err(e) => {
                // Not registered yet, so nobody wrote to it: move it away and remove it.
                self.move_away(&dir, id).map(remove_in_background).ok();
                return Err(e);
            }
        };
        self.topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), topic.clone());
        drop(claim);
        tracing::info!(topic = %name, partitions, %id, "created topic");
        Ok(Some(topic))
    }

    /// Builds a topic's directory (`topic.toml` and partition directories, synced) under a
    /// temporary name and renames it to `topics/<name>`: the live name never lacks its
    /// metadata. The caller holds the name's claim.
    fn build_topic_dir(&self, name: &str, metadata: &TopicMetadata) -> Result<PathBuf, TopicError> {
        let dir = self.root.join(name);
        if dir.exists() {
            // A deletion whose rename failed left it: never build over another topic's files.
            return Err(TopicError::Io {
                context: format!("creating topic {name}"),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} exists", dir.display()),
                ),
            });
        }
        let staging = self
            .root
            .join(format!("{}{CREATING_SUFFIX}", metadata.id.simple()));
        let built = (|| {
            let context = format!("creating {}", staging.display());
            std::fs::create_dir(&staging).map_err(io_error(context.clone()))?;
            for index in 0..metadata.partitions {
                std::fs::create_dir(staging.join(index.to_string()))
                    .map_err(io_error(context.clone()))?;
            }
            // Also syncs `staging`, making the partition directories' entries durable.
            write_atomically(&staging.join(TOPIC_FILE), &toml_string(metadata)?)?;
            std::fs::rename(&staging, &dir).map_err(io_error(format!(
                "renaming {} to {name}",
                staging.display()
            )))?;
            sync_dir(&self.root)
        })();
        if let Err(e) = built {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        Ok(dir)
    }

    /// Renames a topic directory to `<id>~delete` and syncs `topics/`: from then on it is no
    /// live topic's, whatever happens next.
    fn move_away(&self, dir: &Path, id: Uuid) -> Result<PathBuf, TopicError> {
        let trash = self.root.join(format!("{}{DELETING_SUFFIX}", id.simple()));
        std::fs::rename(dir, &trash).map_err(io_error(format!(
            "moving {} to {}",
            dir.display(),
            trash.display()
        )))?;
        sync_dir(&self.root)?;
        Ok(trash)
    }

    /// Deletes a topic: out of the registry, logs closed, directory renamed away (all while
    /// holding the name, so no new topic of that name is built meanwhile), then its files
    /// removed in the background.
    pub fn delete(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        let claim = self.busy.claim(name);
        let topic = self
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        // Appends in flight finish first; later ones find the partition closed.
        for partition in topic.partitions() {
            partition.detach();
        }
        // If this fails the topic stays on disk under its name: it is back after a restart
        // (the deletion was not acknowledged) and nothing is built over it meanwhile.
        let trash = self.move_away(&topic.dir, topic.id)?;
        drop(claim);
        remove_in_background(trash);
        tracing::info!(topic = %name, id = %topic.id, "deleted topic");
        Ok(topic)
    }

    /// Grows a topic to `count` partitions. The new logs are opened and `topic.toml` rewritten
    /// before they become visible, so nothing is appended to a partition a restart would not
    /// open.
    pub fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _claim = self.busy.claim(name);
        let topic = self
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let current = topic.partition_count();
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
        let added = (current..count)
            .map(|index| self.open_partition(name, &topic.dir, index, &config))
            .collect::<Result<Vec<_>, _>>()?;
        topic.persist_with(count)?;
        topic
            .partitions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(added);
        tracing::info!(topic = %name, from = current, to = count, "added partitions");
        Ok(())
    }

    /// Replaces a topic's config overrides and applies them to its open logs.
    pub fn set_config(&self, name: &str, config: TopicConfig) -> Result<(), TopicError> {
        let _claim = self.busy.claim(name);
        let topic = self
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        *topic.config.write().unwrap_or_else(|e| e.into_inner()) = config.clone();
        topic.persist_with(topic.partition_count())?;
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
        TopicRegistry::open(dir, LogDefaults::default()).unwrap()
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

    fn one_record() -> Vec<u8> {
        inlet_protocol::batch::TestBatchBuilder::default().build(&[(b"k", b"v")])
    }

    /// Directories directly under `topics/`.
    fn topic_dirs(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("topics"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn deletion_renames_the_directory_away_before_removing_it() {
        let dir = tempfile::tempdir().unwrap();
        let topics = registry(dir.path());
        let old = topics
            .create("t", 2, TopicConfig::default(), false)
            .unwrap()
            .unwrap();
        old.partition(0).unwrap().append(&one_record()).unwrap();
        topics.delete("t").unwrap();
        assert!(old.partition(0).unwrap().append(&one_record()).is_err());
        // Recreated at once: an empty topic with a new id, whatever the old files' removal does.
        let new = topics
            .create("t", 1, TopicConfig::default(), false)
            .unwrap()
            .unwrap();
        assert_ne!(new.id, old.id);
        assert_eq!(new.partition(0).unwrap().offsets().unwrap().log_end, 0);
        assert!(dir.path().join("topics/t/topic.toml").exists());
        assert!(!dir.path().join("topics/t/1").exists());
    }

    #[test]
    fn leftovers_of_interrupted_operations_are_finished_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let topics = registry(dir.path());
            topics
                .create("live", 1, TopicConfig::default(), false)
                .unwrap();
            topics.close_all();
        }
        let root = dir.path().join("topics");
        // A deletion renamed away but not removed, a creation not renamed into place: both hold a
        // complete topic.toml, and neither is a topic.
        let live = root.join("live");
        let deleted = root.join(format!("{}{DELETING_SUFFIX}", Uuid::new_v4().simple()));
        let creating = root.join(format!("{}{CREATING_SUFFIX}", Uuid::new_v4().simple()));
        for leftover in [&deleted, &creating] {
            std::fs::create_dir_all(leftover.join("0")).unwrap();
            std::fs::copy(live.join(TOPIC_FILE), leftover.join(TOPIC_FILE)).unwrap();
        }
        // An older broker's interrupted creation (empty) and a live topic that lost its
        // topic.toml to the old delete/create race (holding records).
        std::fs::create_dir_all(root.join("empty-legacy/0")).unwrap();
        std::fs::create_dir_all(root.join("lost-metadata/0")).unwrap();
        std::fs::write(
            root.join("lost-metadata/0/00000000000000000000.log"),
            one_record(),
        )
        .unwrap();
        let topics = registry(dir.path());
        assert_eq!(
            topics
                .list()
                .iter()
                .map(|t| t.name.clone())
                .collect::<Vec<_>>(),
            ["live"]
        );
        assert!(!creating.exists());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while deleted.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let left = topic_dirs(dir.path());
        assert_eq!(left.len(), 2, "{left:?}");
        assert_eq!(left[1], "live");
        assert!(left[0].ends_with(ORPHAN_SUFFIX), "{left:?}");
    }

    #[test]
    fn concurrent_delete_and_create_never_mix_two_topics() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let topics = Arc::new(registry(dir.path()));
        let stop = Arc::new(AtomicBool::new(false));
        let deleter = {
            let (topics, stop) = (topics.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = topics.delete("t");
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            })
        };
        // Acknowledged appends per topic incarnation.
        let mut acked: BTreeMap<Uuid, i64> = BTreeMap::new();
        for _ in 0..400 {
            let topic = match topics.create("t", 2, TopicConfig::default(), false) {
                Ok(Some(topic)) => topic,
                _ => match topics.get("t") {
                    Some(topic) => topic,
                    None => continue,
                },
            };
            if topic.partition(0).unwrap().append(&one_record()).is_ok() {
                *acked.entry(topic.id).or_default() += 1;
            }
            for name in topic_dirs(dir.path()) {
                if name.contains('~') {
                    continue;
                }
                // The deleter may rename the directory away between the listing and this check;
                // a directory that is still (or again) live must hold its topic.toml.
                let path = dir.path().join("topics").join(&name);
                let toml = path.join(TOPIC_FILE);
                assert!(
                    toml.exists() || !path.exists() || toml.exists(),
                    "live topic directory {name} without topic.toml"
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
        deleter.join().unwrap();
        let last = topics.get("t");
        topics.close_all();
        drop(topics);
        let reopened = registry(dir.path());
        match last {
            Some(last) => {
                let topic = reopened
                    .get("t")
                    .expect("the live topic survives a restart");
                assert_eq!(topic.id, last.id);
                let end = topic.partition(0).unwrap().offsets().unwrap().log_end;
                assert_eq!(end, acked.get(&last.id).copied().unwrap_or(0));
            }
            None => assert!(reopened.get("t").is_none()),
        }
    }

    #[test]
    fn added_partitions_are_persisted_before_they_are_visible() {
        let dir = tempfile::tempdir().unwrap();
        let topics = registry(dir.path());
        topics
            .create("t", 1, TopicConfig::default(), false)
            .unwrap();
        topics.add_partitions("t", 3, false).unwrap();
        let text = std::fs::read_to_string(dir.path().join("topics/t/topic.toml")).unwrap();
        assert!(text.contains("partitions = 3"), "{text}");
        assert_eq!(topics.get("t").unwrap().partition_count(), 3);
    }
}
