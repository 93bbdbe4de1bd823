//! A deterministic simulator for SRD, in the style of `softverbs-sim`:
//! many [`SrdEndpoint`]s (one per simulated host, several QPs each) over a
//! simulated fabric of several paths, seeded loss, reordering, duplication
//! and corruption, in virtual time. One `u64` seed decides everything.
//!
//! The fabric: each host has one egress port (serialization at the link
//! bandwidth, queueing behind earlier packets); a packet then takes the path
//! its UDP source port hashes to (`port % paths`), each path with its own
//! one-way delay (`delay_ns + i·path_skew_ns`); a path may black-hole from
//! a given time on. Corruption flips one to three bits; the UET CRC32C
//! trailer must catch it (real UET over UDP relies on the UDP checksum and
//! the Ethernet FCS; our trailer follows the reference provider's CRC).
//!
//! Oracles: every SEND and WRITE with immediate is delivered exactly once
//! with the right bytes (in any order); every send WQE completes exactly
//! once, successfully unless a fault scenario calls for an error; remote
//! memory equals a reference model after WRITEs; READs return the model's
//! bytes; no corrupted packet is accepted; no run stalls.
//!
//! [`compare_rc`] runs RC (go-back-N, `softverbs-transport`) and SRD over
//! the same fabric and reports goodput and latency side by side.

use std::collections::{BTreeMap, BinaryHeap, HashSet};

use core::cmp::Reverse;
use core::time::Duration;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use softverbs_sim::SimMemory;
use softverbs_transport::{
    Access, Ctx, Incoming, Instant, ModifyQp, Mtu, Qp, QpConfig, QpState, QpType, RecvWr, SendWr,
    Sge, UdDest, WcOpcode, WcStatus,
};
use softverbs_wire::{Gid, PacketRepr};

use crate::config::{SrdConfig, SrdQpConfig};
use crate::endpoint::{OnePd, SrdCounters, SrdEndpoint};

const QKEY: u32 = 0x1111_2222;
const TAG_LEN: usize = 8;

/// What one simulation runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimConfig {
    /// The seed of every random choice.
    pub seed: u64,
    /// Simulated hosts (devices), at least 2.
    pub hosts: usize,
    /// SRD QPs per host; each message goes to the same-index QP of a random
    /// other host, so all QPs of two hosts share one context.
    pub qps: usize,
    /// Messages posted per QP.
    pub messages: usize,
    /// Packet loss probability.
    pub loss: f64,
    /// Probability of an extra random delay (reordering).
    pub reorder: f64,
    /// Duplication probability.
    pub dup: f64,
    /// Corruption probability.
    pub corrupt: f64,
    /// One-way delay of path 0, ns.
    pub delay_ns: u64,
    /// Extra one-way delay of each further path, ns.
    pub path_skew_ns: u64,
    /// Largest extra delay of a reordered packet, ns.
    pub reorder_ns: u64,
    /// Egress bandwidth per host, Gb/s (0: infinite).
    pub bandwidth_gbps: f64,
    /// Paths in the fabric.
    pub net_paths: u16,
    /// Paths (UDP source ports) SRD sprays over.
    pub srd_paths: u16,
    /// From this time on, this path drops everything: `(path, at_ns)`.
    pub black_hole: Option<(u16, u64)>,
    /// MTU.
    pub mtu: Mtu,
    /// Largest RDMA message (SENDs are at most one MTU).
    pub max_msg: usize,
    /// Operations: SEND, SEND with imm, WRITE, WRITE with imm, READ.
    pub ops: [bool; 5],
    /// Messages in flight per QP.
    pub window: usize,
    /// Receive WQEs per QP.
    pub recv_depth: usize,
    /// Probability that a consumed receive WQE is reposted only after a
    /// random delay (up to 200 µs), so receivers run dry (RNR).
    pub rnr: f64,
    /// Odd QPs use unsolicited write-with-immediate receive.
    pub unsolicited: bool,
    /// Stop with a livelock breach after this many events.
    pub max_events: u64,
    /// Largest multiplier of SRD's RACK reordering window
    /// (`SrdConfig::reorder_max_mult`; 1: a fixed window).
    pub reorder_max_mult: u32,
    /// ECN: a packet that waited longer than this at its host's egress is
    /// marked congestion-experienced (0: no marking).
    pub ecn_threshold_ns: u64,
    /// Receive batching, ns: datagrams reaching a host within this long of
    /// the first are handed to its endpoint together before it is polled
    /// (as an I/O thread's `recvmmsg` batch), so ACKs are coalesced; 0
    /// polls after every datagram.
    pub rx_batch_ns: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            hosts: 4,
            qps: 4,
            messages: 50,
            loss: 0.0,
            reorder: 0.0,
            dup: 0.0,
            corrupt: 0.0,
            delay_ns: 5_000,
            path_skew_ns: 1_000,
            reorder_ns: 20_000,
            bandwidth_gbps: 25.0,
            net_paths: 8,
            srd_paths: 8,
            black_hole: None,
            mtu: Mtu::Mtu1024,
            max_msg: 6 * 1024,
            ops: [true; 5],
            window: 4,
            recv_depth: 8,
            rnr: 0.0,
            unsolicited: true,
            max_events: 20_000_000,
            rx_batch_ns: 2_000,
            ecn_threshold_ns: 0,
            reorder_max_mult: 8,
        }
    }
}

