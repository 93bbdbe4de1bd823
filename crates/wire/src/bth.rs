//! Base transport header (IBTA vol. 1 §9.2, 12 bytes).
//!
//! ```text
//!  byte 0      | 1                  | 2..4
//!  OpCode      | SE M PadCnt(2) TVer(4) | P_Key
//!  byte 4      | 5..8
//!  F B resv6   | DestQP (24)
//!  byte 8      | 9..12
//!  A resv7     | PSN (24)
//! ```
//! In RoCEv2 byte 4 carries FECN/BECN in its top bits (Annex A17); the ICRC
//! treats the whole byte as variant (see [`crate::icrc`]).

use crate::opcode::Opcode;
use crate::psn::PSN_MASK;
use crate::util::{fixed_view, get_u16, get_u24, put_u16, put_u24};
use crate::Result;

/// Length of the BTH.
pub const BTH_LEN: usize = 12;

mod field {
    use core::ops::Range;
    pub const OPCODE: usize = 0;
    pub const FLAGS: usize = 1;
    pub const PKEY: Range<usize> = 2..4;
    pub const FECN_BECN: usize = 4;
    pub const DEST_QPN: Range<usize> = 5..8;
    pub const ACK_REQ: usize = 8;
    pub const PSN: Range<usize> = 9..12;
}

const SE: u8 = 0x80;
const MIGREQ: u8 = 0x40;
const PAD_SHIFT: u8 = 4;
const TVER_MASK: u8 = 0x0f;
const FECN: u8 = 0x80;
const BECN: u8 = 0x40;
const ACKREQ: u8 = 0x80;

fixed_view!(
    /// A view of a base transport header at the start of a buffer.
    Bth,
    BTH_LEN
);

