//! Command-line options of `softverbs perf <test>`: perftest 6.06's
//! options, names and per-test defaults (docs/oob-and-tools.md §2.1), plus
//! ours (`-j/--json`, `--loopback`, `--res`, `--stats`, `--oob-timeout`).
//! Options perftest has but softverbs does not implement are accepted by
//! name and rejected by [`PerfArgs::config`] with a clear message.

use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{Kind, PerfTest, Verb};
use crate::pingpong::args::parse_c_int;
use crate::pingpong::net::DEFAULT_PORT;

/// perftest's `-c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum Connection {
    /// Reliable connection.
    Rc,
    /// Unreliable connection (send, write).
    Uc,
    /// Unreliable datagram (send only).
    Ud,
    /// Not supported by softverbs.
    Xrc,
    /// Not supported by softverbs.
    Dc,
    /// Scalable reliable datagram (EFA; send, write, read), on a device
    /// with SRD (the `srd` device).
    Srd,
}

/// perftest's `-A`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AtomicType {
    /// Compare and swap (compare 0, swap 0).
    CmpAndSwap,
    /// Fetch and add (add 1).
    FetchAndAdd,
}

fn c_int(s: &str) -> Result<i64, String> {
    parse_c_int(s)
}

/// `-s`: a number with an optional `K`/`M` suffix.
fn size_arg(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1024),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    let v = parse_c_int(num)?;
    if v < 1 {
        return Err(format!(
            " Message Size should be between 1 and {}",
            u32::MAX / 2
        ));
    }
    Ok(v as u64 * mult)
}

