//! The requester: turns send work requests into request packets
//! (the role of `rxe_req.c`). It segments messages to the path MTU, numbers
//! packets with 24-bit PSNs, sets AckReq, respects the READ/atomic limit, the
//! fence and the window of unacknowledged packets, and replays from any PSN
//! when the completer asks it to (go-back-N).

use std::collections::VecDeque;

use softverbs_wire::psn::{psn_add, psn_diff};
use softverbs_wire::{AtomicEthRepr, BthRepr, DethRepr, Opcode, PacketRepr, RethRepr};

use crate::qp::{Ctx, Qp, QpState, QpType, Transmit};
use crate::sgl;
use crate::time::Instant;
use crate::wc::{Completion, WcOpcode, WcQueue, WcStatus};
use crate::wr::{SendOp, SendWr};

/// At most this many PSNs may be outstanding (sent, not acknowledged), as
/// rxe's `RXE_MAX_UNACKED_PSNS`.
pub const MAX_UNACKED_PSNS: i32 = 128;

/// AckReq is set at least once every this many packets of a long message, so
/// the window keeps moving (rxe's `RXE_MAX_PKT_PER_ACK`).
pub const MAX_PKTS_PER_ACK: u32 = 64;

/// A send work request and the transport's progress on it.
#[derive(Debug, Clone)]
pub(crate) struct SendWqe {
    pub wr: SendWr,
    /// PSN of the first packet; valid once `started`.
    pub first_psn: u32,
    /// PSN of the last packet (for a READ: of the last response packet).
    pub last_psn: u32,
    /// Its first packet was sent: PSNs are assigned.
    pub started: bool,
    /// Every packet was sent at least once.
    pub sent_all: bool,
    /// READ/atomic: the whole response arrived.
    pub done: bool,
    /// READ: response packets and bytes received so far.
    pub resp_pkts: u32,
    pub resp_bytes: u64,
    /// The status it completes with when the QP fails on it.
    pub status: Option<WcStatus>,
}

impl SendWqe {
    pub fn new(wr: SendWr) -> Self {
        SendWqe {
            wr,
            first_psn: 0,
            last_psn: 0,
            started: false,
            sent_all: false,
            done: false,
            resp_pkts: 0,
            resp_bytes: 0,
            status: None,
        }
    }

    pub fn opcode_of(op: &SendOp) -> WcOpcode {
        match op {
            SendOp::Send | SendOp::SendWithImm { .. } | SendOp::SendWithInv { .. } => {
                WcOpcode::Send
            }
            SendOp::Write { .. } | SendOp::WriteWithImm { .. } => WcOpcode::RdmaWrite,
            SendOp::Read { .. } => WcOpcode::RdmaRead,
            SendOp::CompareSwap { .. } => WcOpcode::CompSwap,
            SendOp::FetchAdd { .. } => WcOpcode::FetchAdd,
            SendOp::LocalInv { .. } => WcOpcode::LocalInv,
            SendOp::BindMw { .. } => WcOpcode::BindMw,
        }
    }

    pub fn wc_opcode(&self) -> WcOpcode {
        Self::opcode_of(&self.wr.op)
    }

    pub fn len(&self) -> u64 {
        self.wr.payload.len()
    }

    /// PSNs the request occupies: one per packet; a READ one per response packet.
    pub fn npsns(&self, mtu: usize) -> u32 {
        match self.wr.op {
            SendOp::CompareSwap { .. } | SendOp::FetchAdd { .. } => 1,
            _ => packets_for(self.len(), mtu),
        }
    }

    /// The WQE needs a response before it can complete.
    pub fn needs_response(&self) -> bool {
        self.wr.op.is_read_or_atomic()
    }
}

/// Number of packets a message of `len` bytes takes (at least one).
pub(crate) fn packets_for(len: u64, mtu: usize) -> u32 {
    u32::try_from(len.div_ceil(mtu as u64).max(1)).unwrap_or(u32::MAX)
}

/// The requester's share of QP state.
#[derive(Debug, Default)]
pub(crate) struct RequesterState {
    /// Posted and not yet completed, oldest first.
    pub sq: VecDeque<SendWqe>,
    /// PSN of the next packet to send.
    pub psn: u32,
    /// One past the highest PSN ever sent: packets below it are retransmissions.
    pub high_psn: u32,
    /// Index in `sq` of the WQE being turned into packets.
    pub cur: usize,
    /// Bytes of that WQE already packetized.
    pub offset: u64,
    /// Packets sent since the last one with AckReq.
    pub noack_pkts: u32,
    /// The SQD drained event was raised for this drain.
    pub drained_reported: bool,
}

