//! The Raft log and vote on disk (openraft's `RaftLogStorage`).
//!
//! Files under the quorum dir:
//! - `raft.log`: records `MAGIC(4) | len(u32 BE) | crc32c(len BE ++ body)(u32 BE) | body`, the body
//!   one openraft entry as JSON, indexes consecutive. Appends are fsynced before openraft hears
//!   they are durable; truncation (a conflict) is `set_len` + fsync; a purge records the purged log
//!   id first (`purged.json`), then rewrites the file without the purged records (tmp + rename).
//! - `vote.json`, `purged.json`: replaced atomically.
//! - `committed.json`: the last committed log id, a hint replaced without fsync (unreadable or
//!   not matching the log at start: ignored; openraft then learns it from the leader).
//!
//! Recovery: a record that fails its checksum or is cut short, with no valid record after it, is a
//! torn tail of a crash and is cut off; one followed by valid records is a damaged middle, and
//! opening fails naming the file and offset. Entries are also kept in memory: the metadata log
//! stays short because it is purged behind every snapshot.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, RaftLogId, StorageError, StorageIOError, Vote};

use super::files::{read_bounded, sync_dir, write_atomic};
use super::log_record::{decode_at, find_valid_after};
pub use super::log_record::{encode_record, MAX_RECORD};
use super::reserve::retry_on_full_disk;
use super::TypeConfig;

/// The largest log file opened at start (it is purged behind snapshots, so far smaller).
const MAX_LOG_FILE: u64 = 1 << 30;

pub const LOG_FILE: &str = "raft.log";
const VOTE_FILE: &str = "vote.json";
const PURGED_FILE: &str = "purged.json";
const COMMITTED_FILE: &str = "committed.json";

type StErr = StorageError<u64>;

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogOpenError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: damaged record at byte {offset} followed by valid records: {why}")]
    DamagedMiddle {
        path: PathBuf,
        offset: u64,
        why: String,
    },
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: String },
}

/// The on-disk Raft log; clones share the same state (the log reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    dir: PathBuf,
    file: File,
    /// Index -> (entry, byte offset of its record in `raft.log`).
    entries: BTreeMap<u64, (Entry<TypeConfig>, u64)>,
    end: u64,
    vote: Option<Vote<u64>>,
    purged: Option<LogId<u64>>,
    committed: Option<LogId<u64>>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogOpenError + '_ {
    move |source| LogOpenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, recovering from a crash as the module doc says.
    pub fn open(dir: &Path) -> Result<LogStore, LogOpenError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let vote_path = dir.join(VOTE_FILE);
        let vote = read_json::<Vote<u64>>(&vote_path)?;
        let purged_path = dir.join(PURGED_FILE);
        let purged = read_json::<LogId<u64>>(&purged_path)?;

        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        if len > MAX_LOG_FILE {
            return Err(LogOpenError::Invalid {
                path,
                why: format!("{len} bytes, over the {MAX_LOG_FILE} limit"),
            });
        }
        let mut buf = Vec::with_capacity(len as usize);
        (&mut file)
            .take(len)
            .read_to_end(&mut buf)
            .map_err(io_err(&path))?;

        let mut entries = BTreeMap::new();
        let mut off = 0usize;
        let mut last: Option<u64> = None;
        while off < buf.len() {
            match decode_at(&buf, off) {
                Ok((entry, next)) => {
                    let index = entry.get_log_id().index;
                    if let Some(prev) = last {
                        if index != prev + 1 {
                            return Err(LogOpenError::Invalid {
                                path,
                                why: format!("entry {index} at byte {off} follows entry {prev}"),
                            });
                        }
                    }
                    last = Some(index);
                    // A crash between recording a purge and rewriting the file leaves purged
                    // records behind: skip them.
                    if purged.is_none_or(|p| index > p.index) {
                        entries.insert(index, (entry, off as u64));
                    }
                    off = next;
                }
                Err(why) => {
                    if let Some(valid) = find_valid_after(&buf, off) {
                        return Err(LogOpenError::DamagedMiddle {
                            path,
                            offset: off as u64,
                            why: format!("{why}; a valid record starts at byte {valid}"),
                        });
                    }
                    tracing::warn!(file = %path.display(), offset = off, dropped_bytes = buf.len() - off, %why,
                        "dropping the torn tail of the metadata log");
                    file.set_len(off as u64).map_err(io_err(&path))?;
                    file.sync_all().map_err(io_err(&path))?;
                    break;
                }
            }
        }
        if let (Some(p), Some((&first, _))) = (purged, entries.first_key_value()) {
            if first != p.index + 1 {
                return Err(LogOpenError::Invalid {
                    path,
                    why: format!("first entry {first} after purged {}", p.index),
                });
            }
        }
        let end = off.min(buf.len()) as u64;
        file.seek(SeekFrom::Start(end)).map_err(io_err(&path))?;
        let committed = read_committed_hint(dir, purged, &entries);
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                file,
                entries,
                end,
                vote,
                purged,
                committed,
            })),
        })
    }

    // The error type is openraft's; callers return it as is.
    #[allow(clippy::result_large_err)]
    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StErr> {
        self.inner.lock().map_err(|_| {
            StorageIOError::read_logs(AnyError::error("log store lock poisoned")).into()
        })
    }

    /// Index of the last entry kept (None when empty), for tests and status.
    pub fn last_index(&self) -> Option<u64> {
        self.inner
            .lock()
            .ok()
            .and_then(|g| g.entries.last_key_value().map(|(k, _)| *k))
    }
}

