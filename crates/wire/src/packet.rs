//! A whole IB transport packet: the UDP payload of RoCEv2.
//!
//! ```text
//!  BTH | DETH | RETH | AtomicETH | AETH | AtomicAckETH | ImmDt | IETH | payload | pad | ICRC
//!  12    8      16     28          4      8              4       4      n         0-3   4
//! ```
//! Which extension headers are present, and whether there may be a
//! payload, is decided by the opcode alone (see [`crate::opcode`]); the
//! order above is the IBTA order (no supported opcode carries two headers
//! whose relative order IBTA leaves open). The pad brings payload + pad to
//! a multiple of 4 and its length is the BTH pad count. The ICRC is the
//! last 4 bytes ([`crate::icrc`]).

use crate::aeth::{Aeth, AethRepr, AETH_LEN};
use crate::atomic::{
    AtomicAckEth, AtomicAckEthRepr, AtomicEth, AtomicEthRepr, ATOMIC_ACK_ETH_LEN, ATOMIC_ETH_LEN,
};
use crate::bth::{Bth, BthRepr, BTH_LEN};
use crate::deth::{Deth, DethRepr, DETH_LEN};
use crate::immdt::{Ieth, ImmDt, IETH_LEN, IMMDT_LEN};
use crate::opcode::{Opcode, OpcodeInfo};
use crate::reth::{Reth, RethRepr, RETH_LEN};
use crate::{Error, Result, ICRC_LEN};

/// The extension headers, in wire order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ext {
    Deth,
    Reth,
    AtomicEth,
    Aeth,
    AtomicAckEth,
    ImmDt,
    Ieth,
}

const EXT_ORDER: [Ext; 7] = [
    Ext::Deth,
    Ext::Reth,
    Ext::AtomicEth,
    Ext::Aeth,
    Ext::AtomicAckEth,
    Ext::ImmDt,
    Ext::Ieth,
];

impl Ext {
    const fn len(self) -> usize {
        match self {
            Ext::Deth => DETH_LEN,
            Ext::Reth => RETH_LEN,
            Ext::AtomicEth => ATOMIC_ETH_LEN,
            Ext::Aeth => AETH_LEN,
            Ext::AtomicAckEth => ATOMIC_ACK_ETH_LEN,
            Ext::ImmDt => IMMDT_LEN,
            Ext::Ieth => IETH_LEN,
        }
    }

    fn in_info(self, i: &OpcodeInfo) -> bool {
        match self {
            Ext::Deth => i.has_deth,
            Ext::Reth => i.has_reth,
            Ext::AtomicEth => i.has_atomic_eth,
            Ext::Aeth => i.has_aeth,
            Ext::AtomicAckEth => i.has_atomic_ack_eth,
            Ext::ImmDt => i.has_immdt,
            Ext::Ieth => i.has_ieth,
        }
    }

    fn in_repr(self, r: &PacketRepr) -> bool {
        match self {
            Ext::Deth => r.deth.is_some(),
            Ext::Reth => r.reth.is_some(),
            Ext::AtomicEth => r.atomic_eth.is_some(),
            Ext::Aeth => r.aeth.is_some(),
            Ext::AtomicAckEth => r.atomic_ack_eth.is_some(),
            Ext::ImmDt => r.immdt.is_some(),
            Ext::Ieth => r.ieth.is_some(),
        }
    }

    const fn name(self) -> &'static str {
        match self {
            Ext::Deth => "DETH presence does not match the opcode",
            Ext::Reth => "RETH presence does not match the opcode",
            Ext::AtomicEth => "AtomicETH presence does not match the opcode",
            Ext::Aeth => "AETH presence does not match the opcode",
            Ext::AtomicAckEth => "AtomicAckETH presence does not match the opcode",
            Ext::ImmDt => "ImmDt presence does not match the opcode",
            Ext::Ieth => "IETH presence does not match the opcode",
        }
    }
}

/// Offset of extension header `ext` for an opcode, if it carries it.
fn ext_offset(info: &OpcodeInfo, ext: Ext) -> Option<usize> {
    let mut off = BTH_LEN;
    for e in EXT_ORDER {
        if e == ext {
            return e.in_info(info).then_some(off);
        }
        if e.in_info(info) {
            off += e.len();
        }
    }
    None
}