impl RequesterState {
    pub fn reset_psn(&mut self, psn: u32) {
        self.psn = psn;
        self.high_psn = psn;
    }

    pub fn clear_progress(&mut self) {
        self.cur = 0;
        self.offset = 0;
        self.noack_pkts = 0;
    }

    /// Continue at `una`, the first unacknowledged PSN, after an ACK went
    /// past where a go-back-N resend stands: inside the started WQE that
    /// holds it, else with the first WQE not started yet (all started ones
    /// are acknowledged, so `una` is the next new PSN).
    pub fn resume_at(&mut self, una: u32, mtu: usize) {
        if self.rewind_to(una, mtu) {
            return;
        }
        self.cur = self
            .sq
            .iter()
            .position(|w| !w.started)
            .unwrap_or(self.sq.len());
        self.offset = 0;
        self.psn = una;
    }

    /// Rewind so the next packet sent is the one numbered `psn` (go-back-N).
    /// Returns false when no started WQE holds that PSN.
    pub fn rewind_to(&mut self, psn: u32, mtu: usize) -> bool {
        for (i, w) in self.sq.iter().enumerate() {
            if !w.started {
                break;
            }
            if w.wr.op.is_local() {
                continue; // holds no PSN
            }
            let from_first = psn_diff(psn, w.first_psn);
            if from_first < 0 || psn_diff(psn, w.last_psn) > 0 {
                continue;
            }
            let (psn, offset) = match w.wr.op {
                // A READ resumes after the response bytes already received.
                SendOp::Read { .. } => (psn_add(w.first_psn, w.resp_pkts), w.resp_bytes),
                SendOp::CompareSwap { .. } | SendOp::FetchAdd { .. } => (w.first_psn, 0),
                _ => (psn, from_first as u64 * mtu as u64),
            };
            self.cur = i;
            self.offset = offset;
            self.psn = psn;
            return true;
        }
        false
    }
}

impl Qp {
    /// The next request packet, if the QP may send one now.
    pub(crate) fn request_transmit(
        &mut self,
        now: Instant,
        ctx: &mut Ctx<'_>,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        let mid_message = self.req.offset != 0;
        match self.state {
            QpState::Rts => {}
            QpState::Sqd if mid_message => {}
            QpState::Sqd => {
                self.report_drained();
                return None;
            }
            _ => return None,
        }
        self.run_local_ops(ctx)?;
        let rc = self.cfg.qp_type == QpType::Rc;
        if rc && !self.may_send_rc(self.req.cur)? {
            return None;
        }
        let mtu = self.attrs.path_mtu.bytes();
        let wqe = self.req.sq.get(self.req.cur)?;
        let offset = self.req.offset;
        let total = wqe.len();
        let psn = self.req.psn;

        let is_read = matches!(wqe.wr.op, SendOp::Read { .. });
        let is_atomic = wqe.wr.op.is_atomic();
        let (pay_len, npsn) = if is_read {
            (0, packets_for(total - offset, mtu))
        } else if is_atomic {
            (0, 1)
        } else {
            (
                usize::try_from((total - offset).min(mtu as u64)).unwrap_or(mtu),
                1,
            )
        };
        let first = offset == 0;
        let last = is_read || is_atomic || offset + pay_len as u64 == total;

        let repr = self.request_repr(wqe, psn, offset, pay_len, first, last)?;
        let hdr = repr.header_len();
        let len = repr.buffer_len();
        if is_read || is_atomic {
            repr.emit_headers(&mut buf[..len]);
        } else {
            if let Err(_e) = sgl::gather(
                &*ctx.mem,
                &wqe.wr.payload,
                offset,
                &mut buf[hdr..hdr + pay_len],
            ) {
                self.fail_wqe(self.req.cur, WcStatus::LocProtErr);
                return None;
            }
            repr.emit_headers(&mut buf[..len]);
        }
        let dst = match (&wqe.wr.ud, self.cfg.qp_type) {
            (Some(ud), QpType::Ud) => ud.dgid,
            _ => self.attrs.dgid,
        };

        // Bookkeeping after the packet is certain to go out.
        let ack_req = repr.bth.ack_req;
        let cur = self.req.cur;
        let wqe = &mut self.req.sq[cur];
        if first && !wqe.started {
            wqe.started = true;
            wqe.first_psn = psn;
            wqe.last_psn = psn_add(psn, wqe.npsns(mtu) - 1);
        }
        if psn_diff(psn, self.req.high_psn) < 0 {
            self.counters.retransmitted_pkts += 1;
        }
        self.req.psn = psn_add(psn, npsn);
        if psn_diff(self.req.psn, self.req.high_psn) > 0 {
            self.req.high_psn = self.req.psn;
        }
        self.req.noack_pkts = if ack_req { 0 } else { self.req.noack_pkts + 1 };
        if last {
            wqe.sent_all = true;
            self.req.cur += 1;
            self.req.offset = 0;
        } else {
            self.req.offset = offset + pay_len as u64;
        }
        match self.cfg.qp_type {
            QpType::Rc => self.comp.arm_retransmit(now, &self.attrs),
            // Unacknowledged transports complete a send once it is on the wire.
            _ if last => self.complete_sent_unreliable(),
            _ => {}
        }
        Some(Transmit {
            dst,
            src_port: self.src_port(),
            len,
        })
    }

