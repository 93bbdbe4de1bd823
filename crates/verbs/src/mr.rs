//! Memory regions and windows.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use softverbs_core::mem::MemBlock;
use softverbs_core::{MrRef, MwRef};
use softverbs_transport::{Access, Sge};

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

    /// Bind the window to `len` bytes at `offset` of `mr` through `qp`
    /// (`ibv_bind_mw`), granting `access`; returns the new rkey.
    pub fn bind(&self, qp: &Qp, mr: &Mr, offset: usize, len: usize, access: Access) -> Result<u32> {
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
