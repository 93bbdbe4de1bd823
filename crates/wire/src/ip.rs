//! The RoCEv2 framing around an IB transport packet: minimal IPv4, IPv6
//! and UDP header views (what the ICRC covers and what a capture holds),
//! de-framing of captured link-layer frames, and the UDP source ports rxe
//! picks.

use crate::util::{fixed_view, get_u16, get_u32, put_u16, put_u32};
use crate::{Error, Result, ROCEV2_UDP_PORT};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Length of an IPv4 header without options.
pub const IPV4_MIN_LEN: usize = 20;
/// Length of an IPv4 header with the most options (IHL 15).
pub const IPV4_MAX_LEN: usize = 60;
/// Length of the IPv6 fixed header.
pub const IPV6_LEN: usize = 40;
/// Length of the UDP header.
pub const UDP_LEN: usize = 8;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

mod ipv4 {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

mod ipv6 {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

mod udp {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// A view of an IPv4 header (options included) at the start of a buffer.
///
/// Panic contract: after [`Ipv4Header::new_checked`] no accessor panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Header<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Header { buffer }
    }

    /// Wraps a buffer after [`Ipv4Header::check_len`].
    ///
    /// # Errors
    /// As [`Ipv4Header::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self> {
        let v = Self::new_unchecked(buffer);
        v.check_len()?;
        Ok(v)
    }

    /// Checks for version 4, IHL at least 5 and the whole header (options
    /// included) in the buffer.
    ///
    /// # Errors
    /// [`Error::Truncated`] or [`Error::Malformed`].
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < IPV4_MIN_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::Malformed("IPv4 version"));
        }
        if self.header_len() < IPV4_MIN_LEN {
            return Err(Error::Malformed("IPv4 IHL below 5"));
        }
        if b.len() < self.header_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (4).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[ipv4::VER_IHL] >> 4
    }
    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[ipv4::VER_IHL] & 0x0f) * 4
    }
    /// The TOS byte (DSCP and ECN).
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[ipv4::TOS]
    }
    /// Total length (header + payload).
    pub fn total_len(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[ipv4::LENGTH])
    }
    /// Identification.
    pub fn ident(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[ipv4::IDENT])
    }
    /// Don't fragment.
    pub fn dont_frag(&self) -> bool {
        self.buffer.as_ref()[ipv4::FLG_OFF.start] & 0x40 != 0
    }
    /// More fragments.
    pub fn more_frags(&self) -> bool {
        self.buffer.as_ref()[ipv4::FLG_OFF.start] & 0x20 != 0
    }
    /// Fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[ipv4::FLG_OFF]) & 0x1fff
    }
    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[ipv4::TTL]
    }
    /// Payload protocol.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[ipv4::PROTOCOL]
    }
    /// Header checksum.
    pub fn checksum(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[ipv4::CHECKSUM])
    }
    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_u32(&self.buffer.as_ref()[ipv4::SRC]))
    }
    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_u32(&self.buffer.as_ref()[ipv4::DST]))
    }
    /// The header bytes (options included).
    pub fn header_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }
    /// Whether the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        internet_checksum(self.header_bytes()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Header<T> {
    /// Sets version 4 and the header length (a multiple of 4, 20..=60).
    pub fn set_version_and_len(&mut self, len: usize) {
        self.buffer.as_mut()[ipv4::VER_IHL] = 0x40 | ((len / 4) as u8 & 0x0f);
    }
    /// Sets the TOS byte.
    pub fn set_tos(&mut self, v: u8) {
        self.buffer.as_mut()[ipv4::TOS] = v;
    }
    /// Sets the total length.
    pub fn set_total_len(&mut self, v: u16) {
        put_u16(&mut self.buffer.as_mut()[ipv4::LENGTH], v);
    }
    /// Sets the identification.
    pub fn set_ident(&mut self, v: u16) {
        put_u16(&mut self.buffer.as_mut()[ipv4::IDENT], v);
    }
    /// Sets flags (DF only; MF clear) and a zero fragment offset.
    pub fn set_dont_frag_unfragmented(&mut self, df: bool) {
        put_u16(
            &mut self.buffer.as_mut()[ipv4::FLG_OFF],
            if df { 0x4000 } else { 0 },
        );
    }
    /// Sets the TTL.
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[ipv4::TTL] = v;
    }
    /// Sets the protocol.
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[ipv4::PROTOCOL] = v;
    }
    /// Sets the source address.
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        put_u32(&mut self.buffer.as_mut()[ipv4::SRC], a.into());
    }
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        put_u32(&mut self.buffer.as_mut()[ipv4::DST], a.into());
    }
    /// Computes and stores the header checksum.
    ///
    /// # Panics
    /// If the buffer is shorter than the IHL says.
    pub fn fill_checksum(&mut self) {
        put_u16(&mut self.buffer.as_mut()[ipv4::CHECKSUM], 0);
        let c = internet_checksum(self.header_bytes());
        put_u16(&mut self.buffer.as_mut()[ipv4::CHECKSUM], c);
    }
}

