//! Shared memory with another process: memfd mappings and the racy-byte
//! copies that reach them.
//!
//! The daemon maps a client's memfd (`MAP_SHARED`) to back a memory region
//! or a ring. The client keeps its own mapping and may write while the
//! device reads, as an application may on hardware. Two rules keep that
//! from ever being undefined behaviour in this process:
//!
//! - **No references into the mapping.** The bytes are reached only through
//!   raw pointers, by [`copy_in`] / [`copy_out`], which move them with
//!   relaxed atomic loads and stores (8 bytes at a time where aligned, single
//!   bytes at the edges). A concurrent write by the peer then yields *torn
//!   data* — some old bytes, some new — exactly as a DMA engine would see,
//!   never a data race in the Rust sense.
//! - **No SIGBUS.** A mapping beyond the end of its file faults when touched.
//!   [`SharedMap::map`] refuses a file that is not sealed against shrinking
//!   (`F_SEAL_SHRINK`, so it is a memfd and can never get shorter) or that is
//!   shorter than the range asked for.
//!
//! The mapping lives until the last [`SharedMap`] clone drops; the peer
//! closing its fd, unmapping, or exiting does not affect it.

#![allow(unsafe_code)]

use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

use crate::mem::PAGE_SIZE;

/// Why a file cannot be mapped as shared memory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShmError {
    /// The file carries no `F_SEAL_SHRINK` (or cannot be sealed: not a memfd).
    #[error("the fd is not a memfd sealed against shrinking (F_SEAL_SHRINK): seals {0}")]
    NotSealed(String),
    /// The range lies beyond the end of the file, or is empty or overflows.
    #[error("range {offset}+{len} is outside the {size}-byte file (or empty)")]
    Range {
        /// Offset asked for.
        offset: u64,
        /// Length asked for.
        len: u64,
        /// File size.
        size: u64,
    },
    /// A system call failed.
    #[error("{0}")]
    Os(String),
}

/// A `MAP_SHARED` read-write mapping of `len` bytes of a sealed memfd.
pub struct SharedMap {
    /// Start of the mapping (page-aligned).
    base: NonNull<u8>,
    /// Length of the mapping.
    map_len: usize,
    /// Offset of the first byte asked for inside the mapping.
    delta: usize,
    /// Bytes asked for.
    len: usize,
}

// SAFETY: the mapping is owned by this value (unmapped once, on drop); every
// access to its bytes is an atomic operation through a raw pointer, so
// sharing it between threads cannot race in the Rust sense.
unsafe impl Send for SharedMap {}
// SAFETY: as above.
unsafe impl Sync for SharedMap {}

impl std::fmt::Debug for SharedMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedMap({:p}, {} bytes)", self.ptr(), self.len)
    }
}

fn os(e: rustix::io::Errno) -> ShmError {
    ShmError::Os(std::io::Error::from(e).to_string())
}

