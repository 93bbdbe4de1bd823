//! A receive queue: a QP's own, or a shared receive queue (SRQ).

use std::collections::VecDeque;

use crate::wr::RecvWr;

/// A queue of receive work requests. A QP owns one unless it is attached to
/// an SRQ, which the device passes in [`crate::Ctx`] with each call.
#[derive(Debug, Clone, Default)]
pub struct RecvQueue {
    wqes: VecDeque<RecvWr>,
    capacity: usize,
    /// SRQ limit (`srq_limit`): armed when non-zero; fires once when the
    /// number of queued WQEs drops below it.
    limit: u32,
    limit_reached: bool,
}

impl RecvQueue {
    /// An empty queue that holds at most `capacity` WQEs.
    pub fn new(capacity: usize) -> Self {
        RecvQueue {
            wqes: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            limit: 0,
            limit_reached: false,
        }
    }

    /// Queue a WQE; gives it back when the queue is full.
    pub fn push(&mut self, wr: RecvWr) -> Result<(), RecvWr> {
        if self.wqes.len() >= self.capacity {
            return Err(wr);
        }
        self.wqes.push_back(wr);
        Ok(())
    }

    /// Take the oldest WQE.
    pub fn pop(&mut self) -> Option<RecvWr> {
        let wr = self.wqes.pop_front()?;
        if self.limit != 0 && (self.wqes.len() as u64) < u64::from(self.limit) {
            self.limit = 0; // the limit event is one-shot: it disarms itself
            self.limit_reached = true;
        }
        Some(wr)
    }

    /// True when a WQE is waiting.
    pub fn has_wqe(&self) -> bool {
        !self.wqes.is_empty()
    }

    /// Number of queued WQEs.
    pub fn len(&self) -> usize {
        self.wqes.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.wqes.is_empty()
    }

    /// Maximum number of WQEs.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Change the capacity (never below the current length).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(self.wqes.len());
    }

    /// Arm the SRQ limit (0 disarms).
    pub fn arm_limit(&mut self, limit: u32) {
        self.limit = limit;
    }

    /// The armed limit, 0 when disarmed.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// True once after the queue fell below its armed limit
    /// (`IBV_EVENT_SRQ_LIMIT_REACHED`).
    pub fn take_limit_event(&mut self) -> bool {
        core::mem::take(&mut self.limit_reached)
    }

    /// Remove every WQE (flush on error or destroy).
    pub fn drain(&mut self) -> impl Iterator<Item = RecvWr> + '_ {
        self.wqes.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wr(id: u64) -> RecvWr {
        RecvWr {
            wr_id: id,
            sgl: vec![],
        }
    }

    #[test]
    fn capacity_and_fifo() {
        let mut q = RecvQueue::new(2);
        q.push(wr(1)).unwrap();
        q.push(wr(2)).unwrap();
        assert_eq!(q.push(wr(3)).unwrap_err().wr_id, 3);
        assert_eq!(q.pop().unwrap().wr_id, 1);
        assert_eq!(q.pop().unwrap().wr_id, 2);
        assert!(q.pop().is_none());
    }

    #[test]
    fn limit_fires_once() {
        let mut q = RecvQueue::new(8);
        for i in 0..4 {
            q.push(wr(i)).unwrap();
        }
        q.arm_limit(3);
        q.pop();
        assert!(!q.take_limit_event(), "3 left: not below the limit");
        q.pop();
        assert!(q.take_limit_event());
        assert!(!q.take_limit_event());
        q.pop();
        assert!(!q.take_limit_event(), "disarmed after firing");
    }
}
