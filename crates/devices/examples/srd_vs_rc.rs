//! SRD (on `srd` devices) next to RC (on `rxe` devices), on real UDP
//! sockets between two network namespaces joined by several paths (issue 7).
//!
//! ```text
//! sudo cargo run --release -p softverbs-devices --example srd_vs_rc [MODE] [secs] [reps]
//! ```
//!
//! Needs root. The namespaces come from `tests/srd_support` (shared with the
//! namespace tests): 4 veth pairs, SRD's 4 entropy ports routed one per
//! pair, RC (which cannot spray) on pair 0; faults by nftables and tbf
//! (this kernel has no `sch_netem`). Each cell keeps 16 RDMA WRITEs of
//! 64 KiB outstanding on one QP for `secs` seconds (default 3): SRD between
//! two `srd` devices, RC (timeout 8, retry 7; 12 in `capped`) between two `rxe` devices,
//! one after the other over the same links, fresh devices per cell. MODE:
//!
//! * `loss` — goodput and p50/p99 latency at 0, 0.1, 1 and 5% random loss
//!   each way; `reps` rounds (default 1), reported as ranges.
//! * `capped` — the same with the same capacity for both (tbf): RC's
//!   pair at 1 Gb/s, each of SRD's four at 250 Mb/s, so the link, not the
//!   CPU, is the bottleneck (RC timeout 12: the queue holds up to 8 ms).
//! * `blackhole` — pair 0 (RC's only path, one of SRD's four) drops
//!   everything from a third of the cell on: p50/p99/p99.9 latency and the
//!   time until goodput (20 ms windows) is back to 80% of its level before.
//! * `reorder` — no loss; the pairs run at different rates (tbf: none,
//!   2, 1, 0.5 Gb/s, deep queues), so sprayed packets arrive out of order:
//!   SRD's retransmissions are all spurious.
//! * `delay` — the `loss` table on delayed links: every pair runs through
//!   a third namespace where a user-space netem (`softverbs-netem`, an
//!   AF_PACKET relay: this kernel has no `sch_netem`) holds each frame
//!   1 ms ± 100 µs each way (`DELAY_US`, `JITTER_US` to change) and drops
//!   0, 0.1, 1 and 5% of them each way. RC's ACK timeout is 12 (16.8 ms: a
//!   few times the ~2–6 ms RTT under load; `RC_TIMEOUT` to change).
//! * `all` (default) — all five.
//!
//! The namespaces are removed at the end, on error and on panic.

#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::sync::Arc;
use std::time::{Duration, Instant};

use softverbs_core::driver::{AhAttr, Driver, Wc};
use softverbs_core::mem::{Backing, MemBlock};
use softverbs_core::{Device, ModifyAttrs, MrRef, Owner, QpCreate, QpRef, Ucontext};
use softverbs_devices::{DeviceKind, SoftDevice};
use softverbs_netem::Impairment;
use softverbs_transport::{Access, Mtu, QpState, QpType, SendWr, Sge, UdDest, WcStatus};

const MSG: usize = 64 * 1024;
const DEPTH: usize = 16;
const QKEY: u32 = 0x1111_1111;
/// RC's local ACK timeout exponent (4.096 µs × 2^t): 8 (1 ms), the
/// quickest recovery RC gets; 12 (17 ms) where queues are deep.
static RC_TIMEOUT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(8);

#[path = "../tests/srd_support/mod.rs"]
mod srd_support;

use srd_support::Net;

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
                timeout: Some(RC_TIMEOUT.load(std::sync::atomic::Ordering::Relaxed)),
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
    /// Per completed message: (completion time since start, latency).
    done: Vec<(Duration, Duration)>,
    error: Option<String>,
    /// When the error surfaced, since start.
    error_at: Option<Duration>,
}

impl Result_ {
    fn gbps(&self) -> f64 {
        self.msgs as f64 * MSG as f64 * 8.0 / self.secs / 1e9
    }

    /// Latency percentile `p` (0–1).
    fn pct(&self, p: f64) -> Duration {
        let mut l: Vec<Duration> = self.done.iter().map(|d| d.1).collect();
        l.sort();
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }

