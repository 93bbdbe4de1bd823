//! Protection domains, memory regions, memory windows and address handles.

#![allow(unsafe_code)] // C entry points (#[no_mangle]) and raw pointers from C

use core::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use softverbs::{Access, Ah, AhAttr, Mr, Mw, MwType, Pd, Rereg};

use crate::context::ctx_ref;
use crate::sys;
use crate::util::{gid_from_c, null, report, set_errno, EBUSY, EINVAL, EOPNOTSUPP};

const PD_MAGIC: u64 = 0x736f_6674_7064_3031;
const MR_MAGIC: u64 = 0x736f_6674_6d72_3031;
const AH_MAGIC: u64 = 0x736f_6674_6168_3031;
const MW_MAGIC: u64 = 0x736f_6674_6d77_3031;

/// A protection domain.
#[repr(C)]
pub(crate) struct PdBox {
    pub c: sys::ibv_pd,
    magic: u64,
    pub pd: Pd,
    /// MRs, QPs, SRQs and AHs created in it and not yet destroyed.
    pub users: AtomicUsize,
}

/// A memory region.
#[repr(C)]
pub(crate) struct MrBox {
    pub c: sys::ibv_mr,
    magic: u64,
    pub mr: Mr,
    /// Its PD (changes with `ibv_rereg_mr`).
    pd: AtomicPtr<PdBox>,
}

/// A memory window.
#[repr(C)]
pub(crate) struct MwBox {
    pub c: sys::ibv_mw,
    magic: u64,
    pub mw: Mw,
    pd: *const PdBox,
}

/// An address handle.
#[repr(C)]
pub(crate) struct AhBox {
    pub c: sys::ibv_ah,
    magic: u64,
    pub ah: Ah,
    pd: *const PdBox,
}

/// Recover a box from the pointer to its first field, checking its magic.
macro_rules! box_ref {
    ($fn:ident, $cty:ty, $box:ty, $magic:expr) => {
        pub(crate) fn $fn<'a>(p: *mut $cty) -> Option<&'a $box> {
            if p.is_null() {
                return None;
            }
            // SAFETY: the C struct is the first field of the #[repr(C)] box we
            // handed out; the magic check rejects (most) foreign pointers.
            let b = unsafe { &*p.cast::<$box>() };
            (b.magic == $magic).then_some(b)
        }
    };
}
pub(crate) use box_ref;

box_ref!(pd_ref, sys::ibv_pd, PdBox, PD_MAGIC);
box_ref!(mr_ref, sys::ibv_mr, MrBox, MR_MAGIC);
box_ref!(ah_ref, sys::ibv_ah, AhBox, AH_MAGIC);
box_ref!(mw_ref, sys::ibv_mw, MwBox, MW_MAGIC);

/// Free a box, clearing its magic first so a stale pointer is refused.
macro_rules! free_box {
    ($b:expr, $box:ty) => {{
        let p = ($b as *const $box).cast_mut();
        // SAFETY: allocated with Box::new by the matching create call and
        // freed once (the magic is cleared before the memory goes).
        unsafe {
            (*p).magic = 0;
            drop(Box::from_raw(p));
        }
    }};
}
pub(crate) use free_box;

/// `ibv_alloc_pd`.
///
/// # Safety
/// `context` came from `ibv_open_device`.
#[no_mangle]
pub unsafe extern "C" fn ibv_alloc_pd(context: *mut sys::ibv_context) -> *mut sys::ibv_pd {
    let Some(cb) = ctx_ref(context) else {
        return null(EINVAL);
    };
    match cb.ctx.alloc_pd() {
        Ok(pd) => Box::into_raw(Box::new(PdBox {
            c: sys::ibv_pd { context, handle: 0 },
            magic: PD_MAGIC,
            pd,
            users: AtomicUsize::new(0),
        }))
        .cast(),
        Err(e) => null(report("ibv_alloc_pd", &e)),
    }
}

