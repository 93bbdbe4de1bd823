//! The `srd` device (issue 7): SRD QPs created through the driver
//! namespace of the uAPI, on real UDP sockets, between devices of one
//! process on loopback addresses; and, as root, across two network
//! namespaces joined by several veth pairs (`srd_support`): random loss,
//! one path black-holed, paths at different rates, ECN marks, and delay
//! with loss through a user-space netem relay.
//!
//! Each test uses its own addresses in 127.0.5.0/24, so they run in
//! parallel and clash with no other test.

#![allow(clippy::disallowed_methods)] // tests measure and wait with the wall clock

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use softverbs_core::driver::{AhAttr, Driver, Wc};
use softverbs_core::efa::{EfaDeviceAttr, QP_FLAGS_UNSOLICITED_WRITE_RECV};
use softverbs_core::mem::{Backing, MemBlock};
use softverbs_core::{Device, ModifyAttrs, MrRef, Owner, QpCreate, QpRef, Ucontext, VerbsError};
use softverbs_devices::{DeviceConfig, DeviceKind, SoftDevice};
use softverbs_transport::{Access, Mtu, QpState, QpType, RecvWr, SendWr, Sge, WcOpcode, WcStatus};
use softverbs_wire::Gid;

const QKEY: u32 = 0x1111_1111;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 5, last))
}

/// One side: device, context, PD, CQ, one MR over a block.
struct Side {
    dev: Arc<SoftDevice>,
    uctx: Arc<Ucontext>,
    pd: softverbs_core::PdRef,
    cq: softverbs_core::CqRef,
    block: Arc<MemBlock>,
    mr: MrRef,
    gid: Gid,
}

impl Side {
    fn new(name: &str, cfg: DeviceConfig, mem: usize) -> Side {
        let dev = Arc::new(softverbs_devices::open_device(cfg));
        Self::on(name, dev, mem)
    }

    fn on(_name: &str, dev: Arc<SoftDevice>, mem: usize) -> Side {
        let uctx = Device::new(dev.clone() as Arc<dyn Driver>)
            .open(Owner::this_process())
            .unwrap();
        let pd = uctx.alloc_pd().unwrap();
        let cq = uctx.create_cq(4096, None).unwrap();
        let block = Arc::new(MemBlock::new(mem));
        let mr = uctx
            .reg_mr(
                pd.handle,
                Backing::Block(block.clone()),
                Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ,
            )
            .unwrap();
        let gid = dev.gids(1).unwrap()[1];
        Side {
            dev,
            uctx,
            pd,
            cq,
            block,
            mr,
            gid,
        }
    }

    fn srd_qp(&self, flags: u64) -> QpRef {
        let qp = self
            .uctx
            .efa_create_srd_qp(self.pd.handle, &self.create_req(QpType::Ud), flags)
            .unwrap();
        self.ready(&qp);
        qp
    }

    fn create_req(&self, t: QpType) -> QpCreate {
        QpCreate {
            qp_type: t,
            send_cq: self.cq.handle,
            recv_cq: self.cq.handle,
            srq: None,
            max_send_wr: 1024,
            max_recv_wr: 1024,
            max_send_sge: 1,
            max_recv_sge: 1,
            max_inline_data: 0,
            sq_sig_all: false,
        }
    }

    /// RESET → INIT → RTR → RTS with UD's attributes.
    fn ready(&self, qp: &QpRef) {
        let m = |a: ModifyAttrs| self.uctx.modify_qp(qp.handle, &a).unwrap();
        m(ModifyAttrs {
            qp_state: Some(QpState::Init),
            pkey_index: Some(0),
            port_num: Some(1),
            qkey: Some(QKEY),
            ..Default::default()
        });
        m(ModifyAttrs {
            qp_state: Some(QpState::Rtr),
            ..Default::default()
        });
        m(ModifyAttrs {
            qp_state: Some(QpState::Rts),
            sq_psn: Some(0),
            ..Default::default()
        });
    }

    fn ah_to(&self, peer: &Side) -> AhAttr {
        let attr = AhAttr {
            dgid: peer.gid,
            sgid_index: 1,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            sl: 0,
            port: 1,
        };
        self.uctx.create_ah(self.pd.handle, attr).unwrap();
        attr
    }

    fn sge(&self, off: u64, len: u32) -> Sge {
        Sge {
            addr: self.mr.addr + off,
            length: len,
            lkey: self.mr.lkey,
        }
    }

