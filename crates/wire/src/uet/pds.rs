//! PDS headers in RUD mode (UET 1.0 §3.5; `uet_pkt_hdr.h` of the reference
//! provider). All fields are big-endian. Every PDS header starts with the
//! 2-byte prologue:
//!
//! ```text
//! bits 15..11 type | 10..7 next header (control type for CTRL) | 6..0 flags
//! ```
//!
//! ```text
//! RUD request (12):  0 prologue | 2 clear_psn_offset (i16) | 4 psn | 8 spdcid
//!                    | 10 dpdcid, or with SYN: pdc_info (4 bits) | psn_offset (12 bits)
//! ACK (12):          0 prologue | 2 ack_psn_offset (i16) | 4 cack_psn | 8 spdcid | 10 dpdcid
//! ACK_CC (32):       ACK | 12 cc_type (4) cc_flags (4) | 13 mpr | 14 sack_psn_offset (i16)
//!                    | 16 sack_bitmap (u64) | 24 ack_cc_state (u64)
//! NACK (16):         0 prologue | 2 nack_code | 3 vendor_code | 4 nack_psn | 8 spdcid
//!                    | 10 dpdcid | 12 payload
//! CTRL (16):         0 prologue | 2 reserved / probe opaque | 4 psn | 8 spdcid
//!                    | 10 dpdcid or pdc_info | psn_offset | 12 payload
//! ```

use crate::util::{fixed_view, get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};
use crate::{Error, Result};

use super::ses::NextHeader;

/// Length of the prologue.
pub const PROLOGUE_LEN: usize = 2;
/// Length of a RUD request header.
pub const REQUEST_LEN: usize = 12;
/// Length of a plain ACK header.
pub const ACK_LEN: usize = 12;
/// Length of an ACK_CC header (ACK plus the CC extension).
pub const ACK_CC_LEN: usize = 32;
/// Length of a NACK header.
pub const NACK_LEN: usize = 16;
/// Length of a control header.
pub const CTRL_LEN: usize = 16;

/// Request flag: this packet is a retransmission.
pub const REQ_FLAG_RETX: u8 = 0x10;
/// Request flag: the sender asks for an immediate ACK.
pub const REQ_FLAG_AR: u8 = 0x08;
/// Request flag: the packet opens the delivery context (no DPDCID yet).
pub const REQ_FLAG_SYN: u8 = 0x04;
/// ACK flag: the acknowledged packet was ECN-marked.
pub const ACK_FLAG_M: u8 = 0x20;
/// ACK flag: the acknowledged packet was a retransmission.
pub const ACK_FLAG_RETX: u8 = 0x10;
/// ACK flag: this ACK answers a probe.
pub const ACK_FLAG_P: u8 = 0x08;
/// ACK flag: the target asks the initiator to close the PDC.
pub const ACK_FLAG_REQ_CLOSE: u8 = 0x04;
/// ACK flag: the target asks the initiator to send a clear.
pub const ACK_FLAG_REQ_CLEAR: u8 = 0x02;
/// NACK flag: the NACKed packet was a retransmission.
pub const NACK_FLAG_RETX: u8 = 0x10;
/// Control flag: the control packet is a retransmission.
pub const CTRL_FLAG_RETX: u8 = 0x10;
/// Control flag: ACK requested.
pub const CTRL_FLAG_AR: u8 = 0x08;
/// Control flag: the control packet opens the PDC.
pub const CTRL_FLAG_SYN: u8 = 0x04;

/// The PDS packet types (the 5-bit type field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(u8)]
pub enum PdsType {
    /// Security header (not supported here).
    Security = 0x01,
    /// Reliable unordered delivery request.
    RudRequest = 0x02,
    /// Reliable ordered delivery request (not used by SRD).
    RodRequest = 0x03,
    /// Reliable unordered delivery for idempotent operations, request.
    RudiRequest = 0x04,
    /// RUDI response.
    RudiResponse = 0x05,
    /// Unreliable unordered delivery request.
    UudRequest = 0x06,
    /// Acknowledgement.
    Ack = 0x07,
    /// Acknowledgement with congestion-control and SACK extension.
    AckCc = 0x08,
    /// ACK with extended CC state.
    AckCcx = 0x09,
    /// Negative acknowledgement.
    Nack = 0x0a,
    /// Control packet.
    Control = 0x0b,
    /// NACK with extended CC state.
    NackCcx = 0x0c,
    /// RUD request with CC state.
    RudCcRequest = 0x0d,
    /// ROD request with CC state.
    RodCcRequest = 0x0e,
}

