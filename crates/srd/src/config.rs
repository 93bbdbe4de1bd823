//! What an SRD endpoint is configured with, what it reports as EFA does,
//! and how its errors map onto work-completion statuses.

use core::time::Duration;

use softverbs_transport::{Mtu, WcStatus};
use softverbs_wire::uet::ReturnCode;
use softverbs_wire::Gid;

use crate::cc::CcConfig;

/// The first UDP source port of the entropy range: path `i` leaves from
/// `ENTROPY_BASE_PORT + i`.
pub const ENTROPY_BASE_PORT: u16 = 49152;

/// The configuration of one endpoint (one per device).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SrdConfig {
    /// This device's address.
    #[serde(skip)]
    pub local: Gid,
    /// Largest payload per packet (SEND's limit).
    pub mtu: Mtu,
    /// Number of paths (UDP source ports) packets are sprayed over.
    pub paths: u16,
    /// Largest RDMA READ or WRITE (`max_rdma_size`).
    pub max_rdma_size: u32,
    /// PSNs a context may have between its clear point and its next PSN;
    /// also the receive window (advertised as MPR in ACK_CC).
    pub window: u32,
    /// Smallest retransmission timeout.
    pub min_rto: Duration,
    /// Largest retransmission timeout.
    pub max_rto: Duration,
    /// Timeout before the first RTT sample.
    pub initial_rto: Duration,
    /// Retransmissions of one packet before the peer is declared
    /// unresponsive (its context reset, its work completed in error).
    pub max_retries: u32,
    /// How long a path that timed out (or lost several packets in a row
    /// while others delivered) is avoided; doubled for each penalty in a
    /// row until the path delivers again, up to `path_penalty_max`.
    pub path_penalty: Duration,
    /// Longest a path is avoided at once.
    pub path_penalty_max: Duration,
    /// First RNR backoff; doubles per retry of the same message.
    pub rnr_backoff: Duration,
    /// Largest RNR backoff.
    pub rnr_backoff_max: Duration,
    /// The delay a receiver suggests in its RNR NACK (µs in the payload).
    pub rnr_hint: Duration,
    /// Reordering tolerated before a packet is deemed lost, as a fraction of
    /// the smoothed RTT (RACK's reordering window).
    pub reorder_frac: f64,
    /// Largest multiple of `reorder_frac` the reordering window adapts to:
    /// each spurious retransmission (an ACK for the first copy of a packet
    /// already sent again) doubles a context's multiplier, up to this; every
    /// 1024 packets acknowledged without one halve it again (RACK's
    /// adaptive `reo_wnd`, RFC 8985 §6.2).
    pub reorder_max_mult: u32,
    /// Largest the adaptive reordering window grows to in time (it never
    /// shrinks below `reorder_frac` × srtt for this): reordering comes from
    /// paths' delay differences, which do not grow with the round trip, so
    /// at millisecond RTTs `reorder_max_mult` × srtt would make RACK (and
    /// the RTO floored at its deadline) wait many ms for a lost packet.
    pub reorder_max: Duration,
    /// Most data packets one ACK may cover. ACKs are coalesced: a context
    /// owes at most one plain ACK until [`crate::SrdEndpoint::poll_transmit`]
    /// sends it (so the I/O layer, which feeds a whole receive batch before
    /// polling, gets one ACK per context per batch), or until this many
    /// packets arrived. An ACK goes at once when it carries a SES response,
    /// or answers a retransmitted or duplicate packet.
    /// 1 acknowledges every packet.
    pub ack_every: u32,
    /// An initiator context idle this long is closed (UET's CLOSE, answered
    /// by an ACK of its PSN; the target frees its side then); the next
    /// work request to that peer opens a fresh one with a SYN. `None`:
    /// contexts live as long as the endpoint.
    pub idle_close: Option<Duration>,
    /// The UET job id put in every SES header (constant; not enforced).
    pub job_id: u32,
    /// Congestion control.
    pub cc: CcConfig,
    /// Seed of the start PSNs (UET wants them random).
    pub seed: u64,
}

impl SrdConfig {
    /// Defaults for a device at `local`: 4096-byte MTU, 8 paths, 1 GiB
    /// `max_rdma_size`, a 1024-PSN window.
    pub fn new(local: Gid) -> Self {
        SrdConfig {
            local,
            mtu: Mtu::Mtu4096,
            paths: 8,
            max_rdma_size: 1 << 30,
            window: 1024,
            min_rto: Duration::from_micros(200),
            max_rto: Duration::from_millis(100),
            initial_rto: Duration::from_millis(1),
            max_retries: 12,
            path_penalty: Duration::from_millis(5),
            path_penalty_max: Duration::from_secs(1),
            rnr_backoff: Duration::from_micros(20),
            rnr_backoff_max: Duration::from_millis(2),
            rnr_hint: Duration::from_micros(20),
            reorder_frac: 0.5,
            reorder_max_mult: 8,
            reorder_max: Duration::from_millis(1),
            ack_every: 16,
            idle_close: Some(Duration::from_millis(100)),
            job_id: 1,
            cc: CcConfig::default(),
            seed: 1,
        }
    }

    /// The capabilities as `efadv_query_device` reports them.
    pub fn caps(&self) -> SrdCaps {
        SrdCaps {
            max_sq_wr: 4096,
            max_rq_wr: 32768,
            max_sq_sge: 2,
            max_rq_sge: 1,
            inline_buf_size: 32,
            device_caps: SrdCaps::RDMA_READ
                | SrdCaps::RNR_RETRY
                | SrdCaps::RDMA_WRITE
                | SrdCaps::UNSOLICITED_WRITE_RECV,
            max_rdma_size: self.max_rdma_size,
        }
    }
}

