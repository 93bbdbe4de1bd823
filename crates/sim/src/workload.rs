//! The workload: which messages each QP pair posts, what bytes they carry,
//! and how the pair's memory is laid out.
//!
//! Every payload is a pure function of `(seed, pair, seq, len)`: its first
//! eight bytes are the pair id and message sequence number (little-endian
//! u32s, cut short for tiny messages), the rest pseudo-random. A receiver can
//! thus both identify a message and check each of its bytes.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use softverbs_transport::{Access, QpType, Sge, WcOpcode};

use crate::config::Ops;
use crate::memory::{RegionInfo, SimMemory};

/// Bytes of the GRH (or its IPv4 stand-in) at the head of a UD receive buffer.
pub(crate) const GRH_LEN: usize = 40;
/// The byte unwritten memory holds, so stray or missing writes show.
pub(crate) const POISON: u8 = 0xa5;

/// What a work request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MsgKind {
    Send,
    SendImm,
    Write,
    WriteImm,
    Read,
    CmpSwap,
    FetchAdd,
}

impl MsgKind {
    /// True for messages that consume a receive WQE at the responder.
    pub(crate) fn consumes_recv(self) -> bool {
        matches!(self, MsgKind::Send | MsgKind::SendImm | MsgKind::WriteImm)
    }

    /// The send completion's opcode.
    pub(crate) fn wc_opcode(self) -> WcOpcode {
        match self {
            MsgKind::Send | MsgKind::SendImm => WcOpcode::Send,
            MsgKind::Write | MsgKind::WriteImm => WcOpcode::RdmaWrite,
            MsgKind::Read => WcOpcode::RdmaRead,
            MsgKind::CmpSwap => WcOpcode::CompSwap,
            MsgKind::FetchAdd => WcOpcode::FetchAdd,
        }
    }

    /// The receive completion's opcode, for consuming messages.
    pub(crate) fn recv_opcode(self) -> WcOpcode {
        if self == MsgKind::WriteImm {
            WcOpcode::RecvRdmaWithImm
        } else {
            WcOpcode::Recv
        }
    }
}

/// One message, fully decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Msg {
    pub seq: u32,
    pub kind: MsgKind,
    pub len: usize,
    /// Offset in the responder's write area (WRITE) or read area (READ).
    pub remote_off: u64,
    pub imm: Option<u32>,
    pub compare: u64,
    pub swap: u64,
    pub add: u64,
    /// Copy the payload at post time (`IBV_SEND_INLINE`).
    pub inline: bool,
    /// Split the local buffer into this many SGEs (1..=3).
    pub sges: usize,
    pub fence: bool,
    pub solicited: bool,
}

/// SplitMix64: a tiny, good, seedable mixing function for payload bytes.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fill(state: u64, out: &mut [u8]) {
    let mut s = state;
    for chunk in out.chunks_mut(8) {
        let v = splitmix64(&mut s).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// The payload of message `seq` of `pair`, `len` bytes long.
pub(crate) fn msg_bytes(seed: u64, pair: usize, seq: u32, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&(pair as u32).to_le_bytes());
    head[4..].copy_from_slice(&seq.to_le_bytes());
    let n = len.min(8);
    out[..n].copy_from_slice(&head[..n]);
    if len > 8 {
        let state =
            seed ^ (pair as u64).rotate_left(40) ^ u64::from(seq).rotate_left(8) ^ 0x5eed_da7a;
        fill(state, &mut out[8..]);
    }
    out
}

/// The message a payload claims to be, if it is long enough to say.
pub(crate) fn identify(bytes: &[u8]) -> Option<(u32, u32)> {
    let pair = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    let seq = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    Some((pair, seq))
}

/// The initial contents of `pair`'s read area (never written afterwards).
pub(crate) fn read_area_bytes(seed: u64, pair: usize, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fill(
        seed ^ 0x00ea_d0a2_ea00 ^ (pair as u64).rotate_left(24),
        &mut out,
    );
    out
}

/// The immediate data of message `seq` of `pair`.
pub(crate) fn imm_of(pair: usize, seq: u32) -> u32 {
    ((pair as u32) << 20) ^ seq ^ 0x8000_0000
}