impl PdsType {
    /// From the 5-bit field.
    pub fn from_u8(v: u8) -> Option<PdsType> {
        use PdsType::*;
        Some(match v {
            0x01 => Security,
            0x02 => RudRequest,
            0x03 => RodRequest,
            0x04 => RudiRequest,
            0x05 => RudiResponse,
            0x06 => UudRequest,
            0x07 => Ack,
            0x08 => AckCc,
            0x09 => AckCcx,
            0x0a => Nack,
            0x0b => Control,
            0x0c => NackCcx,
            0x0d => RudCcRequest,
            0x0e => RodCcRequest,
            _ => return None,
        })
    }
}

/// Control packet types (the next-header bits of a CTRL prologue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(u8)]
pub enum ControlType {
    /// No-op.
    Nop = 0x0,
    /// Request an ACK (payload: a message id, or 0).
    AckRequest = 0x1,
    /// Clear: the target may forget ACK state up to the PSN (payload).
    Clear = 0x2,
    /// The target asks for a clear.
    ClearRequest = 0x3,
    /// The initiator closes the PDC.
    Close = 0x4,
    /// The target asks the initiator to close.
    CloseRequest = 0x5,
    /// Probe (payload: the SACK bitmap base PSN).
    Probe = 0x6,
    /// CC credit.
    Credit = 0x7,
    /// Request for CC credit.
    CreditRequest = 0x8,
    /// Negotiation.
    Negotiation = 0x9,
}

impl ControlType {
    /// From the 4-bit field.
    pub fn from_u8(v: u8) -> Option<ControlType> {
        use ControlType::*;
        Some(match v {
            0x0 => Nop,
            0x1 => AckRequest,
            0x2 => Clear,
            0x3 => ClearRequest,
            0x4 => Close,
            0x5 => CloseRequest,
            0x6 => Probe,
            0x7 => Credit,
            0x8 => CreditRequest,
            0x9 => Negotiation,
            _ => return None,
        })
    }
}

/// NACK codes (UET 1.0 table of PDS NACK codes). Unknown codes are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NackCode(pub u8);

impl NackCode {
    /// The packet was trimmed by the network.
    pub const TRIMMED: NackCode = NackCode(0x01);
    /// No PDC could be allocated at the target.
    pub const NO_PDC_AVAIL: NackCode = NackCode(0x04);
    /// The target has no packet buffer.
    pub const NO_PKT_BUF: NackCode = NackCode(0x07);
    /// The SES has no resource for the message (SRD: receiver not ready).
    pub const NO_SES_MSG_AVAIL: NackCode = NackCode(0x09);
    /// The PSN lies outside the target's window.
    pub const PSN_OOR_WINDOW: NackCode = NackCode(0x0b);
    /// The DPDCID names no PDC.
    pub const INV_DPDCID: NackCode = NackCode(0x0e);
    /// The PDC is closing.
    pub const CLOSING: NackCode = NackCode(0x10);
    /// A SYN that does not fit the PDC.
    pub const INVALID_SYN: NackCode = NackCode(0x15);
    /// The PDC mode does not match.
    pub const PDC_MODE_MISMATCH: NackCode = NackCode(0x16);
    /// Start again from the PSN in the payload.
    pub const NEW_START_PSN: NackCode = NackCode(0x17);
}

/// Reads the prologue of any PDS packet: `(type, next header or control
/// type, flags)`.
///
/// # Errors
/// [`Error::Truncated`] on fewer than 2 bytes.
pub fn prologue(buf: &[u8]) -> Result<(u8, u8, u8)> {
    let b = buf.get(..PROLOGUE_LEN).ok_or(Error::Truncated)?;
    let v = get_u16(b);
    Ok(((v >> 11) as u8, ((v >> 7) & 0xf) as u8, (v & 0x7f) as u8))
}

fn put_prologue(buf: &mut [u8], ty: u8, next: u8, flags: u8) {
    put_u16(
        buf,
        (u16::from(ty & 0x1f) << 11) | (u16::from(next & 0xf) << 7) | u16::from(flags & 0x7f),
    );
}

