//! Single-QP RDMA WRITE bandwidth between two loopback rxe devices, next to
//! a plain UDP loopback transfer of the same bytes, measured in the same run.
//!
//! ```text
//! cargo run --release -p softverbs-devices --example write_bw [MiB] [port]
//! ```
//!
//! Devices `bw_a` on 127.0.0.1 and `bw_b` on 127.0.0.2 (default port 18515+
//! a free one is picked), 64 KiB messages, 16 outstanding, at path MTU 1024
//! (rxe's default) and 4096. The UDP baseline sends the same number of bytes
//! as datagrams of the same payload size (1024 and 4096) from one socket to
//! another, one `send_to` per datagram, and reports what arrived.

#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use softverbs_core::driver::{Driver, QpInit};
use softverbs_core::events::AsyncEvents;
use softverbs_core::mem::{Backing, MemBlock};
use softverbs_devices::{DeviceConfig, DeviceKind};
use softverbs_transport::{Access, ModifyQp, Mtu, QpState, QpType, SendWr, Sge, WcStatus};

const MSG: usize = 64 * 1024;
const DEPTH: usize = 16;

fn free_port() -> u16 {
    loop {
        let a = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
        let p = a.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.2", p)).is_ok() {
            return p;
        }
    }
}

struct End {
    dev: Arc<dyn Driver>,
    cq: u32,
    qp: u32,
    block: Arc<MemBlock>,
    key: u32,
}

fn end(name: &str, ip: [u8; 4], port: u16, mtu: Mtu) -> End {
    let cfg = DeviceConfig::new(name, DeviceKind::Rxe, IpAddr::V4(Ipv4Addr::from(ip)))
        .with_port(port)
        .with_mtu(mtu);
    let dev: Arc<dyn Driver> = Arc::new(softverbs_devices::open_device(cfg));
    let ev = Arc::new(AsyncEvents::new().unwrap());
    let pd = dev.alloc_pd().unwrap();
    let (cq, _) = dev.create_cq(1024, None, ev.clone()).unwrap();
    let block = Arc::new(MemBlock::new(MSG * DEPTH));
    let key = dev
        .reg_mr(
            pd,
            Backing::Block(block.clone()),
            Access(Access::LOCAL_WRITE.0 | Access::REMOTE_WRITE.0),
        )
        .unwrap()
        .lkey;
    let init = QpInit {
        qp_type: QpType::Rc,
        send_cq: cq,
        recv_cq: cq,
        srq: None,
        max_send_wr: DEPTH as u32,
        max_recv_wr: 1,
        max_send_sge: 1,
        max_recv_sge: 1,
        max_inline_data: 0,
        sq_sig_all: true,
    };
    let (qp, _) = dev.create_qp(pd, &init, ev).unwrap();
    End {
        dev,
        cq,
        qp,
        block,
        key,
    }
}

fn connect(e: &End, peer: &End, mtu: Mtu) {
    let dgid = peer.dev.gids(1).unwrap()[1];
    for m in [
        ModifyQp {
            state: Some(QpState::Init),
            access: Some(Access::REMOTE_WRITE),
            ..Default::default()
        },
        ModifyQp {
            state: Some(QpState::Rtr),
            path_mtu: Some(mtu),
            dest_qpn: Some(peer.qp),
            dgid: Some(dgid),
            rq_psn: Some(0),
            max_dest_rd_atomic: Some(1),
            min_rnr_timer: Some(12),
            ..Default::default()
        },
        ModifyQp {
            state: Some(QpState::Rts),
            sq_psn: Some(0),
            timeout: Some(14),
            retry_cnt: Some(7),
            rnr_retry: Some(7),
            max_rd_atomic: Some(1),
            ..Default::default()
        },
    ] {
        e.dev.modify_qp(e.qp, &m).unwrap();
    }
}

/// Gb/s of `bytes` in `d`.
fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 * 8.0 / d.as_secs_f64() / 1e9
}