impl SimConfig {
    /// The acceptance faults: 10% loss, 10% reordering, 5% duplication,
    /// 1% corruption, every operation, some RNR.
    pub fn issue_faults(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            loss: 0.10,
            reorder: 0.10,
            dup: 0.05,
            corrupt: 0.01,
            rnr: 0.05,
            ..SimConfig::default()
        }
    }
}

/// What a clean run measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Send WQEs completed successfully.
    pub completed: u64,
    /// Payload bytes of those.
    pub bytes: u64,
    /// Virtual time from start to the last completion, ns.
    pub duration_ns: u64,
    /// `bytes` over `duration_ns`, Gb/s.
    pub goodput_gbps: f64,
    /// Send completion latency percentiles, ns: p50, p99, p99.9, max.
    pub latency_ns: [u64; 4],
    /// Packets handed to the fabric / lost / corrupted copies.
    pub net: [u64; 3],
    /// Endpoint counters summed over hosts.
    pub counters: SrdCounters,
    /// Contexts per host at the end (max over hosts).
    pub pdcs_per_host: usize,
}

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    /// The seed to replay.
    pub seed: u64,
    /// Virtual time, ns.
    pub at_ns: u64,
    /// What went wrong.
    pub what: String,
}

impl core::fmt::Display for Breach {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "seed {} at {} ns: {}", self.seed, self.at_ns, self.what)
    }
}

// ---------------------------------------------------------------------------
// the fabric
// ---------------------------------------------------------------------------

struct Fabric {
    rng: Xoshiro256PlusPlus,
    egress_free: Vec<Instant>,
    cfg: SimConfig,
    sent: u64,
    lost: u64,
    corrupted: u64,
}

struct Arrival {
    at: Instant,
    to: usize,
    from: usize,
    port: u16,
    bytes: Vec<u8>,
    corrupted: bool,
    ce: bool,
}

impl Fabric {
    fn new(cfg: &SimConfig) -> Self {
        Fabric {
            rng: Xoshiro256PlusPlus::seed_from_u64(cfg.seed ^ 0x5eed_fab1),
            egress_free: vec![Instant::ZERO; cfg.hosts],
            cfg: cfg.clone(),
            sent: 0,
            lost: 0,
            corrupted: 0,
        }
    }

    fn send(
        &mut self,
        now: Instant,
        from: usize,
        to: usize,
        port: u16,
        bytes: &[u8],
        out: &mut Vec<Arrival>,
    ) {
        let c = &self.cfg;
        self.sent += 1;
        let ser = if c.bandwidth_gbps > 0.0 {
            (((bytes.len() + 66) * 8) as f64 / c.bandwidth_gbps).ceil() as u64
        } else {
            0
        };
        let free = self.egress_free[from].max(now);
        let ce = c.ecn_threshold_ns > 0 && free.0 - now.0 > c.ecn_threshold_ns;
        let departed = Instant(free.0 + ser);
        self.egress_free[from] = departed;
        let path = u64::from(port % c.net_paths.max(1));
        if let Some((p, at)) = c.black_hole {
            if u64::from(p) == path && now.0 >= at {
                self.lost += 1;
                return;
            }
        }
        if c.loss > 0.0 && self.rng.random_bool(c.loss) {
            self.lost += 1;
            return;
        }
        let copies = if c.dup > 0.0 && self.rng.random_bool(c.dup) {
            2
        } else {
            1
        };
        for copy in 0..copies {
            let mut extra = 0;
            if c.reorder_ns > 0
                && (copy > 0 || (c.reorder > 0.0 && self.rng.random_bool(c.reorder)))
            {
                extra = self.rng.random_range(0..=c.reorder_ns);
            }
            let mut data = bytes.to_vec();
            let mut corrupted = false;
            if c.corrupt > 0.0 && self.rng.random_bool(c.corrupt) && !data.is_empty() {
                let n = self.rng.random_range(1..=3);
                let mut flipped = Vec::new();
                while flipped.len() < n {
                    let bit = self.rng.random_range(0..data.len() * 8);
                    if !flipped.contains(&bit) {
                        data[bit / 8] ^= 1 << (bit % 8);
                        flipped.push(bit);
                    }
                }
                corrupted = true;
                self.corrupted += 1;
            }
            out.push(Arrival {
                at: Instant(departed.0 + c.delay_ns + path * c.path_skew_ns + extra),
                to,
                from,
                port,
                bytes: data,
                corrupted,
                ce,
            });
        }
    }
}

fn gid(h: usize) -> Gid {
    Gid::from_ipv4(std::net::Ipv4Addr::new(10, 0, (h >> 8) as u8, h as u8 + 1))
}

fn host_of(g: &Gid) -> usize {
    let ip = g.to_ipv6().octets();
    (usize::from(ip[14]) << 8) | (usize::from(ip[15]) - 1)
}

/// Deterministic payload bytes of message `id`.
fn pattern(id: u32, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let mut x = u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for b in v.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    if len >= TAG_LEN {
        v[..4].copy_from_slice(&id.to_be_bytes());
        v[4..8].copy_from_slice(&(len as u32).to_be_bytes());
    }
    v
}

