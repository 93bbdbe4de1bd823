//! The shared engine of the soft devices (the rdmavt idea): tables of PDs,
//! MRs, MWs, CQs, SRQs, QPs and AHs around the sans-IO transport engines,
//! completion and event routing, timers, and progress.
//!
//! # Locking and threads
//!
//! One mutex guards the whole device state. Progress runs in two places:
//!
//! - **inline**, on the caller's thread, inside `post_send`, `post_recv`
//!   and `modify_qp`: the QP's packets are built, sealed and handed to the
//!   kernel (`sendmmsg`) before the call returns, and its completions go to
//!   its CQs — no thread hop on the send path;
//! - on the device's **I/O thread**, started when the socket is bound: it
//!   sleeps in `recvmmsg` until a datagram arrives or, when a QP timer is
//!   armed, in `poll` until the earliest is due (a high-resolution timeout:
//!   `SO_RCVTIMEO` would round it up to the next 4 ms tick), then, under
//!   the lock, checks and demultiplexes every datagram, runs the QPs'
//!   timers and sends what they produced. It never spins: with no timer armed it blocks indefinitely.
//!   When a caller arms a timer earlier than the one the thread sleeps for,
//!   it wakes the thread with a zero-length datagram to the device's own
//!   address.
//!
//! Buffers for packets are allocated once per device (a batch of send
//! slots, a batch of receive slots); the data path does not allocate per
//! packet.
//!
//! The socket is bound lazily, by the first call that creates a resource
//! (`alloc_pd`, `create_cq`, `create_srq`, `create_qp`) or by
//! [`SoftDevice::open`], so listing devices never fails because an address
//! is taken.

//!
//! # Transport backends
//!
//! What is common to every soft device lives here: the tables (PDs, keys,
//! CQs, SRQs, AHs, and each QP's PD, CQs, SRQ and event queue), CQ and
//! event routing, the lock, the sockets and the I/O threads. The protocol
//! is a [`backend::Backend`]: RoCEv2 (`roce`: one transport QP per QP) and
//! SRD (`srd`: one endpoint per device) are two equal backends behind one
//! sans-IO interface. A device has one or more backends, each with its own
//! UDP port and I/O thread; a QP belongs to the backend that serves its
//! type (the `srd` device: SRD QPs to the SRD backend on UDP 4793, UD QPs
//! to a RoCEv2 backend on UDP 4791 of the same address).

pub(crate) mod backend;
mod cq;
pub(crate) mod keys;
pub(crate) mod roce;
pub(crate) mod srd;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use softverbs_core::caps::DeviceCaps;
use softverbs_core::driver::{
    AhAttr, DeviceCounters, Driver, DriverQpInit, MrKeys, MrRereg, MwBind, MwType, PortAttr,
    PortState, QpInfo, QpInit, RecvSource, SrqAttr, Wc,
};
use softverbs_core::efa::EfaDeviceAttr;
use softverbs_core::events::{AsyncEvent, AsyncEvents, CompChannel};
use softverbs_core::mem::Backing;
use softverbs_core::uapi::DriverSpec;
use softverbs_core::{Result, VerbsError};
use softverbs_transport::{
    Access, Instant, ModifyQp, PostError, QpCounters, QpEvent, RecvQueue, RecvWr, SendOp, SendWr,
    WcQueue,
};
use softverbs_wire::Gid;

use crate::config::DeviceConfig;
use crate::net::{RxBatch, TxBatch, UdpPort};
use backend::{Backend, Env, QpMeta};
use cq::Cq;
use keys::KeyTable;

/// The first QPN handed out (rxe starts at 17; 0 and 1 are the special QPs).
pub const FIRST_QPN: u32 = 17;
const MAX_QPN: u32 = 0x00ff_ffff;

pub(crate) struct SrqEntry {
    pub rq: RecvQueue,
    attr: SrqAttr,
    events: Arc<AsyncEvents>,
}

/// Everything behind the device lock.
struct State {
    pds: HashMap<u32, ()>,
    next_pd: u32,
    keys: KeyTable,
    /// The CQs; each has its own lock so polling never takes the device
    /// lock (a spinning poller would otherwise starve the I/O thread).
    cqs: HashMap<u32, Arc<Mutex<Cq>>>,
    next_cq: u32,
    srqs: HashMap<u32, SrqEntry>,
    next_srq: u32,
    qps: HashMap<u32, QpMeta>,
    next_qpn: u32,
    ahs: HashMap<u32, AhAttr>,
    next_ah: u32,
    counters: DeviceCounters,
    /// Counters of destroyed QPs.
    dead_qps: QpCounters,
    backends: Vec<Box<dyn Backend>>,
    /// One send batch per backend.
    txs: Vec<TxBatch>,
    /// Receive queues whose WQEs the device fetches itself, by (SRQ?, id).
    recv_sources: HashMap<(bool, u32), Arc<dyn RecvSource>>,
}

/// Next free id from a cyclic counter in `[lo, hi]`.
fn next_id<V>(map: &HashMap<u32, V>, next: &mut u32, lo: u32, hi: u32) -> Option<u32> {
    for _ in 0..=(hi - lo) {
        let id = *next;
        *next = if id >= hi { lo } else { id + 1 };
        if !map.contains_key(&id) {
            return Some(id);
        }
    }
    None
}

/// Add `b` into `a`, field by field.
pub(crate) fn add_counters(a: &mut QpCounters, b: &QpCounters) {
    a.sent_pkts += b.sent_pkts;
    a.rcvd_pkts += b.rcvd_pkts;
    a.duplicate_request += b.duplicate_request;
    a.out_of_seq_request += b.out_of_seq_request;
    a.rcvd_rnr_err += b.rcvd_rnr_err;
    a.send_rnr_err += b.send_rnr_err;
    a.rcvd_seq_err += b.rcvd_seq_err;
    a.retransmits += b.retransmits;
    a.retransmitted_pkts += b.retransmitted_pkts;
    a.timeouts += b.timeouts;
    a.retry_exceeded_err += b.retry_exceeded_err;
    a.retry_rnr_exceeded_err += b.retry_rnr_exceeded_err;
    a.dropped_pkts += b.dropped_pkts;
    a.lost_msgs += b.lost_msgs;
    a.acks_sent += b.acks_sent;
    a.completion_errors += b.completion_errors;
}

