//! Work completions (`ibv_wc`) as the engine produces them.

use core::fmt;

/// Completion status (`ibv_wc_status`, IBTA 11.4.2.1), numbered as libibverbs does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[repr(u32)]
pub enum WcStatus {
    /// The operation completed.
    Success = 0,
    /// Local length error: a message longer than the receive buffer, or a
    /// send longer than the path allows.
    LocLenErr = 1,
    /// Local QP operation error.
    LocQpOpErr = 2,
    /// Local protection error: an SGE's lkey, bounds or rights were wrong.
    LocProtErr = 4,
    /// Flushed because the QP entered the error state.
    WrFlushErr = 5,
    /// Memory window bind error.
    MwBindErr = 6,
    /// Bad response from the responder.
    BadRespErr = 7,
    /// Local access error (responder side of a remote violation).
    LocAccessErr = 8,
    /// The responder found the request invalid (NAK invalid request).
    RemInvReqErr = 9,
    /// The responder refused the memory access (NAK remote access error).
    RemAccessErr = 10,
    /// The responder failed the operation (NAK remote operational error).
    RemOpErr = 11,
    /// Transport retries (`retry_cnt`) exhausted without an answer.
    RetryExcErr = 12,
    /// RNR retries (`rnr_retry`) exhausted.
    RnrRetryExcErr = 13,
    /// A fatal error.
    FatalErr = 19,
    /// Response timeout.
    RespTimeoutErr = 20,
    /// General error.
    GeneralErr = 21,
}

impl WcStatus {
    /// The string `ibv_wc_status_str` gives.
    pub fn as_str(self) -> &'static str {
        match self {
            WcStatus::Success => "success",
            WcStatus::LocLenErr => "local length error",
            WcStatus::LocQpOpErr => "local QP operation error",
            WcStatus::LocProtErr => "local protection error",
            WcStatus::WrFlushErr => "Work Request Flushed Error",
            WcStatus::MwBindErr => "memory management operation error",
            WcStatus::BadRespErr => "bad response error",
            WcStatus::LocAccessErr => "local access error",
            WcStatus::RemInvReqErr => "remote invalid request error",
            WcStatus::RemAccessErr => "remote access error",
            WcStatus::RemOpErr => "remote operation error",
            WcStatus::RetryExcErr => "transport retry counter exceeded",
            WcStatus::RnrRetryExcErr => "RNR retry counter exceeded",
            WcStatus::FatalErr => "fatal error",
            WcStatus::RespTimeoutErr => "response timeout error",
            WcStatus::GeneralErr => "general error",
        }
    }
}

impl fmt::Display for WcStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What completed (`ibv_wc_opcode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum WcOpcode {
    /// A SEND (any variant).
    Send,
    /// An RDMA WRITE (any variant).
    RdmaWrite,
    /// An RDMA READ.
    RdmaRead,
    /// A compare and swap.
    CompSwap,
    /// A fetch and add.
    FetchAdd,
    /// A LOCAL_INV (`IBV_WC_LOCAL_INV`).
    LocalInv,
    /// A BIND_MW (`IBV_WC_BIND_MW`).
    BindMw,
    /// A received SEND.
    Recv,
    /// A received RDMA WRITE with immediate.
    RecvRdmaWithImm,
}

/// Which of the QP's queues a completion belongs to (the send and receive
/// CQs may differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WcQueue {
    /// The send queue.
    Send,
    /// The receive queue (or the SRQ).
    Recv,
}

/// A work completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The work request's id.
    pub wr_id: u64,
    /// Outcome.
    pub status: WcStatus,
    /// What completed. For flushed receive WQEs this is `Recv`.
    pub opcode: WcOpcode,
    /// Send or receive queue.
    pub queue: WcQueue,
    /// The local QP.
    pub qp_num: u32,
    /// Bytes received (receive completions) or transferred (RDMA READ).
    pub byte_len: u32,
    /// Immediate data, if the message carried it.
    pub imm: Option<u32>,
    /// The rkey a SEND with invalidate invalidated.
    pub invalidated_rkey: Option<u32>,
    /// UD: the sender's QPN.
    pub src_qp: u32,
    /// UD: a GRH occupies the first 40 bytes of the receive buffer.
    pub grh: bool,
    /// The message asked for a solicited event.
    pub solicited: bool,
    /// The device's own error code (`ibv_wc.vendor_err`): EFA's
    /// completion status on the `srd` device (`softverbs_srd::vendor`), 0
    /// elsewhere and on success.
    pub vendor_err: u32,
    /// A WRITE with immediate that consumed no receive WQE
    /// (`efadv_wc_is_unsolicited`); `wr_id` is 0. SRD QPs created with
    /// `EFADV_QP_FLAGS_UNSOLICITED_WRITE_RECV` only.
    pub unsolicited: bool,
}

impl Completion {
    /// A completion with no payload facts yet: `byte_len` 0, no immediate,
    /// no invalidated key, no GRH, `vendor_err` 0; set what applies after.
    ///
    /// ```
    /// use softverbs_transport::{Completion, WcOpcode, WcQueue, WcStatus};
    /// let mut wc = Completion::new(7, WcStatus::Success, WcOpcode::RdmaRead, WcQueue::Send, 0x11);
    /// wc.byte_len = 4096;
    /// assert!(wc.imm.is_none() && wc.vendor_err == 0);
    /// ```
    pub fn new(
        wr_id: u64,
        status: WcStatus,
        opcode: WcOpcode,
        queue: WcQueue,
        qp_num: u32,
    ) -> Self {
        Completion {
            wr_id,
            status,
            opcode,
            queue,
            qp_num,
            byte_len: 0,
            imm: None,
            invalidated_rkey: None,
            src_qp: 0,
            grh: false,
            solicited: false,
            vendor_err: 0,
            unsolicited: false,
        }
    }
}
