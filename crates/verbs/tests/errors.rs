//! The error paths of the verbs, through the public API: what the
//! requester's completion says, what happens to the responder's QP, which
//! async events fire.

#![allow(clippy::disallowed_methods)] // tests wait on the wall clock

mod common;

use std::time::{Duration, Instant};

use common::*;
use softverbs::*;

fn to_err(qp: &Qp) {
    qp.modify(&ModifyAttrs {
        qp_state: Some(QpState::Err),
        ..Default::default()
    })
    .unwrap();
}

/// A remote access violation fails the requester's WQE with
/// REM_ACCESS_ERR, and moves both QPs to ERR; the responder's context gets
/// a QP fatal event; later work on either QP is flushed.
fn remote_access_violation(
    rkey_of: impl Fn(&Side) -> (u64, u32),
    wr: impl Fn(&Side, u64, u32) -> SendWr,
) {
    let (a, b) = pair(QpType::Rc, 8192);
    let (addr, rkey) = rkey_of(&b);
    a.qp.post_send(wr(&a, addr, rkey)).unwrap();
    a.qp.post_send(SendWr::send(2, a.mr.sge(0, 8)).signaled())
        .unwrap();
    let wc = a.wait();
    assert_eq!((wc.wr_id, wc.status), (1, WcStatus::RemAccessErr));
    // The WQE behind it is flushed, and the requester is in ERR.
    assert_eq!(a.wait().status, WcStatus::WrFlushErr);
    assert_eq!(a.qp.state().unwrap(), QpState::Err);
    // The responder QP went to ERR on its own and said so.
    let qpn = b.qp.qpn();
    b.event("QP fatal", |e| *e == AsyncEvent::QpFatal { qpn });
    assert_eq!(b.qp.state().unwrap(), QpState::Err);
    b.qp.post_recv(RecvWr::new(5, b.mr.sge(0, 8))).unwrap();
    assert_eq!(b.wait().status, WcStatus::WrFlushErr);
}

#[test]
fn bad_rkey_is_rem_access_err_and_the_responder_fails() {
    remote_access_violation(
        |b| (b.mr.addr(), b.mr.rkey() ^ 0x100),
        |a, addr, rkey| SendWr::write(1, a.mr.sge(0, 64), addr, rkey).signaled(),
    );
}

#[test]
fn out_of_bounds_read_is_rem_access_err() {
    remote_access_violation(
        |b| (b.mr.addr() + 8192 - 16, b.mr.rkey()),
        |a, addr, rkey| SendWr::read(1, a.mr.sge(0, 64), addr, rkey).signaled(),
    );
}

#[test]
fn missing_remote_right_is_rem_access_err() {
    // A region without REMOTE_ATOMIC: an atomic on it is refused.
    let (a, b) = pair(QpType::Rc, 8192);
    let ro =
        b.pd.reg_mr(4096, Access::LOCAL_WRITE | Access::REMOTE_READ)
            .unwrap();
    a.qp.post_send(SendWr::fetch_add(1, a.mr.sge(0, 8), ro.addr(), ro.rkey(), 1).signaled())
        .unwrap();
    assert_eq!(a.wait().status, WcStatus::RemAccessErr);
    let qpn = b.qp.qpn();
    b.event("QP fatal", |e| *e == AsyncEvent::QpFatal { qpn });
    assert_eq!(ro.bytes_or_zero(), 0);
}

trait Peek {
    fn bytes_or_zero(&self) -> u64;
}
impl Peek for Mr {
    fn bytes_or_zero(&self) -> u64 {
        let mut b = [0u8; 8];
        self.read(0, &mut b).unwrap();
        u64::from_ne_bytes(b)
    }
}

#[test]
fn receive_too_small_is_a_length_error_on_both_sides() {
    let (a, b) = pair(QpType::Rc, 8192);
    b.qp.post_recv(RecvWr::new(1, b.mr.sge(0, 10))).unwrap();
    a.qp.post_send(SendWr::send(2, a.mr.sge(0, 100)).signaled())
        .unwrap();
    let r = b.wait();
    assert_eq!((r.wr_id, r.status), (1, WcStatus::LocLenErr));
    let s = a.wait();
    assert_eq!((s.wr_id, s.status), (2, WcStatus::RemInvReqErr));
    assert_eq!(b.qp.state().unwrap(), QpState::Err);
}

#[test]
fn rnr_with_finite_retry_fails_the_send() {
    // B asks for the shortest RNR wait (code 1: 0.01 ms); A retries once.
    let oa = ConnectOptions {
        rnr_retry: 1,
        ..Default::default()
    };
    let ob = ConnectOptions {
        min_rnr_timer: 1,
        ..Default::default()
    };
    let (a, b) = pair_with(QpType::Rc, 4096, &oa, &ob);
    a.qp.post_send(SendWr::send(1, a.mr.sge(0, 16)).signaled())
        .unwrap();
    assert_eq!(a.wait().status, WcStatus::RnrRetryExcErr);
    let c = a.qp.query().unwrap().counters;
    assert!(c.rcvd_rnr_err >= 2, "{c:?}");
    assert_eq!(b.qp.query().unwrap().counters.send_rnr_err, c.rcvd_rnr_err);
}

