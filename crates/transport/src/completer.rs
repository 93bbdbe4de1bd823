//! The completer: turns acknowledgements and responses into send completions
//! and drives retransmission (the role of `rxe_comp.c`). It handles
//! coalesced cumulative ACKs, sequence-error NAKs (go-back-N), RNR NAKs and
//! their timer, the remote error NAKs, READ responses and atomic
//! acknowledgements, implied NAKs, and the retransmit timer with
//! `retry_cnt` / `rnr_retry`.

use softverbs_wire::psn::{psn_add, psn_diff};
use softverbs_wire::{AckSyndrome, NakCode, OpKind, Position};

use crate::memory::MemKey;
use crate::qp::{Ctx, Incoming, Qp, QpAttrs, QpType};
use crate::sgl;
use crate::time::{ack_timeout, rnr_delay, Instant};
use crate::wc::{Completion, WcQueue, WcStatus};
use crate::wr::{Payload, SendOp};

/// The PSN before `psn`: a NAK or response at `psn` acknowledges through it.
fn psn_prev(psn: u32) -> u32 {
    psn_add(psn, softverbs_wire::psn::PSN_MASK)
}

/// The completer's share of QP state.
#[derive(Debug, Default)]
pub(crate) struct CompleterState {
    /// Oldest unacknowledged PSN.
    pub una: u32,
    retry_left: u8,
    rnr_left: u8,
    /// When the retransmit timer fires, if armed.
    retransmit_at: Option<Instant>,
    /// While an RNR NAK is being waited out: when, and the PSN to resume at.
    rnr_wait: Option<(Instant, u32)>,
}

impl CompleterState {
    pub fn reset(&mut self, psn: u32) {
        self.una = psn;
        self.retransmit_at = None;
        self.rnr_wait = None;
    }

    pub fn reload_retries(&mut self, attrs: &QpAttrs) {
        self.retry_left = attrs.retry_cnt;
        self.rnr_left = attrs.rnr_retry;
    }

    pub fn stop_timers(&mut self) {
        self.retransmit_at = None;
        self.rnr_wait = None;
    }

    /// The requester waits out an RNR NAK.
    pub fn paused(&self) -> bool {
        self.rnr_wait.is_some()
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        match (self.retransmit_at, self.rnr_wait) {
            (Some(a), Some((b, _))) => Some(a.min(b)),
            (a, b) => a.or(b.map(|(t, _)| t)),
        }
    }

    /// Start the retransmit timer if it is not running (a packet was sent).
    pub fn arm_retransmit(&mut self, now: Instant, attrs: &QpAttrs) {
        if self.retransmit_at.is_none() {
            self.retransmit_at = ack_timeout(attrs.timeout).map(|d| now + d);
        }
    }
}

impl Qp {
    /// Handle an ACK, NAK, READ response or atomic acknowledgement.
    pub(crate) fn complete_on_response(
        &mut self,
        now: Instant,
        pkt: &Incoming<'_>,
        ctx: &mut Ctx<'_>,
    ) {
        let repr = pkt.repr;
        let psn = repr.bth.psn;
        let Ok(info) = repr.bth.opcode.info() else {
            self.counters.dropped_pkts += 1;
            return;
        };
        // A response for nothing outstanding is a stale duplicate.
        let outstanding = psn_diff(psn, self.comp.una) >= 0 && psn_diff(psn, self.req.high_psn) < 0;
        if !outstanding {
            self.counters.dropped_pkts += 1;
            return;
        }
        match info.kind {
            OpKind::Acknowledge => {
                let Some(aeth) = repr.aeth else {
                    return self.drop_pkt();
                };
                match aeth.syndrome {
                    AckSyndrome::Ack { .. } => self.on_ack(now, psn),
                    AckSyndrome::RnrNak { timer } => self.on_rnr_nak(now, psn, timer),
                    AckSyndrome::Nak(NakCode::PsnSequenceError) => self.on_seq_nak(now, psn),
                    AckSyndrome::Nak(code) => self.on_error_nak(psn, code),
                    AckSyndrome::Reserved(_) => self.drop_pkt(),
                }
            }
            OpKind::ReadResponse => self.on_read_response(now, pkt, info.position, ctx),
            OpKind::AtomicAcknowledge => {
                let Some(ack) = repr.atomic_ack_eth else {
                    return self.drop_pkt();
                };
                self.on_atomic_ack(now, psn, ack.orig, ctx);
            }
            _ => self.drop_pkt(),
        }
        self.complete_ready();
    }

    fn drop_pkt(&mut self) {
        self.counters.dropped_pkts += 1;
    }

    /// Forward progress: retries are reloaded and the timer restarted.
    fn progress(&mut self, now: Instant, una: u32) {
        if psn_diff(una, self.comp.una) <= 0 {
            return;
        }
        self.comp.una = una;
        self.comp.reload_retries(&self.attrs);
        self.comp.retransmit_at = None;
        if self.anything_outstanding() {
            self.comp.arm_retransmit(now, &self.attrs);
        }
    }

