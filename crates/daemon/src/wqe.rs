//! The fixed layouts of ring entries: send WQEs, receive WQEs and CQEs
//! (`docs/daemon-rings.md`). Decoding never panics and never trusts the
//! bytes: every count and opcode is checked against the queue's limits.

use softverbs_core::driver::Wc;
use softverbs_core::events::AsyncEvent;
use softverbs_transport::{
    Access, Payload, RecvWr, SendFlags, SendOp, SendWr, Sge, UdDest, WcOpcode, WcQueue, WcStatus,
};
use softverbs_wire::Gid;

/// Bytes before the SGEs / inline data of a send WQE.
pub const SEND_HDR: usize = 80;
/// Bytes before the SGEs of a receive WQE.
pub const RECV_HDR: usize = 16;
/// Bytes of one SGE.
pub const SGE_SIZE: usize = 16;
/// Bytes of one CQE.
pub const CQE_SIZE: usize = 64;

/// Slot size of a send ring for these limits.
pub fn send_stride(max_sge: u32, max_inline: u32) -> u32 {
    let body = (max_sge as usize * SGE_SIZE).max(max_inline as usize);
    (SEND_HDR + body).next_multiple_of(64) as u32
}

/// Slot size of a receive (or SRQ) ring.
pub fn recv_stride(max_sge: u32) -> u32 {
    (RECV_HDR + max_sge as usize * SGE_SIZE).next_multiple_of(64) as u32
}

/// A malformed entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad WQE: {0}")]
pub struct BadWqe(pub String);

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default())
}

const F_SIGNALED: u8 = 1;
const F_SOLICITED: u8 = 2;
const F_FENCE: u8 = 4;
const F_INLINE: u8 = 8;
const F_UD: u8 = 16;

fn put_sges(b: &mut [u8], at: usize, sgl: &[Sge]) {
    for (i, s) in sgl.iter().enumerate() {
        let o = at + i * SGE_SIZE;
        b[o..o + 8].copy_from_slice(&s.addr.to_le_bytes());
        b[o + 8..o + 12].copy_from_slice(&s.length.to_le_bytes());
        b[o + 12..o + 16].copy_from_slice(&s.lkey.to_le_bytes());
    }
}

fn get_sges(b: &[u8], at: usize, n: usize) -> Vec<Sge> {
    (0..n)
        .map(|i| {
            let o = at + i * SGE_SIZE;
            Sge {
                addr: u64_at(b, o),
                length: u32_at(b, o + 8),
                lkey: u32_at(b, o + 12),
            }
        })
        .collect()
}

/// What the daemon does with a send WQE: post it to the send queue, or
/// post the bind of a **type 1** window (`Mw::post_bind`, rxe's
/// `ibv_bind_mw`) — the same layout as `BIND_MW` under opcode 10, handed
/// to `Driver::post_bind_mw`, which refuses anything but a type 1 window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    /// `Driver::post_send`.
    Send,
    /// `Driver::post_bind_mw` (opcode 10; `wr.op` is a `BindMw`).
    Type1Bind,
}

/// Opcode of a type 1 window bind ([`SendKind::Type1Bind`]).
const OP_BIND_MW_TYPE1: u8 = 10;

/// Encodes a send WR into a slot of `stride` bytes (zeroed first).
pub fn encode_send(wr: &SendWr, slot: &mut [u8]) -> Result<(), BadWqe> {
    encode_send_kind(wr, SendKind::Send, slot)
}