/// The one's-complement checksum of RFC 1071 (0 over a correct header).
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fixed_view!(
    /// A view of an IPv6 fixed header at the start of a buffer.
    Ipv6Header,
    IPV6_LEN
);

impl<T: AsRef<[u8]>> Ipv6Header<T> {
    /// Version (6).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }
    /// Traffic class.
    pub fn traffic_class(&self) -> u8 {
        ((get_u32(&self.buffer.as_ref()[ipv6::VER_TC_FLOW]) >> 20) & 0xff) as u8
    }
    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        get_u32(&self.buffer.as_ref()[ipv6::VER_TC_FLOW]) & 0xf_ffff
    }
    /// Payload length.
    pub fn payload_len(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[ipv6::PAYLOAD_LEN])
    }
    /// Next header.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[ipv6::NEXT_HEADER]
    }
    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[ipv6::HOP_LIMIT]
    }
    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[ipv6::SRC]);
        Ipv6Addr::from(a)
    }
    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[ipv6::DST]);
        Ipv6Addr::from(a)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Header<T> {
    /// Sets version 6, the traffic class and the flow label (20 bits).
    pub fn set_version_tc_flow(&mut self, tc: u8, flow: u32) {
        let v = (6 << 28) | (u32::from(tc) << 20) | (flow & 0xf_ffff);
        put_u32(&mut self.buffer.as_mut()[ipv6::VER_TC_FLOW], v);
    }
    /// Sets the payload length.
    pub fn set_payload_len(&mut self, v: u16) {
        put_u16(&mut self.buffer.as_mut()[ipv6::PAYLOAD_LEN], v);
    }
    /// Sets the next header.
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[ipv6::NEXT_HEADER] = v;
    }
    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[ipv6::HOP_LIMIT] = v;
    }
    /// Sets the source address.
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[ipv6::SRC].copy_from_slice(&a.octets());
    }
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[ipv6::DST].copy_from_slice(&a.octets());
    }
}

fixed_view!(
    /// A view of a UDP header at the start of a buffer.
    UdpHeader,
    UDP_LEN
);

impl<T: AsRef<[u8]>> UdpHeader<T> {
    /// Source port.
    pub fn src_port(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[udp::SRC_PORT])
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[udp::DST_PORT])
    }
    /// Length (header + payload).
    pub fn len(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[udp::LENGTH])
    }
    /// Whether the length field is zero (never valid).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Checksum (0: none, what rxe sends over IPv4).
    pub fn checksum(&self) -> u16 {
        get_u16(&self.buffer.as_ref()[udp::CHECKSUM])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpHeader<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        put_u16(&mut self.buffer.as_mut()[udp::SRC_PORT], v);
    }
    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        put_u16(&mut self.buffer.as_mut()[udp::DST_PORT], v);
    }
    /// Sets the length.
    pub fn set_len(&mut self, v: u16) {
        put_u16(&mut self.buffer.as_mut()[udp::LENGTH], v);
    }
    /// Sets the checksum.
    pub fn set_checksum(&mut self, v: u16) {
        put_u16(&mut self.buffer.as_mut()[udp::CHECKSUM], v);
    }
}

/// The IP header of a captured RoCEv2 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpHeaderRef<'a> {
    /// The header bytes: IPv4 with its options, or the 40-byte IPv6 header.
    pub bytes: &'a [u8],
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
}

impl IpHeaderRef<'_> {
    /// 4 or 6.
    pub fn version(&self) -> u8 {
        self.bytes.first().map_or(0, |b| b >> 4)
    }

    /// The IPv4 identification (`None` for IPv6).
    pub fn ident(&self) -> Option<u16> {
        (self.version() == 4 && self.bytes.len() >= IPV4_MIN_LEN)
            .then(|| get_u16(&self.bytes[ipv4::IDENT]))
    }
}

