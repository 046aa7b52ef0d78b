//! Opening a partition directory after a clean shutdown or a crash.
//!
//! [`recover`] reads top to bottom:
//! 1. create the directory if missing; note and remove the clean-shutdown marker (durably, so a
//!    crash from here on is recovered fully next time); read the recovery point (the end of the
//!    closed segments at the last completed flush, `recovery-point` file, decimal text);
//! 2. list the files: delete temp files (`*.tmp`) and index files without a `.log`; collect the
//!    segment base offsets from `<20 digits>.log` names and sort them;
//! 3. open every segment but the last as a closed segment. After an unclean shutdown, a segment
//!    reaching past the recovery point may hold unflushed bytes, so it is walked whole with CRC
//!    checks and re-indexed. Otherwise (always after a clean shutdown) it is not rescanned: its
//!    index files are trusted when they are consistent, sampled entries match the log and the
//!    batches after the last indexed position end exactly at the end of the file (else it is
//!    walked and re-indexed the same way). A walk that stops before the end of the file found
//!    damage: the segment keeps its valid prefix, the original file is set aside as
//!    `<base>.log.corrupt`, and the damage is logged and counted ([`damaged_segments_total`]).
//!    Damage never costs another segment its data: a later segment whose base offset is above
//!    the previous segment's end is kept, leaving a gap in the offsets that reads skip over (as
//!    Kafka's fetch does). Only a segment overlapping the previous one (base offset below its
//!    end, which no write path produces) is set aside whole, since offsets must increase;
//! 4. walk the last segment from its start, checking framing, offset continuity and CRC-32C
//!    (CRC skipped after a clean shutdown), and stop at the first torn, corrupt or zeroed batch:
//!    that is the logical end. The file is cut there (which also drops the preallocated zeros),
//!    its indexes are rebuilt from the walk and it becomes the active segment. A torn tail is
//!    expected after a crash; after a clean shutdown, non-zero bytes past the end are damage and
//!    the file is first copied aside as for a closed segment;
//! 5. rebuild the idempotent-producer table: load the newest producer snapshot at or below the
//!    log end (newer ones are deleted) and replay the batch headers after it.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use inlet_protocol::batch::BatchIter;

use crate::config::LogConfig;
use crate::error::{IoContext, StorageError};
use crate::mmap::MappedFile;
use crate::producer_state::ProducerStateTable;
use crate::scan::scan;
use crate::segment::{aside_path, segment_path, sync_dir, Segment};
use crate::snapshot;
use crate::txn::CompletedTxn;

/// Written by [`Log::close`](crate::Log::close); its presence means the last segment's file ends
/// exactly at its logical end and every byte was synced.
pub const CLEAN_SHUTDOWN_FILE: &str = ".clean_shutdown";

/// Holds an offset (decimal text) below which every batch was synced by a completed
/// [`Log::flush`] (the end of the closed segments at that flush), so segments entirely below it
/// need no CRC walk after a crash.
///
/// [`Log::flush`]: crate::Log::flush
pub const RECOVERY_POINT_FILE: &str = "recovery-point";

/// Segments found damaged by recoveries in this process, all partitions together.
static DAMAGED_SEGMENTS: AtomicU64 = AtomicU64::new(0);

/// How many segments recovery found damaged (and cut or set aside) since the process started,
/// over every log opened: the `inlet_log_recovery_damaged_segments_total` counter.
pub fn damaged_segments_total() -> u64 {
    DAMAGED_SEGMENTS.load(Ordering::Relaxed)
}

/// The state of a recovered partition directory.
#[derive(Debug)]
pub struct Recovered {
    /// Sorted by base offset, offsets strictly increasing (gaps possible after damage), never
    /// empty; all closed except possibly the last.
    pub segments: Vec<Segment>,
    pub producers: ProducerStateTable,
    /// Transactions ended by the markers replayed to rebuild `producers` (see [`Rebuilt`]).
    pub replayed_txns: Vec<ReplayedTxn>,
    /// Segments found damaged: cut to their valid prefix or set aside.
    pub damaged_segments: usize,
}

