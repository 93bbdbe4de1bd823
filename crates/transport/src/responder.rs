//! The responder: executes incoming requests and answers them (the role of
//! `rxe_resp.c`). For RC it checks the PSN (sequence-error NAK once per gap,
//! re-acknowledging duplicates, re-executing duplicate READs and replaying
//! atomics from a cache), the opcode sequence, lengths, keys and rights
//! (NAKs with the IBTA codes), sends RNR NAKs when no receive WQE is posted,
//! and coalesces ACKs. UC drops whole messages on a gap; UD checks the Q_Key
//! and puts the 40-byte network header before the payload.

use std::collections::VecDeque;

use softverbs_wire::psn::{psn_add, psn_diff};
use softverbs_wire::{
    AckSyndrome, AethRepr, AtomicAckEthRepr, BthRepr, NakCode, OpKind, Opcode, OpcodeInfo,
    PacketRepr, Position, TransportKind,
};

use crate::memory::{Access, AtomicOp, MemError, MemKey};
use crate::qp::{Ctx, Incoming, Qp, QpState, QpType, Transmit};
use crate::requester::packets_for;
use crate::sgl;
use crate::time::Instant;
use crate::wc::{Completion, WcOpcode, WcQueue, WcStatus};
use crate::wr::RecvWr;

/// Atomic results kept for replaying duplicate atomic requests.
const ATOMIC_REPLAY_DEPTH: usize = 16;

/// A message that spans several packets and is still arriving.
#[derive(Debug)]
enum OpenMsg {
    Send {
        wqe: RecvWr,
        offset: u64,
    },
    Write {
        va: u64,
        rkey: u32,
        dma_len: u32,
        offset: u64,
    },
}

/// An RDMA READ being answered.
#[derive(Debug, Clone, Copy)]
struct ReadResp {
    va: u64,
    rkey: u32,
    len: u64,
    /// PSN of the first response packet (the request's PSN).
    psn0: u32,
    /// Bytes already sent.
    sent: u64,
    msn: u32,
}

impl ReadResp {
    fn npkts(&self, mtu: usize) -> u32 {
        packets_for(self.len, mtu)
    }
}

/// Something the responder has to send, in PSN order.
#[derive(Debug, Clone, Copy)]
enum RespOut {
    Ack {
        psn: u32,
        syndrome: AckSyndrome,
        msn: u32,
    },
    Read(ReadResp),
    Atomic {
        psn: u32,
        orig: u64,
        msn: u32,
    },
}

#[derive(Debug, Clone, Copy)]
struct AtomicReplay {
    psn: u32,
    orig: u64,
    msn: u32,
}

/// The responder's share of QP state.
#[derive(Debug, Default)]
pub(crate) struct ResponderState {
    /// Expected PSN of the next request.
    pub epsn: u32,
    /// Message sequence number: messages completed.
    pub msn: u32,
    /// A packet has arrived since RTR.
    pub established: bool,
    /// A sequence-error NAK was sent for the current gap.
    nak_sent: bool,
    open: Option<OpenMsg>,
    /// UC: the receive WQE of an abandoned message, used for the next one.
    spare: Option<RecvWr>,
    out: VecDeque<RespOut>,
    atomics: VecDeque<AtomicReplay>,
}

impl ResponderState {
    /// The receive WQE held by a message in progress, for flushing.
    pub fn take_current_wqe(&mut self) -> Option<RecvWr> {
        match self.open.take() {
            Some(OpenMsg::Send { wqe, .. }) => Some(wqe),
            _ => self.spare.take(),
        }
    }

    pub fn clear(&mut self) {
        self.open = None;
        self.spare = None;
        self.out.clear();
        self.atomics.clear();
    }