// ---------------------------------------------------------------------------
// SRD world
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Send,
    SendImm,
    Write,
    WriteImm,
    Read,
}

struct Outstanding {
    op: Op,
    len: usize,
    dst: usize,
    slot: usize,
    local_addr: u64,
    model_at_post: Option<Vec<u8>>,
}

struct QpState2 {
    qpn: u32,
    posted: usize,
    outstanding: BTreeMap<u64, Outstanding>,
    free_slots: Vec<Vec<usize>>, // per destination host
    send_addr: u64,
    recv_addr: u64,
}

struct Host {
    ep: SrdEndpoint,
    mem: SimMemory,
    qps: Vec<QpState2>,
    send_lkey: u32,
    recv_lkey: u32,
    target_lkey: u32,
    target_rkey: u32,
    target_addr: u64,
    /// Model of the target region.
    model: Vec<u8>,
}

/// Runs one SRD simulation and checks every invariant.
///
/// # Errors
/// The first breach, with the seed to replay it.
pub fn run(cfg: &SimConfig) -> Result<SimReport, Breach> {
    World::new(cfg).run()
}

struct World {
    cfg: SimConfig,
    rng: Xoshiro256PlusPlus,
    now: Instant,
    hosts: Vec<Host>,
    fabric: Fabric,
    events: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    arrivals: BTreeMap<u64, Arrival>,
    reposts: BTreeMap<u64, (usize, usize, usize)>,
    seq: u64,
    next_id: u64,
    delivered: HashSet<u32>,
    completed_ok: HashSet<u64>,
    completed: HashSet<u64>,
    latencies: Vec<u64>,
    bytes: u64,
    last_completion: Instant,
    slot_size: usize,
}

