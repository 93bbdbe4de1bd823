//! The sans-IO impairment core: a queue keyed by release time, a seeded
//! generator, and the caller's clock.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

/// What one direction of a link does to the frames crossing it.
///
/// Each frame is independently lost with probability `loss`; a frame that
/// survives is released `delay ± jitter` (uniform) after it arrived, but
/// never before a frame that arrived earlier (jitter varies the delay like
/// a queue would, it does not reorder). With probability `reorder` a
/// surviving frame instead skips the queue and is released at once,
/// overtaking the frames held — `tc netem … reorder P` semantics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Impairment {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Uniform variation around `delay` (± this much, order kept).
    pub jitter: Duration,
    /// Probability (0–1) that a frame is lost.
    pub loss: f64,
    /// Probability (0–1) that a frame goes out at once, ahead of the
    /// queue.
    pub reorder: f64,
}

impl Impairment {
    /// No delay, no loss: frames pass straight through.
    pub const NONE: Impairment = Impairment {
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        loss: 0.0,
        reorder: 0.0,
    };

    /// A fixed one-way delay.
    pub fn delay(delay: Duration) -> Impairment {
        Impairment {
            delay,
            ..Impairment::NONE
        }
    }

    /// The same with `jitter`.
    pub fn with_jitter(self, jitter: Duration) -> Impairment {
        Impairment { jitter, ..self }
    }

    /// The same with random loss `p` (0–1).
    pub fn with_loss(self, p: f64) -> Impairment {
        Impairment { loss: p, ..self }
    }

    /// The same with a fraction `p` (0–1) of the frames reordered.
    pub fn with_reorder(self, p: f64) -> Impairment {
        Impairment { reorder: p, ..self }
    }
}

/// What became of a frame handed to [`Netem::push`].
#[derive(Debug, PartialEq, Eq)]
pub enum Fate<T> {
    /// Lost: the frame is handed back (its buffer can be reused).
    Dropped(T),
    /// Held until the given time (ns, the caller's clock).
    Queued {
        /// When [`Netem::pop_due`] will give it out.
        release_ns: u64,
    },
}

/// Counts of what a [`Netem`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetemStats {
    /// Frames pushed.
    pub arrived: u64,
    /// Frames lost on purpose.
    pub dropped: u64,
    /// Frames that skipped the queue.
    pub reordered: u64,
    /// Frames given out by [`Netem::pop_due`].
    pub released: u64,
    /// Sum over the released frames of how late they were asked for
    /// (`now` at [`Netem::pop_due`] past their release time): how far the
    /// I/O edge falls behind the schedule.
    pub late_ns_total: u64,
    /// The latest of them.
    pub late_ns_max: u64,
}

impl NetemStats {
    /// Mean lateness of the released frames, ns.
    pub fn late_ns_mean(&self) -> u64 {
        self.late_ns_total / self.released.max(1)
    }
}

/// A frame held, ordered by release time, then arrival.
struct Held<T> {
    release_ns: u64,
    seq: u64,
    frame: T,
}

impl<T> PartialEq for Held<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.release_ns, self.seq) == (o.release_ns, o.seq)
    }
}
impl<T> Eq for Held<T> {}
impl<T> PartialOrd for Held<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Held<T> {
    /// Reversed: `BinaryHeap` is a max-heap, the earliest must come first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.release_ns, o.seq).cmp(&(self.release_ns, self.seq))
    }
}

/// SplitMix64: small, fast, and good enough to draw losses and delays.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// One direction of an impaired link, without I/O: frames in with their
/// arrival time, out when due. Deterministic from the seed and the times.
pub struct Netem<T> {
    imp: Impairment,
    rng: SplitMix64,
    heap: BinaryHeap<Held<T>>,
    seq: u64,
    /// Release time of the last frame that took the queue (FIFO floor).
    last_fifo_ns: u64,
    stats: NetemStats,
}

impl<T> Netem<T> {
    /// A link direction impaired by `imp`, drawing from `seed`.
    pub fn new(imp: Impairment, seed: u64) -> Netem<T> {
        Netem {
            imp,
            rng: SplitMix64(seed),
            heap: BinaryHeap::new(),
            seq: 0,
            last_fifo_ns: 0,
            stats: NetemStats::default(),
        }
    }

