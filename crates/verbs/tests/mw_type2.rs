//! Type 2 memory windows through the public API: bound by a BIND_MW work
//! request, used by a peer, invalidated by a LOCAL_INV work request or a
//! SEND with invalidate; bind errors; LOCAL_INV ordered after the work
//! requests before it.

mod common;

use common::*;
use softverbs::*;

const RW: Access = Access(Access::REMOTE_WRITE.0 | Access::REMOTE_READ.0);

/// Post `wr` (signaled) on `s`'s QP and return its completion.
fn run(s: &Side, wr: SendWr) -> Wc {
    s.qp.post_send(wr.signaled()).unwrap();
    s.wait()
}

/// Bind a fresh type 2 window of B's onto `[offset, +len)` of B's region,
/// by a work request on B's QP; returns it and its rkey.
fn bind_window(b: &Side, offset: usize, len: usize, access: Access) -> (Mw, u32) {
    let mw = b.pd.alloc_mw(MwType::Type2).unwrap();
    let (wr, rkey) = SendWr::bind_mw(10, &mw, &b.mr, offset, len, access);
    let wc = run(b, wr);
    assert_eq!(
        (wc.wr_id, wc.opcode, wc.status),
        (10, WcOpcode::BindMw, WcStatus::Success)
    );
    assert_eq!(mw.rkey(), rkey);
    (mw, rkey)
}

#[test]
fn bound_by_wr_used_remotely_then_locally_invalidated_by_wr() {
    let (a, b) = pair(QpType::Rc, 64 * 1024);
    let (mw, rkey) = bind_window(&b, 4096, 4096, RW);
    let win = b.mr.addr() + 4096;

    let data = a.fill(0, 300, 7);
    let wc = run(&a, SendWr::write(1, a.mr.sge(0, 300), win + 100, rkey));
    assert_eq!(
        (wc.opcode, wc.status),
        (WcOpcode::RdmaWrite, WcStatus::Success)
    );
    assert_eq!(b.bytes(4096 + 100, 300), data);
    let wc = run(&a, SendWr::read(2, a.mr.sge(8192, 300), win + 100, rkey));
    assert_eq!(
        (wc.opcode, wc.status),
        (WcOpcode::RdmaRead, WcStatus::Success)
    );
    assert_eq!(a.bytes(8192, 300), data);

    // LOCAL_INV by work request on B's QP: it completes, and the key is dead.
    let wc = run(&b, SendWr::local_inv(3, rkey));
    assert_eq!(
        (wc.wr_id, wc.opcode, wc.status),
        (3, WcOpcode::LocalInv, WcStatus::Success)
    );
    a.fill(0, 300, 99);
    let wc = run(&a, SendWr::write(4, a.mr.sge(0, 300), win + 100, rkey));
    assert_eq!(wc.status, WcStatus::RemAccessErr);
    assert_eq!(b.bytes(4096 + 100, 300), data, "nothing written");
    drop(mw);
}

#[test]
fn send_with_invalidate_unbinds_a_type2_window_which_binds_again() {
    let (a, b) = pair(QpType::Rc, 64 * 1024);
    let (mw, rkey) = bind_window(&b, 0, 8192, RW);

    b.qp.post_recv(RecvWr::new(20, b.mr.sge(16384, 64)))
        .unwrap();
    a.fill(0, 16, 1);
    let wc = run(&a, SendWr::send_with_inv(5, a.mr.sge(0, 16), rkey));
    assert_eq!((wc.opcode, wc.status), (WcOpcode::Send, WcStatus::Success));
    let wc = b.wait();
    assert_eq!(
        (wc.wr_id, wc.opcode, wc.status, wc.byte_len),
        (20, WcOpcode::Recv, WcStatus::Success, 16)
    );
    assert_eq!(wc.invalidated_rkey, Some(rkey));

    // Invalidated, the window is free: bind it again, with a new key.
    let (wr, rkey2) = SendWr::bind_mw(11, &mw, &b.mr, 4096, 4096, Access::REMOTE_WRITE);
    assert_ne!(rkey2, rkey);
    assert_eq!(rkey2 >> 8, rkey >> 8, "same window index");
    let wc = run(&b, wr);
    assert_eq!(
        (wc.opcode, wc.status),
        (WcOpcode::BindMw, WcStatus::Success)
    );
    let data = a.fill(0, 64, 3);
    let wc = run(
        &a,
        SendWr::write(6, a.mr.sge(0, 64), b.mr.addr() + 4096, rkey2),
    );
    assert_eq!(wc.status, WcStatus::Success);
    assert_eq!(b.bytes(4096, 64), data);

    // The key the SEND invalidated stays dead.
    let wc = run(&a, SendWr::write(7, a.mr.sge(0, 64), b.mr.addr(), rkey));
    assert_eq!(wc.status, WcStatus::RemAccessErr);
}