    /// Execute the local operations (LOCAL_INV, BIND_MW) the requester has
    /// reached, as rxe's `rxe_do_local_ops`: each runs once, sends nothing
    /// and completes in order with the WQEs before it. Returns `Some` when
    /// the WQE at `cur` is one that sends packets, `None` when there is
    /// none, a local operation must wait, or one failed (the QP is then in
    /// error).
    fn run_local_ops(&mut self, ctx: &mut Ctx<'_>) -> Option<()> {
        loop {
            let idx = self.req.cur;
            let wqe = self.req.sq.get(idx)?;
            if !wqe.wr.op.is_local() {
                return Some(());
            }
            if wqe.done {
                // Executed before a go-back-N rewind: not again.
                self.req.cur += 1;
                continue;
            }
            let ready = match wqe.wr.op {
                // The local invalidate fence (IBTA 10.6.5.1; rxe makes it
                // mandatory): every earlier WQE has completed, so nothing
                // in flight still uses the key.
                SendOp::LocalInv { .. } => idx == 0,
                // IBV_SEND_FENCE: earlier READs and atomics have completed.
                _ if wqe.wr.flags.fence => !self
                    .req
                    .sq
                    .iter()
                    .take(idx)
                    .any(|w| w.needs_response() && !w.done),
                _ => true,
            };
            if !ready {
                return None;
            }
            let (res, err) = match wqe.wr.op {
                SendOp::LocalInv { rkey } => (ctx.mem.invalidate(rkey), WcStatus::LocQpOpErr),
                op => {
                    let bind = op
                        .mw_bind()
                        .expect("a local op that is not LOCAL_INV binds");
                    (ctx.mem.bind_mw(&bind).map(|_| ()), WcStatus::MwBindErr)
                }
            };
            if res.is_err() {
                self.fail_wqe(idx, err);
                return None;
            }
            // It occupies no PSN; give it the last one sent, so PSN walks
            // over the queue stay ordered.
            let psn = psn_add(self.req.psn, softverbs_wire::psn::PSN_MASK);
            let w = &mut self.req.sq[idx];
            w.started = true;
            w.sent_all = true;
            w.done = true;
            w.first_psn = psn;
            w.last_psn = psn;
            self.req.cur += 1;
            self.complete_ready();
        }
    }

    /// Whether RC flow rules allow the WQE at `idx` to send its next packet:
    /// the window, the fence and the READ/atomic limit. `None` when there is
    /// no such WQE.
    fn may_send_rc(&self, idx: usize) -> Option<bool> {
        let wqe = self.req.sq.get(idx)?;
        if self.comp.paused() || psn_diff(self.req.psn, self.comp.una) >= MAX_UNACKED_PSNS {
            return Some(false);
        }
        if self.req.offset == 0 && (wqe.wr.flags.fence || wqe.needs_response()) {
            let outstanding = self
                .req
                .sq
                .iter()
                .take(idx)
                .filter(|w| w.needs_response() && !w.done)
                .count();
            if wqe.wr.flags.fence && outstanding > 0 {
                return Some(false);
            }
            if wqe.needs_response() && outstanding >= usize::from(self.attrs.max_rd_atomic.max(1)) {
                return Some(false);
            }
        }
        Some(true)
    }

