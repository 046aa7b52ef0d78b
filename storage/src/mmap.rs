//! Memory-mapped files: the only module with `unsafe`.
//!
//! A [`MappedFile`] is a shared mapping of one file. It keeps a *committed* length that only
//! grows. The one invariant everything rests on:
//!
//! > Bytes below `committed` are never written again, and writes happen only through the single
//! > [`MapWriter`] of a mapping (with `pwrite` to the file, whose page cache the mapping shares),
//! > at or above `committed`.
//!
//! Readers get `&[u8]` or [`Bytes`] views of `[0, committed)` only, so they never alias a write.
//! Views hold an `Arc` of the mapping, so a mapping outlives its last reader even after its
//! segment is rolled, truncated (callers replace the file, never shrink a mapped one below
//! `committed`) or deleted (an unlinked file stays alive while mapped).
//!
//! Outside this process the usual mmap caveat applies: the files must not be modified or
//! shrunk by anyone else while the broker runs.

#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};

/// A shared mapping of a file with a monotonically growing committed prefix.
#[derive(Debug)]
pub struct MappedFile {
    raw: MmapRaw,
    committed: AtomicUsize,
}

/// The unique writer of a writable [`MappedFile`]. Not `Clone`.
///
/// The mapping spans the segment's whole capacity, but disk blocks are reserved only when an
/// append needs them, a chunk ahead of the write position ([`RESERVE_CHUNK`]): a partition
/// costs disk for what it holds, not for its maximum segment size, and opening or creating an
/// active segment needs no free space at all (a broker starts on a full disk). When the disk
/// cannot give a whole chunk, just the bytes of the append are reserved; when it cannot give
/// those either, the append fails with the filesystem's error (ENOSPC) before any byte is
/// written, and the next append simply tries again, so writes resume once space is freed.
///
/// Writes stay below `reserved` (the file's length), and readers see only committed bytes,
/// which were all written: no page past the end of the file or without disk blocks is ever
/// touched through the mapping (which would raise SIGBUS).
#[derive(Debug)]
pub struct MapWriter {
    map: Arc<MappedFile>,
    file: File,
    reserved: usize,
}

/// How far ahead of the write position disk blocks are reserved.
pub const RESERVE_CHUNK: usize = 8 * 1024 * 1024;

/// How many leading bytes of an append [`MapWriter::append_patched_at`] lets its caller rewrite
/// (a record batch's base offset and partition leader epoch lie in its first 16 bytes).
pub const PATCHABLE_PREFIX: usize = 16;

impl MappedFile {
    /// Maps the whole file read-only; all of it is committed.
    pub fn read_only(file: &File) -> io::Result<Arc<MappedFile>> {
        let raw = MmapOptions::new().map_raw_read_only(file)?;
        let committed = AtomicUsize::new(raw.len());
        Ok(Arc::new(MappedFile { raw, committed }))
    }

