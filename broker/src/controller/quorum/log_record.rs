//! The record format of `raft.log`: `MAGIC(4) | len(u32 BE) | crc32c(len BE ++ body)(u32 BE) |
//! body`, the body one openraft entry as JSON. The checksum covers the length, so a damaged length
//! is caught like a damaged body; the magic lets recovery look for valid records past damage.

use std::io;

use openraft::Entry;

use super::TypeConfig;

pub(crate) const MAGIC: [u8; 4] = [0xC7, 0x1A, 0x0B, 0xE5];
pub(crate) const HEADER: usize = 12;
/// The largest record body accepted on disk (a command is at most 1 MiB, 2 MiB as hex).
pub const MAX_RECORD: usize = 4 << 20;
/// One record framed for `raft.log`.
pub fn encode_record(entry: &Entry<TypeConfig>) -> io::Result<Vec<u8>> {
    let body = serde_json::to_vec(entry).map_err(io::Error::other)?;
    if body.len() > MAX_RECORD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "log entry too large",
        ));
    }
    let len = (body.len() as u32).to_be_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), &body);
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The record at `off`, if whole and valid: the entry and the offset after it.
pub(crate) fn decode_at(buf: &[u8], off: usize) -> Result<(Entry<TypeConfig>, usize), String> {
    let header = buf
        .get(off..off + HEADER)
        .ok_or("record header cut short")?;
    if header[..4] != MAGIC {
        return Err("bad record magic".into());
    }
    let len_bytes = [header[4], header[5], header[6], header[7]];
    let len = u32::from_be_bytes(len_bytes) as usize;
    let crc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    if len > MAX_RECORD {
        return Err(format!("record length {len} over the {MAX_RECORD} limit"));
    }
    let body = buf
        .get(off + HEADER..off + HEADER + len)
        .ok_or("record body cut short")?;
    if crc32c::crc32c_append(crc32c::crc32c(&len_bytes), body) != crc {
        return Err("record checksum mismatch".into());
    }
    let entry = serde_json::from_slice(body).map_err(|e| format!("record body: {e}"))?;
    Ok((entry, off + HEADER + len))
}

/// The offset of the first valid record after `off`, if any (found by its magic).
pub(crate) fn find_valid_after(buf: &[u8], off: usize) -> Option<usize> {
    (off + 1..buf.len().saturating_sub(HEADER - 1))
        .find(|&p| buf[p..p + 4] == MAGIC && decode_at(buf, p).is_ok())
}
