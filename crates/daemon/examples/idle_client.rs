//! A client that connects to softverbsd, sets up what a real application
//! holds — a PD, a CQ with its ring, an RC QP with its send and receive
//! rings, a registered region — and then sits idle for a while. Used to
//! check that the daemon uses no CPU while its clients post nothing
//! (`crates/daemon/scripts/measure.sh`).
//!
//! `idle_client SOCKET DEVICE SECONDS`

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use softverbs_core::calls::VerbsCalls;
use softverbs_core::QpCreate;
use softverbs_daemon::client::Client;
use softverbs_transport::{Access, QpType};

fn run(sock: &str, dev: &str, secs: u64) -> softverbs_core::Result<()> {
    let c = Client::open(Path::new(sock), dev)?;
    let pd = c.alloc_pd()?;
    let cq = c.create_cq(64, None)?;
    let qp = c.create_qp(
        pd.handle,
        &QpCreate {
            qp_type: QpType::Rc,
            send_cq: cq.handle,
            recv_cq: cq.handle,
            srq: None,
            max_send_wr: 64,
            max_recv_wr: 64,
            max_send_sge: 1,
            max_recv_sge: 1,
            max_inline_data: 64,
            sq_sig_all: false,
        },
    )?;
    let _mr = c.reg_shared(pd.handle, 1 << 20, Access::LOCAL_WRITE)?;
    let _sq = c.send_queue(qp.handle, 64, 1, 64)?;
    let _rq = c.recv_queue(qp.handle, 64, 1, false)?;
    let _cq = c.comp_queue(cq.handle, cq.id, 64, None)?;
    println!("idle client ready on {dev}");
    std::thread::sleep(Duration::from_secs(secs));
    Ok(())
}

fn main() -> ExitCode {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 4 {
        eprintln!("usage: idle_client SOCKET DEVICE SECONDS");
        return ExitCode::FAILURE;
    }
    let Ok(secs) = a[3].parse() else {
        eprintln!("idle_client: SECONDS must be a number, not {:?}", a[3]);
        return ExitCode::FAILURE;
    };
    match run(&a[1], &a[2], secs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idle_client: {e}");
            ExitCode::FAILURE
        }
    }
}
