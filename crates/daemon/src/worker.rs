//! The ring worker of one connection: moves WQEs from the client's send,
//! receive and SRQ rings to the device, and completions from the device to
//! the client's CQ rings. It sleeps in `poll` on the client's doorbells and
//! on the context's completion channel, so it uses no CPU while nothing is
//! posted and nothing completes.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rustix::event::{EventfdFlags, PollFd, PollFlags};
use softverbs_core::driver::{RecvSource, Wc};
use softverbs_core::events::{AsyncEvent, AsyncEvents, CompChannel, CompletionSink};
use softverbs_core::objects::{CqObj, QpObj, SrqObj};
use softverbs_core::shm::SharedMap;
use softverbs_core::uapi::Handle;
use softverbs_core::{ModifyAttrs, Ucontext};
use softverbs_transport::{QpState, RecvWr, WcOpcode, WcQueue, WcStatus};

use crate::proto::{Attach, RingKind};
use crate::ring::{Consumer, Header, Producer, RingError, Slots, HEADER_SIZE};
use crate::server::Daemon;
use crate::wqe;

/// An eventfd: the doorbell one side rings to wake the other.
#[derive(Debug)]
pub struct Doorbell(OwnedFd);

impl Doorbell {
    /// A new non-blocking eventfd.
    pub fn new() -> std::io::Result<Self> {
        rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map(Doorbell)
            .map_err(Into::into)
    }

    /// Wraps a received eventfd.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Doorbell(fd)
    }

    /// Rings (adds 1).
    pub fn ring(&self) {
        ring_fd(&self.0);
    }

    /// Consumes pending rings.
    pub fn drain(&self) {
        let mut b = [0u8; 8];
        let _ = rustix::io::read(&self.0, &mut b);
    }
}

impl AsFd for Doorbell {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Writes 1 to an eventfd (errors are ignored: a full counter is rung).
pub fn ring_fd(fd: &impl AsFd) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

/// The header of a mapped ring.
#[derive(Debug, Clone)]
pub struct MapHeader(pub Arc<SharedMap>);

impl std::ops::Deref for MapHeader {
    type Target = Header;
    fn deref(&self) -> &Header {
        // SAFETY: the mapping starts on a page boundary (offset 0 of the
        // memfd), is at least HEADER_SIZE bytes (checked when attached) and
        // lives as long as `self`; `Header` is made of atomics only, which
        // the peer process may change at any time, as atomics allow.
        #[allow(unsafe_code)]
        unsafe {
            &*(self.0.ptr() as *const Header)
        }
    }
}

/// The slots of a mapped ring (racy-byte copies).
#[derive(Debug, Clone)]
pub struct MapSlots {
    /// The mapping.
    pub map: Arc<SharedMap>,
    /// Slot size.
    pub stride: usize,
}

impl Slots for MapSlots {
    fn put(&self, i: usize, src: &[u8]) {
        let _ = self.map.write(HEADER_SIZE + i * self.stride, src);
    }
    fn get(&self, i: usize, dst: &mut [u8]) {
        let _ = self.map.read(HEADER_SIZE + i * self.stride, dst);
    }
}

type RingConsumer = Consumer<MapHeader, MapSlots>;
type RingProducer = Producer<MapHeader, MapSlots>;

/// A receive or SRQ ring, read by the device itself (a [`RecvSource`]):
/// when datagrams arrive the device pulls the WQEs the client has posted,
/// as an HCA reads its receive queue from host memory, so a receive posted
/// before the peer sent is never missed because this worker had not run
/// yet (UD dropped such datagrams; RC answered them with RNR NAKs and
/// waited a retry timer). The worker pulls too, through the device, when
/// the client rings: one consumer, always under the device's lock, so the
/// WQEs keep their order.
struct RingRecv {
    cons: Mutex<RecvCons>,
    max_sge: u32,
    kind: RingKind,
    qpn: u32,
    /// Error completions of refused or undecodable WQEs (receive rings;
    /// an SRQ has no CQ of its own), for the worker to deliver.
    errors: Mutex<Vec<Wc>>,
    /// Refused or undecodable entries since the worker last looked.
    bad: AtomicU64,
    /// The indices were garbage: the ring is dropped.
    corrupt: AtomicBool,
    /// Entries were taken since the worker last looked.
    moved: AtomicBool,
}

/// A receive ring's consumer and the slot buffer its pulls copy into
/// (kept, so a pull allocates nothing).
struct RecvCons {
    ring: RingConsumer,
    slot: Vec<u8>,
}

impl RingRecv {
    fn fail(&self, wr_id: u64) {
        self.bad.fetch_add(1, Ordering::Relaxed);
        if self.kind != RingKind::Srq {
            self.errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(error_wc(wr_id, self.kind, self.qpn));
        }
    }