pub fn recover(dir: &Path, config: &LogConfig, now_ms: i64) -> Result<Recovered, StorageError> {
    let ctx = || format!("recovering {}", dir.display());
    let interval = config.index_interval();

    // 1. Directory and clean-shutdown marker.
    std::fs::create_dir_all(dir).context(ctx)?;
    let marker = dir.join(CLEAN_SHUTDOWN_FILE);
    let clean = marker.exists();
    if clean {
        std::fs::remove_file(&marker).context(ctx)?;
        sync_dir(dir).context(ctx)?;
    }
    let recovery_point = read_recovery_point(dir);

    // 2. Files.
    let mut bases = list_segments(dir).context(ctx)?;
    bases.sort_unstable();

    // 3. Closed segments.
    let mut segments: Vec<Segment> = Vec::new();
    let mut damaged = 0;
    for (i, &base) in bases.iter().enumerate() {
        if let Some(prev) = segments.last() {
            let end = prev.next_offset();
            if base < end {
                let aside = set_aside_whole(dir, base, now_ms).context(ctx)?;
                tracing::warn!(dir = %dir.display(), segment = base, previous_end = end,
                    set_aside = %aside.display(), "segment overlaps the previous one; set aside");
                damaged += 1;
                continue;
            }
            if base > end {
                tracing::warn!(dir = %dir.display(), segment = base, previous_end = end,
                    missing = base - end, "offset gap before segment; reads skip forward over it");
            }
        }
        if let Some(&next_base) = bases.get(i + 1) {
            let verify = !clean && next_base > recovery_point;
            let (segment, damage) = Segment::recover_closed(dir, base, interval, verify, now_ms)?;
            if damage.is_some() {
                damaged += 1;
                if segment.is_empty() {
                    // Nothing valid is left; its bytes are in the set-aside file.
                    segment.delete()?;
                    continue;
                }
            }
            segments.push(segment);
            continue;
        }

        // 4. The last segment: find the logical end.
        let path = segment_path(dir, base, "log");
        let file = std::fs::File::open(&path).context(ctx)?;
        let map = MappedFile::read_only(&file).context(ctx)?;
        drop(file);
        let walk = scan(map.bytes(), base, interval, !clean);
        if let Some(reason) = &walk.stopped {
            // Zeros where the next batch would start are the preallocated end, not damage.
            let next = &map.bytes()[walk.valid_len..];
            if next.iter().take(12).any(|&b| b != 0) {
                if clean {
                    // Nothing was being written: this is damage, not a torn write.
                    let aside = copy_aside(&path, now_ms).context(ctx)?;
                    tracing::warn!(segment = %path.display(), position = walk.valid_len,
                        file_len = map.bytes().len(), %reason, set_aside = %aside.display(),
                        "damaged last segment after a clean shutdown: keeping its valid prefix");
                    damaged += 1;
                } else {
                    tracing::warn!(segment = %path.display(), valid_len = walk.valid_len,
                        dropped = next.len(), %reason, "truncating torn or corrupt tail");
                }
            }
        }
        drop(map);
        segments.push(Segment::open_active(
            dir,
            walk,
            config.effective_segment_bytes(),
            now_ms,
        )?);
    }
    DAMAGED_SEGMENTS.fetch_add(damaged as u64, Ordering::Relaxed);
    if segments.is_empty() {
        segments.push(Segment::create(
            dir,
            0,
            config.effective_segment_bytes(),
            interval,
            now_ms,
        )?);
    }
    sync_dir(dir).context(ctx)?;

    // 5. Producer state.
    let rebuilt = rebuild_producers(dir, &segments)?;
    Ok(Recovered {
        segments,
        producers: rebuilt.producers,
        replayed_txns: rebuilt.txns,
        damaged_segments: damaged,
    })
}

