//! Memory-mapped files: the only module with `unsafe`.
//!
//! A [`MappedFile`] is a shared mapping of one file. It keeps a *committed* length that only
//! grows. The one invariant everything rests on:
//!
//! > Bytes below `committed` are never written through this mapping again, and writes happen only
//! > through the single [`MapWriter`] of a mapping, at or above `committed`.
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
#[derive(Debug)]
pub struct MapWriter {
    map: Arc<MappedFile>,
}

impl MappedFile {
    /// Maps the whole file read-only; all of it is committed.
    pub fn read_only(file: &File) -> io::Result<Arc<MappedFile>> {
        let raw = MmapOptions::new().map_raw_read_only(file)?;
        let committed = AtomicUsize::new(raw.len());
        Ok(Arc::new(MappedFile { raw, committed }))
    }

    /// Maps `len` bytes of `file` (opened read-write, at least `len` long) writable, with the
    /// first `committed` bytes already holding data. Returns the mapping and its only writer.
    pub fn writable(file: &File, len: usize, committed: usize) -> io::Result<MapWriter> {
        if committed > len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "committed beyond map length",
            ));
        }
        let raw = MmapOptions::new().len(len).map_raw(file)?;
        let committed = AtomicUsize::new(committed);
        Ok(MapWriter {
            map: Arc::new(MappedFile { raw, committed }),
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

    /// Copies `data` right after the committed prefix and commits it.
    pub fn append(&mut self, data: &[u8]) -> io::Result<()> {
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
        // SAFETY: `[at, at + data.len())` is inside the mapping (checked above) and at or above
        // `committed`, so no reader view overlaps it; `self` is the only writer (`&mut self`, one
        // writer per mapping), so no other write overlaps it; `data` lies outside the mapping or
        // in its committed prefix (the only part ever handed out), so it does not overlap the
        // destination. The mapping was created writable in `MappedFile::writable`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.map.raw.as_mut_ptr().add(at),
                data.len(),
            );
        }
        self.map.committed.store(at + data.len(), Ordering::Release);
        Ok(())
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

/// Reserves disk blocks for `len` bytes of `file` (extending it), so that writes through a
/// mapping cannot fail with SIGBUS on a full disk. Falls back to a sparse `set_len` where the
/// filesystem cannot preallocate.
pub fn preallocate(file: &File, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let Ok(len_off) = libc::off_t::try_from(len) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "length too large",
            ));
        };
        // SAFETY: `fallocate` only reads its integer arguments; the descriptor is valid for the
        // duration of the call because `file` is borrowed.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len_off) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {}
            _ => return Err(err),
        }
    }
    if file.metadata()?.len() < len {
        file.set_len(len)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_file(len: u64) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        preallocate(&file, len).unwrap();
        (dir, file)
    }

    #[test]
    fn appended_bytes_are_visible_and_slices_outlive_the_writer() {
        let (_dir, file) = temp_file(64);
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
        let (_dir, file) = temp_file(8);
        let mut w = MappedFile::writable(&file, 8, 2).unwrap();
        assert!(w.map().slice(0..3).is_none());
        assert!(w.append(&[1; 7]).is_err());
        w.append(&[1; 6]).unwrap();
        assert_eq!(w.remaining(), 0);
        assert_eq!(w.map().bytes().len(), 8);
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
