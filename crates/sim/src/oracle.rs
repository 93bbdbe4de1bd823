//! The reference model of one QP pair and the checks against it.
//!
//! The model is exact because every pair owns its memory: only its own
//! requester writes its write area and atomic counter, and RC executes
//! requests in posting order (duplicates are answered, not re-executed), so
//! applying WRITEs and atomics in posting order gives the final memory and
//! every atomic's original value. READs read an area nobody writes.

use std::collections::{BTreeSet, VecDeque};

use softverbs_transport::{Completion, QpType, WcStatus};

use crate::memory::SimMemory;
use crate::report::Invariant;
use crate::workload::{
    identify, msg_bytes, read_area_bytes, Layout, Msg, MsgKind, GRH_LEN, POISON,
};

/// A failed check, before the simulator adds seed, time and QP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fail {
    pub inv: Invariant,
    pub seq: Option<u64>,
    pub detail: String,
}

pub(crate) type Check<T = ()> = Result<T, Fail>;

fn fail<T>(inv: Invariant, seq: Option<u32>, detail: impl Into<String>) -> Check<T> {
    Err(Fail {
        inv,
        seq: seq.map(u64::from),
        detail: detail.into(),
    })
}

/// A posted send WQE that has not completed yet.
#[derive(Debug, Clone)]
pub(crate) struct Posted {
    pub wr_id: u64,
    pub seq: u32,
    pub kind: MsgKind,
    pub len: usize,
    /// The send slot its local buffer uses.
    pub slot: usize,
    pub remote_off: u64,
    /// For atomics: the original value the model predicts.
    pub atomic_old: u64,
}

/// A message the responder should (RC) or may (UC, UD) receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expected {
    pub seq: u32,
    pub kind: MsgKind,
    pub len: usize,
    pub imm: Option<u32>,
    pub solicited: bool,
    pub remote_off: u64,
}

/// What a receive completion must show besides the message itself.
pub(crate) struct RecvCtx<'a> {
    pub mem: &'a SimMemory,
    pub layout: &'a Layout,
    /// UD: the 40 bytes the buffer must start with, given the UDP payload length.
    pub ud_header: Option<&'a dyn Fn(usize) -> [u8; 40]>,
    /// UD: the sender's QPN.
    pub src_qpn: u32,
}

/// The state and expectations of one QP pair.
pub(crate) struct PairOracle {
    pub seed: u64,
    pub pair: usize,
    pub qp_type: QpType,
    /// The error a fault must produce (then only flushes follow).
    pub expected_error: Option<WcStatus>,
    pub error_seen: bool,
    /// A WQE was posted that the fault must fail.
    pub fault_must_hit: bool,
    pub posted: u64,
    pub outstanding: VecDeque<Posted>,
    pub successes: u64,
    pub success_bytes: u64,
    /// Receive-consuming messages the requester saw complete successfully.
    pub consuming_ok: u64,
    /// Messages the responder should or may still receive, in posting order.
    pub pending_recv: VecDeque<Expected>,
    pub delivered: u64,
    pub delivered_bytes: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// UC messages delivered after a later one.
    pub out_of_order: u64,
    delivered_seqs: BTreeSet<u32>,
    highest_seq: Option<u32>,
    /// Posted receive WQEs `(wr_id, slot)`, oldest first.
    pub recv_posted: VecDeque<(u64, usize)>,
    next_recv_id: u64,
    pub write_model: Vec<u8>,
    pub atomic_model: u64,
    pub fatal_seen: bool,
}

impl PairOracle {
    pub(crate) fn new(
        seed: u64,
        pair: usize,
        qp_type: QpType,
        write_area: usize,
        expected_error: Option<WcStatus>,
    ) -> Self {
        PairOracle {
            seed,
            pair,
            qp_type,
            expected_error,
            error_seen: false,
            fault_must_hit: false,
            posted: 0,
            outstanding: VecDeque::new(),
            successes: 0,
            success_bytes: 0,
            consuming_ok: 0,
            pending_recv: VecDeque::new(),
            delivered: 0,
            delivered_bytes: 0,
            lost: 0,
            duplicates: 0,
            out_of_order: 0,
            delivered_seqs: BTreeSet::new(),
            highest_seq: None,
            recv_posted: VecDeque::new(),
            next_recv_id: 0,
            write_model: vec![0; write_area],
            atomic_model: 0,
            fatal_seen: false,
        }
    }

    /// The wr_id of send message `seq`.
    pub(crate) fn send_wr_id(&self, seq: u32) -> u64 {
        ((self.pair as u64) << 32) | u64::from(seq)
    }

