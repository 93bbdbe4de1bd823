//! The SRD endpoint: one per device. It owns the device's SRD QPs and one
//! delivery context per peer device, shared by all the QPs; it turns work
//! requests into UET packets and packets into completions, sans-IO.

use std::collections::{BTreeMap, HashMap, VecDeque};

use core::time::Duration;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use softverbs_transport::sgl;
use softverbs_transport::{
    Completion, Instant, MemError, MemKey, Memory, Payload, PostError, RecvQueue, RecvWr, SendOp,
    SendWr, Transmit, WcOpcode, WcQueue, WcStatus,
};
use softverbs_wire::uet::pds::{ACK_FLAG_M, ACK_FLAG_RETX, NACK_FLAG_RETX};
use softverbs_wire::uet::ses::{rsp_opcode, SES_FLAG_EOM, SES_FLAG_HD, SES_FLAG_IE, SES_FLAG_SOM};
use softverbs_wire::uet::{
    AckCcRepr, AckRepr, ControlRepr, ControlType, Dest, NackCode, NackRepr, NextHeader, PdsRepr,
    RequestRepr, ReturnCode, SesOpcode, SesRepr, SesRequestRepr, SesResponseDataRepr,
    SesResponseRepr, UetPacketRepr, UET_CRC_LEN,
};
use softverbs_wire::{uet, Gid};

use crate::cc::Cc;
use crate::config::{status_of, vendor, SrdConfig, SrdQpConfig, ENTROPY_BASE_PORT};
use crate::pdc::{InMsg, MsgOp, OutMsg, OwedAck, Pdc, ReadJob, Seg, TxPkt};

/// PSNs past a message's last packet after which an ACK without its SES
/// response means the response was lost.
const RSP_LOST_AFTER: u64 = 32;

/// The CC type we put in ACK_CC: our delay-based controller.
pub const CC_TYPE_DELAY: u8 = 1;

/// How the endpoint reaches the memory of a QP's protection domain.
pub trait PdMemory {
    /// The memory of the PD that QP `qpn` belongs to; `None` if unknown.
    fn memory(&mut self, qpn: u32) -> Option<&mut dyn Memory>;
}

/// One protection domain for every QP.
pub struct OnePd<'a>(pub &'a mut dyn Memory);

impl PdMemory for OnePd<'_> {
    fn memory(&mut self, _qpn: u32) -> Option<&mut dyn Memory> {
        Some(&mut *self.0)
    }
}

/// A work completion with what EFA adds to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrdCompletion {
    /// The completion (`qp_num` names the QP; receive completions carry
    /// the sender's QPN in `src_qp`).
    /// EFA's additions travel in it too: `vendor_err` (see
    /// [`crate::config::vendor`]; 0 on success) and `unsolicited` (a WRITE
    /// with immediate that consumed no receive WQE; `wr_id` is 0).
    pub wc: Completion,
    /// Receive completions: the sender's device.
    pub src: Gid,
    /// Send completions: virtual time from post to completion.
    pub latency: Duration,
}

/// Why an incoming datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum DropReason {
    /// CRC or header error.
    Malformed,
    /// No PDC with that identifier for that peer.
    UnknownPdc,
    /// PSN outside the receive window.
    OutOfWindow,
    /// A packet type or header combination SRD does not use.
    Unexpected,
}

/// What an endpoint has seen and done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SrdCounters {
    /// Packets handed to the I/O layer.
    pub sent_pkts: u64,
    /// Datagrams received.
    pub rcvd_pkts: u64,
    /// Data packets (requests) sent for the first time.
    pub data_pkts: u64,
    /// Packets sent again.
    pub retransmitted_pkts: u64,
    /// Retransmission timer expiries.
    pub timeouts: u64,
    /// Losses detected from selective ACKs (no timer).
    pub fast_retransmits: u64,
    /// Retransmissions that turned out unnecessary (an ACK for the first
    /// copy arrived after the retransmission).
    pub spurious_retransmits: u64,
    /// Duplicate requests received (answered, not re-executed).
    pub duplicates: u64,
    /// ACKs sent / received.
    pub acks_sent: u64,
    /// ACKs received.
    pub acks_rcvd: u64,
    /// RNR NACKs sent.
    pub rnr_nacks_sent: u64,
    /// RNR NACKs received.
    pub rnr_nacks_rcvd: u64,
    /// ACK requests sent (all packets acked, SES response missing).
    pub ack_requests: u64,
    /// Datagrams dropped (see [`DropReason`]).
    pub dropped: u64,
    /// Contexts opened (initiator and target).
    pub pdcs_opened: u64,
    /// Contexts reset after the retry limit.
    pub pdcs_reset: u64,
    /// Contexts closed after being idle (initiator and target side).
    pub pdcs_closed: u64,
    /// Requests received with ECN congestion-experienced marks.
    pub ecn_ce_rcvd: u64,
    /// ACKs received echoing marks (flag M): window cuts asked for.
    pub ecn_echoes_rcvd: u64,
    /// Paths put on the avoid list after a timeout.
    pub paths_avoided: u64,
    /// Completions with an error status.
    pub completion_errors: u64,
}

/// The state of one context, for counters and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PdcStats {
    /// Local PDC id.
    pub id: u16,
    /// Peer PDC id, once known.
    pub remote: Option<u16>,
    /// Opened by this side.
    pub initiator: bool,
    /// Congestion window, bytes.
    pub cwnd: u64,
    /// Smoothed RTT, ns (0 before a sample).
    pub srtt_ns: u64,
    /// Bytes in flight.
    pub inflight: u64,
    /// Packets awaiting acknowledgement.
    pub unacked: usize,
    /// Messages in progress (initiator side).
    pub messages: usize,
    /// Bytes of state.
    pub footprint: usize,
}

struct SrdQp {
    cfg: SrdQpConfig,
    rq: RecvQueue,
    outstanding: usize,
    /// In the error state ([`SrdEndpoint::flush_qp`]): work requests
    /// complete at once with `WR_FLUSH_ERR`, requests for it are refused.
    error: bool,
}

enum Outcome {
    Accept(Option<SesResponseRepr>),
    Rnr,
}

/// The lists [`SrdEndpoint::on_ack`] fills, kept between ACKs so that
/// handling one allocates nothing.
#[derive(Default)]
struct AckScratch {
    acked: Vec<u64>,
    touched: Vec<Seg>,
    lost: Vec<u64>,
    lost_paths: Vec<u16>,
    ids: Vec<u16>,
}

/// The SRD endpoint of one device. Feed it [`Self::post_send`],
/// [`Self::post_recv`], [`Self::handle_datagram`] and
/// [`Self::handle_timeout`]; drain it with [`Self::poll_transmit`] (until
/// `None`), [`Self::poll_completion`] and [`Self::poll_timeout`]. After
/// every input, drain transmits and ask for the timeout again.
pub struct SrdEndpoint {
    cfg: SrdConfig,
    qps: BTreeMap<u32, SrdQp>,
    pdcs: Vec<Option<Pdc>>,
    initiator_by_peer: HashMap<Gid, u16>,
    target_by_peer: HashMap<(Gid, u16), u16>,
    ctrl_q: VecDeque<(Gid, u16, UetPacketRepr)>,
    /// Contexts that owe a coalesced ACK (sent by the next poll_transmit).
    acks_owed: Vec<u16>,
    /// Target contexts closed lately, by (peer, its PDC id): until when,
    /// and the PSNs they used (late duplicates of those are refused).
    closed: HashMap<(Gid, u16), (Instant, u32, u32)>,
    /// The datagram being handled carried ECN CE.
    ce: bool,
    completions: VecDeque<SrdCompletion>,
    rr: usize,
    rng: Xoshiro256PlusPlus,
    counters: SrdCounters,
    ack_scratch: AckScratch,
}

