//! The SRD simulator's scenarios and seed sweeps.

use softverbs_srd::sim::{compare_rc, run, table, SimConfig};

#[test]
fn clean_run_delivers_everything() {
    let r = run(&SimConfig::default()).unwrap_or_else(|b| panic!("{b}"));
    assert_eq!(r.completed, 4 * 4 * 50);
    // Paths of different delays reorder a little; RACK's window keeps the
    // spurious retransmissions rare.
    assert!(
        r.counters.retransmitted_pkts * 100 <= r.counters.data_pkts,
        "{r:?}"
    );
    // One context per peer pair, shared by all QPs: 3 peers, each with an
    // initiator and a target context.
    assert!(r.pdcs_per_host <= 6, "{r:?}");
}

#[test]
fn issue_faults_one_seed() {
    let r = run(&SimConfig::issue_faults(7)).unwrap_or_else(|b| panic!("{b}"));
    assert_eq!(r.completed, 4 * 4 * 50);
    assert!(r.counters.retransmitted_pkts > 0);
}
