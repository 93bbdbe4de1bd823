//! Memory regions and windows.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use softverbs_core::driver::MwType;
use softverbs_core::mem::{Backing, MemBlock, RawMem};
use softverbs_core::uapi::Handle;
use softverbs_core::{MrRef, MwRef};
use softverbs_transport::{inc_rkey, Access, MwBindReq, SendWr, Sge};

use crate::backend::Ctx;
use crate::pd::{Pd, PdInner};
use crate::qp::Qp;
use crate::{Result, VerbsError};

pub(crate) struct MrInner {
    /// The context (and, through `state.pd`, the PD) the region lives in.
    pub uctx: Arc<Ctx>,
    pub handle: Handle,
    pub lkey: u32,
    pub rkey: u32,
    state: Mutex<MrState>,
    /// Deregistered by [`Mr::dereg`] (not again on drop).
    dereged: AtomicBool,
}

/// What [`Mr::rereg`] may change.
struct MrState {
    pd: Arc<PdInner>,
    addr: u64,
    len: u64,
    block: Option<Arc<MemBlock>>,
}

impl MrInner {
    pub(crate) fn new(pd: Arc<PdInner>, r: MrRef, block: Option<Arc<MemBlock>>) -> Self {
        MrInner {
            uctx: pd.uctx.clone(),
            handle: r.handle,
            lkey: r.lkey,
            rkey: r.rkey,
            state: Mutex::new(MrState {
                pd,
                addr: r.addr,
                len: r.len,
                block,
            }),
            dereged: AtomicBool::new(false),
        }
    }

    fn state(&self) -> MutexGuard<'_, MrState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for MrInner {
    fn drop(&mut self) {
        if !self.dereged.load(Ordering::Acquire) {
            let _ = self.uctx.dereg_mr(self.handle);
        }
    }
}

/// A registered memory region (`ibv_mr`). The bytes live as long as the
/// region or any clone of its block: deregistration (on drop) cannot free
/// memory the device still holds.
///
/// Every region has an iova, its RDMA address ([`Mr::addr`]): local SGEs,
/// the remote address of RDMA operations and window binds name its bytes
/// from there on. It is the memory's own address unless the region was
/// registered with another ([`Pd::reg_mr_iova`], `ibv_reg_mr_iova2`).
///
/// [`Pd::reg_mr_iova`]: crate::Pd::reg_mr_iova
#[derive(Clone)]
pub struct Mr {
    pub(crate) inner: Arc<MrInner>,
}

/// New memory for [`Mr::rereg`].
enum NewMemory {
    Block(Arc<MemBlock>),
    Raw(RawMem),
}

/// What [`Mr::rereg`] changes (`ibv_rereg_mr`'s flags): the protection
/// domain (`IBV_REREG_MR_CHANGE_PD`), the access
/// (`IBV_REREG_MR_CHANGE_ACCESS`) and/or the memory with its iova
/// (`IBV_REREG_MR_CHANGE_TRANSLATION`). What is not set stays.
///
/// ```
/// use softverbs::{Access, Rereg};
/// let r = Rereg::new().access(Access::LOCAL_WRITE);
/// # let _ = r;
/// ```
#[derive(Default)]
pub struct Rereg {
    pd: Option<Pd>,
    access: Option<Access>,
    memory: Option<NewMemory>,
    iova: Option<u64>,
}

impl Rereg {
    /// A request that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Move the region to `pd` (of the same context).
    pub fn pd(mut self, pd: &Pd) -> Self {
        self.pd = Some(pd.clone());
        self
    }

    /// Replace its access flags.
    pub fn access(mut self, access: Access) -> Self {
        self.access = Some(access);
        self
    }

    /// Replace its memory by the whole of `block` (in the daemon backend a
    /// [`MemBlock::shared`] one: [`crate::Context::alloc_block`] makes the
    /// right kind for either backend), addressed by the block's own address
    /// unless [`Rereg::iova`] says otherwise.
    pub fn block(mut self, block: Arc<MemBlock>) -> Self {
        self.memory = Some(NewMemory::Block(block));
        self
    }

    /// Replace its memory by `len` bytes at `ptr`, as
    /// [`Pd::reg_mr_raw`](crate::Pd::reg_mr_raw) registers them.
    ///
    /// # Safety
    /// As for `reg_mr_raw`: the memory stays valid, and untouched by the
    /// application while an operation may access it, until the region is
    /// re-registered again or dropped (with every clone).
    #[allow(unsafe_code)] // the caller's contract is written above
    pub unsafe fn raw(mut self, ptr: *mut u8, len: usize) -> Self {
        // SAFETY: forwarded to the caller.
        self.memory = Some(NewMemory::Raw(unsafe { RawMem::new(ptr, len) }));
        self
    }

