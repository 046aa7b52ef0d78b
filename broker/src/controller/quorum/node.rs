//! [`QuorumNode`]: starts openraft over the disk stores and the controller network, follows
//! leadership, and routes proposals, leader calls and status requests to the leader.
//!
//! Forwarding retries when the request most likely did not reach a leader (no connection, a
//! pooled connection found closed, or a "not the leader" answer); a timeout after sending is
//! reported as `Timeout`, because the command may still commit (the caller decides whether
//! retrying is safe). A leader that dies between applying and answering can therefore see a
//! forwarded command twice: commands should be safe to apply twice (Kafka's are checked
//! against the state they apply to).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::error::RaftError;
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::log_store::LogStore;
use super::network::{CallError, NetworkFactory, Peers};
use super::state_machine::StateMachineStore;
use super::wire::{self, FrameError, Refusal, Request, Response};
use super::{
    Command, LeaderHandler, Leadership, QuorumConfig, QuorumError, QuorumStatus, ReplicatedState,
    MAX_COMMAND_BYTES,
};

/// A running quorum member. Cheap to clone (an `Arc` inside); every clone is the same node.
#[derive(Clone)]
pub struct QuorumNode {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) id: i32,
    pub(crate) raft: Raft<super::TypeConfig>,
    pub(crate) peers: Arc<Peers>,
    pub(crate) voters: BTreeMap<i32, String>,
    pub(crate) handler: RwLock<Option<LeaderHandler>>,
    leadership: watch::Receiver<Leadership>,
    applied: watch::Receiver<u64>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stopped: AtomicBool,
}

/// Pause between attempts when no leader is reachable.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

impl QuorumNode {
    /// Opens/recovers the log, vote and snapshot from `dir`, binds the listener, starts Raft; on
    /// a fresh log every node initialises the same static voter membership.
    pub async fn start(
        config: QuorumConfig,
        state: Box<dyn ReplicatedState>,
    ) -> Result<QuorumNode, QuorumError> {
        let id = config.node_id;
        let observer = !config.voters.contains_key(&id);
        if id < 0 || (observer && (config.observer_address.is_none() || config.listen.is_none())) {
            return Err(QuorumError::Config(format!(
                "node {id} is not among the controller quorum voters (an observer needs a \
                 controller listener and the address the leader reaches it at)"
            )));
        }
        if config.voters.len() > 1 && config.listen.is_none() {
            return Err(QuorumError::Config(
                "a quorum of more than one needs a controller listener".into(),
            ));
        }
        if config.voters.keys().any(|v| *v < 0) {
            return Err(QuorumError::Config("voter ids must not be negative".into()));
        }
        let (emin, emax) = config.election_timeout_ms;
        let raft_config = Config {
            cluster_name: "inlet-controller".into(),
            election_timeout_min: emin,
            election_timeout_max: emax,
            heartbeat_interval: config.heartbeat_interval_ms,
            // A snapshot chunk may carry the whole install (restore + fsync): more time.
            install_snapshot_timeout: config.rpc_timeout_ms.saturating_mul(10),
            max_payload_entries: 64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: config.snapshot_every,
            // Snapshot chunks travel as JSON numbers (up to 4 bytes per byte): keep frames small.
            snapshot_max_chunk_size: 1 << 20,
            ..Default::default()
        }
        .validate()
        .map_err(|e| QuorumError::Config(e.to_string()))?;

        let log = LogStore::open(&config.dir).map_err(|e| QuorumError::Storage(e.to_string()))?;
        let sm = StateMachineStore::open(&config.dir, state)
            .map_err(|e| QuorumError::Storage(e.to_string()))?;
        let applied = sm.applied();
        let listener = match config.listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
            None => None,
        };
        let addrs = config
            .voters
            .iter()
            .filter(|(v, _)| **v != id)
            .map(|(v, a)| (*v as u64, a.clone()))
            .collect();
        let peers = Arc::new(Peers::new(
            id as u64,
            addrs,
            Duration::from_millis(config.rpc_timeout_ms),
        ));
        let raft = Raft::new(
            id as u64,
            Arc::new(raft_config),
            NetworkFactory {
                peers: peers.clone(),
            },
            log,
            sm,
        )
        .await
        .map_err(|e| QuorumError::Storage(e.to_string()))?;

