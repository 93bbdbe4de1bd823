//! Completion channels and completion queues, with the data-path ops the
//! header's inlines call through `ibv_context.ops`: `poll_cq` and
//! `req_notify_cq`.

#![allow(unsafe_code)] // C entry points (#[no_mangle]) and raw pointers from C

use core::ffi::{c_int, c_uint, c_void};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use softverbs::{CompletionChannel, Cq, Wc, WcOpcode};

use crate::context::{ctx_ref, fd_nonblocking, register, unregister, CtxBox};
use crate::objects::{box_ref, free_box};
use crate::sys;
use crate::util::{minus_one, null, report, EAGAIN, EBUSY, EINVAL};

const CHAN_MAGIC: u64 = 0x736f_6674_6368_3031;
const CQ_MAGIC: u64 = 0x736f_6674_6371_3031;

/// A completion channel.
#[repr(C)]
pub(crate) struct ChanBox {
    pub c: sys::ibv_comp_channel,
    magic: u64,
    ch: CompletionChannel,
    /// CQ id → `*mut CqBox` of the CQs reporting here.
    cqs: Mutex<HashMap<u32, usize>>,
}

/// A completion queue.
#[repr(C)]
pub(crate) struct CqBox {
    pub c: sys::ibv_cq,
    magic: u64,
    pub cq: Cq,
    chan: *const ChanBox,
    ctx: *const CtxBox,
    /// QPs using it.
    pub users: AtomicUsize,
    /// Reused by `poll_cq` so polling does not allocate.
    buf: Mutex<Vec<Wc>>,
}

box_ref!(chan_ref, sys::ibv_comp_channel, ChanBox, CHAN_MAGIC);
box_ref!(cq_ref, sys::ibv_cq, CqBox, CQ_MAGIC);

/// `ibv_create_comp_channel`: its `fd` is readable while an event is
/// pending.
///
/// # Safety
/// `context` came from `ibv_open_device`.
#[no_mangle]
pub unsafe extern "C" fn ibv_create_comp_channel(
    context: *mut sys::ibv_context,
) -> *mut sys::ibv_comp_channel {
    let Some(cb) = ctx_ref(context) else {
        return null(EINVAL);
    };
    match cb.ctx.create_comp_channel() {
        Ok(ch) => Box::into_raw(Box::new(ChanBox {
            c: sys::ibv_comp_channel {
                context,
                fd: ch.as_fd().as_raw_fd(),
                refcnt: 0,
            },
            magic: CHAN_MAGIC,
            ch,
            cqs: Mutex::default(),
        }))
        .cast(),
        Err(e) => null(report("ibv_create_comp_channel", &e)),
    }
}

/// `ibv_destroy_comp_channel`: 0, or `EBUSY` while CQs use it.
///
/// # Safety
/// `channel` came from `ibv_create_comp_channel`.
#[no_mangle]
pub unsafe extern "C" fn ibv_destroy_comp_channel(channel: *mut sys::ibv_comp_channel) -> c_int {
    let Some(b) = chan_ref(channel) else {
        return EINVAL;
    };
    if !b.cqs.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
        return EBUSY;
    }
    free_box!(b, ChanBox);
    0
}

/// `ibv_create_cq`.
///
/// # Safety
/// `context` came from `ibv_open_device`; `channel` is NULL or came from
/// `ibv_create_comp_channel` on the same context.
#[no_mangle]
pub unsafe extern "C" fn ibv_create_cq(
    context: *mut sys::ibv_context,
    cqe: c_int,
    cq_context: *mut c_void,
    channel: *mut sys::ibv_comp_channel,
    comp_vector: c_int,
) -> *mut sys::ibv_cq {
    let Some(cb) = ctx_ref(context) else {
        return null(EINVAL);
    };
    // As the kernel does: a completion vector the context does not have.
    if comp_vector < 0 || comp_vector >= cb.vctx.context.num_comp_vectors {
        return null(EINVAL);
    }
    let chan = if channel.is_null() {
        None
    } else {
        match chan_ref(channel) {
            Some(c) => Some(c),
            None => return null(EINVAL),
        }
    };
    if cqe < 1 || cqe as u32 > cb.dev.info.caps.max_cqe {
        return null(EINVAL);
    }
    let cq = match cb.ctx.create_cq(cqe as u32, chan.map(|c| &c.ch)) {
        Ok(c) => c,
        Err(e) => return null(report("ibv_create_cq", &e)),
    };
    let id = cq.id();
    let c = sys::ibv_cq {
        context,
        channel,
        cq_context,
        handle: id,
        cqe: cq.cqe() as c_int,
        ..Default::default()
    };
    let p = Box::into_raw(Box::new(CqBox {
        c,
        magic: CQ_MAGIC,
        cq,
        chan: chan.map_or(core::ptr::null(), |c| c as *const ChanBox),
        ctx: cb,
        users: AtomicUsize::new(0),
        buf: Mutex::new(Vec::with_capacity(64)),
    }));
    if let Some(ch) = chan {
        register(&ch.cqs, id, p as usize);
    }
    register(&cb.cqs, id, p as usize);
    p.cast()
}

