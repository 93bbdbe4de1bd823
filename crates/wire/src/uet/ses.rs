//! SES (semantic sublayer) headers: the standard request header, the
//! response header and the response-with-data header (UET 1.0 §3.4;
//! `uet_pkt_hdr.h` of the reference provider). Big-endian.
//!
//! ```text
//! standard request (44):
//!   0 rsvd (2) opcode (6) | 1 version (2) flags (6): DC IE REL HD EOM SOM
//!   2 msg_id | 4 ri_generation (8) job_id (24) | 8 rsvd (4) pid_on_fep (12)
//!   10 rsvd (4) resource_index (12) | 12 buffer_offset (u64) | 20 initiator (u32)
//!   24 memory_key / match bits (u64)
//!   32 header data (u64): SOM: completion data; not SOM: payload_len (14 bits at
//!      bit 32) | message_offset (32)
//!   40 request_length (u32)
//! response (12):
//!   0 list (2) opcode (6) | 1 version (2) return code (6) | 2 msg_id
//!   4 ri_generation (8) job_id (24) | 8 modified_length (u32)
//! response with data (20):
//!   0..8 as response | 8 read msg_id (u16) | 10 payload_len (u16)
//!   12 modified_length (u32) | 16 message_offset (u32)
//! ```

use crate::util::{fixed_view, get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};
use crate::{Error, Result};

/// Length of the standard request header.
pub const STD_REQUEST_LEN: usize = 44;
/// Length of the response header.
pub const RESPONSE_LEN: usize = 12;
/// Length of the response-with-data header.
pub const RESPONSE_DATA_LEN: usize = 20;

/// SES flag: delivery complete.
pub const SES_FLAG_DC: u8 = 0x20;
/// SES flag: initiator error (the message is abandoned; consume it).
pub const SES_FLAG_IE: u8 = 0x10;
/// SES flag: relative addressing.
pub const SES_FLAG_REL: u8 = 0x08;
/// SES flag: header data present.
pub const SES_FLAG_HD: u8 = 0x04;
/// SES flag: end of message.
pub const SES_FLAG_EOM: u8 = 0x02;
/// SES flag: start of message.
pub const SES_FLAG_SOM: u8 = 0x01;

/// The PDS next-header field: which SES header follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(u8)]
pub enum NextHeader {
    /// Nothing follows.
    None = 0x0,
    /// Small request (not used here).
    RequestSmall = 0x1,
    /// Medium request (not used here).
    RequestMedium = 0x2,
    /// Standard request.
    RequestStd = 0x3,
    /// Response.
    Response = 0x4,
    /// Response with data.
    ResponseData = 0x5,
    /// Small response with data (not used here).
    ResponseDataSmall = 0x6,
}

impl NextHeader {
    /// From the 4-bit field.
    pub fn from_u8(v: u8) -> Option<NextHeader> {
        use NextHeader::*;
        Some(match v {
            0 => None,
            1 => RequestSmall,
            2 => RequestMedium,
            3 => RequestStd,
            4 => Response,
            5 => ResponseData,
            6 => ResponseDataSmall,
            _ => return Option::None,
        })
    }
}

/// SES request opcodes (6 bits). Unknown values are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SesOpcode(pub u8);

impl SesOpcode {
    /// No operation.
    pub const NO_OP: SesOpcode = SesOpcode(0x00);
    /// UET_WRITE: RDMA WRITE.
    pub const WRITE: SesOpcode = SesOpcode(0x01);
    /// UET_READ: RDMA READ.
    pub const READ: SesOpcode = SesOpcode(0x02);
    /// UET_ATOMIC.
    pub const ATOMIC: SesOpcode = SesOpcode(0x03);
    /// UET_SEND: SEND.
    pub const SEND: SesOpcode = SesOpcode(0x05);
    /// UET_DGRAM_SEND.
    pub const DGRAM_SEND: SesOpcode = SesOpcode(0x07);
}

