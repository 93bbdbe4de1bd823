//! Command-line options of `softverbs pingpong {rc,uc,ud,srq}`: rdma-core
//! v44's options, short and long names and per-tool defaults
//! (docs/oob-and-tools.md §1.1). A host argument makes this side the
//! client; without one it is the server. Numbers accept C's `strtol(…, 0)`
//! forms (`0x1f`, `017`), but trailing junk is an error here rather than
//! silently ignored.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::net::DEFAULT_PORT;
use super::oob::{PpTimeouts, SRQ_MAX_QP};
use super::Tool;

/// Parses an integer the way C's `strtol(s, &end, 0)` does (sign, `0x`
/// hex, leading-`0` octal, decimal) and rejects anything left over.
pub fn parse_c_int(s: &str) -> Result<i64, String> {
    let t = s.trim_start();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        (16, h)
    } else if t.len() > 1 && t.starts_with('0') {
        (8, &t[1..])
    } else {
        (10, t)
    };
    let v = i64::from_str_radix(digits, radix)
        .map_err(|_| format!("{s:?} is not a number (decimal, 0x hex or 0 octal)"))?;
    Ok(if neg { -v } else { v })
}

fn ranged(s: &str, lo: i64, hi: i64) -> Result<i64, String> {
    let v = parse_c_int(s)?;
    if v < lo || v > hi {
        return Err(format!("{v} is out of range {lo}..={hi}"));
    }
    Ok(v)
}

fn tcp_port(s: &str) -> Result<u16, String> {
    Ok(ranged(s, 0, 65535)? as u16)
}
fn ib_port(s: &str) -> Result<u8, String> {
    Ok(ranged(s, 1, 255)? as u8)
}
fn count(s: &str) -> Result<u32, String> {
    Ok(ranged(s, 1, u32::MAX as i64)? as u32)
}
fn size(s: &str) -> Result<u32, String> {
    Ok(ranged(s, 0, u32::MAX as i64)? as u32)
}
fn sl(s: &str) -> Result<u8, String> {
    Ok(ranged(s, 0, 15)? as u8)
}
fn gid_index(s: &str) -> Result<i32, String> {
    Ok(ranged(s, -1, 255)? as i32)
}
fn mtu(s: &str) -> Result<u32, String> {
    let v = parse_c_int(s)?;
    match v {
        256 | 512 | 1024 | 2048 | 4096 => Ok(v as u32),
        _ => Err(format!(
            "{v} is not an IB MTU (256, 512, 1024, 2048 or 4096)"
        )),
    }
}

/// `softverbs pingpong …`: which tool.
#[derive(Subcommand, Debug, Clone)]
pub enum PingpongCommand {
    /// RC ping-pong, like ibv_rc_pingpong: a message bounced back and forth
    /// over a reliable connection; reports bandwidth and µs per round trip.
    ///
    /// Example: softverbs pingpong rc -g 1 (server), then softverbs pingpong rc -g 1 HOST
    Rc(RcArgs),
    /// UC ping-pong, like ibv_uc_pingpong (unreliable connection).
    ///
    /// Example: softverbs pingpong uc -g 1 HOST
    Uc(UcArgs),
    /// UD ping-pong, like ibv_ud_pingpong (datagrams, Q_Key 0x11111111; size ≤ MTU).
    ///
    /// Example: softverbs pingpong ud -g 1 HOST
    Ud(UdArgs),
    /// SRD ping-pong: ibv_ud_pingpong's exchange over an EFA SRD QP
    /// (reliable datagrams; size ≤ MTU) on a device with SRD (`srd`).
    ///
    /// Example: softverbs pingpong srd -g 1 HOST
    Srd(UdArgs),
    /// SRQ ping-pong, like ibv_srq_pingpong: -q RC QPs sharing one receive queue.
    ///
    /// Example: softverbs pingpong srq -g 1 -q 4 HOST
    Srq(SrqArgs),
}

