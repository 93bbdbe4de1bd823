//! Memory windows: B registers a region with no remote rights at all and
//! hands out windows onto parts of it instead. A peer reaches B's memory
//! only through a bound window, and only while it stays bound.
//!
//! Type 1 windows (what this shows) are bound with `Mw::bind` and
//! invalidated by binding them with length 0. The example also invalidates
//! a whole region remotely, with a SEND with invalidate.
//!
//! `cargo run -p softverbs --example memory_windows`

use std::process::ExitCode;
use std::time::Duration;

use softverbs::{
    Access, ConnectOptions, Context, Cq, MwType, QpInitAttr, RecvWr, SendOp, SendWr, Wc, WcStatus,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn wait(cq: &Cq) -> Result<Wc> {
    Ok(cq.wait_one(Duration::from_secs(10))?)
}

fn wait_ok(cq: &Cq, what: &str) -> Result<Wc> {
    let wc = wait(cq)?;
    if wc.status != WcStatus::Success {
        return Err(format!("{what} completed with {}", wc.status).into());
    }
    Ok(wc)
}

fn run() -> Result<()> {
    let (a, b) = (Context::open("rxe0")?, Context::open("rxe1")?);
    if !b.query_device()?.ops.memory_windows {
        return Err(format!("{} has no memory windows", b.name()).into());
    }
    let (pd_a, pd_b) = (a.alloc_pd()?, b.alloc_pd()?);
    let (cq_a, cq_b) = (a.create_cq(16, None)?, b.create_cq(16, None)?);
    let local = pd_a.reg_mr(8192, Access::LOCAL_WRITE)?;
    // Local rights only, plus MW_BIND: windows may be bound onto it.
    let region = pd_b.reg_mr(16384, Access::LOCAL_WRITE | Access::MW_BIND)?;
    let qa = pd_a.create_qp(&QpInitAttr::rc(&cq_a, &cq_a))?;
    let qb = pd_b.create_qp(&QpInitAttr::rc(&cq_b, &cq_b))?;
    let o = ConnectOptions::default();
    qa.connect(&qb.endpoint()?, &o)?;
    qb.connect(&qa.endpoint()?, &o)?;

    // Bind a window onto bytes [4096, 8192) of the region: remote write and read.
    let mw = pd_b.alloc_mw(MwType::Type1)?;
    let rkey = mw.bind(
        &qb,
        &region,
        4096,
        4096,
        Access::REMOTE_WRITE | Access::REMOTE_READ,
    )?;
    let win = region.addr() + 4096;
    println!("type 1 window bound: rkey {rkey:#x} onto [{win:#x}, +4096)");

    local.write(0, b"through the window")?;
    qa.post_send(SendWr::write(1, local.sge(0, 18), win + 100, rkey).signaled())?;
    wait_ok(&cq_a, "WRITE through the window")?;
    let mut got = [0u8; 18];
    region.read(4196, &mut got)?;
    if &got != b"through the window" {
        return Err(format!("the window write left {got:?}").into());
    }
    qa.post_send(SendWr::read(2, local.sge(4096, 18), win + 100, rkey).signaled())?;
    wait_ok(&cq_a, "READ through the window")?;
    println!("WRITE and READ of 18 bytes through the window: ok");

    // Rebinding moves the window and changes its key: the old key is dead.
    let rkey2 = mw.bind(&qb, &region, 0, 4096, Access::REMOTE_WRITE)?;
    println!(
        "rebound onto [{:#x}, +4096): rkey {rkey:#x} -> {rkey2:#x}",
        region.addr()
    );

    // Remote invalidation of a region: A sends with invalidate of the rkey
    // of another region of B's, which then refuses every remote access.
    let scratch = pd_b.reg_mr(4096, Access::LOCAL_WRITE | Access::REMOTE_WRITE)?;
    qb.post_recv(RecvWr::new(30, scratch.sge(0, 64)))?;
    let inv = SendWr {
        op: SendOp::SendWithInv {
            rkey: scratch.rkey(),
        },
        ..SendWr::send(3, local.sge(0, 4)).signaled()
    };
    qa.post_send(inv)?;
    wait_ok(&cq_a, "SEND with invalidate")?;
    let wc = wait_ok(&cq_b, "receive of the SEND with invalidate")?;
    println!(
        "SEND with invalidate: B's receive reports rkey {:#x} invalidated",
        wc.invalidated_rkey.unwrap_or(0)
    );
    if wc.invalidated_rkey != Some(scratch.rkey()) {
        return Err(format!("invalidated {:?}", wc.invalidated_rkey).into());
    }

    // Invalidate the window: bind it with length 0.
    mw.bind(&qb, &region, 0, 0, Access::REMOTE_WRITE)?;
    println!("window unbound (zero-length bind)");

    // A WRITE with the old window key is now refused; the error is fatal
    // to both QPs, as RC errors are.
    qa.post_send(SendWr::write(4, local.sge(0, 8), region.addr(), rkey2).signaled())?;
    let wc = wait(&cq_a)?;
    println!("WRITE with the dead rkey {rkey2:#x}: {}", wc.status);
    if wc.status != WcStatus::RemAccessErr {
        return Err(format!("expected a remote access error, got {}", wc.status).into());
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memory_windows failed: {e}");
            ExitCode::FAILURE
        }
    }
}
