//! Contexts: `ibv_open_device` / `ibv_close_device`, the device and port
//! queries, GIDs and P_Keys, and asynchronous events.
//!
//! A context is a [`CtxBox`]: a `verbs_context` (whose last field is the
//! `ibv_context` the application sees, so `verbs_context` sits directly
//! before it as the header's `verbs_get_ctx` expects) followed by the
//! softverbs [`Context`] and the maps from driver ids to C objects that
//! completion and asynchronous events need.

#![allow(unsafe_code)] // C entry points (#[no_mangle]) and raw pointers from C

use core::ffi::{c_int, c_uint, c_void};
use core::mem::{offset_of, size_of};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Mutex;

use softverbs::{AsyncEvent, Context, PortAttr, PortState};

use crate::device::{dev_ref, DevBox};
use crate::sys;
use crate::util::{
    gid_to_c, minus_one, mtu_enum, null, report, set_errno, EAGAIN, EINVAL, ENODATA,
};

const CTX_MAGIC: u64 = 0x736f_6674_6374_7831; // "softctx1"

/// A context: the C structs first, then ours.
#[repr(C)]
pub(crate) struct CtxBox {
    pub vctx: sys::verbs_context,
    magic: u64,
    pub ctx: Context,
    pub dev: &'static DevBox,
    /// QPN → `*mut QpBox`, for asynchronous events.
    pub qps: Mutex<HashMap<u32, usize>>,
    /// CQ id → `*mut CqBox`.
    pub cqs: Mutex<HashMap<u32, usize>>,
    /// SRQ id → `*mut SrqBox`.
    pub srqs: Mutex<HashMap<u32, usize>>,
    /// What `cmd_fd` names: `/dev/null`, so that programs that `dup` it
    /// (pyverbs's shared-PD test, before `ibv_import_device`, which is
    /// `EOPNOTSUPP`) get a valid descriptor.
    _cmd_file: Option<std::fs::File>,
}

const CTX_OFFSET: usize = offset_of!(CtxBox, vctx) + offset_of!(sys::verbs_context, context);

/// The context behind an `ibv_context` pointer, if it is one of ours.
pub(crate) fn ctx_ref<'a>(p: *mut sys::ibv_context) -> Option<&'a CtxBox> {
    if p.is_null() {
        return None;
    }
    // SAFETY: every ibv_context we hand out lies CTX_OFFSET bytes into a
    // live CtxBox; the magic check rejects (most) foreign pointers.
    let b = unsafe { &*(p.cast::<u8>().sub(CTX_OFFSET).cast::<CtxBox>()) };
    (b.magic == CTX_MAGIC).then_some(b)
}

/// Map insertion helper (ids are unique per device).
pub(crate) fn register(map: &Mutex<HashMap<u32, usize>>, id: u32, p: usize) {
    map.lock().unwrap_or_else(|e| e.into_inner()).insert(id, p);
}

/// Map removal helper.
pub(crate) fn unregister(map: &Mutex<HashMap<u32, usize>>, id: u32) {
    map.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
}

fn lookup(map: &Mutex<HashMap<u32, usize>>, id: u32) -> Option<usize> {
    map.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .copied()
}

