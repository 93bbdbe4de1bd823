//! Transport state grows with peers, not with QPs × peers (issue 7): one
//! device with many QPs, each talking to every one of 16 peer devices,
//! holds one delivery context per peer. Bytes are measured, not assumed.

use softverbs_sim::SimMemory;
use softverbs_srd::{OnePd, SrdConfig, SrdEndpoint, SrdQpConfig};
use softverbs_transport::{Access, Instant, Mtu, Qp, SendWr, Sge, UdDest, WcStatus};
use softverbs_wire::Gid;

const QKEY: u32 = 0x5ca1_e000;

fn gid(h: usize) -> Gid {
    let mut g = [0u8; 16];
    g[10] = 0xff;
    g[11] = 0xff;
    g[12] = 10;
    g[15] = h as u8 + 1;
    Gid(g)
}

struct Measured {
    contexts: usize,
    peak_ctx_bytes: usize,
    idle_ctx_bytes: usize,
    qp_bytes: usize,
    messages: usize,
}

/// `qps` QPs on host 0, each sending one 1 KiB WRITE to each of `peers`
/// peers (one QP each), over a lossless in-memory exchange.
fn hub(qps: u32, peers: usize) -> Measured {
    let mut eps: Vec<SrdEndpoint> = (0..=peers)
        .map(|h| {
            let mut c = SrdConfig::new(gid(h));
            c.mtu = Mtu::Mtu1024;
            c.seed = h as u64 + 1;
            SrdEndpoint::new(c)
        })
        .collect();
    let mut mems: Vec<SimMemory> = (0..=peers)
        .map(|h| SimMemory::new(0x100 * (h as u32 + 1), 0x1000_0000))
        .collect();
    let all = Access::LOCAL_WRITE | Access::REMOTE_WRITE;
    let regs: Vec<_> = mems.iter_mut().map(|m| m.register(1024, all, 0)).collect();
    for q in 0..qps {
        let mut c = SrdQpConfig::new(0x100 + q, QKEY);
        c.max_send_wr = peers + 1;
        eps[0].create_qp(c).expect("fresh QP");
    }
    for ep in eps.iter_mut().skip(1) {
        ep.create_qp(SrdQpConfig::new(0x100, QKEY))
            .expect("fresh QP");
    }
    let mut now = Instant::ZERO;
    for q in 0..qps {
        for p in 1..=peers {
            let wr = SendWr::write(
                u64::from(q) << 8 | p as u64,
                Sge {
                    addr: regs[0].addr,
                    length: 1024,
                    lkey: regs[0].lkey,
                },
                regs[p].addr,
                regs[p].rkey,
            )
            .signaled()
            .to(UdDest {
                dgid: gid(p),
                remote_qpn: 0x100,
                remote_qkey: QKEY,
            });
            eps[0].post_send(now, 0x100 + q, wr).expect("room");
        }
    }
    let total = qps as usize * peers;
    let (mut done, mut peak) = (0usize, 0usize);
    let mut buf = vec![0u8; eps[0].max_datagram()];
    for _round in 0..1_000_000 {
        now = now + core::time::Duration::from_micros(1);
        let mut wire = Vec::new();
        for h in 0..=peers {
            while let Some(t) = eps[h].poll_transmit(now, &mut OnePd(&mut mems[h]), &mut buf) {
                let to = usize::from(t.dst.0[15]) - 1;
                wire.push((h, to, t.src_port, buf[..t.len].to_vec()));
            }
            while let Some(c) = eps[h].poll_completion() {
                assert_eq!(c.wc.status, WcStatus::Success, "{c:?}");
                done += 1;
            }
        }
        peak = peak.max(eps[0].pdc_stats().iter().map(|p| p.footprint).sum());
        if done == total && wire.is_empty() {
            break;
        }
        for (from, to, port, d) in wire {
            eps[to]
                .handle_datagram(now, gid(from), port, &d, &mut OnePd(&mut mems[to]))
                .expect("intact");
        }
        for ep in eps.iter_mut() {
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
        }
    }
    assert_eq!(done, total, "every WRITE completes");
    let stats = eps[0].pdc_stats();
    Measured {
        contexts: stats.len(),
        peak_ctx_bytes: peak,
        idle_ctx_bytes: stats.iter().map(|p| p.footprint).sum(),
        qp_bytes: eps[0].qp_footprint(),
        messages: total,
    }
}

#[test]
fn contexts_grow_with_peers_not_qps() {
    let small = hub(10, 16);
    let big = hub(1000, 16);
    assert_eq!(big.messages, 16_000);
    // One initiator context per peer, however many QPs use it.
    assert_eq!(small.contexts, 16);
    assert_eq!(big.contexts, 16);
    // Idle, a context is the same size whatever the QP count.
    assert_eq!(small.idle_ctx_bytes, big.idle_ctx_bytes);
    let rc_qp = core::mem::size_of::<Qp>();
    eprintln!(
        "| QPs × peers | SRD contexts | context bytes idle (per context) | context bytes at peak | SRD QP bytes (per QP) | RC: QPs needed | RC transport bytes (size_of Qp = {rc_qp}) |"
    );
    eprintln!("|---|---|---|---|---|---|---|");
    for (q, m) in [(10, &small), (1000, &big)] {
        eprintln!(
            "| {q} × 16 | {} | {} ({}) | {} | {} ({}) | {} | {} |",
            m.contexts,
            m.idle_ctx_bytes,
            m.idle_ctx_bytes / m.contexts,
            m.peak_ctx_bytes,
            m.qp_bytes,
            m.qp_bytes / q,
            q * 16,
            q * 16 * rc_qp
        );
    }
    // SRD's transport state for 1000 × 16 is far below one RC QP per pair.
    assert!(big.idle_ctx_bytes + big.qp_bytes < 1000 * 16 * rc_qp / 4);
}