/// `ibv_dealloc_pd`: 0, or `EBUSY` while objects use it.
///
/// # Safety
/// `pd` came from `ibv_alloc_pd`.
#[no_mangle]
pub unsafe extern "C" fn ibv_dealloc_pd(pd: *mut sys::ibv_pd) -> c_int {
    let Some(b) = pd_ref(pd) else {
        return EINVAL;
    };
    if b.users.load(Ordering::Acquire) != 0 {
        return EBUSY;
    }
    free_box!(b, PdBox);
    0
}

/// The access flags softverbs understands, from `ibv_access_flags`; the
/// optional range (`IBV_ACCESS_OPTIONAL_RANGE`) is dropped, as libibverbs
/// does for a device that does not support those bits.
pub(crate) fn access_from_c(access: c_uint) -> Result<Access, c_int> {
    // IBV_ACCESS_OPTIONAL_RANGE: bits 20..=29 (a macro bindgen cannot see).
    const OPTIONAL_RANGE: c_uint = 0x3ff0_0000;
    let a = access & !OPTIONAL_RANGE & !(sys::IBV_ACCESS_HUGETLB as c_uint);
    if a & !0x1f != 0 {
        return Err(EOPNOTSUPP);
    }
    Ok(Access(a))
}

fn reg_mr(
    pd: *mut sys::ibv_pd,
    addr: *mut c_void,
    length: usize,
    iova: u64,
    access: c_uint,
) -> *mut sys::ibv_mr {
    let Some(pb) = pd_ref(pd) else {
        return null(EINVAL);
    };
    if addr.is_null() && length != 0 {
        return null(EINVAL);
    }
    let access = match access_from_c(access) {
        Ok(a) => a,
        Err(e) => return null(e),
    };
    // The region is addressed by `iova` (SGEs, RDMA addresses, binds), its
    // bytes live at `addr`; an iova at another page offset than `addr` is
    // EINVAL, as Linux's ib_uverbs_reg_mr answers.
    // SAFETY: the C caller owns the memory and keeps it valid until
    // ibv_dereg_mr, as libibverbs requires of it.
    let mr = match unsafe { pb.pd.reg_mr_raw_iova(addr.cast(), length, iova, access) } {
        Ok(m) => m,
        Err(e) => return null(report("ibv_reg_mr", &e)),
    };
    pb.users.fetch_add(1, Ordering::AcqRel);
    let c = sys::ibv_mr {
        context: pb.c.context,
        pd,
        addr,
        length: length as sys::size_t,
        handle: mr.lkey(),
        lkey: mr.lkey(),
        rkey: mr.rkey(),
    };
    Box::into_raw(Box::new(MrBox {
        c,
        magic: MR_MAGIC,
        mr,
        pd: AtomicPtr::new((pb as *const PdBox).cast_mut()),
    }))
    .cast()
}

/// `ibv_reg_mr`: register memory the caller owns.
///
/// # Safety
/// `pd` came from `ibv_alloc_pd`; `length` bytes at `addr` stay valid until
/// `ibv_dereg_mr`.
#[no_mangle]
pub unsafe extern "C" fn ibv_reg_mr(
    pd: *mut sys::ibv_pd,
    addr: *mut c_void,
    length: usize,
    access: c_int,
) -> *mut sys::ibv_mr {
    reg_mr(pd, addr, length, addr as u64, access as c_uint)
}

/// `ibv_reg_mr_iova`: the region's bytes live at `addr`, its RDMA address
/// (what SGEs, remote addresses and window binds name) is `iova`, which
/// must have `addr`'s offset within a page (`EINVAL` else, as on Linux).
///
/// # Safety
/// As `ibv_reg_mr`.
#[no_mangle]
pub unsafe extern "C" fn ibv_reg_mr_iova(
    pd: *mut sys::ibv_pd,
    addr: *mut c_void,
    length: usize,
    iova: u64,
    access: c_int,
) -> *mut sys::ibv_mr {
    reg_mr(pd, addr, length, iova, access as c_uint)
}

