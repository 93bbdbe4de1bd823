//! Queue pairs.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use softverbs_core::driver::{AhAttr, QpInfo};
use softverbs_core::{ModifyAttrs, QpRef};
use softverbs_transport::{Access, Mtu, QpState, QpType, RecvWr, SendWr};
use softverbs_wire::Gid;

use crate::backend::{lock, QpRings};
use crate::cq::{Cq, CqInner};
use crate::pd::PdInner;
use crate::srq::{Srq, SrqInner};
use crate::{Result, VerbsError};

/// What a QP is created with (`ibv_qp_init_attr`).
#[derive(Clone)]
pub struct QpInitAttr {
    /// Transport service.
    pub qp_type: QpType,
    /// CQ for send completions.
    pub send_cq: Cq,
    /// CQ for receive completions.
    pub recv_cq: Cq,
    /// Receive from this SRQ instead of an own receive queue.
    pub srq: Option<Srq>,
    /// Send queue depth.
    pub max_send_wr: u32,
    /// Receive queue depth.
    pub max_recv_wr: u32,
    /// SGEs per send WR.
    pub max_send_sge: u32,
    /// SGEs per receive WR.
    pub max_recv_sge: u32,
    /// Bytes that may be posted inline.
    pub max_inline_data: u32,
    /// Complete every send, signaled or not.
    pub sq_sig_all: bool,
}

impl QpInitAttr {
    /// Defaults for a QP of type `qp_type`: 128-deep queues, one SGE,
    /// 64 bytes inline.
    pub fn new(qp_type: QpType, send_cq: &Cq, recv_cq: &Cq) -> Self {
        QpInitAttr {
            qp_type,
            send_cq: send_cq.clone(),
            recv_cq: recv_cq.clone(),
            srq: None,
            max_send_wr: 128,
            max_recv_wr: 128,
            max_send_sge: 1,
            max_recv_sge: 1,
            max_inline_data: 64,
            sq_sig_all: false,
        }
    }

    /// A Reliable Connected QP.
    pub fn rc(send_cq: &Cq, recv_cq: &Cq) -> Self {
        Self::new(QpType::Rc, send_cq, recv_cq)
    }

    /// An Unreliable Connected QP.
    pub fn uc(send_cq: &Cq, recv_cq: &Cq) -> Self {
        Self::new(QpType::Uc, send_cq, recv_cq)
    }

    /// An Unreliable Datagram QP.
    pub fn ud(send_cq: &Cq, recv_cq: &Cq) -> Self {
        Self::new(QpType::Ud, send_cq, recv_cq)
    }

    /// Receive from `srq`.
    pub fn with_srq(mut self, srq: &Srq) -> Self {
        self.srq = Some(srq.clone());
        self
    }
}

/// What a peer needs to reach a QP: exchanged out of band (the
/// `LID:QPN:PSN:GID` of rdma-core's pingpong examples).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// QP number.
    pub qpn: u32,
    /// First PSN it will send with.
    pub psn: u32,
    /// Its GID.
    pub gid: Gid,
}

/// How to connect a QP (the attributes of the INIT, RTR and RTS transitions).
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// Port number.
    pub port: u8,
    /// Source GID index (1 = the IPv4-mapped GID on an IPv4 device).
    pub sgid_index: u8,
    /// Path MTU.
    pub mtu: Mtu,
    /// ACK timeout exponent.
    pub timeout: u8,
    /// Transport retries.
    pub retry_cnt: u8,
    /// RNR retries (7 = infinite).
    pub rnr_retry: u8,
    /// RNR timer code this QP sends.
    pub min_rnr_timer: u8,
    /// Outstanding READ/atomic as requester.
    pub max_rd_atomic: u8,
    /// Outstanding READ/atomic as responder.
    pub max_dest_rd_atomic: u8,
    /// Remote operations this QP accepts (for UC, the READ and atomic
    /// rights are dropped: UC has neither).
    pub access: Access,
    /// Q_Key (UD).
    pub qkey: u32,
}

