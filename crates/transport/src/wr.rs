//! Work requests as the engine receives them (already validated by the core:
//! opcode allowed for the QP type, SGE count within limits).

use softverbs_wire::Gid;

use crate::memory::{Access, MwBindReq};

/// A scatter/gather element: `length` bytes at `addr` of the region `lkey`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sge {
    /// Virtual address in the region's address space.
    pub addr: u64,
    /// Length in bytes.
    pub length: u32,
    /// Local key of the region.
    pub lkey: u32,
}

/// Total length of a scatter/gather list.
pub fn sgl_len(sgl: &[Sge]) -> u64 {
    sgl.iter().map(|s| u64::from(s.length)).sum()
}

/// The operation of a send work request (`ibv_wr_opcode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOp {
    /// SEND.
    Send,
    /// SEND with immediate data.
    SendWithImm {
        /// Immediate data, carried as-is (network order on the wire).
        imm: u32,
    },
    /// SEND with invalidate (RC only): the responder invalidates `rkey`.
    SendWithInv {
        /// The remote key to invalidate.
        rkey: u32,
    },
    /// RDMA WRITE.
    Write {
        /// Remote virtual address.
        remote_addr: u64,
        /// Remote key.
        rkey: u32,
    },
    /// RDMA WRITE with immediate: also consumes a receive WQE at the target.
    WriteWithImm {
        /// Remote virtual address.
        remote_addr: u64,
        /// Remote key.
        rkey: u32,
        /// Immediate data.
        imm: u32,
    },
    /// RDMA READ (RC only) into the local scatter list.
    Read {
        /// Remote virtual address.
        remote_addr: u64,
        /// Remote key.
        rkey: u32,
    },
    /// 64-bit compare and swap (RC only); the original value lands in the
    /// local 8-byte buffer.
    CompareSwap {
        /// Remote address, 8-byte aligned.
        remote_addr: u64,
        /// Remote key.
        rkey: u32,
        /// Expected value.
        compare: u64,
        /// New value.
        swap: u64,
    },
    /// 64-bit fetch and add (RC only).
    FetchAdd {
        /// Remote address, 8-byte aligned.
        remote_addr: u64,
        /// Remote key.
        rkey: u32,
        /// Addend.
        add: u64,
    },
    /// LOCAL_INV (`IBV_WR_LOCAL_INV`, RC and UC): invalidate the region or
    /// type 2 window `rkey` of the QP's protection domain. A local
    /// operation: it sends nothing and, as rxe's local invalidate fence
    /// (IBTA 10.6.5.1), runs only once every earlier work request of the
    /// send queue has completed. Failure completes it with `LOC_QP_OP_ERR`.
    LocalInv {
        /// The key to invalidate.
        rkey: u32,
    },
    /// BIND_MW (`IBV_WR_BIND_MW`, RC and UC): bind the type 2 window
    /// `mw_rkey` to `len` bytes at `addr` of the region `mr_lkey`, for
    /// remote access through this QP only. A local operation: it runs when
    /// the requester reaches it (after earlier READs and atomics with
    /// [`SendFlags::fence`]) and completes in order; a bind the region does
    /// not allow completes with `MW_BIND_ERR`.
    BindMw {
        /// The window (its current rkey, or the rkey `alloc_mw` gave).
        mw_rkey: u32,
        /// The rkey the window takes: its low 8 bits replace the window's
        /// key byte (`ibv_inc_rkey`); `None`: the device picks the next one.
        new_rkey: Option<u32>,
        /// The region.
        mr_lkey: u32,
        /// Start address inside the region.
        addr: u64,
        /// Length in bytes (at least 1).
        len: u64,
        /// Remote rights granted through the window (`REMOTE_READ`,
        /// `REMOTE_WRITE`, `REMOTE_ATOMIC`).
        access: Access,
    },
}

impl SendOp {
    /// True for operations that read remote memory (READ and atomics): they
    /// count against `max_rd_atomic` and are stopped by a fence.
    pub fn is_read_or_atomic(&self) -> bool {
        matches!(
            self,
            SendOp::Read { .. } | SendOp::CompareSwap { .. } | SendOp::FetchAdd { .. }
        )
    }