    fn push_ack(&mut self, psn: u32, msn: u32) {
        if let Some(RespOut::Ack {
            psn: p,
            syndrome: AckSyndrome::Ack { .. },
            msn: m,
        }) = self.out.back_mut()
        {
            *p = psn; // coalesce: one cumulative ACK answers the burst
            *m = msn;
            return;
        }
        self.out.push_back(RespOut::Ack {
            psn,
            syndrome: AckSyndrome::Ack { credit: 0x1f },
            msn,
        });
    }

    fn push_nak(&mut self, psn: u32, syndrome: AckSyndrome) {
        self.out.push_back(RespOut::Ack {
            psn,
            syndrome,
            msn: self.msn,
        });
    }

    fn active_reads(&self) -> usize {
        self.out
            .iter()
            .filter(|o| matches!(o, RespOut::Read(_)))
            .count()
    }
}

/// How executing one in-order request packet went.
enum Outcome {
    /// Done; the request used this many PSNs.
    Done(u32),
    /// No receive WQE: RNR NAK (RC) or drop the message (UC).
    NotReady,
    /// The request failed: NAK with `nak` (RC), and complete the receive WQE
    /// with `recv_status` if one was taken.
    Fail {
        nak: NakCode,
        recv_status: Option<WcStatus>,
    },
}

fn nak_for(e: MemError) -> NakCode {
    match e {
        MemError::Misaligned => NakCode::InvalidRequest,
        _ => NakCode::RemoteAccessError,
    }
}

impl Qp {
    /// Handle an incoming request packet.
    pub(crate) fn respond(&mut self, _now: Instant, pkt: &Incoming<'_>, ctx: &mut Ctx<'_>) {
        let Ok(info) = pkt.repr.bth.opcode.info() else {
            return self.drop_request();
        };
        let want = match self.cfg.qp_type {
            QpType::Rc => TransportKind::Rc,
            QpType::Uc => TransportKind::Uc,
            QpType::Ud => TransportKind::Ud,
        };
        if info.transport != want {
            return self.drop_request();
        }
        match self.cfg.qp_type {
            QpType::Rc => self.respond_rc(pkt, info, ctx),
            QpType::Uc => self.respond_uc(pkt, info, ctx),
            QpType::Ud => self.respond_ud(pkt, ctx),
        }
    }

    fn drop_request(&mut self) {
        self.counters.dropped_pkts += 1;
    }

    fn respond_rc(&mut self, pkt: &Incoming<'_>, info: &OpcodeInfo, ctx: &mut Ctx<'_>) {
        let psn = pkt.repr.bth.psn;
        let d = psn_diff(psn, self.resp.epsn);
        if d > 0 {
            self.counters.out_of_seq_request += 1;
            if !self.resp.nak_sent {
                self.resp.nak_sent = true;
                let epsn = self.resp.epsn;
                self.resp
                    .push_nak(epsn, AckSyndrome::Nak(NakCode::PsnSequenceError));
            }
            return;
        }
        if d < 0 {
            self.counters.duplicate_request += 1;
            return self.respond_duplicate(pkt, info, ctx);
        }
        match self.execute(pkt, info, ctx) {
            Outcome::Done(npsn) => {
                self.resp.epsn = psn_add(psn, npsn);
                self.resp.nak_sent = false;
                if pkt.repr.bth.ack_req && matches!(info.kind, OpKind::Send | OpKind::Write) {
                    let msn = self.resp.msn;
                    self.resp.push_ack(psn, msn);
                }
            }
            Outcome::NotReady => {
                self.counters.send_rnr_err += 1;
                let timer = self.attrs.min_rnr_timer;
                self.resp.push_nak(psn, AckSyndrome::RnrNak { timer });
            }
            Outcome::Fail { nak, recv_status } => {
                self.complete_recv_error(recv_status);
                // The NAK outlives the flush: queue it after entering ERR.
                self.fail();
                self.resp.push_nak(psn, AckSyndrome::Nak(nak));
            }
        }
    }

