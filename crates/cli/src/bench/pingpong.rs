//! The verbs side of `softverbs pingpong {rc,uc,ud,srq}`: resources, QP
//! transitions and the ping-pong loop of rdma-core's `ibv_*_pingpong`
//! (docs/oob-and-tools.md §1.2, §1.3, §1.5), over the exchange of
//! [`crate::pingpong::oob`] and printing with [`crate::pingpong::report`].

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _, Result};
use softverbs::{
    Access, Ah, AhAttr, CompletionChannel, Context, Cq, Gid, Mr, Mtu, Pd, Qp, QpInitAttr, QpState,
    QpType, RecvWr, SendWr, Srq, Wc, WcOpcode, WcStatus,
};
use softverbs_core::ModifyAttrs;

use super::{oob_err, Poller, Rng};
use crate::pingpong::args::{PingpongCommand, PingpongConfig};
use crate::pingpong::oob::{PpClient, PpDest, PpServer};
use crate::pingpong::report;
use crate::pingpong::Tool;

/// `PINGPONG_RECV_WRID`.
const RECV_WRID: u64 = 1;
/// `PINGPONG_SEND_WRID`.
const SEND_WRID: u64 = 2;
/// The GRH in front of every UD receive.
const GRH_LEN: usize = 40;
/// ud_pingpong's Q_Key.
const QKEY: u32 = 0x1111_1111;
/// Page size of the `-c` pattern.
const PAGE: usize = 4096;

