//! `softverbs sim`: run the deterministic network simulator over one seed or
//! a sweep of seeds, print a summary, and on a breach name the invariant and
//! the one-line command that replays it.

use std::process::ExitCode;

use anyhow::{bail, Context};
use softverbs_sim::{Breach, Ops, SimConfig, SimReport, TransportMix};
use softverbs_transport::Mtu;

/// Lines of trace printed with a breach (the run is replayed with tracing on).
const TRACE_LINES: usize = 40;

/// Options of `softverbs sim`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// The seed every random choice is drawn from.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Sweep this many seeds, from --seed on; stop at the first breach.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// Number of QP pairs.
    #[arg(long, default_value_t = 4)]
    pub qps: usize,
    /// Number of simulated hosts the pairs are spread over.
    #[arg(long, default_value_t = 4)]
    pub hosts: usize,
    /// Work requests per QP pair.
    #[arg(long, default_value_t = 100)]
    pub messages: usize,
    /// Probability that a packet is lost.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Probability that a packet is reordered.
    #[arg(long, default_value_t = 0.0)]
    pub reorder: f64,
    /// Probability that a packet is duplicated.
    #[arg(long, default_value_t = 0.0)]
    pub dup: f64,
    /// Probability that a packet has bits flipped (the ICRC must catch it).
    #[arg(long, default_value_t = 0.0)]
    pub corrupt: f64,
    /// Path MTU in bytes: 256, 512, 1024, 2048 or 4096.
    #[arg(long, default_value_t = 1024)]
    pub mtu: usize,
    /// Largest message in bytes (default: four MTUs; UD: one MTU).
    #[arg(long)]
    pub max_msg: Option<usize>,
    /// Operations to mix: a comma-separated list of send, write, read, atomic.
    #[arg(long, default_value = "send,write,read,atomic")]
    pub ops: String,
    /// Transport of the QP pairs: rc, uc, ud or mix.
    #[arg(long, default_value = "rc")]
    pub transport: String,
    /// One-way fabric delay in microseconds.
    #[arg(long, default_value_t = 5.0)]
    pub delay_us: f64,
    /// Egress bandwidth of each host in Gb/s (0: infinite).
    #[arg(long, default_value_t = 25.0)]
    pub bandwidth_gbps: f64,
    /// Most work requests outstanding per pair.
    #[arg(long, default_value_t = 8)]
    pub window: usize,
    /// Receive WQEs each responder keeps posted.
    #[arg(long, default_value_t = 16)]
    pub recv_depth: usize,
    /// Probability that a consumed receive is reposted late (exercises RNR).
    #[arg(long, default_value_t = 0.0)]
    pub rnr: f64,
    /// Local ACK timeout exponent of the RC requesters (4.096 µs × 2^N;
    /// default: drawn per pair from 10..=14).
    #[arg(long)]
    pub timeout: Option<u8>,
    /// Print JSON (one report per seed, or the breach) instead of text.
    #[arg(short = 'j', long)]
    pub json: bool,
}

impl SimArgs {
    /// The simulator config for `seed`.
    fn config(&self, seed: u64) -> anyhow::Result<SimConfig> {
        let mtu = Mtu::from_bytes(self.mtu)
            .with_context(|| format!("--mtu {} is not 256, 512, 1024, 2048 or 4096", self.mtu))?;
        let ops: Ops = self
            .ops
            .parse()
            .map_err(anyhow::Error::msg)
            .context("--ops")?;
        let transport: TransportMix = self
            .transport
            .parse()
            .map_err(anyhow::Error::msg)
            .context("--transport")?;
        if !(self.delay_us.is_finite() && self.delay_us >= 0.0) {
            bail!("--delay-us must be a non-negative number of microseconds");
        }
        let cfg = SimConfig {
            seed,
            qps: self.qps,
            hosts: self.hosts,
            messages: self.messages,
            loss: self.loss,
            reorder: self.reorder,
            dup: self.dup,
            corrupt: self.corrupt,
            delay_ns: (self.delay_us * 1_000.0).round() as u64,
            bandwidth_gbps: self.bandwidth_gbps,
            mtu,
            max_msg: self.max_msg,
            ops,
            transport,
            window: self.window,
            recv_depth: self.recv_depth,
            rnr: self.rnr,
            timeout: self.timeout,
            ..SimConfig::default()
        };
        cfg.validate().map_err(anyhow::Error::msg)?;
        Ok(cfg)
    }

