//! The verbs side of `softverbs perf {send,write,read,atomic}_{bw,lat}`:
//! perftest 6.06's resources, QP attributes, measurement loops and output
//! order (docs/oob-and-tools.md §2.3–2.6), over the exchange of
//! [`crate::perftest::oob`] and the arithmetic and tables of
//! [`crate::perftest::report`]. `--loopback` runs the server on a thread
//! over a second local device and prints the client's side.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use softverbs::{
    Access, Ah, AhAttr, CompletionChannel, Context, Cq, Gid, Mr, Mtu, Payload, Pd, Qp, QpInitAttr,
    QpState, QpType, RecvWr, SendWr, Wc, WcStatus,
};
use softverbs_core::ModifyAttrs;

use super::{now_ns, oob_err, open_device, Poller, Progress, Rng, CYCLES_PER_SEC};
use crate::perftest::args::{AtomicType, Connection, PerfArgs, PerfConfig, MAX_SIZE};
use crate::perftest::msg::{mtu_bytes, mtu_enum, BwReport, QpInfoMsg};
use crate::perftest::oob::{OobConfig, PerfOob, SysInfo};
use crate::perftest::report::{
    self, BannerInfo, BwInput, BwRow, LatDurRow, LatRow, RESULT_FMT_LAT, RESULT_FMT_LAT_DUR,
    RESULT_LINE, WAITING_FOR_CLIENT,
};
use crate::perftest::{Kind, PerfTest, Verb};
use crate::pingpong::net::OobListener;

/// perftest's UD Q_Key.
const QKEY: u32 = 0x1111_1111;
/// The GRH in front of every UD receive.
const GRH_LEN: u64 = 40;
/// Page size (`cycle_buffer`) and cache line we announce.
const PAGE: u64 = 4096;

/// `softverbs perf TEST [options] [HOST]`.
#[derive(clap::Args, Debug, Clone)]
#[command(disable_version_flag = true)]
pub struct PerfCmd {
    /// The test: send_bw, send_lat, write_bw, write_lat, read_bw, read_lat,
    /// atomic_bw or atomic_lat (an `ib_` prefix is accepted).
    #[arg(value_parser = test_name)]
    pub test: PerfTest,
    #[command(flatten)]
    pub args: PerfArgs,
}

fn test_name(s: &str) -> Result<PerfTest, String> {
    PerfTest::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = PerfTest::ALL.iter().map(|t| t.name()).collect();
        format!("unknown test {s:?}; the tests are {}", names.join(", "))
    })
}

/// Runs `softverbs perf`.
pub fn main(cmd: &PerfCmd) -> Result<ExitCode> {
    run(cmd.test, &cmd.args)
}

/// Runs one perf test (both sides with `--loopback`).
pub fn run(test: PerfTest, args: &PerfArgs) -> Result<ExitCode> {
    if args.version {
        println!("Version: {}", crate::perftest::msg::VERSION);
        return Ok(ExitCode::SUCCESS);
    }
    let cfg = args.config(test).map_err(|e| anyhow!("{}", e.trim()))?;
    if cfg.duplex {
        bail!("-b (bidirectional) is not supported by softverbs perf yet; run without it");
    }
    let size_given = args.size.is_some();
    let stdout = std::io::stdout();
    let result = if cfg.loopback {
        loopback(&cfg, size_given)?
    } else {
        let ctx = open_device(cfg.ib_dev.as_deref())?;
        let conn = match &cfg.host {
            Some(h) => Conn::Client(h.clone(), cfg.port),
            None => Conn::Server(None),
        };
        let mut out = stdout.lock();
        let r = side(&ctx, &cfg, size_given, conn, &mut out)?;
        (ctx, r)
    };
    let (ctx, rows) = result;
    if cfg.json {
        let v = json(&cfg, &rows);
        println!("{v}");
    }
    if cfg.res {
        crate::rdma::print_resources(None, cfg.json)?;
    }
    if cfg.stats {
        crate::rdma::print_stats(Some(ctx.name()), None, cfg.json)?;
    }
    drop(rows);
    Ok(ExitCode::SUCCESS)
}

/// The rows a side measured (or, on a write/read/atomic_bw server, received).
#[derive(Default)]
struct Rows {
    is_client: bool,
    bw: Vec<BwRow>,
    lat: Vec<LatRow>,
    lat_dur: Vec<LatDurRow>,
    /// Resources kept alive until `--res` has printed them.
    _keep: Option<Resources>,
}

fn json(cfg: &PerfConfig, rows: &Rows) -> serde_json::Value {
    let mut v = report::json_report(cfg.test, rows.is_client, &rows.bw, &rows.lat);
    if !rows.lat_dur.is_empty() {
        v["lat_duration"] = serde_json::to_value(&rows.lat_dur).unwrap_or_default();
    }
    v
}

