//! `softverbs` — the command line of the softverbs RDMA stack.

// The CLI is an I/O edge: it measures wall-clock time (perf, demo).
#![allow(clippy::disallowed_methods)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod baseline;
mod bench;
mod decode;
mod demo;
mod host;
mod perftest;
mod pingpong;
mod rdma;
mod sim;

/// softverbs: RDMA in user space (RoCEv2 wire protocol, verbs, tools).
#[derive(Parser, Debug)]
#[command(name = "softverbs", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Two soft RoCE devices in one process doing RDMA to each other over
    /// UDP: SEND, READ, atomics and an RDMA WRITE throughput run.
    ///
    /// Example: softverbs demo
    Demo(demo::DemoArgs),
    /// The speeds to read perf results against: memcpy and a plain UDP
    /// loopback transfer of the same bytes, measured now on this machine.
    ///
    /// Example: softverbs baseline -s 64,4096,65536
    Baseline(baseline::BaselineArgs),
    /// Devices with their attributes and capabilities (`ibv_devinfo`,
    /// `rdma dev`); `-v` for every attribute.
    ///
    /// Example: softverbs dev show rxe0 -v
    Dev(rdma::DevArgs),
    /// Ports: state, MTU, GIDs and the address behind them (`rdma link`);
    /// `link add`/`delete` create and remove devices of a running daemon.
    ///
    /// Example: softverbs link add rxe2 type rxe netdev eth0
    Link(rdma::LinkArgs),
    /// Resources with their owners (`rdma res show`): every process's
    /// when a daemon runs, this process's otherwise.
    ///
    /// Example: softverbs res show qp -j
    Res(rdma::ResArgs),
    /// Counters (`rdma statistic show`): the daemon's devices when one
    /// runs, this process's otherwise.
    ///
    /// Example: softverbs stat show rxe0
    Stat(rdma::StatArgs),
    /// Decode the RoCEv2 packets of a pcap/pcapng capture, one line each,
    /// with ICRC verification.
    ///
    /// Example: softverbs decode capture.pcap
    Decode(decode::DecodeArgs),
    /// Run the deterministic network simulator: RC/UC/UD engines over a
    /// lossy, reordering, duplicating, corrupting network, with invariants
    /// checked at the end. A failing seed is a one-line reproduction.
    ///
    /// Example: softverbs sim --seed 7 --qps 4 --messages 200 --loss 0.1 --ops send,write,read,atomic
    Sim(sim::SimArgs),
    /// rdma-core's ibv_{rc,uc,ud,srq}_pingpong: a message bounced between a
    /// server (no host argument) and a client (with one); prints µs per
    /// round trip. Same options, TCP exchange (port 18515) and output as the
    /// real tools, so either side can be one of them.
    ///
    /// Example: softverbs pingpong rc -d rxe1 -g 1 & softverbs pingpong rc -d rxe0 -g 1 127.0.0.2
    #[command(subcommand)]
    Pingpong(pingpong::args::PingpongCommand),
    /// perftest's ib_{send,write,read,atomic}_{bw,lat}: bandwidth (peak,
    /// average, message rate) or latency (min, max, typical, average,
    /// stdev, 99%, 99.9% in µs) of one verb between a server (no host
    /// argument) and a client, with perftest's options, TCP exchange (port
    /// 18515) and tables; --loopback runs both sides here over two local
    /// devices, -j prints JSON.
    ///
    /// Example: softverbs perf write_bw --loopback -s 65536
    Perf(bench::perf::PerfCmd),
    /// softverbsd in the foreground: owns the host's devices and serves
    /// every process over a Unix socket (the same server as `softverbsd`).
    ///
    /// Example: softverbs daemon --socket /tmp/sv.sock --devices rxe0=rxe:10.0.0.1
    Daemon(host::DaemonArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Baseline(args) => baseline::run(args),
        Command::Dev(args) => rdma::dev(args),
        Command::Link(args) => rdma::link(args),
        Command::Res(args) => rdma::res(args),
        Command::Stat(args) => rdma::stat(args),
        Command::Decode(args) => decode::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Pingpong(cmd) => bench::pingpong::run(cmd),
        Command::Perf(cmd) => bench::perf::main(cmd),
        Command::Daemon(args) => host::daemon(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("softverbs: {e:#}");
            ExitCode::FAILURE
        }
    }
}
