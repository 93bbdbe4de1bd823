//! The queue pair: its configuration, attributes, state machine hooks and
//! the public sans-IO interface. The protocol work itself lives in the role
//! modules ([`crate::requester`], [`crate::responder`], [`crate::completer`]).

use std::collections::VecDeque;

use softverbs_wire::{Gid, PacketRepr};

use crate::completer::CompleterState;
use crate::counters::QpCounters;
use crate::memory::{Access, Memory};
use crate::recv::RecvQueue;
use crate::requester::{RequesterState, SendWqe};
use crate::responder::ResponderState;
use crate::time::Instant;
use crate::wc::{Completion, WcOpcode, WcQueue, WcStatus};
use crate::wr::{RecvWr, SendWr};

/// Room a transmit buffer needs beyond the path MTU: BTH, the largest
/// extension-header combination, pad and ICRC.
pub const MAX_HEADER_LEN: usize = 64;

/// The transport service of a QP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum QpType {
    /// Reliable Connected.
    Rc,
    /// Unreliable Connected.
    Uc,
    /// Unreliable Datagram.
    Ud,
}

/// QP states (IBTA 10.3.1, `ibv_qp_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize)]
pub enum QpState {
    /// Just created or reset: nothing flows.
    #[default]
    Reset,
    /// Initialised: receives may be posted, nothing flows.
    Init,
    /// Ready to receive.
    Rtr,
    /// Ready to send.
    Rts,
    /// Send queue drain: in-progress messages finish, no new ones start.
    Sqd,
    /// Send queue error (UC/UD): sends flushed, receives go on.
    Sqe,
    /// Error: everything flushed, nothing flows.
    Err,
}

/// Path MTU (`ibv_mtu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize)]
pub enum Mtu {
    /// 256 bytes.
    Mtu256 = 1,
    /// 512 bytes.
    Mtu512 = 2,
    /// 1024 bytes.
    #[default]
    Mtu1024 = 3,
    /// 2048 bytes.
    Mtu2048 = 4,
    /// 4096 bytes.
    Mtu4096 = 5,
}

impl Mtu {
    /// The MTU in bytes.
    pub fn bytes(self) -> usize {
        128 << (self as u32)
    }

    /// From the `ibv_mtu` enum value (1..=5).
    pub fn from_enum(v: u32) -> Option<Mtu> {
        Some(match v {
            1 => Mtu::Mtu256,
            2 => Mtu::Mtu512,
            3 => Mtu::Mtu1024,
            4 => Mtu::Mtu2048,
            5 => Mtu::Mtu4096,
            _ => return None,
        })
    }

    /// From a size in bytes (256, 512, 1024, 2048, 4096).
    pub fn from_bytes(b: usize) -> Option<Mtu> {
        [
            Mtu::Mtu256,
            Mtu::Mtu512,
            Mtu::Mtu1024,
            Mtu::Mtu2048,
            Mtu::Mtu4096,
        ]
        .into_iter()
        .find(|m| m.bytes() == b)
    }
}

/// What is fixed when the QP is created (`ibv_qp_init_attr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QpConfig {
    /// Transport service.
    pub qp_type: QpType,
    /// This QP's number.
    pub qpn: u32,
    /// Signal every send completion, whatever the WR says.
    pub sq_sig_all: bool,
    /// Send queue depth.
    pub max_send_wr: usize,
    /// Receive queue depth (ignored with an SRQ).
    pub max_recv_wr: usize,
    /// Receives come from an SRQ passed in [`Ctx`] instead of an own queue.
    pub use_srq: bool,
}

impl QpConfig {
    /// Defaults: 256-deep queues, no SRQ, completions only when asked.
    pub fn new(qp_type: QpType, qpn: u32) -> Self {
        QpConfig {
            qp_type,
            qpn,
            sq_sig_all: false,
            max_send_wr: 256,
            max_recv_wr: 256,
            use_srq: false,
        }
    }
}

