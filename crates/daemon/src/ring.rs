//! Single-producer/single-consumer rings in shared memory: the send,
//! receive, SRQ and completion queues of the daemon backend.
//!
//! Layout and memory-ordering rules: `docs/daemon-rings.md`. In short:
//!
//! - a 256-byte [`Header`] (three indices on their own cache lines), then
//!   `entries` slots of `stride` bytes; `entries` is a power of two;
//! - `head` and `tail` are free-running `u32` counters; slot `i` lives at
//!   `i & (entries - 1)`; the producer owns `head`, the consumer `tail`;
//! - the producer writes a slot, then publishes it by storing `head`
//!   (Release); the consumer loads `head` (Acquire), copies the slot out,
//!   then frees it by storing `tail` (Release); the producer loads `tail`
//!   (Acquire) before reusing a slot;
//! - each side keeps its own index privately and only *reads* the other's,
//!   so a peer that scribbles on the header can make the ring look full,
//!   empty or corrupt ([`RingError::Corrupt`]), never make this side read or
//!   write outside the slots;
//! - `wait` carries the sleeping protocol: a consumer about to sleep stores
//!   a non-zero `wait`, issues a SeqCst fence, re-checks `head` and sleeps
//!   only if still empty; a producer stores `head`, issues a SeqCst fence and
//!   loads `wait`: if non-zero it rings the doorbell. The two fences order
//!   the two store-load pairs, so one side always sees the other (no lost
//!   wake-up); this is model-checked with loom:
//!   `RUSTFLAGS="--cfg loom" cargo test -p softverbs-daemon --release --lib ring::loom_tests`.

#[cfg(loom)]
use loom::sync::atomic::{fence, AtomicBool, AtomicU32, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{fence, AtomicBool, AtomicU32, Ordering};

/// Size of the ring header; slots start here.
pub const HEADER_SIZE: usize = 256;
/// `"SVRG"`, the first word of a ring header (informational).
pub const MAGIC: u32 = u32::from_le_bytes(*b"SVRG");

/// One index on its own cache line.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Line(pub AtomicU32);

/// The ring header, shared by both sides (`#[repr(C)]`, 256 bytes).
#[repr(C)]
#[derive(Debug)]
pub struct Header {
    /// Informational words written by the creator: magic, version/kind,
    /// entries, stride. Never trusted by the daemon (it keeps its own copy).
    pub meta: Line,
    /// Producer index (free-running).
    pub head: Line,
    /// Consumer index (free-running).
    pub tail: Line,
    /// The consumer's sleep/arm word: 0 awake, 1 wake on any entry, 2 wake
    /// on a solicited or error completion (CQ rings).
    pub wait: Line,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Header>() == HEADER_SIZE);

impl Header {
    /// A zeroed header (for tests and in-process rings).
    pub fn new() -> Self {
        Header {
            meta: Line(AtomicU32::new(MAGIC)),
            head: Line(AtomicU32::new(0)),
            tail: Line(AtomicU32::new(0)),
            wait: Line(AtomicU32::new(0)),
        }
    }
}

impl Default for Header {
    fn default() -> Self {
        Self::new()
    }
}

/// Slot storage: copies whole slots in and out (racy bytes in shared
/// memory; a `loom` cell in the model checker).
pub trait Slots {
    /// Copies `src` into slot `i` (`src.len() <= stride`).
    fn put(&self, i: usize, src: &[u8]);
    /// Copies slot `i` into `dst` (`dst.len() <= stride`).
    fn get(&self, i: usize, dst: &mut [u8]);
}

/// What went wrong with a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// No free slot (producer).
    #[error("ring full")]
    Full,
    /// The peer's index is impossible (more than `entries` apart from ours).
    #[error(
        "ring corrupt: the peer's index {peer} is {distance} away from ours (ring of {entries})"
    )]
    Corrupt {
        /// The peer's index as read.
        peer: u32,
        /// Its distance from ours.
        distance: u32,
        /// Ring size.
        entries: u32,
    },
}

/// Geometry checks shared by both ends: `entries` a power of two.
pub fn valid_entries(entries: u32) -> bool {
    entries.is_power_of_two() && entries <= 1 << 20
}

/// The producing end of a ring.
#[derive(Debug)]
pub struct Producer<H: std::ops::Deref<Target = Header>, S: Slots> {
    hdr: H,
    slots: S,
    entries: u32,
    head: u32,
}

