//! Walking a segment's batches from the start, and the running statistics that appends and
//! walks share: next offset, max timestamp and which batches get sparse index entries.
//!
//! Index entries (see [`crate::index`]) are added for a batch when at least
//! `index_interval_bytes` of batches were written since the previous entry, so the first batch
//! of a segment never gets one (a lookup that finds no entry starts at position 0). The time
//! entry added with an offset entry holds the running max timestamp up to that batch.

use inlet_protocol::batch::{verify_crc, BatchHeader, BatchIter};

/// Running per-segment statistics and sparse-index bookkeeping, shared by appends and scans.
#[derive(Debug, Clone)]
pub struct Tracker {
    pub base_offset: i64,
    interval: usize,
    bytes_since_index: usize,
    pub next_offset: i64,
    /// Largest batch max timestamp (-1 when empty) and the base offset of that batch.
    pub max_timestamp: i64,
    pub max_timestamp_offset: i64,
    /// Max timestamp of the first batch: the age used for time-based rolling.
    pub first_batch_timestamp: Option<i64>,
}

impl Tracker {
    pub fn new(base_offset: i64, interval: usize) -> Tracker {
        Tracker {
            base_offset,
            interval,
            bytes_since_index: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            max_timestamp_offset: base_offset,
            first_batch_timestamp: None,
        }
    }

    /// Bytes of batches between sparse index entries.
    pub fn interval(&self) -> usize {
        self.interval
    }

    fn relative(&self, offset: i64) -> u32 {
        // Offsets of a segment stay below base + i32::MAX: the log rolls before that.
        (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32
    }

    /// Accounts for `header` written at `position`; returns the index entries to add.
    pub(crate) fn observe(&mut self, position: usize, header: &BatchHeader) -> IndexEntries {
        if self.first_batch_timestamp.is_none() {
            self.first_batch_timestamp = Some(header.max_timestamp);
        }
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.max_timestamp_offset = header.base_offset;
        }
        let mut entries = IndexEntries::default();
        if self.bytes_since_index >= self.interval {
            let rel = self.relative(header.base_offset);
            entries.offset = Some((rel, position as u32));
            entries.time = Some((self.max_timestamp, rel));
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += header.total_len();
        self.next_offset = header.last_offset() + 1;
        entries
    }

    /// The closing time-index entry: the segment max timestamp and the batch that holds it.
    pub(crate) fn final_time_entry(&self) -> Option<(i64, u32)> {
        (self.next_offset > self.base_offset)
            .then(|| (self.max_timestamp, self.relative(self.max_timestamp_offset)))
    }
}

#[derive(Debug, Default)]
pub(crate) struct IndexEntries {
    pub offset: Option<(u32, u32)>,
    pub time: Option<(i64, u32)>,
}

/// Result of walking a segment's bytes from the start.
#[derive(Debug)]
pub struct Scan {
    /// Bytes of complete, valid, offset-contiguous batches from the start.
    pub valid_len: usize,
    pub tracker: Tracker,
    pub offset_entries: Vec<(u32, u32)>,
    pub time_entries: Vec<(i64, u32)>,
    /// Why the walk stopped before the end of the bytes, if it did.
    pub stopped: Option<String>,
}

/// Walks batches of a segment based at `base_offset`, stopping at the first one that is torn,
/// garbage (zeros included), not contiguous in offsets, or (if `check_crc`) fails its CRC.
pub fn scan(bytes: &[u8], base_offset: i64, interval: usize, check_crc: bool) -> Scan {
    let mut tracker = Tracker::new(base_offset, interval);
    let (mut offset_entries, mut time_entries) = (Vec::new(), Vec::<(i64, u32)>::new());
    let (mut stopped, mut valid_len) = (None, 0);
    for item in BatchIter::new(bytes) {
        let (header, range) = match item {
            Ok(ok) => ok,
            Err(e) => {
                stopped = Some(e.to_string());
                break;
            }
        };
        let problem = if header.base_offset != tracker.next_offset {
            Some(format!(
                "base offset {} where {} was expected",
                header.base_offset, tracker.next_offset
            ))
        } else if header.last_offset_delta < 0
            || header.last_offset() - base_offset >= i64::from(i32::MAX)
        {
            Some(format!(
                "bad last offset delta {}",
                header.last_offset_delta
            ))
        } else if check_crc {
            verify_crc(&bytes[range.clone()])
                .err()
                .map(|e| e.to_string())
        } else {
            None
        };
        if let Some(reason) = problem {
            stopped = Some(reason);
            break;
        }
        let entries = tracker.observe(range.start, &header);
        offset_entries.extend(entries.offset);
        if let Some(t) = entries
            .time
            .filter(|t| time_entries.last().is_none_or(|l| t.0 > l.0))
        {
            time_entries.push(t);
        }
        valid_len = range.end;
    }
    Scan {
        valid_len,
        tracker,
        offset_entries,
        time_entries,
        stopped,
    }
}