    fn post_send(&self, qp: &QpRef, wr: SendWr) {
        self.dev.post_send(qp.qpn, wr).unwrap();
    }

    fn post_recv(&self, qp: &QpRef, wr_id: u64, off: u64, len: u32) {
        self.dev
            .post_recv(qp.qpn, RecvWr::new(wr_id, self.sge(off, len)))
            .unwrap();
    }

    /// Wait for `n` completions.
    fn wait(&self, n: usize, timeout: Duration) -> Vec<Wc> {
        let end = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n {
            self.dev
                .poll_cq(self.cq.id, n - out.len(), &mut out)
                .unwrap();
            if Instant::now() > end {
                panic!(
                    "{}: {} of {n} completions after {timeout:?}: {out:?}; counters {:?}",
                    self.dev.name(),
                    out.len(),
                    self.dev.srd_counters()
                );
            }
            std::thread::yield_now();
        }
        out
    }

    fn fill(&self, off: usize, len: usize, seed: u8) -> Vec<u8> {
        let data: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        self.block.write(off, &data).unwrap();
        data
    }

    fn read(&self, off: usize, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.block.read(off, &mut v).unwrap();
        v
    }
}

fn srd_cfg(name: &str, last: u8) -> DeviceConfig {
    DeviceConfig::new(name, DeviceKind::Srd, ip(last)).with_mtu(Mtu::Mtu4096)
}

const SEC5: Duration = Duration::from_secs(5);

#[test]
fn send_write_read_between_two_srd_devices() {
    let a = Side::new("efa_a", srd_cfg("efa_a", 1), 1 << 20);
    let b = Side::new("efa_b", srd_cfg("efa_b", 2), 1 << 20);
    let (qa, qb) = (a.srd_qp(0), b.srd_qp(0));
    let ah = a.ah_to(&b);
    let to_b = softverbs_transport::UdDest {
        dgid: ah.dgid,
        remote_qpn: qb.qpn,
        remote_qkey: QKEY,
    };

    // SEND and SEND with immediate (≤ one MTU).
    b.post_recv(&qb, 1, 0, 4096);
    b.post_recv(&qb, 2, 4096, 4096);
    let m1 = a.fill(0, 4000, 1);
    let m2 = a.fill(4096, 100, 2);
    a.post_send(&qa, SendWr::send(10, a.sge(0, 4000)).to(to_b).signaled());
    a.post_send(
        &qa,
        SendWr::send_with_imm(11, a.sge(4096, 100), 0xabcd)
            .to(to_b)
            .signaled(),
    );
    // Unordered: either receive WQE may take either message.
    let mut rx = b.wait(2, SEC5);
    rx.sort_by_key(|w| std::cmp::Reverse(w.byte_len));
    assert!(rx.iter().all(|w| w.status == WcStatus::Success), "{rx:?}");
    assert_eq!(
        (rx[0].byte_len, rx[0].src_qp, rx[0].imm),
        (4000, qa.qpn, None)
    );
    assert_eq!((rx[1].byte_len, rx[1].imm), (100, Some(0xabcd)));
    assert_eq!(rx[0].opcode, WcOpcode::Recv);
    let at = |w: &Wc| (w.wr_id as usize - 1) * 4096;
    assert!(b.read(at(&rx[0]), 4000) == m1);
    assert!(b.read(at(&rx[1]), 100) == m2);
    let tx = a.wait(2, SEC5);
    assert!(tx
        .iter()
        .all(|w| w.status == WcStatus::Success && w.opcode == WcOpcode::Send));

    // RDMA WRITE of 300 KB (75 packets), then WRITE with immediate, which
    // consumes a receive WQE at B.
    let len = 300 * 1024;
    let w = a.fill(8192, len, 3);
    a.post_send(
        &qa,
        SendWr::write(20, a.sge(8192, len as u32), b.mr.addr + 8192, b.mr.rkey)
            .to(to_b)
            .signaled(),
    );
    let tx = a.wait(1, SEC5);
    assert_eq!(
        (tx[0].wr_id, tx[0].status, tx[0].opcode),
        (20, WcStatus::Success, WcOpcode::RdmaWrite)
    );
    assert_eq!(b.read(8192, len), w);
    b.post_recv(&qb, 3, 0, 0);
    let w2 = a.fill(512 * 1024, 10_000, 4);
    a.post_send(
        &qa,
        SendWr::write_with_imm(
            21,
            a.sge(512 * 1024, 10_000),
            b.mr.addr + 512 * 1024,
            b.mr.rkey,
            7,
        )
        .to(to_b)
        .signaled(),
    );
    let rx = b.wait(1, SEC5);
    assert_eq!(
        (rx[0].wr_id, rx[0].opcode, rx[0].imm, rx[0].status),
        (3, WcOpcode::RecvRdmaWithImm, Some(7), WcStatus::Success)
    );
    assert_eq!(b.read(512 * 1024, 10_000), w2);
    a.wait(1, SEC5);

    // RDMA READ of 200 KB from B.
    let r = b.fill(700 * 1024, 200 * 1024, 5);
    a.post_send(
        &qa,
        SendWr::read(
            30,
            a.sge(700 * 1024, 200 * 1024),
            b.mr.addr + 700 * 1024,
            b.mr.rkey,
        )
        .to(to_b)
        .signaled(),
    );
    let tx = a.wait(1, SEC5);
    assert_eq!(
        (tx[0].wr_id, tx[0].status, tx[0].opcode, tx[0].byte_len),
        (30, WcStatus::Success, WcOpcode::RdmaRead, 200 * 1024)
    );
    assert_eq!(a.read(700 * 1024, 200 * 1024), r);

    // A bad rkey comes back as EFA reports it.
    a.post_send(
        &qa,
        SendWr::write(31, a.sge(0, 64), b.mr.addr, b.mr.rkey ^ 0xff00)
            .to(to_b)
            .signaled(),
    );
    let tx = a.wait(1, SEC5);
    assert_eq!(tx[0].status, WcStatus::RemAccessErr);
    // EFA_IO_COMP_STATUS_REMOTE_ERROR_BAD_ADDRESS, as ibv_wc.vendor_err.
    assert_eq!(
        tx[0].vendor_err,
        softverbs_srd::vendor::REMOTE_ERROR_BAD_ADDRESS
    );

    // One delivery context per peer, whatever the QPs: A has one open (a
    // scheduling stall past the idle timeout may have closed and reopened it).
    let ca = a.dev.srd_counters().unwrap();
    assert_eq!(ca.pdcs_opened - ca.pdcs_closed, 1, "{ca:?}");
    // The device's sockets: the UET port and 8 path ports, plus UD's 4791.
    let bound = a.dev.bound_addrs();
    assert_eq!(bound[0][0].port(), 4793);
    assert_eq!(bound[0].len(), 9);
    assert_eq!(bound[0][1].port(), 49152);
    assert_eq!(bound[1][0].port(), 4791);
}