impl<H: std::ops::Deref<Target = Header>, S: Slots> Producer<H, S> {
    /// The producer over `hdr` and `slots`, starting from the header's
    /// current `head` (read once, then owned privately).
    pub fn new(hdr: H, slots: S, entries: u32) -> Self {
        let head = hdr.head.0.load(Ordering::Relaxed);
        Producer {
            hdr,
            slots,
            entries,
            head,
        }
    }

    fn used(&self) -> Result<u32, RingError> {
        let tail = self.hdr.tail.0.load(Ordering::Acquire);
        let used = self.head.wrapping_sub(tail);
        if used > self.entries {
            return Err(RingError::Corrupt {
                peer: tail,
                distance: used,
                entries: self.entries,
            });
        }
        Ok(used)
    }

    /// Free slots now.
    pub fn free(&self) -> Result<u32, RingError> {
        Ok(self.entries - self.used()?)
    }

    /// Writes `entry` into the next slot and publishes it.
    pub fn push(&mut self, entry: &[u8]) -> Result<(), RingError> {
        if self.used()? == self.entries {
            return Err(RingError::Full);
        }
        self.slots
            .put((self.head & (self.entries - 1)) as usize, entry);
        self.head = self.head.wrapping_add(1);
        self.hdr.head.0.store(self.head, Ordering::Release);
        Ok(())
    }

    /// After pushing: the consumer's `wait` word (0: it is awake and will
    /// see the entries; otherwise it may sleep and must be woken).
    pub fn wait_word(&self) -> u32 {
        // The store-load pair of the wake-up protocol: `head` (stored
        // above) before `wait`, against the consumer's `wait` before `head`.
        fence(Ordering::SeqCst);
        self.hdr.wait.0.load(Ordering::Relaxed)
    }

    /// Clears `wait` if it still holds `seen` (the producer takes the job of
    /// waking the consumer); true if this call cleared it.
    pub fn take_wait(&self, seen: u32) -> bool {
        seen != 0
            && self
                .hdr
                .wait
                .0
                .compare_exchange(seen, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
    }
}

/// The consuming end of a ring.
#[derive(Debug)]
pub struct Consumer<H: std::ops::Deref<Target = Header>, S: Slots> {
    hdr: H,
    slots: S,
    entries: u32,
    tail: u32,
}

impl<H: std::ops::Deref<Target = Header>, S: Slots> Consumer<H, S> {
    /// The consumer over `hdr` and `slots`, from the header's `tail`.
    pub fn new(hdr: H, slots: S, entries: u32) -> Self {
        let tail = hdr.tail.0.load(Ordering::Relaxed);
        Consumer {
            hdr,
            slots,
            entries,
            tail,
        }
    }

    fn avail(&self, order: Ordering) -> Result<u32, RingError> {
        let head = self.hdr.head.0.load(order);
        let n = head.wrapping_sub(self.tail);
        if n > self.entries {
            return Err(RingError::Corrupt {
                peer: head,
                distance: n,
                entries: self.entries,
            });
        }
        Ok(n)
    }

    /// Entries ready now.
    pub fn available(&self) -> Result<u32, RingError> {
        self.avail(Ordering::Acquire)
    }

    /// Copies the next entry into `dst` and frees its slot; `Ok(false)` when
    /// the ring is empty.
    pub fn pop(&mut self, dst: &mut [u8]) -> Result<bool, RingError> {
        if self.avail(Ordering::Acquire)? == 0 {
            return Ok(false);
        }
        self.slots
            .get((self.tail & (self.entries - 1)) as usize, dst);
        self.tail = self.tail.wrapping_add(1);
        self.hdr.tail.0.store(self.tail, Ordering::Release);
        Ok(true)
    }

