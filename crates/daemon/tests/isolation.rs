//! Isolation between the daemon's clients: guessed and replayed handles,
//! another client's rkeys, and corrupt rings — each refused, counted, and
//! harmless to everyone but the client that tried.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use softverbs_core::calls::VerbsCalls;
use softverbs_core::driver::MwType;
use softverbs_core::objects::ids::{CQ, MR, PD, QP};
use softverbs_core::uapi::Handle;
use softverbs_core::Device;
use softverbs_daemon::client::Client;
use softverbs_daemon::control;
use softverbs_daemon::{Daemon, Running, Server};
use softverbs_transport::{Access, MwBindReq, QpState, RecvWr, SendWr, WcStatus};

mod common;
use common::{card, connect, parse_card, side, Side};

static NEXT: AtomicU32 = AtomicU32::new(0);
const T: Duration = Duration::from_secs(20);

fn daemon() -> Running {
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let list = format!(
        "rxe0=rxe:127.0.7.{},rxe1=rxe:127.0.7.{}",
        10 + 2 * n,
        11 + 2 * n
    );
    let drivers = softverbs_devices::devices_from(&list).unwrap();
    let devices: Vec<Arc<Device>> = drivers.into_iter().map(Device::new).collect();
    let path: PathBuf =
        std::env::temp_dir().join(format!("softverbsd-iso-{}-{n}.sock", std::process::id()));
    Server::bind(&path, Daemon::new(devices)).unwrap().spawn()
}

fn stat(d: &Running, name: &str) -> u64 {
    let v = control::counters(&d.path).unwrap();
    v["daemon"][name].as_u64().unwrap()
}

fn pair(d: &Running) -> (Side, Side) {
    let a = side(&d.path, "rxe0", None);
    let b = side(&d.path, "rxe1", None);
    connect(&a, &parse_card(&card(&b)));
    connect(&b, &parse_card(&card(&a)));
    (a, b)
}

/// Handles of another live client — its real ones, and guesses around them
/// (every index and generation nearby, with its context tag and with the
/// guesser's own) — and handles replayed from a closed connection: every
/// call is refused, counted, and the victim's objects are untouched.
#[test]
fn guessed_and_replayed_handles_are_refused_and_counted() {
    let d = daemon();
    let victim = Client::open(&d.path, "rxe0").unwrap();
    let pd = victim.alloc_pd().unwrap();
    let cq = victim.create_cq(8, None).unwrap();
    let mr = victim
        .reg_shared(pd.handle, 4096, softverbs_transport::Access::LOCAL_WRITE)
        .unwrap();
    let thief = Client::open(&d.path, "rxe0").unwrap();
    let own = thief.alloc_pd().unwrap();
    let before = stat(&d, "rejected_handles");
    let mut tried = 0u64;
    let (vp, vc, vm) = (pd.handle.raw(), cq.handle.raw(), mr.r.handle.raw());
    let mut cands = vec![vp, vc, vm];
    for base in [vp, own.handle.raw()] {
        let tag = base & !((1u64 << 44) - 1);
        for index in 0..8u64 {
            for generation in 0..4u64 {
                cands.push(tag | generation << 24 | index);
            }
        }
    }
    cands.sort_unstable();
    cands.dedup();
    cands.retain(|&h| h != own.handle.raw());
    for h in &cands {
        let h = Handle::from_raw(*h);
        for obj in [PD, CQ, MR, QP] {
            let e = thief.destroy_object(obj, h).expect_err("a guessed handle");
            // Guesses with the victim's context tag are the victim's
            // handles or would-be ones: refused as foreign, and counted.
            // (Guesses in the thief's own context name its own objects.)
            if h.raw() >> 44 == vp >> 44 {
                assert!(e.to_string().contains("another context"), "{e}");
                tried += 1;
            }
        }
    }
    assert!(stat(&d, "rejected_handles") >= before + tried);
    // The victim's objects are all there.
    victim.query_device().unwrap();
    let live = softverbs_daemon::client::resources(&d.path).unwrap();
    assert!(live.len() >= 4, "{live:?}");

    // Replayed: the victim goes away; a new connection replays its handles.
    let replay = [vp, vc, vm];
    drop(victim);
    let before = stat(&d, "rejected_handles");
    let late = Client::open(&d.path, "rxe0").unwrap();
    let _p = late.alloc_pd().unwrap();
    for h in replay {
        for obj in [PD, CQ, MR] {
            assert!(late.destroy_object(obj, Handle::from_raw(h)).is_err());
        }
    }
    // And as the PD of a new object.
    assert!(late
        .create_srq(
            Handle::from_raw(vp),
            softverbs_core::driver::SrqAttr {
                max_wr: 4,
                max_sge: 1,
                limit: 0,
            },
        )
        .is_err());
    assert!(stat(&d, "rejected_handles") >= before + 10);
    // Attaching a ring to a handle that is not ours is refused and counted.
    let before = stat(&d, "rejected_handles");
    assert!(late.send_queue(Handle::from_raw(vp), 4, 1, 0).is_err());
    assert_eq!(stat(&d, "rejected_handles"), before + 1);
}