/// Options every pingpong tool has.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Server to connect to; without it this side is the server.
    pub host: Option<String>,
    /// Listen on / connect to TCP port.
    #[arg(short = 'p', long = "port", default_value_t = DEFAULT_PORT, value_parser = tcp_port)]
    pub port: u16,
    /// Use IB device (default first device found).
    #[arg(short = 'd', long = "ib-dev", value_name = "DEV")]
    pub ib_dev: Option<String>,
    /// Use port PORT of the IB device.
    #[arg(short = 'i', long = "ib-port", default_value = "1", value_parser = ib_port)]
    pub ib_port: u8,
    /// Number of receives to post at a time.
    #[arg(short = 'r', long = "rx-depth", default_value = "500", value_parser = count)]
    pub rx_depth: u32,
    /// Number of exchanges (srq: in total over all QPs).
    #[arg(short = 'n', long = "iters", default_value = "1000", value_parser = count)]
    pub iters: u32,
    /// Service level value.
    #[arg(short = 'l', long = "sl", default_value = "0", value_parser = sl)]
    pub sl: u8,
    /// Sleep on CQ events (default poll).
    #[arg(short = 'e', long = "events")]
    pub events: bool,
    /// Local port GID index (-1: no GID; required on RoCE).
    #[arg(short = 'g', long = "gid-idx", default_value = "-1", value_parser = gid_index,
          allow_negative_numbers = true)]
    pub gid_idx: i32,
    /// Validate the received buffer.
    #[arg(short = 'c', long = "chk")]
    pub chk: bool,
    /// Print the resources (as `softverbs res show`) at the end.
    #[arg(long)]
    pub res: bool,
    /// Print the counters (as `softverbs stat show`) at the end.
    #[arg(long)]
    pub stats: bool,
    /// Seconds to wait for the peer on TCP before giving up (0: forever).
    #[arg(long = "oob-timeout", default_value_t = 60, value_name = "SECS")]
    pub oob_timeout: u64,
}

/// `pingpong rc` options (`"p:d:i:s:m:r:n:l:eg:oOPtcjN"`).
#[derive(Args, Debug, Clone)]
pub struct RcArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Size of message to exchange.
    #[arg(short = 's', long = "size", default_value = "4096", value_parser = size)]
    pub size: u32,
    /// Path MTU (not negotiated: both sides must agree).
    #[arg(short = 'm', long = "mtu", default_value = "1024", value_parser = mtu)]
    pub mtu: u32,
    /// Use on-demand paging.
    #[arg(short = 'o', long = "odp")]
    pub odp: bool,
    /// Use implicit on-demand paging.
    #[arg(short = 'O', long = "iodp")]
    pub iodp: bool,
    /// Prefetch an ODP MR.
    #[arg(short = 'P', long = "prefetch")]
    pub prefetch: bool,
    /// Get CQE with timestamp.
    #[arg(short = 't', long = "ts")]
    pub ts: bool,
    /// Use device memory.
    #[arg(short = 'j', long = "dm")]
    pub dm: bool,
    /// Use the new post send WR API (same wire behaviour).
    #[arg(short = 'N', long = "new_send")]
    pub new_send: bool,
}

/// `pingpong uc` options (`"p:d:i:s:m:r:n:l:eg:c"`).
#[derive(Args, Debug, Clone)]
pub struct UcArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Size of message to exchange.
    #[arg(short = 's', long = "size", default_value = "4096", value_parser = size)]
    pub size: u32,
    /// Path MTU (not negotiated: both sides must agree).
    #[arg(short = 'm', long = "mtu", default_value = "1024", value_parser = mtu)]
    pub mtu: u32,
}

/// `pingpong ud` options (`"p:d:i:s:r:n:l:eg:c"`; no `-m`).
#[derive(Args, Debug, Clone)]
pub struct UdArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Size of message to exchange (at most the port's active MTU).
    #[arg(short = 's', long = "size", default_value = "1024", value_parser = size)]
    pub size: u32,
}

/// `pingpong srq` options (`"p:d:i:s:m:q:r:n:l:eog:c"`).
#[derive(Args, Debug, Clone)]
pub struct SrqArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Size of message to exchange.
    #[arg(short = 's', long = "size", default_value = "4096", value_parser = count)]
    pub size: u32,
    /// Path MTU (not negotiated: both sides must agree).
    #[arg(short = 'm', long = "mtu", default_value = "1024", value_parser = mtu)]
    pub mtu: u32,
    /// Number of QPs (both sides must agree).
    #[arg(short = 'q', long = "num-qp", default_value = "16", value_parser = count)]
    pub num_qp: u32,
    /// Use on-demand paging.
    #[arg(short = 'o', long = "odp")]
    pub odp: bool,
}