/// A RoCEv2 packet found in a captured frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoceFrame<'a> {
    /// The IP header.
    pub ip: IpHeaderRef<'a>,
    /// UDP source port.
    pub udp_src: u16,
    /// UDP destination port (4791).
    pub udp_dst: u16,
    /// The UDP header as captured.
    pub udp_header: [u8; 8],
    /// The UDP payload: the IB transport packet, ICRC included (as long as
    /// the UDP length says; link-layer padding removed).
    pub ib: &'a [u8],
}

impl RoceFrame<'_> {
    /// The addresses as UDP sockets at both ends see them.
    pub fn endpoints(&self) -> crate::icrc::Endpoints {
        crate::icrc::Endpoints {
            src: std::net::SocketAddr::new(self.ip.src, self.udp_src),
            dst: std::net::SocketAddr::new(self.ip.dst, self.udp_dst),
        }
    }
}

/// pcap link type: BSD loopback (4-byte address family).
pub const LINKTYPE_NULL: u32 = 0;
/// pcap link type: Ethernet (with 802.1Q / 802.1ad tags).
pub const LINKTYPE_ETHERNET: u32 = 1;
/// pcap link type: raw IPv4 or IPv6.
pub const LINKTYPE_RAW: u32 = 101;
/// pcap link type: Linux "cooked" capture v1 (`tcpdump -i any`).
pub const LINKTYPE_LINUX_SLL: u32 = 113;
/// pcap link type: raw IPv4.
pub const LINKTYPE_IPV4: u32 = 228;
/// pcap link type: raw IPv6.
pub const LINKTYPE_IPV6: u32 = 229;
/// pcap link type: Linux "cooked" capture v2.
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;

/// The network-layer bytes of a captured frame: strips Ethernet (up to two
/// VLAN tags), Linux SLL / SLL2 or BSD loopback headers. `None` for other
/// link types, non-IP frames or frames too short for their link header.
pub fn l3_from_frame(linktype: u32, frame: &[u8]) -> Option<&[u8]> {
    let by_ethertype = |et: u16| (et == ETHERTYPE_IPV4 || et == ETHERTYPE_IPV6).then_some(());
    match linktype {
        LINKTYPE_ETHERNET => {
            let mut off = 12;
            let mut et = get_u16(frame.get(off..off + 2)?);
            let mut tags = 0;
            while matches!(et, 0x8100 | 0x88a8 | 0x9100) && tags < 2 {
                off += 4;
                et = get_u16(frame.get(off..off + 2)?);
                tags += 1;
            }
            by_ethertype(et)?;
            frame.get(off + 2..)
        }
        LINKTYPE_LINUX_SLL => {
            by_ethertype(get_u16(frame.get(14..16)?))?;
            frame.get(16..)
        }
        LINKTYPE_LINUX_SLL2 => {
            by_ethertype(get_u16(frame.get(0..2)?))?;
            frame.get(20..)
        }
        LINKTYPE_NULL => {
            let fam = frame.get(0..4)?;
            let le = u32::from_le_bytes([fam[0], fam[1], fam[2], fam[3]]);
            let be = get_u32(fam);
            let ok = |f: u32| matches!(f, 2 | 24 | 28 | 30);
            (ok(le) || ok(be)).then_some(())?;
            frame.get(4..)
        }
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => Some(frame),
        _ => None,
    }
}

/// Finds the IP and UDP headers of a network-layer packet and returns the
/// RoCEv2 packet if it is unfragmented UDP to port 4791. The IP total /
/// payload length and the UDP length trim link-layer padding; a packet
/// whose lengths exceed the captured bytes (snaplen) gives `None`.
/// IPv6 extension headers are not followed.
pub fn roce_from_ip(l3: &[u8]) -> Option<RoceFrame<'_>> {
    let (ip, l4) = match l3.first()? >> 4 {
        4 => {
            let h = Ipv4Header::new_checked(l3).ok()?;
            let total = usize::from(h.total_len());
            if total < h.header_len() || total > l3.len() {
                return None;
            }
            if h.protocol() != IPPROTO_UDP || h.more_frags() || h.frag_offset() != 0 {
                return None;
            }
            let hl = h.header_len();
            let ip = IpHeaderRef {
                bytes: &l3[..hl],
                src: IpAddr::V4(h.src_addr()),
                dst: IpAddr::V4(h.dst_addr()),
            };
            (ip, &l3[hl..total])
        }
        6 => {
            let h = Ipv6Header::new_checked(l3).ok()?;
            let end = IPV6_LEN + usize::from(h.payload_len());
            if h.next_header() != IPPROTO_UDP || end > l3.len() {
                return None;
            }
            let ip = IpHeaderRef {
                bytes: &l3[..IPV6_LEN],
                src: IpAddr::V6(h.src_addr()),
                dst: IpAddr::V6(h.dst_addr()),
            };
            (ip, &l3[IPV6_LEN..end])
        }
        _ => return None,
    };
    let u = UdpHeader::new_checked(l4).ok()?;
    let ulen = usize::from(u.len());
    if u.dst_port() != ROCEV2_UDP_PORT || ulen < UDP_LEN || ulen > l4.len() {
        return None;
    }
    let mut udp_header = [0u8; UDP_LEN];
    udp_header.copy_from_slice(&l4[..UDP_LEN]);
    Some(RoceFrame {
        ip,
        udp_src: u.src_port(),
        udp_dst: u.dst_port(),
        udp_header,
        ib: &l4[UDP_LEN..ulen],
    })
}