/// SES response opcodes.
pub mod rsp_opcode {
    /// Default response.
    pub const DEFAULT: u8 = 0x00;
    /// Response.
    pub const RESPONSE: u8 = 0x01;
    /// Response with data.
    pub const RESPONSE_W_DATA: u8 = 0x02;
    /// No response.
    pub const NO_RESPONSE: u8 = 0x03;
}

/// SES return codes (6 bits). Unknown values are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ReturnCode(pub u8);

impl ReturnCode {
    /// RC_NULL.
    pub const NULL: ReturnCode = ReturnCode(0x00);
    /// RC_OK.
    pub const OK: ReturnCode = ReturnCode(0x01);
    /// No matching resource (SRD: no such QP, or a wrong Q_Key).
    pub const NO_MATCH: ReturnCode = ReturnCode(0x05);
    /// Unsupported operation.
    pub const UNSUPPORTED_OP: ReturnCode = ReturnCode(0x06);
    /// Permission violation (the region refuses the access).
    pub const PERM_VIOLATION: ReturnCode = ReturnCode(0x17);
    /// Bad memory key.
    pub const BAD_MKEY: ReturnCode = ReturnCode(0x1c);
    /// Bad address (outside the region).
    pub const BAD_ADDR: ReturnCode = ReturnCode(0x1d);
    /// The message is longer than the target buffer.
    pub const TOO_LONG: ReturnCode = ReturnCode(0x22);
    /// The initiator abandoned the message.
    pub const INITIATOR_ERR: ReturnCode = ReturnCode(0x23);
}

mod field {
    use core::ops::Range;
    pub const OPCODE: usize = 0;
    pub const VER_FLAGS: usize = 1;
    pub const MSG_ID: Range<usize> = 2..4;
    pub const JOB: Range<usize> = 4..8;
    pub const PID: Range<usize> = 8..10;
    pub const RES: Range<usize> = 10..12;
    pub const BUF_OFF: Range<usize> = 12..20;
    pub const INITIATOR: Range<usize> = 20..24;
    pub const MEM_KEY: Range<usize> = 24..32;
    pub const HDR_DATA: Range<usize> = 32..40;
    pub const REQ_LEN: Range<usize> = 40..44;
    pub const MOD_LEN: Range<usize> = 8..12;
    pub const RD_MSG_ID: Range<usize> = 8..10;
    pub const PAYLOAD_LEN: Range<usize> = 10..12;
    pub const D_MOD_LEN: Range<usize> = 12..16;
    pub const D_MSG_OFF: Range<usize> = 16..20;
}

fixed_view!(
    /// A view of a SES standard request header.
    StdRequest,
    STD_REQUEST_LEN
);
fixed_view!(
    /// A view of a SES response header.
    Response,
    RESPONSE_LEN
);
fixed_view!(
    /// A view of a SES response-with-data header.
    ResponseData,
    RESPONSE_DATA_LEN
);

impl<T: AsRef<[u8]>> StdRequest<T> {
    /// The 6-bit opcode.
    pub fn opcode(&self) -> u8 {
        self.buffer.as_ref()[field::OPCODE] & 0x3f
    }
    /// The 2-bit version.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_FLAGS] >> 6
    }
    /// The 6 flags (`SES_FLAG_*`).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::VER_FLAGS] & 0x3f
    }
    /// Message id.
    pub fn msg_id(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::MSG_ID])
    }
    /// Resource-index generation (8) and job id (24).
    pub fn ri_gen_job_id(&self) -> u32 {
        get_u32(&self.buffer.as_ref()[field::JOB])
    }
    /// 12-bit process id on the fabric endpoint.
    pub fn pid_on_fep(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::PID]) & 0x0fff
    }
    /// 12-bit resource index.
    pub fn resource_index(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::RES]) & 0x0fff
    }
    /// Buffer offset (SRD: the remote virtual address).
    pub fn buffer_offset(&self) -> u64 {
        get_u64(&self.buffer.as_ref()[field::BUF_OFF])
    }
    /// Initiator id (SRD: the source QPN).
    pub fn initiator(&self) -> u32 {
        get_u32(&self.buffer.as_ref()[field::INITIATOR])
    }
    /// Memory key or match bits.
    pub fn memory_key(&self) -> u64 {
        get_u64(&self.buffer.as_ref()[field::MEM_KEY])
    }
    /// Header data word.
    pub fn header_data(&self) -> u64 {
        get_u64(&self.buffer.as_ref()[field::HDR_DATA])
    }
    /// Request length (the whole message).
    pub fn request_length(&self) -> u32 {
        get_u32(&self.buffer.as_ref()[field::REQ_LEN])
    }
}

