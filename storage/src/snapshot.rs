//! Producer-state snapshots, so opening a log replays batch headers only after the snapshot
//! instead of walking every segment.
//!
//! A snapshot is written (not synced) at every segment roll and at close, named
//! `<offset, 20 digits>.snapshot`: the producer table after applying every batch below `offset`.
//! A torn or stale one is never trusted: it carries a checksum, and snapshots above the log end
//! are deleted on open and on truncation. The newest [`KEEP`] are kept.
//!
//! Producers carry the time of their last append, so expiry (`producer.id.expiration.ms`)
//! continues across a restart: an expired producer is gone from every snapshot written after
//! its expiry, and one still in an older snapshot expires again at the first check.
//!
//! Format, big-endian:
//!
//! | size | field                                                            |
//! |-----:|------------------------------------------------------------------|
//! |    4 | magic `IPS3`                                                     |
//! |    8 | `offset` i64                                                     |
//! |    4 | `producer_count` u32                                             |
//! |  ... | per producer: `producer_id` i64, `epoch` i16, `last_timestamp` i64, |
//! |      | `batch_count` u8, then per batch `first_seq` i32, `last_seq` i32, |
//! |      | `base_offset` i64, `last_offset` i64, then `coordinator_epoch` i32 |
//! |      | and `txn_first_offset` i64 (-1: no open transaction)             |
//! |    4 | CRC-32 (IEEE) of everything before it                            |
//!
//! Older formats are still read: `IPS2` (before transactions) lacks the last two fields (no
//! marker seen, no transaction open: there were none); `IPS1` (before expiry) also lacks
//! `last_timestamp`, and its producers are taken as last seen when the snapshot was written
//! (its file's modification time).

use std::io::{self, Write};
use std::path::Path;

use crate::producer_state::{BatchMetadata, ProducerStateTable};
use crate::segment::segment_path;

const MAGIC: &[u8; 4] = b"IPS3";
/// The format without transaction state, still read.
const MAGIC_V2: &[u8; 4] = b"IPS2";
/// The format without `last_timestamp` nor transaction state, still read.
const MAGIC_V1: &[u8; 4] = b"IPS1";
/// How many snapshots are kept.
pub const KEEP: usize = 3;

pub fn encode(table: &ProducerStateTable, offset: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + table.len() * 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&(table.len() as u32).to_be_bytes());
    for (pid, epoch, last_timestamp, batches) in table.iter() {
        out.extend_from_slice(&pid.to_be_bytes());
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&last_timestamp.to_be_bytes());
        out.push(batches.len() as u8);
        for b in batches {
            out.extend_from_slice(&b.first_seq.to_be_bytes());
            out.extend_from_slice(&b.last_seq.to_be_bytes());
            out.extend_from_slice(&b.base_offset.to_be_bytes());
            out.extend_from_slice(&b.last_offset.to_be_bytes());
        }
        let (coordinator_epoch, txn_first_offset) = table.txn_state(pid).unwrap_or((-1, None));
        out.extend_from_slice(&coordinator_epoch.to_be_bytes());
        out.extend_from_slice(&txn_first_offset.unwrap_or(-1).to_be_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Reads fixed-size big-endian fields from a byte slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
}

/// The offset and table of a snapshot, or `None` if it is torn or not a snapshot.
/// `written_ms` stands for the producers' last append time in an `IPS1` snapshot.
pub fn decode(bytes: &[u8], written_ms: i64) -> Option<(i64, ProducerStateTable)> {
    let (body, crc) = bytes.split_last_chunk::<4>()?;
    if crc32fast::hash(body) != u32::from_be_bytes(*crc) {
        return None;
    }
    let mut r = Reader(body);
    let version = match &r.take::<4>()? {
        MAGIC => 3,
        MAGIC_V2 => 2,
        MAGIC_V1 => 1,
        _ => return None,
    };
    let has_timestamps = version >= 2;
    let offset = r.i64()?;
    let count = u32::from_be_bytes(r.take()?);
    let mut table = ProducerStateTable::new();
    for _ in 0..count {
        let pid = r.i64()?;
        let epoch = i16::from_be_bytes(r.take()?);
        let last_timestamp = if has_timestamps { r.i64()? } else { written_ms };
        let [n] = r.take::<1>()?;
        let mut batches = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let (first_seq, last_seq) = (r.i32()?, r.i32()?);
            let (base_offset, last_offset) = (r.i64()?, r.i64()?);
            batches.push(BatchMetadata {
                first_seq,
                last_seq,
                base_offset,
                last_offset,
            });
        }
        table.restore(pid, epoch, last_timestamp, batches);
        if version >= 3 {
            let coordinator_epoch = r.i32()?;
            let first = r.i64()?;
            table.restore_txn(pid, coordinator_epoch, (first >= 0).then_some(first));
        }
    }
    r.0.is_empty().then_some((offset, table))
}

