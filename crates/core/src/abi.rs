//! The payloads of the verbs' attributes: fixed little-endian structs, laid
//! out in `docs/uapi-verbs.md`. Each is extensible: a longer input from a
//! newer caller is accepted only if its unknown tail is zero
//! ([`crate::uapi::Bundle::struct_in`]); a shorter one is zero-extended;
//! outputs are truncated to the caller's capacity and zero-extended by the
//! caller.

use softverbs_transport::{Access, Mtu, QpAttrs, QpCounters, QpState, QpType};
use softverbs_wire::Gid;

use crate::caps::{AtomicCap, DeviceCaps, Operations, QpTypes};
use crate::driver::{AhAttr, PortAttr, PortState, QpInfo, QpInit, SrqAttr};
use crate::error::{Result, VerbsError};
use crate::qp_rules::{AltPath, ModifyAttrs, PathMigState};

/// A little-endian writer.
#[derive(Default)]
pub(crate) struct Wr(pub Vec<u8>);

impl Wr {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    /// A NUL-padded string field of `n` bytes (truncated if longer).
    pub fn str(&mut self, s: &str, n: usize) -> &mut Self {
        let b = s.as_bytes();
        let k = b.len().min(n);
        self.0.extend_from_slice(&b[..k]);
        self.0.resize(self.0.len() + n - k, 0);
        self
    }
    pub fn pad(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    pub fn done(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// A little-endian reader over a struct zero-extended to its known size.
pub(crate) struct Rd {
    b: Vec<u8>,
    at: usize,
}

impl Rd {
    /// Reads `b`, zero-extended to `size` (an older peer's shorter struct).
    pub fn new(b: &[u8], size: usize) -> Self {
        let mut v = b.to_vec();
        if v.len() < size {
            v.resize(size, 0);
        }
        Rd { b: v, at: 0 }
    }
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        if let Some(s) = self.b.get(self.at..self.at + N) {
            a.copy_from_slice(s);
        }
        self.at += N;
        a
    }
    pub fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    pub fn gid(&mut self) -> Gid {
        Gid(self.take::<16>())
    }
    pub fn str(&mut self, n: usize) -> String {
        let s = self.b.get(self.at..self.at + n).unwrap_or(&[]);
        self.at += n;
        let end = s.iter().position(|c| *c == 0).unwrap_or(s.len());
        String::from_utf8_lossy(&s[..end]).into_owned()
    }
    pub fn skip(&mut self, n: usize) {
        self.at += n;
    }
}

fn bad(field: &str, v: u64) -> VerbsError {
    VerbsError::invalid(format!("{field}: value {v} is not valid"))
}

/// `ibv_qp_type` value.
pub fn qp_type_to_u8(t: QpType) -> u8 {
    match t {
        QpType::Rc => 2,
        QpType::Uc => 3,
        QpType::Ud => 4,
    }
}

/// From an `ibv_qp_type` value.
pub fn qp_type_from(v: u64) -> Result<QpType> {
    Ok(match v {
        2 => QpType::Rc,
        3 => QpType::Uc,
        4 => QpType::Ud,
        _ => return Err(bad("qp_type", v)),
    })
}

/// `ibv_qp_state` value.
pub fn state_to_u8(s: QpState) -> u8 {
    s as u8
}

/// From an `ibv_qp_state` value.
pub fn state_from(field: &str, v: u8) -> Result<QpState> {
    crate::qp_rules::STATES
        .get(v as usize)
        .copied()
        .ok_or_else(|| bad(field, v.into()))
}

fn mtu_from(field: &str, v: u8) -> Result<Mtu> {
    Mtu::from_enum(v.into()).ok_or_else(|| bad(field, v.into()))
}

/// Size of the DEVICE caps output.
pub const CAPS_SIZE: usize = 160;

pub(crate) fn enc_caps(c: &DeviceCaps) -> Vec<u8> {
    let qt = &c.qp_types;
    let o = &c.ops;
    let qbits = qt.rc as u8 | (qt.uc as u8) << 1 | (qt.ud as u8) << 2 | (qt.srd as u8) << 3;
    let obits = [
        o.send,
        o.send_with_inv,
        o.rdma_write,
        o.rdma_read,
        o.atomics,
        o.memory_windows,
        o.srq,
        o.inline_data,
    ]
    .iter()
    .enumerate()
    .fold(0u16, |acc, (i, on)| acc | (u16::from(*on) << i));
    Wr::default()
        .u64(c.node_guid)
        .u64(c.sys_image_guid)
        .u64(c.max_mr_size)
        .u64(c.page_size_cap)
        .u32(c.vendor_id)
        .u32(c.vendor_part_id)
        .u32(c.hw_ver)
        .u32(c.max_qp)
        .u32(c.max_qp_wr)
        .u32(c.max_sge)
        .u32(c.max_sge_rd)
        .u32(c.max_cq)
        .u32(c.max_cqe)
        .u32(c.max_mr)
        .u32(c.max_pd)
        .u32(c.max_qp_rd_atom)
        .u32(c.max_qp_init_rd_atom)
        .u32(c.max_res_rd_atom)
        .u32(c.max_mw)
        .u32(c.max_ah)
        .u32(c.max_srq)
        .u32(c.max_srq_wr)
        .u32(c.max_srq_sge)
        .u32(c.max_inline_data)
        .u32(c.max_mtu)
        .u16(c.max_pkeys)
        .u8(c.local_ca_ack_delay)
        .u8(c.phys_port_cnt)
        .u8(match c.atomic_cap {
            AtomicCap::None => 0,
            AtomicCap::Hca => 1,
            AtomicCap::Glob => 2,
        })
        .u8(qbits)
        .u16(obits)
        .u32(0)
        .str(&c.fw_ver, 32)
        .done()
}

pub(crate) fn dec_caps(b: &[u8]) -> DeviceCaps {
    let mut r = Rd::new(b, CAPS_SIZE);
    let mut c = DeviceCaps {
        node_guid: r.u64(),
        sys_image_guid: r.u64(),
        max_mr_size: r.u64(),
        page_size_cap: r.u64(),
        vendor_id: r.u32(),
        vendor_part_id: r.u32(),
        hw_ver: r.u32(),
        max_qp: r.u32(),
        max_qp_wr: r.u32(),
        max_sge: r.u32(),
        max_sge_rd: r.u32(),
        max_cq: r.u32(),
        max_cqe: r.u32(),
        max_mr: r.u32(),
        max_pd: r.u32(),
        max_qp_rd_atom: r.u32(),
        max_qp_init_rd_atom: r.u32(),
        max_res_rd_atom: r.u32(),
        max_mw: r.u32(),
        max_ah: r.u32(),
        max_srq: r.u32(),
        max_srq_wr: r.u32(),
        max_srq_sge: r.u32(),
        max_inline_data: r.u32(),
        max_mtu: r.u32(),
        max_pkeys: r.u16(),
        local_ca_ack_delay: r.u8(),
        phys_port_cnt: r.u8(),
        atomic_cap: AtomicCap::None,
        qp_types: QpTypes::default(),
        ops: Operations::default(),
        fw_ver: String::new(),
    };
    c.atomic_cap = match r.u8() {
        1 => AtomicCap::Hca,
        2 => AtomicCap::Glob,
        _ => AtomicCap::None,
    };
    let q = r.u8();
    c.qp_types = QpTypes {
        rc: q & 1 != 0,
        uc: q & 2 != 0,
        ud: q & 4 != 0,
        srd: q & 8 != 0,
    };
    let o = r.u16();
    let bit = |i: u16| o & (1 << i) != 0;
    c.ops = Operations {
        send: bit(0),
        send_with_inv: bit(1),
        rdma_write: bit(2),
        rdma_read: bit(3),
        atomics: bit(4),
        memory_windows: bit(5),
        srq: bit(6),
        inline_data: bit(7),
    };
    r.skip(4);
    c.fw_ver = r.str(32);
    c
}

/// Size of the PORT output.
pub const PORT_SIZE: usize = 160;

pub(crate) fn enc_port(p: &PortAttr) -> Vec<u8> {
    Wr::default()
        .u8(p.port)
        .u8(match p.state {
            PortState::Down => 1,
            PortState::Active => 4,
        })
        .u16(0)
        .u32(p.max_mtu)
        .u32(p.active_mtu)
        .u32(p.gid_tbl_len)
        .str(p.link_layer, 16)
        .str(&p.netdev, 64)
        .str(&p.udp_addr, 64)
        .done()
}

pub(crate) fn dec_port(b: &[u8]) -> PortAttr {
    let mut r = Rd::new(b, PORT_SIZE);
    let port = r.u8();
    let state = if r.u8() == 4 {
        PortState::Active
    } else {
        PortState::Down
    };
    r.skip(2);
    let (max_mtu, active_mtu, gid_tbl_len) = (r.u32(), r.u32(), r.u32());
    let link_layer = if r.str(16) == "InfiniBand" {
        "InfiniBand"
    } else {
        "Ethernet"
    };
    PortAttr {
        port,
        state,
        max_mtu,
        active_mtu,
        gid_tbl_len,
        link_layer,
        netdev: r.str(64),
        udp_addr: r.str(64),
    }
}

/// Size of an address vector.
pub const AH_SIZE: usize = 32;

pub(crate) fn enc_ah(w: &mut Wr, a: &AhAttr) {
    w.bytes(&a.dgid.0)
        .u32(a.flow_label)
        .u8(a.sgid_index)
        .u8(a.hop_limit)
        .u8(a.traffic_class)
        .u8(a.sl)
        .u8(a.port)
        .pad(7);
}

pub(crate) fn dec_ah(r: &mut Rd) -> AhAttr {
    let dgid = r.gid();
    let flow_label = r.u32();
    let a = AhAttr {
        dgid,
        flow_label,
        sgid_index: r.u8(),
        hop_limit: r.u8(),
        traffic_class: r.u8(),
        sl: r.u8(),
        port: r.u8(),
    };
    r.skip(7);
    a
}

/// Size of SRQ attributes.
pub const SRQ_SIZE: usize = 16;

pub(crate) fn enc_srq(a: &SrqAttr) -> Vec<u8> {
    Wr::default()
        .u32(a.max_wr)
        .u32(a.max_sge)
        .u32(a.limit)
        .u32(0)
        .done()
}

pub(crate) fn dec_srq(b: &[u8]) -> SrqAttr {
    let mut r = Rd::new(b, SRQ_SIZE);
    SrqAttr {
        max_wr: r.u32(),
        max_sge: r.u32(),
        limit: r.u32(),
    }
}

/// Size of the QP create request.
pub const QP_CREATE_SIZE: usize = 32;

/// The scalar part of a QP create request (the CQs and SRQ travel as handles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QpCreateReq {
    pub qp_type: QpType,
    pub sq_sig_all: bool,
    pub max_send_wr: u32,
    pub max_recv_wr: u32,
    pub max_send_sge: u32,
    pub max_recv_sge: u32,
    pub max_inline_data: u32,
}

pub(crate) fn enc_qp_create(q: &QpCreateReq) -> Vec<u8> {
    Wr::default()
        .u32(qp_type_to_u8(q.qp_type).into())
        .u32(q.sq_sig_all as u32)
        .u32(q.max_send_wr)
        .u32(q.max_recv_wr)
        .u32(q.max_send_sge)
        .u32(q.max_recv_sge)
        .u32(q.max_inline_data)
        .u32(0)
        .done()
}

pub(crate) fn dec_qp_create(b: &[u8]) -> Result<QpCreateReq> {
    let mut r = Rd::new(b, QP_CREATE_SIZE);
    let qp_type = qp_type_from(r.u32().into())?;
    let flags = r.u32();
    if flags & !1 != 0 {
        return Err(VerbsError::invalid(format!(
            "qp create flags {flags:#x}: only bit 0 (sq_sig_all) is defined"
        )));
    }
    Ok(QpCreateReq {
        qp_type,
        sq_sig_all: flags & 1 != 0,
        max_send_wr: r.u32(),
        max_recv_wr: r.u32(),
        max_send_sge: r.u32(),
        max_recv_sge: r.u32(),
        max_inline_data: r.u32(),
    })
}

/// Size of a QP's creation attributes as granted.
pub const QP_INIT_SIZE: usize = 40;

pub(crate) fn enc_qp_init(w: &mut Wr, i: &QpInit) {
    w.u32(qp_type_to_u8(i.qp_type).into())
        .u32(i.sq_sig_all as u32 | (i.srq.is_some() as u32) << 1)
        .u32(i.send_cq)
        .u32(i.recv_cq)
        .u32(i.srq.unwrap_or(0))
        .u32(i.max_send_wr)
        .u32(i.max_recv_wr)
        .u32(i.max_send_sge)
        .u32(i.max_recv_sge)
        .u32(i.max_inline_data);
}

pub(crate) fn dec_qp_init(r: &mut Rd) -> Result<QpInit> {
    let qp_type = qp_type_from(r.u32().into())?;
    let flags = r.u32();
    let send_cq = r.u32();
    let recv_cq = r.u32();
    let srq = r.u32();
    Ok(QpInit {
        qp_type,
        sq_sig_all: flags & 1 != 0,
        send_cq,
        recv_cq,
        srq: (flags & 2 != 0).then_some(srq),
        max_send_wr: r.u32(),
        max_recv_wr: r.u32(),
        max_send_sge: r.u32(),
        max_recv_sge: r.u32(),
        max_inline_data: r.u32(),
    })
}

/// Size of the QP counters.
pub const COUNTERS_SIZE: usize = 128;

pub(crate) fn enc_counters(w: &mut Wr, c: &QpCounters) {
    for v in [
        c.sent_pkts,
        c.rcvd_pkts,
        c.duplicate_request,
        c.out_of_seq_request,
        c.rcvd_rnr_err,
        c.send_rnr_err,
        c.rcvd_seq_err,
        c.retransmits,
        c.retransmitted_pkts,
        c.timeouts,
        c.retry_exceeded_err,
        c.retry_rnr_exceeded_err,
        c.dropped_pkts,
        c.lost_msgs,
        c.acks_sent,
        c.completion_errors,
    ] {
        w.u64(v);
    }
}

pub(crate) fn dec_counters(r: &mut Rd) -> QpCounters {
    QpCounters {
        sent_pkts: r.u64(),
        rcvd_pkts: r.u64(),
        duplicate_request: r.u64(),
        out_of_seq_request: r.u64(),
        rcvd_rnr_err: r.u64(),
        send_rnr_err: r.u64(),
        rcvd_seq_err: r.u64(),
        retransmits: r.u64(),
        retransmitted_pkts: r.u64(),
        timeouts: r.u64(),
        retry_exceeded_err: r.u64(),
        retry_rnr_exceeded_err: r.u64(),
        dropped_pkts: r.u64(),
        lost_msgs: r.u64(),
        acks_sent: r.u64(),
        completion_errors: r.u64(),
    }
}

/// Size of the device counters ([`DeviceCounters`]): nine u64 device
/// counters, the QP counters' sum ([`COUNTERS_SIZE`]) and `cq_overruns`.
pub const DEVICE_COUNTERS_SIZE: usize = 9 * 8 + COUNTERS_SIZE + 8;

pub(crate) fn enc_device_counters(c: &crate::driver::DeviceCounters) -> Vec<u8> {
    let mut w = Wr::default();
    for v in [
        c.sent_pkts,
        c.rcvd_pkts,
        c.sent_bytes,
        c.rcvd_bytes,
        c.drop_bad_icrc,
        c.drop_unknown_qpn,
        c.drop_bad_opcode,
        c.drop_qkey_mismatch,
        c.drop_malformed,
    ] {
        w.u64(v);
    }
    enc_counters(&mut w, &c.qp);
    w.u64(c.cq_overruns);
    w.done()
}

pub(crate) fn dec_device_counters(b: &[u8]) -> crate::driver::DeviceCounters {
    let mut r = Rd::new(b, DEVICE_COUNTERS_SIZE);
    crate::driver::DeviceCounters {
        sent_pkts: r.u64(),
        rcvd_pkts: r.u64(),
        sent_bytes: r.u64(),
        rcvd_bytes: r.u64(),
        drop_bad_icrc: r.u64(),
        drop_unknown_qpn: r.u64(),
        drop_bad_opcode: r.u64(),
        drop_qkey_mismatch: r.u64(),
        drop_malformed: r.u64(),
        qp: dec_counters(&mut r),
        cq_overruns: r.u64(),
    }
}

/// Size of the QP query output.
pub const QP_INFO_SIZE: usize = 8 + 48 + QP_INIT_SIZE + COUNTERS_SIZE;

pub(crate) fn enc_qp_info(q: &QpInfo) -> Vec<u8> {
    let a = &q.attrs;
    let mut w = Wr::default();
    w.u32(q.qpn)
        .u8(state_to_u8(q.state))
        .u8(qp_type_to_u8(q.init.qp_type))
        .u16(0)
        .u8(a.path_mtu as u8)
        .u8(a.timeout)
        .u8(a.retry_cnt)
        .u8(a.rnr_retry)
        .u8(a.min_rnr_timer)
        .u8(a.max_rd_atomic)
        .u8(a.max_dest_rd_atomic)
        .u8(0)
        .u32(a.qkey)
        .u32(a.dest_qpn)
        .u32(a.rq_psn)
        .u32(a.sq_psn)
        .u32(a.access.0)
        .u16(a.pkey)
        .u16(0)
        .bytes(&a.dgid.0);
    enc_qp_init(&mut w, &q.init);
    enc_counters(&mut w, &q.counters);
    w.done()
}

pub(crate) fn dec_qp_info(b: &[u8]) -> Result<QpInfo> {
    let mut r = Rd::new(b, QP_INFO_SIZE);
    let qpn = r.u32();
    let state = state_from("qp_state", r.u8())?;
    r.skip(3);
    let path_mtu = mtu_from("path_mtu", r.u8())?;
    let mut attrs = QpAttrs {
        path_mtu,
        timeout: r.u8(),
        retry_cnt: r.u8(),
        rnr_retry: r.u8(),
        min_rnr_timer: r.u8(),
        max_rd_atomic: r.u8(),
        max_dest_rd_atomic: r.u8(),
        ..QpAttrs::default()
    };
    r.skip(1);
    attrs.qkey = r.u32();
    attrs.dest_qpn = r.u32();
    attrs.rq_psn = r.u32();
    attrs.sq_psn = r.u32();
    attrs.access = Access(r.u32());
    attrs.pkey = r.u16();
    r.skip(2);
    attrs.dgid = r.gid();
    let init = dec_qp_init(&mut r)?;
    let counters = dec_counters(&mut r);
    Ok(QpInfo {
        qpn,
        state,
        attrs,
        init,
        counters,
    })
}

/// Size of a QP modify request.
pub const MODIFY_SIZE: usize = 112;

pub(crate) fn enc_modify(m: &ModifyAttrs) -> Vec<u8> {
    let z = AhAttr {
        dgid: Gid::default(),
        sgid_index: 0,
        hop_limit: 0,
        traffic_class: 0,
        flow_label: 0,
        sl: 0,
        port: 0,
    };
    let alt = m.alt_path.unwrap_or(AltPath {
        ah_attr: z,
        pkey_index: 0,
        port_num: 0,
        timeout: 0,
    });
    let mut w = Wr::default();
    w.u32(m.mask())
        .u8(m.qp_state.map_or(0, state_to_u8))
        .u8(m.cur_qp_state.map_or(0, state_to_u8))
        .u8(m.path_mtu.map_or(0, |x| x as u8))
        .u8(m.path_mig_state.map_or(0, |x| x as u8))
        .u32(m.qkey.unwrap_or(0))
        .u32(m.rq_psn.unwrap_or(0))
        .u32(m.sq_psn.unwrap_or(0))
        .u32(m.dest_qp_num.unwrap_or(0))
        .u32(m.qp_access_flags.map_or(0, |a| a.0))
        .u16(m.pkey_index.unwrap_or(0))
        .u8(m.en_sqd_async_notify.unwrap_or(false) as u8)
        .u8(m.port_num.unwrap_or(0))
        .u8(m.timeout.unwrap_or(0))
        .u8(m.retry_cnt.unwrap_or(0))
        .u8(m.rnr_retry.unwrap_or(0))
        .u8(m.min_rnr_timer.unwrap_or(0))
        .u8(m.max_rd_atomic.unwrap_or(0))
        .u8(m.max_dest_rd_atomic.unwrap_or(0))
        .u16(0);
    enc_ah(&mut w, &m.ah_attr.unwrap_or(z));
    enc_ah(&mut w, &alt.ah_attr);
    w.u8(alt.port_num)
        .u8(alt.timeout)
        .u16(alt.pkey_index)
        .u32(0);
    w.done()
}

pub(crate) fn dec_modify(b: &[u8]) -> Result<ModifyAttrs> {
    use crate::qp_rules::mask::*;
    let mut r = Rd::new(b, MODIFY_SIZE);
    let m = r.u32();
    if m & !ALL != 0 {
        return Err(VerbsError::invalid(format!(
            "attribute mask bits {:#x} are not supported (known: {ALL:#x})",
            m & !ALL
        )));
    }
    let on = |bit: u32| m & bit != 0;
    let qp_state = r.u8();
    let cur = r.u8();
    let mtu = r.u8();
    let mig = r.u8();
    let qkey = r.u32();
    let rq_psn = r.u32();
    let sq_psn = r.u32();
    let dest = r.u32();
    let access = r.u32();
    let pkey_index = r.u16();
    let en_sqd = r.u8();
    let port = r.u8();
    let timeout = r.u8();
    let retry = r.u8();
    let rnr = r.u8();
    let min_rnr = r.u8();
    let rd = r.u8();
    let dest_rd = r.u8();
    r.skip(2);
    let av = dec_ah(&mut r);
    let alt_av = dec_ah(&mut r);
    let alt_port = r.u8();
    let alt_timeout = r.u8();
    let alt_pkey = r.u16();
    Ok(ModifyAttrs {
        qp_state: on(STATE)
            .then(|| state_from("qp_state", qp_state))
            .transpose()?,
        cur_qp_state: on(CUR_STATE)
            .then(|| state_from("cur_qp_state", cur))
            .transpose()?,
        en_sqd_async_notify: on(EN_SQD_ASYNC_NOTIFY).then_some(en_sqd != 0),
        qp_access_flags: on(ACCESS_FLAGS).then_some(Access(access)),
        pkey_index: on(PKEY_INDEX).then_some(pkey_index),
        port_num: on(PORT).then_some(port),
        qkey: on(QKEY).then_some(qkey),
        ah_attr: on(AV).then_some(av),
        path_mtu: on(PATH_MTU)
            .then(|| mtu_from("path_mtu", mtu))
            .transpose()?,
        timeout: on(TIMEOUT).then_some(timeout),
        retry_cnt: on(RETRY_CNT).then_some(retry),
        rnr_retry: on(RNR_RETRY).then_some(rnr),
        rq_psn: on(RQ_PSN).then_some(rq_psn),
        sq_psn: on(SQ_PSN).then_some(sq_psn),
        max_rd_atomic: on(MAX_QP_RD_ATOMIC).then_some(rd),
        max_dest_rd_atomic: on(MAX_DEST_RD_ATOMIC).then_some(dest_rd),
        min_rnr_timer: on(MIN_RNR_TIMER).then_some(min_rnr),
        dest_qp_num: on(DEST_QPN).then_some(dest),
        path_mig_state: on(PATH_MIG_STATE)
            .then(|| match mig {
                0 => Ok(PathMigState::Migrated),
                1 => Ok(PathMigState::Rearm),
                2 => Ok(PathMigState::Armed),
                v => Err(bad("path_mig_state", v.into())),
            })
            .transpose()?,
        alt_path: on(ALT_PATH).then_some(AltPath {
            ah_attr: alt_av,
            pkey_index: alt_pkey,
            port_num: alt_port,
            timeout: alt_timeout,
        }),
    })
}

/// Size of a window bind request.
pub const BIND_SIZE: usize = 24;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qp_rules::mask;