impl World {
    fn new(cfg: &SimConfig) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
        let mtu = cfg.mtu.bytes();
        let slot_size = cfg.max_msg.max(mtu);
        let slots = cfg.hosts * cfg.qps * cfg.window;
        let mut hosts = Vec::new();
        for h in 0..cfg.hosts {
            let mut scfg = SrdConfig::new(gid(h));
            scfg.mtu = cfg.mtu;
            scfg.paths = cfg.srd_paths;
            scfg.seed = cfg.seed.wrapping_mul(31).wrapping_add(h as u64);
            scfg.max_rdma_size = cfg.max_msg as u32;
            scfg.reorder_max_mult = cfg.reorder_max_mult;
            let mut ep = SrdEndpoint::new(scfg);
            let mut mem = SimMemory::new(0x100 * (h as u32 + 1), 0x10_0000 * (h as u64 + 1));
            let all = Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ;
            let send = mem.register(
                cfg.qps * cfg.hosts * cfg.window * slot_size,
                Access::LOCAL_WRITE,
                64,
            );
            let recv = mem.register(cfg.qps * cfg.recv_depth * mtu, Access::LOCAL_WRITE, 128);
            let target = mem.register(slots * slot_size, all, 192);
            let mut model = vec![0u8; slots * slot_size];
            rng.fill(&mut model[..]);
            mem.poke(target.lkey, target.addr, model.len())
                .expect("fresh region")
                .copy_from_slice(&model);
            let mut qps = Vec::new();
            for q in 0..cfg.qps {
                let qpn = 0x100 + q as u32;
                let mut qc = SrdQpConfig::new(qpn, QKEY);
                qc.max_send_wr = cfg.window;
                qc.max_recv_wr = cfg.recv_depth;
                qc.unsolicited_write_recv = cfg.unsolicited && q % 2 == 1;
                ep.create_qp(qc).expect("fresh QPN");
                let recv_addr = recv.addr + (q * cfg.recv_depth * mtu) as u64;
                for r in 0..cfg.recv_depth {
                    ep.post_recv(
                        qpn,
                        RecvWr::new(
                            (q * cfg.recv_depth + r) as u64,
                            Sge {
                                addr: recv_addr + (r * mtu) as u64,
                                length: mtu as u32,
                                lkey: recv.lkey,
                            },
                        ),
                    )
                    .expect("room");
                }
                qps.push(QpState2 {
                    qpn,
                    posted: 0,
                    outstanding: BTreeMap::new(),
                    free_slots: (0..cfg.hosts)
                        .map(|_| (0..cfg.window).rev().collect())
                        .collect(),
                    send_addr: send.addr + (q * cfg.hosts * cfg.window * slot_size) as u64,
                    recv_addr,
                });
            }
            hosts.push(Host {
                ep,
                mem,
                qps,
                send_lkey: send.lkey,
                recv_lkey: recv.lkey,
                target_lkey: target.lkey,
                target_rkey: target.rkey,
                target_addr: target.addr,
                model,
            });
        }
        World {
            cfg: cfg.clone(),
            rng,
            now: Instant::ZERO,
            hosts,
            fabric: Fabric::new(cfg),
            events: BinaryHeap::new(),
            arrivals: BTreeMap::new(),
            reposts: BTreeMap::new(),
            seq: 0,
            next_id: 1,
            delivered: HashSet::new(),
            completed_ok: HashSet::new(),
            completed: HashSet::new(),
            latencies: Vec::new(),
            bytes: 0,
            last_completion: Instant::ZERO,
            slot_size,
        }
    }

    fn breach(&self, what: String) -> Breach {
        Breach {
            seed: self.cfg.seed,
            at_ns: self.now.0,
            what,
        }
    }

    /// Target slot of (sender host, sender qp, slot) in a destination host's
    /// target region.
    fn slot_offset(&self, src: usize, q: usize, slot: usize) -> usize {
        ((src * self.cfg.qps + q) * self.cfg.window + slot) * self.slot_size
    }

    fn post_more(&mut self, h: usize) -> Result<(), Breach> {
        for q in 0..self.cfg.qps {
            loop {
                let st = &self.hosts[h].qps[q];
                if st.posted >= self.cfg.messages || st.outstanding.len() >= self.cfg.window {
                    break;
                }
                let ops: Vec<Op> = [Op::Send, Op::SendImm, Op::Write, Op::WriteImm, Op::Read]
                    .into_iter()
                    .zip(self.cfg.ops)
                    .filter_map(|(o, on)| on.then_some(o))
                    .collect();
                let op = ops[self.rng.random_range(0..ops.len())];
                let mut dst = self.rng.random_range(0..self.cfg.hosts - 1);
                if dst >= h {
                    dst += 1;
                }
                let Some(slot) = self.hosts[h].qps[q].free_slots[dst].pop() else {
                    break;
                };
                let mtu = self.cfg.mtu.bytes();
                let max = match op {
                    Op::Send | Op::SendImm => mtu,
                    _ => self.cfg.max_msg,
                };
                let len = if self.rng.random_bool(0.1) {
                    max
                } else {
                    self.rng.random_range(TAG_LEN..=max)
                };
                let id = self.next_id;
                self.next_id += 1;
                let local_addr = self.hosts[h].qps[q].send_addr
                    + ((dst * self.cfg.window + slot) * self.slot_size) as u64;
                let data = pattern(id as u32, len);
                let host = &mut self.hosts[h];
                host.mem
                    .poke(host.send_lkey, local_addr, len)
                    .expect("in region")
                    .copy_from_slice(&data);
                let sge = Sge {
                    addr: local_addr,
                    length: len as u32,
                    lkey: host.send_lkey,
                };
                let off = self.slot_offset(h, q, slot);
                let raddr = self.hosts[dst].target_addr + off as u64;
                let rkey = self.hosts[dst].target_rkey;
                let imm = id as u32;
                let wr = match op {
                    Op::Send => SendWr::send(id, sge),
                    Op::SendImm => SendWr::send_with_imm(id, sge, imm),
                    Op::Write => SendWr::write(id, sge, raddr, rkey),
                    Op::WriteImm => SendWr::write_with_imm(id, sge, raddr, rkey, imm),
                    Op::Read => SendWr::read(id, sge, raddr, rkey),
                }
                .signaled()
                .to(UdDest {
                    dgid: gid(dst),
                    remote_qpn: 0x100 + q as u32,
                    remote_qkey: QKEY,
                });
                let model_at_post =
                    (op == Op::Read).then(|| self.hosts[dst].model[off..off + len].to_vec());
                let now = self.now;
                let host = &mut self.hosts[h];
                let qpn = host.qps[q].qpn;
                host.ep.post_send(now, qpn, wr).map_err(|e| Breach {
                    seed: self.cfg.seed,
                    at_ns: now.0,
                    what: format!("post refused: {e}"),
                })?;
                let st = &mut host.qps[q];
                st.posted += 1;
                st.outstanding.insert(
                    id,
                    Outstanding {
                        op,
                        len,
                        dst,
                        slot,
                        local_addr,
                        model_at_post,
                    },
                );
            }
        }
        Ok(())
    }

    fn pump(&mut self, h: usize) -> Result<(), Breach> {
        self.post_more(h)?;
        let mut buf = vec![0u8; self.hosts[h].ep.max_datagram()];
        let mut out = Vec::new();
        loop {
            let now = self.now;
            let host = &mut self.hosts[h];
            let Some(t) = host
                .ep
                .poll_transmit(now, &mut OnePd(&mut host.mem), &mut buf)
            else {
                break;
            };
            let to = host_of(&t.dst);
            if to >= self.cfg.hosts || to == h {
                return Err(self.breach(format!("packet to unknown host {:?}", t.dst)));
            }
            if softverbs_wire::uet::UetPacketRepr::parse(&buf[..t.len]).is_err() {
                return Err(self.breach("an emitted packet does not parse".into()));
            }
            self.fabric
                .send(now, h, to, t.src_port, &buf[..t.len], &mut out);
        }
        for a in out {
            self.seq += 1;
            self.events.push(Reverse((a.at, self.seq, usize::MAX)));
            self.arrivals.insert(self.seq, a);
        }
        self.drain_completions(h)?;
        if let Some(t) = self.hosts[h].ep.poll_timeout() {
            self.seq += 1;
            self.events.push(Reverse((t.max(self.now), self.seq, h)));
        }
        Ok(())
    }

    fn drain_completions(&mut self, h: usize) -> Result<(), Breach> {
        while let Some(c) = self.hosts[h].ep.poll_completion() {
            let wc = &c.wc;
            let q = (wc.qp_num - 0x100) as usize;
            match wc.opcode {
                WcOpcode::Recv | WcOpcode::RecvRdmaWithImm => {
                    if wc.status != WcStatus::Success {
                        return Err(self.breach(format!("receive error {:?}", wc.status)));
                    }
                    let id = if wc.opcode == WcOpcode::Recv {
                        let r = wc.wr_id as usize % self.cfg.recv_depth;
                        let addr =
                            self.hosts[h].qps[q].recv_addr + (r * self.cfg.mtu.bytes()) as u64;
                        let host = &self.hosts[h];
                        let got = host
                            .mem
                            .peek(host.recv_lkey, addr, wc.byte_len as usize)
                            .ok_or_else(|| self.breach("recv outside buffer".into()))?
                            .to_vec();
                        if got.len() < TAG_LEN {
                            return Err(self.breach("short SEND".into()));
                        }
                        let id = u32::from_be_bytes([got[0], got[1], got[2], got[3]]);
                        if got != pattern(id, got.len()) {
                            return Err(self.breach(format!("SEND {id} bytes differ")));
                        }
                        if let Some(imm) = wc.imm {
                            if imm != id {
                                return Err(self.breach(format!("SEND {id} carries imm {imm}")));
                            }
                        }
                        id
                    } else {
                        let id = wc
                            .imm
                            .ok_or_else(|| self.breach("write-imm without imm".into()))?;
                        if c.wc.unsolicited != (self.cfg.unsolicited && q % 2 == 1) {
                            return Err(self.breach("unsolicited flag wrong".into()));
                        }
                        id
                    };
                    if !self.delivered.insert(id) {
                        return Err(self.breach(format!("message {id} delivered twice")));
                    }
                    if wc.opcode == WcOpcode::Recv || !c.wc.unsolicited {
                        // repost the consumed WQE, maybe late (RNR)
                        let r = wc.wr_id as usize % self.cfg.recv_depth;
                        if self.cfg.rnr > 0.0 && self.rng.random_bool(self.cfg.rnr) {
                            let at = Instant(self.now.0 + self.rng.random_range(1_000..200_000));
                            self.seq += 1;
                            self.reposts.insert(self.seq, (h, q, r));
                            self.events.push(Reverse((at, self.seq, usize::MAX - 1)));
                        } else {
                            self.repost(h, q, r);
                        }
                    }
                }
                _ => {
                    if !self.completed.insert(wc.wr_id) {
                        return Err(self.breach(format!("WQE {} completed twice", wc.wr_id)));
                    }
                    let Some(o) = self.hosts[h].qps[q].outstanding.remove(&wc.wr_id) else {
                        return Err(self.breach(format!("completion for unknown WQE {}", wc.wr_id)));
                    };
                    if wc.status != WcStatus::Success {
                        return Err(self.breach(format!(
                            "WQE {} ({:?}) completed with {:?} (vendor {})",
                            wc.wr_id, o.op, wc.status, c.wc.vendor_err
                        )));
                    }
                    let off = self.slot_offset(h, q, o.slot);
                    match o.op {
                        Op::Write | Op::WriteImm => {
                            let data = pattern(wc.wr_id as u32, o.len);
                            self.hosts[o.dst].model[off..off + o.len].copy_from_slice(&data);
                        }
                        Op::Read => {
                            let host = &self.hosts[h];
                            let got = host
                                .mem
                                .peek(host.send_lkey, o.local_addr, o.len)
                                .map(<[u8]>::to_vec);
                            if got != o.model_at_post {
                                return Err(
                                    self.breach(format!("READ {} returned wrong bytes", wc.wr_id))
                                );
                            }
                        }
                        _ => {}
                    }
                    self.completed_ok.insert(wc.wr_id);
                    self.bytes += o.len as u64;
                    self.latencies.push(c.latency.as_nanos() as u64);
                    self.last_completion = self.now;
                    self.hosts[h].qps[q].free_slots[o.dst].push(o.slot);
                }
            }
        }
        Ok(())
    }

    fn repost(&mut self, h: usize, q: usize, r: usize) {
        let mtu = self.cfg.mtu.bytes();
        let host = &mut self.hosts[h];
        let st = &host.qps[q];
        let _ = host.ep.post_recv(
            st.qpn,
            RecvWr::new(
                (q * self.cfg.recv_depth + r) as u64,
                Sge {
                    addr: st.recv_addr + (r * mtu) as u64,
                    length: mtu as u32,
                    lkey: host.recv_lkey,
                },
            ),
        );
    }

    /// Hands one datagram to its host's endpoint (without polling it).
    fn deliver(&mut self, a: Arrival) -> Result<(), Breach> {
        let now = self.now;
        let host = &mut self.hosts[a.to];
        let r = host.ep.handle_datagram_ecn(
            now,
            gid(a.from),
            a.port,
            &a.bytes,
            a.ce,
            &mut OnePd(&mut host.mem),
        );
        if a.corrupted && r.is_ok() {
            // A flipped bit the CRC missed would be a breach; the
            // CRC32C catches every 1-3 bit error.
            return Err(self.breach("a corrupted packet was accepted".into()));
        }
        if !a.corrupted && r == Err(crate::endpoint::DropReason::Malformed) {
            return Err(self.breach("an intact packet was refused".into()));
        }
        Ok(())
    }

    fn run(mut self) -> Result<SimReport, Breach> {
        for h in 0..self.cfg.hosts {
            self.pump(h)?;
        }
        let mut events = 0u64;
        while let Some(Reverse((at, seq, kind))) = self.events.pop() {
            events += 1;
            if events > self.cfg.max_events {
                return Err(self.breach("livelock: event budget exhausted".into()));
            }
            self.now = self.now.max(at);
            if self.now.0 > 60_000_000_000 {
                return Err(self.breach("stall: a minute of virtual time".into()));
            }
            match kind {
                usize::MAX => {
                    let a = self.arrivals.remove(&seq).expect("scheduled");
                    let to = a.to;
                    let until = self.now + Duration::from_nanos(self.cfg.rx_batch_ns);
                    self.deliver(a)?;
                    // The rest of the batch: arrivals at the same host soon
                    // after (other events wait until the batch is handed over).
                    let mut held = Vec::new();
                    while let Some(Reverse((at, s2, k2))) = self.events.peek().copied() {
                        if at > until {
                            break;
                        }
                        self.events.pop();
                        if k2 != usize::MAX || self.arrivals.get(&s2).is_none_or(|x| x.to != to) {
                            held.push(Reverse((at, s2, k2)));
                            continue;
                        }
                        events += 1;
                        self.now = self.now.max(at);
                        let a = self.arrivals.remove(&s2).expect("scheduled");
                        self.deliver(a)?;
                    }
                    self.events.extend(held);
                    self.pump(to)?;
                }
                k if k == usize::MAX - 1 => {
                    let (h, q, r) = self.reposts.remove(&seq).expect("scheduled");
                    self.repost(h, q, r);
                    self.pump(h)?;
                }
                h => {
                    let due = self.hosts[h].ep.poll_timeout();
                    if due.is_some_and(|d| d <= self.now) {
                        self.hosts[h].ep.handle_timeout(self.now);
                    }
                    self.pump(h)?;
                }
            }
            if self.events.is_empty() {
                break;
            }
        }
        // Every WQE completed; remote memory equals the model.
        let posted = (self.next_id - 1) as usize;
        if self.completed.len() != posted {
            return Err(self.breach(format!(
                "{} of {posted} WQEs completed",
                self.completed.len()
            )));
        }
        for (h, host) in self.hosts.iter().enumerate() {
            let got = host
                .mem
                .peek(host.target_lkey, host.target_addr, host.model.len());
            if got != Some(&host.model[..]) {
                return Err(self.breach(format!("host {h}: remote memory differs from the model")));
            }
        }
        let mut lat = self.latencies.clone();
        lat.sort_unstable();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        let mut counters = SrdCounters::default();
        let mut pdcs = 0;
        for host in &self.hosts {
            let c = host.ep.counters();
            add(&mut counters, &c);
            pdcs = pdcs.max(host.ep.pdc_stats().len());
        }
        let d = self.last_completion.0.max(1);
        Ok(SimReport {
            seed: self.cfg.seed,
            completed: self.completed_ok.len() as u64,
            bytes: self.bytes,
            duration_ns: d,
            goodput_gbps: self.bytes as f64 * 8.0 / d as f64,
            latency_ns: [
                pct(0.5),
                pct(0.99),
                pct(0.999),
                lat.last().copied().unwrap_or(0),
            ],
            net: [self.fabric.sent, self.fabric.lost, self.fabric.corrupted],
            counters,
            pdcs_per_host: pdcs,
        })
    }
}