    fn note(&self) -> String {
        self.error
            .as_ref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    }
}

/// Keep `DEPTH` WRITEs outstanding from `a` to `b` for `dur`; at `at`
/// (since start), run `event` once.
fn pump(
    a: &Side,
    qpn: u32,
    b: &Side,
    dest: Option<UdDest>,
    dur: Duration,
    mut event: Option<(Duration, &dyn Fn())>,
) -> Result_ {
    let mut posted_at = vec![Instant::now(); DEPTH];
    let mut done_v = Vec::new();
    let (mut posted, mut done) = (0u64, 0u64);
    let mut wcs: Vec<Wc> = Vec::with_capacity(DEPTH);
    let mut error = None;
    let mut error_at = None;
    let t0 = Instant::now();
    let end = t0 + dur;
    let mut last_progress = Instant::now();
    loop {
        let now = Instant::now();
        if let Some((at, f)) = event {
            if now >= t0 + at {
                f();
                event = None;
            }
        }
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
                if error.is_none() {
                    error_at = Some(t - t0);
                }
                error.get_or_insert_with(|| format!("{:?} after {done} messages", w.status));
            } else {
                done_v.push((t - t0, t - posted_at[(w.wr_id as usize) % DEPTH]));
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
    Result_ {
        msgs: done_v.len() as u64,
        secs: t0.elapsed().as_secs_f64(),
        done: done_v,
        error,
        error_at,
    }
}

/// One SRD cell and one RC cell over `net` (fresh devices named with
/// `tag`); `event` runs in each at the given offset.
fn cells(
    net: &Net,
    tag: &str,
    dur: Duration,
    event: Option<(Duration, &dyn Fn())>,
    reset: &dyn Fn(),
) -> Result<(Result_, Result_, Option<softverbs_srd::SrdCounters>), String> {
    cells2(net, tag, dur, event, reset, reset)
}

/// [`cells`] with a different preparation before the RC cell.
fn cells2(
    net: &Net,
    tag: &str,
    dur: Duration,
    event: Option<(Duration, &dyn Fn())>,
    reset: &dyn Fn(),
    before_rc: &dyn Fn(),
) -> Result<(Result_, Result_, Option<softverbs_srd::SrdCounters>), String> {
    reset();
    let sa = Side::new(net.device(&format!("srda{tag}"), DeviceKind::Srd, 1, Mtu::Mtu4096)?)?;
    let sb = Side::new(net.device(&format!("srdb{tag}"), DeviceKind::Srd, 2, Mtu::Mtu4096)?)?;
    let (qa, qb) = (sa.srd_qp()?, sb.srd_qp()?);
    let ah = sa.ah_to(&sb)?;
    let dest = UdDest {
        dgid: ah.dgid,
        remote_qpn: qb.qpn,
        remote_qkey: QKEY,
    };
    let srd = pump(&sa, qa.qpn, &sb, Some(dest), dur, event);
    let c = sa.dev.srd_counters();
    drop((qa, qb, sa, sb));

    before_rc();
    let ra = Side::new(net.device(&format!("rxea{tag}"), DeviceKind::Rxe, 3, Mtu::Mtu4096)?)?;
    let rb = Side::new(net.device(&format!("rxeb{tag}"), DeviceKind::Rxe, 4, Mtu::Mtu4096)?)?;
    let (qa, qb) = (ra.rc_qp()?, rb.rc_qp()?);
    ra.rc_connect(&qa, &rb, qb.qpn)?;
    rb.rc_connect(&qb, &ra, qa.qpn)?;
    let rc = pump(&ra, qa.qpn, &rb, None, dur, event);
    drop((qa, qb, ra, rb));
    reset();
    Ok((srd, rc, c))
}

fn range(v: &[f64], unit: &str) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.len() < 2 || (hi - lo).abs() < 0.005 {
        format!("{lo:.2}{unit}")
    } else {
        format!("{lo:.2}–{hi:.2}{unit}")
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `cap`: the same capacity for both, e.g. `Some(("1gbit", "250mbit"))`:
/// RC's pair 0 at the first rate, each of SRD's four pairs at the second.
/// `delay`: the pairs run through the netem relay (a `Net::new_relayed`),
/// which delays by this and drops (instead of nftables).
fn loss(
    net: &Net,
    secs: u64,
    reps: usize,
    cap: Option<(&str, &str)>,
    delay: Option<Impairment>,
) -> Result<(), String> {
    let dur = Duration::from_secs(secs);
    let losses = [0u32, 1, 10, 50];
    // [loss][rep] -> (srd, rc)
    let mut rows: Vec<Vec<(Result_, Result_)>> = losses.iter().map(|_| Vec::new()).collect();
    let faults = |pm: u32| match delay {
        Some(d) => net.set_impairment(d.with_loss(f64::from(pm) / 1000.0)),
        None => net.set_faults(pm, None),
    };
    for r in 0..reps {
        for (i, &pm) in losses.iter().enumerate() {
            faults(pm)?;
            let set = || {
                let _ = faults(pm);
                if let Some((_, each)) = cap {
                    let _ = net.set_rates(&[Some(each); 4]);
                }
            };
            let set_rc = || {
                let _ = faults(pm);
                if let Some((all, _)) = cap {
                    let _ = net.set_rates(&[Some(all), None, None, None]);
                }
            };
            let relay0 = net.relay_stats();
            let (srd, rc, c) = cells2(net, &format!("l{r}{i}"), dur, None, &set, &set_rc)?;
            let relay = relay_note(&relay0, &net.relay_stats());
            eprintln!(
                "loss {:.1}% rep {r}: SRD {:.2} Gb/s{} RC {:.2} Gb/s{}; SRD {c:?}{relay}",
                f64::from(pm) / 10.0,
                srd.gbps(),
                srd.note(),
                rc.gbps(),
                rc.note()
            );
            rows[i].push((srd, rc));
        }
    }
    if delay.is_some() {
        net.set_impairment(Impairment::NONE)?;
    } else {
        net.set_rates(&[None, None, None, None])?;
    }
    let capped = match (cap, delay) {
        (Some((all, each)), _) => {
            format!(", capacity capped (tbf): RC's pair {all}, SRD's four pairs {each} each")
        }
        (None, Some(d)) => format!(
            ", every pair delayed {:.2} ms ± {:.0} µs each way by the netem relay (loss on the relay), RC ACK timeout {} ({:.1} ms)",
            ms(d.delay),
            d.jitter.as_secs_f64() * 1e6,
            RC_TIMEOUT.load(std::sync::atomic::Ordering::Relaxed),
            4.096e-3 * f64::from(1u32 << RC_TIMEOUT.load(std::sync::atomic::Ordering::Relaxed)),
        ),
        (None, None) => ", no rate limit (CPU-bound)".to_string(),
    };
    println!("\n### Random loss: 64 KiB RDMA WRITE, 16 outstanding, one QP, 4 paths (SRD) / 1 path (RC), MTU 4096{capped}, {secs} s per cell, {reps} round(s)\n");
    println!("| loss each way | SRD Gb/s | SRD % of lossless (means) | SRD p50 ms | SRD p99 ms | RC Gb/s | RC % of lossless (means) | RC p50 ms | RC p99 ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let base = |k: usize, f: &dyn Fn(&(Result_, Result_)) -> f64| -> Vec<f64> {
        rows[k].iter().map(f).collect()
    };
    let s0: Vec<f64> = base(0, &|x| x.0.gbps());
    let r0: Vec<f64> = base(0, &|x| x.1.gbps());
    for (i, &pm) in losses.iter().enumerate() {
        // Means over the rounds: the rounds' own ratios mostly measure how
        // busy the shared host was during each lossless cell.
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let rel =
            |v: Vec<f64>, b: &[f64]| -> Vec<f64> { vec![100.0 * mean(&v) / mean(b).max(1e-9)] };
        let errs: String = rows[i]
            .iter()
            .filter_map(|x| x.1.error.clone())
            .take(1)
            .map(|e| format!(" ({e})"))
            .collect();
        println!(
            "| {:.1}% | {} | {} | {} | {} | {}{} | {} | {} | {} |",
            f64::from(pm) / 10.0,
            range(&base(i, &|x| x.0.gbps()), ""),
            range(&rel(base(i, &|x| x.0.gbps()), &s0), "%"),
            range(&base(i, &|x| ms(x.0.pct(0.5))), ""),
            range(&base(i, &|x| ms(x.0.pct(0.99))), ""),
            range(&base(i, &|x| x.1.gbps()), ""),
            errs,
            range(&rel(base(i, &|x| x.1.gbps()), &r0), "%"),
            range(&base(i, &|x| ms(x.1.pct(0.5))), ""),
            range(&base(i, &|x| ms(x.1.pct(0.99))), ""),
        );
    }
    Ok(())
}

/// What the relay did between two snapshots: frames relayed, dropped on
/// purpose, and dropped by the kernel before the relay read them.
fn relay_note(
    before: &[[softverbs_netem::LinkStats; 2]],
    after: &[[softverbs_netem::LinkStats; 2]],
) -> String {
    if after.is_empty() {
        return String::new();
    }
    let sum = |v: &[[softverbs_netem::LinkStats; 2]],
               f: fn(&softverbs_netem::LinkStats) -> u64|
     -> u64 { v.iter().flatten().map(f).sum() };
    let d = |f: fn(&softverbs_netem::LinkStats) -> u64| sum(after, f) - sum(before, f);
    let max_late = after
        .iter()
        .flatten()
        .map(|s| s.netem.late_ns_max)
        .max()
        .unwrap_or(0);
    format!(
        "; relay: {} frames in, {} dropped on purpose, {} dropped by the kernel (relay behind), {} send errors, released {:.0} µs late on average (at worst {:.1} ms, since the start)",
        d(|s| s.netem.arrived),
        d(|s| s.netem.dropped),
        d(|s| s.kernel_drops),
        d(|s| s.send_errors),
        d(|s| s.netem.late_ns_total) as f64 / d(|s| s.netem.released).max(1) as f64 / 1e3,
        max_late as f64 / 1e6,
    )
}

/// Time from `at` until goodput over 20 ms windows is back to 80% of the
/// mean before `at`; `None` if never.
fn recovery(r: &Result_, at: Duration) -> Option<Duration> {
    let win = Duration::from_millis(20);
    let before = r.done.iter().filter(|d| d.0 < at).count() as f64;
    let rate = before / at.as_secs_f64().max(1e-9); // messages per second
    let want = rate * win.as_secs_f64() * 0.8;
    let mut t = at;
    let end = r.done.last()?.0;
    while t + win <= end {
        let n = r.done.iter().filter(|d| d.0 >= t && d.0 < t + win).count() as f64;
        if n >= want {
            return Some(t - at);
        }
        t += Duration::from_millis(1);
    }
    None
}

fn blackhole(net: &Net, secs: u64) -> Result<(), String> {
    let dur = Duration::from_secs(secs);
    let at = dur / 3;
    let hole = || {
        let _ = net.set_faults(0, Some(0));
    };
    let clear = || {
        let _ = net.set_faults(0, None);
    };
    let (srd, rc, c) = cells(net, "bh", dur, Some((at, &hole)), &clear)?;
    eprintln!("black hole: SRD {c:?}");
    println!("\n### Pair 0 of 4 black-holed after {:.1} s (RC's only path; one of SRD's four), no other loss, {secs} s per cell\n", at.as_secs_f64());
    println!("| transport | Gb/s over the cell | p50 ms | p99 ms | p99.9 ms | time to recover (80% of the goodput before, 20 ms windows) |");
    println!("|---|---|---|---|---|---|");
    for (name, r) in [("SRD", &srd), ("RC", &rc)] {
        let rec = match (recovery(r, at), &r.error) {
            (Some(d), _) => format!("{:.0} ms", ms(d)),
            (None, Some(e)) => format!(
                "never: {e} {:.0} ms after the black hole",
                ms(r.error_at.unwrap_or_default().saturating_sub(at))
            ),
            (None, None) => "not within the cell".to_string(),
        };
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {rec} |",
            r.gbps(),
            ms(r.pct(0.5)),
            ms(r.pct(0.99)),
            ms(r.pct(0.999))
        );
    }
    Ok(())
}

fn reorder(net: &Net, secs: u64) -> Result<(), String> {
    let dur = Duration::from_secs(secs);
    let rates = [None, Some("2gbit"), Some("1gbit"), Some("500mbit")];
    net.set_faults(0, None)?;
    let mut out = Vec::new();
    for (name, r) in [
        ("equal pairs", &[None, None, None, None]),
        ("tbf none/2/1/0.5 Gb/s", &rates),
    ] {
        net.set_rates(r)?;
        let drops0 = net.qdisc_drops();
        let (srd, rc, c) = cells(
            net,
            if out.is_empty() { "ro0" } else { "ro1" },
            dur,
            None,
            &|| {},
        )?;
        let drops = net.qdisc_drops() - drops0;
        eprintln!("reorder {name}: SRD {c:?}; qdisc drops {drops}");
        out.push((name, srd, rc, c, drops));
    }
    net.set_rates(&[None, None, None, None])?;
    println!("\n### Reordering without loss: pairs at different rates (tbf, deep queues), {secs} s per cell\n");
    println!("| pairs | SRD Gb/s | SRD p99 ms | SRD data packets | SRD retransmitted (all spurious) | detected spurious | qdisc/nft drops | RC Gb/s (pair 0 only) |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, srd, rc, c, drops) in &out {
        let c = c.unwrap_or_default();
        println!(
            "| {name} | {:.2} | {:.2} | {} | {} ({:.3}%) | {} | {drops} | {:.2} |",
            srd.gbps(),
            ms(srd.pct(0.99)),
            c.data_pkts,
            c.retransmitted_pkts,
            100.0 * c.retransmitted_pkts as f64 / c.data_pkts.max(1) as f64,
            c.spurious_retransmits,
            rc.gbps()
        );
    }
    Ok(())
}

fn run(mode: &str, secs: u64, reps: usize) -> Result<(), String> {
    if matches!(mode, "delay" | "all") {
        let env = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        let d = Impairment::delay(Duration::from_micros(env("DELAY_US", 1000)))
            .with_jitter(Duration::from_micros(env("JITTER_US", 100)));
        // RTT ≈ 2 × the delay, plus up to ~4 ms of queue for 1 MiB in
        // flight: timeout 12 (16.8 ms) is a few RTTs.
        RC_TIMEOUT.store(
            env("RC_TIMEOUT", 12) as u8,
            std::sync::atomic::Ordering::Relaxed,
        );
        let relayed = Net::new_relayed("svd", 97, 4)?;
        loss(&relayed, secs, reps, None, Some(d))?;
        RC_TIMEOUT.store(8, std::sync::atomic::Ordering::Relaxed);
    }
    if mode == "delay" {
        return Ok(());
    }
    let net = Net::new("svr", 98, 4)?;
    if matches!(mode, "loss" | "all") {
        loss(&net, secs, reps, None, None)?;
    }
    if matches!(mode, "capped" | "all") {
        // 1 MiB outstanding queues up to 8 ms at 1 Gb/s: past timeout 8.
        RC_TIMEOUT.store(12, std::sync::atomic::Ordering::Relaxed);
        loss(&net, secs, reps, Some(("1gbit", "250mbit")), None)?;
        RC_TIMEOUT.store(8, std::sync::atomic::Ordering::Relaxed);
    }
    if matches!(mode, "blackhole" | "all") {
        blackhole(&net, secs)?;
    }
    if matches!(mode, "reorder" | "all") {
        reorder(&net, secs)?;
    }
    Ok(())
}

fn main() {
    if !srd_support::is_root() {
        eprintln!("srd_vs_rc needs root (ip netns, nft, tc)");
        std::process::exit(2);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, rest) = match args.first().map(String::as_str) {
        Some(m @ ("loss" | "capped" | "blackhole" | "reorder" | "delay" | "all")) => {
            (m.to_string(), &args[1..])
        }
        _ => ("all".to_string(), &args[..]),
    };
    let secs = rest.first().and_then(|s| s.parse().ok()).unwrap_or(3);
    let reps = rest.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    if let Err(e) = run(&mode, secs, reps) {
        eprintln!("srd_vs_rc: {e}");
        std::process::exit(1);
    }
}