/// `--loopback`: the server on a thread over the other device, the client
/// here; only the client's output is printed.
fn loopback(cfg: &PerfConfig, size_given: bool) -> Result<(Context, Rows)> {
    let devs = softverbs::devices().map_err(|e| anyhow!("{e}"))?;
    let client_dev = match &cfg.ib_dev {
        Some(d) => d.clone(),
        None => devs
            .first()
            .map(|d| d.name.clone())
            .ok_or_else(|| anyhow!("No IB devices found"))?,
    };
    let server_dev = devs
        .iter()
        .map(|d| d.name.clone())
        .find(|n| *n != client_dev)
        .ok_or_else(|| {
            anyhow!("--loopback needs two devices (configure a second one in SOFTVERBS_DEVICES)")
        })?;
    let cctx = open_device(Some(&client_dev))?;
    let sctx = open_device(Some(&server_dev))?;
    let listener = OobListener::bind(Some("127.0.0.1"), 0).map_err(oob_err)?;
    let port = listener.port();
    let scfg = PerfConfig {
        host: None,
        ib_dev: Some(server_dev.clone()),
        ..cfg.clone()
    };
    let server = std::thread::Builder::new()
        .name("perf-server".into())
        .spawn(move || {
            let mut sink = std::io::sink();
            side(
                &sctx,
                &scfg,
                size_given,
                Conn::Server(Some(listener)),
                &mut sink,
            )
            .map(|_| ())
        })
        .context("spawning the server thread")?;
    let ccfg = PerfConfig {
        host: Some("127.0.0.1".into()),
        port,
        ib_dev: Some(client_dev),
        ..cfg.clone()
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let client = side(
        &cctx,
        &ccfg,
        size_given,
        Conn::Client("127.0.0.1".into(), port),
        &mut out,
    );
    drop(out);
    let server = server
        .join()
        .map_err(|_| anyhow!("the server thread panicked"))?;
    let rows = client?;
    server.with_context(|| format!("the loopback server on {server_dev}"))?;
    Ok((cctx, rows))
}

/// How a side reaches its peer.
enum Conn {
    /// Connect to host:port.
    Client(String, u16),
    /// Listen on the configured port (or use this listener).
    Server(Option<OobListener>),
}

/// The verbs objects of one side.
struct Resources {
    _pd: Pd,
    mr: Mr,
    send_cq: Cq,
    recv_cq: Cq,
    channel: Option<CompletionChannel>,
    qps: Vec<Qp>,
    ahs: Vec<Option<Ah>>,
}

/// Everything a measurement loop needs.
struct Run<'a> {
    cfg: &'a PerfConfig,
    res: &'a Resources,
    remote: Vec<QpInfoMsg>,
    /// `BUFF_SIZE(size, cycle_buffer)`: the stride of the per-QP slots.
    slot: u64,
    /// Receive length (the whole slot; UD adds the GRH).
    recv_len: u32,
    is_client: bool,
    /// Receives outstanding per QP.
    routs: Vec<u32>,
    stall: Option<Duration>,
}

fn access_for(verb: Verb) -> Access {
    match verb {
        Verb::Send => Access::LOCAL_WRITE | Access::REMOTE_WRITE,
        Verb::Write => Access::REMOTE_WRITE,
        Verb::Read => Access::REMOTE_READ,
        Verb::Atomic => Access::REMOTE_ATOMIC,
    }
}

fn conn_name(c: Connection) -> &'static str {
    match c {
        Connection::Rc => "RC",
        Connection::Uc => "UC",
        Connection::Ud => "UD",
        Connection::Xrc => "XRC",
        Connection::Dc => "DC",
        Connection::Srd => "SRD",
    }
}

/// Checks that the device offers what the test needs, before anything is
/// created.
fn check_caps(ctx: &Context, cfg: &PerfConfig) -> Result<()> {
    let caps = ctx.query_device().map_err(|e| anyhow!("{e}"))?;
    let name = ctx.name();
    if cfg.connection == Connection::Srd {
        // efadv_query_device: only an EFA-like device answers; what it
        // says decides READ and WRITE.
        let efa = softverbs::efa::query_device(ctx)
            .map_err(|e| anyhow!("{}: -c SRD needs an SRD device: {e}", cfg.test.name()))?;
        let (ok, what) = match cfg.test.verb {
            Verb::Send => (true, "SEND"),
            Verb::Write => (
                efa.has(softverbs::efa::EfaDeviceAttr::CAPS_RDMA_WRITE),
                "RDMA WRITE",
            ),
            Verb::Read => (
                efa.has(softverbs::efa::EfaDeviceAttr::CAPS_RDMA_READ),
                "RDMA READ",
            ),
            Verb::Atomic => (false, "atomic operations"),
        };
        if !ok {
            bail!(
                "device {name} does not support {what} on SRD, which {} needs",
                cfg.test.name()
            );
        }
        return Ok(());
    }
    let qp_type = match cfg.connection {
        Connection::Uc => QpType::Uc,
        Connection::Ud => QpType::Ud,
        _ => QpType::Rc,
    };
    caps.require_qp_type(name, qp_type)
        .map_err(|e| anyhow!("{}: {e}", cfg.test.name()))?;
    let (ok, what) = match cfg.test.verb {
        Verb::Send => (caps.ops.send, "SEND"),
        Verb::Write => (caps.ops.rdma_write, "RDMA WRITE"),
        Verb::Read => (caps.ops.rdma_read, "RDMA READ"),
        Verb::Atomic => (caps.ops.atomics, "atomic operations"),
    };
    if !ok {
        bail!(
            "device {name} does not support {what}, which {} needs",
            cfg.test.name()
        );
    }
    if let Some(i) = cfg.inline_size {
        if i > caps.max_inline_data {
            bail!(
                "-I {i}: device {name} allows at most {} bytes of inline data",
                caps.max_inline_data
            );
        }
    }
    Ok(())
}

