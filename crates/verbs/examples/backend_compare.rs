//! The same two measurements on both backends in one run: 64 KiB RDMA
//! WRITE bandwidth and 2-byte SEND latency (ping-pong, half the round
//! trip), RC between two devices, through the public API only.
//!
//! - embedded: this process's own devices (127.0.13.1 and .2);
//! - daemon: a `softverbsd` started in this process on a temporary socket
//!   (devices 127.0.13.3 and .4), reached as any client reaches it: control
//!   calls over the socket, posting and polling through shared-memory rings,
//!   memfd-backed regions.
//!
//! `cargo run --release -p softverbs --example backend_compare [ITERS]`

#![allow(clippy::disallowed_methods)] // a benchmark reads the wall clock

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use softverbs::{
    Access, Backend, ConnectOptions, Context, Cq, DeviceConfig, DeviceKind, QpInitAttr, RecvWr,
    SendWr, WcOpcode, WcStatus,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const WRITE_SIZE: usize = 64 * 1024;
const WINDOW: usize = 64;
const ACCESS: Access = Access(Access::LOCAL_WRITE.0 | Access::REMOTE_WRITE.0);

struct Pair {
    a: Context,
    b: Context,
}

fn poll_n(cq: &Cq, n: usize, want: WcOpcode) -> Result<()> {
    let mut got = 0;
    let mut v = Vec::with_capacity(32);
    let end = Instant::now() + Duration::from_secs(20);
    while got < n {
        v.clear();
        cq.poll(32, &mut v)?;
        for wc in &v {
            if wc.status != WcStatus::Success {
                return Err(format!("completion {wc:?}").into());
            }
            if wc.opcode == want {
                got += 1;
            }
        }
        if v.is_empty() && Instant::now() > end {
            return Err("no completion within 20 s".into());
        }
    }
    Ok(())
}

/// 64 KiB RDMA WRITEs, `WINDOW` outstanding, every one signaled: MB/s.
fn write_bw(p: &Pair, iters: usize) -> Result<f64> {
    let (pa, pb) = (p.a.alloc_pd()?, p.b.alloc_pd()?);
    let (ca, cb) = (p.a.create_cq(256, None)?, p.b.create_cq(256, None)?);
    let src = pa.reg_mr(WRITE_SIZE, ACCESS)?;
    let dst = pb.reg_mr(WRITE_SIZE, ACCESS)?;
    src.write(0, &vec![0x5a; WRITE_SIZE])?;
    let qa = pa.create_qp(&QpInitAttr::rc(&ca, &ca))?;
    let qb = pb.create_qp(&QpInitAttr::rc(&cb, &cb))?;
    let o = ConnectOptions::default();
    qa.connect(&qb.endpoint()?, &o)?;
    qb.connect(&qa.endpoint()?, &o)?;
    let wr = |i: usize| {
        SendWr::write(
            i as u64,
            src.sge(0, WRITE_SIZE as u32),
            dst.addr(),
            dst.rkey(),
        )
        .signaled()
    };
    // Warm up (socket buffers, first packets).
    for i in 0..WINDOW {
        qa.post_send(wr(i))?;
    }
    poll_n(&ca, WINDOW, WcOpcode::RdmaWrite)?;
    let t = Instant::now();
    let (mut posted, mut done) = (0, 0);
    let mut v = Vec::with_capacity(WINDOW);
    while done < iters {
        while posted < iters && posted - done < WINDOW {
            qa.post_send(wr(posted))?;
            posted += 1;
        }
        v.clear();
        ca.poll(WINDOW, &mut v)?;
        for wc in &v {
            if wc.status != WcStatus::Success {
                return Err(format!("WRITE completion {wc:?}").into());
            }
        }
        done += v.len();
    }
    let secs = t.elapsed().as_secs_f64();
    Ok((iters * WRITE_SIZE) as f64 / secs / 1e6)
}

/// 2-byte SEND ping-pong, both sides busy-polling: half the round trip, µs.
fn send_lat(p: &Pair, iters: usize) -> Result<f64> {
    let (pa, pb) = (p.a.alloc_pd()?, p.b.alloc_pd()?);
    let (ca, cb) = (p.a.create_cq(256, None)?, p.b.create_cq(256, None)?);
    let ma = pa.reg_mr(4096, ACCESS)?;
    let mb = pb.reg_mr(4096, ACCESS)?;
    let qa = pa.create_qp(&QpInitAttr::rc(&ca, &ca))?;
    let qb = pb.create_qp(&QpInitAttr::rc(&cb, &cb))?;
    let o = ConnectOptions::default();
    qa.connect(&qb.endpoint()?, &o)?;
    qb.connect(&qa.endpoint()?, &o)?;
    let warm = 100;
    let total = iters + warm;
    qb.post_recv(RecvWr::new(0, mb.sge(2048, 2)))?;
    let pong = std::thread::spawn({
        let (qb, cb, mb) = (qb.clone(), cb.clone(), mb.clone());
        move || -> std::result::Result<(), String> {
            for i in 0..total {
                poll_n(&cb, 1, WcOpcode::Recv).map_err(|e| e.to_string())?;
                if i + 1 < total {
                    qb.post_recv(RecvWr::new(0, mb.sge(2048, 2)))
                        .map_err(|e| e.to_string())?;
                }
                qb.post_send(SendWr::send(i as u64, mb.sge(0, 2)).signaled())
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    });
    let mut t = Instant::now();
    for i in 0..total {
        if i == warm {
            t = Instant::now();
        }
        qa.post_recv(RecvWr::new(0, ma.sge(2048, 2)))?;
        qa.post_send(SendWr::send(i as u64, ma.sge(0, 2)).signaled())?;
        poll_n(&ca, 1, WcOpcode::Recv)?;
    }
    let secs = t.elapsed().as_secs_f64();
    pong.join().map_err(|_| "pong panicked")??;
    Ok(secs / iters as f64 / 2.0 * 1e6)
}

fn run() -> Result<()> {
    let iters: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2000);
    let ip = |h: u8| std::net::IpAddr::from([127, 0, 13, h]);
    let embedded = Pair {
        a: Context::open_config(DeviceConfig::new("rxe0", DeviceKind::Rxe, ip(1)))?,
        b: Context::open_config(DeviceConfig::new("rxe1", DeviceKind::Rxe, ip(2)))?,
    };
    let drivers = softverbs_devices::devices_from("rxe0=rxe:127.0.13.3,rxe1=rxe:127.0.13.4")?;
    let devices = drivers
        .into_iter()
        .map(softverbs_core::Device::new)
        .collect::<Vec<Arc<_>>>();
    let sock = std::env::temp_dir().join(format!("backend-compare-{}.sock", std::process::id()));
    let _daemon =
        softverbs_daemon::Server::bind(&sock, softverbs_daemon::Daemon::new(devices))?.spawn();
    let daemon = Pair {
        a: Context::open_with(&Backend::Daemon(sock.clone()), "rxe0")?,
        b: Context::open_with(&Backend::Daemon(sock.clone()), "rxe1")?,
    };
    println!(
        "{:<10} {:>22} {:>20}",
        "backend", "write_bw 64 KiB (MB/s)", "send_lat 2 B (µs)"
    );
    for (name, p) in [("embedded", &embedded), ("daemon", &daemon)] {
        let bw = write_bw(p, iters)?;
        let lat = send_lat(p, iters)?;
        println!("{name:<10} {bw:>22.1} {lat:>20.2}");
    }
    let _ = std::fs::remove_file(&sock);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backend_compare: {e}");
            ExitCode::FAILURE
        }
    }
}
