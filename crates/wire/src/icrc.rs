//! The invariant CRC (ICRC) of RoCEv2, exactly as Linux `rdma_rxe`
//! computes it (`rxe_icrc.c`, IBTA Annex A17.3.3).
//!
//! The ICRC is the standard CRC-32 (IEEE 802.3 polynomial, reflected,
//! initial value and final XOR all ones — what `crc32fast` computes) over:
//!
//! 1. 8 bytes of `0xff`, standing in for the masked LRH of native IB (rxe
//!    folds them into its seed `0xdebb20e3`);
//! 2. the IP header with its *variant* fields set to all ones:
//!    * IPv4: TOS (byte 1), TTL (byte 8) and the header checksum (bytes
//!      10–11). Everything else — the identification included — is covered;
//!    * IPv6: traffic class and flow label (the low nibble of byte 0 and
//!      bytes 1–3) and hop limit (byte 7);
//! 3. the UDP header with its checksum (bytes 6–7) set to `0xffff`;
//! 4. the BTH with byte 4 (`resv8a`, which in RoCEv2 carries FECN/BECN) set
//!    to `0xff`;
//! 5. the rest of the IB packet — extension headers, payload and pad — up
//!    to the ICRC.
//!
//! The 32-bit result is stored **little-endian** in the last 4 bytes of the
//! UDP payload (rxe stores its CPU-order value; on every machine rxe runs
//! on that is little-endian, and real captures agree).
//!
//! A receiver on a UDP socket does not see the IP header, so [`Endpoints`]
//! rebuilds it from the socket addresses. The IPv4 identification is the
//! one field it cannot know; see [`verify_unknown_ip_id`].

use crate::bth::BTH_LEN;
use crate::ip::{Ipv4Header, Ipv6Header, UdpHeader, IPPROTO_UDP, IPV4_MIN_LEN, IPV6_LEN, UDP_LEN};
use crate::ICRC_LEN;
use crc32fast::Hasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Hashes `bytes`, ORing `mask[i]` into byte `i` first (`mask` is at most
/// 16 bytes; bytes past the end of `bytes` are ignored).
fn update_masked(h: &mut Hasher, bytes: &[u8], mask: &[u8]) {
    let n = bytes.len().min(mask.len());
    let mut head = [0u8; 16];
    for i in 0..n {
        head[i] = bytes[i] | mask[i];
    }
    h.update(&head[..n]);
    h.update(&bytes[n..]);
}

/// Variant bits of an IPv4 header: TOS, TTL, header checksum.
const IPV4_MASK: [u8; 12] = [0, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0, 0xff, 0xff];
/// Variant bits of an IPv6 header: traffic class, flow label, hop limit.
const IPV6_MASK: [u8; 8] = [0x0f, 0xff, 0xff, 0xff, 0, 0, 0, 0xff];
/// Variant bits of the UDP header: the checksum.
const UDP_MASK: [u8; 8] = [0, 0, 0, 0, 0, 0, 0xff, 0xff];
/// Variant bits of the BTH: byte 4 (resv8a / FECN, BECN).
const BTH_MASK: [u8; 5] = [0, 0, 0, 0, 0xff];

/// The ICRC of an IB packet given the IP header it travelled under (IPv4
/// with options, or IPv6, told apart by the version nibble; any other
/// version is hashed unmasked), its UDP header and the packet without the
/// ICRC. Never panics; a BTH shorter than 12 bytes is hashed as it is.
///
/// IPv4 options, if any, are covered unmasked (rxe itself always sends
/// IHL 5 and only ever hashes a 20-byte header).
pub fn compute(ip_header: &[u8], udp_header: &[u8; 8], ib_without_icrc: &[u8]) -> u32 {
    let mut h = Hasher::new();
    h.update(&[0xff; 8]);
    let ip_mask: &[u8] = match ip_header.first().map(|b| b >> 4) {
        Some(4) => &IPV4_MASK,
        Some(6) => &IPV6_MASK,
        _ => &[],
    };
    update_masked(&mut h, ip_header, ip_mask);
    update_masked(&mut h, udp_header, &UDP_MASK);
    let bth_mask: &[u8] = if ib_without_icrc.len() >= BTH_LEN {
        &BTH_MASK
    } else {
        &[]
    };
    update_masked(&mut h, ib_without_icrc, bth_mask);
    h.finalize()
}

/// The addresses of a RoCEv2 packet as UDP sockets see them.
///
/// An address pair that is IPv4 on both ends (plain or v4-mapped IPv6, as a
/// dual-stack socket reports it) means an IPv4 packet; anything else an
/// IPv6 packet (a plain IPv4 address on one end is then v4-mapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoints {
    /// Sender address and UDP source port.
    pub src: SocketAddr,
    /// Receiver address and UDP destination port (normally 4791).
    pub dst: SocketAddr,
}

