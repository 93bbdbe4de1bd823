//! 64-bit remote atomics: FETCH_AND_ADD and COMPARE_AND_SWAP on a counter
//! that lives in the other device's memory. The original value lands in
//! the requester's 8-byte buffer.
//!
//! `cargo run -p softverbs --example atomics`

use std::process::ExitCode;
use std::time::Duration;

use softverbs::{Access, ConnectOptions, Context, Cq, Mr, QpInitAttr, SendWr, WcStatus};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn wait_ok(cq: &Cq, what: &str) -> Result<()> {
    let wc = cq.wait_one(Duration::from_secs(10))?;
    if wc.status != WcStatus::Success {
        return Err(format!("{what} completed with {}", wc.status).into());
    }
    Ok(())
}

fn u64_at(mr: &Mr, offset: usize) -> Result<u64> {
    let mut b = [0u8; 8];
    mr.read(offset, &mut b)?;
    Ok(u64::from_ne_bytes(b))
}

fn run() -> Result<()> {
    let (a, b) = (Context::open("rxe0")?, Context::open("rxe1")?);
    let caps = a.query_device()?;
    println!("atomic capability of {}: {:?}", a.name(), caps.atomic_cap);
    let (pd_a, pd_b) = (a.alloc_pd()?, b.alloc_pd()?);
    let (cq_a, cq_b) = (a.create_cq(16, None)?, b.create_cq(16, None)?);
    let results = pd_a.reg_mr(4096, Access::LOCAL_WRITE)?;
    let counter = pd_b.reg_mr(4096, Access::LOCAL_WRITE | Access::REMOTE_ATOMIC)?;
    let qa = pd_a.create_qp(&QpInitAttr::rc(&cq_a, &cq_a))?;
    let qb = pd_b.create_qp(&QpInitAttr::rc(&cq_b, &cq_b))?;
    let o = ConnectOptions {
        max_rd_atomic: 4,
        max_dest_rd_atomic: 4,
        ..Default::default()
    };
    qa.connect(&qb.endpoint()?, &o)?;
    qb.connect(&qa.endpoint()?, &o)?;

    counter.write(0, &100u64.to_ne_bytes())?;
    for i in 0..5u64 {
        qa.post_send(
            SendWr::fetch_add(i, results.sge(0, 8), counter.addr(), counter.rkey(), 10).signaled(),
        )?;
        wait_ok(&cq_a, "FETCH_AND_ADD")?;
        let old = u64_at(&results, 0)?;
        if old != 100 + 10 * i {
            return Err(format!("fetch-and-add {i} returned {old}").into());
        }
        println!("FETCH_ADD +10: old value {old}");
    }

    // Swap 150 for 7: the counter holds 150, so it succeeds.
    qa.post_send(
        SendWr::compare_swap(
            10,
            results.sge(8, 8),
            counter.addr(),
            counter.rkey(),
            150,
            7,
        )
        .signaled(),
    )?;
    wait_ok(&cq_a, "COMPARE_AND_SWAP")?;
    println!(
        "CMP_SWAP  150 -> 7: old value {}, counter now {}",
        u64_at(&results, 8)?,
        u64_at(&counter, 0)?
    );
    // Again: the counter holds 7, not 150, so nothing changes.
    qa.post_send(
        SendWr::compare_swap(
            11,
            results.sge(8, 8),
            counter.addr(),
            counter.rkey(),
            150,
            9,
        )
        .signaled(),
    )?;
    wait_ok(&cq_a, "COMPARE_AND_SWAP")?;
    let (old, now) = (u64_at(&results, 8)?, u64_at(&counter, 0)?);
    println!("CMP_SWAP  150 -> 9: old value {old}, counter still {now}");
    if old != 7 || now != 7 {
        return Err(format!("the failed compare-and-swap changed the counter to {now}").into());
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atomics failed: {e}");
            ExitCode::FAILURE
        }
    }
}
