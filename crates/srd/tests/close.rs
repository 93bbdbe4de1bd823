//! Delivery contexts close when idle (UET CLOSE, answered by an ACK of its
//! PSN), also when that ACK is lost, and the next work request opens a
//! fresh one.

use core::time::Duration;

use softverbs_sim::SimMemory;
use softverbs_srd::{OnePd, SrdConfig, SrdEndpoint, SrdQpConfig};
use softverbs_transport::{Access, Instant, SendWr, Sge, UdDest, WcStatus};
use softverbs_wire::uet::{ControlType, PdsRepr, UetPacketRepr};
use softverbs_wire::Gid;

const QKEY: u32 = 0xc105_e000;

fn gid(h: usize) -> Gid {
    let mut g = [0u8; 16];
    g[10] = 0xff;
    g[11] = 0xff;
    g[12] = 10;
    g[15] = h as u8 + 1;
    Gid(g)
}

struct Pair {
    eps: [SrdEndpoint; 2],
    mems: [SimMemory; 2],
    regs: Vec<softverbs_sim::RegionInfo>,
    now: Instant,
    /// Drop the next ACK that answers a CLOSE.
    lose_close_ack: bool,
    closes_seen: usize,
    /// The first request host 0 sent (a SYN), as it left.
    first_request: Option<(u16, Vec<u8>)>,
}

impl Pair {
    fn new() -> Pair {
        let mk = |h: usize| {
            let mut c = SrdConfig::new(gid(h));
            c.seed = h as u64 + 3;
            let mut e = SrdEndpoint::new(c);
            e.create_qp(SrdQpConfig::new(0x10, QKEY)).unwrap();
            e
        };
        let mut mems = [
            SimMemory::new(0x100, 0x1000_0000),
            SimMemory::new(0x200, 0x2000_0000),
        ];
        let all = Access::LOCAL_WRITE | Access::REMOTE_WRITE;
        let regs = mems.iter_mut().map(|m| m.register(8192, all, 0)).collect();
        Pair {
            eps: [mk(0), mk(1)],
            mems,
            regs,
            now: Instant::ZERO,
            lose_close_ack: false,
            closes_seen: 0,
            first_request: None,
        }
    }

    fn write(&mut self, id: u64) {
        let wr = SendWr::write(
            id,
            Sge {
                addr: self.regs[0].addr,
                length: 8192,
                lkey: self.regs[0].lkey,
            },
            self.regs[1].addr,
            self.regs[1].rkey,
        )
        .signaled()
        .to(UdDest {
            dgid: gid(1),
            remote_qpn: 0x10,
            remote_qkey: QKEY,
        });
        self.eps[0].post_send(self.now, 0x10, wr).unwrap();
    }

    /// Runs for `d` of virtual time (10 µs steps); the send completions.
    fn run(&mut self, d: Duration) -> Vec<WcStatus> {
        let end = self.now + d;
        let mut done = Vec::new();
        let mut buf = vec![0u8; self.eps[0].max_datagram()];
        while self.now < end {
            self.now = self.now + Duration::from_micros(10);
            for h in 0..2 {
                if self.eps[h].poll_timeout().is_some_and(|t| t <= self.now) {
                    self.eps[h].handle_timeout(self.now);
                }
                let mut out = Vec::new();
                while let Some(t) =
                    self.eps[h].poll_transmit(self.now, &mut OnePd(&mut self.mems[h]), &mut buf)
                {
                    out.push((t.src_port, buf[..t.len].to_vec()));
                }
                for (port, d) in out {
                    let (pkt, _) = UetPacketRepr::parse(&d).unwrap();
                    if h == 0 && self.first_request.is_none() {
                        if let PdsRepr::Request(_) = pkt.pds {
                            self.first_request = Some((port, d.clone()));
                        }
                    }
                    if let PdsRepr::Control(c) = pkt.pds {
                        if c.ctrl == ControlType::Close {
                            self.closes_seen += 1;
                        }
                    }
                    if h == 1 && self.lose_close_ack {
                        if let PdsRepr::Ack(a) = pkt.pds {
                            if a.cc.is_none() {
                                self.lose_close_ack = false;
                                continue;
                            }
                        }
                    }
                    let _ = self.eps[1 - h].handle_datagram(
                        self.now,
                        gid(h),
                        port,
                        &d,
                        &mut OnePd(&mut self.mems[1 - h]),
                    );
                }
                while let Some(c) = self.eps[h].poll_completion() {
                    done.push(c.wc.status);
                }
            }
        }
        done
    }
}

#[test]
fn idle_contexts_close_and_reopen() {
    let mut p = Pair::new();
    p.write(1);
    assert_eq!(p.run(Duration::from_millis(5)), vec![WcStatus::Success]);
    assert_eq!(p.eps[0].pdc_stats().len(), 1);
    assert_eq!(p.eps[1].pdc_stats().len(), 1);
    // 100 ms idle: CLOSE, ACK, both sides free their context.
    p.run(Duration::from_millis(150));
    assert_eq!(p.closes_seen, 1);
    assert!(p.eps[0].pdc_stats().is_empty());
    assert!(p.eps[1].pdc_stats().is_empty());
    assert_eq!(p.eps[0].counters().pdcs_closed, 1);
    assert_eq!(p.eps[1].counters().pdcs_closed, 1);
    // New work opens a fresh context (SYN) and completes.
    p.write(2);
    assert_eq!(p.run(Duration::from_millis(5)), vec![WcStatus::Success]);
    assert_eq!(p.eps[0].counters().pdcs_opened, 2);
    assert_eq!(p.eps[1].counters().pdcs_opened, 2);
}

#[test]
fn a_lost_close_ack_is_answered_again_without_state() {
    let mut p = Pair::new();
    p.write(1);
    assert_eq!(p.run(Duration::from_millis(5)), vec![WcStatus::Success]);
    p.lose_close_ack = true;
    p.run(Duration::from_millis(200));
    // The target freed its side on the first CLOSE; the retried CLOSE got
    // an ACK built from the packet alone.
    assert!(p.closes_seen >= 2, "{}", p.closes_seen);
    assert!(p.eps[0].pdc_stats().is_empty());
    assert!(p.eps[1].pdc_stats().is_empty());
    assert_eq!(p.eps[0].counters().pdcs_reset, 0);
}

#[test]
fn a_late_copy_of_a_closed_contexts_syn_is_refused() {
    let mut p = Pair::new();
    p.write(1);
    assert_eq!(p.run(Duration::from_millis(5)), vec![WcStatus::Success]);
    p.run(Duration::from_millis(150));
    assert!(p.eps[1].pdc_stats().is_empty());
    // The network hands over a stale duplicate of the first packet (a SYN).
    let (port, d) = p.first_request.clone().expect("captured");
    let r = p.eps[1].handle_datagram(p.now, gid(0), port, &d, &mut OnePd(&mut p.mems[1]));
    assert!(r.is_err(), "{r:?}");
    assert!(p.eps[1].pdc_stats().is_empty(), "no context opened");
    assert_eq!(p.eps[1].counters().pdcs_opened, 1);
}
