//! openraft's `RaftStateMachine` over a [`ReplicatedState`], and the snapshot on disk.
//!
//! The state itself lives in memory; after a restart it is the last snapshot plus the committed
//! entries openraft re-applies. `snapshot.bin` holds
//! `MAGIC(4) | meta_len(u32 BE) | data_len(u64 BE) | crc32c(meta ++ data)(u32 BE) | meta JSON |
//! data`, replaced atomically; `data` is what [`ReplicatedState::snapshot`] returned and is also
//! what travels to a follower (openraft 0.9 sends it in chunks).

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, StorageError,
    StorageIOError, StoredMembership,
};
use tokio::sync::watch;

use super::files::{read_bounded, write_atomic};
use super::{Applied, ReplicatedState, TypeConfig};

const MAGIC: [u8; 4] = [0xC7, 0x1A, 0x5A, 0xE5];
const HEADER: usize = 20;
const SNAPSHOT_FILE: &str = "snapshot.bin";
/// The largest snapshot accepted from disk or a leader.
pub const MAX_SNAPSHOT: u64 = 1 << 30;

type StErr = StorageError<u64>;
type Meta = SnapshotMeta<u64, BasicNode>;

/// The state machine store; clones share state (the snapshot builder is a clone).
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Mutex<Inner>>,
    applied: Arc<watch::Sender<u64>>,
}

struct Inner {
    dir: PathBuf,
    state: Box<dyn ReplicatedState>,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    current: Option<(Meta, Vec<u8>)>,
    seq: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotOpenError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: String },
}

fn encode(meta: &Meta, data: &[u8]) -> io::Result<Vec<u8>> {
    let meta_json = serde_json::to_vec(meta).map_err(io::Error::other)?;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&meta_json), data);
    let mut out = Vec::with_capacity(HEADER + meta_json.len() + data.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(meta_json.len() as u32).to_be_bytes());
    out.extend_from_slice(&(data.len() as u64).to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&meta_json);
    out.extend_from_slice(data);
    Ok(out)
}

fn decode(buf: &[u8]) -> Result<(Meta, Vec<u8>), String> {
    let h = buf.get(..HEADER).ok_or("header cut short")?;
    if h[..4] != MAGIC {
        return Err("bad magic".into());
    }
    let meta_len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
    let data_len = u64::from_be_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
    let crc = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
    if (HEADER + meta_len) as u64 + data_len != buf.len() as u64 {
        return Err("length mismatch".into());
    }
    let meta_json = &buf[HEADER..HEADER + meta_len];
    let data = &buf[HEADER + meta_len..];
    if crc32c::crc32c_append(crc32c::crc32c(meta_json), data) != crc {
        return Err("checksum mismatch".into());
    }
    let meta = serde_json::from_slice(meta_json).map_err(|e| format!("meta: {e}"))?;
    Ok((meta, data.to_vec()))
}

impl StateMachineStore {
    /// Opens the store in `dir`: restores `state` from the snapshot there, if any.
    pub fn open(
        dir: &Path,
        mut state: Box<dyn ReplicatedState>,
    ) -> Result<StateMachineStore, SnapshotOpenError> {
        let path = dir.join(SNAPSHOT_FILE);
        let bytes = read_bounded(&path, MAX_SNAPSHOT + (1 << 20)).map_err(|source| {
            SnapshotOpenError::Io {
                path: path.clone(),
                source,
            }
        })?;
        let invalid = |why: String| SnapshotOpenError::Invalid {
            path: path.clone(),
            why,
        };
        let (mut last_applied, mut membership, mut current) =
            (None, StoredMembership::default(), None);
        if let Some(bytes) = bytes {
            let (meta, data) = decode(&bytes).map_err(invalid)?;
            let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
            state
                .restore(index, &data)
                .map_err(|e| invalid(format!("restore: {e}")))?;
            last_applied = meta.last_log_id;
            membership = meta.last_membership.clone();
            current = Some((meta, data));
        }
        let applied = watch::channel(last_applied.map(|l| l.index).unwrap_or(0)).0;
        let inner = Inner {
            dir: dir.to_path_buf(),
            state,
            last_applied,
            membership,
            current,
            seq: 0,
        };
        Ok(StateMachineStore {
            inner: Arc::new(Mutex::new(inner)),
            applied: Arc::new(applied),
        })
    }

    /// The last applied index (0 before anything is applied; index 0 is the membership entry).
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    // The error type is openraft's; callers return it as is.
    #[allow(clippy::result_large_err)]
    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StErr> {
        self.inner.lock().map_err(|_| {
            StorageIOError::read_state_machine(AnyError::error("state machine lock poisoned"))
                .into()
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StErr> {
        // Off the async threads: the state is serialised and the file fsynced under the lock, so
        // a snapshot never interleaves with applying or installing.
        let inner = self.inner.clone();
        let built = tokio::task::spawn_blocking(move || {
            let mut g = inner
                .lock()
                .map_err(|_| io::Error::other("state machine lock poisoned"))?;
            let data = g.state.snapshot();
            g.seq += 1;
            let snapshot_id = match g.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, g.seq),
                None => format!("0-0-{}", g.seq),
            };
            let meta = Meta {
                last_log_id: g.last_applied,
                last_membership: g.membership.clone(),
                snapshot_id,
            };
            write_atomic(&g.dir.join(SNAPSHOT_FILE), &encode(&meta, &data)?)?;
            g.current = Some((meta.clone(), data.clone()));
            Ok::<_, io::Error>((meta, data))
        })
        .await;
        let (meta, data) = match built {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                return Err(StorageIOError::write_snapshot(None, AnyError::new(&e)).into())
            }
            Err(e) => return Err(StorageIOError::write_snapshot(None, AnyError::new(&e)).into()),
        };
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "metadata snapshot written");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StErr> {
        let g = self.lock()?;
        Ok((g.last_applied, g.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        let last = {
            let mut g = self.lock()?;
            for entry in entries {
                let index = entry.log_id.index;
                g.last_applied = Some(entry.log_id);
                let reply = match entry.payload {
                    EntryPayload::Blank => Vec::new(),
                    EntryPayload::Normal(cmd) => g.state.apply(index, &cmd.0),
                    EntryPayload::Membership(m) => {
                        g.membership = StoredMembership::new(Some(entry.log_id), m);
                        Vec::new()
                    }
                };
                out.push(Applied { index, reply });
            }
            g.last_applied
        };
        if let Some(l) = last {
            self.applied.send_replace(l.index);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StErr> {
        let data = snapshot.into_inner();
        let err = |why: String| {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::error(why))
        };
        let bytes = encode(meta, &data).map_err(|e| err(e.to_string()))?;
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        let inner = self.inner.clone();
        let owned = meta.clone();
        let installed = tokio::task::spawn_blocking(move || {
            let mut g = inner
                .lock()
                .map_err(|_| "state machine lock poisoned".to_string())?;
            g.state
                .restore(index, &data)
                .map_err(|e| format!("restore: {e}"))?;
            write_atomic(&g.dir.join(SNAPSHOT_FILE), &bytes).map_err(|e| e.to_string())?;
            g.last_applied = owned.last_log_id;
            g.membership = owned.last_membership.clone();
            g.current = Some((owned, data));
            Ok::<_, String>(())
        })
        .await;
        match installed {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return Err(err(why).into()),
            Err(e) => return Err(err(e.to_string()).into()),
        }
        tracing::info!(snapshot = %meta.snapshot_id, index, "installed a metadata snapshot from the leader");
        self.applied.send_replace(index);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StErr> {
        let g = self.lock()?;
        Ok(g.current.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.clone())),
        }))
    }
}
