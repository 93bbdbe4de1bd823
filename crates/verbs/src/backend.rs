//! The two backends under the public API, and how one is picked.
//!
//! - **Embedded**: the process owns its devices; control calls go through
//!   the local [`Ucontext`] (encoded uAPI calls dispatched in process), the
//!   data path calls the device's driver directly.
//! - **Daemon**: `softverbsd` owns the host's devices; control calls are the
//!   same encoded calls over its Unix socket ([`Client`], typed through
//!   [`VerbsCalls`]), posting and polling go through shared-memory rings
//!   (`docs/daemon-rings.md`), and the memory of [`crate::Pd::reg_mr`] is a
//!   sealed memfd ([`MemBlock::shared`]) that the daemon maps too.
//!
//! [`Context::open`](crate::Context::open) picks with [`Backend::from_env`].

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use softverbs_core::calls::VerbsCalls;
use softverbs_core::caps::DeviceCaps;
use softverbs_core::driver::{AhAttr, DeviceCounters, Driver, MwType, PortAttr, QpInfo, SrqAttr};
use softverbs_core::efa::EfaDeviceAttr;
use softverbs_core::events::{AsyncEvents, CompChannel};
use softverbs_core::mem::{Backing, MemBlock, RawMem};
use softverbs_core::uapi::Handle;
use softverbs_core::{
    AhRef, ChannelRef, CqRef, ModifyAttrs, MrRef, MwRef, PdRef, QpCreate, QpRef, SrqRef, Ucontext,
};
use softverbs_daemon::client::{Client, CompQueue, WorkQueue};
use softverbs_transport::Access;
use softverbs_wire::Gid;

use crate::{Result, VerbsError};

/// The environment variable that chooses the backend: `embedded` or
/// `daemon`; unset (or empty), the daemon is used when its socket answers.
pub const BACKEND_ENV: &str = "SOFTVERBS_BACKEND";

/// Where a [`crate::Context`] gets its device from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The devices of this process (`SOFTVERBS_DEVICES`).
    Embedded,
    /// The devices of the `softverbsd` listening on this socket.
    Daemon(PathBuf),
}

impl Backend {
    /// The daemon's socket as the daemon itself defaults it:
    /// `SOFTVERBS_SOCKET`, else `$XDG_RUNTIME_DIR/softverbs.sock`, else
    /// `/run/softverbs/softverbs.sock`.
    pub fn default_socket() -> PathBuf {
        softverbs_daemon::default_socket_path()
    }

    /// The backend the environment asks for: `SOFTVERBS_BACKEND=embedded`
    /// forces embedded, `SOFTVERBS_BACKEND=daemon` the daemon at
    /// [`Backend::default_socket`]; otherwise the daemon when a daemon
    /// listens on that socket, embedded when not.
    pub fn from_env() -> Result<Backend> {
        let v = std::env::var(BACKEND_ENV).unwrap_or_default();
        match v.as_str() {
            "embedded" => Ok(Backend::Embedded),
            "daemon" => Ok(Backend::Daemon(Self::default_socket())),
            "" => {
                let p = Self::default_socket();
                // A stale socket file (nobody listening) does not count.
                if p.exists() && UnixStream::connect(&p).is_ok() {
                    Ok(Backend::Daemon(p))
                } else {
                    Ok(Backend::Embedded)
                }
            }
            other => Err(VerbsError::invalid(format!(
                "{BACKEND_ENV}={other}: expected `embedded` or `daemon`"
            ))),
        }
    }
}

/// A connection to the daemon with one device open.
pub(crate) struct DaemonCtx {
    pub client: Client,
}

/// One open device context, in either backend: the control calls.
pub(crate) enum Ctx {
    Embedded(Arc<Ucontext>),
    Daemon(DaemonCtx),
}

fn daemon_unsupported(d: &DaemonCtx, what: &str) -> VerbsError {
    VerbsError::unsupported(
        d.client.device(),
        format!("{what} in the daemon backend (set SOFTVERBS_BACKEND=embedded)"),
    )
}