/// The options of one `softverbs perf <test>` run.
#[derive(Args, Debug, Clone, Default)]
#[command(disable_version_flag = true)]
pub struct PerfArgs {
    /// Server to connect to; without it this side is the server.
    pub host: Option<String>,
    /// Listen on / connect to TCP port.
    #[arg(short = 'p', long = "port", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Use IB device (default first device found).
    #[arg(short = 'd', long = "ib-dev", value_name = "DEV")]
    pub ib_dev: Option<String>,
    /// Use port of the IB device.
    #[arg(short = 'i', long = "ib-port", default_value_t = 1)]
    pub ib_port: u8,
    /// Path MTU (256..4096; default the port's active MTU).
    #[arg(short = 'm', long = "mtu")]
    pub mtu: Option<u32>,
    /// Message size (K/M suffixes; default 65536 bw, 2 lat, 8 atomic).
    #[arg(short = 's', long = "size", value_parser = size_arg)]
    pub size: Option<u64>,
    /// Run sizes from 2 to 2^23.
    #[arg(short = 'a', long = "all")]
    pub all: bool,
    /// Iterations (default 5000 write_bw, 1000 otherwise).
    #[arg(short = 'n', long = "iters", value_parser = c_int)]
    pub iters: Option<i64>,
    /// Run for this many seconds instead of -n.
    #[arg(short = 'D', long = "duration", value_parser = c_int)]
    pub duration: Option<i64>,
    /// Warm-up/cool-down margin of -D in seconds (default duration/4).
    #[arg(short = 'f', long = "margin", value_parser = c_int)]
    pub margin: Option<i64>,
    /// Number of QPs (bw tests).
    #[arg(short = 'q', long = "qp", default_value = "1", value_parser = c_int)]
    pub qp: i64,
    /// Send queue depth (default 128 bw, 1 lat).
    #[arg(short = 't', long = "tx-depth", value_parser = c_int)]
    pub tx_depth: Option<i64>,
    /// Receive queue depth (default 512 send, 1 otherwise).
    #[arg(short = 'r', long = "rx-depth", value_parser = c_int)]
    pub rx_depth: Option<i64>,
    /// Connection type.
    #[arg(short = 'c', long = "connection", value_enum, default_value = "RC")]
    pub connection: Option<Connection>,
    /// QP timeout (4.096 µs × 2^N).
    #[arg(short = 'u', long = "qp-timeout", default_value_t = 14)]
    pub qp_timeout: u8,
    /// Service level.
    #[arg(short = 'S', long = "sl", default_value_t = 0)]
    pub sl: u8,
    /// Source GID index (default: the best GID of the port).
    #[arg(short = 'x', long = "gid-index", value_parser = c_int)]
    pub gid_index: Option<i64>,
    /// Max inline size (not read/atomic).
    #[arg(short = 'I', long = "inline_size", value_parser = c_int)]
    pub inline_size: Option<i64>,
    /// One signalled WR per N (default 100).
    #[arg(short = 'Q', long = "cq-mod", value_parser = c_int)]
    pub cq_mod: Option<i64>,
    /// WRs per post (bw tests).
    #[arg(short = 'l', long = "post_list", default_value = "1", value_parser = c_int)]
    pub post_list: i64,
    /// Outstanding reads/atomics (read/atomic; default the device max).
    #[arg(short = 'o', long = "outs", value_parser = c_int)]
    pub outs: Option<i64>,
    /// Atomic operation (atomic tests).
    #[arg(short = 'A', long = "atomic_type", value_enum)]
    pub atomic_type: Option<AtomicType>,
    /// Sleep on CQ events (not write).
    #[arg(short = 'e', long = "events")]
    pub events: bool,
    /// Measure both directions (bw tests).
    #[arg(short = 'b', long = "bidirectional")]
    pub bidirectional: bool,
    /// Skip the peak computation (bw tests).
    #[arg(short = 'N', long = "noPeak")]
    pub no_peak: bool,
    /// Do not warn about the CPU frequency (accepted; no effect here).
    #[arg(short = 'F', long = "CPU-freq")]
    pub cpu_freq: bool,
    /// Report Gb/s instead of MB/s.
    #[arg(long = "report_gbits")]
    pub report_gbits: bool,
    /// Print `Version: 6.06` and exit.
    #[arg(short = 'V', long = "version")]
    pub version: bool,
    /// Output as JSON (one object per run).
    #[arg(short = 'j', long = "json")]
    pub json: bool,
    /// Run both sides in this process over two local devices.
    #[arg(long)]
    pub loopback: bool,
    /// Print the resources (as `softverbs res show`) at the end.
    #[arg(long)]
    pub res: bool,
    /// Print the counters (as `softverbs stat show`) at the end.
    #[arg(long)]
    pub stats: bool,
    /// Seconds to wait for the peer on TCP before giving up (0: forever).
    #[arg(long = "oob-timeout", default_value_t = 60, value_name = "SECS")]
    pub oob_timeout: u64,
    /// GID type preference of the automatic GID choice.
    #[arg(long)]
    pub ipv6: bool,
    /// GRH traffic class.
    #[arg(long, default_value_t = 0)]
    pub tclass: u8,
    /// Skip the peak computation (same as -N... perftest's --use_old_post_send; no wire effect).
    #[arg(long = "use_old_post_send")]
    pub use_old_post_send: bool,
    /// perftest options softverbs does not implement (rejected with a message).
    #[arg(short = 'R', long = "rdma_cm")]
    pub rdma_cm: bool,
    /// Not implemented (OOB over rdma_cm).
    #[arg(short = 'z', long = "comm_rdma_cm")]
    pub comm_rdma_cm: bool,
    /// Not implemented (latency cycles report).
    #[arg(short = 'C', long = "report-cycles")]
    pub report_cycles: bool,
    /// Not implemented (latency histogram).
    #[arg(short = 'H', long = "report-histogrm")]
    pub histogram: bool,
    /// Not implemented (unsorted latency report).
    #[arg(short = 'U', long = "report-unsorted")]
    pub unsorted: bool,
    /// Not implemented (SRQ).
    #[arg(long = "use-srq")]
    pub use_srq: bool,
    /// Not implemented.
    #[arg(long = "run_infinitely")]
    pub run_infinitely: bool,
    /// Not implemented.
    #[arg(long = "report-per-port")]
    pub report_per_port: bool,
    /// Not implemented (broken in perftest 6.06 itself).
    #[arg(long = "dont_xchg_versions")]
    pub dont_xchg_versions: bool,
    /// Not implemented.
    #[arg(long = "mr_per_qp")]
    pub mr_per_qp: bool,
}