    /// Maps `len` bytes of `file` (opened read-write, at least `committed` long) for appending,
    /// with the first `committed` bytes already holding data. Reserves no disk: the first append
    /// does (see [`MapWriter`]), so this works on a full disk. Returns the mapping and its only
    /// writer. The mapping itself is read-only: appends go through the file (see
    /// [`MapWriter::append_patched_at`]).
    pub fn writable(file: &File, len: usize, committed: usize) -> io::Result<MapWriter> {
        if committed > len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "committed beyond map length",
            ));
        }
        let reserved = usize::try_from(file.metadata()?.len())
            .unwrap_or(usize::MAX)
            .clamp(committed, len);
        let raw = MmapOptions::new().len(len).map_raw_read_only(file)?;
        Ok(MapWriter {
            map: Arc::new(MappedFile {
                raw,
                committed: AtomicUsize::new(committed),
            }),
            file: file.try_clone()?,
            reserved,
        })
    }

    /// Length of the immutable, readable prefix.
    pub fn committed(&self) -> usize {
        self.committed.load(Ordering::Acquire)
    }

    /// The committed prefix.
    pub fn bytes(&self) -> &[u8] {
        let len = self.committed();
        if len == 0 {
            return &[];
        }
        // SAFETY: `[0, len)` lies inside the mapping (committed <= map length, checked when it
        // grows) and is never written again while the mapping exists (module invariant); the
        // returned slice borrows `self`, so the mapping outlives it.
        unsafe { std::slice::from_raw_parts(self.raw.as_ptr(), len) }
    }

    /// A zero-copy [`Bytes`] over `range` of the committed prefix, keeping the mapping alive.
    /// Returns `None` if the range is not inside the committed prefix.
    pub fn slice(self: &Arc<Self>, range: Range<usize>) -> Option<Bytes> {
        if range.start > range.end || range.end > self.committed() {
            return None;
        }
        if range.is_empty() {
            return Some(Bytes::new());
        }
        Some(Bytes::from_owner(MapSlice {
            map: Arc::clone(self),
            range,
        }))
    }

    /// Drops this process's page-table entries for the whole pages inside `range`, so idle data
    /// stops counting as resident memory; the bytes stay in the page cache or on disk and fault
    /// back in, unchanged, when read again.
    pub fn release_pages(&self, range: Range<usize>) -> io::Result<()> {
        let page = page_size();
        let start = range.start.div_ceil(page) * page;
        let end = (range.end.min(self.committed()) / page) * page;
        if start >= end {
            return Ok(());
        }
        // SAFETY: the mapping is a shared file mapping (`map_raw`/`map_raw_read_only` map
        // MAP_SHARED), for which MADV_DONTNEED only unmaps pages: later accesses read the same
        // bytes back from the page cache or the file, and dirty pages stay queued for writeback.
        // No view of `[start, end)` ever observes different contents, so outstanding `&[u8]` and
        // `Bytes` views stay valid. `[start, end)` is page-aligned and inside the mapping.
        unsafe {
            self.raw
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
        }
    }

    /// Writes dirty pages of `range` (clamped to the mapping) back to the file (msync).
    pub fn flush_range(&self, range: Range<usize>) -> io::Result<()> {
        let end = range.end.min(self.raw.len());
        if range.start >= end {
            return Ok(());
        }
        self.raw.flush_range(range.start, end - range.start)
    }
}

impl MapWriter {
    /// The shared mapping this writer appends to.
    pub fn map(&self) -> &Arc<MappedFile> {
        &self.map
    }

    /// Bytes still free after the committed prefix.
    pub fn remaining(&self) -> usize {
        self.map.raw.len() - self.map.committed()
    }

    /// Makes sure the file has blocks up to at least `end` (and a chunk beyond, within the
    /// mapping, when the disk has room for it), so writes below `end` land on reserved disk.
    /// Fails, with nothing written, when the disk cannot give the blocks up to `end`.
    fn reserve_for(&mut self, end: usize) -> io::Result<()> {
        if end <= self.reserved {
            return Ok(());
        }
        let len = self.map.raw.len();
        let ahead = end.saturating_add(RESERVE_CHUNK).min(len);
        match preallocate_range(&self.file, self.reserved as u64, ahead as u64) {
            Ok(()) => {
                self.reserved = ahead;
                return Ok(());
            }
            Err(e) if !is_out_of_space(&e) => return Err(e),
            Err(_) => {}
        }
        // The disk is short of a whole chunk: take just what this write needs (page-rounded),
        // leaving the rest of the free space to other partitions.
        let page = page_size();
        let needed = end.div_ceil(page).saturating_mul(page).min(len).max(end);
        preallocate_range(&self.file, self.reserved as u64, needed as u64)?;
        self.reserved = needed;
        Ok(())
    }

