//! The SRD backend: one `softverbs_srd::SrdEndpoint` for all the SRD QPs
//! of the device (one delivery context per peer device, shared by every
//! QP), UET PDS (RUD) + SES over UDP.
//!
//! # Sockets
//!
//! Socket 0 is bound to the device's address and UET port (4793) and is
//! the only one read: every peer sends there. Sockets `1..=N` are bound to
//! the same address and ports `49152 + i` (`softverbs_srd::ENTROPY_BASE_PORT`)
//! and only send: UET's entropy is the UDP source port, so a packet the
//! endpoint sprays onto path `i` leaves from socket `1 + i`. An ACK leaves
//! from the source port of the request it answers (mapped onto our own
//! paths if the peer has more). One receive socket keeps one receive path
//! and one I/O thread; N send-only sockets are the only way to choose the
//! source port of a UDP datagram without raw sockets.

use std::collections::HashMap;
use std::net::SocketAddr;

use softverbs_core::driver::{DriverQpInit, QpInit, Wc};
use softverbs_core::efa::{DRIVER_TYPE_SRD, QP_FLAGS_UNSOLICITED_WRITE_RECV};
use softverbs_core::{Result, VerbsError};
use softverbs_srd::{
    DropReason, SrdConfig, SrdCounters, SrdEndpoint, SrdQpConfig, ENTROPY_BASE_PORT,
};
use softverbs_transport::{
    Instant, Memory, ModifyQp, PostError, QpAttrs, QpCounters, QpEvent, QpState, RecvWr, SendWr,
};

use super::backend::{Backend, Env, Out, QpStatus};
use super::keys::{KeyTable, PdMemory};
use super::{ip_gid, QpMeta};

struct SrdQp {
    state: QpState,
    attrs: QpAttrs,
}

/// SRD QPs over UET.
pub(crate) struct SrdBackend {
    addrs: Vec<SocketAddr>,
    ep: SrdEndpoint,
    qps: HashMap<u32, SrdQp>,
    /// Send paths (sockets `1..=paths`).
    paths: u16,
}

/// The memory of each SRD QP's PD, for the endpoint.
struct SrdMem<'a> {
    mem: PdMemory<'a>,
    qps: &'a HashMap<u32, QpMeta>,
}

impl softverbs_srd::PdMemory for SrdMem<'_> {
    fn memory(&mut self, qpn: u32) -> Option<&mut dyn Memory> {
        let pd = self.qps.get(&qpn)?.pd;
        self.mem.pd = pd;
        self.mem.qpn = qpn;
        Some(&mut self.mem)
    }
}

fn srd_mem<'a>(keys: &'a mut KeyTable, qps: &'a HashMap<u32, QpMeta>) -> SrdMem<'a> {
    SrdMem {
        mem: PdMemory {
            keys,
            pd: 0,
            qpn: 0,
        },
        qps,
    }
}

impl SrdBackend {
    /// A backend on `addr` (the UET port) spraying over `cfg.paths` source
    /// ports.
    pub(crate) fn new(addr: SocketAddr, cfg: SrdConfig) -> Self {
        let paths = cfg.paths.max(1);
        let mut addrs = vec![addr];
        for i in 0..paths {
            addrs.push(SocketAddr::new(addr.ip(), ENTROPY_BASE_PORT + i));
        }
        SrdBackend {
            addrs,
            ep: SrdEndpoint::new(cfg),
            qps: HashMap::new(),
            paths,
        }
    }

    /// The socket a source port leaves from.
    fn via(&self, src_port: u16) -> usize {
        let i = src_port.wrapping_sub(ENTROPY_BASE_PORT) % self.paths;
        1 + usize::from(i)
    }
}

/// The endpoint's counters in the shape of the per-QP counters.
fn as_qp_counters(c: &SrdCounters) -> QpCounters {
    QpCounters {
        sent_pkts: c.sent_pkts,
        rcvd_pkts: c.rcvd_pkts,
        duplicate_request: c.duplicates,
        rcvd_rnr_err: c.rnr_nacks_rcvd,
        send_rnr_err: c.rnr_nacks_sent,
        retransmits: c.timeouts + c.fast_retransmits,
        retransmitted_pkts: c.retransmitted_pkts,
        timeouts: c.timeouts,
        dropped_pkts: c.dropped,
        acks_sent: c.acks_sent,
        completion_errors: c.completion_errors,
        ..QpCounters::default()
    }
}

impl Backend for SrdBackend {
    fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    fn ecn_capable(&self) -> bool {
        // The endpoint echoes CE marks and its window shrinks on them.
        true
    }

    fn serves(&self, d: Option<&DriverQpInit>) -> bool {
        d.is_some_and(|d| d.driver_type == DRIVER_TYPE_SRD)
    }