impl Default for ConnectOptions {
    /// The values of rdma-core's `ibv_rc_pingpong`: MTU 1024, timeout 14,
    /// retry 7, RNR retry 7, min RNR timer 12, one READ/atomic outstanding.
    fn default() -> Self {
        ConnectOptions {
            port: 1,
            sgid_index: 1,
            mtu: Mtu::Mtu1024,
            timeout: 14,
            retry_cnt: 7,
            rnr_retry: 7,
            min_rnr_timer: 12,
            max_rd_atomic: 1,
            max_dest_rd_atomic: 1,
            access: Access::LOCAL_WRITE
                | Access::REMOTE_WRITE
                | Access::REMOTE_READ
                | Access::REMOTE_ATOMIC,
            qkey: 0x1111_1111,
        }
    }
}

pub(crate) struct QpInner {
    pub pd: Arc<PdInner>,
    // Held so the CQs and SRQ outlive the QP that reports to them.
    #[allow(dead_code)]
    pub send_cq: Arc<CqInner>,
    #[allow(dead_code)]
    pub recv_cq: Arc<CqInner>,
    #[allow(dead_code)]
    pub srq: Option<Arc<SrqInner>>,
    pub r: QpRef,
    /// The send and receive rings (daemon backend).
    pub rings: Option<QpRings>,
}

impl Drop for QpInner {
    fn drop(&mut self) {
        let _ = self.pd.uctx.destroy_qp(self.r.handle);
    }
}

/// A queue pair (`ibv_qp`).
#[derive(Clone)]
pub struct Qp {
    pub(crate) inner: Arc<QpInner>,
    psn: u32,
}

impl Qp {
    pub(crate) fn from_parts(inner: QpInner) -> Qp {
        // A random initial PSN, as rdma-core's examples use.
        let psn = (RandomState::new().hash_one(inner.r.qpn) as u32) & 0xff_ffff;
        Qp {
            inner: Arc::new(inner),
            psn,
        }
    }

    /// QP number.
    pub fn qpn(&self) -> u32 {
        self.inner.r.qpn
    }

    /// Transport service.
    pub fn qp_type(&self) -> QpType {
        self.inner.r.init.qp_type
    }

    /// The first PSN this QP sends with when connected by [`Qp::connect`].
    pub fn initial_psn(&self) -> u32 {
        self.psn
    }

    /// What a peer needs to reach this QP, with the GID at `sgid_index` 1.
    pub fn endpoint(&self) -> Result<Endpoint> {
        let gid = self.inner.pd.uctx.query_gid(1, 1)?;
        Ok(Endpoint {
            qpn: self.qpn(),
            psn: self.psn,
            gid,
        })
    }

    /// Change attributes (`ibv_modify_qp`); the core checks the IBTA rules
    /// of the transition and names what is missing or not allowed.
    pub fn modify(&self, attrs: &ModifyAttrs) -> Result<()> {
        self.inner.pd.uctx.modify_qp(self.inner.r.handle, attrs)
    }

    /// Attributes, state and counters (`ibv_query_qp`).
    pub fn query(&self) -> Result<QpInfo> {
        self.inner.pd.uctx.query_qp(self.inner.r.handle)
    }

    /// Current state.
    pub fn state(&self) -> Result<QpState> {
        Ok(self.query()?.state)
    }

    /// RESET → INIT.
    pub fn init(&self, o: &ConnectOptions) -> Result<()> {
        let mut a = ModifyAttrs {
            qp_state: Some(QpState::Init),
            pkey_index: Some(0),
            port_num: Some(o.port),
            ..Default::default()
        };
        match self.qp_type() {
            QpType::Ud => a.qkey = Some(o.qkey),
            // UC has no READ or atomics: keep the rights it can have, so
            // that the default options connect every connected type.
            QpType::Uc => {
                let uc = Access::LOCAL_WRITE.0 | Access::REMOTE_WRITE.0 | Access::MW_BIND.0;
                a.qp_access_flags = Some(Access(o.access.0 & uc));
            }
            _ => a.qp_access_flags = Some(o.access),
        }
        self.modify(&a)
    }

