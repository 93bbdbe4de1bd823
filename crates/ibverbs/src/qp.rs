//! Queue pairs and shared receive queues: create, modify (`attr_mask` →
//! [`ModifyAttrs`]), query, destroy, and the data-path ops the header's
//! inlines call through `ibv_context.ops`: `post_send`, `post_recv`,
//! `post_srq_recv`, and `bind_mw` (type 1 windows).

#![allow(unsafe_code)] // C entry points (#[no_mangle]) and raw pointers from C

use core::ffi::{c_int, c_uint};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use softverbs::{
    AhAttr, Mtu, Payload, Qp, QpInitAttr, QpState, QpType, RecvWr, SendFlags, SendOp, SendWr, Sge,
    Srq,
};
use softverbs_core::qp_rules::{AltPath, PathMigState};
use softverbs_core::ModifyAttrs;

use crate::context::{register, unregister, CtxBox};
use crate::cq::{cq_ref, CqBox};
use crate::objects::{
    access_from_c, ah_attr_from_c, ah_attr_to_c, ah_ref, box_ref, free_box, mr_ref,
    mw_access_from_c, mw_ref, pd_ref, PdBox,
};
use crate::sys;
use crate::util::{null, report, EBUSY, EINVAL, EOPNOTSUPP, EPERM};

const QP_MAGIC: u64 = 0x736f_6674_7170_3031;
const SRQ_MAGIC: u64 = 0x736f_6674_7372_3031;

/// A queue pair.
#[repr(C)]
pub(crate) struct QpBox {
    /// An `ibv_qp_ex` for every QP (its first field is the `ibv_qp`); its
    /// `wr_*` pointers are set only for QPs created with send ops flags.
    pub c: sys::ibv_qp_ex,
    magic: u64,
    pub qp: Qp,
    ctx: *const CtxBox,
    pd: *const PdBox,
    send_cq: *const CqBox,
    recv_cq: *const CqBox,
    srq: *const SrqBox,
    /// What `ibv_query_qp` reports that softverbs does not keep: the primary
    /// path as last set, and the port.
    path: Mutex<(Option<AhAttr>, u8)>,
    /// The granted `max_recv_sge` (receive WRs with more SGEs are refused
    /// with `EINVAL`, as providers do).
    max_recv_sge: u32,
    /// The granted `max_send_sge` and `max_inline_data`: send WRs beyond
    /// them are refused with `EINVAL` before their lists or inline bytes
    /// are read, as rxe does.
    max_send_sge: u32,
    max_inline_data: u32,
    /// Work requests between `ibv_wr_start` and `ibv_wr_complete`.
    pub batch: Mutex<crate::qpex::WrBatch>,
}

/// A shared receive queue.
#[repr(C)]
pub(crate) struct SrqBox {
    pub c: sys::ibv_srq,
    magic: u64,
    srq: Srq,
    ctx: *const CtxBox,
    pd: *const PdBox,
    users: AtomicUsize,
}

box_ref!(qp_ref, sys::ibv_qp, QpBox, QP_MAGIC);
box_ref!(srq_ref, sys::ibv_srq, SrqBox, SRQ_MAGIC);

fn qp_type_from_c(t: sys::ibv_qp_type) -> Option<QpType> {
    match t {
        sys::IBV_QPT_RC => Some(QpType::Rc),
        sys::IBV_QPT_UC => Some(QpType::Uc),
        sys::IBV_QPT_UD => Some(QpType::Ud),
        _ => None,
    }
}

fn qp_type_to_c(t: QpType) -> sys::ibv_qp_type {
    match t {
        QpType::Rc => sys::IBV_QPT_RC,
        QpType::Uc => sys::IBV_QPT_UC,
        QpType::Ud => sys::IBV_QPT_UD,
    }
}

fn state_from_c(s: sys::ibv_qp_state) -> Result<QpState, c_int> {
    Ok(match s {
        sys::IBV_QPS_RESET => QpState::Reset,
        sys::IBV_QPS_INIT => QpState::Init,
        sys::IBV_QPS_RTR => QpState::Rtr,
        sys::IBV_QPS_RTS => QpState::Rts,
        sys::IBV_QPS_SQD => QpState::Sqd,
        sys::IBV_QPS_SQE => QpState::Sqe,
        sys::IBV_QPS_ERR => QpState::Err,
        _ => return Err(EINVAL),
    })
}

fn state_to_c(s: QpState) -> sys::ibv_qp_state {
    match s {
        QpState::Reset => sys::IBV_QPS_RESET,
        QpState::Init => sys::IBV_QPS_INIT,
        QpState::Rtr => sys::IBV_QPS_RTR,
        QpState::Rts => sys::IBV_QPS_RTS,
        QpState::Sqd => sys::IBV_QPS_SQD,
        QpState::Sqe => sys::IBV_QPS_SQE,
        QpState::Err => sys::IBV_QPS_ERR,
    }
}