#[test]
fn unsolicited_write_with_imm_needs_no_receive() {
    let a = Side::new("efa_c", srd_cfg("efa_c", 3), 1 << 16);
    let b = Side::new("efa_d", srd_cfg("efa_d", 4), 1 << 16);
    let attr = b.uctx.efa_query_device().unwrap();
    assert!(attr.has(EfaDeviceAttr::CAPS_UNSOLICITED_WRITE_RECV));
    let qa = a.srd_qp(0);
    let qb = b.srd_qp(QP_FLAGS_UNSOLICITED_WRITE_RECV);
    let ah = a.ah_to(&b);
    let data = a.fill(0, 5000, 9);
    a.post_send(
        &qa,
        SendWr::write_with_imm(1, a.sge(0, 5000), b.mr.addr + 100, b.mr.rkey, 0x55)
            .to(softverbs_transport::UdDest {
                dgid: ah.dgid,
                remote_qpn: qb.qpn,
                remote_qkey: QKEY,
            })
            .signaled(),
    );
    let rx = b.wait(1, SEC5);
    assert_eq!(
        (rx[0].wr_id, rx[0].opcode, rx[0].imm, rx[0].src_qp),
        (0, WcOpcode::RecvRdmaWithImm, Some(0x55), qa.qpn)
    );
    // efadv_wc_is_unsolicited.
    assert!(rx[0].unsolicited, "{:?}", rx[0]);
    assert_eq!(b.read(100, 5000), data);
    assert_eq!(a.wait(1, SEC5)[0].status, WcStatus::Success);
}

