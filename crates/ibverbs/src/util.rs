//! Small helpers shared by the C entry points: errno, the magic numbers that
//! tag our boxes, conversions between C and softverbs values.

#![allow(unsafe_code)] // errno is reached through libc's thread-local

use core::ffi::c_int;

use softverbs::VerbsError;
use softverbs_wire::Gid;

use crate::sys;

/// The symbol table this library must export (`symbols/libibverbs-v44.txt`).
pub const SYMBOLS: &str = include_str!("../symbols/libibverbs-v44.txt");

pub(crate) const EINVAL: c_int = 22;
pub(crate) const EPERM: c_int = 1;
pub(crate) const ENOMEM: c_int = 12;
pub(crate) const EBUSY: c_int = 16;
pub(crate) const EAGAIN: c_int = 11;
pub(crate) const ENOENT: c_int = 2;
pub(crate) const ENODATA: c_int = 61;
pub(crate) const EOPNOTSUPP: c_int = 95;

extern "C" {
    fn __errno_location() -> *mut c_int;
}

/// Set the calling thread's errno.
pub(crate) fn set_errno(e: c_int) {
    // SAFETY: glibc's __errno_location returns the calling thread's errno
    // slot, valid for the thread's lifetime.
    unsafe { *__errno_location() = e };
}

/// errno for a softverbs error, as libibverbs would report it.
pub(crate) fn errno_of(e: &VerbsError) -> c_int {
    e.errno()
}

/// Set errno and return NULL.
pub(crate) fn null<T>(e: c_int) -> *mut T {
    set_errno(e);
    core::ptr::null_mut()
}

/// Set errno and return -1.
pub(crate) fn minus_one(e: c_int) -> c_int {
    set_errno(e);
    -1
}

/// Whether `SOFTVERBS_IBV_DEBUG` asks for a line on stderr per failed verb.
pub(crate) fn debug() -> bool {
    static D: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *D.get_or_init(|| std::env::var_os("SOFTVERBS_IBV_DEBUG").is_some())
}

/// The errno of `e`, printed first when debugging.
pub(crate) fn report(verb: &str, e: &VerbsError) -> c_int {
    if debug() {
        eprintln!("softverbs libibverbs: {verb}: {e}");
    }
    errno_of(e)
}

/// A C GID to a softverbs one.
pub(crate) fn gid_from_c(g: &sys::ibv_gid) -> Gid {
    // SAFETY: every bit pattern of the union is a valid `raw` array.
    Gid(unsafe { g.raw })
}

/// A softverbs GID to a C one.
pub(crate) fn gid_to_c(g: &Gid) -> sys::ibv_gid {
    sys::ibv_gid { raw: g.0 }
}

/// The `ibv_mtu` enum value of an MTU in bytes (0 if none).
pub(crate) fn mtu_enum(bytes: u32) -> sys::ibv_mtu {
    match bytes {
        256 => sys::IBV_MTU_256,
        512 => sys::IBV_MTU_512,
        1024 => sys::IBV_MTU_1024,
        2048 => sys::IBV_MTU_2048,
        4096 => sys::IBV_MTU_4096,
        _ => 0,
    }
}

/// Copy `s` into a C char array, NUL-terminated and truncated to fit.
pub(crate) fn copy_cstr(dst: &mut [core::ffi::c_char], s: &str) {
    let n = s.len().min(dst.len().saturating_sub(1));
    for (d, b) in dst.iter_mut().zip(s.as_bytes()[..n].iter()) {
        *d = *b as core::ffi::c_char;
    }
    if let Some(d) = dst.get_mut(n) {
        *d = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cstr_is_truncated_and_terminated() {
        let mut b = [1 as core::ffi::c_char; 4];
        copy_cstr(&mut b, "rxe0");
        assert_eq!(b, [b'r' as _, b'x' as _, b'e' as _, 0]);
    }

    #[test]
    fn mtu_values_are_the_enum() {
        assert_eq!(mtu_enum(1024), 3);
        assert_eq!(mtu_enum(4096), 5);
        assert_eq!(mtu_enum(100), 0);
    }
}