/// Where a pair's buffers live.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    /// Requester: `window` slots of `slot_len` (send sources, READ and atomic targets).
    pub src: RegionInfo,
    pub slot_len: usize,
    /// Responder: `recv_depth` receive buffers of `rslot_len`.
    pub rq: RegionInfo,
    pub rslot_len: usize,
    /// Responder: the area RDMA WRITEs land in.
    pub write: RegionInfo,
    /// Responder: the area RDMA READs read (never written).
    pub read: RegionInfo,
    /// Responder: one 8-byte aligned counter for atomics.
    pub atomic: RegionInfo,
}

impl Layout {
    /// Register a pair's regions in the requester's and responder's memories.
    pub(crate) fn register(
        rng: &mut Xoshiro256PlusPlus,
        req: &mut SimMemory,
        resp: &mut SimMemory,
        max_msg: usize,
        window: usize,
        recv_depth: usize,
    ) -> Layout {
        let mut off = || rng.random_range(0..4096u64);
        let slot_len = max_msg.max(8).next_multiple_of(8);
        let rslot_len = (max_msg + GRH_LEN).next_multiple_of(8);
        let area = (2 * max_msg).max(64);
        let src = req.register(slot_len * window, Access::LOCAL_WRITE, off() & !7);
        let rq = resp.register(rslot_len * recv_depth, Access::LOCAL_WRITE, off());
        let write = resp.register(area, Access::LOCAL_WRITE | Access::REMOTE_WRITE, off());
        let read = resp.register(area, Access::REMOTE_READ, off());
        let atomic = resp.register(8, Access::REMOTE_ATOMIC, off() & !7);
        Layout {
            src,
            slot_len,
            rq,
            rslot_len,
            write,
            read,
            atomic,
        }
    }

    /// Address of send slot `i`.
    pub(crate) fn src_slot(&self, i: usize) -> u64 {
        self.src.addr + (i * self.slot_len) as u64
    }

    /// Address of receive slot `i`.
    pub(crate) fn rq_slot(&self, i: usize) -> u64 {
        self.rq.addr + (i * self.rslot_len) as u64
    }
}

