//! The I/O edge: a thread that moves frames between the two interfaces of
//! each pair through a [`Netem`] per direction. It alone reads the clock.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::impair::{Fate, Impairment, Netem, NetemStats};
use crate::sys::{self, PacketSocket};

/// Which way across a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the pair's first interface to its second.
    AToB = 0,
    /// From the second to the first.
    BToA = 1,
}

/// What happened on one direction of one pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// The impairment core's counts.
    pub netem: NetemStats,
    /// Frames the kernel dropped before the relay read them (receive
    /// buffer full: the relay fell behind).
    pub kernel_drops: u64,
    /// Frames the outgoing interface refused.
    pub send_errors: u64,
}

struct Shared {
    stop: AtomicBool,
    /// Bumped on each change of `imps`.
    generation: AtomicU64,
    /// Per pair, per direction.
    imps: Mutex<Vec<[Impairment; 2]>>,
    stats: Mutex<Vec<[LinkStats; 2]>>,
}

/// A user-space netem between pairs of interfaces (see the crate doc).
/// Stopped and joined on drop.
pub struct Relay {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// Largest frame relayed whole (a 64 KiB GSO frame would not fit an
/// Ethernet MTU anyway; jumbo frames of 9000 do).
const FRAME_MAX: usize = 65_536;
/// Frames read from one socket before the relay looks at the others.
const BATCH: usize = 64;
/// Longest sleep: how soon a stop or a new impairment is noticed.
const TICK: Duration = Duration::from_millis(5);

impl Relay {
    /// Starts relaying between each pair `(a, b)` of interface names, no
    /// impairment yet. The interfaces must exist in the calling thread's
    /// network namespace (the sockets are made there, before this returns);
    /// `seed` makes every direction's draws reproducible.
    pub fn start(pairs: &[(String, String)], seed: u64) -> io::Result<Relay> {
        let mut socks = Vec::with_capacity(pairs.len() * 2);
        for (a, b) in pairs {
            socks.push(PacketSocket::bind(a, 32 << 20)?);
            socks.push(PacketSocket::bind(b, 32 << 20)?);
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            imps: Mutex::new(vec![[Impairment::NONE; 2]; pairs.len()]),
            stats: Mutex::new(vec![[LinkStats::default(); 2]; pairs.len()]),
        });
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("netem-relay".into())
            .spawn(move || run(socks, seed, &s2))?;
        Ok(Relay {
            shared,
            thread: Some(thread),
        })
    }

    /// Sets pair `pair`'s impairment in direction `dir` (frames arriving
    /// from now on).
    pub fn set(&self, pair: usize, dir: Direction, imp: Impairment) {
        self.shared.imps.lock().unwrap()[pair][dir as usize] = imp;
        self.shared.generation.fetch_add(1, Ordering::Release);
    }

    /// Sets the same impairment on every pair, both directions.
    pub fn set_all(&self, imp: Impairment) {
        self.shared
            .imps
            .lock()
            .unwrap()
            .iter_mut()
            .for_each(|p| *p = [imp; 2]);
        self.shared.generation.fetch_add(1, Ordering::Release);
    }

    /// Counts per pair and direction (`[AToB, BToA]`), as of the relay's
    /// last report (it reports every few milliseconds).
    pub fn stats(&self) -> Vec<[LinkStats; 2]> {
        self.shared.stats.lock().unwrap().clone()
    }

    /// Whether the relay thread still runs (it ends on an I/O error).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A frame held: a buffer of [`FRAME_MAX`] bytes (allocated once, reused
/// through a pool, never cleared) and how much of it is the frame.
struct Frame {
    buf: Vec<u8>,
    len: usize,
}

impl Frame {
    fn new() -> Frame {
        Frame {
            buf: vec![0; FRAME_MAX],
            len: 0,
        }
    }
}

/// The relay loop. Socket `2p` is pair `p`'s first interface, `2p + 1` its
/// second; core `2p + d` is pair `p`'s direction `d`, fed by socket
/// `2p + d` and sent out of socket `2p + 1 - d`.
#[allow(clippy::disallowed_methods)] // the I/O edge: the one clock reader
fn run(mut socks: Vec<PacketSocket>, seed: u64, shared: &Shared) -> io::Result<()> {
    sys::raise_priority();
    let t0 = std::time::Instant::now();
    let now_ns = || t0.elapsed().as_nanos() as u64;
    let mut cores: Vec<Netem<Frame>> = (0..socks.len() as u64)
        .map(|k| {
            Netem::new(
                Impairment::NONE,
                seed ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            )
        })
        .collect();
    let mut send_errors = vec![0u64; socks.len()];
    let mut ready = vec![false; socks.len()];
    let mut pool: Vec<Frame> = Vec::new();
    let mut seen_generation = u64::MAX;
    let mut last_report = 0u64;
    while !shared.stop.load(Ordering::Acquire) {
        let g = shared.generation.load(Ordering::Acquire);
        if g != seen_generation {
            seen_generation = g;
            let imps = shared.imps.lock().unwrap();
            for (k, c) in cores.iter_mut().enumerate() {
                c.set_impairment(imps[k / 2][k % 2]);
            }
        }
        let now = now_ns();
        let wait = cores
            .iter()
            .filter_map(Netem::next_release)
            .min()
            .map_or(TICK, |t| {
                Duration::from_nanos(t.saturating_sub(now)).min(TICK)
            });
        if wait.is_zero() {
            ready.iter_mut().for_each(|r| *r = true);
        } else {
            sys::wait_readable(&socks, wait, &mut ready)?;
        }
        for (k, sock) in socks.iter().enumerate() {
            if !ready[k] {
                continue;
            }
            for _ in 0..BATCH {
                let mut f = pool.pop().unwrap_or_else(Frame::new);
                match sock.recv(&mut f.buf)? {
                    None => {
                        pool.push(f);
                        break;
                    }
                    Some(n) => {
                        f.len = n;
                        if let Fate::Dropped(b) = cores[k].push(now_ns(), f) {
                            pool.push(b);
                        }
                    }
                }
            }
        }
        let now = now_ns();
        for k in 0..cores.len() {
            let out = k ^ 1;
            while let Some(frame) = cores[k].pop_due(now) {
                if socks[out].send(&frame.buf[..frame.len]).is_err() {
                    send_errors[k] += 1;
                }
                pool.push(frame);
            }
        }
        if now - last_report > 5_000_000 {
            last_report = now;
            report(&mut socks, &cores, &send_errors, shared);
        }
    }
    report(&mut socks, &cores, &send_errors, shared);
    Ok(())
}

fn report(
    socks: &mut [PacketSocket],
    cores: &[Netem<Frame>],
    send_errors: &[u64],
    shared: &Shared,
) {
    let mut st = shared.stats.lock().unwrap();
    for (k, c) in cores.iter().enumerate() {
        st[k / 2][k % 2] = LinkStats {
            netem: c.stats(),
            kernel_drops: socks[k].kernel_drops(),
            send_errors: send_errors[k],
        };
    }
}