fn add(a: &mut SrdCounters, b: &SrdCounters) {
    a.sent_pkts += b.sent_pkts;
    a.rcvd_pkts += b.rcvd_pkts;
    a.data_pkts += b.data_pkts;
    a.retransmitted_pkts += b.retransmitted_pkts;
    a.timeouts += b.timeouts;
    a.fast_retransmits += b.fast_retransmits;
    a.spurious_retransmits += b.spurious_retransmits;
    a.duplicates += b.duplicates;
    a.acks_sent += b.acks_sent;
    a.acks_rcvd += b.acks_rcvd;
    a.rnr_nacks_sent += b.rnr_nacks_sent;
    a.rnr_nacks_rcvd += b.rnr_nacks_rcvd;
    a.ack_requests += b.ack_requests;
    a.dropped += b.dropped;
    a.pdcs_opened += b.pdcs_opened;
    a.pdcs_reset += b.pdcs_reset;
    a.pdcs_closed += b.pdcs_closed;
    a.ecn_ce_rcvd += b.ecn_ce_rcvd;
    a.ecn_echoes_rcvd += b.ecn_echoes_rcvd;
    a.paths_avoided += b.paths_avoided;
    a.completion_errors += b.completion_errors;
}

// ---------------------------------------------------------------------------
// SRD against RC on the same fabric
// ---------------------------------------------------------------------------

