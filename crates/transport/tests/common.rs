//! A two-QP loopback harness for transport tests: a flat memory with
//! registered regions, a direct link with a per-packet filter, and virtual
//! time that jumps to the next timer.

#![allow(dead_code)]

use std::collections::HashMap;

use softverbs_transport::*;
use softverbs_wire::{Gid, PacketRepr};

/// One region: `[base, base + data.len())` under `key` with `access`.
pub struct Region {
    pub base: u64,
    pub data: Vec<u8>,
    pub access: Access,
}

/// Regions by key (lkey == rkey, as rxe does).
#[derive(Default)]
pub struct TestMem {
    pub regions: HashMap<u32, Region>,
    /// BIND_MW requests executed, in order (windows are not modelled:
    /// a bind succeeds when its region exists).
    pub binds: Vec<MwBindReq>,
}

impl TestMem {
    pub fn reg(&mut self, key: u32, base: u64, len: usize, access: Access) {
        self.regions.insert(
            key,
            Region {
                base,
                data: vec![0; len],
                access,
            },
        );
    }

    pub fn bytes(&self, key: u32) -> &[u8] {
        &self.regions[&key].data
    }

    pub fn fill(&mut self, key: u32, f: impl Fn(usize) -> u8) {
        for (i, b) in self
            .regions
            .get_mut(&key)
            .unwrap()
            .data
            .iter_mut()
            .enumerate()
        {
            *b = f(i);
        }
    }

    fn range(
        &self,
        key: MemKey,
        addr: u64,
        len: u64,
        write: bool,
    ) -> Result<(u32, usize), MemError> {
        let (k, need) = match key {
            MemKey::Local(k) => (
                k,
                if write {
                    Access::LOCAL_WRITE
                } else {
                    Access::NONE
                },
            ),
            MemKey::Remote(k) => (
                k,
                if write {
                    Access::REMOTE_WRITE
                } else {
                    Access::REMOTE_READ
                },
            ),
        };
        let r = self.regions.get(&k).ok_or(MemError::InvalidKey)?;
        if !r.access.contains(need) {
            return Err(MemError::AccessDenied);
        }
        if addr < r.base || addr - r.base + len > r.data.len() as u64 {
            return Err(MemError::OutOfBounds);
        }
        Ok((k, (addr - r.base) as usize))
    }
}

impl Memory for TestMem {
    fn check(&self, key: MemKey, addr: u64, len: u64, write: bool) -> Result<(), MemError> {
        self.range(key, addr, len, write).map(|_| ())
    }
    fn read(&self, key: MemKey, addr: u64, dst: &mut [u8]) -> Result<(), MemError> {
        let (k, off) = self.range(key, addr, dst.len() as u64, false)?;
        dst.copy_from_slice(&self.regions[&k].data[off..off + dst.len()]);
        Ok(())
    }
    fn write(&mut self, key: MemKey, addr: u64, src: &[u8]) -> Result<(), MemError> {
        let (k, off) = self.range(key, addr, src.len() as u64, true)?;
        self.regions.get_mut(&k).unwrap().data[off..off + src.len()].copy_from_slice(src);
        Ok(())
    }
    fn atomic(&mut self, rkey: u32, addr: u64, op: AtomicOp) -> Result<u64, MemError> {
        if !addr.is_multiple_of(8) {
            return Err(MemError::Misaligned);
        }
        let r = self.regions.get_mut(&rkey).ok_or(MemError::InvalidKey)?;
        if !r.access.contains(Access::REMOTE_ATOMIC) {
            return Err(MemError::AccessDenied);
        }
        if addr < r.base || addr - r.base + 8 > r.data.len() as u64 {
            return Err(MemError::OutOfBounds);
        }
        let off = (addr - r.base) as usize;
        let cell: &mut [u8; 8] = (&mut r.data[off..off + 8]).try_into().unwrap();
        let old = u64::from_ne_bytes(*cell);
        let new = match op {
            AtomicOp::CompareSwap { compare, swap } => {
                if old == compare {
                    swap
                } else {
                    old
                }
            }
            AtomicOp::FetchAdd { add } => old.wrapping_add(add),
        };
        *cell = new.to_ne_bytes();
        Ok(old)
    }
    fn invalidate(&mut self, rkey: u32) -> Result<(), MemError> {
        self.regions
            .remove(&rkey)
            .map(|_| ())
            .ok_or(MemError::InvalidKey)
    }
    fn bind_mw(&mut self, bind: &MwBindReq) -> Result<u32, MemError> {
        if !self.regions.contains_key(&bind.mr_lkey) {
            return Err(MemError::InvalidKey);
        }
        self.binds.push(*bind);
        Ok(bind.new_rkey.unwrap_or_else(|| inc_rkey(bind.mw_rkey)))
    }
}

pub const GID_A: Gid = Gid([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1]);
pub const GID_B: Gid = Gid([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2]);

/// One side: a QP and its memory.
pub struct Side {
    pub qp: Qp,
    pub mem: TestMem,
    pub srq: Option<RecvQueue>,
    pub gid: Gid,
    pub completions: Vec<Completion>,
    pub events: Vec<QpEvent>,
}

/// Two connected QPs and a link between them.
pub struct Pair {
    pub a: Side,
    pub b: Side,
    pub now: Instant,
    /// Packets seen on the wire, in order: (from_a, parsed header, payload len).
    pub wire: Vec<(bool, PacketRepr)>,
}