/// `ibv_create_qp`: `init_attr->cap` is updated to what was granted.
///
/// # Safety
/// `pd` came from `ibv_alloc_pd`; `init_attr` is readable and writable, its
/// CQs and SRQ came from this library.
#[no_mangle]
pub unsafe extern "C" fn ibv_create_qp(
    pd: *mut sys::ibv_pd,
    init_attr: *mut sys::ibv_qp_init_attr,
) -> *mut sys::ibv_qp {
    let Some(pb) = pd_ref(pd) else {
        return null(EINVAL);
    };
    if init_attr.is_null() {
        return null(EINVAL);
    }
    // SAFETY: the caller passes a valid ibv_qp_init_attr.
    let ia = unsafe { &mut *init_attr };
    let (Some(scq), Some(rcq)) = (cq_ref(ia.send_cq), cq_ref(ia.recv_cq)) else {
        return null(EINVAL);
    };
    let srq = if ia.srq.is_null() {
        None
    } else {
        match srq_ref(ia.srq) {
            Some(s) => Some(s),
            None => return null(EINVAL),
        }
    };
    let Some(t) = qp_type_from_c(ia.qp_type) else {
        return null(EOPNOTSUPP);
    };
    let mut a = QpInitAttr::new(t, &scq.cq, &rcq.cq);
    a.max_send_wr = ia.cap.max_send_wr;
    a.max_recv_wr = ia.cap.max_recv_wr;
    a.max_send_sge = ia.cap.max_send_sge;
    a.max_recv_sge = ia.cap.max_recv_sge;
    a.max_inline_data = ia.cap.max_inline_data;
    a.sq_sig_all = ia.sq_sig_all != 0;
    if let Some(s) = srq {
        a = a.with_srq(&s.srq);
    }
    let qp = match pb.pd.create_qp(&a) {
        Ok(q) => q,
        Err(e) => return null(report("ibv_create_qp", &e)),
    };
    if let Ok(info) = qp.query() {
        ia.cap = cap_to_c(&info.init, srq.is_some());
    }
    pb.users.fetch_add(1, Ordering::AcqRel);
    scq.users.fetch_add(1, Ordering::AcqRel);
    rcq.users.fetch_add(1, Ordering::AcqRel);
    if let Some(s) = srq {
        s.users.fetch_add(1, Ordering::AcqRel);
    }
    let qpn = qp.qpn();
    let c = sys::ibv_qp {
        context: pb.c.context,
        qp_context: ia.qp_context,
        pd,
        send_cq: ia.send_cq,
        recv_cq: ia.recv_cq,
        srq: ia.srq,
        handle: qpn,
        qp_num: qpn,
        state: sys::IBV_QPS_RESET,
        qp_type: ia.qp_type,
        ..Default::default()
    };
    let ctx =
        crate::context::ctx_ref(pb.c.context).map_or(core::ptr::null(), |c| c as *const CtxBox);
    let p = Box::into_raw(Box::new(QpBox {
        c: sys::ibv_qp_ex {
            qp_base: c,
            ..Default::default()
        },
        magic: QP_MAGIC,
        qp,
        ctx,
        pd: pb,
        send_cq: scq,
        recv_cq: rcq,
        srq: srq.map_or(core::ptr::null(), |s| s as *const SrqBox),
        path: Mutex::new((None, 1)),
        max_recv_sge: ia.cap.max_recv_sge,
        max_send_sge: ia.cap.max_send_sge,
        max_inline_data: ia.cap.max_inline_data,
        batch: Mutex::default(),
    }));
    // SAFETY: the context outlives its objects (closing it first is the
    // application's error, as with libibverbs).
    if let Some(cb) = unsafe { ctx.as_ref() } {
        register(&cb.qps, qpn, p as usize);
    }
    p.cast()
}

fn cap_to_c(init: &softverbs_core::driver::QpInit, srq: bool) -> sys::ibv_qp_cap {
    sys::ibv_qp_cap {
        max_send_wr: init.max_send_wr,
        max_recv_wr: if srq { 0 } else { init.max_recv_wr },
        max_send_sge: init.max_send_sge,
        max_recv_sge: if srq { 0 } else { init.max_recv_sge },
        max_inline_data: init.max_inline_data,
    }
}