/// The modifiable attributes of a QP (`ibv_qp_attr`), as currently set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QpAttrs {
    /// Path MTU.
    pub path_mtu: Mtu,
    /// Q_Key (UD).
    pub qkey: u32,
    /// Connected QPs: the remote QPN.
    pub dest_qpn: u32,
    /// Connected QPs: the remote GID.
    #[serde(skip)]
    pub dgid: Gid,
    /// Expected PSN of the next incoming request.
    pub rq_psn: u32,
    /// PSN of the next request sent.
    pub sq_psn: u32,
    /// Local ACK timeout exponent (4.096 µs × 2^timeout; 0 = infinite).
    pub timeout: u8,
    /// Transport retries (0–7).
    pub retry_cnt: u8,
    /// RNR retries (0–7; 7 = infinite).
    pub rnr_retry: u8,
    /// RNR NAK timer code this QP sends as a responder.
    pub min_rnr_timer: u8,
    /// Outstanding READ/atomic requests this QP may have as a requester.
    pub max_rd_atomic: u8,
    /// Outstanding READ/atomic requests this QP accepts as a responder.
    pub max_dest_rd_atomic: u8,
    /// Remote operations the QP accepts (`qp_access_flags`).
    pub access: Access,
    /// P_Key this QP uses and accepts.
    pub pkey: u16,
}

impl Default for QpAttrs {
    fn default() -> Self {
        QpAttrs {
            path_mtu: Mtu::Mtu1024,
            qkey: 0,
            dest_qpn: 0,
            dgid: Gid::default(),
            rq_psn: 0,
            sq_psn: 0,
            timeout: 14,
            retry_cnt: 7,
            rnr_retry: 7,
            min_rnr_timer: 12,
            max_rd_atomic: 1,
            max_dest_rd_atomic: 1,
            access: Access::NONE,
            pkey: softverbs_wire::DEFAULT_PKEY,
        }
    }
}

/// A change of attributes (`ibv_modify_qp` with its mask: `None` = not in the
/// mask). The core validates the IBTA transition rules before the engine sees
/// it; the engine applies what it is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ModifyQp {
    pub state: Option<QpState>,
    pub path_mtu: Option<Mtu>,
    pub qkey: Option<u32>,
    pub dest_qpn: Option<u32>,
    pub dgid: Option<Gid>,
    pub rq_psn: Option<u32>,
    pub sq_psn: Option<u32>,
    pub timeout: Option<u8>,
    pub retry_cnt: Option<u8>,
    pub rnr_retry: Option<u8>,
    pub min_rnr_timer: Option<u8>,
    pub max_rd_atomic: Option<u8>,
    pub max_dest_rd_atomic: Option<u8>,
    pub access: Option<Access>,
    pub pkey: Option<u16>,
}

/// Asynchronous events a QP raises (`ibv_event_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum QpEvent {
    /// The first packet arrived while in RTR (`IBV_EVENT_COMM_EST`).
    CommEstablished,
    /// The QP moved itself to the error state (`IBV_EVENT_QP_FATAL`).
    Fatal,
    /// The send queue drained in SQD (`IBV_EVENT_SQ_DRAINED`).
    SqDrained,
    /// An SRQ-attached QP in error has no more WQEs to flush
    /// (`IBV_EVENT_QP_LAST_WQE_REACHED`).
    LastWqeReached,
}

/// Why a post was refused. Nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PostError {
    /// The queue is full.
    QueueFull,
    /// Posting is not allowed in this state (RESET; sends before RTS).
    InvalidState(QpState),
    /// The request does not fit this QP (wrong operation for the type,
    /// missing UD destination, message longer than the path MTU on UD …).
    Invalid(&'static str),
}

impl core::fmt::Display for PostError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PostError::QueueFull => {
                f.write_str("the work queue is full: poll completions before posting more")
            }
            PostError::InvalidState(s) => write!(
                f,
                "cannot post in state {s:?}: move the QP to the right state first"
            ),
            PostError::Invalid(why) => write!(f, "invalid work request: {why}"),
        }
    }
}

impl std::error::Error for PostError {}

/// What the engine needs from its device on each call: the memory of the
/// QP's protection domain and, when the QP uses one, its SRQ.
pub struct Ctx<'a> {
    /// Memory, checked by key.
    pub mem: &'a mut dyn Memory,
    /// The SRQ, for QPs created with `use_srq`.
    pub srq: Option<&'a mut RecvQueue>,
}

impl<'a> Ctx<'a> {
    /// A context with memory and no SRQ.
    pub fn new(mem: &'a mut dyn Memory) -> Self {
        Ctx { mem, srq: None }
    }

    /// A context with memory and an SRQ.
    pub fn with_srq(mem: &'a mut dyn Memory, srq: &'a mut RecvQueue) -> Self {
        Ctx {
            mem,
            srq: Some(srq),
        }
    }
}