/// `ibv_reg_mr_iova2`: as `ibv_reg_mr_iova` (optional access bits are
/// dropped, as libibverbs does for a device without them).
///
/// # Safety
/// As `ibv_reg_mr`.
#[no_mangle]
pub unsafe extern "C" fn ibv_reg_mr_iova2(
    pd: *mut sys::ibv_pd,
    addr: *mut c_void,
    length: usize,
    iova: u64,
    access: c_uint,
) -> *mut sys::ibv_mr {
    reg_mr(pd, addr, length, iova, access)
}

/// `ibv_dereg_mr`: 0 or an errno (`EINVAL` while memory windows are bound
/// to the region, as rxe answers; the region stays registered then).
///
/// # Safety
/// `mr` came from `ibv_reg_mr`.
#[no_mangle]
pub unsafe extern "C" fn ibv_dereg_mr(mr: *mut sys::ibv_mr) -> c_int {
    let Some(b) = mr_ref(mr) else {
        return EINVAL;
    };
    match b.mr.dereg() {
        Ok(()) => {}
        // A region with memory windows bound stays (rxe's rxe_dereg_mr,
        // IBA 10.6.7.2.6: EINVAL).
        Err(softverbs::VerbsError::Busy { .. }) => return EINVAL,
        Err(e) => return report("ibv_dereg_mr", &e),
    }
    // SAFETY: the PD outlives its regions (dealloc_pd refuses while in use).
    unsafe { &*b.pd.load(Ordering::Acquire) }
        .users
        .fetch_sub(1, Ordering::AcqRel);
    free_box!(b, MrBox);
    0
}