/// One side of a test, printing to `out`.
fn side(
    ctx: &Context,
    cfg: &PerfConfig,
    size_given: bool,
    conn: Conn,
    out: &mut dyn Write,
) -> Result<Rows> {
    let test = cfg.test;
    let quiet = cfg.json;
    check_caps(ctx, cfg)?;
    let caps = ctx.query_device().map_err(|e| anyhow!("{e}"))?;
    let port = ctx
        .query_port(cfg.ib_port)
        .map_err(|e| anyhow!("Couldn't get port info: {e}"))?;
    let active = mtu_enum(port.active_mtu).unwrap_or(3);
    let mut my_mtu = active;
    if let Some(m) = cfg.mtu {
        let e = mtu_enum(m).unwrap_or(active);
        if e > active {
            if !quiet {
                write!(
                    out,
                    "Requested mtu is higher than active mtu \nChanging to active mtu - {}\n",
                    port.active_mtu
                )?;
            }
        } else {
            my_mtu = e;
        }
    }
    let gid_index = match cfg.gid_index {
        Some(x) => x,
        None => best_gid_index(ctx, cfg)?,
    };
    let gid = ctx
        .query_gid(cfg.ib_port, gid_index as u16)
        .map_err(|e| anyhow!("Couldn't read GID {gid_index}: {e}"))?;
    let is_client = matches!(conn, Conn::Client(..));
    let oob_cfg = OobConfig {
        test,
        num_qps: cfg.num_qps as usize,
        duplex: cfg.duplex,
        all_sizes: cfg.all_sizes,
        with_gid: true,
        connect_timeout: cfg.oob_timeout.unwrap_or(Duration::from_secs(60)),
        io_timeout: cfg.oob_timeout,
    };
    let mut oob = match conn {
        Conn::Client(host, p) => PerfOob::connect(&host, p, oob_cfg).map_err(oob_err)?,
        Conn::Server(listener) => {
            let listener = match listener {
                Some(l) => l,
                None => PerfOob::listen(cfg.port).map_err(oob_err)?,
            };
            if !quiet {
                write!(out, "{WAITING_FOR_CLIENT}")?;
                out.flush()?;
            }
            PerfOob::accept(listener, oob_cfg).map_err(oob_err)?
        }
    };
    let neg = oob
        .pre_steps(&SysInfo {
            page_size: PAGE as u32,
            cache_line: 64,
            mtu: my_mtu,
        })
        .map_err(oob_err)?;
    let mtu = mtu_bytes(neg.mtu);
    let page = (neg.page_size as u64).max(1);
    let ud = cfg.connection == Connection::Ud;
    let srd = cfg.connection == Connection::Srd;
    // UD, and SRD's SEND, carry at most one MTU per message.
    let one_mtu = ud || (srd && test.verb == Verb::Send);
    let mut size = cfg.size;
    if one_mtu && !cfg.all_sizes && size > mtu as u64 {
        let c = conn_name(cfg.connection);
        if size_given {
            bail!(" Max message size in {c} cannot be greater than MTU ");
        }
        eprintln!(" Max msg size in {c} is MTU {mtu}\n Changing to this MTU");
        size = mtu as u64;
    }
    let sizes: Vec<u64> = if cfg.all_sizes {
        (1..=23)
            .map(|i| 1u64 << i)
            .filter(|&s| !one_mtu || s <= mtu as u64)
            .collect()
    } else {
        vec![size]
    };
    let max_size = if cfg.all_sizes { MAX_SIZE } else { size };

    // Resources (create_single_mr, ctx_init).
    let slot = max_size.max(page);
    let inc64 = |s: u64| if s > 64 { s.div_ceil(64) * 64 } else { 64 };
    let num_qps = cfg.num_qps as u64;
    let mr_len = inc64(slot) * 2 * num_qps + if ud { 64 } else { 0 };
    let pd = ctx
        .alloc_pd()
        .map_err(|e| anyhow!("Couldn't allocate PD: {e}"))?;
    let mr_access = Access::LOCAL_WRITE
        | match test.verb {
            Verb::Send => Access::NONE,
            v => access_for(v),
        };
    let mr = pd
        .reg_mr(mr_len as usize, mr_access)
        .map_err(|e| anyhow!("Couldn't allocate MR: {e}"))?;
    if !(test.verb == Verb::Write && test.kind == Kind::Lat) {
        let mut bytes = vec![0u8; mr_len as usize];
        Rng::new(7).fill(&mut bytes);
        mr.write(0, &bytes).map_err(|e| anyhow!("{e}"))?;
    }
    let channel = if cfg.events {
        Some(
            ctx.create_comp_channel()
                .map_err(|e| anyhow!("Couldn't create completion channel: {e}"))?,
        )
    } else {
        None
    };
    let send_cq = ctx
        .create_cq(cfg.tx_depth * cfg.num_qps, channel.as_ref())
        .map_err(|e| anyhow!("Couldn't create CQ: {e}"))?;
    let recv_cq = if test.verb == Verb::Send {
        ctx.create_cq(cfg.rx_depth * cfg.num_qps, channel.as_ref())
            .map_err(|e| anyhow!("Couldn't create CQ: {e}"))?
    } else {
        send_cq.clone()
    };
    let qp_type = match cfg.connection {
        Connection::Uc => QpType::Uc,
        Connection::Ud => QpType::Ud,
        _ => QpType::Rc,
    };
    let out_reads = match test.verb {
        Verb::Read | Verb::Atomic => {
            let max = caps.max_qp_rd_atom;
            match cfg.outs {
                Some(o) if o > max => {
                    if !quiet {
                        writeln!(
                            out,
                            " Number of outstanding reads is above max = {max}\n Changing to that max"
                        )?;
                    }
                    max
                }
                Some(o) => o,
                None => max,
            }
        }
        _ => 1,
    };
    let inline_size = cfg.inline_size.unwrap_or(0);
    let mut rng = Rng::new(0xbeef);
    let mut qps = Vec::new();
    let mut local = Vec::new();
    for i in 0..cfg.num_qps {
        let mut attr = QpInitAttr::new(qp_type, &send_cq, &recv_cq);
        attr.max_send_wr = cfg.tx_depth;
        attr.max_recv_wr = if test.verb == Verb::Send {
            cfg.rx_depth
        } else {
            1
        };
        attr.max_inline_data = inline_size;
        let qp = if srd {
            // efadv_create_qp_ex with EFADV_QP_DRIVER_TYPE_SRD.
            softverbs::efa::create_srd_qp(&pd, &attr, 0)
        } else {
            pd.create_qp(&attr)
        }
        .map_err(|e| anyhow!("Couldn't create QP: {e}"))?;
        let mut init = ModifyAttrs {
            qp_state: Some(QpState::Init),
            pkey_index: Some(0),
            port_num: Some(cfg.ib_port),
            ..Default::default()
        };
        if ud || srd {
            init.qkey = Some(QKEY);
        } else {
            init.qp_access_flags = Some(access_for(test.verb));
        }
        qp.modify(&init)
            .map_err(|e| anyhow!("Failed to modify QP to INIT: {e}"))?;
        local.push(QpInfoMsg {
            lid: 0,
            out_reads: out_reads.min(u16::MAX as u32) as u16,
            qpn: qp.qpn(),
            psn: rng.psn(),
            rkey: mr.rkey(),
            vaddr: mr.addr() + (num_qps + i as u64) * slot,
            gid: Some(gid.0),
            srqn: 0,
        });
        qps.push(qp);
    }
    let res = Resources {
        _pd: pd,
        mr,
        send_cq,
        recv_cq,
        channel,
        qps,
        ahs: Vec::new(),
    };

    let atomic_name = cfg.atomic_type.map(|a| match a {
        AtomicType::CmpAndSwap => "CMP_AND_SWAP",
        AtomicType::FetchAndAdd => "FETCH_AND_ADD",
    });
    if !quiet {
        let banner = BannerInfo {
            test,
            atomic_name,
            duplex: cfg.duplex,
            post_list: cfg.post_list,
            is_client,
            device: ctx.name().to_string(),
            num_qps: cfg.num_qps,
            connection: conn_name(cfg.connection),
            wr_api: !cfg.old_post_send,
            tx_depth: cfg.tx_depth,
            rx_depth: cfg.rx_depth,
            cq_mod: cfg.cq_mod,
            mtu,
            link_type: "Ethernet",
            gid_index: Some(gid_index as u32),
            inline_size,
            out_reads,
            events: cfg.events.then(|| format!("{}_comp0", ctx.name())),
        };
        write!(out, "{}", report::banner(&banner))?;
    }

    let remote = oob.exchange_qp_info(&local).map_err(oob_err)?;
    let mut res = res;
    connect(
        cfg, &mut res, &local, &remote, neg.mtu, gid_index, is_client,
    )?;
    if !quiet {
        for k in &local {
            write!(out, "{}", report::address_lines("local", test, k))?;
        }
    }
    let remote = oob.confirm_connected().map_err(oob_err)?;
    if !quiet {
        for k in &remote {
            write!(out, "{}", report::address_lines("remote", test, k))?;
        }
    }
    let mut run = Run {
        cfg,
        res: &res,
        remote,
        slot,
        recv_len: (slot + if ud { GRH_LEN } else { 0 }) as u32,
        is_client,
        routs: vec![0; cfg.num_qps as usize],
        stall: cfg.oob_timeout.or(Some(Duration::from_secs(60))),
    };
    let posts_recv = test.verb == Verb::Send && (test.kind == Kind::Lat || !is_client);
    if posts_recv {
        run.top_up_receives()?;
    }
    oob.start_barrier().map_err(oob_err)?;

    let mut rows = Rows {
        is_client,
        ..Default::default()
    };
    let gbits = cfg.report_gbits;
    let header = |out: &mut dyn Write| -> Result<()> {
        if quiet {
            return Ok(());
        }
        let h = match (test.kind, cfg.duration.is_some()) {
            (Kind::Bw, _) => report::bw_header(gbits),
            (Kind::Lat, false) => RESULT_FMT_LAT,
            (Kind::Lat, true) => RESULT_FMT_LAT_DUR,
        };
        writeln!(out, "{RESULT_LINE}\n{h}")?;
        out.flush()?;
        Ok(())
    };
    let line = |out: &mut dyn Write, s: String| -> Result<()> {
        if !quiet {
            writeln!(out, "{s}")?;
            out.flush()?;
        }
        Ok(())
    };
    match (test.kind, test.verb, is_client) {
        // write/read/atomic_bw server: nothing to run; print the client's row.
        (Kind::Bw, Verb::Write | Verb::Read | Verb::Atomic, false) => {
            header(out)?;
            oob.begin_size().map_err(oob_err)?;
            oob.end_of_test().map_err(oob_err)?;
            let r = oob
                .exchange_results(&BwReport::default())
                .map_err(oob_err)?;
            let row = BwRow {
                bytes: r.size,
                iterations: r.iters,
                bw_peak: r.bw_peak,
                bw_average: r.bw_avg,
                msg_rate_mpps: r.msg_rate,
                gbits,
            };
            line(out, report::format_bw_row(&row))?;
            rows.bw.push(row);
            line(out, RESULT_LINE.to_string())?;
        }
        // read/atomic_lat server: wait in the close handshake.
        (Kind::Lat, Verb::Read | Verb::Atomic, false) => {
            line(out, RESULT_LINE.to_string())?;
        }
        (Kind::Bw, _, _) => {
            header(out)?;
            for (n, &s) in sizes.iter().enumerate() {
                if n > 0 && posts_recv {
                    run.top_up_receives()?;
                }
                oob.begin_size().map_err(oob_err)?;
                let row = if is_client {
                    run.bw_client(s)?
                } else {
                    run.bw_send_server(s)?
                };
                oob.end_size().map_err(oob_err)?;
                line(out, report::format_bw_row(&row))?;
                rows.bw.push(row);
            }
            if test.verb != Verb::Send {
                oob.end_of_test().map_err(oob_err)?;
                let last = rows.bw.last().copied().unwrap_or(BwRow {
                    bytes: size,
                    iterations: 0,
                    bw_peak: 0.0,
                    bw_average: 0.0,
                    msg_rate_mpps: 0.0,
                    gbits,
                });
                oob.exchange_results(&BwReport {
                    size: last.bytes,
                    iters: last.iterations,
                    bw_peak: last.bw_peak,
                    bw_avg: last.bw_average,
                    msg_rate: last.msg_rate_mpps,
                })
                .map_err(oob_err)?;
            }
            line(out, RESULT_LINE.to_string())?;
        }
        (Kind::Lat, _, _) => {
            header(out)?;
            for (n, &s) in sizes.iter().enumerate() {
                if n > 0 && posts_recv {
                    run.top_up_receives()?;
                }
                oob.begin_size().map_err(oob_err)?;
                match run.lat(s)? {
                    LatResult::Row(r) => {
                        line(out, report::format_lat_row(&r))?;
                        rows.lat.push(r);
                    }
                    LatResult::Dur(r) => {
                        line(out, report::format_lat_dur_row(&r))?;
                        rows.lat_dur.push(r);
                    }
                }
                oob.end_size().map_err(oob_err)?;
            }
            line(out, RESULT_LINE.to_string())?;
        }
    }
    oob.finish().map_err(oob_err)?;
    rows._keep = Some(res);
    Ok(rows)
}

