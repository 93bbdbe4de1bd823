//! Every operation of every QP type between the two default loopback
//! devices (rxe0 on 127.0.0.1, rxe1 on 127.0.0.2), through the public API,
//! with the data checked byte for byte at sizes 0, 1, MTU-1, MTU, MTU+1,
//! several MTUs and 1 MiB wherever the operation allows them.

#![allow(clippy::disallowed_methods)] // tests wait on the wall clock

mod common;

use common::*;
use softverbs::*;

const MTU: usize = 1024;

fn send_recv(a: &Side, b: &Side, imm: bool, sizes: &[usize]) {
    for (i, &len) in sizes.iter().enumerate() {
        let data = a.fill(0, len, i as u8);
        b.fill(MIB, len.min(64), 0xee); // stale bytes that must be overwritten
        b.qp.post_recv(RecvWr::new(100 + i as u64, b.mr.sge(MIB, MIB as u32)))
            .unwrap();
        let wr = if imm {
            SendWr::send_with_imm(i as u64, a.mr.sge(0, len as u32), 0xabc0 + i as u32)
        } else {
            SendWr::send(i as u64, a.mr.sge(0, len as u32))
        };
        a.qp.post_send(wr.signaled()).unwrap();
        let s = a.wait();
        assert_eq!(
            (s.wr_id, s.status, s.opcode),
            (i as u64, WcStatus::Success, WcOpcode::Send),
            "{len}"
        );
        let r = b.wait();
        assert_eq!(
            (r.wr_id, r.status, r.opcode, r.byte_len),
            (
                100 + i as u64,
                WcStatus::Success,
                WcOpcode::Recv,
                len as u32
            ),
            "SEND of {len}"
        );
        assert_eq!(r.imm, imm.then_some(0xabc0 + i as u32), "{len}");
        assert_eq!(r.qp_num, b.qp.qpn());
        assert!(
            b.bytes(MIB, len) == data,
            "SEND of {len} bytes arrived intact"
        );
    }
}

fn write(a: &Side, b: &Side, imm: bool, sizes: &[usize]) {
    for (i, &len) in sizes.iter().enumerate() {
        let data = a.fill(0, len, 7 + i as u8);
        // Land at an odd offset, to check the address arithmetic too.
        let at = 13;
        if imm {
            b.qp.post_recv(RecvWr::new(200 + i as u64, b.mr.sge(0, 0)))
                .unwrap();
        }
        let (addr, rkey) = (b.mr.addr() + at as u64, b.mr.rkey());
        let wr = if imm {
            SendWr::write_with_imm(i as u64, a.mr.sge(0, len as u32), addr, rkey, i as u32)
        } else {
            SendWr::write(i as u64, a.mr.sge(0, len as u32), addr, rkey)
        };
        a.qp.post_send(wr.signaled()).unwrap();
        let s = a.wait();
        assert_eq!(
            (s.status, s.opcode),
            (WcStatus::Success, WcOpcode::RdmaWrite),
            "{len}"
        );
        if imm {
            let r = b.wait();
            assert_eq!(
                (r.wr_id, r.status, r.opcode, r.imm, r.byte_len),
                (
                    200 + i as u64,
                    WcStatus::Success,
                    WcOpcode::RecvRdmaWithImm,
                    Some(i as u32),
                    len as u32
                ),
                "WRITE with immediate of {len}"
            );
        }
        if a.qp.qp_type() == QpType::Uc && !imm {
            // A UC write completes when sent: wait for it to land.
            eventually(&format!("UC WRITE of {len} bytes"), || {
                b.bytes(at, len) == data
            });
        }
        assert!(
            b.bytes(at, len) == data,
            "WRITE of {len} bytes landed intact"
        );
    }
}

#[test]
fn rc_send_and_send_with_imm_all_sizes() {
    let (a, b) = pair(QpType::Rc, 2 * MIB);
    send_recv(&a, &b, false, &sizes(MTU));
    send_recv(&a, &b, true, &sizes(MTU));
}