    fn complete_recv_error(&mut self, status: Option<WcStatus>) {
        let Some(status) = status else { return };
        if let Some(wqe) = self.resp.take_current_wqe() {
            let c = Completion::new(
                wqe.wr_id,
                status,
                WcOpcode::Recv,
                WcQueue::Recv,
                self.cfg.qpn,
            );
            self.push_completion(c);
        }
    }

    /// A request with a PSN already executed (C9-103 .. C9-110).
    fn respond_duplicate(&mut self, pkt: &Incoming<'_>, info: &OpcodeInfo, ctx: &mut Ctx<'_>) {
        let psn = pkt.repr.bth.psn;
        match info.kind {
            OpKind::Send | OpKind::Write => {
                // Acknowledge again: everything up to the last executed PSN.
                let (last, msn) = (
                    psn_add(self.resp.epsn, softverbs_wire::psn::PSN_MASK),
                    self.resp.msn,
                );
                self.resp.push_ack(last, msn);
            }
            OpKind::ReadRequest => {
                // Re-execute from the duplicate's own RETH (a retried READ
                // asks only for what is missing).
                let Some(reth) = pkt.repr.reth else { return };
                let len = u64::from(reth.dma_len);
                if len > 0
                    && ctx
                        .mem
                        .check(MemKey::Remote(reth.rkey), reth.va, len, false)
                        .is_err()
                {
                    return;
                }
                let mtu = self.attrs.path_mtu.bytes();
                let read = ReadResp {
                    va: reth.va,
                    rkey: reth.rkey,
                    len,
                    psn0: psn,
                    sent: 0,
                    msn: self.resp.msn,
                };
                let existing = self.resp.out.iter_mut().find_map(|o| match o {
                    RespOut::Read(r)
                        if psn_diff(psn, r.psn0) >= 0
                            && psn_diff(psn, r.psn0) < r.npkts(mtu) as i32 =>
                    {
                        Some(r)
                    }
                    _ => None,
                });
                match existing {
                    Some(r) => *r = read,
                    None => self.resp.out.push_back(RespOut::Read(read)),
                }
            }
            OpKind::CompareSwap | OpKind::FetchAdd => {
                if let Some(a) = self.resp.atomics.iter().find(|a| a.psn == psn).copied() {
                    self.resp.out.push_back(RespOut::Atomic {
                        psn: a.psn,
                        orig: a.orig,
                        msn: a.msn,
                    });
                }
            }
            _ => {}
        }
    }

    /// Execute an in-order request packet (RC and UC).
    fn execute(&mut self, pkt: &Incoming<'_>, info: &OpcodeInfo, ctx: &mut Ctx<'_>) -> Outcome {
        let invalid = Outcome::Fail {
            nak: NakCode::InvalidRequest,
            recv_status: None,
        };
        let mtu = self.attrs.path_mtu.bytes();
        let len = pkt.payload.len();
        let continuing = matches!(info.position, Position::Middle | Position::Last);
        // The opcode sequence: a middle or last packet continues the open
        // message of the same kind; a first or only packet starts a new one.
        let open_kind_ok = match (&self.resp.open, info.kind) {
            (None, _) => !continuing,
            (Some(OpenMsg::Send { .. }), OpKind::Send)
            | (Some(OpenMsg::Write { .. }), OpKind::Write) => continuing,
            _ => false,
        };
        if !open_kind_ok {
            return invalid;
        }
        let len_ok = match info.position {
            Position::First | Position::Middle => len == mtu,
            Position::Last => (1..=mtu).contains(&len),
            Position::Only => len <= mtu,
        };
        if !len_ok {
            return invalid;
        }
        match info.kind {
            OpKind::Send => self.execute_send(pkt, info, ctx),
            OpKind::Write => self.execute_write(pkt, info, ctx),
            OpKind::ReadRequest => self.execute_read(pkt, ctx),
            OpKind::CompareSwap | OpKind::FetchAdd => self.execute_atomic(pkt, info, ctx),
            _ => invalid,
        }
    }

