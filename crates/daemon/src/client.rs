//! The client side of the daemon protocol: a connection with one open
//! device, the typed verbs calls over it ([`VerbsCalls`]), memfd-backed
//! memory, and the rings that post and poll without a system call.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use softverbs_core::calls::VerbsCalls;
use softverbs_core::driver::Wc;
use softverbs_core::events::{AsyncEvent, AsyncEvents, CompChannel};
use softverbs_core::shm::{sealed_memfd, SharedMap};
use softverbs_core::uapi::encoding::{decode_reply, encode_call};
use softverbs_core::uapi::{Call, Handle, Reply, UapiError};
use softverbs_core::{Result, VerbsError};
use softverbs_transport::{RecvWr, SendWr};

use crate::frame::{self, Kind};
use crate::proto::{Attach, RingKind};
use crate::ring::{Arm, Consumer, Producer, HEADER_SIZE};
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
///
/// Besides the socket it runs one sleeping thread, the *pump*: it moves
/// the daemon's async events from the context's event ring into
/// [`Client::async_events`], turns fired CQ rings into events of their
/// completion channels, and watches the socket: when the daemon goes away
/// (exit, crash, restart) it raises [`AsyncEvent::DeviceFatal`] and wakes
/// every waiter, whose waits then fail instead of hanging.
#[derive(Debug)]
pub struct Client {
    sock: Mutex<UnixStream>,
    driver_id: u32,
    device: String,
    /// The doorbell this client rings after posting (passed with every
    /// send, receive and SRQ ring).
    bell: Arc<Doorbell>,
    shared: Arc<Shared>,
    pump: Option<JoinHandle<()>>,
}

/// What the client's threads share with its pump.
#[derive(Debug)]
struct Shared {
    /// Rung by the daemon (events, fired CQs of channels) and to stop.
    bell: Doorbell,
    stop: AtomicBool,
    /// The daemon went away.
    dead: Arc<AtomicBool>,
    events: Arc<AsyncEvents>,
    /// CQ rings reporting to a completion channel.
    arms: Mutex<Vec<Weak<CqArm>>>,
    /// The eventfds of CQ rings without a channel (woken on device fatal).
    wakes: Mutex<Vec<Weak<Doorbell>>>,
}

/// A CQ ring's arming for its completion channel: `req_notify` stores the
/// ring's `wait` word (1 any, 2 solicited), then `armed`; the daemon
/// clears `wait` when it fires and rings the pump, which reports the CQ to
/// its channel.
#[derive(Debug)]
struct CqArm {
    id: u32,
    hdr: MapHeader,
    arm: Arm,
    channel: Arc<CompChannel>,
}

impl CqArm {
    fn fired(&self) -> bool {
        self.arm.fired(&self.hdr)
    }
}

impl Shared {
    fn report_fired(&self) {
        let mut arms = self.arms.lock().unwrap_or_else(|e| e.into_inner());
        arms.retain(|w| w.strong_count() > 0);
        for a in arms.iter().filter_map(Weak::upgrade) {
            if a.fired() {
                a.channel.notify(a.id);
            }
        }
    }

    /// The daemon is gone: say so, and wake every waiter.
    fn fatal(&self) {
        if self.dead.swap(true, Ordering::SeqCst) {
            return;
        }
        self.events.push(AsyncEvent::DeviceFatal);
        let arms = self.arms.lock().unwrap_or_else(|e| e.into_inner());
        for a in arms.iter().filter_map(Weak::upgrade) {
            a.channel.notify(a.id);
        }
        drop(arms);
        let wakes = self.wakes.lock().unwrap_or_else(|e| e.into_inner());
        for w in wakes.iter().filter_map(Weak::upgrade) {
            w.ring();
        }
    }
}

/// Slots of the context's event ring.
const EVENT_ENTRIES: u32 = 256;