/// The IP and UDP headers rebuilt from [`Endpoints`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PseudoHeaders {
    ip: [u8; IPV6_LEN],
    ip_len: usize,
    /// The UDP header (length set, checksum 0).
    pub udp: [u8; UDP_LEN],
}

impl PseudoHeaders {
    /// The IP header (20 bytes for IPv4, 40 for IPv6).
    pub fn ip(&self) -> &[u8] {
        &self.ip[..self.ip_len]
    }
}

fn as_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    }
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

impl Endpoints {
    /// Whether the packet travels over IPv4.
    pub fn is_ipv4(&self) -> bool {
        as_v4(self.src.ip()).is_some() && as_v4(self.dst.ip()).is_some()
    }

    /// The IP and UDP headers a packet of `ib_len` bytes (ICRC included)
    /// travels under: IPv4 with IHL 5, DF set, the given identification,
    /// TTL 64, protocol UDP, total length and checksum filled; or IPv6 with
    /// hop limit 64, next header UDP and payload length filled (`ip_id`
    /// ignored). The UDP checksum is 0. (TOS, TTL, checksums, traffic class,
    /// flow label and hop limit are masked out of the ICRC anyway.)
    ///
    /// Lengths wrap silently for `ib_len` beyond what UDP can carry.
    pub fn pseudo_headers(&self, ip_id: u16, ib_len: usize) -> PseudoHeaders {
        let udp_len = UDP_LEN + ib_len;
        let mut udp = [0u8; UDP_LEN];
        let mut u = UdpHeader::new_unchecked(&mut udp[..]);
        u.set_src_port(self.src.port());
        u.set_dst_port(self.dst.port());
        u.set_len(udp_len as u16);
        u.set_checksum(0);
        let mut ip = [0u8; IPV6_LEN];
        let ip_len = match (as_v4(self.src.ip()), as_v4(self.dst.ip())) {
            (Some(s), Some(d)) => {
                let mut h = Ipv4Header::new_unchecked(&mut ip[..IPV4_MIN_LEN]);
                h.set_version_and_len(IPV4_MIN_LEN);
                h.set_tos(0);
                h.set_total_len((IPV4_MIN_LEN + udp_len) as u16);
                h.set_ident(ip_id);
                h.set_dont_frag_unfragmented(true);
                h.set_ttl(64);
                h.set_protocol(IPPROTO_UDP);
                h.set_src_addr(s);
                h.set_dst_addr(d);
                h.fill_checksum();
                IPV4_MIN_LEN
            }
            _ => {
                let mut h = Ipv6Header::new_unchecked(&mut ip[..]);
                h.set_version_tc_flow(0, 0);
                h.set_payload_len(udp_len as u16);
                h.set_next_header(IPPROTO_UDP);
                h.set_hop_limit(64);
                h.set_src_addr(as_v6(self.src.ip()));
                h.set_dst_addr(as_v6(self.dst.ip()));
                IPV6_LEN
            }
        };
        PseudoHeaders { ip, ip_len, udp }
    }
}