mod field {
    use core::ops::Range;
    pub const PRLG: Range<usize> = 0..2;
    pub const W2: Range<usize> = 2..4;
    pub const PSN: Range<usize> = 4..8;
    pub const SPDCID: Range<usize> = 8..10;
    pub const DPDCID: Range<usize> = 10..12;
    pub const PAYLOAD: Range<usize> = 12..16;
    pub const CC_TYPE: usize = 12;
    pub const MPR: usize = 13;
    pub const SACK_OFF: Range<usize> = 14..16;
    pub const SACK_BITMAP: Range<usize> = 16..24;
    pub const CC_STATE: Range<usize> = 24..32;
    pub const NACK_CODE: usize = 2;
    pub const VENDOR_CODE: usize = 3;
}

macro_rules! common_accessors {
    ($name:ident) => {
        impl<T: AsRef<[u8]>> $name<T> {
            /// The raw prologue word.
            pub fn prologue(&self) -> u16 {
                get_u16(&self.buffer.as_ref()[field::PRLG])
            }
            /// The 5-bit packet type.
            pub fn pds_type(&self) -> u8 {
                (self.prologue() >> 11) as u8
            }
            /// The 4-bit next-header (or control type) field.
            pub fn next(&self) -> u8 {
                ((self.prologue() >> 7) & 0xf) as u8
            }
            /// The 7-bit flags.
            pub fn flags(&self) -> u8 {
                (self.prologue() & 0x7f) as u8
            }
            /// Source PDC identifier.
            pub fn spdcid(&self) -> u16 {
                get_u16(&self.buffer.as_ref()[field::SPDCID])
            }
            /// Destination PDC identifier (raw: with SYN it holds
            /// pdc_info and the PSN offset).
            pub fn dpdcid(&self) -> u16 {
                get_u16(&self.buffer.as_ref()[field::DPDCID])
            }
            /// The 32-bit PSN field (request PSN, cumulative ACK PSN, NACK PSN).
            pub fn psn(&self) -> u32 {
                get_u32(&self.buffer.as_ref()[field::PSN])
            }
            /// The 16-bit word at offset 2 (clear or ACK PSN offset,
            /// NACK code and vendor code, control reserved word).
            pub fn word2(&self) -> u16 {
                get_u16(&self.buffer.as_ref()[field::W2])
            }
        }
        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            /// Writes the prologue.
            pub fn set_prologue(&mut self, ty: u8, next: u8, flags: u8) {
                put_prologue(&mut self.buffer.as_mut()[field::PRLG], ty, next, flags);
            }
            /// Sets the source PDCID.
            pub fn set_spdcid(&mut self, v: u16) {
                put_u16(&mut self.buffer.as_mut()[field::SPDCID], v);
            }
            /// Sets the raw destination PDCID word.
            pub fn set_dpdcid(&mut self, v: u16) {
                put_u16(&mut self.buffer.as_mut()[field::DPDCID], v);
            }
            /// Sets the PSN field.
            pub fn set_psn(&mut self, v: u32) {
                put_u32(&mut self.buffer.as_mut()[field::PSN], v);
            }
            /// Sets the word at offset 2.
            pub fn set_word2(&mut self, v: u16) {
                put_u16(&mut self.buffer.as_mut()[field::W2], v);
            }
        }
    };
}

fixed_view!(
    /// A view of a RUD request header.
    Request,
    REQUEST_LEN
);
common_accessors!(Request);
fixed_view!(
    /// A view of an ACK header (the first 12 bytes of ACK_CC too).
    Ack,
    ACK_LEN
);
common_accessors!(Ack);
fixed_view!(
    /// A view of an ACK_CC header.
    AckCc,
    ACK_CC_LEN
);
common_accessors!(AckCc);
fixed_view!(
    /// A view of a NACK header.
    Nack,
    NACK_LEN
);
common_accessors!(Nack);
fixed_view!(
    /// A view of a control header.
    Control,
    CTRL_LEN
);
common_accessors!(Control);