/// The recovery point, or 0 (check everything) if the file is missing or unreadable.
pub fn read_recovery_point(dir: &Path) -> i64 {
    std::fs::read_to_string(dir.join(RECOVERY_POINT_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Atomically replaces the recovery point (temp file, fsync, rename, directory fsync).
pub fn write_recovery_point(dir: &Path, offset: i64) -> io::Result<()> {
    let path = dir.join(RECOVERY_POINT_FILE);
    let tmp = dir.join(format!("{RECOVERY_POINT_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(format!("{offset}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    sync_dir(dir)
}

/// A transaction a replayed marker ended: in which segment the marker is, and the LSO right
/// after it (what the aborted-transaction index records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayedTxn {
    pub segment: i64,
    pub txn: CompletedTxn,
    pub last_stable_offset: i64,
}

/// A producer table rebuilt from a snapshot and a replay.
#[derive(Debug, Default)]
pub struct Rebuilt {
    pub producers: ProducerStateTable,
    /// Where the replay started (the snapshot's offset, 0 without one).
    pub from: i64,
    pub txns: Vec<ReplayedTxn>,
}

/// Rebuilds the producer table: deletes snapshots above the log end, loads the newest usable
/// one and replays the batch headers from its offset on (the whole log without a snapshot).
pub fn rebuild_producers(dir: &Path, segments: &[Segment]) -> Result<Rebuilt, StorageError> {
    let ctx = || format!("loading producer snapshots in {}", dir.display());
    let end = segments.last().map_or(0, Segment::next_offset);
    snapshot::delete_above(dir, end).context(ctx)?;
    let (from, producers) = snapshot::load_latest(dir, end)
        .context(ctx)?
        .unwrap_or_default();
    Ok(replay_from(producers, from, segments))
}

/// Replays every batch of `segments` from offset `from` on into `producers`.
pub fn replay_from(mut producers: ProducerStateTable, from: i64, segments: &[Segment]) -> Rebuilt {
    let mut txns = Vec::new();
    for segment in segments.iter().filter(|s| s.next_offset() > from) {
        let bytes = segment.bytes();
        for (header, range) in BatchIter::new(bytes).map_while(Result::ok) {
            if header.base_offset < from {
                continue;
            }
            if let Some(txn) = producers.replay(&header, &bytes[range]) {
                let after = txn.last_offset + 1;
                txns.push(ReplayedTxn {
                    segment: segment.base_offset(),
                    txn,
                    last_stable_offset: producers
                        .first_open_txn_offset()
                        .map_or(after, |f| f.min(after)),
                });
            }
        }
    }
    Rebuilt {
        producers,
        from,
        txns,
    }
}

/// Base offsets of the `.log` files in `dir`, after removing temp files and orphan indexes.
fn list_segments(dir: &Path) -> io::Result<Vec<i64>> {
    let mut bases = Vec::new();
    let mut indexes = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".tmp") {
            tracing::info!(file = %path.display(), "removing stray temp file");
            std::fs::remove_file(&path)?;
            continue;
        }
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        let Some(base) = parse_base_offset(stem) else {
            continue;
        };
        match ext {
            "log" => bases.push(base),
            "index" | "timeindex" => indexes.push((base, path)),
            _ => {}
        }
    }
    for (base, path) in indexes {
        if !bases.contains(&base) {
            tracing::info!(file = %path.display(), "removing index without segment");
            std::fs::remove_file(&path)?;
        }
    }
    Ok(bases)
}

fn parse_base_offset(stem: &str) -> Option<i64> {
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Copies the last segment's file aside before `Segment::open_active` cuts it in place.
fn copy_aside(path: &Path, now_ms: i64) -> io::Result<PathBuf> {
    let aside = aside_path(path, now_ms);
    std::fs::copy(path, &aside)?;
    std::fs::File::open(&aside)?.sync_all()?;
    Ok(aside)
}

/// Sets a whole segment aside: its `.log` renamed to `.log.corrupt`, its indexes removed
/// (they are derived data).
fn set_aside_whole(dir: &Path, base: i64, now_ms: i64) -> io::Result<PathBuf> {
    let path = segment_path(dir, base, "log");
    let aside = aside_path(&path, now_ms);
    std::fs::rename(&path, &aside)?;
    for ext in ["index", "timeindex"] {
        match std::fs::remove_file(segment_path(dir, base, ext)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_twenty_digit_names_are_segments() {
        assert_eq!(parse_base_offset("00000000000000000042"), Some(42));
        assert_eq!(parse_base_offset("42"), None);
        assert_eq!(parse_base_offset("0000000000000000004x"), None);
    }

    #[test]
    fn empty_directory_gets_one_active_segment_and_stray_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("00000000000000000000.log.tmp"), b"junk").unwrap();
        std::fs::write(dir.path().join("00000000000000000007.index"), b"").unwrap();
        let config = LogConfig {
            segment_bytes: 4096,
            ..LogConfig::default()
        };
        let r = recover(dir.path(), &config, 0).unwrap();
        assert_eq!(r.segments.len(), 1);
        assert!(r.segments[0].is_active());
        assert!(!dir.path().join("00000000000000000000.log.tmp").exists());
        assert!(!dir.path().join("00000000000000000007.index").exists());
    }
}
