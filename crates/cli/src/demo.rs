//! `softverbs demo`: two soft RoCE devices in one process doing RDMA to
//! each other over UDP, with the public API — what a newcomer runs first.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use softverbs::{
    Access, ConnectOptions, Context, Cq, Mr, Qp, QpInitAttr, RecvWr, SendWr, WcStatus,
};

/// Options of `softverbs demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// First device.
    #[arg(long, default_value = "rxe0")]
    pub a: String,
    /// Second device.
    #[arg(long, default_value = "rxe1")]
    pub b: String,
    /// Bytes moved by the RDMA WRITE throughput run.
    #[arg(long, default_value_t = 256 << 20)]
    pub bytes: u64,
    /// Message size of the throughput run.
    #[arg(long, default_value_t = 65536)]
    pub size: u32,
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn expect_ok(cq: &Cq, what: &str) -> Result<softverbs::Wc> {
    let wc = cq
        .wait_one(TIMEOUT)
        .with_context(|| format!("waiting for the {what} completion"))?;
    if wc.status != WcStatus::Success {
        bail!(
            "{what} completed with status {} (wr_id {})",
            wc.status,
            wc.wr_id
        );
    }
    Ok(wc)
}

/// Run the demo.
pub fn run(args: &DemoArgs) -> Result<std::process::ExitCode> {
    let a = Context::open(&args.a).with_context(|| format!("opening {}", args.a))?;
    let b = Context::open(&args.b).with_context(|| format!("opening {}", args.b))?;
    let (ga, gb) = (a.query_gid(1, 1)?, b.query_gid(1, 1)?);
    println!(
        "devices   {} (GID {ga}) and {} (GID {gb}), RoCEv2 over UDP",
        a.name(),
        b.name()
    );

    let (pda, pdb) = (a.alloc_pd()?, b.alloc_pd()?);
    let size = args.size as usize;
    let rw =
        Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ | Access::REMOTE_ATOMIC;
    let mra: Mr = pda.reg_mr(size.max(4096), rw)?;
    let mrb: Mr = pdb.reg_mr(size.max(4096), rw)?;
    let (cqa, cqb) = (a.create_cq(1024, None)?, b.create_cq(1024, None)?);
    let qa: Qp = pda.create_qp(&QpInitAttr::rc(&cqa, &cqa))?;
    let qb: Qp = pdb.create_qp(&QpInitAttr::rc(&cqb, &cqb))?;
    let opts = ConnectOptions {
        max_rd_atomic: 16,
        max_dest_rd_atomic: 16,
        ..Default::default()
    };
    qa.connect(&qb.endpoint()?, &opts)?;
    qb.connect(&qa.endpoint()?, &opts)?;
    println!(
        "RC QPs    {:#x} <-> {:#x}, path MTU {} bytes",
        qa.qpn(),
        qb.qpn(),
        opts.mtu.bytes()
    );

    // SEND / RECV
    let msg = b"hello from softverbs";
    mra.write(0, msg)?;
    qb.post_recv(RecvWr::new(1, mrb.sge(0, 4096)))?;
    qa.post_send(SendWr::send(2, mra.sge(0, msg.len() as u32)).signaled())?;
    expect_ok(&cqa, "SEND")?;
    let wc = expect_ok(&cqb, "RECV")?;
    let mut got = vec![0u8; wc.byte_len as usize];
    mrb.read(0, &mut got)?;
    println!(
        "SEND      {} bytes arrived: {:?}",
        wc.byte_len,
        String::from_utf8_lossy(&got)
    );

    // RDMA READ back what B holds.
    qa.post_send(
        SendWr::read(3, mra.sge(1024, msg.len() as u32), mrb.addr(), mrb.rkey()).signaled(),
    )?;
    expect_ok(&cqa, "RDMA READ")?;
    let mut back = vec![0u8; msg.len()];
    mra.read(1024, &mut back)?;
    println!(
        "READ      {:?} read back from the peer's memory",
        String::from_utf8_lossy(&back)
    );

    // Atomics on the peer's first 8 bytes.
    mrb.write(0, &40u64.to_ne_bytes())?;
    qa.post_send(SendWr::fetch_add(4, mra.sge(0, 8), mrb.addr(), mrb.rkey(), 2).signaled())?;
    expect_ok(&cqa, "FETCH_AND_ADD")?;
    qa.post_send(SendWr::compare_swap(5, mra.sge(8, 8), mrb.addr(), mrb.rkey(), 42, 7).signaled())?;
    expect_ok(&cqa, "COMPARE_AND_SWAP")?;
    let mut cell = [0u8; 8];
    mrb.read(0, &mut cell)?;
    println!(
        "ATOMIC    40 + 2 = 42, then CAS(42 -> 7): remote value now {}",
        u64::from_ne_bytes(cell)
    );

    // RDMA WRITE throughput, a window of outstanding writes.
    let iters = (args.bytes / u64::from(args.size)).max(1);
    let window = 32u64;
    let start = Instant::now();
    let (mut posted, mut done) = (0u64, 0u64);
    let mut wcs = Vec::with_capacity(64);
    while done < iters {
        while posted < iters && posted - done < window {
            qa.post_send(
                SendWr::write(100 + posted, mra.sge(0, args.size), mrb.addr(), mrb.rkey())
                    .signaled(),
            )?;
            posted += 1;
        }
        wcs.clear();
        if cqa.poll(64, &mut wcs)? == 0 {
            if start.elapsed() > Duration::from_secs(120) {
                bail!("RDMA WRITE run stalled after {done} of {iters} completions");
            }
            std::thread::yield_now();
        }
        for wc in &wcs {
            if wc.status != WcStatus::Success {
                bail!("RDMA WRITE completed with {}", wc.status);
            }
            done += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes = iters * u64::from(args.size);
    println!(
        "WRITE     {iters} x {} bytes in {secs:.3} s = {:.2} Gb/s ({:.0} MB/s)",
        args.size,
        bytes as f64 * 8.0 / secs / 1e9,
        bytes as f64 / secs / 1e6
    );
    let c = a.counters();
    println!(
        "counters  {}: {} packets sent, {} received, {} retransmitted",
        a.name(),
        c.sent_pkts,
        c.rcvd_pkts,
        c.qp.retransmitted_pkts
    );
    Ok(std::process::ExitCode::SUCCESS)
}
