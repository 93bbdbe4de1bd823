//! The packet delivery context (PDC): the per-peer transport state shared
//! by every QP of the two devices. A PDC carries both directions: the
//! initiator sends requests on it and receives READ response data; the
//! target receives requests and sends READ response data back, each
//! direction with its own PSN space starting at the PDC's start PSN
//! (as the UEC reference provider does).

use std::collections::{BTreeMap, VecDeque};

use core::time::Duration;

use softverbs_transport::{Instant, Payload, WcStatus};
use softverbs_wire::uet::ReturnCode;
use softverbs_wire::Gid;

use crate::cc::Cc;

/// SACK-detected losses on one path, with no delivery in between, that make
/// it avoided as a timeout does (a black hole shows long before its RTO).
pub(crate) const PATH_LOSSES: u8 = 6;

/// What an outgoing message does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MsgOp {
    Send {
        imm: Option<u32>,
    },
    Write {
        addr: u64,
        rkey: u32,
        imm: Option<u32>,
    },
    Read {
        addr: u64,
        rkey: u32,
    },
}

/// A work request in progress on the initiator side.
#[derive(Debug)]
pub(crate) struct OutMsg {
    pub qpn: u32,
    pub wr_id: u64,
    pub signaled: bool,
    pub op: MsgOp,
    pub payload: Payload,
    pub len: u64,
    pub dest_qpn: u32,
    pub qkey: u32,
    pub next_off: u64,
    pub started: bool,
    pub all_sent: bool,
    pub unacked: u32,
    pub first_seq: Option<u64>,
    pub last_seq: u64,
    pub response: Option<ReturnCode>,
    pub read_got: u64,
    pub failed: Option<(WcStatus, u32)>,
    pub abandon: bool,
    pub rnr_retries: u8,
    pub rnr_limit: u8,
    pub done: bool,
    pub ack_req_at: Option<Instant>,
    pub ack_req_tries: u32,
    pub posted_at: Instant,
}

/// Which bytes a packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A segment of an outgoing message (READ: the request).
    Msg { msg_id: u16, off: u64, len: u32 },
    /// A segment of READ response data.
    ReadRsp { msg_id: u16, off: u64, len: u32 },
}

/// A packet sent and not yet acknowledged.
#[derive(Debug, Clone)]
pub(crate) struct TxPkt {
    pub seg: Seg,
    pub sent_at: Instant,
    /// When the first copy left: an ACK that answers the first copy (not
    /// flagged as answering a retransmission) is an RTT sample from here,
    /// even if the packet was sent again meanwhile.
    pub first_sent_at: Instant,
    pub retx: u32,
    pub timeouts: u32,
    pub path: u16,
    pub bytes: u64,
    pub in_flight: bool,
    pub lost: bool,
    pub rnr_at: Option<Instant>,
}

/// A READ being answered on the target side.
#[derive(Debug, Clone)]
pub(crate) struct ReadJob {
    pub qpn: u32,
    pub rkey: u32,
    pub addr: u64,
    pub len: u64,
    pub next_off: u64,
    pub unacked: u32,
    pub failed: bool,
}

/// A message being received on the target side.
#[derive(Debug, Clone)]
pub(crate) struct InMsg {
    pub opcode: u8,
    pub qpn: u32,
    pub src_qpn: u32,
    pub total: u64,
    pub got: u64,
    pub imm: Option<u32>,
    pub rc: ReturnCode,
}

/// A plain ACK a context owes its peer (coalesced until the endpoint is
/// next polled for transmits or the run would outgrow one SACK bitmap).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwedAck {
    /// The last packet received: the ACK's trigger (its RTT sample).
    pub trigger: u64,
    /// Lowest and highest sequence numbers the ACK covers.
    pub lo: u64,
    pub hi: u64,
    /// The source port of the trigger (the ACK goes back on its path).
    pub port: u16,
    /// Packets covered.
    pub count: u32,
}