/// Split `len` bytes at `addr` into `n` SGEs at random points. An empty
/// buffer is an empty list.
pub(crate) fn split_sgl(
    rng: &mut Xoshiro256PlusPlus,
    addr: u64,
    len: usize,
    lkey: u32,
    n: usize,
) -> Vec<Sge> {
    if len == 0 {
        return Vec::new();
    }
    let n = n.clamp(1, len);
    let mut cuts: Vec<usize> = (1..n).map(|_| rng.random_range(1..len)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut sgl = Vec::with_capacity(cuts.len() + 1);
    let mut at = 0;
    for end in cuts.into_iter().chain(std::iter::once(len)) {
        sgl.push(Sge {
            addr: addr + at as u64,
            length: (end - at) as u32,
            lkey,
        });
        at = end;
    }
    sgl
}

/// Draws the messages of one pair.
pub(crate) struct Generator {
    rng: Xoshiro256PlusPlus,
    kinds: Vec<MsgKind>,
    qp_type: QpType,
    mtu: usize,
    max_msg: usize,
    area: usize,
}

impl Generator {
    pub(crate) fn new(
        seed: u64,
        pair: usize,
        qp_type: QpType,
        ops: Ops,
        mtu: usize,
        max_msg: usize,
        area: usize,
    ) -> Self {
        let ops = ops.for_transport(qp_type);
        let mut kinds = Vec::new();
        if ops.send {
            kinds.extend([MsgKind::Send, MsgKind::SendImm]);
        }
        if ops.write {
            kinds.extend([MsgKind::Write, MsgKind::WriteImm]);
        }
        if ops.read {
            kinds.push(MsgKind::Read);
        }
        if ops.atomic {
            kinds.extend([MsgKind::CmpSwap, MsgKind::FetchAdd]);
        }
        let rng = Xoshiro256PlusPlus::seed_from_u64(
            seed ^ 0x9e37_79b9 ^ (pair as u64).wrapping_mul(0x2545_f491_4f6c_dd1d),
        );
        Generator {
            rng,
            kinds,
            qp_type,
            mtu,
            max_msg,
            area,
        }
    }

    /// The random stream of this pair, for choices outside messages.
    pub(crate) fn rng(&mut self) -> &mut Xoshiro256PlusPlus {
        &mut self.rng
    }

    fn size(&mut self) -> usize {
        let r = &mut self.rng;
        match r.random_range(0..10) {
            0..=1 => r.random_range(0..=16usize.min(self.max_msg)),
            2..=5 => r.random_range(0..=self.mtu.min(self.max_msg)),
            _ => r.random_range(0..=self.max_msg),
        }
    }

    /// Draw message `seq`; `counter` is the atomic counter's current model
    /// value (so that about half the compare-and-swaps match).
    pub(crate) fn next(&mut self, pair: usize, seq: u32, counter: u64) -> Msg {
        let kind = self.kinds[self.rng.random_range(0..self.kinds.len())];
        let len = match kind {
            MsgKind::CmpSwap | MsgKind::FetchAdd => 8,
            _ => self.size(),
        };
        let remote_off = match kind {
            MsgKind::Write | MsgKind::WriteImm | MsgKind::Read => {
                self.rng.random_range(0..=(self.area - len) as u64)
            }
            _ => 0,
        };
        let imm = matches!(kind, MsgKind::SendImm | MsgKind::WriteImm).then(|| imm_of(pair, seq));
        let compare = if self.rng.random_bool(0.5) {
            counter
        } else {
            self.rng.random()
        };
        let swap = self.rng.random();
        let add = if self.rng.random_bool(0.3) {
            self.rng.random()
        } else {
            self.rng.random_range(1..100)
        };
        let carries_data = matches!(
            kind,
            MsgKind::Send | MsgKind::SendImm | MsgKind::Write | MsgKind::WriteImm
        );
        let inline = carries_data && len <= 256 && self.rng.random_bool(0.25);
        let sges = self.rng.random_range(1..=3);
        let fence = self.qp_type == QpType::Rc && self.rng.random_bool(0.1);
        let solicited = self.rng.random_bool(0.2);
        Msg {
            seq,
            kind,
            len,
            remote_off,
            imm,
            compare,
            swap,
            add,
            inline,
            sges,
            fence,
            solicited,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_identify_themselves_and_differ() {
        let a = msg_bytes(1, 3, 17, 100);
        assert_eq!(identify(&a), Some((3, 17)));
        assert_eq!(a, msg_bytes(1, 3, 17, 100));
        assert_ne!(a[8..], msg_bytes(1, 3, 18, 100)[8..]);
        assert_ne!(a[8..], msg_bytes(2, 3, 17, 100)[8..]);
        assert_eq!(msg_bytes(1, 3, 17, 5), a[..5]);
        assert_eq!(identify(&a[..7]), None);
    }

    #[test]
    fn sgl_splits_cover_the_buffer() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        for len in [0usize, 1, 2, 7, 1000] {
            for n in 1..=3 {
                let sgl = split_sgl(&mut rng, 4096, len, 9, n);
                assert_eq!(sgl.iter().map(|s| s.length as usize).sum::<usize>(), len);
                assert!(sgl.iter().all(|s| s.length > 0 && s.lkey == 9));
                assert!(sgl
                    .windows(2)
                    .all(|w| w[0].addr + u64::from(w[0].length) == w[1].addr));
            }
        }
    }

    #[test]
    fn generator_respects_transport_and_bounds() {
        let mut g = Generator::new(1, 0, QpType::Ud, Ops::ALL, 1024, 1024, 2048);
        for seq in 0..200 {
            let m = g.next(0, seq, 0);
            assert!(matches!(m.kind, MsgKind::Send | MsgKind::SendImm));
            assert!(m.len <= 1024);
        }
        let mut g = Generator::new(1, 0, QpType::Rc, Ops::ALL, 256, 1024, 2048);
        for seq in 0..500 {
            let m = g.next(0, seq, 0);
            assert!(m.len <= 1024);
            assert!(m.remote_off as usize + m.len <= 2048);
        }
    }
}