        let members: BTreeMap<u64, BasicNode> = config
            .voters
            .iter()
            .map(|(v, a)| (*v as u64, BasicNode::new(a.clone())))
            .collect();
        if let Err(e) = initialize(&raft, id, members, observer).await {
            let _ = raft.shutdown().await;
            return Err(e);
        }

        let (lead_tx, leadership) = watch::channel(Leadership::default());
        let shared = Arc::new(Shared {
            id,
            raft: raft.clone(),
            peers: peers.clone(),
            voters: config.voters.clone(),
            handler: RwLock::new(None),
            leadership,
            applied,
            tasks: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
        });
        let mut tasks = vec![
            tokio::spawn(follow_metrics(id, raft, peers, lead_tx)),
            tokio::spawn(keep_space_reserve(config.dir.clone())),
        ];
        if let Some(listener) = listener {
            tracing::info!(node = id, addr = ?listener.local_addr().ok(), "controller listener bound");
            tasks.push(tokio::spawn(super::server::serve(listener, shared.clone())));
        }
        let node = QuorumNode { shared };
        if let (true, Some(address)) = (observer, config.observer_address) {
            tasks.push(tokio::spawn(node.clone().join_as_learner(address)));
        }
        if let Ok(mut t) = node.shared.tasks.lock() {
            t.extend(tasks);
        }
        Ok(node)
    }

    /// An observer asks the leader, until one agrees, to make it a learner at `address` (the
    /// leader answers at once when it already is one there, so a restart costs one round trip).
    async fn join_as_learner(self, address: String) {
        let id = self.shared.id;
        let request = Request::AddLearner {
            id: id as u64,
            address: address.clone(),
        };
        loop {
            let deadline = Instant::now() + Duration::from_secs(10);
            match self.route(request.clone(), deadline).await {
                Ok(Response::AddLearner(Ok(()))) => {
                    tracing::info!(node = id, %address, "joined the controller quorum as an observer");
                    return;
                }
                Err(QuorumError::Shutdown) => return,
                other => {
                    tracing::warn!(node = id, outcome = ?other.err(), "cannot join the controller quorum as an observer yet; retrying");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Replicates a command and waits until it is committed and applied locally; returns what
    /// `apply` returned.
    pub async fn propose(
        &self,
        command: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, QuorumError> {
        if command.len() > MAX_COMMAND_BYTES {
            return Err(QuorumError::TooLarge(command.len()));
        }
        let deadline = Instant::now() + timeout;
        let applied = self
            .route(Request::Propose(Command(command)), deadline)
            .await?;
        let Response::Propose(Ok(applied)) = applied else {
            return Err(QuorumError::Remote(
                "unexpected response to a proposal".into(),
            ));
        };
        // Forwarded: the leader applied it; wait for the local state machine to catch up.
        let mut rx = self.shared.applied.clone();
        let waited = tokio::time::timeout_at(deadline, rx.wait_for(|a| *a >= applied.index)).await;
        match waited {
            Ok(Ok(_)) => Ok(applied.reply),
            Ok(Err(_)) => Err(QuorumError::Shutdown),
            Err(_) => Err(QuorumError::Timeout),
        }
    }

    /// A request for the active controller's handler, not logged.
    pub async fn leader_call(
        &self,
        request: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, QuorumError> {
        if request.len() > MAX_COMMAND_BYTES {
            return Err(QuorumError::TooLarge(request.len()));
        }
        match self
            .route(
                Request::LeaderCall(Command(request)),
                Instant::now() + timeout,
            )
            .await?
        {
            Response::LeaderCall(Ok(reply)) => Ok(reply.0),
            _ => Err(QuorumError::Remote(
                "unexpected response to a leader call".into(),
            )),
        }
    }

    pub fn set_leader_handler(&self, handler: LeaderHandler) {
        if let Ok(mut h) = self.shared.handler.write() {
            *h = Some(handler);
        }
    }

    /// The current leader (None while electing).
    pub fn leader(&self) -> Option<i32> {
        self.shared.leadership.borrow().leader
    }

    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.shared.leadership.clone()
    }

    /// The last applied index (0 before anything; index 0 is the initial membership entry).
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.shared.applied.clone()
    }

    /// DescribeQuorum's view from the leader (asked over the network on a follower).
    pub async fn status(&self, timeout: Duration) -> Result<QuorumStatus, QuorumError> {
        match self
            .route(Request::Status, Instant::now() + timeout)
            .await?
        {
            Response::Status(Ok(s)) => Ok(s),
            _ => Err(QuorumError::Remote(
                "unexpected response to a status request".into(),
            )),
        }
    }

    /// Stops Raft, the listener and every connection of this node.
    pub async fn shutdown(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        let tasks = self
            .shared
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for t in tasks {
            t.abort();
        }
        let _ = self.shared.raft.shutdown().await;
        tracing::info!(node = self.shared.id, "controller quorum node stopped");
    }

    /// Sends `req` to the leader (handled in place when this node leads) until `deadline`.
    async fn route(&self, req: Request, deadline: Instant) -> Result<Response, QuorumError> {
        let shared = &self.shared;
        if shared.stopped.load(Ordering::SeqCst) {
            return Err(QuorumError::Shutdown);
        }
        let frame = wire::encode(&req).map_err(|e| QuorumError::Remote(e.to_string()))?;
        let mut hint: Option<i32> = None;
        let mut leadership = shared.leadership.clone();
        // An observer learns of leaders only once one replicates to it: until then it asks the
        // voters in turn, and their refusals name the leader.
        let mut guesses = shared
            .voters
            .keys()
            .copied()
            .filter(|_| !shared.voters.contains_key(&shared.id))
            .cycle();
        loop {
            let target = hint
                .take()
                .or(leadership.borrow_and_update().leader)
                .or_else(|| guesses.next());
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(match shared.leadership.borrow().leader {
                    Some(l) if l != shared.id => QuorumError::NotLeader(l),
                    Some(_) => QuorumError::Timeout,
                    None => QuorumError::NoLeader,
                });
            }
            let resp = match target {
                None => {
                    // Wait for an election to finish.
                    let _ =
                        tokio::time::timeout(remaining.min(RETRY_PAUSE * 4), leadership.changed())
                            .await;
                    continue;
                }
                Some(l) if l == shared.id => {
                    match tokio::time::timeout(remaining, shared.handle(req.clone())).await {
                        Ok(r) => r,
                        Err(_) => return Err(QuorumError::Timeout),
                    }
                }
                Some(l) => match shared.peers.call(l as u64, &frame, remaining).await {
                    Ok(r) => r,
                    Err(CallError::Timeout(_)) => return Err(QuorumError::Timeout),
                    Err(
                        e @ (CallError::Connect { .. }
                        | CallError::UnknownPeer(_)
                        | CallError::Closed
                        | CallError::Frame(FrameError::Io(_))),
                    ) => {
                        // Most likely not delivered: no connection, or a pooled one the peer had
                        // dropped (restarted). A peer dying mid-request could see it twice.
                        tracing::debug!(node = shared.id, leader = l, error = %e, "leader unreachable; retrying");
                        let _ =
                            tokio::time::timeout(remaining.min(RETRY_PAUSE), leadership.changed())
                                .await;
                        continue;
                    }
                    Err(e) => return Err(QuorumError::Remote(e.to_string())),
                },
            };
            match refusal(&resp) {
                None => return Ok(resp),
                Some(Refusal::NotLeader(h)) => {
                    hint = h.filter(|h| Some(*h) != target);
                    if hint.is_none() {
                        let _ =
                            tokio::time::timeout(remaining.min(RETRY_PAUSE), leadership.changed())
                                .await;
                    }
                }
                Some(Refusal::NoHandler) => {
                    return Err(QuorumError::Remote("the leader has no handler set".into()))
                }
                Some(Refusal::Failed(why)) if why == super::server::SHUTDOWN => {
                    return Err(QuorumError::Shutdown)
                }
                Some(Refusal::Failed(why)) => return Err(QuorumError::Remote(why.clone())),
            }
        }
    }
}

fn refusal(resp: &Response) -> Option<&Refusal> {
    match resp {
        Response::Propose(Err(r))
        | Response::LeaderCall(Err(r))
        | Response::Status(Err(r))
        | Response::AddLearner(Err(r)) => Some(r),
        _ => None,
    }
}

/// Writes the static voter membership on a fresh log (every voter does, identically; an
/// observer waits for the leader to send it the log).
async fn initialize(
    raft: &Raft<super::TypeConfig>,
    id: i32,
    members: BTreeMap<u64, BasicNode>,
    observer: bool,
) -> Result<(), QuorumError> {
    if raft
        .is_initialized()
        .await
        .map_err(|_| QuorumError::Shutdown)?
    {
        // The voters are static: a log written by another set (a changed --node-id or
        // --controller-quorum-voters on this data directory) could never elect a leader here.
        let logged: Vec<u64> = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        let configured: Vec<u64> = members.keys().copied().collect();
        if logged != configured {
            return Err(QuorumError::Config(format!(
                "this metadata log belongs to a quorum of voters {logged:?}, but node {id} is \
                 configured with voters {configured:?}; changing the voters of a cluster is not \
                 supported: start with the same --node-id and --controller-quorum-voters, or \
                 on an empty data directory"
            )));
        }
        return Ok(());
    }
    if observer {
        return Ok(());
    }
    match raft.initialize(members).await {
        Ok(()) => {
            tracing::info!(
                node = id,
                "initialised the controller quorum's voter membership"
            );
            Ok(())
        }
        // Already initialised (a log written meanwhile): expected.
        Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(QuorumError::Storage(format!("initialise: {e}"))),
    }
}

/// Publishes leadership changes (and logs them), and keeps the leader's last log index for the
/// follower "caught up" timestamps.
async fn follow_metrics(
    id: i32,
    raft: Raft<super::TypeConfig>,
    peers: Arc<Peers>,
    tx: watch::Sender<Leadership>,
) {
    let mut metrics = raft.metrics();
    loop {
        let (lead, last) = {
            let m = metrics.borrow_and_update();
            (
                Leadership {
                    leader: m.current_leader.map(|l| l as i32),
                    term: m.current_term,
                },
                m.last_log_index,
            )
        };
        peers
            .last_log_index
            .store(last.unwrap_or(0), Ordering::Relaxed);
        let old = *tx.borrow();
        if old != lead {
            if lead.leader != old.leader {
                if lead.leader == Some(id) {
                    peers.reset_times();
                    tracing::info!(node = id, term = lead.term, leader = id, "became leader");
                } else if let Some(l) = lead.leader {
                    tracing::info!(node = id, term = lead.term, leader = l, "new leader");
                } else {
                    tracing::info!(node = id, term = lead.term, "no leader; election under way");
                }
            }
            tx.send_replace(lead);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Puts the metadata log's space reserve back whenever the disk has room for it (see
/// `reserve`): at start, then every 30 s.
async fn keep_space_reserve(dir: std::path::PathBuf) {
    loop {
        let path = dir.clone();
        match tokio::task::spawn_blocking(move || super::reserve::restore(&path)).await {
            Ok(Ok(true)) => {
                tracing::info!(dir = %dir.display(), "allocated the metadata log's space reserve")
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "cannot allocate the metadata log's space reserve")
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}