    /// The iova of the new memory (its offset within a page must be the
    /// memory's); only with [`Rereg::block`] or [`Rereg::raw`].
    pub fn iova(mut self, iova: u64) -> Self {
        self.iova = Some(iova);
        self
    }
}

impl Mr {
    /// Local key.
    pub fn lkey(&self) -> u32 {
        self.inner.lkey
    }

    /// Remote key.
    pub fn rkey(&self) -> u32 {
        self.inner.rkey
    }

    /// The region's iova, the RDMA address of its first byte (what a peer
    /// uses with the rkey, and what local SGEs name): the memory's own
    /// address unless registered with another.
    pub fn addr(&self) -> u64 {
        self.inner.state().addr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.inner.state().len as usize
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The protection domain it is registered in (changes with
    /// [`Mr::rereg`]).
    pub fn pd(&self) -> Pd {
        Pd {
            inner: self.inner.state().pd.clone(),
        }
    }

    /// An SGE for `len` bytes at `offset` into the region.
    pub fn sge(&self, offset: usize, len: u32) -> Sge {
        Sge {
            addr: self.addr() + offset as u64,
            length: len,
            lkey: self.lkey(),
        }
    }

    /// The shared block behind the region (`None` for raw registrations).
    pub fn block(&self) -> Option<Arc<MemBlock>> {
        self.inner.state().block.clone()
    }

    fn owned(&self) -> Result<Arc<MemBlock>> {
        self.block().ok_or_else(|| {
            VerbsError::invalid(
                "this region was registered from raw memory: access it through your pointer",
            )
        })
    }

    /// Re-register the region in place (`ibv_rereg_mr`): another PD,
    /// other access rights and/or other memory, while its lkey and rkey
    /// stay (peers keep using the same rkey). All or nothing: on an error
    /// the region is as it was. A region with windows bound is refused
    /// (`Busy`); work posted earlier with the old addresses, PD or rights
    /// fails its checks from now on. In the daemon backend new memory must
    /// be a [`MemBlock::shared`] block ([`crate::Context::alloc_block`]).
    ///
    /// ```no_run
    /// # use softverbs::*;
    /// # use std::sync::Arc;
    /// # fn f(ctx: &Context) -> Result<()> {
    /// let pd = ctx.alloc_pd()?;
    /// let mr = pd.reg_mr(4096, Access::LOCAL_WRITE | Access::REMOTE_WRITE)?;
    /// let rkey = mr.rkey();
    /// // Remote writes with `rkey` now land in a new, larger buffer...
    /// mr.rereg(Rereg::new().block(ctx.alloc_block(8192)?))?;
    /// // ... and then are refused.
    /// mr.rereg(Rereg::new().access(Access::LOCAL_WRITE))?;
    /// assert_eq!((mr.rkey(), mr.len()), (rkey, 8192));
    /// # Ok(()) }
    /// ```
    pub fn rereg(&self, req: Rereg) -> Result<()> {
        let uctx = &self.inner.uctx;
        if let Some(pd) = &req.pd {
            if !Arc::ptr_eq(&pd.inner.uctx, uctx) {
                return Err(VerbsError::invalid(
                    "Mr::rereg: the new PD belongs to another context than the region",
                ));
            }
        }
        if req.iova.is_some() && req.memory.is_none() {
            return Err(VerbsError::invalid(
                "Mr::rereg: an iova goes with new memory (Rereg::block or Rereg::raw)",
            ));
        }
        let (memory, block) = match req.memory {
            None => (None, None),
            Some(NewMemory::Block(b)) => (Some((Backing::Block(b.clone()), req.iova)), Some(b)),
            Some(NewMemory::Raw(r)) => (Some((Backing::Raw(r), req.iova)), None),
        };
        let changes_memory = memory.is_some();
        let r = uctx.rereg_mr(
            self.inner.handle,
            req.pd.as_ref().map(|p| p.inner.r.handle),
            req.access,
            memory,
        )?;
        let mut st = self.inner.state();
        if let Some(pd) = req.pd {
            st.pd = pd.inner;
        }
        st.addr = r.addr;
        st.len = r.len;
        if changes_memory {
            st.block = block;
        }
        Ok(())
    }

    /// Deregister the region now (`ibv_dereg_mr`) rather than when the
    /// last clone is dropped, and learn whether it worked: a region with
    /// memory windows bound is `Busy` and stays registered. Afterwards its
    /// keys name nothing (work using them fails its checks); its block, if
    /// any, lives on with the clones. A second call is an error.
    ///
    /// ```no_run
    /// # use softverbs::*;
    /// # fn f(pd: &Pd) -> Result<()> {
    /// let mr = pd.reg_mr(4096, Access::LOCAL_WRITE)?;
    /// mr.dereg()?;
    /// # Ok(()) }
    /// ```
    pub fn dereg(&self) -> Result<()> {
        if self.inner.dereged.swap(true, Ordering::AcqRel) {
            return Err(VerbsError::invalid(format!(
                "memory region lkey {:#x} is already deregistered",
                self.lkey()
            )));
        }
        self.inner
            .uctx
            .dereg_mr(self.inner.handle)
            .inspect_err(|_| {
                self.inner.dereged.store(false, Ordering::Release);
            })
    }

    /// Copy bytes out of the region.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.owned()?.read(offset, dst).map_err(|_| {
            VerbsError::invalid(format!(
                "read of {} bytes at {offset} is outside the {}-byte region",
                dst.len(),
                self.len()
            ))
        })
    }

    /// Copy bytes into the region.
    pub fn write(&self, offset: usize, src: &[u8]) -> Result<()> {
        self.owned()?.write(offset, src).map_err(|_| {
            VerbsError::invalid(format!(
                "write of {} bytes at {offset} is outside the {}-byte region",
                src.len(),
                self.len()
            ))
        })
    }
}

