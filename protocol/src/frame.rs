//! Kafka framing: every request and response is a 4-byte big-endian length followed by that many
//! bytes. `FrameReader` owns a connection's read buffer and hands out whole frames. It refuses a
//! length above the configured maximum (`socket.request.max.bytes`) before reading the body, and
//! it never reserves the declared length up front: the buffer grows with the bytes that actually
//! arrive, so a peer that declares 100 MiB and sends ten bytes costs ten bytes. The caller learns
//! a frame's length with [`FrameReader::next_length`] before the body is read (the broker acquires
//! that many bytes of its request budget there), and can bound how long the peer may stay silent
//! between frames (`connections.max.idle.ms`) and inside one (`connections.max.stall.ms`).

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes of the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// Capacity of a connection's read buffer between frames, and the smallest step it grows by.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {length} is negative")]
    NegativeLength { length: i32 },
    #[error("frame length {length} exceeds the limit of {max} bytes (socket.request.max.bytes)")]
    TooLarge { length: usize, max: usize },
    #[error("connection closed after {buffered} bytes of a {expected}-byte frame")]
    Truncated { buffered: usize, expected: usize },
    #[error("no request for {after:?} (connections.max.idle.ms)")]
    Idle { after: Duration },
    #[error(
        "no bytes for {after:?} after {buffered} of a {expected}-byte frame \
         (connections.max.stall.ms)"
    )]
    Stalled {
        after: Duration,
        buffered: usize,
        expected: usize,
    },
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// How long a peer may stay silent; `None` waits forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadTimeouts {
    /// Between frames: no byte of a next frame yet.
    pub idle: Option<Duration>,
    /// Inside a frame: part of it has arrived and the peer sends nothing more.
    pub stall: Option<Duration>,
}