#[test]
fn one_srd_qp_reaches_two_peers() {
    let a = Side::new("efa_e", srd_cfg("efa_e", 5), 1 << 16);
    let b = Side::new("efa_f", srd_cfg("efa_f", 6), 1 << 16);
    let c = Side::new("efa_g", srd_cfg("efa_g", 7), 1 << 16);
    let qa = a.srd_qp(0);
    let (qb, qc) = (b.srd_qp(0), c.srd_qp(0));
    let (ab, ac) = (a.ah_to(&b), a.ah_to(&c));
    for (peer, q, ah, seed) in [(&b, &qb, ab, 1u8), (&c, &qc, ac, 2)] {
        peer.post_recv(q, u64::from(seed), 0, 2048);
        let d = a.fill(usize::from(seed) * 4096, 2000, seed);
        a.post_send(
            &qa,
            SendWr::send(u64::from(seed), a.sge(u64::from(seed) * 4096, 2000))
                .to(softverbs_transport::UdDest {
                    dgid: ah.dgid,
                    remote_qpn: q.qpn,
                    remote_qkey: QKEY,
                })
                .signaled(),
        );
        let rx = peer.wait(1, SEC5);
        assert_eq!((rx[0].status, rx[0].src_qp), (WcStatus::Success, qa.qpn));
        assert_eq!(peer.read(0, 2000), d);
    }
    assert_eq!(a.wait(2, SEC5).len(), 2);
    // Two peers: two initiator contexts at A, one for its single QP each.
    let c = a.dev.srd_counters().unwrap();
    assert_eq!(c.pdcs_opened - c.pdcs_closed, 2, "{c:?}");
}

/// Moving an SRD QP to ERR flushes its outstanding send WQEs (in posting
/// order: one partly on the wire, others not started) and its receive
/// WQEs with WR_FLUSH_ERR; work requests posted in ERR are flushed at
/// once; requests from a peer are not delivered; RESET brings it back.
#[test]
fn moving_to_err_flushes_outstanding_sends_and_receives() {
    let a = Side::new("efa_fl_a", srd_cfg("efa_fl_a", 40), 1 << 20);
    let b = Side::new("efa_fl_b", srd_cfg("efa_fl_b", 41), 1 << 16);
    let (qa, qb) = (a.srd_qp(0), b.srd_qp(0));
    // Nothing listens at .42: sends there stay outstanding.
    let dead = softverbs_transport::UdDest {
        dgid: Gid::from_ipv4(Ipv4Addr::new(127, 0, 5, 42)),
        remote_qpn: 17,
        remote_qkey: QKEY,
    };
    for id in 1..=3u64 {
        a.post_recv(&qa, 100 + id, id * 4096, 4096);
    }
    // 512 KiB: far more packets than the initial congestion window sends.
    a.post_send(
        &qa,
        SendWr::write(1, a.sge(0, 512 * 1024), 0x1000, 0x99)
            .to(dead)
            .signaled(),
    );
    a.post_send(&qa, SendWr::send(2, a.sge(0, 64)).to(dead)); // unsignaled: flushed too
    a.post_send(
        &qa,
        SendWr::read(3, a.sge(8192, 64), 0x1000, 0x99)
            .to(dead)
            .signaled(),
    );
    assert!(a.wait(0, SEC5).is_empty());

    a.uctx
        .modify_qp(
            qa.handle,
            &ModifyAttrs {
                qp_state: Some(QpState::Err),
                ..Default::default()
            },
        )
        .unwrap();
    let wcs = a.wait(6, SEC5);
    assert!(
        wcs.iter()
            .all(|w| w.status == WcStatus::WrFlushErr && w.qp_num == qa.qpn),
        "{wcs:?}"
    );
    let of = |q: softverbs_transport::WcQueue| {
        wcs.iter()
            .filter(|w| w.queue == q)
            .map(|w| (w.wr_id, w.opcode))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of(softverbs_transport::WcQueue::Send),
        [
            (1, WcOpcode::RdmaWrite),
            (2, WcOpcode::Send),
            (3, WcOpcode::RdmaRead)
        ]
    );
    assert_eq!(
        of(softverbs_transport::WcQueue::Recv),
        [
            (101, WcOpcode::Recv),
            (102, WcOpcode::Recv),
            (103, WcOpcode::Recv)
        ]
    );

    // Posted in ERR: flushed at once.
    a.post_send(&qa, SendWr::send(4, a.sge(0, 8)).to(dead).signaled());
    a.post_recv(&qa, 104, 0, 64);
    let wcs = a.wait(2, SEC5);
    let mut got: Vec<_> = wcs.iter().map(|w| (w.wr_id, w.status)).collect();
    got.sort();
    assert_eq!(
        got,
        [(4, WcStatus::WrFlushErr), (104, WcStatus::WrFlushErr)]
    );

    // A peer's SEND to the QP in ERR is not delivered.
    let to_a = softverbs_transport::UdDest {
        dgid: b.ah_to(&a).dgid,
        remote_qpn: qa.qpn,
        remote_qkey: QKEY,
    };
    b.post_send(&qb, SendWr::send(5, b.sge(0, 16)).to(to_a).signaled());
    let wc = &b.wait(1, SEC5)[0];
    assert_ne!(wc.status, WcStatus::Success, "{wc:?}");
    assert!(a.wait(0, SEC5).is_empty());

    // RESET, back up: it receives again, and nothing stale completes.
    a.uctx
        .modify_qp(
            qa.handle,
            &ModifyAttrs {
                qp_state: Some(QpState::Reset),
                ..Default::default()
            },
        )
        .unwrap();
    a.ready(&qa);
    a.post_recv(&qa, 105, 0, 64);
    b.post_send(&qb, SendWr::send(6, b.sge(0, 16)).to(to_a).signaled());
    let wc = &a.wait(1, SEC5)[0];
    assert_eq!((wc.wr_id, wc.status), (105, WcStatus::Success));
    assert_eq!(b.wait(1, SEC5)[0].status, WcStatus::Success);
}

