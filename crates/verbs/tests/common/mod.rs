//! Helpers shared by the integration tests: two connected QPs on the
//! default loopback devices (rxe0 on 127.0.0.1, rxe1 on 127.0.0.2), through
//! the public API only.

#![allow(dead_code, clippy::disallowed_methods)] // tests wait on the wall clock

use std::time::{Duration, Instant};

use softverbs::*;

pub const MIB: usize = 1 << 20;
pub const TIMEOUT: Duration = Duration::from_secs(20);

pub const ALL: Access = Access(
    Access::LOCAL_WRITE.0
        | Access::REMOTE_WRITE.0
        | Access::REMOTE_READ.0
        | Access::REMOTE_ATOMIC.0
        | Access::MW_BIND.0,
);

/// One side: context, PD, CQ, one region and one QP.
pub struct Side {
    pub ctx: Context,
    pub pd: Pd,
    pub cq: Cq,
    pub mr: Mr,
    pub qp: Qp,
}

impl Side {
    pub fn new(dev: &str, qp_type: QpType, mem: usize) -> Side {
        Side::on(Context::open(dev).unwrap(), qp_type, mem)
    }

    pub fn on(ctx: Context, qp_type: QpType, mem: usize) -> Side {
        let pd = ctx.alloc_pd().unwrap();
        let cq = ctx.create_cq(256, None).unwrap();
        let mr = pd.reg_mr(mem, ALL).unwrap();
        let qp = pd.create_qp(&QpInitAttr::new(qp_type, &cq, &cq)).unwrap();
        Side {
            ctx,
            pd,
            cq,
            mr,
            qp,
        }
    }

    /// Fill `len` bytes at `offset` with a pattern from `seed`; return them.
    pub fn fill(&self, offset: usize, len: usize, seed: u8) -> Vec<u8> {
        let v: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
            .collect();
        self.mr.write(offset, &v).unwrap();
        v
    }

    pub fn bytes(&self, offset: usize, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mr.read(offset, &mut v).unwrap();
        v
    }

    pub fn wait(&self) -> Wc {
        self.cq
            .wait_one(TIMEOUT)
            .unwrap_or_else(|e| panic!("{}: {e}", self.ctx.name()))
    }

    /// Wait for an async event matching `f`, skipping others.
    pub fn event(&self, what: &str, f: impl Fn(&AsyncEvent) -> bool) -> AsyncEvent {
        let end = Instant::now() + TIMEOUT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.ctx.async_events().get(Some(left)) {
                Some(e) if f(&e) => return e,
                Some(_) => {}
                None => panic!("{}: no {what} event", self.ctx.name()),
            }
        }
    }
}

/// Two QPs of `qp_type`, rxe0 → rxe1, connected with `o` (UD QPs are
/// brought to RTS; their peers are named per send).
pub fn pair_with(
    qp_type: QpType,
    mem: usize,
    oa: &ConnectOptions,
    ob: &ConnectOptions,
) -> (Side, Side) {
    let a = Side::new("rxe0", qp_type, mem);
    let b = Side::new("rxe1", qp_type, mem);
    a.qp.connect(&b.qp.endpoint().unwrap(), oa).unwrap();
    b.qp.connect(&a.qp.endpoint().unwrap(), ob).unwrap();
    (a, b)
}

pub fn pair(qp_type: QpType, mem: usize) -> (Side, Side) {
    let o = ConnectOptions {
        max_rd_atomic: 8,
        max_dest_rd_atomic: 8,
        ..Default::default()
    };
    pair_with(qp_type, mem, &o, &o)
}

/// The message sizes of the issue: 0, 1, MTU-1, MTU, MTU+1, several MTUs
/// (and an odd tail), and 1 MiB.
pub fn sizes(mtu: usize) -> Vec<usize> {
    vec![0, 1, mtu - 1, mtu, mtu + 1, 3 * mtu, 5 * mtu + 7, MIB]
}

/// Poll until `f` holds, or panic after TIMEOUT.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + TIMEOUT;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A UDP port free on 127.0.0.1 (for devices of a test's own).
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