    /// Copies `data` right after the committed prefix and commits it.
    pub fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.append_patched_at(data, &[], |_, _| {})
    }

    /// Copies `data` (several record batches back to back) right after the committed prefix,
    /// with the first [`PATCHABLE_PREFIX`] bytes at each position of `starts` (ascending, inside
    /// `data`) as `patch(i, prefix)` edits them, then commits all of it at once.
    ///
    /// The bytes go in with `pwrite`, not through the mapping: writing to a page of the mapping
    /// that is not in memory yet makes the kernel zero it first, which cost more CPU than the copy
    /// itself; `pwrite` fills page-cache pages directly. A shared mapping and the file's page
    /// cache are the same pages, so readers of the mapping see the bytes once committed.
    ///
    /// All or nothing: if reserving disk or any write fails (ENOSPC), nothing is committed,
    /// readers never see the partial bytes, and they are zeroed (best effort) so that recovery
    /// after a crash cannot mistake a partial request for acknowledged batches; the next append
    /// overwrites them.
    pub fn append_patched_at(
        &mut self,
        data: &[u8],
        starts: &[usize],
        mut patch: impl FnMut(usize, &mut [u8]),
    ) -> io::Result<()> {
        let at = self.map.committed();
        if data.len() > self.remaining() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "mapped segment is full",
            ));
        }
        if data.is_empty() {
            return Ok(());
        }
        if starts.windows(2).any(|w| w[0] >= w[1])
            || starts.last().is_some_and(|&s| s >= data.len())
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "patch positions must ascend inside the data",
            ));
        }
        self.reserve_for(at + data.len())?;
        let mut written = 0;
        let result = (|| {
            for (i, &start) in starts.iter().enumerate() {
                self.file
                    .write_all_at(&data[written..start], (at + written) as u64)?;
                written = start;
                let next = starts.get(i + 1).copied().unwrap_or(data.len());
                let end = (start + PATCHABLE_PREFIX).min(next).min(data.len());
                let mut prefix = [0u8; PATCHABLE_PREFIX];
                let len = end - start;
                prefix[..len].copy_from_slice(&data[start..end]);
                patch(i, &mut prefix[..len]);
                self.file
                    .write_all_at(&prefix[..len], (at + start) as u64)?;
                written = end;
            }
            self.file
                .write_all_at(&data[written..], (at + written) as u64)?;
            written = data.len();
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.map.committed.store(at + data.len(), Ordering::Release);
                Ok(())
            }
            Err(e) => {
                self.zero_uncommitted(at, written.max(PATCHABLE_PREFIX).min(data.len()));
                Err(e)
            }
        }
    }

    /// Overwrites `len` uncommitted bytes from `at` with zeros (recovery reads a zero
    /// `batchLength` as the end of the log). Best effort: the blocks are already reserved.
    fn zero_uncommitted(&self, at: usize, len: usize) {
        const ZEROS: [u8; 4096] = [0; 4096];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(ZEROS.len());
            if let Err(error) = self.file.write_all_at(&ZEROS[..n], (at + done) as u64) {
                tracing::warn!(%error, position = at + done, "could not zero a failed append");
                return;
            }
            done += n;
        }
    }
}

/// Owner of a zero-copy [`Bytes`]: the mapping plus the committed range it exposes.
struct MapSlice {
    map: Arc<MappedFile>,
    range: Range<usize>,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `range` was checked to lie within the committed prefix when this slice was
        // created; committed bytes are never written again and the `Arc` keeps the mapping alive.
        unsafe {
            std::slice::from_raw_parts(
                self.map.raw.as_ptr().add(self.range.start),
                self.range.len(),
            )
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(4096)
}

/// Whether `error` says the filesystem (or the user's quota) has no room left.
pub fn is_out_of_space(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT)
    ) || error.kind() == io::ErrorKind::StorageFull
}