#[test]
fn rc_write_and_write_with_imm_all_sizes() {
    let (a, b) = pair(QpType::Rc, 2 * MIB);
    write(&a, &b, false, &sizes(MTU));
    write(&a, &b, true, &sizes(MTU));
}

#[test]
fn rc_read_all_sizes() {
    let (a, b) = pair(QpType::Rc, 2 * MIB);
    for (i, len) in sizes(MTU).into_iter().enumerate() {
        let data = b.fill(5, len, 40 + i as u8);
        a.fill(MIB, len.min(64), 0); // stale
        a.qp.post_send(
            SendWr::read(
                i as u64,
                a.mr.sge(MIB, len as u32),
                b.mr.addr() + 5,
                b.mr.rkey(),
            )
            .signaled(),
        )
        .unwrap();
        let s = a.wait();
        assert_eq!(
            (s.wr_id, s.status, s.opcode),
            (i as u64, WcStatus::Success, WcOpcode::RdmaRead)
        );
        assert!(a.bytes(MIB, len) == data, "READ of {len} bytes intact");
    }
}

#[test]
fn rc_atomics_cas_and_faa() {
    let (a, b) = pair(QpType::Rc, 4096);
    let cell = |s: &Side, off: usize| u64::from_ne_bytes(s.bytes(off, 8).try_into().unwrap());
    b.mr.write(64, &u64::MAX.to_ne_bytes()).unwrap();
    let (addr, rkey) = (b.mr.addr() + 64, b.mr.rkey());
    // FETCH_AND_ADD wraps around.
    a.qp.post_send(SendWr::fetch_add(1, a.mr.sge(0, 8), addr, rkey, 2).signaled())
        .unwrap();
    let wc = a.wait();
    assert_eq!(
        (wc.status, wc.opcode, wc.byte_len),
        (WcStatus::Success, WcOpcode::FetchAdd, 8)
    );
    assert_eq!((cell(&a, 0), cell(&b, 64)), (u64::MAX, 1));
    // COMPARE_AND_SWAP: a miss leaves the value, a hit swaps it.
    a.qp.post_send(SendWr::compare_swap(2, a.mr.sge(8, 8), addr, rkey, 5, 9).signaled())
        .unwrap();
    assert_eq!(a.wait().opcode, WcOpcode::CompSwap);
    assert_eq!((cell(&a, 8), cell(&b, 64)), (1, 1));
    a.qp.post_send(
        SendWr::compare_swap(3, a.mr.sge(8, 8), addr, rkey, 1, 0xfeed_f00d_dead_beef).signaled(),
    )
    .unwrap();
    assert_eq!(a.wait().status, WcStatus::Success);
    assert_eq!((cell(&a, 8), cell(&b, 64)), (1, 0xfeed_f00d_dead_beef));
    // Many outstanding at once, fenced after a READ: each sees the last.
    for i in 0..8u64 {
        a.qp.post_send(
            SendWr::fetch_add(10 + i, a.mr.sge(16 + 8 * i as usize, 8), addr, rkey, 1).signaled(),
        )
        .unwrap();
    }
    let mut olds: Vec<u64> = (0..8)
        .map(|_| a.wait())
        .map(|w| {
            assert_eq!(w.status, WcStatus::Success);
            w.wr_id
        })
        .map(|id| cell(&a, 16 + 8 * (id - 10) as usize))
        .collect();
    olds.sort_unstable();
    let base = 0xfeed_f00d_dead_beef_u64;
    assert_eq!(olds, (0..8).map(|i| base + i).collect::<Vec<_>>());
    assert_eq!(cell(&b, 64), base + 8);
}

#[test]
fn uc_send_and_write_all_sizes() {
    let (a, b) = pair(QpType::Uc, 2 * MIB);
    // UC has no retransmission: a burst that overflows a socket buffer is
    // lost for good, so the largest message here is 256 KiB.
    let sizes: Vec<usize> = sizes(MTU).into_iter().map(|s| s.min(MIB / 4)).collect();
    send_recv(&a, &b, false, &sizes);
    send_recv(&a, &b, true, &sizes);
    write(&a, &b, false, &sizes);
    write(&a, &b, true, &sizes);
}

