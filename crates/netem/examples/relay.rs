//! Runs a [`softverbs_netem::Relay`] in the current network namespace
//! between interface pairs, until killed — to impair links by hand.
//!
//! ```text
//! ip netns exec M relay DELAY_US JITTER_US LOSS_PCT IF_A:IF_B [IF_A:IF_B …]
//! ```

use std::time::Duration;

use softverbs_netem::{Impairment, Relay};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 4 {
        eprintln!("usage: relay DELAY_US JITTER_US LOSS_PCT IF_A:IF_B [IF_A:IF_B …]");
        std::process::exit(2);
    }
    let num = |s: &str| s.parse::<f64>().expect("a number");
    let imp = Impairment::delay(Duration::from_micros(num(&a[0]) as u64))
        .with_jitter(Duration::from_micros(num(&a[1]) as u64))
        .with_loss(num(&a[2]) / 100.0);
    let pairs: Vec<(String, String)> = a[3..]
        .iter()
        .map(|p| {
            let (x, y) = p.split_once(':').expect("IF_A:IF_B");
            (x.to_string(), y.to_string())
        })
        .collect();
    let relay = Relay::start(&pairs, 1).expect("relay");
    relay.set_all(imp);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        if !relay.is_running() {
            eprintln!("relay stopped");
            std::process::exit(1);
        }
        eprintln!("{:?}", relay.stats());
    }
}