/// Everything a pingpong run needs, validated, whatever the tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingpongConfig {
    /// Which tool.
    pub tool: Tool,
    /// `Some(server)` on the client.
    pub host: Option<String>,
    /// TCP port.
    pub port: u16,
    /// Device name (`None`: the first).
    pub ib_dev: Option<String>,
    /// Device port.
    pub ib_port: u8,
    /// Message size.
    pub size: u32,
    /// Path MTU in bytes (ud: `None`, the port's active MTU).
    pub mtu: Option<u32>,
    /// QPs (1 except srq).
    pub num_qp: u32,
    /// Receives kept posted.
    pub rx_depth: u32,
    /// Iterations.
    pub iters: u32,
    /// Service level.
    pub sl: u8,
    /// Sleep on CQ events.
    pub events: bool,
    /// GID index, -1 for none.
    pub gid_idx: i32,
    /// Check received data.
    pub chk: bool,
    /// Print resources at the end.
    pub res: bool,
    /// Print counters at the end.
    pub stats: bool,
    /// TCP timeouts.
    pub timeouts: PpTimeouts,
}

impl PingpongConfig {
    /// True on the client side.
    pub fn is_client(&self) -> bool {
        self.host.is_some()
    }
}

fn unsupported(tool: Tool, opt: &str, what: &str) -> String {
    format!(
        "{opt} ({what}) of {} is not supported by softverbs; run without it",
        tool.real_name()
    )
}