/// A parsed SES standard request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SesRequestRepr {
    /// Operation.
    pub opcode: SesOpcode,
    /// Flags (`SES_FLAG_*`).
    pub flags: u8,
    /// Message id, unique among the PDC's messages in flight.
    pub msg_id: u16,
    /// Resource-index generation.
    pub ri_generation: u8,
    /// Job id (24 bits).
    pub job_id: u32,
    /// Process on the fabric endpoint (12 bits).
    pub pid_on_fep: u16,
    /// Resource index (12 bits).
    pub resource_index: u16,
    /// Buffer offset.
    pub buffer_offset: u64,
    /// Initiator id.
    pub initiator: u32,
    /// Memory key or match bits.
    pub memory_key: u64,
    /// SOM packets: completion data (valid with HD). Other packets:
    /// `payload_len << 32 | message_offset`.
    pub header_data: u64,
    /// Length of the whole message.
    pub request_length: u32,
}

impl SesRequestRepr {
    /// Parses a standard request view (version must be 0).
    ///
    /// # Errors
    /// Truncated, or a version other than 0.
    pub fn parse<T: AsRef<[u8]>>(v: &StdRequest<T>) -> Result<Self> {
        v.check_len()?;
        if v.version() != 0 {
            return Err(Error::Malformed("SES version"));
        }
        let j = v.ri_gen_job_id();
        Ok(SesRequestRepr {
            opcode: SesOpcode(v.opcode()),
            flags: v.flags(),
            msg_id: v.msg_id(),
            ri_generation: (j >> 24) as u8,
            job_id: j & 0x00ff_ffff,
            pid_on_fep: v.pid_on_fep(),
            resource_index: v.resource_index(),
            buffer_offset: v.buffer_offset(),
            initiator: v.initiator(),
            memory_key: v.memory_key(),
            header_data: v.header_data(),
            request_length: v.request_length(),
        })
    }

    /// True if `flag` is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Offset of this packet's payload within the message: 0 on the SOM
    /// packet, else the low 32 bits of the header data.
    pub fn message_offset(&self) -> u32 {
        if self.has(SES_FLAG_SOM) {
            0
        } else {
            self.header_data as u32
        }
    }

    /// Always [`STD_REQUEST_LEN`].
    pub const fn buffer_len(&self) -> usize {
        STD_REQUEST_LEN
    }

    /// Writes the header (reserved bits zero; version 0; 12- and 24-bit
    /// fields truncated).
    ///
    /// # Panics
    /// If the buffer is shorter than [`STD_REQUEST_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut StdRequest<T>) {
        let b = v.buffer.as_mut();
        b[field::OPCODE] = self.opcode.0 & 0x3f;
        b[field::VER_FLAGS] = self.flags & 0x3f;
        put_u16(&mut b[field::MSG_ID], self.msg_id);
        put_u32(
            &mut b[field::JOB],
            (u32::from(self.ri_generation) << 24) | (self.job_id & 0x00ff_ffff),
        );
        put_u16(&mut b[field::PID], self.pid_on_fep & 0x0fff);
        put_u16(&mut b[field::RES], self.resource_index & 0x0fff);
        put_u64(&mut b[field::BUF_OFF], self.buffer_offset);
        put_u32(&mut b[field::INITIATOR], self.initiator);
        put_u64(&mut b[field::MEM_KEY], self.memory_key);
        put_u64(&mut b[field::HDR_DATA], self.header_data);
        put_u32(&mut b[field::REQ_LEN], self.request_length);
    }
}

