//! The client side of the daemon protocol: a connection with one open
//! device, the typed verbs calls over it ([`VerbsCalls`]), memfd-backed
//! memory, and the rings that post and poll without a system call.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use softverbs_core::calls::VerbsCalls;
use softverbs_core::driver::Wc;
use softverbs_core::shm::{sealed_memfd, SharedMap};
use softverbs_core::uapi::encoding::{decode_reply, encode_call};
use softverbs_core::uapi::{Call, Handle, Reply, UapiError};
use softverbs_core::{Result, VerbsError};
use softverbs_transport::{RecvWr, SendWr};

use crate::frame::{self, Kind};
use crate::proto::{Attach, RingKind};
use crate::ring::{Consumer, Producer, HEADER_SIZE};
use crate::worker::{ring_fd, Doorbell, MapHeader, MapSlots};
use crate::wqe;

fn io(e: impl std::fmt::Display) -> VerbsError {
    VerbsError::Io(format!("softverbsd: {e}"))
}

/// Sends one request on `sock` and returns the reply body.
fn request(sock: &UnixStream, kind: Kind, body: &[u8], fds: &[OwnedFd]) -> Result<Vec<u8>> {
    frame::send(sock, kind, body, &frame::borrow(fds)).map_err(io)?;
    let f = frame::recv(sock).map_err(io)?;
    if f.kind == Kind::ERROR {
        let (errno, msg) = frame::parse_error(&f.body);
        return Err(VerbsError::from_remote(errno, &msg));
    }
    if f.kind != kind.reply() {
        return Err(io(format!(
            "reply of kind {:#x} to {:#x}",
            f.kind.0, kind.0
        )));
    }
    Ok(f.body)
}