impl PingpongCommand {
    /// Validates the options as the real tool does and returns one config.
    pub fn config(&self) -> Result<PingpongConfig, String> {
        let (tool, common, size, mtu, num_qp) = match self {
            PingpongCommand::Rc(a) => {
                if a.prefetch && !(a.odp || a.iodp) {
                    return Err("prefetch is valid only with on-demand memory region".into());
                }
                if a.dm && (a.odp || a.iodp) {
                    return Err("DM memory region can't be on demand".into());
                }
                for (on, opt, what) in [
                    (a.odp, "-o", "on-demand paging"),
                    (a.iodp, "-O", "implicit on-demand paging"),
                    (a.prefetch, "-P", "prefetch"),
                    (a.ts, "-t", "CQE timestamps"),
                    (a.dm, "-j", "device memory"),
                ] {
                    if on {
                        return Err(unsupported(Tool::Rc, opt, what));
                    }
                }
                (Tool::Rc, &a.common, a.size, Some(a.mtu), 1)
            }
            PingpongCommand::Uc(a) => (Tool::Uc, &a.common, a.size, Some(a.mtu), 1),
            PingpongCommand::Ud(a) => (Tool::Ud, &a.common, a.size, None, 1),
            PingpongCommand::Srd(a) => (Tool::Srd, &a.common, a.size, None, 1),
            PingpongCommand::Srq(a) => {
                if a.odp {
                    return Err(unsupported(Tool::Srq, "-o", "on-demand paging"));
                }
                if a.num_qp as usize >= SRQ_MAX_QP {
                    return Err(format!(
                        "num_qp {} must be less than {}",
                        a.num_qp,
                        SRQ_MAX_QP - 1
                    ));
                }
                if a.num_qp > a.common.rx_depth {
                    return Err(format!(
                        "rx_depth {} is too small for {} QPs -- must have at least one receive per QP.",
                        a.common.rx_depth, a.num_qp
                    ));
                }
                (Tool::Srq, &a.common, a.size, Some(a.mtu), a.num_qp)
            }
        };
        let secs = common.oob_timeout;
        let io = (secs > 0).then(|| Duration::from_secs(secs));
        Ok(PingpongConfig {
            tool,
            host: common.host.clone(),
            port: common.port,
            ib_dev: common.ib_dev.clone(),
            ib_port: common.ib_port,
            size,
            mtu,
            num_qp,
            rx_depth: common.rx_depth,
            iters: common.iters,
            sl: common.sl,
            events: common.events,
            gid_idx: common.gid_idx,
            chk: common.chk,
            res: common.res,
            stats: common.stats,
            timeouts: PpTimeouts {
                connect: io.unwrap_or(Duration::from_secs(60)),
                io,
                accept: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    #[command(name = "softverbs", version, propagate_version = true)]
    struct Cli {
        #[command(subcommand)]
        cmd: Top,
    }
    #[derive(Subcommand, Debug)]
    enum Top {
        #[command(subcommand)]
        Pingpong(PingpongCommand),
    }

    fn cfg(args: &[&str]) -> Result<PingpongConfig, String> {
        let mut v = vec!["softverbs", "pingpong"];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(v).map_err(|e| e.to_string())?;
        let Top::Pingpong(cmd) = cli.cmd;
        cmd.config()
    }

    #[test]
    fn defaults_per_tool() {
        let rc = cfg(&["rc"]).unwrap();
        assert_eq!(
            (
                rc.tool,
                rc.port,
                rc.ib_port,
                rc.size,
                rc.mtu,
                rc.rx_depth,
                rc.iters
            ),
            (Tool::Rc, 18515, 1, 4096, Some(1024), 500, 1000)
        );
        assert_eq!(
            (rc.sl, rc.gid_idx, rc.events, rc.chk),
            (0, -1, false, false)
        );
        assert!(!rc.is_client());
        let ud = cfg(&["ud", "10.77.0.3"]).unwrap();
        assert_eq!((ud.size, ud.mtu), (1024, None));
        assert_eq!(ud.host.as_deref(), Some("10.77.0.3"));
        let srq = cfg(&["srq"]).unwrap();
        assert_eq!(srq.num_qp, 16);
        assert_eq!(cfg(&["uc"]).unwrap().size, 4096);
    }

    #[test]
    fn rdma_core_option_spellings() {
        let c = cfg(&[
            "rc", "-p", "0x4000", "-d", "rxe0", "-i", "1", "-g", "1", "-s", "010", "-m", "2048",
            "-r", "100", "-n", "5", "-l", "3", "-e", "-c", "-N", "host",
        ])
        .unwrap();
        assert_eq!(
            (c.port, c.size, c.mtu, c.rx_depth, c.iters),
            (0x4000, 8, Some(2048), 100, 5)
        );
        assert_eq!((c.sl, c.gid_idx, c.events, c.chk), (3, 1, true, true));
        assert_eq!(c.ib_dev.as_deref(), Some("rxe0"));
        let c = cfg(&["srq", "--num-qp", "4", "--gid-idx", "-1", "--iters", "9"]).unwrap();
        assert_eq!((c.num_qp, c.gid_idx, c.iters), (4, -1, 9));
    }

    #[test]
    fn rejects_what_the_tools_reject() {
        assert!(cfg(&["rc", "-p", "65536"]).is_err());
        assert!(cfg(&["rc", "-i", "0"]).is_err());
        assert!(cfg(&["rc", "-m", "1500"]).is_err());
        assert!(cfg(&["ud", "-m", "1024"]).is_err(), "ud has no -m");
        assert!(cfg(&["uc", "-o"]).is_err(), "uc has no -o");
        assert!(cfg(&["srq", "-s", "0"]).is_err());
        assert!(cfg(&["rc", "a", "b"]).is_err(), "one host at most");
        let e = cfg(&["srq", "-q", "256", "-r", "1000"]).unwrap_err();
        assert!(e.contains("must be less than 255"), "{e}");
        let e = cfg(&["srq", "-q", "20", "-r", "10"]).unwrap_err();
        assert!(e.contains("rx_depth 10 is too small for 20 QPs"), "{e}");
        let e = cfg(&["rc", "-P"]).unwrap_err();
        assert!(e.contains("prefetch is valid only"), "{e}");
        let e = cfg(&["rc", "-o"]).unwrap_err();
        assert!(e.contains("not supported by softverbs"), "{e}");
        assert!(cfg(&["rc", "-n", "12x"]).is_err(), "trailing junk");
    }

    #[test]
    fn c_numbers() {
        assert_eq!(parse_c_int("0x1F"), Ok(31));
        assert_eq!(parse_c_int("017"), Ok(15));
        assert_eq!(parse_c_int("0"), Ok(0));
        assert_eq!(parse_c_int("-1"), Ok(-1));
        assert!(parse_c_int("09").is_err());
        assert!(parse_c_int("").is_err());
    }
}