    fn execute_send(
        &mut self,
        pkt: &Incoming<'_>,
        info: &OpcodeInfo,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let (wqe, offset) = match self.resp.open.take() {
            Some(OpenMsg::Send { wqe, offset }) => (wqe, offset),
            _ => match self.resp.spare.take().or_else(|| self.take_recv_wqe(ctx)) {
                Some(wqe) => (wqe, 0),
                None => return Outcome::NotReady,
            },
        };
        if let Err(e) = sgl::scatter(ctx.mem, &wqe.sgl, offset, pkt.payload) {
            // A message longer than the receive WQE is a length error; a
            // WQE whose SGEs the memory refuses (key, bounds within the
            // region, rights) is malformed: rxe's RESPST_ERR_LENGTH vs
            // RESPST_ERR_MALFORMED_WQE (NAK remote operational error).
            let room: u64 = wqe.sgl.iter().map(|s| u64::from(s.length)).sum();
            let too_long = offset.saturating_add(pkt.payload.len() as u64) > room;
            let (nak, status) = match e {
                MemError::OutOfBounds if too_long => (NakCode::InvalidRequest, WcStatus::LocLenErr),
                _ => (NakCode::RemoteOperationalError, WcStatus::LocProtErr),
            };
            self.resp.open = Some(OpenMsg::Send { wqe, offset });
            return Outcome::Fail {
                nak,
                recv_status: Some(status),
            };
        }
        let offset = offset + pkt.payload.len() as u64;
        if !matches!(info.position, Position::Last | Position::Only) {
            self.resp.open = Some(OpenMsg::Send { wqe, offset });
            return Outcome::Done(1);
        }
        let mut c = Completion::new(
            wqe.wr_id,
            WcStatus::Success,
            WcOpcode::Recv,
            WcQueue::Recv,
            self.cfg.qpn,
        );
        c.byte_len = u32::try_from(offset).unwrap_or(u32::MAX);
        c.imm = pkt.repr.immdt;
        c.solicited = pkt.repr.bth.solicited;
        if let Some(rkey) = pkt.repr.ieth {
            if ctx.mem.invalidate(rkey).is_err() {
                self.resp.open = Some(OpenMsg::Send { wqe, offset });
                return Outcome::Fail {
                    nak: NakCode::InvalidRequest,
                    recv_status: Some(WcStatus::LocProtErr),
                };
            }
            c.invalidated_rkey = Some(rkey);
        }
        self.push_completion(c);
        self.resp.msn = (self.resp.msn + 1) & softverbs_wire::psn::PSN_MASK;
        Outcome::Done(1)
    }