/// The pad that brings `payload_len` to a multiple of 4.
pub const fn pad_for(payload_len: usize) -> u8 {
    ((4 - payload_len % 4) % 4) as u8
}

/// A view of a whole IB transport packet (BTH through ICRC).
///
/// Panic contract: after [`Packet::new_checked`] succeeded no accessor
/// panics. With [`Packet::new_unchecked`] on a buffer that would fail
/// [`Packet::check_len`], accessors may panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`].
    ///
    /// # Errors
    /// As [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds a BTH with a supported opcode, every
    /// extension header of that opcode and the ICRC; that an opcode without
    /// payload has neither payload nor pad; and that the pad fits in the
    /// bytes between the headers and the ICRC.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::UnsupportedOpcode`] or
    /// [`Error::Malformed`].
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        let bth = Bth::new_checked(b)?;
        let info = bth.opcode().info()?;
        let hdr = info.header_len();
        if b.len() < hdr + ICRC_LEN {
            return Err(Error::Truncated);
        }
        let rest = b.len() - hdr - ICRC_LEN;
        let pad = usize::from(bth.pad_count());
        if !info.has_payload {
            if rest != 0 {
                return Err(Error::Malformed("payload on an opcode without payload"));
            }
            if pad != 0 {
                return Err(Error::Malformed("pad count on an opcode without payload"));
            }
        } else if pad > rest {
            return Err(Error::Malformed("pad count exceeds the payload"));
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The BTH.
    pub fn bth(&self) -> Bth<&[u8]> {
        Bth::new_unchecked(self.buffer.as_ref())
    }

    /// The opcode.
    pub fn opcode(&self) -> Opcode {
        self.bth().opcode()
    }

    /// The opcode's table row.
    ///
    /// # Errors
    /// [`Error::UnsupportedOpcode`] (never after `new_checked`).
    pub fn info(&self) -> Result<&'static OpcodeInfo> {
        self.opcode().info()
    }

    /// BTH plus extension headers: the payload offset.
    pub fn header_len(&self) -> usize {
        self.info().map_or(BTH_LEN, OpcodeInfo::header_len)
    }

    fn ext(&self, ext: Ext) -> Option<&[u8]> {
        let off = ext_offset(self.info().ok()?, ext)?;
        Some(&self.buffer.as_ref()[off..off + ext.len()])
    }

    /// The DETH, if the opcode carries one.
    pub fn deth(&self) -> Option<Deth<&[u8]>> {
        self.ext(Ext::Deth).map(Deth::new_unchecked)
    }
    /// The RETH, if the opcode carries one.
    pub fn reth(&self) -> Option<Reth<&[u8]>> {
        self.ext(Ext::Reth).map(Reth::new_unchecked)
    }
    /// The AtomicETH, if the opcode carries one.
    pub fn atomic_eth(&self) -> Option<AtomicEth<&[u8]>> {
        self.ext(Ext::AtomicEth).map(AtomicEth::new_unchecked)
    }
    /// The AETH, if the opcode carries one.
    pub fn aeth(&self) -> Option<Aeth<&[u8]>> {
        self.ext(Ext::Aeth).map(Aeth::new_unchecked)
    }
    /// The AtomicAckETH, if the opcode carries one.
    pub fn atomic_ack_eth(&self) -> Option<AtomicAckEth<&[u8]>> {
        self.ext(Ext::AtomicAckEth).map(AtomicAckEth::new_unchecked)
    }
    /// The ImmDt, if the opcode carries one.
    pub fn immdt(&self) -> Option<ImmDt<&[u8]>> {
        self.ext(Ext::ImmDt).map(ImmDt::new_unchecked)
    }
    /// The IETH, if the opcode carries one.
    pub fn ieth(&self) -> Option<Ieth<&[u8]>> {
        self.ext(Ext::Ieth).map(Ieth::new_unchecked)
    }

    fn payload_range(&self) -> core::ops::Range<usize> {
        let b = self.buffer.as_ref();
        let start = self.header_len();
        let end = b.len() - ICRC_LEN - usize::from(self.bth().pad_count());
        start..end
    }

    /// The payload (pad excluded).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_range()]
    }

    /// The pad bytes (zero on the wire, not checked).
    pub fn pad(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[self.payload_range().end..b.len() - ICRC_LEN]
    }

    /// Everything the ICRC covers directly: the packet without the ICRC.
    pub fn without_icrc(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[..b.len() - ICRC_LEN]
    }

    /// The stored ICRC (little-endian on the wire, as rxe stores it).
    pub fn icrc(&self) -> u32 {
        let b = self.buffer.as_ref();
        let n = b.len();
        u32::from_le_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        &mut self.buffer.as_mut()[r]
    }

    /// Stores an ICRC value (little-endian) in the last 4 bytes.
    pub fn set_icrc(&mut self, icrc: u32) {
        let b = self.buffer.as_mut();
        let n = b.len();
        b[n - ICRC_LEN..].copy_from_slice(&icrc.to_le_bytes());
    }
}