/// A parsed SES response (carried after an ACK).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SesResponseRepr {
    /// List (2 bits).
    pub list: u8,
    /// Response opcode (6 bits, [`rsp_opcode`]).
    pub opcode: u8,
    /// Outcome.
    pub return_code: ReturnCode,
    /// The request's message id.
    pub msg_id: u16,
    /// Resource-index generation.
    pub ri_generation: u8,
    /// Job id (24 bits).
    pub job_id: u32,
    /// Bytes the request modified (delivered).
    pub modified_length: u32,
}

fn parse_rsp_common(b: &[u8]) -> Result<(u8, u8, ReturnCode, u16, u8, u32)> {
    if b[1] >> 6 != 0 {
        return Err(Error::Malformed("SES version"));
    }
    let j = get_u32(&b[field::JOB]);
    Ok((
        b[0] >> 6,
        b[0] & 0x3f,
        ReturnCode(b[1] & 0x3f),
        get_u16(&b[field::MSG_ID]),
        (j >> 24) as u8,
        j & 0x00ff_ffff,
    ))
}

fn emit_rsp_common(b: &mut [u8], list: u8, op: u8, rc: ReturnCode, msg_id: u16, g: u8, job: u32) {
    b[0] = ((list & 3) << 6) | (op & 0x3f);
    b[1] = rc.0 & 0x3f;
    put_u16(&mut b[field::MSG_ID], msg_id);
    put_u32(
        &mut b[field::JOB],
        (u32::from(g) << 24) | (job & 0x00ff_ffff),
    );
}

impl SesResponseRepr {
    /// Parses a response view.
    ///
    /// # Errors
    /// Truncated, or a version other than 0.
    pub fn parse<T: AsRef<[u8]>>(v: &Response<T>) -> Result<Self> {
        v.check_len()?;
        let b = v.buffer.as_ref();
        let (list, opcode, return_code, msg_id, ri_generation, job_id) = parse_rsp_common(b)?;
        Ok(SesResponseRepr {
            list,
            opcode,
            return_code,
            msg_id,
            ri_generation,
            job_id,
            modified_length: get_u32(&b[field::MOD_LEN]),
        })
    }

    /// Always [`RESPONSE_LEN`].
    pub const fn buffer_len(&self) -> usize {
        RESPONSE_LEN
    }

    /// Writes the header.
    ///
    /// # Panics
    /// If the buffer is shorter than [`RESPONSE_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut Response<T>) {
        let b = v.buffer.as_mut();
        emit_rsp_common(
            b,
            self.list,
            self.opcode,
            self.return_code,
            self.msg_id,
            self.ri_generation,
            self.job_id,
        );
        put_u32(&mut b[field::MOD_LEN], self.modified_length);
    }
}

/// A parsed SES response with data (READ response packets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SesResponseDataRepr {
    /// List (2 bits).
    pub list: u8,
    /// Response opcode (6 bits; `RESPONSE_W_DATA`).
    pub opcode: u8,
    /// Outcome.
    pub return_code: ReturnCode,
    /// The READ request's message id.
    pub msg_id: u16,
    /// Resource-index generation.
    pub ri_generation: u8,
    /// Job id (24 bits).
    pub job_id: u32,
    /// Read message id (unused by SRD: 0).
    pub read_msg_id: u16,
    /// Payload bytes in this packet.
    pub payload_len: u16,
    /// Total bytes the READ returns.
    pub modified_length: u32,
    /// Offset of this packet's payload in the READ's data.
    pub message_offset: u32,
}

