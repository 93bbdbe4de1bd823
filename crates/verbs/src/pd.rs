//! Protection domains and address handles.

use std::sync::Arc;

use softverbs_core::driver::{AhAttr, MwType, SrqAttr};
use softverbs_core::mem::{MemBlock, RawMem};
use softverbs_core::{AhRef, PdRef, QpCreate};
use softverbs_transport::{Access, UdDest};

use crate::backend::Ctx;

use crate::mr::{Mr, MrInner, Mw, MwInner};
use crate::qp::{Qp, QpInitAttr, QpInner};
use crate::srq::{Srq, SrqInner};
use crate::Result;

pub(crate) struct PdInner {
    pub uctx: Arc<Ctx>,
    pub r: PdRef,
}

impl Drop for PdInner {
    fn drop(&mut self) {
        let _ = self.uctx.dealloc_pd(self.r.handle);
    }
}

/// A protection domain (`ibv_pd`): memory registered in it is reachable only
/// by QPs of the same PD.
#[derive(Clone)]
pub struct Pd {
    pub(crate) inner: Arc<PdInner>,
}

impl Pd {
    /// Register a new zeroed, page-aligned buffer of `len` bytes
    /// (`ibv_reg_mr` on memory the region owns). In the daemon backend the
    /// buffer is a sealed memfd that the daemon maps too
    /// ([`MemBlock::shared`]).
    pub fn reg_mr(&self, len: usize, access: Access) -> Result<Mr> {
        self.reg_owned(len, None, access)
    }

    /// Like [`Pd::reg_mr`], with the region addressed as `iova`
    /// (`ibv_reg_mr_iova2`): local SGEs, the remote address of RDMA
    /// operations and window binds name its first byte `iova`, wherever the
    /// buffer lies. The buffer is page-aligned, so `iova` must be too (as
    /// Linux requires the iova's offset within a page to be the memory's).
    ///
    /// ```no_run
    /// # use softverbs::*;
    /// # fn f(ctx: &Context) -> Result<()> {
    /// let pd = ctx.alloc_pd()?;
    /// let mr = pd.reg_mr_iova(8192, 0x1_0000_0000, Access::LOCAL_WRITE | Access::REMOTE_WRITE)?;
    /// assert_eq!(mr.addr(), 0x1_0000_0000);
    /// // A peer writes at `0x1_0000_0000 + n` with `mr.rkey()`; locally,
    /// // `mr.sge(n, len)` names the same bytes.
    /// # Ok(()) }
    /// ```
    pub fn reg_mr_iova(&self, len: usize, iova: u64, access: Access) -> Result<Mr> {
        self.reg_owned(len, Some(iova), access)
    }

    fn reg_owned(&self, len: usize, iova: Option<u64>, access: Access) -> Result<Mr> {
        let block = self.inner.uctx.alloc_block(len)?;
        self.reg_block_at(Arc::new(block), iova, access)
    }

    /// Register an existing block (in the daemon backend, a
    /// [`MemBlock::shared`] one: allocate it with
    /// [`crate::Context::alloc_block`] to fit either backend).
    pub fn reg_block(&self, block: Arc<MemBlock>, access: Access) -> Result<Mr> {
        self.reg_block_at(block, None, access)
    }

    /// [`Pd::reg_block`] with the region addressed as `iova` (see
    /// [`Pd::reg_mr_iova`]).
    pub fn reg_block_iova(&self, block: Arc<MemBlock>, iova: u64, access: Access) -> Result<Mr> {
        self.reg_block_at(block, Some(iova), access)
    }

    fn reg_block_at(&self, block: Arc<MemBlock>, iova: Option<u64>, access: Access) -> Result<Mr> {
        let r = self
            .inner
            .uctx
            .reg_block(self.inner.r.handle, &block, iova, access)?;
        Ok(Mr {
            inner: Arc::new(MrInner::new(self.inner.clone(), r, Some(block))),
        })
    }

    /// Register memory the caller owns (`ibv_reg_mr` on a raw pointer).
    ///
    /// # Safety
    /// `len` bytes at `ptr` must stay valid, and must not be accessed by the
    /// application while an operation may touch them, until the returned
    /// region (and every clone) is dropped. `Unsupported` in the daemon
    /// backend (the daemon cannot reach this process's memory).
    #[allow(unsafe_code)] // the caller's contract is written above
    pub unsafe fn reg_mr_raw(&self, ptr: *mut u8, len: usize, access: Access) -> Result<Mr> {
        // SAFETY: forwarded to the caller.
        unsafe { self.reg_raw_at(ptr, len, None, access) }
    }

