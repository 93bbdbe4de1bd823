//! The I/O path: one UDP socket per device, batched sends (`sendmmsg`) and
//! receives (`recvmmsg`) through `nix`, and the socket options that make
//! the kernel's IPv4 identification predictable.
//!
//! # Why `IP_PMTUDISC_DO` on an unconnected socket
//!
//! The ICRC covers the IPv4 identification. A UDP socket cannot choose it,
//! but Linux sets it to 0 on an *unconnected* socket whose packets carry
//! DF (`IP_MTU_DISCOVER = IP_PMTUDISC_DO`; `PROBE` would not do: it lets the
//! kernel pick an identification). So every packet is sealed with
//! `icrc::seal(ep, 0, ..)` before it is handed to the kernel. On receive the
//! identification is unknown (rxe changes it per packet), so the ICRC is
//! checked with `icrc::verify_unknown_ip_id`.
//!
//! # Source port
//!
//! The socket is bound to the device's address and port (4791 by default)
//! and every packet leaves from that port, instead of rxe's per-flow port
//! (`0xC000 | hash`, which `Transmit::src_port` carries). Receivers, rxe
//! included, accept any source port and the ICRC is computed over the port
//! actually used, so this interoperates; it keeps one socket per device
//! (no per-flow sockets) and one receive path. ECMP spreading over source
//! ports, which only matters on a routed fabric, is what is given up.
//!
//! # Several sockets per port (SRD's paths)
//!
//! A [`UdpPort`] may hold more than one socket: socket 0 is bound to the
//! device's address and port and is the only one read; the others only
//! send, each from its own source port. The SRD device uses them for its
//! paths (UET's entropy is the UDP source port): path `i` leaves from
//! `49152 + i`. A [`TxBatch`] slot names the socket it leaves from; a flush
//! sends each socket's packets with one `sendmmsg`.
//!
//! # UDP checksum 0
//!
//! IPv4 packets leave with UDP checksum 0 (`SO_NO_CHECK`), as rxe's do;
//! the ICRC covers the payload. IPv6 requires a checksum.
//!
//! # No GSO
//!
//! UDP GSO would cut the send system calls further, but what it does to the
//! IPv4 identification of each segment is kernel-internal; `sendmmsg`
//! keeps one datagram per packet, each with identification 0.

mod mmsg;

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{self, sockopt, MsgFlags, SockaddrStorage};
use softverbs_core::VerbsError;
use softverbs_transport::MAX_HEADER_LEN;

pub(crate) use mmsg::Headers;

/// Packets per `sendmmsg`.
pub(crate) const TX_BATCH: usize = 64;
/// Packets per `recvmmsg`.
pub(crate) const RX_BATCH: usize = 32;
/// Room for one outgoing packet: the largest path MTU plus headers.
pub(crate) const TX_STRIDE: usize = 4096 + MAX_HEADER_LEN;
/// Room for one incoming datagram; anything longer is truncated and dropped
/// as malformed.
pub(crate) const RX_STRIDE: usize = 8192;
/// Socket buffers asked for (the kernel may grant less without privilege).
const SOCK_BUF: usize = 4 << 20;

/// `SO_NO_CHECK`: IPv4 UDP datagrams leave with checksum 0 (nix has no
/// wrapper for it).
#[derive(Clone, Copy, Debug)]
struct NoCheck;
use nix::libc;
nix::setsockopt_impl!(
    NoCheck,
    libc::SOL_SOCKET,
    libc::SO_NO_CHECK,
    bool,
    nix::sys::socket::sockopt::SetBool
);

/// Bound UDP sockets: socket 0 receives and sends, the others only send.
#[derive(Debug)]
pub(crate) struct UdpPort {
    socks: Vec<UdpSocket>,
    local: SocketAddr,
}

impl UdpPort {
    /// Bind `addrs` (at least one) for device `device`; see [`Self::bind`].
    pub(crate) fn bind_all(addrs: &[SocketAddr], device: &str) -> Result<UdpPort, VerbsError> {
        let mut socks = Vec::with_capacity(addrs.len());
        let mut local = None;
        for &a in addrs {
            let p = Self::bind(a, device)?;
            local.get_or_insert(p.local);
            socks.extend(p.socks);
        }
        let local =
            local.ok_or_else(|| VerbsError::invalid(format!("{device}: no address to bind")))?;
        Ok(UdpPort { socks, local })
    }

    /// Marks every datagram of this port ECN-capable (ECT(0) in the IPv4
    /// TOS byte). Best effort: a socket that refuses keeps sending Not-ECT.
    pub(crate) fn set_ect(&self) {
        for s in &self.socks {
            if self.local.is_ipv4() {
                let _ = rustix::net::sockopt::set_ip_tos(s, 0x02);
            }
        }
    }