impl Ctx {
    pub fn daemon(path: &std::path::Path, name: &str) -> Result<Ctx> {
        Ok(Ctx::Daemon(DaemonCtx {
            client: Client::open(path, name)?,
        }))
    }

    pub fn name(&self) -> &str {
        match self {
            Ctx::Embedded(u) => u.device().name(),
            Ctx::Daemon(d) => d.client.device(),
        }
    }

    /// The driver, for the embedded data path.
    pub fn driver(&self) -> Option<&Arc<dyn Driver>> {
        match self {
            Ctx::Embedded(u) => Some(u.driver()),
            Ctx::Daemon(_) => None,
        }
    }

    pub fn is_daemon(&self) -> bool {
        matches!(self, Ctx::Daemon(_))
    }

    /// A zeroed buffer this backend can register: heap when embedded, a
    /// sealed memfd (mapped here, passed to the daemon) when not.
    pub fn alloc_block(&self, len: usize) -> Result<MemBlock> {
        match self {
            Ctx::Embedded(_) => Ok(MemBlock::new(len)),
            Ctx::Daemon(d) => MemBlock::shared(len).map_err(|e| {
                VerbsError::Io(format!(
                    "{}: a {len}-byte shared memory block (memfd) for the daemon: {e}",
                    d.client.device()
                ))
            }),
        }
    }

    pub fn unsupported(&self, what: &str) -> VerbsError {
        match self {
            Ctx::Embedded(u) => VerbsError::unsupported(u.device().name(), what),
            Ctx::Daemon(d) => daemon_unsupported(d, what),
        }
    }

    pub fn query_device(&self) -> Result<DeviceCaps> {
        match self {
            Ctx::Embedded(u) => u.query_device(),
            Ctx::Daemon(d) => d.client.query_device(),
        }
    }

    pub fn query_port(&self, port: u8) -> Result<PortAttr> {
        match self {
            Ctx::Embedded(u) => u.query_port(port),
            Ctx::Daemon(d) => d.client.query_port(port),
        }
    }

    pub fn query_gid(&self, port: u8, index: u16) -> Result<Gid> {
        match self {
            Ctx::Embedded(u) => u.query_gid(port, index),
            Ctx::Daemon(d) => d.client.query_gid(port, index),
        }
    }

    /// The device's counters: read from the driver when embedded, asked of
    /// the daemon (`DEVICE.query_device_counters`) when not.
    pub fn counters(&self) -> Result<DeviceCounters> {
        match self {
            Ctx::Embedded(u) => Ok(u.driver().counters()),
            Ctx::Daemon(d) => d.client.query_device_counters(),
        }
    }

    pub fn async_events(&self) -> &Arc<AsyncEvents> {
        match self {
            Ctx::Embedded(u) => u.async_events(),
            Ctx::Daemon(d) => d.client.async_events(),
        }
    }

    pub fn alloc_pd(&self) -> Result<PdRef> {
        match self {
            Ctx::Embedded(u) => u.alloc_pd(),
            Ctx::Daemon(d) => d.client.alloc_pd(),
        }
    }

    pub fn dealloc_pd(&self, pd: Handle) -> Result<()> {
        match self {
            Ctx::Embedded(u) => u.dealloc_pd(pd),
            Ctx::Daemon(d) => d
                .client
                .destroy_object(softverbs_core::objects::ids::PD, pd),
        }
    }

    /// Registers a whole block, addressed as `iova` (`None`: its own
    /// address): in the daemon backend it must be a [`MemBlock::shared`]
    /// one (its memfd is passed to the daemon).
    pub fn reg_block(
        &self,
        pd: Handle,
        block: &Arc<MemBlock>,
        iova: Option<u64>,
        access: Access,
    ) -> Result<MrRef> {
        match self {
            Ctx::Embedded(u) => u.reg_mr_iova(pd, Backing::Block(block.clone()), iova, access),
            Ctx::Daemon(d) => {
                let fd = block_memfd(block)?;
                let iova = iova.unwrap_or(block.addr());
                d.client
                    .reg_mr_memfd(pd, fd, 0, block.len() as u64, iova, access)
            }
        }
    }

