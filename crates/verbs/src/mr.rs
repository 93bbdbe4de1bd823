//! Memory regions and windows.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use softverbs_core::driver::MwType;
use softverbs_core::mem::MemBlock;
use softverbs_core::{MrRef, MwRef};
use softverbs_transport::{inc_rkey, Access, MwBindReq, SendWr, Sge};

use crate::pd::PdInner;
use crate::qp::Qp;
use crate::{Result, VerbsError};

pub(crate) struct MrInner {
    pub pd: Arc<PdInner>,
    pub r: MrRef,
    pub block: Option<Arc<MemBlock>>,
}

impl Drop for MrInner {
    fn drop(&mut self) {
        let _ = self.pd.uctx.dereg_mr(self.r.handle);
    }
}

/// A registered memory region (`ibv_mr`). The bytes live as long as the
/// region or any clone of its block: deregistration (on drop) cannot free
/// memory the device still holds.
#[derive(Clone)]
pub struct Mr {
    pub(crate) inner: Arc<MrInner>,
}

impl Mr {
    /// Local key.
    pub fn lkey(&self) -> u32 {
        self.inner.r.lkey
    }

    /// Remote key.
    pub fn rkey(&self) -> u32 {
        self.inner.r.rkey
    }

    /// Virtual address of the first byte (what a peer uses with the rkey).
    pub fn addr(&self) -> u64 {
        self.inner.r.addr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.inner.r.len as usize
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    pub fn block(&self) -> Option<&Arc<MemBlock>> {
        self.inner.block.as_ref()
    }

    fn owned(&self) -> Result<&MemBlock> {
        self.inner.block.as_deref().ok_or_else(|| {
            VerbsError::invalid(
                "this region was registered from raw memory: access it through your pointer",
            )
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
            mr.inner.r.handle,
            mr.addr() + offset as u64,
            len as u64,
            access,
        )?;
        self.inner.rkey.store(rkey, Ordering::Release);
        Ok(rkey)
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
