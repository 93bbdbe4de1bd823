//! A simulated host: an IPv4 address (and its GID), one protection domain's
//! memory, and the QP engines that live there, found by QPN.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use softverbs_transport::{Instant, Qp};
use softverbs_wire::Gid;

use crate::memory::SimMemory;

/// Which end of a pair a QP is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Posts the work requests.
    Requester,
    /// Receives them (posts receive WQEs, owns the target memory).
    Responder,
}

/// A QP engine and what the simulator knows about it.
pub(crate) struct QpSlot {
    pub qp: Qp,
    pub pair: usize,
    pub side: Side,
    /// The `handle_timeout` event currently scheduled, if any.
    pub timer: Option<Instant>,
}

/// A simulated host.
pub(crate) struct Host {
    pub ip: Ipv4Addr,
    pub gid: Gid,
    pub memory: SimMemory,
    pub qps: Vec<QpSlot>,
    pub by_qpn: BTreeMap<u32, usize>,
}

impl Host {
    /// Host number `index`, at 10.0.x.y.
    pub(crate) fn new(index: usize) -> Host {
        let n = index as u32 + 1;
        let ip = Ipv4Addr::new(10, 0, (n >> 8) as u8, n as u8);
        Host {
            ip,
            gid: Gid::from_ipv4(ip),
            memory: SimMemory::new(
                0x1000_0000 * (n % 15) + 0x100,
                0x7f00_0000_0000 + (u64::from(n) << 36),
            ),
            qps: Vec::new(),
            by_qpn: BTreeMap::new(),
        }
    }

    /// Add a QP; returns its index on this host.
    pub(crate) fn add_qp(&mut self, qp: Qp, pair: usize, side: Side) -> usize {
        let idx = self.qps.len();
        self.by_qpn.insert(qp.qpn(), idx);
        self.qps.push(QpSlot {
            qp,
            pair,
            side,
            timer: None,
        });
        idx
    }
}

/// The 40 bytes a UD receive buffer starts with for RoCEv2 over IPv4, as
/// rxe writes them: 20 zero bytes, then the IPv4 header of the packet.
/// The simulated network sends with identification 0, TTL 64 and DF set.
pub(crate) fn network_header(src: Ipv4Addr, dst: Ipv4Addr, udp_payload_len: usize) -> [u8; 40] {
    let mut h = [0u8; 40];
    let ip = &mut h[20..];
    let total = (20 + 8 + udp_payload_len) as u16;
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let mut sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksums_to_zero() {
        let h = network_header(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 100);
        assert_eq!(h[..20], [0u8; 20]);
        let mut sum: u32 = h[20..]
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
        assert_eq!(u16::from_be_bytes([h[22], h[23]]), 128);
    }
}