/// A parsed IB transport packet (without its payload bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PacketRepr {
    /// The base transport header.
    pub bth: BthRepr,
    /// RETH (RDMA WRITE first/only, READ request).
    pub reth: Option<RethRepr>,
    /// AETH (ACKs, READ response first/last/only, atomic ACK).
    pub aeth: Option<AethRepr>,
    /// AtomicETH (CmpSwap, FetchAdd).
    pub atomic_eth: Option<AtomicEthRepr>,
    /// AtomicAckETH (atomic ACK).
    pub atomic_ack_eth: Option<AtomicAckEthRepr>,
    /// DETH (UD).
    pub deth: Option<DethRepr>,
    /// Immediate data (the `*_WITH_IMMEDIATE` opcodes).
    pub immdt: Option<u32>,
    /// IETH: the R_Key to invalidate (`*_WITH_INVALIDATE`).
    pub ieth: Option<u32>,
    /// Payload length, pad excluded.
    pub payload_len: usize,
}

impl PacketRepr {
    /// A repr whose optional headers are exactly those `bth.opcode`
    /// carries, each zero-valued (the AETH an ACK without credit
    /// information), and whose `bth.pad_count` is [`PacketRepr::pad_for`]
    /// `payload_len`. The caller fills in the header fields.
    ///
    /// # Errors
    /// [`Error::UnsupportedOpcode`]; [`Error::Malformed`] if `payload_len`
    /// is not zero for an opcode without payload.
    pub fn new(bth: BthRepr, payload_len: usize) -> Result<Self> {
        let info = bth.opcode.info()?;
        if !info.has_payload && payload_len != 0 {
            return Err(Error::Malformed("payload on an opcode without payload"));
        }
        Ok(PacketRepr {
            bth: BthRepr {
                pad_count: Self::pad_for(payload_len),
                ..bth
            },
            reth: info.has_reth.then(RethRepr::default),
            aeth: info.has_aeth.then(AethRepr::default),
            atomic_eth: info.has_atomic_eth.then(AtomicEthRepr::default),
            atomic_ack_eth: info.has_atomic_ack_eth.then(AtomicAckEthRepr::default),
            deth: info.has_deth.then(DethRepr::default),
            immdt: info.has_immdt.then_some(0),
            ieth: info.has_ieth.then_some(0),
            payload_len,
        })
    }

    /// The pad count for a payload of `payload_len` bytes (0..=3).
    pub const fn pad_for(payload_len: usize) -> u8 {
        pad_for(payload_len)
    }

    /// Checks that the repr is one [`PacketRepr::parse`] could return: a
    /// supported opcode, exactly its extension headers, no payload or pad
    /// where it carries none, `pad_count <= 3` and 24-bit fields in range.
    ///
    /// # Errors
    /// [`Error::UnsupportedOpcode`] or [`Error::Malformed`].
    pub fn check(&self) -> Result<()> {
        let info = self.bth.opcode.info()?;
        for e in EXT_ORDER {
            if e.in_info(info) != e.in_repr(self) {
                return Err(Error::Malformed(e.name()));
            }
        }
        if !info.has_payload && (self.payload_len != 0 || self.bth.pad_count != 0) {
            return Err(Error::Malformed("payload on an opcode without payload"));
        }
        if self.bth.pad_count > 3 {
            return Err(Error::Malformed("pad count above 3"));
        }
        let m = crate::psn::PSN_MASK;
        if self.bth.psn > m || self.bth.dest_qpn > m || self.bth.tver > 0xf {
            return Err(Error::Malformed("BTH field wider than on the wire"));
        }
        if self.deth.is_some_and(|d| d.src_qpn > m) || self.aeth.is_some_and(|a| a.msn > m) {
            return Err(Error::Malformed("24-bit field out of range"));
        }
        Ok(())
    }