#[test]
fn rc_and_uc_are_refused_up_front() {
    let a = Side::new("efa_h", srd_cfg("efa_h", 8), 4096);
    for t in [QpType::Rc, QpType::Uc] {
        let e = a.uctx.create_qp(a.pd.handle, &a.create_req(t)).unwrap_err();
        assert!(matches!(e, VerbsError::Unsupported { .. }), "{e:?}");
        let msg = e.to_string();
        let name = if t == QpType::Rc { "RC" } else { "UC" };
        assert!(
            msg.contains(name) && msg.contains("UD, SRD") && msg.contains("efa_h"),
            "{msg}"
        );
    }
    // Atomics are refused at post time with the operation named.
    let qp = a.srd_qp(0);
    let e = a
        .dev
        .post_send(
            qp.qpn,
            SendWr::fetch_add(1, a.sge(0, 8), a.mr.addr, a.mr.rkey, 1),
        )
        .unwrap_err();
    assert!(matches!(e, VerbsError::Unsupported { .. }), "{e:?}");
    // UD works (RoCEv2 UD on the same address).
    let ud = a.uctx.create_qp(a.pd.handle, &a.create_req(QpType::Ud));
    assert!(ud.is_ok(), "{ud:?}");
}

#[test]
fn srd_is_refused_on_an_rxe_device() {
    let cfg = DeviceConfig::new("rxe_s", DeviceKind::Rxe, ip(9)).with_port(47911);
    let a = Side::new("rxe_s", cfg, 4096);
    let e = a
        .uctx
        .efa_create_srd_qp(a.pd.handle, &a.create_req(QpType::Ud), 0)
        .unwrap_err();
    assert!(matches!(e, VerbsError::Unsupported { .. }), "{e:?}");
    assert!(e.to_string().contains("SRD"), "{e}");
    let e = a.uctx.efa_query_device().unwrap_err();
    assert!(matches!(e, VerbsError::Unsupported { .. }), "{e:?}");
}

/// What a storage-like ULP does first: RC if there is RC, else SRD with
/// RDMA READ and WRITE, else refuse, naming what is missing.
fn pick_transport(uctx: &Ucontext) -> Result<&'static str, String> {
    let caps = uctx.query_device().map_err(|e| e.to_string())?;
    if caps.qp_types.rc {
        return Ok("RC");
    }
    if caps.qp_types.srd {
        let efa = uctx.efa_query_device().map_err(|e| e.to_string())?;
        let need = EfaDeviceAttr::CAPS_RDMA_READ | EfaDeviceAttr::CAPS_RDMA_WRITE;
        if efa.has(need) && efa.max_rdma_size >= 1 << 20 {
            return Ok("SRD");
        }
        return Err(format!(
            "{}: SRD without RDMA READ/WRITE (it has {:?})",
            uctx.device().name(),
            efa.cap_names()
        ));
    }
    Err(format!(
        "{}: needs RC or SRD (it offers {})",
        uctx.device().name(),
        caps.qp_types.names().join(", ")
    ))
}