    /// Bring the QP to RTS talking to `remote`: INIT (if still in RESET),
    /// RTR and RTS with the attributes IBTA requires for its type. For UD,
    /// `remote` is ignored (datagrams name their destination).
    pub fn connect(&self, remote: &Endpoint, o: &ConnectOptions) -> Result<()> {
        if self.state()? == QpState::Reset {
            self.init(o)?;
        }
        let t = self.qp_type();
        let mut rtr = ModifyAttrs {
            qp_state: Some(QpState::Rtr),
            ..Default::default()
        };
        if t != QpType::Ud {
            rtr.path_mtu = Some(o.mtu);
            rtr.dest_qp_num = Some(remote.qpn);
            rtr.rq_psn = Some(remote.psn);
            rtr.ah_attr = Some(AhAttr {
                dgid: remote.gid,
                sgid_index: o.sgid_index,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
                sl: 0,
                port: o.port,
            });
        }
        if t == QpType::Rc {
            rtr.max_dest_rd_atomic = Some(o.max_dest_rd_atomic);
            rtr.min_rnr_timer = Some(o.min_rnr_timer);
        }
        self.modify(&rtr)?;
        let mut rts = ModifyAttrs {
            qp_state: Some(QpState::Rts),
            sq_psn: Some(self.psn),
            ..Default::default()
        };
        if t == QpType::Rc {
            rts.timeout = Some(o.timeout);
            rts.retry_cnt = Some(o.retry_cnt);
            rts.rnr_retry = Some(o.rnr_retry);
            rts.max_rd_atomic = Some(o.max_rd_atomic);
        }
        self.modify(&rts)
    }

    /// Post a send work request (`ibv_post_send`).
    ///
    /// In the daemon backend the WR is copied into the send ring; what the
    /// device refuses then (a QP not in RTS, say) comes back as a
    /// `LOC_QP_OP_ERR` completion rather than an error here.
    pub fn post_send(&self, wr: SendWr) -> Result<()> {
        match (&self.inner.rings, self.inner.pd.uctx.driver()) {
            (Some(r), _) => lock(&r.sq).post_send(&wr),
            (None, Some(drv)) => drv.post_send(self.inner.r.qpn, wr),
            (None, None) => Err(self.inner.pd.uctx.unsupported("a QP without rings")),
        }
    }

    /// Invalidate `rkey` — a region or a bound type 2 window of this QP's
    /// protection domain — so that no peer can use it any more
    /// (`IBV_WR_LOCAL_INV`). Soft devices do it at once: it takes effect
    /// before this returns and posts no completion, whatever is still on
    /// the send queue. To invalidate in order with the send queue (after
    /// every earlier work request has completed) and get a completion,
    /// post [`SendWr::local_inv`] instead. A type 1 window is invalidated
    /// by binding it with length 0 ([`crate::Mw::bind`]). One uAPI call
    /// (`QP.local_invalidate`) on both backends: through the daemon's
    /// socket it has taken effect in the daemon when this returns.
    ///
    /// ```no_run
    /// # use softverbs::*;
    /// # fn f(qp: &Qp, mr: &Mr) -> Result<()> {
    /// // A peer that still holds mr.rkey() now gets REM_ACCESS_ERR.
    /// qp.local_invalidate(mr.rkey())?;
    /// # Ok(()) }
    /// ```
    pub fn local_invalidate(&self, rkey: u32) -> Result<()> {
        self.inner
            .pd
            .uctx
            .local_invalidate(self.inner.r.handle, rkey)
    }

    /// Post a receive work request (`ibv_post_recv`).
    pub fn post_recv(&self, wr: RecvWr) -> Result<()> {
        match (&self.inner.rings, self.inner.pd.uctx.driver()) {
            (Some(QpRings { rq: Some(rq), .. }), _) => lock(rq).post_recv(&wr),
            (Some(_), _) => Err(VerbsError::invalid(
                "this QP receives from an SRQ: post to the SRQ",
            )),
            (None, Some(drv)) => drv.post_recv(self.inner.r.qpn, wr),
            (None, None) => Err(self.inner.pd.uctx.unsupported("a QP without rings")),
        }
    }
}

impl std::fmt::Debug for Qp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Qp({:?} {:#x})", self.qp_type(), self.qpn())
    }
}
