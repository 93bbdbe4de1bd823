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