/// `ibv_rereg_mr`: changes the region's PD (`IBV_REREG_MR_CHANGE_PD`), its
/// access (`IBV_REREG_MR_CHANGE_ACCESS`) and/or its memory
/// (`IBV_REREG_MR_CHANGE_TRANSLATION`: `length` bytes at `addr`, addressed
/// as `addr` from now on) in place, keeping `lkey` and `rkey`, as rxe and
/// mlx5 keep them; 0 on success, with `mr->pd`, `mr->addr` and
/// `mr->length` updated as libibverbs updates them.
///
/// Errors, as the man page lists them: `IBV_REREG_MR_ERR_INPUT` with errno
/// `EINVAL` for arguments libibverbs itself refuses (unknown flags, a
/// translation without address or length, access bits without
/// `CHANGE_ACCESS`; here also a NULL or foreign `mr` or new `pd`);
/// `IBV_REREG_MR_ERR_CMD` with the errno of the refused command: `EINVAL`
/// (nothing to change, REMOTE_WRITE without LOCAL_WRITE, a PD of another
/// context), `EBUSY` (memory windows are bound to the region, as Linux's
/// `ib_uverbs_rereg_mr` refused a region in use), `EOPNOTSUPP` (access bits
/// softverbs does not support). The region is unchanged after any error.
/// `IBV_REREG_MR_ERR_DONT_FORK_NEW`, `_DO_FORK_OLD` and
/// `_CMD_AND_DO_FORK_NEW` never occur: softverbs pins no pages, so fork
/// protection has nothing to do (`ibv_is_fork_initialized` is
/// `IBV_FORK_UNNEEDED`).
///
/// # Safety
/// `mr` came from `ibv_reg_mr`; with `CHANGE_TRANSLATION`, `length` bytes
/// at `addr` stay valid until the region is deregistered or changed again;
/// with `CHANGE_PD`, `pd` came from `ibv_alloc_pd`.
#[no_mangle]
pub unsafe extern "C" fn ibv_rereg_mr(
    mr: *mut sys::ibv_mr,
    flags: c_int,
    pd: *mut sys::ibv_pd,
    addr: *mut c_void,
    length: usize,
    access: c_int,
) -> c_int {
    let flags = flags as c_uint;
    let change_pd = flags & sys::IBV_REREG_MR_CHANGE_PD != 0;
    let change_access = flags & sys::IBV_REREG_MR_CHANGE_ACCESS != 0;
    let change_translation = flags & sys::IBV_REREG_MR_CHANGE_TRANSLATION != 0;
    let Some(b) = mr_ref(mr) else {
        set_errno(EINVAL);
        return sys::IBV_REREG_MR_ERR_INPUT;
    };
    // `pd` means something only with CHANGE_PD (libibverbs ignores it else).
    let new_pb = if change_pd { pd_ref(pd) } else { None };
    let bad = flags & !sys::IBV_REREG_MR_FLAGS_SUPPORTED != 0
        || (change_translation && (addr.is_null() || length == 0))
        || (change_pd && new_pb.is_none())
        || (access != 0 && !change_access);
    if bad {
        set_errno(EINVAL);
        return sys::IBV_REREG_MR_ERR_INPUT;
    }
    let mut req = Rereg::new();
    if let (true, Some(p)) = (change_pd, new_pb) {
        req = req.pd(&p.pd);
    }
    if change_access {
        match access_from_c(access as c_uint) {
            Ok(a) => req = req.access(a),
            Err(e) => {
                set_errno(e);
                return sys::IBV_REREG_MR_ERR_CMD;
            }
        }
    }
    if change_translation {
        // SAFETY: the caller keeps `length` bytes at `addr` valid while the
        // region covers them (this function's contract, libibverbs's).
        req = unsafe { req.raw(addr.cast(), length) };
    }
    if let Err(e) = b.mr.rereg(req) {
        set_errno(report("ibv_rereg_mr", &e));
        return sys::IBV_REREG_MR_ERR_CMD;
    }
    if let (true, Some(p)) = (change_pd, new_pb) {
        p.users.fetch_add(1, Ordering::AcqRel);
        let old = b.pd.swap((p as *const PdBox).cast_mut(), Ordering::AcqRel);
        // SAFETY: the old PD outlived the region until now (dealloc_pd
        // refuses while its users count holds the region).
        unsafe { &*old }.users.fetch_sub(1, Ordering::AcqRel);
    }
    // SAFETY: `mr` is the C struct at the start of our live box; its
    // public fields are the application's to read, ours to update here,
    // as libibverbs does after a successful rereg.
    unsafe {
        if change_pd {
            core::ptr::addr_of_mut!((*mr).pd).write(pd);
        }
        if change_translation {
            core::ptr::addr_of_mut!((*mr).addr).write(addr);
            core::ptr::addr_of_mut!((*mr).length).write(length as sys::size_t);
        }
    }
    0
}

/// `ops.alloc_mw` (behind the header's inline `ibv_alloc_mw`): a type 1 or
/// type 2 window; another type is `EINVAL`.
pub(crate) unsafe extern "C" fn alloc_mw(
    pd: *mut sys::ibv_pd,
    type_: sys::ibv_mw_type,
) -> *mut sys::ibv_mw {
    let Some(pb) = pd_ref(pd) else {
        return null(EINVAL);
    };
    let ty = match type_ {
        sys::IBV_MW_TYPE_1 => MwType::Type1,
        sys::IBV_MW_TYPE_2 => MwType::Type2,
        _ => return null(EINVAL),
    };
    let mw = match pb.pd.alloc_mw(ty) {
        Ok(m) => m,
        Err(e) => return null(report("ibv_alloc_mw", &e)),
    };
    pb.users.fetch_add(1, Ordering::AcqRel);
    let rkey = mw.rkey();
    Box::into_raw(Box::new(MwBox {
        c: sys::ibv_mw {
            context: pb.c.context,
            pd,
            rkey,
            handle: rkey,
            type_,
        },
        magic: MW_MAGIC,
        mw,
        pd: pb,
    }))
    .cast()
}