/// One row of the comparison.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CompareRow {
    /// "SRD" or "RC".
    pub transport: &'static str,
    /// Random loss.
    pub loss: f64,
    /// Goodput, Gb/s.
    pub goodput_gbps: f64,
    /// Message latency p50 / p99 / p99.9, µs.
    pub latency_us: [f64; 3],
    /// Packets retransmitted.
    pub retransmitted: u64,
}

/// Streams `messages` RDMA WRITEs of `msg` bytes, `window` in flight, from
/// host 0 to host 1 over the fabric `base` describes (its `loss` replaced
/// by each of `losses`), once with SRD (sprayed over `base.srd_paths`
/// ports) and once with RC (one flow, go-back-N, local ACK timeout
/// exponent `rc_timeout`); returns a row per transport and loss.
pub fn compare_rc(
    base: &SimConfig,
    losses: &[f64],
    msg: usize,
    messages: usize,
    rc_timeout: u8,
) -> Vec<CompareRow> {
    let mut rows = Vec::new();
    for &loss in losses {
        let cfg = SimConfig {
            loss,
            hosts: 2,
            qps: 1,
            messages,
            max_msg: msg,
            ops: [false, false, true, false, false],
            rnr: 0.0,
            ..base.clone()
        };
        rows.push(stream_srd(&cfg, msg));
        rows.push(stream_rc(&cfg, msg, rc_timeout));
    }
    rows
}

