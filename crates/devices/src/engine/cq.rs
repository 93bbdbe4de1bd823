//! Completion queues: bounded, with notification arming and overrun
//! reporting.

use std::collections::VecDeque;
use std::sync::Arc;

use softverbs_core::driver::{DeviceCounters, Wc};
use softverbs_core::events::{AsyncEvent, AsyncEvents, CompChannel};
use softverbs_transport::WcStatus;

/// One CQ.
#[derive(Debug)]
pub(crate) struct Cq {
    pub id: u32,
    pub cap: usize,
    pub q: VecDeque<Wc>,
    pub channel: Option<Arc<CompChannel>>,
    pub events: Arc<AsyncEvents>,
    /// `Some(solicited_only)` while armed by `req_notify_cq`.
    pub armed: Option<bool>,
    /// An overrun was reported and the CQ has not been polled since.
    pub overrun: bool,
}

impl Cq {
    pub(crate) fn new(
        id: u32,
        cap: usize,
        channel: Option<Arc<CompChannel>>,
        events: Arc<AsyncEvents>,
    ) -> Self {
        Cq {
            id,
            cap,
            q: VecDeque::with_capacity(cap.min(4096)),
            channel,
            events,
            armed: None,
            overrun: false,
        }
    }

    /// Queue a completion. On a full CQ it is dropped, counted, and the
    /// first drop since the last poll raises `CqOverrun`.
    /// A channel with a completion sink (softverbsd) takes the completion
    /// itself, into the client's ring; no room there is an overrun too.
    pub(crate) fn push(&mut self, wc: Wc, counters: &mut DeviceCounters) {
        let taken = match &self.channel {
            Some(ch) => ch.deliver(self.id, &wc),
            None => None,
        };
        if taken == Some(true) {
            return;
        }
        if taken == Some(false) || self.q.len() >= self.cap {
            counters.cq_overruns += 1;
            if !self.overrun {
                self.overrun = true;
                self.events.push(AsyncEvent::CqOverrun { cq: self.id });
            }
            return;
        }
        let fire = match self.armed {
            Some(solicited_only) => {
                !solicited_only || wc.solicited || wc.status != WcStatus::Success
            }
            None => false,
        };
        self.q.push_back(wc);
        if fire {
            self.armed = None;
            if let Some(ch) = &self.channel {
                ch.notify(self.id);
            }
        }
    }

    /// Move up to `max` completions into `out`.
    pub(crate) fn poll(&mut self, max: usize, out: &mut Vec<Wc>) -> usize {
        let n = max.min(self.q.len());
        out.extend(self.q.drain(..n));
        if n > 0 {
            self.overrun = false;
        }
        n
    }
}