    /// The impairment in force.
    pub fn impairment(&self) -> Impairment {
        self.imp
    }

    /// Changes the impairment for frames arriving from now on (frames held
    /// keep their release times).
    pub fn set_impairment(&mut self, imp: Impairment) {
        self.imp = imp;
    }

    /// A frame arrived at `now_ns`: lose it, or hold it until its release.
    pub fn push(&mut self, now_ns: u64, frame: T) -> Fate<T> {
        self.stats.arrived += 1;
        let imp = self.imp;
        if imp.loss > 0.0 && self.rng.unit() < imp.loss {
            self.stats.dropped += 1;
            return Fate::Dropped(frame);
        }
        let release_ns = if imp.reorder > 0.0 && self.rng.unit() < imp.reorder {
            self.stats.reordered += 1;
            now_ns
        } else {
            let base = imp.delay.as_nanos() as i128;
            let j = imp.jitter.as_nanos() as i128;
            let d = if j > 0 {
                // Uniform in [base - j, base + j].
                base - j + (self.rng.unit() * (2 * j + 1) as f64) as i128
            } else {
                base
            };
            let t = now_ns
                .saturating_add(d.max(0) as u64)
                .max(self.last_fifo_ns);
            self.last_fifo_ns = t;
            t
        };
        self.seq += 1;
        self.heap.push(Held {
            release_ns,
            seq: self.seq,
            frame,
        });
        Fate::Queued { release_ns }
    }

    /// The next frame due at `now_ns`, if any (earliest release first;
    /// equal times in arrival order).
    pub fn pop_due(&mut self, now_ns: u64) -> Option<T> {
        if self.heap.peek()?.release_ns > now_ns {
            return None;
        }
        let h = self.heap.pop()?;
        let late = now_ns - h.release_ns;
        self.stats.released += 1;
        self.stats.late_ns_total = self.stats.late_ns_total.saturating_add(late);
        self.stats.late_ns_max = self.stats.late_ns_max.max(late);
        Some(h.frame)
    }