fn qp_event(qpn: u32, e: QpEvent) -> AsyncEvent {
    match e {
        QpEvent::CommEstablished => AsyncEvent::CommEstablished { qpn },
        QpEvent::Fatal => AsyncEvent::QpFatal { qpn },
        QpEvent::SqDrained => AsyncEvent::SqDrained { qpn },
        QpEvent::LastWqeReached => AsyncEvent::LastWqeReached { qpn },
    }
}

pub(crate) fn post_error(qpn: u32, e: PostError) -> VerbsError {
    match e {
        PostError::QueueFull => VerbsError::QueueFull,
        PostError::InvalidState(_) => VerbsError::InvalidState(format!("QP {qpn:#x}: {e}")),
        PostError::Invalid(_) => VerbsError::invalid(format!("QP {qpn:#x}: {e}")),
    }
}

/// The socket address of a GID on `port`.
fn gid_addr(gid: &Gid, port: u16) -> SocketAddr {
    SocketAddr::new(gid.to_ip(), port)
}

/// The GID of an IP address (IPv4 as v4-mapped, as Linux).
fn ip_gid(ip: IpAddr) -> Gid {
    match ip {
        IpAddr::V4(v4) => Gid::from_ipv4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Gid::from_ipv4(v4),
            None => Gid(v6.octets()),
        },
    }
}

impl State {
    fn new(backends: Vec<Box<dyn Backend>>) -> Self {
        State {
            pds: HashMap::new(),
            next_pd: 1,
            keys: KeyTable::new(),
            cqs: HashMap::new(),
            next_cq: 1,
            srqs: HashMap::new(),
            next_srq: 1,
            qps: HashMap::new(),
            next_qpn: FIRST_QPN,
            ahs: HashMap::new(),
            next_ah: 1,
            counters: DeviceCounters::default(),
            dead_qps: QpCounters::default(),
            txs: backends.iter().map(|_| TxBatch::new()).collect(),
            backends,
            recv_sources: HashMap::new(),
        }
    }

    /// Fetches the WQEs waiting in the receive sources (all of them, or
    /// one) into their queues, in order; returns how many were posted.
    fn pull_sources(&mut self, only: Option<(bool, u32)>) -> usize {
        if self.recv_sources.is_empty() {
            return 0;
        }
        let srcs: Vec<((bool, u32), Arc<dyn RecvSource>)> = match only {
            Some(k) => self
                .recv_sources
                .get(&k)
                .map(|s| vec![(k, s.clone())])
                .unwrap_or_default(),
            None => self
                .recv_sources
                .iter()
                .map(|(k, s)| (*k, s.clone()))
                .collect(),
        };
        let mut wrs = Vec::new();
        let mut n = 0;
        for ((srq, id), src) in srcs {
            wrs.clear();
            src.pull(&mut wrs);
            for wr in wrs.drain(..) {
                let wr_id = wr.wr_id;
                let r = if srq {
                    match self.srqs.get_mut(&id) {
                        Some(s) => s.rq.push(wr).map_err(|_| VerbsError::QueueFull),
                        None => Err(VerbsError::NotFound(format!("SRQ {id}"))),
                    }
                } else {
                    match self.qps.get(&id).map(|m| m.backend) {
                        Some(b) => self.backends[b]
                            .post_recv(id, wr)
                            .map_err(|e| post_error(id, e)),
                        None => Err(VerbsError::NotFound(format!("QP {id:#x}"))),
                    }
                };
                match r {
                    Ok(()) => n += 1,
                    Err(e) => src.refused(wr_id, e),
                }
            }
        }
        n
    }

    /// Drain backend `b`: its packets into its send batch (flushed when
    /// full), its completions into their CQs, its events to their
    /// contexts; then the limit events of the SRQs.
    fn drain(&mut self, b: usize, now: Instant, port: &UdpPort) {
        let State {
            qps,
            keys,
            srqs,
            cqs,
            txs,
            counters,
            backends,
            ..
        } = self;
        let (Some(be), Some(tx)) = (backends.get_mut(b), txs.get_mut(b)) else {
            return;
        };
        {
            let mut env = Env {
                keys,
                srqs,
                qps,
                counters,
                local: port.local(),
                ce: false,
            };
            loop {
                if tx.is_full() {
                    let (p, n) = tx.flush(port);
                    env.counters.sent_pkts += p;
                    env.counters.sent_bytes += n;
                }
                let Some(o) = be.poll_transmit(now, &mut env, tx.slot()) else {
                    break;
                };
                tx.commit_via(o.len, o.dst, o.via);
            }
        }
        while let Some(c) = be.poll_completion() {
            let Some(m) = qps.get(&c.qp_num) else {
                continue;
            };
            let cq = match c.queue {
                WcQueue::Send => m.init.send_cq,
                WcQueue::Recv => m.init.recv_cq,
            };
            if let Some(cq) = cqs.get(&cq) {
                cq.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(c, counters);
            }
        }
        while let Some((qpn, ev)) = be.poll_event() {
            if let Some(m) = qps.get(&qpn) {
                m.events.push(qp_event(qpn, ev));
            }
        }
        for (&id, s) in srqs.iter_mut() {
            if s.rq.take_limit_event() {
                s.attr.limit = 0;
                s.events.push(AsyncEvent::SrqLimitReached { srq: id });
            }
        }
    }

