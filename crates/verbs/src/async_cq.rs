//! Completions for async code: a completion channel and a CQ that tokio
//! tasks can `.await` (feature `tokio`).
//!
//! A completion channel's fd is readable exactly while a CQ event is
//! pending, so it is registered with tokio's reactor through
//! [`tokio::io::unix::AsyncFd`]; no thread blocks and nothing spins. The
//! usual verbs loop — poll, arm with `req_notify`, poll again, sleep on the
//! channel — becomes [`AsyncCq::next_completion`].
//!
//! One channel serves one async waiter: give every [`AsyncCq`] a channel
//! of its own (a second registration of the same channel in one runtime
//! fails), or use [`AsyncCompletionChannel`] directly to serve several CQs
//! from one task.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::cq::{ChannelInner, CompletionChannel, Cq};
use crate::{Result, VerbsError, Wc};

/// The channel as tokio sees it: its pollable fd.
struct ChannelFd(Arc<ChannelInner>);

impl AsRawFd for ChannelFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.r.channel.as_fd().as_raw_fd()
    }
}

/// A completion channel whose events can be awaited
/// ([`CompletionChannel::into_async`]).
pub struct AsyncCompletionChannel {
    fd: AsyncFd<ChannelFd>,
}

impl std::fmt::Debug for AsyncCompletionChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AsyncCompletionChannel(fd {})", self.fd.as_raw_fd())
    }
}

impl AsyncCompletionChannel {
    /// Register `channel` with the current tokio runtime. Fails outside a
    /// runtime.
    ///
    /// # Panics
    /// If the runtime was built without its I/O driver (`enable_io`), as
    /// tokio's own I/O types do.
    #[allow(unsafe_code)] // the contract of AsyncFd::register_with_interest is met below
    pub fn new(channel: CompletionChannel) -> io::Result<Self> {
        tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let fd = ChannelFd(channel.inner);
        // SAFETY: the fd is the read end of the channel's pipe, owned by the
        // `CompChannel` that `fd` keeps alive through its `Arc` for as long
        // as the `AsyncFd` holds it; `as_raw_fd` always returns that fd.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(AsyncCompletionChannel { fd })
    }

    /// Wait for the next CQ event (the async `ibv_get_cq_event`); returns
    /// the id of the CQ that fired ([`Cq::id`]). Arm the CQ with
    /// [`Cq::req_notify`] first, or no event comes.
    pub async fn get_cq_event(&self) -> io::Result<u32> {
        loop {
            let mut guard = self.fd.readable().await?;
            if let Some(cq) = self.fd.get_ref().0.r.channel.try_get_event() {
                return Ok(cq);
            }
            // Empty: forget this readiness; a later event is a new edge.
            guard.clear_ready();
        }
    }

    /// The next CQ event if one is pending, without waiting.
    pub fn try_get_cq_event(&self) -> Option<u32> {
        self.fd.get_ref().0.r.channel.try_get_event()
    }
}

impl CompletionChannel {
    /// This channel for async code (feature `tokio`); call it inside a tokio
    /// runtime.
    ///
    /// ```no_run
    /// # async fn f() -> softverbs::Result<()> {
    /// let ctx = softverbs::Context::open("rxe0")?;
    /// let ch = ctx.create_comp_channel()?;
    /// let cq = ctx.create_cq(64, Some(&ch))?;
    /// let ach = ch.into_async().expect("inside a tokio runtime");
    /// cq.req_notify(false)?;
    /// let fired = ach.get_cq_event().await.expect("channel fd");
    /// assert_eq!(fired, cq.id());
    /// # Ok(()) }
    /// ```
    pub fn into_async(self) -> io::Result<AsyncCompletionChannel> {
        AsyncCompletionChannel::new(self)
    }
}

/// A CQ whose completions can be awaited (feature `tokio`): built from a
/// CQ created with a completion channel of its own.
///
/// ```no_run
/// use softverbs::*;
/// # async fn f() -> Result<()> {
/// let ctx = Context::open("rxe0")?;
/// let ch = ctx.create_comp_channel()?;
/// let cq = AsyncCq::new(ctx.create_cq(64, Some(&ch))?)?;
/// // ... post work on a QP that reports to cq.cq() ...
/// let wc = cq.next_completion().await?;
/// println!("wr {} completed: {}", wc.wr_id, wc.status);
/// # Ok(()) }
/// ```
pub struct AsyncCq {
    cq: Cq,
    channel: AsyncCompletionChannel,
}

impl std::fmt::Debug for AsyncCq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AsyncCq({})", self.cq.id())
    }
}

impl AsyncCq {
    /// Wrap `cq`; it must have been created with a completion channel, and
    /// the call must be made inside a tokio runtime.
    pub fn new(cq: Cq) -> Result<AsyncCq> {
        let inner = cq.inner.channel.clone().ok_or_else(|| {
            VerbsError::invalid(format!(
                "CQ {} has no completion channel: create it with Context::create_cq(n, Some(&channel))",
                cq.id()
            ))
        })?;
        let channel = AsyncCompletionChannel::new(CompletionChannel { inner }).map_err(|e| {
            VerbsError::Io(format!(
                "cannot register the completion channel of CQ {} with tokio \
                 (outside a runtime, or the channel already has an async waiter): {e}",
                cq.id()
            ))
        })?;
        Ok(AsyncCq { cq, channel })
    }

    /// The CQ (to create QPs on, poll, or resize).
    pub fn cq(&self) -> &Cq {
        &self.cq
    }

    /// Wait until at least one completion is there, then move up to `max`
    /// into `out`; returns how many (at least 1).
    pub async fn poll(&self, max: usize, out: &mut Vec<Wc>) -> Result<usize> {
        loop {
            let n = self.cq.poll(max, out)?;
            if n > 0 {
                return Ok(n);
            }
            // Arm, then look again: a completion that landed before the arm
            // raised no event.
            self.cq.req_notify(false)?;
            let n = self.cq.poll(max, out)?;
            if n > 0 {
                return Ok(n);
            }
            self.channel
                .get_cq_event()
                .await
                .map_err(|e| VerbsError::Io(format!("completion channel: {e}")))?;
        }
    }

    /// The next completion.
    pub async fn next_completion(&self) -> Result<Wc> {
        let mut v = Vec::with_capacity(1);
        self.poll(1, &mut v).await?;
        v.pop()
            .ok_or_else(|| VerbsError::Io("the CQ returned no completion".into()))
    }
}