/// The saved committed log id, if the log still vouches for it.
fn read_committed_hint(
    dir: &Path,
    purged: Option<LogId<u64>>,
    entries: &BTreeMap<u64, (Entry<TypeConfig>, u64)>,
) -> Option<LogId<u64>> {
    let path = dir.join(COMMITTED_FILE);
    let committed = match read_json::<Option<LogId<u64>>>(&path) {
        Ok(c) => c.flatten()?,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the committed-index hint");
            return None;
        }
    };
    let in_log = entries
        .get(&committed.index)
        .is_some_and(|(e, _)| *e.get_log_id() == committed);
    let purged_past = purged.is_some_and(|p| p.index >= committed.index);
    (in_log || purged_past).then_some(committed)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, LogOpenError> {
    match read_bounded(path, 1 << 16).map_err(io_err(path))? {
        None => Ok(None),
        Some(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| LogOpenError::Invalid {
                    path: path.to_path_buf(),
                    why: e.to_string(),
                })
        }
    }
}

impl Inner {
    fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        let Some((_, off)) = self.entries.range(index..).next().map(|(_, v)| v.clone()) else {
            return Ok(());
        };
        self.file.set_len(off)?;
        self.file.sync_all()?;
        self.file.seek(SeekFrom::Start(off))?;
        self.end = off;
        self.entries.split_off(&index);
        Ok(())
    }

    fn append(&mut self, entries: Vec<Entry<TypeConfig>>) -> io::Result<()> {
        let Some(first) = entries.first().map(|e| e.get_log_id().index) else {
            return Ok(());
        };
        if self.entries.contains_key(&first) {
            // openraft truncates before appending over a conflict; be safe if it did not.
            self.truncate_from(first)?;
        }
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for e in &entries {
            offsets.push(self.end + buf.len() as u64);
            buf.extend_from_slice(&encode_record(e)?);
        }
        // A failed attempt may have written part of `buf`: each attempt starts over at `end`.
        let (end, dir) = (self.end, self.dir.clone());
        let file = &mut self.file;
        retry_on_full_disk(&dir, || {
            let written = file
                .seek(SeekFrom::Start(end))
                .and_then(|_| file.write_all(&buf))
                .and_then(|()| file.sync_data());
            if written.is_err() {
                let _ = file.set_len(end);
            }
            written
        })?;
        self.end += buf.len() as u64;
        for (e, off) in entries.into_iter().zip(offsets) {
            self.entries.insert(e.get_log_id().index, (e, off));
        }
        Ok(())
    }

    fn purge(&mut self, log_id: LogId<u64>) -> io::Result<()> {
        if self.purged.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        write_atomic(
            &self.dir.join(PURGED_FILE),
            &serde_json::to_vec(&log_id).map_err(io::Error::other)?,
        )?;
        self.purged = Some(log_id);
        let keep = self.entries.split_off(&(log_id.index + 1));
        self.entries = keep;
        // Rewrite the file from the first kept record on.
        let base = self
            .entries
            .first_key_value()
            .map(|(_, (_, off))| *off)
            .unwrap_or(self.end);
        let path = self.dir.join(LOG_FILE);
        let tmp = self.dir.join(format!("{LOG_FILE}.tmp"));
        let (end, dir) = (self.end, self.dir.clone());
        let file = &mut self.file;
        retry_on_full_disk(&dir, || {
            let mut out = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            file.seek(SeekFrom::Start(base))?;
            io::copy(&mut (&mut *file).take(end - base), &mut out)?;
            out.sync_all()
        })?;
        std::fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        self.file = OpenOptions::new().read(true).write(true).open(&path)?;
        self.end -= base;
        self.file.seek(SeekFrom::Start(self.end))?;
        for (_, off) in self.entries.values_mut() {
            *off -= base;
        }
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StErr> {
        let g = self.lock()?;
        Ok(g.entries
            .range(range)
            .map(|(_, (e, _))| e.clone())
            .collect())
    }
}