/// `get_best_gid_index`: the IPv4-mapped GID unless `--ipv6`, then the
/// first other one.
fn best_gid_index(ctx: &Context, cfg: &PerfConfig) -> Result<u8> {
    let port = ctx
        .query_port(cfg.ib_port)
        .map_err(|e| anyhow!("Couldn't get port info: {e}"))?;
    let mut fallback = None;
    for i in 0..port.gid_tbl_len.min(256) {
        let Ok(g) = ctx.query_gid(cfg.ib_port, i as u16) else {
            continue;
        };
        if g.0 == [0; 16] {
            continue;
        }
        if g.is_v4_mapped() != cfg.ipv6 {
            return Ok(i as u8);
        }
        fallback.get_or_insert(i as u8);
    }
    fallback.ok_or_else(|| anyhow!("no GID on port {} of {}", cfg.ib_port, ctx.name()))
}

/// `ctx_connect`: RTR toward each remote QP, RTS where perftest moves
/// there (latency tests, the client), UD address handles on senders.
fn connect(
    cfg: &PerfConfig,
    res: &mut Resources,
    local: &[QpInfoMsg],
    remote: &[QpInfoMsg],
    mtu_enum: u8,
    gid_index: u8,
    is_client: bool,
) -> Result<()> {
    let test = cfg.test;
    // SRD is addressed like UD: an AH, remote QPN and Q_Key per WR.
    let ud = matches!(cfg.connection, Connection::Ud | Connection::Srd);
    let rc = cfg.connection == Connection::Rc;
    let to_rts = test.kind == Kind::Lat || is_client || cfg.duplex;
    let pd = res._pd.clone();
    for (i, qp) in res.qps.iter().enumerate() {
        let (me, rem) = (&local[i], &remote[i]);
        let av = AhAttr {
            dgid: Gid(rem.gid.unwrap_or([0; 16])),
            sgid_index: gid_index,
            hop_limit: 0xff,
            traffic_class: cfg.tclass,
            flow_label: 0,
            sl: cfg.sl,
            port: cfg.ib_port,
        };
        let mut rtr = ModifyAttrs {
            qp_state: Some(QpState::Rtr),
            ..Default::default()
        };
        if !ud {
            rtr.path_mtu = Mtu::from_enum(mtu_enum as u32);
            rtr.dest_qp_num = Some(rem.qpn);
            rtr.rq_psn = Some(rem.psn);
            rtr.ah_attr = Some(av);
        }
        if rc {
            rtr.max_dest_rd_atomic = Some(me.out_reads.min(255) as u8);
            rtr.min_rnr_timer = Some(12);
        }
        qp.modify(&rtr)
            .map_err(|e| anyhow!(" Failed to modify QP {} to RTR: {e}", qp.qpn()))?;
        if to_rts {
            let mut rts = ModifyAttrs {
                qp_state: Some(QpState::Rts),
                sq_psn: Some(me.psn),
                ..Default::default()
            };
            if rc {
                rts.timeout = Some(cfg.qp_timeout);
                rts.retry_cnt = Some(7);
                rts.rnr_retry = Some(7);
                rts.max_rd_atomic = Some(rem.out_reads.min(255) as u8);
            }
            qp.modify(&rts)
                .map_err(|e| anyhow!(" Failed to modify QP {} to RTS: {e}", qp.qpn()))?;
        }
        let sender = is_client || test.kind == Kind::Lat || cfg.duplex;
        res.ahs.push(if ud && sender {
            Some(
                pd.create_ah(av)
                    .map_err(|e| anyhow!(" Failed to create AH: {e}"))?,
            )
        } else {
            None
        });
    }
    Ok(())
}