    /// True for the atomics.
    pub fn is_atomic(&self) -> bool {
        matches!(self, SendOp::CompareSwap { .. } | SendOp::FetchAdd { .. })
    }

    /// True for the local operations (LOCAL_INV, BIND_MW): executed by the
    /// requester when it reaches them, without a packet.
    pub fn is_local(&self) -> bool {
        matches!(self, SendOp::LocalInv { .. } | SendOp::BindMw { .. })
    }

    /// The bind a BIND_MW asks for.
    pub fn mw_bind(&self) -> Option<MwBindReq> {
        match *self {
            SendOp::BindMw {
                mw_rkey,
                new_rkey,
                mr_lkey,
                addr,
                len,
                access,
            } => Some(MwBindReq {
                mw_rkey,
                new_rkey,
                mr_lkey,
                addr,
                len,
                access,
            }),
            _ => None,
        }
    }
}

/// The rkey that follows `rkey`: the same index, the key byte plus one
/// (`ibv_inc_rkey`).
pub fn inc_rkey(rkey: u32) -> u32 {
    (rkey & !0xff) | (rkey.wrapping_add(1) & 0xff)
}

/// `ibv_send_flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendFlags {
    /// Generate a completion even on a QP with `sq_sig_all == false`.
    pub signaled: bool,
    /// Set the solicited-event bit on the last packet.
    pub solicited: bool,
    /// Wait for earlier READs and atomics to complete first.
    pub fence: bool,
}

/// Where a UD datagram goes: the address handle plus remote QPN and Q_Key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdDest {
    /// The destination's GID (for RoCEv2 an IP address).
    pub dgid: Gid,
    /// Destination QP number.
    pub remote_qpn: u32,
    /// Q_Key; if its high bit is set the QP's own Q_Key is used (IBTA 10.2.5).
    pub remote_qkey: u32,
}

/// The payload of a send: gathered from memory, or copied at post time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Gathered from registered memory when packets are built.
    Sgl(Vec<Sge>),
    /// Copied into the WQE when posted (`IBV_SEND_INLINE`); no lkey needed.
    Inline(Vec<u8>),
}

impl Payload {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Payload::Sgl(sgl) => sgl_len(sgl),
            Payload::Inline(data) => data.len() as u64,
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A send work request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendWr {
    /// Returned in the completion.
    pub wr_id: u64,
    /// What to do.
    pub op: SendOp,
    /// Local data (source of sends and writes, target of reads and atomics).
    pub payload: Payload,
    /// Flags.
    pub flags: SendFlags,
    /// UD only: the destination.
    pub ud: Option<UdDest>,
}

/// A receive work request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecvWr {
    /// Returned in the completion.
    pub wr_id: u64,
    /// Where incoming data lands.
    pub sgl: Vec<Sge>,
}

impl SendWr {
    fn with(wr_id: u64, op: SendOp, payload: Payload) -> Self {
        SendWr {
            wr_id,
            op,
            payload,
            flags: SendFlags::default(),
            ud: None,
        }
    }

    /// A SEND of the bytes `sge` names.
    pub fn send(wr_id: u64, sge: Sge) -> Self {
        Self::with(wr_id, SendOp::Send, Payload::Sgl(vec![sge]))
    }

    /// A SEND with immediate data.
    pub fn send_with_imm(wr_id: u64, sge: Sge, imm: u32) -> Self {
        Self::with(wr_id, SendOp::SendWithImm { imm }, Payload::Sgl(vec![sge]))
    }

    /// A SEND with invalidate (RC): the responder invalidates `rkey` — a
    /// region or type 2 window of its protection domain — before the
    /// receive completes (`IBV_WR_SEND_WITH_INV`).
    pub fn send_with_inv(wr_id: u64, sge: Sge, rkey: u32) -> Self {
        Self::with(wr_id, SendOp::SendWithInv { rkey }, Payload::Sgl(vec![sge]))
    }