/// The pump thread (see [`Client`]).
fn pump(sock: UnixStream, sh: Arc<Shared>, mut ring: Consumer<MapHeader, MapSlots>) {
    let mut b = [0u8; wqe::EVENT_SIZE];
    loop {
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
        while let Ok(true) = ring.pop(&mut b) {
            if let Ok(e) = wqe::decode_event(&b) {
                sh.events.push(e);
            }
        }
        sh.report_fired();
        let hup = {
            let mut fds = [
                PollFd::new(&sh.bell, PollFlags::IN),
                PollFd::new(&sock, PollFlags::RDHUP),
            ];
            if ring.prepare_sleep(1).unwrap_or(true) {
                let _ = rustix::event::poll(&mut fds, None);
            }
            fds[1]
                .revents()
                .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR)
        };
        ring.awake();
        sh.bell.drain();
        if hup {
            sh.fatal();
            return;
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.bell.ring();
        if let Some(p) = self.pump.take() {
            let _ = p.join();
        }
    }
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
        let watch = sock.try_clone().map_err(io)?;
        let mut c = Client {
            sock: Mutex::new(sock),
            driver_id,
            device: device.to_string(),
            bell: Arc::new(Doorbell::new().map_err(io)?),
            shared: Arc::new(Shared {
                bell: Doorbell::new().map_err(io)?,
                stop: AtomicBool::new(false),
                dead: Arc::new(AtomicBool::new(false)),
                events: Arc::new(AsyncEvents::new().map_err(io)?),
                arms: Mutex::new(Vec::new()),
                wakes: Mutex::new(Vec::new()),
            }),
            pump: None,
        };
        let stride = wqe::EVENT_SIZE as u32;
        let map = c.attach(
            RingKind::Events,
            Handle::from_raw(0),
            EVENT_ENTRIES,
            stride,
            &c.shared.bell,
        )?;
        let ring = Consumer::new(
            MapHeader(map.clone()),
            MapSlots {
                map,
                stride: stride as usize,
            },
            EVENT_ENTRIES,
        );
        let sh = c.shared.clone();
        c.pump = Some(
            std::thread::Builder::new()
                .name("softverbs-pump".into())
                .spawn(move || pump(watch, sh, ring))
                .map_err(io)?,
        );
        Ok(c)
    }

    /// The context's asynchronous events, as the daemon reports them, and
    /// [`AsyncEvent::DeviceFatal`] when the daemon goes away.
    pub fn async_events(&self) -> &Arc<AsyncEvents> {
        &self.shared.events
    }

    /// True once the daemon has gone away (the device is fatal).
    pub fn is_dead(&self) -> bool {
        self.shared.dead.load(Ordering::SeqCst)
    }

    /// The driver id of the open device (the uAPI registry's, as the
    /// daemon's OPEN reply gave it): `softverbs_core::efa::EFA_DRIVER_ID`
    /// for an EFA-like device.
    pub fn driver_id(&self) -> u32 {
        self.driver_id
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
        // Refused here, before the memfd is made (and before a u32 past
        // 2^31 overflows `next_power_of_two`), as the daemon would.
        let entries = entries
            .max(1)
            .checked_next_power_of_two()
            .filter(|&e| crate::ring::valid_entries(e))
            .ok_or_else(|| {
                VerbsError::invalid(format!("a ring of {entries} entries (at most 2^20)"))
            })?;
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
            self.shared.dead.clone(),
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
            self.shared.dead.clone(),
        ))
    }

    /// Attaches a completion ring to a CQ (`id`: the CQ's number, what
    /// its channel reports). With `channel`, the daemon rings this
    /// client's pump when the armed ring fires ([`CompQueue::req_notify`])
    /// and the pump reports the CQ to the channel; without, the ring has an
    /// eventfd of its own for [`CompQueue::wait_one`].
    pub fn comp_queue(
        &self,
        cq: Handle,
        id: u32,
        entries: u32,
        channel: Option<Arc<CompChannel>>,
    ) -> Result<CompQueue> {
        let wake = Arc::new(Doorbell::new().map_err(io)?);
        let stride = wqe::CQE_SIZE as u32;
        let map = match channel {
            Some(_) => self.attach(RingKind::Cq, cq, entries, stride, &self.shared.bell)?,
            None => self.attach(RingKind::Cq, cq, entries, stride, &*wake)?,
        };
        let entries = entries.max(1).next_power_of_two();
        let arm = channel.map(|channel| {
            let a = Arc::new(CqArm {
                id,
                hdr: MapHeader(map.clone()),
                arm: Arm::new(),
                channel,
            });
            self.shared
                .arms
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arc::downgrade(&a));
            a
        });
        if arm.is_none() {
            let mut w = self.shared.wakes.lock().unwrap_or_else(|e| e.into_inner());
            w.retain(|w| w.strong_count() > 0);
            w.push(Arc::downgrade(&wake));
        }
        Ok(CompQueue {
            cons: Consumer::new(
                MapHeader(map.clone()),
                MapSlots {
                    map: map.clone(),
                    stride: stride as usize,
                },
                entries,
            ),
            map,
            wake,
            arm,
            dead: self.shared.dead.clone(),
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
    dead: Arc<AtomicBool>,
}

fn gone() -> VerbsError {
    VerbsError::Io(
        "softverbsd went away (device fatal): every object of this context is gone; \
         open the device again once the daemon is back"
            .into(),
    )
}

impl WorkQueue {
    fn new(
        map: Arc<SharedMap>,
        entries: u32,
        stride: u32,
        bell: Arc<Doorbell>,
        send: bool,
        dead: Arc<AtomicBool>,
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
            dead,
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
        if self.dead.load(Ordering::Relaxed) {
            return Err(gone());
        }
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

    /// Posts the bind of a **type 1** window as a work request (a send
    /// ring only; `wr.op` a `BindMw`): the daemon hands it to
    /// `Driver::post_bind_mw`, in order with the WQEs before it.
    pub fn post_bind_mw(&mut self, wr: &SendWr) -> Result<()> {
        if !self.send {
            return Err(VerbsError::invalid("post_bind_mw on a receive ring"));
        }
        self.scratch.resize(self.stride, 0);
        wqe::encode_send_kind(wr, wqe::SendKind::Type1Bind, &mut self.scratch)
            .map_err(|e| VerbsError::invalid(e.to_string()))?;
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
    map: Arc<SharedMap>,
    wake: Arc<Doorbell>,
    arm: Option<Arc<CqArm>>,
    dead: Arc<AtomicBool>,
}

impl CompQueue {
    /// The ring's shared memory (tests scribble on it).
    pub fn shared(&self) -> &Arc<SharedMap> {
        &self.map
    }

    /// Arms the ring for its completion channel (`ibv_req_notify_cq`): the
    /// next completion (`solicited_only`: the next solicited or error one)
    /// pushed after this call reports the CQ to the channel. Without a
    /// channel it does nothing.
    pub fn req_notify(&self, solicited_only: bool) -> Result<()> {
        if self.dead.load(Ordering::Relaxed) {
            return Err(gone());
        }
        if let Some(a) = &self.arm {
            // An earlier arm that fired but was not reported yet is
            // reported now, not overwritten.
            if a.fired() {
                a.channel.notify(a.id);
            }
            a.arm.arm(&a.hdr, if solicited_only { 2 } else { 1 });
        }
        Ok(())
    }

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
            if self.dead.load(Ordering::Relaxed) {
                return Err(gone());
            }
            if now >= deadline {
                return Err(VerbsError::Io(format!("no completion within {timeout:?}")));
            }
            if self.cons.prepare_sleep(1).map_err(io)? {
                let left = deadline - now;
                let ts = rustix::time::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: i64::from(left.subsec_nanos()),
                };
                let mut fds = [PollFd::new(&*self.wake, PollFlags::IN)];
                let _ = rustix::event::poll(&mut fds, Some(&ts));
                self.wake.drain();
                self.cons.awake();
            }
        }
    }
}