    /// Announces that this side is about to sleep (`how`: 1 any entry, 2
    /// solicited only), then re-checks: true if it may sleep (still empty),
    /// false if entries arrived meanwhile (`wait` is cleared again).
    pub fn prepare_sleep(&self, how: u32) -> Result<bool, RingError> {
        self.hdr.wait.0.store(how, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.avail(Ordering::Acquire)? != 0 {
            self.hdr.wait.0.store(0, Ordering::Relaxed);
            return Ok(false);
        }
        Ok(true)
    }

    /// Clears the sleep word after waking.
    pub fn awake(&self) {
        self.hdr.wait.0.store(0, Ordering::Relaxed);
    }
}

/// Arming a CQ ring for its completion channel (`ibv_req_notify_cq` of
/// the daemon backend), the client's half; the daemon's half is the
/// producer's [`Producer::wait_word`] and [`Producer::take_wait`] after a
/// push: it clears `wait` and rings the doorbell.
///
/// The client stores `wait` (1 any entry, 2 solicited or error), then
/// `armed`; its pump, woken by the doorbell, calls [`Arm::fired`]: armed
/// and `wait` cleared means the daemon fired for this arm. Loom checks
/// that a fire is reported exactly once and nothing else is
/// (`loom_tests::arm_fires_exactly_once`).
#[derive(Debug, Default)]
pub struct Arm {
    armed: AtomicBool,
}

impl Arm {
    /// An unarmed ring.
    pub fn new() -> Self {
        Arm {
            armed: AtomicBool::new(false),
        }
    }

    /// Arms: the next entry pushed after this (`how` 2: the next solicited
    /// or error one) fires.
    pub fn arm(&self, hdr: &Header, how: u32) {
        hdr.wait.0.store(how, Ordering::SeqCst);
        self.armed.store(true, Ordering::SeqCst);
    }

    /// True once per fire: the ring was armed and the producer has cleared
    /// `wait` since; disarms.
    pub fn fired(&self, hdr: &Header) -> bool {
        self.armed.load(Ordering::SeqCst)
            && hdr.wait.0.load(Ordering::SeqCst) == 0
            && self.armed.swap(false, Ordering::SeqCst)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::cell::RefCell;

    struct Mem(RefCell<Vec<[u8; 8]>>);
    impl Slots for &Mem {
        fn put(&self, i: usize, src: &[u8]) {
            self.0.borrow_mut()[i][..src.len()].copy_from_slice(src);
        }
        fn get(&self, i: usize, dst: &mut [u8]) {
            let n = dst.len();
            dst.copy_from_slice(&self.0.borrow()[i][..n]);
        }
    }

    #[test]
    fn fifo_full_empty_and_wrap() {
        let h = Header::new();
        h.head.0.store(u32::MAX - 2, Ordering::Relaxed);
        h.tail.0.store(u32::MAX - 2, Ordering::Relaxed);
        let m = Mem(RefCell::new(vec![[0; 8]; 4]));
        let mut p = Producer::new(&h, &m, 4);
        let mut c = Consumer::new(&h, &m, 4);
        let mut out = [0u8; 1];
        for round in 0..5u8 {
            for i in 0..4 {
                p.push(&[round * 10 + i]).unwrap();
            }
            assert_eq!(p.push(&[0]), Err(RingError::Full));
            for i in 0..4 {
                assert!(c.pop(&mut out).unwrap());
                assert_eq!(out[0], round * 10 + i);
            }
            assert!(!c.pop(&mut out).unwrap());
        }
    }

    #[test]
    fn a_scribbled_peer_index_is_corrupt_not_a_wild_access() {
        let h = Header::new();
        let m = Mem(RefCell::new(vec![[0; 8]; 4]));
        let mut c = Consumer::new(&h, &m, 4);
        h.head.0.store(1000, Ordering::Relaxed);
        assert!(matches!(
            c.pop(&mut [0u8; 1]),
            Err(RingError::Corrupt { .. })
        ));
        let mut p = Producer::new(&h, &m, 4);
        h.tail.0.store(7, Ordering::Relaxed);
        assert!(matches!(p.push(&[1]), Err(RingError::Corrupt { .. })));
        // A tail that runs ahead of our head reads as corrupt as well.
        h.tail.0.store(1001, Ordering::Relaxed);
        assert!(matches!(p.free(), Err(RingError::Corrupt { .. })));
    }

    #[test]
    fn sleep_protocol_sees_late_entries() {
        let h = Header::new();
        let m = Mem(RefCell::new(vec![[0; 8]; 2]));
        let mut p = Producer::new(&h, &m, 2);
        let c = Consumer::new(&h, &m, 2);
        assert!(c.prepare_sleep(1).unwrap());
        p.push(&[1]).unwrap();
        let w = p.wait_word();
        assert_eq!(w, 1);
        assert!(p.take_wait(w));
        assert!(!p.take_wait(p.wait_word()));
        assert!(!c.prepare_sleep(1).unwrap());
        assert_eq!(h.wait.0.load(Ordering::Relaxed), 0);
    }
}

/// Model checks of the ring protocol (run with
/// `RUSTFLAGS="--cfg loom" cargo test -p softverbs-daemon --release --lib ring::loom_tests`).
#[cfg(all(test, loom))]
#[allow(unsafe_code)]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;
    use loom::thread;