/// Reserves disk blocks for bytes `from..to` of `file`, extending it to at least `to`, so that
/// writes through a mapping cannot fail with SIGBUS on a full disk. Falls back to a sparse
/// `set_len` where the filesystem cannot preallocate.
pub fn preallocate_range(file: &File, from: u64, to: u64) -> io::Result<()> {
    if to <= from {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (
            libc::off_t::try_from(from),
            libc::off_t::try_from(to - from),
        ) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "length too large",
            ));
        };
        // SAFETY: `fallocate` only reads its integer arguments; the descriptor is valid for the
        // duration of the call because `file` is borrowed.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {}
            _ => return Err(err),
        }
    }
    if file.metadata()?.len() < to {
        file.set_len(to)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_file() -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        (dir, file)
    }

    #[test]
    fn appended_bytes_are_visible_and_slices_outlive_the_writer() {
        let (_dir, file) = temp_file();
        let mut w = MappedFile::writable(&file, 64, 0).unwrap();
        w.append(b"hello").unwrap();
        let map = Arc::clone(w.map());
        let s = map.slice(1..5).unwrap();
        w.append(b" world").unwrap();
        drop(w);
        drop(map);
        assert_eq!(&s[..], b"ello");
    }

    #[test]
    fn slices_beyond_committed_and_overfull_appends_are_refused() {
        let (_dir, file) = temp_file();
        let mut w = MappedFile::writable(&file, 8, 2).unwrap();
        assert!(w.map().slice(0..3).is_none());
        assert!(w.append(&[1; 7]).is_err());
        w.append(&[1; 6]).unwrap();
        assert_eq!(w.remaining(), 0);
        assert_eq!(w.map().bytes().len(), 8);
    }

    #[test]
    fn disk_is_reserved_a_chunk_ahead_not_for_the_whole_mapping() {
        let (_dir, file) = temp_file();
        let capacity = 4 * RESERVE_CHUNK;
        let mut w = MappedFile::writable(&file, capacity, 0).unwrap();
        // Nothing is reserved before the first append: an empty segment costs no disk.
        assert_eq!(file.metadata().unwrap().len(), 0);
        w.append(b"x").unwrap();
        assert_eq!(file.metadata().unwrap().len() as usize, RESERVE_CHUNK + 1);
        // Within the reservation: no growth.
        w.append(&vec![7; RESERVE_CHUNK]).unwrap();
        assert_eq!(file.metadata().unwrap().len() as usize, RESERVE_CHUNK + 1);
        w.append(&vec![8; 2 * RESERVE_CHUNK]).unwrap();
        assert_eq!(file.metadata().unwrap().len() as usize, capacity);
        assert_eq!(w.map().bytes()[RESERVE_CHUNK], 7);
    }

    #[test]
    fn released_pages_read_back_unchanged_through_existing_views() {
        let (_dir, file) = temp_file();
        let mut w = MappedFile::writable(&file, 4 * RESERVE_CHUNK, 0).unwrap();
        let data: Vec<u8> = (0..3 * 4096 + 100).map(|i| (i % 251) as u8).collect();
        w.append(&data).unwrap();
        let view = w.map().slice(0..data.len()).unwrap();
        w.map().release_pages(0..data.len()).unwrap();
        assert_eq!(&view[..], &data[..]);
        w.append(b"more").unwrap();
        assert_eq!(&w.map().bytes()[data.len()..], b"more");
    }

    #[test]
    fn patched_multi_append_stamps_each_start_and_commits_once() {
        let (_dir, file) = temp_file();
        let mut w = MappedFile::writable(&file, 128, 0).unwrap();
        let data: Vec<u8> = (0..60).collect();
        w.append_patched_at(&data, &[0, 20, 50], |i, p| p[0] = 200 + i as u8)
            .unwrap();
        let bytes = w.map().bytes();
        assert_eq!((bytes[0], bytes[20], bytes[50]), (200, 201, 202));
        assert_eq!(&bytes[1..20], &data[1..20]);
        assert_eq!(&bytes[51..], &data[51..]);
        // Out-of-order starts fail and commit nothing.
        assert!(w.append_patched_at(&data, &[10, 5], |_, _| {}).is_err());
        assert_eq!(w.map().committed(), 60);
        assert!(w.append_patched_at(&[1; 100], &[0], |_, _| {}).is_err());
        assert_eq!(w.map().committed(), 60);
    }

    #[test]
    fn read_only_map_sees_file_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(b"abc")
            .unwrap();
        let map = MappedFile::read_only(&File::open(&path).unwrap()).unwrap();
        assert_eq!(map.bytes(), b"abc");
        let empty = dir.path().join("e");
        std::fs::File::create(&empty).unwrap();
        assert_eq!(
            MappedFile::read_only(&File::open(&empty).unwrap())
                .unwrap()
                .bytes(),
            b""
        );
    }
}