/// Encodes a send WR of `kind` into a slot of `stride` bytes (zeroed
/// first). A [`SendKind::Type1Bind`] must be a `BindMw`.
pub fn encode_send_kind(wr: &SendWr, kind: SendKind, slot: &mut [u8]) -> Result<(), BadWqe> {
    if kind == SendKind::Type1Bind && !matches!(wr.op, SendOp::BindMw { .. }) {
        return Err(BadWqe(format!(
            "a type 1 window bind must be a BIND_MW, not {:?}",
            wr.op
        )));
    }
    if slot.len() < SEND_HDR {
        return Err(BadWqe(format!(
            "a send slot of {} bytes is shorter than the {SEND_HDR}-byte header",
            slot.len()
        )));
    }
    slot.fill(0);
    slot[0..8].copy_from_slice(&wr.wr_id.to_le_bytes());
    let (op, imm, raddr, rkey, a, b2) = match wr.op {
        SendOp::Send => (0u8, 0, 0, 0, 0, 0),
        SendOp::SendWithImm { imm } => (1, imm, 0, 0, 0, 0),
        SendOp::SendWithInv { rkey } => (2, rkey, 0, 0, 0, 0),
        SendOp::Write { remote_addr, rkey } => (3, 0, remote_addr, rkey, 0, 0),
        SendOp::WriteWithImm {
            remote_addr,
            rkey,
            imm,
        } => (4, imm, remote_addr, rkey, 0, 0),
        SendOp::Read { remote_addr, rkey } => (5, 0, remote_addr, rkey, 0, 0),
        SendOp::CompareSwap {
            remote_addr,
            rkey,
            compare,
            swap,
        } => (6, 0, remote_addr, rkey, compare, swap),
        SendOp::FetchAdd {
            remote_addr,
            rkey,
            add,
        } => (7, 0, remote_addr, rkey, add, 0),
        SendOp::LocalInv { rkey } => (8, rkey, 0, 0, 0, 0),
        // BIND_MW: the window's rkey, the new rkey (bit 63 of the second
        // word says it is given), the range, the region's lkey and the
        // rights (bits 32..62).
        SendOp::BindMw {
            mw_rkey,
            new_rkey,
            mr_lkey,
            addr,
            len,
            access,
        } => (
            9,
            new_rkey.unwrap_or(0),
            addr,
            mw_rkey,
            len,
            u64::from(mr_lkey)
                | u64::from(access.0 & 0x7fff_ffff) << 32
                | u64::from(new_rkey.is_some()) << 63,
        ),
    };
    let mut flags = 0u8;
    if wr.flags.signaled {
        flags |= F_SIGNALED;
    }
    if wr.flags.solicited {
        flags |= F_SOLICITED;
    }
    if wr.flags.fence {
        flags |= F_FENCE;
    }
    slot[8] = if kind == SendKind::Type1Bind {
        OP_BIND_MW_TYPE1
    } else {
        op
    };
    slot[12..16].copy_from_slice(&imm.to_le_bytes());
    slot[16..24].copy_from_slice(&raddr.to_le_bytes());
    slot[24..28].copy_from_slice(&rkey.to_le_bytes());
    slot[32..40].copy_from_slice(&a.to_le_bytes());
    slot[40..48].copy_from_slice(&b2.to_le_bytes());
    if let Some(ud) = &wr.ud {
        flags |= F_UD;
        slot[48..64].copy_from_slice(&ud.dgid.0);
        slot[64..68].copy_from_slice(&ud.remote_qpn.to_le_bytes());
        slot[68..72].copy_from_slice(&ud.remote_qkey.to_le_bytes());
    }
    let room = slot.len() - SEND_HDR;
    match &wr.payload {
        Payload::Sgl(sgl) => {
            if sgl.len() * SGE_SIZE > room || sgl.len() > u16::MAX as usize {
                return Err(BadWqe(format!("{} SGEs do not fit the slot", sgl.len())));
            }
            slot[10..12].copy_from_slice(&(sgl.len() as u16).to_le_bytes());
            put_sges(slot, SEND_HDR, sgl);
        }
        Payload::Inline(d) => {
            if d.len() > room || d.len() > u16::MAX as usize {
                return Err(BadWqe(format!(
                    "{} inline bytes do not fit the slot",
                    d.len()
                )));
            }
            flags |= F_INLINE;
            slot[10..12].copy_from_slice(&(d.len() as u16).to_le_bytes());
            slot[SEND_HDR..SEND_HDR + d.len()].copy_from_slice(d);
        }
    }
    slot[9] = flags;
    Ok(())
}

/// Decodes a send slot, checking it against the QP's limits (any kind:
/// see [`decode_send_kind`]).
pub fn decode_send(slot: &[u8], max_sge: u32, max_inline: u32) -> Result<SendWr, BadWqe> {
    decode_send_kind(slot, max_sge, max_inline).map(|(wr, _)| wr)
}