/// Runs one pingpong tool.
pub fn run(cmd: &PingpongCommand) -> Result<ExitCode> {
    let cfg = cmd.config().map_err(|e| anyhow!(e))?;
    let ctx = super::open_device(cfg.ib_dev.as_deref())?;
    let pp = PpCtx::new(&ctx, &cfg)?;
    pp.run(&cfg)?;
    if cfg.res {
        crate::rdma::print_resources(None, false)?;
    }
    if cfg.stats {
        crate::rdma::print_stats(Some(ctx.name()), None, false)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `struct pingpong_context`.
///
/// Fields drop in declaration order, so the QPs, SRQ and AH go first and
/// the memory region last, as `pp_close_ctx` does: no packet still arriving
/// for a QP can find its receive buffer deregistered.
struct PpCtx {
    qps: Vec<Qp>,
    srq: Option<Srq>,
    ah: Option<Ah>,
    tool: Tool,
    mr: Mr,
    cq: Cq,
    channel: Option<CompletionChannel>,
    _pd: Pd,
    size: u32,
    /// Receive length: `size` (ud: `size + 40`).
    recv_len: u32,
    rx_depth: u32,
    inline: bool,
    ib_port: u8,
    gid: Option<(u8, Gid)>,
    psns: Vec<u32>,
}

impl PpCtx {
    /// `pp_init_ctx`: buffer, MR, CQ, QPs (SRQ), INIT.
    fn new(ctx: &Context, cfg: &PingpongConfig) -> Result<Self> {
        let name = ctx.name().to_string();
        let caps = ctx.query_device().map_err(|e| anyhow!("{e}"))?;
        let qp_type = match cfg.tool {
            Tool::Rc | Tool::Srq => QpType::Rc,
            Tool::Uc => QpType::Uc,
            // SRD QPs are UD-typed QPs of the EFA driver.
            Tool::Ud | Tool::Srd => QpType::Ud,
        };
        if cfg.tool == Tool::Srd {
            softverbs::efa::query_device(ctx)
                .map_err(|e| anyhow!("pingpong srd needs an SRD device: {e}"))?;
        } else {
            caps.require_qp_type(&name, qp_type)
                .map_err(|e| anyhow!("{e}"))?;
        }
        if cfg.tool == Tool::Srq && !caps.ops.srq {
            bail!("device {name} does not support shared receive queues, which srq needs");
        }
        let port = ctx
            .query_port(cfg.ib_port)
            .map_err(|e| anyhow!("Couldn't get port info: {e}"))?;
        if matches!(cfg.tool, Tool::Ud | Tool::Srd) && cfg.size > port.active_mtu {
            bail!("Requested size larger than port MTU ({})", port.active_mtu);
        }
        let gid = if cfg.gid_idx >= 0 {
            let g = ctx
                .query_gid(cfg.ib_port, cfg.gid_idx as u16)
                .map_err(|e| anyhow!("can't read sgid of index {}: {e}", cfg.gid_idx))?;
            Some((cfg.gid_idx as u8, g))
        } else {
            None
        };
        let size = cfg.size;
        let recv_len = if cfg.tool == Tool::Ud {
            size + GRH_LEN as u32
        } else {
            size
        };
        let pd = ctx
            .alloc_pd()
            .map_err(|e| anyhow!("Couldn't allocate PD: {e}"))?;
        let mr = pd
            .reg_mr((recv_len as usize).max(1), Access::LOCAL_WRITE)
            .map_err(|e| anyhow!("Couldn't register MR: {e}"))?;
        // rc/uc/ud fill the buffer with 0x7b; srq leaves it zeroed.
        if cfg.tool != Tool::Srq && recv_len > 0 {
            mr.write(0, &vec![0x7b; recv_len as usize])
                .map_err(|e| anyhow!("{e}"))?;
        }
        let channel = if cfg.events {
            Some(
                ctx.create_comp_channel()
                    .map_err(|e| anyhow!("Couldn't create completion channel: {e}"))?,
            )
        } else {
            None
        };
        let cqe = cfg.rx_depth + cfg.num_qp.max(1);
        let cq = ctx
            .create_cq(cqe, channel.as_ref())
            .map_err(|e| anyhow!("Couldn't create CQ: {e}"))?;
        let srq = if cfg.tool == Tool::Srq {
            Some(
                pd.create_srq(cfg.rx_depth, 1)
                    .map_err(|e| anyhow!("Couldn't create SRQ: {e}"))?,
            )
        } else {
            None
        };
        // rxe sizes a send WQE for max(one SGE, max_inline_data): asked for
        // no inline data, a QP reports 16 bytes, and the tools send inline
        // when the message fits.
        let max_inline = caps.max_inline_data.min(16);
        let inline = caps.ops.inline_data && size <= max_inline && size > 0;
        let mut qps = Vec::new();
        let mut rng = Rng::new(0x7070);
        let mut psns = Vec::new();
        for i in 0..cfg.num_qp {
            let mut attr = QpInitAttr::new(qp_type, &cq, &cq);
            attr.max_send_wr = 1;
            attr.max_recv_wr = cfg.rx_depth;
            attr.max_send_sge = 1;
            attr.max_recv_sge = 1;
            attr.max_inline_data = max_inline;
            if let Some(s) = &srq {
                attr = attr.with_srq(s);
            }
            let qp = if cfg.tool == Tool::Srd {
                softverbs::efa::create_srd_qp(&pd, &attr, 0)
            } else {
                pd.create_qp(&attr)
            }
            .map_err(|e| {
                if cfg.tool == Tool::Srq {
                    anyhow!("Couldn't create QP[{i}]: {e}")
                } else {
                    anyhow!("Couldn't create QP: {e}")
                }
            })?;
            let mut init = ModifyAttrs {
                qp_state: Some(QpState::Init),
                pkey_index: Some(0),
                port_num: Some(cfg.ib_port),
                ..Default::default()
            };
            if qp_type == QpType::Ud {
                init.qkey = Some(QKEY);
            } else {
                init.qp_access_flags = Some(Access::NONE);
            }
            qp.modify(&init).map_err(|e| {
                if cfg.tool == Tool::Srq {
                    anyhow!("Failed to modify QP[{i}] to INIT: {e}")
                } else {
                    anyhow!("Failed to modify QP to INIT: {e}")
                }
            })?;
            psns.push(rng.psn());
            qps.push(qp);
        }
        Ok(PpCtx {
            tool: cfg.tool,
            _pd: pd,
            mr,
            cq,
            channel,
            qps,
            srq,
            ah: None,
            size,
            recv_len,
            rx_depth: cfg.rx_depth,
            inline,
            ib_port: cfg.ib_port,
            gid,
            psns,
        })
    }

    /// `pp_post_recv`: posts up to `n` receives; returns how many.
    fn post_recv(&self, n: u32) -> u32 {
        for i in 0..n {
            let wr = RecvWr::new(RECV_WRID, self.mr.sge(0, self.recv_len));
            let r = match &self.srq {
                Some(s) => s.post_recv(wr),
                None => self.qps[0].post_recv(wr),
            };
            if r.is_err() {
                return i;
            }
        }
        n
    }

    /// `pp_post_send` on QP `i`.
    fn post_send(&self, i: usize, remote_qpn: u32) -> Result<()> {
        let off = if self.tool == Tool::Ud { GRH_LEN } else { 0 };
        let mut wr = if self.inline {
            let mut data = vec![0u8; self.size as usize];
            self.mr.read(off, &mut data).map_err(|e| anyhow!("{e}"))?;
            SendWr::send_inline(SEND_WRID, &data)
        } else {
            SendWr::send(SEND_WRID, self.mr.sge(off, self.size))
        }
        .signaled();
        if let Some(ah) = &self.ah {
            wr = wr.to(ah.dest(remote_qpn, QKEY));
        }
        self.qps[i]
            .post_send(wr)
            .map_err(|e| anyhow!("Couldn't post send: {e}"))
    }

    /// Our address(es) as exchanged.
    fn local_dests(&self) -> Vec<PpDest> {
        let gid = self.gid.map(|(_, g)| g.0).unwrap_or([0; 16]);
        self.qps
            .iter()
            .zip(&self.psns)
            .map(|(qp, &psn)| PpDest {
                lid: 0,
                qpn: qp.qpn(),
                psn,
                gid,
            })
            .collect()
    }

    /// The address vector toward `rem`: global only when the remote GID's
    /// interface id is non-zero (as the tools decide); on RoCE a non-global
    /// one — or no local GID index — fails, as with rxe.
    fn av(&self, rem: &PpDest, sl: u8) -> Option<AhAttr> {
        let (sgid_index, _) = self.gid?;
        if !rem.is_global() {
            return None;
        }
        Some(AhAttr {
            dgid: Gid(rem.gid),
            sgid_index,
            hop_limit: 1,
            traffic_class: 0,
            flow_label: 0,
            sl,
            port: self.ib_port,
        })
    }

    /// `pp_connect_ctx` for QP `i` toward `rem` (srq: every QP's AV from
    /// `dest[0].gid`, `av_from`).
    fn connect(
        &mut self,
        i: usize,
        rem: &PpDest,
        av_from: &PpDest,
        cfg: &PingpongConfig,
    ) -> Result<()> {
        let which = if self.tool == Tool::Srq {
            format!("QP[{i}]")
        } else {
            "QP".to_string()
        };
        let hint = "the remote GID is all zero or no -g was given here: on RoCE both sides need \
                    a GID index, e.g. -g 1 (the IPv4-mapped GID)";
        let qp = &self.qps[i];
        let psn = self.psns[i];
        if matches!(self.tool, Tool::Ud | Tool::Srd) {
            qp.modify(&ModifyAttrs {
                qp_state: Some(QpState::Rtr),
                ..Default::default()
            })
            .map_err(|e| anyhow!("Failed to modify QP to RTR: {e}"))?;
            qp.modify(&ModifyAttrs {
                qp_state: Some(QpState::Rts),
                sq_psn: Some(psn),
                ..Default::default()
            })
            .map_err(|e| anyhow!("Failed to modify QP to RTS: {e}"))?;
            let av = self
                .av(av_from, cfg.sl)
                .ok_or_else(|| anyhow!("Failed to create AH ({hint})"))?;
            let pd = &self._pd;
            self.ah = Some(
                pd.create_ah(av)
                    .map_err(|e| anyhow!("Failed to create AH: {e}"))?,
            );
            return Ok(());
        }
        let av = self
            .av(av_from, cfg.sl)
            .ok_or_else(|| anyhow!("Failed to modify {which} to RTR ({hint})"))?;
        let mtu_bytes = cfg.mtu.unwrap_or(1024);
        let mtu = Mtu::from_enum(match mtu_bytes {
            256 => 1,
            512 => 2,
            1024 => 3,
            2048 => 4,
            _ => 5,
        })
        .unwrap_or_default();
        let mut rtr = ModifyAttrs {
            qp_state: Some(QpState::Rtr),
            path_mtu: Some(mtu),
            dest_qp_num: Some(rem.qpn),
            rq_psn: Some(rem.psn),
            ah_attr: Some(av),
            ..Default::default()
        };
        let rc = self.tool != Tool::Uc;
        if rc {
            rtr.max_dest_rd_atomic = Some(1);
            rtr.min_rnr_timer = Some(12);
        }
        qp.modify(&rtr)
            .map_err(|e| anyhow!("Failed to modify {which} to RTR: {e}"))?;
        let mut rts = ModifyAttrs {
            qp_state: Some(QpState::Rts),
            sq_psn: Some(psn),
            ..Default::default()
        };
        if rc {
            rts.timeout = Some(14);
            rts.retry_cnt = Some(7);
            rts.rnr_retry = Some(7);
            rts.max_rd_atomic = Some(1);
        }
        qp.modify(&rts)
            .map_err(|e| anyhow!("Failed to modify {which} to RTS: {e}"))
    }

    /// The whole run: receives, exchange, connect, loop, report.
    fn run(mut self, cfg: &PingpongConfig) -> Result<()> {
        let routs0 = self.post_recv(self.rx_depth);
        if routs0 < self.rx_depth {
            bail!("Couldn't post receive ({routs0})");
        }
        let mut routs = routs0;
        let mut poller = Poller::new(&self.cq, self.channel.as_ref(), cfg.timeouts.io)?;
        let local = self.local_dests();
        for d in &local {
            println!("{}", report::local_address_line(self.tool, d));
        }
        let remote = match &cfg.host {
            Some(host) => {
                let client = PpClient::connect(host, cfg.port, cfg.timeouts).map_err(oob_err)?;
                let remote = if self.tool == Tool::Srq {
                    client.exchange_srq(&local).map_err(oob_err)?
                } else {
                    vec![client.exchange(&local[0]).map_err(oob_err)?]
                };
                for d in &remote {
                    println!("{}", report::remote_address_line(d));
                }
                for (i, d) in remote.iter().enumerate() {
                    self.connect(i, d, &remote[0], cfg)
                        .context("Couldn't connect to remote QP")?;
                }
                remote
            }
            None => {
                let listener = PpServer::listen(cfg.port).map_err(oob_err)?;
                let mut server = PpServer::accept(listener, cfg.timeouts).map_err(oob_err)?;
                let remote = if self.tool == Tool::Srq {
                    server.read_remote_srq(self.qps.len()).map_err(oob_err)?
                } else {
                    vec![server.read_remote().map_err(oob_err)?]
                };
                for (i, d) in remote.iter().enumerate() {
                    self.connect(i, d, &remote[0], cfg)
                        .context("Couldn't connect to remote QP")?;
                }
                server.reply(&local).map_err(oob_err)?;
                for d in &remote {
                    println!("{}", report::remote_address_line(d));
                }
                remote
            }
        };

        let num_qp = self.qps.len();
        let is_client = cfg.is_client();
        let iters = cfg.iters as u64;
        let mut pending = vec![RECV_WRID; num_qp];
        if is_client {
            if cfg.chk {
                let off = if self.tool == Tool::Ud { GRH_LEN } else { 0 };
                for i in (0..self.size as usize).step_by(PAGE) {
                    self.mr.write(off + i, &[0]).map_err(|e| anyhow!("{e}"))?;
                }
            }
            for (i, p) in pending.iter_mut().enumerate() {
                self.post_send(i, remote[i].qpn)?;
                *p |= SEND_WRID;
            }
        }
        let start = SystemTime::now();
        let (mut rcnt, mut scnt) = (0u64, 0u64);
        let max = if self.tool == Tool::Srq {
            num_qp + self.rx_depth as usize
        } else {
            2
        };
        let mut wcs: Vec<Wc> = Vec::with_capacity(max);
        while rcnt < iters || scnt < iters {
            let ne = poller.wait(max, &mut wcs, "the peer's message")?;
            for wc in wcs.iter().take(ne) {
                if wc.status != WcStatus::Success {
                    bail!(
                        "Failed status {} ({}) for wr_id {}",
                        wc.status,
                        wc.status as u32,
                        wc.wr_id
                    );
                }
                let qp_ind = match self.qps.iter().position(|q| q.qpn() == wc.qp_num) {
                    Some(i) => i,
                    None => bail!("Couldn't find QPN {:06x}", wc.qp_num),
                };
                match (wc.wr_id, wc.opcode) {
                    (SEND_WRID, _) => scnt += 1,
                    (RECV_WRID, WcOpcode::Recv | WcOpcode::RecvRdmaWithImm) => {
                        routs -= 1;
                        if routs <= num_qp as u32 {
                            routs += self.post_recv(self.rx_depth - routs);
                            if routs < self.rx_depth {
                                bail!("Couldn't post receive ({routs})");
                            }
                        }
                        rcnt += 1;
                    }
                    (id, _) => bail!("Completion for unknown wr_id {id}"),
                }
                pending[qp_ind] &= !wc.wr_id;
                if scnt < iters && pending[qp_ind] == 0 {
                    self.post_send(qp_ind, remote[qp_ind].qpn)?;
                    pending[qp_ind] = RECV_WRID | SEND_WRID;
                }
            }
        }
        let end = SystemTime::now();
        let tv = |t: SystemTime| {
            let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
            (d.as_secs() as i64, d.subsec_micros() as i64)
        };
        let usec = report::elapsed_usec(tv(start), tv(end));
        for line in report::result_lines(self.size, cfg.iters, usec) {
            println!("{line}");
        }
        if !is_client && cfg.chk {
            let off = if self.tool == Tool::Ud { GRH_LEN } else { 0 };
            for i in (0..self.size as usize).step_by(PAGE) {
                let mut b = [0u8; 1];
                self.mr.read(off + i, &mut b).map_err(|e| anyhow!("{e}"))?;
                if b[0] != 0 {
                    println!("invalid data in page {}", i / PAGE);
                }
            }
        }
        // ibv_ack_cq_events(cq, num_cq_events): nothing to release here.
        let _ = poller.events;
        Ok(())
    }
}