fn compute_for(ep: &Endpoints, ip_id: u16, packet: &[u8]) -> u32 {
    let ph = ep.pseudo_headers(ip_id, packet.len());
    compute(ph.ip(), &ph.udp, &packet[..packet.len() - ICRC_LEN])
}

fn stored(packet: &[u8]) -> u32 {
    let n = packet.len();
    u32::from_le_bytes([packet[n - 4], packet[n - 3], packet[n - 2], packet[n - 1]])
}

/// Computes the ICRC of `packet` (a whole IB packet, ICRC slot included)
/// sent between `ep` with IPv4 identification `ip_id` (ignored for IPv6)
/// and writes it little-endian into the last 4 bytes.
///
/// # Panics
/// If `packet` is shorter than 4 bytes.
pub fn seal(ep: &Endpoints, ip_id: u16, packet: &mut [u8]) {
    assert!(
        packet.len() >= ICRC_LEN,
        "seal: packet shorter than the ICRC"
    );
    let c = compute_for(ep, ip_id, packet);
    let n = packet.len();
    packet[n - ICRC_LEN..].copy_from_slice(&c.to_le_bytes());
}

/// Whether the ICRC of `packet` is right for `ep` and `ip_id` (ignored for
/// IPv6). `false` for packets shorter than 4 bytes.
pub fn verify(ep: &Endpoints, ip_id: u16, packet: &[u8]) -> bool {
    packet.len() >= ICRC_LEN && compute_for(ep, ip_id, packet) == stored(packet)
}

// ---------------------------------------------------------------------------
// Solving for an unknown IPv4 identification.
//
// Let f(M) be the CRC-32 of message M. For messages of equal length,
// f(A ^ B ^ C) = f(A) ^ f(B) ^ f(C): the CRC is affine, so its change when
// bits of M flip depends only on which bits flip and on how many bytes
// follow them, not on the rest of M. Write the identification as
// id = Σ b_i·2^i. With C0 the ICRC computed with id = 0,
//
//     ICRC(id) = C0 ^ XOR_{i : b_i = 1} B_i
//
// where B_i is the change caused by flipping bit i of the (big-endian)
// identification field. Flipping bits of a 2-byte field followed by n bytes
// changes the CRC by (f(E_i) ^ f(00 00)) · x^(8n) mod P — the CRC "shift"
// of zlib's crc32_combine. So B_i = D_i ⊗ x^(8n), where D_i (the change
// for a 2-byte message) is a compile-time constant and x^(8n) mod P takes
// O(log n) carry-less multiplications. n = 14 (IP bytes after the
// identification) + 8 (UDP) + the IB packet without its ICRC.
//
// Given the stored ICRC S we need id with XOR_{b_i} B_i = S ^ C0: 32
// equations over GF(2) in 16 unknowns, solved by Gaussian elimination on
// 16 32-bit vectors. The B_i are linearly independent (a non-zero change
// confined to 16 consecutive bits is a burst shorter than 32 bits, which
// CRC-32 always detects, i.e. it never maps to 0), so there is at most one
// solution: no search over the 65536 values, and no ambiguity. The price:
// with the identification unknown, only 16 of the ICRC's 32 bits check the
// packet — a random corruption passes with probability 2^-16.
// ---------------------------------------------------------------------------

/// The reflected CRC-32 polynomial.
const POLY: u32 = 0xedb8_8320;

/// a·b mod P, polynomials in CRC-32's reflected bit order (zlib's
/// `multmodp`).
const fn multmodp(a: u32, mut b: u32) -> u32 {
    if a == 0 {
        return 0;
    }
    let mut m: u32 = 1 << 31;
    let mut p: u32 = 0;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                break;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    p
}

/// X2N[k] = x^(2^k) mod P.
const X2N: [u32; 32] = {
    let mut t = [0u32; 32];
    let mut p: u32 = 1 << 30; // x^1
    let mut k = 0;
    while k < 32 {
        t[k] = p;
        p = multmodp(p, p);
        k += 1;
    }
    t
};