    /// Record a posted send WQE and apply it to the model.
    pub(crate) fn on_post(&mut self, msg: &Msg, slot: usize) {
        let mut atomic_old = 0;
        match msg.kind {
            MsgKind::Write | MsgKind::WriteImm => {
                let data = msg_bytes(self.seed, self.pair, msg.seq, msg.len);
                let off = msg.remote_off as usize;
                self.write_model[off..off + msg.len].copy_from_slice(&data);
            }
            MsgKind::CmpSwap => {
                atomic_old = self.atomic_model;
                if self.atomic_model == msg.compare {
                    self.atomic_model = msg.swap;
                }
            }
            MsgKind::FetchAdd => {
                atomic_old = self.atomic_model;
                self.atomic_model = self.atomic_model.wrapping_add(msg.add);
            }
            _ => {}
        }
        if msg.kind.consumes_recv() {
            self.pending_recv.push_back(Expected {
                seq: msg.seq,
                kind: msg.kind,
                len: msg.len,
                imm: msg.imm,
                solicited: msg.solicited,
                remote_off: msg.remote_off,
            });
        }
        self.posted += 1;
        self.outstanding.push_back(Posted {
            wr_id: self.send_wr_id(msg.seq),
            seq: msg.seq,
            kind: msg.kind,
            len: msg.len,
            slot,
            remote_off: msg.remote_off,
            atomic_old,
        });
    }

    /// A fresh receive wr_id for `slot`, recorded as posted.
    pub(crate) fn on_recv_post(&mut self, slot: usize) -> u64 {
        let id = ((self.pair as u64) << 32) | 0x8000_0000 | (self.next_recv_id & 0x7fff_ffff);
        self.next_recv_id += 1;
        self.recv_posted.push_back((id, slot));
        id
    }

    /// Check a send-queue completion; returns the WQE it completed.
    pub(crate) fn on_send_completion(
        &mut self,
        c: &Completion,
        req: &SimMemory,
        resp: &SimMemory,
        layout: &Layout,
    ) -> Check<Posted> {
        let Some(front) = self.outstanding.front() else {
            return fail(
                Invariant::WqeCompletesOnce,
                None,
                format!(
                    "send completion wr_id {:#x} ({:?}) with no WQE outstanding",
                    c.wr_id, c.status
                ),
            );
        };
        if c.wr_id != front.wr_id {
            let seq = (c.wr_id & 0xffff_ffff) as u32;
            return if self.outstanding.iter().any(|p| p.wr_id == c.wr_id) {
                fail(
                    Invariant::SendCompletionOrder,
                    Some(seq),
                    format!(
                        "completed before the older message {} ({:?})",
                        front.seq, c.status
                    ),
                )
            } else {
                fail(Invariant::WqeCompletesOnce, Some(seq), format!("completion for wr_id {:#x} which is not outstanding (duplicate or unknown; {:?})", c.wr_id, c.status))
            };
        }
        let p = self.outstanding.pop_front().expect("front exists");
        self.check_status(c, &p)?;
        if c.status == WcStatus::Success {
            self.check_success(c, &p, req, resp, layout)?;
        }
        Ok(p)
    }

    fn check_status(&mut self, c: &Completion, p: &Posted) -> Check {
        let ok = match (self.expected_error, self.error_seen) {
            (None, _) => c.status == WcStatus::Success,
            (Some(e), false) => {
                if c.status == e {
                    self.error_seen = true;
                }
                c.status == WcStatus::Success || c.status == e
            }
            (Some(_), true) => c.status == WcStatus::WrFlushErr,
        };
        if ok {
            return Ok(());
        }
        let want = match (self.expected_error, self.error_seen) {
            (None, _) => "Success".to_string(),
            (Some(e), false) => format!("Success or {e:?}"),
            (Some(_), true) => "WrFlushErr after the expected error".to_string(),
        };
        fail(
            Invariant::CompletionStatus,
            Some(p.seq),
            format!(
                "{:?} of {} bytes completed with {:?}, expected {want}",
                p.kind, p.len, c.status
            ),
        )
    }

