//! A response buffer that does not copy large byte strings it was told about: the record sets of
//! a Fetch response are `Bytes` pointing into memory-mapped segments, and encoding them into one
//! contiguous buffer would copy every fetched byte once more. [`ChunkedBuf`] copies the small
//! encoded fields as usual but, when the encoder writes one of the registered `Bytes`, it records
//! a reference to it instead; the connection then writes the chunks in order.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Byte strings shorter than this are copied: a separate write costs more than the copy.
pub const ZERO_COPY_MIN: usize = 16 * 1024;

pub struct ChunkedBuf {
    chunks: Vec<Bytes>,
    current: BytesMut,
    /// Bytes to pass by reference, in the order the encoder will write them.
    pending: std::collections::VecDeque<Bytes>,
    /// Length of everything in `chunks`.
    sealed: usize,
    /// Set if the encoder asked to revisit already sealed bytes, which this buffer cannot do;
    /// the caller must then fall back to a contiguous buffer.
    unsupported: bool,
    scratch: Vec<u8>,
}

impl ChunkedBuf {
    pub fn new(pass_through: Vec<Bytes>) -> ChunkedBuf {
        ChunkedBuf {
            chunks: Vec::new(),
            current: BytesMut::with_capacity(512),
            pending: pass_through
                .into_iter()
                .filter(|b| b.len() >= ZERO_COPY_MIN)
                .collect(),
            sealed: 0,
            unsupported: false,
            scratch: Vec::new(),
        }
    }

    /// The encoded chunks, or `None` if encoding needed random access (see `unsupported`).
    pub fn finish(mut self) -> Option<Vec<Bytes>> {
        if self.unsupported {
            return None;
        }
        if !self.current.is_empty() {
            self.chunks.push(self.current.freeze());
        }
        Some(self.chunks)
    }

    fn seal_current(&mut self) {
        if !self.current.is_empty() {
            let chunk = self.current.split().freeze();
            self.sealed += chunk.len();
            self.chunks.push(chunk);
        }
    }
}

// SAFETY: every method delegates to `current`, a `BytesMut`, whose `BufMut` implementation
// upholds the trait's contract (`chunk_mut` returns writable memory of at least
// `remaining_mut`, `advance_mut` only after initialising). `put_slice` either delegates too or
// appends a `Bytes` chunk without touching `current`'s uninitialised memory.
unsafe impl BufMut for ChunkedBuf {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: forwarded with the caller's guarantee that `cnt` bytes of `chunk_mut` are
        // initialised; `chunk_mut` came from `current`.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        let is_next = self
            .pending
            .front()
            .is_some_and(|b| b.as_ptr() == src.as_ptr() && b.len() == src.len());
        if is_next {
            if let Some(bytes) = self.pending.pop_front() {
                self.seal_current();
                self.sealed += bytes.len();
                self.chunks.push(bytes);
                return;
            }
        }
        self.current.extend_from_slice(src);
    }
}

impl ByteBufMut for ChunkedBuf {
    fn offset(&self) -> usize {
        self.sealed + self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        match offset.checked_sub(self.sealed) {
            Some(local) => self.current.resize(local, 0),
            None => self.unsupported = true,
        }
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let local = r
            .start
            .checked_sub(self.sealed)
            .zip(r.end.checked_sub(self.sealed));
        match local {
            Some((start, end)) if end <= self.current.len() && start <= end => {
                &mut self.current[start..end]
            }
            _ => {
                self.unsupported = true;
                self.scratch.resize(r.len(), 0);
                &mut self.scratch[..]
            }
        }
    }
}
