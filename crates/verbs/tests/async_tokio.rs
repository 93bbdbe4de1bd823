//! The tokio adapter (feature `tokio`, which the crate's dev-dependencies
//! turn on, so `cargo test --workspace` runs this): completions awaited
//! through the completion channel's fd.

#![cfg(feature = "tokio")]
#![allow(clippy::disallowed_methods)] // tests wait on the wall clock

mod common;

use std::time::Duration;

use common::*;
use softverbs::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn async_cq_awaits_sends_and_receives() {
    rt().block_on(async {
        let a = Side::new("rxe0", QpType::Rc, 8192);
        let ctx_b = Context::open("rxe1").unwrap();
        let ch = ctx_b.create_comp_channel().unwrap();
        let cq = AsyncCq::new(ctx_b.create_cq(64, Some(&ch)).unwrap()).unwrap();
        let pd = ctx_b.alloc_pd().unwrap();
        let mr = pd.reg_mr(8192, ALL).unwrap();
        let qb = pd.create_qp(&QpInitAttr::rc(cq.cq(), cq.cq())).unwrap();
        let o = ConnectOptions::default();
        a.qp.connect(&qb.endpoint().unwrap(), &o).unwrap();
        qb.connect(&a.qp.endpoint().unwrap(), &o).unwrap();
        for round in 0..20u64 {
            qb.post_recv(RecvWr::new(round, mr.sge(0, 4096))).unwrap();
            let data = a.fill(0, 100 + round as usize, round as u8);
            // Send from a blocking thread after a pause, so the task really sleeps.
            let (qa, sge) = (a.qp.clone(), a.mr.sge(0, data.len() as u32));
            let t = tokio::task::spawn_blocking(move || {
                std::thread::sleep(Duration::from_millis(2));
                qa.post_send(SendWr::send(round, sge)).unwrap();
            });
            let wc = tokio::time::timeout(TIMEOUT, cq.next_completion())
                .await
                .expect("a completion within the timeout")
                .unwrap();
            t.await.unwrap();
            assert_eq!(
                (wc.wr_id, wc.status, wc.byte_len),
                (round, WcStatus::Success, data.len() as u32)
            );
            let mut got = vec![0u8; data.len()];
            mr.read(0, &mut got).unwrap();
            assert_eq!(got, data);
        }
    });
}

#[test]
fn async_channel_reports_the_cq_that_fired() {
    rt().block_on(async {
        let (a, b) = pair(QpType::Rc, 8192);
        let ch = a.ctx.create_comp_channel().unwrap();
        let cq2 = a.ctx.create_cq(16, Some(&ch)).unwrap();
        let qa2 = a.pd.create_qp(&QpInitAttr::rc(&cq2, &cq2)).unwrap();
        let qb2 = b.pd.create_qp(&QpInitAttr::rc(&b.cq, &b.cq)).unwrap();
        let o = ConnectOptions::default();
        qa2.connect(&qb2.endpoint().unwrap(), &o).unwrap();
        qb2.connect(&qa2.endpoint().unwrap(), &o).unwrap();
        let ach = ch.into_async().unwrap();
        assert_eq!(ach.try_get_cq_event(), None);
        cq2.req_notify(false).unwrap();
        qa2.post_send(SendWr::write(1, a.mr.sge(0, 8), b.mr.addr(), b.mr.rkey()).signaled())
            .unwrap();
        let fired = tokio::time::timeout(TIMEOUT, ach.get_cq_event())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fired, cq2.id());
        assert_eq!(cq2.poll_one().unwrap().unwrap().status, WcStatus::Success);
    });
}

#[test]
fn async_cq_needs_a_channel_and_a_runtime() {
    let ctx = Context::open("rxe0").unwrap();
    let cq = ctx.create_cq(4, None).unwrap();
    let e = rt().block_on(async { AsyncCq::new(cq).unwrap_err() });
    assert!(e.to_string().contains("completion channel"), "{e}");
    // Outside a runtime: an error, not a panic.
    let ch = ctx.create_comp_channel().unwrap();
    let cq = ctx.create_cq(4, Some(&ch)).unwrap();
    assert!(AsyncCq::new(cq).is_err());
    assert!(ch.into_async().is_err());
}