impl<T: AsRef<[u8]>> AckCc<T> {
    /// CC type (high nibble of byte 12).
    pub fn cc_type(&self) -> u8 {
        self.buffer.as_ref()[field::CC_TYPE] >> 4
    }
    /// CC flags (low nibble of byte 12).
    pub fn cc_flags(&self) -> u8 {
        self.buffer.as_ref()[field::CC_TYPE] & 0xf
    }
    /// Multipath range the target advertises, in units of 128 PSNs.
    pub fn mpr(&self) -> u8 {
        self.buffer.as_ref()[field::MPR]
    }
    /// SACK base relative to the cumulative ACK PSN.
    pub fn sack_psn_offset(&self) -> i16 {
        get_u16(&self.buffer.as_ref()[field::SACK_OFF]) as i16
    }
    /// The selective-ACK bitmap (bit i: PSN base + i received).
    pub fn sack_bitmap(&self) -> u64 {
        get_u64(&self.buffer.as_ref()[field::SACK_BITMAP])
    }
    /// The CC state word.
    pub fn ack_cc_state(&self) -> u64 {
        get_u64(&self.buffer.as_ref()[field::CC_STATE])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AckCc<T> {
    /// Sets the CC type and flags.
    pub fn set_cc_type_flags(&mut self, ty: u8, flags: u8) {
        self.buffer.as_mut()[field::CC_TYPE] = (ty << 4) | (flags & 0xf);
    }
    /// Sets the MPR byte.
    pub fn set_mpr(&mut self, v: u8) {
        self.buffer.as_mut()[field::MPR] = v;
    }
    /// Sets the SACK base offset.
    pub fn set_sack_psn_offset(&mut self, v: i16) {
        put_u16(&mut self.buffer.as_mut()[field::SACK_OFF], v as u16);
    }
    /// Sets the SACK bitmap.
    pub fn set_sack_bitmap(&mut self, v: u64) {
        put_u64(&mut self.buffer.as_mut()[field::SACK_BITMAP], v);
    }
    /// Sets the CC state word.
    pub fn set_ack_cc_state(&mut self, v: u64) {
        put_u64(&mut self.buffer.as_mut()[field::CC_STATE], v);
    }
}

impl<T: AsRef<[u8]>> Nack<T> {
    /// The NACK code.
    pub fn nack_code(&self) -> u8 {
        self.buffer.as_ref()[field::NACK_CODE]
    }
    /// The vendor code.
    pub fn vendor_code(&self) -> u8 {
        self.buffer.as_ref()[field::VENDOR_CODE]
    }
    /// Code-specific payload.
    pub fn payload(&self) -> u32 {
        get_u32(&self.buffer.as_ref()[field::PAYLOAD])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Nack<T> {
    /// Sets the payload.
    pub fn set_payload(&mut self, v: u32) {
        put_u32(&mut self.buffer.as_mut()[field::PAYLOAD], v);
    }
}

impl<T: AsRef<[u8]>> Control<T> {
    /// Type-specific payload.
    pub fn payload(&self) -> u32 {
        get_u32(&self.buffer.as_ref()[field::PAYLOAD])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Control<T> {
    /// Sets the payload.
    pub fn set_payload(&mut self, v: u32) {
        put_u32(&mut self.buffer.as_mut()[field::PAYLOAD], v);
    }
}

/// Where a request or control packet is headed: an established PDC, or one
/// being opened by this packet (SYN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Dest {
    /// The target's PDC identifier is known.
    Pdc(u16),
    /// SYN: the target PDC does not exist yet. `psn_offset` is this packet's
    /// PSN minus the PDC's start PSN (12 bits), from which the target learns
    /// the start PSN; `pdc_info` is 4 bits (bit 0: use a reserved PDC).
    Syn {
        /// 4-bit PDC info.
        pdc_info: u8,
        /// 12-bit offset from the start PSN.
        psn_offset: u16,
    },
}

impl Dest {
    fn parse(syn: bool, word: u16) -> Dest {
        if syn {
            Dest::Syn {
                pdc_info: (word >> 12) as u8,
                psn_offset: word & 0x0fff,
            }
        } else {
            Dest::Pdc(word)
        }
    }
    fn word(self) -> u16 {
        match self {
            Dest::Pdc(id) => id,
            Dest::Syn {
                pdc_info,
                psn_offset,
            } => (u16::from(pdc_info & 0xf) << 12) | (psn_offset & 0x0fff),
        }
    }
    /// True for a SYN.
    pub fn is_syn(self) -> bool {
        matches!(self, Dest::Syn { .. })
    }
}

/// A parsed RUD request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RequestRepr {
    /// What follows (a SES request, or response data for READ responses).
    pub next: NextHeader,
    /// Retransmission (RETX) flag.
    pub retx: bool,
    /// ACK requested (AR) flag.
    pub ack_req: bool,
    /// Clear PSN relative to `psn`: the target may forget ACK state for
    /// every PSN up to `psn + clear_psn_offset`.
    pub clear_psn_offset: i16,
    /// Packet sequence number.
    pub psn: u32,
    /// The sender's PDC.
    pub spdcid: u16,
    /// The target's PDC, or SYN data (SYN flag).
    pub dest: Dest,
}

impl RequestRepr {
    /// Parses a request view.
    ///
    /// # Errors
    /// Truncated; a type other than RUD_REQ; an unknown next header.
    pub fn parse<T: AsRef<[u8]>>(v: &Request<T>) -> Result<Self> {
        v.check_len()?;
        if v.pds_type() != PdsType::RudRequest as u8 {
            return Err(Error::Malformed("not a RUD request"));
        }
        let next = NextHeader::from_u8(v.next()).ok_or(Error::Malformed("next header"))?;
        let f = v.flags();
        Ok(RequestRepr {
            next,
            retx: f & REQ_FLAG_RETX != 0,
            ack_req: f & REQ_FLAG_AR != 0,
            clear_psn_offset: v.word2() as i16,
            psn: v.psn(),
            spdcid: v.spdcid(),
            dest: Dest::parse(f & REQ_FLAG_SYN != 0, v.dpdcid()),
        })
    }

    /// Always [`REQUEST_LEN`].
    pub const fn buffer_len(&self) -> usize {
        REQUEST_LEN
    }

    /// The clear PSN this header carries.
    pub fn clear_psn(&self) -> u32 {
        self.psn.wrapping_add(self.clear_psn_offset as i32 as u32)
    }

    /// Writes the header (reserved bits zero).
    ///
    /// # Panics
    /// If the buffer is shorter than [`REQUEST_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut Request<T>) {
        let mut f = 0;
        if self.retx {
            f |= REQ_FLAG_RETX;
        }
        if self.ack_req {
            f |= REQ_FLAG_AR;
        }
        if self.dest.is_syn() {
            f |= REQ_FLAG_SYN;
        }
        v.set_prologue(PdsType::RudRequest as u8, self.next as u8, f);
        v.set_word2(self.clear_psn_offset as u16);
        v.set_psn(self.psn);
        v.set_spdcid(self.spdcid);
        v.set_dpdcid(self.dest.word());
    }
}

/// The CC extension of ACK_CC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AckCcRepr {
    /// CC algorithm type (4 bits).
    pub cc_type: u8,
    /// CC flags (4 bits).
    pub cc_flags: u8,
    /// Multipath range of the target, in units of 128 PSNs.
    pub mpr: u8,
    /// SACK bitmap base, relative to the cumulative ACK PSN.
    pub sack_psn_offset: i16,
    /// Bit i set: PSN `cack_psn + sack_psn_offset + i` was received.
    pub sack_bitmap: u64,
    /// CC state (for our delay controller: see `docs/srd-wire.md`).
    pub ack_cc_state: u64,
}

/// A parsed ACK or ACK_CC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AckRepr {
    /// What follows: nothing, or a SES response.
    pub next: NextHeader,
    /// The 7 ACK flags (`ACK_FLAG_*`).
    pub flags: u8,
    /// The PSN that triggered this ACK, relative to `cack_psn`.
    pub ack_psn_offset: i16,
    /// Cumulative ACK: every PSN up to this one was received.
    pub cack_psn: u32,
    /// The sender's (target's) PDC.
    pub spdcid: u16,
    /// The receiver's (initiator's) PDC.
    pub dpdcid: u16,
    /// The CC extension: `Some` for ACK_CC.
    pub cc: Option<AckCcRepr>,
}

impl AckRepr {
    /// Parses an ACK or ACK_CC at the start of `buf`.
    ///
    /// # Errors
    /// Truncated; another type; an unknown next header.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let v = Ack::new_checked(buf)?;
        let cc = match PdsType::from_u8(v.pds_type()) {
            Some(PdsType::Ack) => None,
            Some(PdsType::AckCc) => {
                let c = AckCc::new_checked(buf)?;
                Some(AckCcRepr {
                    cc_type: c.cc_type(),
                    cc_flags: c.cc_flags(),
                    mpr: c.mpr(),
                    sack_psn_offset: c.sack_psn_offset(),
                    sack_bitmap: c.sack_bitmap(),
                    ack_cc_state: c.ack_cc_state(),
                })
            }
            _ => return Err(Error::Malformed("not an ACK")),
        };
        Ok(AckRepr {
            next: NextHeader::from_u8(v.next()).ok_or(Error::Malformed("next header"))?,
            flags: v.flags(),
            ack_psn_offset: v.word2() as i16,
            cack_psn: v.psn(),
            spdcid: v.spdcid(),
            dpdcid: v.dpdcid(),
            cc,
        })
    }

