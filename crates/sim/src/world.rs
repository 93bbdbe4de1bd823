//! The simulation proper: hosts, QP pairs, the fabric and the event loop
//! that drives the engines in virtual time.
//!
//! After every input to an engine (a packet, a timeout, a post) the
//! simulator drains it the quinn-proto way: `poll_transmit` until `None`,
//! then completions and events, again while completions led to new posts,
//! and finally re-arms its timer from `poll_timeout`.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use softverbs_transport::Payload;
use softverbs_transport::{
    Access, Completion, Ctx, Incoming, Instant, ModifyQp, Qp, QpConfig, QpCounters, QpEvent,
    QpState, QpType, RecvWr, SendFlags, SendOp, SendWr, Transmit, UdDest, WcQueue, WcStatus,
    MAX_HEADER_LEN,
};
use softverbs_wire::icrc::{self, Endpoints};
use softverbs_wire::{Gid, PacketRepr, ROCEV2_UDP_PORT};

use crate::config::{PairFault, SimConfig, TransportMix};
use crate::events::EventQueue;
use crate::host::{network_header, Host, Side};
use crate::net::{Delivery, Network};
use crate::oracle::{Fail, PairOracle, RecvCtx};
use crate::report::{Breach, Invariant, PacketReport, SimReport};
use crate::workload::{msg_bytes, read_area_bytes, split_sgl, Generator, Layout, MsgKind, POISON};

/// The Q_Key every UD QP uses.
const QKEY: u32 = 0x1111_1111;
/// How long the simulation runs on after the last work request completed,
/// so late duplicates and stragglers still reach the engines.
const GRACE_NS: u64 = 20_000_000;
/// The `retry_cnt` every RC requester gets.
const RETRY_CNT: u64 = 7;
/// Most packets one engine may emit in one drain before it counts as a livelock.
const MAX_BURST: usize = 100_000;

/// Where the simulator was when it last called into an engine (reported
/// when an engine panics).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Trace {
    pub now: u64,
    pub pair: Option<usize>,
    pub qpn: Option<u32>,
}

/// A QP's place: host and index on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    host: usize,
    idx: usize,
}

enum Event {
    /// A packet copy arrives at host `dst`.
    Deliver {
        dst: usize,
        src: usize,
        src_port: u16,
        bytes: Vec<u8>,
        corrupted: bool,
    },
    /// A QP's timer fires (if it is still the one armed).
    Timer(Loc),
    /// A pair starts posting.
    Start(usize),
    /// A held-back receive WQE is posted.
    Repost { pair: usize, slot: usize },
}

struct Pair {
    qp_type: QpType,
    req: Loc,
    resp: Loc,
    req_qpn: u32,
    resp_qpn: u32,
    layout: Layout,
    gen: Generator,
    oracle: PairOracle,
    next_seq: u32,
    window: usize,
    free_src: Vec<usize>,
    silent_from: Option<Instant>,
    starve: bool,
    /// Packets of this pair the fabric lost or corrupted (every copy) since
    /// its requester last completed a WQE successfully.
    drops_since_progress: u64,
}

/// One simulation run.
pub(crate) struct World<'a> {
    cfg: &'a SimConfig,
    trace: &'a Cell<Trace>,
    now: Instant,
    events: EventQueue<Event>,
    net: Network,
    hosts: Vec<Host>,
    gid_to_host: BTreeMap<[u8; 16], usize>,
    pairs: Vec<Pair>,
    rng: Xoshiro256PlusPlus,
    txbuf: Vec<u8>,
    deliveries: Vec<Delivery>,
    packets: PacketReport,
    completions: BTreeMap<String, u64>,
    recv_flushed_at_end: u64,
    retry_exhausted_by_loss: u64,
    last_progress: Instant,
    done_at: Option<Instant>,
    n_events: u64,
    max_events: u64,
    trace_tail: std::collections::VecDeque<String>,
}

fn random_psn(rng: &mut Xoshiro256PlusPlus) -> u32 {
    if rng.random_bool(0.3) {
        0xff_ffff - rng.random_range(0..64) // wraps within the run
    } else {
        rng.random_range(0..=0xff_ffff)
    }
}

