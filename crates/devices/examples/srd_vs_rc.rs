//! SRD (on `srd` devices) next to RC (on `rxe` devices) under random loss,
//! on real UDP sockets between two network namespaces (issue 7).
//!
//! ```text
//! sudo cargo run --release -p softverbs-devices --example srd_vs_rc [secs]
//! ```
//!
//! Needs root. Builds namespaces `svsvr_a` and `svsvr_b` joined by a veth
//! pair (10.98.0.1/.3 – 10.98.0.2/.4, MTU 9000), and for each loss level
//! (0, 0.5, 1, 2%) installs an nftables rule in each namespace dropping that
//! share of outgoing UDP packets at random (`numgen random mod 1000 < N`;
//! this kernel has no `sch_netem`). Each device opens its socket inside its
//! own namespace. For `secs` seconds (default 3) per cell it keeps 16 RDMA
//! WRITEs of 64 KiB outstanding on one QP — SRD between two `srd` devices,
//! RC (timeout 8, retry 7) between two `rxe` devices — and reports goodput
//! (completed bytes / time) and p50/p99 completion latency (post to CQE).
//! The namespaces are removed at the end, on error and on panic.

#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use softverbs_core::driver::{AhAttr, Driver, Wc};
use softverbs_core::mem::{Backing, MemBlock};
use softverbs_core::{Device, ModifyAttrs, MrRef, Owner, QpCreate, QpRef, Ucontext};
use softverbs_devices::{DeviceConfig, DeviceKind, SoftDevice};
use softverbs_transport::{Access, Mtu, QpState, QpType, SendWr, Sge, UdDest, WcStatus};

const NS_A: &str = "svsvr_a";
const NS_B: &str = "svsvr_b";
const MSG: usize = 64 * 1024;
const DEPTH: usize = 16;
const QKEY: u32 = 0x1111_1111;

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

/// The two namespaces; removed on drop.
struct Pair;

impl Pair {
    fn new() -> Result<Pair, String> {
        let _ = sh(&["ip", "netns", "del", NS_A]);
        let _ = sh(&["ip", "netns", "del", NS_B]);
        sh(&["ip", "netns", "add", NS_A])?;
        let p = Pair; // from here on, drop cleans up
        sh(&["ip", "netns", "add", NS_B])?;
        sh(&[
            "ip", "link", "add", "svsvr0", "netns", NS_A, "type", "veth", "peer", "name", "svsvr1",
            "netns", NS_B,
        ])?;
        for (ns, dev, addrs) in [
            (NS_A, "svsvr0", ["10.98.0.1/24", "10.98.0.3/24"]),
            (NS_B, "svsvr1", ["10.98.0.2/24", "10.98.0.4/24"]),
        ] {
            for a in addrs {
                sh(&["ip", "-n", ns, "addr", "add", a, "dev", dev])?;
            }
            sh(&["ip", "-n", ns, "link", "set", dev, "mtu", "9000", "up"])?;
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            sh(&[
                "ip", "netns", "exec", ns, "nft", "add", "table", "inet", "svsvr",
            ])?;
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "nft",
                "add",
                "chain",
                "inet",
                "svsvr",
                "out",
                "{ type filter hook output priority 0 ; }",
            ])?;
        }
        Ok(p)
    }

    /// Random drop of `per_mille`/1000 of outgoing UDP, each namespace.
    /// Packets and bytes counted by the rules of `ns` (UDP sent; dropped).
    fn counters(&self, ns: &str) -> String {
        let out = Command::new("ip")
            .args([
                "netns", "exec", ns, "nft", "list", "chain", "inet", "svsvr", "out",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        out.lines()
            .filter_map(|l| l.split_once("counter ").map(|(_, c)| c.trim().to_string()))
            .collect::<Vec<_>>()
            .join(" / ")
    }

    fn set_loss(&self, per_mille: u32) -> Result<(), String> {
        for ns in [NS_A, NS_B] {
            sh(&[
                "ip", "netns", "exec", ns, "nft", "flush", "chain", "inet", "svsvr", "out",
            ])?;
            let mut a = vec!["ip", "netns", "exec", ns, "nft"];
            a.extend("add rule inet svsvr out meta l4proto udp counter".split(' '));
            sh(&a)?;
            if per_mille > 0 {
                let rule = format!(
                    "add rule inet svsvr out meta l4proto udp numgen random mod 1000 < {per_mille} counter drop"
                );
                let mut a = vec!["ip", "netns", "exec", ns, "nft"];
                a.extend(rule.split(' '));
                sh(&a)?;
            }
        }
        Ok(())
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", NS_A]);
        let _ = sh(&["ip", "netns", "del", NS_B]);
    }
}

/// Run `f` on a thread inside namespace `ns`.
fn within<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns {path}: {e}"))?;
        Ok(f())
    })
    .join()
    .map_err(|_| "namespace thread panicked".to_string())?
}

