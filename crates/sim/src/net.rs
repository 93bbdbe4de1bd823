//! The link model: what happens to one packet between two hosts.
//!
//! Each host has one egress port. A packet waits behind the packets queued
//! before it (queueing), takes `wire bytes × 8 / bandwidth` to serialize,
//! then `delay` to cross the fabric. On the way it may be lost, held back by
//! a random extra delay (reordering), duplicated (each copy with its own
//! extra delay) or corrupted (one to three bits flipped, each copy on its
//! own). Every decision is drawn from one seeded generator, in call order.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;
use softverbs_transport::Instant;

/// Bytes a RoCEv2 packet occupies on an Ethernet wire beyond its UDP
/// payload: preamble and inter-frame gap (20), Ethernet header and FCS (18),
/// IPv4 (20) and UDP (8) headers.
pub const WIRE_OVERHEAD: usize = 66;

/// Offset, in the UDP payload, of the one byte that the ICRC does not cover
/// (BTH byte 4: FECN, BECN and reserved bits, masked to ones). Flipping bits
/// there is undetectable by design, so the corrupter leaves it alone.
pub const ICRC_MASKED_BYTE: usize = 4;

/// Fault rates and timing of the simulated fabric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LinkModel {
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a packet is held back by a random extra delay.
    pub reorder: f64,
    /// Probability that a packet is delivered twice.
    pub dup: f64,
    /// Probability that a delivered copy has bits flipped.
    pub corrupt: f64,
    /// One-way fabric delay, in nanoseconds.
    pub delay_ns: u64,
    /// Largest extra delay of a reordered (or duplicated) copy, in nanoseconds.
    pub reorder_ns: u64,
    /// Egress bandwidth of each host in Gb/s; 0 means infinite.
    pub bandwidth_gbps: f64,
}

impl Default for LinkModel {
    /// A clean 25 Gb/s fabric with 5 µs of delay.
    fn default() -> Self {
        LinkModel {
            loss: 0.0,
            reorder: 0.0,
            dup: 0.0,
            corrupt: 0.0,
            delay_ns: 5_000,
            reorder_ns: 20_000,
            bandwidth_gbps: 25.0,
        }
    }
}

/// One copy of a packet on its way to the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// When it arrives.
    pub at: Instant,
    /// The UDP payload as it arrives.
    pub bytes: Vec<u8>,
    /// Bits were flipped on the way: the receiver's ICRC check must fail.
    pub corrupted: bool,
}

/// What the fabric did, counted per packet (or per copy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NetStats {
    /// Packets handed to the fabric.
    pub sent: u64,
    /// Copies scheduled for delivery (duplicates included).
    pub delivered: u64,
    /// Packets lost.
    pub lost: u64,
    /// Packets delivered twice.
    pub duplicated: u64,
    /// Packets held back by an extra delay.
    pub reordered: u64,
    /// Copies with flipped bits.
    pub corrupted: u64,
    /// UDP payload bytes handed to the fabric.
    pub bytes: u64,
}

/// The simulated fabric: one egress queue per host and the fault dice.
pub struct Network {
    model: LinkModel,
    rng: Xoshiro256PlusPlus,
    /// When each host's egress port is free again.
    egress_free: Vec<Instant>,
    stats: NetStats,
}