/// `ibv_resize_cq`: 0 or an errno; `cq->cqe` becomes the size granted.
///
/// # Safety
/// `cq` came from `ibv_create_cq`.
#[no_mangle]
pub unsafe extern "C" fn ibv_resize_cq(cq: *mut sys::ibv_cq, cqe: c_int) -> c_int {
    let Some(b) = cq_ref(cq) else {
        return EINVAL;
    };
    if cqe < 1 {
        return EINVAL;
    }
    match b.cq.resize(cqe as u32) {
        Ok(n) => {
            // SAFETY: `cq` is ours and live; the caller does not race a resize
            // with other uses of the CQ (libibverbs's rule).
            unsafe { (*cq).cqe = n as c_int };
            0
        }
        Err(e) => report("ibv_resize_cq", &e),
    }
}

/// `ibv_destroy_cq`: 0, or `EBUSY` while QPs use it.
///
/// # Safety
/// `cq` came from `ibv_create_cq`.
#[no_mangle]
pub unsafe extern "C" fn ibv_destroy_cq(cq: *mut sys::ibv_cq) -> c_int {
    let Some(b) = cq_ref(cq) else {
        return EINVAL;
    };
    if b.users.load(Ordering::Acquire) != 0 {
        return EBUSY;
    }
    let id = b.cq.id();
    // SAFETY: the channel and context outlive their CQs (destroying the
    // channel is refused while CQs use it; closing the context first is
    // the application's error, as with libibverbs).
    unsafe {
        if let Some(ch) = b.chan.as_ref() {
            unregister(&ch.cqs, id);
        }
        if let Some(cb) = b.ctx.as_ref() {
            unregister(&cb.cqs, id);
        }
    }
    free_box!(b, CqBox);
    0
}

/// A softverbs completion as an `ibv_wc`.
pub(crate) fn wc_to_c(w: &Wc) -> sys::ibv_wc {
    let mut flags: c_uint = 0;
    let mut c = sys::ibv_wc {
        wr_id: w.wr_id,
        status: w.status as u32,
        opcode: match w.opcode {
            WcOpcode::Send => sys::IBV_WC_SEND,
            WcOpcode::RdmaWrite => sys::IBV_WC_RDMA_WRITE,
            WcOpcode::RdmaRead => sys::IBV_WC_RDMA_READ,
            WcOpcode::CompSwap => sys::IBV_WC_COMP_SWAP,
            WcOpcode::FetchAdd => sys::IBV_WC_FETCH_ADD,
            WcOpcode::Recv => sys::IBV_WC_RECV,
            WcOpcode::RecvRdmaWithImm => sys::IBV_WC_RECV_RDMA_WITH_IMM,
            WcOpcode::LocalInv => sys::IBV_WC_LOCAL_INV,
            WcOpcode::BindMw => sys::IBV_WC_BIND_MW,
        },
        byte_len: w.byte_len,
        qp_num: w.qp_num,
        src_qp: w.src_qp,
        ..Default::default()
    };
    if let Some(imm) = w.imm {
        flags |= sys::IBV_WC_WITH_IMM;
        c.__bindgen_anon_1.imm_data = imm.to_be();
    } else if let Some(rkey) = w.invalidated_rkey {
        flags |= sys::IBV_WC_WITH_INV;
        c.__bindgen_anon_1.invalidated_rkey = rkey;
    }
    if w.grh {
        flags |= sys::IBV_WC_GRH;
    }
    c.wc_flags = flags;
    c
}

