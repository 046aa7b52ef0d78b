//! Tests of the on-disk log and state machine: openraft's storage suite, and crash recovery of
//! `raft.log` (torn and corrupt tails dropped, a damaged middle refused).

use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{log_id, StoreBuilder, Suite};
use openraft::{Entry, EntryPayload, StorageError, Vote};

use super::log_store::{encode_record, LogOpenError, LogStore, LOG_FILE};
use super::state_machine::StateMachineStore;
use super::{Command, ReplicatedState, TypeConfig};

type Items = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

/// An append-only list of (index, command); shared so tests can look inside.
#[derive(Clone, Default)]
pub(crate) struct Toy {
    pub(crate) list: Items,
    pub(crate) restored_at: Arc<Mutex<Option<u64>>>,
}

impl Toy {
    pub(crate) fn items(&self) -> Vec<(u64, Vec<u8>)> {
        self.list.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl ReplicatedState for Toy {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        if let Ok(mut l) = self.list.lock() {
            l.push((index, command.to_vec()));
        }
        format!("applied {index}").into_bytes()
    }
    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.items()).unwrap_or_default()
    }
    fn restore(&mut self, index: u64, snapshot: &[u8]) -> Result<(), String> {
        let items: Vec<(u64, Vec<u8>)> =
            serde_json::from_slice(snapshot).map_err(|e| e.to_string())?;
        *self.list.lock().map_err(|e| e.to_string())? = items;
        *self.restored_at.lock().map_err(|e| e.to_string())? = Some(index);
        Ok(())
    }
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir()
            .map_err(|e| openraft::StorageIOError::write(openraft::AnyError::new(&e)))?;
        let log = LogStore::open(dir.path())
            .map_err(|e| openraft::StorageIOError::read(openraft::AnyError::new(&e)))?;
        let sm = StateMachineStore::open(dir.path(), Box::new(Toy::default()))
            .map_err(|e| openraft::StorageIOError::read(openraft::AnyError::new(&e)))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(Builder).expect("openraft's storage suite");
}

fn entry(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(Command(format!("command {index}").into_bytes())),
    }
}

/// The records of entries 0..n, and the byte offset where the last one starts.
fn log_bytes(n: u64) -> (Vec<u8>, usize) {
    let mut bytes = Vec::new();
    let mut last_start = 0;
    for i in 0..n {
        last_start = bytes.len();
        bytes.extend_from_slice(&encode_record(&entry(i)).expect("encode"));
    }
    (bytes, last_start)
}

fn open_with(dir: &Path, bytes: &[u8]) -> Result<LogStore, LogOpenError> {
    std::fs::write(dir.join(LOG_FILE), bytes).expect("write log");
    LogStore::open(dir)
}

#[tokio::test]
async fn a_log_cut_at_every_byte_of_its_last_entry_keeps_the_whole_entries() {
    let (bytes, last_start) = log_bytes(5);
    for cut in last_start..bytes.len() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store =
            open_with(dir.path(), &bytes[..cut]).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(store.last_index(), Some(3), "cut at {cut}");
        assert_eq!(
            std::fs::metadata(dir.path().join(LOG_FILE))
                .expect("meta")
                .len(),
            last_start as u64
        );
        // The log goes on after the cut, and the new entry survives a reopen.
        store
            .blocking_append([entry(4)])
            .await
            .expect("append after recovery");
        let mut reopened = LogStore::open(dir.path()).expect("reopen");
        let got = reopened.try_get_log_entries(0..10).await.expect("read");
        assert_eq!(
            got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        assert_eq!(
            serde_json::to_string(&got[4]).ok(),
            serde_json::to_string(&entry(4)).ok()
        );
    }
}

#[test]
fn a_corrupt_byte_in_the_last_entry_drops_only_that_entry() {
    let (bytes, last_start) = log_bytes(5);
    for at in last_start..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x5A;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_with(dir.path(), &damaged).unwrap_or_else(|e| panic!("byte {at}: {e}"));
        assert_eq!(store.last_index(), Some(3), "byte {at}");
    }
}

