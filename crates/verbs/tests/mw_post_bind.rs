//! Type 1 window binds posted on the send queue (`Mw::post_bind`, what
//! `ibv_bind_mw` does on rxe): ordered after earlier work, completed by
//! the device (so a completion channel fires), refused binds completing
//! with MW_BIND_ERR. Devices on 127.0.33.x, of this file only.

#![allow(clippy::disallowed_methods)] // tests wait on the wall clock

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use softverbs::*;

const TIMEOUT: Duration = Duration::from_secs(20);
const ALL: Access = Access(
    Access::LOCAL_WRITE.0 | Access::REMOTE_WRITE.0 | Access::REMOTE_READ.0 | Access::MW_BIND.0,
);

static NEXT: AtomicU8 = AtomicU8::new(1);

struct Side {
    ch: CompletionChannel,
    cq: Cq,
    pd: Pd,
    mr: Mr,
    qp: Qp,
}

fn pair() -> (Side, Side) {
    let n = NEXT.fetch_add(2, Ordering::SeqCst);
    let side = |name: &str, host: u8| {
        let ip = format!("127.0.33.{}", n + host).parse().unwrap();
        let ctx = Context::open_config(DeviceConfig::new(name, DeviceKind::Rxe, ip)).unwrap();
        let ch = ctx.create_comp_channel().unwrap();
        let cq = ctx.create_cq(64, Some(&ch)).unwrap();
        let pd = ctx.alloc_pd().unwrap();
        let mr = pd.reg_mr(16384, ALL).unwrap();
        let qp = pd.create_qp(&QpInitAttr::rc(&cq, &cq)).unwrap();
        Side { ch, cq, pd, mr, qp }
    };
    let (a, b) = (side("rxe0", 0), side("rxe1", 1));
    a.qp.connect(&b.qp.endpoint().unwrap(), &ConnectOptions::default())
        .unwrap();
    b.qp.connect(&a.qp.endpoint().unwrap(), &ConnectOptions::default())
        .unwrap();
    (a, b)
}

#[test]
fn a_posted_bind_completes_after_earlier_work_and_fires_the_channel() {
    let (a, b) = pair();
    a.mr.write(0, &[5; 4096]).unwrap();
    let mw = b.pd.alloc_mw(MwType::Type1).unwrap();
    b.cq.req_notify(false).unwrap();
    b.qp.post_send(SendWr::read(1, b.mr.sge(8192, 4096), a.mr.addr(), a.mr.rkey()).signaled())
        .unwrap();
    let rkey = mw
        .post_bind(&b.qp, 2, Some((&b.mr, 0, 4096)), Access::REMOTE_WRITE, true)
        .unwrap();
    assert_eq!(mw.rkey(), rkey);
    assert_eq!(b.ch.get_cq_event(Some(TIMEOUT)), Some(b.cq.id()));
    let first = b.cq.wait_one(TIMEOUT).unwrap();
    let second = b.cq.wait_one(TIMEOUT).unwrap();
    assert_eq!(
        (first.wr_id, first.opcode, first.status),
        (1, WcOpcode::RdmaRead, WcStatus::Success)
    );
    assert_eq!(
        (second.wr_id, second.opcode, second.status),
        (2, WcOpcode::BindMw, WcStatus::Success)
    );
    // The window grants what it was bound with.
    a.qp.post_send(SendWr::write(3, a.mr.sge(0, 64), b.mr.addr() + 100, rkey).signaled())
        .unwrap();
    assert_eq!(a.cq.wait_one(TIMEOUT).unwrap().status, WcStatus::Success);
    let mut got = [0u8; 64];
    b.mr.read(100, &mut got).unwrap();
    assert_eq!(got, [5; 64]);
    // Rebinding a bound type 1 window is allowed; unbinding kills the key.
    let rkey2 = mw
        .post_bind(
            &b.qp,
            4,
            Some((&b.mr, 4096, 64)),
            Access::REMOTE_READ,
            false,
        )
        .unwrap();
    assert_ne!(rkey2, rkey);
    let none = mw.post_bind(&b.qp, 5, None, Access::NONE, true).unwrap();
    assert_eq!(b.cq.wait_one(TIMEOUT).unwrap().wr_id, 5);
    a.qp.post_send(SendWr::write(6, a.mr.sge(0, 8), b.mr.addr() + 4096, none).signaled())
        .unwrap();
    assert_eq!(
        a.cq.wait_one(TIMEOUT).unwrap().status,
        WcStatus::RemAccessErr
    );
}

#[test]
fn a_refused_posted_bind_completes_with_mw_bind_err() {
    let (_a, b) = pair();
    let mw = b.pd.alloc_mw(MwType::Type1).unwrap();
    // Beyond the region.
    mw.post_bind(
        &b.qp,
        9,
        Some((&b.mr, 16000, 4096)),
        Access::REMOTE_READ,
        true,
    )
    .unwrap();
    let wc = b.cq.wait_one(TIMEOUT).unwrap();
    assert_eq!((wc.wr_id, wc.status), (9, WcStatus::MwBindErr));
    // Type 2 windows are bound by SendWr::bind_mw.
    let mw2 = b.pd.alloc_mw(MwType::Type2).unwrap();
    let e = mw2
        .post_bind(&b.qp, 10, Some((&b.mr, 0, 64)), Access::REMOTE_READ, true)
        .unwrap_err();
    assert!(e.to_string().contains("SendWr::bind_mw"), "{e}");
}