/// x^(8n) mod P: the operator that moves a CRC change past n zero bytes.
fn x8n_mod_p(n: usize) -> u32 {
    let mut p: u32 = 1 << 31; // x^0
    let mut n = n as u64;
    let mut k = 3; // 8n = n·2^3
    while n != 0 {
        if n & 1 != 0 {
            p = multmodp(X2N[k & 31], p);
        }
        n >>= 1;
        k += 1;
    }
    p
}

/// Bitwise CRC-32 for the compile-time constants below.
const fn crc32_const(data: &[u8]) -> u32 {
    let mut c = !0u32;
    let mut i = 0;
    while i < data.len() {
        c ^= data[i] as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        i += 1;
    }
    !c
}

/// D[i]: the CRC change of flipping bit i of a 2-byte big-endian field
/// that ends the message.
const ID_BIT_DELTA: [u32; 16] = {
    let mut d = [0u32; 16];
    let zero = crc32_const(&[0, 0]);
    let mut i = 0;
    while i < 16 {
        let v = (1u16 << i).to_be_bytes();
        d[i] = crc32_const(&v) ^ zero;
        i += 1;
    }
    d
};

/// Bytes of the ICRC stream after the IPv4 identification field of a
/// 20-byte header: the rest of the IP header and the UDP header.
const AFTER_IDENT: usize = IPV4_MIN_LEN - 6 + UDP_LEN;

/// The 16 basis vectors for an IB packet of `ib_without_icrc` bytes.
fn id_basis(ib_without_icrc: usize) -> [u32; 16] {
    let shift = x8n_mod_p(AFTER_IDENT + ib_without_icrc);
    ID_BIT_DELTA.map(|d| multmodp(shift, d))
}

/// Finds `id` with `XOR_{bit i of id} basis[i] == target`, if any (at most
/// one exists when the basis is independent, which it always is).
fn solve(basis: &[u32; 16], target: u32) -> Option<u16> {
    // Echelon form: rows[j] = (vector, combination of basis bits), with
    // distinct leading bits; each row has the leading bits of all earlier
    // rows clear.
    let mut rows = [(0u32, 0u16); 16];
    let mut n = 0;
    for (i, &b) in basis.iter().enumerate() {
        let (mut v, mut c) = (b, 1u16 << i);
        for &(rv, rc) in &rows[..n] {
            if v & (1 << (31 - rv.leading_zeros())) != 0 {
                v ^= rv;
                c ^= rc;
            }
        }
        if v == 0 {
            // Dependent basis: more than one id would fit. Cannot happen
            // for CRC-32 (see above); refuse rather than guess.
            return None;
        }
        rows[n] = (v, c);
        n += 1;
    }
    let (mut s, mut id) = (target, 0u16);
    for &(rv, rc) in &rows[..n] {
        if s & (1 << (31 - rv.leading_zeros())) != 0 {
            s ^= rv;
            id ^= rc;
        }
    }
    (s == 0).then_some(id)
}