/// `ibv_open_device`.
///
/// # Safety
/// `device` came from `ibv_get_device_list`.
#[no_mangle]
pub unsafe extern "C" fn ibv_open_device(device: *mut sys::ibv_device) -> *mut sys::ibv_context {
    let Some(dev) = dev_ref(device) else {
        return null(EINVAL);
    };
    let ctx = match Context::open(&dev.info.name) {
        Ok(c) => c,
        Err(e) => return null(report("ibv_open_device", &e)),
    };
    let cmd_file = std::fs::File::open("/dev/null").ok();
    let ops = sys::ibv_context_ops {
        poll_cq: Some(crate::cq::poll_cq),
        req_notify_cq: Some(crate::cq::req_notify_cq),
        post_send: Some(crate::qp::post_send),
        post_recv: Some(crate::qp::post_recv),
        post_srq_recv: Some(crate::qp::post_srq_recv),
        alloc_mw: Some(crate::objects::alloc_mw),
        dealloc_mw: Some(crate::objects::dealloc_mw),
        bind_mw: Some(crate::qp::bind_mw),
        ..Default::default()
    };
    let context = sys::ibv_context {
        device,
        ops,
        cmd_fd: cmd_file.as_ref().map_or(-1, |f| f.as_raw_fd()),
        async_fd: ctx.async_events().as_fd().as_raw_fd(),
        num_comp_vectors: 1,
        // PTHREAD_MUTEX_INITIALIZER is all zeros in glibc.
        mutex: Default::default(),
        // __VERBS_ABI_IS_EXTENDED: the verbs_context before it is valid.
        abi_compat: usize::MAX as *mut c_void,
    };
    let vctx = sys::verbs_context {
        query_port: Some(verbs_query_port),
        query_device_ex: Some(verbs_query_device_ex),
        create_qp_ex: Some(crate::qpex::create_qp_ex),
        create_cq_ex: Some(crate::cq::create_cq_ex),
        sz: size_of::<sys::verbs_context>() as sys::size_t,
        context,
        ..Default::default()
    };
    let b = Box::new(CtxBox {
        vctx,
        magic: CTX_MAGIC,
        ctx,
        dev,
        qps: Mutex::default(),
        cqs: Mutex::default(),
        srqs: Mutex::default(),
        _cmd_file: cmd_file,
    });
    let p = Box::into_raw(b);
    // SAFETY: `p` is a live box; the context field is inside it.
    unsafe { core::ptr::addr_of_mut!((*p).vctx.context) }
}

/// `ibv_close_device`: frees the context. Objects the application did not
/// destroy keep what they need alive (they are leaked, not freed).
///
/// # Safety
/// `context` came from `ibv_open_device` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ibv_close_device(context: *mut sys::ibv_context) -> c_int {
    let Some(b) = ctx_ref(context) else {
        return minus_one(EINVAL);
    };
    let p = (b as *const CtxBox).cast_mut();
    // SAFETY: allocated by ibv_open_device with Box; closed once. The magic
    // is cleared first so a stale pointer is refused later.
    unsafe {
        (*p).magic = 0;
        drop(Box::from_raw(p));
    }
    0
}

/// Fill an `ibv_device_attr` from the device's capabilities.
pub(crate) fn device_attr(dev: &DevBox) -> sys::ibv_device_attr {
    let c = &dev.info.caps;
    let i = |v: u32| v.min(i32::MAX as u32) as c_int;
    let mut flags = sys::IBV_DEVICE_BAD_PKEY_CNTR
        | sys::IBV_DEVICE_BAD_QKEY_CNTR
        | sys::IBV_DEVICE_CHANGE_PHY_PORT
        | sys::IBV_DEVICE_UD_AV_PORT_ENFORCE
        | sys::IBV_DEVICE_PORT_ACTIVE_EVENT
        | sys::IBV_DEVICE_SYS_IMAGE_GUID
        | sys::IBV_DEVICE_RC_RNR_NAK_GEN;
    if c.ops.memory_windows {
        flags |= sys::IBV_DEVICE_MEM_WINDOW;
    }
    let mut a = sys::ibv_device_attr {
        node_guid: c.node_guid.to_be(),
        sys_image_guid: c.sys_image_guid.to_be(),
        max_mr_size: c.max_mr_size,
        page_size_cap: c.page_size_cap,
        vendor_id: c.vendor_id,
        vendor_part_id: c.vendor_part_id,
        hw_ver: c.hw_ver,
        max_qp: i(c.max_qp),
        max_qp_wr: i(c.max_qp_wr),
        device_cap_flags: flags,
        max_sge: i(c.max_sge),
        max_sge_rd: i(c.max_sge_rd),
        max_cq: i(c.max_cq),
        max_cqe: i(c.max_cqe),
        max_mr: i(c.max_mr),
        max_pd: i(c.max_pd),
        max_qp_rd_atom: i(c.max_qp_rd_atom),
        max_res_rd_atom: i(c.max_res_rd_atom),
        max_qp_init_rd_atom: i(c.max_qp_init_rd_atom),
        atomic_cap: match c.atomic_cap {
            softverbs::AtomicCap::None => sys::IBV_ATOMIC_NONE,
            softverbs::AtomicCap::Hca => sys::IBV_ATOMIC_HCA,
            softverbs::AtomicCap::Glob => sys::IBV_ATOMIC_GLOB,
        },
        max_mw: i(c.max_mw),
        max_ah: i(c.max_ah),
        max_srq: i(c.max_srq),
        max_srq_wr: i(c.max_srq_wr),
        max_srq_sge: i(c.max_srq_sge),
        max_pkeys: c.max_pkeys,
        local_ca_ack_delay: c.local_ca_ack_delay,
        phys_port_cnt: c.phys_port_cnt,
        ..Default::default()
    };
    crate::util::copy_cstr(&mut a.fw_ver, &c.fw_ver);
    a
}