    #[test]
    fn device_counters_round_trip() {
        let mut c = crate::driver::DeviceCounters {
            sent_pkts: 1,
            rcvd_pkts: 2,
            sent_bytes: 3,
            rcvd_bytes: 4,
            drop_bad_icrc: 5,
            drop_unknown_qpn: 6,
            drop_bad_opcode: 7,
            drop_qkey_mismatch: 8,
            drop_malformed: 9,
            cq_overruns: 11,
            ..Default::default()
        };
        c.qp.sent_pkts = 10;
        c.qp.completion_errors = 12;
        let b = enc_device_counters(&c);
        assert_eq!(b.len(), DEVICE_COUNTERS_SIZE);
        assert_eq!(dec_device_counters(&b), c);
        // A shorter (older) reply reads as zeros beyond its end.
        assert_eq!(dec_device_counters(&b[..8]).sent_pkts, 1);
        assert_eq!(dec_device_counters(&b[..8]).rcvd_pkts, 0);
    }

    #[test]
    fn sizes_match() {
        let c = DeviceCaps::rxe_like(7);
        let b = enc_caps(&c);
        assert_eq!(b.len(), CAPS_SIZE);
        assert_eq!(dec_caps(&b), c);
        let p = PortAttr {
            port: 1,
            state: PortState::Active,
            max_mtu: 4096,
            active_mtu: 1024,
            gid_tbl_len: 2,
            link_layer: "Ethernet",
            netdev: "lo".into(),
            udp_addr: "127.0.0.1:4791".into(),
        };
        let b = enc_port(&p);
        assert_eq!(b.len(), PORT_SIZE);
        assert_eq!(dec_port(&b), p);
        let s = SrqAttr {
            max_wr: 5,
            max_sge: 2,
            limit: 1,
        };
        assert_eq!(dec_srq(&enc_srq(&s)), s);
        let q = QpCreateReq {
            qp_type: QpType::Ud,
            sq_sig_all: true,
            max_send_wr: 1,
            max_recv_wr: 2,
            max_send_sge: 3,
            max_recv_sge: 4,
            max_inline_data: 5,
        };
        let b = enc_qp_create(&q);
        assert_eq!(b.len(), QP_CREATE_SIZE);
        assert_eq!(dec_qp_create(&b).unwrap(), q);
    }