/// What the filter decides for each packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    Drop,
}

pub fn connect(qp_type: QpType, mtu: Mtu, tweak: impl Fn(&mut ModifyQp)) -> Pair {
    let mk = |qpn: u32, dest: u32, gid: Gid, dgid: Gid, sq_psn: u32, rq_psn: u32| {
        let mut qp = Qp::new(QpConfig::new(qp_type, qpn));
        qp.modify(
            &ModifyQp {
                state: Some(QpState::Init),
                ..Default::default()
            },
            Instant::ZERO,
        );
        let mut rtr = ModifyQp {
            state: Some(QpState::Rtr),
            path_mtu: Some(mtu),
            dest_qpn: Some(dest),
            dgid: Some(dgid),
            rq_psn: Some(rq_psn),
            qkey: Some(0x1111_1111),
            max_dest_rd_atomic: Some(4),
            min_rnr_timer: Some(1),
            access: Some(
                Access::LOCAL_WRITE
                    | Access::REMOTE_WRITE
                    | Access::REMOTE_READ
                    | Access::REMOTE_ATOMIC,
            ),
            ..Default::default()
        };
        tweak(&mut rtr);
        qp.modify(&rtr, Instant::ZERO);
        let mut rts = ModifyQp {
            state: Some(QpState::Rts),
            sq_psn: Some(sq_psn),
            timeout: Some(10),
            retry_cnt: Some(7),
            rnr_retry: Some(7),
            max_rd_atomic: Some(4),
            ..Default::default()
        };
        tweak(&mut rts);
        rts.state = Some(QpState::Rts);
        qp.modify(&rts, Instant::ZERO);
        Side {
            qp,
            mem: TestMem::default(),
            srq: None,
            gid,
            completions: vec![],
            events: vec![],
        }
    };
    // PSNs close to the 24-bit wrap, so every test crosses it.
    Pair {
        a: mk(0x11, 0x22, GID_A, GID_B, 0xff_fff0, 0x00_0100),
        b: mk(0x22, 0x11, GID_B, GID_A, 0x00_0100, 0xff_fff0),
        now: Instant::ZERO,
        wire: vec![],
    }
}

impl Side {
    fn drain(&mut self) {
        while let Some(c) = self.qp.poll_completion() {
            self.completions.push(c);
        }
        while let Some(e) = self.qp.poll_event() {
            self.events.push(e);
        }
    }
}

impl Pair {
    /// Move packets until nothing is in flight and no timer is due before
    /// `horizon` of virtual time. `filter` sees every packet.
    pub fn run(&mut self, filter: impl FnMut(bool, &PacketRepr) -> Fate) {
        self.run_until(Instant(u64::MAX), filter)
    }

    /// As [`Pair::run`], but stop once virtual time passes `deadline`.
    pub fn run_until(
        &mut self,
        deadline: Instant,
        mut filter: impl FnMut(bool, &PacketRepr) -> Fate,
    ) {
        let mut buf = vec![0u8; 4096 + MAX_HEADER_LEN];
        let net_hdr = [0u8; 40];
        for _round in 0..1_000_000 {
            let mut moved = false;
            for from_a in [true, false] {
                loop {
                    let (src, dst) = if from_a {
                        (&mut self.a, &mut self.b)
                    } else {
                        (&mut self.b, &mut self.a)
                    };
                    let t = {
                        let mut ctx = match src.srq.as_mut() {
                            Some(srq) => Ctx::with_srq(&mut src.mem, srq),
                            None => Ctx::new(&mut src.mem),
                        };
                        src.qp.poll_transmit(self.now, &mut ctx, &mut buf)
                    };
                    let Some(t) = t else { break };
                    moved = true;
                    assert_eq!(t.dst, dst.gid);
                    let (repr, payload) =
                        PacketRepr::parse(&buf[..t.len]).expect("engine emits valid packets");
                    self.wire.push((from_a, repr.clone()));
                    if filter(from_a, &repr) == Fate::Drop {
                        continue;
                    }
                    let inc = Incoming {
                        repr: &repr,
                        payload,
                        src: src.gid,
                        network_header: &net_hdr,
                    };
                    let mut ctx = match dst.srq.as_mut() {
                        Some(srq) => Ctx::with_srq(&mut dst.mem, srq),
                        None => Ctx::new(&mut dst.mem),
                    };
                    dst.qp.handle_packet(self.now, &inc, &mut ctx);
                }
            }
            self.a.drain();
            self.b.drain();
            if moved {
                continue;
            }
            // Idle: jump to the next timer.
            let next = [self.a.qp.poll_timeout(), self.b.qp.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= deadline => {
                    self.now = self.now.max(t);
                    self.a.qp.handle_timeout(self.now);
                    self.b.qp.handle_timeout(self.now);
                }
                _ => return,
            }
        }
        panic!("livelock: the link never went idle");
    }
}

pub fn send_wr(wr_id: u64, op: SendOp, sgl: Vec<Sge>) -> SendWr {
    SendWr {
        wr_id,
        op,
        payload: Payload::Sgl(sgl),
        flags: SendFlags {
            signaled: true,
            ..Default::default()
        },
        ud: None,
    }
}
