//! The controller network's wire format: one frame per message,
//! `length (u32 big-endian) | body`, the body a JSON [`Request`] or [`Response`]; at most
//! [`MAX_FRAME`] bytes (a longer or malformed frame closes that connection, nothing else). A
//! connection carries one request at a time: the client writes a request frame, the server answers
//! with one response frame. Bytes (commands, replies) travel as hex strings.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Applied, Command, QuorumStatus, TypeConfig};

/// The largest frame sent or accepted.
pub const MAX_FRAME: usize = 16 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Replicate a command (sent to the leader).
    Propose(Command),
    /// An unlogged request for the leader's handler.
    LeaderCall(Command),
    /// DescribeQuorum's view (sent to the leader).
    Status,
    /// An observer asks the leader to make it a learner reached at `address` (sent to the
    /// leader; a no-op when it already is one at that address).
    AddLearner {
        id: u64,
        address: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    Propose(Result<Applied, Refusal>),
    LeaderCall(Result<Command, Refusal>),
    Status(Result<QuorumStatus, Refusal>),
    AddLearner(Result<(), Refusal>),
    /// The request could not be handled at all (e.g. a snapshot chunk past the size limit).
    Rejected(String),
}

/// Why the leader-side requests (propose, leader call, status) were not answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Refusal {
    /// This node is not the leader; here is who is, if known.
    NotLeader(Option<i32>),
    NoHandler,
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes over the {MAX_FRAME} limit")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(#[from] serde_json::Error),
}

pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(msg)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> Result<(), FrameError> {
    w.write_all(frame).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` on a clean end of stream before a frame starts.
pub async fn read_frame<R: AsyncRead + Unpin, T: serde::de::DeserializeOwned>(
    r: &mut R,
) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Some(serde_json::from_slice(&body)?))
}
