//! The client side of the controller network: a bounded pool of connections per peer, every call
//! bounded by a timeout (a failed or timed-out connection is dropped, the next call reconnects),
//! and openraft's `RaftNetwork` on top of it. The leader also records here when each follower last
//! answered an AppendEntries and when it was last caught up (for DescribeQuorum). Voters'
//! addresses come from the configuration; learners' from the membership openraft hands to
//! [`NetworkFactory::new_client`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode};
use tokio::net::TcpStream;

use super::now_ms;
use super::wire::{self, FrameError, Request, Response};
use super::TypeConfig;

/// Idle connections kept per peer.
const POOL_PER_PEER: usize = 4;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("peer {0} unknown")]
    UnknownPeer(u64),
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("connection closed by the peer")]
    Closed,
}

/// Connections to the other members, shared by everything that talks to them.
pub(crate) struct Peers {
    pub(crate) self_id: u64,
    addrs: Mutex<BTreeMap<u64, String>>,
    /// The voters, whose configured addresses win over the membership's.
    configured: std::collections::BTreeSet<u64>,
    pub(crate) rpc_timeout: Duration,
    idle: Mutex<HashMap<u64, Vec<TcpStream>>>,
    /// Per follower: (last successful AppendEntries, last caught up), ms since the epoch.
    times: Mutex<BTreeMap<u64, (i64, i64)>>,
    /// The leader's last log index, kept by the node's metrics task.
    pub(crate) last_log_index: AtomicU64,
}

impl Peers {
    pub(crate) fn new(self_id: u64, addrs: BTreeMap<u64, String>, rpc_timeout: Duration) -> Peers {
        Peers {
            self_id,
            configured: addrs.keys().copied().collect(),
            addrs: Mutex::new(addrs),
            rpc_timeout,
            idle: Mutex::new(HashMap::new()),
            times: Mutex::new(BTreeMap::new()),
            last_log_index: AtomicU64::new(0),
        }
    }

    /// Sends one request and waits for its response, within `timeout`.
    pub(crate) async fn call(
        &self,
        target: u64,
        frame: &[u8],
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let addr = self
            .addrs
            .lock()
            .ok()
            .and_then(|a| a.get(&target).cloned())
            .ok_or(CallError::UnknownPeer(target))?;
        let pooled = self
            .idle
            .lock()
            .ok()
            .and_then(|mut m| m.get_mut(&target).and_then(Vec::pop));
        let exchange = async {
            let mut conn = match pooled {
                Some(c) => c,
                None => {
                    let c = TcpStream::connect(addr.as_str()).await.map_err(|source| {
                        CallError::Connect {
                            addr: addr.clone(),
                            source,
                        }
                    })?;
                    let _ = c.set_nodelay(true);
                    c
                }
            };
            wire::write_frame(&mut conn, frame).await?;
            let resp: Response = wire::read_frame(&mut conn)
                .await?
                .ok_or(CallError::Closed)?;
            Ok::<_, CallError>((conn, resp))
        };
        let (conn, resp) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| CallError::Timeout(timeout))??;
        if let Ok(mut m) = self.idle.lock() {
            let pool = m.entry(target).or_default();
            if pool.len() < POOL_PER_PEER {
                pool.push(conn);
            }
        }
        Ok(resp)
    }

    /// Records where a member (a learner, as the membership gives it) is reached; a changed
    /// address drops the connections pooled to the old one.
    pub(crate) fn learn_address(&self, id: u64, addr: &str) {
        if id == self.self_id || addr.is_empty() || self.configured.contains(&id) {
            return;
        }
        let changed = match self.addrs.lock() {
            Ok(mut a) => a
                .insert(id, addr.to_string())
                .is_some_and(|old| old != addr),
            Err(_) => false,
        };
        if changed {
            if let Ok(mut m) = self.idle.lock() {
                m.remove(&id);
            }
        }
    }

    /// (last fetch, last caught up) of a follower as this leader saw them; -1 when unknown.
    pub(crate) fn times(&self, id: u64) -> (i64, i64) {
        self.times
            .lock()
            .ok()
            .and_then(|m| m.get(&id).copied())
            .unwrap_or((-1, -1))
    }

    /// Forgets the follower timestamps (a new leadership starts from unknown).
    pub(crate) fn reset_times(&self) {
        if let Ok(mut m) = self.times.lock() {
            m.clear();
        }
    }

    fn record_fetch(&self, id: u64, reached: u64) {
        let now = now_ms();
        let caught_up = reached >= self.last_log_index.load(Ordering::Relaxed);
        if let Ok(mut m) = self.times.lock() {
            let t = m.entry(id).or_insert((-1, -1));
            t.0 = now;
            if caught_up {
                t.1 = now;
            }
        }
    }
}