/// `ibv_query_device`: 0 or an errno.
///
/// # Safety
/// `context` came from `ibv_open_device`; `attr` is writable.
#[no_mangle]
pub unsafe extern "C" fn ibv_query_device(
    context: *mut sys::ibv_context,
    attr: *mut sys::ibv_device_attr,
) -> c_int {
    let Some(b) = ctx_ref(context) else {
        return EINVAL;
    };
    if attr.is_null() {
        return EINVAL;
    }
    // SAFETY: the caller passes a writable ibv_device_attr.
    unsafe { attr.write(device_attr(b.dev)) };
    0
}

/// `verbs_context.query_device_ex` (behind the header's inline
/// `ibv_query_device_ex`): the basic attributes, `device_cap_flags_ex`
/// (the same flags) and `phys_port_cnt_ex`; everything softverbs has no
/// notion of (ODP, TSO, RSS, tag matching, timestamps, …) stays zero.
unsafe extern "C" fn verbs_query_device_ex(
    context: *mut sys::ibv_context,
    input: *const sys::ibv_query_device_ex_input,
    attr: *mut sys::ibv_device_attr_ex,
    attr_size: sys::size_t,
) -> c_int {
    let Some(b) = ctx_ref(context) else {
        return EINVAL;
    };
    // SAFETY: `input` is NULL or points to the caller's input struct.
    if !input.is_null() && unsafe { (*input).comp_mask } != 0 {
        return EINVAL;
    }
    let orig = size_of::<sys::ibv_device_attr>();
    if attr.is_null() || (attr_size as usize) < orig {
        return EINVAL;
    }
    let orig_attr = device_attr(b.dev);
    let a = sys::ibv_device_attr_ex {
        device_cap_flags_ex: u64::from(orig_attr.device_cap_flags),
        phys_port_cnt_ex: u32::from(orig_attr.phys_port_cnt),
        orig_attr,
        ..Default::default()
    };
    let n = (attr_size as usize).min(size_of::<sys::ibv_device_attr_ex>());
    // SAFETY: the caller's `attr` holds `attr_size` writable bytes (an
    // older, smaller ibv_device_attr_ex gets its prefix); `a` is a local.
    unsafe {
        core::ptr::copy_nonoverlapping(
            (&a as *const sys::ibv_device_attr_ex).cast::<u8>(),
            attr.cast::<u8>(),
            n,
        )
    };
    0
}

/// An `ibv_port_attr` from softverbs's port attributes (the values Linux
/// rxe reports where softverbs has no notion of them).
pub(crate) fn port_attr(p: &PortAttr, max_pkeys: u16) -> sys::ibv_port_attr {
    let active = p.state == PortState::Active;
    sys::ibv_port_attr {
        state: if active {
            sys::IBV_PORT_ACTIVE
        } else {
            sys::IBV_PORT_DOWN
        },
        max_mtu: mtu_enum(p.max_mtu),
        active_mtu: mtu_enum(p.active_mtu),
        gid_tbl_len: c_gid_tbl_len(p.gid_tbl_len) as c_int,
        port_cap_flags: sys::IBV_PORT_CM_SUP,
        max_msg_sz: 0x80_0000,
        pkey_tbl_len: max_pkeys,
        max_vl_num: 1,
        active_width: 1,                        // 1X
        active_speed: 1,                        // 2.5 Gb/s
        phys_state: if active { 5 } else { 3 }, // LinkUp / Disabled
        link_layer: sys::IBV_LINK_LAYER_ETHERNET as u8,
        ..Default::default()
    }
}

