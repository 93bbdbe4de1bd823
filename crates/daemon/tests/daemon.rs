//! The daemon in process on a temporary socket: clients over the socket,
//! rings, memfd memory, isolation, cleanup of a killed client, garbage.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use softverbs_core::calls::VerbsCalls;
use softverbs_core::driver::AhAttr;
use softverbs_core::objects::ids::{PD, QP};
use softverbs_core::{Device, ModifyAttrs, QpCreate};
use softverbs_daemon::client::{self, Client};
use softverbs_daemon::frame::{self, Kind};
use softverbs_daemon::{Daemon, Running, Server};
use softverbs_transport::{Access, Mtu, QpState, QpType, RecvWr, SendWr, WcStatus};

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A daemon with two rxe devices on loopback addresses unique to this test.
fn daemon() -> Running {
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let base = 40 + 2 * n as u8;
    let list = format!(
        "rxe0=rxe:127.0.9.{},rxe1=rxe:127.0.9.{}",
        base + 1,
        base + 2
    );
    let drivers = softverbs_devices::devices_from(&list).unwrap();
    let devices: Vec<Arc<Device>> = drivers.into_iter().map(Device::new).collect();
    let path: PathBuf =
        std::env::temp_dir().join(format!("softverbsd-test-{}-{n}.sock", std::process::id()));
    Server::bind(&path, Daemon::new(devices)).unwrap().spawn()
}

mod common;
use common::Side;

fn side(path: &std::path::Path, dev: &str) -> Side {
    common::side(path, dev, None)
}

