//! The commands that drive devices: `softverbs pingpong` ([`pingpong`])
//! and `softverbs perf` ([`perf`]) over the device-independent parts in
//! [`crate::pingpong`] and [`crate::perftest`].
//!
//! What they share on the verbs side, here:
//! opening the device the real tools would pick, a `lrand48`-like random
//! source for PSNs and buffer contents, a clock in nanoseconds, completion
//! polling that leaves CPU time to the devices' I/O threads, and the
//! progress bar of long runs.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use softverbs::{CompletionChannel, Context, Cq, Wc};

pub mod perf;
pub mod pingpong;

/// An out-of-band error as one line (its text already names the peer and
/// the cause).
pub fn oob_err(e: crate::pingpong::net::OobError) -> anyhow::Error {
    anyhow!("{e}")
}

/// Opens device `name`, or the first device when `None` (what `-d` means
/// in the real tools). An unknown name lists the devices there are: the
/// running daemon's, else this process's.
pub fn open_device(name: Option<&str>) -> Result<Context> {
    let (names, from) = crate::host::device_names()?;
    let name = match name {
        Some(n) => n,
        None => names
            .first()
            .map(String::as_str)
            .ok_or_else(|| anyhow!("No IB devices found ({from})"))?,
    };
    if !names.iter().any(|n| n == name) {
        bail!(
            "IB device {name} not found (devices: {}; {from})",
            names.join(", ")
        );
    }
    Context::open(name).map_err(|e| anyhow!("Couldn't get context for {name}: {e}"))
}

/// A small `lrand48`-like generator (xorshift64*), seeded like the real
/// tools (`getpid() * time(NULL)`), so two runs get different PSNs.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from the process id, the time and `salt`.
    pub fn new(salt: u64) -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let seed = (std::process::id() as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(t)
            .wrapping_add(salt.wrapping_mul(0xbf58_476d_1ce4_e5b9));
        Rng(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A 24-bit PSN (`lrand48() & 0xffffff`).
    pub fn psn(&mut self) -> u32 {
        (self.next_u64() >> 20) as u32 & 0xff_ffff
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Nanoseconds since the first call in this process (perftest's
/// `get_cycles()` with a 1 GHz "CPU").
pub fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    base.elapsed().as_nanos() as u64
}

/// The clock rate of [`now_ns`], for perftest's report arithmetic.
pub const CYCLES_PER_SEC: f64 = 1e9;

/// Polls a CQ the way the tools do — busy polling, or sleeping on the
/// completion channel with `-e` — but yields the CPU while nothing comes,
/// so that the devices' I/O threads run on a small machine, and gives up
/// after `stall` without a completion.
pub struct Poller {
    cq: Cq,
    channel: Option<CompletionChannel>,
    /// Give up after this long without a completion.
    pub stall: Option<Duration>,
    /// CQ events received (`num_cq_events`, acknowledged at the end).
    pub events: u64,
}

impl Poller {
    /// A poller of `cq`; with `channel`, it sleeps on the channel
    /// (`ibv_req_notify_cq`, `ibv_get_cq_event`).
    pub fn new(
        cq: &Cq,
        channel: Option<&CompletionChannel>,
        stall: Option<Duration>,
    ) -> Result<Self> {
        if channel.is_some() {
            cq.req_notify(false)
                .map_err(|e| anyhow!("Couldn't request CQ notification: {e}"))?;
        }
        Ok(Poller {
            cq: cq.clone(),
            channel: channel.cloned(),
            stall,
            events: 0,
        })
    }

    /// Up to `max` completions now, without waiting.
    pub fn poll_now(&self, max: usize, out: &mut Vec<Wc>) -> Result<usize> {
        out.clear();
        self.cq
            .poll(max, out)
            .map_err(|e| anyhow!("poll CQ failed: {e}"))
    }

    /// At least one completion (up to `max`) in `out`; `what` names what
    /// we wait for in the stall error. With a channel: arm the CQ, poll
    /// again (what completed before the arm raised no event), then sleep
    /// until an event.
    pub fn wait(&mut self, max: usize, out: &mut Vec<Wc>, what: &str) -> Result<usize> {
        let start = now_ns();
        let mut spins = 0u32;
        loop {
            let n = self.poll_now(max, out)?;
            if n > 0 {
                return Ok(n);
            }
            let waited = Duration::from_nanos(now_ns() - start);
            if let Some(ch) = &self.channel {
                self.cq
                    .req_notify(false)
                    .map_err(|e| anyhow!("Couldn't request CQ notification: {e}"))?;
                let n = self.poll_now(max, out)?;
                if n > 0 {
                    return Ok(n);
                }
                let limit = self.stall.map(|s| s.saturating_sub(waited));
                if limit.is_some_and(|l| l.is_zero()) || ch.get_cq_event(limit).is_none() {
                    bail!("{}", self.stall_msg(what));
                }
                self.events += 1;
                continue;
            }
            spins += 1;
            if spins.is_multiple_of(64) && self.stall.is_some_and(|s| waited > s) {
                bail!("{}", self.stall_msg(what));
            }
            std::thread::yield_now();
        }
    }

    fn stall_msg(&self, what: &str) -> String {
        format!(
            "no completion for {:.0} s while waiting for {what} (is the peer still running? \
             an unreliable transport may have dropped a message)",
            self.stall.unwrap_or_default().as_secs_f64()
        )
    }
}

/// A progress bar shown on standard error once a run has taken two
/// seconds, only when standard error is a terminal and the output is not
/// JSON.
pub struct Progress {
    enabled: bool,
    total: u64,
    unit: &'static str,
    started: u64,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// A bar for a run of `total` steps (`unit` names them); `quiet` (for
    /// `-j`) disables it.
    pub fn new(total: u64, unit: &'static str, quiet: bool) -> Progress {
        Progress {
            enabled: !quiet && total > 0 && std::io::stderr().is_terminal(),
            total,
            unit,
            started: now_ns(),
            bar: None,
        }
    }

    /// Reports `pos` steps done; cheap enough to call every few hundred
    /// iterations.
    pub fn set(&mut self, pos: u64) {
        if !self.enabled {
            return;
        }
        if self.bar.is_none() {
            if now_ns() - self.started < 2_000_000_000 {
                return;
            }
            let bar = indicatif::ProgressBar::new(self.total);
            let style = indicatif::ProgressStyle::with_template(&format!(
                "{{spinner}} [{{elapsed_precise}}] [{{bar:40}}] {{pos}}/{{len}} {} (eta {{eta}})",
                self.unit
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            self.bar = Some(bar);
        }
        if let Some(b) = &self.bar {
            b.set_position(pos.min(self.total));
        }
    }

    /// Removes the bar (before the report is printed).
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
