//! Producer ids for idempotent producers. An id must never be handed out twice, across restarts
//! too: the log remembers each producer's sequences, and a reused id would make a new producer's
//! first batch look out of order. Ids are reserved in blocks: the end of the current block is
//! written (and fsynced) to `producer-id-block` before any id from it is used, so a restart
//! continues after the block, skipping at most one block's unused ids.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

const FILE: &str = "producer-id-block";
const BLOCK: i64 = 1000;

pub struct ProducerIdAllocator {
    path: PathBuf,
    state: Mutex<Block>,
}

struct Block {
    next: i64,
    end: i64,
}

impl ProducerIdAllocator {
    pub fn open(data_dir: &Path) -> std::io::Result<ProducerIdAllocator> {
        let path = data_dir.join(FILE);
        let start = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<i64>().map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(ProducerIdAllocator {
            path,
            state: Mutex::new(Block {
                next: start,
                end: start,
            }),
        })
    }

    /// A producer id never returned before by this broker.
    pub fn next_id(&self) -> std::io::Result<i64> {
        let mut block = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if block.next == block.end {
            let end = block.end + BLOCK;
            write_synced(&self.path, &end.to_string())?;
            block.end = end;
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }
}

fn write_synced(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_never_repeat_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first: Vec<i64> = {
            let ids = ProducerIdAllocator::open(dir.path()).unwrap();
            (0..3).map(|_| ids.next_id().unwrap()).collect()
        };
        assert_eq!(first, vec![0, 1, 2]);
        let ids = ProducerIdAllocator::open(dir.path()).unwrap();
        assert!(ids.next_id().unwrap() > 2);
    }
}
