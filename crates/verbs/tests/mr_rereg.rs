//! Regions addressed by an iova other than their memory's address
//! (`ibv_reg_mr_iova2`) and re-registered in place (`ibv_rereg_mr`), on
//! both backends: embedded devices and a `softverbsd` started in this
//! process. Devices on 127.0.31.x / 127.0.32.x, of this file only.

#![allow(clippy::disallowed_methods)] // tests wait on the wall clock

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use softverbs::*;
use softverbs_core::Device;
use softverbs_daemon::{Daemon, Server};

const TIMEOUT: Duration = Duration::from_secs(20);
const RW: Access = Access(Access::LOCAL_WRITE.0 | Access::REMOTE_WRITE.0 | Access::REMOTE_READ.0);

static NEXT: AtomicU8 = AtomicU8::new(1);

/// Runs `f` on two connected devices of each backend.
fn both(f: impl Fn(&Context, &Context)) {
    let n = NEXT.fetch_add(2, Ordering::SeqCst);
    let dev = |name: &str, host: u8| {
        let ip = format!("127.0.31.{}", n + host).parse().unwrap();
        Context::open_config(DeviceConfig::new(name, DeviceKind::Rxe, ip)).unwrap()
    };
    let (a, b) = (dev("rxe0", 0), dev("rxe1", 1));
    f(&a, &b);
    let list = format!("rxe0=rxe:127.0.32.{},rxe1=rxe:127.0.32.{}", n, n + 1);
    let drivers = softverbs_devices::devices_from(&list).unwrap();
    let devices: Vec<Arc<Device>> = drivers.into_iter().map(Device::new).collect();
    let path = std::env::temp_dir().join(format!(
        "softverbsd-mr-rereg-{}-{n}.sock",
        std::process::id()
    ));
    let _running = Server::bind(&path, Daemon::new(devices)).unwrap().spawn();
    let a = Context::open_with(&Backend::Daemon(path.clone()), "rxe0").unwrap();
    let b = Context::open_with(&Backend::Daemon(path), "rxe1").unwrap();
    assert!(a.is_daemon());
    f(&a, &b);
}

struct Side {
    pd: Pd,
    cq: Cq,
    mr: Mr,
    qp: Qp,
}

fn side(ctx: &Context, access: Access) -> Side {
    let pd = ctx.alloc_pd().unwrap();
    let cq = ctx.create_cq(64, None).unwrap();
    let mr = pd.reg_mr(8192, access).unwrap();
    let qp = pd.create_qp(&QpInitAttr::rc(&cq, &cq)).unwrap();
    Side { pd, cq, mr, qp }
}

fn pair(a: &Context, b: &Context, access: Access) -> (Side, Side) {
    let (sa, sb) = (side(a, RW), side(b, access));
    sa.qp
        .connect(&sb.qp.endpoint().unwrap(), &ConnectOptions::default())
        .unwrap();
    sb.qp
        .connect(&sa.qp.endpoint().unwrap(), &ConnectOptions::default())
        .unwrap();
    (sa, sb)
}

fn run(s: &Side, wr: SendWr) -> Wc {
    s.qp.post_send(wr.signaled()).unwrap();
    s.cq.wait_one(TIMEOUT).unwrap()
}

fn reset(s: &Side, peer: &Side) {
    s.qp.modify(&ModifyAttrs {
        qp_state: Some(QpState::Reset),
        ..Default::default()
    })
    .unwrap();
    s.qp.connect(&peer.qp.endpoint().unwrap(), &ConnectOptions::default())
        .unwrap();
}