/// `ops.dealloc_mw` (behind `ibv_dealloc_mw`): the window's rkey stops
/// working. 0 or an errno.
pub(crate) unsafe extern "C" fn dealloc_mw(mw: *mut sys::ibv_mw) -> c_int {
    let Some(b) = mw_ref(mw) else {
        return EINVAL;
    };
    // SAFETY: the PD outlives its windows (dealloc_pd refuses while in use).
    unsafe { &*b.pd }.users.fetch_sub(1, Ordering::AcqRel);
    free_box!(b, MwBox);
    0
}

/// The rights a window can grant, from `mw_access_flags`: the remote ones
/// (a local bit such as `IBV_ACCESS_LOCAL_WRITE` means nothing for a
/// window and is dropped, as rxe ignores it).
pub(crate) fn mw_access_from_c(access: c_uint) -> Access {
    Access(
        access
            & (sys::IBV_ACCESS_REMOTE_READ
                | sys::IBV_ACCESS_REMOTE_WRITE
                | sys::IBV_ACCESS_REMOTE_ATOMIC),
    )
}

/// An `ibv_ah_attr` to softverbs's: RoCE needs a GRH (`is_global`).
pub(crate) fn ah_attr_from_c(a: &sys::ibv_ah_attr) -> Result<AhAttr, c_int> {
    if a.is_global == 0 {
        return Err(EINVAL);
    }
    Ok(AhAttr {
        dgid: gid_from_c(&a.grh.dgid),
        sgid_index: a.grh.sgid_index,
        hop_limit: a.grh.hop_limit,
        traffic_class: a.grh.traffic_class,
        flow_label: a.grh.flow_label,
        sl: a.sl,
        port: a.port_num,
    })
}

/// softverbs's AH attributes to an `ibv_ah_attr`.
pub(crate) fn ah_attr_to_c(a: &AhAttr) -> sys::ibv_ah_attr {
    sys::ibv_ah_attr {
        grh: sys::ibv_global_route {
            dgid: crate::util::gid_to_c(&a.dgid),
            flow_label: a.flow_label,
            sgid_index: a.sgid_index,
            hop_limit: a.hop_limit,
            traffic_class: a.traffic_class,
        },
        sl: a.sl,
        is_global: 1,
        port_num: a.port,
        ..Default::default()
    }
}

/// `ibv_create_ah`.
///
/// # Safety
/// `pd` came from `ibv_alloc_pd`; `attr` is readable.
#[no_mangle]
pub unsafe extern "C" fn ibv_create_ah(
    pd: *mut sys::ibv_pd,
    attr: *mut sys::ibv_ah_attr,
) -> *mut sys::ibv_ah {
    let Some(pb) = pd_ref(pd) else {
        return null(EINVAL);
    };
    if attr.is_null() {
        return null(EINVAL);
    }
    // SAFETY: the caller passes a readable ibv_ah_attr.
    let a = match ah_attr_from_c(unsafe { &*attr }) {
        Ok(a) => a,
        Err(e) => return null(e),
    };
    match pb.pd.create_ah(a) {
        Ok(ah) => {
            pb.users.fetch_add(1, Ordering::AcqRel);
            Box::into_raw(Box::new(AhBox {
                c: sys::ibv_ah {
                    context: pb.c.context,
                    pd,
                    handle: 0,
                },
                magic: AH_MAGIC,
                ah,
                pd: pb,
            }))
            .cast()
        }
        Err(e) => null(report("ibv_create_ah", &e)),
    }
}

/// `ibv_destroy_ah`: 0 or an errno.
///
/// # Safety
/// `ah` came from `ibv_create_ah`.
#[no_mangle]
pub unsafe extern "C" fn ibv_destroy_ah(ah: *mut sys::ibv_ah) -> c_int {
    let Some(b) = ah_ref(ah) else {
        return EINVAL;
    };
    // SAFETY: the PD outlives its AHs (dealloc_pd refuses while in use).
    unsafe { &*b.pd }.users.fetch_sub(1, Ordering::AcqRel);
    free_box!(b, AhBox);
    0
}