    fn flush(&mut self, b: usize, port: &UdpPort) {
        if let Some(tx) = self.txs.get_mut(b) {
            let (p, n) = tx.flush(port);
            self.counters.sent_pkts += p;
            self.counters.sent_bytes += n;
        }
    }

    /// Hand datagrams to backend `b` (a wake-up is ignored).
    fn receive(
        &mut self,
        b: usize,
        now: Instant,
        (dgram, ce): (&[u8], bool),
        src: SocketAddr,
        port: &UdpPort,
    ) {
        let local = port.local();
        if dgram.is_empty() && src == local {
            return; // a wake-up
        }
        self.counters.rcvd_pkts += 1;
        self.counters.rcvd_bytes += dgram.len() as u64;
        let State {
            qps,
            keys,
            srqs,
            counters,
            backends,
            ..
        } = self;
        let Some(be) = backends.get_mut(b) else {
            return;
        };
        let mut env = Env {
            keys,
            srqs,
            qps,
            counters,
            local,
            ce,
        };
        be.handle_datagram(now, src, dgram, &mut env);
    }

    /// Run backend `b`'s timers if due.
    fn run_timers(&mut self, b: usize, now: Instant) {
        if let Some(be) = self.backends.get_mut(b) {
            if be.poll_timeout().is_some_and(|t| t <= now) {
                be.handle_timeout(now);
            }
        }
    }

    /// The earliest timer of backend `b`.
    fn next_timeout(&self, b: usize) -> Option<Instant> {
        self.backends.get(b).and_then(|be| be.poll_timeout())
    }

    fn meta(&self, qpn: u32) -> Result<&QpMeta> {
        self.qps
            .get(&qpn)
            .ok_or_else(|| VerbsError::NotFound(format!("QP {qpn:#x}")))
    }
}

/// The monotonic clock: devices are the I/O edge, where the transport's
/// injected time comes from.
#[allow(clippy::disallowed_methods)]
fn clock() -> std::time::Instant {
    std::time::Instant::now()
}

/// What the device and its I/O threads share.
struct Shared {
    cfg: DeviceConfig,
    caps: DeviceCaps,
    gids: Vec<Gid>,
    efa: Option<EfaDeviceAttr>,
    spec: Option<&'static DriverSpec>,
    epoch: std::time::Instant,
    state: Mutex<State>,
    /// The CQs by id, for `poll_cq` and `req_notify_cq` without the device
    /// lock. Changed only under `state`'s lock (create/destroy).
    cq_index: RwLock<HashMap<u32, Arc<Mutex<Cq>>>>,
    /// One port per backend, bound together on first use.
    ports: OnceLock<Vec<Arc<UdpPort>>>,
    shutdown: AtomicBool,
    /// Per backend: when its I/O thread will next wake on its own (ns
    /// since `epoch`; `u64::MAX`: never).
    sleep_until: Vec<AtomicU64>,
}

impl Shared {
    fn now(&self) -> Instant {
        Instant(self.epoch.elapsed().as_nanos() as u64)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After inline progress on backend `b`: drain, flush, and wake its I/O
    /// thread if the backend now has a timer earlier than the one the
    /// thread sleeps for.
    fn finish_inline(&self, st: &mut State, b: usize, now: Instant, port: &UdpPort) {
        st.drain(b, now, port);
        st.flush(b, port);
        if let (Some(t), Some(su)) = (st.next_timeout(b), self.sleep_until.get(b)) {
            if t.0 < su.load(Ordering::Acquire) {
                su.store(t.0, Ordering::Release);
                port.wake();
            }
        }
    }
}

/// The I/O thread of backend `b`: receive, demultiplex, run timers; sleep
/// in between.
fn io_loop(shared: Arc<Shared>, b: usize, port: Arc<UdpPort>) {
    let mut rx = RxBatch::new();
    loop {
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        let timeout = {
            let st = shared.lock();
            let next = st.next_timeout(b);
            shared.sleep_until[b].store(next.map_or(u64::MAX, |t| t.0), Ordering::Release);
            next.map(|t| t.saturating_since(shared.now()))
        };
        let got = match timeout {
            Some(d) if d < Duration::from_micros(50) => 0,
            t => {
                // Round up so we never wake just before the deadline.
                rx.recv(&port, t.map(|d| d + Duration::from_micros(20)))
            }
        };
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        let mut st = shared.lock();
        let now = shared.now();
        if got > 0 {
            // As hardware reads a receive queue when a packet needs it: WQEs
            // a client posted before its peer sent are here now.
            st.pull_sources(None);
        }
        for i in 0..got {
            let (dgram, src, truncated) = rx.get(i);
            let Some(src) = src else { continue };
            if truncated {
                st.counters.rcvd_pkts += 1;
                st.counters.drop_malformed += 1;
                continue;
            }
            st.receive(b, now, (dgram, rx.ce(i)), src, &port);
        }
        st.run_timers(b, now);
        st.drain(b, now, &port);
        st.flush(b, &port);
    }
}

/// A soft RDMA device: the shared engine bound to a UDP address, with the
/// capabilities of its kind. Implements [`Driver`].
pub struct SoftDevice {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for SoftDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftDevice")
            .field("name", &self.shared.cfg.name)
            .field("kind", &self.shared.cfg.kind)
            .field("addr", &self.shared.cfg.addr)
            .finish()
    }
}

/// What a device is made of besides its configuration, capabilities and
/// GIDs: its transport backends and its driver namespace.
pub(crate) struct Parts {
    pub backends: Vec<Box<dyn Backend>>,
    pub efa: Option<EfaDeviceAttr>,
    pub spec: Option<&'static DriverSpec>,
}