#[test]
fn ud_send_and_send_with_imm_with_grh() {
    let (a, b) = pair(QpType::Ud, 8192);
    let gid_b = b.ctx.query_gid(1, 1).unwrap();
    let ah =
        a.pd.create_ah(AhAttr {
            dgid: gid_b,
            sgid_index: 1,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            sl: 0,
            port: 1,
        })
        .unwrap();
    let qkey = ConnectOptions::default().qkey;
    for imm in [false, true] {
        for (i, len) in [0, 1, MTU - 1, MTU].into_iter().enumerate() {
            let data = a.fill(0, len, 90 + i as u8);
            b.qp.post_recv(RecvWr::new(i as u64, b.mr.sge(4096, (40 + MTU) as u32)))
                .unwrap();
            let mut wr = SendWr::send(i as u64, a.mr.sge(0, len as u32))
                .signaled()
                .to(ah.dest(b.qp.qpn(), qkey));
            if imm {
                wr.op = SendOp::SendWithImm { imm: 77 + i as u32 };
            }
            a.qp.post_send(wr).unwrap();
            assert_eq!(a.wait().status, WcStatus::Success);
            let r = b.wait();
            assert_eq!(
                (r.status, r.opcode, r.byte_len, r.src_qp, r.grh, r.imm),
                (
                    WcStatus::Success,
                    WcOpcode::Recv,
                    (40 + len) as u32,
                    a.qp.qpn(),
                    true,
                    imm.then_some(77 + i as u32)
                ),
                "UD SEND of {len}"
            );
            let hdr = b.bytes(4096, 40);
            assert_eq!(
                hdr[20] >> 4,
                4,
                "an IPv4 header in the last 20 bytes of the GRH"
            );
            assert_eq!(&hdr[32..40], &[127, 0, 0, 1, 127, 0, 0, 2]);
            assert!(b.bytes(4096 + 40, len) == data, "UD payload of {len}");
        }
    }
    // Larger than the path MTU: refused at the sender.
    a.qp.post_send(
        SendWr::send(9, a.mr.sge(0, MTU as u32 + 1))
            .signaled()
            .to(ah.dest(b.qp.qpn(), qkey)),
    )
    .map_or_else(
        |e| {
            assert!(
                e.to_string().contains("MTU") || e.to_string().contains("mtu"),
                "{e}"
            )
        },
        |()| assert_eq!(a.wait().status, WcStatus::LocLenErr),
    );
}

#[test]
fn srq_serves_two_qps() {
    let a = Side::new("rxe0", QpType::Rc, 8192);
    let b = Side::new("rxe1", QpType::Rc, 8192);
    let srq = b.pd.create_srq(16, 1).unwrap();
    let qb2 =
        b.pd.create_qp(&QpInitAttr::rc(&b.cq, &b.cq).with_srq(&srq))
            .unwrap();
    let qa2 = a.pd.create_qp(&QpInitAttr::rc(&a.cq, &a.cq)).unwrap();
    let o = ConnectOptions::default();
    qa2.connect(&qb2.endpoint().unwrap(), &o).unwrap();
    qb2.connect(&qa2.endpoint().unwrap(), &o).unwrap();
    for i in 0..4u64 {
        srq.post_recv(RecvWr::new(i, b.mr.sge(1024 * i as usize, 1024)))
            .unwrap();
    }
    for i in 0..4u64 {
        let data = a.fill(0, 100 + i as usize, i as u8);
        qa2.post_send(SendWr::send(i, a.mr.sge(0, 100 + i as u32)).signaled())
            .unwrap();
        assert_eq!(a.wait().status, WcStatus::Success);
        let r = b.wait();
        assert_eq!(
            (r.status, r.qp_num, r.byte_len),
            (WcStatus::Success, qb2.qpn(), 100 + i as u32)
        );
        assert_eq!(b.bytes(1024 * r.wr_id as usize, data.len()), data);
    }
}