fn query_port_into(context: *mut sys::ibv_context, port: u8, out: *mut u8, len: usize) -> c_int {
    let Some(b) = ctx_ref(context) else {
        return EINVAL;
    };
    if out.is_null() {
        return EINVAL;
    }
    match b.ctx.query_port(port) {
        Ok(p) => {
            let a = port_attr(&p, b.dev.info.caps.max_pkeys);
            let n = len.min(size_of::<sys::ibv_port_attr>());
            // SAFETY: the caller's buffer holds `len` >= n bytes; `a` is a
            // plain C struct of at least n bytes.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    (&a as *const sys::ibv_port_attr).cast::<u8>(),
                    out,
                    n,
                )
            };
            0
        }
        Err(e) => report("ibv_query_port", &e),
    }
}

/// `ibv_query_port@@IBVERBS_1.1` (what the header's inline calls when the
/// context has no `query_port` op; ours has one, but older binaries call
/// this directly). 0 or an errno.
///
/// # Safety
/// `context` came from `ibv_open_device`; `attr` holds an `ibv_port_attr`.
#[no_mangle]
pub unsafe extern "C" fn ibv_query_port(
    context: *mut sys::ibv_context,
    port_num: u8,
    attr: *mut sys::_compat_ibv_port_attr,
) -> c_int {
    query_port_into(
        context,
        port_num,
        attr.cast(),
        size_of::<sys::ibv_port_attr>(),
    )
}

/// `verbs_context.query_port`: the header's `ibv_query_port` inline.
unsafe extern "C" fn verbs_query_port(
    context: *mut sys::ibv_context,
    port_num: u8,
    attr: *mut sys::ibv_port_attr,
    len: sys::size_t,
) -> c_int {
    query_port_into(context, port_num, attr.cast(), len as usize)
}

/// `ibv_query_gid`: 0, or -1 with errno.
///
/// # Safety
/// `context` came from `ibv_open_device`; `gid` is writable.
#[no_mangle]
pub unsafe extern "C" fn ibv_query_gid(
    context: *mut sys::ibv_context,
    port_num: u8,
    index: c_int,
    gid: *mut sys::ibv_gid,
) -> c_int {
    let Some(b) = ctx_ref(context) else {
        return minus_one(EINVAL);
    };
    if gid.is_null() || index < 0 || index > u16::MAX as c_int {
        return minus_one(EINVAL);
    }
    match gid_slot(b, port_num, index as u32, "ibv_query_gid") {
        Ok(g) => {
            let g = g.unwrap_or(softverbs::Gid::ZERO);
            // SAFETY: the caller passes a writable ibv_gid.
            unsafe { gid.write(gid_to_c(&g)) };
            0
        }
        Err(e) => minus_one(e),
    }
}

/// `ibv_query_pkey`: index 0 holds the default P_Key 0xffff, the rest of the
/// table is empty, as with rxe. 0, or -1 with errno.
///
/// # Safety
/// `context` came from `ibv_open_device`; `pkey` is writable.
#[no_mangle]
pub unsafe extern "C" fn ibv_query_pkey(
    context: *mut sys::ibv_context,
    port_num: u8,
    index: c_int,
    pkey: *mut sys::__be16,
) -> c_int {
    let Some(b) = ctx_ref(context) else {
        return minus_one(EINVAL);
    };
    if pkey.is_null()
        || port_num == 0
        || port_num > b.dev.info.caps.phys_port_cnt
        || index < 0
        || index >= c_int::from(b.dev.info.caps.max_pkeys)
    {
        return minus_one(EINVAL);
    }
    let v: u16 = if index == 0 { 0xffff } else { 0 };
    // SAFETY: the caller passes a writable __be16.
    unsafe { pkey.write(v.to_be()) };
    0
}

