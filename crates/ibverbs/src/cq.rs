//! Completion channels and completion queues, with the data-path ops the
//! header's inlines call through `ibv_context.ops` (`poll_cq`,
//! `req_notify_cq`), and extended CQs: `verbs_context.create_cq_ex` (behind
//! the inline `ibv_create_cq_ex`) and the `start_poll` / `next_poll` /
//! `end_poll` / `read_*` pointers of `ibv_cq_ex` (behind `ibv_start_poll`,
//! `ibv_wc_read_*`).
//!
//! Every CQ is an `ibv_cq_ex` (whose first fields are an `ibv_cq`, so
//! `ibv_cq_ex_to_cq` is a cast); the pointers are set for CQs created by
//! `ibv_create_cq_ex`.

#![allow(unsafe_code)] // C entry points (#[no_mangle]) and raw pointers from C

use core::ffi::{c_int, c_uint, c_void};
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use softverbs::{CompletionChannel, Cq, Wc, WcOpcode};

use crate::context::{ctx_ref, fd_nonblocking, register, unregister, CtxBox};
use crate::objects::{box_ref, free_box};
use crate::sys;
use crate::util::{minus_one, null, report, EAGAIN, EBUSY, EINVAL, ENOENT, EOPNOTSUPP};

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
    /// An `ibv_cq_ex` for every CQ (its first fields are the `ibv_cq`).
    pub c: sys::ibv_cq_ex,
    magic: u64,
    pub cq: Cq,
    chan: *const ChanBox,
    ctx: *const CtxBox,
    /// QPs using it.
    pub users: AtomicUsize,
    /// Reused by `poll_cq` so polling does not allocate.
    buf: Mutex<Vec<Wc>>,
    /// Completions handed out before the device's: those the extended
    /// poll fetched ahead (and those kept by a QP's RESET clean-up); and the
    /// one an extended poll is on.
    ex: Mutex<ExPoll>,
}

/// The queue in front of the device's CQ and the extended poll's cursor.
#[derive(Default)]
struct ExPoll {
    pending: VecDeque<Wc>,
    cur: Option<Wc>,
}

/// The `wc_flags` an extended CQ can report: the standard ones (SLID, SL
/// and DLID path bits read 0 on RoCE), as rxe.
const SUPPORTED_WC_FLAGS: u64 = sys::IBV_WC_STANDARD_FLAGS as u64;

/// How many completions one extended poll fetches from the device at once.
const EX_BATCH: usize = 16;

box_ref!(chan_ref, sys::ibv_comp_channel, ChanBox, CHAN_MAGIC);
box_ref!(cq_ref, sys::ibv_cq, CqBox, CQ_MAGIC);

// An `ibv_cq_ex` begins with the fields of an `ibv_cq` (the header's
// `ibv_cq_ex_to_cq` is a cast): the CQ box hands out either.
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(sys::ibv_cq_ex, cqe) == offset_of!(sys::ibv_cq, cqe));
    assert!(offset_of!(sys::ibv_cq_ex, mutex) == offset_of!(sys::ibv_cq, mutex));
    assert!(
        offset_of!(sys::ibv_cq_ex, async_events_completed)
            == offset_of!(sys::ibv_cq, async_events_completed)
    );
    assert!(offset_of!(sys::ibv_cq_ex, comp_mask) >= core::mem::size_of::<sys::ibv_cq>());
};

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
    if cqe < 1 || comp_vector < 0 {
        return null(EINVAL);
    }
    create_cq(
        context,
        cqe as u32,
        cq_context,
        channel,
        comp_vector as u32,
        false,
    )
    .cast()
}

