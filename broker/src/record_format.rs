//! The bounded readers and writers the internal topics' record formats share
//! (`group::log_format` and its KIP-848 records for `__consumer_offsets`, `txn::log_format` for
//! `__transaction_state`): every read checks the bytes are there first, so a damaged record is an
//! error, never a panic or an allocation sized by a damaged length. Each format turns
//! [`Malformed`] into its own error, which names its topic.

use bytes::{Buf, Bytes};

/// What is wrong with a record's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// A classic (i16-length) string; longer ones are cut (ids and topic names are far below 32 KiB).
pub fn put_string(out: &mut Vec<u8>, s: &str) {
    let len = s.len().min(i16::MAX as usize);
    out.extend_from_slice(&(len as i16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..len]);
}

pub fn need(buf: &Bytes, n: usize) -> Result<(), Malformed> {
    if buf.remaining() < n {
        Err(Malformed("truncated record"))
    } else {
        Ok(())
    }
}

pub fn get_u8(buf: &mut Bytes) -> Result<u8, Malformed> {
    need(buf, 1)?;
    Ok(buf.get_u8())
}

pub fn get_i16(buf: &mut Bytes) -> Result<i16, Malformed> {
    need(buf, 2)?;
    Ok(buf.get_i16())
}

pub fn get_i32(buf: &mut Bytes) -> Result<i32, Malformed> {
    need(buf, 4)?;
    Ok(buf.get_i32())
}

pub fn get_i64(buf: &mut Bytes) -> Result<i64, Malformed> {
    need(buf, 8)?;
    Ok(buf.get_i64())
}

/// `len` bytes of UTF-8.
pub fn take_utf8(buf: &mut Bytes, len: usize) -> Result<String, Malformed> {
    need(buf, len)?;
    String::from_utf8(buf.split_to(len).to_vec()).map_err(|_| Malformed("string is not UTF-8"))
}

/// An unsigned varint of at most 5 bytes. Counts and lengths read with it are checked against
/// the record's bytes by their callers.
pub fn get_varint(buf: &mut Bytes) -> Result<u64, Malformed> {
    let mut value = 0u64;
    for shift in (0..35).step_by(7) {
        let byte = get_u8(buf)?;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Malformed("varint too long"))
}

/// Skips a flexible version's tagged fields.
pub fn skip_tags(buf: &mut Bytes) -> Result<(), Malformed> {
    let count = get_varint(buf)?;
    for _ in 0..count {
        get_varint(buf)?;
        let size = usize::try_from(get_varint(buf)?).map_err(|_| Malformed("tag too long"))?;
        need(buf, size)?;
        buf.advance(size);
    }
    Ok(())
}