/// Post a bind on a fresh pair's B and return its completion and B's QP
/// state afterwards.
fn bind_status(
    mem: usize,
    region: impl FnOnce(&Side) -> Mr,
    offset: usize,
    len: usize,
    access: Access,
) -> (Wc, QpState) {
    let (_a, b) = pair(QpType::Rc, mem);
    let mr = region(&b);
    let mw = b.pd.alloc_mw(MwType::Type2).unwrap();
    let (wr, _) = SendWr::bind_mw(30, &mw, &mr, offset, len, access);
    let wc = run(&b, wr);
    (wc, b.qp.state().unwrap())
}

#[test]
fn binds_the_region_does_not_allow_complete_with_mw_bind_err() {
    // Beyond the end of the region.
    let (wc, state) = bind_status(8192, |b| b.mr.clone(), 4096, 8192, RW);
    assert_eq!(
        (wc.wr_id, wc.opcode, wc.status),
        (30, WcOpcode::BindMw, WcStatus::MwBindErr)
    );
    assert_eq!(state, QpState::Err, "a failed bind moves the QP to error");

    // Write rights the region cannot back (no LOCAL_WRITE, C10-74).
    let read_only = |b: &Side| {
        b.pd.reg_mr(4096, Access::MW_BIND | Access::REMOTE_READ)
            .unwrap()
    };
    let (wc, _) = bind_status(4096, read_only, 0, 4096, Access::REMOTE_WRITE);
    assert_eq!(wc.status, WcStatus::MwBindErr);

    // A region registered without MW_BIND (C10-73).
    let no_bind = |b: &Side| b.pd.reg_mr(4096, Access::LOCAL_WRITE).unwrap();
    let (wc, _) = bind_status(4096, no_bind, 0, 4096, Access::REMOTE_READ);
    assert_eq!(wc.status, WcStatus::MwBindErr);

    // Local rights through a window.
    let (wc, _) = bind_status(4096, |b| b.mr.clone(), 0, 4096, Access::LOCAL_WRITE);
    assert_eq!(wc.status, WcStatus::MwBindErr);

    // Length 0: a type 2 window is unbound by invalidation only.
    let (wc, _) = bind_status(4096, |b| b.mr.clone(), 0, 0, RW);
    assert_eq!(wc.status, WcStatus::MwBindErr);
}

#[test]
fn a_bound_type2_window_is_not_bound_again_before_invalidation() {
    let (_a, b) = pair(QpType::Rc, 16384);
    let (mw, _) = bind_window(&b, 0, 4096, RW);
    let (wr, _) = SendWr::bind_mw(31, &mw, &b.mr, 0, 4096, RW);
    let wc = run(&b, wr);
    assert_eq!((wc.wr_id, wc.status), (31, WcStatus::MwBindErr));
}