impl SharedMap {
    /// Maps `len` bytes at `offset` of `fd`, which must be sealed with
    /// `F_SEAL_SHRINK` and at least `offset + len` long. The fd may be closed
    /// afterwards.
    pub fn map(fd: impl AsFd, offset: u64, len: u64) -> Result<SharedMap, ShmError> {
        let fd = fd.as_fd();
        let seals = rustix::fs::fcntl_get_seals(fd)
            .map_err(|e| ShmError::NotSealed(format!("unavailable ({e})")))?;
        if !seals.contains(SealFlags::SHRINK) {
            return Err(ShmError::NotSealed(format!("{seals:?}")));
        }
        let size = rustix::fs::fstat(fd).map_err(os)?.st_size as u64;
        let end = offset.checked_add(len);
        let past_end = !matches!(end, Some(e) if e <= size);
        if len == 0 || past_end || len > isize::MAX as u64 / 2 {
            return Err(ShmError::Range { offset, len, size });
        }
        let page = PAGE_SIZE as u64;
        let map_off = offset - offset % page;
        let delta = (offset - map_off) as usize;
        let map_len = delta + len as usize;
        // SAFETY: a fresh mapping at an address the kernel picks (no existing
        // memory is replaced); the range lies inside the file, which cannot
        // shrink (sealed), so no access within `map_len` can fault.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                map_len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                map_off,
            )
        }
        .map_err(os)?;
        let base =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| ShmError::Os("mmap gave NULL".into()))?;
        Ok(SharedMap {
            base,
            map_len,
            delta,
            len: len as usize,
        })
    }

    /// Pointer to the first byte asked for.
    pub fn ptr(&self) -> *mut u8 {
        // SAFETY: `delta < page size <= map_len`: inside the mapping.
        unsafe { self.base.as_ptr().add(self.delta) }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty (never: `map` refuses empty ranges).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, off: usize, n: usize) -> Result<(), crate::mem::OutOfBounds> {
        match off.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(crate::mem::OutOfBounds),
        }
    }

    /// Copies `dst.len()` bytes at `off` out (racy bytes: see the module).
    pub fn read(&self, off: usize, dst: &mut [u8]) -> Result<(), crate::mem::OutOfBounds> {
        self.check(off, dst.len())?;
        // SAFETY: in bounds of a live mapping (checked above).
        unsafe { copy_out(self.ptr().add(off), dst) };
        Ok(())
    }

    /// Copies `src` in at `off` (racy bytes: see the module).
    pub fn write(&self, off: usize, src: &[u8]) -> Result<(), crate::mem::OutOfBounds> {
        self.check(off, src.len())?;
        // SAFETY: in bounds of a live mapping (checked above).
        unsafe { copy_in(self.ptr().add(off), src) };
        Ok(())
    }

    /// Atomic read-modify-write of the native-endian u64 at `off` (which
    /// must be 8-byte aligned): a compare-and-swap loop, atomic also against
    /// the peer process. Returns the old value.
    pub fn update_u64(
        &self,
        off: usize,
        f: impl Fn(u64) -> u64,
    ) -> Result<u64, crate::mem::OutOfBounds> {
        self.check(off, 8)?;
        // SAFETY: in bounds (checked), and a live mapping.
        let p = unsafe { self.ptr().add(off) };
        if !(p as usize).is_multiple_of(8) {
            return Err(crate::mem::OutOfBounds);
        }
        // SAFETY: aligned, in bounds, valid for the mapping's lifetime, and
        // only ever accessed atomically in this process.
        let a = unsafe { AtomicU64::from_ptr(p.cast::<u64>()) };
        let mut cur = a.load(Ordering::Acquire);
        loop {
            match a.compare_exchange_weak(cur, f(cur), Ordering::AcqRel, Ordering::Acquire) {
                Ok(old) => return Ok(old),
                Err(now) => cur = now,
            }
        }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: mapped in `map` with this base and length, unmapped once.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.map_len) };
    }
}

/// Copies `dst.len()` bytes from `src` with relaxed atomic loads.
///
/// # Safety
/// `src..src + dst.len()` must be valid for reads for the whole call, and
/// only ever accessed atomically (or by another process) meanwhile.
pub unsafe fn copy_out(src: *const u8, dst: &mut [u8]) {
    let n = dst.len();
    let mut i = 0;
    while i < n && !(src as usize + i).is_multiple_of(8) {
        // SAFETY: in range per the contract; byte atomics need no alignment.
        dst[i] = unsafe { AtomicU8::from_ptr(src.add(i).cast_mut()) }.load(Ordering::Relaxed);
        i += 1;
    }
    while i + 8 <= n {
        // SAFETY: 8-aligned (loop above) and in range.
        let v = unsafe { AtomicU64::from_ptr(src.add(i).cast_mut().cast::<u64>()) }
            .load(Ordering::Relaxed);
        dst[i..i + 8].copy_from_slice(&v.to_ne_bytes());
        i += 8;
    }
    while i < n {
        // SAFETY: in range.
        dst[i] = unsafe { AtomicU8::from_ptr(src.add(i).cast_mut()) }.load(Ordering::Relaxed);
        i += 1;
    }
}