    /// Headers of one request packet.
    fn request_repr(
        &self,
        wqe: &SendWqe,
        psn: u32,
        offset: u64,
        pay_len: usize,
        first: bool,
        last: bool,
    ) -> Option<PacketRepr> {
        let (opcode, reth, imm, ieth, atomic) =
            request_opcode(self.cfg.qp_type, &wqe.wr.op, first, last, wqe.len(), offset);
        let reliable = self.cfg.qp_type == QpType::Rc;
        let ack_req = reliable && (last || self.req.noack_pkts + 1 >= MAX_PKTS_PER_ACK);
        let deth = match (self.cfg.qp_type, &wqe.wr.ud) {
            (QpType::Ud, Some(ud)) => {
                // A Q_Key with the high bit set means "use the QP's own" (IBTA 10.2.5).
                let qkey = if ud.remote_qkey & 0x8000_0000 != 0 {
                    self.attrs.qkey
                } else {
                    ud.remote_qkey
                };
                Some(DethRepr {
                    qkey,
                    src_qpn: self.cfg.qpn,
                })
            }
            (QpType::Ud, None) => return None,
            _ => None,
        };
        let dest_qpn = match &wqe.wr.ud {
            Some(ud) if self.cfg.qp_type == QpType::Ud => ud.remote_qpn,
            _ => self.attrs.dest_qpn,
        };
        Some(PacketRepr {
            bth: BthRepr {
                opcode,
                solicited: last && wqe.wr.flags.solicited,
                migreq: false,
                pad_count: PacketRepr::pad_for(pay_len),
                tver: 0,
                pkey: self.attrs.pkey,
                fecn: false,
                becn: false,
                dest_qpn,
                ack_req,
                psn,
            },
            reth,
            aeth: None,
            atomic_eth: atomic,
            atomic_ack_eth: None,
            deth,
            immdt: imm,
            ieth,
            payload_len: pay_len,
        })
    }

    /// UC/UD: the WQE at the head is fully sent and so complete.
    fn complete_sent_unreliable(&mut self) {
        if let Some(wqe) = self.req.sq.pop_front() {
            self.req.cur = self.req.cur.saturating_sub(1);
            if self.cfg.sq_sig_all || wqe.wr.flags.signaled {
                let mut c = Completion::new(
                    wqe.wr.wr_id,
                    WcStatus::Success,
                    wqe.wc_opcode(),
                    WcQueue::Send,
                    self.cfg.qpn,
                );
                c.byte_len = u32::try_from(wqe.len()).unwrap_or(u32::MAX);
                self.completions.push_back(c);
            }
        }
    }

    /// A local error on the WQE at `idx`: it completes with `status` and the
    /// QP enters the error state.
    pub(crate) fn fail_wqe(&mut self, idx: usize, status: WcStatus) {
        if let Some(w) = self.req.sq.get_mut(idx) {
            w.status = Some(status);
        }
        self.fail();
    }

    fn report_drained(&mut self) {
        let outstanding = self.req.sq.iter().any(|w| w.started);
        if !outstanding && !self.req.drained_reported {
            self.req.drained_reported = true;
            self.events.push_back(crate::qp::QpEvent::SqDrained);
        }
    }
}

type OpcodeParts = (
    Opcode,
    Option<RethRepr>,
    Option<u32>,
    Option<u32>,
    Option<AtomicEthRepr>,
);