    /// Re-registers a region in place (`ibv_rereg_mr`), keys kept; new
    /// memory in the daemon backend must be a [`MemBlock::shared`] block.
    pub fn rereg_mr(
        &self,
        mr: Handle,
        pd: Option<Handle>,
        access: Option<Access>,
        memory: Option<(Backing, Option<u64>)>,
    ) -> Result<MrRef> {
        match self {
            Ctx::Embedded(u) => u.rereg_mr(mr, pd, access, memory),
            Ctx::Daemon(d) => {
                let memfd = match memory {
                    None => None,
                    Some((Backing::Block(block), iova)) => Some((
                        block_memfd(&block)?,
                        0,
                        block.len() as u64,
                        iova.unwrap_or(block.addr()),
                    )),
                    Some(_) => {
                        return Err(daemon_unsupported(
                            d,
                            "re-registering a region over raw memory (the daemon cannot \
                             reach it: use a MemBlock::shared block)",
                        ))
                    }
                };
                d.client.rereg_mr_memfd(mr, pd, access, memfd)
            }
        }
    }

    pub fn reg_raw(
        &self,
        pd: Handle,
        raw: RawMem,
        iova: Option<u64>,
        access: Access,
    ) -> Result<MrRef> {
        match self {
            Ctx::Embedded(u) => u.reg_mr_iova(pd, Backing::Raw(raw), iova, access),
            Ctx::Daemon(d) => Err(daemon_unsupported(
                d,
                "registering raw memory (the daemon cannot reach it: use Pd::reg_mr)",
            )),
        }
    }

    pub fn dereg_mr(&self, mr: Handle) -> Result<()> {
        match self {
            Ctx::Embedded(u) => u.dereg_mr(mr),
            Ctx::Daemon(d) => d
                .client
                .destroy_object(softverbs_core::objects::ids::MR, mr),
        }
    }

    pub fn alloc_mw(&self, pd: Handle, t: MwType) -> Result<MwRef> {
        match self {
            Ctx::Embedded(u) => u.alloc_mw(pd, t),
            Ctx::Daemon(d) => d.client.alloc_mw(pd, t),
        }
    }

    pub fn bind_mw(
        &self,
        qp: Handle,
        mw: Handle,
        mr: Handle,
        addr: u64,
        len: u64,
        access: Access,
    ) -> Result<u32> {
        match self {
            Ctx::Embedded(u) => u.bind_mw(qp, mw, mr, addr, len, access),
            Ctx::Daemon(d) => d.client.bind_mw(qp, mw, mr, addr, len, access),
        }
    }

    pub fn dealloc_mw(&self, mw: Handle) -> Result<()> {
        match self {
            Ctx::Embedded(u) => u.dealloc_mw(mw),
            Ctx::Daemon(d) => d
                .client
                .destroy_object(softverbs_core::objects::ids::MW, mw),
        }
    }

    pub fn create_comp_channel(&self) -> Result<ChannelRef> {
        match self {
            Ctx::Embedded(u) => u.create_comp_channel(),
            // A channel of the daemon backend lives in this process: the
            // daemon rings the client's pump when an armed CQ ring fires,
            // and the pump reports the CQ here (`docs/daemon-rings.md`).
            Ctx::Daemon(_) => Ok(ChannelRef {
                handle: Handle::from_raw(0),
                channel: Arc::new(
                    CompChannel::new().map_err(|e| VerbsError::Io(format!("pipe: {e}")))?,
                ),
            }),
        }
    }

    pub fn destroy_comp_channel(&self, ch: Handle) -> Result<()> {
        match self {
            Ctx::Embedded(u) => u.destroy_comp_channel(ch),
            Ctx::Daemon(_) => Ok(()),
        }
    }