    /// The PSN that triggered the ACK.
    pub fn ack_psn(&self) -> u32 {
        self.cack_psn
            .wrapping_add(self.ack_psn_offset as i32 as u32)
    }

    /// 12, or 32 with the CC extension.
    pub const fn buffer_len(&self) -> usize {
        if self.cc.is_some() {
            ACK_CC_LEN
        } else {
            ACK_LEN
        }
    }

    /// Writes the header.
    ///
    /// # Panics
    /// If `buf` is shorter than [`Self::buffer_len`].
    pub fn emit(&self, buf: &mut [u8]) {
        let ty = if self.cc.is_some() {
            PdsType::AckCc
        } else {
            PdsType::Ack
        };
        let mut v = Ack::new_unchecked(&mut buf[..]);
        v.set_prologue(ty as u8, self.next as u8, self.flags);
        v.set_word2(self.ack_psn_offset as u16);
        v.set_psn(self.cack_psn);
        v.set_spdcid(self.spdcid);
        v.set_dpdcid(self.dpdcid);
        if let Some(cc) = self.cc {
            let mut c = AckCc::new_unchecked(&mut buf[..]);
            c.set_cc_type_flags(cc.cc_type, cc.cc_flags);
            c.set_mpr(cc.mpr);
            c.set_sack_psn_offset(cc.sack_psn_offset);
            c.set_sack_bitmap(cc.sack_bitmap);
            c.set_ack_cc_state(cc.ack_cc_state);
        }
    }
}