/// A received packet, already ICRC-checked and parsed by the device.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The parsed headers.
    pub repr: &'a PacketRepr,
    /// The payload, without pad.
    pub payload: &'a [u8],
    /// The sender's GID.
    pub src: Gid,
    /// The 40 bytes UD puts at the head of a receive buffer: the GRH, or for
    /// RoCEv2 over IPv4 20 zero bytes then the IPv4 header (as rxe does).
    pub network_header: &'a [u8; 40],
}

/// One packet to send, written into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Where it goes.
    pub dst: Gid,
    /// The UDP source port (rxe's flow hash: fixed per QP pair / per UD QP).
    pub src_port: u16,
    /// Bytes written, ICRC space included (the I/O layer seals it).
    pub len: usize,
}

/// One queue pair's transport engine.
#[derive(Debug)]
pub struct Qp {
    pub(crate) cfg: QpConfig,
    pub(crate) attrs: QpAttrs,
    pub(crate) state: QpState,
    pub(crate) rq: RecvQueue,
    pub(crate) req: RequesterState,
    pub(crate) comp: CompleterState,
    pub(crate) resp: ResponderState,
    pub(crate) completions: VecDeque<Completion>,
    pub(crate) events: VecDeque<QpEvent>,
    pub(crate) counters: QpCounters,
}

impl Qp {
    /// A new QP in the RESET state.
    pub fn new(cfg: QpConfig) -> Self {
        let rq = RecvQueue::new(if cfg.use_srq { 0 } else { cfg.max_recv_wr });
        Qp {
            attrs: QpAttrs::default(),
            state: QpState::Reset,
            rq,
            req: RequesterState::default(),
            comp: CompleterState::default(),
            resp: ResponderState::default(),
            completions: VecDeque::new(),
            events: VecDeque::new(),
            counters: QpCounters::default(),
            cfg,
        }
    }

    /// The QP number.
    pub fn qpn(&self) -> u32 {
        self.cfg.qpn
    }

    /// The transport service.
    pub fn qp_type(&self) -> QpType {
        self.cfg.qp_type
    }

    /// The configuration fixed at creation.
    pub fn config(&self) -> &QpConfig {
        &self.cfg
    }

    /// The current state.
    pub fn state(&self) -> QpState {
        self.state
    }

    /// The current attributes (`ibv_query_qp`). `sq_psn` and `rq_psn` are
    /// the live values.
    pub fn attrs(&self) -> QpAttrs {
        let mut a = self.attrs;
        a.sq_psn = self.req.psn;
        a.rq_psn = self.resp.epsn;
        a
    }

    /// Counters.
    pub fn counters(&self) -> &QpCounters {
        &self.counters
    }

    /// Outstanding send WQEs (posted, not yet completed).
    pub fn send_queue_len(&self) -> usize {
        self.req.sq.len()
    }

    /// Outstanding receive WQEs on the QP's own receive queue.
    pub fn recv_queue_len(&self) -> usize {
        self.rq.len()
    }