#[test]
fn ulp_capability_check() {
    let a = Side::new("efa_i", srd_cfg("efa_i", 10), 4096);
    assert_eq!(pick_transport(&a.uctx), Ok("SRD"));
    let attr = a.uctx.efa_query_device().unwrap();
    assert_eq!(
        attr.cap_names(),
        [
            "RDMA_READ",
            "RNR_RETRY",
            "RDMA_WRITE",
            "UNSOLICITED_WRITE_RECV"
        ]
    );
    assert_eq!(attr.max_rdma_size, 1 << 30);
    assert_eq!(attr.inline_buf_size, 32);
    let ud = DeviceConfig::new("ud_i", DeviceKind::UdOnly, ip(11)).with_port(47912);
    let u = Side::new("ud_i", ud, 4096);
    let e = pick_transport(&u.uctx).unwrap_err();
    assert!(
        e.contains("needs RC or SRD") && e.contains("offers UD"),
        "{e}"
    );
}

// ---- between network namespaces, over several real paths ------------------

mod srd_support;

use srd_support::Net;

/// Two srd devices in namespaces joined by `paths` pairs (`tag`, `net`
/// unique per test); `None` (with a note) when not root or the host cannot
/// build them.
/// `n` signaled RDMA WRITEs of 64 KiB (bytes from `seed`) from a fresh SRD
/// QP of `a` to a fresh one of `b`: every one completes successfully and
/// `b`'s memory holds the bytes.
fn srd_writes_cross(a: &Side, b: &Side, n: usize, seed: u8) {
    let (qa, qb) = (a.srd_qp(0), b.srd_qp(0));
    let to_b = softverbs_transport::UdDest {
        dgid: a.ah_to(b).dgid,
        remote_qpn: qb.qpn,
        remote_qkey: QKEY,
    };
    let w = a.fill(0, n * 65536, seed);
    for i in 0..n {
        let off = (i * 65536) as u64;
        a.post_send(
            &qa,
            SendWr::write(i as u64, a.sge(off, 65536), b.mr.addr + off, b.mr.rkey)
                .to(to_b)
                .signaled(),
        );
    }
    let tx = a.wait(n, Duration::from_secs(60));
    assert!(tx.iter().all(|w| w.status == WcStatus::Success), "{tx:?}");
    assert!(b.read(0, n * 65536) == w, "WRITE data differs");
}

fn netns_pair(tag: &str, net: u8, paths: usize) -> Option<(Net, Side, Side)> {
    netns_pair_via(tag, net, paths, false)
}

/// [`netns_pair`], the pairs running through the netem relay when
/// `relayed`.
fn netns_pair_via(tag: &str, net: u8, paths: usize, relayed: bool) -> Option<(Net, Side, Side)> {
    if !srd_support::is_root() {
        eprintln!("skipped: needs root (ip netns, nft)");
        return None;
    }
    let built = if relayed {
        Net::new_relayed(tag, net, paths)
    } else {
        Net::new(tag, net, paths)
    };
    let n = match built {
        Ok(n) => n,
        Err(e) => {
            eprintln!("skipped: cannot build the namespaces: {e}");
            return None;
        }
    };
    let mk = |name: &str, h: u8| n.device(name, DeviceKind::Srd, h, Mtu::Mtu4096);
    let (da, db) = match (mk(&format!("efa_{tag}a"), 1), mk(&format!("efa_{tag}b"), 2)) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            eprintln!(
                "skipped: cannot open the devices in the namespaces: {:?} {:?}",
                a.err(),
                b.err()
            );
            return None;
        }
    };
    let a = Side::on("a", da, 4 << 20);
    let b = Side::on("b", db, 4 << 20);
    Some((n, a, b))
}