#[test]
fn rnr_with_infinite_retry_waits_for_the_receive() {
    let oa = ConnectOptions {
        rnr_retry: 7,
        ..Default::default()
    };
    let ob = ConnectOptions {
        min_rnr_timer: 1,
        ..Default::default()
    };
    let (a, b) = pair_with(QpType::Rc, 4096, &oa, &ob);
    let data = a.fill(0, 16, 3);
    a.qp.post_send(SendWr::send(1, a.mr.sge(0, 16)).signaled())
        .unwrap();
    // Let it be refused a few times, then post the receive.
    eventually("RNR NAKs", || {
        b.qp.query().unwrap().counters.send_rnr_err >= 3
    });
    assert!(
        a.cq.poll_one().unwrap().is_none(),
        "no completion while RNR"
    );
    b.qp.post_recv(RecvWr::new(7, b.mr.sge(0, 64))).unwrap();
    assert_eq!(a.wait().status, WcStatus::Success);
    let r = b.wait();
    assert_eq!((r.wr_id, r.status, r.byte_len), (7, WcStatus::Success, 16));
    assert_eq!(b.bytes(0, 16), data);
}

#[test]
fn retry_exceeded_when_the_peer_is_gone() {
    // Shortest timeout the transport allows, two retries.
    let oa = ConnectOptions {
        timeout: 1,
        retry_cnt: 2,
        ..Default::default()
    };
    let (a, b) = pair_with(QpType::Rc, 4096, &oa, &ConnectOptions::default());
    let (addr, rkey) = (b.mr.addr(), b.mr.rkey());
    drop(b); // the peer's QP, memory and context are destroyed
    let t = Instant::now();
    a.qp.post_send(SendWr::write(1, a.mr.sge(0, 64), addr, rkey).signaled())
        .unwrap();
    assert_eq!(a.wait().status, WcStatus::RetryExcErr);
    let c = a.qp.query().unwrap().counters;
    assert!(c.retransmitted_pkts >= 2, "{c:?}");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let qpn = a.qp.qpn();
    a.event("QP fatal", |e| *e == AsyncEvent::QpFatal { qpn });
}

#[test]
fn modify_to_err_flushes_every_outstanding_wqe() {
    let (a, b) = pair(QpType::Rc, 8192);
    for i in 0..5 {
        b.qp.post_recv(RecvWr::new(i, b.mr.sge(0, 64))).unwrap();
    }
    to_err(&b.qp);
    for i in 0..5 {
        let wc = b.wait();
        assert_eq!(
            (wc.wr_id, wc.status, wc.qp_num),
            (i, WcStatus::WrFlushErr, b.qp.qpn())
        );
    }
    // Sends too, signaled or not, once in ERR.
    to_err(&a.qp);
    a.qp.post_send(SendWr::send(9, a.mr.sge(0, 8))).unwrap();
    let wc = a.wait();
    assert_eq!((wc.wr_id, wc.status), (9, WcStatus::WrFlushErr));
    // ERR → RESET → INIT is allowed again.
    a.qp.modify(&ModifyAttrs {
        qp_state: Some(QpState::Reset),
        ..Default::default()
    })
    .unwrap();
    a.qp.init(&ConnectOptions::default()).unwrap();
    assert_eq!(a.qp.state().unwrap(), QpState::Init);
}

#[test]
fn cq_overrun_is_an_async_event() {
    let a = Side::new("rxe0", QpType::Rc, 4096);
    let b = Side::new("rxe1", QpType::Rc, 4096);
    let small = b.ctx.create_cq(1, None).unwrap();
    let n = small.cqe();
    let qb = b.pd.create_qp(&QpInitAttr::rc(&b.cq, &small)).unwrap();
    let o = ConnectOptions::default();
    a.qp.connect(&qb.endpoint().unwrap(), &o).unwrap();
    qb.connect(&a.qp.endpoint().unwrap(), &o).unwrap();
    for i in 0..=u64::from(n) {
        qb.post_recv(RecvWr::new(i, b.mr.sge(0, 64))).unwrap();
        a.qp.post_send(SendWr::send(i, a.mr.sge(0, 8)).signaled())
            .unwrap();
        assert_eq!(a.wait().status, WcStatus::Success);
    }
    let id = small.id();
    b.event("CQ overrun", |e| *e == AsyncEvent::CqOverrun { cq: id });
}