fn percentiles(mut lat: Vec<u64>) -> [f64; 3] {
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    [pct(0.5), pct(0.99), pct(0.999)]
}

fn stream_srd(cfg: &SimConfig, msg: usize) -> CompareRow {
    let mut fabric = Fabric::new(cfg);
    let mut eps: Vec<SrdEndpoint> = (0..2)
        .map(|h| {
            let mut c = SrdConfig::new(gid(h));
            c.mtu = cfg.mtu;
            c.paths = cfg.srd_paths;
            c.seed = cfg.seed + h as u64;
            let mut ep = SrdEndpoint::new(c);
            let mut qc = SrdQpConfig::new(1, QKEY);
            qc.max_send_wr = cfg.window;
            ep.create_qp(qc).expect("fresh");
            ep
        })
        .collect();
    let mut mems: Vec<SimMemory> = (0..2)
        .map(|h| SimMemory::new(0x10 * (h + 1), 0x1000_0000))
        .collect();
    let all = Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ;
    let src = mems[0].register(msg, all, 0);
    let dst = mems[1].register(msg, all, 0);
    let mut heap: BinaryHeap<Reverse<(Instant, u64, usize)>> = BinaryHeap::new();
    let mut arrivals: BTreeMap<u64, Arrival> = BTreeMap::new();
    let mut seq = 0u64;
    let mut now = Instant::ZERO;
    let mut posted = 0usize;
    let mut inflight = 0usize;
    let mut lat = Vec::new();
    let mut done = 0usize;
    let mut buf = vec![0u8; eps[0].max_datagram()];
    let mut last = Instant::ZERO;
    let mut steps = 0u64;
    loop {
        steps += 1;
        if steps > 50_000_000 {
            break;
        }
        while posted < cfg.messages && inflight < cfg.window {
            let wr = SendWr::write(
                posted as u64,
                Sge {
                    addr: src.addr,
                    length: msg as u32,
                    lkey: src.lkey,
                },
                dst.addr,
                dst.rkey,
            )
            .signaled()
            .to(UdDest {
                dgid: gid(1),
                remote_qpn: 1,
                remote_qkey: QKEY,
            });
            eps[0].post_send(now, 1, wr).expect("room");
            posted += 1;
            inflight += 1;
        }
        let mut out = Vec::new();
        for h in 0..2 {
            while let Some(t) = eps[h].poll_transmit(now, &mut OnePd(&mut mems[h]), &mut buf) {
                fabric.send(now, h, 1 - h, t.src_port, &buf[..t.len], &mut out);
            }
            while let Some(c) = eps[h].poll_completion() {
                if c.wc.queue == softverbs_transport::WcQueue::Send {
                    inflight -= 1;
                    done += 1;
                    lat.push(c.latency.as_nanos() as u64);
                    last = now;
                }
            }
            if let Some(t) = eps[h].poll_timeout() {
                seq += 1;
                heap.push(Reverse((t.max(now), seq, h)));
            }
        }
        for a in out {
            seq += 1;
            heap.push(Reverse((a.at, seq, usize::MAX)));
            arrivals.insert(seq, a);
        }
        if done >= cfg.messages {
            break;
        }
        let Some(Reverse((at, s, kind))) = heap.pop() else {
            break;
        };
        now = now.max(at);
        if kind == usize::MAX {
            let a = arrivals.remove(&s).expect("scheduled");
            let _ = eps[a.to].handle_datagram(
                now,
                gid(a.from),
                a.port,
                &a.bytes,
                &mut OnePd(&mut mems[a.to]),
            );
        } else if eps[kind].poll_timeout().is_some_and(|d| d <= now) {
            eps[kind].handle_timeout(now);
        }
    }
    let retransmitted = eps[0].counters().retransmitted_pkts + eps[1].counters().retransmitted_pkts;
    CompareRow {
        transport: "SRD",
        loss: cfg.loss,
        goodput_gbps: (done * msg) as f64 * 8.0 / last.0.max(1) as f64,
        latency_us: percentiles(lat),
        retransmitted,
    }
}

