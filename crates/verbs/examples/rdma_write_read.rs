//! RDMA WRITE, WRITE with immediate and READ between the two default
//! loopback devices: one side moves bytes in and out of the other's memory
//! without the other's CPU taking part (except for the immediate, which
//! consumes a receive).
//!
//! `cargo run -p softverbs --example rdma_write_read`

use std::process::ExitCode;
use std::time::Duration;

use softverbs::{
    Access, ConnectOptions, Context, Cq, QpInitAttr, RecvWr, SendWr, Wc, WcOpcode, WcStatus,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const LEN: usize = 64 * 1024;

fn wait_ok(cq: &Cq, what: &str) -> Result<Wc> {
    let wc = cq.wait_one(Duration::from_secs(10))?;
    if wc.status != WcStatus::Success {
        return Err(format!("{what} completed with {} (wr_id {})", wc.status, wc.wr_id).into());
    }
    Ok(wc)
}

fn run() -> Result<()> {
    let (a, b) = (Context::open("rxe0")?, Context::open("rxe1")?);
    let (pd_a, pd_b) = (a.alloc_pd()?, b.alloc_pd()?);
    let (cq_a, cq_b) = (a.create_cq(16, None)?, b.create_cq(16, None)?);
    // A's buffer: source of the WRITE, target of the READ.
    let local = pd_a.reg_mr(2 * LEN, Access::LOCAL_WRITE)?;
    // B's buffer: open to remote writes and reads; its address and rkey
    // are what B would send to A out of band.
    let remote = pd_b.reg_mr(
        LEN,
        Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ,
    )?;
    let qa = pd_a.create_qp(&QpInitAttr::rc(&cq_a, &cq_a))?;
    let qb = pd_b.create_qp(&QpInitAttr::rc(&cq_b, &cq_b))?;
    let o = ConnectOptions::default();
    qa.connect(&qb.endpoint()?, &o)?;
    qb.connect(&qa.endpoint()?, &o)?;

    // WRITE 64 KiB (64 packets at MTU 1024) into B.
    let pattern: Vec<u8> = (0..LEN).map(|i| (i * 7 + 3) as u8).collect();
    local.write(0, &pattern)?;
    qa.post_send(
        SendWr::write(1, local.sge(0, LEN as u32), remote.addr(), remote.rkey()).signaled(),
    )?;
    wait_ok(&cq_a, "RDMA WRITE")?;
    let mut seen = vec![0u8; LEN];
    remote.read(0, &mut seen)?;
    if seen != pattern {
        return Err("B's memory differs from what A wrote".into());
    }
    println!(
        "WRITE     {LEN} bytes into {:#x} (rkey {:#x}) on {}",
        remote.addr(),
        remote.rkey(),
        b.name()
    );

    // WRITE with immediate: the data lands like a WRITE, and B learns of it
    // through a receive completion carrying the immediate.
    qb.post_recv(RecvWr::new(20, remote.sge(0, 0)))?;
    local.write(0, b"tail")?;
    qa.post_send(
        SendWr::write_with_imm(
            2,
            local.sge(0, 4),
            remote.addr() + LEN as u64 - 4,
            remote.rkey(),
            7,
        )
        .signaled(),
    )?;
    wait_ok(&cq_a, "RDMA WRITE with immediate")?;
    let wc = wait_ok(&cq_b, "receive of the immediate")?;
    let mut tail = [0u8; 4];
    remote.read(LEN - 4, &mut tail)?;
    if wc.opcode != WcOpcode::RecvRdmaWithImm || wc.imm != Some(7) || &tail != b"tail" {
        return Err(format!("WRITE with immediate: {wc:?}, tail {tail:?}").into());
    }
    println!("WRITE+IMM 4 bytes; B's receive completion carries immediate 7");

    // READ all of B's buffer back into the second half of A's.
    qa.post_send(
        SendWr::read(3, local.sge(LEN, LEN as u32), remote.addr(), remote.rkey()).signaled(),
    )?;
    wait_ok(&cq_a, "RDMA READ")?;
    let mut back = vec![0u8; LEN];
    local.read(LEN, &mut back)?;
    remote.read(0, &mut seen)?;
    if back != seen {
        return Err("the READ brought back other bytes than B holds".into());
    }
    println!("READ      {LEN} bytes back from {}: identical", b.name());
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rdma_write_read failed: {e}");
            ExitCode::FAILURE
        }
    }
}
