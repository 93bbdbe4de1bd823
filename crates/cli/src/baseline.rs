//! `softverbs baseline`: the speeds RDMA numbers should be read against —
//! memcpy, and a plain UDP loopback transfer of the same bytes — measured on
//! this machine, now, so that `perf` results can be put beside them.

use std::net::UdpSocket;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::json;

/// Options of `softverbs baseline`.
#[derive(clap::Args, Debug)]
pub struct BaselineArgs {
    /// Message sizes in bytes.
    #[arg(short, long, value_delimiter = ',', default_values_t = [64usize, 4096, 65536])]
    pub sizes: Vec<usize>,
    /// UDP datagram size cap (the RoCE path MTU the perf runs use).
    #[arg(long, default_value_t = 1024)]
    pub mtu: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// Loopback address the UDP receiver binds.
    #[arg(long, default_value = "127.0.0.1")]
    pub addr: String,
    /// JSON output.
    #[arg(short, long)]
    pub json: bool,
}

/// memcpy of `size`-byte messages: MB/s (10^6 bytes per second).
fn memcpy_mbs(size: usize, secs: f64) -> f64 {
    let src = vec![0x5au8; size.max(1)];
    let mut dst = vec![0u8; size.max(1)];
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..256 {
            dst.copy_from_slice(std::hint::black_box(&src));
            bytes += size as u64;
        }
        std::hint::black_box(&mut dst);
    }
    bytes as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// Bytes sent in datagrams of at most `mtu` bytes, per `size`-byte message,
/// from one socket to another on loopback; MB/s received.
fn udp_mbs(addr: &str, size: usize, mtu: usize, secs: f64) -> Result<(f64, f64)> {
    let rx =
        UdpSocket::bind((addr, 0)).with_context(|| format!("binding a UDP socket on {addr}"))?;
    rx.set_read_timeout(Some(Duration::from_millis(200)))?;
    let dst = rx.local_addr()?;
    let tx = UdpSocket::bind((addr, 0))?;
    let dgram = size.clamp(1, mtu);
    let per_msg = size.div_ceil(dgram).max(1);
    let receiver = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut got = 0u64;
        while let Ok(n) = rx.recv(&mut buf) {
            got += n as u64;
        }
        got
    });
    let payload = vec![0xa5u8; dgram];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..per_msg {
            if tx.send_to(&payload, dst).is_ok() {
                sent += dgram as u64;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let got = receiver.join().unwrap_or(0);
    let loss = if sent == 0 {
        0.0
    } else {
        1.0 - got as f64 / sent as f64
    };
    Ok((got as f64 / elapsed / 1e6, loss.max(0.0)))
}

/// Run the baseline.
pub fn run(args: &BaselineArgs) -> Result<ExitCode> {
    let mut rows = Vec::new();
    if !args.json {
        println!(
            " {:>8}  {:>14}  {:>22}  {:>8}",
            "#bytes", "memcpy[MB/sec]", "UDP loopback[MB/sec]", "UDP lost"
        );
    }
    for &size in &args.sizes {
        let m = memcpy_mbs(size, args.seconds);
        let (u, loss) = udp_mbs(&args.addr, size, args.mtu, args.seconds)?;
        if args.json {
            rows.push(json!({ "bytes": size, "memcpy_mbs": m, "udp_mbs": u, "udp_datagram": size.clamp(1, args.mtu), "udp_loss": loss }));
        } else {
            println!(" {size:>8}  {m:>14.1}  {u:>22.1}  {:>7.1}%", loss * 100.0);
        }
    }
    if args.json {
        println!("{}", serde_json::Value::Array(rows));
    } else {
        println!(
            " (UDP datagrams of at most {} bytes, one sender thread, one receiver thread)",
            args.mtu
        );
    }
    Ok(ExitCode::SUCCESS)
}