/// One delivery context.
#[derive(Debug)]
pub(crate) struct Pdc {
    pub id: u16,
    pub peer: Gid,
    pub remote: Option<u16>,
    pub initiator: bool,
    pub start_psn: u32,
    pub ever_acked: bool,
    // transmit direction
    pub next_seq: u64,
    pub unacked: BTreeMap<u64, TxPkt>,
    pub inflight: u64,
    pub retx_q: VecDeque<u64>,
    pub cc: Cc,
    pub rack_sent: Instant,
    pub path_rr: u16,
    pub path_bad_until: Vec<Instant>,
    /// Per path: penalties in a row (each doubles the next), when the last
    /// began, and losses detected from SACKs since it last delivered.
    pub path_strikes: Vec<u8>,
    pub path_penalized_at: Vec<Instant>,
    pub path_losses: Vec<u8>,
    // initiator
    pub msgs: BTreeMap<u16, OutMsg>,
    /// Messages waiting for a SES response past their last ACK.
    pub awaiting_rsp: u32,
    pub send_q: VecDeque<u16>,
    pub next_msg_id: u16,
    // target: READ responses
    pub reads: BTreeMap<u16, ReadJob>,
    pub read_q: VecDeque<u16>,
    // receive direction
    pub cack_seq: u64,
    pub rcvd: VecDeque<bool>,
    pub in_msgs: BTreeMap<u16, InMsg>,
    pub done: BTreeMap<u16, (ReturnCode, u64, u32)>,
    pub owed: Option<OwedAck>,
    /// A request arrived with ECN CE since the last ACK: echo it (flag M).
    pub ce_echo: bool,
    // close (initiator): last activity; while closing, the next CLOSE
    // retransmission and how many went out
    pub last_active: Instant,
    pub closing: Option<(Instant, u32)>,
    // RACK's adaptive reordering window
    pub reo_mult: u32,
    /// Retransmission-timeout backoff exponent of the context: each timeout
    /// doubles the RTO of every packet (new ones included) until an ACK
    /// yields a valid RTT sample (RFC 6298 §5.5–5.7).
    pub rto_backoff: u32,
    pub reo_clean: u32,
}

impl Pdc {
    pub fn new(id: u16, peer: Gid, initiator: bool, start_psn: u32, cc: Cc, paths: u16) -> Self {
        Pdc {
            id,
            peer,
            remote: None,
            initiator,
            start_psn,
            ever_acked: false,
            next_seq: 0,
            unacked: BTreeMap::new(),
            inflight: 0,
            retx_q: VecDeque::new(),
            cc,
            rack_sent: Instant::ZERO,
            path_rr: id % paths.max(1),
            path_bad_until: vec![Instant::ZERO; usize::from(paths.max(1))],
            path_strikes: vec![0; usize::from(paths.max(1))],
            path_penalized_at: vec![Instant::ZERO; usize::from(paths.max(1))],
            path_losses: vec![0; usize::from(paths.max(1))],
            msgs: BTreeMap::new(),
            awaiting_rsp: 0,
            send_q: VecDeque::new(),
            next_msg_id: 1,
            reads: BTreeMap::new(),
            read_q: VecDeque::new(),
            cack_seq: 0,
            rcvd: VecDeque::new(),
            in_msgs: BTreeMap::new(),
            done: BTreeMap::new(),
            owed: None,
            ce_echo: false,
            last_active: Instant::ZERO,
            closing: None,
            reo_mult: 1,
            rto_backoff: 0,
            reo_clean: 0,
        }
    }

    /// The PSN of transmit sequence number `seq`.
    pub fn psn(&self, seq: u64) -> u32 {
        self.start_psn.wrapping_add(seq as u32)
    }

    /// Unwraps a 32-bit PSN to a sequence number near `reference`; `None`
    /// if it would be negative.
    pub fn unwrap(&self, psn: u32, reference: u64) -> Option<u64> {
        let rel = psn.wrapping_sub(self.psn(reference)) as i32;
        u64::try_from(reference as i64 + i64::from(rel)).ok()
    }

    /// Lowest transmit sequence number still needing anything (ACK or SES
    /// response): everything below it may be cleared at the peer.
    pub fn clear_floor(&self) -> u64 {
        let mut floor = self.unacked.keys().next().copied().unwrap_or(self.next_seq);
        for m in self.msgs.values() {
            if m.started && !m.done && m.response.is_none() && !matches!(m.op, MsgOp::Read { .. }) {
                if let Some(f) = m.first_seq {
                    floor = floor.min(f);
                }
            }
        }
        floor
    }