/// A device whose sockets live in `ns`.
fn device_in(
    ns: &str,
    name: &str,
    kind: DeviceKind,
    addr: [u8; 4],
) -> Result<Arc<SoftDevice>, String> {
    let cfg =
        DeviceConfig::new(name, kind, IpAddr::V4(Ipv4Addr::from(addr))).with_mtu(Mtu::Mtu4096);
    let dev = Arc::new(softverbs_devices::open_device(cfg));
    let d2 = dev.clone();
    within(ns, move || d2.open().map_err(|e| e.to_string())).and_then(|r| r)?;
    Ok(dev)
}

struct Side {
    dev: Arc<SoftDevice>,
    uctx: Arc<Ucontext>,
    pd: softverbs_core::PdRef,
    cq: softverbs_core::CqRef,
    mr: MrRef,
}

impl Side {
    fn new(dev: Arc<SoftDevice>) -> Result<Side, String> {
        let e = |x: softverbs_core::VerbsError| x.to_string();
        let uctx = Device::new(dev.clone() as Arc<dyn Driver>)
            .open(Owner::this_process())
            .map_err(e)?;
        let pd = uctx.alloc_pd().map_err(e)?;
        let cq = uctx.create_cq(4096, None).map_err(e)?;
        let block = Arc::new(MemBlock::new(MSG * DEPTH));
        block.with_mut(|m| m.iter_mut().enumerate().for_each(|(i, x)| *x = i as u8));
        let mr = uctx
            .reg_mr(
                pd.handle,
                Backing::Block(block),
                Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ,
            )
            .map_err(e)?;
        Ok(Side {
            dev,
            uctx,
            pd,
            cq,
            mr,
        })
    }

    fn gid(&self) -> softverbs_wire::Gid {
        self.dev.gids(1).unwrap()[1]
    }

    fn req(&self, t: QpType) -> QpCreate {
        QpCreate {
            qp_type: t,
            send_cq: self.cq.handle,
            recv_cq: self.cq.handle,
            srq: None,
            max_send_wr: 256,
            max_recv_wr: 16,
            max_send_sge: 1,
            max_recv_sge: 1,
            max_inline_data: 0,
            sq_sig_all: false,
        }
    }

    fn modify(&self, qp: &QpRef, a: ModifyAttrs) -> Result<(), String> {
        self.uctx
            .modify_qp(qp.handle, &a)
            .map_err(|e| e.to_string())
    }

    fn srd_qp(&self) -> Result<QpRef, String> {
        let qp = self
            .uctx
            .efa_create_srd_qp(self.pd.handle, &self.req(QpType::Ud), 0)
            .map_err(|e| e.to_string())?;
        self.modify(
            &qp,
            ModifyAttrs {
                qp_state: Some(QpState::Init),
                pkey_index: Some(0),
                port_num: Some(1),
                qkey: Some(QKEY),
                ..Default::default()
            },
        )?;
        self.modify(
            &qp,
            ModifyAttrs {
                qp_state: Some(QpState::Rtr),
                ..Default::default()
            },
        )?;
        self.modify(
            &qp,
            ModifyAttrs {
                qp_state: Some(QpState::Rts),
                sq_psn: Some(0),
                ..Default::default()
            },
        )?;
        Ok(qp)
    }