/// A client that uses another client's rkey (READ and WRITE through its
/// own connected QP, whose peer is in a different PD) gets a remote access
/// error; the owner's memory is neither read nor written; the device
/// counts the error completions.
#[test]
fn another_clients_rkey_is_refused_and_counted() {
    let d = daemon();
    let (mut a, b) = pair(&d);
    // The owner of the rkey: a third client on b's device.
    let owner = side(&d.path, "rxe1", None);
    owner.mr.map.write(0, b"the owner's secret").unwrap();
    let errors = |d: &Running| -> u64 {
        let v = control::counters(&d.path).unwrap();
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                x["counters"]["qp"]["completion_errors"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum()
    };
    let e0 = errors(&d);
    a.sq.post_send(&SendWr::read(1, a.mr.sge(0, 18), owner.mr.r.addr, owner.mr.r.rkey).signaled())
        .unwrap();
    let wc = a.cq.wait_one(T).unwrap();
    assert_eq!((wc.wr_id, wc.status), (1, WcStatus::RemAccessErr));
    let mut got = [0u8; 18];
    a.mr.map.read(0, &mut got).unwrap();
    assert_ne!(&got, b"the owner's secret");
    assert!(errors(&d) > e0, "the refused READ was not counted");

    // WRITE on a fresh pair (the first went to the error state).
    drop((a, b));
    let (mut a, _b) = pair(&d);
    a.mr.map.write(0, b"overwrite attempt!").unwrap();
    a.sq.post_send(&SendWr::write(2, a.mr.sge(0, 18), owner.mr.r.addr, owner.mr.r.rkey).signaled())
        .unwrap();
    let wc = a.cq.wait_one(T).unwrap();
    assert_eq!((wc.wr_id, wc.status), (2, WcStatus::RemAccessErr));
    let mut got = [0u8; 18];
    owner.mr.map.read(0, &mut got).unwrap();
    assert_eq!(&got, b"the owner's secret");
}

/// Another client's region through the memory-management paths: invalidating
/// its rkey at once (`QP.local_invalidate`) is refused and counted, and a
/// type 1 bind WQE (send ring opcode 10) of the attacker's own window onto
/// it completes with MW_BIND_ERR; the region still serves its owner's peer,
/// unchanged.
#[test]
fn another_clients_region_cannot_be_invalidated_or_bound() {
    let d = daemon();
    let (mut a, b) = pair(&d);
    let all = Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ | Access::MW_BIND;
    let victim = b.c.reg_shared(b.pd.handle, 4096, all).unwrap();
    victim.map.write(0, b"the victim's bytes").unwrap();
    // The attacker: a client on the victim's device, its QP connected to
    // itself (in RTS, so it may post).
    let mut x = side(&d.path, "rxe1", None);
    connect(&x, &parse_card(&card(&x)));

    let failed = stat(&d, "failed_calls");
    let e =
        x.c.local_invalidate(x.qp.handle, victim.r.rkey)
            .unwrap_err();
    assert!(e.to_string().contains("rkey"), "{e}");
    assert!(x.c.local_invalidate(x.qp.handle, b.mr.r.rkey).is_err());
    assert!(stat(&d, "failed_calls") >= failed + 2);

    let mw = x.c.alloc_mw(x.pd.handle, MwType::Type1).unwrap();
    let inc = |k: u32| (k & !0xff) | (k.wrapping_add(1) & 0xff);
    // The same bind onto a region of the attacker's own succeeds: what
    // fails below fails for the owner, nothing else.
    let own = x.c.reg_shared(x.pd.handle, 4096, all).unwrap();
    let bind = |wr_id: u64, mw_rkey: u32, lkey: u32, addr: u64| {
        SendWr::bind_mw_req(
            wr_id,
            MwBindReq {
                mw_rkey,
                new_rkey: Some(inc(mw_rkey)),
                mr_lkey: lkey,
                addr,
                len: 4096,
                access: Access::REMOTE_READ,
            },
        )
        .signaled()
    };
    x.sq.post_bind_mw(&bind(6, mw.rkey, own.r.lkey, own.r.addr))
        .unwrap();
    let wc = x.cq.wait_one(T).unwrap();
    assert_eq!((wc.wr_id, wc.status), (6, WcStatus::Success));
    x.sq.post_bind_mw(&bind(7, inc(mw.rkey), victim.r.lkey, victim.r.addr))
        .unwrap();
    let wc = x.cq.wait_one(T).unwrap();
    assert_eq!((wc.wr_id, wc.status), (7, WcStatus::MwBindErr));

    a.sq.post_send(&SendWr::read(8, a.mr.sge(0, 18), victim.r.addr, victim.r.rkey).signaled())
        .unwrap();
    let wc = a.cq.wait_one(T).unwrap();
    assert_eq!((wc.wr_id, wc.status), (8, WcStatus::Success));
    let mut got = [0u8; 18];
    a.mr.map.read(0, &mut got).unwrap();
    assert_eq!(&got, b"the victim's bytes");
}

/// Corrupt indices in a client's CQ ring and receive ring: the daemon drops
/// those rings and counts them (the receive ring's QP goes to the error
/// state); another client's traffic on the same devices goes on.
#[test]
fn corrupt_rings_only_hurt_their_writer() {
    let d = daemon();
    let (mut a, mut b) = pair(&d);
    let (bad, _bad_peer) = pair(&d);
    let before = stat(&d, "bad_ring_entries");
    // The CQ ring's tail jumps: the daemon cannot trust its free count.
    bad.cq
        .shared()
        .write(128, &0x7777_0000u32.to_ne_bytes())
        .unwrap();
    // The receive ring's head jumps.
    bad.rq
        .shared()
        .write(64, &0x4242_4242u32.to_ne_bytes())
        .unwrap();
    bad.rq.ring_doorbell();
    assert_eq!(common::wait_qp_state(&bad, QpState::Err), QpState::Err);
    assert!(stat(&d, "bad_ring_entries") > before);
    // The good pair still talks.
    for i in 0..20u64 {
        b.rq.post_recv(&RecvWr {
            wr_id: i,
            sgl: vec![b.mr.sge(0, 64)],
        })
        .unwrap();
        a.sq.post_send(&SendWr::send_inline(i, b"still here").signaled())
            .unwrap();
        assert_eq!(a.cq.wait_one(T).unwrap().status, WcStatus::Success);
        let wc = b.cq.wait_one(T).unwrap();
        assert_eq!((wc.wr_id, wc.status), (i, WcStatus::Success));
    }
}
