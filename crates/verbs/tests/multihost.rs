//! RDMA between processes and between hosts, through the public API:
//!
//! - `two_processes`: this test process and a child it spawns own different
//!   devices (the parent one made with `Context::open_config`, the child its
//!   own through `SOFTVERBS_DEVICES`) and do RC WRITE + SEND both ways.
//! - `two_namespaces`: two network namespaces joined by a veth pair, one
//!   process in each, with packet loss on the link so that retransmission
//!   is exercised (`tc netem` where the kernel has it, else an `iptables`
//!   random-drop rule); RC WRITE + SEND of a few MiB, verified. It needs
//!   root and `ip`; without them it prints why and passes.
//!
//! Both re-run this test binary as the peer: the `child_role` test does
//! nothing unless `SOFTVERBS_TEST_ROLE` is set.

#![allow(clippy::disallowed_methods, clippy::needless_range_loop)] // tests wait on the wall clock; two sides by index

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use softverbs::*;

const ROLE: &str = "SOFTVERBS_TEST_ROLE";
const DEV: &str = "SOFTVERBS_TEST_DEV";
const RDV: &str = "SOFTVERBS_TEST_RDV";
const BYTES: &str = "SOFTVERBS_TEST_BYTES";
const LIMIT: Duration = Duration::from_secs(15);

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(131).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

fn wait_ok(cq: &Cq, what: &str) -> Wc {
    let wc = cq.wait_one(LIMIT).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(wc.status, WcStatus::Success, "{what}: {wc:?}");
    wc
}

/// One side of the exchange. The server has the lower seed. Each side
/// writes `bytes` of its pattern into the other's region with RDMA WRITEs
/// (a window of eight 256 KiB writes), then SENDs "done"; on the peer's "done"
/// it checks that its own region holds the peer's pattern.
fn peer(ctx: &Context, server: bool, mut tcp: TcpStream, bytes: usize) {
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    let pd = ctx.alloc_pd().unwrap();
    let cq = ctx.create_cq(256, None).unwrap();
    let access = Access::LOCAL_WRITE | Access::REMOTE_WRITE;
    let src = pd.reg_mr(bytes.max(4096), Access::LOCAL_WRITE).unwrap();
    let dst = pd.reg_mr(bytes.max(4096), access).unwrap();
    let msgs = pd.reg_mr(4096, Access::LOCAL_WRITE).unwrap();
    let qp = pd.create_qp(&QpInitAttr::rc(&cq, &cq)).unwrap();
    let (mine, theirs) = if server { (1u8, 2u8) } else { (2, 1) };
    src.write(0, &pattern(bytes, mine)).unwrap();

    // The out-of-band exchange: QPN, PSN, GID, address and rkey.
    qp.init(&ConnectOptions::default()).unwrap();
    qp.post_recv(RecvWr::new(1, msgs.sge(0, 64))).unwrap();
    let me = qp.endpoint().unwrap();
    writeln!(
        tcp,
        "{} {} {} {} {}",
        me.qpn,
        me.psn,
        me.gid,
        dst.addr(),
        dst.rkey()
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(tcp.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f.len(), 5, "peer sent {line:?}");
    let remote = Endpoint {
        qpn: f[0].parse().unwrap(),
        psn: f[1].parse().unwrap(),
        gid: f[2].parse().unwrap(),
    };
    let (raddr, rkey): (u64, u32) = (f[3].parse().unwrap(), f[4].parse().unwrap());
    let o = ConnectOptions {
        timeout: 12, // about 17 ms: a lost tail packet costs little
        ..Default::default()
    };
    qp.connect(&remote, &o).unwrap();
    println!(
        "{}: QP {:#x} ({}) connected to QP {:#x} ({})",
        if server { "server" } else { "client" },
        me.qpn,
        me.gid,
        remote.qpn,
        remote.gid
    );

    let chunk = 256 * 1024;
    let (mut posted, mut done, mut off) = (0usize, 0usize, 0usize);
    let mut got = false; // the peer's "done" arrived
    let total = bytes.div_ceil(chunk);
    while done < total {
        while posted < total && posted - done < 8 {
            let len = chunk.min(bytes - off);
            qp.post_send(
                SendWr::write(
                    posted as u64,
                    src.sge(off, len as u32),
                    raddr + off as u64,
                    rkey,
                )
                .signaled(),
            )
            .unwrap();
            off += len;
            posted += 1;
        }
        // The peer may finish first: its "done" can come in among our
        // WRITE completions.
        match wait_ok(&cq, "RDMA WRITE").opcode {
            WcOpcode::Recv => got = true,
            _ => done += 1,
        }
    }
    msgs.write(64, b"done").unwrap();
    qp.post_send(SendWr::send(99, msgs.sge(64, 4)).signaled())
        .unwrap();
    // Our SEND's completion and the peer's "done", in either order.
    let mut sent = false;
    while !(sent && got) {
        let wc = cq.wait_one(LIMIT).unwrap_or_else(|e| {
            panic!(
                "SEND/RECV (sent {sent}, got {got}): {e}; QP now {:?}",
                qp.query()
            )
        });
        assert_eq!(wc.status, WcStatus::Success, "SEND/RECV: {wc:?}");
        match wc.opcode {
            WcOpcode::Recv => {
                assert_eq!(wc.byte_len, 4);
                got = true;
            }
            _ => sent = true,
        }
    }
    let mut seen = vec![0u8; bytes];
    dst.read(0, &mut seen).unwrap();
    assert!(
        seen == pattern(bytes, theirs),
        "the peer's {bytes} bytes arrived intact"
    );
    let c = qp.query().unwrap().counters;
    println!(
        "{}: {bytes} bytes written and verified each way; {} packets sent, {} retransmitted, \
         {} out of sequence, {} timeouts",
        if server { "server" } else { "client" },
        c.sent_pkts,
        c.retransmitted_pkts,
        c.out_of_seq_request,
        c.timeouts
    );
    // A last barrier, so that neither side destroys its QP while the
    // other may still need an ACK from it.
    writeln!(tcp, "bye").unwrap();
    line.clear();
    BufReader::new(tcp).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "bye");
}