    fn ah_to(&self, peer: &Side) -> Result<AhAttr, String> {
        let attr = AhAttr {
            dgid: peer.gid(),
            sgid_index: 1,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            sl: 0,
            port: 1,
        };
        self.uctx
            .create_ah(self.pd.handle, attr)
            .map_err(|e| e.to_string())?;
        Ok(attr)
    }

    fn rc_qp(&self) -> Result<QpRef, String> {
        self.uctx
            .create_qp(self.pd.handle, &self.req(QpType::Rc))
            .map_err(|e| e.to_string())
    }

    fn rc_connect(&self, qp: &QpRef, peer: &Side, peer_qpn: u32) -> Result<(), String> {
        let av = AhAttr {
            dgid: peer.gid(),
            sgid_index: 1,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            sl: 0,
            port: 1,
        };
        self.modify(
            qp,
            ModifyAttrs {
                qp_state: Some(QpState::Init),
                pkey_index: Some(0),
                port_num: Some(1),
                qp_access_flags: Some(Access::REMOTE_WRITE | Access::REMOTE_READ),
                ..Default::default()
            },
        )?;
        self.modify(
            qp,
            ModifyAttrs {
                qp_state: Some(QpState::Rtr),
                ah_attr: Some(av),
                path_mtu: Some(Mtu::Mtu4096),
                dest_qp_num: Some(peer_qpn),
                rq_psn: Some(0),
                max_dest_rd_atomic: Some(1),
                min_rnr_timer: Some(12),
                ..Default::default()
            },
        )?;
        self.modify(
            qp,
            ModifyAttrs {
                qp_state: Some(QpState::Rts),
                sq_psn: Some(0),
                timeout: Some(8),
                retry_cnt: Some(7),
                rnr_retry: Some(7),
                max_rd_atomic: Some(1),
                ..Default::default()
            },
        )
    }
}

struct Result_ {
    msgs: u64,
    secs: f64,
    p50: Duration,
    p99: Duration,
    error: Option<String>,
}