    /// A LOCAL_INV of `rkey` (see [`SendOp::LocalInv`]).
    pub fn local_inv(wr_id: u64, rkey: u32) -> Self {
        Self::with(wr_id, SendOp::LocalInv { rkey }, Payload::Sgl(Vec::new()))
    }

    /// A BIND_MW from its parts (see [`SendOp::BindMw`]; the verbs crate
    /// offers a builder from a window and a region).
    pub fn bind_mw_req(wr_id: u64, bind: MwBindReq) -> Self {
        let MwBindReq {
            mw_rkey,
            new_rkey,
            mr_lkey,
            addr,
            len,
            access,
        } = bind;
        Self::with(
            wr_id,
            SendOp::BindMw {
                mw_rkey,
                new_rkey,
                mr_lkey,
                addr,
                len,
                access,
            },
            Payload::Sgl(Vec::new()),
        )
    }

    /// A SEND of bytes copied now (`IBV_SEND_INLINE`).
    pub fn send_inline(wr_id: u64, data: &[u8]) -> Self {
        Self::with(wr_id, SendOp::Send, Payload::Inline(data.to_vec()))
    }

    /// An RDMA WRITE of `sge` to `remote_addr` under `rkey`.
    pub fn write(wr_id: u64, sge: Sge, remote_addr: u64, rkey: u32) -> Self {
        Self::with(
            wr_id,
            SendOp::Write { remote_addr, rkey },
            Payload::Sgl(vec![sge]),
        )
    }

    /// An RDMA WRITE with immediate data.
    pub fn write_with_imm(wr_id: u64, sge: Sge, remote_addr: u64, rkey: u32, imm: u32) -> Self {
        Self::with(
            wr_id,
            SendOp::WriteWithImm {
                remote_addr,
                rkey,
                imm,
            },
            Payload::Sgl(vec![sge]),
        )
    }

    /// An RDMA READ from `remote_addr` under `rkey` into `sge`.
    pub fn read(wr_id: u64, sge: Sge, remote_addr: u64, rkey: u32) -> Self {
        Self::with(
            wr_id,
            SendOp::Read { remote_addr, rkey },
            Payload::Sgl(vec![sge]),
        )
    }

    /// A compare-and-swap; the original value lands in the 8 bytes of `sge`.
    pub fn compare_swap(
        wr_id: u64,
        sge: Sge,
        remote_addr: u64,
        rkey: u32,
        compare: u64,
        swap: u64,
    ) -> Self {
        Self::with(
            wr_id,
            SendOp::CompareSwap {
                remote_addr,
                rkey,
                compare,
                swap,
            },
            Payload::Sgl(vec![sge]),
        )
    }

    /// A fetch-and-add; the original value lands in the 8 bytes of `sge`.
    pub fn fetch_add(wr_id: u64, sge: Sge, remote_addr: u64, rkey: u32, add: u64) -> Self {
        Self::with(
            wr_id,
            SendOp::FetchAdd {
                remote_addr,
                rkey,
                add,
            },
            Payload::Sgl(vec![sge]),
        )
    }

    /// Ask for a completion (`IBV_SEND_SIGNALED`).
    pub fn signaled(mut self) -> Self {
        self.flags.signaled = true;
        self
    }

    /// Set the solicited-event bit (`IBV_SEND_SOLICITED`).
    pub fn solicited(mut self) -> Self {
        self.flags.solicited = true;
        self
    }

    /// Wait for earlier READs and atomics (`IBV_SEND_FENCE`).
    pub fn fenced(mut self) -> Self {
        self.flags.fence = true;
        self
    }

    /// Address a UD datagram.
    pub fn to(mut self, dest: UdDest) -> Self {
        self.ud = Some(dest);
        self
    }
}

impl RecvWr {
    /// A receive into the bytes `sge` names.
    pub fn new(wr_id: u64, sge: Sge) -> Self {
        RecvWr {
            wr_id,
            sgl: vec![sge],
        }
    }
}
