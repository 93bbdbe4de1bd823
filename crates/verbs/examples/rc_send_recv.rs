//! RC SEND/RECV between the two default loopback devices (rxe0 on
//! 127.0.0.1, rxe1 on 127.0.0.2): a SEND, then a SEND with immediate data.
//!
//! `cargo run -p softverbs --example rc_send_recv`

use std::process::ExitCode;
use std::time::Duration;

use softverbs::{
    Access, ConnectOptions, Context, Cq, QpInitAttr, RecvWr, SendWr, Wc, WcOpcode, WcStatus,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn wait_ok(cq: &Cq, what: &str) -> Result<Wc> {
    let wc = cq.wait_one(Duration::from_secs(10))?;
    if wc.status != WcStatus::Success {
        return Err(format!("{what} completed with {} (wr_id {})", wc.status, wc.wr_id).into());
    }
    Ok(wc)
}

fn run() -> Result<()> {
    // One context per device; each side gets a PD, a CQ, a region and a QP.
    let (a, b) = (Context::open("rxe0")?, Context::open("rxe1")?);
    let (pd_a, pd_b) = (a.alloc_pd()?, b.alloc_pd()?);
    let (cq_a, cq_b) = (a.create_cq(16, None)?, b.create_cq(16, None)?);
    let src = pd_a.reg_mr(4096, Access::LOCAL_WRITE)?;
    let dst = pd_b.reg_mr(4096, Access::LOCAL_WRITE)?;
    let qa = pd_a.create_qp(&QpInitAttr::rc(&cq_a, &cq_a))?;
    let qb = pd_b.create_qp(&QpInitAttr::rc(&cq_b, &cq_b))?;

    // Exchange endpoints (here in memory; across processes over a socket)
    // and bring both QPs to RTS.
    let o = ConnectOptions::default();
    qa.connect(&qb.endpoint()?, &o)?;
    qb.connect(&qa.endpoint()?, &o)?;
    println!(
        "connected RC QP {:#x} on {} to QP {:#x} on {}",
        qa.qpn(),
        a.name(),
        qb.qpn(),
        b.name()
    );

    // A receive must be posted before the SEND arrives.
    let msg = b"hello over RoCEv2";
    src.write(0, msg)?;
    qb.post_recv(RecvWr::new(10, dst.sge(0, 4096)))?;
    qa.post_send(SendWr::send(1, src.sge(0, msg.len() as u32)).signaled())?;
    wait_ok(&cq_a, "SEND")?;
    let wc = wait_ok(&cq_b, "RECV")?;
    let mut got = vec![0u8; wc.byte_len as usize];
    dst.read(0, &mut got)?;
    if wc.opcode != WcOpcode::Recv || got != msg {
        return Err(format!("received {:?} ({:?})", got, wc.opcode).into());
    }
    println!(
        "SEND      {} bytes received: {:?}",
        wc.byte_len,
        String::from_utf8_lossy(&got)
    );

    // SEND with immediate: 4 bytes of out-of-band data in the completion.
    qb.post_recv(RecvWr::new(11, dst.sge(0, 4096)))?;
    qa.post_send(SendWr::send_with_imm(2, src.sge(0, 5), 0xC0FF_EE00).signaled())?;
    wait_ok(&cq_a, "SEND with immediate")?;
    let wc = wait_ok(&cq_b, "RECV")?;
    if wc.imm != Some(0xC0FF_EE00) || wc.byte_len != 5 {
        return Err(format!("immediate {:?}, {} bytes", wc.imm, wc.byte_len).into());
    }
    println!("SEND+IMM  5 bytes with immediate {:#x}", 0xC0FF_EE00u32);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rc_send_recv failed: {e}");
            ExitCode::FAILURE
        }
    }
}