#[test]
fn iova_regions_are_addressed_by_their_iova_locally_and_remotely() {
    both(|a, b| {
        let sa = side(a, RW);
        let sb = side(b, RW);
        let iova_a = 0x7f00_0000_0000u64;
        let iova_b = 0x10_0000_0000u64;
        let la = sa.pd.reg_mr_iova(4096, iova_a, RW).unwrap();
        let rb = sb.pd.reg_mr_iova(8192, iova_b, RW).unwrap();
        assert_eq!((la.addr(), rb.addr(), rb.len()), (iova_a, iova_b, 8192));
        assert_ne!(la.block().unwrap().addr(), iova_a);
        sa.qp
            .connect(&sb.qp.endpoint().unwrap(), &ConnectOptions::default())
            .unwrap();
        sb.qp
            .connect(&sa.qp.endpoint().unwrap(), &ConnectOptions::default())
            .unwrap();
        la.write(100, b"through the iova").unwrap();
        // The local SGE names the iova too (la.sge uses la.addr()).
        let wc = run(
            &sa,
            SendWr::write(1, la.sge(100, 16), iova_b + 5000, rb.rkey()),
        );
        assert_eq!(wc.status, WcStatus::Success, "{wc:?}");
        let mut out = [0u8; 16];
        rb.read(5000, &mut out).unwrap();
        assert_eq!(&out, b"through the iova");
        // The memory's host address means nothing to the region.
        let host = rb.block().unwrap().addr();
        let wc = run(&sa, SendWr::write(2, la.sge(100, 16), host, rb.rkey()));
        assert_eq!(wc.status, WcStatus::RemAccessErr, "{wc:?}");
        // An iova at another offset within a page than the memory's.
        let e = sb.pd.reg_mr_iova(64, iova_b + 8, RW).unwrap_err();
        assert!(e.to_string().contains("page offset"), "{e}");
    });
}

#[test]
fn rereg_keeps_the_rkey_and_moves_memory_access_and_pd() {
    both(|a, b| {
        let (sa, sb) = pair(a, b, RW);
        let rkey = sb.mr.rkey();
        sa.mr.write(0, b"first").unwrap();
        let wc = run(&sa, SendWr::write(1, sa.mr.sge(0, 5), sb.mr.addr(), rkey));
        assert_eq!(wc.status, WcStatus::Success);
        let old = sb.mr.block().unwrap();

        // New memory (shared, so the daemon backend can map it): the same
        // rkey reaches the new buffer at its address.
        let new = Arc::new(if b.is_daemon() {
            MemBlock::shared(16384).unwrap()
        } else {
            MemBlock::new(16384)
        });
        sb.mr.rereg(Rereg::new().block(new.clone())).unwrap();
        assert_eq!((sb.mr.rkey(), sb.mr.lkey()), (rkey, rkey));
        assert_eq!((sb.mr.addr(), sb.mr.len()), (new.addr(), 16384));
        sa.mr.write(0, b"second").unwrap();
        let wc = run(
            &sa,
            SendWr::write(2, sa.mr.sge(0, 6), sb.mr.addr() + 10000, rkey),
        );
        assert_eq!(wc.status, WcStatus::Success, "{wc:?}");
        let mut out = [0u8; 6];
        new.read(10000, &mut out).unwrap();
        assert_eq!(&out, b"second");
        let mut first = [0u8; 5];
        old.read(0, &mut first).unwrap();
        assert_eq!(&first, b"first", "the old buffer is no longer written");

        // With an iova of its own.
        let again = Arc::new(if b.is_daemon() {
            MemBlock::shared(4096).unwrap()
        } else {
            MemBlock::new(4096)
        });
        sb.mr
            .rereg(Rereg::new().block(again.clone()).iova(0x5000_0000))
            .unwrap();
        assert_eq!(sb.mr.addr(), 0x5000_0000);
        let wc = run(&sa, SendWr::write(3, sa.mr.sge(0, 6), 0x5000_0010, rkey));
        assert_eq!(wc.status, WcStatus::Success, "{wc:?}");
        again.read(0x10, &mut out).unwrap();
        assert_eq!(&out, b"second");

        // Access without REMOTE_WRITE: the same WRITE is refused.
        sb.mr
            .rereg(Rereg::new().access(Access::LOCAL_WRITE))
            .unwrap();
        let wc = run(&sa, SendWr::write(4, sa.mr.sge(0, 6), 0x5000_0010, rkey));
        assert_eq!(wc.status, WcStatus::RemAccessErr, "{wc:?}");
        reset(&sa, &sb);
        reset(&sb, &sa);
        sb.mr.rereg(Rereg::new().access(RW)).unwrap();
        let wc = run(&sa, SendWr::write(5, sa.mr.sge(0, 6), 0x5000_0010, rkey));
        assert_eq!(wc.status, WcStatus::Success, "{wc:?}");

        // Another PD: the QP of the old PD no longer reaches it.
        let pd2 = b.alloc_pd().unwrap();
        sb.mr.rereg(Rereg::new().pd(&pd2)).unwrap();
        let wc = run(&sa, SendWr::write(6, sa.mr.sge(0, 6), 0x5000_0010, rkey));
        assert_eq!(wc.status, WcStatus::RemAccessErr, "{wc:?}");
        reset(&sa, &sb);
        reset(&sb, &sa);
        sb.mr.rereg(Rereg::new().pd(&sb.pd)).unwrap();
        let wc = run(&sa, SendWr::write(7, sa.mr.sge(0, 6), 0x5000_0010, rkey));
        assert_eq!(wc.status, WcStatus::Success, "{wc:?}");

        // Errors leave it as it was.
        let e = sb.mr.rereg(Rereg::new()).unwrap_err();
        assert!(e.to_string().contains("changes nothing"), "{e}");
        let e = sb
            .mr
            .rereg(Rereg::new().access(Access::REMOTE_WRITE))
            .unwrap_err();
        assert!(e.to_string().contains("LOCAL_WRITE"), "{e}");
        let e = sb.mr.rereg(Rereg::new().iova(0x1000)).unwrap_err();
        assert!(e.to_string().contains("iova"), "{e}");
        assert_eq!((sb.mr.addr(), sb.mr.rkey()), (0x5000_0000, rkey));
    });
}

