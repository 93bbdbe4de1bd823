//! A shared receive queue: two RC QPs on B draw their receives from one
//! pool, and the SRQ's limit event tells B when the pool runs low.
//!
//! `cargo run -p softverbs --example srq`

use std::process::ExitCode;
use std::time::Duration;

use softverbs::{
    Access, AsyncEvent, ConnectOptions, Context, Cq, QpInitAttr, RecvWr, SendWr, Wc, WcStatus,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn wait_ok(cq: &Cq, what: &str) -> Result<Wc> {
    let wc = cq.wait_one(Duration::from_secs(10))?;
    if wc.status != WcStatus::Success {
        return Err(format!("{what} completed with {}", wc.status).into());
    }
    Ok(wc)
}

const SLOT: u32 = 256;

fn run() -> Result<()> {
    let (a, b) = (Context::open("rxe0")?, Context::open("rxe1")?);
    let (pd_a, pd_b) = (a.alloc_pd()?, b.alloc_pd()?);
    let (cq_a, cq_b) = (a.create_cq(64, None)?, b.create_cq(64, None)?);
    let src = pd_a.reg_mr(4096, Access::LOCAL_WRITE)?;
    let pool = pd_b.reg_mr(16 * SLOT as usize, Access::LOCAL_WRITE)?;

    // Eight receives in one SRQ; the limit event fires below 3.
    let srq = pd_b.create_srq(16, 1)?;
    for i in 0..8u32 {
        srq.post_recv(RecvWr::new(
            u64::from(i),
            pool.sge((i * SLOT) as usize, SLOT),
        ))?;
    }
    srq.arm_limit(3)?;

    // Two connections from A to B; B's QPs share the SRQ.
    let mut pairs = Vec::new();
    for _ in 0..2 {
        let qa = pd_a.create_qp(&QpInitAttr::rc(&cq_a, &cq_a))?;
        let qb = pd_b.create_qp(&QpInitAttr::rc(&cq_b, &cq_b).with_srq(&srq))?;
        let o = ConnectOptions::default();
        qa.connect(&qb.endpoint()?, &o)?;
        qb.connect(&qa.endpoint()?, &o)?;
        pairs.push((qa, qb));
    }

    // Six messages, alternating between the connections.
    for n in 0..6u64 {
        let (qa, qb) = &pairs[(n % 2) as usize];
        let msg = format!("message {n} over QP {:#x}", qa.qpn());
        src.write(0, msg.as_bytes())?;
        qa.post_send(SendWr::send(n, src.sge(0, msg.len() as u32)).signaled())?;
        wait_ok(&cq_a, "SEND")?;
        let wc = wait_ok(&cq_b, "SRQ receive")?;
        let mut got = vec![0u8; wc.byte_len as usize];
        pool.read((wc.wr_id as u32 * SLOT) as usize, &mut got)?;
        if wc.qp_num != qb.qpn() || got != msg.as_bytes() {
            return Err(format!("slot {} on QP {:#x}: {got:?}", wc.wr_id, wc.qp_num).into());
        }
        println!(
            "QP {:#x} took SRQ slot {}: {:?}",
            wc.qp_num,
            wc.wr_id,
            String::from_utf8_lossy(&got)
        );
    }
    // Two receives left, below the limit of 3: the event has fired.
    // (Other events, such as "communication established", may come first.)
    loop {
        match b.async_events().get(Some(Duration::from_secs(5))) {
            Some(AsyncEvent::SrqLimitReached { srq }) => {
                println!("async event: SRQ {srq} fell below its limit of 3; time to post more");
                return Ok(());
            }
            Some(other) => println!("async event: {other:?}"),
            None => return Err("no SRQ limit event".into()),
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("srq failed: {e}");
            ExitCode::FAILURE
        }
    }
}
