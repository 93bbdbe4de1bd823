//! The same operations through the public API on both backends: embedded
//! (this process's devices) and the daemon (a `softverbsd` started in this
//! process on a temporary socket, reached through the socket, the rings and
//! memfd memory exactly as another process would). Also: the backend the
//! environment picks, and the examples run against the daemon.

#![allow(clippy::disallowed_methods)] // tests wait on the wall clock

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use softverbs::*;
use softverbs_core::Device;
use softverbs_daemon::{Daemon, Running, Server};

const TIMEOUT: Duration = Duration::from_secs(20);
const MIB: usize = 1 << 20;
const ALL: Access = Access(
    Access::LOCAL_WRITE.0
        | Access::REMOTE_WRITE.0
        | Access::REMOTE_READ.0
        | Access::REMOTE_ATOMIC.0
        | Access::MW_BIND.0,
);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A daemon with rxe0/rxe1 on loopback addresses of its own (`list`, or
/// addresses unique to this test).
fn daemon_with(list: Option<&str>) -> (Running, PathBuf) {
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let base = 10 + 2 * n as u8;
    let list = list.map(str::to_string).unwrap_or_else(|| {
        format!(
            "rxe0=rxe:127.0.11.{},rxe1=rxe:127.0.11.{}",
            base + 1,
            base + 2
        )
    });
    let drivers = softverbs_devices::devices_from(&list).unwrap();
    let devices: Vec<Arc<Device>> = drivers.into_iter().map(Device::new).collect();
    let path =
        std::env::temp_dir().join(format!("softverbsd-verbs-{}-{n}.sock", std::process::id()));
    let running = Server::bind(&path, Daemon::new(devices)).unwrap().spawn();
    (running, path)
}

/// Runs `f` with a pair of contexts (rxe0, rxe1) on each backend.
fn both(f: impl Fn(&Context, &Context)) {
    // Embedded devices of this test's own (the default addresses may be
    // taken by another process running tests beside this one).
    let n = NEXT.fetch_add(1, Ordering::SeqCst) as u8;
    let dev = |name: &str, host: u8| {
        let ip = format!("127.0.12.{}", 2 * n + host).parse().unwrap();
        Context::open_config(DeviceConfig::new(name, DeviceKind::Rxe, ip)).unwrap()
    };
    let (a, b) = (dev("rxe0", 1), dev("rxe1", 2));
    assert!(!a.is_daemon());
    f(&a, &b);
    let (_d, path) = daemon_with(None);
    let a = Context::open_with(&Backend::Daemon(path.clone()), "rxe0").unwrap();
    let b = Context::open_with(&Backend::Daemon(path), "rxe1").unwrap();
    assert!(a.is_daemon());
    assert_eq!((a.name(), b.name()), ("rxe0", "rxe1"));
    f(&a, &b);
}

struct Side {
    ctx: Context,
    pd: Pd,
    cq: Cq,
    mr: Mr,
    qp: Qp,
}

impl Side {
    fn new(ctx: &Context, qp_type: QpType, mem: usize, srq: Option<&Srq>) -> Side {
        let pd = ctx.alloc_pd().unwrap();
        Self::on(ctx, &pd, qp_type, mem, srq)
    }

    fn on(ctx: &Context, pd: &Pd, qp_type: QpType, mem: usize, srq: Option<&Srq>) -> Side {
        let cq = ctx.create_cq(256, None).unwrap();
        let mr = pd.reg_mr(mem, ALL).unwrap();
        let mut attr = QpInitAttr::new(qp_type, &cq, &cq);
        if let Some(s) = srq {
            attr = attr.with_srq(s);
        }
        let qp = pd.create_qp(&attr).unwrap();
        Side {
            ctx: ctx.clone(),
            pd: pd.clone(),
            cq,
            mr,
            qp,
        }
    }

    fn wait(&self) -> Wc {
        let wc = self
            .cq
            .wait_one(TIMEOUT)
            .unwrap_or_else(|e| panic!("{} ({:?}): {e}", self.ctx.name(), self.ctx));
        assert_eq!(wc.status, WcStatus::Success, "{wc:?}");
        wc
    }

    fn fill(&self, off: usize, len: usize, seed: u8) -> Vec<u8> {
        let v: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
            .collect();
        self.mr.write(off, &v).unwrap();
        v
    }

    fn bytes(&self, off: usize, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mr.read(off, &mut v).unwrap();
        v
    }
}

fn rc_pair(a: &Context, b: &Context, mem: usize) -> (Side, Side) {
    let sa = Side::new(a, QpType::Rc, mem, None);
    let sb = Side::new(b, QpType::Rc, mem, None);
    let o = ConnectOptions {
        max_rd_atomic: 8,
        max_dest_rd_atomic: 8,
        ..Default::default()
    };
    sa.qp.connect(&sb.qp.endpoint().unwrap(), &o).unwrap();
    sb.qp.connect(&sa.qp.endpoint().unwrap(), &o).unwrap();
    (sa, sb)
}

const SIZES: &[usize] = &[0, 1, 1023, 1024, 1025, 5 * 1024 + 7, MIB];

#[test]
fn rc_send_and_send_with_imm_on_both_backends() {
    both(|a, b| {
        let (a, b) = rc_pair(a, b, 2 * MIB);
        for (i, &len) in SIZES.iter().enumerate() {
            let imm = i % 2 == 1;
            let data = a.fill(0, len, i as u8);
            b.qp.post_recv(RecvWr::new(100 + i as u64, b.mr.sge(MIB, MIB as u32)))
                .unwrap();
            let sge = a.mr.sge(0, len as u32);
            let wr = if imm {
                SendWr::send_with_imm(i as u64, sge, 0xabc0 + i as u32)
            } else {
                SendWr::send(i as u64, sge)
            };
            a.qp.post_send(wr.signaled()).unwrap();
            let s = a.wait();
            assert_eq!((s.wr_id, s.opcode), (i as u64, WcOpcode::Send));
            let r = b.wait();
            assert_eq!(
                (r.wr_id, r.opcode, r.byte_len, r.qp_num),
                (100 + i as u64, WcOpcode::Recv, len as u32, b.qp.qpn())
            );
            assert_eq!(r.imm, imm.then_some(0xabc0 + i as u32));
            assert!(b.bytes(MIB, len) == data, "SEND of {len} bytes intact");
        }
    });
}

#[test]
fn rc_write_read_and_write_with_imm_on_both_backends() {
    both(|a, b| {
        let (a, b) = rc_pair(a, b, 2 * MIB);
        for (i, &len) in SIZES.iter().enumerate() {
            let data = a.fill(0, len, 7 + i as u8);
            let (addr, rkey) = (b.mr.addr() + 13, b.mr.rkey());
            a.qp.post_send(SendWr::write(i as u64, a.mr.sge(0, len as u32), addr, rkey).signaled())
                .unwrap();
            assert_eq!(a.wait().opcode, WcOpcode::RdmaWrite);
            assert!(b.bytes(13, len) == data, "WRITE of {len} bytes intact");
            // And back: READ it into the second half.
            a.qp.post_send(
                SendWr::read(i as u64, a.mr.sge(MIB, len as u32), addr, rkey).signaled(),
            )
            .unwrap();
            assert_eq!(a.wait().opcode, WcOpcode::RdmaRead);
            assert!(a.bytes(MIB, len) == data, "READ of {len} bytes intact");
        }
        b.qp.post_recv(RecvWr::new(7, b.mr.sge(0, 0))).unwrap();
        let addr = b.mr.addr();
        a.qp.post_send(
            SendWr::write_with_imm(8, a.mr.sge(0, 100), addr, b.mr.rkey(), 0x55).signaled(),
        )
        .unwrap();
        a.wait();
        let r = b.wait();
        assert_eq!(
            (r.wr_id, r.opcode, r.imm, r.byte_len),
            (7, WcOpcode::RecvRdmaWithImm, Some(0x55), 100)
        );
    });
}

#[test]
fn rc_atomics_on_both_backends() {
    both(|a, b| {
        let (a, b) = rc_pair(a, b, 4096);
        let cell = |s: &Side, off: usize| u64::from_ne_bytes(s.bytes(off, 8).try_into().unwrap());
        b.mr.write(64, &u64::MAX.to_ne_bytes()).unwrap();
        let (addr, rkey) = (b.mr.addr() + 64, b.mr.rkey());
        a.qp.post_send(SendWr::fetch_add(1, a.mr.sge(0, 8), addr, rkey, 2).signaled())
            .unwrap();
        assert_eq!(a.wait().opcode, WcOpcode::FetchAdd);
        assert_eq!((cell(&a, 0), cell(&b, 64)), (u64::MAX, 1));
        a.qp.post_send(SendWr::compare_swap(2, a.mr.sge(8, 8), addr, rkey, 1, 42).signaled())
            .unwrap();
        assert_eq!(a.wait().opcode, WcOpcode::CompSwap);
        assert_eq!((cell(&a, 8), cell(&b, 64)), (1, 42));
        for i in 0..8u64 {
            a.qp.post_send(
                SendWr::fetch_add(10 + i, a.mr.sge(16 + 8 * i as usize, 8), addr, rkey, 1)
                    .signaled(),
            )
            .unwrap();
        }
        for _ in 0..8 {
            a.wait();
        }
        assert_eq!(cell(&b, 64), 50);
    });
}

#[test]
fn srq_and_ud_on_both_backends() {
    both(|a, b| {
        // Two RC QPs of b share one SRQ.
        let pd_b = b.alloc_pd().unwrap();
        let srq = pd_b.create_srq(64, 1).unwrap();
        let b1 = Side::on(b, &pd_b, QpType::Rc, 8192, Some(&srq));
        let b2 = Side::on(b, &pd_b, QpType::Rc, 8192, Some(&srq));
        let a1 = Side::new(a, QpType::Rc, 8192, None);
        let a2 = Side::new(a, QpType::Rc, 8192, None);
        let o = ConnectOptions::default();
        for (x, y) in [(&a1, &b1), (&a2, &b2)] {
            x.qp.connect(&y.qp.endpoint().unwrap(), &o).unwrap();
            y.qp.connect(&x.qp.endpoint().unwrap(), &o).unwrap();
        }
        assert!(b1.qp.post_recv(RecvWr::new(0, b1.mr.sge(0, 1))).is_err());
        for i in 0..4u64 {
            srq.post_recv(RecvWr::new(i, b1.mr.sge(1024 * i as usize, 1024)))
                .unwrap();
        }
        for (k, x) in [&a1, &a2].into_iter().enumerate() {
            x.fill(0, 100, k as u8);
            x.qp.post_send(SendWr::send(k as u64, x.mr.sge(0, 100)).signaled())
                .unwrap();
            x.wait();
        }
        // Each QP's receive lands in its own CQ, from the shared pool.
        assert_eq!(b1.wait().qp_num, b1.qp.qpn());
        assert_eq!(b2.wait().qp_num, b2.qp.qpn());
        // UD with an address handle.
        let ua = Side::new(a, QpType::Ud, 8192, None);
        let ub = Side::new(b, QpType::Ud, 8192, None);
        ua.qp.connect(&ub.qp.endpoint().unwrap(), &o).unwrap();
        ub.qp.connect(&ua.qp.endpoint().unwrap(), &o).unwrap();
        let ah = ua
            .pd
            .create_ah(AhAttr {
                dgid: ub.qp.endpoint().unwrap().gid,
                sgid_index: 1,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
                sl: 0,
                port: 1,
            })
            .unwrap();
        ub.qp
            .post_recv(RecvWr::new(9, ub.mr.sge(0, 40 + 256)))
            .unwrap();
        let data = ua.fill(0, 256, 3);
        let dest = ah.dest(ub.qp.qpn(), o.qkey);
        ua.qp
            .post_send(SendWr::send(5, ua.mr.sge(0, 256)).signaled().to(dest))
            .unwrap();
        ua.wait();
        let r = ub.wait();
        assert_eq!((r.wr_id, r.byte_len), (9, 40 + 256));
        assert!(ub.bytes(40, 256) == data);
    });
}

/// A receive posted, then at once a datagram sent to it from another
/// context (another connection, so another ring worker): the receive must
/// be at the device when the datagram lands. The device reads the receive
/// ring itself when packets arrive; before, the sender's worker could win
/// the race and the datagram was dropped (about one in eight), leaving the
/// receiver waiting for a completion that never came.
#[test]
fn ud_receive_posted_before_the_send_is_never_missed() {
    both(|a, b| {
        let o = ConnectOptions::default();
        let ua = Side::new(a, QpType::Ud, 4096, None);
        let ub = Side::new(b, QpType::Ud, 4096, None);
        ua.qp.connect(&ua.qp.endpoint().unwrap(), &o).unwrap();
        ub.qp.connect(&ub.qp.endpoint().unwrap(), &o).unwrap();
        let ah = ua
            .pd
            .create_ah(AhAttr {
                dgid: ub.qp.endpoint().unwrap().gid,
                sgid_index: 1,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
                sl: 0,
                port: 1,
            })
            .unwrap();
        let dest = ah.dest(ub.qp.qpn(), o.qkey);
        for i in 0..1000u64 {
            ub.qp
                .post_recv(RecvWr::new(i, ub.mr.sge(0, 40 + 64)))
                .unwrap();
            ua.qp
                .post_send(SendWr::send(i, ua.mr.sge(0, 64)).signaled().to(dest))
                .unwrap();
            assert_eq!(ua.wait().wr_id, i);
            let r = ub
                .cq
                .wait_one(Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("datagram {i} lost: {e}"));
            assert_eq!(
                (r.wr_id, r.status, r.byte_len),
                (i, WcStatus::Success, 40 + 64)
            );
        }
    });
}

/// A completion channel serving two CQs reports the one that fired, and
/// only after it was armed; the solicited-only arm waits for a solicited
/// message; an SRQ falling below its limit raises the async event — on
/// both backends (on the daemon: the ring's wait word, the client's pump,
/// the event ring).
#[test]
fn completion_channels_and_async_events_on_both_backends() {
    both(|a, b| {
        let pd_a = a.alloc_pd().unwrap();
        let pd_b = b.alloc_pd().unwrap();
        let ch = b.create_comp_channel().unwrap();
        let idle = b.create_cq(16, Some(&ch)).unwrap();
        let cq_b = b.create_cq(64, Some(&ch)).unwrap();
        let srq = pd_b.create_srq(16, 1).unwrap();
        let mr_b = pd_b.reg_mr(64 * 1024, ALL).unwrap();
        let qb = pd_b
            .create_qp(&QpInitAttr::rc(&cq_b, &cq_b).with_srq(&srq))
            .unwrap();
        let sa = Side::on(a, &pd_a, QpType::Rc, 4096, None);
        let o = ConnectOptions::default();
        sa.qp.connect(&qb.endpoint().unwrap(), &o).unwrap();
        qb.connect(&sa.qp.endpoint().unwrap(), &o).unwrap();
        for i in 0..8u64 {
            srq.post_recv(RecvWr::new(i, mr_b.sge(1024 * i as usize, 1024)))
                .unwrap();
        }
        srq.arm_limit(6).unwrap();
        idle.req_notify(false).unwrap();
        cq_b.req_notify(false).unwrap();
        sa.qp
            .post_send(SendWr::send(1, sa.mr.sge(0, 8)).signaled())
            .unwrap();
        sa.wait();
        assert_eq!(ch.get_cq_event(Some(TIMEOUT)), Some(cq_b.id()));
        let wc = cq_b.poll_one().unwrap().expect("the completion that fired");
        assert_eq!((wc.status, wc.byte_len), (WcStatus::Success, 8));
        // Solicited only: an unsolicited message completes without an
        // event, the solicited one after it fires.
        cq_b.req_notify(true).unwrap();
        sa.qp
            .post_send(SendWr::send(2, sa.mr.sge(0, 8)).signaled())
            .unwrap();
        sa.wait();
        sa.qp
            .post_send(SendWr::send(3, sa.mr.sge(0, 8)).signaled().solicited())
            .unwrap();
        sa.wait();
        assert_eq!(ch.get_cq_event(Some(TIMEOUT)), Some(cq_b.id()));
        assert!(ch.try_get_cq_event().is_none(), "one event per arm");
        let mut v = Vec::new();
        while v.len() < 2 {
            cq_b.poll(2, &mut v).unwrap();
        }
        assert!(v[1].solicited && !v[0].solicited, "{v:?}");
        // Three receives taken of eight: below the limit of six.
        let ev = b.async_events().get(Some(TIMEOUT));
        assert_eq!(ev, Some(AsyncEvent::SrqLimitReached { srq: srq.id() }));
        drop(idle);
    });
}

#[test]
fn what_the_daemon_backend_does_not_offer_is_unsupported() {
    let (_d, path) = daemon_with(None);
    let ctx = Context::open_with(&Backend::Daemon(path), "rxe0").unwrap();
    let pd = ctx.alloc_pd().unwrap();
    let mut buf = vec![0u8; 64];
    // SAFETY: never reached: the daemon backend refuses raw memory.
    #[allow(unsafe_code)]
    let raw = unsafe { pd.reg_mr_raw(buf.as_mut_ptr(), buf.len(), ALL) };
    assert!(matches!(raw, Err(VerbsError::Unsupported { .. })));
    // A heap block cannot be passed to the daemon; a shared one can.
    assert!(pd.reg_block(Arc::new(MemBlock::new(64)), ALL).is_err());
    let mr = pd
        .reg_block(Arc::new(MemBlock::shared(64).unwrap()), ALL)
        .unwrap();
    assert_eq!(mr.len(), 64);
    assert!(Context::open_with(&Backend::Daemon("/nonexistent/sv.sock".into()), "rxe0").is_err());
}

/// Run by [`the_environment_picks_the_backend`] in a child process.
#[test]
#[ignore = "a child of the_environment_picks_the_backend"]
fn child_reports_backend() {
    let want = std::env::var("EXPECT_BACKEND").unwrap();
    let got = match Backend::from_env() {
        Ok(Backend::Embedded) => "embedded".to_string(),
        Ok(Backend::Daemon(p)) => format!("daemon {}", p.display()),
        Err(e) => format!("error {e}"),
    };
    assert_eq!(got, want);
    if want.starts_with("daemon") && !want.ends_with(".missing") {
        assert!(Context::open("rxe0").unwrap().is_daemon());
    }
}

#[test]
fn the_environment_picks_the_backend() {
    let (_d, path) = daemon_with(None);
    let missing = path.with_extension("missing");
    let sock = path.display().to_string();
    let cases: Vec<(Vec<(&str, &str)>, String)> = vec![
        // The socket answers: the daemon.
        (vec![("SOFTVERBS_SOCKET", &sock)], format!("daemon {sock}")),
        // Forced embedded although the daemon is there.
        (
            vec![
                ("SOFTVERBS_SOCKET", &sock),
                ("SOFTVERBS_BACKEND", "embedded"),
            ],
            "embedded".into(),
        ),
        // No socket: embedded.
        (
            vec![("SOFTVERBS_SOCKET", missing.to_str().unwrap())],
            "embedded".into(),
        ),
        // Asked for the daemon: the daemon's path, even if it is not there.
        (
            vec![
                ("SOFTVERBS_SOCKET", missing.to_str().unwrap()),
                ("SOFTVERBS_BACKEND", "daemon"),
            ],
            format!("daemon {}", missing.display()),
        ),
        (
            vec![("SOFTVERBS_BACKEND", "kernel")],
            "error invalid argument: SOFTVERBS_BACKEND=kernel: expected `embedded` or `daemon`"
                .into(),
        ),
    ];
    let exe = std::env::current_exe().unwrap();
    for (env, want) in cases {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args([
            "--exact",
            "child_reports_backend",
            "--ignored",
            "--nocapture",
        ])
        .env_remove("SOFTVERBS_BACKEND")
        .env_remove("SOFTVERBS_SOCKET")
        .env("EXPECT_BACKEND", &want);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{env:?} → {want}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The examples (all but the measuring one), run against a daemon that owns
/// the default devices (rxe0 on 127.0.0.1, rxe1 on 127.0.0.2): completion
/// channels, async events (the SRQ limit), memory windows and the tokio
/// adapter included. Skipped where the examples are not built (`cargo test
/// --test backends`).
#[test]
fn examples_run_on_the_daemon() {
    let exe = std::env::current_exe().unwrap();
    let dir: PathBuf = exe.parent().unwrap().parent().unwrap().join("examples");
    let names = [
        "rc_send_recv",
        "rdma_write_read",
        "atomics",
        "ud",
        "completion_channel",
        "srq",
        "memory_windows",
        "async_pingpong",
    ];
    if !dir.join(names[0]).exists() {
        println!("SKIPPED: examples not built at {}", dir.display());
        return;
    }
    // The default devices' names and addresses, on a port of their own (the
    // default one may be taken by another test process).
    let (_d, path) = daemon_with(Some("rxe0=rxe:127.0.0.1:14901,rxe1=rxe:127.0.0.2:14901"));
    for name in names {
        if !dir.join(name).exists() {
            println!("SKIPPED: example {name} not built");
            continue;
        }
        let out = std::process::Command::new(dir.join(name))
            .env("SOFTVERBS_SOCKET", &path)
            .env("SOFTVERBS_BACKEND", "daemon")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "example {name} on the daemon failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs `f` with a pair of `srd` contexts (efa0, efa1) on each backend
/// (127.0.17.x embedded, 127.0.18.x on a daemon of this test's own).
fn both_srd(f: impl Fn(&Context, &Context)) {
    let n = NEXT.fetch_add(1, Ordering::SeqCst) as u8;
    let dev = |name: &str, host: u8| {
        let ip = format!("127.0.17.{}", 2 * n + host).parse().unwrap();
        Context::open_config(DeviceConfig::new(name, DeviceKind::Srd, ip)).unwrap()
    };
    let (a, b) = (dev("efa0", 1), dev("efa1", 2));
    f(&a, &b);
    let list = format!(
        "efa0=srd:127.0.18.{},efa1=srd:127.0.18.{}",
        2 * n + 1,
        2 * n + 2
    );
    let (_d, path) = daemon_with(Some(&list));
    let a = Context::open_with(&Backend::Daemon(path.clone()), "efa0").unwrap();
    let b = Context::open_with(&Backend::Daemon(path), "efa1").unwrap();
    assert!(a.is_daemon());
    f(&a, &b);
}

/// SRD QPs (`efa::create_srd_qp`, the EFA driver namespace of the uAPI)
/// on both backends: the EFA attributes, SEND, SEND with immediate, RDMA
/// WRITE with and without immediate and RDMA READ, each work request
/// addressed UD-style (AH, remote QPN, Q_Key) — on the daemon through the
/// send ring — and what an rxe device refuses.
#[test]
fn srd_on_both_backends() {
    both_srd(|a, b| {
        let who = if a.is_daemon() { "daemon" } else { "embedded" };
        assert_eq!(a.query_device().unwrap().qp_types.names(), ["UD", "SRD"]);
        let attr = efa::query_device(a).unwrap();
        assert!(
            attr.has(efa::EfaDeviceAttr::CAPS_RDMA_READ | efa::EfaDeviceAttr::CAPS_RDMA_WRITE),
            "{who}: {attr:?}"
        );
        assert_eq!(efa::query_device(b).unwrap(), attr, "{who}");
        let (pa, pb) = (a.alloc_pd().unwrap(), b.alloc_pd().unwrap());
        let (ca, cb) = (
            a.create_cq(64, None).unwrap(),
            b.create_cq(64, None).unwrap(),
        );
        let acc = Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ;
        let (ma, mb) = (
            pa.reg_mr(1 << 20, acc).unwrap(),
            pb.reg_mr(1 << 20, acc).unwrap(),
        );
        let init = |cq: &Cq| QpInitAttr {
            max_inline_data: attr.inline_buf_size.into(),
            ..QpInitAttr::ud(cq, cq)
        };
        let qa = efa::create_srd_qp(&pa, &init(&ca), 0).unwrap();
        let qb = efa::create_srd_qp(&pb, &init(&cb), 0).unwrap();
        let o = ConnectOptions::default();
        qa.connect(&qb.endpoint().unwrap(), &o).unwrap();
        qb.connect(&qa.endpoint().unwrap(), &o).unwrap();
        let ah = pa
            .create_ah(AhAttr {
                dgid: b.query_gid(1, 1).unwrap(),
                sgid_index: 1,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
                sl: 0,
                port: 1,
            })
            .unwrap();
        let to_b = ah.dest(qb.qpn(), o.qkey);
        let wait = |cq: &Cq| {
            let wc = cq
                .wait_one(TIMEOUT)
                .unwrap_or_else(|e| panic!("{who}: {e}"));
            assert_eq!(wc.status, WcStatus::Success, "{who}: {wc:?}");
            wc
        };

        // SEND and SEND with immediate (one MTU at most), inline too.
        qb.post_recv(RecvWr::new(1, mb.sge(0, 4096))).unwrap();
        qb.post_recv(RecvWr::new(2, mb.sge(4096, 4096))).unwrap();
        ma.write(0, b"hello, SRD").unwrap();
        qa.post_send(SendWr::send(10, ma.sge(0, 10)).to(to_b).signaled())
            .unwrap();
        ma.write(64, b"with imm").unwrap();
        qa.post_send(
            SendWr::send_with_imm(11, ma.sge(64, 8), 0x5eed)
                .to(to_b)
                .signaled(),
        )
        .unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(wait(&cb));
        }
        // Reliable but unordered: sort by receive WR.
        got.sort_by_key(|wc| wc.wr_id);
        assert_eq!(
            (got[0].wr_id, got[0].byte_len, got[0].src_qp, got[0].imm),
            (1, 10, qa.qpn(), None),
            "{who}"
        );
        assert_eq!(
            (got[1].wr_id, got[1].byte_len, got[1].imm),
            (2, 8, Some(0x5eed)),
            "{who}"
        );
        let mut buf = [0u8; 10];
        mb.read(0, &mut buf).unwrap();
        assert_eq!(&buf, b"hello, SRD", "{who}");
        let mut buf = [0u8; 8];
        mb.read(4096, &mut buf).unwrap();
        assert_eq!(&buf, b"with imm", "{who}");
        let mut ids = [wait(&ca).wr_id, wait(&ca).wr_id];
        ids.sort_unstable();
        assert_eq!(ids, [10, 11], "{who}");
        // Inline (up to inline_buf_size bytes).
        qb.post_recv(RecvWr::new(4, mb.sge(0, 4096))).unwrap();
        qa.post_send(SendWr::send_inline(12, b"inline!").to(to_b).signaled())
            .unwrap();
        assert_eq!(wait(&cb).byte_len, 7, "{who}");
        assert_eq!(wait(&ca).wr_id, 12, "{who}");
        let mut buf = [0u8; 7];
        mb.read(0, &mut buf).unwrap();
        assert_eq!(&buf, b"inline!", "{who}");

        // RDMA WRITE, then WRITE with immediate (it consumes a receive).
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
        ma.write(8192, &data).unwrap();
        qa.post_send(
            SendWr::write(20, ma.sge(8192, 70_000), mb.addr() + 8192, mb.rkey())
                .to(to_b)
                .signaled(),
        )
        .unwrap();
        let wc = wait(&ca);
        assert_eq!((wc.wr_id, wc.opcode), (20, WcOpcode::RdmaWrite), "{who}");
        let mut back = vec![0u8; 70_000];
        mb.read(8192, &mut back).unwrap();
        assert!(back == data, "{who}: WRITE data differ");
        qb.post_recv(RecvWr::new(3, mb.sge(0, 0))).unwrap();
        qa.post_send(
            SendWr::write_with_imm(21, ma.sge(8192, 300), mb.addr() + 200_000, mb.rkey(), 77)
                .to(to_b)
                .signaled(),
        )
        .unwrap();
        assert_eq!(wait(&ca).wr_id, 21, "{who}");
        let wc = wait(&cb);
        assert_eq!(
            (wc.wr_id, wc.opcode, wc.imm, wc.byte_len),
            (3, WcOpcode::RecvRdmaWithImm, Some(77), 300),
            "{who}"
        );
        let mut back = vec![0u8; 300];
        mb.read(200_000, &mut back).unwrap();
        assert!(back == data[..300], "{who}: WRITE_IMM data differ");

        // RDMA READ.
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        mb.write(300_000, &data).unwrap();
        qa.post_send(
            SendWr::read(30, ma.sge(400_000, 100_000), mb.addr() + 300_000, mb.rkey())
                .to(to_b)
                .signaled(),
        )
        .unwrap();
        let wc = wait(&ca);
        assert_eq!((wc.wr_id, wc.opcode), (30, WcOpcode::RdmaRead), "{who}");
        let mut back = vec![0u8; 100_000];
        ma.read(400_000, &mut back).unwrap();
        assert!(back == data, "{who}: READ data differ");

        // A wrong rkey is the peer's error, reported with EFA's status.
        qa.post_send(
            SendWr::write(31, ma.sge(0, 64), mb.addr(), mb.rkey() ^ 0xff00)
                .to(to_b)
                .signaled(),
        )
        .unwrap();
        let wc = ca.wait_one(TIMEOUT).unwrap();
        assert_eq!(
            (wc.wr_id, wc.status, wc.vendor_err),
            (31, WcStatus::RemAccessErr, 7), // REMOTE_ERROR_BAD_ADDRESS
            "{who}: {wc:?}"
        );
        // A READ the target refuses completes with the same error, and the
        // QPs go on: a good READ after it.
        qa.post_send(
            SendWr::read(32, ma.sge(0, 64), mb.addr(), mb.rkey() ^ 0xff00)
                .to(to_b)
                .signaled(),
        )
        .unwrap();
        let wc = ca.wait_one(TIMEOUT).unwrap();
        assert_eq!(
            (wc.wr_id, wc.status, wc.vendor_err),
            (32, WcStatus::RemAccessErr, 7),
            "{who}: {wc:?}"
        );
        qa.post_send(
            SendWr::read(33, ma.sge(0, 64), mb.addr() + 300_000, mb.rkey())
                .to(to_b)
                .signaled(),
        )
        .unwrap();
        assert_eq!(wait(&ca).wr_id, 33, "{who}");
    });
}

/// The EFA namespace on a device that is not EFA-like is refused, on both
/// backends, naming what is missing.
#[test]
fn efa_calls_on_an_rxe_device_are_unsupported_on_both_backends() {
    both(|a, _| {
        let e = efa::query_device(a).unwrap_err();
        assert!(matches!(e, VerbsError::Unsupported { .. }), "{e}");
        let pd = a.alloc_pd().unwrap();
        let cq = a.create_cq(8, None).unwrap();
        let e = efa::create_srd_qp(&pd, &QpInitAttr::ud(&cq, &cq), 0).unwrap_err();
        assert!(matches!(e, VerbsError::Unsupported { .. }), "{e}");
        assert!(e.to_string().contains("SRD"), "{e}");
    });
}

/// Type 2 windows bound and invalidated by work requests (BIND_MW,
/// LOCAL_INV), `Qp::local_invalidate` (at once, one uAPI call), and type 1
/// binds posted on the send queue (`Mw::post_bind`, a type 1 bind WQE on
/// the daemon's send ring), in order with the work before them, on both
/// backends.
#[test]
fn windows_and_local_invalidation_on_both_backends() {
    both(|a, b| {
        let who = if a.is_daemon() { "daemon" } else { "embedded" };
        let (a, b) = rc_pair(a, b, 64 * 1024);
        let rw = Access::REMOTE_WRITE | Access::REMOTE_READ;
        let run = |s: &Side, wr: SendWr| {
            s.qp.post_send(wr.signaled()).unwrap();
            s.cq.wait_one(TIMEOUT)
                .unwrap_or_else(|e| panic!("{who}: {e}"))
        };
        let write_status = |off: u64, rkey: u32, wr_id: u64| {
            run(&a, SendWr::write(wr_id, a.mr.sge(0, 64), off, rkey)).status
        };
        a.fill(0, 64, 3);

        // Type 2: BIND_MW by work request, used, LOCAL_INV by work request.
        let mw = b.pd.alloc_mw(MwType::Type2).unwrap();
        let (wr, rkey) = SendWr::bind_mw(1, &mw, &b.mr, 4096, 4096, rw);
        let wc = run(&b, wr);
        assert_eq!(
            (wc.wr_id, wc.opcode, wc.status),
            (1, WcOpcode::BindMw, WcStatus::Success),
            "{who}"
        );
        let win = b.mr.addr() + 4096;
        assert_eq!(write_status(win, rkey, 2), WcStatus::Success, "{who}");
        let wc = run(&b, SendWr::local_inv(3, rkey));
        assert_eq!(
            (wc.wr_id, wc.opcode, wc.status),
            (3, WcOpcode::LocalInv, WcStatus::Success),
            "{who}"
        );
        assert_eq!(write_status(win, rkey, 4), WcStatus::RemAccessErr, "{who}");
        // The error moved A's QP to error: a fresh pair from here on.
        drop(mw);
        let (a, b) = (a.ctx.clone(), b.ctx.clone());
        let (a, b) = rc_pair(&a, &b, 64 * 1024);
        let run = |s: &Side, wr: SendWr| {
            s.qp.post_send(wr.signaled()).unwrap();
            s.cq.wait_one(TIMEOUT)
                .unwrap_or_else(|e| panic!("{who}: {e}"))
        };
        a.fill(0, 64, 5);

        // Qp::local_invalidate: at once, no completion. Another context's
        // rkey is not this QP's PD's: refused, the region untouched.
        let mw = b.pd.alloc_mw(MwType::Type2).unwrap();
        let (wr, rkey) = SendWr::bind_mw(5, &mw, &b.mr, 0, 8192, rw);
        assert_eq!(run(&b, wr).status, WcStatus::Success, "{who}");
        assert!(a.qp.local_invalidate(b.mr.rkey()).is_err(), "{who}");
        let e = b.qp.local_invalidate(0x00ab_cd00).unwrap_err();
        assert!(e.to_string().contains("0xabcd00"), "{who}: {e}");
        b.qp.local_invalidate(rkey).unwrap();
        // Nothing came to B's CQ.
        assert!(b.cq.wait_one(Duration::from_millis(50)).is_err(), "{who}");
        // The window is dead at once.
        let wc = run(&a, SendWr::write(12, a.mr.sge(0, 64), b.mr.addr(), rkey));
        assert_eq!(wc.status, WcStatus::RemAccessErr, "{who}");
        // That error moved A's QP to error: a fresh pair again.
        let (a, b) = (a.ctx.clone(), b.ctx.clone());
        let (a, b) = rc_pair(&a, &b, 64 * 1024);
        let run = |s: &Side, wr: SendWr| {
            s.qp.post_send(wr.signaled()).unwrap();
            s.cq.wait_one(TIMEOUT)
                .unwrap_or_else(|e| panic!("{who}: {e}"))
        };
        a.fill(0, 64, 6);

        // Type 1 bind posted on the send queue: completes after the READ
        // before it; the window grants what it was bound with.
        let mw1 = b.pd.alloc_mw(MwType::Type1).unwrap();
        b.qp.post_send(SendWr::read(6, b.mr.sge(16384, 64), a.mr.addr(), a.mr.rkey()).signaled())
            .unwrap();
        let rkey1 = mw1
            .post_bind(&b.qp, 7, Some((&b.mr, 0, 4096)), Access::REMOTE_WRITE, true)
            .unwrap();
        assert_eq!(mw1.rkey(), rkey1, "{who}");
        let first = b.cq.wait_one(TIMEOUT).unwrap();
        let second = b.cq.wait_one(TIMEOUT).unwrap();
        assert_eq!(
            (first.wr_id, first.opcode, first.status),
            (6, WcOpcode::RdmaRead, WcStatus::Success),
            "{who}"
        );
        assert_eq!(
            (second.wr_id, second.opcode, second.status),
            (7, WcOpcode::BindMw, WcStatus::Success),
            "{who}"
        );
        let wc = run(
            &a,
            SendWr::write(8, a.mr.sge(0, 64), b.mr.addr() + 100, rkey1),
        );
        assert_eq!(wc.status, WcStatus::Success, "{who}");
        assert_eq!(b.bytes(100, 64), a.bytes(0, 64), "{who}");
        // Unbound: the key is dead.
        let none = mw1.post_bind(&b.qp, 9, None, Access::NONE, true).unwrap();
        assert_eq!(b.cq.wait_one(TIMEOUT).unwrap().wr_id, 9, "{who}");
        let wc = run(&a, SendWr::write(11, a.mr.sge(0, 64), b.mr.addr(), none));
        assert_eq!(wc.status, WcStatus::RemAccessErr, "{who}");
        // A bind beyond the region completes with MW_BIND_ERR (and moves
        // B's QP to error). B's QP went to error with A's refused WRITE
        // (a remote access error at the responder): a fresh pair.
        let (a, b) = (a.ctx.clone(), b.ctx.clone());
        let (_a, b) = rc_pair(&a, &b, 64 * 1024);
        let mw1 = b.pd.alloc_mw(MwType::Type1).unwrap();
        mw1.post_bind(
            &b.qp,
            10,
            Some((&b.mr, 60_000, 8192)),
            Access::REMOTE_READ,
            true,
        )
        .unwrap();
        let wc = b.cq.wait_one(TIMEOUT).unwrap();
        assert_eq!((wc.wr_id, wc.status), (10, WcStatus::MwBindErr), "{who}");
    });
}

/// `Context::counters` on both backends: the device's packets, bytes and
/// QP counters grow with the traffic (on the daemon, asked of it with
/// `DEVICE.query_device_counters`).
#[test]
fn counters_on_both_backends() {
    both(|a, b| {
        let who = if a.is_daemon() { "daemon" } else { "embedded" };
        let (a0, b0) = (a.query_counters().unwrap(), b.query_counters().unwrap());
        let (sa, sb) = rc_pair(a, b, 64 * 1024);
        sa.fill(0, 4096, 1);
        for i in 0..10 {
            sa.qp
                .post_send(
                    SendWr::write(i, sa.mr.sge(0, 4096), sb.mr.addr(), sb.mr.rkey()).signaled(),
                )
                .unwrap();
            sa.wait();
        }
        let (a1, b1) = (a.query_counters().unwrap(), b.query_counters().unwrap());
        assert!(a1.sent_pkts >= a0.sent_pkts + 10, "{who}: {a0:?} -> {a1:?}");
        assert!(a1.sent_bytes >= a0.sent_bytes + 40_960, "{who}: {a1:?}");
        assert!(b1.rcvd_pkts >= b0.rcvd_pkts + 10, "{who}: {b0:?} -> {b1:?}");
        assert!(b1.qp.acks_sent > b0.qp.acks_sent, "{who}: {b1:?}");
        assert!(a.counters().sent_pkts >= a1.sent_pkts, "{who}");
    });
}

/// `Context::alloc_block`: a buffer the application owns and registers
/// (`Pd::reg_block`) or swaps into a region (`Mr::rereg`), of the kind
/// each backend can register (heap; a sealed memfd on the daemon). A peer
/// writes into it, then into its replacement, with the same rkey.
#[test]
fn application_blocks_on_both_backends() {
    both(|a, b| {
        let who = if a.is_daemon() { "daemon" } else { "embedded" };
        let (sa, sb) = rc_pair(a, b, 64 * 1024);
        let block = b.alloc_block(8192).unwrap();
        assert_eq!(block.memfd().is_some(), b.is_daemon(), "{who}");
        block.write(0, b"untouched").unwrap();
        let mr = sb.pd.reg_block(block.clone(), ALL).unwrap();
        assert_eq!((mr.addr(), mr.len()), (block.addr(), 8192), "{who}");
        let data = sa.fill(0, 4096, 9);
        sa.qp
            .post_send(SendWr::write(1, sa.mr.sge(0, 4096), mr.addr() + 100, mr.rkey()).signaled())
            .unwrap();
        assert_eq!(sa.wait().wr_id, 1, "{who}");
        let mut got = vec![0u8; 4096];
        block.read(100, &mut got).unwrap();
        assert!(got == data, "{who}: the block has the WRITE's bytes");
        let mut head = [0u8; 9];
        block.read(0, &mut head).unwrap();
        assert_eq!(&head, b"untouched", "{who}");
        // Swapped for a bigger block of the same kind: same rkey.
        let bigger = b.alloc_block(16384).unwrap();
        mr.rereg(Rereg::new().block(bigger.clone())).unwrap();
        assert_eq!((mr.addr(), mr.len()), (bigger.addr(), 16384), "{who}");
        sa.qp
            .post_send(
                SendWr::write(2, sa.mr.sge(0, 4096), mr.addr() + 12000, mr.rkey()).signaled(),
            )
            .unwrap();
        assert_eq!(sa.wait().wr_id, 2, "{who}");
        let mut got = vec![0u8; 4096];
        bigger.read(12000, &mut got).unwrap();
        assert!(got == data, "{who}: the new block has the WRITE's bytes");
    });
}

/// Run by [`devices_and_counters_follow_the_backend`] in a child process
/// whose environment picks the daemon.
#[test]
#[ignore = "a child of devices_and_counters_follow_the_backend"]
fn child_lists_the_daemons_devices() {
    let list = devices().unwrap();
    let names: Vec<&str> = list.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["rxe7", "efa7"]);
    let kinds: Vec<&str> = list.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(kinds, ["rxe", "srd"]);
    for d in &list {
        let ctx = Context::open(&d.name).unwrap();
        assert!(ctx.is_daemon());
        assert_eq!(d.caps, ctx.query_device().unwrap(), "{}", d.name);
        assert_eq!(d.ports.len(), 1, "{}", d.name);
        assert_eq!(d.ports[0], ctx.query_port(1).unwrap(), "{}", d.name);
        assert!(d.gids.len() >= 2, "{}: {:?}", d.name, d.gids);
        assert_eq!(d.gids[1], ctx.query_gid(1, 1).unwrap(), "{}", d.name);
        assert_eq!(d.node_guid, d.caps.node_guid);
    }
    // The daemon's counters of a device, by name.
    let c = counters("rxe7").unwrap();
    assert_eq!(c, Context::open("rxe7").unwrap().counters());
    assert!(counters("rxe0").is_err(), "not a device of this daemon");
}

/// `softverbs::devices()` and `softverbs::counters(name)` list and read
/// the devices of the backend `Context::open` uses: with the daemon picked
/// by the environment, the daemon's (checked in a child process, whose
/// environment it owns).
#[test]
fn devices_and_counters_follow_the_backend() {
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let list = format!(
        "rxe7=rxe:127.0.19.{},efa7=srd:127.0.19.{}",
        2 * n + 1,
        2 * n + 2
    );
    let (_d, path) = daemon_with(Some(&list));
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_lists_the_daemons_devices",
            "--ignored",
            "--nocapture",
        ])
        .env("SOFTVERBS_BACKEND", "daemon")
        .env("SOFTVERBS_SOCKET", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