impl<T: AsRef<[u8]>> Bth<T> {
    /// The opcode (not checked against the opcode table).
    pub fn opcode(&self) -> Opcode {
        Opcode(self.buffer.as_ref()[field::OPCODE])
    }
    /// Solicited event (SE).
    pub fn solicited(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & SE != 0
    }
    /// Migration request (M).
    pub fn migreq(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & MIGREQ != 0
    }
    /// Pad count (0..=3): bytes of pad between payload and ICRC.
    pub fn pad_count(&self) -> u8 {
        (self.buffer.as_ref()[field::FLAGS] >> PAD_SHIFT) & 3
    }
    /// Transport header version (0 in this version of IBTA).
    pub fn tver(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS] & TVER_MASK
    }
    /// Partition key.
    pub fn pkey(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[field::PKEY])
    }
    /// Forward explicit congestion notification (RoCEv2: byte 4, bit 7).
    pub fn fecn(&self) -> bool {
        self.buffer.as_ref()[field::FECN_BECN] & FECN != 0
    }
    /// Backward explicit congestion notification (RoCEv2: byte 4, bit 6).
    pub fn becn(&self) -> bool {
        self.buffer.as_ref()[field::FECN_BECN] & BECN != 0
    }
    /// The 6 reserved bits of byte 4.
    pub fn resv6(&self) -> u8 {
        self.buffer.as_ref()[field::FECN_BECN] & 0x3f
    }
    /// Destination QP number (24 bits).
    pub fn dest_qpn(&self) -> u32 {
        get_u24(&self.buffer.as_ref()[field::DEST_QPN])
    }
    /// Acknowledge request (A).
    pub fn ack_req(&self) -> bool {
        self.buffer.as_ref()[field::ACK_REQ] & ACKREQ != 0
    }
    /// The 7 reserved bits of byte 8.
    pub fn resv7(&self) -> u8 {
        self.buffer.as_ref()[field::ACK_REQ] & 0x7f
    }
    /// Packet sequence number (24 bits).
    pub fn psn(&self) -> u32 {
        get_u24(&self.buffer.as_ref()[field::PSN])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Bth<T> {
    fn set_flag(&mut self, idx: usize, bit: u8, on: bool) {
        let b = &mut self.buffer.as_mut()[idx];
        *b = if on { *b | bit } else { *b & !bit };
    }
    /// Sets the opcode.
    pub fn set_opcode(&mut self, op: Opcode) {
        self.buffer.as_mut()[field::OPCODE] = op.0;
    }
    /// Sets SE.
    pub fn set_solicited(&mut self, on: bool) {
        self.set_flag(field::FLAGS, SE, on);
    }
    /// Sets M.
    pub fn set_migreq(&mut self, on: bool) {
        self.set_flag(field::FLAGS, MIGREQ, on);
    }
    /// Sets the pad count (only the low 2 bits of `v` are used).
    pub fn set_pad_count(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[field::FLAGS];
        *b = (*b & !(3 << PAD_SHIFT)) | ((v & 3) << PAD_SHIFT);
    }
    /// Sets TVer (only the low 4 bits of `v` are used).
    pub fn set_tver(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[field::FLAGS];
        *b = (*b & !TVER_MASK) | (v & TVER_MASK);
    }
    /// Sets the P_Key.
    pub fn set_pkey(&mut self, v: u16) {
        put_u16(&mut self.buffer.as_mut()[field::PKEY], v);
    }
    /// Sets FECN.
    pub fn set_fecn(&mut self, on: bool) {
        self.set_flag(field::FECN_BECN, FECN, on);
    }
    /// Sets BECN.
    pub fn set_becn(&mut self, on: bool) {
        self.set_flag(field::FECN_BECN, BECN, on);
    }
    /// Sets the destination QPN (only the low 24 bits of `v` are used).
    pub fn set_dest_qpn(&mut self, v: u32) {
        put_u24(&mut self.buffer.as_mut()[field::DEST_QPN], v);
    }
    /// Sets A.
    pub fn set_ack_req(&mut self, on: bool) {
        self.set_flag(field::ACK_REQ, ACKREQ, on);
    }
    /// Sets the PSN (only the low 24 bits of `v` are used).
    pub fn set_psn(&mut self, v: u32) {
        put_u24(&mut self.buffer.as_mut()[field::PSN], v);
    }
    /// Clears the reserved bits of bytes 4 and 8.
    pub fn clear_reserved(&mut self) {
        self.buffer.as_mut()[field::FECN_BECN] &= FECN | BECN;
        self.buffer.as_mut()[field::ACK_REQ] &= ACKREQ;
    }
}

/// A parsed base transport header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BthRepr {
    /// OpCode.
    pub opcode: Opcode,
    /// SE: the receiver should raise a solicited event.
    pub solicited: bool,
    /// M: migration request.
    pub migreq: bool,
    /// PadCnt (0..=3).
    pub pad_count: u8,
    /// TVer (4 bits; 0).
    pub tver: u8,
    /// P_Key.
    pub pkey: u16,
    /// FECN.
    pub fecn: bool,
    /// BECN.
    pub becn: bool,
    /// Destination QP (24 bits).
    pub dest_qpn: u32,
    /// A: acknowledge request.
    pub ack_req: bool,
    /// PSN (24 bits).
    pub psn: u32,
}

impl Default for BthRepr {
    /// Opcode `RC_SEND_ONLY`, P_Key `0xffff`, everything else zero.
    fn default() -> Self {
        BthRepr {
            opcode: Opcode::RC_SEND_ONLY,
            solicited: false,
            migreq: false,
            pad_count: 0,
            tver: 0,
            pkey: crate::DEFAULT_PKEY,
            fecn: false,
            becn: false,
            dest_qpn: 0,
            ack_req: false,
            psn: 0,
        }
    }
}

impl BthRepr {
    /// Parses a BTH view. Does not reject unsupported opcodes (that is
    /// [`crate::PacketRepr::parse`]'s job); ignores reserved bits.
    ///
    /// # Errors
    /// [`crate::Error::Truncated`] if the view is shorter than 12 bytes.
    pub fn parse<T: AsRef<[u8]>>(bth: &Bth<T>) -> Result<Self> {
        bth.check_len()?;
        Ok(BthRepr {
            opcode: bth.opcode(),
            solicited: bth.solicited(),
            migreq: bth.migreq(),
            pad_count: bth.pad_count(),
            tver: bth.tver(),
            pkey: bth.pkey(),
            fecn: bth.fecn(),
            becn: bth.becn(),
            dest_qpn: bth.dest_qpn(),
            ack_req: bth.ack_req(),
            psn: bth.psn(),
        })
    }

    /// Length of the emitted header: always [`BTH_LEN`].
    pub const fn buffer_len(&self) -> usize {
        BTH_LEN
    }