/// The opcode and extension headers of a request packet (IBTA table 38 and
/// rxe's `next_opcode`).
fn request_opcode(
    qp_type: QpType,
    op: &SendOp,
    first: bool,
    last: bool,
    total: u64,
    offset: u64,
) -> OpcodeParts {
    use Opcode as O;
    let rc = qp_type == QpType::Rc;
    let pick = |rc_ops: [Opcode; 4], uc_ops: [Opcode; 4]| {
        let ops = if rc { rc_ops } else { uc_ops };
        match (first, last) {
            (true, true) => ops[3],
            (true, false) => ops[0],
            (false, false) => ops[1],
            (false, true) => ops[2],
        }
    };
    let dma_len = u32::try_from(total).unwrap_or(u32::MAX);
    match *op {
        SendOp::Send | SendOp::SendWithImm { .. } | SendOp::SendWithInv { .. }
            if qp_type == QpType::Ud =>
        {
            let imm = if let SendOp::SendWithImm { imm } = *op {
                Some(imm)
            } else {
                None
            };
            let opcode = if imm.is_some() {
                O::UD_SEND_ONLY_WITH_IMMEDIATE
            } else {
                O::UD_SEND_ONLY
            };
            (opcode, None, imm, None, None)
        }
        SendOp::Send => (
            pick(
                [
                    O::RC_SEND_FIRST,
                    O::RC_SEND_MIDDLE,
                    O::RC_SEND_LAST,
                    O::RC_SEND_ONLY,
                ],
                [
                    O::UC_SEND_FIRST,
                    O::UC_SEND_MIDDLE,
                    O::UC_SEND_LAST,
                    O::UC_SEND_ONLY,
                ],
            ),
            None,
            None,
            None,
            None,
        ),
        SendOp::SendWithImm { imm } => (
            pick(
                [
                    O::RC_SEND_FIRST,
                    O::RC_SEND_MIDDLE,
                    O::RC_SEND_LAST_WITH_IMMEDIATE,
                    O::RC_SEND_ONLY_WITH_IMMEDIATE,
                ],
                [
                    O::UC_SEND_FIRST,
                    O::UC_SEND_MIDDLE,
                    O::UC_SEND_LAST_WITH_IMMEDIATE,
                    O::UC_SEND_ONLY_WITH_IMMEDIATE,
                ],
            ),
            None,
            last.then_some(imm),
            None,
            None,
        ),
        SendOp::SendWithInv { rkey } => (
            pick(
                [
                    O::RC_SEND_FIRST,
                    O::RC_SEND_MIDDLE,
                    O::RC_SEND_LAST_WITH_INVALIDATE,
                    O::RC_SEND_ONLY_WITH_INVALIDATE,
                ],
                [
                    O::UC_SEND_FIRST,
                    O::UC_SEND_MIDDLE,
                    O::UC_SEND_LAST,
                    O::UC_SEND_ONLY,
                ],
            ),
            None,
            None,
            last.then_some(rkey),
            None,
        ),
        SendOp::Write { remote_addr, rkey } => (
            pick(
                [
                    O::RC_RDMA_WRITE_FIRST,
                    O::RC_RDMA_WRITE_MIDDLE,
                    O::RC_RDMA_WRITE_LAST,
                    O::RC_RDMA_WRITE_ONLY,
                ],
                [
                    O::UC_RDMA_WRITE_FIRST,
                    O::UC_RDMA_WRITE_MIDDLE,
                    O::UC_RDMA_WRITE_LAST,
                    O::UC_RDMA_WRITE_ONLY,
                ],
            ),
            first.then_some(RethRepr {
                va: remote_addr,
                rkey,
                dma_len,
            }),
            None,
            None,
            None,
        ),
        SendOp::WriteWithImm {
            remote_addr,
            rkey,
            imm,
        } => (
            pick(
                [
                    O::RC_RDMA_WRITE_FIRST,
                    O::RC_RDMA_WRITE_MIDDLE,
                    O::RC_RDMA_WRITE_LAST_WITH_IMMEDIATE,
                    O::RC_RDMA_WRITE_ONLY_WITH_IMMEDIATE,
                ],
                [
                    O::UC_RDMA_WRITE_FIRST,
                    O::UC_RDMA_WRITE_MIDDLE,
                    O::UC_RDMA_WRITE_LAST_WITH_IMMEDIATE,
                    O::UC_RDMA_WRITE_ONLY_WITH_IMMEDIATE,
                ],
            ),
            first.then_some(RethRepr {
                va: remote_addr,
                rkey,
                dma_len,
            }),
            last.then_some(imm),
            None,
            None,
        ),
        SendOp::Read { remote_addr, rkey } => (
            O::RC_RDMA_READ_REQUEST,
            Some(RethRepr {
                va: remote_addr.wrapping_add(offset),
                rkey,
                dma_len: u32::try_from(total - offset).unwrap_or(u32::MAX),
            }),
            None,
            None,
            None,
        ),
        SendOp::CompareSwap {
            remote_addr,
            rkey,
            compare,
            swap,
        } => (
            O::RC_COMPARE_SWAP,
            None,
            None,
            None,
            Some(AtomicEthRepr {
                va: remote_addr,
                rkey,
                swap_add: swap,
                compare,
            }),
        ),
        SendOp::FetchAdd {
            remote_addr,
            rkey,
            add,
        } => (
            O::RC_FETCH_ADD,
            None,
            None,
            None,
            Some(AtomicEthRepr {
                va: remote_addr,
                rkey,
                swap_add: add,
                compare: 0,
            }),
        ),
        SendOp::LocalInv { .. } | SendOp::BindMw { .. } => {
            unreachable!("local operations are executed by run_local_ops and send no packet")
        }
    }
}