/// The device names a daemon offers.
pub fn devices(path: &Path) -> Result<Vec<String>> {
    let s = UnixStream::connect(path).map_err(io)?;
    let b = request(&s, Kind::DEVICES, &[], &[])?;
    Ok(String::from_utf8_lossy(&b)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Every object of every client of the daemon (`res show`, host-wide), as
/// JSON values (the serialisation of `softverbs_core::Resource`).
pub fn resources(path: &Path) -> Result<Vec<serde_json::Value>> {
    let s = UnixStream::connect(path).map_err(io)?;
    let b = request(&s, Kind::RESOURCES, &[], &[])?;
    serde_json::from_slice(&b).map_err(io)
}

/// A connection to the daemon with one device open: a context.
#[derive(Debug)]
pub struct Client {
    sock: Mutex<UnixStream>,
    driver_id: u32,
    device: String,
    /// The doorbell this client rings after posting (passed with every
    /// send, receive and SRQ ring).
    bell: Arc<Doorbell>,
}

impl VerbsCalls for Client {
    fn call_fds(&self, call: Call, fds: Vec<OwnedFd>) -> Result<Reply> {
        let bytes = encode_call(&call.driver(self.driver_id));
        let body = {
            let s = self.sock.lock().unwrap_or_else(|e| e.into_inner());
            request(&s, Kind::CALL, &bytes, &fds)?
        };
        match decode_reply(&body) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(e.into()),
            Err(d) => Err(VerbsError::Uapi(UapiError::Decode(d))),
        }
    }
}

impl Client {
    /// Connects to the daemon at `path` and opens `device`.
    pub fn open(path: &Path, device: &str) -> Result<Client> {
        let sock = UnixStream::connect(path).map_err(io)?;
        let b = request(&sock, Kind::OPEN, device.as_bytes(), &[])?;
        let driver_id = b
            .get(0..4)
            .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
            .ok_or_else(|| io("short OPEN reply"))?;
        Ok(Client {
            sock: Mutex::new(sock),
            driver_id,
            device: device.to_string(),
            bell: Arc::new(Doorbell::new().map_err(io)?),
        })
    }

    /// The device's name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Sends a raw frame and returns the raw reply frame (tests, fuzzing).
    pub fn raw(&self, kind: Kind, body: &[u8], fds: &[OwnedFd]) -> Result<frame::Frame> {
        let s = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        frame::send(&s, kind, body, &frame::borrow(fds)).map_err(io)?;
        frame::recv(&s).map_err(io)
    }

    fn attach(
        &self,
        kind: RingKind,
        handle: Handle,
        entries: u32,
        stride: u32,
        bell: &impl AsFd,
    ) -> Result<Arc<SharedMap>> {
        let entries = entries.max(1).next_power_of_two();
        let len = HEADER_SIZE as u64 + u64::from(entries) * u64::from(stride);
        let fd = sealed_memfd("softverbs-ring", len).map_err(io)?;
        let map = Arc::new(SharedMap::map(&fd, 0, len).map_err(io)?);
        let a = Attach {
            kind,
            entries,
            stride,
            handle,
        };
        let bell = bell.as_fd().try_clone_to_owned().map_err(io)?;
        let s = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        request(&s, Kind::ATTACH, &a.encode(), &[fd, bell])?;
        Ok(map)
    }

    /// Attaches a send ring of `entries` slots to a QP (from its
    /// `create_qp` reply): `max_send_sge`/`max_inline_data` as granted.
    pub fn send_queue(
        &self,
        qp: Handle,
        entries: u32,
        max_sge: u32,
        max_inline: u32,
    ) -> Result<WorkQueue> {
        let stride = wqe::send_stride(max_sge, max_inline);
        let map = self.attach(RingKind::Send, qp, entries, stride, &*self.bell)?;
        Ok(WorkQueue::new(
            map,
            entries,
            stride,
            self.bell.clone(),
            true,
        ))
    }

    /// Attaches a receive ring to a QP (or, with `srq`, to an SRQ).
    pub fn recv_queue(
        &self,
        h: Handle,
        entries: u32,
        max_sge: u32,
        srq: bool,
    ) -> Result<WorkQueue> {
        let stride = wqe::recv_stride(max_sge);
        let kind = if srq { RingKind::Srq } else { RingKind::Recv };
        let map = self.attach(kind, h, entries, stride, &*self.bell)?;
        Ok(WorkQueue::new(
            map,
            entries,
            stride,
            self.bell.clone(),
            false,
        ))
    }

    /// Attaches a completion ring to a CQ.
    pub fn comp_queue(&self, cq: Handle, entries: u32) -> Result<CompQueue> {
        let wake = Doorbell::new().map_err(io)?;
        let stride = wqe::CQE_SIZE as u32;
        let map = self.attach(RingKind::Cq, cq, entries, stride, &wake)?;
        let entries = entries.max(1).next_power_of_two();
        Ok(CompQueue {
            cons: Consumer::new(
                MapHeader(map.clone()),
                MapSlots {
                    map,
                    stride: stride as usize,
                },
                entries,
            ),
            wake,
        })
    }

    /// Allocates `len` bytes of sealed, shared memory and registers them in
    /// `pd` (the region's address is this process's mapping).
    pub fn reg_shared(
        &self,
        pd: Handle,
        len: usize,
        access: softverbs_transport::Access,
    ) -> Result<SharedMr> {
        let fd = sealed_memfd("softverbs-mr", len as u64).map_err(io)?;
        let map = Arc::new(SharedMap::map(&fd, 0, len as u64).map_err(io)?);
        let r = self.reg_mr_memfd(pd, fd, 0, len as u64, map.ptr() as u64, access)?;
        Ok(SharedMr { r, map })
    }
}

/// A memory region over a memfd this process and the daemon both map.
#[derive(Debug, Clone)]
pub struct SharedMr {
    /// Keys, address, length, handle.
    pub r: softverbs_core::MrRef,
    /// This process's mapping.
    pub map: Arc<SharedMap>,
}

impl SharedMr {
    /// An SGE over `len` bytes at `off`.
    pub fn sge(&self, off: usize, len: u32) -> softverbs_transport::Sge {
        softverbs_transport::Sge {
            addr: self.r.addr + off as u64,
            length: len,
            lkey: self.r.lkey,
        }
    }
}

/// A send, receive or SRQ ring: posting is a copy into shared memory and,
/// only when the daemon sleeps, one `write` to its doorbell.
#[derive(Debug)]
pub struct WorkQueue {
    prod: Producer<MapHeader, MapSlots>,
    prod_map: Arc<SharedMap>,
    stride: usize,
    bell: Arc<Doorbell>,
    send: bool,
    scratch: Vec<u8>,
}

impl WorkQueue {
    fn new(
        map: Arc<SharedMap>,
        entries: u32,
        stride: u32,
        bell: Arc<Doorbell>,
        send: bool,
    ) -> Self {
        let entries = entries.max(1).next_power_of_two();
        WorkQueue {
            prod_map: map.clone(),
            prod: Producer::new(
                MapHeader(map.clone()),
                MapSlots {
                    map,
                    stride: stride as usize,
                },
                entries,
            ),
            stride: stride as usize,
            bell,
            send,
            scratch: vec![0; stride as usize],
        }
    }

    /// The ring's shared memory (tests scribble on it).
    pub fn shared(&self) -> &Arc<SharedMap> {
        &self.prod_map
    }

    /// Rings the daemon's doorbell unconditionally.
    pub fn ring_doorbell(&self) {
        ring_fd(&*self.bell);
    }

    fn push(&mut self) -> Result<()> {
        self.prod.push(&self.scratch).map_err(|e| match e {
            crate::ring::RingError::Full => VerbsError::QueueFull,
            e => io(e),
        })?;
        if self.prod.wait_word() != 0 {
            ring_fd(&*self.bell);
        }
        Ok(())
    }

    /// Posts a send WR (a send ring only).
    pub fn post_send(&mut self, wr: &SendWr) -> Result<()> {
        if !self.send {
            return Err(VerbsError::invalid("post_send on a receive ring"));
        }
        self.scratch.resize(self.stride, 0);
        wqe::encode_send(wr, &mut self.scratch).map_err(|e| VerbsError::invalid(e.to_string()))?;
        self.push()
    }

    /// Posts a receive WR (a receive or SRQ ring only).
    pub fn post_recv(&mut self, wr: &RecvWr) -> Result<()> {
        if self.send {
            return Err(VerbsError::invalid("post_recv on a send ring"));
        }
        self.scratch.resize(self.stride, 0);
        wqe::encode_recv(wr, &mut self.scratch).map_err(|e| VerbsError::invalid(e.to_string()))?;
        self.push()
    }
}

/// A completion ring: polling is a copy out of shared memory.
#[derive(Debug)]
pub struct CompQueue {
    cons: Consumer<MapHeader, MapSlots>,
    wake: Doorbell,
}

impl CompQueue {
    /// Moves up to `max` completions into `out`.
    pub fn poll(&mut self, max: usize, out: &mut Vec<Wc>) -> Result<usize> {
        let mut b = [0u8; wqe::CQE_SIZE];
        let mut n = 0;
        while n < max && self.cons.pop(&mut b).map_err(io)? {
            out.push(wqe::decode_cqe(&b).map_err(io)?);
            n += 1;
        }
        Ok(n)
    }

    /// Waits up to `timeout` for one completion, sleeping on the eventfd
    /// the daemon rings (no spinning).
    #[allow(clippy::disallowed_methods)] // the API edge: waiting is wall-clock time
    pub fn wait_one(&mut self, timeout: Duration) -> Result<Wc> {
        let deadline = Instant::now() + timeout;
        let mut v = Vec::with_capacity(1);
        loop {
            if self.poll(1, &mut v)? == 1 {
                return Ok(v.remove(0));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(VerbsError::Io(format!("no completion within {timeout:?}")));
            }
            if self.cons.prepare_sleep(1).map_err(io)? {
                let left = deadline - now;
                let ts = rustix::time::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: i64::from(left.subsec_nanos()),
                };
                let mut fds = [PollFd::new(&self.wake, PollFlags::IN)];
                let _ = rustix::event::poll(&mut fds, Some(&ts));
                self.wake.drain();
                self.cons.awake();
            }
        }
    }
}