impl LogStore {
    /// Runs `f` on the store off the async threads (it fsyncs).
    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Inner) -> io::Result<R> + Send + 'static,
    ) -> Result<io::Result<R>, StErr> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || match inner.lock() {
            Ok(mut g) => Ok(f(&mut g)),
            Err(_) => Err(io::Error::other("log store lock poisoned")),
        })
        .await
        .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)).into())
        .map(|r| r.and_then(|x| x))
    }
}

fn write_logs_err(e: io::Error) -> StErr {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StErr> {
        let g = self.lock()?;
        let last = g
            .entries
            .last_key_value()
            .map(|(_, (e, _))| *e.get_log_id())
            .or(g.purged);
        Ok(LogState {
            last_purged_log_id: g.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StErr> {
        let vote = *vote;
        let bytes =
            serde_json::to_vec(&vote).map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        self.blocking(move |g| {
            write_atomic(&g.dir.join(VOTE_FILE), &bytes)?;
            g.vote = Some(vote);
            Ok(())
        })
        .await?
        .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StErr> {
        Ok(self.lock()?.vote)
    }

    /// Kept as a hint (not fsynced): on start openraft re-applies up to it before any election.
    /// Only kept at start when the log (or the purged prefix) still holds that very log id.
    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), StErr> {
        let bytes =
            serde_json::to_vec(&committed).map_err(|e| write_logs_err(io::Error::other(e)))?;
        self.blocking(move |g| {
            let tmp = g.dir.join(format!("{COMMITTED_FILE}.tmp"));
            retry_on_full_disk(&g.dir.clone(), || std::fs::write(&tmp, &bytes))?;
            std::fs::rename(&tmp, g.dir.join(COMMITTED_FILE))?;
            g.committed = committed;
            Ok(())
        })
        .await?
        .map_err(write_logs_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StErr> {
        Ok(self.lock()?.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        match self.blocking(move |g| g.append(entries)).await? {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = StorageIOError::write_logs(AnyError::new(&e)).into();
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StErr> {
        self.blocking(move |g| g.truncate_from(log_id.index))
            .await?
            .map_err(write_logs_err)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StErr> {
        self.blocking(move |g| g.purge(log_id))
            .await?
            .map_err(write_logs_err)
    }
}