    pub fn create_cq(&self, cqe: u32, channel: Option<Handle>) -> Result<CqRef> {
        match self {
            Ctx::Embedded(u) => u.create_cq(cqe, channel),
            // The channel is this process's; the daemon's CQ reports to
            // the connection's own channel (its completion sink).
            Ctx::Daemon(d) => d.client.create_cq(cqe, None),
        }
    }

    pub fn resize_cq(&self, cq: Handle, cqe: u32) -> Result<u32> {
        match self {
            Ctx::Embedded(u) => u.resize_cq(cq, cqe),
            Ctx::Daemon(d) => d.client.resize_cq(cq, cqe),
        }
    }

    pub fn destroy_cq(&self, cq: Handle) -> Result<()> {
        match self {
            Ctx::Embedded(u) => u.destroy_cq(cq),
            Ctx::Daemon(d) => d
                .client
                .destroy_object(softverbs_core::objects::ids::CQ, cq),
        }
    }

    pub fn create_srq(&self, pd: Handle, attr: SrqAttr) -> Result<SrqRef> {
        match self {
            Ctx::Embedded(u) => u.create_srq(pd, attr),
            Ctx::Daemon(d) => d.client.create_srq(pd, attr),
        }
    }

    pub fn modify_srq(&self, srq: Handle, max_wr: Option<u32>, limit: Option<u32>) -> Result<()> {
        match self {
            Ctx::Embedded(u) => u.modify_srq(srq, max_wr, limit),
            Ctx::Daemon(d) => d.client.modify_srq(srq, max_wr, limit),
        }
    }

    pub fn query_srq(&self, srq: Handle) -> Result<SrqAttr> {
        match self {
            Ctx::Embedded(u) => u.query_srq(srq),
            Ctx::Daemon(d) => d.client.query_srq(srq),
        }
    }

    pub fn destroy_srq(&self, srq: Handle) -> Result<()> {
        match self {
            Ctx::Embedded(u) => u.destroy_srq(srq),
            Ctx::Daemon(d) => d
                .client
                .destroy_object(softverbs_core::objects::ids::SRQ, srq),
        }
    }

    pub fn create_qp(&self, pd: Handle, req: &QpCreate) -> Result<QpRef> {
        match self {
            Ctx::Embedded(u) => u.create_qp(pd, req),
            Ctx::Daemon(d) => d.client.create_qp(pd, req),
        }
    }

    pub fn modify_qp(&self, qp: Handle, attrs: &ModifyAttrs) -> Result<()> {
        match self {
            Ctx::Embedded(u) => u.modify_qp(qp, attrs),
            Ctx::Daemon(d) => d.client.modify_qp(qp, attrs),
        }
    }

    pub fn local_invalidate(&self, qp: Handle, rkey: u32) -> Result<()> {
        match self {
            Ctx::Embedded(u) => u.local_invalidate(qp, rkey),
            Ctx::Daemon(d) => d.client.local_invalidate(qp, rkey),
        }
    }

    pub fn query_qp(&self, qp: Handle) -> Result<QpInfo> {
        match self {
            Ctx::Embedded(u) => u.query_qp(qp),
            Ctx::Daemon(d) => d.client.query_qp(qp),
        }
    }

    pub fn destroy_qp(&self, qp: Handle) -> Result<()> {
        match self {
            Ctx::Embedded(u) => u.destroy_qp(qp),
            Ctx::Daemon(d) => d
                .client
                .destroy_object(softverbs_core::objects::ids::QP, qp),
        }
    }

    pub fn create_ah(&self, pd: Handle, attr: AhAttr) -> Result<AhRef> {
        match self {
            Ctx::Embedded(u) => u.create_ah(pd, attr),
            Ctx::Daemon(d) => d.client.create_ah(pd, attr),
        }
    }

    pub fn destroy_ah(&self, ah: Handle) -> Result<()> {
        match self {
            Ctx::Embedded(u) => u.destroy_ah(ah),
            Ctx::Daemon(d) => d
                .client
                .destroy_object(softverbs_core::objects::ids::AH, ah),
        }
    }