impl<'a> World<'a> {
    pub(crate) fn new(cfg: &'a SimConfig, trace: &'a Cell<Trace>) -> World<'a> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed ^ 0x5e70_0b5e);
        let mut hosts: Vec<Host> = (0..cfg.hosts).map(Host::new).collect();
        let gid_to_host = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.gid.0, i))
            .collect();
        let mut used_qpns = std::collections::BTreeSet::new();
        let mut qpn = |rng: &mut Xoshiro256PlusPlus| loop {
            let n = rng.random_range(2..=0xff_ffff);
            if used_qpns.insert(n) {
                break n;
            }
        };
        let mtu = cfg.mtu.bytes();
        let mut pairs = Vec::with_capacity(cfg.qps);
        for p in 0..cfg.qps {
            let qp_type = match cfg.transport {
                TransportMix::Rc => QpType::Rc,
                TransportMix::Uc => QpType::Uc,
                TransportMix::Ud => QpType::Ud,
                TransportMix::Mix => {
                    let choices: Vec<QpType> = [QpType::Rc, QpType::Uc, QpType::Ud]
                        .into_iter()
                        .filter(|&t| !cfg.ops.for_transport(t).is_empty())
                        .collect();
                    choices[rng.random_range(0..choices.len())]
                }
            };
            let rh = rng.random_range(0..cfg.hosts);
            let sh = (rh + rng.random_range(1..cfg.hosts)) % cfg.hosts;
            let max_msg = cfg.max_msg_for(qp_type);
            let window = rng.random_range(1..=cfg.window);
            let (req_mem, resp_mem) = two_mut(&mut hosts, rh, sh);
            let layout = Layout::register(
                &mut rng,
                &mut req_mem.memory,
                &mut resp_mem.memory,
                max_msg,
                window,
                cfg.recv_depth,
            );
            let read_init = read_area_bytes(cfg.seed, p, layout.read.len as usize);
            resp_mem
                .memory
                .poke(layout.read.lkey, layout.read.addr, read_init.len())
                .expect("read area")
                .copy_from_slice(&read_init);
            let fault = cfg.faults.iter().find(|f| f.pair() == p).copied();
            let expected_error = match fault {
                Some(PairFault::SilentPeer { .. }) if qp_type == QpType::Rc => {
                    Some(WcStatus::RetryExcErr)
                }
                Some(PairFault::RnrExhaust { .. }) if qp_type == QpType::Rc => {
                    Some(WcStatus::RnrRetryExcErr)
                }
                _ => None,
            };
            let (req_qpn, resp_qpn) = (qpn(&mut rng), qpn(&mut rng));
            let (psn_fwd, psn_back) = (random_psn(&mut rng), random_psn(&mut rng));
            let timeout = cfg.timeout.unwrap_or_else(|| rng.random_range(10..=14));
            let rnr_retry = match fault {
                Some(PairFault::RnrExhaust { rnr_retry, .. }) => rnr_retry,
                _ => 7,
            };
            let max_rd = rng.random_range(1..=8u8);
            let max_dest_rd = rng.random_range(max_rd..=16u8);
            let min_rnr_timer = rng.random_range(1..=12u8);
            let mut req_qp = Qp::new(QpConfig {
                sq_sig_all: true,
                ..QpConfig::new(qp_type, req_qpn)
            });
            let mut resp_qp = Qp::new(QpConfig {
                sq_sig_all: true,
                ..QpConfig::new(qp_type, resp_qpn)
            });
            let (rgid, sgid) = (hosts[rh].gid, hosts[sh].gid);
            let end = |qp: &mut Qp, dest_qpn: u32, dgid: Gid, rq_psn: u32, sq_psn: u32| {
                let ud = qp_type == QpType::Ud;
                let init = ModifyQp {
                    state: Some(QpState::Init),
                    access: Some(
                        Access::REMOTE_WRITE | Access::REMOTE_READ | Access::REMOTE_ATOMIC,
                    ),
                    qkey: ud.then_some(QKEY),
                    ..ModifyQp::default()
                };
                let rtr = ModifyQp {
                    state: Some(QpState::Rtr),
                    path_mtu: Some(cfg.mtu),
                    dest_qpn: (!ud).then_some(dest_qpn),
                    dgid: (!ud).then_some(dgid),
                    rq_psn: Some(rq_psn),
                    max_dest_rd_atomic: Some(max_dest_rd),
                    min_rnr_timer: Some(min_rnr_timer),
                    ..ModifyQp::default()
                };
                let rts = ModifyQp {
                    state: Some(QpState::Rts),
                    sq_psn: Some(sq_psn),
                    timeout: Some(timeout),
                    retry_cnt: Some(RETRY_CNT as u8),
                    rnr_retry: Some(rnr_retry),
                    max_rd_atomic: Some(max_rd),
                    ..ModifyQp::default()
                };
                for m in [init, rtr, rts] {
                    qp.modify(&m, Instant::ZERO);
                }
            };
            end(&mut req_qp, resp_qpn, sgid, psn_back, psn_fwd);
            end(&mut resp_qp, req_qpn, rgid, psn_fwd, psn_back);
            let req = Loc {
                host: rh,
                idx: hosts[rh].add_qp(req_qp, p, Side::Requester),
            };
            let resp = Loc {
                host: sh,
                idx: hosts[sh].add_qp(resp_qp, p, Side::Responder),
            };
            let area = layout.write.len as usize;
            let gen = Generator::new(cfg.seed, p, qp_type, cfg.ops, mtu, max_msg, area);
            pairs.push(Pair {
                qp_type,
                req,
                resp,
                req_qpn,
                resp_qpn,
                layout,
                gen,
                oracle: PairOracle::new(cfg.seed, p, qp_type, area, expected_error),
                next_seq: 0,
                window,
                free_src: (0..window).rev().collect(),
                silent_from: match fault {
                    Some(PairFault::SilentPeer { after_ns, .. }) => Some(Instant(after_ns)),
                    _ => None,
                },
                starve: matches!(fault, Some(PairFault::RnrExhaust { .. })),
                drops_since_progress: 0,
            });
        }
        let total = (cfg.qps * cfg.messages) as u64;
        // Go-back-N resends whole windows of multi-packet messages.
        let packets_per_msg = cfg.max_msg_for(QpType::Rc).div_ceil(mtu).max(1) as u64;
        World {
            cfg,
            trace,
            now: Instant::ZERO,
            events: EventQueue::new(),
            net: Network::new(cfg.link(), cfg.hosts, cfg.seed ^ 0x0ae7_f00d),
            hosts,
            gid_to_host,
            pairs,
            rng,
            txbuf: vec![0; mtu + MAX_HEADER_LEN],
            deliveries: Vec::new(),
            packets: PacketReport::default(),
            completions: BTreeMap::new(),
            recv_flushed_at_end: 0,
            retry_exhausted_by_loss: 0,
            last_progress: Instant::ZERO,
            done_at: None,
            n_events: 0,
            max_events: cfg
                .max_events
                .unwrap_or(1_000_000 + total * 2_000 * packets_per_msg),
            trace_tail: std::collections::VecDeque::new(),
        }
    }

    fn breach(&self, inv: Invariant, detail: impl Into<String>) -> Breach {
        let mut b = Breach::new(inv, self.cfg.seed, self.now.0, detail);
        b.trace = self.trace_tail.iter().cloned().collect();
        b
    }

    fn fail_on(&self, f: Fail, pair: usize, qpn: u32) -> Breach {
        let mut b = self.breach(f.inv, f.detail).on(pair, qpn);
        b.message = f.seq;
        b
    }

    /// Record a trace line (only when tracing: the closure is not even run otherwise).
    fn log(&mut self, line: impl FnOnce() -> String) {
        if self.cfg.trace == 0 {
            return;
        }
        if self.trace_tail.len() == self.cfg.trace {
            self.trace_tail.pop_front();
        }
        let l = line();
        self.trace_tail.push_back(format!("t={} {l}", self.now.0));
    }

    fn enter(&self, loc: Loc) {
        let slot = &self.hosts[loc.host].qps[loc.idx];
        self.trace.set(Trace {
            now: self.now.0,
            pair: Some(slot.pair),
            qpn: Some(slot.qp.qpn()),
        });
    }

    /// Run to the end and check everything.
    pub(crate) fn run(mut self) -> Result<SimReport, Breach> {
        for p in 0..self.pairs.len() {
            if !self.pairs[p].starve {
                for slot in 0..self.cfg.recv_depth {
                    self.post_recv(p, slot)?;
                }
            }
            let at = Instant(self.rng.random_range(0..20_000));
            self.events.push(at, Event::Start(p));
        }
        loop {
            if self.done_at.is_none() && self.all_done() {
                self.done_at = Some(self.last_progress.max(self.now));
            }
            let Some((at, ev)) = self.events.pop() else {
                break;
            };
            if self.done_at.is_some_and(|d| at.0 > d.0 + GRACE_NS) {
                break;
            }
            self.now = self.now.max(at);
            self.n_events += 1;
            if self.n_events > self.max_events {
                return Err(self.breach(
                    Invariant::NoLivelock,
                    format!(
                        "{} events without finishing; {}",
                        self.max_events,
                        self.describe_outstanding()
                    ),
                ));
            }
            if self.done_at.is_none()
                && self.now.0.saturating_sub(self.last_progress.0) > self.cfg.stall_ns
            {
                return Err(self.breach(
                    Invariant::NoStall,
                    format!(
                        "no completion for {} ms of virtual time; {}",
                        self.cfg.stall_ns / 1_000_000,
                        self.describe_outstanding()
                    ),
                ));
            }
            self.dispatch(at, ev)?;
        }
        if self.done_at.is_none() {
            return Err(self.breach(
                Invariant::NoStall,
                format!(
                    "nothing left to happen but work is outstanding; {}",
                    self.describe_outstanding()
                ),
            ));
        }
        self.teardown()?;
        Ok(self.report())
    }

    fn all_done(&self) -> bool {
        self.pairs
            .iter()
            .all(|p| p.next_seq as usize == self.cfg.messages && p.oracle.outstanding.is_empty())
    }

    fn describe_outstanding(&self) -> String {
        for (i, p) in self.pairs.iter().enumerate() {
            if p.next_seq as usize == self.cfg.messages && p.oracle.outstanding.is_empty() {
                continue;
            }
            let req = &self.hosts[p.req.host].qps[p.req.idx].qp;
            let resp = &self.hosts[p.resp.host].qps[p.resp.idx].qp;
            let first = p
                .oracle
                .outstanding
                .front()
                .map(|w| format!("message {} ({:?}, {} bytes)", w.seq, w.kind, w.len))
                .unwrap_or_default();
            return format!(
                "pair {i} ({:?}, requester qpn {:#x} in {:?}, responder qpn {:#x} in {:?}) waits on {first}; {} of {} posted, {} outstanding, requester timer {:?}; requester counters {:?}; responder counters {:?}",
                p.qp_type,
                p.req_qpn,
                req.state(),
                p.resp_qpn,
                resp.state(),
                p.next_seq,
                self.cfg.messages,
                p.oracle.outstanding.len(),
                req.poll_timeout(),
                req.counters(),
                resp.counters()
            );
        }
        "no pair has work outstanding".into()
    }

    fn dispatch(&mut self, at: Instant, ev: Event) -> Result<(), Breach> {
        match ev {
            Event::Deliver {
                dst,
                src,
                src_port,
                bytes,
                corrupted,
            } => self.deliver(dst, src, src_port, bytes, corrupted),
            Event::Timer(loc) => {
                let slot = &mut self.hosts[loc.host].qps[loc.idx];
                if slot.timer != Some(at) {
                    return Ok(()); // superseded
                }
                slot.timer = None;
                self.enter(loc);
                self.hosts[loc.host].qps[loc.idx]
                    .qp
                    .handle_timeout(self.now);
                self.service(loc)
            }
            Event::Start(p) => {
                self.post_more(p)?;
                let loc = self.pairs[p].req;
                self.service(loc)
            }
            Event::Repost { pair, slot } => {
                self.post_recv(pair, slot)?;
                let loc = self.pairs[pair].resp;
                self.service(loc)
            }
        }
    }

    fn endpoints(&self, src: usize, src_port: u16, dst: usize) -> Endpoints {
        Endpoints {
            src: SocketAddr::new(IpAddr::V4(self.hosts[src].ip), src_port),
            dst: SocketAddr::new(IpAddr::V4(self.hosts[dst].ip), ROCEV2_UDP_PORT),
        }
    }

    fn deliver(
        &mut self,
        dst: usize,
        src: usize,
        src_port: u16,
        bytes: Vec<u8>,
        corrupted: bool,
    ) -> Result<(), Breach> {
        let ep = self.endpoints(src, src_port, dst);
        let intact = icrc::verify(&ep, 0, &bytes);
        if corrupted {
            if intact {
                return Err(self.breach(
                    Invariant::IcrcCatchesCorruption,
                    format!("a corrupted packet passed the ICRC check: {bytes:02x?}"),
                ));
            }
            self.packets.corrupt_caught += 1;
            self.log(|| {
                format!("rx host{src}->host{dst} corrupted packet dropped by the ICRC check")
            });
            return Ok(());
        }
        if !intact {
            return Err(self.breach(
                Invariant::IcrcAcceptsIntact,
                format!("an intact packet failed the ICRC check: {bytes:02x?}"),
            ));
        }
        let (repr, payload) = match PacketRepr::parse(&bytes) {
            Ok(r) => r,
            Err(e) => {
                return Err(
                    self.breach(Invariant::EmittedPacketsParse, format!("{e}: {bytes:02x?}"))
                )
            }
        };
        let qpn = repr.bth.dest_qpn;
        let Some(&idx) = self.hosts[dst].by_qpn.get(&qpn) else {
            return Err(self.breach(
                Invariant::PacketsReachTheirQp,
                format!(
                    "a packet for qpn {qpn:#x} reached host {dst}, which has no such QP: {repr:?}"
                ),
            ));
        };
        let loc = Loc { host: dst, idx };
        self.log(|| {
            let b = &repr.bth;
            format!(
                "rx host{src}->host{dst} qpn {qpn:#x} {} psn {:#x}{} len {} aeth {:?} reth {:?} imm {:?}",
                b.opcode.0,
                b.psn,
                if b.ack_req { " A" } else { "" },
                payload.len(),
                repr.aeth,
                repr.reth,
                repr.immdt
            )
        });
        let slot = &self.hosts[dst].qps[idx];
        let pair = &self.pairs[slot.pair];
        if slot.side == Side::Responder && pair.silent_from.is_some_and(|t| self.now >= t) {
            self.packets.silenced += 1;
            return Ok(());
        }
        let hdr = network_header(self.hosts[src].ip, self.hosts[dst].ip, bytes.len());
        let src_gid = self.hosts[src].gid;
        let inc = Incoming {
            repr: &repr,
            payload,
            src: src_gid,
            network_header: &hdr,
        };
        self.enter(loc);
        let host = &mut self.hosts[dst];
        host.qps[idx]
            .qp
            .handle_packet(self.now, &inc, &mut Ctx::new(&mut host.memory));
        self.service(loc)
    }

    /// Drain an engine after an input, then re-arm its timer.
    fn service(&mut self, loc: Loc) -> Result<(), Breach> {
        let mut buf = std::mem::take(&mut self.txbuf);
        let r = self.drain(loc, &mut buf);
        self.txbuf = buf;
        r?;
        let slot = &mut self.hosts[loc.host].qps[loc.idx];
        match slot.qp.poll_timeout() {
            Some(t) => {
                let t = t.max(self.now);
                if slot.timer != Some(t) {
                    slot.timer = Some(t);
                    self.events.push(t, Event::Timer(loc));
                }
            }
            None => slot.timer = None,
        }
        Ok(())
    }

    fn drain(&mut self, loc: Loc, buf: &mut [u8]) -> Result<(), Breach> {
        loop {
            self.enter(loc);
            let mut burst = 0;
            loop {
                let host = &mut self.hosts[loc.host];
                let t = host.qps[loc.idx].qp.poll_transmit(
                    self.now,
                    &mut Ctx::new(&mut host.memory),
                    buf,
                );
                let Some(t) = t else { break };
                burst += 1;
                if burst > MAX_BURST {
                    return Err(self.breach(
                        Invariant::NoLivelock,
                        format!("an engine emitted more than {MAX_BURST} packets in one drain"),
                    ));
                }
                self.emit(loc, t, buf)?;
            }
            let mut progressed = false;
            while let Some(c) = self.hosts[loc.host].qps[loc.idx].qp.poll_completion() {
                progressed = true;
                self.on_completion(loc, c, false)?;
            }
            while let Some(e) = self.hosts[loc.host].qps[loc.idx].qp.poll_event() {
                self.on_event(loc, e)?;
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    fn emit(&mut self, loc: Loc, t: Transmit, buf: &[u8]) -> Result<(), Breach> {
        if t.len > buf.len() || t.len < 16 {
            return Err(self.breach(
                Invariant::EmittedPacketsParse,
                format!(
                    "poll_transmit reported {} bytes in a {}-byte buffer",
                    t.len,
                    buf.len()
                ),
            ));
        }
        let Some(&dst) = self.gid_to_host.get(&t.dst.0) else {
            return Err(self.breach(
                Invariant::PacketsReachTheirQp,
                format!(
                    "a packet was sent to GID {:02x?}, which no host has",
                    t.dst.0
                ),
            ));
        };
        self.packets.sent += 1;
        let slot = &self.hosts[loc.host].qps[loc.idx];
        let pair = &self.pairs[slot.pair];
        if slot.side == Side::Responder && pair.silent_from.is_some_and(|s| self.now >= s) {
            self.packets.silenced += 1;
            return Ok(());
        }
        let mut bytes = buf[..t.len].to_vec();
        let ep = self.endpoints(loc.host, t.src_port, dst);
        icrc::seal(&ep, 0, &mut bytes);
        let mut out = std::mem::take(&mut self.deliveries);
        self.net.transmit(self.now, loc.host, &bytes, &mut out);
        if out.iter().all(|d| d.corrupted) {
            let p = self.hosts[loc.host].qps[loc.idx].pair;
            self.pairs[p].drops_since_progress += 1;
        }
        self.log(|| {
            let fate: Vec<String> = out
                .iter()
                .map(|d| {
                    format!(
                        "t={}{}",
                        d.at.0,
                        if d.corrupted { " corrupted" } else { "" }
                    )
                })
                .collect();
            let (op, psn) = (
                bytes[0],
                u32::from_be_bytes([0, bytes[9], bytes[10], bytes[11]]),
            );
            format!(
                "tx host{}->host{dst} op {op} psn {psn:#x} {} bytes: arrives {fate:?}",
                loc.host,
                bytes.len()
            )
        });
        for d in out.drain(..) {
            let ev = Event::Deliver {
                dst,
                src: loc.host,
                src_port: t.src_port,
                bytes: d.bytes,
                corrupted: d.corrupted,
            };
            self.events.push(d.at, ev);
        }
        self.deliveries = out;
        Ok(())
    }

    fn on_event(&mut self, loc: Loc, e: QpEvent) -> Result<(), Breach> {
        let slot = &self.hosts[loc.host].qps[loc.idx];
        let (p, side, qpn) = (slot.pair, slot.side, slot.qp.qpn());
        if e == QpEvent::Fatal {
            let pair = &mut self.pairs[p];
            if side == Side::Requester && pair.oracle.expected_error.is_some() {
                pair.oracle.fatal_seen = true;
            } else {
                let f = Fail {
                    inv: Invariant::NoUnexpectedEvent,
                    seq: None,
                    detail: format!("the {side:?} QP went to the error state (QP_FATAL)"),
                };
                return Err(self.fail_on(f, p, qpn));
            }
        }
        Ok(())
    }

    fn on_completion(&mut self, loc: Loc, c: Completion, teardown: bool) -> Result<(), Breach> {
        let slot = &self.hosts[loc.host].qps[loc.idx];
        let (p, side, qpn) = (slot.pair, slot.side, slot.qp.qpn());
        self.last_progress = self.now;
        if !teardown {
            *self
                .completions
                .entry(format!("{:?}", c.status))
                .or_default() += 1;
        }
        self.log(|| {
            format!(
                "completion pair {p} {side:?} qpn {qpn:#x} wr_id {:#x} {:?} {:?} {:?} byte_len {} imm {:?}",
                c.wr_id, c.queue, c.status, c.opcode, c.byte_len, c.imm
            )
        });
        let pair = &mut self.pairs[p];
        match (side, c.queue) {
            (Side::Requester, WcQueue::Send) => {
                if c.status == WcStatus::Success {
                    pair.drops_since_progress = 0;
                } else if c.status == WcStatus::RetryExcErr
                    && pair.oracle.expected_error.is_none()
                    && pair.drops_since_progress > RETRY_CNT
                {
                    // Bad luck, not a bug: the fabric dropped more packets of
                    // this pair since its last progress than the requester
                    // has tries. The pair fails like a silent peer.
                    pair.oracle.expected_error = Some(WcStatus::RetryExcErr);
                    self.retry_exhausted_by_loss += 1;
                }
                let req_mem = &self.hosts[pair.req.host].memory;
                let resp_mem = &self.hosts[pair.resp.host].memory;
                match pair
                    .oracle
                    .on_send_completion(&c, req_mem, resp_mem, &pair.layout)
                {
                    Ok(done) => {
                        pair.free_src.push(done.slot);
                        if !teardown {
                            self.post_more(p)?;
                        }
                        Ok(())
                    }
                    Err(f) => Err(self.fail_on(f, p, qpn)),
                }
            }
            (Side::Responder, WcQueue::Recv) => {
                let req_host = pair.req.host;
                let hdr_fn = |len: usize| {
                    network_header(self.hosts[req_host].ip, self.hosts[loc.host].ip, len)
                };
                let ctx = RecvCtx {
                    mem: &self.hosts[loc.host].memory,
                    layout: &pair.layout,
                    ud_header: (pair.qp_type == QpType::Ud)
                        .then_some(&hdr_fn as &dyn Fn(usize) -> [u8; 40]),
                    src_qpn: pair.req_qpn,
                };
                match pair.oracle.on_recv_completion(&c, &ctx, teardown) {
                    Ok(slot) if teardown => {
                        self.recv_flushed_at_end += 1;
                        let _ = slot;
                        Ok(())
                    }
                    Ok(slot) => {
                        if self.cfg.rnr > 0.0 && self.rng.random_bool(self.cfg.rnr) {
                            let at = Instant(self.now.0 + self.rng.random_range(0..1_000_000));
                            self.events.push(at, Event::Repost { pair: p, slot });
                            Ok(())
                        } else {
                            self.post_recv(p, slot)
                        }
                    }
                    Err(f) => Err(self.fail_on(f, p, qpn)),
                }
            }
            (side, queue) => {
                let f = Fail {
                    inv: Invariant::WqeCompletesOnce,
                    seq: None,
                    detail: format!("a {queue:?} completion ({:?}, wr_id {:#x}) on the {side:?} QP, whose {queue:?} queue was never posted to", c.status, c.wr_id),
                };
                Err(self.fail_on(f, p, qpn))
            }
        }
    }

    /// Post send work requests until the pair's window is full.
    fn post_more(&mut self, p: usize) -> Result<(), Breach> {
        let seed = self.cfg.seed;
        loop {
            let pair = &mut self.pairs[p];
            if pair.next_seq as usize >= self.cfg.messages
                || pair.oracle.outstanding.len() >= pair.window
            {
                return Ok(());
            }
            let Some(slot) = pair.free_src.pop() else {
                return Ok(());
            };
            let seq = pair.next_seq;
            pair.next_seq += 1;
            let msg = pair.gen.next(p, seq, pair.oracle.atomic_model);
            let l = pair.layout;
            let local = l.src_slot(slot);
            let mem = &mut self.hosts[pair.req.host].memory;
            let carries_data = matches!(
                msg.kind,
                MsgKind::Send | MsgKind::SendImm | MsgKind::Write | MsgKind::WriteImm
            );
            let data = if carries_data {
                msg_bytes(seed, p, seq, msg.len)
            } else {
                Vec::new()
            };
            let cell = mem
                .poke(l.src.lkey, local, l.slot_len)
                .expect("slot in region");
            cell.fill(POISON);
            cell[..data.len()].copy_from_slice(&data);
            let payload = if msg.inline {
                Payload::Inline(data)
            } else {
                Payload::Sgl(split_sgl(
                    pair.gen.rng(),
                    local,
                    msg.len,
                    l.src.lkey,
                    msg.sges,
                ))
            };
            let op = match msg.kind {
                MsgKind::Send => SendOp::Send,
                MsgKind::SendImm => SendOp::SendWithImm {
                    imm: msg.imm.unwrap_or_default(),
                },
                MsgKind::Write => SendOp::Write {
                    remote_addr: l.write.addr + msg.remote_off,
                    rkey: l.write.rkey,
                },
                MsgKind::WriteImm => SendOp::WriteWithImm {
                    remote_addr: l.write.addr + msg.remote_off,
                    rkey: l.write.rkey,
                    imm: msg.imm.unwrap_or_default(),
                },
                MsgKind::Read => SendOp::Read {
                    remote_addr: l.read.addr + msg.remote_off,
                    rkey: l.read.rkey,
                },
                MsgKind::CmpSwap => SendOp::CompareSwap {
                    remote_addr: l.atomic.addr,
                    rkey: l.atomic.rkey,
                    compare: msg.compare,
                    swap: msg.swap,
                },
                MsgKind::FetchAdd => SendOp::FetchAdd {
                    remote_addr: l.atomic.addr,
                    rkey: l.atomic.rkey,
                    add: msg.add,
                },
            };
            let ud = (pair.qp_type == QpType::Ud).then(|| UdDest {
                dgid: self.hosts[pair.resp.host].gid,
                remote_qpn: pair.resp_qpn,
                remote_qkey: QKEY,
            });
            let wr = SendWr {
                wr_id: pair.oracle.send_wr_id(seq),
                op,
                payload,
                flags: SendFlags {
                    signaled: true,
                    solicited: msg.solicited,
                    fence: msg.fence,
                },
                ud,
            };
            pair.oracle.on_post(&msg, slot);
            let line = self.cfg.trace > 0;
            let desc = if line {
                format!(
                    "post pair {p} message {seq} {:?} {} bytes wr_id {:#x}",
                    msg.kind, msg.len, wr.wr_id
                )
            } else {
                String::new()
            };
            self.log(|| desc);
            let pair = &mut self.pairs[p];
            let must_hit = match pair.silent_from {
                Some(t) => self.now >= t,
                None => pair.starve && msg.kind.consumes_recv(),
            };
            pair.oracle.fault_must_hit |= must_hit && pair.oracle.expected_error.is_some();
            self.last_progress = self.now;
            let (req, qpn) = (pair.req, pair.req_qpn);
            self.enter(req);
            if let Err(e) = self.hosts[req.host].qps[req.idx].qp.post_send(wr) {
                let f = Fail {
                    inv: Invariant::PostAccepted,
                    seq: Some(u64::from(seq)),
                    detail: format!("post_send refused a valid {:?}: {e}", msg.kind),
                };
                return Err(self.fail_on(f, p, qpn));
            }
        }
    }

    /// Post receive WQE `slot` of pair `p` (buffer poisoned first).
    fn post_recv(&mut self, p: usize, slot: usize) -> Result<(), Breach> {
        let pair = &mut self.pairs[p];
        let l = pair.layout;
        let addr = l.rq_slot(slot);
        self.hosts[pair.resp.host]
            .memory
            .poke(l.rq.lkey, addr, l.rslot_len)
            .expect("slot in region")
            .fill(POISON);
        let wr_id = pair.oracle.on_recv_post(slot);
        self.log(|| format!("post_recv pair {p} wr_id {wr_id:#x}"));
        let pair = &mut self.pairs[p];
        let n = pair.gen.rng().random_range(1..=2);
        let sgl = split_sgl(pair.gen.rng(), addr, l.rslot_len, l.rq.lkey, n);
        let (resp, qpn) = (pair.resp, pair.resp_qpn);
        self.enter(resp);
        if let Err(e) = self.hosts[resp.host].qps[resp.idx]
            .qp
            .post_recv(RecvWr { wr_id, sgl })
        {
            let f = Fail {
                inv: Invariant::PostAccepted,
                seq: None,
                detail: format!("post_recv refused a valid receive: {e}"),
            };
            return Err(self.fail_on(f, p, qpn));
        }
        Ok(())
    }

    /// Move every QP to ERR, check the flushes, then the final state.
    fn teardown(&mut self) -> Result<(), Breach> {
        for h in 0..self.hosts.len() {
            for idx in 0..self.hosts[h].qps.len() {
                let loc = Loc { host: h, idx };
                self.enter(loc);
                self.hosts[h].qps[idx].qp.modify(
                    &ModifyQp {
                        state: Some(QpState::Err),
                        ..ModifyQp::default()
                    },
                    self.now,
                );
                while let Some(c) = self.hosts[h].qps[idx].qp.poll_completion() {
                    self.on_completion(loc, c, true)?;
                }
                while self.hosts[h].qps[idx].qp.poll_event().is_some() {}
            }
        }
        for p in 0..self.pairs.len() {
            let pair = &mut self.pairs[p];
            let resp_mem = &self.hosts[pair.resp.host].memory;
            if let Err(f) = pair
                .oracle
                .finish(resp_mem, &pair.layout, self.cfg.messages)
            {
                let qpn = pair.resp_qpn;
                return Err(self.fail_on(f, p, qpn));
            }
        }
        Ok(())
    }

    fn report(&self) -> SimReport {
        let mut c = QpCounters::default();
        for qp in self.hosts.iter().flat_map(|h| h.qps.iter()) {
            let k = qp.qp.counters();
            c.retransmits += k.retransmits;
            c.retransmitted_pkts += k.retransmitted_pkts;
            c.timeouts += k.timeouts;
            c.rcvd_rnr_err += k.rcvd_rnr_err;
            c.rcvd_seq_err += k.rcvd_seq_err;
            c.duplicate_request += k.duplicate_request;
            c.dropped_pkts += k.dropped_pkts;
            c.acks_sent += k.acks_sent;
        }
        let mut transports = BTreeMap::new();
        let (mut messages, mut delivered, mut bytes, mut lost, mut dups, mut ooo) =
            (0, 0, 0, 0, 0, 0);
        for p in &self.pairs {
            let name = match p.qp_type {
                QpType::Rc => "rc",
                QpType::Uc => "uc",
                QpType::Ud => "ud",
            };
            *transports.entry(name.to_string()).or_default() += 1;
            let o = &p.oracle;
            messages += o.posted;
            lost += o.lost;
            dups += o.duplicates;
            ooo += o.out_of_order;
            if p.qp_type == QpType::Rc {
                delivered += o.successes;
                bytes += o.success_bytes;
            } else {
                delivered += o.delivered;
                bytes += o.delivered_bytes;
            }
        }
        let sim_time_ns = self.done_at.unwrap_or(self.now).0;
        let mut packets = PacketReport::from_net(self.net.stats());
        packets.sent = self.packets.sent;
        packets.corrupt_caught = self.packets.corrupt_caught;
        packets.silenced = self.packets.silenced;
        packets.engine_dropped = c.dropped_pkts;
        packets.acks = c.acks_sent;
        SimReport {
            seed: self.cfg.seed,
            qp_pairs: self.pairs.len(),
            transports,
            messages,
            delivered,
            lost_messages: lost,
            duplicates: dups,
            out_of_order: ooo,
            bytes,
            packets,
            retransmissions: c.retransmits,
            retransmitted_packets: c.retransmitted_pkts,
            timeouts: c.timeouts,
            rnr_naks: c.rcvd_rnr_err,
            seq_naks: c.rcvd_seq_err,
            duplicate_requests: c.duplicate_request,
            completions: self.completions.clone(),
            recv_flushed_at_end: self.recv_flushed_at_end,
            retry_exhausted_by_loss: self.retry_exhausted_by_loss,
            sim_time_ns,
            goodput_gbps: if sim_time_ns == 0 {
                0.0
            } else {
                bytes as f64 * 8.0 / sim_time_ns as f64
            },
            events: self.n_events,
        }
    }
}

/// Two distinct elements of a slice, mutably.
fn two_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert_ne!(a, b);
    if a < b {
        let (x, y) = v.split_at_mut(b);
        (&mut x[a], &mut y[0])
    } else {
        let (x, y) = v.split_at_mut(a);
        (&mut y[0], &mut x[b])
    }
}