/// `ibv_get_pkey_index`: the index of `pkey` (network order), or -1.
///
/// # Safety
/// `context` came from `ibv_open_device`.
#[no_mangle]
pub unsafe extern "C" fn ibv_get_pkey_index(
    context: *mut sys::ibv_context,
    port_num: u8,
    pkey: sys::__be16,
) -> c_int {
    match ctx_ref(context) {
        Some(b) if port_num >= 1 && port_num <= b.dev.info.caps.phys_port_cnt => {
            if u16::from_be(pkey) | 0x8000 == 0xffff {
                0
            } else {
                minus_one(crate::util::ENOENT)
            }
        }
        _ => minus_one(EINVAL),
    }
}

/// `ibv_query_gid_type` (IBVERBS_PRIVATE_34, what `ibv_devinfo` asks):
/// every GID of a soft RoCE port is RoCE v2. 0, or -1 with errno.
///
/// # Safety
/// `context` came from `ibv_open_device`; `gid_type` is writable.
#[no_mangle]
pub unsafe extern "C" fn ibv_query_gid_type(
    context: *mut sys::ibv_context,
    port_num: u8,
    index: c_uint,
    gid_type: *mut c_uint,
) -> c_int {
    let Some(b) = ctx_ref(context) else {
        return minus_one(EINVAL);
    };
    if gid_type.is_null() || index > u32::from(u16::MAX) {
        return minus_one(EINVAL);
    }
    match gid_slot(b, port_num, index, "ibv_query_gid_type") {
        Ok(g) => {
            // IBV_GID_TYPE_SYSFS_ROCE_V2, or for an empty slot
            // IBV_GID_TYPE_SYSFS_IB_ROCE_V1, libibverbs's answer (driver.h).
            // SAFETY: the caller passes a writable enum.
            unsafe { gid_type.write(c_uint::from(g.is_some())) };
            0
        }
        Err(e) => minus_one(e),
    }
}

/// The least number of GID slots a port shows C programs: the device's
/// GIDs, then empty slots, as a kernel GID table has free slots (rxe's
/// holds 1024), so that an empty index can be asked about (`ENODATA`).
const C_GID_TBL_MIN: u32 = 16;

/// The `gid_tbl_len` C programs see for a device table of `len` GIDs.
fn c_gid_tbl_len(len: u32) -> u32 {
    len.max(C_GID_TBL_MIN)
}

/// GID `index` of `port` as C sees the table: `Some` GID, `None` for an
/// empty slot, or an errno (`EINVAL` past the table).
fn gid_slot(b: &CtxBox, port: u8, index: u32, verb: &str) -> Result<Option<softverbs::Gid>, c_int> {
    let len = b
        .ctx
        .query_port(port)
        .map_err(|e| report(verb, &e))?
        .gid_tbl_len;
    if index >= c_gid_tbl_len(len) {
        return Err(EINVAL);
    }
    if index >= len {
        return Ok(None);
    }
    let g = b
        .ctx
        .query_gid(port, index as u16)
        .map_err(|e| report(verb, &e))?;
    Ok((g != softverbs::Gid::ZERO).then_some(g))
}

fn gid_entry(b: &CtxBox, port: u8, index: u32) -> Result<sys::ibv_gid_entry, c_int> {
    let Some(g) = gid_slot(b, port, index, "ibv_query_gid_ex")? else {
        return Err(ENODATA);
    };
    Ok(sys::ibv_gid_entry {
        gid: gid_to_c(&g),
        gid_index: index,
        port_num: port.into(),
        gid_type: sys::IBV_GID_TYPE_ROCE_V2,
        ndev_ifindex: 0,
    })
}

/// `_ibv_query_gid_ex` (behind the `ibv_query_gid_ex` inline): 0 or an errno
/// (`ENODATA` for an empty entry).
///
/// # Safety
/// `context` came from `ibv_open_device`; `entry` holds `entry_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn _ibv_query_gid_ex(
    context: *mut sys::ibv_context,
    port_num: u32,
    gid_index: u32,
    entry: *mut sys::ibv_gid_entry,
    flags: u32,
    entry_size: usize,
) -> c_int {
    let Some(b) = ctx_ref(context) else {
        return EINVAL;
    };
    if entry.is_null() || flags != 0 || entry_size < size_of::<sys::ibv_gid_entry>() {
        return EINVAL;
    }
    let Ok(port) = u8::try_from(port_num) else {
        return EINVAL;
    };
    match gid_entry(b, port, gid_index) {
        Ok(e) => {
            // SAFETY: the caller's buffer holds at least one entry.
            unsafe { entry.write(e) };
            0
        }
        Err(e) => e,
    }
}