    /// Parses a UDP payload of RoCEv2: BTH through ICRC (the ICRC must be
    /// there but is not verified: see [`crate::icrc`]). Returns the repr
    /// and the payload (pad excluded).
    ///
    /// # Errors
    /// [`Error::Truncated`] if the buffer is shorter than the headers of
    /// its opcode plus the ICRC; [`Error::UnsupportedOpcode`];
    /// [`Error::Malformed`] if an opcode without payload has payload or
    /// pad bytes, or the pad count exceeds the payload.
    pub fn parse(buf: &[u8]) -> Result<(PacketRepr, &[u8])> {
        let p = Packet::new_checked(buf)?;
        let repr = Self::parse_packet(&p)?;
        let range = p.payload_range();
        Ok((repr, &buf[range]))
    }

    /// Parses a checked [`Packet`] view.
    ///
    /// # Errors
    /// As [`PacketRepr::parse`].
    pub fn parse_packet<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<PacketRepr> {
        p.check_len()?;
        Ok(PacketRepr {
            bth: BthRepr::parse(&p.bth())?,
            reth: p.reth().map(|v| RethRepr::parse(&v)).transpose()?,
            aeth: p.aeth().map(|v| AethRepr::parse(&v)).transpose()?,
            atomic_eth: p
                .atomic_eth()
                .map(|v| AtomicEthRepr::parse(&v))
                .transpose()?,
            atomic_ack_eth: p
                .atomic_ack_eth()
                .map(|v| AtomicAckEthRepr::parse(&v))
                .transpose()?,
            deth: p.deth().map(|v| DethRepr::parse(&v)).transpose()?,
            immdt: p.immdt().map(|v| v.value()),
            ieth: p.ieth().map(|v| v.rkey()),
            payload_len: p.payload().len(),
        })
    }

    /// BTH plus the extension headers present in the repr.
    pub fn header_len(&self) -> usize {
        BTH_LEN
            + EXT_ORDER
                .iter()
                .filter(|e| e.in_repr(self))
                .map(|e| e.len())
                .sum::<usize>()
    }