/// Copies `src` to `dst` with relaxed atomic stores.
///
/// # Safety
/// `dst..dst + src.len()` must be valid for writes for the whole call, and
/// only ever accessed atomically (or by another process) meanwhile.
pub unsafe fn copy_in(dst: *mut u8, src: &[u8]) {
    let n = src.len();
    let mut i = 0;
    while i < n && !(dst as usize + i).is_multiple_of(8) {
        // SAFETY: in range per the contract.
        unsafe { AtomicU8::from_ptr(dst.add(i)) }.store(src[i], Ordering::Relaxed);
        i += 1;
    }
    while i + 8 <= n {
        let mut w = [0u8; 8];
        w.copy_from_slice(&src[i..i + 8]);
        // SAFETY: 8-aligned and in range.
        unsafe { AtomicU64::from_ptr(dst.add(i).cast::<u64>()) }
            .store(u64::from_ne_bytes(w), Ordering::Relaxed);
        i += 8;
    }
    while i < n {
        // SAFETY: in range.
        unsafe { AtomicU8::from_ptr(dst.add(i)) }.store(src[i], Ordering::Relaxed);
        i += 1;
    }
}

/// A new memfd of `len` bytes (zeroed), sealed against shrinking and growing
/// (`F_SEAL_SHRINK | F_SEAL_GROW`), ready to be mapped here and passed to a
/// peer. `name` shows in `/proc/PID/fd`.
pub fn sealed_memfd(name: &str, len: u64) -> Result<OwnedFd, ShmError> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(os)?;
    rustix::fs::ftruncate(&fd, len).map_err(os)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW).map_err(os)?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_mappings_see_each_other_and_outlive_the_fd() {
        let fd = sealed_memfd("t", 3 * 4096).unwrap();
        let a = SharedMap::map(&fd, 0, 3 * 4096).unwrap();
        let b = SharedMap::map(&fd, 4096 + 10, 100).unwrap();
        drop(fd);
        a.write(4096 + 10, b"shared bytes").unwrap();
        let mut out = [0u8; 12];
        b.read(0, &mut out).unwrap();
        assert_eq!(&out, b"shared bytes");
        assert!(b.read(95, &mut [0u8; 6]).is_err());
        a.write(8, &7u64.to_ne_bytes()).unwrap();
        assert_eq!(a.update_u64(8, |v| v + 1).unwrap(), 7);
        assert_eq!(a.update_u64(9, |v| v), Err(crate::mem::OutOfBounds));
    }

    #[test]
    fn unsealed_short_and_empty_are_refused() {
        let fd =
            rustix::fs::memfd_create("u", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
        rustix::fs::ftruncate(&fd, 4096).unwrap();
        assert!(matches!(
            SharedMap::map(&fd, 0, 4096),
            Err(ShmError::NotSealed(_))
        ));
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK).unwrap();
        assert!(SharedMap::map(&fd, 0, 4096).is_ok());
        assert!(matches!(
            SharedMap::map(&fd, 1, 4096),
            Err(ShmError::Range { .. })
        ));
        assert!(matches!(
            SharedMap::map(&fd, 0, 0),
            Err(ShmError::Range { .. })
        ));
        assert!(matches!(
            SharedMap::map(&fd, u64::MAX, 2),
            Err(ShmError::Range { .. })
        ));
        // A sealed file cannot be shrunk under a mapping.
        assert!(rustix::fs::ftruncate(&fd, 0).is_err());
        // A pipe is no memfd.
        let (r, _w) = std::io::pipe().unwrap();
        assert!(matches!(
            SharedMap::map(&r, 0, 1),
            Err(ShmError::NotSealed(_))
        ));
    }

    #[test]
    fn racy_copies_cover_every_alignment() {
        let fd = sealed_memfd("c", 4096).unwrap();
        let m = SharedMap::map(&fd, 0, 4096).unwrap();
        let src: Vec<u8> = (0..40u8).collect();
        for off in 0..9 {
            for n in [0, 1, 7, 8, 9, 17, 31] {
                m.write(off, &src[..n]).unwrap();
                let mut out = vec![0u8; n];
                m.read(off, &mut out).unwrap();
                assert_eq!(out, &src[..n]);
            }
        }
    }
}