impl SoftDevice {
    /// A RoCEv2 device (RC, UC, UD as `caps` allow) with `caps` and the GID
    /// table `gids` for `cfg`. Nothing is bound yet.
    pub fn new(cfg: DeviceConfig, caps: DeviceCaps, gids: Vec<Gid>) -> SoftDevice {
        let roce = Box::new(roce::RoceBackend::new(cfg.addr));
        Self::from_parts(
            cfg,
            caps,
            gids,
            Parts {
                backends: vec![roce],
                efa: None,
                spec: None,
            },
        )
    }

    /// A device of several backends. The first backend's port is the
    /// device's address ([`Self::local_addr`]).
    pub(crate) fn from_parts(
        cfg: DeviceConfig,
        caps: DeviceCaps,
        gids: Vec<Gid>,
        parts: Parts,
    ) -> SoftDevice {
        let n = parts.backends.len();
        SoftDevice {
            shared: Arc::new(Shared {
                cfg,
                caps,
                gids,
                efa: parts.efa,
                spec: parts.spec,
                epoch: clock(),
                state: Mutex::new(State::new(parts.backends)),
                cq_index: RwLock::new(HashMap::new()),
                ports: OnceLock::new(),
                shutdown: AtomicBool::new(false),
                sleep_until: (0..n).map(|_| AtomicU64::new(u64::MAX)).collect(),
            }),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DeviceConfig {
        &self.shared.cfg
    }

    /// Bind the device's sockets and start its I/O threads, if not done
    /// yet. Fails with a clear message when an address is taken.
    pub fn open(&self) -> Result<()> {
        self.ports().map(|_| ())
    }

    /// The UDP address actually bound (`None` before [`SoftDevice::open`]).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared
            .ports
            .get()
            .and_then(|p| p.first())
            .map(|p| p.local())
    }

    /// Every UDP address bound, per backend (empty before
    /// [`SoftDevice::open`]); the first of each is the one it reads.
    pub fn bound_addrs(&self) -> Vec<Vec<SocketAddr>> {
        let st = self.lock();
        match self.shared.ports.get() {
            Some(ports) => ports
                .iter()
                .zip(&st.backends)
                .map(|(p, be)| {
                    let mut v = vec![p.local()];
                    v.extend(be.addrs().iter().skip(1).take(p.sockets() - 1));
                    v
                })
                .collect(),
            None => Vec::new(),
        }
    }

    /// SRD endpoint counters of an `srd` device (`None` for other kinds).
    pub fn srd_counters(&self) -> Option<softverbs_srd::SrdCounters> {
        let st = self.lock();
        st.backends.iter().find_map(|b| b.srd_counters())
    }

    fn ports(&self) -> Result<&[Arc<UdpPort>]> {
        if let Some(p) = self.shared.ports.get() {
            return Ok(p);
        }
        let mut th = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = self.shared.ports.get() {
            return Ok(p);
        }
        let addrs: Vec<(Vec<SocketAddr>, bool)> = self
            .lock()
            .backends
            .iter()
            .map(|b| (b.addrs().to_vec(), b.ecn_capable()))
            .collect();
        let mut ports = Vec::with_capacity(addrs.len());
        for (a, ecn) in &addrs {
            let port = UdpPort::bind_all(a, &self.shared.cfg.name)?;
            if *ecn {
                port.set_ect();
            }
            ports.push(Arc::new(port));
        }
        for (b, port) in ports.iter().enumerate() {
            let (s, p) = (self.shared.clone(), port.clone());
            let handle = std::thread::Builder::new()
                .name(format!("{}-io{b}", self.shared.cfg.name))
                .spawn(move || io_loop(s, b, p))
                .map_err(|e| VerbsError::Io(format!("cannot start the I/O thread: {e}")))?;
            th.push(handle);
        }
        let _ = self.shared.ports.set(ports);
        self.shared
            .ports
            .get()
            .map(|v| v.as_slice())
            .ok_or_else(|| VerbsError::Io("ports not bound".into()))
    }

    /// Backend `b`'s port.
    fn port_of(&self, b: usize) -> Result<Arc<UdpPort>> {
        self.ports()?
            .get(b)
            .cloned()
            .ok_or_else(|| VerbsError::Io(format!("no port for backend {b}")))
    }

    /// Create a QP on the backend that serves its type (`driver`: a
    /// driver QP type, e.g. SRD).
    fn create_any_qp(
        &self,
        pd: u32,
        init: &QpInit,
        driver: Option<&DriverQpInit>,
        events: Arc<AsyncEvents>,
    ) -> Result<(u32, QpInit)> {
        let caps = &self.shared.caps;
        if init.srq.is_some() && !caps.ops.srq {
            return Err(self.unsupported("shared receive queues"));
        }
        if init.max_send_wr > caps.max_qp_wr || init.max_recv_wr > caps.max_qp_wr {
            return Err(VerbsError::invalid(format!(
                "at most {} WRs per work queue",
                caps.max_qp_wr
            )));
        }
        if init.max_send_sge > caps.max_sge || init.max_recv_sge > caps.max_sge {
            return Err(VerbsError::invalid(format!(
                "at most {} SGEs per WR",
                caps.max_sge
            )));
        }
        if init.max_inline_data > caps.max_inline_data {
            return Err(VerbsError::invalid(format!(
                "at most {} bytes of inline data",
                caps.max_inline_data
            )));
        }
        self.ports()?;
        let mut st = self.lock();
        let backend = st
            .backends
            .iter()
            .position(|b| b.serves(driver))
            .ok_or_else(|| match driver {
                Some(d) => self.unsupported(&format!("driver QP type {}", d.driver_type)),
                None => self.unsupported("verbs queue pairs"),
            })?;
        Self::check_pd(&st, pd)?;
        for cq in [init.send_cq, init.recv_cq] {
            if !st.cqs.contains_key(&cq) {
                return Err(VerbsError::NotFound(format!("CQ {cq}")));
            }
        }
        if let Some(s) = init.srq {
            if !st.srqs.contains_key(&s) {
                return Err(VerbsError::NotFound(format!("SRQ {s}")));
            }
        }
        if st.qps.len() >= caps.max_qp as usize {
            return Err(VerbsError::NoResources("queue pairs".into()));
        }
        let State {
            qps,
            next_qpn,
            backends,
            ..
        } = &mut *st;
        let qpn = next_id(qps, next_qpn, FIRST_QPN, MAX_QPN)
            .ok_or_else(|| VerbsError::NoResources("queue pair numbers".into()))?;
        let granted = QpInit {
            max_send_wr: init.max_send_wr.max(1),
            max_recv_wr: if init.srq.is_some() {
                0
            } else {
                init.max_recv_wr.max(1)
            },
            ..init.clone()
        };
        backends[backend].create_qp(qpn, &granted, driver)?;
        if granted.qp_type == softverbs_transport::QpType::Ud && driver.is_none() {
            // A UD QP has no path MTU attribute (ibv_modify_qp ignores it):
            // as in rxe, whose get_mtu() gives UD the port's mtu_cap, it
            // sends and accepts messages up to the port's active MTU.
            let mtu = ModifyQp {
                path_mtu: Some(self.shared.cfg.mtu),
                ..ModifyQp::default()
            };
            backends[backend].modify_qp(self.shared.now(), qpn, &mtu)?;
        }
        qps.insert(
            qpn,
            QpMeta {
                pd,
                init: granted.clone(),
                events,
                backend,
            },
        );
        Ok((qpn, granted))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    fn name_str(&self) -> &str {
        &self.shared.cfg.name
    }

    /// A CQ by id, without taking the device lock.
    fn cq(&self, cq: u32) -> Result<Arc<Mutex<Cq>>> {
        let index = self
            .shared
            .cq_index
            .read()
            .unwrap_or_else(|e| e.into_inner());
        index
            .get(&cq)
            .cloned()
            .ok_or_else(|| VerbsError::NotFound(format!("CQ {cq}")))
    }

    fn unsupported(&self, what: &str) -> VerbsError {
        VerbsError::unsupported(self.name_str(), what)
    }

    fn check_mr_access(&self, access: Access) -> Result<()> {
        if access.0 & !Access::ALL.0 != 0 {
            return Err(VerbsError::invalid(format!(
                "unknown access bits {:#x}",
                access.0 & !Access::ALL.0
            )));
        }
        if (access.contains(Access::REMOTE_WRITE) || access.contains(Access::REMOTE_ATOMIC))
            && !access.contains(Access::LOCAL_WRITE)
        {
            return Err(VerbsError::invalid(
                "REMOTE_WRITE and REMOTE_ATOMIC need LOCAL_WRITE too (IBTA 10.6.3.1)",
            ));
        }
        if access.contains(Access::MW_BIND) && !self.shared.caps.ops.memory_windows {
            return Err(self.unsupported("memory windows (MW_BIND access)"));
        }
        Ok(())
    }

    fn check_pd(st: &State, pd: u32) -> Result<()> {
        if st.pds.contains_key(&pd) {
            Ok(())
        } else {
            Err(VerbsError::NotFound(format!("protection domain {pd}")))
        }
    }

    fn qp_missing(qpn: u32) -> VerbsError {
        VerbsError::NotFound(format!("QP {qpn:#x}"))
    }

    fn check_send_op(&self, op: &SendOp) -> Result<()> {
        let ops = &self.shared.caps.ops;
        let ok = match op {
            SendOp::Send | SendOp::SendWithImm { .. } => ops.send,
            SendOp::SendWithInv { .. } => ops.send_with_inv,
            SendOp::Write { .. } | SendOp::WriteWithImm { .. } => ops.rdma_write,
            SendOp::Read { .. } => ops.rdma_read,
            SendOp::CompareSwap { .. } | SendOp::FetchAdd { .. } => ops.atomics,
            SendOp::LocalInv { .. } | SendOp::BindMw { .. } => ops.memory_windows,
        };
        if ok {
            Ok(())
        } else {
            Err(self.unsupported(&format!("the {op:?} operation")))
        }
    }

    /// Posts a send WR; a BIND_MW naming a type 1 window only when
    /// `type1_bind` (the bind verb, `Driver::post_bind_mw`), a type 2 one
    /// only when not.
    fn post_send_of(&self, qpn: u32, wr: SendWr, type1_bind: bool) -> Result<()> {
        self.check_send_op(&wr.op)?;
        let ports = self.ports()?;
        let now = self.shared.now();
        let mut st = self.lock();
        let b = st.meta(qpn)?.backend;
        if let SendOp::BindMw { mw_rkey, .. } = wr.op {
            match st.keys.mw_type(mw_rkey) {
                Some(MwType::Type1) if !type1_bind => {
                    return Err(VerbsError::invalid(format!(
                        "QP {qpn:#x}: memory window {mw_rkey:#x} is of type 1, bound with the bind \
                         verb (ibv_bind_mw, Mw::bind, Mw::post_bind); a BIND_MW work request binds \
                         type 2 windows"
                    )));
                }
                Some(MwType::Type2) if type1_bind => {
                    return Err(VerbsError::invalid(format!(
                        "QP {qpn:#x}: memory window {mw_rkey:#x} is of type 2: bind it with a \
                         BIND_MW work request (post_send)"
                    )));
                }
                _ => {}
            }
        }
        let port = &ports[b];
        st.backends[b]
            .post_send(now, qpn, wr)
            .map_err(|err| post_error(qpn, err))?;
        self.shared.finish_inline(&mut st, b, now, port);
        Ok(())
    }
}

impl Drop for SoftDevice {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        if let Some(ports) = self.shared.ports.get() {
            for p in ports {
                p.wake();
                p.shutdown_receive();
            }
        }
        let th = self.threads.get_mut().unwrap_or_else(|e| e.into_inner());
        for h in th.drain(..) {
            let _ = h.join();
        }
    }
}

impl Driver for SoftDevice {
    fn name(&self) -> &str {
        &self.shared.cfg.name
    }

