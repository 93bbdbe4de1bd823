//! The binary encoding of calls and replies (version 1, little-endian).
//!
//! The byte layout is specified in `docs/uapi-encoding.md`. Decoding never
//! panics: every malformed input is a [`DecodeError`].

use super::call::{Call, CallAttr, Reply, ReplyAttr, ReplyValue, Value};
use super::error::{errno, UapiError};
use super::handles::Handle;
use super::ids::{AttrId, MethodId, ObjectId};
use thiserror::Error;

/// Magic of a call: `"SVUC"`.
pub const CALL_MAGIC: [u8; 4] = *b"SVUC";
/// Magic of a reply: `"SVUR"`.
pub const REPLY_MAGIC: [u8; 4] = *b"SVUR";
/// The encoding version this code reads and writes.
pub const VERSION: u16 = 1;
/// Size of the call and reply headers.
pub const HEADER_LEN: usize = 24;
/// Size of one attribute entry (before its payload).
pub const ATTR_LEN: usize = 16;
/// Largest message accepted (64 MiB).
pub const MAX_MESSAGE: usize = 64 << 20;
/// Attribute flag: the callee must understand this attribute.
pub const ATTR_F_MANDATORY: u8 = 1;

const KIND_BYTES: u8 = 0;
const KIND_OUT: u8 = 1;
const KIND_U64: u8 = 2;
const KIND_FD: u8 = 3;
const KIND_NEW: u8 = 4;
const KIND_HANDLE: u8 = 5;

/// Why bytes are not a valid call or reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The message ends before a field it needs.
    #[error("message truncated: need {need} bytes at offset {at}, have {have}")]
    Truncated {
        /// Offset of the field.
        at: usize,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The magic is wrong (not a softverbs uAPI message).
    #[error("bad magic {0:02x?}; not a softverbs uAPI message")]
    BadMagic([u8; 4]),
    /// The version is not one this side reads.
    #[error("encoding version {0} is not supported (this side speaks version {VERSION})")]
    BadVersion(u16),
    /// The header's length field disagrees with the message or exceeds the limit.
    #[error("header says {header} bytes, message has {actual} (limit {MAX_MESSAGE})")]
    BadLength {
        /// Length in the header.
        header: usize,
        /// Length of the bytes given.
        actual: usize,
    },
    /// A reserved field or padding byte is not zero.
    #[error("reserved field '{0}' is not zero")]
    Reserved(&'static str),
    /// An attribute has an unknown kind, unknown flags or an inconsistent length.
    #[error("attribute #{index}: {why}")]
    BadAttr {
        /// Position of the attribute.
        index: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// Bytes are left after the last attribute.
    #[error("{0} trailing bytes after the last attribute")]
    Trailing(usize),
    /// An error message is not UTF-8.
    #[error("error message is not UTF-8")]
    BadMessage,
}

impl DecodeError {
    /// The errno for this error: an unsupported version or a reserved
    /// field set means a newer peer (EPROTONOSUPPORT), the rest EINVAL.
    pub fn errno(&self) -> i32 {
        match self {
            DecodeError::BadVersion(_) | DecodeError::Reserved(_) => errno::EPROTONOSUPPORT,
            _ => errno::EINVAL,
        }
    }
}

/// A failed call as a reply carries it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message} (errno {errno})")]
pub struct RemoteError {
    /// Positive errno.
    pub errno: i32,
    /// The callee's error message.
    pub message: String,
}

struct Reader<'b> {
    buf: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len());
        let Some(end) = end else {
            return Err(DecodeError::Truncated {
                at: self.at,
                need: n,
                have: self.buf.len() - self.at,
            });
        };
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from(self.u32()?) | u64::from(self.u32()?) << 32)
    }
    fn magic(&mut self) -> Result<[u8; 4], DecodeError> {
        let b = self.take(4)?;
        Ok([b[0], b[1], b[2], b[3]])
    }
    /// Payload of `len` bytes plus zero padding to 8.
    fn padded(&mut self, len: usize) -> Result<&'b [u8], DecodeError> {
        let data = self.take(len)?;
        let pad = self.take(pad8(len))?;
        if pad.iter().any(|b| *b != 0) {
            return Err(DecodeError::Reserved("padding"));
        }
        Ok(data)
    }
}

