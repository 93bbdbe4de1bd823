//! AF_PACKET sockets and `ppoll`: the only `unsafe` of the crate, each
//! block a plain libc call on buffers and structs it owns.

use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// `ETH_P_ALL` in network byte order: every protocol.
fn eth_p_all() -> u16 {
    (libc::ETH_P_ALL as u16).to_be()
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt_int(
    fd: &OwnedFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `v` lives across the call and its size is passed with it;
    // `fd` is an open socket we own.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// A raw packet socket bound to one interface: every frame arriving on it
/// (not those it sends), whole, Ethernet header included.
pub struct PacketSocket {
    fd: OwnedFd,
    /// Kernel drops (receive buffer full) read so far.
    drops: u64,
}

impl PacketSocket {
    /// Opens and binds a packet socket on interface `ifname` (in the
    /// calling thread's network namespace), with a receive buffer of
    /// `rcvbuf` bytes (forced past `rmem_max` when allowed).
    pub fn bind(ifname: &str, rcvbuf: usize) -> io::Result<PacketSocket> {
        let name =
            CString::new(ifname).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `name` is a NUL-terminated string that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface {ifname}: {}", io::Error::last_os_error()),
            ));
        }
        // SAFETY: plain syscall; the result is checked before use.
        let raw = check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::c_int::from(eth_p_all()),
            )
        })?;
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Our own transmissions are not frames to relay (Linux ≥ 4.20; on
        // older kernels `recv` filters them by packet type).
        let _ = setsockopt_int(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1);
        let size = rcvbuf.min(i32::MAX as usize) as libc::c_int;
        if setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
            setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, size)?;
        }
        // SAFETY: all-zero is a valid sockaddr_ll; the fields are set below.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = eth_p_all();
        sll.sll_ifindex = ifindex as libc::c_int;
        // SAFETY: `sll` is a sockaddr_ll of the size passed, alive across
        // the call.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(PacketSocket { fd, drops: 0 })
    }

    /// The next frame received, into `buf` (its length; a longer frame is
    /// cut); `None` when none is waiting. Never blocks.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            // SAFETY: all-zero is a valid sockaddr_ll.
            let mut from: libc::sockaddr_ll = unsafe { zeroed() };
            let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` is writable for `buf.len()` bytes and `from`
            // for `len`; both outlive the call.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue; // one we sent
            }
            return Ok(Some(n as usize));
        }
    }

    /// Sends one whole frame out of the interface (blocks while the
    /// socket's send buffer is full).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: `frame` is readable for its length across the call.
            let n =
                unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Frames the kernel dropped because the receive buffer was full, in
    /// total so far.
    pub fn kernel_drops(&mut self) -> u64 {
        // SAFETY: all-zero is a valid tpacket_stats.
        let mut st: libc::tpacket_stats = unsafe { zeroed() };
        let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `st` is writable for `len` bytes across the call.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if r == 0 {
            // The kernel's counters restart at each read.
            self.drops += u64::from(st.tp_drops);
        }
        self.drops
    }
}

/// Waits until one of `socks` has a frame or `timeout` passes (nanosecond
/// resolution); `ready[i]` tells whether `socks[i]` has one.
pub fn wait_readable(
    socks: &[PacketSocket],
    timeout: Duration,
    ready: &mut [bool],
) -> io::Result<()> {
    let mut fds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `fds` holds `fds.len()` pollfds and `ts` a timespec, both
    // alive across the call; no signal mask is passed.
    let r = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    for (r, f) in ready.iter_mut().zip(&fds) {
        *r = f.revents & (libc::POLLIN | libc::POLLERR) != 0;
    }
    Ok(())
}

/// Raises the calling thread's scheduling weight (nice `-10`), best
/// effort: on a busy host a relay that waits for the CPU delays every
/// frame it holds. Needs CAP_SYS_NICE; without it nothing changes.
pub fn raise_priority() -> bool {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // SAFETY: plain syscall on our own thread id.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, -10) == 0 }
}
