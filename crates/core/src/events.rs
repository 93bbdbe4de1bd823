//! Completion channels and asynchronous events: queues with a pollable file
//! descriptor, so an application can sleep in `poll`/`epoll` (or an async
//! runtime) until something happens.

use std::collections::VecDeque;
use std::io::{PipeReader, PipeWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use serde::Serialize;

use crate::driver::Wc;

/// A queue whose non-emptiness is mirrored by one byte in a pipe: the read
/// end is readable exactly while the queue holds something.
#[derive(Debug)]
struct SignalQueue<T> {
    items: Mutex<VecDeque<T>>,
    cond: Condvar,
    reader: PipeReader,
    writer: PipeWriter,
}

impl<T> SignalQueue<T> {
    fn new() -> std::io::Result<Self> {
        let (reader, writer) = std::io::pipe()?;
        Ok(SignalQueue {
            items: Mutex::new(VecDeque::new()),
            cond: Condvar::new(),
            reader,
            writer,
        })
    }

    fn push(&self, item: T) {
        let mut q = self.items.lock().unwrap_or_else(|e| e.into_inner());
        if q.is_empty() {
            // One byte while non-empty: the pipe never fills.
            let _ = (&self.writer).write_all(&[1]);
        }
        q.push_back(item);
        self.cond.notify_all();
    }

    fn try_pop(&self) -> Option<T> {
        let mut q = self.items.lock().unwrap_or_else(|e| e.into_inner());
        let item = q.pop_front()?;
        if q.is_empty() {
            let mut b = [0u8; 1];
            let _ = (&self.reader).read_exact(&mut b);
        }
        Some(item)
    }

    fn pop_wait(&self, timeout: Option<std::time::Duration>) -> Option<T> {
        let mut q = self.items.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if !q.is_empty() {
                drop(q);
                if let Some(item) = self.try_pop() {
                    return Some(item);
                }
                q = self.items.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            match timeout {
                None => q = self.cond.wait(q).unwrap_or_else(|e| e.into_inner()),
                Some(t) => {
                    let (g, res) = self
                        .cond
                        .wait_timeout(q, t)
                        .unwrap_or_else(|e| e.into_inner());
                    q = g;
                    if res.timed_out() && q.is_empty() {
                        return None;
                    }
                }
            }
        }
    }
}

/// Where a device delivers the completions of some CQs itself, instead of
/// queueing them for `poll_cq`: softverbsd writes them straight into the
/// client's shared-memory CQ ring from the thread that produced them (no
/// hop through a worker). Installed on a [`CompChannel`] with
/// [`CompChannel::set_sink`]; a device offers each completion of a CQ
/// reporting to that channel through [`CompChannel::deliver`].
///
/// Called with the device's CQ lock (and possibly its state lock) held: an
/// implementation must not call back into the driver.
pub trait CompletionSink: Send + Sync {
    /// Takes `wc` of CQ `cq`: `None` when this sink does not serve `cq`
    /// (the device queues it as usual), `Some(true)` when taken,
    /// `Some(false)` when there is no room (the device counts an overrun).
    fn deliver(&self, cq: u32, wc: &Wc) -> Option<bool>;
}

/// A completion channel (`ibv_comp_channel`): CQs armed with
/// `req_notify` report here when a completion arrives.
pub struct CompChannel {
    q: SignalQueue<u32>,
    sink: OnceLock<Arc<dyn CompletionSink>>,
}

impl std::fmt::Debug for CompChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompChannel")
            .field("q", &self.q)
            .field("sink", &self.sink.get().is_some())
            .finish()
    }
}

impl CompChannel {
    /// A new channel.
    pub fn new() -> std::io::Result<Self> {
        Ok(CompChannel {
            q: SignalQueue::new()?,
            sink: OnceLock::new(),
        })
    }

    /// Gives the channel a [`CompletionSink`] (once; false if it had one).
    pub fn set_sink(&self, sink: Arc<dyn CompletionSink>) -> bool {
        self.sink.set(sink).is_ok()
    }