/// Reads length-prefixed frames from a byte stream.
pub struct FrameReader<R> {
    reader: R,
    buffer: BytesMut,
    max_frame: usize,
    timeouts: ReadTimeouts,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R, max_frame: usize) -> Self {
        FrameReader {
            reader,
            buffer: BytesMut::with_capacity(READ_CHUNK),
            max_frame,
            timeouts: ReadTimeouts::default(),
        }
    }

    /// Bounds how long reads wait for the peer (see [`ReadTimeouts`]).
    pub fn with_timeouts(mut self, timeouts: ReadTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Waits for the next frame's length prefix and returns the length (checked against the
    /// maximum), without reading the body; `None` on a clean end of stream (the peer closed
    /// between frames). Calling it again before [`next_frame`](Self::next_frame) returns the same
    /// length.
    pub async fn next_length(&mut self) -> Result<Option<usize>, FrameError> {
        loop {
            if let Some(length) = self.buffered_length()? {
                return Ok(Some(length));
            }
            if !self.fill(READ_CHUNK).await? {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                return Err(self.truncated());
            }
        }
    }

    /// The next whole frame without its length prefix, or `None` on a clean end of stream.
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some(length) = self.next_length().await? else {
            return Ok(None);
        };
        let total = LENGTH_PREFIX + length;
        while self.buffer.len() < total {
            // Grow with what has arrived (at most doubling it), never past the frame: the
            // declared length is a claim, the bytes received are a fact.
            let missing = total - self.buffer.len();
            let step = missing.min(self.buffer.len().max(READ_CHUNK));
            if self.buffer.capacity() - self.buffer.len() < step {
                self.buffer.reserve(step);
            }
            // Read ahead of the frame by at most one chunk: bytes of later frames are read once
            // their own length has been granted.
            if !self.fill(missing.max(READ_CHUNK)).await? {
                return Err(self.truncated());
            }
        }
        self.buffer.advance(LENGTH_PREFIX);
        let frame = self.buffer.split_to(length).freeze();
        if length > READ_CHUNK {
            // The rest of the buffer still shares the frame's allocation; move the few bytes of
            // the next frame out so an idle connection does not keep a large buffer alive.
            let mut rest = BytesMut::with_capacity(READ_CHUNK.max(self.buffer.len()));
            rest.extend_from_slice(&self.buffer);
            self.buffer = rest;
        }
        Ok(Some(frame))
    }

    /// True when bytes of a further frame are already buffered, so a caller batching responses
    /// knows another request follows without waiting on the socket.
    pub fn has_buffered(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// Reads at most `max` bytes of what the peer has sent into the buffer; false at end of
    /// stream. Waits at most the idle timeout between frames and the stall timeout inside one.
    async fn fill(&mut self, max: usize) -> Result<bool, FrameError> {
        let between_frames = self.buffer.is_empty();
        let limit = if between_frames {
            self.timeouts.idle
        } else {
            self.timeouts.stall
        };
        let mut buffer = (&mut self.buffer).limit(max);
        let read = self.reader.read_buf(&mut buffer);
        let read = match limit {
            None => read.await,
            Some(after) => match tokio::time::timeout(after, read).await {
                Ok(read) => read,
                Err(_) if between_frames => return Err(FrameError::Idle { after }),
                Err(_) => {
                    return Err(FrameError::Stalled {
                        after,
                        buffered: self.buffer.len(),
                        expected: self.expected_len(),
                    })
                }
            },
        };
        Ok(read? > 0)
    }

    fn truncated(&self) -> FrameError {
        FrameError::Truncated {
            buffered: self.buffer.len(),
            expected: self.expected_len(),
        }
    }

    fn declared_length(&self) -> Option<i32> {
        let prefix = self.buffer.get(..LENGTH_PREFIX)?;
        Some(i32::from_be_bytes([
            prefix[0], prefix[1], prefix[2], prefix[3],
        ]))
    }

    fn expected_len(&self) -> usize {
        match self.declared_length() {
            None => LENGTH_PREFIX,
            Some(length) => LENGTH_PREFIX + length.max(0) as usize,
        }
    }

    fn buffered_length(&self) -> Result<Option<usize>, FrameError> {
        let Some(length) = self.declared_length() else {
            return Ok(None);
        };
        if length < 0 {
            return Err(FrameError::NegativeLength { length });
        }
        let length = length as usize;
        if length > self.max_frame {
            return Err(FrameError::TooLarge {
                length,
                max: self.max_frame,
            });
        }
        Ok(Some(length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn frames_of(input: &[u8], max: usize) -> Vec<Result<Option<Bytes>, String>> {
        let mut reader = FrameReader::new(input, max);
        let mut out = Vec::new();
        loop {
            match reader.next_frame().await {
                Ok(Some(frame)) => out.push(Ok(Some(frame))),
                Ok(None) => {
                    out.push(Ok(None));
                    return out;
                }
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn splits_consecutive_frames() {
        let input = [0, 0, 0, 2, b'a', b'b', 0, 0, 0, 0, 0, 0, 0, 1, b'c'];
        let frames = frames_of(&input, 100).await;
        assert_eq!(
            frames,
            vec![
                Ok(Some(Bytes::from_static(b"ab"))),
                Ok(Some(Bytes::new())),
                Ok(Some(Bytes::from_static(b"c"))),
                Ok(None)
            ]
        );
    }

    #[tokio::test]
    async fn refuses_oversized_length_before_reading_body() {
        let input = [0x7f, 0xff, 0xff, 0xff, 1, 2, 3];
        let frames = frames_of(&input, 100 * 1024 * 1024).await;
        assert!(matches!(&frames[0], Err(e) if e.contains("exceeds the limit")));
    }

    #[tokio::test]
    async fn reports_negative_length() {
        let frames = frames_of(&[0xff, 0xff, 0xff, 0xfe], 100).await;
        assert!(matches!(&frames[0], Err(e) if e.contains("negative")));
    }

    #[tokio::test]
    async fn reports_truncated_frame() {
        let frames = frames_of(&[0, 0, 0, 10, 1, 2], 100).await;
        assert_eq!(
            frames,
            vec![Err(
                "connection closed after 6 bytes of a 14-byte frame".to_string()
            )]
        );
    }

    /// A peer that declares 100 MiB and sends a few bytes: the buffer holds what arrived, not
    /// what was declared.
    #[tokio::test]
    async fn buffer_grows_with_the_bytes_that_arrive() {
        let (mut peer, socket) = tokio::io::duplex(1 << 20);
        let mut reader = FrameReader::new(socket, 100 * 1024 * 1024);
        let declared = 100 * 1024 * 1024 - 1;
        peer.write_all(&(declared as i32).to_be_bytes())
            .await
            .unwrap();
        peer.write_all(&[7; 10]).await.unwrap();
        assert_eq!(reader.next_length().await.unwrap(), Some(declared));
        let pending = tokio::time::timeout(Duration::from_millis(50), reader.next_frame()).await;
        assert!(pending.is_err(), "the frame is not complete yet");
        assert!(
            reader.buffer.capacity() <= 2 * READ_CHUNK,
            "capacity {} for 14 bytes",
            reader.buffer.capacity()
        );
        // A megabyte more: capacity follows the bytes received, within a factor of four.
        let mut sent = 14;
        for _ in 0..16 {
            peer.write_all(&[7; 64 * 1024]).await.unwrap();
            sent += 64 * 1024;
        }
        let pending = tokio::time::timeout(Duration::from_millis(50), reader.next_frame()).await;
        assert!(pending.is_err());
        assert_eq!(reader.buffer.len(), sent);
        assert!(
            reader.buffer.capacity() <= 4 * sent,
            "{}",
            reader.buffer.capacity()
        );
    }

    #[tokio::test]
    async fn reads_ahead_of_a_frame_by_one_chunk_at_most() {
        let (mut peer, socket) = tokio::io::duplex(16 << 20);
        let mut reader = FrameReader::new(socket, 10 << 20);
        for _ in 0..2 {
            peer.write_all(&(3_000_000i32).to_be_bytes()).await.unwrap();
            peer.write_all(&vec![1u8; 3_000_000]).await.unwrap();
        }
        let first = reader.next_frame().await.unwrap().unwrap();
        assert_eq!(first.len(), 3_000_000);
        assert!(
            reader.buffer.len() <= READ_CHUNK,
            "{} bytes of the next frame read before its length was granted",
            reader.buffer.len()
        );
        assert_eq!(reader.next_frame().await.unwrap().unwrap().len(), 3_000_000);
    }

    #[tokio::test]
    async fn a_large_frame_arrives_whole_and_its_buffer_is_let_go() {
        let (mut peer, socket) = tokio::io::duplex(64 * 1024);
        let mut reader = FrameReader::new(socket, 10 << 20);
        let body: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        let writer = tokio::spawn(async move {
            peer.write_all(&(body.len() as i32).to_be_bytes())
                .await
                .unwrap();
            peer.write_all(&body).await.unwrap();
            peer.write_all(&[0, 0, 0, 1, 9]).await.unwrap();
            (peer, body)
        });
        let frame = reader.next_frame().await.unwrap().unwrap();
        let (_peer, body) = writer.await.unwrap();
        assert_eq!(&frame[..], &body[..]);
        assert_eq!(
            reader.next_frame().await.unwrap(),
            Some(Bytes::from_static(&[9]))
        );
        assert!(reader.buffer.capacity() <= 2 * READ_CHUNK);
    }

    #[tokio::test]
    async fn silence_between_frames_is_idle_and_inside_one_is_a_stall() {
        let timeouts = ReadTimeouts {
            idle: Some(Duration::from_millis(40)),
            stall: Some(Duration::from_millis(20)),
        };
        let (_peer, socket) = tokio::io::duplex(1024);
        let mut reader = FrameReader::new(socket, 1024).with_timeouts(timeouts);
        assert!(matches!(
            reader.next_frame().await,
            Err(FrameError::Idle { .. })
        ));

        let (mut peer, socket) = tokio::io::duplex(1024);
        let mut reader = FrameReader::new(socket, 1024).with_timeouts(timeouts);
        peer.write_all(&[0, 0, 0, 10, 1, 2]).await.unwrap();
        let result = reader.next_frame().await;
        assert!(
            matches!(
                result,
                Err(FrameError::Stalled {
                    buffered: 6,
                    expected: 14,
                    ..
                })
            ),
            "{result:?}"
        );

        // Half a length prefix is a started frame too.
        let (mut peer, socket) = tokio::io::duplex(1024);
        let mut reader = FrameReader::new(socket, 1024).with_timeouts(timeouts);
        peer.write_all(&[0, 0]).await.unwrap();
        assert!(matches!(
            reader.next_length().await,
            Err(FrameError::Stalled { .. })
        ));
    }
}