    /// Apply a validated attribute change. Moving to ERR flushes every
    /// outstanding WQE with `WR_FLUSH_ERR`; moving to RESET forgets them.
    pub fn modify(&mut self, m: &ModifyQp, now: Instant) {
        let a = &mut self.attrs;
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = m.$f { a.$f = v; } )* };
        }
        set!(
            path_mtu,
            qkey,
            dest_qpn,
            dgid,
            timeout,
            retry_cnt,
            rnr_retry,
            min_rnr_timer,
            max_rd_atomic,
            max_dest_rd_atomic,
            access,
            pkey
        );
        if let Some(psn) = m.rq_psn {
            a.rq_psn = psn & softverbs_wire::psn::PSN_MASK;
            self.resp.epsn = a.rq_psn;
        }
        if let Some(psn) = m.sq_psn {
            a.sq_psn = psn & softverbs_wire::psn::PSN_MASK;
            self.req.reset_psn(a.sq_psn);
            self.comp.reset(a.sq_psn);
        }
        if m.retry_cnt.is_some() || m.rnr_retry.is_some() {
            self.comp.reload_retries(&self.attrs);
        }
        if let Some(state) = m.state {
            self.enter_state(state, now);
        }
    }

    pub(crate) fn enter_state(&mut self, state: QpState, _now: Instant) {
        let old = self.state;
        self.state = state;
        match state {
            QpState::Reset => {
                let cfg = self.cfg.clone();
                *self = Qp::new(cfg);
            }
            QpState::Err if old != QpState::Err => self.flush_all(),
            QpState::Sqe => self.flush_send_queue(),
            QpState::Rts if old == QpState::Rtr => self.comp.reload_retries(&self.attrs),
            _ => {}
        }
    }

    /// Move to ERR on our own (a transport error), raising `QP_FATAL`.
    pub(crate) fn fail(&mut self) {
        if self.state != QpState::Err {
            self.enter_state(QpState::Err, Instant::ZERO);
            self.events.push_back(QpEvent::Fatal);
        }
    }

    fn flush_all(&mut self) {
        self.flush_send_queue();
        let qpn = self.cfg.qpn;
        // The WQE of a message in progress is the oldest: flush it first.
        let current = self.resp.take_current_wqe();
        for wr in current.into_iter().chain(self.rq.drain()) {
            let c = Completion::new(
                wr.wr_id,
                WcStatus::WrFlushErr,
                WcOpcode::Recv,
                WcQueue::Recv,
                qpn,
            );
            self.completions.push_back(c);
        }
        if self.cfg.use_srq {
            self.events.push_back(QpEvent::LastWqeReached);
        }
        self.resp.clear();
        self.comp.stop_timers();
    }

    fn flush_send_queue(&mut self) {
        let qpn = self.cfg.qpn;
        for wqe in self.req.sq.drain(..) {
            let status = wqe.status.unwrap_or(WcStatus::WrFlushErr);
            self.completions.push_back(Completion::new(
                wqe.wr.wr_id,
                status,
                wqe.wc_opcode(),
                WcQueue::Send,
                qpn,
            ));
        }
        self.req.clear_progress();
    }

    /// Queue a send work request. In ERR it completes at once with
    /// `WR_FLUSH_ERR`, as IBTA requires.
    pub fn post_send(&mut self, wr: SendWr) -> Result<(), PostError> {
        match self.state {
            QpState::Reset | QpState::Init | QpState::Rtr => {
                return Err(PostError::InvalidState(self.state))
            }
            _ => {}
        }
        if self.req.sq.len() >= self.cfg.max_send_wr {
            return Err(PostError::QueueFull);
        }
        self.check_send_wr(&wr)?;
        if matches!(self.state, QpState::Err | QpState::Sqe) {
            let op = SendWqe::opcode_of(&wr.op);
            self.completions.push_back(Completion::new(
                wr.wr_id,
                WcStatus::WrFlushErr,
                op,
                WcQueue::Send,
                self.cfg.qpn,
            ));
            return Ok(());
        }
        self.req.sq.push_back(SendWqe::new(wr));
        Ok(())
    }

    fn check_send_wr(&self, wr: &SendWr) -> Result<(), PostError> {
        use crate::wr::SendOp::*;
        match (self.cfg.qp_type, &wr.op) {
            (QpType::Ud, Send | SendWithImm { .. }) => {
                if wr.ud.is_none() {
                    return Err(PostError::Invalid(
                        "a UD send needs a destination (address handle, remote QPN, Q_Key)",
                    ));
                }
                if wr.payload.len() > self.attrs.path_mtu.bytes() as u64 {
                    return Err(PostError::Invalid("a UD message must fit in one path MTU"));
                }
            }
            (QpType::Ud, _) => return Err(PostError::Invalid("UD QPs only SEND")),
            (
                QpType::Uc,
                Send
                | SendWithImm { .. }
                | Write { .. }
                | WriteWithImm { .. }
                | LocalInv { .. }
                | BindMw { .. },
            ) => {}
            (QpType::Uc, _) => {
                return Err(PostError::Invalid(
                    "UC QPs support SEND, RDMA WRITE, LOCAL_INV and BIND_MW only",
                ))
            }
            (QpType::Rc, CompareSwap { .. } | FetchAdd { .. }) => {
                if wr.payload.len() != 8 {
                    return Err(PostError::Invalid(
                        "an atomic needs exactly one 8-byte local buffer",
                    ));
                }
            }
            (QpType::Rc, _) => {}
        }
        if wr.op.is_local() && !wr.payload.is_empty() {
            return Err(PostError::Invalid(
                "LOCAL_INV and BIND_MW carry no data: give them no SGEs",
            ));
        }
        if wr.payload.len() > u64::from(u32::MAX) {
            return Err(PostError::Invalid("a message is at most 2^32 - 1 bytes"));
        }
        Ok(())
    }

    /// Queue a receive work request on the QP's own receive queue.
    pub fn post_recv(&mut self, wr: RecvWr) -> Result<(), PostError> {
        if self.cfg.use_srq {
            return Err(PostError::Invalid(
                "this QP receives from an SRQ: post to the SRQ",
            ));
        }
        if self.state == QpState::Reset {
            return Err(PostError::InvalidState(self.state));
        }
        if self.state == QpState::Err {
            self.completions.push_back(Completion::new(
                wr.wr_id,
                WcStatus::WrFlushErr,
                WcOpcode::Recv,
                WcQueue::Recv,
                self.cfg.qpn,
            ));
            return Ok(());
        }
        self.rq.push(wr).map_err(|_| PostError::QueueFull)
    }

    /// Handle a packet addressed to this QP. Afterwards poll transmits (an
    /// ACK, NAK or response may be due), completions and events.
    pub fn handle_packet(&mut self, now: Instant, pkt: &Incoming<'_>, ctx: &mut Ctx<'_>) {
        self.counters.rcvd_pkts += 1;
        let ok_state = matches!(
            self.state,
            QpState::Rtr | QpState::Rts | QpState::Sqd | QpState::Sqe
        );
        if !ok_state
            || pkt.repr.bth.pkey != self.attrs.pkey
                && pkt.repr.bth.pkey & 0x7fff != self.attrs.pkey & 0x7fff
        {
            self.counters.dropped_pkts += 1;
            return;
        }
        if pkt.repr.bth.opcode.is_response() {
            if self.cfg.qp_type == QpType::Rc {
                self.complete_on_response(now, pkt, ctx);
            } else {
                self.counters.dropped_pkts += 1;
            }
        } else {
            if self.state == QpState::Rtr && !self.resp.established {
                self.events.push_back(QpEvent::CommEstablished);
            }
            self.resp.established = true;
            self.respond(now, pkt, ctx);
        }
    }

    /// Handle the expiry of the timer [`Qp::poll_timeout`] gave. A spurious
    /// or early call is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.cfg.qp_type == QpType::Rc {
            self.completer_timeout(now);
        }
    }

    /// When to call [`Qp::handle_timeout`] next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.cfg.qp_type != QpType::Rc || self.state == QpState::Err {
            return None;
        }
        self.comp.next_timeout()
    }

    /// Write the next packet to send into `buf` (at least path MTU +
    /// [`MAX_HEADER_LEN`] bytes), ICRC bytes zeroed. Responses (ACKs, READ
    /// responses) go before new requests. Call until `None` after every input.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        ctx: &mut Ctx<'_>,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        if buf.len() < self.attrs.path_mtu.bytes() + MAX_HEADER_LEN {
            return None;
        }
        let t = match self.respond_transmit(now, ctx, buf) {
            Some(t) => Some(t),
            None => self.request_transmit(now, ctx, buf),
        };
        if t.is_some() {
            self.counters.sent_pkts += 1;
        }
        t
    }

    /// The next work completion, if any.
    pub fn poll_completion(&mut self) -> Option<Completion> {
        let c = self.completions.pop_front()?;
        if c.status != WcStatus::Success && c.status != WcStatus::WrFlushErr {
            self.counters.completion_errors += 1;
        }
        Some(c)
    }

    /// The next asynchronous event, if any.
    pub fn poll_event(&mut self) -> Option<QpEvent> {
        self.events.pop_front()
    }

    /// The UDP source port for packets of this QP (rxe's flow hash).
    pub(crate) fn src_port(&self) -> u16 {
        match self.cfg.qp_type {
            QpType::Ud => softverbs_wire::ip::ud_udp_src_port(self.cfg.qpn),
            _ => softverbs_wire::ip::rc_udp_src_port(self.cfg.qpn, self.attrs.dest_qpn),
        }
    }

    /// Record a receive completion.
    pub(crate) fn push_completion(&mut self, c: Completion) {
        self.completions.push_back(c);
    }

    /// Receive WQE source: the SRQ when attached, else the own queue.
    pub(crate) fn take_recv_wqe(&mut self, ctx: &mut Ctx<'_>) -> Option<RecvWr> {
        if self.cfg.use_srq {
            ctx.srq.as_deref_mut()?.pop()
        } else {
            self.rq.pop()
        }
    }
}
