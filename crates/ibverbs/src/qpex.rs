//! Extended QPs: `verbs_context.create_qp_ex` (behind the header's inline
//! `ibv_create_qp_ex`) and the `ibv_wr_*` path of `ibv_qp_ex`.
//!
//! The `ibv_wr_*` calls build ordinary `ibv_send_wr`s in the QP's
//! [`WrBatch`]; `ibv_wr_complete` chains them and posts them through the
//! same `ops.post_send` as `ibv_post_send`, so both paths share one
//! implementation. Supported send ops: send (with immediate, with
//! invalidate), RDMA write (with immediate), RDMA read, the two atomics,
//! local invalidate and binding type 2 memory windows; the others (TSO,
//! atomic write) are refused at creation with `EOPNOTSUPP`.

#![allow(unsafe_code)] // C entry points and raw pointers from C

use core::ffi::{c_int, c_void};

use crate::qp::{ibv_create_qp, qp_ref, QpBox};
use crate::sys;
use crate::util::{null, EINVAL, EOPNOTSUPP};

/// The work requests of one `ibv_wr_start` … `ibv_wr_complete` batch.
#[derive(Default)]
pub(crate) struct WrBatch {
    wrs: Vec<sys::ibv_send_wr>,
    /// The gather list of each WR (inline data points into `inline`).
    sges: Vec<Vec<sys::ibv_sge>>,
    /// Copies of inline data, kept until the batch is posted.
    inline: Vec<Vec<u8>>,
    /// The first error of a setter, reported by `ibv_wr_complete`.
    err: c_int,
}

// SAFETY: the raw pointers in the batch (AHs, the caller's addresses) are
// only dereferenced by post_send on the thread that completes the batch,
// as libibverbs's own providers do; the batch is behind the QP's mutex.
unsafe impl Send for WrBatch {}

impl WrBatch {
    /// Empty, keeping the storage for the next batch.
    fn clear(&mut self) {
        self.wrs.clear();
        self.sges.clear();
        self.inline.clear();
        self.err = 0;
    }
}

const SUPPORTED_OPS: u64 = (sys::IBV_QP_EX_WITH_RDMA_WRITE
    | sys::IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM
    | sys::IBV_QP_EX_WITH_SEND
    | sys::IBV_QP_EX_WITH_SEND_WITH_IMM
    | sys::IBV_QP_EX_WITH_RDMA_READ
    | sys::IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP
    | sys::IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD
    | sys::IBV_QP_EX_WITH_LOCAL_INV
    | sys::IBV_QP_EX_WITH_BIND_MW
    | sys::IBV_QP_EX_WITH_SEND_WITH_INV) as u64;