/// `ibv_qp_attr` + `attr_mask` → softverbs's [`ModifyAttrs`] (its
/// `ah_attr` and `port_num` are also what `ibv_query_qp` remembers).
pub(crate) fn modify_attrs(a: &sys::ibv_qp_attr, mask: c_int) -> Result<ModifyAttrs, c_int> {
    let mask = mask as c_uint;
    let has = |bit: sys::ibv_qp_attr_mask| mask & bit != 0;
    let known = sys::IBV_QP_STATE
        | sys::IBV_QP_CUR_STATE
        | sys::IBV_QP_EN_SQD_ASYNC_NOTIFY
        | sys::IBV_QP_ACCESS_FLAGS
        | sys::IBV_QP_PKEY_INDEX
        | sys::IBV_QP_PORT
        | sys::IBV_QP_QKEY
        | sys::IBV_QP_AV
        | sys::IBV_QP_PATH_MTU
        | sys::IBV_QP_TIMEOUT
        | sys::IBV_QP_RETRY_CNT
        | sys::IBV_QP_RNR_RETRY
        | sys::IBV_QP_RQ_PSN
        | sys::IBV_QP_MAX_QP_RD_ATOMIC
        | sys::IBV_QP_ALT_PATH
        | sys::IBV_QP_MIN_RNR_TIMER
        | sys::IBV_QP_SQ_PSN
        | sys::IBV_QP_MAX_DEST_RD_ATOMIC
        | sys::IBV_QP_PATH_MIG_STATE
        | sys::IBV_QP_DEST_QPN;
    if has(sys::IBV_QP_CAP) || has(sys::IBV_QP_RATE_LIMIT) {
        return Err(EOPNOTSUPP);
    }
    if mask & !known != 0 {
        return Err(EINVAL);
    }
    let mut m = ModifyAttrs::default();
    if has(sys::IBV_QP_STATE) {
        m.qp_state = Some(state_from_c(a.qp_state)?);
    }
    if has(sys::IBV_QP_CUR_STATE) {
        m.cur_qp_state = Some(state_from_c(a.cur_qp_state)?);
    }
    if has(sys::IBV_QP_EN_SQD_ASYNC_NOTIFY) {
        m.en_sqd_async_notify = Some(a.en_sqd_async_notify != 0);
    }
    if has(sys::IBV_QP_ACCESS_FLAGS) {
        m.qp_access_flags = Some(access_from_c(a.qp_access_flags).map_err(|_| EINVAL)?);
    }
    if has(sys::IBV_QP_PKEY_INDEX) {
        m.pkey_index = Some(a.pkey_index);
    }
    if has(sys::IBV_QP_PORT) {
        m.port_num = Some(a.port_num);
    }
    if has(sys::IBV_QP_QKEY) {
        m.qkey = Some(a.qkey);
    }
    if has(sys::IBV_QP_AV) {
        m.ah_attr = Some(ah_attr_from_c(&a.ah_attr)?);
    }
    if has(sys::IBV_QP_PATH_MTU) {
        m.path_mtu = Some(Mtu::from_enum(a.path_mtu).ok_or(EINVAL)?);
    }
    if has(sys::IBV_QP_TIMEOUT) {
        m.timeout = Some(a.timeout);
    }
    if has(sys::IBV_QP_RETRY_CNT) {
        m.retry_cnt = Some(a.retry_cnt);
    }
    if has(sys::IBV_QP_RNR_RETRY) {
        m.rnr_retry = Some(a.rnr_retry);
    }
    if has(sys::IBV_QP_RQ_PSN) {
        m.rq_psn = Some(a.rq_psn);
    }
    if has(sys::IBV_QP_MAX_QP_RD_ATOMIC) {
        m.max_rd_atomic = Some(a.max_rd_atomic);
    }
    if has(sys::IBV_QP_ALT_PATH) {
        m.alt_path = Some(AltPath {
            ah_attr: ah_attr_from_c(&a.alt_ah_attr)?,
            pkey_index: a.alt_pkey_index,
            port_num: a.alt_port_num,
            timeout: a.alt_timeout,
        });
    }
    if has(sys::IBV_QP_MIN_RNR_TIMER) {
        m.min_rnr_timer = Some(a.min_rnr_timer);
    }
    if has(sys::IBV_QP_SQ_PSN) {
        m.sq_psn = Some(a.sq_psn);
    }
    if has(sys::IBV_QP_MAX_DEST_RD_ATOMIC) {
        m.max_dest_rd_atomic = Some(a.max_dest_rd_atomic);
    }
    if has(sys::IBV_QP_PATH_MIG_STATE) {
        m.path_mig_state = Some(match a.path_mig_state {
            sys::IBV_MIG_MIGRATED => PathMigState::Migrated,
            sys::IBV_MIG_REARM => PathMigState::Rearm,
            sys::IBV_MIG_ARMED => PathMigState::Armed,
            _ => return Err(EINVAL),
        });
    }
    if has(sys::IBV_QP_DEST_QPN) {
        m.dest_qp_num = Some(a.dest_qp_num);
    }
    Ok(m)
}

/// `ibv_modify_qp`: 0 or an errno.
///
/// # Safety
/// `qp` came from `ibv_create_qp`; `attr` is readable.
#[no_mangle]
pub unsafe extern "C" fn ibv_modify_qp(
    qp: *mut sys::ibv_qp,
    attr: *mut sys::ibv_qp_attr,
    attr_mask: c_int,
) -> c_int {
    let Some(b) = qp_ref(qp) else {
        return EINVAL;
    };
    if attr.is_null() {
        return EINVAL;
    }
    // SAFETY: the caller passes a readable ibv_qp_attr.
    let a = unsafe { &*attr };
    let m = match modify_attrs(a, attr_mask) {
        Ok(m) => m,
        Err(e) => return e,
    };
    if let Err(e) = b.qp.modify(&m) {
        return report("ibv_modify_qp", &e);
    }
    {
        let mut path = b.path.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(av) = m.ah_attr {
            path.0 = Some(av);
        }
        if let Some(p) = m.port_num {
            path.1 = p;
        }
    }
    if m.qp_state == Some(QpState::Reset) {
        // As mlx4/mlx5 do: the QP's completions leave its CQs.
        // SAFETY: the CQs outlive the QP (destroy_cq refuses while used).
        for cq in [b.send_cq, b.recv_cq] {
            if let Some(cq) = unsafe { cq.as_ref() } {
                crate::cq::clean(cq, b.qp.qpn());
            }
        }
    }
    if let Some(s) = m.qp_state {
        // SAFETY: a live QP of ours; libibverbs updates `state` the same way.
        unsafe { (*qp).state = state_to_c(s) };
    }
    0
}