/// Writes the snapshot for `offset` (temp file + rename, no sync) and prunes old ones.
pub fn write(dir: &Path, offset: i64, table: &ProducerStateTable) -> io::Result<()> {
    let path = segment_path(dir, offset, "snapshot");
    let tmp = segment_path(dir, offset, "snapshot.tmp");
    std::fs::File::create(&tmp)?.write_all(&encode(table, offset))?;
    std::fs::rename(&tmp, &path)?;
    let offsets = list(dir)?;
    for &old in offsets.iter().rev().skip(KEEP) {
        std::fs::remove_file(segment_path(dir, old, "snapshot"))?;
    }
    Ok(())
}

/// Snapshot offsets in `dir`, ascending.
pub fn list(dir: &Path) -> io::Result<Vec<i64>> {
    let mut offsets = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".snapshot")) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            offsets.extend(stem.parse::<i64>().ok());
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Deletes snapshots above `log_end` (they describe batches no longer in the log).
pub fn delete_above(dir: &Path, log_end: i64) -> io::Result<()> {
    for offset in list(dir)?.into_iter().filter(|&o| o > log_end) {
        std::fs::remove_file(segment_path(dir, offset, "snapshot"))?;
    }
    Ok(())
}

/// The newest readable snapshot at or below `log_end`.
pub fn load_latest(dir: &Path, log_end: i64) -> io::Result<Option<(i64, ProducerStateTable)>> {
    for offset in list(dir)?.into_iter().rev().filter(|&o| o <= log_end) {
        let path = segment_path(dir, offset, "snapshot");
        let written_ms = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        let bytes = std::fs::read(&path).ok();
        match bytes.as_deref().and_then(|b| decode(b, written_ms)) {
            Some((o, table)) if o == offset => return Ok(Some((o, table))),
            _ => tracing::warn!(file = %path.display(), "ignoring unreadable producer snapshot"),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlet_protocol::batch::{BatchHeader, TestBatchBuilder};

    fn table() -> ProducerStateTable {
        let mut t = ProducerStateTable::new();
        for (pid, seq, off) in [(1, 0, 0), (1, 1, 1), (2, 5, 2)] {
            let b = TestBatchBuilder {
                producer_id: pid,
                producer_epoch: 3,
                base_sequence: seq,
                base_offset: off,
                ..Default::default()
            }
            .build(&[(b"", b"v")]);
            t.replay(&BatchHeader::parse(&b).unwrap(), &b);
        }
        t
    }

    #[test]
    fn snapshot_round_trips_and_torn_snapshots_are_rejected() {
        let bytes = encode(&table(), 42);
        assert_eq!(decode(&bytes, 0), Some((42, table())));
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut], 0), None);
        }
        let mut flipped = bytes.clone();
        flipped[14] ^= 1;
        assert_eq!(decode(&flipped, 0), None);
    }

    #[test]
    fn last_append_times_survive_and_old_format_snapshots_still_load() {
        let mut t = table();
        let mut staged = t.stage_at(1_000_000);
        let b = TestBatchBuilder {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: 0,
            base_offset: 3,
            ..Default::default()
        }
        .build(&[(b"", b"v")]);
        staged.check(&BatchHeader::parse(&b).unwrap()).unwrap();
        let updates = staged.into_updates();
        t.apply(updates);
        let (_, decoded) = decode(&encode(&t, 4), 0).unwrap();
        assert_eq!(decoded, t);
        // Producers 1 and 2 were replayed from batches stamped 0; 7 appended at 1_000_000.
        assert_eq!(decoded.clone().expire(1_000_000 + 500, 1_000), 2);
        assert_eq!(decoded.clone().expire(1_000_000 + 1_000, 1_000), 3);

        // An IPS1 snapshot of the same producers: no times, so the file's time stands in.
        let mut v1 = MAGIC_V1.to_vec();
        v1.extend_from_slice(&4i64.to_be_bytes());
        v1.extend_from_slice(&(t.len() as u32).to_be_bytes());
        for (pid, epoch, _, batches) in t.iter() {
            v1.extend_from_slice(&pid.to_be_bytes());
            v1.extend_from_slice(&epoch.to_be_bytes());
            v1.push(batches.len() as u8);
            for b in batches {
                for field in [
                    b.first_seq.to_be_bytes().to_vec(),
                    b.last_seq.to_be_bytes().to_vec(),
                ] {
                    v1.extend_from_slice(&field);
                }
                v1.extend_from_slice(&b.base_offset.to_be_bytes());
                v1.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_be_bytes());
        let (offset, mut old) = decode(&v1, 2_000_000).unwrap();
        assert_eq!((offset, old.len()), (4, 3));
        assert_eq!(old.expire(2_000_999, 1_000), 0);
        assert_eq!(old.expire(2_001_000, 1_000), 3);
    }

    #[test]
    fn open_transactions_and_coordinator_epochs_survive_and_v2_snapshots_still_load() {
        let mut t = table();
        let b = TestBatchBuilder {
            producer_id: 2,
            producer_epoch: 3,
            base_sequence: 6,
            base_offset: 3,
            transactional: true,
            ..Default::default()
        }
        .build(&[(b"", b"v")]);
        t.replay(&BatchHeader::parse(&b).unwrap(), &b);
        let marker = crate::txn::TxnMarker {
            producer_id: 1,
            producer_epoch: 3,
            coordinator_epoch: 9,
            commit: true,
        };
        let m = marker.encode(4, 0, 0);
        t.replay(&BatchHeader::parse(&m).unwrap(), &m);
        assert_eq!(t.first_open_txn_offset(), Some(3));
        let (_, decoded) = decode(&encode(&t, 5), 0).unwrap();
        assert_eq!(decoded, t);
        assert_eq!(decoded.txn_state(1), Some((9, None)));
        assert_eq!(decoded.txn_state(2), Some((-1, Some(3))));
        assert_eq!(decoded.first_open_txn_offset(), Some(3));

        // The same table as IPS2 wrote it (no transaction fields): loads with none open.
        let plain = table();
        let v3 = encode(&plain, 4);
        let mut v2 = MAGIC_V2.to_vec();
        let mut r = Reader(&v3[4..v3.len() - 4]);
        v2.extend_from_slice(&r.take::<12>().unwrap());
        for _ in 0..plain.len() {
            v2.extend_from_slice(&r.take::<18>().unwrap());
            let [n] = r.take::<1>().unwrap();
            v2.push(n);
            for _ in 0..n {
                v2.extend_from_slice(&r.take::<24>().unwrap());
            }
            r.take::<12>().unwrap();
        }
        let crc = crc32fast::hash(&v2);
        v2.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(decode(&v2, 0), Some((4, plain)));
    }

    #[test]
    fn newest_usable_snapshot_is_loaded_and_only_a_few_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        for offset in [10, 20, 30, 40] {
            write(dir.path(), offset, &table()).unwrap();
        }
        assert_eq!(list(dir.path()).unwrap(), vec![20, 30, 40]);
        std::fs::write(segment_path(dir.path(), 30, "snapshot"), b"torn").unwrap();
        assert_eq!(
            load_latest(dir.path(), 35).unwrap().map(|(o, _)| o),
            Some(20)
        );
        delete_above(dir.path(), 25).unwrap();
        assert_eq!(list(dir.path()).unwrap(), vec![20]);
    }
}
