//! Targeted scenarios: each isolates one kind of fault and checks what the
//! report must show, besides every invariant holding.

use softverbs_sim::{run, Invariant, Ops, PairFault, SimConfig, SimReport, TransportMix};

fn ok(cfg: &SimConfig) -> SimReport {
    match run(cfg) {
        Ok(r) => r,
        Err(b) => panic!("{b}"),
    }
}

fn count(r: &SimReport, status: &str) -> u64 {
    r.completions.get(status).copied().unwrap_or(0)
}

#[test]
fn no_faults_means_no_retransmissions_and_everything_delivered() {
    for seed in 1..6 {
        let r = ok(&SimConfig {
            seed,
            qps: 4,
            messages: 60,
            ..SimConfig::default()
        });
        assert_eq!(r.retransmissions, 0, "{r}");
        assert_eq!(r.timeouts, 0, "{r}");
        assert_eq!(
            r.packets.lost + r.packets.corrupted + r.packets.duplicated,
            0
        );
        assert_eq!(r.messages, 240);
        assert_eq!(r.delivered, 240);
        assert_eq!(count(&r, "Success"), r.completions.values().sum::<u64>());
        assert!(r.goodput_gbps > 0.0);
    }
}

#[test]
fn pure_loss_is_recovered_by_retransmission() {
    let r = ok(&SimConfig {
        seed: 3,
        qps: 4,
        messages: 60,
        loss: 0.05,
        ..SimConfig::default()
    });
    assert!(r.packets.lost > 0);
    assert!(r.retransmissions > 0, "{r}");
    assert_eq!(r.delivered, r.messages);
}

#[test]
fn pure_corruption_is_always_caught_by_the_icrc() {
    let r = ok(&SimConfig {
        seed: 4,
        qps: 4,
        messages: 60,
        corrupt: 0.05,
        ..SimConfig::default()
    });
    assert!(r.packets.corrupted > 10, "{r}");
    assert_eq!(r.packets.corrupt_caught, r.packets.corrupted);
    assert_eq!(r.delivered, r.messages);
}

#[test]
fn duplication_and_reordering_alone_lose_nothing() {
    let r = ok(&SimConfig {
        seed: 5,
        qps: 4,
        messages: 60,
        dup: 0.2,
        reorder: 0.3,
        ..SimConfig::default()
    });
    assert!(r.packets.duplicated > 0 && r.packets.reordered > 0);
    assert!(r.duplicate_requests > 0, "{r}");
    assert_eq!(r.delivered, r.messages);
}

#[test]
fn uc_loses_only_whole_messages() {
    for seed in 1..11 {
        let r = ok(&SimConfig {
            seed,
            qps: 3,
            messages: 60,
            loss: 0.05,
            transport: TransportMix::Uc,
            ops: Ops::SEND,
            ..SimConfig::default()
        });
        assert_eq!(r.transports.get("uc"), Some(&3));
        assert_eq!(
            r.delivered + r.lost_messages,
            r.messages,
            "every UC message is delivered or lost whole; {r}"
        );
        assert_eq!(r.retransmissions, 0, "UC never retransmits");
    }
    let r = ok(&SimConfig {
        seed: 1,
        qps: 3,
        messages: 60,
        loss: 0.1,
        transport: TransportMix::Uc,
        ops: Ops::SEND,
        ..SimConfig::default()
    });
    assert!(r.lost_messages > 0, "{r}");
}

#[test]
fn uc_writes_with_loss() {
    let r = ok(&SimConfig {
        seed: 2,
        qps: 3,
        messages: 60,
        loss: 0.05,
        transport: TransportMix::Uc,
        ops: "write".parse().expect("ops"),
        ..SimConfig::default()
    });
    assert!(r.lost_messages > 0, "{r}");
}

#[test]
fn ud_delivers_whole_datagrams_under_every_fault() {
    for seed in 1..11 {
        let r = ok(&SimConfig {
            transport: TransportMix::Ud,
            qps: 3,
            messages: 60,
            ..SimConfig::issue_faults(seed)
        });
        assert_eq!(r.transports.get("ud"), Some(&3));
        assert_eq!(r.delivered + r.lost_messages, r.messages, "{r}");
        assert_eq!(r.packets.corrupt_caught, r.packets.corrupted);
    }
}