/// SRD across two namespaces over 4 paths with 2% random loss on each
/// direction: every completion succeeds and every byte arrives.
#[test]
fn srd_under_random_loss_between_namespaces() {
    let Some((net, a, b)) = netns_pair("ls", 77, 4) else {
        return;
    };
    net.set_faults(20, None).expect("nft");
    let (qa, qb) = (a.srd_qp(0), b.srd_qp(0));
    let ah = a.ah_to(&b);
    let to_b = softverbs_transport::UdDest {
        dgid: ah.dgid,
        remote_qpn: qb.qpn,
        remote_qkey: QKEY,
    };
    let t0 = Instant::now();
    // 200 SENDs of 4000 bytes, 32 WRITEs of 64 KiB, 16 READs of 64 KiB.
    let sends = 200usize;
    for i in 0..sends {
        b.post_recv(&qb, i as u64, (i * 4096) as u64, 4096);
    }
    let mut expect_b = Vec::new();
    for i in 0..sends {
        let d = a.fill(i * 4096, 4000, i as u8);
        expect_b.push(d);
        a.post_send(
            &qa,
            SendWr::send(i as u64, a.sge((i * 4096) as u64, 4000))
                .to(to_b)
                .signaled(),
        );
    }
    let writes = 32usize;
    let wbase = 1 << 20;
    let w = a.fill(wbase, writes * 65536, 77);
    for i in 0..writes {
        let off = (wbase + i * 65536) as u64;
        a.post_send(
            &qa,
            SendWr::write(
                1000 + i as u64,
                a.sge(off, 65536),
                b.mr.addr + off,
                b.mr.rkey,
            )
            .to(to_b)
            .signaled(),
        );
    }
    let reads = 16usize;
    let rbase = 3 << 20;
    let r = b.fill(rbase, reads * 65536, 99);
    for i in 0..reads {
        let off = (rbase + i * 65536) as u64;
        a.post_send(
            &qa,
            SendWr::read(
                2000 + i as u64,
                a.sge(off, 65536),
                b.mr.addr + off,
                b.mr.rkey,
            )
            .to(to_b)
            .signaled(),
        );
    }
    let tx = a.wait(sends + writes + reads, Duration::from_secs(60));
    let rx = b.wait(sends, Duration::from_secs(60));
    let el = t0.elapsed();
    assert!(tx.iter().all(|w| w.status == WcStatus::Success), "{tx:?}");
    assert!(rx.iter().all(|w| w.status == WcStatus::Success), "{rx:?}");
    // Unordered: a receive WQE takes whichever message arrives next. Each
    // message starts with its index; every one arrives exactly once, intact.
    let mut seen = vec![false; sends];
    for w in &rx {
        assert_eq!(w.byte_len, 4000);
        let got = b.read(w.wr_id as usize * 4096, 4000);
        let i = usize::from(got[0]);
        assert!(i < sends && !seen[i], "message {i} twice or unknown");
        seen[i] = true;
        assert!(got == expect_b[i], "SEND {i} corrupted");
    }
    assert!(b.read(wbase, writes * 65536) == w, "WRITE data differs");
    assert!(a.read(rbase, reads * 65536) == r, "READ data differs");
    let ca = a.dev.srd_counters().unwrap();
    let cb = b.dev.srd_counters().unwrap();
    eprintln!(
        "2% loss each way, 4 paths: {} WRs in {el:?}; A retransmitted {} ({} fast, {} timeouts), B {}; nft A: {}",
        tx.len(),
        ca.retransmitted_pkts,
        ca.fast_retransmits,
        ca.timeouts,
        cb.retransmitted_pkts,
        net.counters()
    );
    assert!(
        ca.retransmitted_pkts + cb.retransmitted_pkts > 0,
        "2% loss but nothing retransmitted: {ca:?} {cb:?}"
    );
}

