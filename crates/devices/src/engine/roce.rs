//! The RoCEv2 backend: one `softverbs_transport::Qp` per QP (RC, UC, UD),
//! packets sealed with the ICRC on one socket (UDP 4791 by default).

use std::collections::HashMap;
use std::net::SocketAddr;

use softverbs_core::driver::{DriverQpInit, QpInit, Wc};
use softverbs_core::{Result, VerbsError};
use softverbs_transport::{
    Ctx, Incoming, Instant, ModifyQp, PostError, Qp, QpConfig, QpCounters, QpEvent, QpType, RecvWr,
    SendWr,
};
use softverbs_wire::icrc::{self, Endpoints};
use softverbs_wire::opcode::TransportKind;
use softverbs_wire::PacketRepr;

use super::backend::{Backend, Env, Out, QpStatus};
use super::keys::PdMemory;
use super::{gid_addr, ip_gid};

struct RoceQp {
    qp: Qp,
    /// On the work list.
    active: bool,
}

/// RC, UC and UD over RoCEv2.
pub(crate) struct RoceBackend {
    addrs: [SocketAddr; 1],
    qps: HashMap<u32, RoceQp>,
    /// QPs touched since the last drain, in order.
    work: Vec<u32>,
    tx_cur: usize,
    wc_cur: usize,
    ev_cur: usize,
}

impl RoceBackend {
    /// A backend listening on `addr`.
    pub(crate) fn new(addr: SocketAddr) -> Self {
        RoceBackend {
            addrs: [addr],
            qps: HashMap::new(),
            work: Vec::new(),
            tx_cur: 0,
            wc_cur: 0,
            ev_cur: 0,
        }
    }

    fn touch(&mut self, qpn: u32) {
        if let Some(q) = self.qps.get_mut(&qpn) {
            if !q.active {
                q.active = true;
                self.work.push(qpn);
            }
        }
    }

    fn qp_mut(&mut self, qpn: u32) -> std::result::Result<&mut RoceQp, PostError> {
        self.qps
            .get_mut(&qpn)
            .ok_or(PostError::Invalid("no such QP"))
    }
}

impl Backend for RoceBackend {
    fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    fn serves(&self, d: Option<&DriverQpInit>) -> bool {
        d.is_none()
    }

    fn create_qp(&mut self, qpn: u32, init: &QpInit, _: Option<&DriverQpInit>) -> Result<()> {
        let qp = Qp::new(QpConfig {
            qp_type: init.qp_type,
            qpn,
            sq_sig_all: init.sq_sig_all,
            max_send_wr: init.max_send_wr as usize,
            max_recv_wr: init.max_recv_wr as usize,
            use_srq: init.srq.is_some(),
        });
        self.qps.insert(qpn, RoceQp { qp, active: false });
        Ok(())
    }

    fn destroy_qp(&mut self, qpn: u32) -> QpCounters {
        self.qps
            .remove(&qpn)
            .map(|q| *q.qp.counters())
            .unwrap_or_default()
    }

    fn modify_qp(&mut self, now: Instant, qpn: u32, m: &ModifyQp) -> Result<()> {
        let q = self
            .qps
            .get_mut(&qpn)
            .ok_or_else(|| VerbsError::NotFound(format!("QP {qpn:#x}")))?;
        q.qp.modify(m, now);
        self.touch(qpn);
        Ok(())
    }

    fn query_qp(&self, qpn: u32) -> Option<QpStatus> {
        self.qps.get(&qpn).map(|q| QpStatus {
            state: q.qp.state(),
            attrs: q.qp.attrs(),
            counters: *q.qp.counters(),
        })
    }

    fn add_counters(&self, into: &mut QpCounters) {
        for q in self.qps.values() {
            super::add_counters(into, q.qp.counters());
        }
    }

    fn post_send(
        &mut self,
        _now: Instant,
        qpn: u32,
        wr: SendWr,
    ) -> std::result::Result<(), PostError> {
        self.qp_mut(qpn)?.qp.post_send(wr)?;
        self.touch(qpn);
        Ok(())
    }

    fn post_recv(&mut self, qpn: u32, wr: RecvWr) -> std::result::Result<(), PostError> {
        self.qp_mut(qpn)?.qp.post_recv(wr)?;
        self.touch(qpn);
        Ok(())
    }