/// openraft's network factory: one client per replication stream or vote.
pub(crate) struct NetworkFactory {
    pub(crate) peers: Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        self.peers.learn_address(target, &node.addr);
        PeerClient {
            target,
            peers: self.peers.clone(),
        }
    }
}

pub(crate) struct PeerClient {
    target: u64,
    peers: Arc<Peers>,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<u64, BasicNode, RaftError<u64, E>>;

impl PeerClient {
    async fn rpc<E: std::error::Error>(
        &self,
        action: RPCTypes,
        req: &Request,
        option: &RPCOption,
    ) -> Result<Response, RpcErr<E>> {
        let frame = match wire::encode(req) {
            Ok(f) => f,
            Err(FrameError::TooLarge(_)) => {
                let n = match req {
                    Request::AppendEntries(r) => r.entries.len() as u64,
                    _ => 1,
                };
                return Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint((n / 2).max(1)),
                ));
            }
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        // openraft bounds AppendEntries by the heartbeat interval and votes by the minimum
        // election timeout itself; a snapshot chunk gets its own (longer) install timeout.
        let timeout = match action {
            RPCTypes::InstallSnapshot => option.hard_ttl(),
            _ => self.peers.rpc_timeout.min(option.hard_ttl()),
        };
        match self.peers.call(self.target, &frame, timeout).await {
            Ok(resp) => Ok(resp),
            Err(CallError::Timeout(t)) => Err(RPCError::Timeout(Timeout {
                action,
                id: self.peers.self_id,
                target: self.target,
                timeout: t,
            })),
            // A connection the peer (or something between) closes at once counts as
            // unreachable too: openraft backs off from an unreachable peer but retries a
            // network error at once, which made a partitioned voter cost hundreds of
            // reconnects a second.
            Err(
                e @ (CallError::Connect { .. } | CallError::UnknownPeer(_) | CallError::Closed),
            ) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    fn unexpected<E: std::error::Error>(&self, resp: Response) -> RpcErr<E> {
        let why = match resp {
            Response::Rejected(why) => why,
            other => format!("unexpected response {other:?}"),
        };
        RPCError::Network(NetworkError::new(&AnyError::error(why)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcErr> {
        let reached = rpc
            .entries
            .last()
            .map(|e| e.log_id.index)
            .or(rpc.prev_log_id.map(|l| l.index))
            .unwrap_or(0);
        match self
            .rpc(
                RPCTypes::AppendEntries,
                &Request::AppendEntries(rpc),
                &option,
            )
            .await?
        {
            Response::AppendEntries(Ok(r)) => {
                if matches!(r, AppendEntriesResponse::Success) {
                    self.peers.record_fetch(self.target, reached);
                }
                Ok(r)
            }
            Response::AppendEntries(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RpcErr<InstallSnapshotError>> {
        match self
            .rpc(
                RPCTypes::InstallSnapshot,
                &Request::InstallSnapshot(rpc),
                &option,
            )
            .await?
        {
            Response::InstallSnapshot(Ok(r)) => Ok(r),
            Response::InstallSnapshot(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RpcErr> {
        match self
            .rpc(RPCTypes::Vote, &Request::Vote(rpc), &option)
            .await?
        {
            Response::Vote(Ok(r)) => Ok(r),
            Response::Vote(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(self.unexpected(other)),
        }
    }
}