    fn create_qp(&mut self, qpn: u32, init: &QpInit, d: Option<&DriverQpInit>) -> Result<()> {
        let flags = d.map_or(0, |d| d.flags);
        let mut cfg = SrdQpConfig::new(qpn, 0);
        cfg.max_send_wr = init.max_send_wr as usize;
        cfg.max_recv_wr = init.max_recv_wr as usize;
        cfg.sq_sig_all = init.sq_sig_all;
        cfg.unsolicited_write_recv = flags & QP_FLAGS_UNSOLICITED_WRITE_RECV != 0;
        self.ep
            .create_qp(cfg)
            .map_err(|e| VerbsError::invalid(format!("SRD QP {qpn:#x}: {e}")))?;
        let attrs = QpAttrs {
            rnr_retry: 7,
            path_mtu: self.ep.config().mtu,
            ..QpAttrs::default()
        };
        self.qps.insert(
            qpn,
            SrdQp {
                state: QpState::Reset,
                attrs,
            },
        );
        Ok(())
    }

    fn destroy_qp(&mut self, qpn: u32) -> QpCounters {
        self.ep.destroy_qp(qpn);
        self.qps.remove(&qpn);
        QpCounters::default()
    }

    fn modify_qp(&mut self, now: Instant, qpn: u32, m: &ModifyQp) -> Result<()> {
        let q = self
            .qps
            .get_mut(&qpn)
            .ok_or_else(|| VerbsError::NotFound(format!("QP {qpn:#x}")))?;
        if let Some(k) = m.qkey {
            q.attrs.qkey = k;
        }
        if let Some(r) = m.rnr_retry {
            q.attrs.rnr_retry = r;
        }
        if let Some(p) = m.sq_psn {
            q.attrs.sq_psn = p;
        }
        if let Some(p) = m.pkey {
            q.attrs.pkey = p;
        }
        self.ep.modify_qp(qpn, m.qkey, m.rnr_retry);
        if let Some(s) = m.state {
            let old = q.state;
            q.state = s;
            match s {
                // Flush every outstanding send and receive WQE.
                QpState::Err if old != QpState::Err => {
                    self.ep.flush_qp(now, qpn);
                }
                QpState::Reset => {
                    self.ep.reset_qp(qpn);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn query_qp(&self, qpn: u32) -> Option<QpStatus> {
        self.qps.get(&qpn).map(|q| QpStatus {
            state: q.state,
            attrs: q.attrs,
            counters: QpCounters::default(),
        })
    }

    fn add_counters(&self, into: &mut QpCounters) {
        // Transport state is per peer, not per QP: the endpoint's counters
        // stand for all its QPs.
        super::add_counters(into, &as_qp_counters(&self.ep.counters()));
    }

    fn post_send(
        &mut self,
        now: Instant,
        qpn: u32,
        wr: SendWr,
    ) -> std::result::Result<(), PostError> {
        let q = self.qps.get(&qpn).ok_or(PostError::Invalid("no such QP"))?;
        // In ERR the endpoint completes it at once with WR_FLUSH_ERR.
        if !matches!(q.state, QpState::Rts | QpState::Err) {
            return Err(PostError::InvalidState(q.state));
        }
        self.ep.post_send(now, qpn, wr)
    }

    fn post_recv(&mut self, qpn: u32, wr: RecvWr) -> std::result::Result<(), PostError> {
        let q = self.qps.get(&qpn).ok_or(PostError::Invalid("no such QP"))?;
        if matches!(q.state, QpState::Reset) {
            return Err(PostError::InvalidState(q.state));
        }
        self.ep.post_recv(qpn, wr)
    }

    fn handle_datagram(&mut self, now: Instant, src: SocketAddr, dgram: &[u8], env: &mut Env<'_>) {
        let ce = env.ce;
        let mut mem = srd_mem(env.keys, env.qps);
        if let Err(why) =
            self.ep
                .handle_datagram_ecn(now, ip_gid(src.ip()), src.port(), dgram, ce, &mut mem)
        {
            match why {
                DropReason::Malformed => env.counters.drop_malformed += 1,
                DropReason::UnknownPdc | DropReason::OutOfWindow | DropReason::Unexpected => {
                    env.counters.drop_bad_opcode += 1
                }
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.ep.poll_timeout()
    }

    fn poll_transmit(&mut self, now: Instant, env: &mut Env<'_>, buf: &mut [u8]) -> Option<Out> {
        let port = env.local.port();
        let mut mem = srd_mem(env.keys, env.qps);
        while let Some(t) = self.ep.poll_transmit(now, &mut mem, buf) {
            let dst = SocketAddr::new(t.dst.to_ip(), port);
            if dst.is_ipv4() != env.local.is_ipv4() {
                continue;
            }
            return Some(Out {
                dst,
                via: self.via(t.src_port),
                len: t.len,
            });
        }
        None
    }

    fn poll_completion(&mut self) -> Option<Wc> {
        loop {
            let c = self.ep.poll_completion()?;
            // Completions of destroyed QPs go nowhere.
            if self.qps.contains_key(&c.wc.qp_num) {
                return Some(c.wc);
            }
        }
    }

    fn poll_event(&mut self) -> Option<(u32, QpEvent)> {
        // The endpoint raises no asynchronous QP events.
        None
    }

    fn srd_counters(&self) -> Option<SrdCounters> {
        Some(self.ep.counters())
    }
}
