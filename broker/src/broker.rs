//! The state every connection shares: configuration, identity, topics and producer ids, plus the
//! signal that wakes long-polling fetches when anything is appended.

use std::sync::Arc;

use tokio::sync::watch;

use crate::cluster::load_or_create_cluster_id;
use crate::cluster::partition::{Partition, PartitionError};
use crate::cluster::producer_ids::ProducerIdAllocator;
use crate::cluster::topic_config::TopicConfig;
use crate::cluster::topics::{validate_topic_name, Topic, TopicError, TopicRegistry};
use crate::config::{BrokerConfig, ConfigError};
use crate::group::store::LoadError;
use crate::group::GroupCoordinator;
use crate::lake::Lake;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open topics: {0}")]
    Topics(#[from] TopicError),
    #[error("cannot load consumer groups: {0}")]
    Groups(#[from] LoadError),
    #[error("cannot open the lake: {0}")]
    Lake(#[from] inlet_storage::tier::TierError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub topics: TopicRegistry,
    pub producer_ids: ProducerIdAllocator,
    /// Consumer groups and their committed offsets (`__consumer_offsets`).
    pub groups: GroupCoordinator,
    /// The object-store tier, unless `lake.enable` is off.
    pub lake: Option<Lake>,
    appended: Arc<watch::Sender<u64>>,
}

impl Broker {
    /// Opens (recovering) everything under the data directory. Blocking: call it off the runtime.
    pub fn open(config: BrokerConfig) -> Result<Broker, BrokerError> {
        let (advertised_host, advertised_port) = config.advertised_host_port()?;
        let data_dir = config.data_dir.clone();
        let data_dir_error = |source| BrokerError::DataDir {
            path: data_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&data_dir).map_err(data_dir_error)?;
        let cluster_id = load_or_create_cluster_id(&data_dir).map_err(data_dir_error)?;
        let producer_ids = ProducerIdAllocator::open(&data_dir).map_err(data_dir_error)?;
        let appended = Arc::new(watch::channel(0u64).0);
        let topics = TopicRegistry::open(&data_dir, config.log.clone(), appended.clone())?;
        // Groups are rebuilt from the offsets topic before anything is served.
        let groups = GroupCoordinator::open(&topics, config.group_config())?;
        let lake = Lake::open(&config)?;
        let broker = Broker {
            lake,
            config,
            cluster_id,
            advertised_host,
            advertised_port,
            topics,
            producer_ids,
            groups,
            appended,
        };
        if broker.lake.is_none() {
            // With the lake off, offsets only the lake holds cannot be served: clients must be
            // told the local log start, not the lake's.
            broker.for_each_partition("forgetting the lake", Partition::forget_lake);
        }
        Ok(broker)
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// A receiver that changes whenever any partition gets new data.
    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// The topic, created with broker defaults if it is missing and auto-creation is on.
    pub fn topic_or_auto_create(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        if let Some(topic) = self.topics.get(name) {
            return Ok(topic);
        }
        if !self.config.auto_create_topics_enable {
            return Err(TopicError::Unknown(name.to_string()));
        }
        validate_topic_name(name)?;
        let created = blocking(|| {
            self.topics.create(
                name,
                self.config.num_partitions,
                TopicConfig::default(),
                false,
            )
        });
        match created {
            Ok(Some(topic)) => Ok(topic),
            // Another connection created it between our lookup and our create.
            Ok(None) | Err(TopicError::AlreadyExists(_)) => self
                .topics
                .get(name)
                .ok_or_else(|| TopicError::Unknown(name.to_string())),
            Err(e) => Err(e),
        }
    }

    /// Flushes partitions whose flush policy says so.
    pub fn flush_due(&self, now_ms: i64) {
        self.for_each_partition("flush", |p| p.maybe_flush(now_ms));
    }

    /// Runs `work` on every partition, logging (not propagating) failures: one bad partition
    /// must not stop maintenance of the others.
    fn for_each_partition(
        &self,
        what: &str,
        work: impl Fn(&Partition) -> Result<(), PartitionError>,
    ) {
        for topic in self.topics.list() {
            for partition in topic.partitions() {
                if let Err(error) = work(&partition) {
                    tracing::error!(topic = %topic.name, partition = partition.index, %error, "{what} failed");
                }
            }
        }
    }

    /// Lets idle mapped data stop counting as resident memory.
    pub fn release_idle_pages(&self, _now_ms: i64) {
        self.for_each_partition("releasing idle pages", Partition::release_idle_pages);
    }

    /// Deletes segments past retention.
    pub fn apply_retention(&self, now_ms: i64) {
        self.for_each_partition("retention", |p| p.apply_retention(now_ms));
    }

    /// Compacts partitions of topics with `cleanup.policy=compact` (`__consumer_offsets` too).
    pub fn apply_compaction(&self, now_ms: i64) {
        self.for_each_partition("compaction", |p| p.compact(now_ms).map(|_| ()));
    }

    /// Forgets producer ids idle for `producer.id.expiration.ms` (KIP-854) in every partition.
    pub fn expire_producers(&self, now_ms: i64) {
        // Kafka's lower bound is 1 ms; 0 would forget every producer at each check.
        let expiration_ms =
            i64::try_from(self.config.producer_id_expiration_ms.max(1)).unwrap_or(i64::MAX);
        let expired = std::sync::atomic::AtomicUsize::new(0);
        self.for_each_partition("expiring producer ids", |p| {
            let n = p.expire_producers(now_ms, expiration_ms)?;
            expired.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        });
        let expired = expired.into_inner();
        if expired > 0 {
            tracing::info!(expired, expiration_ms, "expired idle producer ids");
        }
    }

    /// Flushes and closes every log.
    pub fn close(&self) {
        self.topics.close_all();
    }
}

/// Runs file work (creating or deleting topics) from a request handler. Handlers run on the
/// async runtime's workers; on a multi-threaded runtime this hands the worker's other tasks to
/// another thread first, so connections that happened to be queued on this worker (Metadata,
/// Produce from other clients) are not stuck behind the disk. Elsewhere (tests) it just runs.
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
