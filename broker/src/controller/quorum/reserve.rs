//! Disk space held back for the metadata log. A broker's partitions can fill the disk they share
//! with it, and the metadata log must still take the few records that keep the node in its
//! cluster (a restart's registration, a vote, a fencing), or openraft, which treats a storage
//! error as fatal, stops the controller for good.
//!
//! So `space-reserve`, a 64 KiB file allocated in the log's directory while the disk has room
//! (sixteen blocks: a restart's registration and unfencing, votes, hints, with room to spare),
//! is given up the first time a metadata write finds no space (ENOSPC), and the write tried
//! again. If that is not enough, the write waits for space, retrying every 200 ms: the quorum
//! pauses (proposals time out, clients retry) rather than ending, and resumes on its own once
//! space is freed. The reserve is put back when the disk has room for it again.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

pub(crate) const RESERVE_FILE: &str = "space-reserve";
pub(crate) const RESERVE_BYTES: u64 = 64 << 10;
const RETRY_EVERY: Duration = Duration::from_millis(200);
const WARN_EVERY: Duration = Duration::from_secs(10);

fn no_space(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc_enospc())
}

fn libc_enospc() -> i32 {
    rustix::io::Errno::NOSPC.raw_os_error()
}

/// Runs `write` (which must be safe to repeat: it rewrites what a failed attempt left) until it
/// succeeds or fails for another reason than a full disk. Blocking: call it off the async
/// threads (the stores run their disk work in `spawn_blocking`).
pub(crate) fn retry_on_full_disk<T>(
    dir: &Path,
    mut write: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let started = Instant::now();
    let mut warned: Option<Instant> = None;
    loop {
        match write() {
            Err(e) if no_space(&e) => {
                if fs::remove_file(dir.join(RESERVE_FILE)).is_ok() {
                    tracing::warn!(dir = %dir.display(), "the disk is full: released the metadata log's space reserve");
                    continue;
                }
                if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    warned = Some(Instant::now());
                    tracing::warn!(
                        dir = %dir.display(),
                        waited_ms = started.elapsed().as_millis() as u64,
                        "the disk is full: the metadata log waits for space"
                    );
                }
                std::thread::sleep(RETRY_EVERY);
            }
            other => return other,
        }
    }
}

/// Allocates the reserve if it is missing and the disk has room for it four times over.
pub(crate) fn restore(dir: &Path) -> io::Result<bool> {
    let path = dir.join(RESERVE_FILE);
    if path.exists() {
        return Ok(false);
    }
    let stat = rustix::fs::statvfs(dir)?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if free < 4 * RESERVE_BYTES {
        return Ok(false);
    }
    let tmp = dir.join(format!("{RESERVE_FILE}.tmp"));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    // Real blocks, not a sparse length: the point is that they are taken now.
    let allocated =
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, RESERVE_BYTES)
            .map_err(io::Error::from)
            .and_then(|()| file.sync_all());
    if let Err(e) = allocated {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_releases_the_reserve_then_retries() {
        let dir = tempfile::tempdir().unwrap();
        assert!(restore(dir.path()).unwrap());
        assert!(!restore(dir.path()).unwrap(), "already there");
        let len = fs::metadata(dir.path().join(RESERVE_FILE)).unwrap().len();
        assert_eq!(len, RESERVE_BYTES);
        let mut attempts = 0;
        let written = retry_on_full_disk(dir.path(), || {
            attempts += 1;
            if attempts == 1 {
                Err(io::Error::from_raw_os_error(libc_enospc()))
            } else {
                Ok(attempts)
            }
        })
        .unwrap();
        assert_eq!(written, 2);
        assert!(!dir.path().join(RESERVE_FILE).exists(), "released");
    }

    #[test]
    fn other_errors_are_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let mut attempts = 0;
        let result: io::Result<()> = retry_on_full_disk(dir.path(), || {
            attempts += 1;
            Err(io::Error::other("no"))
        });
        assert!(result.is_err());
        assert_eq!(attempts, 1);
    }
}
