//! Shared receive queues.

use std::sync::Arc;

use softverbs_core::driver::SrqAttr;
use std::sync::Mutex;

use softverbs_core::SrqRef;
use softverbs_daemon::client::WorkQueue;
use softverbs_transport::RecvWr;

use crate::backend::lock;
use crate::pd::PdInner;
use crate::Result;

pub(crate) struct SrqInner {
    pub pd: Arc<PdInner>,
    pub r: SrqRef,
    /// The SRQ ring (daemon backend).
    pub ring: Option<Mutex<WorkQueue>>,
}

impl Drop for SrqInner {
    fn drop(&mut self) {
        let _ = self.pd.uctx.destroy_srq(self.r.handle);
    }
}

/// A shared receive queue (`ibv_srq`): one pool of receive WQEs for many QPs.
#[derive(Clone)]
pub struct Srq {
    pub(crate) inner: Arc<SrqInner>,
}

impl Srq {
    /// The device's id for this SRQ (what an SRQ limit event names,
    /// [`crate::AsyncEvent::SrqLimitReached`]).
    pub fn id(&self) -> u32 {
        self.inner.r.id
    }

    /// Post a receive (`ibv_post_srq_recv`).
    pub fn post_recv(&self, wr: RecvWr) -> Result<()> {
        match (&self.inner.ring, self.inner.pd.uctx.driver()) {
            (Some(ring), _) => lock(ring).post_recv(&wr),
            (None, Some(drv)) => drv.post_srq_recv(self.inner.r.id, wr),
            (None, None) => Err(self.inner.pd.uctx.unsupported("an SRQ without a ring")),
        }
    }

    /// Arm the limit event (`ibv_modify_srq` with `IBV_SRQ_LIMIT`).
    pub fn arm_limit(&self, limit: u32) -> Result<()> {
        self.inner
            .pd
            .uctx
            .modify_srq(self.inner.r.handle, None, Some(limit))
    }

    /// Current attributes (`ibv_query_srq`).
    pub fn query(&self) -> Result<SrqAttr> {
        self.inner.pd.uctx.query_srq(self.inner.r.handle)
    }
}

impl std::fmt::Debug for Srq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Srq({})", self.inner.r.id)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn srq_ids_are_distinct() {
        let ctx = crate::Context::open("rxe0").unwrap();
        let pd = ctx.alloc_pd().unwrap();
        let a = pd.create_srq(8, 1).unwrap();
        let b = pd.create_srq(8, 1).unwrap();
        assert_ne!(a.id(), b.id());
        assert_eq!(a.clone().id(), a.id());
    }
}