    /// Bind `addr` for device `device`, with DF set (identification 0) and
    /// large socket buffers.
    pub(crate) fn bind(addr: SocketAddr, device: &str) -> Result<UdpPort, VerbsError> {
        let sock = UdpSocket::bind(addr).map_err(|e| {
            VerbsError::Io(match e.kind() {
                io::ErrorKind::AddrInUse => format!(
                    "{addr} is in use — another process owns {device}; pick another address \
                     with SOFTVERBS_DEVICES=… (e.g. SOFTVERBS_DEVICES={device}=rxe:127.0.0.5) \
                     or use the daemon"
                ),
                io::ErrorKind::AddrNotAvailable => format!(
                    "{} is not an address of this host, so {device} cannot bind {addr}; \
                     pick a local address with SOFTVERBS_DEVICES=…",
                    addr.ip()
                ),
                _ => format!("{device}: cannot bind UDP {addr}: {e}"),
            })
        })?;
        let io_err = |what: &str, e: io::Error| {
            VerbsError::Io(format!("{device}: cannot set {what} on {addr}: {e}"))
        };
        match addr {
            SocketAddr::V4(_) => {
                rustix::net::sockopt::set_ip_mtu_discover(
                    &sock,
                    rustix::net::sockopt::Ipv4PathMtuDiscovery::DO,
                )
                .map_err(|e| io_err("IP_MTU_DISCOVER", e.into()))?;
                // The TOS byte of each datagram (its ECN bits) as a control
                // message: SRD's congestion control reads CE marks.
                rustix::net::sockopt::set_ip_recvtos(&sock, true)
                    .map_err(|e| io_err("IP_RECVTOS", e.into()))?;
            }
            SocketAddr::V6(_) => rustix::net::sockopt::set_ipv6_mtu_discover(
                &sock,
                rustix::net::sockopt::Ipv6PathMtuDiscovery::DO,
            )
            .map_err(|e| io_err("IPV6_MTU_DISCOVER", e.into()))?,
        }
        // UDP checksum 0 on IPv4, as rxe sends: the ICRC (or SRD's CRC32C
        // trailer) covers the payload, and the ICRC input masks the field.
        if let SocketAddr::V4(_) = addr {
            let _ = socket::setsockopt(&sock, NoCheck, &true);
        }
        // Bigger buffers absorb a window of 128 unacknowledged packets; the
        // forced variant needs CAP_NET_ADMIN, the plain one is capped by
        // net.core.rmem_max. Either is only an optimisation.
        if socket::setsockopt(&sock, sockopt::RcvBufForce, &SOCK_BUF).is_err() {
            let _ = socket::setsockopt(&sock, sockopt::RcvBuf, &SOCK_BUF);
        }
        if socket::setsockopt(&sock, sockopt::SndBufForce, &SOCK_BUF).is_err() {
            let _ = socket::setsockopt(&sock, sockopt::SndBuf, &SOCK_BUF);
        }
        let local = sock.local_addr().map_err(|e| io_err("local address", e))?;
        Ok(UdpPort {
            socks: vec![sock],
            local,
        })
    }

    /// How many sockets (socket 0 receives).
    pub(crate) fn sockets(&self) -> usize {
        self.socks.len()
    }

    /// The address the socket is bound to.
    pub(crate) fn local(&self) -> SocketAddr {
        self.local
    }

    /// Wake the receive thread: a zero-length datagram to ourselves.
    pub(crate) fn wake(&self) {
        let _ = self.socks[0].send_to(&[], self.local);
    }

    /// Stop receiving for good and wake a thread blocked in
    /// [`RxBatch::recv`] (it returns at most one empty datagram), even where
    /// the wake-up datagram of [`Self::wake`] is lost (a firewall dropping it
    /// on `lo` hung shutdown before). Linux's `shutdown(SHUT_RD)` marks an
    /// unconnected UDP socket shut and wakes its sleepers; it answers
    /// `ENOTCONN`, which changes nothing here.
    pub(crate) fn shutdown_receive(&self) {
        let _ = socket::shutdown(self.socks[0].as_raw_fd(), socket::Shutdown::Read);
    }
}

/// Outgoing packets gathered for one `sendmmsg`; the buffers are reused.
pub(crate) struct TxBatch {
    bufs: Vec<u8>,
    lens: [usize; TX_BATCH],
    addrs: Vec<Option<SockaddrStorage>>,
    /// The socket each packet leaves from.
    via: [u8; TX_BATCH],
    /// Scratch: the packets in send order (grouped by socket) and their
    /// addresses in that order.
    order: [usize; TX_BATCH],
    sorted_addrs: Vec<Option<SockaddrStorage>>,
    n: usize,
    hdrs: Headers,
}

impl std::fmt::Debug for TxBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TxBatch({} queued)", self.n)
    }
}