/// `ibv_query_qp`: fills all of `attr` and `init_attr` whatever the mask
/// (as providers do). 0 or an errno.
///
/// # Safety
/// `qp` came from `ibv_create_qp`; `attr` and `init_attr` are writable.
#[no_mangle]
pub unsafe extern "C" fn ibv_query_qp(
    qp: *mut sys::ibv_qp,
    attr: *mut sys::ibv_qp_attr,
    _attr_mask: c_int,
    init_attr: *mut sys::ibv_qp_init_attr,
) -> c_int {
    let Some(b) = qp_ref(qp) else {
        return EINVAL;
    };
    if attr.is_null() || init_attr.is_null() {
        return EINVAL;
    }
    let info = match b.qp.query() {
        Ok(i) => i,
        Err(e) => return report("ibv_query_qp", &e),
    };
    let (av, port) = *b.path.lock().unwrap_or_else(|e| e.into_inner());
    let srq = !b.srq.is_null();
    let s = state_to_c(info.state);
    let at = &info.attrs;
    let mut ah = av.map(|a| ah_attr_to_c(&a)).unwrap_or_default();
    ah.grh.dgid = crate::util::gid_to_c(&at.dgid);
    let out = sys::ibv_qp_attr {
        qp_state: s,
        cur_qp_state: s,
        path_mtu: at.path_mtu as u32,
        path_mig_state: sys::IBV_MIG_MIGRATED,
        qkey: at.qkey,
        rq_psn: at.rq_psn,
        sq_psn: at.sq_psn,
        dest_qp_num: at.dest_qpn,
        qp_access_flags: at.access.0,
        cap: cap_to_c(&info.init, srq),
        ah_attr: ah,
        pkey_index: 0,
        sq_draining: 0,
        max_rd_atomic: at.max_rd_atomic,
        max_dest_rd_atomic: at.max_dest_rd_atomic,
        min_rnr_timer: at.min_rnr_timer,
        port_num: port,
        timeout: at.timeout,
        retry_cnt: at.retry_cnt,
        rnr_retry: at.rnr_retry,
        ..Default::default()
    };
    // SAFETY: the caller passes writable structs; `qp` is live.
    unsafe {
        attr.write(out);
        init_attr.write(sys::ibv_qp_init_attr {
            qp_context: (*qp).qp_context,
            send_cq: (*qp).send_cq,
            recv_cq: (*qp).recv_cq,
            srq: (*qp).srq,
            cap: cap_to_c(&info.init, srq),
            qp_type: qp_type_to_c(info.init.qp_type),
            sq_sig_all: info.init.sq_sig_all.into(),
        });
        (*qp).state = s;
    }
    0
}