    fn kind(&self) -> &str {
        self.shared.cfg.kind.as_str()
    }

    fn caps(&self) -> &DeviceCaps {
        &self.shared.caps
    }

    fn port(&self, port: u8) -> Result<PortAttr> {
        if port != 1 {
            return Err(VerbsError::NotFound(format!(
                "port {port} of {} (it has port 1)",
                self.name_str()
            )));
        }
        let cfg = &self.shared.cfg;
        Ok(PortAttr {
            port: 1,
            state: PortState::Active,
            max_mtu: self.shared.caps.max_mtu,
            active_mtu: cfg.mtu.bytes() as u32,
            gid_tbl_len: self.shared.gids.len() as u32,
            link_layer: "Ethernet",
            netdev: cfg.addr.ip().to_string(),
            udp_addr: self.local_addr().unwrap_or(cfg.addr).to_string(),
        })
    }

    fn gids(&self, port: u8) -> Result<Vec<Gid>> {
        Driver::port(self, port)?;
        Ok(self.shared.gids.clone())
    }

    fn counters(&self) -> DeviceCounters {
        let st = self.lock();
        let mut c = st.counters;
        c.qp = st.dead_qps;
        for be in &st.backends {
            be.add_counters(&mut c.qp);
        }
        c
    }

    fn alloc_pd(&self) -> Result<u32> {
        self.ports()?;
        let mut st = self.lock();
        if st.pds.len() >= self.shared.caps.max_pd as usize {
            return Err(VerbsError::NoResources("protection domains".into()));
        }
        let State { pds, next_pd, .. } = &mut *st;
        let id = next_id(pds, next_pd, 1, u32::MAX)
            .ok_or_else(|| VerbsError::NoResources("protection domains".into()))?;
        pds.insert(id, ());
        Ok(id)
    }