fn connect(a: &Side, b: &Side) {
    let gid_b = b.c.query_gid(1, 1).unwrap();
    let h = a.qp.handle;
    a.c.modify_qp(
        h,
        &ModifyAttrs {
            qp_state: Some(QpState::Init),
            pkey_index: Some(0),
            port_num: Some(1),
            qp_access_flags: Some(Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ),
            ..Default::default()
        },
    )
    .unwrap();
    a.c.modify_qp(
        h,
        &ModifyAttrs {
            qp_state: Some(QpState::Rtr),
            path_mtu: Some(Mtu::Mtu1024),
            dest_qp_num: Some(b.qp.qpn),
            rq_psn: Some(100),
            max_dest_rd_atomic: Some(1),
            min_rnr_timer: Some(12),
            ah_attr: Some(AhAttr {
                dgid: gid_b,
                sgid_index: 1,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
                sl: 0,
                port: 1,
            }),
            ..Default::default()
        },
    )
    .unwrap();
    a.c.modify_qp(
        h,
        &ModifyAttrs {
            qp_state: Some(QpState::Rts),
            sq_psn: Some(100),
            timeout: Some(14),
            retry_cnt: Some(7),
            rnr_retry: Some(7),
            max_rd_atomic: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
}

const T: Duration = Duration::from_secs(10);

#[test]
fn two_clients_send_and_write_over_rings() {
    let d = daemon();
    let mut a = side(&d.path, "rxe0");
    let mut b = side(&d.path, "rxe1");
    connect(&a, &b);
    connect(&b, &a);

    // SEND: b posts a receive, a sends from its memfd region.
    b.rq.post_recv(&RecvWr {
        wr_id: 7,
        sgl: vec![b.mr.sge(0, 64)],
    })
    .unwrap();
    a.mr.map.write(0, b"hello through the daemon").unwrap();
    a.sq.post_send(&SendWr::send(1, a.mr.sge(0, 24)).signaled())
        .unwrap();
    let wc = a.cq.wait_one(T).unwrap();
    assert_eq!((wc.wr_id, wc.status), (1, WcStatus::Success));
    let wc = b.cq.wait_one(T).unwrap();
    assert_eq!(
        (wc.wr_id, wc.status, wc.byte_len),
        (7, WcStatus::Success, 24)
    );
    let mut got = [0u8; 24];
    b.mr.map.read(0, &mut got).unwrap();
    assert_eq!(&got, b"hello through the daemon");

    // RDMA WRITE into b's region at offset 4096.
    a.mr.map.write(100, b"written remotely").unwrap();
    a.sq.post_send(
        &SendWr::write(2, a.mr.sge(100, 16), b.mr.r.addr + 4096, b.mr.r.rkey).signaled(),
    )
    .unwrap();
    let wc = a.cq.wait_one(T).unwrap();
    assert_eq!((wc.wr_id, wc.status), (2, WcStatus::Success));
    let mut got = [0u8; 16];
    b.mr.map.read(4096, &mut got).unwrap();
    assert_eq!(&got, b"written remotely");

    // Inline send, many in a row (the ring wraps).
    for i in 0..100u64 {
        b.rq.post_recv(&RecvWr {
            wr_id: 1000 + i,
            sgl: vec![b.mr.sge(0, 64)],
        })
        .unwrap_or_else(|_| {
            // Ring full: drain completions and retry once.
            panic!("recv ring full at {i}")
        });
        a.sq.post_send(&SendWr::send_inline(i, b"x").signaled())
            .unwrap();
        assert_eq!(a.cq.wait_one(T).unwrap().status, WcStatus::Success);
        let wc = b.cq.wait_one(T).unwrap();
        assert_eq!((wc.wr_id, wc.status), (1000 + i, WcStatus::Success));
    }

    // Another client's rkey: a's QP writes with rkey of a region in a PD
    // the target QP (b's) does not own -> remote access error.
    let other = Client::open(&d.path, "rxe1").unwrap();
    let opd = other.alloc_pd().unwrap();
    let omr = other
        .reg_shared(opd.handle, 4096, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    a.sq.post_send(&SendWr::write(3, a.mr.sge(0, 8), omr.r.addr, omr.r.rkey).signaled())
        .unwrap();
    let wc = a.cq.wait_one(T).unwrap();
    assert_eq!(wc.wr_id, 3);
    assert_ne!(wc.status, WcStatus::Success);
    let mut z = [1u8; 8];
    omr.map.read(0, &mut z).unwrap();
    assert_eq!(z, [0u8; 8], "another client's memory was written");
    drop(b);
}

#[test]
fn another_clients_handles_are_rejected() {
    let d = daemon();
    let a = Client::open(&d.path, "rxe0").unwrap();
    let b = Client::open(&d.path, "rxe0").unwrap();
    let pd = a.alloc_pd().unwrap();
    // b names a's PD: a handle of another context is ENOENT, never a's PD.
    let e = b.destroy_object(PD, pd.handle).unwrap_err();
    assert!(
        e.to_string().contains("context") || e.to_string().contains("stale"),
        "{e}"
    );
    let e = b.create_cq(8, None).and_then(|cq| {
        b.create_qp(
            pd.handle,
            &QpCreate {
                qp_type: QpType::Rc,
                send_cq: cq.handle,
                recv_cq: cq.handle,
                srq: None,
                max_send_wr: 4,
                max_recv_wr: 4,
                max_send_sge: 1,
                max_recv_sge: 1,
                max_inline_data: 0,
                sq_sig_all: false,
            },
        )
    });
    assert!(e.is_err());
    // Attaching a ring to another client's QP handle fails too.
    let e = b.send_queue(
        softverbs_core::uapi::Handle::from_raw(pd.handle.raw()),
        4,
        1,
        0,
    );
    assert!(e.is_err());
    let _ = QP;
    // a's PD is still there.
    a.destroy_object(PD, pd.handle).unwrap();
}

#[test]
fn garbage_frames_and_rings_hurt_only_their_client() {
    let d = daemon();
    let good = Client::open(&d.path, "rxe0").unwrap();
    let pd = good.alloc_pd().unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // Random uAPI bodies on an open connection: error replies, no crash.
    let c = Client::open(&d.path, "rxe0").unwrap();
    for i in 0..300 {
        let len = (rnd() % 200) as usize;
        let mut body: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        if i % 2 == 0 && len >= 24 {
            // Make some of them look like uAPI calls.
            body[0..4].copy_from_slice(b"SVUC");
            body[4] = 1;
            body[5] = 0;
            body[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        }
        let kind = [Kind::CALL, Kind::ATTACH, Kind(77)][i % 3];
        let f = c.raw(kind, &body, &[]).unwrap();
        assert!(
            f.kind == Kind::ERROR || f.kind == kind.reply(),
            "{:?}",
            f.kind
        );
    }
    // Raw garbage on fresh connections: an error frame, then the close.
    for _ in 0..50 {
        let s = UnixStream::connect(&d.path).unwrap();
        let len = (rnd() % 64) as usize + 16;
        let junk: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        use std::io::Write;
        let _ = (&s).write_all(&junk);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let _ = frame::recv(&s);
    }
    // Garbage in a ring: scribble the send ring's indices and slots.
    let mut s = side(&d.path, "rxe1");
    // A WQE the device refuses (the QP is still in RESET): an error
    // completion, not a crash.
    let bad = SendWr::send(55, s.mr.sge(0, 1)).signaled();
    s.sq.post_send(&bad).unwrap();
    let wc = s.cq.wait_one(T).unwrap();
    assert_eq!((wc.wr_id, wc.status), (55, WcStatus::LocQpOpErr));
    // Garbage indices: the send ring's head jumps far ahead. The daemon
    // drops the ring, counts it, and puts the QP in the error state.
    let before = d
        .daemon
        .stats
        .bad_ring_entries
        .load(std::sync::atomic::Ordering::Relaxed);
    s.sq.shared()
        .write(64, &0x1234_5678u32.to_ne_bytes())
        .unwrap();
    s.sq.ring_doorbell();
    assert_eq!(common::wait_qp_state(&s, QpState::Err), QpState::Err);
    assert!(
        d.daemon
            .stats
            .bad_ring_entries
            .load(std::sync::atomic::Ordering::Relaxed)
            > before
    );
    // The good client still works.
    good.query_device().unwrap();
    let cq = good.create_cq(4, None).unwrap();
    good.destroy_object(softverbs_core::objects::ids::CQ, cq.handle)
        .unwrap();
    assert!(
        d.daemon
            .stats
            .malformed_frames
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    let _ = pd;
}

#[test]
fn a_killed_client_has_its_objects_destroyed() {
    let d = daemon();
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "child_creates_objects_and_waits",
            "--nocapture",
            "--include-ignored",
        ])
        .env("SOFTVERBSD_TEST_SOCKET", &d.path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the child's objects show up host-wide.
    let mut seen = 0;
    for _ in 0..500 {
        seen = client::resources(&d.path).unwrap().len();
        if seen >= 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(seen >= 5, "the child's objects never appeared ({seen})");
    let res = client::resources(&d.path).unwrap();
    let pid = child.id();
    assert!(res.iter().all(|r| r["pid"] == pid), "{res:?}");
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    for _ in 0..500 {
        if client::resources(&d.path).unwrap().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "objects left after the kill: {:?}",
        client::resources(&d.path).unwrap()
    );
}

#[test]
#[ignore = "run as a child process by a_killed_client_has_its_objects_destroyed"]
fn child_creates_objects_and_waits() {
    let Ok(path) = std::env::var("SOFTVERBSD_TEST_SOCKET") else {
        return;
    };
    let s = side(std::path::Path::new(&path), "rxe0");
    let _keep = s;
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn devices_are_listed() {
    let d = daemon();
    assert_eq!(client::devices(&d.path).unwrap(), ["rxe0", "rxe1"]);
    let e = Client::open(&d.path, "nope").unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}