impl TxBatch {
    pub(crate) fn new() -> Self {
        TxBatch {
            bufs: vec![0; TX_BATCH * TX_STRIDE],
            lens: [0; TX_BATCH],
            addrs: vec![None; TX_BATCH],
            via: [0; TX_BATCH],
            order: [0; TX_BATCH],
            sorted_addrs: vec![None; TX_BATCH],
            n: 0,
            hdrs: Headers::new(TX_BATCH),
        }
    }

    /// The buffer for the next packet (call [`TxBatch::commit_via`] to keep it).
    /// The batch must not be full.
    pub(crate) fn slot(&mut self) -> &mut [u8] {
        let at = self.n * TX_STRIDE;
        &mut self.bufs[at..at + TX_STRIDE]
    }

    /// Keep the first `len` bytes of the slot, bound for `dst`.
    /// Leaving from socket `via` of the port (clamped to the sockets it has
    /// when flushed).
    pub(crate) fn commit_via(&mut self, len: usize, dst: SocketAddr, via: usize) {
        self.lens[self.n] = len;
        self.addrs[self.n] = Some(SockaddrStorage::from(dst));
        self.via[self.n] = u8::try_from(via).unwrap_or(u8::MAX);
        self.n += 1;
    }

    /// True when no slot is left.
    pub(crate) fn is_full(&self) -> bool {
        self.n == TX_BATCH
    }

    /// Send what is queued; returns (packets, bytes) handed to the kernel.
    /// A packet the kernel refuses is lost, as on a wire.
    pub(crate) fn flush(&mut self, port: &UdpPort) -> (u64, u64) {
        let n = self.n;
        if n == 0 {
            return (0, 0);
        }
        let socks = port.socks.len().max(1);
        for i in 0..n {
            self.via[i] = self.via[i].min((socks - 1) as u8);
            self.order[i] = i;
        }
        // Group by socket; within a socket keep the order of posting.
        let via = self.via;
        self.order[..n].sort_unstable_by_key(|&i| (via[i], i));
        for k in 0..n {
            self.sorted_addrs[k] = self.addrs[self.order[k]];
        }
        let (mut pkts, mut bytes) = (0u64, 0u64);
        let mut run = 0;
        while run < n {
            let s = via[self.order[run]];
            let mut end = run;
            while end < n && via[self.order[end]] == s {
                end += 1;
            }
            let (p, b) = self.send_run(port, usize::from(s), run, end);
            pkts += p;
            bytes += b;
            run = end;
        }
        self.n = 0;
        (pkts, bytes)
    }

    /// `sendmmsg` the packets `order[start..end]` from socket `s`.
    fn send_run(&mut self, port: &UdpPort, s: usize, mut start: usize, end: usize) -> (u64, u64) {
        let (mut pkts, mut bytes) = (0u64, 0u64);
        let fd = port.socks[s].as_raw_fd();
        while start < end {
            let res = {
                let bufs = &self.bufs;
                let lens = &self.lens;
                let order = &self.order;
                let iovs: [[IoSlice<'_>; 1]; TX_BATCH] = std::array::from_fn(|k| {
                    if k < end {
                        let i = order[k];
                        let at = i * TX_STRIDE;
                        [IoSlice::new(&bufs[at..at + lens[i].min(TX_STRIDE)])]
                    } else {
                        [IoSlice::new(&[])]
                    }
                });
                socket::sendmmsg(
                    fd,
                    self.hdrs.get(),
                    iovs[start..end].iter(),
                    &self.sorted_addrs[start..end],
                    [],
                    MsgFlags::empty(),
                )
                .map(|r| r.count())
            };
            match res {
                Ok(sent) if sent > 0 => {
                    for k in start..start + sent {
                        pkts += 1;
                        bytes += self.lens[self.order[k]] as u64;
                    }
                    start += sent;
                }
                Err(nix::errno::Errno::EINTR) => {}
                // Refused (no route, buffer space …): drop this packet and go on.
                _ => start += 1,
            }
        }
        (pkts, bytes)
    }
}

/// Incoming datagrams from one `recvmmsg`; lives on the device's I/O thread.
pub(crate) struct RxBatch {
    bufs: Vec<u8>,
    lens: [usize; RX_BATCH],
    srcs: [Option<SocketAddr>; RX_BATCH],
    truncated: [bool; RX_BATCH],
    /// ECN congestion experienced in the datagram's IP header (IPv4, where
    /// the socket reports its TOS byte).
    ce: [bool; RX_BATCH],
    n: usize,
    hdrs: Headers,
}

impl RxBatch {
    pub(crate) fn new() -> Self {
        RxBatch {
            bufs: vec![0; RX_BATCH * RX_STRIDE],
            lens: [0; RX_BATCH],
            srcs: [None; RX_BATCH],
            truncated: [false; RX_BATCH],
            n: 0,
            ce: [false; RX_BATCH],
            hdrs: Headers::with_tos(RX_BATCH),
        }
    }