    fn consumer(&self) -> std::sync::MutexGuard<'_, RecvCons> {
        self.cons.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RecvSource for RingRecv {
    fn pull(&self, out: &mut Vec<RecvWr>) {
        if self.corrupt.load(Ordering::Relaxed) {
            return;
        }
        let mut guard = self.consumer();
        let RecvCons { ring: c, slot } = &mut *guard;
        match c.available() {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) => {
                self.corrupt.store(true, Ordering::Relaxed);
                return;
            }
        }
        loop {
            match c.pop(slot) {
                Ok(false) => break,
                Ok(true) => {
                    self.moved.store(true, Ordering::Relaxed);
                    match wqe::decode_recv(slot, self.max_sge) {
                        Ok(wr) => out.push(wr),
                        Err(_) => {
                            let id = u64::from_le_bytes(slot[0..8].try_into().unwrap_or_default());
                            self.fail(id);
                        }
                    }
                }
                Err(_) => {
                    self.corrupt.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
    }

    fn refused(&self, wr_id: u64, _err: softverbs_core::VerbsError) {
        self.fail(wr_id);
    }
}

enum WqCons {
    /// A send ring: the worker consumes it.
    Send(RingConsumer),
    /// A receive or SRQ ring; `device`: the device pulls it (else the
    /// worker pulls and posts, for drivers without receive sources).
    Recv { src: Arc<RingRecv>, device: bool },
}

struct WqRing {
    kind: RingKind,
    handle: Handle,
    /// QPN or SRQN.
    id: u32,
    max_sge: u32,
    max_inline: u32,
    /// CQ that error completions of this queue go to.
    cqn: u32,
    stride: usize,
    cons: WqCons,
    bell: Arc<Doorbell>,
}

impl WqRing {
    fn prepare_sleep(&self) -> bool {
        match &self.cons {
            WqCons::Send(c) => c.prepare_sleep(1).unwrap_or(false),
            WqCons::Recv { src, .. } => src.consumer().ring.prepare_sleep(1).unwrap_or(false),
        }
    }

    fn awake(&self) {
        match &self.cons {
            WqCons::Send(c) => c.awake(),
            WqCons::Recv { src, .. } => src.consumer().ring.awake(),
        }
    }
}

/// A CQ's shared-memory ring as the device's [`CompletionSink`]: the thread
/// that produces a completion (the device's I/O thread, or a poster's
/// inline progress) writes the CQE into the client's ring and rings the
/// client's eventfd when the ring's `wait` word asks for it — no hop
/// through this connection's worker. Completions that find the ring full
/// wait in a bounded backlog that the worker moves on (it is rung when
/// the backlog starts); beyond that, the device counts an overrun.
pub struct CqSink {
    state: Mutex<CqSinkState>,
    bell: Doorbell,
    kick: Arc<Doorbell>,
    entries: usize,
    /// The client scribbled on the ring's indices: it is dropped.
    broken: AtomicBool,
}

struct CqSinkState {
    prod: RingProducer,
    stride: usize,
    backlog: VecDeque<Wc>,
}

impl std::fmt::Debug for CqSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CqSink({} entries)", self.entries)
    }
}

impl CqSink {
    fn lock(&self) -> std::sync::MutexGuard<'_, CqSinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pushes one CQE; Ok(false) when the ring is full.
    fn push(&self, st: &mut CqSinkState, wc: &Wc) -> bool {
        let b = wqe::encode_cqe(wc);
        let n = st.stride.min(wqe::CQE_SIZE);
        match st.prod.push(&b[..n]) {
            Ok(()) => {
                let w = st.prod.wait_word();
                let sol = wc.solicited || wc.status != WcStatus::Success;
                if (w == 1 || (w == 2 && sol)) && st.prod.take_wait(w) {
                    ring_fd(&self.bell);
                }
                true
            }
            Err(RingError::Full) => false,
            Err(RingError::Corrupt { .. }) => {
                self.broken.store(true, Ordering::Relaxed);
                self.kick.ring();
                // Taken (and lost): the client broke its own ring.
                true
            }
        }
    }