    /// When the earliest frame held is due (`None`: nothing held).
    pub fn next_release(&self) -> Option<u64> {
        self.heap.peek().map(|h| h.release_ns)
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// What it did so far.
    pub fn stats(&self) -> NetemStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn drain(n: &mut Netem<u32>, now: u64) -> Vec<u32> {
        std::iter::from_fn(|| n.pop_due(now)).collect()
    }

    #[test]
    fn fixed_delay_releases_in_order_at_the_right_time() {
        let mut n = Netem::new(Impairment::delay(Duration::from_millis(1)), 1);
        for i in 0..10u32 {
            assert_eq!(
                n.push(u64::from(i) * 100_000, i),
                Fate::Queued {
                    release_ns: MS + u64::from(i) * 100_000
                }
            );
        }
        assert_eq!(n.next_release(), Some(MS));
        assert!(drain(&mut n, MS - 1).is_empty());
        assert_eq!(drain(&mut n, MS + 250_000), vec![0, 1, 2]);
        assert_eq!(n.next_release(), Some(MS + 300_000));
        assert_eq!(drain(&mut n, 10 * MS), (3..10).collect::<Vec<_>>());
        assert!(n.is_empty() && n.next_release().is_none());
        let s = n.stats();
        assert_eq!((s.arrived, s.released, s.dropped), (10, 10, 0));
        // Lateness: 0 and 1 asked for 250 and 150 µs late, 2 on time 50 µs
        // late, then 3..9 at 10 ms.
        assert_eq!(s.late_ns_max, 10 * MS - (MS + 300_000));
        let want: u64 = [250_000, 150_000, 50_000]
            .into_iter()
            .chain((3..10).map(|i| 10 * MS - (MS + i * 100_000)))
            .sum();
        assert_eq!(s.late_ns_total, want);
    }

    #[test]
    fn jitter_varies_the_delay_but_keeps_the_order() {
        let imp =
            Impairment::delay(Duration::from_millis(1)).with_jitter(Duration::from_micros(400));
        let mut n = Netem::new(imp, 7);
        let mut releases = Vec::new();
        for i in 0..2000u32 {
            let now = u64::from(i) * 1000;
            match n.push(now, i) {
                Fate::Queued { release_ns } => {
                    // Never earlier than delay - jitter.
                    assert!(release_ns >= now + 600_000, "{i}: {release_ns}");
                    releases.push(release_ns - now);
                }
                Fate::Dropped(_) => panic!("no loss configured"),
            }
        }
        let out = drain(&mut n, u64::MAX);
        assert_eq!(out, (0..2000).collect::<Vec<_>>(), "jitter reordered");
        let (lo, hi) = (
            releases.iter().min().unwrap(),
            releases.iter().max().unwrap(),
        );
        assert!(*hi - *lo > 300_000, "delays do vary: {lo}..{hi}");
    }

    #[test]
    fn loss_rate_is_within_bounds_and_reproducible() {
        let run = |seed| {
            let mut n = Netem::new(Impairment::NONE.with_loss(0.01), seed);
            let lost: Vec<u32> = (0..100_000u32)
                .filter(|&i| matches!(n.push(u64::from(i), i), Fate::Dropped(_)))
                .collect();
            assert_eq!(n.stats().dropped as usize, lost.len());
            lost
        };
        let a = run(42);
        // 1% of 100,000: mean 1000, σ ≈ 31.5; ±5σ.
        assert!((840..=1160).contains(&a.len()), "{} lost", a.len());
        assert_eq!(a, run(42), "same seed, same losses");
        assert_ne!(a, run(43), "another seed, other losses");
        // Frames not lost all come out, in order, with no delay set.
        let mut n = Netem::new(Impairment::NONE.with_loss(0.5), 3);
        let kept: Vec<u32> = (0..1000u32)
            .filter(|&i| matches!(n.push(0, i), Fate::Queued { .. }))
            .collect();
        assert_eq!(drain(&mut n, 0), kept);
    }

    #[test]
    fn reordered_frames_overtake_the_queue() {
        let imp = Impairment::delay(Duration::from_millis(2)).with_reorder(0.25);
        let mut n = Netem::new(imp, 9);
        let mut early = Vec::new();
        let mut out = Vec::new();
        for i in 0..400u32 {
            let now = u64::from(i) * 10_000; // 10 µs apart, 4 ms in all
            if let Fate::Queued { release_ns } = n.push(now, i) {
                if release_ns == now {
                    early.push(i);
                }
            }
            out.extend(drain(&mut n, now));
        }
        out.extend(drain(&mut n, u64::MAX));
        assert_eq!(n.stats().reordered as usize, early.len());
        // 25% of 400: 100 ± 5σ (σ ≈ 8.7).
        assert!((56..=144).contains(&early.len()), "{}", early.len());
        // Everything out exactly once; the early ones ahead of their turn.
        let mut sorted = out.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..400).collect::<Vec<_>>());
        assert_ne!(out, sorted, "nothing reordered");
        let pos = |x: u32| out.iter().position(|&y| y == x).unwrap();
        let overtook = early
            .iter()
            .filter(|&&e| e > 0 && pos(e) < pos(e - 1))
            .count();
        assert!(overtook > early.len() / 2, "{overtook} of {}", early.len());
        // The delayed ones stay in order among themselves.
        let delayed: Vec<u32> = out.iter().copied().filter(|x| !early.contains(x)).collect();
        assert!(delayed.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_new_impairment_applies_to_later_frames_only() {
        let mut n = Netem::new(Impairment::delay(Duration::from_millis(5)), 1);
        n.push(0, 1u32);
        n.set_impairment(Impairment::NONE);
        // The FIFO floor keeps frame 2 behind frame 1.
        assert_eq!(n.push(1, 2), Fate::Queued { release_ns: 5 * MS });
        assert_eq!(drain(&mut n, 5 * MS), vec![1, 2]);
        assert_eq!(n.push(6 * MS, 3), Fate::Queued { release_ns: 6 * MS });
    }
}