/// The GRH at the head of a UD receive buffer (40 bytes, IPv6 layout; for
/// RoCEv2 over IPv4 the addresses are IPv4-mapped GIDs).
fn grh_sgid_dgid(grh: &[u8; 40]) -> ([u8; 16], [u8; 16]) {
    let mut s = [0u8; 16];
    let mut d = [0u8; 16];
    s.copy_from_slice(&grh[8..24]);
    d.copy_from_slice(&grh[24..40]);
    (s, d)
}

/// `ibv_init_ah_from_wc`: the AH attributes that answer a UD receive (its
/// GRH names the sender). 0, or -1 with errno.
///
/// # Safety
/// `context` came from `ibv_open_device`; `wc` and the 40-byte `grh` are
/// readable; `ah_attr` is writable.
#[no_mangle]
pub unsafe extern "C" fn ibv_init_ah_from_wc(
    context: *mut sys::ibv_context,
    port_num: u8,
    wc: *mut sys::ibv_wc,
    grh: *mut sys::ibv_grh,
    ah_attr: *mut sys::ibv_ah_attr,
) -> c_int {
    let Some(cb) = ctx_ref(context) else {
        return crate::util::minus_one(EINVAL);
    };
    if wc.is_null() || grh.is_null() || ah_attr.is_null() {
        return crate::util::minus_one(EINVAL);
    }
    // SAFETY: the caller passes a readable wc and a 40-byte GRH.
    let (wc, grh) = unsafe { (&*wc, &*grh.cast::<[u8; 40]>()) };
    if wc.wc_flags & sys::IBV_WC_GRH as c_uint == 0 {
        return crate::util::minus_one(EINVAL);
    }
    let (sgid, dgid) = grh_sgid_dgid(grh);
    // The local GID the datagram was sent to gives our sgid_index.
    let len = cb.ctx.query_port(port_num).map_or(0, |p| p.gid_tbl_len);
    let Some(idx) = (0..len.min(256) as u16)
        .find(|&i| cb.ctx.query_gid(port_num, i).is_ok_and(|g| g.0 == dgid))
    else {
        return crate::util::minus_one(crate::util::ENOENT);
    };
    let a = AhAttr {
        dgid: softverbs::Gid(sgid),
        sgid_index: idx as u8,
        hop_limit: 0xff,
        traffic_class: 0,
        flow_label: 0,
        sl: wc.sl,
        port: port_num,
    };
    // SAFETY: the caller passes a writable ibv_ah_attr.
    unsafe { ah_attr.write(ah_attr_to_c(&a)) };
    0
}

