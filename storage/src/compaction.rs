//! Log compaction (`cleanup.policy=compact`): keep only the latest record of every key in the
//! closed segments, and drop tombstones (null values) once they are older than
//! `delete.retention.ms`.
//!
//! Which records survive: a record survives when no record later in the log (active segment
//! included) has the same key, or it has no key (nothing can supersede it), or it belongs to a
//! control batch. A surviving tombstone is dropped when its timestamp is more than
//! `delete.retention.ms` old (Kafka measures from when the segment was first cleaned; the record
//! timestamp is the simpler, stricter-for-nobody approximation).
//!
//! Transactions (as Kafka's cleaner): records of aborted transactions never survive (nor count
//! as the latest record of their key), markers always do (Kafka removes them later, after
//! `delete.retention.ms`; they are kept here, which costs a few bytes and keeps the index and
//! the producer state replayable), and nothing at or past the first unstable offset is cleaned:
//! only closed segments wholly below it are rewritten, and records from it on do not supersede
//! earlier ones (their transaction may still abort).
//!
//! How survivors are written: every original batch with at least one survivor becomes one new
//! batch with the same attributes (codec, producer id and epoch, timestamps); its records keep
//! their absolute offsets through `baseOffset + offsetDelta`, so offsets become sparse but stay
//! monotonic. The batches' offset *ranges* stay dense, which the log's invariants (segment
//! contiguity, recovery's hole check) rely on: a batch is widened backwards to start right after
//! the previous surviving batch (its base sequence moves back by the same amount, so every
//! record keeps its sequence), and the last one is widened to the end of the cleaned range, as
//! Kafka keeps `lastOffsetDelta` (for an idempotent producer's batch, whose last sequence must
//! not move, an empty batch covers the rest instead). Clients skip offsets no record has. Each
//! new batch gets a new CRC-32C.
//!
//! When nothing survives in the range, it is kept as one empty batch (no records) so the log
//! start offset does not move; clients step over it by its `lastOffsetDelta`, as they do with
//! Kafka's own empty batches.
//!
//! Which segments: the leading closed segments whose survivors fit in one segment are rewritten
//! into a single segment with the first one's base offset. The swap survives a crash at any point:
//!
//! 1. survivors are written to `<base>.log.cleaned.tmp` and synced (recovery deletes `*.tmp`);
//! 2. it is renamed to `<base>-<end>.swap`: from here on the compaction counts as done;
//! 3. the old segments' files (base offsets in `[base, end)`) are deleted;
//! 4. the swap file is renamed to `<base>.log` and the directory synced.
//!
//! [`finish_interrupted`] redoes steps 3 and 4 for a swap file found when a log is opened; the new
//! segment's indexes are then rebuilt by the normal open path.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use inlet_protocol::batch::{increment_sequence, BatchHeader, BatchIter};
use inlet_protocol::records::{decode_batch, encode_batch, Record};

use crate::config::LogConfig;
use crate::error::{IoContext, StorageError};
use crate::segment::{segment_path, sync_dir, Segment};
use crate::txn::AbortedTxn;

/// What compaction must know of the log's transactions.
#[derive(Debug, Clone, Default)]
pub(crate) struct TxnFacts {
    /// No offset from here on is cleaned (the first unstable offset), `None` if all is stable.
    pub first_unstable: Option<i64>,
    /// The aborted transactions of the log.
    pub aborted: Vec<AbortedTxn>,
}

impl TxnFacts {
    /// Whether the record at `offset` of a batch with `header` belongs to an aborted
    /// transaction.
    fn is_aborted(
        &self,
        aborted: &HashMap<i64, Vec<(i64, i64)>>,
        header: &BatchHeader,
        offset: i64,
    ) -> bool {
        header.is_transactional()
            && !header.is_control()
            && aborted.get(&header.producer_id).is_some_and(|ranges| {
                ranges
                    .iter()
                    .any(|&(first, last)| first <= offset && offset <= last)
            })
    }
}

/// What one compaction did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    pub segments_replaced: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_before: u64,
    pub records_after: u64,
}

/// The result of [`compact`] that the log applies to its segment list.
#[derive(Debug)]
pub(crate) struct Compacted {
    /// How many leading segments were replaced.
    pub replaced: usize,
    /// The segment that replaces them.
    pub segment: Segment,
    pub outcome: CompactionOutcome,
}

/// A batch with its surviving records (absolute offsets).
struct Kept {
    header: BatchHeader,
    records: Vec<(i64, Record)>,
}