fn pad8(len: usize) -> usize {
    (8 - len % 8) % 8
}

fn put_padded(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    out.resize(out.len() + pad8(data.len()), 0);
}

fn put_attr(out: &mut Vec<u8>, id: AttrId, kind: u8, flags: u8, len: u32, data: u64) {
    out.extend_from_slice(&id.0.to_le_bytes());
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&data.to_le_bytes());
}

/// Checks magic, version and length; returns the reader past the first 12 bytes.
fn header<'b>(buf: &'b [u8], magic: [u8; 4]) -> Result<Reader<'b>, DecodeError> {
    let mut r = Reader { buf, at: 0 };
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::Truncated {
            at: 0,
            need: HEADER_LEN,
            have: buf.len(),
        });
    }
    let m = r.magic()?;
    if m != magic {
        return Err(DecodeError::BadMagic(m));
    }
    let version = r.u16()?;
    if version != VERSION {
        return Err(DecodeError::BadVersion(version));
    }
    Ok(r)
}

fn check_len(total: u32, buf: &[u8]) -> Result<(), DecodeError> {
    let header = total as usize;
    if header != buf.len() || header > MAX_MESSAGE {
        return Err(DecodeError::BadLength {
            header,
            actual: buf.len(),
        });
    }
    Ok(())
}

