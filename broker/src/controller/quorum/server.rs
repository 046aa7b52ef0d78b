//! The controller listener: accepts peer connections (at most [`MAX_CONNECTIONS`] at once) and
//! answers one request frame at a time per connection. A malformed or oversized frame closes
//! that connection only. Dropping the accept task aborts every connection task it owns. Also how
//! a node answers each request (the Raft RPCs go to openraft; the rest are the leader's).

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;

use super::node::Shared;
use super::state_machine::MAX_SNAPSHOT;
use super::wire::{self, Refusal, Request, Response};
use super::{now_ms, Command, QuorumStatus, VoterStatus};

const MAX_CONNECTIONS: usize = 64;
/// How long the leader works on a forwarded request before giving up on it.
const SERVE_TIMEOUT: Duration = Duration::from_secs(30);
/// The failure text that means "this node is shut down".
pub(crate) const SHUTDOWN: &str = "shut down";

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    loop {
        // Reap finished connection tasks so the set stays bounded.
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(node = shared.id, error = %e, "controller listener accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(node = shared.id, %peer, "too many controller connections; closing the new one");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        conns.spawn(async move {
            connection(stream, &shared).await;
            drop(permit);
        });
    }
}

async fn connection(mut stream: TcpStream, shared: &Shared) {
    loop {
        let req: Request = match wire::read_frame(&mut stream).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(node = shared.id, error = %e, "closing a controller connection");
                return;
            }
        };
        let resp = shared.handle(req).await;
        let frame = match wire::encode(&resp) {
            Ok(f) => f,
            Err(e) => match wire::encode(&Response::Rejected(e.to_string())) {
                Ok(f) => f,
                Err(_) => return,
            },
        };
        if wire::write_frame(&mut stream, &frame).await.is_err() {
            return;
        }
    }
}

impl Shared {
    /// Answers one request from the network (or from this node when it leads).
    pub(crate) async fn handle(&self, req: Request) -> Response {
        match req {
            Request::AppendEntries(r) => Response::AppendEntries(self.raft.append_entries(r).await),
            Request::Vote(r) => Response::Vote(self.raft.vote(r).await),
            Request::InstallSnapshot(r) => {
                if r.offset.saturating_add(r.data.len() as u64) > MAX_SNAPSHOT {
                    return Response::Rejected(format!(
                        "snapshot over the {MAX_SNAPSHOT} byte limit"
                    ));
                }
                Response::InstallSnapshot(self.raft.install_snapshot(r).await)
            }
            Request::Propose(cmd) => Response::Propose(self.write(cmd).await),
            Request::LeaderCall(req) => Response::LeaderCall(self.leader_call(req).await),
            Request::Status => Response::Status(self.status().await),
            Request::AddLearner { id, address } => {
                Response::AddLearner(self.add_learner(id, address).await)
            }
        }
    }

    /// Makes `id` a learner reached at `address`, unless it already is one there.
    async fn add_learner(&self, id: u64, address: String) -> Result<(), Refusal> {
        self.check_leader()?;
        if self.voters.contains_key(&(id as i32)) {
            return Err(Refusal::Failed(format!(
                "node {id} is a voter of the controller quorum, not an observer"
            )));
        }
        let known = {
            let m = self.raft.metrics().borrow().clone();
            let membership = m.membership_config.membership();
            membership.get_node(&id).map(|n| n.addr.clone())
        };
        if known.as_deref() == Some(address.as_str()) {
            return Ok(());
        }
        let learner = openraft::BasicNode::new(address.clone());
        leader_write(self.raft.add_learner(id, learner, false)).await?;
        tracing::info!(node = self.id, learner = id, %address, "added an observer to the controller quorum");
        Ok(())
    }

    async fn write(&self, cmd: Command) -> Result<super::Applied, Refusal> {
        Ok(leader_write(self.raft.client_write(cmd)).await?.data)
    }

    /// Whether this node leads now; otherwise who does.
    fn check_leader(&self) -> Result<(), Refusal> {
        let m = self.raft.metrics().borrow().clone();
        if m.running_state.is_err() {
            return Err(Refusal::Failed(SHUTDOWN.into()));
        }
        if m.state == ServerState::Leader {
            Ok(())
        } else {
            Err(Refusal::NotLeader(
                m.current_leader.filter(|l| *l != m.id).map(|l| l as i32),
            ))
        }
    }

    async fn leader_call(&self, req: Command) -> Result<Command, Refusal> {
        self.check_leader()?;
        let handler = self
            .handler
            .read()
            .ok()
            .and_then(|h| h.clone())
            .ok_or(Refusal::NoHandler)?;
        match tokio::time::timeout(SERVE_TIMEOUT, handler(req.0)).await {
            Ok(reply) => Ok(Command(reply)),
            Err(_) => Err(Refusal::Failed("the leader handler timed out".into())),
        }
    }

    async fn status(&self) -> Result<QuorumStatus, Refusal> {
        self.check_leader()?;
        let committed = self
            .raft
            .with_raft_state(|st| st.committed)
            .await
            .map_err(|_| Refusal::Failed(SHUTDOWN.into()))?;
        let m = self.raft.metrics().borrow().clone();
        let replication = m.replication.clone().unwrap_or_default();
        let now = now_ms();
        let status_of = |v: i32| {
            let matched = replication.get(&(v as u64)).cloned().flatten();
            let (fetch, caught_up) = self.peers.times(v as u64);
            VoterStatus {
                replica_id: v,
                log_end_offset: matched.map(|l| l.index + 1).unwrap_or(0),
                last_fetch_timestamp: fetch,
                last_caught_up_timestamp: caught_up,
            }
        };
        let observers = m
            .membership_config
            .membership()
            .learner_ids()
            .map(|l| status_of(l as i32))
            .collect();
        let voters = self
            .voters
            .keys()
            .map(|&v| {
                if v == self.id {
                    let end = m.last_log_index.map(|i| i + 1).unwrap_or(0);
                    return VoterStatus {
                        replica_id: v,
                        log_end_offset: end,
                        last_fetch_timestamp: now,
                        last_caught_up_timestamp: now,
                    };
                }
                status_of(v)
            })
            .collect();
        Ok(QuorumStatus {
            leader_id: self.id,
            leader_epoch: m.current_term,
            high_watermark: committed.map(|c| c.index + 1).unwrap_or(0),
            voters,
            observers,
        })
    }
}

/// Runs a write through the log on this node (a command or a membership change) within
/// [`SERVE_TIMEOUT`]; a refusal says who leads when this node does not.
async fn leader_write<T>(
    write: impl std::future::Future<
        Output = Result<T, RaftError<u64, ClientWriteError<u64, openraft::BasicNode>>>,
    >,
) -> Result<T, Refusal> {
    match tokio::time::timeout(SERVE_TIMEOUT, write).await {
        Err(_) => Err(Refusal::Failed("timed out".into())),
        Ok(Ok(done)) => Ok(done),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Err(Refusal::NotLeader(f.leader_id.map(|l| l as i32)))
        }
        Ok(Err(RaftError::APIError(e))) => Err(Refusal::Failed(e.to_string())),
        Ok(Err(RaftError::Fatal(_))) => Err(Refusal::Failed(SHUTDOWN.into())),
    }
}
