//! Congestion control: a delay-based window controller of the Swift / UEC
//! NSCC family, one per delivery context (so per peer device).
//!
//! The window (`cwnd`, bytes) grows additively — one MTU per round trip —
//! while the measured round-trip time stays under a target (the smallest
//! RTT seen plus a configurable slack), and shrinks multiplicatively, in
//! proportion to how far the RTT overshoots, at most once per round trip.
//! A retransmission timeout halves it; an ACK echoing ECN
//! congestion-experienced marks cuts it by `ecn_mdf` (once per RTT). Random loss detected by selective
//! ACKs does not shrink it: on a lossy but uncongested fabric the delay
//! stays low and the window stays open (that is what keeps SRD's goodput
//! under random loss).

use core::time::Duration;

use softverbs_transport::Instant;

/// The controller's knobs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CcConfig {
    /// Initial window, bytes.
    pub init_cwnd: u64,
    /// Smallest window, bytes (at least one packet is always allowed).
    pub min_cwnd: u64,
    /// Largest window, bytes.
    pub max_cwnd: u64,
    /// Queueing delay tolerated above the smallest RTT seen.
    pub target_slack: Duration,
    /// Multiplicative decrease per unit of relative overshoot.
    pub beta: f64,
    /// Largest multiplicative decrease at once (fraction).
    pub max_mdf: f64,
    /// Decrease on an ACK carrying ECN marks (fraction).
    pub ecn_mdf: f64,
    /// Round trip the additive increase (one packet per round trip) is
    /// meant for: on a longer round trip the increase is scaled by
    /// `srtt / ai_rtt`, so the window grows at the same rate per unit of
    /// time whatever the RTT, and a millisecond round trip does not take
    /// hundreds of round trips to win back a decrease (issue 7).
    pub ai_rtt: Duration,
}

impl Default for CcConfig {
    fn default() -> Self {
        CcConfig {
            init_cwnd: 64 * 1024,
            min_cwnd: 4096,
            max_cwnd: 4 * 1024 * 1024,
            target_slack: Duration::from_micros(25),
            beta: 0.8,
            max_mdf: 0.5,
            ecn_mdf: 0.3,
            ai_rtt: Duration::from_micros(100),
        }
    }
}

/// The state of one controller.
#[derive(Debug, Clone)]
pub struct Cc {
    cfg: CcConfig,
    cwnd: f64,
    mtu: f64,
    srtt: Option<Duration>,
    rttvar: Duration,
    min_rtt: Option<Duration>,
    last_decrease: Instant,
    decreases: u64,
    /// Slow start: until the first decrease the window grows by the bytes
    /// acknowledged (doubling per round trip) rather than by one packet per
    /// round trip, so a long round trip fills its bandwidth-delay product
    /// in a few round trips, not hundreds (issue 7).
    slow_start: bool,
}

impl Cc {
    /// A controller for packets of at most `mtu` payload bytes.
    pub fn new(cfg: CcConfig, mtu: usize) -> Self {
        Cc {
            cfg,
            cwnd: cfg.init_cwnd as f64,
            mtu: mtu as f64,
            srtt: None,
            rttvar: Duration::ZERO,
            min_rtt: None,
            last_decrease: Instant::ZERO,
            decreases: 0,
            slow_start: true,
        }
    }

    /// The window, bytes.
    pub fn cwnd(&self) -> u64 {
        self.cwnd as u64
    }

    /// Smoothed RTT, if measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// Smallest RTT seen.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// Multiplicative decreases so far.
    pub fn decreases(&self) -> u64 {
        self.decreases
    }

    /// Retransmission timeout: `srtt + 4·rttvar`, clamped to `[min, max]`;
    /// `initial` before the first sample.
    pub fn rto(&self, min: Duration, max: Duration, initial: Duration) -> Duration {
        match self.srtt {
            None => initial,
            Some(s) => (s + 4 * self.rttvar).clamp(min, max),
        }
    }

    /// `bytes` newly acknowledged; `rtt` is a sample when the ACK answers
    /// a packet sent once (Karn).
    pub fn on_ack(&mut self, now: Instant, bytes: u64, rtt: Option<Duration>) {
        if let Some(r) = rtt {
            self.sample(r);
        }
        let (Some(srtt), Some(min)) = (self.srtt, self.min_rtt) else {
            return;
        };
        let target = min + self.cfg.target_slack;
        let delay = rtt.unwrap_or(srtt);
        if delay <= target {
            if self.slow_start {
                self.cwnd += bytes as f64;
            } else {
                let scale = (srtt.as_secs_f64() / self.cfg.ai_rtt.as_secs_f64().max(1e-9)).max(1.0);
                self.cwnd += scale * self.mtu * bytes as f64 / self.cwnd.max(1.0);
            }
        } else if now.saturating_since(self.last_decrease) >= srtt {
            let over = (delay - target).as_secs_f64() / delay.as_secs_f64();
            let f = (1.0 - self.cfg.beta * over).max(1.0 - self.cfg.max_mdf);
            self.cwnd *= f;
            self.last_decrease = now;
            self.decreases += 1;
            self.slow_start = false;
        }
        self.clamp();
    }

    /// An ACK reported congestion-experienced marks (ECN): cut by
    /// `ecn_mdf`, at most once per round trip. Marks mean a queue is
    /// building somewhere on the path, before the delay shows it.
    pub fn on_ecn(&mut self, now: Instant) {
        if self
            .srtt
            .is_none_or(|s| now.saturating_since(self.last_decrease) >= s)
        {
            self.cwnd *= 1.0 - self.cfg.ecn_mdf;
            self.last_decrease = now;
            self.decreases += 1;
            self.slow_start = false;
            self.clamp();
        }
    }

    /// A retransmission timeout fired.
    pub fn on_timeout(&mut self, now: Instant) {
        if self
            .srtt
            .is_none_or(|s| now.saturating_since(self.last_decrease) >= s)
        {
            self.cwnd /= 2.0;
            self.last_decrease = now;
            self.decreases += 1;
            self.slow_start = false;
            self.clamp();
        }
    }

    fn sample(&mut self, r: Duration) {
        self.min_rtt = Some(self.min_rtt.map_or(r, |m| m.min(r)));
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                let diff = s.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((s * 7 + r) / 8);
            }
        }
    }

    fn clamp(&mut self) {
        self.cwnd = self
            .cwnd
            .clamp(self.cfg.min_cwnd as f64, self.cfg.max_cwnd as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_under_target_and_shrinks_over_it() {
        let mut cc = Cc::new(CcConfig::default(), 4096);
        let w0 = cc.cwnd();
        for i in 0..100 {
            cc.on_ack(Instant(i * 1000), 4096, Some(Duration::from_micros(10)));
        }
        assert!(cc.cwnd() > w0);
        let w1 = cc.cwnd();
        cc.on_ack(Instant(10_000_000), 4096, Some(Duration::from_micros(200)));
        assert!(cc.cwnd() < w1);
        // Not twice in one RTT.
        let w2 = cc.cwnd();
        cc.on_ack(Instant(10_000_001), 4096, Some(Duration::from_micros(200)));
        assert_eq!(cc.cwnd(), w2);
        cc.on_timeout(Instant(20_000_000));
        assert!(cc.cwnd() < w2);
        let w3 = cc.cwnd();
        cc.on_ecn(Instant(40_000_000));
        assert!(cc.cwnd() < w3);
        assert!(cc.cwnd() >= CcConfig::default().min_cwnd);
    }
}