    fn dealloc_pd(&self, pd: u32) -> Result<()> {
        let mut st = self.lock();
        Self::check_pd(&st, pd)?;
        st.pds.remove(&pd);
        Ok(())
    }

    fn reg_mr(&self, pd: u32, backing: Backing, access: Access) -> Result<MrKeys> {
        let iova = backing.addr();
        self.reg_mr_iova(pd, backing, iova, access)
    }

    fn reg_mr_iova(&self, pd: u32, backing: Backing, iova: u64, access: Access) -> Result<MrKeys> {
        self.check_mr_access(access)?;
        let mut st = self.lock();
        Self::check_pd(&st, pd)?;
        if st.keys.mrs >= self.shared.caps.max_mr {
            return Err(VerbsError::NoResources("memory regions".into()));
        }
        let key = st.keys.reg_mr(pd, backing, iova, access)?;
        Ok(MrKeys {
            lkey: key,
            rkey: key,
        })
    }

    fn rereg_mr(&self, lkey: u32, change: MrRereg) -> Result<()> {
        if let Some(a) = change.access {
            self.check_mr_access(a)?;
        }
        let mut st = self.lock();
        if let Some(pd) = change.pd {
            Self::check_pd(&st, pd)?;
        }
        st.keys
            .rereg_mr(lkey, change.pd, change.access, change.memory)
    }

    fn dereg_mr(&self, lkey: u32) -> Result<()> {
        self.lock().keys.dereg_mr(lkey)
    }

    fn alloc_mw(&self, pd: u32, mw_type: MwType) -> Result<u32> {
        if !self.shared.caps.ops.memory_windows {
            return Err(self.unsupported("memory windows"));
        }
        let mut st = self.lock();
        Self::check_pd(&st, pd)?;
        if st.keys.mws >= self.shared.caps.max_mw {
            return Err(VerbsError::NoResources("memory windows".into()));
        }
        st.keys.alloc_mw(pd, mw_type)
    }

    fn bind_mw(&self, qpn: u32, mw_rkey: u32, bind: MwBind) -> Result<u32> {
        let mut st = self.lock();
        let pd = st.qps.get(&qpn).ok_or_else(|| Self::qp_missing(qpn))?.pd;
        st.keys.bind_mw(pd, qpn, mw_rkey, &bind)
    }

    fn dealloc_mw(&self, rkey: u32) -> Result<()> {
        self.lock().keys.dealloc_mw(rkey)
    }

    fn invalidate(&self, pd: u32, rkey: u32) -> Result<()> {
        let mut st = self.lock();
        Self::check_pd(&st, pd)?;
        st.keys.invalidate(pd, rkey).map_err(|e| match e {
            softverbs_transport::MemError::AccessDenied => VerbsError::invalid(format!(
                "rkey {rkey:#x} names a type 1 or unbound memory window, which cannot be invalidated"
            )),
            _ => VerbsError::NotFound(format!(
                "memory region or window with rkey {rkey:#x} in PD {pd}"
            )),
        })
    }

    fn create_cq(
        &self,
        cqe: u32,
        channel: Option<Arc<CompChannel>>,
        events: Arc<AsyncEvents>,
    ) -> Result<(u32, u32)> {
        let caps = &self.shared.caps;
        if cqe == 0 || cqe > caps.max_cqe {
            return Err(VerbsError::invalid(format!(
                "a CQ holds 1 to {} entries, not {cqe}",
                caps.max_cqe
            )));
        }
        self.ports()?;
        let mut st = self.lock();
        if st.cqs.len() >= caps.max_cq as usize {
            return Err(VerbsError::NoResources("completion queues".into()));
        }
        let State { cqs, next_cq, .. } = &mut *st;
        let id = next_id(cqs, next_cq, 1, u32::MAX)
            .ok_or_else(|| VerbsError::NoResources("completion queues".into()))?;
        let c = Arc::new(Mutex::new(Cq::new(id, cqe as usize, channel, events)));
        cqs.insert(id, c.clone());
        self.shared
            .cq_index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, c);
        Ok((id, cqe))
    }

