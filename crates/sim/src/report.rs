//! What a run tells: the summary of a clean run ([`SimReport`]) or the
//! invariant it broke ([`Breach`]).

use core::fmt;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::net::NetStats;

/// The invariants the simulator checks. Each has a short stable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Invariant {
    /// The configuration is unusable (not an engine fault).
    InvalidConfig,
    /// An engine panicked.
    NoPanic,
    /// Work is outstanding but nothing completed for a long virtual time.
    NoStall,
    /// The run exceeded its event budget without finishing.
    NoLivelock,
    /// A corrupted packet passed the ICRC check.
    IcrcCatchesCorruption,
    /// An intact packet failed the ICRC check.
    IcrcAcceptsIntact,
    /// A packet an engine emitted does not parse.
    EmittedPacketsParse,
    /// A packet went to a host or QP that does not exist there.
    PacketsReachTheirQp,
    /// An engine refused a work request the simulator posted within limits.
    PostAccepted,
    /// Every WQE completes exactly once.
    WqeCompletesOnce,
    /// Send completions come back in posting order.
    SendCompletionOrder,
    /// A completion has the status the scenario calls for.
    CompletionStatus,
    /// A completion's opcode, length, immediate or flags are right.
    CompletionFields,
    /// Receive WQEs are consumed in the order they were posted.
    RecvQueueOrder,
    /// RC delivers each message exactly once, in order.
    RcExactlyOnceInOrder,
    /// Every RC message is delivered by the end of the run.
    RcDeliversAll,
    /// A delivered message has exactly the bytes that were sent.
    PayloadIntact,
    /// An engine wrote past the received length into a receive buffer.
    NoRecvOverrun,
    /// Remote memory equals the reference model after WRITEs and atomics.
    RemoteMemoryMatchesModel,
    /// An RDMA READ returned exactly the remote bytes.
    ReadResultCorrect,
    /// An atomic returned the value the reference model predicts.
    AtomicResultCorrect,
    /// UC and UD deliver only whole, correct messages (UC in order).
    WholeMessagesOnly,
    /// An engine raised an unexpected asynchronous event (QP fatal).
    NoUnexpectedEvent,
    /// A fault-injection scenario did not produce the error it must.
    ExpectedErrorOccurs,
}

impl Invariant {
    /// The stable short name printed on a breach.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::InvalidConfig => "valid-config",
            Invariant::NoPanic => "no-panic",
            Invariant::NoStall => "no-stall",
            Invariant::NoLivelock => "no-livelock",
            Invariant::IcrcCatchesCorruption => "icrc-catches-corruption",
            Invariant::IcrcAcceptsIntact => "icrc-accepts-intact",
            Invariant::EmittedPacketsParse => "emitted-packets-parse",
            Invariant::PacketsReachTheirQp => "packets-reach-their-qp",
            Invariant::PostAccepted => "post-accepted",
            Invariant::WqeCompletesOnce => "wqe-completes-once",
            Invariant::SendCompletionOrder => "send-completion-order",
            Invariant::CompletionStatus => "completion-status",
            Invariant::CompletionFields => "completion-fields",
            Invariant::RecvQueueOrder => "recv-queue-order",
            Invariant::RcExactlyOnceInOrder => "rc-exactly-once-in-order",
            Invariant::RcDeliversAll => "rc-delivers-all",
            Invariant::PayloadIntact => "payload-intact",
            Invariant::NoRecvOverrun => "no-recv-overrun",
            Invariant::RemoteMemoryMatchesModel => "remote-memory-matches-model",
            Invariant::ReadResultCorrect => "read-result-correct",
            Invariant::AtomicResultCorrect => "atomic-result-correct",
            Invariant::WholeMessagesOnly => "uc-ud-whole-messages-only",
            Invariant::NoUnexpectedEvent => "no-unexpected-event",
            Invariant::ExpectedErrorOccurs => "expected-error-occurs",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A broken invariant: what, where and when, enough to replay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Breach {
    /// The invariant.
    pub invariant: Invariant,
    /// The run's seed.
    pub seed: u64,
    /// Virtual time of the breach, in nanoseconds.
    pub at_ns: u64,
    /// The QP pair involved, if one is.
    pub pair: Option<usize>,
    /// The QP number involved, if one is.
    pub qpn: Option<u32>,
    /// The message (work request sequence number within the pair), if one is.
    pub message: Option<u64>,
    /// What was seen and what was expected.
    pub detail: String,
    /// The last events before the breach, oldest first (only when the run
    /// was traced: [`crate::SimConfig::trace`]).
    pub trace: Vec<String>,
}

impl Breach {
    /// A breach not tied to a pair.
    pub(crate) fn new(
        invariant: Invariant,
        seed: u64,
        at_ns: u64,
        detail: impl Into<String>,
    ) -> Self {
        Breach {
            invariant,
            seed,
            at_ns,
            pair: None,
            qpn: None,
            message: None,
            detail: detail.into(),
            trace: Vec::new(),
        }
    }

    /// Name the pair and QP.
    pub(crate) fn on(mut self, pair: usize, qpn: u32) -> Self {
        self.pair = Some(pair);
        self.qpn = Some(qpn);
        self
    }
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant `{}` broken (seed {}, t={} ns",
            self.invariant, self.seed, self.at_ns
        )?;
        if let Some(p) = self.pair {
            write!(f, ", pair {p}")?;
        }
        if let Some(q) = self.qpn {
            write!(f, ", qpn {q:#x}")?;
        }
        if let Some(m) = self.message {
            write!(f, ", message {m}")?;
        }
        write!(f, "): {}", self.detail)
    }
}

