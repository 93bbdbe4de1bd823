//! # softverbs-sim — a deterministic network simulator for the transports
//!
//! Layer 2's proving ground (see `DESIGN.md`): many sans-IO QP engines of
//! `softverbs-transport`, on many simulated hosts, joined by a simulated
//! fabric with seeded loss, reordering, duplication, corruption, delay and
//! bandwidth, all in virtual time. One `u64` seed decides everything, so any
//! run replays exactly (TigerBeetle's VOPR, FoundationDB's simulator).
//!
//! Packets are real RoCEv2 UDP payloads: the sender's engine writes them,
//! the simulator seals their ICRC with the hosts' addresses, the receiver
//! verifies it (a corrupted packet must fail), parses the packet and hands it
//! to the QP its BTH names. Memory is simulated too ([`SimMemory`]), with the
//! key, bounds and rights checks of [`softverbs_transport::Memory`].
//!
//! Oracles check the run continuously and at its end: each RC message is
//! delivered exactly once, in order, with the right bytes; remote memory
//! equals a reference model after WRITEs and atomics; READs and atomics
//! return what the model says; every WQE completes exactly once with the
//! right status; UC and UD lose only whole messages; no engine panics,
//! stalls or livelocks. The first broken invariant ends the run as a
//! [`Breach`] naming it, the seed, the QP and the message.
//!
//! ```no_run
//! use softverbs_sim::{run, SimConfig};
//!
//! let report = run(&SimConfig::issue_faults(7)).expect("no invariant breach");
//! println!("{report}");
//! ```

mod config;
mod events;
mod host;
mod memory;
mod net;
mod oracle;
mod report;
mod workload;
mod world;

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub use config::{Ops, PairFault, SimConfig, TransportMix};
pub use memory::{RegionInfo, SimMemory};
pub use net::{Delivery, LinkModel, NetStats, Network};
pub use report::{Breach, Invariant, PacketReport, SimReport};

/// Run one simulation. `Ok` when every invariant held, with the summary;
/// `Err` with the first breach otherwise. An engine panic is caught and
/// reported as the [`Invariant::NoPanic`] breach. The result depends only on
/// `cfg`.
pub fn run(cfg: &SimConfig) -> Result<SimReport, Breach> {
    if let Err(why) = cfg.validate() {
        return Err(Breach::new(Invariant::InvalidConfig, cfg.seed, 0, why));
    }
    let trace = Cell::new(world::Trace::default());
    match catch_unwind(AssertUnwindSafe(|| world::World::new(cfg, &trace).run())) {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            let t = trace.get();
            let mut b = Breach::new(
                Invariant::NoPanic,
                cfg.seed,
                t.now,
                format!("panicked: {what}"),
            );
            b.pair = t.pair;
            b.qpn = t.qpn;
            Err(b)
        }
    }
}