/// `verbs_context.create_qp_ex`: a QP with a PD (XRC, RSS, TSO and create
/// flags are `EOPNOTSUPP`), with the `ibv_wr_*` path when
/// `IBV_QP_INIT_ATTR_SEND_OPS_FLAGS` asks for supported ops.
///
/// # Safety
/// `attr` is a readable, writable `ibv_qp_init_attr_ex`.
pub(crate) unsafe extern "C" fn create_qp_ex(
    _context: *mut sys::ibv_context,
    attr: *mut sys::ibv_qp_init_attr_ex,
) -> *mut sys::ibv_qp {
    if attr.is_null() {
        return null(EINVAL);
    }
    // SAFETY: the caller passes a valid ibv_qp_init_attr_ex.
    let a = unsafe { &mut *attr };
    let known = sys::IBV_QP_INIT_ATTR_PD
        | sys::IBV_QP_INIT_ATTR_CREATE_FLAGS
        | sys::IBV_QP_INIT_ATTR_SEND_OPS_FLAGS;
    if a.comp_mask & sys::IBV_QP_INIT_ATTR_PD == 0 || a.comp_mask & !known != 0 {
        return null(EOPNOTSUPP);
    }
    if a.comp_mask & sys::IBV_QP_INIT_ATTR_CREATE_FLAGS != 0 && a.create_flags != 0 {
        return null(EOPNOTSUPP);
    }
    let ops = if a.comp_mask & sys::IBV_QP_INIT_ATTR_SEND_OPS_FLAGS != 0 {
        if a.send_ops_flags & !SUPPORTED_OPS != 0 {
            return null(EOPNOTSUPP);
        }
        Some(a.send_ops_flags)
    } else {
        None
    };
    let mut ia = sys::ibv_qp_init_attr {
        qp_context: a.qp_context,
        send_cq: a.send_cq,
        recv_cq: a.recv_cq,
        srq: a.srq,
        cap: a.cap,
        qp_type: a.qp_type,
        sq_sig_all: a.sq_sig_all,
    };
    // SAFETY: `ia` is a local ibv_qp_init_attr; the PD and CQs are the
    // caller's, checked by ibv_create_qp.
    let qp = unsafe { ibv_create_qp(a.pd, &mut ia) };
    if qp.is_null() {
        return qp;
    }
    a.cap = ia.cap;
    if ops.is_some() {
        let x = qp.cast::<sys::ibv_qp_ex>();
        // SAFETY: `qp` is the first field of the QpBox just created, whose
        // `c` is an ibv_qp_ex; nothing else uses it yet.
        unsafe {
            (*x).wr_start = Some(wr_start);
            (*x).wr_complete = Some(wr_complete);
            (*x).wr_abort = Some(wr_abort);
            (*x).wr_send = Some(wr_send);
            (*x).wr_send_imm = Some(wr_send_imm);
            (*x).wr_rdma_write = Some(wr_rdma_write);
            (*x).wr_rdma_write_imm = Some(wr_rdma_write_imm);
            (*x).wr_rdma_read = Some(wr_rdma_read);
            (*x).wr_atomic_cmp_swp = Some(wr_atomic_cmp_swp);
            (*x).wr_atomic_fetch_add = Some(wr_atomic_fetch_add);
            (*x).wr_bind_mw = Some(wr_bind_mw);
            (*x).wr_local_inv = Some(wr_local_inv);
            (*x).wr_send_inv = Some(wr_send_inv);
            (*x).wr_set_sge = Some(wr_set_sge);
            (*x).wr_set_sge_list = Some(wr_set_sge_list);
            (*x).wr_set_inline_data = Some(wr_set_inline_data);
            (*x).wr_set_inline_data_list = Some(wr_set_inline_data_list);
            (*x).wr_set_ud_addr = Some(wr_set_ud_addr);
        }
    }
    qp
}

/// The QP box and the batch of an `ibv_qp_ex`, with `f` run on the batch.
fn with_batch(qp: *mut sys::ibv_qp_ex, f: impl FnOnce(&QpBox, &mut WrBatch)) {
    if let Some(b) = qp_ref(qp.cast()) {
        let mut batch = b.batch.lock().unwrap_or_else(|e| e.into_inner());
        f(b, &mut batch);
    }
}

/// A new WR with the caller's `wr_id` and `wr_flags`.
fn new_wr(
    qp: *mut sys::ibv_qp_ex,
    opcode: sys::ibv_wr_opcode,
) -> impl FnOnce(&QpBox, &mut WrBatch) -> *mut sys::ibv_send_wr {
    move |_b, batch| {
        // SAFETY: `qp` is a live ibv_qp_ex (checked by qp_ref in with_batch);
        // the application set these fields before the call.
        let (wr_id, flags) = unsafe { ((*qp).wr_id, (*qp).wr_flags) };
        batch.wrs.push(sys::ibv_send_wr {
            wr_id,
            opcode,
            send_flags: flags,
            ..Default::default()
        });
        batch.sges.push(Vec::new());
        batch
            .wrs
            .last_mut()
            .map_or(core::ptr::null_mut(), |w| w as *mut _)
    }
}

/// Add a WR and let `set` fill its operation fields.
fn push(
    qp: *mut sys::ibv_qp_ex,
    opcode: sys::ibv_wr_opcode,
    set: impl FnOnce(&mut sys::ibv_send_wr),
) {
    with_batch(qp, |b, batch| {
        let w = new_wr(qp, opcode)(b, batch);
        // SAFETY: `w` points at the WR just pushed, still in the Vec.
        if let Some(w) = unsafe { w.as_mut() } {
            set(w);
        }
    });
}

unsafe extern "C" fn wr_start(qp: *mut sys::ibv_qp_ex) {
    with_batch(qp, |_, batch| batch.clear());
}

unsafe extern "C" fn wr_abort(qp: *mut sys::ibv_qp_ex) {
    with_batch(qp, |_, batch| batch.clear());
}