/// A CQ of `cqe` entries; `extended` sets the `ibv_cq_ex` poll pointers.
fn create_cq(
    context: *mut sys::ibv_context,
    cqe: u32,
    cq_context: *mut c_void,
    channel: *mut sys::ibv_comp_channel,
    comp_vector: u32,
    extended: bool,
) -> *mut sys::ibv_cq_ex {
    let Some(cb) = ctx_ref(context) else {
        return null(EINVAL);
    };
    // As the kernel does: a completion vector the context does not have.
    if comp_vector >= cb.vctx.context.num_comp_vectors as u32 {
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
    if cqe < 1 || cqe > cb.dev.info.caps.max_cqe {
        return null(EINVAL);
    }
    let cq = match cb.ctx.create_cq(cqe, chan.map(|c| &c.ch)) {
        Ok(c) => c,
        Err(e) => return null(report("ibv_create_cq", &e)),
    };
    let id = cq.id();
    let mut c = sys::ibv_cq_ex {
        context,
        channel,
        cq_context,
        handle: id,
        cqe: cq.cqe() as c_int,
        ..Default::default()
    };
    if extended {
        c.start_poll = Some(start_poll);
        c.next_poll = Some(next_poll);
        c.end_poll = Some(end_poll);
        c.read_opcode = Some(read_opcode);
        c.read_vendor_err = Some(read_vendor_err);
        c.read_byte_len = Some(read_byte_len);
        c.read_imm_data = Some(read_imm_data);
        c.read_qp_num = Some(read_qp_num);
        c.read_src_qp = Some(read_src_qp);
        c.read_wc_flags = Some(read_wc_flags);
        c.read_slid = Some(read_slid);
        c.read_sl = Some(read_sl);
        c.read_dlid_path_bits = Some(read_dlid_path_bits);
    }
    let p = Box::into_raw(Box::new(CqBox {
        c,
        magic: CQ_MAGIC,
        cq,
        chan: chan.map_or(core::ptr::null(), |c| c as *const ChanBox),
        ctx: cb,
        users: AtomicUsize::new(0),
        buf: Mutex::new(Vec::with_capacity(64)),
        ex: Mutex::default(),
    }));
    if let Some(ch) = chan {
        register(&ch.cqs, id, p as usize);
    }
    register(&cb.cqs, id, p as usize);
    p.cast()
}

/// `verbs_context.create_cq_ex` (behind the header's inline
/// `ibv_create_cq_ex`): `wc_flags` beyond the standard ones (timestamps,
/// CVLAN, flow tag, TM), `IBV_CREATE_CQ_ATTR_IGNORE_OVERRUN` and parent
/// domains are `EOPNOTSUPP`.
///
/// # Safety
/// `attr` is a readable `ibv_cq_init_attr_ex`.
pub(crate) unsafe extern "C" fn create_cq_ex(
    context: *mut sys::ibv_context,
    attr: *mut sys::ibv_cq_init_attr_ex,
) -> *mut sys::ibv_cq_ex {
    if attr.is_null() {
        return null(EINVAL);
    }
    // SAFETY: the caller passes a valid ibv_cq_init_attr_ex.
    let a = unsafe { &*attr };
    let known = sys::IBV_CQ_INIT_ATTR_MASK_FLAGS | sys::IBV_CQ_INIT_ATTR_MASK_PD;
    if a.comp_mask & !known != 0 {
        return null(EINVAL);
    }
    if a.comp_mask & sys::IBV_CQ_INIT_ATTR_MASK_PD != 0 {
        return null(EOPNOTSUPP);
    }
    if a.comp_mask & sys::IBV_CQ_INIT_ATTR_MASK_FLAGS != 0 {
        let known_flags =
            sys::IBV_CREATE_CQ_ATTR_SINGLE_THREADED | sys::IBV_CREATE_CQ_ATTR_IGNORE_OVERRUN;
        if a.flags & !known_flags != 0 {
            return null(EINVAL);
        }
        if a.flags & sys::IBV_CREATE_CQ_ATTR_IGNORE_OVERRUN != 0 {
            return null(EOPNOTSUPP);
        }
    }
    if a.wc_flags & !SUPPORTED_WC_FLAGS != 0 {
        return null(EOPNOTSUPP);
    }
    create_cq(context, a.cqe, a.cq_context, a.channel, a.comp_vector, true)
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
        vendor_err: w.vendor_err,
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
    let mut done = 0usize;
    {
        let mut ex = b.ex.lock().unwrap_or_else(|e| e.into_inner());
        while done < num_entries as usize {
            let Some(w) = ex.pending.pop_front() else {
                break;
            };
            // SAFETY: the caller's array holds num_entries > done entries.
            unsafe { wc.add(done).write(wc_to_c(&w)) };
            done += 1;
        }
    }
    if done == num_entries as usize {
        return done as c_int;
    }
    // SAFETY: the caller's array holds num_entries > done entries.
    let wc = unsafe { wc.add(done) };
    let mut buf = b.buf.lock().unwrap_or_else(|e| e.into_inner());
    buf.clear();
    match b.cq.poll(num_entries as usize - done, &mut buf) {
        Ok(0) if done > 0 => done as c_int,
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
            (done + n) as c_int
        }
        Err(e) if done == 0 => {
            report("ibv_poll_cq", &e);
            -1
        }
        Err(_) => done as c_int,
    }
}