#[test]
fn a_region_with_a_window_bound_is_not_reregistered() {
    let n = NEXT.fetch_add(2, Ordering::SeqCst);
    let dev = |name: &str, host: u8| {
        let ip = format!("127.0.31.{}", n + host).parse().unwrap();
        Context::open_config(DeviceConfig::new(name, DeviceKind::Rxe, ip)).unwrap()
    };
    let (a, b) = (dev("rxe0", 0), dev("rxe1", 1));
    let (_sa, sb) = pair(&a, &b, RW | Access::MW_BIND);
    let mw = sb.pd.alloc_mw(MwType::Type1).unwrap();
    mw.bind(&sb.qp, &sb.mr, 0, 64, Access::REMOTE_READ).unwrap();
    let e = sb
        .mr
        .rereg(Rereg::new().access(Access::LOCAL_WRITE))
        .unwrap_err();
    assert!(matches!(e, VerbsError::Busy { .. }), "{e}");
    // Nor deregistered: it stays registered and usable.
    let e = sb.mr.dereg().unwrap_err();
    assert!(matches!(e, VerbsError::Busy { .. }), "{e}");
    drop(mw);
    sb.mr
        .rereg(Rereg::new().access(Access::LOCAL_WRITE))
        .unwrap();
    sb.mr.dereg().unwrap();
    assert!(sb.mr.dereg().is_err(), "a second dereg");
    assert!(
        sb.mr.rereg(Rereg::new().access(RW)).is_err(),
        "a dead region"
    );
}

#[test]
fn rereg_over_raw_memory() {
    let n = NEXT.fetch_add(2, Ordering::SeqCst);
    let ip = format!("127.0.31.{n}").parse().unwrap();
    let ctx = Context::open_config(DeviceConfig::new("rxe0", DeviceKind::Rxe, ip)).unwrap();
    let pd = ctx.alloc_pd().unwrap();
    let mr = pd.reg_mr(4096, RW).unwrap();
    let mut buf = vec![0u8; 100];
    // SAFETY: `buf` outlives `mr` (dropped below first) and is not touched
    // while the region may be accessed.
    #[allow(unsafe_code)]
    unsafe {
        mr.rereg(Rereg::new().raw(buf.as_mut_ptr(), buf.len()))
            .unwrap()
    };
    assert_eq!((mr.addr(), mr.len()), (buf.as_ptr() as u64, 100));
    assert!(mr.block().is_none());
    assert!(mr.read(0, &mut [0u8; 1]).is_err());
    drop(mr);
    drop(buf);
}