    /// [`Pd::reg_mr_raw`] with the region addressed as `iova`
    /// (`ibv_reg_mr_iova2`; see [`Pd::reg_mr_iova`]): `iova` must have the
    /// offset within a 4096-byte page that `ptr` has.
    ///
    /// # Safety
    /// As [`Pd::reg_mr_raw`].
    #[allow(unsafe_code)] // the caller's contract is written above
    pub unsafe fn reg_mr_raw_iova(
        &self,
        ptr: *mut u8,
        len: usize,
        iova: u64,
        access: Access,
    ) -> Result<Mr> {
        // SAFETY: forwarded to the caller.
        unsafe { self.reg_raw_at(ptr, len, Some(iova), access) }
    }

    /// # Safety
    /// As [`Pd::reg_mr_raw`].
    #[allow(unsafe_code)] // the caller's contract is written on the callers
    unsafe fn reg_raw_at(
        &self,
        ptr: *mut u8,
        len: usize,
        iova: Option<u64>,
        access: Access,
    ) -> Result<Mr> {
        // SAFETY: forwarded to the caller.
        let raw = unsafe { RawMem::new(ptr, len) };
        let r = self
            .inner
            .uctx
            .reg_raw(self.inner.r.handle, raw, iova, access)?;
        Ok(Mr {
            inner: Arc::new(MrInner::new(self.inner.clone(), r, None)),
        })
    }

    /// Allocate a memory window (`ibv_alloc_mw`).
    pub fn alloc_mw(&self, mw_type: MwType) -> Result<Mw> {
        let r = self.inner.uctx.alloc_mw(self.inner.r.handle, mw_type)?;
        Ok(Mw {
            inner: Arc::new(MwInner {
                pd: self.inner.clone(),
                r,
                rkey: std::sync::atomic::AtomicU32::new(0),
                ty: mw_type,
            }),
        })
    }

    /// Create a queue pair (`ibv_create_qp`).
    pub fn create_qp(&self, attr: &QpInitAttr) -> Result<Qp> {
        let req = QpCreate {
            qp_type: attr.qp_type,
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
        let r = self.inner.uctx.create_qp(self.inner.r.handle, &req)?;
        let rings = match self.inner.uctx.qp_rings(&r) {
            Ok(rings) => rings,
            Err(e) => {
                let _ = self.inner.uctx.destroy_qp(r.handle);
                return Err(e);
            }
        };
        Ok(Qp::from_parts(QpInner {
            pd: self.inner.clone(),
            send_cq: attr.send_cq.inner.clone(),
            recv_cq: attr.recv_cq.inner.clone(),
            srq: attr.srq.as_ref().map(|s| s.inner.clone()),
            r,
            rings,
        }))
    }

    /// Create a shared receive queue (`ibv_create_srq`).
    pub fn create_srq(&self, max_wr: u32, max_sge: u32) -> Result<Srq> {
        let attr = SrqAttr {
            max_wr,
            max_sge,
            limit: 0,
        };
        let r = self.inner.uctx.create_srq(self.inner.r.handle, attr)?;
        let ring = match self.inner.uctx.srq_ring(&r, &attr) {
            Ok(ring) => ring,
            Err(e) => {
                let _ = self.inner.uctx.destroy_srq(r.handle);
                return Err(e);
            }
        };
        Ok(Srq {
            inner: Arc::new(SrqInner {
                pd: self.inner.clone(),
                r,
                ring,
            }),
        })
    }

    /// Create an address handle (`ibv_create_ah`).
    pub fn create_ah(&self, attr: AhAttr) -> Result<Ah> {
        let r = self.inner.uctx.create_ah(self.inner.r.handle, attr)?;
        Ok(Ah {
            inner: Arc::new(AhInner {
                pd: self.inner.clone(),
                r,
                attr,
            }),
        })
    }
}

pub(crate) struct AhInner {
    pd: Arc<PdInner>,
    r: AhRef,
    attr: AhAttr,
}

impl Drop for AhInner {
    fn drop(&mut self) {
        let _ = self.pd.uctx.destroy_ah(self.r.handle);
    }
}

/// An address handle (`ibv_ah`): where UD datagrams go.
#[derive(Clone)]
pub struct Ah {
    inner: Arc<AhInner>,
}

impl Ah {
    /// Its attributes.
    pub fn attr(&self) -> &AhAttr {
        &self.inner.attr
    }

    /// The destination of a UD send through this handle to `remote_qpn`
    /// with `remote_qkey`.
    pub fn dest(&self, remote_qpn: u32, remote_qkey: u32) -> UdDest {
        UdDest {
            dgid: self.inner.attr.dgid,
            remote_qpn,
            remote_qkey,
        }
    }
}

impl std::fmt::Debug for Pd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pd({} on {})", self.inner.r.id, self.inner.uctx.name())
    }
}

impl std::fmt::Debug for Ah {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ah(to {})", self.inner.attr.dgid)
    }
}