/// Decodes a send slot and says what to do with it, checking it against
/// the QP's limits.
pub fn decode_send_kind(
    slot: &[u8],
    max_sge: u32,
    max_inline: u32,
) -> Result<(SendWr, SendKind), BadWqe> {
    if slot.len() < SEND_HDR {
        return Err(BadWqe("slot shorter than the header".into()));
    }
    let wr_id = u64_at(slot, 0);
    let flags = slot[9];
    if flags & !(F_SIGNALED | F_SOLICITED | F_FENCE | F_INLINE | F_UD) != 0 {
        return Err(BadWqe(format!("unknown flags {flags:#x}")));
    }
    let n = u16::from_le_bytes([slot[10], slot[11]]) as usize;
    let imm = u32_at(slot, 12);
    let (remote_addr, rkey) = (u64_at(slot, 16), u32_at(slot, 24));
    let (a, b) = (u64_at(slot, 32), u64_at(slot, 40));
    let op = match slot[8] {
        0 => SendOp::Send,
        1 => SendOp::SendWithImm { imm },
        2 => SendOp::SendWithInv { rkey: imm },
        3 => SendOp::Write { remote_addr, rkey },
        4 => SendOp::WriteWithImm {
            remote_addr,
            rkey,
            imm,
        },
        5 => SendOp::Read { remote_addr, rkey },
        6 => SendOp::CompareSwap {
            remote_addr,
            rkey,
            compare: a,
            swap: b,
        },
        7 => SendOp::FetchAdd {
            remote_addr,
            rkey,
            add: a,
        },
        8 => SendOp::LocalInv { rkey: imm },
        9 | OP_BIND_MW_TYPE1 => SendOp::BindMw {
            mw_rkey: rkey,
            new_rkey: (b >> 63 != 0).then_some(imm),
            mr_lkey: b as u32,
            addr: remote_addr,
            len: a,
            access: Access(((b >> 32) & 0x7fff_ffff) as u32),
        },
        o => return Err(BadWqe(format!("unknown opcode {o}"))),
    };
    let room = slot.len() - SEND_HDR;
    let payload = if flags & F_INLINE != 0 {
        if n > max_inline as usize || n > room {
            return Err(BadWqe(format!(
                "{n} inline bytes exceed max_inline_data {max_inline}"
            )));
        }
        Payload::Inline(slot[SEND_HDR..SEND_HDR + n].to_vec())
    } else {
        if n > max_sge as usize || n * SGE_SIZE > room {
            return Err(BadWqe(format!("{n} SGEs exceed max_send_sge {max_sge}")));
        }
        Payload::Sgl(get_sges(slot, SEND_HDR, n))
    };
    let ud = (flags & F_UD != 0).then(|| {
        let mut g = [0u8; 16];
        g.copy_from_slice(&slot[48..64]);
        UdDest {
            dgid: Gid(g),
            remote_qpn: u32_at(slot, 64),
            remote_qkey: u32_at(slot, 68),
        }
    });
    let kind = if slot[8] == OP_BIND_MW_TYPE1 {
        SendKind::Type1Bind
    } else {
        SendKind::Send
    };
    Ok((
        SendWr {
            wr_id,
            op,
            payload,
            flags: SendFlags {
                signaled: flags & F_SIGNALED != 0,
                solicited: flags & F_SOLICITED != 0,
                fence: flags & F_FENCE != 0,
            },
            ud,
        },
        kind,
    ))
}

/// Encodes a receive WR.
pub fn encode_recv(wr: &RecvWr, slot: &mut [u8]) -> Result<(), BadWqe> {
    slot.fill(0);
    if wr.sgl.len() * SGE_SIZE > slot.len() - RECV_HDR {
        return Err(BadWqe(format!("{} SGEs do not fit the slot", wr.sgl.len())));
    }
    slot[0..8].copy_from_slice(&wr.wr_id.to_le_bytes());
    slot[8..12].copy_from_slice(&(wr.sgl.len() as u32).to_le_bytes());
    put_sges(slot, RECV_HDR, &wr.sgl);
    Ok(())
}