/// A validated perf run.
#[derive(Clone, Debug, PartialEq)]
pub struct PerfConfig {
    /// The test.
    pub test: PerfTest,
    /// `Some(server)` on the client.
    pub host: Option<String>,
    /// TCP port.
    pub port: u16,
    /// Device name (`None`: the first).
    pub ib_dev: Option<String>,
    /// Device port.
    pub ib_port: u8,
    /// `-m` in bytes (`None`: the active MTU).
    pub mtu: Option<u32>,
    /// Message size (with `-a`: the largest, 2^23).
    pub size: u64,
    /// `-a`.
    pub all_sizes: bool,
    /// Iterations (0 with `-D`).
    pub iters: u64,
    /// `-D` and its margin.
    pub duration: Option<(Duration, Duration)>,
    /// QPs.
    pub num_qps: u32,
    /// Send queue depth.
    pub tx_depth: u32,
    /// Receive queue depth.
    pub rx_depth: u32,
    /// Connection type.
    pub connection: Connection,
    /// QP timeout exponent.
    pub qp_timeout: u8,
    /// Service level.
    pub sl: u8,
    /// `-x` (`None`: choose the best GID).
    pub gid_index: Option<u8>,
    /// Inline size (`None`: device default, 0 on rxe-like devices).
    pub inline_size: Option<u32>,
    /// Signal one WR in this many.
    pub cq_mod: u32,
    /// WRs per post.
    pub post_list: u32,
    /// Outstanding reads (`None`: the device max).
    pub outs: Option<u32>,
    /// Atomic operation (atomic tests).
    pub atomic_type: Option<AtomicType>,
    /// Sleep on CQ events.
    pub events: bool,
    /// `-b`.
    pub duplex: bool,
    /// No peak computation.
    pub no_peak: bool,
    /// Gb/s.
    pub report_gbits: bool,
    /// JSON output.
    pub json: bool,
    /// Both sides in one process.
    pub loopback: bool,
    /// Print resources at the end.
    pub res: bool,
    /// Print counters at the end.
    pub stats: bool,
    /// TCP read timeout (`None`: forever).
    pub oob_timeout: Option<Duration>,
    /// Prefer IPv6 GIDs.
    pub ipv6: bool,
    /// GRH traffic class.
    pub tclass: u8,
    /// `--use_old_post_send`: only changes a banner line.
    pub old_post_send: bool,
}

/// The largest `-a` size.
pub const MAX_SIZE: u64 = 1 << 23;

fn range(name: &str, v: i64, lo: i64, hi: i64) -> Result<u32, String> {
    if v < lo || v > hi {
        return Err(format!(" {name} should be between {lo} and {hi} (got {v})"));
    }
    Ok(v as u32)
}

