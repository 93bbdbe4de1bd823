//! Completion queues and completion channels.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::Mutex;

use softverbs_core::driver::Wc;
use softverbs_core::{ChannelRef, CqRef};
use softverbs_daemon::client::CompQueue;

use crate::backend::{lock, Ctx};
use crate::{Result, VerbsError};

pub(crate) struct ChannelInner {
    pub uctx: Arc<Ctx>,
    pub r: ChannelRef,
}

impl Drop for ChannelInner {
    fn drop(&mut self) {
        let _ = self.uctx.destroy_comp_channel(self.r.handle);
    }
}

/// A completion channel (`ibv_comp_channel`). Its fd is readable while a CQ
/// event is pending, so it fits `poll`, `epoll` and async runtimes.
#[derive(Clone)]
pub struct CompletionChannel {
    pub(crate) inner: Arc<ChannelInner>,
}

impl CompletionChannel {
    /// Wait for the next CQ event (`ibv_get_cq_event`); returns the id of
    /// the CQ that fired ([`Cq::id`]), or `None` on timeout.
    pub fn get_cq_event(&self, timeout: Option<Duration>) -> Option<u32> {
        self.inner.r.channel.get_event(timeout)
    }

    /// The next CQ event if one is pending.
    pub fn try_get_cq_event(&self) -> Option<u32> {
        self.inner.r.channel.try_get_event()
    }
}

impl AsFd for CompletionChannel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.r.channel.as_fd()
    }
}

pub(crate) struct CqInner {
    pub uctx: Arc<Ctx>,
    pub r: CqRef,
    pub channel: Option<Arc<ChannelInner>>,
    /// The completion ring (daemon backend).
    pub ring: Option<Mutex<CompQueue>>,
}

impl Drop for CqInner {
    fn drop(&mut self) {
        let _ = self.uctx.destroy_cq(self.r.handle);
    }
}

/// A completion queue (`ibv_cq`).
#[derive(Clone)]
pub struct Cq {
    pub(crate) inner: Arc<CqInner>,
}

impl Cq {
    /// The device's id for this CQ (what a completion channel reports).
    pub fn id(&self) -> u32 {
        self.inner.r.id
    }

    /// Number of entries.
    pub fn cqe(&self) -> u32 {
        self.inner.r.cqe
    }

    /// Move up to `max` completions into `out` (`ibv_poll_cq`); returns how many.
    pub fn poll(&self, max: usize, out: &mut Vec<Wc>) -> Result<usize> {
        match (&self.inner.ring, self.inner.uctx.driver()) {
            (Some(ring), _) => lock(ring).poll(max, out),
            (None, Some(drv)) => drv.poll_cq(self.inner.r.id, max, out),
            (None, None) => Err(self.inner.uctx.unsupported("a CQ without a ring")),
        }
    }

    /// One completion, if any.
    pub fn poll_one(&self) -> Result<Option<Wc>> {
        let mut v = Vec::with_capacity(1);
        self.poll(1, &mut v)?;
        Ok(v.pop())
    }

    /// Arm the CQ: its channel is notified on the next completion (or next
    /// solicited one) (`ibv_req_notify_cq`). In the daemon backend this
    /// arms the CQ ring (its `wait` word); a CQ without a channel has
    /// nothing to notify.
    pub fn req_notify(&self, solicited_only: bool) -> Result<()> {
        match (&self.inner.ring, self.inner.uctx.driver()) {
            (Some(ring), _) => lock(ring).req_notify(solicited_only),
            (None, Some(drv)) => drv.req_notify_cq(self.inner.r.id, solicited_only),
            (None, None) => Ok(()),
        }
    }

    /// Resize (`ibv_resize_cq`); returns the new size.
    pub fn resize(&self, cqe: u32) -> Result<u32> {
        self.inner.uctx.resize_cq(self.inner.r.handle, cqe)
    }

    /// Wait for one completion: by the channel when the CQ has one (arm,
    /// re-poll, sleep), else by polling with backoff.
    #[allow(clippy::disallowed_methods)] // the API edge: waiting is wall-clock time
    pub fn wait_one(&self, timeout: Duration) -> Result<Wc> {
        if let (Some(ring), None) = (&self.inner.ring, &self.inner.channel) {
            // Daemon backend, no channel: poll the ring, sleep on its
            // eventfd.
            return lock(ring).wait_one(timeout).map_err(|e| match e {
                VerbsError::Io(m) => VerbsError::Io(format!("CQ {}: {m}", self.id())),
                e => e,
            });
        }
        let deadline = Instant::now() + timeout;
        let mut spins = 0u32;
        loop {
            if let Some(wc) = self.poll_one()? {
                return Ok(wc);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(VerbsError::Io(format!(
                    "no completion on CQ {} within {timeout:?}",
                    self.id()
                )));
            }
            match &self.inner.channel {
                Some(ch) => {
                    self.req_notify(false)?;
                    if let Some(wc) = self.poll_one()? {
                        return Ok(wc);
                    }
                    ch.r.channel.get_event(Some(deadline - now));
                }
                None if spins < 1000 => {
                    spins += 1;
                    std::thread::yield_now();
                }
                None => std::thread::sleep(Duration::from_micros(50)),
            }
        }
    }
}

impl std::fmt::Debug for Cq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cq({}, {} entries)", self.id(), self.cqe())
    }
}

impl std::fmt::Debug for CompletionChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CompletionChannel({:?})", self.inner.r.handle)
    }
}