    /// Takes a completion (see the type); false when there is no room.
    pub fn deliver(&self, wc: &Wc) -> bool {
        if self.broken.load(Ordering::Relaxed) {
            return true;
        }
        let mut st = self.lock();
        if st.backlog.is_empty() && self.push(&mut st, wc) {
            return true;
        }
        if st.backlog.len() >= self.entries {
            return false;
        }
        st.backlog.push_back(wc.clone());
        if st.backlog.len() == 1 {
            self.kick.ring();
        }
        true
    }

    /// Moves the backlog into the ring; true while some is left.
    fn flush(&self) -> bool {
        let mut st = self.lock();
        while let Some(wc) = st.backlog.front().cloned() {
            if self.broken.load(Ordering::Relaxed) {
                st.backlog.clear();
                break;
            }
            if !self.push(&mut st, &wc) {
                return true;
            }
            st.backlog.pop_front();
        }
        false
    }
}

/// The completion sink of one context: its CQs' rings by CQ number.
#[derive(Default)]
pub struct ContextSink {
    cqs: RwLock<HashMap<u32, Arc<CqSink>>>,
}

impl CompletionSink for ContextSink {
    fn deliver(&self, cq: u32, wc: &Wc) -> Option<bool> {
        let s = self
            .cqs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cq)
            .cloned()?;
        Some(s.deliver(wc))
    }
}

struct CqRing {
    handle: Handle,
    sink: Arc<CqSink>,
}

/// The context's async-event ring (the daemon produces).
struct EventRing {
    prod: RingProducer,
    bell: Doorbell,
}

/// Events kept while the client's event ring is full or not attached yet.
const EVENT_BACKLOG: usize = 4096;

/// The rings of one connection.
pub struct RingSet {
    wqs: Vec<WqRing>,
    cqs: HashMap<u32, CqRing>,
    sink: Arc<ContextSink>,
    kick: Arc<Doorbell>,
    events: Option<EventRing>,
    event_backlog: VecDeque<AsyncEvent>,
    /// QPs whose rings broke and that must still reach the error state (a
    /// client call held them when the worker tried: `Busy`).
    to_error: Vec<Handle>,
}

impl RingSet {
    /// The rings of a new connection; `kick` wakes its worker.
    pub fn new(kick: Arc<Doorbell>) -> Self {
        RingSet {
            wqs: Vec::new(),
            cqs: HashMap::new(),
            sink: Arc::new(ContextSink::default()),
            kick,
            events: None,
            event_backlog: VecDeque::new(),
            to_error: Vec::new(),
        }
    }

    /// The completion sink to install on the context's channel.
    pub fn sink(&self) -> Arc<ContextSink> {
        self.sink.clone()
    }