#[test]
fn send_with_invalidate_kills_the_rkey() {
    let (a, b) = pair(QpType::Rc, 8192);
    let target = b.pd.reg_mr(4096, ALL).unwrap();
    // It works before...
    a.qp.post_send(SendWr::write(1, a.mr.sge(0, 8), target.addr(), target.rkey()).signaled())
        .unwrap();
    assert_eq!(a.wait().status, WcStatus::Success);
    // ...A invalidates it remotely...
    b.qp.post_recv(RecvWr::new(2, b.mr.sge(0, 64))).unwrap();
    let inv = SendWr {
        op: SendOp::SendWithInv {
            rkey: target.rkey(),
        },
        ..SendWr::send(3, a.mr.sge(0, 8)).signaled()
    };
    a.qp.post_send(inv).unwrap();
    assert_eq!(a.wait().status, WcStatus::Success);
    let r = b.wait();
    assert_eq!(
        (r.status, r.invalidated_rkey),
        (WcStatus::Success, Some(target.rkey()))
    );
    // ...and then it is refused.
    a.qp.post_send(SendWr::write(4, a.mr.sge(0, 8), target.addr(), target.rkey()).signaled())
        .unwrap();
    assert_eq!(a.wait().status, WcStatus::RemAccessErr);
}

#[test]
fn local_invalidate_kills_the_rkey() {
    let (a, b) = pair(QpType::Rc, 8192);
    let target = b.pd.reg_mr(4096, ALL).unwrap();
    a.qp.post_send(SendWr::read(1, a.mr.sge(0, 8), target.addr(), target.rkey()).signaled())
        .unwrap();
    assert_eq!(a.wait().status, WcStatus::Success);
    b.qp.local_invalidate(target.rkey()).unwrap();
    a.qp.post_send(SendWr::read(2, a.mr.sge(0, 8), target.addr(), target.rkey()).signaled())
        .unwrap();
    assert_eq!(a.wait().status, WcStatus::RemAccessErr);
    // An unknown key is an error, not a panic.
    assert!(matches!(
        b.qp.local_invalidate(0xdead_0000),
        Err(VerbsError::NotFound(_))
    ));
}

#[test]
fn memory_window_type1_grants_then_zero_length_bind_revokes() {
    let (a, b) = pair(QpType::Rc, 8192);
    let mw = b.pd.alloc_mw(MwType::Type1).unwrap();
    let rkey = mw
        .bind(&b.qp, &b.mr, 4096, 256, Access::REMOTE_WRITE)
        .unwrap();
    assert_eq!(mw.rkey(), rkey);
    let data = a.fill(0, 256, 9);
    let win = b.mr.addr() + 4096;
    a.qp.post_send(SendWr::write(1, a.mr.sge(0, 256), win, rkey).signaled())
        .unwrap();
    assert_eq!(a.wait().status, WcStatus::Success);
    assert_eq!(b.bytes(4096, 256), data);
    // A zero-length bind invalidates a type 1 window: a new key that
    // grants nothing (and the old one is dead too).
    let rkey2 = mw
        .bind(&b.qp, &b.mr, 4096, 0, Access::REMOTE_WRITE)
        .unwrap();
    assert_ne!(rkey, rkey2);
    a.qp.post_send(SendWr::write(2, a.mr.sge(0, 8), win, rkey2).signaled())
        .unwrap();
    assert_eq!(a.wait().status, WcStatus::RemAccessErr);
    assert_eq!(a.qp.state().unwrap(), QpState::Err);
}

#[test]
fn memory_window_bounds_and_rights_are_enforced() {
    let (a, b) = pair(QpType::Rc, 8192);
    let mw = b.pd.alloc_mw(MwType::Type1).unwrap();
    let rkey = mw.bind(&b.qp, &b.mr, 0, 128, Access::REMOTE_WRITE).unwrap();
    a.qp.post_send(SendWr::write(1, a.mr.sge(0, 8), b.mr.addr() + 124, rkey).signaled())
        .unwrap();
    assert_eq!(
        a.wait().status,
        WcStatus::RemAccessErr,
        "past the window's end"
    );
    // A region without MW_BIND cannot carry a window.
    let plain = b.pd.reg_mr(4096, Access::LOCAL_WRITE).unwrap();
    let mw2 = b.pd.alloc_mw(MwType::Type1).unwrap();
    let e = mw2
        .bind(&b.qp, &plain, 0, 64, Access::REMOTE_READ)
        .unwrap_err();
    assert!(e.to_string().contains("MW_BIND"), "{e}");
}