/// Verifies the ICRC of a packet whose IPv4 identification is unknown (a
/// UDP socket does not report it, and rxe changes it with every packet):
/// returns the one identification that makes the ICRC match, or `None` if
/// none does (the packet is corrupt, or `ep` is wrong). Costs one CRC pass
/// over the packet plus a few hundred word operations (see the module
/// source for the math).
///
/// For IPv6 endpoints there is no identification: returns `Some(0)` if the
/// ICRC verifies, `None` otherwise. `None` for packets shorter than 4
/// bytes.
///
/// Only 16 bits of the ICRC remain as a check when the identification is
/// solved for: a random corruption passes with probability 2^-16.
pub fn verify_unknown_ip_id(ep: &Endpoints, packet: &[u8]) -> Option<u16> {
    if packet.len() < ICRC_LEN {
        return None;
    }
    if !ep.is_ipv4() {
        return verify(ep, 0, packet).then_some(0);
    }
    let c0 = compute_for(ep, 0, packet);
    let s = stored(packet);
    if c0 == s {
        return Some(0);
    }
    let id = solve(&id_basis(packet.len() - ICRC_LEN), c0 ^ s)?;
    debug_assert!(verify(ep, id, packet));
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BthRepr, Opcode, PacketRepr};

    fn ep4() -> Endpoints {
        Endpoints {
            src: "10.77.0.2:49443".parse().unwrap(),
            dst: "10.77.0.3:4791".parse().unwrap(),
        }
    }

    fn packet(n: usize) -> Vec<u8> {
        let bth = BthRepr {
            opcode: Opcode::RC_SEND_ONLY,
            dest_qpn: 0x11,
            psn: 5,
            ..Default::default()
        };
        let r = PacketRepr::new(bth, n).unwrap();
        let mut buf = vec![0u8; r.buffer_len()];
        let payload: Vec<u8> = (0..n).map(|i| i as u8).collect();
        r.emit(&mut buf, &payload);
        buf
    }

    /// The Python reference (`interop/host/icrc_check.py`), written out.
    fn reference(ip: &[u8], udp: &[u8], ib: &[u8]) -> u32 {
        let mut v = vec![0xffu8; 8];
        let mut iph = ip.to_vec();
        iph[1] = 0xff;
        iph[8] = 0xff;
        iph[10] = 0xff;
        iph[11] = 0xff;
        v.extend_from_slice(&iph);
        let mut u = udp.to_vec();
        u[6] = 0xff;
        u[7] = 0xff;
        v.extend_from_slice(&u);
        let mut b = ib.to_vec();
        b[4] = 0xff;
        v.extend_from_slice(&b);
        crc32fast::hash(&v)
    }

    #[test]
    fn matches_reference() {
        let p = packet(13);
        let ph = ep4().pseudo_headers(0x4242, p.len());
        assert_eq!(ph.ip().len(), 20);
        assert_eq!(ph.ip()[0], 0x45);
        assert_eq!(&ph.ip()[6..8], &[0x40, 0x00]);
        assert_eq!(
            u16::from_be_bytes([ph.ip()[2], ph.ip()[3]]) as usize,
            28 + p.len()
        );
        let ib = &p[..p.len() - 4];
        assert_eq!(
            compute(ph.ip(), &ph.udp, ib),
            reference(ph.ip(), &ph.udp, ib)
        );
        // Masked fields do not matter.
        let mut ip2 = ph.ip().to_vec();
        ip2[1] = 0x12;
        ip2[8] = 3;
        ip2[10] = 0;
        let mut udp2 = ph.udp;
        udp2[7] = 9;
        let mut ib2 = ib.to_vec();
        ib2[4] = 0xc0;
        assert_eq!(compute(&ip2, &udp2, &ib2), compute(ph.ip(), &ph.udp, ib));
        // The identification does.
        ip2[5] ^= 1;
        assert_ne!(compute(&ip2, &udp2, &ib2), compute(ph.ip(), &ph.udp, ib));
    }

    #[test]
    fn seal_verify() {
        let mut p = packet(100);
        seal(&ep4(), 7, &mut p);
        assert!(verify(&ep4(), 7, &p));
        assert!(!verify(&ep4(), 8, &p));
        assert_eq!(verify_unknown_ip_id(&ep4(), &p), Some(7));
        let mut other = ep4();
        other.src.set_port(49444);
        assert!(!verify(&other, 7, &p));
        assert!(!verify(&ep4(), 0, &[1, 2, 3]));
        assert_eq!(verify_unknown_ip_id(&ep4(), &[1, 2, 3]), None);
        // v4-mapped v6 socket addresses mean IPv4.
        let mapped = Endpoints {
            src: "[::ffff:10.77.0.2]:49443".parse().unwrap(),
            dst: "[::ffff:10.77.0.3]:4791".parse().unwrap(),
        };
        assert!(mapped.is_ipv4());
        assert!(verify(&mapped, 7, &p));
    }

    #[test]
    fn ipv6() {
        let ep = Endpoints {
            src: "[fe80::1]:49443".parse().unwrap(),
            dst: "[fe80::2]:4791".parse().unwrap(),
        };
        assert!(!ep.is_ipv4());
        let mut p = packet(8);
        seal(&ep, 1234, &mut p);
        assert!(verify(&ep, 0, &p));
        assert_eq!(verify_unknown_ip_id(&ep, &p), Some(0));
        let ph = ep.pseudo_headers(0, p.len());
        assert_eq!(ph.ip().len(), 40);
        // Traffic class, flow label and hop limit are masked.
        let mut ip = ph.ip().to_vec();
        ip[0] = 0x6f;
        ip[1] = 0x12;
        ip[3] = 0x34;
        ip[7] = 1;
        let ib = &p[..p.len() - 4];
        assert_eq!(compute(&ip, &ph.udp, ib), compute(ph.ip(), &ph.udp, ib));
        p[20] ^= 1;
        assert_eq!(verify_unknown_ip_id(&ep, &p), None);
    }

    #[test]
    fn solve_every_id_bit_and_lengths() {
        for n in [0usize, 1, 4, 255, 1024, 4096] {
            let mut p = packet(n);
            for id in [0u16, 1, 0x8000, 0x1234, 0xffff, 0xa5a5] {
                seal(&ep4(), id, &mut p);
                assert_eq!(
                    verify_unknown_ip_id(&ep4(), &p),
                    Some(id),
                    "n={n} id={id:#x}"
                );
            }
        }
    }

    #[test]
    fn basis_matches_brute_force_and_is_independent() {
        let p = packet(37);
        let c0 = compute_for(&ep4(), 0, &p);
        let b = id_basis(p.len() - 4);
        for (i, bi) in b.iter().enumerate() {
            assert_eq!(compute_for(&ep4(), 1 << i, &p) ^ c0, *bi, "bit {i}");
        }
        // Independent for every packet length up to 9000 bytes.
        for len in 0..9000 {
            let b = id_basis(len);
            let mut rows: Vec<u32> = Vec::new();
            for mut v in b {
                for r in &rows {
                    if v & (1 << (31 - r.leading_zeros())) != 0 {
                        v ^= r;
                    }
                }
                assert_ne!(v, 0, "dependent at len {len}");
                rows.push(v);
            }
        }
    }

    #[test]
    fn corrupted_is_mostly_rejected() {
        // With the id unknown, 16 check bits remain: of 2000 single-byte
        // corruptions of a sealed packet, essentially none may pass.
        let mut p = packet(64);
        seal(&ep4(), 0x55aa, &mut p);
        let mut passed = 0;
        for i in 0..p.len() {
            for x in [1u8, 0x80, 0xff] {
                let mut q = p.clone();
                q[i] ^= x;
                if i == 4 {
                    continue; // masked byte
                }
                if verify_unknown_ip_id(&ep4(), &q).is_some() {
                    passed += 1;
                }
            }
        }
        assert_eq!(passed, 0);
    }

    #[test]
    fn multmodp_basics() {
        // x^0 is the identity.
        assert_eq!(multmodp(1 << 31, 0x1234_5678), 0x1234_5678);
        assert_eq!(x8n_mod_p(0), 1 << 31);
        // Shifting by n zero bytes = crc32 combine with an empty CRC.
        let a = crc32fast::hash(b"hello");
        let zeros = [0u8; 77];
        let mut h = crc32fast::Hasher::new();
        h.update(b"hello");
        h.update(&zeros);
        let ab = h.finalize();
        assert_eq!(multmodp(x8n_mod_p(77), a) ^ crc32fast::hash(&zeros), ab);
    }
}