/// `ops.poll_cq`: up to `num_entries` completions into `wc`; the number
/// polled, or -1.
pub(crate) unsafe extern "C" fn poll_cq(
    cq: *mut sys::ibv_cq,
    num_entries: c_int,
    wc: *mut sys::ibv_wc,
) -> c_int {
    let Some(b) = cq_ref(cq) else {
        return -1;
    };
    if num_entries <= 0 {
        return 0;
    }
    if wc.is_null() {
        return -1;
    }
    let mut buf = b.buf.lock().unwrap_or_else(|e| e.into_inner());
    buf.clear();
    match b.cq.poll(num_entries as usize, &mut buf) {
        Ok(0) => {
            drop(buf);
            // An application spinning on an empty CQ competes for the CPU
            // with the device's I/O thread that brings its completions (on a
            // 2-core machine that costs milliseconds): give the CPU away once
            // per empty poll.
            std::thread::yield_now();
            0
        }
        Ok(n) => {
            for (i, w) in buf.iter().take(n).enumerate() {
                // SAFETY: the caller's array holds num_entries >= n entries.
                unsafe { wc.add(i).write(wc_to_c(w)) };
            }
            n as c_int
        }
        Err(e) => {
            report("ibv_poll_cq", &e);
            -1
        }
    }
}

/// `ops.req_notify_cq`: 0 or an errno.
pub(crate) unsafe extern "C" fn req_notify_cq(
    cq: *mut sys::ibv_cq,
    solicited_only: c_int,
) -> c_int {
    let Some(b) = cq_ref(cq) else {
        return EINVAL;
    };
    match b.cq.req_notify(solicited_only != 0) {
        Ok(()) => 0,
        Err(e) => report("ibv_req_notify_cq", &e),
    }
}

/// `ibv_get_cq_event`: waits for the next CQ event on the channel (or fails
/// with `EAGAIN` when its fd is non-blocking). 0, or -1 with errno.
///
/// # Safety
/// `channel` came from `ibv_create_comp_channel`; `cq` and `cq_context` are
/// writable.
#[no_mangle]
pub unsafe extern "C" fn ibv_get_cq_event(
    channel: *mut sys::ibv_comp_channel,
    cq: *mut *mut sys::ibv_cq,
    cq_context: *mut *mut c_void,
) -> c_int {
    let Some(b) = chan_ref(channel) else {
        return minus_one(EINVAL);
    };
    if cq.is_null() || cq_context.is_null() {
        return minus_one(EINVAL);
    }
    let nonblock = fd_nonblocking(b.c.fd);
    loop {
        let id = if nonblock {
            match b.ch.try_get_cq_event() {
                Some(id) => id,
                None => return minus_one(EAGAIN),
            }
        } else {
            match b.ch.get_cq_event(None) {
                Some(id) => id,
                None => continue,
            }
        };
        let found = b
            .cqs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied();
        // An event of a CQ destroyed meanwhile is dropped.
        let Some(p) = found else { continue };
        let p = p as *mut sys::ibv_cq;
        // SAFETY: `p` is a live CQ of this channel (it is in the map until
        // destroyed); the out-pointers are writable.
        unsafe {
            *cq = p;
            *cq_context = (*p).cq_context;
        }
        return 0;
    }
}

/// `ibv_ack_cq_events`: counted in `cq->comp_events_completed`, as
/// libibverbs does (destroy does not wait for acks here).
///
/// # Safety
/// `cq` came from `ibv_create_cq`.
#[no_mangle]
pub unsafe extern "C" fn ibv_ack_cq_events(cq: *mut sys::ibv_cq, nevents: c_uint) {
    if cq_ref(cq).is_some() {
        // SAFETY: a live CQ of ours; the counter is only informative.
        unsafe { (*cq).comp_events_completed = (*cq).comp_events_completed.wrapping_add(nevents) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use softverbs_transport::{Completion, WcQueue, WcStatus};

    #[test]
    fn wc_fields() {
        let w = Completion {
            wr_id: 7,
            status: WcStatus::RemAccessErr,
            opcode: WcOpcode::RecvRdmaWithImm,
            queue: WcQueue::Recv,
            qp_num: 0x11,
            byte_len: 100,
            imm: Some(0x0102_0304),
            invalidated_rkey: None,
            src_qp: 3,
            grh: true,
            solicited: false,
        };
        let c = wc_to_c(&w);
        assert_eq!(c.wr_id, 7);
        assert_eq!(c.status, sys::IBV_WC_REM_ACCESS_ERR);
        assert_eq!(c.opcode, sys::IBV_WC_RECV_RDMA_WITH_IMM);
        assert_eq!(c.wc_flags, sys::IBV_WC_WITH_IMM | sys::IBV_WC_GRH);
        // SAFETY: imm_data was the member written.
        assert_eq!(
            unsafe { c.__bindgen_anon_1.imm_data }.to_ne_bytes(),
            [1, 2, 3, 4]
        );
        assert_eq!((c.byte_len, c.qp_num, c.src_qp), (100, 0x11, 3));
    }
}