    fn execute_write(
        &mut self,
        pkt: &Incoming<'_>,
        info: &OpcodeInfo,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        if !self.attrs.access.contains(Access::REMOTE_WRITE) {
            return Outcome::Fail {
                nak: NakCode::InvalidRequest,
                recv_status: None,
            };
        }
        let (va, rkey, dma_len, offset) = match (self.resp.open.take(), pkt.repr.reth) {
            (
                Some(OpenMsg::Write {
                    va,
                    rkey,
                    dma_len,
                    offset,
                }),
                _,
            ) => (va, rkey, dma_len, offset),
            (_, Some(reth)) => {
                let check = ctx.mem.check(
                    MemKey::Remote(reth.rkey),
                    reth.va,
                    u64::from(reth.dma_len),
                    true,
                );
                if reth.dma_len > 0 && check.is_err() {
                    return Outcome::Fail {
                        nak: NakCode::RemoteAccessError,
                        recv_status: None,
                    };
                }
                (reth.va, reth.rkey, reth.dma_len, 0)
            }
            _ => {
                return Outcome::Fail {
                    nak: NakCode::InvalidRequest,
                    recv_status: None,
                }
            }
        };
        // An RNR NAK on a LAST packet keeps the message open for the retry;
        // after an ONLY packet there is nothing to keep.
        let reopen = |this: &mut Qp| {
            if matches!(info.position, Position::Last) {
                this.resp.open = Some(OpenMsg::Write {
                    va,
                    rkey,
                    dma_len,
                    offset,
                });
            }
        };
        let len = pkt.payload.len() as u64;
        let end = offset + len;
        let last = matches!(info.position, Position::Last | Position::Only);
        if end > u64::from(dma_len) || (last && end != u64::from(dma_len)) {
            return Outcome::Fail {
                nak: NakCode::InvalidRequest,
                recv_status: None,
            };
        }
        // WRITE with immediate consumes a receive WQE: find it before
        // touching memory, so an RNR NAK leaves nothing half done.
        let wqe = if last && pkt.repr.immdt.is_some() {
            match self.resp.spare.take().or_else(|| self.take_recv_wqe(ctx)) {
                Some(w) => Some(w),
                None => {
                    reopen(self);
                    return Outcome::NotReady;
                }
            }
        } else {
            None
        };
        if len > 0 {
            if let Err(e) =
                ctx.mem
                    .write(MemKey::Remote(rkey), va.wrapping_add(offset), pkt.payload)
            {
                // Keep the receive WQE: a flush (RC) or the next message (UC) uses it.
                self.resp.spare = wqe.or(self.resp.spare.take());
                return Outcome::Fail {
                    nak: nak_for(e),
                    recv_status: None,
                };
            }
        }
        if !last {
            self.resp.open = Some(OpenMsg::Write {
                va,
                rkey,
                dma_len,
                offset: end,
            });
            return Outcome::Done(1);
        }
        if let Some(wqe) = wqe {
            let mut c = Completion::new(
                wqe.wr_id,
                WcStatus::Success,
                WcOpcode::RecvRdmaWithImm,
                WcQueue::Recv,
                self.cfg.qpn,
            );
            c.byte_len = dma_len;
            c.imm = pkt.repr.immdt;
            c.solicited = pkt.repr.bth.solicited;
            self.push_completion(c);
        }
        self.resp.msn = (self.resp.msn + 1) & softverbs_wire::psn::PSN_MASK;
        Outcome::Done(1)
    }

    fn execute_read(&mut self, pkt: &Incoming<'_>, ctx: &mut Ctx<'_>) -> Outcome {
        let invalid = Outcome::Fail {
            nak: NakCode::InvalidRequest,
            recv_status: None,
        };
        let Some(reth) = pkt.repr.reth else {
            return invalid;
        };
        if !self.attrs.access.contains(Access::REMOTE_READ) {
            return invalid;
        }
        if self.resp.active_reads() >= usize::from(self.attrs.max_dest_rd_atomic.max(1)) {
            return invalid;
        }
        let len = u64::from(reth.dma_len);
        if len > 0 {
            if let Err(e) = ctx
                .mem
                .check(MemKey::Remote(reth.rkey), reth.va, len, false)
            {
                return Outcome::Fail {
                    nak: nak_for(e),
                    recv_status: None,
                };
            }
        }
        self.resp.msn = (self.resp.msn + 1) & softverbs_wire::psn::PSN_MASK;
        let read = ReadResp {
            va: reth.va,
            rkey: reth.rkey,
            len,
            psn0: pkt.repr.bth.psn,
            sent: 0,
            msn: self.resp.msn,
        };
        self.resp.out.push_back(RespOut::Read(read));
        Outcome::Done(read.npkts(self.attrs.path_mtu.bytes()))
    }