impl PerfArgs {
    /// Validates the options for `test` as perftest's parser does, fills
    /// in the per-test defaults, and rejects what softverbs lacks.
    pub fn config(&self, test: PerfTest) -> Result<PerfConfig, String> {
        let bw = test.kind == Kind::Bw;
        let verb = test.verb;
        let name = test.name();
        for (on, opt) in [
            (self.rdma_cm, "-R/--rdma_cm"),
            (self.comm_rdma_cm, "-z/--comm_rdma_cm"),
            (self.report_cycles, "-C/--report-cycles"),
            (self.histogram, "-H/--report-histogrm"),
            (self.unsorted, "-U/--report-unsorted"),
            (self.use_srq, "--use-srq"),
            (self.run_infinitely, "--run_infinitely"),
            (self.report_per_port, "--report-per-port"),
            (self.dont_xchg_versions, "--dont_xchg_versions"),
            (self.mr_per_qp, "--mr_per_qp"),
        ] {
            if on {
                return Err(format!(
                    "{opt} is not supported by softverbs perf; run without it"
                ));
            }
        }
        let connection = self.connection.unwrap_or(Connection::Rc);
        match connection {
            Connection::Xrc | Connection::Dc => {
                return Err(format!(
                    "connection type {connection:?} is not supported by softverbs; use RC, UC, UD or SRD"
                ))
            }
            Connection::Srd if verb == Verb::Atomic => {
                return Err(format!(" SRD connection not possible in {name} (no atomics on SRD)"))
            }
            Connection::Uc if matches!(verb, Verb::Read | Verb::Atomic) => {
                return Err(format!(" UC connection not possible in {name} (use RC)"))
            }
            Connection::Ud if verb != Verb::Send => {
                return Err(format!(
                    " UD connection only possible in SEND verb, not {name}"
                ))
            }
            _ => {}
        }
        if verb == Verb::Atomic && (self.all || self.size.is_some_and(|s| s != 8)) {
            return Err("Message size cannot be changed for Atomic tests ".into());
        }
        if let Some(s) = self.size {
            if s > (u32::MAX / 2) as u64 {
                return Err(format!(
                    " Message Size should be between 1 and {}",
                    u32::MAX / 2
                ));
            }
        }
        let duration = match self.duration {
            None => None,
            Some(d) if d <= 0 => return Err(" Duration must be positive".into()),
            Some(d) => {
                if self.all {
                    return Err(
                        " Duration mode currently doesn't support running on all sizes.".into(),
                    );
                }
                if self.events {
                    return Err(" Duration mode currently doesn't support events.".into());
                }
                let margin = self.margin.unwrap_or(d / 4);
                if margin < 0 || d <= 2 * margin {
                    return Err(format!(
                        " Duration {d} must be longer than twice the margin {margin}"
                    ));
                }
                Some((
                    Duration::from_secs(d as u64),
                    Duration::from_secs(margin as u64),
                ))
            }
        };
        let num_qps = range("Number of QPs", self.qp, 1, 16384)?;
        if num_qps > 1 && !bw {
            return Err(" Multiple QPs only available on bw tests".into());
        }
        for (on, opt) in [
            (self.bidirectional, "-b"),
            (self.post_list != 1, "-l"),
            (self.no_peak, "-N"),
        ] {
            if on && !bw {
                return Err(format!(" {opt} is only available on bw tests"));
            }
        }
        if self.events && verb == Verb::Write {
            return Err(" Events feature not available on WRITE verb".into());
        }
        if self.inline_size.is_some() && matches!(verb, Verb::Read | Verb::Atomic) {
            return Err(format!(" Inline feature not available on {name}"));
        }
        if self.outs.is_some() && !matches!(verb, Verb::Read | Verb::Atomic) {
            return Err(" -o/--outs is only available on read and atomic tests".into());
        }
        if self.atomic_type.is_some() && verb != Verb::Atomic {
            return Err(" -A/--atomic_type is only available on atomic tests".into());
        }
        if let Some(m) = self.mtu {
            if !matches!(m, 256 | 512 | 1024 | 2048 | 4096) {
                return Err(format!(" Invalid MTU - {m} (256, 512, 1024, 2048 or 4096)"));
            }
        }
        let size = if self.all {
            MAX_SIZE
        } else {
            self.size.unwrap_or(match (verb, bw) {
                (Verb::Atomic, _) => 8,
                (_, true) => 65536,
                (_, false) => 2,
            })
        };
        let iters = match duration {
            Some(_) => 0,
            None => {
                let default = if test == PerfTest::new(Verb::Write, Kind::Bw) {
                    5000
                } else {
                    1000
                };
                range(
                    "Number of iterations",
                    self.iters.unwrap_or(default),
                    5,
                    100_000_000,
                )? as u64
            }
        };
        let post_list = range("Post list", self.post_list, 1, 15000)?;
        if iters > 0 && iters % post_list as u64 != 0 {
            return Err(format!(
                " Number of iterations {iters} must be a multiple of the post list size {post_list}"
            ));
        }
        let mut tx_depth = range(
            "TX depth",
            self.tx_depth.unwrap_or(if bw { 128 } else { 1 }),
            1,
            15000,
        )?;
        if iters > 0 {
            tx_depth = tx_depth.min(iters as u32);
        }
        let mut rx_depth = range(
            "RX depth",
            self.rx_depth
                .unwrap_or(if verb == Verb::Send { 512 } else { 1 }),
            1,
            16384,
        )?;
        if verb == Verb::Send {
            if iters > 0 {
                rx_depth = rx_depth.min(iters as u32);
            }
            if rx_depth % 2 == 1 && duration.is_none() && !self.all {
                rx_depth += 1;
            }
        } else if rx_depth != 1 {
            return Err(format!(
                " -r/--rx-depth is only 1 for {name} (RDMA verbs post no receives)"
            ));
        }
        let mut cq_mod = match self.cq_mod {
            Some(q) => range("CQ moderation", q, 1, 1024)?,
            None if !bw => 1,
            None if size > 8192 && connection != Connection::Ud && !self.all && !self.events => 1,
            None => 100,
        };
        cq_mod = cq_mod.min(tx_depth);
        let gid_index = match self.gid_index {
            None => None,
            Some(x) => Some(range("GID index", x, 0, 64)? as u8),
        };
        let inline_size = match self.inline_size {
            None => None,
            Some(i) => Some(range("Inline size", i, 0, 912)?),
        };
        let outs = match self.outs {
            None => None,
            Some(o) => Some(range("Outstanding reads", o, 1, 65535)?),
        };
        if self.sl > 15 {
            return Err(format!(" SL should be between 0 and 15 (got {})", self.sl));
        }
        if self.ib_port == 0 {
            return Err(" IB port should be at least 1".into());
        }
        if self.loopback && self.host.is_some() {
            return Err("--loopback runs both sides here: give no host".into());
        }
        let no_peak = self.no_peak || duration.is_some() || (bw && iters > 20000);
        Ok(PerfConfig {
            test,
            host: self.host.clone(),
            port: self.port,
            ib_dev: self.ib_dev.clone(),
            ib_port: self.ib_port,
            mtu: self.mtu,
            size,
            all_sizes: self.all,
            iters,
            duration,
            num_qps,
            tx_depth,
            rx_depth,
            connection,
            qp_timeout: self.qp_timeout,
            sl: self.sl,
            gid_index,
            inline_size,
            cq_mod,
            post_list,
            outs,
            atomic_type: (verb == Verb::Atomic)
                .then(|| self.atomic_type.unwrap_or(AtomicType::FetchAndAdd)),
            events: self.events,
            duplex: self.bidirectional,
            no_peak,
            report_gbits: self.report_gbits,
            json: self.json,
            loopback: self.loopback,
            res: self.res,
            stats: self.stats,
            oob_timeout: (self.oob_timeout > 0).then(|| Duration::from_secs(self.oob_timeout)),
            ipv6: self.ipv6,
            tclass: self.tclass,
            old_post_send: self.use_old_post_send,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Parser, Subcommand};

    #[derive(Parser, Debug)]
    #[command(name = "softverbs", version, propagate_version = true)]
    struct Cli {
        #[command(subcommand)]
        cmd: Top,
    }
    #[derive(Subcommand, Debug)]
    enum Top {
        Perf {
            test: String,
            #[command(flatten)]
            args: PerfArgs,
        },
    }

    fn cfg(test: &str, args: &[&str]) -> Result<PerfConfig, String> {
        let mut v = vec!["softverbs", "perf", test];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(v).map_err(|e| e.to_string())?;
        let Top::Perf { test, args } = cli.cmd;
        args.config(PerfTest::from_name(&test).unwrap())
    }

    #[test]
    fn defaults_per_test() {
        let w = cfg("write_bw", &[]).unwrap();
        assert_eq!(
            (w.size, w.iters, w.tx_depth, w.rx_depth, w.cq_mod),
            (65536, 5000, 128, 1, 1)
        );
        assert_eq!(
            (w.port, w.num_qps, w.qp_timeout, w.connection),
            (18515, 1, 14, Connection::Rc)
        );
        let s = cfg("send_bw", &[]).unwrap();
        assert_eq!((s.iters, s.rx_depth), (1000, 512));
        let s = cfg("send_bw", &["-s", "4096"]).unwrap();
        assert_eq!(s.cq_mod, 100);
        let l = cfg("send_lat", &[]).unwrap();
        assert_eq!((l.size, l.tx_depth, l.cq_mod), (2, 1, 1));
        let a = cfg("atomic_bw", &[]).unwrap();
        assert_eq!((a.size, a.atomic_type), (8, Some(AtomicType::FetchAndAdd)));
        // The capture's ib_write_bw -n 5 -s 8192: TX depth 5, CQ moderation 5.
        let w = cfg(
            "write_bw",
            &["-n", "5", "-s", "8192", "-x", "1", "-F", "10.77.0.3"],
        )
        .unwrap();
        assert_eq!((w.tx_depth, w.cq_mod, w.gid_index), (5, 5, Some(1)));
        assert_eq!(cfg("write_bw", &["-s", "64K"]).unwrap().size, 65536);
        assert!(cfg("write_bw", &["-n", "30000"]).unwrap().no_peak);
    }

    #[test]
    fn options_and_rejections() {
        let c = cfg("atomic_bw", &["-A", "CMP_AND_SWAP", "-o", "16"]).unwrap();
        assert_eq!(
            (c.atomic_type, c.outs),
            (Some(AtomicType::CmpAndSwap), Some(16))
        );
        let c = cfg("send_bw", &["-c", "UD", "-q", "4", "--report_gbits", "-j"]).unwrap();
        assert_eq!(
            (c.connection, c.num_qps, c.report_gbits, c.json),
            (Connection::Ud, 4, true, true)
        );
        for (test, args, msg) in [
            (
                "atomic_bw",
                &["-s", "16"][..],
                "cannot be changed for Atomic",
            ),
            ("atomic_bw", &["-a"][..], "cannot be changed for Atomic"),
            (
                "write_lat",
                &["-q", "2"][..],
                "Multiple QPs only available on bw",
            ),
            ("read_bw", &["-c", "UC"][..], "UC connection not possible"),
            (
                "write_bw",
                &["-c", "UD"][..],
                "UD connection only possible in SEND",
            ),
            (
                "write_bw",
                &["-e"][..],
                "Events feature not available on WRITE",
            ),
            (
                "write_bw",
                &["-D", "4", "-a"][..],
                "doesn't support running on all sizes",
            ),
            ("write_bw", &["-n", "3"][..], "between 5 and"),
            ("write_bw", &["-c", "XRC"][..], "not supported by softverbs"),
            ("write_bw", &["-R"][..], "not supported by softverbs"),
            ("read_bw", &["-I", "64"][..], "Inline feature not available"),
            ("write_bw", &["-m", "1500"][..], "Invalid MTU"),
            (
                "write_bw",
                &["-n", "10", "-l", "3"][..],
                "multiple of the post list",
            ),
        ] {
            let e = cfg(test, args).unwrap_err();
            assert!(e.contains(msg), "{test} {args:?}: {e}");
        }
        let d = cfg("write_bw", &["-D", "10"]).unwrap();
        assert_eq!(
            d.duration,
            Some((Duration::from_secs(10), Duration::from_secs(2)))
        );
        assert_eq!(d.iters, 0);
        assert!(d.no_peak);
        let v = cfg("write_bw", &["-V"]).unwrap();
        assert_eq!(v.test.name(), "write_bw");
    }
}