/// The RoCEv2 packet in a captured link-layer frame of `linktype` (a pcap
/// `LINKTYPE_*` value), or `None` if the frame is not complete UDP to port
/// 4791 (see [`l3_from_frame`] and [`roce_from_ip`]).
pub fn roce_from_frame(linktype: u32, frame: &[u8]) -> Option<RoceFrame<'_>> {
    roce_from_ip(l3_from_frame(linktype, frame)?)
}

/// The lowest UDP source port rxe uses (`IB_ROCE_UDP_ENCAP_VALID_PORT_MIN`).
pub const ROCE_SPORT_MIN: u16 = 0xc000;

/// The UDP source port of an RC or UC QP pair, as rxe computes it (Linux
/// `rdma_calc_flow_label` then `rdma_flow_label_to_udp_sport`): symmetric
/// in the two QPNs, so both directions (and ACKs) use the same port.
pub fn rc_udp_src_port(lqpn: u32, rqpn: u32) -> u16 {
    let mut fl = u64::from(lqpn) * u64::from(rqpn);
    fl ^= fl >> 20;
    fl ^= fl >> 40;
    let fl = (fl & 0xf_ffff) as u32;
    let low = (fl & 0x3fff) ^ ((fl & 0xf_c000) >> 14);
    ROCE_SPORT_MIN | low as u16
}