    /// Offers a completion of CQ `cq` to the channel's sink (see
    /// [`CompletionSink::deliver`]); `None` without a sink.
    pub fn deliver(&self, cq: u32, wc: &Wc) -> Option<bool> {
        self.sink.get()?.deliver(cq, wc)
    }

    /// A device reports that CQ `cq` fired.
    pub fn notify(&self, cq: u32) {
        self.q.push(cq);
    }

    /// The next CQ that fired, without waiting.
    pub fn try_get_event(&self) -> Option<u32> {
        self.q.try_pop()
    }

    /// Wait for the next CQ event (`ibv_get_cq_event`); `None` on timeout.
    pub fn get_event(&self, timeout: Option<std::time::Duration>) -> Option<u32> {
        self.q.pop_wait(timeout)
    }
}

impl AsFd for CompChannel {
    /// Readable while an event is pending: poll it, then call
    /// [`CompChannel::try_get_event`].
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.q.reader.as_fd()
    }
}

/// An asynchronous event (`ibv_async_event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AsyncEvent {
    /// A QP entered the error state on its own (`IBV_EVENT_QP_FATAL`).
    QpFatal { qpn: u32 },
    /// The first packet arrived in RTR (`IBV_EVENT_COMM_EST`).
    CommEstablished { qpn: u32 },
    /// The send queue drained (`IBV_EVENT_SQ_DRAINED`).
    SqDrained { qpn: u32 },
    /// An SRQ-attached QP has flushed its last WQE (`IBV_EVENT_QP_LAST_WQE_REACHED`).
    LastWqeReached { qpn: u32 },
    /// A CQ overflowed; completions were lost (`IBV_EVENT_CQ_ERR`).
    CqOverrun { cq: u32 },
    /// An SRQ fell below its limit (`IBV_EVENT_SRQ_LIMIT_REACHED`).
    SrqLimitReached { srq: u32 },
    /// A port became active (`IBV_EVENT_PORT_ACTIVE`).
    PortActive { port: u8 },
    /// A port went down (`IBV_EVENT_PORT_ERR`).
    PortDown { port: u8 },
    /// The device is gone (`IBV_EVENT_DEVICE_FATAL`): in the daemon
    /// backend, `softverbsd` exited or restarted; every object of the
    /// context is gone with it. Drop them and open the device again.
    DeviceFatal,
}

/// The asynchronous event queue of a context (`ibv_get_async_event`).
#[derive(Debug)]
pub struct AsyncEvents {
    q: SignalQueue<AsyncEvent>,
}

impl AsyncEvents {
    /// A new queue.
    pub fn new() -> std::io::Result<Self> {
        Ok(AsyncEvents {
            q: SignalQueue::new()?,
        })
    }

    /// A device reports an event.
    pub fn push(&self, e: AsyncEvent) {
        self.q.push(e);
    }

    /// The next event, without waiting.
    pub fn try_get(&self) -> Option<AsyncEvent> {
        self.q.try_pop()
    }

    /// Wait for the next event; `None` on timeout.
    pub fn get(&self, timeout: Option<std::time::Duration>) -> Option<AsyncEvent> {
        self.q.pop_wait(timeout)
    }
}

impl AsFd for AsyncEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.q.reader.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn channel_is_fifo_and_times_out() {
        let ch = CompChannel::new().unwrap();
        assert_eq!(ch.get_event(Some(Duration::from_millis(1))), None);
        ch.notify(3);
        ch.notify(4);
        assert_eq!(ch.try_get_event(), Some(3));
        assert_eq!(ch.get_event(None), Some(4));
        assert_eq!(ch.try_get_event(), None);
    }

    #[test]
    fn waiter_wakes_from_another_thread() {
        let ev = Arc::new(AsyncEvents::new().unwrap());
        let e2 = ev.clone();
        let t = std::thread::spawn(move || e2.get(Some(Duration::from_secs(10))));
        std::thread::sleep(Duration::from_millis(20));
        ev.push(AsyncEvent::CqOverrun { cq: 1 });
        assert_eq!(t.join().unwrap(), Some(AsyncEvent::CqOverrun { cq: 1 }));
    }
}