/// `-D`: START (warm-up) → SAMPLE → STOP_SAMPLE (cool-down) → END, by
/// the clock instead of `alarm`.
#[derive(Clone, Copy)]
struct Window {
    start: u64,
    margin: u64,
    duration: u64,
}

impl Window {
    fn new(d: (Duration, Duration), start: u64) -> Self {
        Window {
            start,
            margin: d.1.as_nanos() as u64,
            duration: d.0.as_nanos() as u64,
        }
    }
    fn sample_start(&self) -> u64 {
        self.start + self.margin
    }
    fn sample_end(&self) -> u64 {
        self.start + self.duration - self.margin
    }
    fn in_sample(&self, t: u64) -> bool {
        t >= self.sample_start() && t < self.sample_end()
    }
    fn ended(&self, t: u64) -> bool {
        t >= self.start + self.duration
    }
}

enum LatResult {
    Row(LatRow),
    Dur(LatDurRow),
}

impl Run<'_> {
    fn mr(&self) -> &Mr {
        &self.res.mr
    }

    /// Posts receives until each QP has `rx_depth` outstanding
    /// (`ctx_set_recv_wqes`), into the QP's slot in the second half.
    fn top_up_receives(&mut self) -> Result<()> {
        let n = self.res.qps.len() as u64;
        for i in 0..self.res.qps.len() {
            while self.routs[i] < self.cfg.rx_depth {
                self.post_recv(i, n)?;
            }
        }
        Ok(())
    }

    fn post_recv(&mut self, i: usize, n: u64) -> Result<()> {
        let off = (n + i as u64) * self.slot;
        self.res.qps[i]
            .post_recv(RecvWr::new(
                i as u64,
                self.mr().sge(off as usize, self.recv_len),
            ))
            .map_err(|e| anyhow!("Couldn't post recv: {e}"))?;
        self.routs[i] += 1;
        Ok(())
    }

    /// The send WR of QP `i` for a message of `size` at offset `off`.
    fn send_wr(&self, i: usize, size: u64, off: u64, signaled: bool) -> Result<SendWr> {
        let test = self.cfg.test;
        let local = self
            .mr()
            .sge((i as u64 * self.slot + off) as usize, size as u32);
        let rem = &self.remote[i];
        let raddr = rem.vaddr + off;
        let mut wr = match test.verb {
            Verb::Send => SendWr::send(i as u64, local),
            Verb::Write => SendWr::write(i as u64, local, raddr, rem.rkey),
            Verb::Read => SendWr::read(i as u64, local, raddr, rem.rkey),
            Verb::Atomic => {
                let sge = self.mr().sge((i as u64 * self.slot + off) as usize, 8);
                match self.cfg.atomic_type {
                    Some(AtomicType::CmpAndSwap) => {
                        SendWr::compare_swap(i as u64, sge, raddr, rem.rkey, 0, 0)
                    }
                    _ => SendWr::fetch_add(i as u64, sge, raddr, rem.rkey, 1),
                }
            }
        };
        let inline = self.cfg.inline_size.unwrap_or(0) as u64;
        if matches!(test.verb, Verb::Send | Verb::Write) && size > 0 && size <= inline {
            let mut data = vec![0u8; size as usize];
            self.mr()
                .read((i as u64 * self.slot + off) as usize, &mut data)
                .map_err(|e| anyhow!("{e}"))?;
            wr.payload = Payload::Inline(data);
        }
        if let Some(Some(ah)) = self.res.ahs.get(i) {
            wr = wr.to(ah.dest(rem.qpn, QKEY));
        }
        if signaled {
            wr = wr.signaled();
        }
        Ok(wr)
    }

    fn error_wc(&self, wc: &Wc, side: &str, counts: String) -> anyhow::Error {
        anyhow!(
            " Completion with error at {side}\n Failed status {}: wr_id {} syndrom 0x0 ({})\n{counts}",
            wc.status as u32,
            wc.wr_id,
            wc.status
        )
    }

    /// `run_iter_bw`: the client's bandwidth loop over all QPs.
    fn bw_client(&mut self, size: u64) -> Result<BwRow> {
        let cfg = self.cfg;
        let nq = self.res.qps.len();
        let duration = cfg.duration;
        let iters = cfg.iters;
        let total = iters * nq as u64;
        let no_peak = cfg.no_peak;
        let slots = if no_peak { 1 } else { total.max(1) as usize };
        let mut tposted = vec![0u64; slots];
        let mut tcompleted = vec![0u64; slots];
        let (cq_mod, post_list, tx_depth) =
            (cfg.cq_mod as u64, cfg.post_list as u64, cfg.tx_depth as u64);
        let stride = if size > 64 {
            size.div_ceil(64) * 64
        } else {
            64
        };
        let wrap = if size <= PAGE / 2 { PAGE / stride } else { 1 };
        let (mut scnt, mut ccnt) = (vec![0u64; nq], vec![0u64; nq]);
        let (mut totscnt, mut totccnt) = (0u64, 0u64);
        let mut poller = Poller::new(&self.res.send_cq, self.res.channel.as_ref(), self.stall)?;
        let mut wcs = Vec::with_capacity(16);
        let mut progress = match duration {
            Some((d, _)) => Progress::new(d.as_secs(), "s", cfg.json),
            None => Progress::new(total, "messages", cfg.json),
        };
        let start = now_ns();
        let window = duration.map(|d| Window::new(d, start));
        let mut sample = 0u64;
        if no_peak {
            tposted[0] = start;
        }
        let mut ticks = 0u32;
        loop {
            let now = if window.is_some() { now_ns() } else { 0 };
            let ended = window.is_some_and(|w| w.ended(now));
            match window {
                Some(_) if ended => break,
                None if totscnt >= total && totccnt >= total => break,
                _ => {}
            }
            for i in 0..nq {
                while (window.is_some() || scnt[i] < iters)
                    && scnt[i] - ccnt[i].min(scnt[i]) + post_list <= tx_depth
                {
                    for _ in 0..post_list {
                        let k = scnt[i];
                        let signaled =
                            k % cq_mod == cq_mod - 1 || (window.is_none() && k == iters - 1);
                        let off = if wrap > 1 { (k % wrap) * stride } else { 0 };
                        let wr = self.send_wr(i, size, off, signaled)?;
                        if !no_peak {
                            tposted[totscnt as usize] = now_ns();
                        }
                        self.res.qps[i]
                            .post_send(wr)
                            .map_err(|e| anyhow!("Couldn't post send: qp {i} scnt={k}: {e}"))?;
                        scnt[i] += 1;
                        totscnt += 1;
                    }
                }
            }
            let n = poller.wait(16, &mut wcs, "send completions")?;
            let t = now_ns();
            for wc in wcs.iter().take(n) {
                if wc.status != WcStatus::Success {
                    let i = wc.wr_id as usize % nq;
                    return Err(self.error_wc(
                        wc,
                        "client",
                        format!("scnt={}, ccnt={}", scnt[i], ccnt[i]),
                    ));
                }
                let i = wc.wr_id as usize % nq;
                ccnt[i] += cq_mod;
                totccnt += cq_mod;
                if let Some(w) = window {
                    if w.in_sample(t) {
                        sample += cq_mod;
                    }
                } else if !no_peak {
                    let idx = (totccnt.min(total) - 1) as usize;
                    tcompleted[idx] = t;
                }
            }
            ticks += 1;
            if ticks.is_multiple_of(64) {
                match window {
                    Some(w) => progress.set((t.saturating_sub(w.start)) / 1_000_000_000),
                    None => progress.set(totccnt),
                }
            }
        }
        let end = now_ns();
        progress.finish();
        let (n, tp, tc) = match window {
            Some(w) => {
                // Let what is still in flight complete before the QPs go.
                let deadline = now_ns() + 2_000_000_000;
                while totscnt - totccnt.min(totscnt) >= cq_mod && now_ns() < deadline {
                    if poller.poll_now(16, &mut wcs)? == 0 {
                        std::thread::yield_now();
                    }
                    totccnt += wcs.len() as u64 * cq_mod;
                }
                (sample, vec![w.sample_start()], vec![w.sample_end()])
            }
            None if no_peak => (total, vec![start], vec![end]),
            None => (total, tposted, tcompleted),
        };
        Ok(report::bw_row(&BwInput {
            size,
            n,
            tposted: &tp,
            tcompleted: &tc,
            cycles_per_sec: CYCLES_PER_SEC,
            post_list,
            cq_mod,
            no_peak: no_peak || window.is_some(),
            gbits: cfg.report_gbits,
        }))
    }

    /// `run_iter_bw_server`: the send_bw server counts receives.
    fn bw_send_server(&mut self, size: u64) -> Result<BwRow> {
        let cfg = self.cfg;
        let nq = self.res.qps.len();
        let iters = cfg.iters;
        let total = iters * nq as u64;
        let unreliable = !matches!(cfg.connection, Connection::Rc | Connection::Srd);
        let mut posted: Vec<u64> = self.routs.iter().map(|&r| r as u64).collect();
        let mut rcnt_qp = vec![0u64; nq];
        let mut rcnt = 0u64;
        let mut poller = Poller::new(&self.res.recv_cq, self.res.channel.as_ref(), self.stall)?;
        let mut wcs = Vec::with_capacity(16);
        let mut progress = match cfg.duration {
            Some((d, _)) => Progress::new(d.as_secs(), "s", cfg.json),
            None => Progress::new(total, "messages", cfg.json),
        };
        let (mut first, mut last) = (0u64, 0u64);
        let mut window: Option<Window> = None;
        let mut sample = 0u64;
        let n_qps = nq as u64;
        loop {
            if let Some(w) = window {
                if w.ended(now_ns()) {
                    break;
                }
            } else if cfg.duration.is_none() && rcnt >= total {
                break;
            }
            // UD/UC drop what no receive awaits: after a quiet second
            // past the first message, report what arrived.
            if unreliable && rcnt > 0 {
                poller.stall = Some(Duration::from_secs(2));
            }
            let n = match poller.wait(16, &mut wcs, "the client's messages") {
                Ok(n) => n,
                Err(_) if unreliable && rcnt > 0 => {
                    eprintln!(
                        " {} of {total} messages were lost ({} does not retransmit)",
                        total.saturating_sub(rcnt),
                        conn_name(cfg.connection)
                    );
                    break;
                }
                Err(e) => return Err(e),
            };
            let t = now_ns();
            for wc in wcs.iter().take(n) {
                if wc.status != WcStatus::Success {
                    return Err(self.error_wc(wc, "server", format!(" rcnt={rcnt}")));
                }
                let i = wc.wr_id as usize % nq;
                if rcnt == 0 {
                    first = t;
                    if let Some(d) = cfg.duration {
                        window = Some(Window::new(d, t));
                    }
                }
                rcnt += 1;
                rcnt_qp[i] += 1;
                last = t;
                if let Some(w) = window {
                    if w.in_sample(t) {
                        sample += 1;
                    }
                }
                self.routs[i] -= 1;
                if window.is_some() || posted[i] < iters {
                    self.post_recv(i, n_qps)?;
                    posted[i] += 1;
                }
            }
            if rcnt.is_multiple_of(256) {
                progress.set(match window {
                    Some(w) => t.saturating_sub(w.start) / 1_000_000_000,
                    None => rcnt,
                });
            }
        }
        progress.finish();
        let (n, tp, tc) = match window {
            Some(w) => (sample, w.sample_start(), w.sample_end()),
            None => (rcnt, first, last),
        };
        Ok(report::bw_row(&BwInput {
            size,
            n,
            tposted: &[tp],
            tcompleted: &[tc],
            cycles_per_sec: CYCLES_PER_SEC,
            post_list: 1,
            cq_mod: 1,
            no_peak: true,
            gbits: cfg.report_gbits,
        }))
    }

    /// The latency loops: write_lat (memory ping-pong), send_lat (SEND
    /// ping-pong), read/atomic_lat (client only).
    fn lat(&mut self, size: u64) -> Result<LatResult> {
        let cfg = self.cfg;
        let iters = cfg.iters;
        let window = cfg.duration.map(|d| Window::new(d, now_ns()));
        let cap = if window.is_some() { 0 } else { iters as usize };
        let mut tposted: Vec<u64> = Vec::with_capacity(cap);
        let mut send_poller =
            Poller::new(&self.res.send_cq, self.res.channel.as_ref(), self.stall)?;
        let mut recv_poller =
            Poller::new(&self.res.recv_cq, self.res.channel.as_ref(), self.stall)?;
        let mut wcs = Vec::with_capacity(4);
        let mut progress = match cfg.duration {
            Some((d, _)) => Progress::new(d.as_secs(), "s", cfg.json),
            None => Progress::new(iters, "iterations", cfg.json),
        };
        let more = |n: u64| match window {
            Some(w) => !w.ended(now_ns()),
            None => n < iters,
        };
        let mut sample = 0u64;
        let (mut scnt, mut rcnt) = (0u64, 0u64);
        let verb = cfg.test.verb;
        let is_client = self.is_client;
        let n_qps = self.res.qps.len() as u64;
        let poll_off = (self.slot + size - 1) as usize;
        loop {
            let go_recv = more(rcnt);
            let go_send = more(scnt);
            if !go_recv && !go_send {
                break;
            }
            match verb {
                Verb::Write => {
                    // The server writes first; everyone then waits for the
                    // peer's write before the next one.
                    if go_recv && (scnt >= 1 || is_client) {
                        rcnt += 1;
                        let want = rcnt as u8;
                        let mut b = [0u8; 1];
                        let start = now_ns();
                        let mut spins = 0u32;
                        loop {
                            self.mr()
                                .read(poll_off, &mut b)
                                .map_err(|e| anyhow!("{e}"))?;
                            if b[0] == want {
                                break;
                            }
                            spins += 1;
                            if spins.is_multiple_of(64) {
                                let t = now_ns();
                                if window.is_some_and(|w| w.ended(t)) {
                                    break;
                                }
                                if self.stall.is_some_and(|s| t - start > s.as_nanos() as u64) {
                                    bail!("the peer's RDMA WRITE {rcnt} never arrived");
                                }
                            }
                            std::thread::yield_now();
                        }
                    }
                    if more(scnt) {
                        let t = now_ns();
                        if window.is_none() {
                            tposted.push(t);
                        } else if window.is_some_and(|w| w.in_sample(t)) {
                            sample += 1;
                        }
                        scnt += 1;
                        self.mr()
                            .write((size - 1) as usize, &[scnt as u8])
                            .map_err(|e| anyhow!("{e}"))?;
                        let wr = self.send_wr(0, size, 0, true)?;
                        self.res.qps[0]
                            .post_send(wr)
                            .map_err(|e| anyhow!("Couldn't post send: scnt={scnt}: {e}"))?;
                        self.wait_ok(&mut send_poller, &mut wcs, "client")?;
                    }
                }
                Verb::Send => {
                    // The client sends first; each side answers a message.
                    if go_recv && (scnt >= 1 || !is_client) {
                        let got = match window {
                            None => recv_poller.wait(1, &mut wcs, "the peer's message")? > 0,
                            Some(w) => loop {
                                if recv_poller.poll_now(1, &mut wcs)? > 0 {
                                    break true;
                                }
                                if w.ended(now_ns()) {
                                    break false;
                                }
                                std::thread::yield_now();
                            },
                        };
                        if got {
                            let wc = &wcs[0];
                            if wc.status != WcStatus::Success {
                                return Err(self.error_wc(wc, "server", format!(" rcnt={rcnt}")));
                            }
                            rcnt += 1;
                            self.routs[0] -= 1;
                            if window.is_some() || rcnt + cfg.rx_depth as u64 <= iters {
                                self.post_recv(0, n_qps)?;
                            }
                        }
                    }
                    if more(scnt) {
                        let t = now_ns();
                        if window.is_none() {
                            tposted.push(t);
                        } else if window.is_some_and(|w| w.in_sample(t)) {
                            sample += 1;
                        }
                        scnt += 1;
                        let wr = self.send_wr(0, size, 0, true)?;
                        self.res.qps[0]
                            .post_send(wr)
                            .map_err(|e| anyhow!("Couldn't post send: scnt={scnt}: {e}"))?;
                        self.wait_ok(&mut send_poller, &mut wcs, "client")?;
                    }
                }
                Verb::Read | Verb::Atomic => {
                    let t = now_ns();
                    if window.is_none() {
                        tposted.push(t);
                    } else if window.is_some_and(|w| w.in_sample(t)) {
                        sample += 1;
                    }
                    scnt += 1;
                    rcnt += 1;
                    let wr = self.send_wr(0, size, 0, true)?;
                    self.res.qps[0]
                        .post_send(wr)
                        .map_err(|e| anyhow!("Couldn't post send: scnt={scnt}: {e}"))?;
                    self.wait_ok(&mut send_poller, &mut wcs, "client")?;
                }
            }
            if scnt.is_multiple_of(64) {
                progress.set(match window {
                    Some(w) => now_ns().saturating_sub(w.start) / 1_000_000_000,
                    None => scnt,
                });
            }
        }
        progress.finish();
        if let Some(w) = window {
            return Ok(LatResult::Dur(report::lat_dur_row(
                cfg.test,
                size,
                sample,
                w.sample_end() - w.sample_start(),
                CYCLES_PER_SEC,
            )));
        }
        report::lat_row(cfg.test, size, &tposted, CYCLES_PER_SEC)
            .map(LatResult::Row)
            .ok_or_else(|| anyhow!("too few iterations for a latency report"))
    }

    /// Waits for one send completion and checks it.
    fn wait_ok(&self, p: &mut Poller, wcs: &mut Vec<Wc>, side: &str) -> Result<()> {
        p.wait(1, wcs, "the send completion")?;
        let wc = &wcs[0];
        if wc.status != WcStatus::Success {
            return Err(self.error_wc(wc, side, String::new()));
        }
        Ok(())
    }
}
