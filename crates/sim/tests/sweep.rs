//! Seed sweeps: many small runs under the issue's fault rates. Any failure
//! prints the breach and the command that replays it.
//!
//! The big sweep (1,000 seeds, every operation) is `#[ignore]`d; run it with
//!
//! ```text
//! cargo test --release -p softverbs-sim -- --ignored
//! ```

use softverbs_sim::{run, Ops, SimConfig, TransportMix};

fn sweep(seeds: std::ops::Range<u64>, make: impl Fn(u64) -> SimConfig) {
    for seed in seeds {
        let cfg = make(seed);
        if let Err(b) = run(&cfg) {
            panic!(
                "{b}\nreproduce: softverbs sim --seed {seed} --qps {} --messages {} --loss {} --reorder {} --dup {} --corrupt {} --mtu {} --ops {} --transport {}",
                cfg.qps,
                cfg.messages,
                cfg.loss,
                cfg.reorder,
                cfg.dup,
                cfg.corrupt,
                cfg.mtu.bytes(),
                cfg.ops,
                cfg.transport
            );
        }
    }
}

/// The CI sweep: 100 seeds, RC, every operation, 10% loss, 10% reordering,
/// 5% duplication, 1% corruption.
#[test]
fn rc_all_ops_100_seeds_under_issue_faults() {
    sweep(1..101, |seed| SimConfig {
        qps: 3,
        messages: 30,
        ..SimConfig::issue_faults(seed)
    });
}

/// Small MTUs segment more: every size, a few seeds each.
#[test]
fn rc_every_mtu() {
    for (i, mtu) in [256, 512, 1024, 2048, 4096].into_iter().enumerate() {
        let mtu = softverbs_transport::Mtu::from_bytes(mtu).expect("valid MTU");
        let base = 2000 + 10 * i as u64;
        sweep(base..base + 6, |seed| SimConfig {
            qps: 3,
            messages: 25,
            mtu,
            ..SimConfig::issue_faults(seed)
        });
    }
}

/// Shallow receive queues reposted late: RNR NAKs on every operation.
#[test]
fn rc_every_mtu_with_rnr_pressure() {
    for (i, mtu) in [256, 512, 1024, 2048, 4096].into_iter().enumerate() {
        let mtu = softverbs_transport::Mtu::from_bytes(mtu).expect("valid MTU");
        let base = 1000 + 10 * i as u64;
        sweep(base..base + 6, |seed| SimConfig {
            qps: 3,
            messages: 25,
            mtu,
            rnr: 0.3,
            recv_depth: 4,
            ..SimConfig::issue_faults(seed)
        });
    }
}

/// RC, UC and UD pairs side by side under the issue's faults, with the
/// operations UC and UD support.
#[test]
fn mixed_transports_under_issue_faults() {
    sweep(1..41, |seed| SimConfig {
        qps: 4,
        messages: 30,
        transport: TransportMix::Mix,
        ops: "send,write".parse::<Ops>().expect("ops"),
        ..SimConfig::issue_faults(seed)
    });
}

/// The acceptance sweep of the issue: 1,000 seeds, every operation.
#[test]
#[ignore = "long: run with `cargo test --release -p softverbs-sim -- --ignored`"]
fn rc_all_ops_1000_seeds_under_issue_faults() {
    sweep(1..1001, |seed| SimConfig {
        qps: 4,
        messages: 100,
        ..SimConfig::issue_faults(seed)
    });
}