    fn anything_outstanding(&self) -> bool {
        self.req.sq.front().is_some_and(|w| w.started)
    }

    /// Mark WQEs wholly at or before `psn` as acknowledged. A READ or atomic
    /// whose missing response lies at or before `psn` means the response was
    /// lost (an implied NAK): replay from it and return false.
    fn ack_through(&mut self, psn: u32) -> bool {
        let mtu = self.attrs.path_mtu.bytes();
        for i in 0..self.req.sq.len() {
            let w = &self.req.sq[i];
            if !w.started {
                break;
            }
            if w.wr.op.is_local() {
                continue; // executed, holds no PSN
            }
            if w.needs_response() && !w.done {
                let next = psn_add(w.first_psn, w.resp_pkts);
                if psn_diff(psn, next) >= 0 {
                    return self.replay_from(next, mtu);
                }
                break;
            }
            if !w.sent_all || psn_diff(psn, w.last_psn) < 0 {
                break;
            }
            self.req.sq[i].done = true;
        }
        true
    }

    fn on_ack(&mut self, now: Instant, psn: u32) {
        if self.ack_through(psn) {
            self.progress(now, psn_add(psn, 1));
        } else {
            self.progress(now, self.comp.una);
        }
    }

    fn on_seq_nak(&mut self, now: Instant, psn: u32) {
        self.counters.rcvd_seq_err += 1;
        // The NAK acknowledges everything before its PSN.
        if self.ack_through(psn_prev(psn)) {
            self.progress(now, psn);
            let mtu = self.attrs.path_mtu.bytes();
            self.replay_from(psn, mtu);
        }
    }

    fn on_rnr_nak(&mut self, now: Instant, psn: u32, timer: u8) {
        self.counters.rcvd_rnr_err += 1;
        if !self.ack_through(psn_prev(psn)) {
            return;
        }
        if psn_diff(psn, self.comp.una) > 0 {
            self.comp.una = psn;
        }
        if self.attrs.rnr_retry != 7 {
            if self.comp.rnr_left == 0 {
                self.counters.retry_rnr_exceeded_err += 1;
                return self.fail_at(psn, WcStatus::RnrRetryExcErr);
            }
            self.comp.rnr_left -= 1;
        }
        // Stop sending until the timer fires, then resume at the NAK'd PSN.
        self.comp.retransmit_at = None;
        self.comp.rnr_wait = Some((now + rnr_delay(timer), psn));
    }

    fn on_error_nak(&mut self, psn: u32, code: NakCode) {
        self.ack_through(psn_prev(psn));
        let status = match code {
            NakCode::InvalidRequest | NakCode::InvalidRdRequest => WcStatus::RemInvReqErr,
            NakCode::RemoteAccessError => WcStatus::RemAccessErr,
            NakCode::RemoteOperationalError => WcStatus::RemOpErr,
            _ => WcStatus::BadRespErr,
        };
        self.fail_at(psn, status);
    }

    /// Complete the WQE holding `psn` with an error and fail the QP.
    fn fail_at(&mut self, psn: u32, status: WcStatus) {
        self.complete_ready();
        let idx = self
            .req
            .sq
            .iter()
            .position(|w| {
                w.started
                    && !w.wr.op.is_local()
                    && psn_diff(psn, w.first_psn) >= 0
                    && psn_diff(psn, w.last_psn) <= 0
            })
            .unwrap_or(0);
        self.fail_wqe(idx, status);
    }

    fn on_read_response(
        &mut self,
        now: Instant,
        pkt: &Incoming<'_>,
        pos: Position,
        ctx: &mut Ctx<'_>,
    ) {
        let psn = pkt.repr.bth.psn;
        let mtu = self.attrs.path_mtu.bytes();
        // Everything before the response is implicitly acknowledged.
        if !self.ack_through(psn_prev(psn)) {
            return;
        }
        let Some(idx) = self.req.sq.iter().position(|w| !w.done) else {
            return self.drop_pkt();
        };
        let w = &self.req.sq[idx];
        if !matches!(w.wr.op, SendOp::Read { .. }) || !w.started {
            return self.drop_pkt();
        }
        let expected = psn_add(w.first_psn, w.resp_pkts);
        let d = psn_diff(psn, expected);
        if d < 0 {
            return self.drop_pkt(); // duplicate
        }
        if d > 0 {
            // Response packets were lost: ask again for the rest.
            self.replay_from(expected, mtu);
            return;
        }
        let first_expected = w.resp_pkts == 0;
        let remaining = w.len() - w.resp_bytes;
        let len = pkt.payload.len() as u64;
        // A retried READ is answered as a new one (FIRST/ONLY at the resumed
        // PSN), so those may come at any point of the transfer.
        let shape_ok = match pos {
            Position::Only => len == remaining,
            Position::First => len == mtu as u64 && remaining > len,
            Position::Middle => !first_expected && len == mtu as u64 && remaining > len,
            Position::Last => !first_expected && len == remaining,
        };
        if !shape_ok {
            return self.drop_pkt();
        }
        let Payload::Sgl(sgl) = &w.wr.payload else {
            return self.drop_pkt();
        };
        if sgl::scatter(ctx.mem, sgl, w.resp_bytes, pkt.payload).is_err() {
            return self.fail_wqe(idx, WcStatus::LocProtErr);
        }
        let w = &mut self.req.sq[idx];
        w.resp_pkts += 1;
        w.resp_bytes += len;
        if matches!(pos, Position::Last | Position::Only) {
            w.done = true;
        }
        self.progress(now, psn_add(psn, 1));
    }