/// Decodes a receive slot, checking the SGE count.
pub fn decode_recv(slot: &[u8], max_sge: u32) -> Result<RecvWr, BadWqe> {
    if slot.len() < RECV_HDR {
        return Err(BadWqe("slot shorter than the header".into()));
    }
    let n = u32_at(slot, 8) as usize;
    if n > max_sge as usize || n * SGE_SIZE > slot.len() - RECV_HDR {
        return Err(BadWqe(format!("{n} SGEs exceed max_recv_sge {max_sge}")));
    }
    Ok(RecvWr {
        wr_id: u64_at(slot, 0),
        sgl: get_sges(slot, RECV_HDR, n),
    })
}

fn status_code(s: WcStatus) -> u8 {
    s as u8
}

const STATUSES: [WcStatus; 16] = [
    WcStatus::Success,
    WcStatus::LocLenErr,
    WcStatus::LocQpOpErr,
    WcStatus::LocProtErr,
    WcStatus::WrFlushErr,
    WcStatus::MwBindErr,
    WcStatus::BadRespErr,
    WcStatus::LocAccessErr,
    WcStatus::RemInvReqErr,
    WcStatus::RemAccessErr,
    WcStatus::RemOpErr,
    WcStatus::RetryExcErr,
    WcStatus::RnrRetryExcErr,
    WcStatus::FatalErr,
    WcStatus::RespTimeoutErr,
    WcStatus::GeneralErr,
];

const OPCODES: [WcOpcode; 9] = [
    WcOpcode::Send,
    WcOpcode::RdmaWrite,
    WcOpcode::RdmaRead,
    WcOpcode::CompSwap,
    WcOpcode::FetchAdd,
    WcOpcode::Recv,
    WcOpcode::RecvRdmaWithImm,
    WcOpcode::LocalInv,
    WcOpcode::BindMw,
];

/// Encodes a completion into a 64-byte CQE.
pub fn encode_cqe(wc: &Wc) -> [u8; CQE_SIZE] {
    let mut b = [0u8; CQE_SIZE];
    b[0..8].copy_from_slice(&wc.wr_id.to_le_bytes());
    b[8] = status_code(wc.status);
    b[9] = OPCODES.iter().position(|o| *o == wc.opcode).unwrap_or(0) as u8;
    b[10] = u8::from(wc.queue == WcQueue::Recv);
    let mut f = 0u8;
    if wc.imm.is_some() {
        f |= 1;
    }
    if wc.invalidated_rkey.is_some() {
        f |= 2;
    }
    if wc.grh {
        f |= 4;
    }
    if wc.solicited {
        f |= 8;
    }
    if wc.unsolicited {
        f |= 16;
    }
    b[11] = f;
    b[12..16].copy_from_slice(&wc.qp_num.to_le_bytes());
    b[16..20].copy_from_slice(&wc.byte_len.to_le_bytes());
    b[20..24].copy_from_slice(&wc.imm.unwrap_or(0).to_le_bytes());
    b[24..28].copy_from_slice(&wc.invalidated_rkey.unwrap_or(0).to_le_bytes());
    b[28..32].copy_from_slice(&wc.src_qp.to_le_bytes());
    b[32..36].copy_from_slice(&wc.vendor_err.to_le_bytes());
    b
}

/// Decodes a CQE (the client trusts the daemon, but still never panics).
pub fn decode_cqe(b: &[u8]) -> Result<Wc, BadWqe> {
    if b.len() < CQE_SIZE {
        return Err(BadWqe("short CQE".into()));
    }
    let status = STATUSES
        .iter()
        .find(|s| status_code(**s) == b[8])
        .copied()
        .ok_or_else(|| BadWqe(format!("unknown status {}", b[8])))?;
    let opcode = *OPCODES
        .get(b[9] as usize)
        .ok_or_else(|| BadWqe(format!("unknown opcode {}", b[9])))?;
    let f = b[11];
    Ok(Wc {
        wr_id: u64_at(b, 0),
        status,
        opcode,
        queue: if b[10] != 0 {
            WcQueue::Recv
        } else {
            WcQueue::Send
        },
        qp_num: u32_at(b, 12),
        byte_len: u32_at(b, 16),
        imm: (f & 1 != 0).then(|| u32_at(b, 20)),
        invalidated_rkey: (f & 2 != 0).then(|| u32_at(b, 24)),
        src_qp: u32_at(b, 28),
        grh: f & 4 != 0,
        solicited: f & 8 != 0,
        vendor_err: u32_at(b, 32),
        unsolicited: f & 16 != 0,
    })
}

