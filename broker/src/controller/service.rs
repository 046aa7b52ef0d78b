//! The controller as the rest of the broker sees it: starts this node's quorum member on the
//! metadata log in `<data_dir>/__cluster_metadata-0`, proposes commands (forwarded to the active
//! controller when this node is not it), and runs the two background duties of a KRaft node:
//! the broker's own lifecycle (register, heartbeat: [`lifecycle`](super::lifecycle)) and, while
//! this node is the active controller, fencing brokers whose heartbeats stop
//! ([`active`](super::active)).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::watch;
use uuid::Uuid;

use super::commands::{CommandOutcome, ControllerCommand};
use super::liveness::Liveness;
use super::machine::MetadataMachine;
use super::quorum::{QuorumConfig, QuorumError, QuorumNode, QuorumStatus};
use crate::config::{BrokerConfig, ConfigError};
use crate::metadata::image::{Endpoint, MetadataImage};
use crate::metadata::view::MetadataView;

/// How long a proposal may take, leader changes included, before the request that made it
/// gets REQUEST_TIMED_OUT. Kafka's default `request.timeout.ms` for forwarded requests is 30 s;
/// an election takes a few seconds at most.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a stopping broker tries to fence itself.
const SHUTDOWN_FENCE_TIMEOUT: Duration = Duration::from_secs(2);

/// The name of the metadata log's directory, as Kafka names it.
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Quorum(#[from] QuorumError),
    #[error("controller answered with an unreadable outcome: {0}")]
    Outcome(String),
}

impl ControllerError {
    /// The Kafka error a client gets when its request could not reach a decision.
    pub fn code(&self) -> ResponseError {
        match self {
            ControllerError::Quorum(QuorumError::Timeout) => ResponseError::RequestTimedOut,
            ControllerError::Quorum(_) => ResponseError::NotController,
            _ => ResponseError::UnknownServerError,
        }
    }
}

/// What this broker registers with: how clients reach it.
#[derive(Clone, Debug)]
pub struct BrokerIdentity {
    pub node_id: i32,
    pub incarnation_id: Uuid,
    pub listeners: Vec<Endpoint>,
    pub rack: Option<String>,
}

pub struct Controller {
    pub(super) node_id: i32,
    pub(super) quorum: QuorumNode,
    pub(super) view: Arc<MetadataView>,
    /// Heartbeat times, kept (and meaningful) only while this node is the active controller.
    pub(super) liveness: Mutex<Liveness>,
    pub(super) identity: BrokerIdentity,
    pub(super) heartbeat_interval: Duration,
    /// Preferred-leader rebalancing: how often, and above which imbalance (None: off).
    pub(super) rebalance: Option<(Duration, u32)>,
    /// The cluster id this node proposes if it is the first active controller of a new cluster.
    pub(super) proposed_cluster_id: String,
    voters: BTreeMap<i32, String>,
    stop: watch::Sender<bool>,
}

impl Controller {
    /// Opens the metadata log and joins the quorum, then starts the background duties.
    pub async fn start(
        config: &BrokerConfig,
        identity: BrokerIdentity,
        proposed_cluster_id: String,
    ) -> Result<Arc<Controller>, ControllerError> {
        let voters = config.quorum_voters()?;
        let quorum_voters = voters.clone();
        let observer = !config.is_controller()?;
        let listen = if voters.len() > 1 || observer {
            config.controller_listen
        } else {
            None
        };
        let view = Arc::new(MetadataView::default());
        let quorum = QuorumNode::start(
            QuorumConfig {
                node_id: config.node_id,
                voters: quorum_voters,
                listen,
                observer_address: observer.then(|| config.controller_address()).flatten(),
                dir: config.data_dir.join(METADATA_LOG_DIR),
                // openraft's followers wait out a leader lease (the maximum) plus a random
                // election timeout: 1.5 to 2 s without a leader before a new one is elected.
                // Heartbeats (fsync included) stay well below the 500 ms minimum.
                election_timeout_ms: (500, 1000),
                heartbeat_interval_ms: 200,
                snapshot_every: 1000,
                rpc_timeout_ms: 2000,
            },
            Box::new(MetadataMachine::new(view.clone())),
        )
        .await?;
        let controller = Arc::new(Controller {
            node_id: config.node_id,
            quorum,
            view,
            liveness: Mutex::new(Liveness::new(config.broker_session_timeout_ms)),
            identity,
            heartbeat_interval: Duration::from_millis(config.broker_heartbeat_interval_ms),
            rebalance: config.auto_leader_rebalance_enable.then(|| {
                (
                    Duration::from_secs(config.leader_imbalance_check_interval_seconds),
                    config.leader_imbalance_per_broker_percentage,
                )
            }),
            proposed_cluster_id,
            voters,
            stop: watch::channel(false).0,
        });
        super::active::install(&controller);
        tokio::spawn(super::active::run(
            Arc::downgrade(&controller),
            controller.stop.subscribe(),
        ));
        Ok(controller)
    }