/// `_ibv_query_gid_table` (behind `ibv_query_gid_table`): the number of
/// valid entries written, or a negative errno.
///
/// # Safety
/// `context` came from `ibv_open_device`; `entries` holds `max_entries`
/// entries of `entry_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn _ibv_query_gid_table(
    context: *mut sys::ibv_context,
    entries: *mut sys::ibv_gid_entry,
    max_entries: usize,
    flags: u32,
    entry_size: usize,
) -> isize {
    let Some(b) = ctx_ref(context) else {
        return -(EINVAL as isize);
    };
    if entries.is_null() || flags != 0 || entry_size < size_of::<sys::ibv_gid_entry>() {
        return -(EINVAL as isize);
    }
    let mut n = 0usize;
    for port in 1..=b.dev.info.caps.phys_port_cnt {
        let len = b.ctx.query_port(port).map_or(0, |p| p.gid_tbl_len);
        for i in 0..len {
            if let Ok(e) = gid_entry(b, port, i) {
                if n == max_entries {
                    // The kernel's answer to a buffer that is too small.
                    return -(EINVAL as isize);
                }
                // SAFETY: n < max_entries, each slot entry_size bytes apart
                // (an entry_size that is no multiple of the alignment is
                // the caller's to choose: written unaligned).
                unsafe {
                    entries
                        .cast::<u8>()
                        .add(n * entry_size)
                        .cast::<sys::ibv_gid_entry>()
                        .write_unaligned(e)
                };
                n += 1;
            }
        }
    }
    n as isize
}

/// Whether the caller made `fd` non-blocking (then a get-event call that
/// would block fails with `EAGAIN`).
pub(crate) fn fd_nonblocking(fd: c_int) -> bool {
    extern "C" {
        fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    }
    const F_GETFL: c_int = 3;
    const O_NONBLOCK: c_int = 0o4000;
    // SAFETY: F_GETFL takes no further argument and only reads the flags.
    let fl = unsafe { fcntl(fd, F_GETFL) };
    fl >= 0 && fl & O_NONBLOCK != 0
}

/// `ibv_get_async_event`: waits for the next event (or fails with `EAGAIN`
/// when the async fd is non-blocking). 0, or -1 with errno.
///
/// # Safety
/// `context` came from `ibv_open_device`; `event` is writable.
#[no_mangle]
pub unsafe extern "C" fn ibv_get_async_event(
    context: *mut sys::ibv_context,
    event: *mut sys::ibv_async_event,
) -> c_int {
    let Some(b) = ctx_ref(context) else {
        return minus_one(EINVAL);
    };
    if event.is_null() {
        return minus_one(EINVAL);
    }
    let events = b.ctx.async_events();
    let nonblock = fd_nonblocking(events.as_fd().as_raw_fd());
    loop {
        let e = if nonblock {
            match events.try_get() {
                Some(e) => e,
                None => return minus_one(EAGAIN),
            }
        } else {
            match events.get(None) {
                Some(e) => e,
                None => continue,
            }
        };
        let mut out = sys::ibv_async_event::default();
        let qp = |qpn: u32| lookup(&b.qps, qpn).map(|p| p as *mut sys::ibv_qp);
        match e {
            AsyncEvent::QpFatal { qpn } => {
                let Some(q) = qp(qpn) else { continue };
                out.element.qp = q;
                out.event_type = sys::IBV_EVENT_QP_FATAL;
            }
            AsyncEvent::CommEstablished { qpn } => {
                let Some(q) = qp(qpn) else { continue };
                out.element.qp = q;
                out.event_type = sys::IBV_EVENT_COMM_EST;
            }
            AsyncEvent::SqDrained { qpn } => {
                let Some(q) = qp(qpn) else { continue };
                out.element.qp = q;
                out.event_type = sys::IBV_EVENT_SQ_DRAINED;
            }
            AsyncEvent::LastWqeReached { qpn } => {
                let Some(q) = qp(qpn) else { continue };
                out.element.qp = q;
                out.event_type = sys::IBV_EVENT_QP_LAST_WQE_REACHED;
            }
            AsyncEvent::CqOverrun { cq } => {
                let Some(c) = lookup(&b.cqs, cq) else {
                    continue;
                };
                out.element.cq = c as *mut sys::ibv_cq;
                out.event_type = sys::IBV_EVENT_CQ_ERR;
            }
            AsyncEvent::SrqLimitReached { srq } => {
                let Some(s) = lookup(&b.srqs, srq) else {
                    continue;
                };
                out.element.srq = s as *mut sys::ibv_srq;
                out.event_type = sys::IBV_EVENT_SRQ_LIMIT_REACHED;
            }
            AsyncEvent::PortActive { port } => {
                out.element.port_num = port.into();
                out.event_type = sys::IBV_EVENT_PORT_ACTIVE;
            }
            AsyncEvent::PortDown { port } => {
                out.element.port_num = port.into();
                out.event_type = sys::IBV_EVENT_PORT_ERR;
            }
            AsyncEvent::DeviceFatal => {
                out.event_type = sys::IBV_EVENT_DEVICE_FATAL;
            }
        }
        // SAFETY: the caller passes a writable ibv_async_event.
        unsafe { event.write(out) };
        return 0;
    }
}