/// `ibv_destroy_qp`: 0 or an errno.
///
/// # Safety
/// `qp` came from `ibv_create_qp`.
#[no_mangle]
pub unsafe extern "C" fn ibv_destroy_qp(qp: *mut sys::ibv_qp) -> c_int {
    let Some(b) = qp_ref(qp) else {
        return EINVAL;
    };
    // SAFETY: the parents outlive the QP: destroying them is refused while
    // it exists (their user counts).
    unsafe {
        (*b.pd).users.fetch_sub(1, Ordering::AcqRel);
        (*b.send_cq).users.fetch_sub(1, Ordering::AcqRel);
        (*b.recv_cq).users.fetch_sub(1, Ordering::AcqRel);
        if let Some(s) = b.srq.as_ref() {
            s.users.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(cb) = b.ctx.as_ref() {
            unregister(&cb.qps, b.qp.qpn());
        }
    }
    free_box!(b, QpBox);
    0
}

/// The scatter/gather list of a work request.
///
/// # Safety
/// `sg` holds `n` readable entries (or `n` is 0).
unsafe fn sgl(sg: *const sys::ibv_sge, n: c_int) -> Result<Vec<Sge>, c_int> {
    if n < 0 || (n > 0 && sg.is_null()) {
        return Err(EINVAL);
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: the caller's list holds n entries.
    let s = unsafe { core::slice::from_raw_parts(sg, n as usize) };
    Ok(s.iter()
        .map(|e| Sge {
            addr: e.addr,
            length: e.length,
            lkey: e.lkey,
        })
        .collect())
}

/// An `ibv_send_wr` as a softverbs [`SendWr`]; inline data over
/// `max_inline` bytes is `EINVAL` (nothing is copied).
///
/// # Safety
/// `w`'s lists (and, with `IBV_SEND_INLINE`, the bytes they name) are
/// readable.
unsafe fn send_wr_from_c(w: &sys::ibv_send_wr, ud: bool, max_inline: u32) -> Result<SendWr, c_int> {
    // SAFETY: forwarded from the caller.
    let list = unsafe { sgl(w.sg_list, w.num_sge) }?;
    let flags = w.send_flags;
    let payload = if flags & sys::IBV_SEND_INLINE != 0 {
        let total: u64 = list.iter().map(|s| u64::from(s.length)).sum();
        if total > u64::from(max_inline) {
            return Err(EINVAL);
        }
        let mut data = Vec::with_capacity(total as usize);
        for s in &list {
            if s.length > 0 && s.addr == 0 {
                return Err(EINVAL);
            }
            // SAFETY: inline data is read from the application's memory at
            // post time, as libibverbs documents.
            data.extend_from_slice(unsafe {
                core::slice::from_raw_parts(s.addr as *const u8, s.length as usize)
            });
        }
        Payload::Inline(data)
    } else {
        Payload::Sgl(list)
    };
    // SAFETY: the union members read are the ones the opcode selects; all
    // are plain integers.
    let (imm, rdma, atomic) = unsafe { (w.__bindgen_anon_1.imm_data, w.wr.rdma, w.wr.atomic) };
    let op = match w.opcode {
        sys::IBV_WR_SEND => SendOp::Send,
        sys::IBV_WR_SEND_WITH_IMM => SendOp::SendWithImm {
            imm: u32::from_be(imm),
        },
        // SAFETY: as above.
        sys::IBV_WR_SEND_WITH_INV => SendOp::SendWithInv {
            rkey: unsafe { w.__bindgen_anon_1.invalidate_rkey },
        },
        sys::IBV_WR_RDMA_WRITE => SendOp::Write {
            remote_addr: rdma.remote_addr,
            rkey: rdma.rkey,
        },
        sys::IBV_WR_RDMA_WRITE_WITH_IMM => SendOp::WriteWithImm {
            remote_addr: rdma.remote_addr,
            rkey: rdma.rkey,
            imm: u32::from_be(imm),
        },
        sys::IBV_WR_RDMA_READ => SendOp::Read {
            remote_addr: rdma.remote_addr,
            rkey: rdma.rkey,
        },
        sys::IBV_WR_ATOMIC_CMP_AND_SWP => SendOp::CompareSwap {
            remote_addr: atomic.remote_addr,
            rkey: atomic.rkey,
            compare: atomic.compare_add,
            swap: atomic.swap,
        },
        sys::IBV_WR_ATOMIC_FETCH_AND_ADD => SendOp::FetchAdd {
            remote_addr: atomic.remote_addr,
            rkey: atomic.rkey,
            add: atomic.compare_add,
        },
        // SAFETY: as above.
        sys::IBV_WR_LOCAL_INV => SendOp::LocalInv {
            rkey: unsafe { w.__bindgen_anon_1.invalidate_rkey },
        },
        sys::IBV_WR_BIND_MW => {
            // SAFETY: a BIND_MW work request carries the bind_mw member.
            let bm = unsafe { w.__bindgen_anon_2.bind_mw };
            let mw = mw_ref(bm.mw).ok_or(EINVAL)?;
            let info = bm.bind_info;
            let mr_lkey = if info.mr.is_null() {
                0
            } else {
                mr_ref(info.mr).ok_or(EINVAL)?.c.lkey
            };
            SendOp::BindMw {
                // The rkey alloc_mw gave (the window's `rkey` field is not
                // changed by a type 2 bind, as with rxe).
                mw_rkey: mw.c.rkey,
                new_rkey: Some(bm.rkey),
                mr_lkey,
                addr: info.addr,
                len: info.length,
                access: mw_access_from_c(info.mw_access_flags),
            }
        }
        _ => return Err(EINVAL),
    };
    let dest = if ud {
        // SAFETY: a UD work request carries the ud member.
        let u = unsafe { w.wr.ud };
        let ah = ah_ref(u.ah).ok_or(EINVAL)?;
        Some(ah.ah.dest(u.remote_qpn, u.remote_qkey))
    } else {
        None
    };
    Ok(SendWr {
        wr_id: w.wr_id,
        op,
        payload,
        flags: SendFlags {
            signaled: flags & sys::IBV_SEND_SIGNALED != 0,
            solicited: flags & sys::IBV_SEND_SOLICITED != 0,
            fence: flags & sys::IBV_SEND_FENCE != 0,
        },
        ud: dest,
    })
}

/// `ops.post_send`: 0, or an errno with `*bad_wr` at the first request not
/// posted.
pub(crate) unsafe extern "C" fn post_send(
    qp: *mut sys::ibv_qp,
    wr: *mut sys::ibv_send_wr,
    bad_wr: *mut *mut sys::ibv_send_wr,
) -> c_int {
    let fail = |w: *mut sys::ibv_send_wr, e: c_int| {
        if !bad_wr.is_null() {
            // SAFETY: the caller passes a writable pointer slot.
            unsafe { *bad_wr = w };
        }
        e
    };
    let Some(b) = qp_ref(qp) else {
        return fail(wr, EINVAL);
    };
    let ud = b.qp.qp_type() == QpType::Ud;
    let mut cur = wr;
    while !cur.is_null() {
        // SAFETY: the caller's list is a valid chain of work requests.
        let w = unsafe { &*cur };
        if w.num_sge < 0 || w.num_sge as u32 > b.max_send_sge {
            return fail(cur, EINVAL);
        }
        // SAFETY: as above.
        let r = unsafe { send_wr_from_c(w, ud, b.max_inline_data) };
        match r {
            Ok(sw) => {
                if let Err(e) = b.qp.post_send(sw) {
                    return fail(cur, report("ibv_post_send", &e));
                }
            }
            Err(e) => return fail(cur, e),
        }
        cur = w.next;
    }
    0
}

/// `ops.bind_mw` (behind `ibv_bind_mw`): binds a type 1 window by a work
/// request on `qp`'s send queue, as rxe's provider does (a type 2 window is
/// bound by posting `IBV_WR_BIND_MW`: `EINVAL`). The bind runs after the
/// work posted before it; `mw->rkey` becomes the new rkey at once (the key
/// byte incremented, `ibv_inc_rkey`). A signaled bind (or one on a QP with
/// `sq_sig_all`) completes with `IBV_WC_BIND_MW` on the send CQ like any
/// work request, raising its completion channel; a refused bind completes
/// with `IBV_WC_MW_BIND_ERR`. The provider's own checks come first, as
/// rxe's: no region but an address or length, or `IBV_ACCESS_ZERO_BASED`:
/// `EINVAL`; a region of another PD than the window: `EPERM`. 0 or an
/// errno. (In the daemon backend the bind is done at once and its
/// completion queued in front of the CQ's.)
pub(crate) unsafe extern "C" fn bind_mw(
    qp: *mut sys::ibv_qp,
    mw: *mut sys::ibv_mw,
    mw_bind: *mut sys::ibv_mw_bind,
) -> c_int {
    let (Some(q), Some(m)) = (qp_ref(qp), mw_ref(mw)) else {
        return EINVAL;
    };
    if mw_bind.is_null() || m.c.type_ != sys::IBV_MW_TYPE_1 {
        return EINVAL;
    }
    // SAFETY: the caller passes a readable ibv_mw_bind.
    let bind = unsafe { *mw_bind };
    let info = bind.bind_info;
    if info.mw_access_flags & sys::IBV_ACCESS_ZERO_BASED != 0 {
        return EINVAL;
    }
    let mr = if info.mr.is_null() {
        if info.addr != 0 || info.length != 0 {
            return EINVAL;
        }
        None
    } else {
        let Some(mr) = mr_ref(info.mr) else {
            return EINVAL;
        };
        // SAFETY: `info.mr` is a live region of ours (mr_ref checked it).
        if unsafe { (*info.mr).pd } != m.c.pd {
            return EPERM;
        }
        Some(mr)
    };
    let range = match mr {
        None => None,
        // A zero-length bind unbinds whatever its address.
        Some(mr) if info.length == 0 => Some((&mr.mr, 0, 0)),
        // The bind names the region's iova space (rxe checks it against
        // `mr->ibmr.iova`), which is `mr->addr` unless registered with
        // ibv_reg_mr_iova2.
        Some(mr) => match info.addr.checked_sub(mr.mr.addr()) {
            Some(o) => Some((&mr.mr, o as usize, info.length as usize)),
            None => return EINVAL,
        },
    };
    let access = mw_access_from_c(info.mw_access_flags);
    let signaled = bind.send_flags & sys::IBV_SEND_SIGNALED != 0;
    let rkey = match m.mw.post_bind(&q.qp, bind.wr_id, range, access, signaled) {
        Ok(k) => k,
        Err(e) => return report("ibv_bind_mw", &e),
    };
    // SAFETY: a live window of ours; the application does not use it
    // concurrently with its own bind (libibverbs's rule).
    unsafe { (*mw).rkey = rkey };
    0
}

/// Post a chain of receive requests through `post`; one with more than
/// `max_sge` SGEs is `EINVAL` (those before it stay posted, as `bad_wr`
/// tells the caller).
///
/// # Safety
/// `wr` is a valid chain; `bad_wr` is NULL or writable.
unsafe fn post_recv_chain(
    wr: *mut sys::ibv_recv_wr,
    bad_wr: *mut *mut sys::ibv_recv_wr,
    verb: &str,
    max_sge: u32,
    post: impl Fn(RecvWr) -> softverbs::Result<()>,
) -> c_int {
    let mut cur = wr;
    while !cur.is_null() {
        // SAFETY: the caller's list is a valid chain of work requests.
        let w = unsafe { &*cur };
        let r = if w.num_sge >= 0 && w.num_sge as u32 > max_sge {
            Err(EINVAL)
        } else {
            // SAFETY: as above.
            unsafe { sgl(w.sg_list, w.num_sge) }
        };
        let r = r.and_then(|sgl| {
            post(RecvWr {
                wr_id: w.wr_id,
                sgl,
            })
            .map_err(|e| report(verb, &e))
        });
        if let Err(e) = r {
            if !bad_wr.is_null() {
                // SAFETY: a writable pointer slot.
                unsafe { *bad_wr = cur };
            }
            return e;
        }
        cur = w.next;
    }
    0
}

/// `ops.post_recv`.
pub(crate) unsafe extern "C" fn post_recv(
    qp: *mut sys::ibv_qp,
    wr: *mut sys::ibv_recv_wr,
    bad_wr: *mut *mut sys::ibv_recv_wr,
) -> c_int {
    let Some(b) = qp_ref(qp) else {
        if !bad_wr.is_null() {
            // SAFETY: a writable pointer slot.
            unsafe { *bad_wr = wr };
        }
        return EINVAL;
    };
    // A QP on an SRQ has no receive queue of its own to bound (its
    // granted max_recv_sge reads 0): its posts go to softverbs unchecked.
    let max_sge = if b.srq.is_null() {
        b.max_recv_sge
    } else {
        u32::MAX
    };
    // SAFETY: forwarded from the caller.
    unsafe { post_recv_chain(wr, bad_wr, "ibv_post_recv", max_sge, |r| b.qp.post_recv(r)) }
}

/// `ops.post_srq_recv`.
pub(crate) unsafe extern "C" fn post_srq_recv(
    srq: *mut sys::ibv_srq,
    wr: *mut sys::ibv_recv_wr,
    bad_wr: *mut *mut sys::ibv_recv_wr,
) -> c_int {
    let Some(b) = srq_ref(srq) else {
        if !bad_wr.is_null() {
            // SAFETY: a writable pointer slot.
            unsafe { *bad_wr = wr };
        }
        return EINVAL;
    };
    // SAFETY: forwarded from the caller.
    unsafe {
        post_recv_chain(wr, bad_wr, "ibv_post_srq_recv", u32::MAX, |r| {
            b.srq.post_recv(r)
        })
    }
}

/// `ibv_create_srq`: `srq_init_attr->attr` is updated to what was granted.
///
/// # Safety
/// `pd` came from `ibv_alloc_pd`; `srq_init_attr` is readable and writable.
#[no_mangle]
pub unsafe extern "C" fn ibv_create_srq(
    pd: *mut sys::ibv_pd,
    srq_init_attr: *mut sys::ibv_srq_init_attr,
) -> *mut sys::ibv_srq {
    let Some(pb) = pd_ref(pd) else {
        return null(EINVAL);
    };
    if srq_init_attr.is_null() {
        return null(EINVAL);
    }
    // SAFETY: the caller passes a valid ibv_srq_init_attr.
    let ia = unsafe { &mut *srq_init_attr };
    let srq = match pb.pd.create_srq(ia.attr.max_wr, ia.attr.max_sge) {
        Ok(s) => s,
        Err(e) => return null(report("ibv_create_srq", &e)),
    };
    if ia.attr.srq_limit > 0 {
        if let Err(e) = srq.arm_limit(ia.attr.srq_limit) {
            return null(report("ibv_create_srq", &e));
        }
    }
    if let Ok(q) = srq.query() {
        ia.attr.max_wr = q.max_wr;
        ia.attr.max_sge = q.max_sge;
    }
    pb.users.fetch_add(1, Ordering::AcqRel);
    let id = srq.id();
    let ctx =
        crate::context::ctx_ref(pb.c.context).map_or(core::ptr::null(), |c| c as *const CtxBox);
    let p = Box::into_raw(Box::new(SrqBox {
        c: sys::ibv_srq {
            context: pb.c.context,
            srq_context: ia.srq_context,
            pd,
            handle: id,
            ..Default::default()
        },
        magic: SRQ_MAGIC,
        srq,
        ctx,
        pd: pb,
        users: AtomicUsize::new(0),
    }));
    // SAFETY: the context outlives its objects.
    if let Some(cb) = unsafe { ctx.as_ref() } {
        register(&cb.srqs, id, p as usize);
    }
    p.cast()
}

/// `ibv_modify_srq`: arming the limit is supported; resizing is not
/// (`EOPNOTSUPP`). 0 or an errno.
///
/// # Safety
/// `srq` came from `ibv_create_srq`; `attr` is readable.
#[no_mangle]
pub unsafe extern "C" fn ibv_modify_srq(
    srq: *mut sys::ibv_srq,
    attr: *mut sys::ibv_srq_attr,
    mask: c_int,
) -> c_int {
    let Some(b) = srq_ref(srq) else {
        return EINVAL;
    };
    if attr.is_null() {
        return EINVAL;
    }
    let mask = mask as c_uint;
    if mask & !(sys::IBV_SRQ_MAX_WR | sys::IBV_SRQ_LIMIT) != 0 {
        return EINVAL;
    }
    if mask & sys::IBV_SRQ_MAX_WR != 0 {
        return EOPNOTSUPP;
    }
    if mask & sys::IBV_SRQ_LIMIT != 0 {
        // SAFETY: the caller passes a readable ibv_srq_attr.
        if let Err(e) = b.srq.arm_limit(unsafe { (*attr).srq_limit }) {
            return report("ibv_modify_srq", &e);
        }
    }
    0
}

/// `ibv_query_srq`: 0 or an errno.
///
/// # Safety
/// `srq` came from `ibv_create_srq`; `attr` is writable.
#[no_mangle]
pub unsafe extern "C" fn ibv_query_srq(
    srq: *mut sys::ibv_srq,
    attr: *mut sys::ibv_srq_attr,
) -> c_int {
    let Some(b) = srq_ref(srq) else {
        return EINVAL;
    };
    if attr.is_null() {
        return EINVAL;
    }
    match b.srq.query() {
        Ok(q) => {
            // SAFETY: the caller passes a writable ibv_srq_attr.
            unsafe {
                attr.write(sys::ibv_srq_attr {
                    max_wr: q.max_wr,
                    max_sge: q.max_sge,
                    srq_limit: q.limit,
                })
            };
            0
        }
        Err(e) => report("ibv_query_srq", &e),
    }
}

/// `ibv_destroy_srq`: 0, or `EBUSY` while QPs use it.
///
/// # Safety
/// `srq` came from `ibv_create_srq`.
#[no_mangle]
pub unsafe extern "C" fn ibv_destroy_srq(srq: *mut sys::ibv_srq) -> c_int {
    let Some(b) = srq_ref(srq) else {
        return EINVAL;
    };
    if b.users.load(Ordering::Acquire) != 0 {
        return EBUSY;
    }
    // SAFETY: the PD and context outlive the SRQ.
    unsafe {
        (*b.pd).users.fetch_sub(1, Ordering::AcqRel);
        if let Some(cb) = b.ctx.as_ref() {
            unregister(&cb.srqs, b.srq.id());
        }
    }
    free_box!(b, SrqBox);
    0
}

/// `ibv_qp_to_qp_ex`: the extended QP of a QP created by
/// `ibv_create_qp_ex` with `IBV_QP_INIT_ATTR_SEND_OPS_FLAGS`, else NULL
/// (`EOPNOTSUPP`).
///
/// # Safety
/// Any pointer.
#[no_mangle]
pub unsafe extern "C" fn ibv_qp_to_qp_ex(qp: *mut sys::ibv_qp) -> *mut sys::ibv_qp_ex {
    match qp_ref(qp) {
        Some(b) if b.c.wr_start.is_some() => qp.cast(),
        _ => null(EOPNOTSUPP),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modify_mask_maps_each_attribute() {
        let mut a = sys::ibv_qp_attr {
            qp_state: sys::IBV_QPS_RTR,
            path_mtu: sys::IBV_MTU_1024,
            dest_qp_num: 0x12,
            rq_psn: 77,
            max_dest_rd_atomic: 1,
            min_rnr_timer: 12,
            ..Default::default()
        };
        a.ah_attr.is_global = 1;
        a.ah_attr.port_num = 1;
        a.ah_attr.grh.sgid_index = 1;
        let mask = sys::IBV_QP_STATE
            | sys::IBV_QP_AV
            | sys::IBV_QP_PATH_MTU
            | sys::IBV_QP_DEST_QPN
            | sys::IBV_QP_RQ_PSN
            | sys::IBV_QP_MAX_DEST_RD_ATOMIC
            | sys::IBV_QP_MIN_RNR_TIMER;
        let m = modify_attrs(&a, mask as c_int).unwrap();
        assert_eq!(m.qp_state, Some(QpState::Rtr));
        assert_eq!(m.path_mtu, Some(Mtu::Mtu1024));
        assert_eq!(m.dest_qp_num, Some(0x12));
        assert_eq!(m.rq_psn, Some(77));
        assert_eq!(m.ah_attr.unwrap().sgid_index, 1);
        assert_eq!(m.sq_psn, None);
        assert_eq!(modify_attrs(&a, sys::IBV_QP_CAP as c_int), Err(EOPNOTSUPP));
        assert_eq!(modify_attrs(&a, 1 << 30), Err(EINVAL));
        a.qp_state = 9;
        assert_eq!(modify_attrs(&a, sys::IBV_QP_STATE as c_int), Err(EINVAL));
    }

    #[test]
    fn send_wr_opcodes() {
        let mut sge = sys::ibv_sge {
            addr: 0x1000,
            length: 8,
            lkey: 5,
        };
        let mut w = sys::ibv_send_wr {
            wr_id: 1,
            sg_list: &mut sge,
            num_sge: 1,
            opcode: sys::IBV_WR_RDMA_WRITE_WITH_IMM,
            send_flags: sys::IBV_SEND_SIGNALED,
            ..Default::default()
        };
        w.__bindgen_anon_1.imm_data = u32::from_ne_bytes([1, 2, 3, 4]);
        w.wr.rdma.remote_addr = 0x2000;
        w.wr.rdma.rkey = 9;
        // SAFETY: the list and its SGE live on this stack frame.
        let s = unsafe { send_wr_from_c(&w, false, 8) }.unwrap();
        assert_eq!(
            s.op,
            SendOp::WriteWithImm {
                remote_addr: 0x2000,
                rkey: 9,
                imm: 0x0102_0304
            }
        );
        assert!(s.flags.signaled && !s.flags.fence);
        assert_eq!(
            s.payload,
            Payload::Sgl(vec![Sge {
                addr: 0x1000,
                length: 8,
                lkey: 5
            }])
        );
        let data = *b"inline!!";
        let mut inline_sge = sys::ibv_sge {
            addr: data.as_ptr() as u64,
            length: 8,
            lkey: 0,
        };
        w.sg_list = &mut inline_sge;
        w.opcode = sys::IBV_WR_SEND;
        w.send_flags = sys::IBV_SEND_INLINE;
        // SAFETY: the SGE names `data`, alive here.
        let s = unsafe { send_wr_from_c(&w, false, 8) }.unwrap();
        assert_eq!(s.payload, Payload::Inline(data.to_vec()));
        // SAFETY: as above (refused before the bytes are read).
        assert_eq!(unsafe { send_wr_from_c(&w, false, 7) }, Err(EINVAL));
        w.opcode = sys::IBV_WR_BIND_MW;
        // SAFETY: as above.
        assert_eq!(unsafe { send_wr_from_c(&w, false, 8) }, Err(EINVAL));
    }
}