impl SrdEndpoint {
    /// A new endpoint with no QPs and no contexts.
    pub fn new(cfg: SrdConfig) -> Self {
        let rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
        SrdEndpoint {
            cfg,
            qps: BTreeMap::new(),
            pdcs: vec![None], // PDCID 0 is reserved
            initiator_by_peer: HashMap::new(),
            target_by_peer: HashMap::new(),
            ctrl_q: VecDeque::new(),
            acks_owed: Vec::new(),
            closed: HashMap::new(),
            ce: false,
            completions: VecDeque::new(),
            rr: 0,
            rng,
            ack_scratch: AckScratch::default(),
            counters: SrdCounters::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SrdConfig {
        &self.cfg
    }

    /// Counters so far.
    pub fn counters(&self) -> SrdCounters {
        self.counters
    }

    /// Largest payload per packet.
    pub fn mtu(&self) -> usize {
        self.cfg.mtu.bytes()
    }

    /// Room a transmit buffer needs: MTU plus headers and CRC.
    pub fn max_datagram(&self) -> usize {
        self.mtu() + uet::UET_MAX_HEADER_LEN + UET_CRC_LEN
    }

    /// Creates an SRD QP (ready to send and receive, as after the
    /// RESET→INIT→RTR→RTS walk the core performs).
    ///
    /// # Errors
    /// [`PostError::Invalid`] if the QPN is taken or exceeds 24 bits.
    pub fn create_qp(&mut self, cfg: SrdQpConfig) -> Result<(), PostError> {
        if cfg.qpn > 0x00ff_ffff || self.qps.contains_key(&cfg.qpn) {
            return Err(PostError::Invalid("QPN taken or wider than 24 bits"));
        }
        self.qps.insert(
            cfg.qpn,
            SrdQp {
                rq: RecvQueue::new(cfg.max_recv_wr),
                cfg,
                outstanding: 0,
                error: false,
            },
        );
        Ok(())
    }

    /// Moves QP `qpn` to the error state (`modify_qp` to ERR): every send
    /// WQE it has outstanding and every receive WQE it holds completes now
    /// with `WR_FLUSH_ERR` (vendor error `FLUSHED`), sends in the order
    /// they were posted, then receives. A message already partly on the
    /// wire has its remaining packets sent flagged "initiator error", so
    /// the target consumes their PSNs without delivering; its late
    /// acknowledgements complete nothing. Later work requests complete at
    /// once with `WR_FLUSH_ERR`; requests that arrive for the QP are
    /// refused (`NO_MATCH`). Returns whether the QP exists.
    pub fn flush_qp(&mut self, now: Instant, qpn: u32) -> bool {
        let Some(qp) = self.qps.get_mut(&qpn) else {
            return false;
        };
        qp.error = true;
        let recvs: Vec<RecvWr> = qp.rq.drain().collect();
        let mut sends = Vec::new();
        for p in self.pdcs.iter_mut().flatten() {
            let mine: Vec<u16> = p
                .msgs
                .iter()
                .filter(|(_, m)| m.qpn == qpn && !m.done)
                .map(|(&id, _)| id)
                .collect();
            for id in mine {
                let m = p.msgs.get_mut(&id).expect("listed above");
                let wr_id = m.wr_id;
                let opcode = opcode_of(m.op);
                let posted_at = m.posted_at;
                if m.started {
                    m.done = true;
                    m.abandon = true;
                    m.failed = Some((WcStatus::WrFlushErr, vendor::FLUSHED));
                    if m.all_sent && m.unacked == 0 {
                        p.msgs.remove(&id);
                    }
                } else {
                    p.msgs.remove(&id);
                    p.send_q.retain(|&q| q != id);
                }
                sends.push((posted_at, wr_id, opcode, p.peer));
            }
        }
        // Posting order (stable: messages of one context are in order).
        sends.sort_by_key(|&(at, ..)| at);
        qp.outstanding = 0;
        for (at, wr_id, opcode, peer) in sends {
            self.push_flush(
                qpn,
                wr_id,
                opcode,
                WcQueue::Send,
                peer,
                now.saturating_since(at),
            );
        }
        for wr in recvs {
            self.push_flush(
                qpn,
                wr.wr_id,
                WcOpcode::Recv,
                WcQueue::Recv,
                Gid::default(),
                Duration::ZERO,
            );
        }
        true
    }

    /// Takes QP `qpn` out of the error state (`modify_qp` to RESET, then
    /// back up): it sends and receives again. Returns whether it exists.
    pub fn reset_qp(&mut self, qpn: u32) -> bool {
        let Some(qp) = self.qps.get_mut(&qpn) else {
            return false;
        };
        qp.error = false;
        qp.rq.drain().for_each(drop);
        true
    }

    /// Whether QP `qpn` is in the error state.
    pub fn qp_in_error(&self, qpn: u32) -> bool {
        self.qps.get(&qpn).is_some_and(|q| q.error)
    }

    fn push_flush(
        &mut self,
        qpn: u32,
        wr_id: u64,
        opcode: WcOpcode,
        queue: WcQueue,
        src: Gid,
        latency: Duration,
    ) {
        let mut wc = Completion::new(wr_id, WcStatus::WrFlushErr, opcode, queue, qpn);
        wc.vendor_err = vendor::FLUSHED;
        self.completions
            .push_back(SrdCompletion { wc, src, latency });
    }

    /// Destroys an SRD QP: its receive WQEs are dropped without
    /// completions (as Linux's destroy does); messages it still has in
    /// flight run to the end, but their completions name a QP that is gone
    /// (the device drops them). Later requests for its QPN are answered
    /// `NO_MATCH`. Returns whether it existed.
    pub fn destroy_qp(&mut self, qpn: u32) -> bool {
        self.qps.remove(&qpn).is_some()
    }

    /// Changes what `modify_qp` may change on an SRD QP: its Q_Key (at
    /// INIT) and its RNR retry count (at RTS). Returns whether it exists.
    pub fn modify_qp(&mut self, qpn: u32, qkey: Option<u32>, rnr_retry: Option<u8>) -> bool {
        let Some(qp) = self.qps.get_mut(&qpn) else {
            return false;
        };
        if let Some(q) = qkey {
            qp.cfg.qkey = q;
        }
        if let Some(r) = rnr_retry {
            qp.cfg.rnr_retry = r.min(7);
        }
        true
    }

    /// Number of QPs.
    pub fn qp_count(&self) -> usize {
        self.qps.len()
    }

    /// Bytes of per-QP state (the QP's configuration, receive queue header
    /// and counts; not the WQEs themselves), summed over the QPs: what grows
    /// with QPs, next to what grows with peers ([`PdcStats::footprint`]).
    pub fn qp_footprint(&self) -> usize {
        self.qps.len() * (core::mem::size_of::<SrdQp>() + core::mem::size_of::<u32>() + 16)
    }

    /// The contexts, for counters and tests.
    pub fn pdc_stats(&self) -> Vec<PdcStats> {
        self.pdcs
            .iter()
            .flatten()
            .map(|p| PdcStats {
                id: p.id,
                remote: p.remote,
                initiator: p.initiator,
                cwnd: p.cc.cwnd(),
                srtt_ns: p.cc.srtt().map_or(0, |d| d.as_nanos() as u64),
                inflight: p.inflight,
                unacked: p.unacked.len(),
                messages: p.msgs.len(),
                footprint: p.footprint(),
            })
            .collect()
    }

    /// Posts a send work request. `wr.ud` must name the destination (AH,
    /// remote QPN, Q_Key), as on UD.
    ///
    /// # Errors
    /// Unknown QP; queue full; an operation SRD lacks (atomics, SEND with
    /// invalidate); a SEND longer than the MTU; an RDMA longer than
    /// `max_rdma_size`; no destination.
    pub fn post_send(&mut self, now: Instant, qpn: u32, wr: SendWr) -> Result<(), PostError> {
        let mtu = self.mtu() as u64;
        let max_rdma = u64::from(self.cfg.max_rdma_size);
        let qp = self
            .qps
            .get_mut(&qpn)
            .ok_or(PostError::Invalid("no such SRD QP"))?;
        let dest = wr
            .ud
            .ok_or(PostError::Invalid("SRD work requests need a destination"))?;
        let len = wr.payload.len();
        let op = match wr.op {
            SendOp::Send => MsgOp::Send { imm: None },
            SendOp::SendWithImm { imm } => MsgOp::Send { imm: Some(imm) },
            SendOp::Write { remote_addr, rkey } => MsgOp::Write {
                addr: remote_addr,
                rkey,
                imm: None,
            },
            SendOp::WriteWithImm {
                remote_addr,
                rkey,
                imm,
            } => MsgOp::Write {
                addr: remote_addr,
                rkey,
                imm: Some(imm),
            },
            SendOp::Read { remote_addr, rkey } => MsgOp::Read {
                addr: remote_addr,
                rkey,
            },
            _ => {
                return Err(PostError::Invalid(
                    "SRD has no atomics, SEND with invalidate, LOCAL_INV or BIND_MW",
                ))
            }
        };
        match op {
            MsgOp::Send { .. } if len > mtu => {
                return Err(PostError::Invalid("SRD SEND is limited to one MTU"))
            }
            MsgOp::Write { .. } | MsgOp::Read { .. } if len > max_rdma => {
                return Err(PostError::Invalid("RDMA longer than max_rdma_size"))
            }
            MsgOp::Read { .. } if matches!(wr.payload, Payload::Inline(_)) => {
                return Err(PostError::Invalid("an RDMA READ cannot be inline"))
            }
            _ => {}
        }
        if qp.error {
            // IBTA 10.8.3.1: a WR posted in the error state is flushed.
            let opcode = opcode_of(op);
            self.push_flush(
                qpn,
                wr.wr_id,
                opcode,
                WcQueue::Send,
                dest.dgid,
                Duration::ZERO,
            );
            return Ok(());
        }
        if qp.outstanding >= qp.cfg.max_send_wr {
            return Err(PostError::QueueFull);
        }
        qp.outstanding += 1;
        let signaled = wr.flags.signaled || qp.cfg.sq_sig_all;
        let rnr_limit = qp.cfg.rnr_retry;
        let pdc_id = self.initiator_pdc(dest.dgid);
        let pdc = self.pdcs[usize::from(pdc_id)]
            .as_mut()
            .expect("initiator_pdc returns a live PDC");
        pdc.last_active = now;
        let mut msg_id = pdc.next_msg_id;
        while msg_id == 0 || pdc.msgs.contains_key(&msg_id) {
            msg_id = msg_id.wrapping_add(1);
        }
        pdc.next_msg_id = msg_id.wrapping_add(1);
        pdc.msgs.insert(
            msg_id,
            OutMsg {
                qpn,
                wr_id: wr.wr_id,
                signaled,
                op,
                payload: wr.payload,
                len,
                dest_qpn: dest.remote_qpn & 0x00ff_ffff,
                qkey: dest.remote_qkey,
                next_off: 0,
                started: false,
                all_sent: false,
                unacked: 0,
                first_seq: None,
                last_seq: 0,
                response: None,
                read_got: 0,
                failed: None,
                abandon: false,
                rnr_retries: 0,
                rnr_limit,
                done: false,
                ack_req_at: None,
                ack_req_tries: 0,
                posted_at: now,
            },
        );
        pdc.send_q.push_back(msg_id);
        Ok(())
    }

    /// Posts a receive work request.
    ///
    /// # Errors
    /// Unknown QP, or the queue is full.
    pub fn post_recv(&mut self, qpn: u32, wr: RecvWr) -> Result<(), PostError> {
        let qp = self
            .qps
            .get_mut(&qpn)
            .ok_or(PostError::Invalid("no such SRD QP"))?;
        if qp.error {
            let id = wr.wr_id;
            self.push_flush(
                qpn,
                id,
                WcOpcode::Recv,
                WcQueue::Recv,
                Gid::default(),
                Duration::ZERO,
            );
            return Ok(());
        }
        qp.rq.push(wr).map_err(|_| PostError::QueueFull)
    }

    /// Receive WQEs queued on a QP.
    pub fn recv_queue_len(&self, qpn: u32) -> usize {
        self.qps.get(&qpn).map_or(0, |q| q.rq.len())
    }

    /// The next completion.
    pub fn poll_completion(&mut self) -> Option<SrdCompletion> {
        self.completions.pop_front()
    }

    fn initiator_pdc(&mut self, peer: Gid) -> u16 {
        if let Some(&id) = self.initiator_by_peer.get(&peer) {
            match self.pdcs[usize::from(id)].as_ref() {
                // A closing context finishes its close on its own; new
                // work opens a fresh one.
                Some(p) if p.closing.is_some() => {
                    self.initiator_by_peer.remove(&peer);
                }
                _ => return id,
            }
        }
        let start = self.rng.random_range(0x1_0000u32..0x8000_0000);
        let id = self.alloc_pdc(peer, true, start);
        self.initiator_by_peer.insert(peer, id);
        id
    }

    fn alloc_pdc(&mut self, peer: Gid, initiator: bool, start: u32) -> u16 {
        let cc = Cc::new(self.cfg.cc, self.mtu());
        let slot = self
            .pdcs
            .iter()
            .skip(1)
            .position(|p| p.is_none())
            .map(|i| i + 1);
        let id = match slot {
            Some(i) => i,
            None => {
                self.pdcs.push(None);
                self.pdcs.len() - 1
            }
        };
        let id16 = u16::try_from(id).unwrap_or(u16::MAX);
        self.pdcs[id] = Some(Pdc::new(id16, peer, initiator, start, cc, self.cfg.paths));
        self.counters.pdcs_opened += 1;
        id16
    }

    // ----------------------------------------------------------------
    // receive path
    // ----------------------------------------------------------------

    /// Handles one UDP payload from `src` (its UDP source port is
    /// `src_port`). Poll transmits and completions afterwards.
    ///
    /// # Errors
    /// Why the datagram was dropped (counted in `dropped`).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        src: Gid,
        src_port: u16,
        datagram: &[u8],
        mem: &mut dyn PdMemory,
    ) -> Result<(), DropReason> {
        self.handle_datagram_ecn(now, src, src_port, datagram, false, mem)
    }

    /// [`Self::handle_datagram`] for a datagram whose IP header carried ECN
    /// congestion-experienced (`ce`, where the I/O layer can see it): the
    /// next ACK of its context echoes it (flag M) and the sender's window
    /// shrinks.
    ///
    /// # Errors
    /// Why the datagram was dropped (counted in `dropped`).
    pub fn handle_datagram_ecn(
        &mut self,
        now: Instant,
        src: Gid,
        src_port: u16,
        datagram: &[u8],
        ce: bool,
        mem: &mut dyn PdMemory,
    ) -> Result<(), DropReason> {
        self.counters.rcvd_pkts += 1;
        self.ce = ce;
        let r = self.dispatch(now, src, src_port, datagram, mem);
        self.ce = false;
        if r.is_err() {
            self.counters.dropped += 1;
        }
        r
    }

    fn dispatch(
        &mut self,
        now: Instant,
        src: Gid,
        port: u16,
        datagram: &[u8],
        mem: &mut dyn PdMemory,
    ) -> Result<(), DropReason> {
        let (pkt, payload) = UetPacketRepr::parse(datagram).map_err(|_| DropReason::Malformed)?;
        match pkt.pds {
            PdsRepr::Request(req) => {
                let id = self.rx_pdc(now, src, req.spdcid, req.dest, req.psn)?;
                self.touch(id, now);
                if self.ce {
                    self.counters.ecn_ce_rcvd += 1;
                    if let Some(p) = self.pdcs[usize::from(id)].as_mut() {
                        p.ce_echo = true;
                    }
                }
                self.on_request(now, id, port, &req, pkt.ses, payload, mem)
            }
            PdsRepr::Ack(ack) => {
                let id = self.pdc_for(src, ack.dpdcid, ack.spdcid)?;
                let rsp = match pkt.ses {
                    Some(SesRepr::Response(r)) => Some(r),
                    _ => None,
                };
                self.counters.acks_rcvd += 1;
                self.touch(id, now);
                self.on_ack(now, id, &ack, rsp);
                Ok(())
            }
            PdsRepr::Nack(nack) => {
                let id = self.pdc_for(src, nack.dpdcid, nack.spdcid)?;
                self.touch(id, now);
                self.on_nack(now, id, &nack);
                Ok(())
            }
            PdsRepr::Control(c) => {
                let Dest::Pdc(d) = c.dest else {
                    return Err(DropReason::Unexpected);
                };
                let id = match self.pdc_for(src, d, c.spdcid) {
                    Ok(id) => id,
                    Err(e) if c.ctrl == ControlType::Close => {
                        // Closed already (our ACK of the first CLOSE was
                        // lost): acknowledge again from the packet alone.
                        self.close_ack(src, port, d, c.spdcid, c.psn);
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                };
                self.touch(id, now);
                self.on_control(now, id, port, &c);
                Ok(())
            }
        }
    }

    /// The PDC a request belongs to, opening a target PDC on SYN.
    fn rx_pdc(
        &mut self,
        now: Instant,
        src: Gid,
        spdcid: u16,
        dest: Dest,
        psn: u32,
    ) -> Result<u16, DropReason> {
        match dest {
            Dest::Pdc(d) => self.pdc_for(src, d, spdcid),
            Dest::Syn { psn_offset, .. } => {
                if let Some(&id) = self.target_by_peer.get(&(src, spdcid)) {
                    return Ok(id);
                }
                if spdcid == 0 {
                    return Err(DropReason::Malformed);
                }
                // A late copy of a closed context's SYN packet must not open
                // a context and run its request a second time.
                if let Some(&(until, start, end)) = self.closed.get(&(src, spdcid)) {
                    if now < until && psn.wrapping_sub(start) < end.wrapping_sub(start) {
                        return Err(DropReason::UnknownPdc);
                    }
                }
                let start = psn.wrapping_sub(u32::from(psn_offset));
                let id = self.alloc_pdc(src, false, start);
                if let Some(p) = self.pdcs[usize::from(id)].as_mut() {
                    p.remote = Some(spdcid);
                }
                self.target_by_peer.insert((src, spdcid), id);
                Ok(id)
            }
        }
    }

    fn pdc_for(&mut self, src: Gid, local: u16, remote: u16) -> Result<u16, DropReason> {
        let p = self
            .pdcs
            .get_mut(usize::from(local))
            .and_then(|p| p.as_mut())
            .ok_or(DropReason::UnknownPdc)?;
        if p.peer != src {
            return Err(DropReason::UnknownPdc);
        }
        match p.remote {
            Some(r) if r != remote => Err(DropReason::UnknownPdc),
            Some(_) => Ok(local),
            None => {
                // The first word from the target: the context is established.
                p.remote = Some(remote);
                Ok(local)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_request(
        &mut self,
        now: Instant,
        id: u16,
        port: u16,
        req: &RequestRepr,
        ses: Option<SesRepr>,
        payload: &[u8],
        mem: &mut dyn PdMemory,
    ) -> Result<(), DropReason> {
        let window = u64::from(self.cfg.window);
        let pdc = self.pdcs[usize::from(id)]
            .as_mut()
            .ok_or(DropReason::UnknownPdc)?;
        let Some(seq) = pdc.unwrap(req.psn, pdc.cack_seq) else {
            self.counters.duplicates += 1;
            return Ok(());
        };
        // Beyond the window (never below it: those were received): dropped
        // before anything of the context changes.
        if seq >= pdc.cack_seq + window {
            return Err(DropReason::OutOfWindow);
        }
        // Forget SES responses the initiator has cleared.
        if let Some(clear) = pdc.unwrap(req.clear_psn(), pdc.cack_seq) {
            pdc.done.retain(|_, (_, last, _)| *last > clear);
        }
        if pdc.is_received(seq) {
            self.counters.duplicates += 1;
            let rsp = match ses {
                Some(SesRepr::Request(s)) => {
                    pdc.done.get(&s.msg_id).and_then(|&(rc, last, len)| {
                        (last == seq || rc != ReturnCode::OK || s.opcode != SesOpcode::READ)
                            .then(|| response(s.msg_id, rc, len, self.cfg.job_id))
                    })
                }
                _ => None,
            };
            self.owe_ack(id, seq, port, true);
            self.send_owed_ack(id, req.retx, rsp);
            return Ok(());
        }
        let outcome = match ses {
            Some(SesRepr::Request(s)) => self.target_request(now, id, seq, &s, payload, mem),
            Some(SesRepr::ResponseData(d)) => {
                self.read_data(now, id, &d, payload, mem);
                Outcome::Accept(None)
            }
            _ => return Err(DropReason::Unexpected),
        };
        match outcome {
            Outcome::Accept(rsp) => {
                if let Some(p) = self.pdcs[usize::from(id)].as_mut() {
                    p.mark_received(seq);
                }
                let urgent = rsp.is_some() || req.retx;
                self.owe_ack(id, seq, port, urgent);
                if urgent {
                    self.send_owed_ack(id, req.retx, rsp);
                }
            }
            Outcome::Rnr => {
                self.counters.rnr_nacks_sent += 1;
                let Some(p) = self.pdcs[usize::from(id)].as_ref() else {
                    return Ok(());
                };
                let nack = NackRepr {
                    flags: if req.retx { NACK_FLAG_RETX } else { 0 },
                    code: NackCode::NO_SES_MSG_AVAIL,
                    vendor_code: 0,
                    psn: req.psn,
                    spdcid: p.id,
                    dpdcid: p.remote.unwrap_or(0),
                    payload: self.cfg.rnr_hint.as_micros() as u32,
                };
                self.ctrl_q.push_back((
                    p.peer,
                    port,
                    UetPacketRepr {
                        pds: PdsRepr::Nack(nack),
                        ses: None,
                    },
                ));
            }
        }
        Ok(())
    }

    /// Adds received packet `seq` (from source port `port`) to the ACK
    /// context `id` owes, sending the owed one first if both would not fit
    /// in one SACK bitmap, and at once when it covers `ack_every` packets
    /// (unless `urgent`: the caller sends it at once, with what it carries).
    fn owe_ack(&mut self, id: u16, seq: u64, port: u16, urgent: bool) {
        let every = self.cfg.ack_every.max(1);
        let Some(p) = self.pdcs[usize::from(id)].as_mut() else {
            return;
        };
        if let Some(o) = p.owed {
            let lo = o.lo.min(seq).max(p.cack_seq);
            let hi = o.hi.max(seq);
            if hi >= p.cack_seq + 64 && hi - lo >= 64 {
                self.send_owed_ack(id, false, None);
            }
        }
        let Some(p) = self.pdcs[usize::from(id)].as_mut() else {
            return;
        };
        let o = p.owed.get_or_insert(OwedAck {
            trigger: seq,
            lo: seq,
            hi: seq,
            port,
            count: 0,
        });
        o.trigger = seq;
        o.lo = o.lo.min(seq);
        o.hi = o.hi.max(seq);
        o.port = port;
        o.count += 1;
        if urgent {
            return;
        }
        if o.count >= every {
            self.send_owed_ack(id, false, None);
        } else if o.count == 1 {
            self.acks_owed.push(id);
        }
    }

    /// Sends the ACK context `id` owes (if any), flagged `retx` and
    /// carrying `rsp`: cumulative PSN, the last packet received as trigger,
    /// and a SACK bitmap based at the cumulative point, or at the lowest
    /// packet it covers when that lies beyond the first 64.
    fn send_owed_ack(&mut self, id: u16, retx: bool, rsp: Option<SesResponseRepr>) {
        let Some(p) = self.pdcs[usize::from(id)].as_mut() else {
            return;
        };
        let Some(o) = p.owed.take() else {
            return;
        };
        let base = if o.hi < p.cack_seq + 64 {
            p.cack_seq
        } else {
            o.lo.max(p.cack_seq)
        };
        let sack_off = (base - p.cack_seq + 1).min(i16::MAX as u64) as i16;
        self.push_ack(id, o.trigger, o.port, retx, rsp, base, sack_off);
    }

    /// An ACK of everything received so far (ACK requests).
    fn ack_now(&mut self, id: u16, port: u16, rsp: Option<SesResponseRepr>) {
        let Some(p) = self.pdcs[usize::from(id)].as_mut() else {
            return;
        };
        if let Some(o) = p.owed.as_mut() {
            o.port = port;
            self.send_owed_ack(id, false, rsp);
            return;
        }
        let (trigger, base) = (p.cack_seq.wrapping_sub(1), p.cack_seq);
        self.push_ack(id, trigger, port, false, rsp, base, 1);
    }

    #[allow(clippy::too_many_arguments)]
    fn push_ack(
        &mut self,
        id: u16,
        trigger: u64,
        port: u16,
        retx: bool,
        rsp: Option<SesResponseRepr>,
        sack_base: u64,
        sack_off: i16,
    ) {
        let Some(p) = self.pdcs[usize::from(id)].as_mut() else {
            return;
        };
        let ce = core::mem::take(&mut p.ce_echo);
        let cack = p.cack_seq.wrapping_sub(1);
        let off = (trigger as i64 - cack as i64).clamp(i64::from(i16::MIN), i64::from(i16::MAX));
        let ack = AckRepr {
            next: if rsp.is_some() {
                NextHeader::Response
            } else {
                NextHeader::None
            },
            flags: if retx { ACK_FLAG_RETX } else { 0 } | if ce { ACK_FLAG_M } else { 0 },
            ack_psn_offset: off as i16,
            cack_psn: p.psn(cack),
            spdcid: p.id,
            dpdcid: p.remote.unwrap_or(0),
            cc: Some(AckCcRepr {
                cc_type: CC_TYPE_DELAY,
                cc_flags: 0,
                mpr: (self.cfg.window / 128).min(255) as u8,
                sack_psn_offset: sack_off,
                sack_bitmap: p.sack_bitmap(sack_base),
                ack_cc_state: 0,
            }),
        };
        self.counters.acks_sent += 1;
        self.ctrl_q.push_back((
            p.peer,
            port,
            UetPacketRepr {
                pds: PdsRepr::Ack(ack),
                ses: rsp.map(SesRepr::Response),
            },
        ));
    }

    /// A SES request at the target.
    fn target_request(
        &mut self,
        now: Instant,
        id: u16,
        seq: u64,
        s: &SesRequestRepr,
        payload: &[u8],
        mem: &mut dyn PdMemory,
    ) -> Outcome {
        let _ = now;
        let mtu = self.mtu() as u64;
        let job_id = self.cfg.job_id;
        let Some(pdc) = self.pdcs[usize::from(id)].as_mut() else {
            return Outcome::Accept(None);
        };
        let key = s.msg_id;
        let fresh = !pdc.in_msgs.contains_key(&key);
        if fresh {
            pdc.done.remove(&key);
            let qpn = (u32::from(s.pid_on_fep) << 12) | u32::from(s.resource_index);
            let qkey = (s.memory_key >> 32) as u32;
            let rc = match self.qps.get(&qpn) {
                Some(qp) if qp.cfg.qkey == qkey && !qp.error => ReturnCode::OK,
                _ => ReturnCode::NO_MATCH,
            };
            pdc.in_msgs.insert(
                key,
                InMsg {
                    opcode: s.opcode.0,
                    qpn,
                    src_qpn: s.initiator,
                    total: u64::from(s.request_length),
                    got: 0,
                    imm: None,
                    rc,
                },
            );
        }
        let peer = pdc.peer;
        let m = pdc.in_msgs.get_mut(&key).expect("inserted above");
        if s.has(SES_FLAG_SOM) && s.has(SES_FLAG_HD) {
            m.imm = Some(s.header_data as u32);
        }
        if s.has(SES_FLAG_IE) && m.rc == ReturnCode::OK {
            m.rc = ReturnCode::INITIATOR_ERR;
        }
        let len = payload.len() as u64;
        let completes = m.got + len >= m.total;
        let off = u64::from(s.message_offset());
        let mut recv_wc = None;
        if m.rc == ReturnCode::OK {
            match s.opcode {
                SesOpcode::SEND => {
                    if m.total > mtu || !(s.has(SES_FLAG_SOM) && s.has(SES_FLAG_EOM)) {
                        m.rc = ReturnCode::TOO_LONG;
                    } else {
                        let Some(qp) = self.qps.get_mut(&m.qpn) else {
                            return Outcome::Accept(None);
                        };
                        let Some(wqe) = qp.rq.pop() else {
                            if fresh {
                                pdc.in_msgs.remove(&key);
                            }
                            return Outcome::Rnr;
                        };
                        let r = match mem.memory(m.qpn) {
                            Some(mm) => sgl::scatter(mm, &wqe.sgl, 0, payload),
                            None => Err(MemError::InvalidKey),
                        };
                        let (status, ven) = match r {
                            Ok(()) => (WcStatus::Success, vendor::OK),
                            Err(MemError::OutOfBounds) => {
                                m.rc = ReturnCode::TOO_LONG;
                                (WcStatus::LocLenErr, vendor::LOCAL_ERROR_BAD_LENGTH)
                            }
                            Err(_) => {
                                m.rc = ReturnCode(0x0e);
                                (WcStatus::LocProtErr, vendor::LOCAL_ERROR_INVALID_LKEY)
                            }
                        };
                        let mut wc = Completion::new(
                            wqe.wr_id,
                            status,
                            WcOpcode::Recv,
                            WcQueue::Recv,
                            m.qpn,
                        );
                        if status == WcStatus::Success {
                            wc.byte_len = len as u32;
                        }
                        wc.imm = m.imm;
                        wc.src_qp = m.src_qpn;
                        wc.vendor_err = ven;
                        recv_wc = Some(wc);
                    }
                }
                SesOpcode::WRITE => {
                    let Some(qp) = self.qps.get_mut(&m.qpn) else {
                        return Outcome::Accept(None);
                    };
                    let needs_wqe = completes && m.imm.is_some() && !qp.cfg.unsolicited_write_recv;
                    if needs_wqe && !qp.rq.has_wqe() {
                        if fresh {
                            pdc.in_msgs.remove(&key);
                        }
                        return Outcome::Rnr;
                    }
                    let rkey = s.memory_key as u32;
                    let r = match mem.memory(m.qpn) {
                        Some(mm) => mm.write(
                            MemKey::Remote(rkey),
                            s.buffer_offset.wrapping_add(off),
                            payload,
                        ),
                        None => Err(MemError::InvalidKey),
                    };
                    if let Err(e) = r {
                        m.rc = rc_of(e);
                    } else if completes && m.imm.is_some() {
                        let (wr_id, unsolicited) = if needs_wqe {
                            (qp.rq.pop().map_or(0, |w| w.wr_id), false)
                        } else {
                            (0, true)
                        };
                        let mut wc = Completion::new(
                            wr_id,
                            WcStatus::Success,
                            WcOpcode::RecvRdmaWithImm,
                            WcQueue::Recv,
                            m.qpn,
                        );
                        wc.byte_len = m.total as u32;
                        wc.imm = m.imm;
                        wc.src_qp = m.src_qpn;
                        wc.unsolicited = unsolicited;
                        recv_wc = Some(wc);
                    }
                }
                SesOpcode::READ => {
                    let rkey = s.memory_key as u32;
                    let r = match mem.memory(m.qpn) {
                        Some(mm) => mm.check(MemKey::Remote(rkey), s.buffer_offset, m.total, false),
                        None => Err(MemError::InvalidKey),
                    };
                    match r {
                        Ok(()) => {
                            pdc.reads.insert(
                                key,
                                ReadJob {
                                    qpn: m.qpn,
                                    rkey,
                                    addr: s.buffer_offset,
                                    len: m.total,
                                    next_off: 0,
                                    unacked: 0,
                                    failed: false,
                                },
                            );
                            pdc.read_q.push_back(key);
                        }
                        Err(e) => m.rc = rc_of(e),
                    }
                }
                _ => m.rc = ReturnCode::UNSUPPORTED_OP,
            }
        }
        m.got += len;
        let mut out = Outcome::Accept(None);
        // A READ request is one packet without payload (`total` is the
        // length to read): it is whole on arrival. Without this a READ the
        // target refused (a bad rkey) was never answered, and its initiator
        // waited forever.
        if m.got >= m.total || m.opcode == SesOpcode::READ.0 {
            let m = pdc.in_msgs.remove(&key).expect("present");
            pdc.done.insert(key, (m.rc, seq, m.total as u32));
            if m.opcode != SesOpcode::READ.0 || m.rc != ReturnCode::OK {
                out = Outcome::Accept(Some(response(key, m.rc, m.total as u32, job_id)));
            }
        }
        if let Some(wc) = recv_wc {
            if wc.status != WcStatus::Success {
                self.counters.completion_errors += 1;
            }
            self.completions.push_back(SrdCompletion {
                wc,
                src: peer,
                latency: Duration::ZERO,
            });
        }
        out
    }

    /// READ response data at the initiator.
    fn read_data(
        &mut self,
        now: Instant,
        id: u16,
        d: &SesResponseDataRepr,
        payload: &[u8],
        mem: &mut dyn PdMemory,
    ) {
        let Some(pdc) = self.pdcs[usize::from(id)].as_mut() else {
            return;
        };
        let Some(m) = pdc.msgs.get_mut(&d.msg_id) else {
            return;
        };
        if !matches!(m.op, MsgOp::Read { .. }) || m.done {
            return;
        }
        if d.return_code != ReturnCode::OK {
            m.failed.get_or_insert(status_of(d.return_code));
        } else if let Payload::Sgl(sgl) = &m.payload {
            let r = match mem.memory(m.qpn) {
                Some(mm) => sgl::scatter(mm, sgl, u64::from(d.message_offset), payload),
                None => Err(MemError::InvalidKey),
            };
            if r.is_err() {
                m.failed
                    .get_or_insert((WcStatus::LocProtErr, vendor::LOCAL_ERROR_INVALID_LKEY));
            }
            m.read_got += payload.len() as u64;
        }
        self.try_complete(now, id, d.msg_id);
    }

    fn on_ack(&mut self, now: Instant, id: u16, ack: &AckRepr, rsp: Option<SesResponseRepr>) {
        let reo_max = self.cfg.reorder_max_mult.max(1);
        let Some(pdc) = self.pdcs[usize::from(id)].as_mut() else {
            return;
        };
        if pdc.closing.is_some() && ack.ack_psn() == pdc.psn(pdc.next_seq) {
            self.free_pdc(id);
            return;
        }
        pdc.ever_acked = true;
        let mut sc = core::mem::take(&mut self.ack_scratch);
        let AckScratch {
            acked,
            touched,
            lost,
            lost_paths,
            ids,
        } = &mut sc;
        let reference = pdc.unacked.keys().next().copied().unwrap_or(pdc.next_seq);
        // Cumulative point: may be "start - 1" (nothing yet), i.e. seq -1.
        let cack_next = pdc
            .unwrap(ack.cack_psn.wrapping_add(1), reference)
            .unwrap_or(0);
        acked.extend(pdc.unacked.range(..cack_next).map(|(k, _)| *k));
        let trigger = pdc.unwrap(ack.ack_psn(), reference);
        if let Some(t) = trigger {
            if pdc.unacked.contains_key(&t) {
                acked.push(t);
            }
        }
        if let Some(cc) = ack.cc {
            let base = cack_next as i64 + i64::from(cc.sack_psn_offset) - 1;
            for i in 0..64 {
                if cc.sack_bitmap & (1 << i) != 0 {
                    if let Ok(s) = u64::try_from(base + i) {
                        if s >= cack_next && pdc.unacked.contains_key(&s) {
                            acked.push(s);
                        }
                    }
                }
            }
        }
        let mut bytes = 0;
        let mut rtt = None;
        let mut spurious = false;
        for s in acked.drain(..) {
            let Some(pkt) = pdc.unacked.remove(&s) else {
                continue;
            };
            if pkt.in_flight {
                pdc.inflight -= pkt.bytes;
            }
            // Sent again, but this ACK (not flagged as answering a
            // retransmission; those go out at once) covers the first copy.
            if pkt.retx > 0 && ack.flags & ACK_FLAG_RETX == 0 && pkt.rnr_at.is_none() {
                self.counters.spurious_retransmits += 1;
                spurious = true;
            }
            bytes += pkt.bytes;
            // Karn, refined: an ACK not flagged as answering a retransmitted
            // or duplicate packet answers the first copy, so it times that
            // copy even if a (spurious) retransmission followed it. Without
            // this, an initial RTO below the RTT times out every packet and
            // no sample ever arrives (issue 7).
            if Some(s) == trigger && ack.flags & ACK_FLAG_RETX == 0 && pkt.rnr_at.is_none() {
                rtt = Some(now.saturating_since(pkt.first_sent_at));
            }
            if pkt.sent_at > pdc.rack_sent {
                pdc.rack_sent = pkt.sent_at;
            }
            pdc.path_delivered(pkt.path, pkt.sent_at);
            touched.push(pkt.seg);
        }
        if rtt.is_some() {
            pdc.rto_backoff = 0;
        }
        pdc.cc.on_ack(now, bytes, rtt);
        if ack.flags & ACK_FLAG_M != 0 {
            self.counters.ecn_echoes_rcvd += 1;
            pdc.cc.on_ecn(now);
        }
        // RACK's adaptive reordering window: widen it when a retransmission
        // proves needless, narrow it again after a long clean stretch.
        if spurious {
            pdc.reo_mult = (pdc.reo_mult * 2).min(reo_max);
            pdc.reo_clean = 0;
        } else {
            pdc.reo_clean += touched.len() as u32;
            if pdc.reo_clean >= 1024 {
                pdc.reo_mult = (pdc.reo_mult / 2).max(1);
                pdc.reo_clean = 0;
            }
        }
        // RACK: a packet sent well before one that got through is lost.
        if let Some(srtt) = pdc.cc.srtt() {
            let reo = reo_window(&self.cfg, srtt, pdc.reo_mult);
            let rack = pdc.rack_sent;
            for (s, p) in pdc.unacked.iter_mut() {
                if p.in_flight && p.sent_at + reo < rack && now >= p.sent_at + srtt + reo {
                    p.in_flight = false;
                    p.lost = true;
                    pdc.inflight -= p.bytes;
                    lost.push(*s);
                    lost_paths.push(p.path);
                }
            }
            // Losses piling up on one path while others deliver: a black
            // hole, not random loss; avoid it without waiting for its RTO.
            for path in lost_paths.drain(..) {
                if pdc.path_lost(path)
                    && pdc.penalize(path, now, self.cfg.path_penalty, self.cfg.path_penalty_max)
                {
                    self.counters.paths_avoided += 1;
                }
            }
            self.counters.fast_retransmits += lost.len() as u64;
            pdc.retx_q.extend(lost.drain(..));
        }
        for seg in touched.drain(..) {
            match seg {
                Seg::Msg { msg_id, .. } => {
                    if let Some(m) = pdc.msgs.get_mut(&msg_id) {
                        m.unacked = m.unacked.saturating_sub(1);
                    }
                    ids.push(msg_id);
                }
                Seg::ReadRsp { msg_id, .. } => {
                    if let Some(j) = pdc.reads.get_mut(&msg_id) {
                        j.unacked = j.unacked.saturating_sub(1);
                        if j.unacked == 0
                            && j.next_off >= j.len
                            && (j.len > 0 || j.next_off > 0 || j.failed)
                        {
                            pdc.reads.remove(&msg_id);
                        }
                    }
                }
            }
        }
        if let Some(r) = rsp {
            if let Some(m) = pdc.msgs.get_mut(&r.msg_id) {
                m.response.get_or_insert(r.return_code);
                ids.push(r.msg_id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        for &m in ids.iter() {
            self.try_complete(now, id, m);
        }
        ids.clear();
        self.ack_scratch = sc;
        // A SES response rides on the ACK sent when a message's last packet
        // arrives. An ACK for packets sent well after that one, while the
        // response is still missing, means that ACK was lost: ask now
        // rather than after an RTO.
        let (Some(t), Some(pdc)) = (trigger, self.pdcs[usize::from(id)].as_mut()) else {
            return;
        };
        if pdc.awaiting_rsp > 0 {
            for m in pdc.msgs.values_mut() {
                if let Some(r) = m.ack_req_at {
                    if m.ack_req_tries == 0 && r > now && t >= m.last_seq + RSP_LOST_AFTER {
                        m.ack_req_at = Some(now);
                    }
                }
            }
        }
    }

    fn on_nack(&mut self, now: Instant, id: u16, nack: &NackRepr) {
        let base = self.cfg.rnr_backoff;
        let max = self.cfg.rnr_backoff_max;
        let Some(pdc) = self.pdcs[usize::from(id)].as_mut() else {
            return;
        };
        let reference = pdc.unacked.keys().next().copied().unwrap_or(pdc.next_seq);
        let Some(seq) = pdc.unwrap(nack.psn, reference) else {
            return;
        };
        if nack.code != NackCode::NO_SES_MSG_AVAIL {
            return;
        }
        self.counters.rnr_nacks_rcvd += 1;
        let Some(pkt) = pdc.unacked.get_mut(&seq) else {
            return;
        };
        if !pkt.in_flight {
            return; // already waiting (a NACK for another copy)
        }
        pkt.in_flight = false;
        pdc.inflight -= pkt.bytes;
        let Seg::Msg { msg_id, .. } = pkt.seg else {
            return;
        };
        let Some(m) = pdc.msgs.get_mut(&msg_id) else {
            pdc.retx_q.push_back(seq);
            return;
        };
        m.rnr_retries = m.rnr_retries.saturating_add(1);
        if m.rnr_limit != 7 && m.rnr_retries > m.rnr_limit {
            // Give up: complete with RNR_RETRY_EXC now; the packet goes out
            // once more flagged "initiator error" so the target consumes
            // its PSN without delivering.
            m.failed
                .get_or_insert((WcStatus::RnrRetryExcErr, vendor::REMOTE_ERROR_RNR));
            m.abandon = true;
            pkt.lost = true;
            pdc.retx_q.push_back(seq);
            self.try_complete(now, id, msg_id);
        } else {
            let shift = u32::from(m.rnr_retries.min(16)) - 1;
            let hint = Duration::from_micros(u64::from(nack.payload));
            let wait = (base * (1u32 << shift.min(16))).min(max).max(hint.min(max));
            pkt.rnr_at = Some(now + wait);
        }
    }

    fn on_control(&mut self, now: Instant, id: u16, port: u16, c: &ControlRepr) {
        if c.ctrl == ControlType::Close {
            // Close once every PSN before the CLOSE's arrived and nothing
            // of ours (READ data) is outstanding; else the initiator asks
            // again.
            let Some(p) = self.pdcs[usize::from(id)].as_ref() else {
                return;
            };
            let done = p.unwrap(c.psn, p.cack_seq) == Some(p.cack_seq)
                && p.rcvd.is_empty()
                && p.unacked.is_empty()
                && p.reads.is_empty()
                && !p.initiator;
            if done {
                let (peer, local, remote) = (p.peer, p.id, p.remote.unwrap_or(0));
                let span = (p.start_psn, c.psn);
                self.close_ack(peer, port, local, remote, c.psn);
                self.free_pdc(id);
                // Quarantine the closed context's PSNs for a while.
                let q = self.cfg.max_rto * 10;
                self.closed.retain(|_, v| v.0 > now);
                self.closed
                    .insert((peer, remote), (now + q, span.0, span.1));
            }
            return;
        }
        if c.ctrl != ControlType::AckRequest {
            return;
        }
        let job = self.cfg.job_id;
        let Some(p) = self.pdcs[usize::from(id)].as_ref() else {
            return;
        };
        let msg_id = c.payload as u16;
        let rsp = p
            .done
            .get(&msg_id)
            .map(|&(rc, _, len)| response(msg_id, rc, len, job));
        self.ack_now(id, port, rsp);
    }

    fn touch(&mut self, id: u16, now: Instant) {
        if let Some(p) = self.pdcs[usize::from(id)].as_mut() {
            p.last_active = now;
        }
    }

    /// The ACK of a CLOSE with PSN `psn`: cumulative up to the PSN before
    /// it, triggered by it (from our context `local` to the peer's
    /// `remote`).
    fn close_ack(&mut self, peer: Gid, port: u16, local: u16, remote: u16, psn: u32) {
        let ack = AckRepr {
            next: NextHeader::None,
            flags: 0,
            ack_psn_offset: 1,
            cack_psn: psn.wrapping_sub(1),
            spdcid: local,
            dpdcid: remote,
            cc: None,
        };
        self.counters.acks_sent += 1;
        self.ctrl_q.push_back((
            peer,
            port,
            UetPacketRepr {
                pds: PdsRepr::Ack(ack),
                ses: None,
            },
        ));
    }

    /// Forgets context `id` (closed).
    fn free_pdc(&mut self, id: u16) {
        let Some(p) = self.pdcs[usize::from(id)].take() else {
            return;
        };
        self.counters.pdcs_closed += 1;
        if p.initiator {
            if self.initiator_by_peer.get(&p.peer) == Some(&id) {
                self.initiator_by_peer.remove(&p.peer);
            }
        } else if let Some(r) = p.remote {
            if self.target_by_peer.get(&(p.peer, r)) == Some(&id) {
                self.target_by_peer.remove(&(p.peer, r));
            }
        }
    }

    fn try_complete(&mut self, now: Instant, id: u16, msg_id: u16) {
        let Some(pdc) = self.pdcs[usize::from(id)].as_mut() else {
            return;
        };
        let rto = rto_of(&self.cfg, pdc);
        let Some(m) = pdc.msgs.get_mut(&msg_id) else {
            return;
        };
        if !m.done {
            let status = if let Some(f) = m.failed {
                Some(f)
            } else if m.all_sent && m.unacked == 0 {
                match (m.op, m.response) {
                    (_, Some(rc)) if rc != ReturnCode::OK => Some(status_of(rc)),
                    (MsgOp::Read { .. }, _) if m.read_got >= m.len => {
                        Some((WcStatus::Success, vendor::OK))
                    }
                    (MsgOp::Read { .. }, _) => None,
                    (_, Some(_)) => Some((WcStatus::Success, vendor::OK)),
                    (_, None) => None,
                }
            } else {
                None
            };
            if let Some((status, vendor_err)) = status {
                m.done = true;
                if m.ack_req_at.take().is_some() {
                    pdc.awaiting_rsp = pdc.awaiting_rsp.saturating_sub(1);
                }
                let opcode = opcode_of(m.op);
                if let Some(qp) = self.qps.get_mut(&m.qpn) {
                    qp.outstanding = qp.outstanding.saturating_sub(1);
                }
                if status != WcStatus::Success {
                    self.counters.completion_errors += 1;
                }
                if m.signaled || status != WcStatus::Success {
                    let mut wc = Completion::new(m.wr_id, status, opcode, WcQueue::Send, m.qpn);
                    if opcode == WcOpcode::RdmaRead {
                        wc.byte_len = m.len as u32;
                    }
                    wc.vendor_err = vendor_err;
                    self.completions.push_back(SrdCompletion {
                        wc,
                        src: pdc.peer,
                        latency: now.saturating_since(m.posted_at),
                    });
                }
            } else if m.all_sent
                && m.unacked == 0
                && m.ack_req_at.is_none()
                && !matches!(m.op, MsgOp::Read { .. })
            {
                m.ack_req_at = Some(now + rto);
                pdc.awaiting_rsp += 1;
            }
        }
        if m.done && m.unacked == 0 && (m.all_sent || m.failed.is_some()) {
            let abandoned_unsent = !m.all_sent;
            if !abandoned_unsent {
                pdc.msgs.remove(&msg_id);
            }
        }
    }

    // ----------------------------------------------------------------
    // timers
    // ----------------------------------------------------------------

    /// When [`Self::handle_timeout`] wants to be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        for p in self.pdcs.iter().flatten() {
            let rto = rto_of(&self.cfg, p);
            for pkt in p.unacked.values() {
                if pkt.in_flight {
                    let exp = pkt.timeouts.max(p.rto_backoff);
                    at(pkt.sent_at + backoff(rto, exp, self.cfg.max_rto));
                } else if let Some(r) = pkt.rnr_at {
                    at(r);
                }
            }
            for m in p.msgs.values() {
                if let Some(r) = m.ack_req_at {
                    at(r);
                }
            }
            match (p.closing, self.cfg.idle_close) {
                (Some((r, _)), _) => at(r),
                (None, Some(idle)) if p.is_idle() => at(p.last_active + idle),
                _ => {}
            }
        }
        t
    }

    /// Fires the timers due at `now`: retransmission timeouts (which avoid
    /// the path for a while and, past the retry limit, reset the context),
    /// RNR backoffs, SES-response requests. A spurious call is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut reset = Vec::new();
        let mut ack_reqs = Vec::new();
        let mut penalize = Vec::new();
        let mut closes = Vec::new();
        let mut forget = Vec::new();
        for p in self.pdcs.iter_mut().flatten() {
            let rto = rto_of(&self.cfg, p);
            let mut timed_out = false;
            let mut congestion = false;
            let mut dead = false;
            let mut lost = Vec::new();
            for (s, pkt) in p.unacked.iter_mut() {
                if pkt.in_flight {
                    let exp = pkt.timeouts.max(p.rto_backoff);
                    if now >= pkt.sent_at + backoff(rto, exp, self.cfg.max_rto) {
                        // Congestion only if nothing sent after it got
                        // through: otherwise the loss is its path's.
                        congestion |= pkt.sent_at >= p.rack_sent;
                        pkt.timeouts += 1;
                        if pkt.timeouts > self.cfg.max_retries {
                            dead = true;
                        }
                        pkt.in_flight = false;
                        pkt.lost = true;
                        p.inflight -= pkt.bytes;
                        penalize.push(pkt.path);
                        timed_out = true;
                        lost.push(*s);
                    }
                } else if pkt.rnr_at.is_some_and(|r| now >= r) {
                    pkt.rnr_at = None;
                    pkt.lost = true;
                    lost.push(*s);
                }
            }
            for path in penalize.drain(..) {
                if p.penalize(path, now, self.cfg.path_penalty, self.cfg.path_penalty_max) {
                    self.counters.paths_avoided += 1;
                }
            }
            if timed_out {
                p.rto_backoff = (p.rto_backoff + 1).min(6);
                self.counters.timeouts += 1;
                // Before the first RTT sample a timeout says only that the
                // initial RTO was shorter than the round trip, not that the
                // network is congested: keep the window (and slow start).
                if congestion && p.cc.srtt().is_some() {
                    p.cc.on_timeout(now);
                }
            }
            p.retx_q.extend(lost);
            for (id, m) in p.msgs.iter_mut() {
                if m.ack_req_at.is_some_and(|r| now >= r) {
                    m.ack_req_tries += 1;
                    if m.ack_req_tries > self.cfg.max_retries {
                        dead = true;
                    }
                    m.ack_req_at = Some(now + backoff(rto, m.ack_req_tries, self.cfg.max_rto));
                    ack_reqs.push((p.id, *id));
                }
            }
            if dead {
                reset.push(p.id);
            }
            // Idle: close (CLOSE carries the next PSN; the target ACKs it
            // once everything before it arrived), retried like a packet.
            let idle_due = self
                .cfg
                .idle_close
                .is_some_and(|i| p.is_idle() && now >= p.last_active + i);
            match p.closing {
                Some((r, tries)) if now >= r => {
                    if tries >= self.cfg.max_retries {
                        forget.push(p.id);
                    } else {
                        p.closing =
                            Some((now + backoff(rto, tries + 1, self.cfg.max_rto), tries + 1));
                        closes.push((p.id, true));
                    }
                }
                None if idle_due => {
                    p.closing = Some((now + rto, 0));
                    closes.push((p.id, false));
                }
                _ => {}
            }
        }
        for (id, retx) in closes {
            let Some(p) = self.pdcs[usize::from(id)].as_ref() else {
                continue;
            };
            let Some(remote) = p.remote else { continue };
            let c = ControlRepr {
                ctrl: ControlType::Close,
                retx,
                ack_req: true,
                opaque: 0,
                psn: p.psn(p.next_seq),
                spdcid: p.id,
                dest: Dest::Pdc(remote),
                payload: 0,
            };
            self.ctrl_q.push_back((
                p.peer,
                ENTROPY_BASE_PORT,
                UetPacketRepr {
                    pds: PdsRepr::Control(c),
                    ses: None,
                },
            ));
        }
        for id in forget {
            // The peer never confirmed: nothing was outstanding, forget it.
            self.free_pdc(id);
        }
        for (pdc, msg) in ack_reqs {
            let Some(p) = self.pdcs[usize::from(pdc)].as_ref() else {
                continue;
            };
            let Some(remote) = p.remote else { continue };
            self.counters.ack_requests += 1;
            let c = ControlRepr {
                ctrl: ControlType::AckRequest,
                retx: false,
                ack_req: true,
                opaque: 0,
                psn: p.psn(p.next_seq.wrapping_sub(1)),
                spdcid: p.id,
                dest: Dest::Pdc(remote),
                payload: u32::from(msg),
            };
            let port = ENTROPY_BASE_PORT;
            self.ctrl_q.push_back((
                p.peer,
                port,
                UetPacketRepr {
                    pds: PdsRepr::Control(c),
                    ses: None,
                },
            ));
        }
        for id in reset {
            self.reset_pdc(now, id);
        }
    }

    /// The peer stopped answering: complete every message of the context
    /// with the error EFA reports (`IBV_WC_RESP_TIMEOUT_ERR`, vendor error
    /// "unresponsive remote", or "unreachable remote" if it never
    /// answered) and forget the context; the next work request to that
    /// peer opens a fresh one.
    fn reset_pdc(&mut self, now: Instant, id: u16) {
        let Some(p) = self.pdcs[usize::from(id)].take() else {
            return;
        };
        self.counters.pdcs_reset += 1;
        if p.initiator {
            self.initiator_by_peer.remove(&p.peer);
        } else if let Some(r) = p.remote {
            self.target_by_peer.remove(&(p.peer, r));
        }
        let ven = if p.ever_acked {
            vendor::LOCAL_ERROR_UNRESP_REMOTE
        } else {
            vendor::LOCAL_ERROR_UNREACH_REMOTE
        };
        for m in p.msgs.into_values() {
            if m.done {
                continue;
            }
            if let Some(qp) = self.qps.get_mut(&m.qpn) {
                qp.outstanding = qp.outstanding.saturating_sub(1);
            }
            self.counters.completion_errors += 1;
            let opcode = opcode_of(m.op);
            let mut wc = Completion::new(
                m.wr_id,
                WcStatus::RespTimeoutErr,
                opcode,
                WcQueue::Send,
                m.qpn,
            );
            wc.vendor_err = ven;
            self.completions.push_back(SrdCompletion {
                wc,
                src: p.peer,
                latency: now.saturating_since(m.posted_at),
            });
        }
    }

    // ----------------------------------------------------------------
    // transmit path
    // ----------------------------------------------------------------

    /// Writes the next packet into `buf` (at least [`Self::max_datagram`]
    /// bytes) and says where it goes; `None` when nothing is ready (the
    /// window or the congestion window may be full: wait for input or a
    /// timeout).
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        mem: &mut dyn PdMemory,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        while let Some(id) = self.acks_owed.pop() {
            self.send_owed_ack(id, false, None);
        }
        if let Some((dst, port, pkt)) = self.ctrl_q.pop_front() {
            let len = pkt.emit(buf, &[]);
            self.counters.sent_pkts += 1;
            return Some(Transmit {
                dst,
                src_port: port,
                len,
            });
        }
        let n = self.pdcs.len();
        for k in 0..n {
            let id = (self.rr + k) % n;
            if self.pdcs[id].is_none() {
                continue;
            }
            if let Some(t) = self.transmit_from(now, id as u16, mem, buf) {
                self.rr = id + 1;
                self.counters.sent_pkts += 1;
                return Some(t);
            }
        }
        None
    }

    fn transmit_from(
        &mut self,
        now: Instant,
        id: u16,
        mem: &mut dyn PdMemory,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        let mtu = self.mtu() as u64;
        let window = u64::from(self.cfg.window);
        let pdc = self.pdcs[usize::from(id)].as_mut()?;
        // 1. retransmissions
        while let Some(seq) = pdc.retx_q.pop_front() {
            let Some(pkt) = pdc.unacked.get(&seq) else {
                continue;
            };
            if !pkt.lost {
                continue;
            }
            let seg = pkt.seg;
            let old_path = pkt.path;
            let path = pdc.pick_path(now, Some(old_path));
            let pkt = pdc.unacked.get_mut(&seq).expect("checked");
            pkt.lost = false;
            pkt.in_flight = true;
            pkt.retx += 1;
            pkt.sent_at = now;
            pkt.path = path;
            pdc.inflight += pkt.bytes;
            self.counters.retransmitted_pkts += 1;
            return self.emit_seg(now, id, seq, seg, path, true, mem, buf);
        }
        // 2. new packets, within the PSN window and the congestion window
        if pdc.next_seq - pdc.clear_floor() >= window {
            return None;
        }
        if pdc.inflight > 0 && pdc.inflight + mtu > pdc.cc.cwnd() {
            return None;
        }
        let seg = if let Some(&msg_id) = pdc.read_q.front() {
            let j = pdc.reads.get_mut(&msg_id)?;
            let len = (j.len - j.next_off).min(mtu);
            let seg = Seg::ReadRsp {
                msg_id,
                off: j.next_off,
                len: len as u32,
            };
            j.next_off += len;
            j.unacked += 1;
            if j.next_off >= j.len {
                pdc.read_q.pop_front();
            }
            seg
        } else {
            let msg_id = *pdc.send_q.front()?;
            let m = pdc.msgs.get_mut(&msg_id)?;
            if !m.started {
                m.started = true;
                // Check the local buffers before the first packet leaves.
                let need_write = matches!(m.op, MsgOp::Read { .. });
                if let Payload::Sgl(sgl) = &m.payload {
                    let ok = match mem.memory(m.qpn) {
                        Some(mm) => sgl.iter().all(|s| {
                            mm.check(
                                MemKey::Local(s.lkey),
                                s.addr,
                                u64::from(s.length),
                                need_write,
                            )
                            .is_ok()
                        }),
                        None => false,
                    };
                    if !ok {
                        m.failed = Some((WcStatus::LocProtErr, vendor::LOCAL_ERROR_INVALID_LKEY));
                        m.all_sent = true;
                        pdc.send_q.pop_front();
                        self.try_complete(now, id, msg_id);
                        return None;
                    }
                }
            }
            let len = match m.op {
                MsgOp::Read { .. } => 0,
                _ => (m.len - m.next_off).min(mtu),
            };
            let seg = Seg::Msg {
                msg_id,
                off: m.next_off,
                len: len as u32,
            };
            m.next_off += len;
            m.unacked += 1;
            if m.next_off >= m.len || matches!(m.op, MsgOp::Read { .. }) {
                m.all_sent = true;
                pdc.send_q.pop_front();
            }
            seg
        };
        let seq = pdc.next_seq;
        pdc.next_seq += 1;
        if let Seg::Msg { msg_id, .. } = seg {
            if let Some(m) = pdc.msgs.get_mut(&msg_id) {
                m.first_seq.get_or_insert(seq);
                m.last_seq = seq;
            }
        }
        let bytes = match seg {
            Seg::Msg { len, .. } | Seg::ReadRsp { len, .. } => u64::from(len),
        }
        .max(1);
        let path = pdc.pick_path(now, None);
        pdc.unacked.insert(
            seq,
            TxPkt {
                seg,
                sent_at: now,
                first_sent_at: now,
                retx: 0,
                timeouts: 0,
                path,
                bytes,
                in_flight: true,
                lost: false,
                rnr_at: None,
            },
        );
        pdc.inflight += bytes;
        self.counters.data_pkts += 1;
        self.emit_seg(now, id, seq, seg, path, false, mem, buf)
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_seg(
        &mut self,
        now: Instant,
        id: u16,
        seq: u64,
        seg: Seg,
        path: u16,
        retx: bool,
        mem: &mut dyn PdMemory,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        let job_id = self.cfg.job_id;
        let pdc = self.pdcs[usize::from(id)].as_mut()?;
        let psn = pdc.psn(seq);
        let clear = pdc.clear_floor();
        let clear_off = (clear as i64 - 1 - seq as i64).max(i64::from(i16::MIN)) as i16;
        let dest = match pdc.remote {
            Some(r) => Dest::Pdc(r),
            None => Dest::Syn {
                pdc_info: 0,
                psn_offset: (seq & 0x0fff) as u16,
            },
        };
        let (ses, payload_len, src) = match seg {
            Seg::Msg { msg_id, off, len } => {
                let m = pdc.msgs.get(&msg_id)?;
                let (opcode, addr, rkey, imm) = match m.op {
                    MsgOp::Send { imm } => (SesOpcode::SEND, 0, 0, imm),
                    MsgOp::Write { addr, rkey, imm } => (SesOpcode::WRITE, addr, rkey, imm),
                    MsgOp::Read { addr, rkey } => (SesOpcode::READ, addr, rkey, None),
                };
                let som = off == 0;
                let eom = off + u64::from(len) >= m.len || opcode == SesOpcode::READ;
                let mut flags = 0;
                if som {
                    flags |= SES_FLAG_SOM;
                }
                if eom {
                    flags |= SES_FLAG_EOM;
                }
                if som && imm.is_some() {
                    flags |= SES_FLAG_HD;
                }
                if m.abandon {
                    flags |= SES_FLAG_IE;
                }
                let header_data = if som {
                    u64::from(imm.unwrap_or(0))
                } else {
                    (u64::from(len) << 32) | (off & 0xffff_ffff)
                };
                let s = SesRequestRepr {
                    opcode,
                    flags,
                    msg_id,
                    ri_generation: 0,
                    job_id,
                    pid_on_fep: ((m.dest_qpn >> 12) & 0xfff) as u16,
                    resource_index: (m.dest_qpn & 0xfff) as u16,
                    buffer_offset: addr,
                    initiator: m.qpn,
                    memory_key: (u64::from(m.qkey) << 32) | u64::from(rkey),
                    header_data,
                    request_length: m.len as u32,
                };
                (SesRepr::Request(s), len as usize, (m.qpn, off, true))
            }
            Seg::ReadRsp { msg_id, off, len } => {
                let j = pdc.reads.get(&msg_id)?;
                let d = SesResponseDataRepr {
                    list: 0,
                    opcode: rsp_opcode::RESPONSE_W_DATA,
                    return_code: ReturnCode::OK,
                    msg_id,
                    ri_generation: 0,
                    job_id,
                    read_msg_id: 0,
                    payload_len: len as u16,
                    modified_length: j.len as u32,
                    message_offset: off as u32,
                };
                (SesRepr::ResponseData(d), len as usize, (j.qpn, off, false))
            }
        };
        let req = RequestRepr {
            next: ses.next_header(),
            retx,
            ack_req: true,
            clear_psn_offset: clear_off,
            psn,
            spdcid: pdc.id,
            dest,
        };
        let mut pkt = UetPacketRepr {
            pds: PdsRepr::Request(req),
            ses: Some(ses),
        };
        let hdr = pkt.header_len();
        let body = &mut buf[hdr..hdr + payload_len];
        let (qpn, off, local) = src;
        let ok = match (seg, mem.memory(qpn)) {
            (Seg::Msg { msg_id, .. }, Some(mm)) => {
                let m = pdc.msgs.get(&msg_id)?;
                sgl::gather(&*mm, &m.payload, off, body).is_ok()
            }
            (Seg::ReadRsp { msg_id, .. }, Some(mm)) => {
                let j = pdc.reads.get(&msg_id)?;
                mm.read(MemKey::Remote(j.rkey), j.addr + off, body).is_ok()
            }
            (_, None) => false,
        };
        if !ok {
            body.fill(0);
            match (&mut pkt.ses, seg) {
                (Some(SesRepr::Request(s)), Seg::Msg { msg_id, .. }) if local => {
                    s.flags |= SES_FLAG_IE;
                    if let Some(m) = pdc.msgs.get_mut(&msg_id) {
                        m.abandon = true;
                        m.failed.get_or_insert((
                            WcStatus::LocProtErr,
                            vendor::LOCAL_ERROR_INVALID_LKEY,
                        ));
                    }
                }
                (Some(SesRepr::ResponseData(d)), Seg::ReadRsp { msg_id, .. }) => {
                    d.return_code = ReturnCode::BAD_ADDR;
                    if let Some(j) = pdc.reads.get_mut(&msg_id) {
                        j.failed = true;
                    }
                }
                _ => {}
            }
        }
        pkt.emit_headers(buf);
        let len = hdr + payload_len + UET_CRC_LEN;
        uet::crc::seal(&mut buf[..len]);
        let peer = pdc.peer;
        if let Seg::Msg { msg_id, .. } = seg {
            if !ok {
                self.try_complete(now, id, msg_id);
            }
        }
        Some(Transmit {
            dst: peer,
            src_port: ENTROPY_BASE_PORT + path,
            len,
        })
    }
}

/// The completion opcode of an outgoing message.
fn opcode_of(op: MsgOp) -> WcOpcode {
    match op {
        MsgOp::Send { .. } => WcOpcode::Send,
        MsgOp::Write { .. } => WcOpcode::RdmaWrite,
        MsgOp::Read { .. } => WcOpcode::RdmaRead,
    }
}

/// A context's retransmission timeout (before its backoff): the
/// controller's `srtt + 4·rttvar` (clamped to the configured range), but
/// never below `srtt × (1.5 + RACK's reordering window)`. A steady RTT
/// drives `rttvar` towards zero, and an RTO hugging `srtt` then fires for
/// every packet that queues a little (or whose ACK is coalesced) — at
/// millisecond RTTs, long before RACK (which declares a packet lost
/// `srtt + reordering window` after it left, once a later one is
/// acknowledged) can: spurious timeouts that halve the window and avoid
/// paths (issue 7). At fabric RTTs the `min_rto` floor is the larger.
fn rto_of(cfg: &SrdConfig, p: &Pdc) -> Duration {
    let r = p.cc.rto(cfg.min_rto, cfg.max_rto, cfg.initial_rto);
    match p.cc.srtt() {
        Some(s) => r
            .max(s.mul_f64(1.5) + reo_window(cfg, s, p.reo_mult))
            .min(cfg.max_rto.max(r)),
        None => r,
    }
}

/// RACK's reordering window: `reorder_frac × reo_mult × srtt`, but the
/// adaptive part (`reo_mult` > 1) never past `reorder_max` (nor below
/// `reorder_frac × srtt`).
fn reo_window(cfg: &SrdConfig, srtt: Duration, mult: u32) -> Duration {
    let base = srtt.mul_f64(cfg.reorder_frac);
    let wide = srtt.mul_f64(cfg.reorder_frac * f64::from(mult));
    wide.min(base.max(cfg.reorder_max))
}

fn backoff(rto: Duration, retx: u32, max: Duration) -> Duration {
    (rto * (1u32 << retx.min(6))).min(max.max(rto))
}

fn response(msg_id: u16, rc: ReturnCode, len: u32, job_id: u32) -> SesResponseRepr {
    SesResponseRepr {
        list: 0,
        opcode: rsp_opcode::DEFAULT,
        return_code: rc,
        msg_id,
        ri_generation: 0,
        job_id,
        modified_length: if rc == ReturnCode::OK { len } else { 0 },
    }
}

fn rc_of(e: MemError) -> ReturnCode {
    match e {
        MemError::InvalidKey => ReturnCode::BAD_MKEY,
        MemError::AccessDenied => ReturnCode::PERM_VIOLATION,
        MemError::OutOfBounds | MemError::Misaligned => ReturnCode::BAD_ADDR,
    }
}