impl std::error::Error for Breach {}

/// Packet counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PacketReport {
    /// Packets the engines emitted.
    pub sent: u64,
    /// Copies the fabric delivered (duplicates included).
    pub delivered: u64,
    /// Packets the fabric lost.
    pub lost: u64,
    /// Packets the fabric duplicated.
    pub duplicated: u64,
    /// Packets the fabric reordered.
    pub reordered: u64,
    /// Copies the fabric corrupted.
    pub corrupted: u64,
    /// Corrupted copies the receiver's ICRC check caught (must equal `corrupted`).
    pub corrupt_caught: u64,
    /// Packets swallowed by a silent-peer fault.
    pub silenced: u64,
    /// Packets the engines dropped themselves (stale, duplicate, out of state).
    pub engine_dropped: u64,
    /// ACKs the engines sent.
    pub acks: u64,
}

impl PacketReport {
    pub(crate) fn from_net(n: NetStats) -> Self {
        PacketReport {
            sent: n.sent,
            delivered: n.delivered,
            lost: n.lost,
            duplicated: n.duplicated,
            reordered: n.reordered,
            corrupted: n.corrupted,
            ..PacketReport::default()
        }
    }
}

/// The summary of a run in which every invariant held.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// QP pairs.
    pub qp_pairs: usize,
    /// Pairs per transport (`rc`, `uc`, `ud`).
    pub transports: BTreeMap<String, usize>,
    /// Work requests posted.
    pub messages: u64,
    /// Messages whose delivery was confirmed (RC: completed successfully;
    /// UC and UD: received).
    pub delivered: u64,
    /// UC and UD messages that never arrived (allowed: whole messages only).
    pub lost_messages: u64,
    /// UC and UD messages delivered twice because the fabric duplicated them
    /// (allowed: UD has no duplicate detection, and a UC responder takes a
    /// duplicated ONLY packet as a new message, as rxe does).
    pub duplicates: u64,
    /// UC and UD messages delivered after a later one (allowed, see above).
    pub out_of_order: u64,
    /// Payload bytes of the confirmed deliveries.
    pub bytes: u64,
    /// Packet counts.
    pub packets: PacketReport,
    /// Retransmission rounds started (timeouts and NAKs).
    pub retransmissions: u64,
    /// Packets sent again.
    pub retransmitted_packets: u64,
    /// Retransmission timer expiries.
    pub timeouts: u64,
    /// RNR NAKs received.
    pub rnr_naks: u64,
    /// Sequence-error NAKs received.
    pub seq_naks: u64,
    /// Duplicate requests the responders saw.
    pub duplicate_requests: u64,
    /// Completions by status during the workload.
    pub completions: BTreeMap<String, u64>,
    /// Receive WQEs flushed when the QPs were torn down at the end.
    pub recv_flushed_at_end: u64,
    /// RC pairs whose requester hit RETRY_EXC_ERR after the fabric had
    /// dropped more of the pair's packets than `retry_cnt` allows for since
    /// its last progress: legitimate bad luck (each try lost), so the pair
    /// is held to the silent-peer rules (then only flushes; delivered
    /// messages still exactly once, in order).
    pub retry_exhausted_by_loss: u64,
    /// Virtual time until the last work request completed, in nanoseconds.
    pub sim_time_ns: u64,
    /// `bytes` over `sim_time_ns`, in Gb/s.
    pub goodput_gbps: f64,
    /// Events processed.
    pub events: u64,
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.packets;
        let kinds: Vec<String> = self
            .transports
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        writeln!(
            f,
            "seed {}: {} QP pairs ({})",
            self.seed,
            self.qp_pairs,
            kinds.join(", ")
        )?;
        writeln!(
            f,
            "  messages   {} posted, {} delivered, {} payload bytes; UC/UD: {} lost, {} duplicated, {} out of order",
            self.messages, self.delivered, self.bytes, self.lost_messages, self.duplicates, self.out_of_order
        )?;
        writeln!(
            f,
            "  packets    {} sent, {} delivered, {} lost, {} duplicated, {} reordered, {} corrupted ({} caught by ICRC), {} silenced, {} dropped by engines, {} ACKs",
            p.sent, p.delivered, p.lost, p.duplicated, p.reordered, p.corrupted, p.corrupt_caught, p.silenced, p.engine_dropped, p.acks
        )?;
        writeln!(
            f,
            "  recovery   {} retransmission rounds ({} packets), {} timeouts, {} RNR NAKs, {} sequence NAKs, {} duplicate requests",
            self.retransmissions, self.retransmitted_packets, self.timeouts, self.rnr_naks, self.seq_naks, self.duplicate_requests
        )?;
        let c: Vec<String> = self
            .completions
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(
            f,
            "  completions {} (+{} receives flushed at teardown)",
            c.join(", "),
            self.recv_flushed_at_end
        )?;
        if self.retry_exhausted_by_loss > 0 {
            writeln!(
                f,
                "  {} RC pair(s) exhausted retry_cnt because the fabric lost every try",
                self.retry_exhausted_by_loss
            )?;
        }
        write!(
            f,
            "  time       {:.3} ms simulated, goodput {:.3} Gb/s, {} events",
            self.sim_time_ns as f64 / 1e6,
            self.goodput_gbps,
            self.events
        )
    }
}