#[test]
fn rnr_naks_recover_with_infinite_rnr_retry() {
    let r = ok(&SimConfig {
        seed: 8,
        qps: 3,
        messages: 80,
        ops: Ops::SEND,
        rnr: 0.6,
        recv_depth: 2,
        ..SimConfig::default()
    });
    assert!(r.rnr_naks > 0, "{r}");
    assert_eq!(r.delivered, r.messages);
    assert_eq!(count(&r, "RnrRetryExcErr"), 0);
}

#[test]
fn silent_peer_gives_retry_exceeded_then_flushes() {
    let cfg = SimConfig {
        seed: 11,
        qps: 2,
        messages: 30,
        faults: vec![PairFault::SilentPeer {
            pair: 0,
            after_ns: 0,
        }],
        timeout: Some(8),
        ..SimConfig::default()
    };
    let r = ok(&cfg);
    assert_eq!(count(&r, "RetryExcErr"), 1, "{r}");
    assert_eq!(count(&r, "WrFlushErr"), 29, "{r}");
    assert!(
        r.timeouts >= 8,
        "retry_cnt 7: one try and seven retries; {r}"
    );
    assert!(r.packets.silenced > 0);
}

#[test]
fn peer_falling_silent_mid_run_fails_only_what_is_unacknowledged() {
    for seed in 1..6 {
        let cfg = SimConfig {
            seed,
            qps: 3,
            messages: 60,
            faults: vec![PairFault::SilentPeer {
                pair: 1,
                after_ns: 150_000,
            }],
            timeout: Some(8),
            loss: 0.02,
            ..SimConfig::default()
        };
        let r = ok(&cfg);
        assert_eq!(count(&r, "RetryExcErr"), 1, "{r}");
        assert!(
            count(&r, "Success") > 120,
            "the healthy pairs and the early messages succeed; {r}"
        );
    }
}

#[test]
fn exhausted_rnr_retry_gives_rnr_retry_exceeded_then_flushes() {
    let cfg = SimConfig {
        seed: 12,
        qps: 2,
        messages: 20,
        ops: Ops::SEND,
        faults: vec![PairFault::RnrExhaust {
            pair: 1,
            rnr_retry: 2,
        }],
        ..SimConfig::default()
    };
    let r = ok(&cfg);
    assert_eq!(count(&r, "RnrRetryExcErr"), 1, "{r}");
    assert_eq!(count(&r, "WrFlushErr"), 19, "{r}");
    assert_eq!(
        r.rnr_naks, 3,
        "one try and two retries, each answered by an RNR NAK; {r}"
    );
}

#[test]
fn same_seed_same_report_other_seed_other_report() {
    let cfg = SimConfig {
        qps: 3,
        messages: 40,
        transport: TransportMix::Rc,
        ..SimConfig::issue_faults(21)
    };
    let a = ok(&cfg);
    let b = ok(&cfg);
    assert_eq!(a, b);
    assert_eq!(
        serde_json::to_string(&a).expect("json"),
        serde_json::to_string(&b).expect("json")
    );
    let c = ok(&SimConfig { seed: 22, ..cfg });
    assert_ne!(a, c);
}

#[test]
fn a_bad_config_is_a_breach_naming_the_seed() {
    let b = run(&SimConfig {
        seed: 77,
        loss: 2.0,
        ..SimConfig::default()
    })
    .expect_err("invalid");
    assert_eq!(b.invariant, Invariant::InvalidConfig);
    assert_eq!(b.seed, 77);
    assert!(b.to_string().contains("seed 77"), "{b}");
}

#[test]
fn report_serializes_to_json() {
    let r = ok(&SimConfig {
        seed: 2,
        qps: 2,
        messages: 10,
        ..SimConfig::default()
    });
    let v: serde_json::Value = serde_json::to_value(&r).expect("json");
    for key in [
        "messages",
        "bytes",
        "packets",
        "retransmissions",
        "completions",
        "sim_time_ns",
        "goodput_gbps",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
}