    /// Adds a ring the server validated (kind, handle, stride, mapping).
    pub fn add(
        &mut self,
        uctx: &Ucontext,
        a: Attach,
        map: Arc<SharedMap>,
        bell: OwnedFd,
    ) -> Result<(), String> {
        let ctx = uctx.uapi_context();
        let hdr = MapHeader(map.clone());
        let slots = MapSlots {
            map,
            stride: a.stride as usize,
        };
        let bell = Doorbell::from_fd(bell);
        let gone = || format!("handle {} is gone", a.handle);
        let (id, max_sge, max_inline, cqn) = match a.kind {
            RingKind::Cq => {
                let cq = ctx.get::<CqObj>(a.handle).ok_or_else(gone)?;
                if let Some(old) = self.cqs.get(&cq.cqn) {
                    // A destroyed CQ whose number was reused goes now.
                    if ctx.get::<CqObj>(old.handle).is_some() {
                        return Err(format!("CQ {} already has a ring", cq.cqn));
                    }
                }
                let sink = Arc::new(CqSink {
                    state: Mutex::new(CqSinkState {
                        prod: Producer::new(hdr, slots, a.entries),
                        stride: a.stride as usize,
                        backlog: VecDeque::new(),
                    }),
                    bell,
                    kick: self.kick.clone(),
                    entries: a.entries as usize,
                    broken: AtomicBool::new(false),
                });
                self.sink
                    .cqs
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(cq.cqn, sink.clone());
                // From now on the device hands this CQ's completions to the
                // sink; any it queued before the ring came go after them
                // (there are none in practice: the ring is attached right
                // after create_cq, before any QP can use the CQ).
                let mut early = Vec::new();
                let _ = uctx.driver().poll_cq(cq.cqn, usize::MAX, &mut early);
                for wc in &early {
                    sink.deliver(wc);
                }
                self.cqs.insert(
                    cq.cqn,
                    CqRing {
                        handle: a.handle,
                        sink,
                    },
                );
                return Ok(());
            }
            RingKind::Events => {
                if self.events.is_some() {
                    return Err("the context already has an event ring".into());
                }
                self.events = Some(EventRing {
                    prod: Producer::new(hdr, slots, a.entries),
                    bell,
                });
                return Ok(());
            }
            RingKind::Send => {
                let qp = ctx.get::<QpObj>(a.handle).ok_or_else(gone)?;
                (
                    qp.qpn,
                    qp.init.max_send_sge,
                    qp.init.max_inline_data,
                    qp.send_cq.cqn,
                )
            }
            RingKind::Recv => {
                let qp = ctx.get::<QpObj>(a.handle).ok_or_else(gone)?;
                (qp.qpn, qp.init.max_recv_sge, 0, qp.recv_cq.cqn)
            }
            RingKind::Srq => {
                let srq = ctx.get::<SrqObj>(a.handle).ok_or_else(gone)?;
                let attr = uctx
                    .driver()
                    .query_srq(srq.srqn)
                    .map_err(|e| e.to_string())?;
                (srq.srqn, attr.max_sge, 0, u32::MAX)
            }
        };
        if self
            .wqs
            .iter()
            .any(|w| w.kind == a.kind && w.handle == a.handle)
        {
            return Err(format!(
                "{:?} queue of {} already has a ring",
                a.kind, a.handle
            ));
        }
        let cons = Consumer::new(hdr, slots, a.entries);
        let cons = if a.kind == RingKind::Send {
            WqCons::Send(cons)
        } else {
            let src = Arc::new(RingRecv {
                cons: Mutex::new(RecvCons {
                    ring: cons,
                    slot: vec![0; a.stride as usize],
                }),
                max_sge,
                kind: a.kind,
                qpn: id,
                errors: Mutex::new(Vec::new()),
                bad: AtomicU64::new(0),
                corrupt: AtomicBool::new(false),
                moved: AtomicBool::new(false),
            });
            let device = uctx
                .driver()
                .set_recv_source(a.kind == RingKind::Srq, id, Some(src.clone()))
                .is_ok();
            WqCons::Recv { src, device }
        };
        self.wqs.push(WqRing {
            kind: a.kind,
            handle: a.handle,
            id,
            max_sge,
            max_inline,
            cqn,
            stride: a.stride as usize,
            cons,
            bell: Arc::new(bell),
        });
        Ok(())
    }
}

fn error_wc(wr_id: u64, kind: RingKind, qpn: u32) -> Wc {
    Wc {
        wr_id,
        status: WcStatus::LocQpOpErr,
        opcode: if kind == RingKind::Send {
            WcOpcode::Send
        } else {
            WcOpcode::Recv
        },
        queue: if kind == RingKind::Send {
            WcQueue::Send
        } else {
            WcQueue::Recv
        },
        qp_num: qpn,
        byte_len: 0,
        imm: None,
        invalidated_rkey: None,
        src_qp: 0,
        grh: false,
        solicited: false,
        vendor_err: 0,
        unsolicited: false,
    }
}

/// Moves WQEs from the rings to the device; returns whether anything moved.
fn drain_wqs(uctx: &Ucontext, d: &Daemon, set: &mut RingSet) -> bool {
    let drv = uctx.driver().clone();
    let ctx = uctx.uapi_context();
    let mut moved = false;
    let mut dead = Vec::new();
    let mut errors: Vec<(u32, Wc)> = Vec::new();
    let mut to_error = std::mem::take(&mut set.to_error);
    let mut slot = Vec::new();
    // Receive rings first: a receive posted before a send is at the device
    // before that send leaves.
    let mut order: Vec<usize> = (0..set.wqs.len()).collect();
    order.sort_by_key(|&i| set.wqs[i].kind == RingKind::Send);
    let mut wrs: Vec<RecvWr> = Vec::new();
    for i in order {
        let w = &mut set.wqs[i];
        let alive = match w.kind {
            RingKind::Srq => ctx.get::<SrqObj>(w.handle).is_some(),
            _ => ctx.get::<QpObj>(w.handle).is_some(),
        };
        if !alive {
            dead.push(i);
            continue;
        }
        let srq = w.kind == RingKind::Srq;
        let cons = match &mut w.cons {
            WqCons::Send(c) => c,
            WqCons::Recv { src, device } => {
                if *device {
                    // Only when the ring holds something: the device lock
                    // is not taken for nothing.
                    if src.consumer().ring.available().map_or(true, |n| n > 0) {
                        let _ = drv.pull_recv(srq, w.id);
                    }
                } else {
                    wrs.clear();
                    src.pull(&mut wrs);
                    for wr in wrs.drain(..) {
                        let id = wr.wr_id;
                        let r = if srq {
                            drv.post_srq_recv(w.id, wr)
                        } else {
                            drv.post_recv(w.id, wr)
                        };
                        if let Err(e) = r {
                            src.refused(id, e);
                        }
                    }
                }
                moved |= src.moved.swap(false, Ordering::Relaxed);
                let bad = src.bad.swap(0, Ordering::Relaxed);
                d.stats.bad_ring_entries.fetch_add(bad, Ordering::Relaxed);
                errors.extend(
                    src.errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .drain(..)
                        .map(|wc| (w.cqn, wc)),
                );
                if src.corrupt.load(Ordering::Relaxed) {
                    d.stats.bad_ring_entries.fetch_add(1, Ordering::Relaxed);
                    if !srq {
                        to_error.push(w.handle);
                    }
                    dead.push(i);
                }
                continue;
            }
        };
        slot.resize(w.stride, 0);
        loop {
            match cons.pop(&mut slot) {
                Ok(false) => break,
                Ok(true) => {}
                Err(RingError::Corrupt { .. }) | Err(RingError::Full) => {
                    // Garbage indices: the ring is dropped and, like a
                    // hardware queue error, its QP goes to the error state.
                    d.stats.bad_ring_entries.fetch_add(1, Ordering::Relaxed);
                    to_error.push(w.handle);
                    dead.push(i);
                    break;
                }
            }
            moved = true;
            let r = wqe::decode_send_kind(&slot, w.max_sge, w.max_inline)
                .map_err(|e| e.to_string())
                .and_then(|(wr, kind)| {
                    match kind {
                        wqe::SendKind::Send => drv.post_send(w.id, wr),
                        // The driver checks the window is type 1 and of the
                        // QP's PD (else MW_BIND_ERR), as for embedded.
                        wqe::SendKind::Type1Bind => drv.post_bind_mw(w.id, wr),
                    }
                    .map_err(|e| e.to_string())
                });
            if r.is_err() {
                d.stats.bad_ring_entries.fetch_add(1, Ordering::Relaxed);
                let wr_id = u64::from_le_bytes(slot[0..8].try_into().unwrap_or_default());
                errors.push((w.cqn, error_wc(wr_id, w.kind, w.id)));
            }
        }
    }
    dead.sort_unstable();
    dead.dedup();
    for i in dead.into_iter().rev() {
        // A receive source stays with the device until its queue is
        // destroyed (a corrupt one yields nothing more): removing it here
        // could remove the source of a new queue that reused the number.
        set.wqs.remove(i);
    }
    let to_err = ModifyAttrs {
        qp_state: Some(QpState::Err),
        ..Default::default()
    };
    for h in to_error {
        // A call of the client that holds the QP at this instant makes the
        // modify Busy (uverbs' EBUSY); the error state must not be lost to
        // it: keep it for the next pass, which comes at once (moved).
        if let Err(softverbs_core::VerbsError::Busy { .. }) = uctx.modify_qp(h, &to_err) {
            set.to_error.push(h);
            moved = true;
        }
    }
    for (cqn, wc) in errors {
        if let Some(c) = set.cqs.get(&cqn) {
            if !c.sink.deliver(&wc) {
                d.stats.bad_ring_entries.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    moved
}

/// Moves backlogged completions into the CQ rings and drops the rings of
/// destroyed CQs and broken rings. Returns true while some backlog waits
/// for room.
fn drain_cqs(uctx: &Ucontext, d: &Daemon, set: &mut RingSet) -> bool {
    let ctx = uctx.uapi_context();
    let mut pending = false;
    let mut dead = Vec::new();
    for (&cqn, c) in set.cqs.iter() {
        if ctx.get::<CqObj>(c.handle).is_none() {
            dead.push(cqn);
            continue;
        }
        pending |= c.sink.flush();
        if c.sink.broken.load(Ordering::Relaxed) {
            d.stats.bad_ring_entries.fetch_add(1, Ordering::Relaxed);
            dead.push(cqn);
        }
    }
    if !dead.is_empty() {
        let mut map = set.sink.cqs.write().unwrap_or_else(|e| e.into_inner());
        for cqn in dead {
            set.cqs.remove(&cqn);
            map.remove(&cqn);
        }
    }
    pending
}

/// Moves the context's async events into its event ring (waking the
/// client when it sleeps on it); they wait, up to [`EVENT_BACKLOG`], while
/// the ring is full or not attached yet. Returns true while some wait.
fn drain_events(events: &AsyncEvents, set: &mut RingSet) -> bool {
    while let Some(e) = events.try_get() {
        if set.event_backlog.len() == EVENT_BACKLOG {
            set.event_backlog.pop_front();
        }
        set.event_backlog.push_back(e);
    }
    let Some(r) = &mut set.events else {
        return false;
    };
    let mut pushed = false;
    while let Some(e) = set.event_backlog.front() {
        match r.prod.push(&wqe::encode_event(e)) {
            Ok(()) => {
                pushed = true;
                set.event_backlog.pop_front();
            }
            Err(RingError::Full) => break,
            Err(RingError::Corrupt { .. }) => {
                set.events = None;
                set.event_backlog.clear();
                return false;
            }
        }
    }
    if pushed {
        let w = r.prod.wait_word();
        if w != 0 && r.prod.take_wait(w) {
            ring_fd(&r.bell);
        }
    }
    !set.event_backlog.is_empty()
}

/// The worker loop (see the module).
pub fn run(
    uctx: Arc<Ucontext>,
    channel: Arc<CompChannel>,
    rings: Arc<Mutex<RingSet>>,
    kick: Arc<Doorbell>,
    stop: Arc<AtomicBool>,
    d: Arc<Daemon>,
) {
    let events = uctx.async_events().clone();
    let mut bells: Vec<Arc<Doorbell>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let (pending, sleep) = {
            let mut set = rings.lock().unwrap_or_else(|e| e.into_inner());
            let moved = drain_wqs(&uctx, &d, &mut set);
            let mut pending = drain_cqs(&uctx, &d, &mut set);
            pending |= drain_events(&events, &mut set);
            if moved {
                (pending, false)
            } else {
                // About to sleep: announce it on every ring, then re-check.
                let mut sleep = true;
                for w in &set.wqs {
                    if !w.prepare_sleep() {
                        sleep = false;
                    }
                }
                bells.clear();
                bells.extend(set.wqs.iter().map(|w| w.bell.clone()));
                (pending, sleep)
            }
        };
        if !sleep {
            continue;
        }
        let mut fds: Vec<PollFd<'_>> = vec![
            PollFd::new(&*kick, PollFlags::IN),
            PollFd::new(&*channel, PollFlags::IN),
            PollFd::new(&*events, PollFlags::IN),
        ];
        for b in &bells {
            fds.push(PollFd::new(&**b, PollFlags::IN));
        }
        // With completions or events waiting for room in a full ring, look
        // again every millisecond; otherwise sleep until rung.
        let ms = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        let _ = rustix::event::poll(&mut fds, if pending { Some(&ms) } else { None });
        // Drain only what rang: one read per readable eventfd, none for
        // the quiet ones (a wake-up is on the latency path of a post).
        let rang: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if rang[0] {
            kick.drain();
        }
        if rang[1] {
            while channel.try_get_event().is_some() {}
        }
        for (b, r) in bells.iter().zip(&rang[3..]) {
            if *r {
                b.drain();
            }
        }
        let set = rings.lock().unwrap_or_else(|e| e.into_inner());
        for w in &set.wqs {
            w.awake();
        }
    }
}