    /// The command line that replays `seed` alone.
    pub fn repro(&self, seed: u64) -> String {
        let mut cmd = format!(
            "softverbs sim --seed {seed} --qps {} --hosts {} --messages {} --loss {} --reorder {} --dup {} --corrupt {} --mtu {} --ops {} --transport {} --delay-us {} --bandwidth-gbps {} --window {}",
            self.qps,
            self.hosts,
            self.messages,
            self.loss,
            self.reorder,
            self.dup,
            self.corrupt,
            self.mtu,
            self.ops,
            self.transport,
            self.delay_us,
            self.bandwidth_gbps,
            self.window
        );
        if let Some(m) = self.max_msg {
            cmd += &format!(" --max-msg {m}");
        }
        if self.recv_depth != 16 {
            cmd += &format!(" --recv-depth {}", self.recv_depth);
        }
        if self.rnr > 0.0 {
            cmd += &format!(" --rnr {}", self.rnr);
        }
        if let Some(t) = self.timeout {
            cmd += &format!(" --timeout {t}");
        }
        cmd
    }
}

/// Totals over a sweep.
#[derive(Default)]
struct Totals {
    runs: u64,
    messages: u64,
    bytes: u64,
    packets: u64,
    lost: u64,
    corrupt_caught: u64,
    retransmissions: u64,
    sim_ns: u64,
}

impl Totals {
    fn add(&mut self, r: &SimReport) {
        self.runs += 1;
        self.messages += r.messages;
        self.bytes += r.bytes;
        self.packets += r.packets.sent;
        self.lost += r.packets.lost;
        self.corrupt_caught += r.packets.corrupt_caught;
        self.retransmissions += r.retransmissions;
        self.sim_ns += r.sim_time_ns;
    }
}

/// Run `softverbs sim`. Exit code 0 when every seed kept every invariant,
/// 1 on a breach (after printing it and its reproduction).
pub fn run(args: &SimArgs) -> anyhow::Result<ExitCode> {
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let mut totals = Totals::default();
    let mut reports = Vec::new();
    for seed in args.seed..args.seed.saturating_add(args.seeds) {
        let cfg = args.config(seed)?;
        match softverbs_sim::run(&cfg) {
            Ok(report) => {
                totals.add(&report);
                if args.json {
                    reports.push(report);
                } else if args.seeds == 1 {
                    println!("{report}");
                }
            }
            Err(breach) => {
                let breach = with_trace(&cfg, breach);
                print_breach(args, &breach)?;
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if args.json {
        let out = if args.seeds == 1 {
            serde_json::to_string_pretty(&reports[0])?
        } else {
            serde_json::to_string_pretty(&reports)?
        };
        println!("{out}");
    } else if args.seeds > 1 {
        println!(
            "{} seeds ({}..={}): no invariant broken; {} messages, {} payload bytes, {} packets ({} lost, {} corrupted and caught), {} retransmission rounds, {:.3} s simulated",
            totals.runs,
            args.seed,
            args.seed + args.seeds - 1,
            totals.messages,
            totals.bytes,
            totals.packets,
            totals.lost,
            totals.corrupt_caught,
            totals.retransmissions,
            totals.sim_ns as f64 / 1e9
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Replay the failing seed with tracing on, to attach the last events.
fn with_trace(cfg: &SimConfig, breach: Breach) -> Breach {
    let traced = SimConfig {
        trace: TRACE_LINES,
        ..cfg.clone()
    };
    match softverbs_sim::run(&traced) {
        Err(b) if b.invariant == breach.invariant && b.at_ns == breach.at_ns => b,
        _ => breach,
    }
}

fn print_breach(args: &SimArgs, breach: &Breach) -> anyhow::Result<()> {
    let repro = args.repro(breach.seed);
    if args.json {
        let v = serde_json::json!({ "breach": breach, "invariant": breach.invariant.name(), "reproduce": repro });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        eprintln!("BREACH: {breach}");
        if !breach.trace.is_empty() {
            eprintln!("last events:");
            for line in &breach.trace {
                eprintln!("  {line}");
            }
        }
        eprintln!("reproduce with:\n  {repro}");
    }
    Ok(())
}