pub(crate) struct MwInner {
    pub pd: Arc<PdInner>,
    pub r: MwRef,
    pub rkey: AtomicU32,
    pub ty: MwType,
}

impl Drop for MwInner {
    fn drop(&mut self) {
        let _ = self.pd.uctx.dealloc_mw(self.r.handle);
    }
}

/// A memory window (`ibv_mw`): a remote key onto part of a region, bound and
/// re-bound without re-registering.
#[derive(Clone)]
pub struct Mw {
    pub(crate) inner: Arc<MwInner>,
}

impl Mw {
    /// The current remote key (changes with every bind).
    pub fn rkey(&self) -> u32 {
        let k = self.inner.rkey.load(Ordering::Acquire);
        if k == 0 {
            self.inner.r.rkey
        } else {
            k
        }
    }

    /// Its type.
    pub fn mw_type(&self) -> MwType {
        self.inner.ty
    }

    /// Bind a **type 1** window to `len` bytes at `offset` of `mr` through
    /// `qp` (`ibv_bind_mw`), granting `access`; returns the new rkey. A
    /// length of 0 unbinds it.
    ///
    /// A type 2 window is bound by a work request instead, which runs in
    /// order on the send queue: post [`SendWrExt::bind_mw`]; this refuses
    /// type 2 windows with an error that says so.
    pub fn bind(&self, qp: &Qp, mr: &Mr, offset: usize, len: usize, access: Access) -> Result<u32> {
        if self.inner.ty == MwType::Type2 {
            return Err(VerbsError::invalid(
                "Mw::bind binds type 1 windows; bind a type 2 window by posting \
                 SendWr::bind_mw (a BIND_MW work request) on the QP",
            ));
        }
        let uctx = &self.inner.pd.uctx;
        let rkey = uctx.bind_mw(
            qp.inner.r.handle,
            self.inner.r.handle,
            mr.inner.handle,
            mr.addr() + offset as u64,
            len as u64,
            access,
        )?;
        self.inner.rkey.store(rkey, Ordering::Release);
        Ok(rkey)
    }