/// Encodes a call.
pub fn encode_call(call: &Call) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + call.attrs.len() * ATTR_LEN);
    out.extend_from_slice(&CALL_MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // total length, patched below
    out.extend_from_slice(&call.driver_id.to_le_bytes());
    out.extend_from_slice(&call.object.0.to_le_bytes());
    out.extend_from_slice(&call.method.0.to_le_bytes());
    out.extend_from_slice(&(call.attrs.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    for a in &call.attrs {
        let flags = if a.mandatory { ATTR_F_MANDATORY } else { 0 };
        match &a.value {
            Value::Bytes(b) => {
                put_attr(&mut out, a.id, KIND_BYTES, flags, b.len() as u32, 0);
                put_padded(&mut out, b);
            }
            Value::Out(cap) => put_attr(&mut out, a.id, KIND_OUT, flags, *cap, 0),
            Value::U64(v) => put_attr(&mut out, a.id, KIND_U64, flags, 8, *v),
            Value::Fd(i) => put_attr(&mut out, a.id, KIND_FD, flags, 4, u64::from(*i)),
            Value::New => put_attr(&mut out, a.id, KIND_NEW, flags, 0, 0),
        }
    }
    let total = (out.len() as u32).to_le_bytes();
    out[8..12].copy_from_slice(&total);
    out
}

/// Decodes a call. Never panics.
pub fn decode_call(buf: &[u8]) -> Result<Call, DecodeError> {
    let mut r = header(buf, CALL_MAGIC)?;
    if r.u16()? != 0 {
        return Err(DecodeError::Reserved("flags"));
    }
    check_len(r.u32()?, buf)?;
    let driver_id = r.u32()?;
    let object = ObjectId(r.u16()?);
    let method = MethodId(r.u16()?);
    let count = r.u16()? as usize;
    if r.u16()? != 0 {
        return Err(DecodeError::Reserved("reserved"));
    }
    let mut attrs = Vec::with_capacity(count.min((buf.len() - HEADER_LEN) / ATTR_LEN));
    for index in 0..count {
        let bad = |why| DecodeError::BadAttr { index, why };
        let id = AttrId(r.u16()?);
        let kind = r.u8()?;
        let flags = r.u8()?;
        if flags & !ATTR_F_MANDATORY != 0 {
            return Err(bad("unknown attribute flags"));
        }
        let len = r.u32()?;
        let data = r.u64()?;
        let value = match kind {
            KIND_BYTES | KIND_OUT | KIND_NEW if data != 0 => {
                return Err(bad("data field must be zero"))
            }
            KIND_BYTES => Value::Bytes(r.padded(len as usize)?.to_vec()),
            KIND_OUT => Value::Out(len),
            KIND_NEW if len != 0 => return Err(bad("new-object request with a length")),
            KIND_NEW => Value::New,
            KIND_U64 if len != 8 => return Err(bad("inline value with length other than 8")),
            KIND_U64 => Value::U64(data),
            KIND_FD if len != 4 || data > u64::from(u32::MAX) => return Err(bad("bad fd index")),
            KIND_FD => Value::Fd(data as u32),
            _ => return Err(bad("unknown kind")),
        };
        attrs.push(CallAttr {
            id,
            mandatory: flags & ATTR_F_MANDATORY != 0,
            value,
        });
    }
    if r.at != buf.len() {
        return Err(DecodeError::Trailing(buf.len() - r.at));
    }
    Ok(Call {
        driver_id,
        object,
        method,
        attrs,
    })
}

fn reply_header(out: &mut Vec<u8>, count: u16, errno: i32, msg_len: u32) {
    out.extend_from_slice(&REPLY_MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&errno.to_le_bytes());
    out.extend_from_slice(&msg_len.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
}

fn patch_len(out: &mut [u8]) {
    let total = (out.len() as u32).to_le_bytes();
    out[8..12].copy_from_slice(&total);
}

/// Encodes a successful reply.
pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    let mut out = Vec::new();
    reply_header(&mut out, reply.attrs.len() as u16, 0, 0);
    for a in &reply.attrs {
        match &a.value {
            ReplyValue::Bytes(b) => {
                put_attr(&mut out, a.id, KIND_BYTES, 0, b.len() as u32, 0);
                put_padded(&mut out, b);
            }
            ReplyValue::Handle(h) => put_attr(&mut out, a.id, KIND_HANDLE, 0, 8, h.raw()),
        }
    }
    patch_len(&mut out);
    out
}

/// Encodes a failed call's reply: its errno and message.
pub fn encode_error(err: &UapiError) -> Vec<u8> {
    let msg = err.to_string();
    let mut out = Vec::new();
    reply_header(&mut out, 0, err.errno().max(1), msg.len() as u32);
    put_padded(&mut out, msg.as_bytes());
    patch_len(&mut out);
    out
}

/// Decodes a reply: `Ok(Ok(reply))` for success, `Ok(Err(..))` for a call
/// that failed, `Err` for bytes that are not a reply. Never panics.
pub fn decode_reply(buf: &[u8]) -> Result<Result<Reply, RemoteError>, DecodeError> {
    let mut r = header(buf, REPLY_MAGIC)?;
    let count = r.u16()? as usize;
    check_len(r.u32()?, buf)?;
    let errno = r.u32()? as i32;
    let msg_len = r.u32()? as usize;
    if r.u32()? != 0 {
        return Err(DecodeError::Reserved("reserved"));
    }
    if errno != 0 {
        if count != 0 || errno < 0 {
            return Err(DecodeError::Reserved(
                "attributes or errno of an error reply",
            ));
        }
        let msg = r.padded(msg_len)?;
        let message = std::str::from_utf8(msg)
            .map_err(|_| DecodeError::BadMessage)?
            .to_string();
        if r.at != buf.len() {
            return Err(DecodeError::Trailing(buf.len() - r.at));
        }
        return Ok(Err(RemoteError { errno, message }));
    }
    if msg_len != 0 {
        return Err(DecodeError::Reserved("message length of a success reply"));
    }
    let mut attrs = Vec::with_capacity(count.min((buf.len() - HEADER_LEN) / ATTR_LEN));
    for index in 0..count {
        let bad = |why| DecodeError::BadAttr { index, why };
        let id = AttrId(r.u16()?);
        let kind = r.u8()?;
        if r.u8()? != 0 {
            return Err(bad("reply attributes have no flags"));
        }
        let len = r.u32()?;
        let data = r.u64()?;
        let value = match kind {
            KIND_BYTES if data != 0 => return Err(bad("data field must be zero")),
            KIND_BYTES => ReplyValue::Bytes(r.padded(len as usize)?.to_vec()),
            KIND_HANDLE if len != 8 => return Err(bad("handle with length other than 8")),
            KIND_HANDLE => ReplyValue::Handle(Handle::from_raw(data)),
            _ => return Err(bad("unknown kind")),
        };
        attrs.push(ReplyAttr { id, value });
    }
    if r.at != buf.len() {
        return Err(DecodeError::Trailing(buf.len() - r.at));
    }
    Ok(Ok(Reply { attrs }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
            any::<u32>().prop_map(Value::Out),
            any::<u64>().prop_map(Value::U64),
            any::<u32>().prop_map(Value::Fd),
            Just(Value::New),
        ]
    }

    fn call() -> impl Strategy<Value = Call> {
        let attr =
            (any::<u16>(), any::<bool>(), value()).prop_map(|(id, mandatory, value)| CallAttr {
                id: AttrId(id),
                mandatory,
                value,
            });
        (
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
            proptest::collection::vec(attr, 0..8),
        )
            .prop_map(|(driver_id, o, m, attrs)| Call {
                driver_id,
                object: ObjectId(o),
                method: MethodId(m),
                attrs,
            })
    }

    fn reply() -> impl Strategy<Value = Reply> {
        let v = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(ReplyValue::Bytes),
            any::<u64>().prop_map(|h| ReplyValue::Handle(Handle::from_raw(h))),
        ];
        proptest::collection::vec((any::<u16>(), v), 0..8).prop_map(|a| Reply {
            attrs: a
                .into_iter()
                .map(|(id, value)| ReplyAttr {
                    id: AttrId(id),
                    value,
                })
                .collect(),
        })
    }

    proptest! {
        #[test]
        fn call_roundtrip(c in call()) {
            prop_assert_eq!(decode_call(&encode_call(&c)).unwrap(), c);
        }

        #[test]
        fn reply_roundtrip(r in reply()) {
            prop_assert_eq!(decode_reply(&encode_reply(&r)).unwrap().unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_call(&b);
            let _ = decode_reply(&b);
        }

        #[test]
        fn mutated_call_never_panics(c in call(), at in any::<usize>(), byte in any::<u8>()) {
            let mut b = encode_call(&c);
            let i = at % b.len();
            b[i] = byte;
            let _ = decode_call(&b);
            b.truncate(i);
            prop_assert!(decode_call(&b).is_err());
        }
    }

    #[test]
    fn golden_call() {
        let c = Call::new(ObjectId(1), MethodId(2))
            .value(AttrId(3), 5)
            .required()
            .bytes(AttrId(4), [0xaa]);
        let b = encode_call(&c);
        let want: Vec<u8> = [
            &b"SVUC"[..],
            &[1, 0, 0, 0],
            &[64, 0, 0, 0],
            &[0, 0, 0, 0],
            &[1, 0, 2, 0],
            &[2, 0, 0, 0],
            &[3, 0, KIND_U64, 1, 8, 0, 0, 0],
            &[5, 0, 0, 0, 0, 0, 0, 0],
            &[4, 0, KIND_BYTES, 0, 1, 0, 0, 0],
            &[0; 8],
            &[0xaa, 0, 0, 0, 0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(b, want);
    }

    #[test]
    fn error_reply_roundtrip() {
        let e = UapiError::ContextClosed;
        let r = decode_reply(&encode_error(&e)).unwrap().unwrap_err();
        assert_eq!(r.errno, errno::EIO);
        assert_eq!(r.message, e.to_string());
    }

    #[test]
    fn bad_version_is_protonosupport() {
        let mut b = encode_call(&Call::new(ObjectId(1), MethodId(1)));
        b[4] = 2;
        let e = decode_call(&b).unwrap_err();
        assert_eq!(e, DecodeError::BadVersion(2));
        assert_eq!(e.errno(), errno::EPROTONOSUPPORT);
    }
}