    /// Picks a path for a packet: round robin over paths not being avoided,
    /// never `avoid` when another is usable.
    pub fn pick_path(&mut self, now: Instant, avoid: Option<u16>) -> u16 {
        let n = self.path_bad_until.len() as u16;
        let mut fallback = None;
        for _ in 0..n {
            let p = self.path_rr % n;
            self.path_rr = self.path_rr.wrapping_add(1);
            if self.path_bad_until[usize::from(p)] > now {
                continue;
            }
            if Some(p) == avoid && n > 1 {
                fallback.get_or_insert(p);
                continue;
            }
            return p;
        }
        fallback.unwrap_or_else(|| {
            // Every path is avoided: use the one whose penalty ends first.
            (0..n)
                .min_by_key(|&p| self.path_bad_until[usize::from(p)])
                .unwrap_or(0)
        })
    }

    /// True when an initiator context has nothing left to do in either
    /// direction (it may be closed).
    pub fn is_idle(&self) -> bool {
        self.initiator
            && self.remote.is_some()
            && self.msgs.is_empty()
            && self.unacked.is_empty()
            && self.send_q.is_empty()
            && self.retx_q.is_empty()
            && self.reads.is_empty()
            && self.rcvd.is_empty()
            && self.in_msgs.is_empty()
    }

    /// Avoids `path` for `base`, doubled for every penalty in a row since it
    /// last delivered a packet sent after its previous penalty (at most
    /// `max`). True if it was not being avoided.
    pub fn penalize(&mut self, path: u16, now: Instant, base: Duration, max: Duration) -> bool {
        let p = usize::from(path);
        let Some(until) = self.path_bad_until.get(p).copied() else {
            return false;
        };
        let fresh = until <= now;
        if fresh {
            let k = u32::from(self.path_strikes[p].min(16));
            self.path_strikes[p] = self.path_strikes[p].saturating_add(1);
            self.path_bad_until[p] = now + (base * (1u32 << k)).min(max.max(base));
            self.path_penalized_at[p] = now;
        }
        self.path_losses[p] = 0;
        fresh
    }

    /// A packet sent on `path` at `sent_at` was delivered: the path works
    /// (its penalties start over if the packet left after the last one).
    pub fn path_delivered(&mut self, path: u16, sent_at: Instant) {
        let p = usize::from(path);
        if p < self.path_losses.len() {
            self.path_losses[p] = 0;
            if sent_at >= self.path_penalized_at[p] {
                self.path_strikes[p] = 0;
            }
        }
    }

    /// A packet sent on `path` was found lost from SACKs; true when that
    /// makes `PATH_LOSSES` in a row with nothing delivered in between.
    pub fn path_lost(&mut self, path: u16) -> bool {
        let p = usize::from(path);
        let Some(n) = self.path_losses.get_mut(p) else {
            return false;
        };
        *n = n.saturating_add(1);
        *n >= PATH_LOSSES
    }

    /// Marks receive sequence number `seq` received and advances the
    /// cumulative point.
    pub fn mark_received(&mut self, seq: u64) {
        let i = (seq - self.cack_seq) as usize;
        if self.rcvd.len() <= i {
            self.rcvd.resize(i + 1, false);
        }
        self.rcvd[i] = true;
        while self.rcvd.front() == Some(&true) {
            self.rcvd.pop_front();
            self.cack_seq += 1;
        }
    }

    /// True if `seq` was received already.
    pub fn is_received(&self, seq: u64) -> bool {
        seq < self.cack_seq
            || self
                .rcvd
                .get((seq - self.cack_seq) as usize)
                .copied()
                .unwrap_or(false)
    }

    /// The SACK bitmap based at `base` (at or above `cack_seq`; bit i:
    /// `base + i`).
    pub fn sack_bitmap(&self, base: u64) -> u64 {
        let skip = base.saturating_sub(self.cack_seq) as usize;
        let mut b = 0u64;
        for (i, r) in self.rcvd.iter().skip(skip).take(64).enumerate() {
            if *r {
                b |= 1 << i;
            }
        }
        b
    }

    /// Bytes of state this context holds (for the memory-scaling numbers).
    pub fn footprint(&self) -> usize {
        core::mem::size_of::<Self>()
            + self.unacked.len() * (core::mem::size_of::<TxPkt>() + 16)
            + self.msgs.len() * (core::mem::size_of::<OutMsg>() + 16)
            + self.rcvd.len()
            + self.in_msgs.len() * (core::mem::size_of::<InMsg>() + 16)
            + self.done.len() * 32
            + self.reads.len() * (core::mem::size_of::<ReadJob>() + 16)
            + self.path_bad_until.len() * 18
    }
}
