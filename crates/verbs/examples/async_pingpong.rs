//! Ping-pong between two tokio tasks, each awaiting its own CQ: completions
//! arrive through the completion channel's fd, registered with tokio's
//! reactor — no thread blocks and nothing spins.
//!
//! `cargo run -p softverbs --features tokio --example async_pingpong`

use std::process::ExitCode;
use std::time::Duration;

use softverbs::{
    Access, AsyncCq, ConnectOptions, Context, Mr, Qp, QpInitAttr, RecvWr, SendWr, WcOpcode,
    WcStatus,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const ROUNDS: u32 = 100;
const SIZE: u32 = 64;

/// One side of the ping-pong.
struct Side {
    qp: Qp,
    cq: AsyncCq,
    mr: Mr,
}

impl Side {
    /// Send `msg` (its completion is reaped by [`Side::recv`]).
    async fn send(&self, round: u32, msg: u32) -> Result<()> {
        self.mr.write(0, &msg.to_le_bytes())?;
        self.qp
            .post_send(SendWr::send(u64::from(round), self.mr.sge(0, SIZE)).signaled())?;
        Ok(())
    }

    /// Wait for the next received message (send completions on the way are
    /// checked and skipped).
    async fn recv(&self) -> Result<u32> {
        loop {
            let wc = self.cq.next_completion().await?;
            if wc.status != WcStatus::Success {
                return Err(format!("wr {} completed with {}", wc.wr_id, wc.status).into());
            }
            if wc.opcode == WcOpcode::Recv {
                let mut b = [0u8; 4];
                self.mr.read(SIZE as usize, &mut b)?;
                self.qp
                    .post_recv(RecvWr::new(0, self.mr.sge(SIZE as usize, SIZE)))?;
                return Ok(u32::from_le_bytes(b));
            }
        }
    }
}

fn side(ctx: &Context) -> Result<Side> {
    let pd = ctx.alloc_pd()?;
    let channel = ctx.create_comp_channel()?;
    let cq = AsyncCq::new(ctx.create_cq(64, Some(&channel))?)?;
    let qp = pd.create_qp(&QpInitAttr::rc(cq.cq(), cq.cq()))?;
    let mr = pd.reg_mr(2 * SIZE as usize, Access::LOCAL_WRITE)?;
    Ok(Side { qp, cq, mr })
}

async fn run() -> Result<()> {
    let (a, b) = (Context::open("rxe0")?, Context::open("rxe1")?);
    let (pinger, ponger) = (side(&a)?, side(&b)?);
    let o = ConnectOptions::default();
    pinger.qp.connect(&ponger.qp.endpoint()?, &o)?;
    ponger.qp.connect(&pinger.qp.endpoint()?, &o)?;
    for s in [&pinger, &ponger] {
        s.qp.post_recv(RecvWr::new(0, s.mr.sge(SIZE as usize, SIZE)))?;
    }

    let ping = async {
        for round in 0..ROUNDS {
            pinger.send(round, round).await?;
            let back = pinger.recv().await?;
            if back != round + 1 {
                return Err(format!("round {round}: pong {back}").into());
            }
        }
        Result::Ok(())
    };
    let pong = async {
        for round in 0..ROUNDS {
            let n = ponger.recv().await?;
            ponger.send(round, n + 1).await?;
        }
        Result::Ok(())
    };
    let start = tokio::time::Instant::now();
    let (r1, r2) =
        tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(ping, pong) })
            .await
            .map_err(|_| "ping-pong stalled")?;
    r1?;
    r2?;
    let el = start.elapsed();
    println!(
        "{ROUNDS} round trips of {SIZE} bytes between {} and {} in {el:?} ({:.1} us each), \
         on one tokio thread",
        a.name(),
        b.name(),
        el.as_secs_f64() * 1e6 / f64::from(ROUNDS)
    );
    Ok(())
}

fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("async_pingpong: no tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("async_pingpong failed: {e}");
            ExitCode::FAILURE
        }
    }
}