/// `ibv_ack_async_event`: nothing to count (destroy does not wait for acks).
///
/// # Safety
/// Any pointer.
#[no_mangle]
pub unsafe extern "C" fn ibv_ack_async_event(_event: *mut sys::ibv_async_event) {
    set_errno(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{ibv_free_device_list, ibv_get_device_list};

    #[test]
    fn open_query_close() {
        // SAFETY: pointers come from the calls themselves.
        unsafe {
            let list = ibv_get_device_list(core::ptr::null_mut());
            let ctx = ibv_open_device(*list);
            assert!(!ctx.is_null());
            let mut a = sys::ibv_device_attr::default();
            assert_eq!(ibv_query_device(ctx, &mut a), 0);
            assert_eq!(a.phys_port_cnt, 1);
            assert!(a.max_qp_wr > 0);
            let mut p = sys::ibv_port_attr::default();
            assert_eq!(
                ibv_query_port(ctx, 1, (&mut p as *mut sys::ibv_port_attr).cast()),
                0
            );
            assert_eq!(p.state, sys::IBV_PORT_ACTIVE);
            assert_eq!(p.link_layer, sys::IBV_LINK_LAYER_ETHERNET as u8);
            let mut g = sys::ibv_gid::default();
            assert_eq!(ibv_query_gid(ctx, 1, 1, &mut g), 0);
            assert_eq!(&g.raw[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
            let mut pk = 0u16;
            assert_eq!(ibv_query_pkey(ctx, 1, 0, &mut pk), 0);
            assert_eq!(pk, 0xffff);
            assert_eq!(ibv_query_pkey(ctx, 2, 0, &mut pk), -1);
            let mut e = sys::ibv_gid_entry::default();
            assert_eq!(
                _ibv_query_gid_ex(ctx, 1, 1, &mut e, 0, size_of::<sys::ibv_gid_entry>()),
                0
            );
            assert_eq!(e.gid_type, sys::IBV_GID_TYPE_ROCE_V2);
            // Past the device's GIDs: empty slots, then the end of the table.
            let len = p.gid_tbl_len as u32;
            assert!(len >= C_GID_TBL_MIN);
            let last = len - 1;
            assert_eq!(
                _ibv_query_gid_ex(ctx, 1, last, &mut e, 0, size_of::<sys::ibv_gid_entry>()),
                ENODATA
            );
            assert_eq!(ibv_query_gid(ctx, 1, last as c_int, &mut g), 0);
            assert_eq!(g.raw, [0; 16]);
            let mut ty = 9;
            assert_eq!(ibv_query_gid_type(ctx, 1, last, &mut ty), 0);
            assert_eq!(ty, 0);
            assert_eq!(
                _ibv_query_gid_ex(ctx, 1, len, &mut e, 0, size_of::<sys::ibv_gid_entry>()),
                EINVAL
            );
            assert_eq!(ibv_close_device(ctx), 0);
            ibv_free_device_list(list);
        }
    }
}