    fn resize_cq(&self, cq: u32, cqe: u32) -> Result<u32> {
        let max = self.shared.caps.max_cqe;
        let c = self.cq(cq)?;
        let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
        if cqe == 0 || cqe > max || (cqe as usize) < c.q.len() {
            return Err(VerbsError::invalid(format!(
                "cannot resize CQ {cq} to {cqe}: it holds {} completions and at most {max} entries",
                c.q.len()
            )));
        }
        c.cap = cqe as usize;
        Ok(cqe)
    }

    fn destroy_cq(&self, cq: u32) -> Result<()> {
        let mut st = self.lock();
        if !st.cqs.contains_key(&cq) {
            return Err(VerbsError::NotFound(format!("CQ {cq}")));
        }
        let users: Vec<String> = st
            .qps
            .iter()
            .filter(|(_, e)| e.init.send_cq == cq || e.init.recv_cq == cq)
            .map(|(q, _)| format!("QP {q:#x}"))
            .collect();
        if !users.is_empty() {
            return Err(VerbsError::Busy {
                what: format!("CQ {cq}"),
                users,
            });
        }
        st.cqs.remove(&cq);
        self.shared
            .cq_index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&cq);
        Ok(())
    }

    fn poll_cq(&self, cq: u32, max: usize, out: &mut Vec<Wc>) -> Result<usize> {
        let c = self.cq(cq)?;
        let n = c.lock().unwrap_or_else(|e| e.into_inner()).poll(max, out);
        Ok(n)
    }

    fn req_notify_cq(&self, cq: u32, solicited_only: bool) -> Result<()> {
        let c = self.cq(cq)?;
        let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
        // Solicited-only never weakens an arm for any completion.
        c.armed = Some(match c.armed {
            Some(false) => false,
            _ => solicited_only,
        });
        Ok(())
    }

    fn create_srq(&self, pd: u32, attr: SrqAttr, events: Arc<AsyncEvents>) -> Result<u32> {
        let caps = &self.shared.caps;
        if !caps.ops.srq {
            return Err(self.unsupported("shared receive queues"));
        }
        if attr.max_wr == 0 || attr.max_wr > caps.max_srq_wr || attr.max_sge > caps.max_srq_sge {
            return Err(VerbsError::invalid(format!(
                "an SRQ holds 1 to {} WRs of at most {} SGEs",
                caps.max_srq_wr, caps.max_srq_sge
            )));
        }
        self.ports()?;
        let mut st = self.lock();
        Self::check_pd(&st, pd)?;
        if st.srqs.len() >= caps.max_srq as usize {
            return Err(VerbsError::NoResources("shared receive queues".into()));
        }
        let State { srqs, next_srq, .. } = &mut *st;
        let id = next_id(srqs, next_srq, 1, u32::MAX)
            .ok_or_else(|| VerbsError::NoResources("shared receive queues".into()))?;
        let mut rq = RecvQueue::new(attr.max_wr as usize);
        rq.arm_limit(attr.limit);
        srqs.insert(id, SrqEntry { rq, attr, events });
        Ok(id)
    }

    fn modify_srq(&self, srq: u32, max_wr: Option<u32>, limit: Option<u32>) -> Result<()> {
        let max = self.shared.caps.max_srq_wr;
        let mut st = self.lock();
        let s = st
            .srqs
            .get_mut(&srq)
            .ok_or_else(|| VerbsError::NotFound(format!("SRQ {srq}")))?;
        if let Some(w) = max_wr {
            if w == 0 || w > max || (w as usize) < s.rq.len() {
                return Err(VerbsError::invalid(format!(
                    "cannot resize SRQ {srq} to {w}: it holds {} WRs and at most {max}",
                    s.rq.len()
                )));
            }
        }
        let new_limit = limit.unwrap_or(s.attr.limit);
        let new_max = max_wr.unwrap_or(s.attr.max_wr);
        if new_limit > new_max {
            return Err(VerbsError::invalid(format!(
                "the SRQ limit {new_limit} exceeds its depth {new_max}"
            )));
        }
        if let Some(w) = max_wr {
            s.rq.set_capacity(w as usize);
            s.attr.max_wr = w;
        }
        if let Some(l) = limit {
            s.rq.arm_limit(l);
            s.attr.limit = l;
        }
        Ok(())
    }

    fn query_srq(&self, srq: u32) -> Result<SrqAttr> {
        let st = self.lock();
        let s = st
            .srqs
            .get(&srq)
            .ok_or_else(|| VerbsError::NotFound(format!("SRQ {srq}")))?;
        Ok(SrqAttr {
            limit: s.rq.limit(),
            ..s.attr
        })
    }

    fn destroy_srq(&self, srq: u32) -> Result<()> {
        let mut st = self.lock();
        if !st.srqs.contains_key(&srq) {
            return Err(VerbsError::NotFound(format!("SRQ {srq}")));
        }
        let users: Vec<String> = st
            .qps
            .iter()
            .filter(|(_, e)| e.init.srq == Some(srq))
            .map(|(q, _)| format!("QP {q:#x}"))
            .collect();
        if !users.is_empty() {
            return Err(VerbsError::Busy {
                what: format!("SRQ {srq}"),
                users,
            });
        }
        st.srqs.remove(&srq);
        st.recv_sources.remove(&(true, srq));
        Ok(())
    }

    fn post_srq_recv(&self, srq: u32, wr: RecvWr) -> Result<()> {
        let mut st = self.lock();
        let s = st
            .srqs
            .get_mut(&srq)
            .ok_or_else(|| VerbsError::NotFound(format!("SRQ {srq}")))?;
        s.rq.push(wr).map_err(|_| VerbsError::QueueFull)
    }

    fn create_qp(&self, pd: u32, init: &QpInit, events: Arc<AsyncEvents>) -> Result<(u32, QpInit)> {
        self.shared
            .caps
            .require_qp_type(self.name_str(), init.qp_type)?;
        self.create_any_qp(pd, init, None, events)
    }

    fn create_driver_qp(
        &self,
        pd: u32,
        init: &QpInit,
        driver: &DriverQpInit,
        events: Arc<AsyncEvents>,
    ) -> Result<(u32, QpInit)> {
        self.create_any_qp(pd, init, Some(driver), events)
    }

    fn efa_device_attr(&self) -> Option<EfaDeviceAttr> {
        self.shared.efa
    }

    fn driver_spec(&self) -> Option<&'static DriverSpec> {
        self.shared.spec
    }

    fn modify_qp(&self, qpn: u32, m: &ModifyQp) -> Result<()> {
        if let Some(mtu) = m.path_mtu {
            if mtu > self.shared.cfg.mtu {
                return Err(VerbsError::invalid(format!(
                    "path MTU {} exceeds the active MTU {} of {} (configure mtu= in SOFTVERBS_DEVICES)",
                    mtu.bytes(),
                    self.shared.cfg.mtu.bytes(),
                    self.name_str()
                )));
            }
        }
        self.ports()?;
        let b = self.lock().meta(qpn)?.backend;
        let port = self.port_of(b)?;
        let now = self.shared.now();
        let mut st = self.lock();
        st.backends[b].modify_qp(now, qpn, m)?;
        self.shared.finish_inline(&mut st, b, now, &port);
        Ok(())
    }

    fn query_qp(&self, qpn: u32) -> Result<QpInfo> {
        let st = self.lock();
        let meta = st.meta(qpn)?;
        let q = st.backends[meta.backend]
            .query_qp(qpn)
            .ok_or_else(|| Self::qp_missing(qpn))?;
        Ok(QpInfo {
            qpn,
            state: q.state,
            attrs: q.attrs,
            init: meta.init.clone(),
            counters: q.counters,
        })
    }

    fn destroy_qp(&self, qpn: u32) -> Result<()> {
        let mut st = self.lock();
        let meta = st.qps.remove(&qpn).ok_or_else(|| Self::qp_missing(qpn))?;
        st.recv_sources.remove(&(false, qpn));
        let c = st.backends[meta.backend].destroy_qp(qpn);
        add_counters(&mut st.dead_qps, &c);
        Ok(())
    }

    fn post_send(&self, qpn: u32, wr: SendWr) -> Result<()> {
        self.post_send_of(qpn, wr, false)
    }

    fn post_bind_mw(&self, qpn: u32, wr: SendWr) -> Result<()> {
        if !matches!(wr.op, SendOp::BindMw { .. }) {
            return Err(VerbsError::invalid(format!(
                "QP {qpn:#x}: post_bind_mw posts window binds only, not {:?}",
                wr.op
            )));
        }
        self.post_send_of(qpn, wr, true)
    }

    fn post_recv(&self, qpn: u32, wr: RecvWr) -> Result<()> {
        let ports = self.ports()?;
        let now = self.shared.now();
        let mut st = self.lock();
        let b = st.meta(qpn)?.backend;
        let port = &ports[b];
        st.backends[b]
            .post_recv(qpn, wr)
            .map_err(|err| post_error(qpn, err))?;
        self.shared.finish_inline(&mut st, b, now, port);
        Ok(())
    }

    fn set_recv_source(
        &self,
        srq: bool,
        id: u32,
        source: Option<Arc<dyn RecvSource>>,
    ) -> Result<()> {
        let mut st = self.lock();
        let known = if srq {
            st.srqs.contains_key(&id)
        } else {
            st.qps.contains_key(&id)
        };
        if !known {
            return Err(VerbsError::NotFound(format!(
                "{} {id:#x}",
                if srq { "SRQ" } else { "QP" }
            )));
        }
        match source {
            Some(s) => st.recv_sources.insert((srq, id), s),
            None => st.recv_sources.remove(&(srq, id)),
        };
        Ok(())
    }

    fn pull_recv(&self, srq: bool, id: u32) -> Result<usize> {
        let ports = self.ports()?;
        let now = self.shared.now();
        let mut st = self.lock();
        let n = st.pull_sources(Some((srq, id)));
        if n > 0 {
            // Flushes of a QP in the error state, SRQ limit events.
            for (b, port) in ports.iter().enumerate() {
                self.shared.finish_inline(&mut st, b, now, port);
            }
        }
        Ok(n)
    }

    fn create_ah(&self, pd: u32, attr: AhAttr) -> Result<u32> {
        if attr.port != 1 {
            return Err(VerbsError::invalid(format!(
                "port {} of {} (it has port 1)",
                attr.port,
                self.name_str()
            )));
        }
        if usize::from(attr.sgid_index) >= self.shared.gids.len() {
            return Err(VerbsError::invalid(format!(
                "GID index {} of {} (its table has {} entries)",
                attr.sgid_index,
                self.name_str(),
                self.shared.gids.len()
            )));
        }
        let mut st = self.lock();
        Self::check_pd(&st, pd)?;
        if st.ahs.len() >= self.shared.caps.max_ah as usize {
            return Err(VerbsError::NoResources("address handles".into()));
        }
        let State { ahs, next_ah, .. } = &mut *st;
        let id = next_id(ahs, next_ah, 1, u32::MAX)
            .ok_or_else(|| VerbsError::NoResources("address handles".into()))?;
        ahs.insert(id, attr);
        Ok(id)
    }

    fn destroy_ah(&self, ah: u32) -> Result<()> {
        self.lock()
            .ahs
            .remove(&ah)
            .map(|_| ())
            .ok_or_else(|| VerbsError::NotFound(format!("address handle {ah}")))
    }
}