unsafe extern "C" fn wr_complete(qp: *mut sys::ibv_qp_ex) -> c_int {
    let Some(b) = qp_ref(qp.cast()) else {
        return EINVAL;
    };
    let mut guard = b.batch.lock().unwrap_or_else(|e| e.into_inner());
    let batch = &mut *guard;
    if batch.err != 0 || batch.wrs.is_empty() {
        let err = batch.err;
        batch.clear();
        return err;
    }
    let n = batch.wrs.len();
    for i in 0..n {
        let sges = &mut batch.sges[i];
        batch.wrs[i].num_sge = sges.len() as c_int;
        batch.wrs[i].sg_list = if sges.is_empty() {
            core::ptr::null_mut()
        } else {
            sges.as_mut_ptr()
        };
    }
    for i in 0..n - 1 {
        let next: *mut sys::ibv_send_wr = &mut batch.wrs[i + 1];
        batch.wrs[i].next = next;
    }
    let mut bad: *mut sys::ibv_send_wr = core::ptr::null_mut();
    // SAFETY: a valid chain of WRs whose gather lists and inline copies
    // live in `batch` until the call returns (post_send does not take the
    // batch's lock).
    let r = unsafe { crate::qp::post_send(qp.cast(), batch.wrs.as_mut_ptr(), &mut bad) };
    batch.clear();
    r
}

unsafe extern "C" fn wr_send(qp: *mut sys::ibv_qp_ex) {
    push(qp, sys::IBV_WR_SEND, |_| {});
}

unsafe extern "C" fn wr_send_imm(qp: *mut sys::ibv_qp_ex, imm: sys::__be32) {
    push(qp, sys::IBV_WR_SEND_WITH_IMM, |w| {
        w.__bindgen_anon_1.imm_data = imm
    });
}

unsafe extern "C" fn wr_rdma_write(qp: *mut sys::ibv_qp_ex, rkey: u32, remote_addr: u64) {
    push(qp, sys::IBV_WR_RDMA_WRITE, |w| {
        w.wr.rdma = sys::ibv_send_wr__bindgen_ty_2__bindgen_ty_1 { remote_addr, rkey }
    });
}

unsafe extern "C" fn wr_rdma_write_imm(
    qp: *mut sys::ibv_qp_ex,
    rkey: u32,
    remote_addr: u64,
    imm: sys::__be32,
) {
    push(qp, sys::IBV_WR_RDMA_WRITE_WITH_IMM, |w| {
        w.wr.rdma = sys::ibv_send_wr__bindgen_ty_2__bindgen_ty_1 { remote_addr, rkey };
        w.__bindgen_anon_1.imm_data = imm;
    });
}

unsafe extern "C" fn wr_rdma_read(qp: *mut sys::ibv_qp_ex, rkey: u32, remote_addr: u64) {
    push(qp, sys::IBV_WR_RDMA_READ, |w| {
        w.wr.rdma = sys::ibv_send_wr__bindgen_ty_2__bindgen_ty_1 { remote_addr, rkey }
    });
}

unsafe extern "C" fn wr_atomic_cmp_swp(
    qp: *mut sys::ibv_qp_ex,
    rkey: u32,
    remote_addr: u64,
    compare: u64,
    swap: u64,
) {
    push(qp, sys::IBV_WR_ATOMIC_CMP_AND_SWP, |w| {
        w.wr.atomic = sys::ibv_send_wr__bindgen_ty_2__bindgen_ty_2 {
            remote_addr,
            compare_add: compare,
            swap,
            rkey,
        }
    });
}

unsafe extern "C" fn wr_atomic_fetch_add(
    qp: *mut sys::ibv_qp_ex,
    rkey: u32,
    remote_addr: u64,
    add: u64,
) {
    push(qp, sys::IBV_WR_ATOMIC_FETCH_AND_ADD, |w| {
        w.wr.atomic = sys::ibv_send_wr__bindgen_ty_2__bindgen_ty_2 {
            remote_addr,
            compare_add: add,
            swap: 0,
            rkey,
        }
    });
}

unsafe extern "C" fn wr_bind_mw(
    qp: *mut sys::ibv_qp_ex,
    mw: *mut sys::ibv_mw,
    rkey: u32,
    bind_info: *const sys::ibv_mw_bind_info,
) {
    let info = if bind_info.is_null() {
        sys::ibv_mw_bind_info::default()
    } else {
        // SAFETY: the caller passes a readable ibv_mw_bind_info.
        unsafe { *bind_info }
    };
    push(qp, sys::IBV_WR_BIND_MW, |w| {
        w.__bindgen_anon_2.bind_mw = sys::ibv_send_wr__bindgen_ty_4__bindgen_ty_1 {
            mw,
            rkey,
            bind_info: info,
        }
    });
}