    fn execute_atomic(
        &mut self,
        pkt: &Incoming<'_>,
        info: &OpcodeInfo,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let invalid = Outcome::Fail {
            nak: NakCode::InvalidRequest,
            recv_status: None,
        };
        let Some(a) = pkt.repr.atomic_eth else {
            return invalid;
        };
        if !self.attrs.access.contains(Access::REMOTE_ATOMIC) || a.va % 8 != 0 {
            return invalid;
        }
        let op = match info.kind {
            OpKind::CompareSwap => AtomicOp::CompareSwap {
                compare: a.compare,
                swap: a.swap_add,
            },
            _ => AtomicOp::FetchAdd { add: a.swap_add },
        };
        let orig = match ctx.mem.atomic(a.rkey, a.va, op) {
            Ok(v) => v,
            Err(e) => {
                return Outcome::Fail {
                    nak: nak_for(e),
                    recv_status: None,
                }
            }
        };
        self.resp.msn = (self.resp.msn + 1) & softverbs_wire::psn::PSN_MASK;
        let replay = AtomicReplay {
            psn: pkt.repr.bth.psn,
            orig,
            msn: self.resp.msn,
        };
        if self.resp.atomics.len() >= ATOMIC_REPLAY_DEPTH {
            self.resp.atomics.pop_front();
        }
        self.resp.atomics.push_back(replay);
        self.resp.out.push_back(RespOut::Atomic {
            psn: replay.psn,
            orig,
            msn: replay.msn,
        });
        Outcome::Done(1)
    }

    /// UC: no acknowledgements; a gap loses the message being received, and
    /// reception resumes at the next first or only packet.
    fn respond_uc(&mut self, pkt: &Incoming<'_>, info: &OpcodeInfo, ctx: &mut Ctx<'_>) {
        let psn = pkt.repr.bth.psn;
        let starts = matches!(info.position, Position::First | Position::Only);
        let in_order = psn == self.resp.epsn;
        if (!in_order || starts) && self.resp.open.is_some() {
            // The message in progress can no longer complete.
            self.counters.lost_msgs += 1;
            if let Some(OpenMsg::Send { wqe, .. }) = self.resp.open.take() {
                self.resp.spare = Some(wqe);
            }
        }
        if !in_order && !starts {
            self.counters.dropped_pkts += 1;
            return;
        }
        self.resp.epsn = psn;
        match self.execute(pkt, info, ctx) {
            Outcome::Done(n) => self.resp.epsn = psn_add(psn, n),
            Outcome::NotReady => {
                self.counters.lost_msgs += 1;
                self.resp.epsn = psn_add(psn, 1);
            }
            Outcome::Fail { recv_status, .. } => {
                self.complete_recv_error(recv_status);
                self.counters.lost_msgs += 1;
                self.resp.open = None;
                self.resp.epsn = psn_add(psn, 1);
            }
        }
    }

    /// UD: one-packet messages; the Q_Key must match; the network header
    /// fills the first 40 bytes of the receive buffer.
    fn respond_ud(&mut self, pkt: &Incoming<'_>, ctx: &mut Ctx<'_>) {
        let Some(deth) = pkt.repr.deth else {
            return self.drop_request();
        };
        if deth.qkey != self.attrs.qkey {
            return self.drop_request();
        }
        let Some(wqe) = self.take_recv_wqe(ctx) else {
            self.counters.lost_msgs += 1;
            return;
        };
        let mut c = Completion::new(
            wqe.wr_id,
            WcStatus::Success,
            WcOpcode::Recv,
            WcQueue::Recv,
            self.cfg.qpn,
        );
        let total = 40 + pkt.payload.len() as u64;
        let result = if crate::wr::sgl_len(&wqe.sgl) < total {
            Err(MemError::OutOfBounds)
        } else {
            sgl::scatter(ctx.mem, &wqe.sgl, 0, pkt.network_header)
                .and_then(|()| sgl::scatter(ctx.mem, &wqe.sgl, 40, pkt.payload))
        };
        match result {
            Ok(()) => {
                c.byte_len = total as u32;
                c.src_qp = deth.src_qpn;
                c.grh = true;
                c.imm = pkt.repr.immdt;
                c.solicited = pkt.repr.bth.solicited;
            }
            Err(MemError::OutOfBounds) => c.status = WcStatus::LocLenErr,
            Err(_) => c.status = WcStatus::LocProtErr,
        }
        self.push_completion(c);
    }