    #[test]
    fn modify_round_trips_every_mask() {
        for (bit, _) in mask::NAMES {
            let a = ModifyAttrs::with_mask(bit, Some(QpState::Rts));
            let b = enc_modify(&a);
            assert_eq!(b.len(), MODIFY_SIZE);
            assert_eq!(dec_modify(&b).unwrap(), a);
        }
        let all = ModifyAttrs::with_mask(mask::ALL, Some(QpState::Sqd));
        assert_eq!(dec_modify(&enc_modify(&all)).unwrap(), all);
        let mut b = enc_modify(&all);
        b[0..4].copy_from_slice(&(1u32 << 30).to_le_bytes());
        assert!(dec_modify(&b).is_err());
    }

    #[test]
    fn documented_offsets() {
        // docs/uapi-verbs.md: qp_attr.
        let mut a = ModifyAttrs::with_mask(mask::ALL, Some(QpState::Rtr));
        a.dest_qp_num = Some(0xabcdef);
        a.ah_attr.as_mut().unwrap().dgid = Gid([0xee; 16]);
        a.alt_path.as_mut().unwrap().pkey_index = 0x1234;
        let b = enc_modify(&a);
        assert_eq!(
            u32::from_le_bytes(b[0..4].try_into().unwrap()),
            mask::ALL & !mask::CUR_STATE
        );
        assert_eq!(b[4], 2);
        assert_eq!(&b[20..23], &[0xef, 0xcd, 0xab]);
        assert_eq!(b[31], 1);
        assert_eq!(&b[40..56], &[0xee; 16]);
        assert_eq!(b[64], 1); // ah_attr.port_num
        assert_eq!(&b[106..108], &[0x34, 0x12]);
        // device_attr: max_mtu at 112, phys_port_cnt at 119, fw_ver at 128.
        let c = enc_caps(&DeviceCaps::rxe_like(1));
        assert_eq!(u32::from_le_bytes(c[112..116].try_into().unwrap()), 4096);
        assert_eq!(c[119], 1);
        assert_eq!(c[121], 0b0111);
        assert_eq!(&c[128..133], b"0.0.0");
    }

    #[test]
    fn qp_info_round_trips() {
        let info = QpInfo {
            qpn: 0x11,
            state: QpState::Rts,
            attrs: QpAttrs {
                dgid: Gid([9; 16]),
                sq_psn: 77,
                access: Access::REMOTE_READ,
                ..QpAttrs::default()
            },
            init: QpInit {
                qp_type: QpType::Rc,
                send_cq: 1,
                recv_cq: 2,
                srq: Some(3),
                max_send_wr: 4,
                max_recv_wr: 5,
                max_send_sge: 6,
                max_recv_sge: 7,
                max_inline_data: 8,
                sq_sig_all: true,
            },
            counters: QpCounters {
                sent_pkts: 1,
                completion_errors: 16,
                ..QpCounters::default()
            },
        };
        let b = enc_qp_info(&info);
        assert_eq!(b.len(), QP_INFO_SIZE);
        assert_eq!(dec_qp_info(&b).unwrap(), info);
        // An older callee's shorter output reads as zeros.
        assert_eq!(
            dec_qp_info(&b[..QP_INFO_SIZE - COUNTERS_SIZE])
                .unwrap()
                .counters,
            QpCounters::default()
        );
    }
}