/// A parsed NACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NackRepr {
    /// The 7 NACK flags (`NACK_FLAG_*`).
    pub flags: u8,
    /// Why.
    pub code: NackCode,
    /// Vendor detail.
    pub vendor_code: u8,
    /// The PSN refused.
    pub psn: u32,
    /// The sender's (target's) PDC.
    pub spdcid: u16,
    /// The receiver's (initiator's) PDC.
    pub dpdcid: u16,
    /// Code-specific payload (SRD RNR: the suggested delay in µs).
    pub payload: u32,
}

impl NackRepr {
    /// Parses a NACK view.
    ///
    /// # Errors
    /// Truncated, or another type.
    pub fn parse<T: AsRef<[u8]>>(v: &Nack<T>) -> Result<Self> {
        v.check_len()?;
        if v.pds_type() != PdsType::Nack as u8 {
            return Err(Error::Malformed("not a NACK"));
        }
        Ok(NackRepr {
            flags: v.flags(),
            code: NackCode(v.nack_code()),
            vendor_code: v.vendor_code(),
            psn: v.psn(),
            spdcid: v.spdcid(),
            dpdcid: v.dpdcid(),
            payload: v.payload(),
        })
    }

    /// Always [`NACK_LEN`].
    pub const fn buffer_len(&self) -> usize {
        NACK_LEN
    }

    /// Writes the header (next header NONE).
    ///
    /// # Panics
    /// If the buffer is shorter than [`NACK_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut Nack<T>) {
        v.set_prologue(PdsType::Nack as u8, 0, self.flags);
        v.set_word2(u16::from_be_bytes([self.code.0, self.vendor_code]));
        v.set_psn(self.psn);
        v.set_spdcid(self.spdcid);
        v.set_dpdcid(self.dpdcid);
        v.set_payload(self.payload);
    }
}

/// A parsed control packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ControlRepr {
    /// Which control packet.
    pub ctrl: ControlType,
    /// Retransmission flag.
    pub retx: bool,
    /// ACK requested.
    pub ack_req: bool,
    /// Reserved word, or the probe's opaque value.
    pub opaque: u16,
    /// PSN (of the packet an ACK request is about, or of a CLOSE).
    pub psn: u32,
    /// The sender's PDC.
    pub spdcid: u16,
    /// The receiver's PDC, or SYN data.
    pub dest: Dest,
    /// Type-specific payload.
    pub payload: u32,
}