/// The UDP source port of a UD QP (and QP1), as rxe computes it:
/// `0xc000 + ((qpn * 0x61c88647 mod 2^32) >> 18)`.
pub fn ud_udp_src_port(qpn: u32) -> u16 {
    ROCE_SPORT_MIN + (qpn.wrapping_mul(0x61c8_8647) >> 18) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_frame(payload: &[u8], pad_to: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let mut ip = [0xa5u8; 20];
        let mut h = Ipv4Header::new_unchecked(&mut ip[..]);
        h.set_version_and_len(20);
        h.set_tos(0);
        h.set_total_len((20 + 8 + payload.len()) as u16);
        h.set_ident(0x1234);
        h.set_dont_frag_unfragmented(true);
        h.set_ttl(64);
        h.set_protocol(IPPROTO_UDP);
        h.set_src_addr(Ipv4Addr::new(10, 77, 0, 2));
        h.set_dst_addr(Ipv4Addr::new(10, 77, 0, 3));
        h.fill_checksum();
        assert!(Ipv4Header::new_checked(&ip[..]).unwrap().verify_checksum());
        f.extend_from_slice(&ip);
        let mut u = [0u8; 8];
        let mut uh = UdpHeader::new_unchecked(&mut u[..]);
        uh.set_src_port(0xc123);
        uh.set_dst_port(4791);
        uh.set_len((8 + payload.len()) as u16);
        uh.set_checksum(0);
        f.extend_from_slice(&u);
        f.extend_from_slice(payload);
        if f.len() < pad_to {
            f.resize(pad_to, 0xee);
        }
        f
    }

    #[test]
    fn ethernet_v4_with_padding() {
        let f = v4_frame(&[1, 2, 3, 4], 60);
        let r = roce_from_frame(LINKTYPE_ETHERNET, &f).unwrap();
        assert_eq!(r.ib, &[1, 2, 3, 4]);
        assert_eq!(r.udp_src, 0xc123);
        assert_eq!(r.ip.ident(), Some(0x1234));
        assert_eq!(r.ip.version(), 4);
        assert_eq!(r.ip.src, IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2)));
        assert_eq!(r.endpoints().dst.port(), 4791);
        // Every truncation is None, never a panic.
        for n in 0..f.len() {
            let _ = roce_from_frame(LINKTYPE_ETHERNET, &f[..n]);
        }
        assert!(roce_from_frame(LINKTYPE_ETHERNET, &f[..14 + 20 + 8 + 3]).is_none());
    }

    #[test]
    fn other_linktypes() {
        let eth = v4_frame(&[9; 8], 0);
        let l3 = &eth[14..];
        // VLAN
        let mut vlan = eth[..12].to_vec();
        vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        vlan.extend_from_slice(&eth[12..]);
        assert_eq!(
            roce_from_frame(LINKTYPE_ETHERNET, &vlan).unwrap().ib,
            &[9; 8]
        );
        // SLL
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(l3);
        assert_eq!(
            roce_from_frame(LINKTYPE_LINUX_SLL, &sll).unwrap().ib,
            &[9; 8]
        );
        // SLL2
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(l3);
        assert_eq!(
            roce_from_frame(LINKTYPE_LINUX_SLL2, &sll2).unwrap().ib,
            &[9; 8]
        );
        // raw, null
        assert!(roce_from_frame(LINKTYPE_RAW, l3).is_some());
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(l3);
        assert!(roce_from_frame(LINKTYPE_NULL, &null).is_some());
        assert!(roce_from_frame(147, l3).is_none());
        // ARP
        let mut arp = eth.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(roce_from_frame(LINKTYPE_ETHERNET, &arp).is_none());
    }

    #[test]
    fn not_roce() {
        let mut f = v4_frame(&[0; 8], 0);
        f[14 + 20 + 3] = 0x35; // UDP dst port 4661+…: not 4791
        assert!(roce_from_frame(LINKTYPE_ETHERNET, &f).is_none());
        let mut f = v4_frame(&[0; 8], 0);
        f[14 + 9] = 6; // TCP
        assert!(roce_from_frame(LINKTYPE_ETHERNET, &f).is_none());
        let mut f = v4_frame(&[0; 8], 0);
        f[14 + 6] |= 0x20; // MF
        assert!(roce_from_frame(LINKTYPE_ETHERNET, &f).is_none());
    }

    #[test]
    fn ipv6() {
        let mut ip = [0u8; 40];
        let mut h = Ipv6Header::new_unchecked(&mut ip[..]);
        h.set_version_tc_flow(0x12, 0xabcde);
        h.set_payload_len(12);
        h.set_next_header(IPPROTO_UDP);
        h.set_hop_limit(64);
        h.set_src_addr("fe80::1".parse().unwrap());
        h.set_dst_addr("fe80::2".parse().unwrap());
        let h = Ipv6Header::new_checked(&ip[..]).unwrap();
        assert_eq!(
            (h.version(), h.traffic_class(), h.flow_label()),
            (6, 0x12, 0xabcde)
        );
        assert_eq!(h.hop_limit(), 64);
        let mut pkt = ip.to_vec();
        pkt.extend_from_slice(&[0xc0, 0, 0x12, 0xb7, 0, 12, 0, 0, 1, 2, 3, 4]);
        let r = roce_from_frame(LINKTYPE_IPV6, &pkt).unwrap();
        assert_eq!(r.ib, &[1, 2, 3, 4]);
        assert_eq!(r.ip.ident(), None);
        assert_eq!(r.ip.version(), 6);
    }

    #[test]
    fn source_ports() {
        // Symmetric, in range.
        assert_eq!(rc_udp_src_port(0x11, 0x12), rc_udp_src_port(0x12, 0x11));
        for q in [1u32, 2, 0x11, 0xffffff] {
            assert!(rc_udp_src_port(q, 0x33) >= 0xc000);
            assert!(ud_udp_src_port(q) >= 0xc000);
        }
        // QP1: 0x61c88647 >> 18 = 0x1872.
        assert_eq!(ud_udp_src_port(1), 0xc000 + 0x1872);
        // 0x11 * 0x12 = 0x132: no high bits.
        assert_eq!(rc_udp_src_port(0x11, 0x12), 0xc132);
    }

    #[test]
    fn checksum() {
        // RFC 1071 example header.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(internet_checksum(&h), 0);
        assert_eq!(internet_checksum(&[0xff]), 0x00ff);
    }
}