/// Removes the completions of QP `qpn` from `cq` (those already queued
/// here and those still in the device), keeping the others in order: what
/// hardware providers (mlx4, mlx5) do when a QP is moved to RESET, so that
/// flushed work of the QP's earlier life does not surface after it is
/// brought back up.
pub(crate) fn clean(cq: &CqBox, qpn: u32) {
    let mut ex = cq.ex.lock().unwrap_or_else(|e| e.into_inner());
    let mut buf = cq.buf.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        buf.clear();
        match cq.cq.poll(EX_BATCH, &mut buf) {
            Ok(n) if n > 0 => ex.pending.extend(buf.drain(..)),
            _ => break,
        }
    }
    ex.pending.retain(|w| w.qp_num != qpn);
}

/// The CQ of an `ibv_cq_ex` and its poll state, with `f` run on them.
fn with_ex<R>(cq: *mut sys::ibv_cq_ex, none: R, f: impl FnOnce(&CqBox, &mut ExPoll) -> R) -> R {
    match cq_ref(cq.cast()) {
        Some(b) => {
            let mut ex = b.ex.lock().unwrap_or_else(|e| e.into_inner());
            f(b, &mut ex)
        }
        None => none,
    }
}

/// Move to the next completion: 0 (with `status` and `wr_id` set), `ENOENT`
/// when the CQ is empty, or an errno.
fn advance(cq: *mut sys::ibv_cq_ex) -> c_int {
    let r = with_ex(cq, EINVAL, |b, ex| {
        if ex.pending.is_empty() {
            let mut buf = b.buf.lock().unwrap_or_else(|e| e.into_inner());
            buf.clear();
            match b.cq.poll(EX_BATCH, &mut buf) {
                Ok(_) => ex.pending.extend(buf.drain(..)),
                Err(e) => return report("ibv_start_poll", &e),
            }
        }
        ex.cur = ex.pending.pop_front();
        match &ex.cur {
            Some(w) => {
                // SAFETY: `cq` is a live CQ of ours (cq_ref checked it); the
                // application reads these fields after the call, not during.
                unsafe {
                    (*cq).status = w.status as u32;
                    (*cq).wr_id = w.wr_id;
                }
                0
            }
            None => ENOENT,
        }
    });
    if r == ENOENT {
        // As poll_cq: let the device's I/O thread run.
        std::thread::yield_now();
    }
    r
}

unsafe extern "C" fn start_poll(
    cq: *mut sys::ibv_cq_ex,
    _attr: *mut sys::ibv_poll_cq_attr,
) -> c_int {
    advance(cq)
}

unsafe extern "C" fn next_poll(cq: *mut sys::ibv_cq_ex) -> c_int {
    advance(cq)
}

unsafe extern "C" fn end_poll(cq: *mut sys::ibv_cq_ex) {
    with_ex(cq, (), |_, ex| ex.cur = None);
}

/// A field of the current completion as the `ibv_wc` that `poll_cq` would
/// give (zeroed when there is none).
fn cur_wc(cq: *mut sys::ibv_cq_ex) -> sys::ibv_wc {
    with_ex(cq, sys::ibv_wc::default(), |_, ex| {
        ex.cur.as_ref().map(wc_to_c).unwrap_or_default()
    })
}

unsafe extern "C" fn read_opcode(cq: *mut sys::ibv_cq_ex) -> sys::ibv_wc_opcode {
    cur_wc(cq).opcode
}

unsafe extern "C" fn read_vendor_err(cq: *mut sys::ibv_cq_ex) -> u32 {
    cur_wc(cq).vendor_err
}

unsafe extern "C" fn read_byte_len(cq: *mut sys::ibv_cq_ex) -> u32 {
    cur_wc(cq).byte_len
}

unsafe extern "C" fn read_imm_data(cq: *mut sys::ibv_cq_ex) -> sys::__be32 {
    // SAFETY: both members of the union are a u32.
    unsafe { cur_wc(cq).__bindgen_anon_1.imm_data }
}

unsafe extern "C" fn read_qp_num(cq: *mut sys::ibv_cq_ex) -> u32 {
    cur_wc(cq).qp_num
}

unsafe extern "C" fn read_src_qp(cq: *mut sys::ibv_cq_ex) -> u32 {
    cur_wc(cq).src_qp
}

unsafe extern "C" fn read_wc_flags(cq: *mut sys::ibv_cq_ex) -> c_uint {
    cur_wc(cq).wc_flags
}

unsafe extern "C" fn read_slid(cq: *mut sys::ibv_cq_ex) -> u32 {
    cur_wc(cq).slid.into()
}

unsafe extern "C" fn read_sl(cq: *mut sys::ibv_cq_ex) -> u8 {
    cur_wc(cq).sl
}

unsafe extern "C" fn read_dlid_path_bits(cq: *mut sys::ibv_cq_ex) -> u8 {
    cur_wc(cq).dlid_path_bits
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
            vendor_err: 0,
            unsolicited: false,
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