    pub fn efa_query_device(&self) -> Result<EfaDeviceAttr> {
        match self {
            Ctx::Embedded(u) => u.efa_query_device(),
            Ctx::Daemon(d) => {
                efa_device(d, "efadv_query_device (not an EFA-like device)")?;
                d.client.efa_query_device()
            }
        }
    }

    pub fn efa_create_srd_qp(&self, pd: Handle, req: &QpCreate, flags: u64) -> Result<QpRef> {
        match self {
            Ctx::Embedded(u) => u.efa_create_srd_qp(pd, req, flags),
            Ctx::Daemon(d) => {
                efa_device(
                    d,
                    "SRD queue pairs (SRD needs an EFA-like device: \
                     softverbs link add NAME type srd)",
                )?;
                d.client.efa_create_srd_qp(pd, req, flags)
            }
        }
    }

    /// Attaches a QP's rings (daemon backend; `None` when embedded).
    pub fn qp_rings(&self, r: &QpRef) -> Result<Option<QpRings>> {
        let Ctx::Daemon(d) = self else {
            return Ok(None);
        };
        let i = &r.init;
        let sq = d
            .client
            .send_queue(r.handle, i.max_send_wr, i.max_send_sge, i.max_inline_data)?;
        let rq = match i.srq {
            Some(_) => None,
            None => Some(Mutex::new(d.client.recv_queue(
                r.handle,
                i.max_recv_wr,
                i.max_recv_sge,
                false,
            )?)),
        };
        Ok(Some(QpRings {
            sq: Mutex::new(sq),
            rq,
        }))
    }

    /// Attaches a CQ's completion ring (daemon backend), reporting to
    /// `channel` when armed.
    pub fn cq_ring(
        &self,
        r: &CqRef,
        channel: Option<&Arc<CompChannel>>,
    ) -> Result<Option<Mutex<CompQueue>>> {
        match self {
            Ctx::Embedded(_) => Ok(None),
            Ctx::Daemon(d) => Ok(Some(Mutex::new(d.client.comp_queue(
                r.handle,
                r.id,
                r.cqe,
                channel.cloned(),
            )?))),
        }
    }

    /// Attaches an SRQ's ring (daemon backend).
    pub fn srq_ring(&self, r: &SrqRef, attr: &SrqAttr) -> Result<Option<Mutex<WorkQueue>>> {
        match self {
            Ctx::Embedded(_) => Ok(None),
            Ctx::Daemon(d) => Ok(Some(Mutex::new(d.client.recv_queue(
                r.handle,
                attr.max_wr,
                attr.max_sge,
                true,
            )?))),
        }
    }
}

/// Refuses an EFA call on a daemon device that is not EFA-like, as the
/// embedded context does, before anything crosses the socket.
fn efa_device(d: &DaemonCtx, what: &str) -> Result<()> {
    if d.client.driver_id() == softverbs_core::efa::EFA_DRIVER_ID {
        Ok(())
    } else {
        Err(VerbsError::unsupported(d.client.device(), what))
    }
}

/// A dup of a shared block's memfd, to pass to the daemon.
fn block_memfd(block: &MemBlock) -> Result<std::os::fd::OwnedFd> {
    block
        .memfd()
        .ok_or_else(|| {
            VerbsError::invalid(
                "the daemon backend registers shared memory only (the daemon cannot \
                 reach this process's heap): allocate the block with \
                 Context::alloc_block (or MemBlock::shared), or use Pd::reg_mr",
            )
        })?
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| VerbsError::Io(e.to_string()))
}

/// A QP's send and receive rings in the daemon backend (no receive ring
/// when it receives from an SRQ).
pub(crate) struct QpRings {
    pub sq: Mutex<WorkQueue>,
    pub rq: Option<Mutex<WorkQueue>>,
}

/// Locks a ring (a poisoned lock only means a panic elsewhere while
/// copying an entry: the ring's indices are still consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