fn corrupt(segment: i64, reason: impl std::fmt::Display) -> StorageError {
    StorageError::CorruptBatch {
        position: 0,
        reason: format!("compacting segment {segment}: {reason}"),
    }
}

/// Decoded batches of one segment.
fn batches(segment: &Segment) -> Result<Vec<(BatchHeader, Vec<Record>)>, StorageError> {
    // Whole segment, zero-copy: the returned bytes point into its mapping.
    let bytes = segment.read_at(0, usize::MAX);
    let mut out = Vec::new();
    for item in BatchIter::new(&bytes) {
        let (_, range) = item.map_err(|e| corrupt(segment.base_offset(), e))?;
        out.push(decode_batch(&bytes.slice(range)).map_err(|e| corrupt(segment.base_offset(), e))?);
    }
    Ok(out)
}

/// Compacts the leading closed segments of `segments` (the last one is never touched) if that
/// removes anything. Writes and swaps the files; the caller replaces its segment list.
pub(crate) fn compact(
    dir: &Path,
    segments: &[Segment],
    config: &LogConfig,
    now_ms: i64,
    txns: &TxnFacts,
) -> Result<Option<Compacted>, StorageError> {
    let limit = txns.first_unstable.unwrap_or(i64::MAX);
    let closed = segments[..segments.len().saturating_sub(1)]
        .iter()
        .take_while(|s| s.next_offset() <= limit)
        .count();
    if closed == 0 {
        return Ok(None);
    }
    let mut aborted: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    for t in &txns.aborted {
        aborted
            .entry(t.producer_id)
            .or_default()
            .push((t.first_offset, t.last_offset));
    }
    // 1. The latest offset of every key in the whole log, among records that count: not of an
    //    aborted transaction, and below the first unstable offset.
    let mut latest: HashMap<Bytes, i64> = HashMap::new();
    let mut decoded = Vec::with_capacity(segments.len());
    for segment in segments {
        let segment_batches = batches(segment)?;
        for (header, records) in &segment_batches {
            for record in records {
                let offset = header.base_offset + i64::from(record.offset_delta);
                if offset >= limit || txns.is_aborted(&aborted, header, offset) {
                    continue;
                }
                if let Some(key) = &record.key {
                    latest.insert(key.clone(), offset);
                }
            }
        }
        decoded.push(segment_batches);
    }
    // 2. Survivors, segment by segment, taking segments while their survivors fit in one.
    let max_bytes = config.effective_segment_bytes() as u64;
    let (mut kept, mut outcome, mut taken, mut kept_bytes) =
        (Vec::new(), CompactionOutcome::default(), 0, 0u64);
    for (segment, segment_batches) in segments[..closed].iter().zip(decoded) {
        let mut segment_kept = Vec::new();
        let (mut records, mut survivors, mut bytes) = (0u64, 0u64, 0u64);
        for (header, batch_records) in segment_batches {
            records += batch_records.len() as u64;
            let survive = |r: &Record| {
                let offset = header.base_offset + i64::from(r.offset_delta);
                if header.is_control() {
                    return true;
                }
                if txns.is_aborted(&aborted, &header, offset) {
                    return false;
                }
                let Some(key) = &r.key else { return true };
                let timestamp = header.base_timestamp + r.timestamp_delta;
                latest.get(key) == Some(&offset)
                    && !(r.value.is_none() && now_ms - timestamp > config.delete_retention_ms)
            };
            let records: Vec<(i64, Record)> = batch_records
                .into_iter()
                .filter(|r| survive(r))
                .map(|r| (header.base_offset + i64::from(r.offset_delta), r))
                .collect();
            survivors += records.len() as u64;
            if !records.is_empty() {
                bytes += header.total_len() as u64;
                segment_kept.push(Kept { header, records });
            }
        }
        if taken > 0 && kept_bytes + bytes > max_bytes {
            break;
        }
        taken += 1;
        kept_bytes += bytes;
        kept.extend(segment_kept);
        outcome.records_before += records;
        outcome.records_after += survivors;
        outcome.bytes_before += segment.size() as u64;
    }
    if outcome.records_after == outcome.records_before {
        return Ok(None);
    }
    let start = segments[0].base_offset();
    let end = segments[taken].base_offset();
    outcome.segments_replaced = taken;
    // 3. Encode with dense offset ranges, write, swap.
    let mut data = Vec::new();
    let mut cover_from = start;
    let count = kept.len();
    for (i, batch) in kept.into_iter().enumerate() {
        let own_last = batch.header.last_offset();
        // The last batch is widened to the end of the range, unless that would change the
        // sequence numbers of an idempotent producer's batch: then an empty batch fills the gap.
        let last = if i + 1 == count && !batch.header.has_producer_id() {
            end - 1
        } else {
            own_last
        };
        data.extend_from_slice(&rebase(batch, cover_from, last)?);
        cover_from = last + 1;
    }
    if cover_from < end {
        data.extend_from_slice(&empty_batch(cover_from, end - 1)?);
    }
    outcome.bytes_after = data.len() as u64;
    swap(dir, start, end, &data)?;
    let segment = Segment::open_closed(dir, start, config.index_interval(), true, now_ms)?;
    Ok(Some(Compacted {
        replaced: taken,
        segment,
        outcome,
    }))
}