unsafe extern "C" fn wr_local_inv(qp: *mut sys::ibv_qp_ex, invalidate_rkey: u32) {
    push(qp, sys::IBV_WR_LOCAL_INV, |w| {
        w.__bindgen_anon_1.invalidate_rkey = invalidate_rkey
    });
}

unsafe extern "C" fn wr_send_inv(qp: *mut sys::ibv_qp_ex, invalidate_rkey: u32) {
    push(qp, sys::IBV_WR_SEND_WITH_INV, |w| {
        w.__bindgen_anon_1.invalidate_rkey = invalidate_rkey
    });
}

/// Run `f` on the last WR of the batch and its gather list (an error for
/// `ibv_wr_complete` when there is none).
fn last(
    qp: *mut sys::ibv_qp_ex,
    f: impl FnOnce(&mut sys::ibv_send_wr, &mut Vec<sys::ibv_sge>, &mut Vec<Vec<u8>>),
) {
    with_batch(qp, |_, batch| {
        match (batch.wrs.last_mut(), batch.sges.last_mut()) {
            (Some(w), Some(s)) => f(w, s, &mut batch.inline),
            _ => batch.err = EINVAL,
        }
    });
}

unsafe extern "C" fn wr_set_sge(qp: *mut sys::ibv_qp_ex, lkey: u32, addr: u64, length: u32) {
    last(qp, |_, s, _| {
        s.clear();
        s.push(sys::ibv_sge { addr, length, lkey });
    });
}

unsafe extern "C" fn wr_set_sge_list(
    qp: *mut sys::ibv_qp_ex,
    num_sge: sys::size_t,
    sg_list: *const sys::ibv_sge,
) {
    last(qp, |_, s, _| {
        s.clear();
        if !sg_list.is_null() {
            // SAFETY: the caller passes `num_sge` readable entries.
            s.extend_from_slice(unsafe { core::slice::from_raw_parts(sg_list, num_sge as usize) });
        }
    });
}

/// Inline data: copied now (the caller may reuse its buffers once the call
/// returns), posted with `IBV_SEND_INLINE` from the copy.
fn set_inline(qp: *mut sys::ibv_qp_ex, bufs: impl IntoIterator<Item = (*const u8, usize)>) {
    last(qp, |w, s, inline| {
        let mut data = Vec::new();
        for (p, len) in bufs {
            if len > 0 && !p.is_null() {
                // SAFETY: the caller's buffer holds `len` readable bytes.
                data.extend_from_slice(unsafe { core::slice::from_raw_parts(p, len) });
            }
        }
        s.clear();
        if !data.is_empty() {
            s.push(sys::ibv_sge {
                addr: data.as_ptr() as u64,
                length: data.len() as u32,
                lkey: 0,
            });
        }
        w.send_flags |= sys::IBV_SEND_INLINE;
        // The Vec's heap buffer does not move when `inline` grows.
        inline.push(data);
    });
}

unsafe extern "C" fn wr_set_inline_data(
    qp: *mut sys::ibv_qp_ex,
    addr: *mut c_void,
    length: sys::size_t,
) {
    set_inline(qp, [(addr.cast_const().cast::<u8>(), length as usize)]);
}

unsafe extern "C" fn wr_set_inline_data_list(
    qp: *mut sys::ibv_qp_ex,
    num_buf: sys::size_t,
    buf_list: *const sys::ibv_data_buf,
) {
    let list = if buf_list.is_null() {
        &[]
    } else {
        // SAFETY: the caller passes `num_buf` readable entries.
        unsafe { core::slice::from_raw_parts(buf_list, num_buf as usize) }
    };
    set_inline(
        qp,
        list.iter()
            .map(|b| (b.addr.cast_const().cast::<u8>(), b.length as usize)),
    );
}

unsafe extern "C" fn wr_set_ud_addr(
    qp: *mut sys::ibv_qp_ex,
    ah: *mut sys::ibv_ah,
    remote_qpn: u32,
    remote_qkey: u32,
) {
    last(qp, |w, _, _| {
        w.wr.ud = sys::ibv_send_wr__bindgen_ty_2__bindgen_ty_3 {
            ah,
            remote_qpn,
            remote_qkey,
        }
    });
}