    /// Bind this **type 1** window by a work request on `qp`'s send queue,
    /// as rxe's `ibv_bind_mw` does: the bind runs after the work posted
    /// before it, and when `signaled` (or the QP signals every request) it
    /// completes on the send CQ with [`crate::WcOpcode::BindMw`] and
    /// `wr_id`, like any completion (it wakes a completion channel). A
    /// refused bind (out of the region, no `MW_BIND`, another PD) completes
    /// with `MW_BIND_ERR` and moves the QP to error. `bind` is the region
    /// with the offset and length to grant; `None` unbinds. Returns the
    /// window's new rkey ([`Mw::rkey`] reports it from now on). On the
    /// daemon backend the bind is a WQE of the QP's send ring; what the
    /// device refuses at post time comes back as a completion there.
    ///
    /// ```no_run
    /// # use softverbs::*;
    /// # fn f(qp: &Qp, mw: &Mw, mr: &Mr, cq: &Cq) -> Result<()> {
    /// let rkey = mw.post_bind(qp, 7, Some((mr, 0, 4096)), Access::REMOTE_READ, true)?;
    /// let wc = cq.wait_one(std::time::Duration::from_secs(5))?;
    /// assert_eq!((wc.wr_id, wc.opcode), (7, WcOpcode::BindMw));
    /// # let _ = rkey; Ok(()) }
    /// ```
    pub fn post_bind(
        &self,
        qp: &Qp,
        wr_id: u64,
        bind: Option<(&Mr, usize, usize)>,
        access: Access,
        signaled: bool,
    ) -> Result<u32> {
        if self.inner.ty == MwType::Type2 {
            return Err(VerbsError::invalid(
                "Mw::post_bind binds type 1 windows; bind a type 2 window by posting \
                 SendWr::bind_mw (a BIND_MW work request) on the QP",
            ));
        }
        let (mr_lkey, addr, len) = match bind {
            Some((mr, offset, len)) => {
                (mr.lkey(), mr.addr().wrapping_add(offset as u64), len as u64)
            }
            None => (0, 0, 0),
        };
        let new_rkey = inc_rkey(self.rkey());
        let mut wr = SendWr::bind_mw_req(
            wr_id,
            MwBindReq {
                mw_rkey: self.inner.r.rkey,
                new_rkey: Some(new_rkey),
                mr_lkey,
                addr,
                len,
                access,
            },
        );
        if signaled {
            wr = wr.signaled();
        }
        match (&qp.inner.rings, qp.inner.pd.uctx.driver()) {
            // Daemon backend: a type 1 bind WQE (opcode 10) on the send
            // ring, handed to the same driver call in ring order.
            (Some(r), _) => crate::backend::lock(&r.sq).post_bind_mw(&wr)?,
            (None, Some(drv)) => drv.post_bind_mw(qp.inner.r.qpn, wr)?,
            (None, None) => return Err(qp.inner.pd.uctx.unsupported("a QP without rings")),
        }
        self.inner.rkey.store(new_rkey, Ordering::Release);
        Ok(new_rkey)
    }
}

/// Work-request builders that name verbs objects (the memory-management
/// operations of `ibv_post_send`). Bring it into scope (`use softverbs::*`)
/// and call them as `SendWr::bind_mw(..)`.
pub trait SendWrExt {
    /// A BIND_MW work request (`IBV_WR_BIND_MW`) that binds the type 2
    /// window `mw` to `len` bytes at `offset` of `mr`, granting `access`
    /// (remote rights only), for remote access through the QP it is posted
    /// on. Returns the request and the rkey the window will have once it
    /// completes: the window's key with the key byte incremented
    /// (`ibv_inc_rkey`, as rxe's applications compute it).
    ///
    /// The request runs in order on the send queue and completes with
    /// [`crate::WcOpcode::BindMw`]; a bind the region does not allow (out
    /// of its bounds, no `MW_BIND`, write rights without `LOCAL_WRITE`, a
    /// window still bound) completes with `MW_BIND_ERR` and moves the QP to
    /// error. [`Mw::rkey`] reports the new key from now on. Posting it for
    /// a type 1 window is refused (bind those with [`Mw::bind`]).
    ///
    /// ```no_run
    /// # use softverbs::*;
    /// # fn f(qp: &Qp, mw: &Mw, mr: &Mr, cq: &Cq) -> Result<()> {
    /// let (wr, rkey) = SendWr::bind_mw(1, mw, mr, 0, 4096, Access::REMOTE_WRITE);
    /// qp.post_send(wr.signaled())?;
    /// let wc = cq.wait_one(std::time::Duration::from_secs(5))?;
    /// assert_eq!((wc.opcode, wc.status), (WcOpcode::BindMw, WcStatus::Success));
    /// // Hand `rkey` to the peer; later: SendWr::local_inv(2, rkey).
    /// # let _ = rkey; Ok(()) }
    /// ```
    fn bind_mw(
        wr_id: u64,
        mw: &Mw,
        mr: &Mr,
        offset: usize,
        len: usize,
        access: Access,
    ) -> (SendWr, u32);
}

impl SendWrExt for SendWr {
    fn bind_mw(
        wr_id: u64,
        mw: &Mw,
        mr: &Mr,
        offset: usize,
        len: usize,
        access: Access,
    ) -> (SendWr, u32) {
        let new_rkey = inc_rkey(mw.rkey());
        mw.inner.rkey.store(new_rkey, Ordering::Release);
        let wr = SendWr::bind_mw_req(
            wr_id,
            MwBindReq {
                // The allocation key names the window whatever its binds.
                mw_rkey: mw.inner.r.rkey,
                new_rkey: Some(new_rkey),
                mr_lkey: mr.lkey(),
                addr: mr.addr().wrapping_add(offset as u64),
                len: len as u64,
                access,
            },
        );
        (wr, new_rkey)
    }
}

impl std::fmt::Debug for Mr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Mr(lkey {:#x}, rkey {:#x}, {} bytes at {:#x})",
            self.lkey(),
            self.rkey(),
            self.len(),
            self.addr()
        )
    }
}

impl std::fmt::Debug for Mw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mw(rkey {:#x})", self.rkey())
    }
}
