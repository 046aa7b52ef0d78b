//! The state every connection shares: configuration, identity, topics and producer ids, plus the
//! signal that wakes long-polling fetches when anything is appended.

use std::sync::Arc;

use kafka_protocol::ResponseError;

use crate::cluster::load_or_create_cluster_id;
use crate::cluster::partition::{Partition, PartitionError};
use crate::cluster::producer_ids::ProducerIdBlocks;
use crate::cluster::topics::{validate_topic_name, TopicError, TopicRegistry};
use crate::config::{BrokerConfig, ConfigError};
use crate::controller::commands::{CommandOutcome, ControllerCommand};
use crate::controller::Controller;
use crate::group::GroupCoordinator;
use crate::lake::Lake;
use crate::replica::ReplicaManager;
use crate::txn::TransactionCoordinator;

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
    #[error("cannot open the lake: {0}")]
    Lake(#[from] inlet_storage::tier::TierError),
    #[error(transparent)]
    Controller(#[from] crate::controller::ControllerError),
    #[error(transparent)]
    Migration(#[from] crate::replica::MigrationError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Free space below which no topic or partition is added (`check_room_for_new_logs`).
const MIN_FREE_FOR_NEW_LOGS: u64 = 1 << 20;

pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub topics: TopicRegistry,
    pub producer_ids: ProducerIdBlocks,
    /// This node's controller: the metadata image and the way to change it.
    pub controller: Arc<Controller>,
    /// The only code that creates or deletes local topics, from the image.
    pub replicas: ReplicaManager,
    /// The consumer groups of the `__consumer_offsets` partitions this broker leads, with their
    /// committed offsets (loaded and unloaded by the replica manager's image applications).
    pub groups: Arc<GroupCoordinator>,
    /// The transactional ids of the `__transaction_state` partitions this broker leads
    /// (followed by `txn::driver::run`).
    pub txns: Arc<TransactionCoordinator>,
    /// The object-store tier, unless `lake.enable` is off.
    pub lake: Option<Lake>,
    /// Produce and fetch byte rates per client, against the image's client quotas.
    pub quotas: crate::quota::QuotaManager,
}

impl Broker {
    /// Opens (recovering) everything under the data directory. Blocking: call it off the runtime.
    pub fn open(config: BrokerConfig, controller: Arc<Controller>) -> Result<Broker, BrokerError> {
        let (advertised_host, advertised_port) = config.advertised_host_port()?;
        let data_dir = config.data_dir.clone();
        let data_dir_error = |source| BrokerError::DataDir {
            path: data_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&data_dir).map_err(data_dir_error)?;
        let cluster_id = load_or_create_cluster_id(&data_dir).map_err(data_dir_error)?;
        let topics = TopicRegistry::open(&data_dir, config.log.clone())?;
        // Groups are loaded from the offsets partitions this broker leads once the image is
        // applied (before anything is served: see `server::run`).
        let groups = Arc::new(GroupCoordinator::new(config.group_config()));
        let txns = Arc::new(TransactionCoordinator::new(config.txn_config()));
        let lake = Lake::open(&config)?;
        let node_id = config.node_id;
        let quotas = crate::quota::QuotaManager::new(
            config.quota_window_num,
            config.quota_window_size_seconds.saturating_mul(1000),
        );
        let broker = Broker {
            lake,
            quotas,
            config,
            cluster_id,
            advertised_host,
            advertised_port,
            topics,
            producer_ids: ProducerIdBlocks::default(),
            controller,
            replicas: ReplicaManager::new(node_id),
            groups,
            txns,
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

    /// Makes sure the cluster has topic `name`, creating it with the broker defaults (through the
    /// controller) when it is missing and auto-creation is on, as Kafka's Metadata and Produce
    /// do. On success the topic is in this broker's image and applied locally.
    pub async fn ensure_topic(&self, name: &str) -> Result<(), ResponseError> {
        if self.controller.image().topic(name).is_some() {
            return Ok(());
        }
        if !self.config.auto_create_topics_enable {
            return Err(ResponseError::UnknownTopicOrPartition);
        }
        validate_topic_name(name).map_err(|_| ResponseError::InvalidTopicException)?;
        self.check_room_for_new_logs().map_err(|(code, _)| code)?;
        let command = ControllerCommand::CreateTopic {
            name: name.to_string(),
            topic_id: uuid::Uuid::new_v4(),
            partitions: self.config.num_partitions,
            replication_factor: self.config.default_replication_factor,
            assignments: None,
            configs: Default::default(),
            validate_only: false,
        };
        match self.propose(&command).await {
            Ok(_) => Ok(()),
            // Another client's request created it first.
            Err((ResponseError::TopicAlreadyExists, _)) => Ok(()),
            Err((code, message)) => {
                tracing::info!(topic = %name, %message, "auto-creation refused");
                Err(code)
            }
        }
    }

    /// Refuses to add topics or partitions when the data disk is (nearly) full: they could not
    /// be created here, and the metadata log must keep its last space for what keeps the node in
    /// its cluster (see `controller::quorum::reserve`).
    pub fn check_room_for_new_logs(&self) -> Result<(), (ResponseError, String)> {
        match inlet_storage::tier::disk_space(&self.config.data_dir) {
            Ok(space) if space.available < MIN_FREE_FOR_NEW_LOGS => Err((
                ResponseError::KafkaStorageError,
                format!(
                    "the data disk has {} bytes free, below the {MIN_FREE_FOR_NEW_LOGS} new logs need",
                    space.available
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Proposes a metadata change to the controller and, once this broker has applied it,
    /// applies the new image to the local topics, so that the caller's next step sees it.
    /// Errors carry the Kafka code and a message for the client.
    pub async fn propose(
        &self,
        command: &ControllerCommand,
    ) -> Result<CommandOutcome, (ResponseError, String)> {
        let outcome = self.controller.submit(command).await?;
        self.replicas.apply(self, &self.controller.image());
        Ok(outcome)
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