/// Re-encodes `batch` to cover offsets `[base, last]`.
fn rebase(batch: Kept, base: i64, last: i64) -> Result<Vec<u8>, StorageError> {
    let mut header = batch.header;
    let shift = header.base_offset - base;
    let too_wide = |_| corrupt(base, "batch offset range exceeds i32");
    header.base_offset = base;
    header.last_offset_delta = i32::try_from(last - base).map_err(too_wide)?;
    if header.base_sequence >= 0 {
        let shift = i32::try_from(shift).map_err(too_wide)?;
        header.base_sequence = increment_sequence(header.base_sequence, -shift);
    }
    let mut records = Vec::with_capacity(batch.records.len());
    for (offset, mut record) in batch.records {
        record.offset_delta = i32::try_from(offset - base).map_err(too_wide)?;
        records.push(record);
    }
    encode_batch(&header, &records).map_err(|e| corrupt(base, e))
}

/// A batch with no records covering `[base, last]`: what remains of a range in which nothing
/// survived, so that the log start and the dense offset ranges stay (Kafka writes such empty
/// batches too, and clients step over them by `lastOffsetDelta`).
fn empty_batch(base: i64, last: i64) -> Result<Vec<u8>, StorageError> {
    let header = BatchHeader {
        base_offset: base,
        batch_length: 0,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: i32::try_from(last - base)
            .map_err(|_| corrupt(base, "empty range exceeds i32"))?,
        base_timestamp: -1,
        max_timestamp: -1,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        records_count: 0,
    };
    encode_batch(&header, &[]).map_err(|e| corrupt(base, e))
}

fn swap_path(dir: &Path, start: i64, end: i64) -> PathBuf {
    dir.join(format!("{start:020}-{end:020}.swap"))
}

/// Steps 1-4 of the module doc.
fn swap(dir: &Path, start: i64, end: i64, data: &[u8]) -> Result<(), StorageError> {
    let ctx = || format!("compacting {} [{start}, {end})", dir.display());
    let tmp = segment_path(dir, start, "log.cleaned.tmp");
    let mut file = std::fs::File::create(&tmp).context(ctx)?;
    file.write_all(data).context(ctx)?;
    file.sync_all().context(ctx)?;
    let swap = swap_path(dir, start, end);
    std::fs::rename(&tmp, &swap).context(ctx)?;
    sync_dir(dir).context(ctx)?;
    complete_swap(dir, &swap, start, end).context(ctx)
}

fn delete_segments(dir: &Path, start: i64, end: i64) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        let in_range = stem.len() == 20
            && stem
                .parse::<i64>()
                .is_ok_and(|base| (start..end).contains(&base));
        if in_range && matches!(ext, "log" | "index" | "timeindex") {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn complete_swap(dir: &Path, swap: &Path, start: i64, end: i64) -> std::io::Result<()> {
    delete_segments(dir, start, end)?;
    std::fs::rename(swap, segment_path(dir, start, "log"))?;
    sync_dir(dir)
}

/// Finishes a compaction interrupted after its commit point (a `.swap` file exists); called
/// before a log directory is recovered.
pub fn finish_interrupted(dir: &Path) -> Result<(), StorageError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let ctx = || format!("finishing an interrupted compaction in {}", dir.display());
    for entry in entries {
        let path = entry.context(ctx)?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(range) = name.strip_suffix(".swap") else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (start.parse::<i64>(), end.parse::<i64>()) else {
            continue;
        };
        tracing::info!(dir = %dir.display(), start, end, "completing an interrupted compaction");
        complete_swap(dir, &path, start, end).context(ctx)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "compaction_tests.rs"]
mod tests;