    /// Starts registering this broker and heartbeating: once its logs are open and it can serve.
    pub fn start_lifecycle(self: &Arc<Self>) {
        tokio::spawn(super::lifecycle::run(
            Arc::downgrade(self),
            self.stop.subscribe(),
        ));
    }

    /// The voters by node id with their controller addresses.
    pub fn voters(&self) -> &BTreeMap<i32, String> {
        &self.voters
    }

    /// Replicates a command and returns its outcome once this node has applied it.
    pub async fn propose(
        &self,
        command: &ControllerCommand,
    ) -> Result<CommandOutcome, ControllerError> {
        let bytes =
            serde_json::to_vec(command).map_err(|e| ControllerError::Outcome(e.to_string()))?;
        let answer = self.quorum.propose(bytes, PROPOSE_TIMEOUT).await?;
        serde_json::from_slice(&answer).map_err(|e| ControllerError::Outcome(e.to_string()))
    }

    /// [`propose`](Self::propose) for a request's answer: a refused command (an error outcome)
    /// is an error too, with the Kafka code and message the client is told.
    pub async fn submit(
        &self,
        command: &ControllerCommand,
    ) -> Result<CommandOutcome, (ResponseError, String)> {
        match self.propose(command).await {
            Ok(CommandOutcome::Error { code, message }) => Err((
                ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError),
                message,
            )),
            Ok(outcome) => Ok(outcome),
            Err(error) => Err((error.code(), error.to_string())),
        }
    }

    /// The latest metadata image this node has applied.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.view.current()
    }

    pub fn view(&self) -> &Arc<MetadataView> {
        &self.view
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The active controller's id, if there is one now.
    pub fn leader(&self) -> Option<i32> {
        self.quorum.leader()
    }

    /// The quorum as its leader sees it (DescribeQuorum).
    pub async fn status(&self) -> Result<QuorumStatus, ControllerError> {
        Ok(self.quorum.status(Duration::from_secs(5)).await?)
    }

    /// Waits until the cluster has an id and this broker's registration (this incarnation) is
    /// unfenced: the moment Kafka's broker starts serving. Returns the cluster id.
    pub async fn wait_until_serving(&self) -> String {
        let incarnation = self.identity.incarnation_id;
        let node_id = self.node_id;
        loop {
            let ready = self
                .view
                .wait_for(Duration::from_secs(5), |image| {
                    image.cluster_id.is_some()
                        && image
                            .brokers
                            .get(&node_id)
                            .is_some_and(|b| b.incarnation_id == incarnation && !b.fenced)
                })
                .await;
            if let Some(image) = ready {
                return image.cluster_id.clone().unwrap_or_default();
            }
            tracing::info!(
                node_id,
                leader = ?self.quorum.leader(),
                "waiting for the controller quorum to register this broker"
            );
        }
    }

    /// Stops the background duties, fences this broker (a controlled shutdown) and leaves the
    /// quorum.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        self.fence_self().await;
        self.quorum.shutdown().await;
    }

    /// Kafka's controlled shutdown, reduced to its effect: this broker is fenced before it goes,
    /// so its partitions get other leaders now rather than a session timeout later. Bounded:
    /// without a quorum (the last node of a cluster going down) it gives up after a moment.
    async fn fence_self(&self) {
        let image = self.image();
        let Some(me) = image
            .brokers
            .get(&self.node_id)
            .filter(|b| b.incarnation_id == self.identity.incarnation_id && !b.fenced)
        else {
            return;
        };
        let command = ControllerCommand::FenceBroker {
            id: self.node_id,
            epoch: me.epoch,
        };
        let Ok(bytes) = serde_json::to_vec(&command) else {
            return;
        };
        match self.quorum.propose(bytes, SHUTDOWN_FENCE_TIMEOUT).await {
            Ok(_) => tracing::info!(node_id = self.node_id, "fenced this broker for shutdown"),
            Err(error) => tracing::info!(%error, "shutting down without fencing this broker first"),
        }
    }
}