impl Network {
    /// A fabric joining `hosts` hosts, its faults drawn from `seed`.
    pub fn new(model: LinkModel, hosts: usize, seed: u64) -> Self {
        Network {
            model,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            egress_free: vec![Instant::ZERO; hosts],
            stats: NetStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// The model in force.
    pub fn model(&self) -> &LinkModel {
        &self.model
    }

    /// Nanoseconds to serialize `len` bytes of UDP payload.
    fn serialization_ns(&self, len: usize) -> u64 {
        if self.model.bandwidth_gbps <= 0.0 {
            return 0;
        }
        let bits = ((len + WIRE_OVERHEAD) * 8) as f64;
        (bits / self.model.bandwidth_gbps).ceil() as u64
    }

    /// Send `bytes` from host `src` at `now`; the copies that will arrive are
    /// appended to `out` (none if lost, two if duplicated).
    pub fn transmit(&mut self, now: Instant, src: usize, bytes: &[u8], out: &mut Vec<Delivery>) {
        self.stats.sent += 1;
        self.stats.bytes += bytes.len() as u64;
        let free = self.egress_free[src].max(now);
        let departed = Instant(free.0 + self.serialization_ns(bytes.len()));
        self.egress_free[src] = departed;
        let m = self.model;
        if m.loss > 0.0 && self.rng.random_bool(m.loss.min(1.0)) {
            self.stats.lost += 1;
            return;
        }
        let copies = if m.dup > 0.0 && self.rng.random_bool(m.dup.min(1.0)) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for copy in 0..copies {
            let mut extra = 0;
            if m.reorder_ns > 0
                && (copy > 0 || (m.reorder > 0.0 && self.rng.random_bool(m.reorder.min(1.0))))
            {
                extra = self.rng.random_range(0..=m.reorder_ns);
                if copy == 0 {
                    self.stats.reordered += 1;
                }
            }
            let mut data = bytes.to_vec();
            let corrupted = m.corrupt > 0.0
                && self.rng.random_bool(m.corrupt.min(1.0))
                && self.flip_bits(&mut data);
            if corrupted {
                self.stats.corrupted += 1;
            }
            self.stats.delivered += 1;
            out.push(Delivery {
                at: Instant(departed.0 + m.delay_ns + extra),
                bytes: data,
                corrupted,
            });
        }
    }

    /// Flip one to three distinct bits outside [`ICRC_MASKED_BYTE`]. Returns
    /// false if the packet is too short to corrupt detectably.
    fn flip_bits(&mut self, data: &mut [u8]) -> bool {
        if data.len() <= ICRC_MASKED_BYTE + 1 {
            return false;
        }
        let n = self.rng.random_range(1..=3);
        let mut flipped: Vec<usize> = Vec::with_capacity(n);
        while flipped.len() < n {
            let bit = self.rng.random_range(0..data.len() * 8);
            if bit / 8 == ICRC_MASKED_BYTE || flipped.contains(&bit) {
                continue;
            }
            data[bit / 8] ^= 1 << (bit % 8);
            flipped.push(bit);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(model: LinkModel, n: usize, seed: u64) -> (Vec<Delivery>, NetStats) {
        let mut net = Network::new(model, 2, seed);
        let mut out = Vec::new();
        for i in 0..n {
            let pkt = vec![i as u8; 100];
            net.transmit(Instant(i as u64 * 1_000_000), 0, &pkt, &mut out);
        }
        (out, net.stats())
    }

    #[test]
    fn clean_link_delivers_everything_in_order_after_delay_and_serialization() {
        let model = LinkModel {
            bandwidth_gbps: 10.0,
            delay_ns: 1_000,
            ..LinkModel::default()
        };
        let (out, stats) = run(model, 50, 1);
        assert_eq!(out.len(), 50);
        assert_eq!(stats.delivered, 50);
        assert_eq!(
            stats.lost + stats.duplicated + stats.corrupted + stats.reordered,
            0
        );
        // (100 + 66) bytes at 10 Gb/s = 132.8 ns, rounded up.
        assert_eq!(out[0].at, Instant(1_000 + 133));
        assert!(out.windows(2).all(|w| w[0].at < w[1].at));
        assert!(out
            .iter()
            .enumerate()
            .all(|(i, d)| d.bytes == vec![i as u8; 100] && !d.corrupted));
    }

    #[test]
    fn back_to_back_packets_queue_behind_each_other() {
        let model = LinkModel {
            bandwidth_gbps: 8.0,
            delay_ns: 0,
            ..LinkModel::default()
        };
        let mut net = Network::new(model, 2, 7);
        let mut out = Vec::new();
        for _ in 0..3 {
            net.transmit(Instant(0), 0, &[0u8; 934], &mut out); // 1000 wire bytes = 1 µs
        }
        let times: Vec<u64> = out.iter().map(|d| d.at.0).collect();
        assert_eq!(times, vec![1_000, 2_000, 3_000]);
        // Another host's port is independent.
        net.transmit(Instant(0), 1, &[0u8; 934], &mut out);
        assert_eq!(out[3].at.0, 1_000);
    }

    #[test]
    fn fault_rates_are_roughly_honoured_and_seeded() {
        let model = LinkModel {
            loss: 0.1,
            reorder: 0.1,
            dup: 0.05,
            corrupt: 0.01,
            ..LinkModel::default()
        };
        let (a, sa) = run(model, 20_000, 42);
        let (b, sb) = run(model, 20_000, 42);
        assert_eq!(a, b, "same seed, same fate");
        assert_eq!(sa, sb);
        let (_, sc) = run(model, 20_000, 43);
        assert_ne!(sa, sc);
        let frac = |x: u64| x as f64 / 20_000.0;
        assert!((frac(sa.lost) - 0.1).abs() < 0.02, "{sa:?}");
        assert!((frac(sa.reordered) - 0.09).abs() < 0.02, "{sa:?}");
        assert!((frac(sa.duplicated) - 0.045).abs() < 0.015, "{sa:?}");
        assert!((frac(sa.corrupted) - 0.0095).abs() < 0.005, "{sa:?}");
        assert_eq!(sa.delivered, sa.sent - sa.lost + sa.duplicated);
    }

    #[test]
    fn corruption_flips_bits_but_never_the_masked_byte() {
        let model = LinkModel {
            corrupt: 1.0,
            ..LinkModel::default()
        };
        let mut net = Network::new(model, 1, 3);
        let mut out = Vec::new();
        let pkt = vec![0u8; 16];
        for _ in 0..2_000 {
            net.transmit(Instant(0), 0, &pkt, &mut out);
        }
        for d in &out {
            assert!(d.corrupted);
            let flips: u32 = d.bytes.iter().map(|b| b.count_ones()).sum();
            assert!((1..=3).contains(&flips));
            assert_eq!(d.bytes[ICRC_MASKED_BYTE], 0);
        }
    }
}