/// Keep `DEPTH` WRITEs outstanding from `a` to `b` for `dur`.
fn pump(a: &Side, qpn: u32, b: &Side, dest: Option<UdDest>, dur: Duration) -> Result_ {
    let mut posted_at = vec![Instant::now(); DEPTH];
    let mut lat = Vec::new();
    let (mut posted, mut done) = (0u64, 0u64);
    let mut wcs: Vec<Wc> = Vec::with_capacity(DEPTH);
    let mut error = None;
    let t0 = Instant::now();
    let end = t0 + dur;
    let mut last_progress = Instant::now();
    loop {
        let now = Instant::now();
        while now < end && posted - done < DEPTH as u64 && error.is_none() {
            let slot = (posted as usize) % DEPTH;
            let off = (slot * MSG) as u64;
            let sge = Sge {
                addr: a.mr.addr + off,
                length: MSG as u32,
                lkey: a.mr.lkey,
            };
            let mut wr = SendWr::write(posted, sge, b.mr.addr + off, b.mr.rkey).signaled();
            if let Some(d) = dest {
                wr = wr.to(d);
            }
            posted_at[slot] = Instant::now();
            if let Err(e) = a.dev.post_send(qpn, wr) {
                error = Some(format!("post_send: {e}"));
                break;
            }
            posted += 1;
        }
        if done == posted {
            break;
        }
        wcs.clear();
        a.dev.poll_cq(a.cq.id, DEPTH, &mut wcs).unwrap();
        let t = Instant::now();
        for w in &wcs {
            if w.status != WcStatus::Success {
                error.get_or_insert_with(|| format!("{:?} after {done} messages", w.status));
            } else {
                lat.push(t - posted_at[(w.wr_id as usize) % DEPTH]);
            }
            done += 1;
            last_progress = t;
        }
        if t - last_progress > Duration::from_secs(20) {
            error.get_or_insert_with(|| "stalled 20 s".to_string());
            break;
        }
        if wcs.is_empty() {
            std::thread::yield_now();
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Result_ {
        msgs: lat.len() as u64,
        secs,
        p50: pct(0.50),
        p99: pct(0.99),
        error,
    }
}

fn run(secs: u64) -> Result<(), String> {
    let pair = Pair::new()?;
    let dur = Duration::from_secs(secs);
    let losses = [0u32, 5, 10, 20];
    let mut rows = Vec::new();
    for (i, &pm) in losses.iter().enumerate() {
        pair.set_loss(pm)?;
        // Fresh devices per cell (distinct names), so no state carries over.
        let n = |s: &str| format!("{s}{i}");
        let sa = Side::new(device_in(
            NS_A,
            &n("srda"),
            DeviceKind::Srd,
            [10, 98, 0, 1],
        )?)?;
        let sb = Side::new(device_in(
            NS_B,
            &n("srdb"),
            DeviceKind::Srd,
            [10, 98, 0, 2],
        )?)?;
        let (qa, qb) = (sa.srd_qp()?, sb.srd_qp()?);
        let ah = sa.ah_to(&sb)?;
        let dest = UdDest {
            dgid: ah.dgid,
            remote_qpn: qb.qpn,
            remote_qkey: QKEY,
        };
        let srd = pump(&sa, qa.qpn, &sb, Some(dest), dur);
        let c = sa.dev.srd_counters();
        drop((qa, qb, sa, sb));

        let ra = Side::new(device_in(
            NS_A,
            &n("rxea"),
            DeviceKind::Rxe,
            [10, 98, 0, 3],
        )?)?;
        let rb = Side::new(device_in(
            NS_B,
            &n("rxeb"),
            DeviceKind::Rxe,
            [10, 98, 0, 4],
        )?)?;
        let (qa, qb) = (ra.rc_qp()?, rb.rc_qp()?);
        ra.rc_connect(&qa, &rb, qb.qpn)?;
        rb.rc_connect(&qb, &ra, qa.qpn)?;
        let before = pair.counters(NS_A);
        let rc = pump(&ra, qa.qpn, &rb, None, dur);
        eprintln!(
            "  nft {NS_A} before RC: {before}; after: {}",
            pair.counters(NS_A)
        );
        let rcq = ra
            .uctx
            .query_qp(qa.handle)
            .map(|i| format!("{:?}", i.counters));
        eprintln!("  RC QP: {rcq:?}");
        drop((qa, qb, ra, rb));
        eprintln!(
            "loss {:.1}%: SRD {} msgs in {:.2}s ({:?}) counters {:?}; RC {} msgs in {:.2}s ({:?})",
            f64::from(pm) / 10.0,
            srd.msgs,
            srd.secs,
            srd.error,
            c,
            rc.msgs,
            rc.secs,
            rc.error
        );
        rows.push((pm, srd, rc));
    }
    drop(pair);

    let gbps = |r: &Result_| r.msgs as f64 * MSG as f64 * 8.0 / r.secs / 1e9;
    let (s0, r0) = (gbps(&rows[0].1), gbps(&rows[0].2));
    println!("\n64 KiB RDMA WRITE, 16 outstanding, one QP, veth between two namespaces, MTU 4096, {secs} s per cell\n");
    println!("| loss each way | SRD Gb/s | SRD % of lossless | SRD p50 | SRD p99 | RC Gb/s | RC % of lossless | RC p50 | RC p99 |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (pm, s, r) in &rows {
        let note = |x: &Result_| {
            x.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        };
        println!(
            "| {:.1}% | {:.2}{} | {:.0}% | {:.2?} | {:.2?} | {:.2}{} | {:.0}% | {:.2?} | {:.2?} |",
            f64::from(*pm) / 10.0,
            gbps(s),
            note(s),
            100.0 * gbps(s) / s0,
            s.p50,
            s.p99,
            gbps(r),
            note(r),
            100.0 * gbps(r) / r0,
            r.p50,
            r.p99
        );
    }
    Ok(())
}

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("srd_vs_rc needs root (ip netns, nft)");
        std::process::exit(2);
    }
    let secs = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    if let Err(e) = run(secs) {
        eprintln!("srd_vs_rc: {e}");
        std::process::exit(1);
    }
}
