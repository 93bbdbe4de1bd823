//! The driver interface: what a device implements and the core calls (the
//! analogue of `struct ib_device_ops`). The core validates every call — handle
//! ownership, capabilities, the QP state machine — before a driver sees it;
//! a driver checks what only it can (keys, queue depths, its own limits).
//!
//! Ids are the driver's own small integers (QPs are named by their QPN, MRs
//! by their lkey); the core maps its handles onto them.

use std::sync::Arc;

use serde::Serialize;
use softverbs_transport::{
    Access, Completion, ModifyQp, QpAttrs, QpCounters, QpState, QpType, RecvWr, SendWr,
};
use softverbs_wire::Gid;

use crate::caps::DeviceCaps;
use crate::error::Result;
use crate::events::{AsyncEvents, CompChannel};
use crate::mem::Backing;
use crate::uapi::DriverSpec;

/// A work completion (`ibv_wc`).
pub type Wc = Completion;

/// Port state (`ibv_port_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PortState {
    /// The link is down.
    Down,
    /// Up and usable.
    Active,
}

/// Port attributes (`ibv_port_attr`) plus what lies behind the port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortAttr {
    /// Port number (1-based).
    pub port: u8,
    /// State.
    pub state: PortState,
    /// Largest MTU, bytes.
    pub max_mtu: u32,
    /// Active MTU, bytes.
    pub active_mtu: u32,
    /// GID table length.
    pub gid_tbl_len: u32,
    /// `Ethernet` for RoCE.
    pub link_layer: &'static str,
    /// The network interface or address the port is bound to.
    pub netdev: String,
    /// The UDP address the port sends from and listens on.
    pub udp_addr: String,
}

/// Device-wide counters, as rxe's hardware counters and the drop reasons.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct DeviceCounters {
    pub sent_pkts: u64,
    pub rcvd_pkts: u64,
    pub sent_bytes: u64,
    pub rcvd_bytes: u64,
    /// Dropped: ICRC did not verify.
    pub drop_bad_icrc: u64,
    /// Dropped: no QP with the destination QPN.
    pub drop_unknown_qpn: u64,
    /// Dropped: opcode not valid for the QP's type.
    pub drop_bad_opcode: u64,
    /// Dropped: Q_Key mismatch (UD).
    pub drop_qkey_mismatch: u64,
    /// Dropped: could not be parsed.
    pub drop_malformed: u64,
    /// Sum of the per-QP counters of live and destroyed QPs.
    pub qp: QpCounters,
    /// Completions dropped because a CQ was full.
    pub cq_overruns: u64,
}

/// What `create_qp` is asked for (`ibv_qp_init_attr`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QpInit {
    /// Transport.
    pub qp_type: QpType,
    /// CQ for send completions.
    pub send_cq: u32,
    /// CQ for receive completions.
    pub recv_cq: u32,
    /// SRQ, if receives come from one.
    pub srq: Option<u32>,
    /// Send queue depth.
    pub max_send_wr: u32,
    /// Receive queue depth.
    pub max_recv_wr: u32,
    /// SGEs per send WR.
    pub max_send_sge: u32,
    /// SGEs per receive WR.
    pub max_recv_sge: u32,
    /// Inline data bytes.
    pub max_inline_data: u32,
    /// Signal all send completions.
    pub sq_sig_all: bool,
}

/// What `query_qp` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QpInfo {
    /// QP number.
    pub qpn: u32,
    /// Current state.
    pub state: QpState,
    /// Current attributes.
    pub attrs: QpAttrs,
    /// Creation attributes (with the depths actually granted).
    pub init: QpInit,
    /// Counters.
    pub counters: QpCounters,
}

/// Keys of a registered region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MrKeys {
    /// Local key.
    pub lkey: u32,
    /// Remote key.
    pub rkey: u32,
}

/// What [`Driver::rereg_mr`] changes (the flags of `ibv_rereg_mr`); a
/// `None` keeps that part of the region as it is.
#[derive(Debug, Clone, Default)]
pub struct MrRereg {
    /// The new PD (`IBV_REREG_MR_CHANGE_PD`).
    pub pd: Option<u32>,
    /// The new access flags (`IBV_REREG_MR_CHANGE_ACCESS`).
    pub access: Option<Access>,
    /// The new memory and its iova (`IBV_REREG_MR_CHANGE_TRANSLATION`).
    pub memory: Option<(Backing, u64)>,
}

/// Memory window type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MwType {
    /// Bound with `ibv_bind_mw`, invalidated only by rebinding.
    Type1,
    /// Bound by a BIND_MW work request to one QP; remotely invalidatable.
    Type2,
}

/// A bind of a window to part of a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MwBind {
    /// The region's lkey.
    pub mr_lkey: u32,
    /// Start address inside the region.
    pub addr: u64,
    /// Length.
    pub len: u64,
    /// Remote rights granted through the window.
    pub access: Access,
}