    /// Slots as loom cells: loom reports a data race if the consumer could
    /// read a slot while the producer writes it.
    struct Cells(Vec<UnsafeCell<u8>>);
    impl Slots for Arc<Cells> {
        fn put(&self, i: usize, src: &[u8]) {
            // SAFETY: loom checks that no other access overlaps this one.
            self.0[i].with_mut(|p| unsafe { *p = src[0] });
        }
        fn get(&self, i: usize, dst: &mut [u8]) {
            // SAFETY: as above.
            dst[0] = self.0[i].with(|p| unsafe { *p });
        }
    }

    fn ring(n: usize) -> (Arc<Header>, Arc<Cells>) {
        (
            Arc::new(Header::new()),
            Arc::new(Cells((0..n).map(|_| UnsafeCell::new(0)).collect())),
        )
    }

    #[test]
    fn spsc_delivers_in_order_without_races() {
        loom::model(|| {
            let (h, s) = ring(2);
            let (h2, s2) = (h.clone(), s.clone());
            let t = thread::spawn(move || {
                let mut p = Producer::new(h2, s2, 2);
                for v in 1..=3u8 {
                    while p.push(&[v]) == Err(RingError::Full) {
                        thread::yield_now();
                    }
                }
            });
            let mut c = Consumer::new(h, s, 2);
            let mut got = Vec::new();
            while got.len() < 3 {
                let mut b = [0u8];
                if c.pop(&mut b).unwrap() {
                    got.push(b[0]);
                } else {
                    thread::yield_now();
                }
            }
            t.join().unwrap();
            assert_eq!(got, [1, 2, 3]);
        });
    }

    #[test]
    fn arm_fires_exactly_once() {
        loom::model(|| {
            let (h, s) = ring(2);
            let arm = Arc::new(Arm::new());
            let rang = Arc::new(AtomicBool::new(false));
            let (h2, s2, r2) = (h.clone(), s.clone(), rang.clone());
            // The daemon: push a completion, fire if armed.
            let daemon = thread::spawn(move || {
                let mut p = Producer::new(h2, s2, 2);
                p.push(&[1]).unwrap();
                let w = p.wait_word();
                if w == 1 && p.take_wait(w) {
                    r2.store(true, Ordering::SeqCst);
                }
            });
            // The pump, woken (or not) meanwhile.
            let (h3, a3) = (h.clone(), arm.clone());
            let pump = thread::spawn(move || u32::from(a3.fired(&h3)));
            // The client arms.
            arm.arm(&h, 1);
            daemon.join().unwrap();
            let early = pump.join().unwrap();
            // The pump's look after the doorbell.
            let reports = early + u32::from(arm.fired(&h));
            assert_eq!(reports, u32::from(rang.load(Ordering::SeqCst)));
        });
    }

    #[test]
    fn no_lost_wakeup() {
        loom::model(|| {
            let (h, s) = ring(2);
            let rang = Arc::new(AtomicBool::new(false));
            let (h2, s2, r2) = (h.clone(), s.clone(), rang.clone());
            let t = thread::spawn(move || {
                let mut p = Producer::new(h2, s2, 2);
                p.push(&[9]).unwrap();
                let w = p.wait_word();
                if w != 0 {
                    r2.store(true, Ordering::SeqCst);
                }
            });
            let mut c = Consumer::new(h, s, 2);
            let mut b = [0u8];
            let got_it = c.pop(&mut b).unwrap();
            let slept = !got_it && c.prepare_sleep(1).unwrap();
            t.join().unwrap();
            if slept {
                // It went to sleep on an empty ring: the producer must have
                // seen `wait` and rung the doorbell.
                assert!(rang.load(Ordering::SeqCst), "lost wake-up");
            }
        });
    }
}