#[test]
fn a_damaged_middle_entry_is_an_error_naming_the_file_and_offset() {
    let (bytes, _) = log_bytes(5);
    let second = encode_record(&entry(0)).expect("encode").len();
    let mut damaged = bytes.clone();
    damaged[second + 20] ^= 0x5A;
    let dir = tempfile::tempdir().expect("tempdir");
    match open_with(dir.path(), &damaged) {
        Err(e @ LogOpenError::DamagedMiddle { offset, .. }) => {
            assert_eq!(offset, second as u64);
            assert!(e.to_string().contains(LOG_FILE), "{e}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a damaged middle was accepted"),
    }
}

#[tokio::test]
async fn vote_truncate_and_purge_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = LogStore::open(dir.path()).expect("open");
    store
        .blocking_append((0..10).map(entry))
        .await
        .expect("append");
    store.save_vote(&Vote::new(3, 2)).await.expect("vote");
    store.truncate(log_id(1, 1, 7)).await.expect("truncate");
    store.purge(log_id(1, 1, 2)).await.expect("purge");
    drop(store);

    let mut store = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(
        store.read_vote().await.expect("vote"),
        Some(Vote::new(3, 2))
    );
    let state = store.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 6)));
    let got = store.try_get_log_entries(0..100).await.expect("read");
    assert_eq!(
        got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        vec![3, 4, 5, 6]
    );
}

fn entries_with_sizes(sizes: &[usize]) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let e = Entry {
            log_id: log_id(1, 1, i as u64),
            payload: EntryPayload::Normal(Command(vec![i as u8; *size])),
        };
        bytes.extend_from_slice(&encode_record(&e).expect("encode"));
        ends.push(bytes.len());
    }
    (bytes, ends)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Wherever a crash cuts the file, exactly the whole records before the cut survive.
    #[test]
    fn recovery_keeps_exactly_the_whole_records_before_a_cut(
        sizes in proptest::collection::vec(0usize..300, 1..12),
        cut_frac in 0.0f64..=1.0,
    ) {
        let (bytes, ends) = entries_with_sizes(&sizes);
        let cut = ((bytes.len() as f64) * cut_frac) as usize;
        let whole = ends.iter().filter(|e| **e <= cut).count();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_with(dir.path(), &bytes[..cut]).expect("open");
        proptest::prop_assert_eq!(store.last_index(), whole.checked_sub(1).map(|i| i as u64));
    }

    /// A flipped byte in the last record drops it; anywhere earlier it is a damaged middle.
    #[test]
    fn a_flipped_byte_is_a_torn_tail_only_in_the_last_record(
        sizes in proptest::collection::vec(0usize..300, 1..12),
        at_frac in 0.0f64..1.0,
    ) {
        let (mut bytes, ends) = entries_with_sizes(&sizes);
        let at = ((bytes.len() as f64) * at_frac) as usize;
        bytes[at] ^= 0x81;
        let record = ends.iter().position(|e| at < *e).expect("a record holds the byte");
        let dir = tempfile::tempdir().expect("tempdir");
        let opened = open_with(dir.path(), &bytes);
        if record + 1 == ends.len() {
            let store = opened.expect("a torn tail is recovered");
            proptest::prop_assert_eq!(store.last_index(), record.checked_sub(1).map(|i| i as u64));
        } else {
            let start = if record == 0 { 0 } else { ends[record - 1] };
            let is_middle = matches!(opened, Err(LogOpenError::DamagedMiddle { offset, .. }) if offset == start as u64);
            proptest::prop_assert!(is_middle);
        }
    }
}

#[tokio::test]
async fn a_damaged_snapshot_file_fails_the_start_naming_it() {
    use openraft::storage::RaftStateMachine;
    use openraft::RaftSnapshotBuilder;

    let dir = tempfile::tempdir().expect("tempdir");
    let toy = Toy::default();
    let mut sm = StateMachineStore::open(dir.path(), Box::new(toy.clone())).expect("open");
    sm.apply([entry(0), entry(1)]).await.expect("apply");
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot");
    drop(sm);

    let restored = Toy::default();
    StateMachineStore::open(dir.path(), Box::new(restored.clone())).expect("reopen");
    assert_eq!(restored.items(), toy.items());
    assert_eq!(*restored.restored_at.lock().expect("lock"), Some(1));

    let path = dir.path().join("snapshot.bin");
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes).expect("write");
    let err = StateMachineStore::open(dir.path(), Box::new(Toy::default()))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("snapshot.bin"), "{err}");
}