/// Address handle attributes (`ibv_ah_attr` for RoCE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AhAttr {
    /// Destination GID.
    #[serde(skip)]
    pub dgid: Gid,
    /// Source GID index.
    pub sgid_index: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label.
    pub flow_label: u32,
    /// Service level.
    pub sl: u8,
    /// Port.
    pub port: u8,
}

/// SRQ attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SrqAttr {
    /// Depth.
    pub max_wr: u32,
    /// SGEs per WR.
    pub max_sge: u32,
    /// Limit for the limit event (0 = disarmed).
    pub limit: u32,
}

/// A QP of a driver-defined type (Linux's `IB_QPT_DRIVER` plus the
/// driver's own type and flags, as `efadv_create_qp_ex` passes them).
///
/// To the core such a QP is addressed and moved through its states like
/// UD (its `QpInit::qp_type` is `Ud`): work requests name their
/// destination (AH, remote QPN, Q_Key), the attribute rules are UD's — as
/// Linux's EFA driver treats SRD in `modify_qp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DriverQpInit {
    /// The driver's QP type (for EFA: [`crate::efa::DRIVER_TYPE_SRD`]).
    pub driver_type: u32,
    /// The driver's creation flags (for EFA:
    /// [`crate::efa::QP_FLAGS_UNSOLICITED_WRITE_RECV`]).
    pub flags: u64,
}