    fn check_success(
        &mut self,
        c: &Completion,
        p: &Posted,
        req: &SimMemory,
        resp: &SimMemory,
        layout: &Layout,
    ) -> Check {
        let seq = Some(p.seq);
        if c.opcode != p.kind.wc_opcode() {
            return fail(
                Invariant::CompletionFields,
                seq,
                format!("{:?} completed with opcode {:?}", p.kind, c.opcode),
            );
        }
        let local = layout.src_slot(p.slot);
        match p.kind {
            MsgKind::Read => {
                if c.byte_len as usize != p.len {
                    return fail(
                        Invariant::CompletionFields,
                        seq,
                        format!(
                            "READ of {} bytes completed with byte_len {}",
                            p.len, c.byte_len
                        ),
                    );
                }
                let got = req
                    .peek(layout.src.lkey, local, layout.slot_len)
                    .expect("slot in region");
                let remote = resp
                    .peek(layout.read.lkey, layout.read.addr + p.remote_off, p.len)
                    .expect("read in area");
                if let Some(i) = (0..p.len).find(|&i| got[i] != remote[i]) {
                    return fail(
                        Invariant::ReadResultCorrect,
                        seq,
                        format!("READ of {} bytes at offset {}: byte {i} is {:#04x}, remote memory has {:#04x}", p.len, p.remote_off, got[i], remote[i]),
                    );
                }
                if let Some(i) = (p.len..layout.slot_len).find(|&i| got[i] != POISON) {
                    return fail(
                        Invariant::ReadResultCorrect,
                        seq,
                        format!("READ of {} bytes wrote past its end, at byte {i}", p.len),
                    );
                }
            }
            MsgKind::CmpSwap | MsgKind::FetchAdd => {
                let got = req.peek(layout.src.lkey, local, 8).expect("slot in region");
                let got = u64::from_ne_bytes(got.try_into().expect("8 bytes"));
                if got != p.atomic_old {
                    return fail(
                        Invariant::AtomicResultCorrect,
                        seq,
                        format!(
                            "{:?} returned {got:#x}, the model's original value is {:#x}",
                            p.kind, p.atomic_old
                        ),
                    );
                }
            }
            _ => {}
        }
        self.successes += 1;
        self.success_bytes += p.len as u64;
        if p.kind.consumes_recv() {
            self.consuming_ok += 1;
        }
        Ok(())
    }

    /// Check a receive completion; returns the receive slot it freed.
    /// `teardown` allows flushes.
    pub(crate) fn on_recv_completion(
        &mut self,
        c: &Completion,
        ctx: &RecvCtx<'_>,
        teardown: bool,
    ) -> Check<usize> {
        let Some(&(wr_id, slot)) = self.recv_posted.front() else {
            return fail(
                Invariant::WqeCompletesOnce,
                None,
                format!(
                    "receive completion wr_id {:#x} ({:?}) with no receive WQE posted",
                    c.wr_id, c.status
                ),
            );
        };
        if c.wr_id != wr_id {
            let known = self.recv_posted.iter().any(|&(id, _)| id == c.wr_id);
            let inv = if known {
                Invariant::RecvQueueOrder
            } else {
                Invariant::WqeCompletesOnce
            };
            return fail(inv, None, format!("receive completion wr_id {:#x} ({:?}), but the oldest receive WQE is {wr_id:#x}", c.wr_id, c.status));
        }
        self.recv_posted.pop_front();
        match c.status {
            WcStatus::Success => {}
            WcStatus::WrFlushErr if teardown => return Ok(slot),
            other => {
                return fail(
                    Invariant::CompletionStatus,
                    None,
                    format!(
                        "receive WQE {wr_id:#x} completed with {other:?} (teardown: {teardown})"
                    ),
                );
            }
        }
        let hdr = if self.qp_type == QpType::Ud {
            GRH_LEN
        } else {
            0
        };
        let buf = ctx
            .mem
            .peek(
                ctx.layout.rq.lkey,
                ctx.layout.rq_slot(slot),
                ctx.layout.rslot_len,
            )
            .expect("slot in region");
        let exp = self.match_message(c, buf, hdr)?;
        let Some(exp) = exp else {
            self.duplicates += 1;
            return Ok(slot);
        };
        self.check_recv_fields(c, &exp, buf, hdr, ctx)?;
        self.delivered += 1;
        self.delivered_bytes += exp.len as u64;
        self.delivered_seqs.insert(exp.seq);
        Ok(slot)
    }