    /// Wait for at least one datagram (up to `timeout`; `None`: until one
    /// arrives), then take what else is queued. Returns how many arrived (0
    /// on timeout).
    ///
    /// A timeout is waited for with `poll`, whose high-resolution timer
    /// fires within tens of microseconds; a socket's `SO_RCVTIMEO` counts
    /// in jiffies (4 ms at 250 Hz), which made every transport timer up to
    /// 4 ms late.
    pub(crate) fn recv(&mut self, port: &UdpPort, timeout: Option<Duration>) -> usize {
        self.n = 0;
        let mut flags = MsgFlags::MSG_WAITFORONE;
        if let Some(t) = timeout {
            let ts = rustix::event::Timespec::try_from(t).unwrap_or(rustix::event::Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            });
            let mut fds = [rustix::event::PollFd::new(
                &port.socks[0],
                rustix::event::PollFlags::IN,
            )];
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(n) if n > 0 => flags |= MsgFlags::MSG_DONTWAIT,
                _ => return 0, // timed out, or interrupted: the caller recomputes
            }
        }
        let mut chunks = self.bufs.chunks_exact_mut(RX_STRIDE);
        let mut iovs: [[IoSliceMut<'_>; 1]; RX_BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or(&mut []))]);
        let res = socket::recvmmsg(
            port.socks[0].as_raw_fd(),
            self.hdrs.get(),
            iovs.iter_mut(),
            flags,
            None,
        );
        let Ok(results) = res else {
            return 0;
        };
        for (i, m) in results.enumerate() {
            self.lens[i] = m.bytes;
            self.truncated[i] = m.flags.contains(MsgFlags::MSG_TRUNC);
            self.ce[i] = m.cmsgs().is_ok_and(|mut c| {
                c.any(|c| matches!(c, socket::ControlMessageOwned::Ipv4Tos(t) if t & 3 == 3))
            });
            self.srcs[i] = m.address.and_then(|a: SockaddrStorage| {
                if let Some(v4) = a.as_sockaddr_in() {
                    Some(SocketAddr::V4((*v4).into()))
                } else {
                    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
                }
            });
            self.n = i + 1;
        }
        self.n
    }

    /// Whether datagram `i` of the last [`RxBatch::recv`] arrived marked
    /// ECN congestion experienced.
    pub(crate) fn ce(&self, i: usize) -> bool {
        self.ce.get(i).copied().unwrap_or(false)
    }

    /// Datagram `i` of the last [`RxBatch::recv`]: its bytes, sender and
    /// whether it was truncated.
    pub(crate) fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>, bool) {
        let at = i * RX_STRIDE;
        (
            &self.bufs[at..at + self.lens[i].min(RX_STRIDE)],
            self.srcs[i],
            self.truncated[i],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{mpsc, Arc};

    /// A timed receive returns 0 when nothing came, and what is queued when
    /// something did.
    #[test]
    fn timed_receive() {
        let port = UdpPort::bind("127.0.0.1:0".parse().unwrap(), "t1").unwrap();
        let mut batch = RxBatch::new();
        assert_eq!(batch.recv(&port, Some(Duration::from_millis(5))), 0);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..3u8 {
            tx.send_to(&[i; 8], port.local()).unwrap();
        }
        let mut got = 0;
        while got < 3 {
            let n = batch.recv(&port, Some(Duration::from_secs(30)));
            assert!(n > 0, "a queued datagram was not received");
            for i in 0..n {
                assert_eq!(batch.get(i).0, &[got as u8; 8]);
                got += 1;
            }
        }
    }

    /// A receiver blocked with no timeout returns once the port is shut,
    /// without any datagram (as when the wake-up datagram is dropped).
    #[test]
    fn shutdown_receive_wakes_a_blocked_receiver() {
        let port = Arc::new(UdpPort::bind("127.0.0.1:0".parse().unwrap(), "t0").unwrap());
        let (tx, rx) = mpsc::channel();
        let p = Arc::clone(&port);
        let th = std::thread::spawn(move || {
            let mut batch = RxBatch::new();
            let got = batch.recv(&p, None);
            // At most one empty "datagram": the end-of-stream mark.
            let bytes: usize = (0..got).map(|i| batch.get(i).0.len()).sum();
            tx.send((got, bytes)).unwrap();
        });
        // Whether the thread is already asleep or not yet, it must return.
        std::thread::sleep(Duration::from_millis(50));
        port.shutdown_receive();
        let (got, bytes) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("recv stayed blocked after shutdown_receive");
        assert!(got <= 1 && bytes == 0, "{got} datagrams, {bytes} bytes");
        th.join().unwrap();
    }
}