/// A software RDMA device, as the core sees it.
pub trait Driver: Send + Sync + 'static {
    /// Device name (`rxe0`).
    fn name(&self) -> &str;
    /// Driver kind (`rxe`, `udonly`, `srd`).
    fn kind(&self) -> &str;
    /// Attributes and capabilities.
    fn caps(&self) -> &DeviceCaps;
    /// Port attributes.
    fn port(&self, port: u8) -> Result<PortAttr>;
    /// The GID table of a port.
    fn gids(&self, port: u8) -> Result<Vec<Gid>>;
    /// Device-wide counters.
    fn counters(&self) -> DeviceCounters;

    /// Allocate a protection domain.
    fn alloc_pd(&self) -> Result<u32>;
    /// Free a protection domain (the core checked it has no users).
    fn dealloc_pd(&self, pd: u32) -> Result<()>;

    /// Register memory: the whole backing, at its own address.
    fn reg_mr(&self, pd: u32, backing: Backing, access: Access) -> Result<MrKeys>;
    /// Register memory: the whole backing, addressed as `iova` (the
    /// region's RDMA address: what SGE addresses, RETH virtual addresses
    /// and window binds name; the bytes live in `backing`, which may sit
    /// elsewhere, as `ibv_reg_mr_iova2` allows). The core registers
    /// through this, with the backing's own address when the caller gave
    /// no iova; a driver that keeps regions at their own address only
    /// leaves the default, which refuses any other iova.
    fn reg_mr_iova(&self, pd: u32, backing: Backing, iova: u64, access: Access) -> Result<MrKeys> {
        if iova != backing.addr() {
            return Err(crate::error::VerbsError::unsupported(
                self.name(),
                "memory regions addressed by an iova other than their memory's address",
            ));
        }
        self.reg_mr(pd, backing, access)
    }
    /// Change a registered region in place, keeping its keys
    /// (`ibv_rereg_mr`, as rxe and mlx5 keep them): its PD, its access
    /// and/or its memory, all or nothing. The core checked the request;
    /// a driver refuses a region with windows bound (`Busy`).
    fn rereg_mr(&self, lkey: u32, change: MrRereg) -> Result<()> {
        let _ = (lkey, change);
        Err(crate::error::VerbsError::unsupported(
            self.name(),
            "re-registering memory regions (rereg_mr)",
        ))
    }
    /// Deregister.
    fn dereg_mr(&self, lkey: u32) -> Result<()>;
    /// Allocate a memory window.
    fn alloc_mw(&self, pd: u32, mw_type: MwType) -> Result<u32>;
    /// Bind a window (type 1 through `qpn`'s send queue); returns the new rkey.
    fn bind_mw(&self, qpn: u32, mw_rkey: u32, bind: MwBind) -> Result<u32>;
    /// Free a window.
    fn dealloc_mw(&self, rkey: u32) -> Result<()>;
    /// Locally invalidate an rkey (LOCAL_INV).
    fn invalidate(&self, pd: u32, rkey: u32) -> Result<()>;

    /// Create a CQ of at least `cqe` entries; returns its id and the size granted.
    fn create_cq(
        &self,
        cqe: u32,
        channel: Option<Arc<CompChannel>>,
        events: Arc<AsyncEvents>,
    ) -> Result<(u32, u32)>;
    /// Resize; returns the size granted.
    fn resize_cq(&self, cq: u32, cqe: u32) -> Result<u32>;
    /// Destroy.
    fn destroy_cq(&self, cq: u32) -> Result<()>;
    /// Move up to `max` completions into `out`; returns how many.
    fn poll_cq(&self, cq: u32, max: usize, out: &mut Vec<Wc>) -> Result<usize>;
    /// Arm the CQ to notify its channel on the next (solicited) completion.
    fn req_notify_cq(&self, cq: u32, solicited_only: bool) -> Result<()>;

    /// Create an SRQ.
    fn create_srq(&self, pd: u32, attr: SrqAttr, events: Arc<AsyncEvents>) -> Result<u32>;
    /// Change its depth and/or arm its limit.
    fn modify_srq(&self, srq: u32, max_wr: Option<u32>, limit: Option<u32>) -> Result<()>;
    /// Query.
    fn query_srq(&self, srq: u32) -> Result<SrqAttr>;
    /// Destroy.
    fn destroy_srq(&self, srq: u32) -> Result<()>;
    /// Post a receive to an SRQ.
    fn post_srq_recv(&self, srq: u32, wr: RecvWr) -> Result<()>;

    /// Create a QP; returns its QPN and the creation attributes granted.
    fn create_qp(&self, pd: u32, init: &QpInit, events: Arc<AsyncEvents>) -> Result<(u32, QpInit)>;
    /// Apply an attribute change the core has validated.
    fn modify_qp(&self, qpn: u32, m: &ModifyQp) -> Result<()>;
    /// Query.
    fn query_qp(&self, qpn: u32) -> Result<QpInfo>;
    /// Destroy (outstanding work is dropped without completions, as in Linux).
    fn destroy_qp(&self, qpn: u32) -> Result<()>;
    /// Post a send WR.
    fn post_send(&self, qpn: u32, wr: SendWr) -> Result<()>;
    /// Post a receive WR.
    fn post_recv(&self, qpn: u32, wr: RecvWr) -> Result<()>;
    /// Post the bind of a **type 1** window (`ibv_bind_mw`) as a work
    /// request on `qpn`'s send queue, as rxe's provider does: it runs after
    /// the work posted before it and completes like any work request (a
    /// refused bind with `MW_BIND_ERR`). `wr.op` is a `BindMw` naming a
    /// type 1 window; [`Driver::post_send`] refuses those.
    fn post_bind_mw(&self, qpn: u32, wr: SendWr) -> Result<()> {
        let _ = (qpn, wr);
        Err(crate::error::VerbsError::unsupported(
            self.name(),
            "type 1 window binds posted on the send queue",
        ))
    }

    /// Create an address handle.
    fn create_ah(&self, pd: u32, attr: AhAttr) -> Result<u32>;
    /// Destroy an address handle.
    fn destroy_ah(&self, ah: u32) -> Result<()>;

    /// Create a QP of a driver-defined type ([`DriverQpInit`]); the core
    /// validated `init` as for UD. Drivers without such types refuse.
    fn create_driver_qp(
        &self,
        pd: u32,
        init: &QpInit,
        driver: &DriverQpInit,
        events: Arc<AsyncEvents>,
    ) -> Result<(u32, QpInit)> {
        let _ = (pd, init, events);
        Err(crate::error::VerbsError::unsupported(
            self.name(),
            format!("driver QP type {}", driver.driver_type),
        ))
    }

    /// The EFA direct-verbs device attributes (`efadv_query_device`), for
    /// drivers that offer SRD; `None` otherwise.
    fn efa_device_attr(&self) -> Option<crate::efa::EfaDeviceAttr> {
        None
    }

    /// The driver's own uAPI additions (the provider channel of seeds 002
    /// and 004): methods and attributes in the driver namespace, merged
    /// into the device's registry by `Device::new`. Soft devices can return
    /// [`crate::provider::soft_driver_spec`], which adds the methods every
    /// soft device shares.
    fn driver_spec(&self) -> Option<&'static DriverSpec> {
        None
    }

    /// Gives a QP's receive queue (`srq` false) or an SRQ (`srq` true) a
    /// [`RecvSource`]: receive WQEs posted where the device fetches them
    /// itself, as hardware reads its receive queue from host memory. The
    /// device pulls from it whenever datagrams arrive, before handling
    /// them, and on [`Driver::pull_recv`], so a WQE posted before a peer
    /// sent is there when the packet lands (softverbsd's shared-memory
    /// rings). `None` removes it; destroying the queue removes it too.
    fn set_recv_source(
        &self,
        srq: bool,
        id: u32,
        source: Option<Arc<dyn RecvSource>>,
    ) -> Result<()> {
        let _ = (srq, id, source);
        Err(crate::error::VerbsError::unsupported(
            self.name(),
            "receive sources",
        ))
    }

    /// Pulls the WQEs of one queue's [`RecvSource`] now; returns how many.
    fn pull_recv(&self, srq: bool, id: u32) -> Result<usize> {
        let _ = (srq, id);
        Err(crate::error::VerbsError::unsupported(
            self.name(),
            "receive sources",
        ))
    }
}

/// Receive WQEs the device fetches itself (see [`Driver::set_recv_source`]).
/// Called with the device's lock held: an implementation must not call
/// back into the driver.
pub trait RecvSource: Send + Sync {
    /// Moves the WQEs posted since the last call into `out`, in order.
    fn pull(&self, out: &mut Vec<RecvWr>);
    /// The device refused a pulled WQE (queue full, QP gone, ...).
    fn refused(&self, wr_id: u64, err: crate::error::VerbsError);
}