fn rdma_write(total: u64, mtu: Mtu) -> (Duration, u64) {
    let port = free_port();
    let a = end("bw_a", [127, 0, 0, 1], port, mtu);
    let b = end("bw_b", [127, 0, 0, 2], port, mtu);
    connect(&a, &b, mtu);
    connect(&b, &a, mtu);
    a.block
        .with_mut(|m| m.iter_mut().enumerate().for_each(|(i, x)| *x = i as u8));
    let iters = total.div_ceil(MSG as u64);
    let post = |i: u64| {
        let slot = (i as usize % DEPTH) * MSG;
        let sge = Sge {
            addr: a.block.addr() + slot as u64,
            length: MSG as u32,
            lkey: a.key,
        };
        a.dev
            .post_send(
                a.qp,
                SendWr::write(i, sge, b.block.addr() + slot as u64, b.key).signaled(),
            )
            .unwrap();
    };
    let t = Instant::now();
    let (mut posted, mut done) = (0u64, 0u64);
    let mut wcs = Vec::with_capacity(DEPTH);
    while done < iters {
        while posted < iters && posted - done < DEPTH as u64 {
            post(posted);
            posted += 1;
        }
        wcs.clear();
        let n = a.dev.poll_cq(a.cq, DEPTH, &mut wcs).unwrap();
        for wc in &wcs {
            assert_eq!(wc.status, WcStatus::Success, "{wc:?}");
        }
        done += n as u64;
        if n == 0 {
            std::thread::yield_now();
        }
    }
    let d = t.elapsed();
    assert!(
        a.block.with(|x| b.block.with(|y| x == y)),
        "the target holds what was written"
    );
    let c = a.dev.counters();
    (d, c.qp.retransmitted_pkts)
}

fn udp(total: u64, payload: usize) -> (Duration, u64) {
    let rx = UdpSocket::bind(("127.0.0.2", 0)).unwrap();
    let _ = nix_rcvbuf(&rx);
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let dst = rx.local_addr().unwrap();
    let tx = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    let n = total.div_ceil(payload as u64);
    let recv = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut got = 0u64;
        let mut first = None;
        let mut last = Instant::now();
        while let Ok(len) = rx.recv(&mut buf) {
            first.get_or_insert_with(Instant::now);
            got += len as u64;
            last = Instant::now();
        }
        (got, first.map_or(Duration::ZERO, |f| last - f))
    });
    let data = vec![0x5au8; payload];
    let t = Instant::now();
    for _ in 0..n {
        let _ = tx.send_to(&data, dst);
    }
    let send_time = t.elapsed();
    let (got, recv_time) = recv.join().unwrap();
    (send_time.max(recv_time), got)
}

/// Ask for a 4 MiB receive buffer (capped by net.core.rmem_max).
fn nix_rcvbuf(s: &UdpSocket) -> std::io::Result<()> {
    rustix::net::sockopt::set_socket_recv_buffer_size(s, 4 << 20).map_err(Into::into)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let total = mib << 20;
    println!(
        "{mib} MiB per run; RDMA WRITE of {} KiB messages, {DEPTH} outstanding, one RC QP",
        MSG / 1024
    );
    println!("{:<34} {:>10} {:>10}", "transfer", "Gb/s", "notes");
    for mtu in [Mtu::Mtu1024, Mtu::Mtu4096] {
        let (d, rexmit) = rdma_write(total, mtu);
        println!(
            "{:<34} {:>10.2} {:>10}",
            format!("rxe RDMA WRITE, MTU {}", mtu.bytes()),
            gbps(total, d),
            format!("{rexmit} rexmit")
        );
        let (d, got) = udp(total, mtu.bytes());
        println!(
            "{:<34} {:>10.2} {:>10}",
            format!("plain UDP, {}-byte datagrams", mtu.bytes()),
            gbps(got, d),
            format!(
                "{:.1}% lost",
                100.0
                    * (1.0
                        - got as f64
                            / (total.div_ceil(mtu.bytes() as u64) * mtu.bytes() as u64) as f64)
            )
        );
    }
}