/// `struct efadv_device_attr` (rdma-core `efadv.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SrdCaps {
    /// Send queue depth.
    pub max_sq_wr: u32,
    /// Receive queue depth.
    pub max_rq_wr: u32,
    /// SGEs per send WR.
    pub max_sq_sge: u16,
    /// SGEs per receive WR.
    pub max_rq_sge: u16,
    /// Inline data size.
    pub inline_buf_size: u16,
    /// `EFADV_DEVICE_ATTR_CAPS_*` bits.
    pub device_caps: u32,
    /// Largest RDMA READ/WRITE.
    pub max_rdma_size: u32,
}

impl SrdCaps {
    /// `EFADV_DEVICE_ATTR_CAPS_RDMA_READ`.
    pub const RDMA_READ: u32 = 1 << 0;
    /// `EFADV_DEVICE_ATTR_CAPS_RNR_RETRY`.
    pub const RNR_RETRY: u32 = 1 << 1;
    /// `EFADV_DEVICE_ATTR_CAPS_CQ_WITH_SGID`.
    pub const CQ_WITH_SGID: u32 = 1 << 2;
    /// `EFADV_DEVICE_ATTR_CAPS_RDMA_WRITE`.
    pub const RDMA_WRITE: u32 = 1 << 3;
    /// `EFADV_DEVICE_ATTR_CAPS_UNSOLICITED_WRITE_RECV`.
    pub const UNSOLICITED_WRITE_RECV: u32 = 1 << 4;
}

/// How an SRD QP is created (`efadv_create_qp_ex` with
/// `EFADV_QP_DRIVER_TYPE_SRD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SrdQpConfig {
    /// The QP number (the device allocates it).
    pub qpn: u32,
    /// The QP's Q_Key; incoming messages must carry it.
    pub qkey: u32,
    /// Send queue depth.
    pub max_send_wr: usize,
    /// Receive queue depth.
    pub max_recv_wr: usize,
    /// Every send WR completes, whatever its flags say.
    pub sq_sig_all: bool,
    /// RNR retries per message, 0–7; 7 means retry forever (as IBTA and
    /// EFA's `rnr_retry` attribute).
    pub rnr_retry: u8,
    /// `EFADV_QP_FLAGS_UNSOLICITED_WRITE_RECV`: WRITE with immediate
    /// consumes no receive WQE; its completion has `wr_id` 0 and
    /// [`crate::SrdCompletion::unsolicited`] set.
    pub unsolicited_write_recv: bool,
}

impl SrdQpConfig {
    /// Defaults: 256-deep queues, infinite RNR retry, solicited receives.
    pub fn new(qpn: u32, qkey: u32) -> Self {
        SrdQpConfig {
            qpn,
            qkey,
            max_send_wr: 256,
            max_recv_wr: 256,
            sq_sig_all: false,
            rnr_retry: 7,
            unsolicited_write_recv: false,
        }
    }
}

/// EFA's vendor error codes (`enum efa_io_comp_status`, rdma-core
/// `efa_io_defs.h`), carried in [`crate::SrdCompletion::vendor_err`].
pub mod vendor {
    /// Success.
    pub const OK: u32 = 0;
    /// Flushed.
    pub const FLUSHED: u32 = 1;
    /// Invalid lkey.
    pub const LOCAL_ERROR_INVALID_LKEY: u32 = 4;
    /// Local length error.
    pub const LOCAL_ERROR_BAD_LENGTH: u32 = 5;
    /// Bad remote address or key.
    pub const REMOTE_ERROR_BAD_ADDRESS: u32 = 7;
    /// No such destination QP (or a wrong Q_Key).
    pub const REMOTE_ERROR_BAD_DEST_QPN: u32 = 9;
    /// RNR retries exhausted.
    pub const REMOTE_ERROR_RNR: u32 = 10;
    /// The receive buffer is too short.
    pub const REMOTE_ERROR_BAD_LENGTH: u32 = 11;
    /// Unexpected status from the responder.
    pub const REMOTE_ERROR_BAD_STATUS: u32 = 12;
    /// The peer answered before but stopped.
    pub const LOCAL_ERROR_UNRESP_REMOTE: u32 = 13;
    /// The peer never answered.
    pub const LOCAL_ERROR_UNREACH_REMOTE: u32 = 15;
}

/// The work-completion status and vendor error of a SES return code, as
/// rdma-core's EFA provider maps its completion statuses (`to_ibv_status`):
/// bad address → remote access error; bad destination QPN → (remote invalid
/// RD request in libibverbs, which this project's `WcStatus` lacks) remote
/// invalid request; bad length → remote invalid request; others → remote
/// operational error.
pub fn status_of(rc: ReturnCode) -> (WcStatus, u32) {
    match rc {
        ReturnCode::OK => (WcStatus::Success, vendor::OK),
        ReturnCode::BAD_MKEY | ReturnCode::BAD_ADDR | ReturnCode::PERM_VIOLATION => {
            (WcStatus::RemAccessErr, vendor::REMOTE_ERROR_BAD_ADDRESS)
        }
        ReturnCode::NO_MATCH => (WcStatus::RemInvReqErr, vendor::REMOTE_ERROR_BAD_DEST_QPN),
        ReturnCode::TOO_LONG => (WcStatus::RemInvReqErr, vendor::REMOTE_ERROR_BAD_LENGTH),
        _ => (WcStatus::RemOpErr, vendor::REMOTE_ERROR_BAD_STATUS),
    }
}
