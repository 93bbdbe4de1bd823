//! EFA direct verbs (rdma-core's `efadv`) for the `srd` device: SRD queue
//! pairs and the device's EFA attributes, through the driver namespace of
//! the uAPI (`softverbs_core::efa`).
//!
//! An SRD QP is an ordinary [`Qp`]: bring it up as UD
//! ([`Qp::connect`] with any endpoint: the Q_Key at INIT, then RTR and RTS)
//! and post with UD-style addressing — [`SendWr::to`] with
//! [`crate::Ah::dest`] (AH, remote QPN, Q_Key) on every work request — SEND
//! and SEND with immediate (up to one MTU), RDMA WRITE (with immediate),
//! RDMA READ (up to `max_rdma_size`). Delivery is reliable but unordered.
//!
//! ```no_run
//! use softverbs::*;
//! # fn main() -> Result<()> {
//! // SOFTVERBS_DEVICES=efa0=srd:127.0.0.5,efa1=srd:127.0.0.6
//! let ctx = Context::open("efa0")?;
//! let attr = efa::query_device(&ctx)?;
//! assert!(attr.has(efa::EfaDeviceAttr::CAPS_RDMA_READ));
//! let pd = ctx.alloc_pd()?;
//! let cq = ctx.create_cq(256, None)?;
//! // EFA inlines at most inline_buf_size (32) bytes.
//! let init = QpInitAttr { max_inline_data: 32, ..QpInitAttr::ud(&cq, &cq) };
//! let qp = efa::create_srd_qp(&pd, &init, 0)?;
//! qp.connect(&qp.endpoint()?, &ConnectOptions::default())?;
//! # Ok(()) }
//! ```
//!
//! [`SendWr::to`]: crate::SendWr::to

use softverbs_core::QpCreate;

pub use softverbs_core::efa::{EfaDeviceAttr, QP_FLAGS_UNSOLICITED_WRITE_RECV};

use crate::qp::{Qp, QpInitAttr, QpInner};
use crate::{Context, Pd, Result};

/// `efadv_query_device`: `Unsupported` on a device that is not EFA-like.
pub fn query_device(ctx: &Context) -> Result<EfaDeviceAttr> {
    ctx.uctx.efa_query_device()
}

/// `efadv_create_qp_ex` with `EFADV_QP_DRIVER_TYPE_SRD`: an SRD QP in
/// RESET (`attr.qp_type` is ignored). `flags`:
/// [`QP_FLAGS_UNSOLICITED_WRITE_RECV`]. `Unsupported`, naming what the
/// device offers, on a device without SRD.
pub fn create_srd_qp(pd: &Pd, attr: &QpInitAttr, flags: u64) -> Result<Qp> {
    let req = QpCreate {
        qp_type: softverbs_transport::QpType::Ud,
        send_cq: attr.send_cq.inner.r.handle,
        recv_cq: attr.recv_cq.inner.r.handle,
        srq: attr.srq.as_ref().map(|s| s.inner.r.handle),
        max_send_wr: attr.max_send_wr,
        max_recv_wr: attr.max_recv_wr,
        max_send_sge: attr.max_send_sge,
        max_recv_sge: attr.max_recv_sge,
        max_inline_data: attr.max_inline_data,
        sq_sig_all: attr.sq_sig_all,
    };
    let r = pd
        .inner
        .uctx
        .efa_create_srd_qp(pd.inner.r.handle, &req, flags)?;
    // In the daemon backend the SRD QP gets its send and receive rings
    // like any QP (its WQEs carry UD-style addressing).
    let rings = match pd.inner.uctx.qp_rings(&r) {
        Ok(rings) => rings,
        Err(e) => {
            let _ = pd.inner.uctx.destroy_qp(r.handle);
            return Err(e);
        }
    };
    Ok(Qp::from_parts(QpInner {
        pd: pd.inner.clone(),
        send_cq: attr.send_cq.inner.clone(),
        recv_cq: attr.recv_cq.inner.clone(),
        srq: attr.srq.as_ref().map(|s| s.inner.clone()),
        r,
        rings,
    }))
}