impl SesResponseDataRepr {
    /// Parses a response-with-data view.
    ///
    /// # Errors
    /// Truncated, or a version other than 0.
    pub fn parse<T: AsRef<[u8]>>(v: &ResponseData<T>) -> Result<Self> {
        v.check_len()?;
        let b = v.buffer.as_ref();
        let (list, opcode, return_code, msg_id, ri_generation, job_id) = parse_rsp_common(b)?;
        Ok(SesResponseDataRepr {
            list,
            opcode,
            return_code,
            msg_id,
            ri_generation,
            job_id,
            read_msg_id: get_u16(&b[field::RD_MSG_ID]),
            payload_len: get_u16(&b[field::PAYLOAD_LEN]),
            modified_length: get_u32(&b[field::D_MOD_LEN]),
            message_offset: get_u32(&b[field::D_MSG_OFF]),
        })
    }

    /// Always [`RESPONSE_DATA_LEN`].
    pub const fn buffer_len(&self) -> usize {
        RESPONSE_DATA_LEN
    }

    /// Writes the header.
    ///
    /// # Panics
    /// If the buffer is shorter than [`RESPONSE_DATA_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut ResponseData<T>) {
        let b = v.buffer.as_mut();
        emit_rsp_common(
            b,
            self.list,
            self.opcode,
            self.return_code,
            self.msg_id,
            self.ri_generation,
            self.job_id,
        );
        put_u16(&mut b[field::RD_MSG_ID], self.read_msg_id);
        put_u16(&mut b[field::PAYLOAD_LEN], self.payload_len);
        put_u32(&mut b[field::D_MOD_LEN], self.modified_length);
        put_u32(&mut b[field::D_MSG_OFF], self.message_offset);
    }
}

/// Any SES header this crate parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SesRepr {
    /// Standard request.
    Request(SesRequestRepr),
    /// Response.
    Response(SesResponseRepr),
    /// Response with data.
    ResponseData(SesResponseDataRepr),
}

impl SesRepr {
    /// Parses the SES header `next` names at the start of `buf`; `None` for
    /// [`NextHeader::None`].
    ///
    /// # Errors
    /// Truncated; [`Error::UnsupportedOpcode`] for the small and medium
    /// formats; a malformed header.
    pub fn parse(next: NextHeader, buf: &[u8]) -> Result<Option<Self>> {
        Ok(Some(match next {
            NextHeader::None => return Ok(None),
            NextHeader::RequestStd => {
                SesRepr::Request(SesRequestRepr::parse(&StdRequest::new_checked(buf)?)?)
            }
            NextHeader::Response => {
                SesRepr::Response(SesResponseRepr::parse(&Response::new_checked(buf)?)?)
            }
            NextHeader::ResponseData => SesRepr::ResponseData(SesResponseDataRepr::parse(
                &ResponseData::new_checked(buf)?,
            )?),
            other => return Err(Error::UnsupportedOpcode(other as u8)),
        }))
    }

    /// The next-header value that announces this header.
    pub fn next_header(&self) -> NextHeader {
        match self {
            SesRepr::Request(_) => NextHeader::RequestStd,
            SesRepr::Response(_) => NextHeader::Response,
            SesRepr::ResponseData(_) => NextHeader::ResponseData,
        }
    }

    /// Length of the header.
    pub fn buffer_len(&self) -> usize {
        match self {
            SesRepr::Request(r) => r.buffer_len(),
            SesRepr::Response(r) => r.buffer_len(),
            SesRepr::ResponseData(r) => r.buffer_len(),
        }
    }

    /// Writes the header.
    ///
    /// # Panics
    /// If `buf` is shorter than [`Self::buffer_len`].
    pub fn emit(&self, buf: &mut [u8]) {
        match self {
            SesRepr::Request(r) => r.emit(&mut StdRequest::new_unchecked(buf)),
            SesRepr::Response(r) => r.emit(&mut Response::new_unchecked(buf)),
            SesRepr::ResponseData(r) => r.emit(&mut ResponseData::new_unchecked(buf)),
        }
    }
}