    /// Which pending message a receive completion delivers. RC: the oldest.
    /// UC and UD: any one posted (UD has no order; a UC responder restarts on
    /// any FIRST or ONLY packet, as rxe does, so late and duplicated packets
    /// deliver old messages). `Ok(None)`: a duplicate of a delivered message.
    fn match_message(&mut self, c: &Completion, buf: &[u8], hdr: usize) -> Check<Option<Expected>> {
        if self.qp_type == QpType::Rc {
            return match self.pending_recv.pop_front() {
                Some(e) => Ok(Some(e)),
                None => fail(
                    Invariant::RcExactlyOnceInOrder,
                    None,
                    format!("a message of {} bytes arrived but every posted message was already delivered", c.byte_len),
                ),
            };
        }
        let len = (c.byte_len as usize).saturating_sub(hdr);
        let data = buf.get(hdr..hdr + len).unwrap_or(&[]);
        let claimed: Option<u32> = match c.imm {
            Some(imm) => Some(imm ^ 0x8000_0000 ^ ((self.pair as u32) << 20)),
            None if c.opcode == softverbs_transport::WcOpcode::Recv => {
                identify(data).map(|(_, s)| s)
            }
            None => None,
        };
        let fits = |e: &Expected| -> bool {
            match claimed {
                Some(s) => e.seq == s,
                None => {
                    e.imm.is_none()
                        && e.kind == MsgKind::Send
                        && e.solicited == c.solicited
                        && e.len == len
                        && data == msg_bytes(self.seed, self.pair, e.seq, e.len).as_slice()
                }
            }
        };
        if let Some(pos) = self.pending_recv.iter().position(fits) {
            let e = self.pending_recv.remove(pos).expect("position is valid");
            if self.highest_seq.is_some_and(|h| e.seq < h) {
                // UD has no order; UC (like rxe) restarts on any FIRST/ONLY
                // packet, so a late one delivers an older message.
                self.out_of_order += 1;
            }
            self.highest_seq = self.highest_seq.max(Some(e.seq));
            return Ok(Some(e));
        }
        let already = match claimed {
            Some(s) => self.delivered_seqs.contains(&s),
            None => self.delivered_seqs.iter().any(|&s| {
                data.len() < 8 && data == msg_bytes(self.seed, self.pair, s, data.len()).as_slice()
            }),
        };
        if already {
            // Allowed: UD has no duplicate detection, and a UC responder
            // takes a duplicated ONLY packet as a new message.
            return Ok(None);
        }
        fail(
            Invariant::WholeMessagesOnly,
            claimed,
            format!(
                "{:?} delivered {len} bytes (imm {:?}) that are no message this pair posted",
                self.qp_type, c.imm
            ),
        )
    }

    fn check_recv_fields(
        &self,
        c: &Completion,
        e: &Expected,
        buf: &[u8],
        hdr: usize,
        ctx: &RecvCtx<'_>,
    ) -> Check {
        let seq = Some(e.seq);
        let want_len = if e.kind == MsgKind::WriteImm {
            e.len
        } else {
            e.len + hdr
        };
        if c.opcode != e.kind.recv_opcode() || c.imm != e.imm || c.byte_len as usize != want_len {
            return fail(
                Invariant::CompletionFields,
                seq,
                format!(
                    "{:?} of {} bytes: receive completion says opcode {:?} imm {:?} byte_len {}, expected {:?} {:?} {want_len}",
                    e.kind,
                    e.len,
                    c.opcode,
                    c.imm,
                    c.byte_len,
                    e.kind.recv_opcode(),
                    e.imm
                ),
            );
        }
        if c.solicited != e.solicited {
            return fail(
                Invariant::CompletionFields,
                seq,
                format!(
                    "solicited flag {} in the completion, {} in the request",
                    c.solicited, e.solicited
                ),
            );
        }
        if let Some(make) = ctx.ud_header {
            if c.src_qp != ctx.src_qpn || !c.grh {
                return fail(
                    Invariant::CompletionFields,
                    seq,
                    format!(
                        "UD completion src_qp {:#x} grh {}, expected {:#x} true",
                        c.src_qp, c.grh, ctx.src_qpn
                    ),
                );
            }
            let pad = (4 - e.len % 4) % 4;
            let udp_len = 12 + 8 + if e.imm.is_some() { 4 } else { 0 } + e.len + pad + 4;
            if buf[..GRH_LEN] != make(udp_len) {
                return fail(Invariant::PayloadIntact, seq, format!("UD receive buffer does not start with the packet's 40-byte network header: {:02x?}", &buf[..GRH_LEN]));
            }
        }
        let written = if e.kind == MsgKind::WriteImm {
            // The data went to the write area; the receive buffer stays untouched.
            let got = ctx
                .mem
                .peek(
                    ctx.layout.write.lkey,
                    ctx.layout.write.addr + e.remote_off,
                    e.len,
                )
                .expect("write in area");
            let want = msg_bytes(self.seed, self.pair, e.seq, e.len);
            if let Some(i) = (0..e.len).find(|&i| got[i] != want[i]) {
                return fail(
                    Invariant::PayloadIntact,
                    seq,
                    format!("RDMA WRITE with immediate of {} bytes at offset {}: byte {i} is {:#04x}, expected {:#04x}", e.len, e.remote_off, got[i], want[i]),
                );
            }
            0
        } else {
            let want = msg_bytes(self.seed, self.pair, e.seq, e.len);
            let got = &buf[hdr..hdr + e.len];
            if let Some(i) = (0..e.len).find(|&i| got[i] != want[i]) {
                let claim = identify(got)
                    .map(|(p, s)| format!(" (the bytes look like pair {p} message {s})"))
                    .unwrap_or_default();
                return fail(
                    Invariant::PayloadIntact,
                    seq,
                    format!(
                        "{:?} of {} bytes: byte {i} is {:#04x}, expected {:#04x}{claim}",
                        e.kind, e.len, got[i], want[i]
                    ),
                );
            }
            hdr + e.len
        };
        // UC may reuse the receive WQE of an abandoned message for the next
        // one, so bytes past the end may be left from the abandoned one.
        let reusable = self.qp_type == QpType::Uc;
        if let Some(i) = (written..buf.len()).find(|&i| buf[i] != POISON && !reusable) {
            return fail(
                Invariant::NoRecvOverrun,
                seq,
                format!(
                    "{:?} of {} bytes: receive buffer byte {i} was written",
                    e.kind, e.len
                ),
            );
        }
        Ok(())
    }