    /// The next response packet (ACK, NAK, READ response, atomic ACK).
    pub(crate) fn respond_transmit(
        &mut self,
        _now: Instant,
        ctx: &mut Ctx<'_>,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        if self.cfg.qp_type != QpType::Rc {
            return None;
        }
        let mtu = self.attrs.path_mtu.bytes();
        let out = *self.resp.out.front()?;
        let mut bth = BthRepr {
            opcode: Opcode::RC_ACKNOWLEDGE,
            solicited: false,
            migreq: false,
            pad_count: 0,
            tver: 0,
            pkey: self.attrs.pkey,
            fecn: false,
            becn: false,
            dest_qpn: self.attrs.dest_qpn,
            ack_req: false,
            psn: 0,
        };
        let mut repr = PacketRepr {
            bth,
            reth: None,
            aeth: None,
            atomic_eth: None,
            atomic_ack_eth: None,
            deth: None,
            immdt: None,
            ieth: None,
            payload_len: 0,
        };
        let len = match out {
            RespOut::Ack { psn, syndrome, msn } => {
                self.resp.out.pop_front();
                self.counters.acks_sent += 1;
                bth.psn = psn;
                repr.bth = bth;
                repr.aeth = Some(AethRepr { syndrome, msn });
                let len = repr.buffer_len();
                repr.emit_headers(&mut buf[..len]);
                len
            }
            RespOut::Atomic { psn, orig, msn } => {
                self.resp.out.pop_front();
                bth.opcode = Opcode::RC_ATOMIC_ACKNOWLEDGE;
                bth.psn = psn;
                repr.bth = bth;
                repr.aeth = Some(AethRepr {
                    syndrome: AckSyndrome::Ack { credit: 0x1f },
                    msn,
                });
                repr.atomic_ack_eth = Some(AtomicAckEthRepr { orig });
                let len = repr.buffer_len();
                repr.emit_headers(&mut buf[..len]);
                len
            }
            RespOut::Read(r) => {
                let first = r.sent == 0;
                let pay = (r.len - r.sent).min(mtu as u64) as usize;
                let last = r.sent + pay as u64 == r.len;
                let idx = u32::try_from(r.sent / mtu as u64).unwrap_or(0);
                bth.opcode = match (first, last) {
                    (true, true) => Opcode::RC_RDMA_READ_RESPONSE_ONLY,
                    (true, false) => Opcode::RC_RDMA_READ_RESPONSE_FIRST,
                    (false, false) => Opcode::RC_RDMA_READ_RESPONSE_MIDDLE,
                    (false, true) => Opcode::RC_RDMA_READ_RESPONSE_LAST,
                };
                bth.psn = psn_add(r.psn0, idx);
                bth.pad_count = PacketRepr::pad_for(pay);
                repr.bth = bth;
                repr.payload_len = pay;
                if first || last {
                    repr.aeth = Some(AethRepr {
                        syndrome: AckSyndrome::Ack { credit: 0x1f },
                        msn: r.msn,
                    });
                }
                let hdr = repr.header_len();
                let len = repr.buffer_len();
                let read = ctx.mem.read(
                    MemKey::Remote(r.rkey),
                    r.va.wrapping_add(r.sent),
                    &mut buf[hdr..hdr + pay],
                );
                if pay > 0 && read.is_err() {
                    // The region went away under the READ.
                    let psn = bth.psn;
                    self.fail();
                    self.resp
                        .push_nak(psn, AckSyndrome::Nak(NakCode::RemoteAccessError));
                    return None;
                }
                repr.emit_headers(&mut buf[..len]);
                if last {
                    self.resp.out.pop_front();
                } else if let Some(RespOut::Read(r)) = self.resp.out.front_mut() {
                    r.sent += pay as u64;
                }
                len
            }
        };
        let _ = QpState::Err;
        Some(Transmit {
            dst: self.attrs.dgid,
            src_port: self.src_port(),
            len,
        })
    }
}
