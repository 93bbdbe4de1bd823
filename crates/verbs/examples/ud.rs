//! Unreliable Datagram: no connection; each SEND names its destination
//! through an address handle (AH), and every receive starts with the
//! 40-byte network header (for RoCEv2 over IPv4: 20 zero bytes, then the
//! IPv4 header) before the payload.
//!
//! `cargo run -p softverbs --example ud`

use std::process::ExitCode;
use std::time::Duration;

use softverbs::{
    Access, AhAttr, ConnectOptions, Context, Cq, QpInitAttr, RecvWr, SendWr, Wc, WcStatus,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Bytes of network header UD puts at the head of every receive buffer.
const GRH: usize = 40;

fn wait_ok(cq: &Cq, what: &str) -> Result<Wc> {
    let wc = cq.wait_one(Duration::from_secs(10))?;
    if wc.status != WcStatus::Success {
        return Err(format!("{what} completed with {}", wc.status).into());
    }
    Ok(wc)
}

fn run() -> Result<()> {
    let (a, b) = (Context::open("rxe0")?, Context::open("rxe1")?);
    let (pd_a, pd_b) = (a.alloc_pd()?, b.alloc_pd()?);
    let (cq_a, cq_b) = (a.create_cq(16, None)?, b.create_cq(16, None)?);
    let src = pd_a.reg_mr(4096, Access::LOCAL_WRITE)?;
    let dst = pd_b.reg_mr(4096, Access::LOCAL_WRITE)?;
    let qa = pd_a.create_qp(&QpInitAttr::ud(&cq_a, &cq_a))?;
    let qb = pd_b.create_qp(&QpInitAttr::ud(&cq_b, &cq_b))?;
    // UD QPs go to RTS without a peer; the Q_Key guards who may send.
    let o = ConnectOptions::default();
    qa.connect(&qa.endpoint()?, &o)?;
    qb.connect(&qb.endpoint()?, &o)?;

    // The address handle: where B is.
    let gid_b = b.query_gid(1, 1)?;
    let ah = pd_a.create_ah(AhAttr {
        dgid: gid_b,
        sgid_index: 1,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        sl: 0,
        port: 1,
    })?;
    println!("AH to {gid_b}, UD QP {:#x} -> {:#x}", qa.qpn(), qb.qpn());

    let msg = b"a datagram, at most one MTU long";
    src.write(0, msg)?;
    qb.post_recv(RecvWr::new(1, dst.sge(0, (GRH + 1024) as u32)))?;
    qa.post_send(
        SendWr::send(2, src.sge(0, msg.len() as u32))
            .signaled()
            .to(ah.dest(qb.qpn(), o.qkey)),
    )?;
    wait_ok(&cq_a, "UD SEND")?;
    let wc = wait_ok(&cq_b, "UD RECV")?;
    if !wc.grh || wc.byte_len as usize != GRH + msg.len() || wc.src_qp != qa.qpn() {
        return Err(format!("unexpected completion {wc:?}").into());
    }
    let mut hdr = [0u8; GRH];
    dst.read(0, &mut hdr)?;
    let mut got = vec![0u8; msg.len()];
    dst.read(GRH, &mut got)?;
    if got != msg {
        return Err(format!("payload {got:?}").into());
    }
    println!(
        "UD SEND   {} bytes from QP {:#x}; header: IPv{} from {}.{}.{}.{} to {}.{}.{}.{}",
        msg.len(),
        wc.src_qp,
        hdr[20] >> 4,
        hdr[32],
        hdr[33],
        hdr[34],
        hdr[35],
        hdr[36],
        hdr[37],
        hdr[38],
        hdr[39]
    );
    println!("payload   {:?}", String::from_utf8_lossy(&got));

    // With immediate data, inline (copied at post time: no lkey needed).
    qb.post_recv(RecvWr::new(3, dst.sge(0, (GRH + 1024) as u32)))?;
    let mut wr = SendWr::send_inline(4, b"imm")
        .signaled()
        .to(ah.dest(qb.qpn(), o.qkey));
    wr.op = softverbs::SendOp::SendWithImm { imm: 0x5eed };
    qa.post_send(wr)?;
    wait_ok(&cq_a, "UD SEND with immediate")?;
    let wc = wait_ok(&cq_b, "UD RECV")?;
    if wc.imm != Some(0x5eed) {
        return Err(format!("immediate {:?}", wc.imm).into());
    }
    println!("UD SEND+IMM inline 3 bytes with immediate {:#x}", 0x5eed);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ud failed: {e}");
            ExitCode::FAILURE
        }
    }
}
