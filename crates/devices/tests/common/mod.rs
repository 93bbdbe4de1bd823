//! Two soft devices in one process on 127.0.0.1 and 127.0.0.2, driven
//! through the `Driver` trait.

#![allow(dead_code, clippy::disallowed_methods)]

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use softverbs_core::driver::{Driver, QpInit, Wc};
use softverbs_core::events::{AsyncEvent, AsyncEvents, CompChannel};
use softverbs_core::mem::{Backing, MemBlock};
use softverbs_devices::{DeviceConfig, DeviceKind, SoftDevice};
use softverbs_transport::{Access, ModifyQp, Mtu, QpState, QpType, Sge};
use softverbs_wire::Gid;

pub const ALL_REMOTE: Access = Access(
    Access::LOCAL_WRITE.0
        | Access::REMOTE_WRITE.0
        | Access::REMOTE_READ.0
        | Access::REMOTE_ATOMIC.0
        | Access::MW_BIND.0,
);

pub const IP_A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
pub const IP_B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// A UDP port free on both loopback addresses (tests run in parallel, so
/// each takes its own).
pub fn free_port() -> u16 {
    loop {
        let a = UdpSocket::bind((IP_A, 0)).unwrap();
        let p = a.local_addr().unwrap().port();
        if UdpSocket::bind((IP_B, p)).is_ok() {
            return p;
        }
    }
}

pub fn device(name: &str, kind: DeviceKind, ip: Ipv4Addr, port: u16, mtu: Mtu) -> Arc<SoftDevice> {
    let cfg = DeviceConfig::new(name, kind, IpAddr::V4(ip))
        .with_port(port)
        .with_mtu(mtu);
    Arc::new(softverbs_devices::open_device(cfg))
}

/// One side: a device, PD, CQ (with channel) and one MR over a block.
pub struct Side {
    pub dev: Arc<SoftDevice>,
    pub events: Arc<AsyncEvents>,
    pub channel: Arc<CompChannel>,
    pub pd: u32,
    pub cq: u32,
    pub block: Arc<MemBlock>,
    pub key: u32,
    pub gid: Gid,
}

impl Side {
    pub fn new(dev: Arc<SoftDevice>, mem_len: usize, cqe: u32) -> Side {
        let events = Arc::new(AsyncEvents::new().unwrap());
        let channel = Arc::new(CompChannel::new().unwrap());
        let pd = dev.alloc_pd().unwrap();
        let (cq, _) = dev
            .create_cq(cqe, Some(channel.clone()), events.clone())
            .unwrap();
        let block = Arc::new(MemBlock::new(mem_len));
        let access = if dev.caps().ops.memory_windows {
            ALL_REMOTE
        } else {
            Access::LOCAL_WRITE
        };
        let key = dev
            .reg_mr(pd, Backing::Block(block.clone()), access)
            .unwrap()
            .lkey;
        let gid = dev.gids(1).unwrap()[1];
        Side {
            dev,
            events,
            channel,
            pd,
            cq,
            block,
            key,
            gid,
        }
    }

    pub fn addr(&self, off: usize) -> u64 {
        self.block.addr() + off as u64
    }

    pub fn sge(&self, off: usize, len: usize) -> Sge {
        Sge {
            addr: self.addr(off),
            length: len as u32,
            lkey: self.key,
        }
    }

    pub fn qp(&self, qp_type: QpType, srq: Option<u32>) -> u32 {
        let init = QpInit {
            qp_type,
            send_cq: self.cq,
            recv_cq: self.cq,
            srq,
            max_send_wr: 64,
            max_recv_wr: 64,
            max_send_sge: 4,
            max_recv_sge: 4,
            max_inline_data: 64,
            sq_sig_all: true,
        };
        self.dev
            .create_qp(self.pd, &init, self.events.clone())
            .unwrap()
            .0
    }

    /// Wait for the next completion (10 s at most).
    pub fn wait(&self) -> Wc {
        self.try_wait(Duration::from_secs(10))
            .expect("no completion within 10 s")
    }

    pub fn try_wait(&self, within: Duration) -> Option<Wc> {
        let end = Instant::now() + within;
        let mut out = Vec::new();
        loop {
            if self.dev.poll_cq(self.cq, 1, &mut out).unwrap() == 1 {
                return out.pop();
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    pub fn wait_event(&self, pred: impl Fn(&AsyncEvent) -> bool) -> AsyncEvent {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Some(e) = self.events.get(Some(Duration::from_millis(50))) {
                if pred(&e) {
                    return e;
                }
            }
        }
        panic!("no matching async event within 10 s");
    }

    pub fn fill(&self, off: usize, len: usize, seed: u8) -> Vec<u8> {
        let data: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        self.block.write(off, &data).unwrap();
        data
    }

    pub fn bytes(&self, off: usize, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.block.read(off, &mut v).unwrap();
        v
    }
}

/// RESET → INIT → RTR → RTS for a connected QP, or to RTS for UD.
pub fn bring_up(
    side: &Side,
    qpn: u32,
    dest_qpn: u32,
    dgid: Gid,
    mtu: Mtu,
    tweak: impl Fn(&mut ModifyQp),
) {
    let dev = &side.dev;
    dev.modify_qp(
        qpn,
        &ModifyQp {
            state: Some(QpState::Init),
            access: Some(Access(
                Access::REMOTE_WRITE.0 | Access::REMOTE_READ.0 | Access::REMOTE_ATOMIC.0,
            )),
            qkey: Some(0x1111_1111),
            ..Default::default()
        },
    )
    .unwrap();
    let mut rtr = ModifyQp {
        state: Some(QpState::Rtr),
        path_mtu: Some(mtu),
        dest_qpn: Some(dest_qpn),
        dgid: Some(dgid),
        rq_psn: Some(0x10),
        max_dest_rd_atomic: Some(16),
        min_rnr_timer: Some(1),
        ..Default::default()
    };
    tweak(&mut rtr);
    rtr.state = Some(QpState::Rtr);
    dev.modify_qp(qpn, &rtr).unwrap();
    let mut rts = ModifyQp {
        state: Some(QpState::Rts),
        sq_psn: Some(0x10),
        timeout: Some(14),
        retry_cnt: Some(7),
        rnr_retry: Some(7),
        max_rd_atomic: Some(16),
        ..Default::default()
    };
    tweak(&mut rts);
    rts.state = Some(QpState::Rts);
    dev.modify_qp(qpn, &rts).unwrap();
}

/// Two rxe devices and a connected pair of QPs of `qp_type`.
pub struct Pair {
    pub a: Side,
    pub b: Side,
    pub qa: u32,
    pub qb: u32,
}

pub fn pair(qp_type: QpType, mtu: Mtu, mem: usize, tweak: impl Fn(&mut ModifyQp) + Copy) -> Pair {
    let port = free_port();
    let a = Side::new(device("rxe_a", DeviceKind::Rxe, IP_A, port, mtu), mem, 256);
    let b = Side::new(device("rxe_b", DeviceKind::Rxe, IP_B, port, mtu), mem, 256);
    let qa = a.qp(qp_type, None);
    let qb = b.qp(qp_type, None);
    bring_up(&a, qa, qb, b.gid, mtu, tweak);
    bring_up(&b, qb, qa, a.gid, mtu, tweak);
    Pair { a, b, qa, qb }
}
