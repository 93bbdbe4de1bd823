//! SRD through the public API (`softverbs::efa`) on both backends: two
//! `srd` devices of this test process (127.0.6.1 and 127.0.6.2, set in
//! SOFTVERBS_DEVICES before the first device is opened; one test, so no
//! race on it), then two devices of a `softverbsd` started in this process
//! on a socket of its own (127.0.6.3 and 127.0.6.4), reached through the
//! socket and the rings as another process would.

use std::sync::Arc;
use std::time::Duration;

use softverbs::*;
use softverbs_core::Device;
use softverbs_daemon::{Daemon, Server};

#[test]
fn srd_through_the_public_api() {
    std::env::set_var(
        "SOFTVERBS_DEVICES",
        "efa0=srd:127.0.6.1:mtu=4096,efa1=srd:127.0.6.2:mtu=4096",
    );
    std::env::set_var("SOFTVERBS_BACKEND", "embedded");
    let (a, b) = (
        Context::open("efa0").unwrap(),
        Context::open("efa1").unwrap(),
    );
    assert!(!a.is_daemon());
    run(&a, &b);

    let drivers =
        softverbs_devices::devices_from("efa0=srd:127.0.6.3:mtu=4096,efa1=srd:127.0.6.4:mtu=4096")
            .unwrap();
    let devices: Vec<Arc<Device>> = drivers.into_iter().map(Device::new).collect();
    let path = std::env::temp_dir().join(format!("softverbsd-srd-{}.sock", std::process::id()));
    let _daemon = Server::bind(&path, Daemon::new(devices)).unwrap().spawn();
    let backend = Backend::Daemon(path);
    let (a, b) = (
        Context::open_with(&backend, "efa0").unwrap(),
        Context::open_with(&backend, "efa1").unwrap(),
    );
    assert!(a.is_daemon());
    run(&a, &b);
}

fn run(a: &Context, b: &Context) {
    let caps = a.query_device().unwrap();
    assert_eq!(caps.qp_types.names(), ["UD", "SRD"]);
    let attr = efa::query_device(a).unwrap();
    assert!(attr.has(efa::EfaDeviceAttr::CAPS_RDMA_READ | efa::EfaDeviceAttr::CAPS_RDMA_WRITE));

    let (pa, pb) = (a.alloc_pd().unwrap(), b.alloc_pd().unwrap());
    let (ca, cb) = (
        a.create_cq(64, None).unwrap(),
        b.create_cq(64, None).unwrap(),
    );
    // RC is refused up front, naming what is missing.
    let e = pa.create_qp(&QpInitAttr::rc(&ca, &ca)).err().unwrap();
    assert!(matches!(e, VerbsError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("RC"), "{e}");

    let acc = Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ;
    let (ma, mb) = (
        pa.reg_mr(1 << 20, acc).unwrap(),
        pb.reg_mr(1 << 20, acc).unwrap(),
    );
    // EFA inlines at most 32 bytes (inline_buf_size); the UD default is 64.
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

    qb.post_recv(RecvWr::new(1, mb.sge(0, 4096))).unwrap();
    ma.write(0, b"hello, SRD").unwrap();
    qa.post_send(SendWr::send(2, ma.sge(0, 10)).to(to_b).signaled())
        .unwrap();
    let wc = cb.wait_one(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (wc.status, wc.byte_len, wc.src_qp),
        (WcStatus::Success, 10, qa.qpn())
    );
    let mut got = [0u8; 10];
    mb.read(0, &mut got).unwrap();
    assert_eq!(&got, b"hello, SRD");
    assert_eq!(
        ca.wait_one(Duration::from_secs(5)).unwrap().status,
        WcStatus::Success
    );

    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    mb.write(4096, &data).unwrap();
    qa.post_send(
        SendWr::read(3, ma.sge(8192, 100_000), mb.addr() + 4096, mb.rkey())
            .to(to_b)
            .signaled(),
    )
    .unwrap();
    let wc = ca.wait_one(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (wc.status, wc.opcode),
        (WcStatus::Success, WcOpcode::RdmaRead)
    );
    let mut back = vec![0u8; 100_000];
    ma.read(8192, &mut back).unwrap();
    assert!(back == data);
}