    /// Final checks once the workload is over and the QPs are flushed.
    pub(crate) fn finish(&mut self, resp: &SimMemory, layout: &Layout, messages: usize) -> Check {
        if let Some(p) = self.outstanding.front() {
            return fail(
                Invariant::WqeCompletesOnce,
                Some(p.seq),
                format!("{} send WQEs never completed", self.outstanding.len()),
            );
        }
        if self.posted != messages as u64 {
            return fail(
                Invariant::NoStall,
                None,
                format!(
                    "only {} of {messages} work requests were posted",
                    self.posted
                ),
            );
        }
        if let Some(&(id, _)) = self.recv_posted.front() {
            return fail(
                Invariant::WqeCompletesOnce,
                None,
                format!("receive WQE {id:#x} never completed, not even when the QP was flushed"),
            );
        }
        if let Some(e) = self.expected_error {
            if self.fault_must_hit && !self.error_seen {
                return fail(
                    Invariant::ExpectedErrorOccurs,
                    None,
                    format!("the fault never produced {e:?}"),
                );
            }
        }
        let read = resp
            .peek(layout.read.lkey, layout.read.addr, layout.read.len as usize)
            .expect("read area");
        if read != read_area_bytes(self.seed, self.pair, read.len()).as_slice() {
            return fail(
                Invariant::RemoteMemoryMatchesModel,
                None,
                "the read-only area changed",
            );
        }
        match self.qp_type {
            QpType::Rc if self.expected_error.is_none() => {
                if let Some(e) = self.pending_recv.front() {
                    return fail(
                        Invariant::RcDeliversAll,
                        Some(e.seq),
                        format!("{} messages were never delivered", self.pending_recv.len()),
                    );
                }
                self.check_final_memory(resp, layout)?;
            }
            QpType::Rc => {
                if self.delivered < self.consuming_ok {
                    return fail(
                        Invariant::RcDeliversAll,
                        None,
                        format!(
                            "{} messages completed successfully but only {} were delivered",
                            self.consuming_ok, self.delivered
                        ),
                    );
                }
            }
            QpType::Uc | QpType::Ud => {
                self.lost += self.pending_recv.len() as u64;
                self.pending_recv.clear();
            }
        }
        Ok(())
    }

    fn check_final_memory(&self, resp: &SimMemory, layout: &Layout) -> Check {
        let mem = resp
            .peek(layout.write.lkey, layout.write.addr, self.write_model.len())
            .expect("write area");
        if let Some(i) = (0..mem.len()).find(|&i| mem[i] != self.write_model[i]) {
            let claim = mem
                .get(i..i + 8)
                .and_then(identify)
                .map(|(p, s)| format!(" (near bytes of pair {p} message {s}?)"))
                .unwrap_or_default();
            return fail(
                Invariant::RemoteMemoryMatchesModel,
                None,
                format!(
                    "write area byte {i} is {:#04x}, the model says {:#04x}{claim}",
                    mem[i], self.write_model[i]
                ),
            );
        }
        let counter = resp
            .peek(layout.atomic.lkey, layout.atomic.addr, 8)
            .expect("atomic cell");
        let counter = u64::from_ne_bytes(counter.try_into().expect("8 bytes"));
        if counter != self.atomic_model {
            return fail(
                Invariant::RemoteMemoryMatchesModel,
                None,
                format!(
                    "the atomic counter is {counter:#x}, the model says {:#x}",
                    self.atomic_model
                ),
            );
        }
        Ok(())
    }
}