/// Bytes of one async-event entry (the events ring).
pub const EVENT_SIZE: usize = 16;

/// Encodes an asynchronous event: `u32 type, u32 element` (QPN, CQ, SRQ
/// or port), zero to [`EVENT_SIZE`]. Types: 1 QP fatal, 2 communication
/// established, 3 SQ drained, 4 last WQE reached, 5 CQ overrun, 6 SRQ
/// limit reached, 7 port active, 8 port down, 9 device fatal.
pub fn encode_event(e: &AsyncEvent) -> [u8; EVENT_SIZE] {
    let (t, v): (u32, u32) = match *e {
        AsyncEvent::QpFatal { qpn } => (1, qpn),
        AsyncEvent::CommEstablished { qpn } => (2, qpn),
        AsyncEvent::SqDrained { qpn } => (3, qpn),
        AsyncEvent::LastWqeReached { qpn } => (4, qpn),
        AsyncEvent::CqOverrun { cq } => (5, cq),
        AsyncEvent::SrqLimitReached { srq } => (6, srq),
        AsyncEvent::PortActive { port } => (7, port.into()),
        AsyncEvent::PortDown { port } => (8, port.into()),
        AsyncEvent::DeviceFatal => (9, 0),
    };
    let mut b = [0u8; EVENT_SIZE];
    b[0..4].copy_from_slice(&t.to_le_bytes());
    b[4..8].copy_from_slice(&v.to_le_bytes());
    b
}