#[test]
fn udonly_device_refuses_rc_by_name() {
    let cfg = DeviceConfig::new("udtest0", DeviceKind::UdOnly, "127.0.0.3".parse().unwrap())
        .with_port(free_port());
    let ctx = Context::open_config(cfg).unwrap();
    let caps = ctx.query_device().unwrap();
    assert!(!caps.qp_types.rc && caps.qp_types.ud);
    let pd = ctx.alloc_pd().unwrap();
    let cq = ctx.create_cq(16, None).unwrap();
    for t in [QpType::Rc, QpType::Uc] {
        match pd.create_qp(&QpInitAttr::new(t, &cq, &cq)) {
            Err(e @ VerbsError::Unsupported { .. }) => {
                let VerbsError::Unsupported { device, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(device, "udtest0");
                assert!(e.to_string().contains("udtest0"), "{e}");
                assert_eq!(e.errno(), 95, "EOPNOTSUPP");
            }
            other => panic!("{t:?} on a UD-only device: {other:?}"),
        }
    }
    assert!(matches!(
        pd.create_srq(4, 1),
        Err(VerbsError::Unsupported { .. })
    ));
    assert!(matches!(
        pd.alloc_mw(MwType::Type1),
        Err(VerbsError::Unsupported { .. })
    ));
    // UD works.
    pd.create_qp(&QpInitAttr::ud(&cq, &cq)).unwrap();
}

#[test]
fn invalid_transitions_name_what_is_wrong() {
    let a = Side::new("rxe0", QpType::Rc, 4096);
    // RESET → RTR skips INIT.
    let e =
        a.qp.modify(&ModifyAttrs {
            qp_state: Some(QpState::Rtr),
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            VerbsError::InvalidState(_) | VerbsError::InvalidArgument(_)
        ),
        "{e}"
    );
    a.qp.init(&ConnectOptions::default()).unwrap();
    // INIT → RTR without its mandatory attributes names one of them.
    let e =
        a.qp.modify(&ModifyAttrs {
            qp_state: Some(QpState::Rtr),
            ..Default::default()
        })
        .unwrap_err();
    let m = e.to_string();
    assert!(
        ["path_mtu", "dest_qp_num", "rq_psn", "ah_attr"]
            .iter()
            .any(|w| m.contains(w)),
        "{m}"
    );
    // Posting a send in INIT is refused up front.
    assert!(a.qp.post_send(SendWr::send(1, a.mr.sge(0, 8))).is_err());
}

#[test]
fn drop_order_is_free_parents_live_as_long_as_children() {
    // Drop every handle except the QPs and regions, in the "wrong" order:
    // the contexts, PDs and CQs live on inside their children.
    let (a, b) = pair(QpType::Rc, 4096);
    let Side {
        ctx,
        pd,
        cq: cq_a,
        mr: mr_a,
        qp: qa,
    } = a;
    drop((ctx, pd));
    let Side {
        ctx,
        pd,
        cq,
        mr: mr_b,
        qp: qb,
    } = b;
    drop((ctx, pd, cq));
    mr_a.write(0, b"outlived").unwrap();
    qa.post_send(SendWr::write(1, mr_a.sge(0, 8), mr_b.addr(), mr_b.rkey()).signaled())
        .unwrap();
    assert_eq!(cq_a.wait_one(TIMEOUT).unwrap().status, WcStatus::Success);
    let mut got = [0u8; 8];
    mr_b.read(0, &mut got).unwrap();
    assert_eq!(&got, b"outlived");
    // A region dropped while its block is still shared: the bytes stay.
    let block = mr_b.block().unwrap().clone();
    drop((qb, mr_b));
    let mut again = [0u8; 8];
    block.read(0, &mut again).unwrap();
    assert_eq!(&again, b"outlived");
    drop((qa, cq_a, mr_a));
}

#[test]
fn the_core_refuses_to_destroy_a_busy_object() {
    // The safe API cannot even express it; through the core's context a
    // PD with a live region is busy, and the error names its user.
    use softverbs_core::mem::{Backing, MemBlock};
    use std::sync::Arc;
    let cfg = DeviceConfig::new("busy0", DeviceKind::Rxe, "127.0.0.4".parse().unwrap())
        .with_port(free_port());
    let dev = softverbs_core::Device::new(Arc::new(softverbs_devices::open_device(cfg)));
    let uctx = dev.open(softverbs_core::Owner::this_process()).unwrap();
    let pd = uctx.alloc_pd().unwrap();
    let mr = uctx
        .reg_mr(
            pd.handle,
            Backing::Block(Arc::new(MemBlock::new(4096))),
            Access::LOCAL_WRITE,
        )
        .unwrap();
    match uctx.dealloc_pd(pd.handle) {
        Err(VerbsError::Busy { users, .. }) => assert!(
            users.iter().any(|u| u.contains("MR") || u.contains("mr")),
            "{users:?}"
        ),
        other => panic!("dealloc of a PD with an MR: {other:?}"),
    }
    uctx.dereg_mr(mr.handle).unwrap();
    uctx.dealloc_pd(pd.handle).unwrap();
}