/// The peer process: set up by `two_processes` and `two_namespaces`.
#[test]
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return; // an ordinary run: nothing to do
    };
    let ctx = Context::open(&std::env::var(DEV).unwrap()).unwrap();
    let rdv = std::env::var(RDV).unwrap();
    let bytes: usize = std::env::var(BYTES).unwrap().parse().unwrap();
    let tcp = if role == "server" {
        TcpListener::bind(&rdv).unwrap().accept().unwrap().0
    } else {
        let end = Instant::now() + LIMIT;
        loop {
            match TcpStream::connect(&rdv) {
                Ok(s) => break s,
                Err(e) if Instant::now() > end => panic!("connect to {rdv}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    };
    peer(&ctx, role == "server", tcp, bytes);
}

/// This binary as a peer, with `env`, optionally under a command prefix.
fn spawn_peer(prefix: &[&str], env: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args(["--exact", "child_role", "--nocapture", "--test-threads=1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

/// Wait for a child with a deadline; kill it past the deadline.
fn finish(mut child: Child, what: &str) -> Output {
    let end = Instant::now() + LIMIT + Duration::from_secs(5);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    println!(
        "--- {what} ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A UDP port free on both addresses.
fn free_port(a: &str, b: &str) -> u16 {
    loop {
        let s = UdpSocket::bind((a, 0)).unwrap();
        let p = s.local_addr().unwrap().port();
        if UdpSocket::bind((b, p)).is_ok() {
            return p;
        }
    }
}

/// The multi-process tests run one at a time, so that on a 2-core machine
/// each gets the CPUs it needs and finishes in bounded time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn two_processes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Addresses of this test's own, so it clashes with no other test.
    let (ip_parent, ip_child) = ("127.0.0.11", "127.0.0.12");
    let port = free_port(ip_parent, ip_child);
    let cfg =
        DeviceConfig::new("parent0", DeviceKind::Rxe, ip_parent.parse().unwrap()).with_port(port);
    let ctx = Context::open_config(cfg).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let child = spawn_peer(
        &[],
        &[
            (ROLE, "client".into()),
            (DEV, "child0".into()),
            ("SOFTVERBS_DEVICES", format!("child0=rxe:{ip_child}:{port}")),
            (RDV, listener.local_addr().unwrap().to_string()),
            (BYTES, (1 << 20).to_string()),
        ],
    );
    // Accept with a deadline, so that a child that dies early fails the
    // test instead of hanging it.
    listener.set_nonblocking(true).unwrap();
    let end = Instant::now() + LIMIT;
    let mut child = Some(child);
    let tcp = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < end => {
                if let Some(st) = child.as_mut().unwrap().try_wait().unwrap() {
                    finish(child.take().unwrap(), "child");
                    panic!("the child exited early: {st}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("no connection from the child: {e}"),
        }
    };
    tcp.set_nonblocking(false).unwrap();
    peer(&ctx, true, tcp, 1 << 20);
    let out = finish(child.take().unwrap(), "child");
    assert!(out.status.success(), "the child failed");
}

// ---- two hosts: network namespaces ----

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Two namespaces of this test's own; deleted on drop (also on panic),
/// which deletes the veth pair with them.
struct Netns {
    names: [String; 2],
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = sh(&["ip", "netns", "del", n]);
        }
    }
}

fn why_no_netns() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        });
    if uid.as_deref() != Some("0") {
        return Some("not root".into());
    }
    if sh(&["ip", "netns", "list"]).is_err() {
        return Some("`ip netns` is missing".into());
    }
    None
}

/// Loss on `dev` inside `ns`: netem if the kernel has it, else an iptables
/// random drop of RoCE packets. Returns what was set up.
fn add_loss(ns: &str, dev: &str, port: u16) -> String {
    let netem = [
        "ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "netem", "loss", "1%",
        "delay", "1ms", "reorder", "10%",
    ];
    if sh(&netem).is_ok() {
        return "tc netem loss 1% delay 1ms reorder 10%".into();
    }
    let port = port.to_string();
    let drop = [
        "ip",
        "netns",
        "exec",
        ns,
        "iptables",
        "-A",
        "OUTPUT",
        "-p",
        "udp",
        "--dport",
        &port,
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.01",
        "-j",
        "DROP",
    ];
    match sh(&drop) {
        Ok(()) => {
            "iptables random drop 1% (no netem in this kernel: no reordering or delay)".into()
        }
        Err(e) => format!("NO LOSS: neither netem nor iptables works here ({e})"),
    }
}

#[test]
fn two_namespaces() {
    namespaces();
}

fn namespaces() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = why_no_netns() {
        println!("SKIPPED two_namespaces: {why}; it needs root and iproute2 (`ip netns`)");
        return;
    }
    let id = std::process::id();
    let net = format!("10.99.{}", id % 250 + 1);
    let ns = Netns {
        names: [format!("svtest{id}a"), format!("svtest{id}b")],
    };
    let veth = [format!("sv{id}a"), format!("sv{id}b")];
    let ips = [format!("{net}.1"), format!("{net}.2")];
    let setup = || -> Result<(), String> {
        for n in &ns.names {
            sh(&["ip", "netns", "add", n])?;
            sh(&["ip", "netns", "exec", n, "ip", "link", "set", "lo", "up"])?;
        }
        sh(&[
            "ip", "link", "add", &veth[0], "type", "veth", "peer", "name", &veth[1],
        ])?;
        for i in 0..2 {
            sh(&["ip", "link", "set", &veth[i], "netns", &ns.names[i]])?;
            let addr = format!("{}/24", ips[i]);
            sh(&[
                "ip",
                "netns",
                "exec",
                &ns.names[i],
                "ip",
                "addr",
                "add",
                &addr,
                "dev",
                &veth[i],
            ])?;
            sh(&[
                "ip",
                "netns",
                "exec",
                &ns.names[i],
                "ip",
                "link",
                "set",
                &veth[i],
                "up",
            ])?;
        }
        Ok(())
    };
    if let Err(e) = setup() {
        drop(ns);
        println!("SKIPPED two_namespaces: cannot build the namespaces: {e}");
        return;
    }
    let port = 4791;
    for i in 0..2 {
        println!(
            "link loss in {}: {}",
            ns.names[i],
            add_loss(&ns.names[i], &veth[i], port)
        );
    }
    let bytes = 4 << 20;
    let rdv = format!("{}:7471", ips[0]);
    let mut children = Vec::new();
    for i in 0..2 {
        let env = [
            (ROLE, if i == 0 { "server" } else { "client" }.to_string()),
            (DEV, format!("ns{i}")),
            ("SOFTVERBS_DEVICES", format!("ns{i}=rxe:{}:{port}", ips[i])),
            (RDV, rdv.clone()),
            (BYTES, bytes.to_string()),
        ];
        children.push(spawn_peer(&["ip", "netns", "exec", &ns.names[i]], &env));
    }
    let outs: Vec<Output> = children
        .into_iter()
        .zip(["server", "client"])
        .map(|(c, w)| finish(c, w))
        .collect();
    for n in &ns.names {
        if let Ok(o) = Command::new("ip")
            .args([
                "netns", "exec", n, "iptables", "-L", "OUTPUT", "-v", "-n", "-x",
            ])
            .output()
        {
            let t = String::from_utf8_lossy(&o.stdout);
            if let Some(l) = t.lines().find(|l| l.contains("statistic")) {
                println!(
                    "{n}: loss rule: {}",
                    l.split_whitespace()
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(" packets dropped, bytes ")
                );
            }
        }
    }
    drop(ns);
    for (o, w) in outs.iter().zip(["server", "client"]) {
        assert!(o.status.success(), "the {w} failed");
    }
}