    fn handle_datagram(&mut self, now: Instant, src: SocketAddr, dgram: &[u8], env: &mut Env<'_>) {
        let local = env.local;
        let ep = Endpoints { src, dst: local };
        let Some(ip_id) = icrc::verify_unknown_ip_id(&ep, dgram) else {
            // Too short for an ICRC counts as malformed, a wrong one as bad ICRC.
            if dgram.len() < softverbs_wire::ICRC_LEN + 12 {
                env.counters.drop_malformed += 1;
            } else {
                env.counters.drop_bad_icrc += 1;
            }
            return;
        };
        let Ok((repr, payload)) = PacketRepr::parse(dgram) else {
            env.counters.drop_malformed += 1;
            return;
        };
        let qpn = repr.bth.dest_qpn;
        let (Some(q), Some(meta)) = (self.qps.get_mut(&qpn), env.qps.get(&qpn)) else {
            env.counters.drop_unknown_qpn += 1;
            return;
        };
        let Ok(info) = repr.bth.opcode.info() else {
            env.counters.drop_bad_opcode += 1;
            return;
        };
        let want = match q.qp.qp_type() {
            QpType::Rc => TransportKind::Rc,
            QpType::Uc => TransportKind::Uc,
            QpType::Ud => TransportKind::Ud,
        };
        if info.transport != want {
            env.counters.drop_bad_opcode += 1;
            return;
        }
        if let Some(deth) = repr.deth {
            if deth.qkey != q.qp.attrs().qkey {
                env.counters.drop_qkey_mismatch += 1;
                return;
            }
        }
        // What UD puts at the head of a receive buffer: for IPv4 20 zero
        // bytes and the IPv4 header (rebuilt: TTL 64, TOS 0, the solved
        // identification), for IPv6 the IPv6 header (as the GRH).
        let mut network_header = [0u8; 40];
        let ph = ep.pseudo_headers(ip_id, dgram.len());
        let ip = ph.ip();
        network_header[40 - ip.len()..].copy_from_slice(ip);
        let inc = Incoming {
            repr: &repr,
            payload,
            src: ip_gid(src.ip()),
            network_header: &network_header,
        };
        let mut mem = PdMemory {
            keys: env.keys,
            pd: meta.pd,
            qpn,
        };
        let srq = meta
            .init
            .srq
            .and_then(|s| env.srqs.get_mut(&s))
            .map(|s| &mut s.rq);
        let mut ctx = Ctx { mem: &mut mem, srq };
        q.qp.handle_packet(now, &inc, &mut ctx);
        self.touch(qpn);
    }

    fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u32> = self
            .qps
            .iter()
            .filter(|(_, q)| q.qp.poll_timeout().is_some_and(|t| t <= now))
            .map(|(&n, _)| n)
            .collect();
        for qpn in due {
            if let Some(q) = self.qps.get_mut(&qpn) {
                q.qp.handle_timeout(now);
            }
            self.touch(qpn);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.qps.values().filter_map(|q| q.qp.poll_timeout()).min()
    }

    fn poll_transmit(&mut self, now: Instant, env: &mut Env<'_>, buf: &mut [u8]) -> Option<Out> {
        let local = env.local;
        while self.tx_cur < self.work.len() {
            let qpn = self.work[self.tx_cur];
            if let (Some(q), Some(meta)) = (self.qps.get_mut(&qpn), env.qps.get(&qpn)) {
                let mut mem = PdMemory {
                    keys: env.keys,
                    pd: meta.pd,
                    qpn,
                };
                let srq = meta
                    .init
                    .srq
                    .and_then(|s| env.srqs.get_mut(&s))
                    .map(|s| &mut s.rq);
                let mut ctx = Ctx { mem: &mut mem, srq };
                while let Some(t) = q.qp.poll_transmit(now, &mut ctx, buf) {
                    let dst = gid_addr(&t.dst, local.port());
                    if dst.is_ipv4() != local.is_ipv4() {
                        continue; // unreachable from this socket's family
                    }
                    icrc::seal(&Endpoints { src: local, dst }, 0, &mut buf[..t.len]);
                    return Some(Out {
                        dst,
                        via: 0,
                        len: t.len,
                    });
                }
            }
            self.tx_cur += 1;
        }
        None
    }

    fn poll_completion(&mut self) -> Option<Wc> {
        while self.wc_cur < self.work.len() {
            if let Some(q) = self.qps.get_mut(&self.work[self.wc_cur]) {
                if let Some(c) = q.qp.poll_completion() {
                    return Some(c);
                }
            }
            self.wc_cur += 1;
        }
        None
    }

    fn poll_event(&mut self) -> Option<(u32, QpEvent)> {
        while self.ev_cur < self.work.len() {
            let qpn = self.work[self.ev_cur];
            if let Some(q) = self.qps.get_mut(&qpn) {
                if let Some(e) = q.qp.poll_event() {
                    return Some((qpn, e));
                }
            }
            self.ev_cur += 1;
        }
        // Drained: forget the work list.
        for qpn in self.work.drain(..) {
            if let Some(q) = self.qps.get_mut(&qpn) {
                q.active = false;
            }
        }
        self.tx_cur = 0;
        self.wc_cur = 0;
        self.ev_cur = 0;
        None
    }
}
