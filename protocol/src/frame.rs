//! Kafka framing: every request and response is a 4-byte big-endian length followed by that many
//! bytes. `FrameReader` owns a connection's read buffer and hands out whole frames; it refuses a
//! length above the configured maximum before reading (or allocating) the body, so a peer cannot make
//! the broker buffer an arbitrary amount.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes of the length prefix.
pub const LENGTH_PREFIX: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {length} is negative")]
    NegativeLength { length: i32 },
    #[error("frame length {length} exceeds the limit of {max} bytes (socket.request.max.bytes)")]
    TooLarge { length: usize, max: usize },
    #[error("connection closed after {buffered} bytes of a {expected}-byte frame")]
    Truncated { buffered: usize, expected: usize },
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads length-prefixed frames from a byte stream.
pub struct FrameReader<R> {
    reader: R,
    buffer: BytesMut,
    max_frame: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R, max_frame: usize) -> Self {
        FrameReader {
            reader,
            buffer: BytesMut::with_capacity(64 * 1024),
            max_frame,
        }
    }

    /// The next whole frame without its length prefix, or `None` on a clean end of stream (the
    /// peer closed between frames).
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = self.parse_buffered()? {
                return Ok(Some(frame));
            }
            if self.reader.read_buf(&mut self.buffer).await? == 0 {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                return Err(FrameError::Truncated {
                    buffered: self.buffer.len(),
                    expected: self.expected_len(),
                });
            }
        }
    }

    /// True when bytes of a further frame are already buffered, so a caller batching responses
    /// knows another request follows without waiting on the socket.
    pub fn has_buffered(&self) -> bool {
        !self.buffer.is_empty()
    }

    fn expected_len(&self) -> usize {
        if self.buffer.len() < LENGTH_PREFIX {
            return LENGTH_PREFIX;
        }
        let length = i32::from_be_bytes([
            self.buffer[0],
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
        ]);
        LENGTH_PREFIX + length.max(0) as usize
    }

    fn parse_buffered(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buffer.len() < LENGTH_PREFIX {
            return Ok(None);
        }
        let length = i32::from_be_bytes([
            self.buffer[0],
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
        ]);
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
        if self.buffer.len() < LENGTH_PREFIX + length {
            self.buffer
                .reserve(LENGTH_PREFIX + length - self.buffer.len());
            return Ok(None);
        }
        self.buffer.advance(LENGTH_PREFIX);
        Ok(Some(self.buffer.split_to(length).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