    /// Writes every byte of the header; reserved bits are zero. Fields wider
    /// than their wire width are truncated to it (`pad_count` 2 bits, `tver`
    /// 4, `dest_qpn` and `psn` 24).
    ///
    /// # Panics
    /// If the view's buffer is shorter than [`BTH_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bth: &mut Bth<T>) {
        let b = bth.buffer.as_mut();
        b[field::OPCODE] = self.opcode.0;
        b[field::FLAGS] = (if self.solicited { SE } else { 0 })
            | (if self.migreq { MIGREQ } else { 0 })
            | ((self.pad_count & 3) << PAD_SHIFT)
            | (self.tver & TVER_MASK);
        put_u16(&mut b[field::PKEY], self.pkey);
        b[field::FECN_BECN] =
            (if self.fecn { FECN } else { 0 }) | (if self.becn { BECN } else { 0 });
        put_u24(&mut b[field::DEST_QPN], self.dest_qpn & PSN_MASK);
        b[field::ACK_REQ] = if self.ack_req { ACKREQ } else { 0 };
        put_u24(&mut b[field::PSN], self.psn & PSN_MASK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    // An RC ACK: opcode 0x11, P_Key ffff, QP 0x11,
    // A clear, PSN 0xdc9985.
    const BYTES: [u8; 12] = [
        0x11, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x11, 0x00, 0xdc, 0x99, 0x85,
    ];

    fn repr() -> BthRepr {
        BthRepr {
            opcode: Opcode::RC_ACKNOWLEDGE,
            dest_qpn: 0x11,
            psn: 0xdc9985,
            ..BthRepr::default()
        }
    }

    #[test]
    fn parse_golden() {
        let v = Bth::new_checked(&BYTES[..]).unwrap();
        assert_eq!(BthRepr::parse(&v).unwrap(), repr());
    }

    #[test]
    fn emit_into_a5() {
        let mut buf = [0xa5u8; 12];
        repr().emit(&mut Bth::new_unchecked(&mut buf[..]));
        assert_eq!(buf, BYTES);
    }

    #[test]
    fn all_bits() {
        let r = BthRepr {
            opcode: Opcode(0xff),
            solicited: true,
            migreq: true,
            pad_count: 3,
            tver: 0xf,
            pkey: 0x1234,
            fecn: true,
            becn: true,
            dest_qpn: 0xff_ffff,
            ack_req: true,
            psn: 0xabcdef,
        };
        let mut buf = [0xa5u8; 12];
        r.emit(&mut Bth::new_unchecked(&mut buf[..]));
        assert_eq!(
            buf,
            [0xff, 0xff, 0x12, 0x34, 0xc0, 0xff, 0xff, 0xff, 0x80, 0xab, 0xcd, 0xef]
        );
        assert_eq!(BthRepr::parse(&Bth::new_unchecked(&buf[..])).unwrap(), r);
    }

    #[test]
    fn setters_and_reserved() {
        let mut buf = [0xffu8; 12];
        let mut v = Bth::new_checked(&mut buf[..]).unwrap();
        assert_eq!((v.resv6(), v.resv7()), (0x3f, 0x7f));
        v.clear_reserved();
        v.set_pad_count(1);
        v.set_tver(0);
        v.set_solicited(false);
        v.set_migreq(false);
        v.set_fecn(false);
        v.set_becn(false);
        v.set_ack_req(false);
        v.set_opcode(Opcode::RC_SEND_ONLY);
        v.set_pkey(0xffff);
        v.set_dest_qpn(0x1_000002);
        v.set_psn(7);
        assert_eq!(v.pad_count(), 1);
        assert_eq!(v.dest_qpn(), 2);
        assert_eq!(
            v.into_inner(),
            &[0x04, 0x10, 0xff, 0xff, 0x00, 0, 0, 2, 0x00, 0, 0, 7]
        );
    }

    #[test]
    fn reserved_ignored_on_parse() {
        let mut buf = BYTES;
        buf[4] |= 0x3f;
        buf[8] |= 0x7f;
        assert_eq!(
            BthRepr::parse(&Bth::new_unchecked(&buf[..])).unwrap(),
            repr()
        );
    }

    #[test]
    fn truncated() {
        for n in 0..12 {
            assert_eq!(Bth::new_checked(&BYTES[..n]), Err(Error::Truncated));
            assert_eq!(
                BthRepr::parse(&Bth::new_unchecked(&BYTES[..n])),
                Err(Error::Truncated)
            );
        }
    }
}