/// `ibv_create_ah_from_wc`.
///
/// # Safety
/// As `ibv_init_ah_from_wc`; `pd` came from `ibv_alloc_pd`.
#[no_mangle]
pub unsafe extern "C" fn ibv_create_ah_from_wc(
    pd: *mut sys::ibv_pd,
    wc: *mut sys::ibv_wc,
    grh: *mut sys::ibv_grh,
    port_num: u8,
) -> *mut sys::ibv_ah {
    let Some(pb) = pd_ref(pd) else {
        return null(EINVAL);
    };
    let mut a = sys::ibv_ah_attr::default();
    // SAFETY: forwarded from the caller.
    if unsafe { ibv_init_ah_from_wc(pb.c.context, port_num, wc, grh, &mut a) } != 0 {
        return core::ptr::null_mut();
    }
    // SAFETY: `a` is a valid ah_attr; `pd` is ours.
    unsafe { ibv_create_ah(pd, &mut a) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno() -> c_int {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    #[test]
    fn rereg_checks_input_then_changes_the_region() {
        // SAFETY: pointers come from the calls themselves; `buf` outlives
        // the region.
        unsafe {
            let list = crate::device::ibv_get_device_list(core::ptr::null_mut());
            let ctx = crate::context::ibv_open_device(*list);
            let pd = ibv_alloc_pd(ctx);
            let mut buf = [0u8; 64];
            let mr = ibv_reg_mr(pd, buf.as_mut_ptr().cast(), buf.len(), 1);
            assert!(!mr.is_null());
            let tr = sys::IBV_REREG_MR_CHANGE_TRANSLATION as c_int;
            let acc = sys::IBV_REREG_MR_CHANGE_ACCESS as c_int;
            let null = core::ptr::null_mut();
            for (flags, addr, len, access) in [(8, null, 0, 0), (tr, null, 64, 0), (0, null, 0, 1)]
            {
                assert_eq!(
                    ibv_rereg_mr(mr, flags, pd, addr, len, access),
                    sys::IBV_REREG_MR_ERR_INPUT
                );
                assert_eq!(errno(), EINVAL, "flags {flags}");
            }
            let (lkey, rkey) = ((*mr).lkey, (*mr).rkey);
            // An unsupported access bit, REMOTE_WRITE without LOCAL_WRITE.
            for (access, e) in [(1 << 6, EOPNOTSUPP), (2, EINVAL)] {
                assert_eq!(
                    ibv_rereg_mr(mr, acc, null.cast(), null, 0, access),
                    sys::IBV_REREG_MR_ERR_CMD
                );
                assert_eq!(errno(), e, "access {access:#x}");
            }
            assert_eq!(ibv_rereg_mr(mr, acc, null.cast(), null, 0, 3), 0);
            // Another PD and other memory: the keys stay.
            let pd2 = ibv_alloc_pd(ctx);
            let mut buf2 = [0u8; 128];
            let flags =
                (sys::IBV_REREG_MR_CHANGE_PD | sys::IBV_REREG_MR_CHANGE_TRANSLATION) as c_int;
            assert_eq!(
                ibv_rereg_mr(mr, flags, pd2, buf2.as_mut_ptr().cast(), buf2.len(), 0),
                0
            );
            assert_eq!(((*mr).lkey, (*mr).rkey), (lkey, rkey));
            assert_eq!(
                ((*mr).pd, (*mr).addr, (*mr).length),
                (pd2, buf2.as_mut_ptr().cast(), 128)
            );
            // The region moved its PD: the old one is free, the new one busy.
            assert_eq!(ibv_dealloc_pd(pd2), EBUSY);
            assert_eq!(ibv_dealloc_pd(pd), 0);
            assert_eq!(ibv_dereg_mr(mr), 0);
            assert_eq!(ibv_dealloc_pd(pd2), 0);
            assert_eq!(crate::context::ibv_close_device(ctx), 0);
            crate::device::ibv_free_device_list(list);
        }
    }

    #[test]
    fn access_bits() {
        assert_eq!(access_from_c(0x7).unwrap(), Access(0x7));
        assert_eq!(access_from_c(0x7 | 1 << 20).unwrap(), Access(0x7));
        assert_eq!(access_from_c(1 << 6), Err(EOPNOTSUPP));
        assert_eq!(
            mw_access_from_c(sys::IBV_ACCESS_LOCAL_WRITE | sys::IBV_ACCESS_REMOTE_WRITE),
            Access::REMOTE_WRITE
        );
    }

    #[test]
    fn ah_attr_roundtrip_and_global_required() {
        let mut c = sys::ibv_ah_attr {
            is_global: 1,
            port_num: 1,
            ..Default::default()
        };
        c.grh.sgid_index = 1;
        c.grh.hop_limit = 64;
        c.grh.dgid.raw = [9; 16];
        let a = ah_attr_from_c(&c).unwrap();
        assert_eq!(a.dgid.0, [9; 16]);
        let back = ah_attr_to_c(&a);
        assert_eq!(back.grh.sgid_index, 1);
        c.is_global = 0;
        assert_eq!(ah_attr_from_c(&c), Err(EINVAL));
    }
}
