//! Per-QP counters, named after the `rdma_rxe` hardware counters that
//! `rdma statistic` shows, so the numbers read the same.

/// What one QP has seen and done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QpCounters {
    /// Packets handed to the I/O layer (first transmissions and retransmissions).
    pub sent_pkts: u64,
    /// Packets received for this QP.
    pub rcvd_pkts: u64,
    /// Requests received with a PSN already seen (answered again, not re-executed,
    /// except READs and replayed atomics).
    pub duplicate_request: u64,
    /// Requests received ahead of the expected PSN (each NAK'd at most once).
    pub out_of_seq_request: u64,
    /// RNR NAKs received by the requester.
    pub rcvd_rnr_err: u64,
    /// RNR NAKs sent by the responder.
    pub send_rnr_err: u64,
    /// Sequence-error NAKs received by the requester.
    pub rcvd_seq_err: u64,
    /// Retransmission rounds started (timeout, sequence NAK or implied NAK).
    pub retransmits: u64,
    /// Packets sent again by those rounds.
    pub retransmitted_pkts: u64,
    /// Retransmission timer expiries.
    pub timeouts: u64,
    /// Transport retries exhausted (RETRY_EXC_ERR).
    pub retry_exceeded_err: u64,
    /// RNR retries exhausted (RNR_RETRY_EXC_ERR).
    pub retry_rnr_exceeded_err: u64,
    /// Packets dropped as invalid for this QP (bad state, P_Key, Q_Key,
    /// opcode out of sequence on UC, stale responses …).
    pub dropped_pkts: u64,
    /// UC/UD messages lost (a gap in a UC message, no receive WQE on UD).
    pub lost_msgs: u64,
    /// ACK packets sent.
    pub acks_sent: u64,
    /// Completions with an error status other than a flush.
    pub completion_errors: u64,
}
