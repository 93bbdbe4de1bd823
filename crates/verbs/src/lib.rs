//! # softverbs — RDMA verbs in user space
//!
//! The public Rust API of softverbs: the libibverbs of this project. It
//! opens software RDMA devices that speak RoCEv2 over UDP (wire-compatible
//! with Linux `rdma_rxe`), and offers the verbs objects — protection
//! domains, memory regions and windows, completion queues and channels,
//! queue pairs (RC, UC, UD), shared receive queues and address handles.
//!
//! Control verbs (create, modify, destroy) go through the core's typed uAPI;
//! posting and polling go straight to the device, as on real hardware.
//!
//! Two backends ([`Backend`]): **embedded** (this process's own devices)
//! and **daemon** (`softverbsd`'s devices, the uAPI over its socket, posting
//! and polling through shared-memory rings, [`Pd::reg_mr`] memory in a
//! sealed memfd). [`Context::open`] picks the daemon when
//! `SOFTVERBS_BACKEND=daemon` or when a daemon answers on its socket, and
//! embedded otherwise or with `SOFTVERBS_BACKEND=embedded`. Completion
//! channels and async events work on both (the daemon adds
//! [`AsyncEvent::DeviceFatal`] when it goes away), and so do SRD QPs
//! ([`efa`]), window binds and invalidation ([`Mw::post_bind`],
//! [`Qp::local_invalidate`]) and device counters ([`Context::counters`]).
//! Not in the daemon backend: raw-memory registration (and
//! re-registration over raw memory) — the daemon cannot reach this
//! process's heap; [`Context::alloc_block`] gives a buffer either backend
//! registers.
//!
//! Safety by construction: every object keeps its parents alive, memory that
//! a device may touch is owned by the region ([`Mr`]) or registered through an
//! `unsafe` function with a written contract, and the device checks every key,
//! bound and right, so no safe code can make it write to freed memory.
//!
//! ```no_run
//! use softverbs::*;
//!
//! # fn main() -> Result<()> {
//! // Two devices in one process (the default configuration: rxe0 on
//! // 127.0.0.1 and rxe1 on 127.0.0.2).
//! let a = Context::open("rxe0")?;
//! let b = Context::open("rxe1")?;
//! let (pd_a, pd_b) = (a.alloc_pd()?, b.alloc_pd()?);
//! let src = pd_a.reg_mr(4096, Access::LOCAL_WRITE)?;
//! let dst = pd_b.reg_mr(4096, Access::LOCAL_WRITE | Access::REMOTE_WRITE)?;
//! src.write(0, b"hello, RDMA")?;
//! let (cq_a, cq_b) = (a.create_cq(16, None)?, b.create_cq(16, None)?);
//! let qa = pd_a.create_qp(&QpInitAttr::rc(&cq_a, &cq_a))?;
//! let qb = pd_b.create_qp(&QpInitAttr::rc(&cq_b, &cq_b))?;
//! qa.connect(&qb.endpoint()?, &ConnectOptions::default())?;
//! qb.connect(&qa.endpoint()?, &ConnectOptions::default())?;
//! qa.post_send(SendWr::write(1, src.sge(0, 11), dst.addr(), dst.rkey()).signaled())?;
//! let wc = cq_a.wait_one(std::time::Duration::from_secs(5))?;
//! assert_eq!(wc.status, WcStatus::Success);
//! let mut out = [0u8; 11];
//! dst.read(0, &mut out)?;
//! assert_eq!(&out, b"hello, RDMA");
//! # Ok(()) }
//! ```

#[cfg(feature = "tokio")]
mod async_cq;
mod backend;
mod context;
mod cq;
mod device;
pub mod efa;
mod mr;
mod pd;
mod qp;
mod srq;

#[cfg(feature = "tokio")]
pub use async_cq::{AsyncCompletionChannel, AsyncCq};
pub use backend::{Backend, BACKEND_ENV};
pub use context::Context;
pub use cq::{CompletionChannel, Cq};
pub use device::{counters, devices, resources, DeviceInfo};
pub use mr::{Mr, Mw, Rereg, SendWrExt};
pub use pd::{Ah, Pd};
pub use qp::{ConnectOptions, Endpoint, Qp, QpInitAttr};
pub use srq::Srq;

pub use softverbs_core::caps::{AtomicCap, DeviceCaps, Operations, QpTypes};
pub use softverbs_core::driver::{
    AhAttr, DeviceCounters, MwType, PortAttr, PortState, QpInfo, SrqAttr, Wc,
};
pub use softverbs_core::events::{AsyncEvent, AsyncEvents};
pub use softverbs_core::mem::MemBlock;
pub use softverbs_core::{ModifyAttrs, ResDetail, ResKind, Resource, Result, VerbsError};
pub use softverbs_devices::{DeviceConfig, DeviceKind};
pub use softverbs_transport::{
    Access, Mtu, Payload, QpAttrs, QpCounters, QpState, QpType, RecvWr, SendFlags, SendOp, SendWr,
    Sge, UdDest, WcOpcode, WcStatus,
};
pub use softverbs_wire::Gid;