    fn on_atomic_ack(&mut self, now: Instant, psn: u32, orig: u64, ctx: &mut Ctx<'_>) {
        if !self.ack_through(psn_prev(psn)) {
            return;
        }
        let Some(idx) = self.req.sq.iter().position(|w| !w.done) else {
            return self.drop_pkt();
        };
        let w = &self.req.sq[idx];
        if !w.wr.op.is_atomic() || !w.started || w.first_psn != psn {
            return self.drop_pkt();
        }
        let Payload::Sgl(sgl) = &w.wr.payload else {
            return self.drop_pkt();
        };
        let Some(sge) = sgl.first() else {
            return self.drop_pkt();
        };
        if ctx
            .mem
            .write(MemKey::Local(sge.lkey), sge.addr, &orig.to_ne_bytes())
            .is_err()
        {
            return self.fail_wqe(idx, WcStatus::LocProtErr);
        }
        self.req.sq[idx].done = true;
        self.progress(now, psn_add(psn, 1));
    }

    /// Go back to `psn` and send from there again.
    fn replay_from(&mut self, psn: u32, mtu: usize) -> bool {
        if self.req.rewind_to(psn, mtu) {
            self.counters.retransmits += 1;
        }
        false
    }

    /// Pop acknowledged WQEs from the head and complete them in order.
    pub(crate) fn complete_ready(&mut self) {
        // Whether the WQE being resent (go-back-N) was itself acknowledged.
        let mut popped_current = false;
        while let Some(w) = self.req.sq.front() {
            let acked = w.done && w.sent_all;
            if !acked {
                break;
            }
            let w = self.req.sq.pop_front().expect("front exists");
            popped_current |= self.req.cur == 0;
            self.req.cur = self.req.cur.saturating_sub(1);
            if self.cfg.sq_sig_all || w.wr.flags.signaled {
                let mut c = Completion::new(
                    w.wr.wr_id,
                    WcStatus::Success,
                    w.wc_opcode(),
                    WcQueue::Send,
                    self.cfg.qpn,
                );
                c.byte_len = u32::try_from(w.len()).unwrap_or(u32::MAX);
                self.completions.push_back(c);
            }
        }
        // An ACK (reordered, or for packets that arrived after all) went
        // past the resend position: carry on from the first unacknowledged
        // PSN rather than inside a completed WQE (found against rxe under
        // reordering; the stale position broke later rewinds).
        let behind = popped_current || psn_diff(self.req.psn, self.comp.una) < 0;
        if self.cfg.qp_type == QpType::Rc && behind {
            let mtu = self.attrs.path_mtu.bytes();
            self.req.resume_at(self.comp.una, mtu);
        }
        if !self.anything_outstanding() {
            self.comp.retransmit_at = None;
        }
    }

    /// The retransmit or RNR timer fired.
    pub(crate) fn completer_timeout(&mut self, now: Instant) {
        let mtu = self.attrs.path_mtu.bytes();
        if let Some((at, psn)) = self.comp.rnr_wait {
            if now >= at {
                self.comp.rnr_wait = None;
                self.replay_from(psn, mtu);
                self.comp.arm_retransmit(now, &self.attrs);
            }
        }
        let Some(at) = self.comp.retransmit_at else {
            return;
        };
        if now < at {
            return;
        }
        self.comp.retransmit_at = None;
        if !self.anything_outstanding() {
            return;
        }
        self.counters.timeouts += 1;
        if self.comp.retry_left == 0 {
            self.counters.retry_exceeded_err += 1;
            return self.fail_wqe(0, WcStatus::RetryExcErr);
        }
        self.comp.retry_left -= 1;
        let una = self.comp.una;
        if !self.req.rewind_to(una, mtu) {
            // Nothing holds the oldest PSN any more: restart at the head.
            if let Some(w) = self.req.sq.front() {
                let first = w.first_psn;
                self.req.rewind_to(first, mtu);
            }
        }
        self.counters.retransmits += 1;
        self.comp.arm_retransmit(now, &self.attrs);
    }
}