/// Through the user-space netem: 4 paths of 1 ms ± 100 µs one way with 1%
/// random loss each way (on the relay in the middle namespace). 64 WRITEs
/// of 64 KiB (over 1000 frames) all complete and arrive intact, and SRD
/// did retransmit.
#[test]
fn srd_writes_cross_a_delayed_lossy_relay_between_namespaces() {
    let Some((net, a, b)) = netns_pair_via("dl", 76, 4, true) else {
        return;
    };
    let imp = softverbs_netem::Impairment::delay(Duration::from_millis(1))
        .with_jitter(Duration::from_micros(100))
        .with_loss(0.01);
    net.set_impairment(imp).expect("relay");
    let t0 = Instant::now();
    let n = 64usize;
    srd_writes_cross(&a, &b, n, 11);
    let el = t0.elapsed();
    let ca = a.dev.srd_counters().unwrap();
    // The relay reports its counts every few ms: wait for the last ones.
    let sum = |f: fn(&softverbs_netem::LinkStats) -> u64| -> u64 {
        net.relay_stats().iter().flatten().map(f).sum()
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while sum(|s| s.netem.released) < (n * 16) as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (relayed, dropped) = (sum(|s| s.netem.released), sum(|s| s.netem.dropped));
    eprintln!(
        "1 ms ± 100 µs, 1% loss, 4 paths: {n} WRITEs in {el:?}; A {ca:?}; relay: {relayed} frames relayed, {dropped} dropped; {:?}",
        net.relay_stats()
    );
    assert!(
        relayed >= (n * 16) as u64,
        "the frames did not cross the relay"
    );
    assert!(
        ca.retransmitted_pkts > 0,
        "1% loss but nothing retransmitted: {ca:?}"
    );
}

/// One of four paths black-holed (both directions) while 64 WRITEs of
/// 64 KiB cross: all complete, intact; the path is avoided after its
/// timeouts, and the context is never reset.
#[test]
fn srd_survives_a_black_holed_path_between_namespaces() {
    let Some((net, a, b)) = netns_pair("bh", 78, 4) else {
        return;
    };
    net.set_faults(0, Some(2)).expect("nft");
    let n = 48usize;
    srd_writes_cross(&a, &b, n, 5);
    let ca = a.dev.srd_counters().unwrap();
    eprintln!(
        "path 2 of 4 black-holed: A {ca:?}; nft A: {}; packets per pair {:?}",
        net.counters(),
        net.tx_packets()
    );
    assert!(ca.paths_avoided > 0, "{ca:?}");
    assert_eq!(ca.pdcs_reset, 0, "{ca:?}");
}

/// Reordering without loss: the four pairs run at different rates (tbf),
/// so sprayed packets arrive out of order. Every WRITE completes intact;
/// the retransmissions (all needless) are reported, not asserted on.
#[test]
fn srd_over_paths_of_different_rates_between_namespaces() {
    let Some((net, a, b)) = netns_pair("ro", 79, 4) else {
        return;
    };
    if let Err(e) = net.set_rates(&[None, Some("2gbit"), Some("1gbit"), Some("500mbit")]) {
        eprintln!("skipped: tbf: {e}");
        return;
    }
    let n = 48usize;
    srd_writes_cross(&a, &b, n, 9);
    let ca = a.dev.srd_counters().unwrap();
    eprintln!(
        "pairs at none/2/1/0.5 Gb/s: {} data packets, {} retransmitted ({} proved spurious), qdisc drops {}, packets per pair {:?}",
        ca.data_pkts,
        ca.retransmitted_pkts,
        ca.spurious_retransmits,
        net.qdisc_drops(),
        net.tx_packets()
    );
    assert_eq!(ca.pdcs_reset, 0, "{ca:?}");
}

/// ECN where the socket shows it: the device sends ECT(0); 10% of A's
/// packets leave marked
/// congestion experienced (nftables `ip ecn set ce`); B's device reads the
/// TOS byte (IP_RECVTOS), its ACKs echo the marks (flag M) and A's window
/// shrinks. Every WRITE still completes intact.
#[test]
fn ecn_marks_reach_the_sender_between_namespaces() {
    let Some((net, a, b)) = netns_pair("ec", 80, 2) else {
        return;
    };
    if let Err(e) = net.set_ce_marking(100) {
        eprintln!("skipped: nft ecn: {e}");
        return;
    }
    let n = 64usize;
    srd_writes_cross(&a, &b, n, 11);
    let (ca, cb) = (a.dev.srd_counters().unwrap(), b.dev.srd_counters().unwrap());
    eprintln!(
        "10% CE: B saw {} marked requests, A got {} echoes",
        cb.ecn_ce_rcvd, ca.ecn_echoes_rcvd
    );
    assert!(cb.ecn_ce_rcvd > 0, "{cb:?}");
    assert!(ca.ecn_echoes_rcvd > 0, "{ca:?}");
    // The srd device sends ECN-capable packets (ECT(0)), as a congested
    // switch needs to mark instead of drop.
    let ect = net.ect0_into_b();
    eprintln!("ECT(0) packets into B: {ect}");
    assert!(ect > 0, "no ECT(0) packet arrived");
}