impl ControlRepr {
    /// Parses a control view.
    ///
    /// # Errors
    /// Truncated; another type; an unknown control type.
    pub fn parse<T: AsRef<[u8]>>(v: &Control<T>) -> Result<Self> {
        v.check_len()?;
        if v.pds_type() != PdsType::Control as u8 {
            return Err(Error::Malformed("not a control packet"));
        }
        let f = v.flags();
        Ok(ControlRepr {
            ctrl: ControlType::from_u8(v.next()).ok_or(Error::Malformed("control type"))?,
            retx: f & CTRL_FLAG_RETX != 0,
            ack_req: f & CTRL_FLAG_AR != 0,
            opaque: v.word2(),
            psn: v.psn(),
            spdcid: v.spdcid(),
            dest: Dest::parse(f & CTRL_FLAG_SYN != 0, v.dpdcid()),
            payload: v.payload(),
        })
    }

    /// Always [`CTRL_LEN`].
    pub const fn buffer_len(&self) -> usize {
        CTRL_LEN
    }

    /// Writes the header (the ISROD flag is zero: RUD).
    ///
    /// # Panics
    /// If the buffer is shorter than [`CTRL_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut Control<T>) {
        let mut f = 0;
        if self.retx {
            f |= CTRL_FLAG_RETX;
        }
        if self.ack_req {
            f |= CTRL_FLAG_AR;
        }
        if self.dest.is_syn() {
            f |= CTRL_FLAG_SYN;
        }
        v.set_prologue(PdsType::Control as u8, self.ctrl as u8, f);
        v.set_word2(self.opaque);
        v.set_psn(self.psn);
        v.set_spdcid(self.spdcid);
        v.set_dpdcid(self.dest.word());
        v.set_payload(self.payload);
    }
}

/// Any PDS header this crate parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PdsRepr {
    /// RUD_REQ.
    Request(RequestRepr),
    /// ACK or ACK_CC.
    Ack(AckRepr),
    /// NACK.
    Nack(NackRepr),
    /// CTRL.
    Control(ControlRepr),
}

impl PdsRepr {
    /// Parses the PDS header at the start of `buf`.
    ///
    /// # Errors
    /// Truncated; [`Error::UnsupportedOpcode`] with the type for the PDS
    /// types SRD does not use (ROD, RUDI, UUD, security, CCX …); a malformed
    /// header.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let (ty, _, _) = prologue(buf)?;
        match PdsType::from_u8(ty) {
            Some(PdsType::RudRequest) => Ok(PdsRepr::Request(RequestRepr::parse(
                &Request::new_checked(buf)?,
            )?)),
            Some(PdsType::Ack | PdsType::AckCc) => Ok(PdsRepr::Ack(AckRepr::parse(buf)?)),
            Some(PdsType::Nack) => Ok(PdsRepr::Nack(NackRepr::parse(&Nack::new_checked(buf)?)?)),
            Some(PdsType::Control) => Ok(PdsRepr::Control(ControlRepr::parse(
                &Control::new_checked(buf)?,
            )?)),
            _ => Err(Error::UnsupportedOpcode(ty)),
        }
    }

    /// Length of the header.
    pub fn buffer_len(&self) -> usize {
        match self {
            PdsRepr::Request(r) => r.buffer_len(),
            PdsRepr::Ack(a) => a.buffer_len(),
            PdsRepr::Nack(n) => n.buffer_len(),
            PdsRepr::Control(c) => c.buffer_len(),
        }
    }

    /// The SES header that follows, per the next-header field.
    pub fn next(&self) -> NextHeader {
        match self {
            PdsRepr::Request(r) => r.next,
            PdsRepr::Ack(a) => a.next,
            PdsRepr::Nack(_) | PdsRepr::Control(_) => NextHeader::None,
        }
    }

    /// Writes the header.
    ///
    /// # Panics
    /// If `buf` is shorter than [`Self::buffer_len`].
    pub fn emit(&self, buf: &mut [u8]) {
        match self {
            PdsRepr::Request(r) => r.emit(&mut Request::new_unchecked(buf)),
            PdsRepr::Ack(a) => a.emit(buf),
            PdsRepr::Nack(n) => n.emit(&mut Nack::new_unchecked(buf)),
            PdsRepr::Control(c) => c.emit(&mut Control::new_unchecked(buf)),
        }
    }
}