/// Decodes an async-event entry.
pub fn decode_event(b: &[u8]) -> Result<AsyncEvent, BadWqe> {
    if b.len() < 8 {
        return Err(BadWqe("short event".into()));
    }
    let t = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let v = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let port = || u8::try_from(v).map_err(|_| BadWqe(format!("port {v}")));
    Ok(match t {
        1 => AsyncEvent::QpFatal { qpn: v },
        2 => AsyncEvent::CommEstablished { qpn: v },
        3 => AsyncEvent::SqDrained { qpn: v },
        4 => AsyncEvent::LastWqeReached { qpn: v },
        5 => AsyncEvent::CqOverrun { cq: v },
        6 => AsyncEvent::SrqLimitReached { srq: v },
        7 => AsyncEvent::PortActive { port: port()? },
        8 => AsyncEvent::PortDown { port: port()? },
        9 => AsyncEvent::DeviceFatal,
        t => return Err(BadWqe(format!("unknown event type {t}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_garbage_is_refused() {
        for e in [
            AsyncEvent::QpFatal { qpn: 17 },
            AsyncEvent::CommEstablished { qpn: 1 },
            AsyncEvent::SqDrained { qpn: 2 },
            AsyncEvent::LastWqeReached { qpn: 3 },
            AsyncEvent::CqOverrun { cq: 4 },
            AsyncEvent::SrqLimitReached { srq: 5 },
            AsyncEvent::PortActive { port: 1 },
            AsyncEvent::PortDown { port: 1 },
            AsyncEvent::DeviceFatal,
        ] {
            assert_eq!(decode_event(&encode_event(&e)).unwrap(), e);
        }
        assert!(decode_event(&[0; 16]).is_err());
        assert!(decode_event(&[7, 0, 0, 0, 0, 1, 0, 0]).is_err());
        assert!(decode_event(&[1, 0, 0]).is_err());
    }

    #[test]
    fn send_round_trips_and_limits_hold() {
        let s = send_stride(2, 64) as usize;
        let mut slot = vec![0u8; s];
        let wr = SendWr::write(
            7,
            Sge {
                addr: 0x1000,
                length: 11,
                lkey: 3,
            },
            0x2000,
            9,
        )
        .signaled();
        encode_send(&wr, &mut slot).unwrap();
        assert_eq!(decode_send(&slot, 2, 64).unwrap(), wr);
        let inl = SendWr::send_inline(8, b"hi");
        encode_send(&inl, &mut slot).unwrap();
        assert_eq!(decode_send(&slot, 2, 64).unwrap(), inl);
        assert!(decode_send(&slot, 2, 1).is_err());
        slot[8] = 99;
        assert!(decode_send(&slot, 2, 64).is_err());
        for wr in [
            SendWr::local_inv(9, 0x1234),
            SendWr::bind_mw_req(
                10,
                softverbs_transport::MwBindReq {
                    mw_rkey: 0x500,
                    new_rkey: Some(0x5ff),
                    mr_lkey: 0x300,
                    addr: 0x7000,
                    len: 4096,
                    access: Access::REMOTE_WRITE | Access::REMOTE_READ,
                },
            )
            .signaled(),
            SendWr::bind_mw_req(
                11,
                softverbs_transport::MwBindReq {
                    mw_rkey: 0x500,
                    new_rkey: None,
                    mr_lkey: u32::MAX,
                    addr: 1,
                    len: 2,
                    access: Access::REMOTE_ATOMIC,
                },
            ),
        ] {
            encode_send(&wr, &mut slot).unwrap();
            assert_eq!(decode_send(&slot, 2, 64).unwrap(), wr);
        }
        // A type 1 bind: opcode 10, the BIND_MW layout, its kind kept.
        let bind = SendWr::bind_mw_req(
            12,
            softverbs_transport::MwBindReq {
                mw_rkey: 0x600,
                new_rkey: Some(0x601),
                mr_lkey: 0x300,
                addr: 0x7000,
                len: 64,
                access: Access::REMOTE_READ,
            },
        )
        .signaled();
        encode_send_kind(&bind, SendKind::Type1Bind, &mut slot).unwrap();
        assert_eq!(slot[8], 10);
        assert_eq!(
            decode_send_kind(&slot, 2, 64).unwrap(),
            (bind.clone(), SendKind::Type1Bind)
        );
        encode_send(&bind, &mut slot).unwrap();
        assert_eq!(
            decode_send_kind(&slot, 2, 64).unwrap(),
            (bind, SendKind::Send)
        );
        // Only a bind can be a type 1 bind.
        assert!(encode_send_kind(&inl, SendKind::Type1Bind, &mut slot).is_err());
        // SRD's operations with UD-style addressing (AH's GID, remote QPN,
        // Q_Key) next to the remote address and rkey.
        let to = UdDest {
            dgid: Gid([7; 16]),
            remote_qpn: 0x42,
            remote_qkey: 0x1111_1111,
        };
        let sge = Sge {
            addr: 0x1000,
            length: 100,
            lkey: 3,
        };
        for wr in [
            SendWr::send(1, sge),
            SendWr::write(2, sge, 0x9000, 5),
            SendWr::write_with_imm(3, sge, 0x9000, 5, 0xabcd),
            SendWr::read(4, sge, 0x9000, 5),
        ] {
            let wr = wr.to(to).signaled();
            encode_send(&wr, &mut slot).unwrap();
            assert_eq!(decode_send(&slot, 2, 64).unwrap(), wr);
        }
        let r = RecvWr {
            wr_id: 5,
            sgl: vec![Sge {
                addr: 1,
                length: 2,
                lkey: 3,
            }],
        };
        let mut rs = vec![0u8; recv_stride(1) as usize];
        encode_recv(&r, &mut rs).unwrap();
        assert_eq!(decode_recv(&rs, 1).unwrap(), r);
        assert!(decode_recv(&rs, 0).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            let mut slot = vec![0u8; 128];
            for b in slot.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let _ = decode_send(&slot, 4, 48);
            let _ = decode_recv(&slot, 4);
            let _ = decode_cqe(&slot);
        }
    }
}