    /// The whole packet: headers + payload + pad (`pad_count & 3`) + ICRC.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len + usize::from(self.bth.pad_count & 3) + ICRC_LEN
    }

    /// Writes the headers present in the repr (in wire order, whatever the
    /// opcode says: use [`PacketRepr::check`] or [`PacketRepr::new`] for
    /// consistency), copies `payload`, zeroes the pad and leaves the last 4
    /// bytes (the ICRC) untouched for [`crate::icrc::seal`]. Fields wider
    /// than on the wire are truncated.
    ///
    /// # Panics
    /// If `buf.len() != self.buffer_len()` or
    /// `payload.len() != self.payload_len`. Never otherwise.
    pub fn emit(&self, buf: &mut [u8], payload: &[u8]) {
        assert_eq!(payload.len(), self.payload_len, "emit: payload length");
        let hdr = self.header_len();
        buf[hdr..hdr + self.payload_len].copy_from_slice(payload);
        self.emit_headers(buf);
    }

    /// Like [`PacketRepr::emit`] but leaves the payload bytes as they are:
    /// for senders that gather the payload straight into the packet buffer
    /// (at `header_len()..header_len() + payload_len`), saving a copy.
    ///
    /// # Panics
    /// If `buf.len() != self.buffer_len()`. Never otherwise.
    pub fn emit_headers(&self, buf: &mut [u8]) {
        assert_eq!(buf.len(), self.buffer_len(), "emit: buffer length");
        self.bth.emit(&mut Bth::new_unchecked(&mut buf[..BTH_LEN]));
        let mut off = BTH_LEN;
        for e in EXT_ORDER {
            if !e.in_repr(self) {
                continue;
            }
            let b = &mut buf[off..off + e.len()];
            match e {
                Ext::Deth => {
                    if let Some(r) = self.deth {
                        r.emit(&mut Deth::new_unchecked(b));
                    }
                }
                Ext::Reth => {
                    if let Some(r) = self.reth {
                        r.emit(&mut Reth::new_unchecked(b));
                    }
                }
                Ext::AtomicEth => {
                    if let Some(r) = self.atomic_eth {
                        r.emit(&mut AtomicEth::new_unchecked(b));
                    }
                }
                Ext::Aeth => {
                    if let Some(r) = self.aeth {
                        r.emit(&mut Aeth::new_unchecked(b));
                    }
                }
                Ext::AtomicAckEth => {
                    if let Some(r) = self.atomic_ack_eth {
                        r.emit(&mut AtomicAckEth::new_unchecked(b));
                    }
                }
                Ext::ImmDt => {
                    if let Some(v) = self.immdt {
                        ImmDt::new_unchecked(b).set_value(v);
                    }
                }
                Ext::Ieth => {
                    if let Some(v) = self.ieth {
                        Ieth::new_unchecked(b).set_rkey(v);
                    }
                }
            }
            off += e.len();
        }
        off += self.payload_len;
        let n = buf.len();
        buf[off..n - ICRC_LEN].fill(0);
    }

    /// The opcode's table row.
    ///
    /// # Errors
    /// [`Error::UnsupportedOpcode`].
    pub fn info(&self) -> Result<&'static OpcodeInfo> {
        self.bth.opcode.info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aeth::{AckSyndrome, NakCode};

    fn bth(op: Opcode) -> BthRepr {
        BthRepr {
            opcode: op,
            dest_qpn: 0x11,
            psn: 0xabcdef,
            ack_req: true,
            ..BthRepr::default()
        }
    }

    fn roundtrip(repr: &PacketRepr, payload: &[u8]) -> Vec<u8> {
        repr.check().unwrap();
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        repr.emit(&mut buf, payload);
        // The ICRC is left alone.
        assert_eq!(&buf[buf.len() - 4..], &[0xa5; 4]);
        let (back, pl) = PacketRepr::parse(&buf).unwrap();
        assert_eq!(&back, repr);
        assert_eq!(pl, payload);
        buf
    }

    #[test]
    fn every_opcode_roundtrips_with_defaults() {
        for op in Opcode::all_supported() {
            let info = op.info().unwrap();
            let n = if info.has_payload { 5 } else { 0 };
            let payload: Vec<u8> = (0..n as u8).collect();
            let repr = PacketRepr::new(bth(op), n).unwrap();
            assert_eq!(repr.header_len(), info.header_len());
            let buf = roundtrip(&repr, &payload);
            assert_eq!(
                buf.len(),
                info.header_len() + n + repr.bth.pad_count as usize + 4
            );
            if info.has_payload {
                assert_eq!(repr.bth.pad_count, 3);
                // pad zeroed
                assert_eq!(&buf[buf.len() - 7..buf.len() - 4], &[0, 0, 0]);
            }
        }
    }

    #[test]
    fn write_only_imm_layout() {
        let mut r = PacketRepr::new(bth(Opcode::RC_RDMA_WRITE_ONLY_WITH_IMMEDIATE), 4).unwrap();
        r.reth = Some(RethRepr {
            va: 0x1000,
            rkey: 0x42,
            dma_len: 4,
        });
        r.immdt = Some(0xcafe_f00d);
        let buf = roundtrip(&r, b"abcd");
        assert_eq!(
            &buf[12..28],
            &[0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0x42, 0, 0, 0, 4]
        );
        assert_eq!(&buf[28..32], &[0xca, 0xfe, 0xf0, 0x0d]);
        assert_eq!(&buf[32..36], b"abcd");
        assert_eq!(buf.len(), 40);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.reth().unwrap().rkey(), 0x42);
        assert_eq!(p.immdt().unwrap().value(), 0xcafe_f00d);
        assert!(p.aeth().is_none() && p.deth().is_none());
        assert_eq!(p.pad(), &[] as &[u8]);
    }

    #[test]
    fn atomic_ack_and_ud_imm_layout() {
        let mut r = PacketRepr::new(bth(Opcode::RC_ATOMIC_ACKNOWLEDGE), 0).unwrap();
        r.aeth = Some(AethRepr {
            syndrome: AckSyndrome::Nak(NakCode::InvalidRequest),
            msn: 3,
        });
        r.atomic_ack_eth = Some(AtomicAckEthRepr { orig: 9 });
        let buf = roundtrip(&r, &[]);
        assert_eq!(&buf[12..16], &[0x61, 0, 0, 3]);
        assert_eq!(&buf[16..24], &[0, 0, 0, 0, 0, 0, 0, 9]);

        let mut r = PacketRepr::new(bth(Opcode::UD_SEND_ONLY_WITH_IMMEDIATE), 2).unwrap();
        r.deth = Some(DethRepr {
            qkey: 0x1111_1111,
            src_qpn: 0x12,
        });
        r.immdt = Some(7);
        let buf = roundtrip(&r, b"hi");
        assert_eq!(&buf[12..20], &[0x11, 0x11, 0x11, 0x11, 0, 0, 0, 0x12]);
        assert_eq!(&buf[20..24], &[0, 0, 0, 7]);
    }

    #[test]
    fn errors() {
        let r = PacketRepr::new(bth(Opcode::RC_SEND_ONLY), 4).unwrap();
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut buf, b"1234");
        for n in 0..16 {
            assert_eq!(
                PacketRepr::parse(&buf[..n]).unwrap_err(),
                Error::Truncated,
                "{n}"
            );
        }
        // Zero-length SEND: 16 bytes is fine.
        assert_eq!(PacketRepr::parse(&buf[..16]).unwrap().0.payload_len, 0);

        let mut bad = buf.clone();
        bad[0] = 0x81;
        assert_eq!(
            PacketRepr::parse(&bad).unwrap_err(),
            Error::UnsupportedOpcode(0x81)
        );
        bad[0] = 0x15;
        assert_eq!(
            PacketRepr::parse(&bad).unwrap_err(),
            Error::UnsupportedOpcode(0x15)
        );

        // ACK with a payload.
        let mut bad = buf.clone();
        bad[0] = Opcode::RC_ACKNOWLEDGE.0;
        bad.extend_from_slice(&[0; 4]);
        assert!(matches!(PacketRepr::parse(&bad), Err(Error::Malformed(_))));
        // ACK with a pad count.
        let mut ack = vec![0u8; 20];
        ack[0] = Opcode::RC_ACKNOWLEDGE.0;
        assert!(PacketRepr::parse(&ack).is_ok());
        ack[1] = 0x10;
        assert!(matches!(PacketRepr::parse(&ack), Err(Error::Malformed(_))));
        // Pad count larger than the payload.
        let mut send = vec![0u8; 18];
        send[0] = Opcode::RC_SEND_ONLY.0;
        send[1] = 0x30;
        assert!(matches!(PacketRepr::parse(&send), Err(Error::Malformed(_))));
        send[1] = 0x20;
        let (r, pl) = PacketRepr::parse(&send).unwrap();
        assert_eq!((r.payload_len, pl.len()), (0, 0));
    }

    #[test]
    fn check_rejects_inconsistent() {
        let mut r = PacketRepr::new(bth(Opcode::RC_RDMA_WRITE_FIRST), 0).unwrap();
        r.reth = None;
        assert!(matches!(r.check(), Err(Error::Malformed(_))));
        // Still emits without panicking, and the result fails to parse.
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut buf, &[]);
        assert!(PacketRepr::parse(&buf).is_err());
        assert_eq!(
            PacketRepr::new(bth(Opcode::RC_ACKNOWLEDGE), 1).unwrap_err(),
            Error::Malformed("payload on an opcode without payload")
        );
        assert_eq!(
            PacketRepr::new(bth(Opcode(0xa0)), 0).unwrap_err(),
            Error::UnsupportedOpcode(0xa0)
        );
        let mut r = PacketRepr::new(bth(Opcode::RC_SEND_ONLY), 0).unwrap();
        r.bth.psn = 1 << 24;
        assert!(r.check().is_err());
    }

    #[test]
    #[should_panic(expected = "emit: buffer length")]
    fn emit_wrong_len_panics() {
        let r = PacketRepr::new(bth(Opcode::RC_SEND_ONLY), 0).unwrap();
        r.emit(&mut [0u8; 15], &[]);
    }

    #[test]
    fn pad_for_values() {
        assert_eq!([0, 1, 2, 3, 4, 5].map(pad_for), [0, 3, 2, 1, 0, 3]);
    }
}
