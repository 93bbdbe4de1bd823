//! Sleeping until a completion arrives instead of polling: a CQ armed with
//! `req_notify` reports to its completion channel, whose fd is readable
//! while an event is pending (it fits `poll`/`epoll`; `get_cq_event`
//! blocks on it here).
//!
//! `cargo run -p softverbs --example completion_channel`

use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use softverbs::{Access, ConnectOptions, Context, QpInitAttr, RecvWr, SendWr, WcStatus};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const MESSAGES: u64 = 5;

fn run() -> Result<()> {
    let (a, b) = (Context::open("rxe0")?, Context::open("rxe1")?);
    let (pd_a, pd_b) = (a.alloc_pd()?, b.alloc_pd()?);
    let cq_a = a.create_cq(16, None)?;
    // B's CQ reports to a channel.
    let channel = b.create_comp_channel()?;
    let cq_b = b.create_cq(16, Some(&channel))?;
    let src = pd_a.reg_mr(4096, Access::LOCAL_WRITE)?;
    let dst = pd_b.reg_mr(4096 * MESSAGES as usize, Access::LOCAL_WRITE)?;
    let qa = pd_a.create_qp(&QpInitAttr::rc(&cq_a, &cq_a))?;
    let qb = pd_b.create_qp(&QpInitAttr::rc(&cq_b, &cq_b))?;
    let o = ConnectOptions::default();
    qa.connect(&qb.endpoint()?, &o)?;
    qb.connect(&qa.endpoint()?, &o)?;
    for i in 0..MESSAGES {
        qb.post_recv(RecvWr::new(i, dst.sge(4096 * i as usize, 4096)))?;
    }

    // A sends from another thread, slowly; the last message is solicited.
    let sender = thread::spawn(move || -> softverbs::Result<()> {
        for i in 0..MESSAGES {
            thread::sleep(Duration::from_millis(20));
            src.write(0, format!("message {i}").as_bytes())?;
            let mut wr = SendWr::send(i, src.sge(0, 9)).signaled();
            if i == MESSAGES - 1 {
                wr = wr.solicited();
            }
            qa.post_send(wr)?;
            cq_a.wait_one(Duration::from_secs(10))?;
        }
        Ok(())
    });

    // B: arm, poll (a completion may have come before the arm), sleep.
    let mut got = 0;
    while got < MESSAGES - 1 {
        cq_b.req_notify(false)?;
        let mut any = false;
        while let Some(wc) = cq_b.poll_one()? {
            any = true;
            got += 1;
            println!(
                "polled    wr {} ({}, {} bytes)",
                wc.wr_id, wc.status, wc.byte_len
            );
        }
        if !any {
            let fired = channel
                .get_cq_event(Some(Duration::from_secs(10)))
                .ok_or("no CQ event within 10 s")?;
            println!("woke up   CQ {fired} fired");
        }
    }
    // Sleep until a *solicited* completion only.
    cq_b.req_notify(true)?;
    if cq_b.poll_one()?.is_none() {
        let fired = channel
            .get_cq_event(Some(Duration::from_secs(10)))
            .ok_or("no solicited event within 10 s")?;
        println!("woke up   CQ {fired} fired for a solicited completion");
    }
    // Drain what is left (the solicited message, and a stale event if any).
    let wc = cq_b.wait_one(Duration::from_secs(10))?;
    if wc.status != WcStatus::Success || !wc.solicited {
        return Err(format!("last completion {wc:?}").into());
    }
    println!("polled    wr {} (solicited)", wc.wr_id);
    while channel.try_get_cq_event().is_some() {}
    sender.join().map_err(|_| "sender panicked")??;
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("completion_channel failed: {e}");
            ExitCode::FAILURE
        }
    }
}