fn stream_rc(cfg: &SimConfig, msg: usize, timeout: u8) -> CompareRow {
    let mut fabric = Fabric::new(cfg);
    let mut mems: Vec<SimMemory> = (0..2)
        .map(|h| SimMemory::new(0x10 * (h + 1), 0x1000_0000))
        .collect();
    let all = Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ;
    let src = mems[0].register(msg, all, 0);
    let dst = mems[1].register(msg, all, 0);
    let mut qps: Vec<Qp> = (0..2)
        .map(|h| {
            let mut c = QpConfig::new(QpType::Rc, 1);
            c.max_send_wr = cfg.window.max(1);
            let mut qp = Qp::new(c);
            for m in [
                ModifyQp {
                    state: Some(QpState::Init),
                    access: Some(all),
                    ..ModifyQp::default()
                },
                ModifyQp {
                    state: Some(QpState::Rtr),
                    path_mtu: Some(cfg.mtu),
                    dest_qpn: Some(1),
                    dgid: Some(gid(1 - h)),
                    rq_psn: Some(0),
                    max_dest_rd_atomic: Some(16),
                    ..ModifyQp::default()
                },
                ModifyQp {
                    state: Some(QpState::Rts),
                    sq_psn: Some(0),
                    timeout: Some(timeout),
                    retry_cnt: Some(7),
                    rnr_retry: Some(7),
                    max_rd_atomic: Some(16),
                    ..ModifyQp::default()
                },
            ] {
                qp.modify(&m, Instant::ZERO);
            }
            qp
        })
        .collect();
    let mut heap: BinaryHeap<Reverse<(Instant, u64, usize)>> = BinaryHeap::new();
    let mut arrivals: BTreeMap<u64, Arrival> = BTreeMap::new();
    let mut seq = 0u64;
    let mut now = Instant::ZERO;
    let mut posted = 0usize;
    let mut inflight = 0usize;
    let mut post_time = BTreeMap::new();
    let mut lat = Vec::new();
    let mut done = 0usize;
    let mut buf = vec![0u8; cfg.mtu.bytes() + 128];
    let mut last = Instant::ZERO;
    let mut steps = 0u64;
    let hdr = [0u8; 40];
    loop {
        steps += 1;
        if steps > 50_000_000 {
            break;
        }
        while posted < cfg.messages && inflight < cfg.window {
            let wr = SendWr::write(
                posted as u64,
                Sge {
                    addr: src.addr,
                    length: msg as u32,
                    lkey: src.lkey,
                },
                dst.addr,
                dst.rkey,
            )
            .signaled();
            qps[0].post_send(wr).expect("room");
            post_time.insert(posted as u64, now);
            posted += 1;
            inflight += 1;
        }
        let mut out = Vec::new();
        for h in 0..2 {
            while let Some(t) = qps[h].poll_transmit(now, &mut Ctx::new(&mut mems[h]), &mut buf) {
                fabric.send(now, h, 1 - h, t.src_port, &buf[..t.len], &mut out);
            }
            while let Some(c) = qps[h].poll_completion() {
                if c.queue == softverbs_transport::WcQueue::Send {
                    inflight -= 1;
                    done += 1;
                    if let Some(t0) = post_time.remove(&c.wr_id) {
                        lat.push(now.saturating_since(t0).as_nanos() as u64);
                    }
                    last = now;
                }
            }
            if let Some(t) = qps[h].poll_timeout() {
                seq += 1;
                heap.push(Reverse((t.max(now), seq, h)));
            }
        }
        for a in out {
            seq += 1;
            heap.push(Reverse((a.at, seq, usize::MAX)));
            arrivals.insert(seq, a);
        }
        if done >= cfg.messages {
            break;
        }
        let Some(Reverse((at, s, kind))) = heap.pop() else {
            break;
        };
        now = now.max(at);
        if kind == usize::MAX {
            let a = arrivals.remove(&s).expect("scheduled");
            if let Ok((repr, payload)) = PacketRepr::parse(&a.bytes) {
                let inc = Incoming {
                    repr: &repr,
                    payload,
                    src: gid(a.from),
                    network_header: &hdr,
                };
                qps[a.to].handle_packet(now, &inc, &mut Ctx::new(&mut mems[a.to]));
            }
        } else if qps[kind].poll_timeout().is_some_and(|d| d <= now) {
            qps[kind].handle_timeout(now);
        }
    }
    let retransmitted = qps[0].counters().retransmitted_pkts;
    CompareRow {
        transport: "RC",
        loss: cfg.loss,
        goodput_gbps: (done * msg) as f64 * 8.0 / last.0.max(1) as f64,
        latency_us: percentiles(lat),
        retransmitted,
    }
}

/// Formats rows as a Markdown table.
pub fn table(rows: &[CompareRow]) -> String {
    let mut s = String::from("| transport | loss | goodput Gb/s | p50 µs | p99 µs | p99.9 µs | retransmitted |\n|---|---|---|---|---|---|---|\n");
    for r in rows {
        s += &format!(
            "| {} | {:.1}% | {:.2} | {:.1} | {:.1} | {:.1} | {} |\n",
            r.transport,
            r.loss * 100.0,
            r.goodput_gbps,
            r.latency_us[0],
            r.latency_us[1],
            r.latency_us[2],
            r.retransmitted
        );
    }
    s
}