#[test]
fn window_types_take_their_own_bind_path() {
    let (_a, b) = pair(QpType::Rc, 16384);
    // Type 2 through the bind verb: refused, pointing at the work request.
    let mw2 = b.pd.alloc_mw(MwType::Type2).unwrap();
    assert_eq!(mw2.mw_type(), MwType::Type2);
    let err = mw2.bind(&b.qp, &b.mr, 0, 4096, RW).unwrap_err();
    assert!(err.to_string().contains("SendWr::bind_mw"), "{err}");
    // Type 1 through a work request: refused when posted.
    let mw1 = b.pd.alloc_mw(MwType::Type1).unwrap();
    let (wr, _) = SendWr::bind_mw(1, &mw1, &b.mr, 0, 4096, RW);
    let err = b.qp.post_send(wr.signaled()).unwrap_err();
    assert!(err.to_string().contains("type 1"), "{err}");
    // Neither left anything behind: the QP still works.
    let (_mw, rkey) = bind_window(&b, 0, 4096, RW);
    assert_eq!(
        run(&b, SendWr::local_inv(2, rkey)).status,
        WcStatus::Success
    );
    // Local operations carry no data, and UD has none.
    let mut wr = SendWr::local_inv(3, rkey);
    wr.payload = Payload::Sgl(vec![b.mr.sge(0, 8)]);
    assert!(b.qp.post_send(wr).is_err());
    let ud = b.pd.create_qp(&QpInitAttr::ud(&b.cq, &b.cq)).unwrap();
    ud.connect(&ud.endpoint().unwrap(), &ConnectOptions::default())
        .unwrap();
    assert!(ud.post_send(SendWr::local_inv(4, rkey)).is_err());
}

/// A LOCAL_INV posted right after a long WRITE through the key it
/// invalidates runs only once the WRITE has completed (the local
/// invalidate fence): the WRITE succeeds whole, the LOCAL_INV completes
/// after it, and the key is dead afterwards.
///
/// One device, one PD, two QPs connected to each other, so that the
/// LOCAL_INV on the writer's send queue reaches the window its peer QP
/// serves.
#[test]
fn local_inv_completes_after_the_write_before_it() {
    const LEN: usize = MIB;
    let ctx = Context::open("rxe0").unwrap();
    let pd = ctx.alloc_pd().unwrap();
    let cq = ctx.create_cq(64, None).unwrap();
    let mr = pd.reg_mr(2 * LEN + 4096, ALL).unwrap();
    let qa = pd.create_qp(&QpInitAttr::rc(&cq, &cq)).unwrap();
    let qb = pd.create_qp(&QpInitAttr::rc(&cq, &cq)).unwrap();
    let o = ConnectOptions::default();
    qa.connect(&qb.endpoint().unwrap(), &o).unwrap();
    qb.connect(&qa.endpoint().unwrap(), &o).unwrap();
    let wait = || cq.wait_one(TIMEOUT).unwrap();

    // The window onto the second MiB, served by qb (type 2: its QP).
    let mw = pd.alloc_mw(MwType::Type2).unwrap();
    let (wr, rkey) = SendWr::bind_mw(1, &mw, &mr, LEN, LEN, Access::REMOTE_WRITE);
    qb.post_send(wr.signaled()).unwrap();
    assert_eq!(wait().status, WcStatus::Success);

    let data: Vec<u8> = (0..LEN).map(|i| (i * 7 + i / 4096) as u8).collect();
    mr.write(0, &data).unwrap();
    // Far more packets than the 128 unacknowledged PSNs a QP may have out:
    // most of the WRITE is still to be sent when the LOCAL_INV is posted.
    qa.post_send(SendWr::write(2, mr.sge(0, LEN as u32), mr.addr() + LEN as u64, rkey).signaled())
        .unwrap();
    qa.post_send(SendWr::local_inv(3, rkey).signaled()).unwrap();
    let first = wait();
    assert_eq!(
        (first.wr_id, first.opcode, first.status),
        (2, WcOpcode::RdmaWrite, WcStatus::Success)
    );
    let second = wait();
    assert_eq!(
        (second.wr_id, second.opcode, second.status),
        (3, WcOpcode::LocalInv, WcStatus::Success)
    );
    let mut got = vec![0u8; LEN];
    mr.read(LEN, &mut got).unwrap();
    assert!(got == data, "the whole WRITE landed");

    let wc = {
        qa.post_send(SendWr::write(4, mr.sge(0, 8), mr.addr() + LEN as u64, rkey).signaled())
            .unwrap();
        wait()
    };
    assert_eq!((wc.wr_id, wc.status), (4, WcStatus::RemAccessErr));
}
