//! Memory that a device may read and write: page-aligned owned blocks and
//! (behind `unsafe`) raw user memory.
//!
//! A registered region keeps its [`Backing`] alive: the device holds an
//! `Arc` of the block, so dropping the user's handle cannot free memory the
//! device may still touch. Accesses to a [`MemBlock`] take its lock, so a
//! device write and a user read never race.

#![allow(unsafe_code)]

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::{Arc, RwLock};

use crate::shm::{sealed_memfd, SharedMap, ShmError};

/// The page size of registered memory.
pub const PAGE_SIZE: usize = 4096;

/// A page-aligned, zero-initialised block of memory shared between the
/// application and a device.
///
/// ```
/// use softverbs_core::mem::MemBlock;
/// let block = MemBlock::new(8192);
/// block.write(10, b"hello").unwrap();
/// let mut out = [0u8; 5];
/// block.read(10, &mut out).unwrap();
/// assert_eq!(&out, b"hello");
/// assert_eq!(block.addr() % 4096, 0);
/// ```
pub struct MemBlock {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
    /// Guards every access to the bytes.
    lock: RwLock<()>,
    /// For a block over a sealed memfd ([`MemBlock::shared`]): the mapping
    /// (`ptr` points into it) and the fd, to register it with a daemon.
    shared: Option<(SharedMap, OwnedFd)>,
}

// SAFETY: the block owns its allocation exclusively; all access to the bytes
// goes through `lock`, so sharing `&MemBlock` across threads cannot race.
unsafe impl Send for MemBlock {}
// SAFETY: as above: readers take the read lock, writers the write lock.
unsafe impl Sync for MemBlock {}

/// An access outside a block or region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds;

impl MemBlock {
    /// A zeroed block of `len` bytes (at least one page is allocated).
    ///
    /// # Panics
    /// If the allocation fails (as `Vec` does).
    pub fn new(len: usize) -> Self {
        let size = len.max(1).next_multiple_of(PAGE_SIZE);
        let layout = Layout::from_size_align(size, PAGE_SIZE).expect("page-aligned layout");
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        MemBlock {
            ptr,
            len,
            layout,
            lock: RwLock::new(()),
            shared: None,
        }
    }

    /// A zeroed block of `len` bytes (whole pages) over a new memfd sealed
    /// against shrinking and growing, mapped `MAP_SHARED` here: memory that
    /// another process (the daemon) can map too. Its bytes are only ever
    /// reached by copies that tolerate a concurrent writer in the other
    /// process ([`crate::shm`]): [`MemBlock::with`] and
    /// [`MemBlock::with_mut`] work on a copy.
    ///
    /// ```
    /// use softverbs_core::mem::MemBlock;
    /// let block = MemBlock::shared(100).unwrap();
    /// block.write(3, b"memfd").unwrap();
    /// assert!(block.memfd().is_some());
    /// assert_eq!(block.with(|b| b[3..8].to_vec()), b"memfd");
    /// ```
    pub fn shared(len: usize) -> Result<Self, ShmError> {
        let size = len.max(1).next_multiple_of(PAGE_SIZE);
        let fd = sealed_memfd("softverbs-mr", size as u64)?;
        let map = SharedMap::map(&fd, 0, size as u64)?;
        let ptr = NonNull::new(map.ptr()).ok_or_else(|| ShmError::Os("mmap gave NULL".into()))?;
        Ok(MemBlock {
            ptr,
            len,
            layout: Layout::from_size_align(size, PAGE_SIZE)
                .map_err(|e| ShmError::Os(e.to_string()))?,
            lock: RwLock::new(()),
            shared: Some((map, fd)),
        })
    }

    /// The memfd behind a [`MemBlock::shared`] block (`None` for heap
    /// memory); its first [`MemBlock::len`] bytes are the block.
    pub fn memfd(&self) -> Option<BorrowedFd<'_>> {
        self.shared.as_ref().map(|(_, fd)| fd.as_fd())
    }

    /// The mapping behind a [`MemBlock::shared`] block.
    pub fn shared_map(&self) -> Option<&SharedMap> {
        self.shared.as_ref().map(|(m, _)| m)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the block is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of the first byte: the virtual address a region over the
    /// whole block has.
    pub fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    fn range(&self, off: usize, n: usize) -> Result<(), OutOfBounds> {
        match off.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(OutOfBounds),
        }
    }

    /// Copy bytes out of the block.
    pub fn read(&self, off: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        self.range(off, dst.len())?;
        let _g = self.lock.read().unwrap_or_else(|e| e.into_inner());
        if let Some((map, _)) = &self.shared {
            return map.read(off, dst);
        }
        // SAFETY: the range is inside the allocation (checked above) and no
        // writer holds the lock.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), dst.as_mut_ptr(), dst.len())
        };
        Ok(())
    }

    /// Copy bytes into the block.
    pub fn write(&self, off: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        self.range(off, src.len())?;
        let _g = self.lock.write().unwrap_or_else(|e| e.into_inner());
        if let Some((map, _)) = &self.shared {
            return map.write(off, src);
        }
        // SAFETY: in bounds (checked), exclusive under the write lock, and
        // `src` cannot alias the block (we never hand out `&[u8]` into it
        // outside the lock).
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(off), src.len())
        };
        Ok(())
    }

    /// Run `f` on the whole block for reading.
    pub fn with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        let _g = self.lock.read().unwrap_or_else(|e| e.into_inner());
        if let Some((map, _)) = &self.shared {
            // No reference into memory another process may write: a copy.
            let mut copy = vec![0u8; self.len];
            let _ = map.read(0, &mut copy);
            return f(&copy);
        }
        // SAFETY: the allocation holds `len` initialised bytes; no writer
        // holds the lock while the slice lives.
        f(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) })
    }

    /// Run `f` on the whole block for writing.
    pub fn with_mut<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let _g = self.lock.write().unwrap_or_else(|e| e.into_inner());
        if let Some((map, _)) = &self.shared {
            let mut copy = vec![0u8; self.len];
            let _ = map.read(0, &mut copy);
            let r = f(&mut copy);
            let _ = map.write(0, &copy);
            return r;
        }
        // SAFETY: exclusive under the write lock; `len` initialised bytes.
        f(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) })
    }
}

impl Drop for MemBlock {
    fn drop(&mut self) {
        if self.shared.is_some() {
            return; // the mapping unmaps itself
        }
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

impl std::fmt::Debug for MemBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemBlock({:#x}, {} bytes)", self.addr(), self.len)
    }
}

/// Memory the application vouches for (`ibv_reg_mr` on a raw pointer).
#[derive(Debug, Clone, Copy)]
pub struct RawMem {
    ptr: usize,
    len: usize,
}

impl RawMem {
    /// Describe `len` bytes at `ptr`.
    ///
    /// # Safety
    /// The memory must stay valid for reads and writes, and must not be
    /// accessed by the application while the device may access it, until
    /// every region registered over it has been deregistered.
    pub unsafe fn new(ptr: *mut u8, len: usize) -> Self {
        RawMem {
            ptr: ptr as usize,
            len,
        }
    }
}

/// What a memory region is backed by.
#[derive(Debug, Clone)]
pub enum Backing {
    /// A block shared with the application.
    Block(Arc<MemBlock>),
    /// Raw memory, valid by the registrant's promise.
    Raw(RawMem),
    /// A peer process's sealed memfd, mapped here (the daemon backend): the
    /// region's address is the peer's virtual address `iova`; the bytes are
    /// racy (see [`crate::shm`]).
    Mapped {
        /// The mapping.
        map: Arc<SharedMap>,
        /// The address of the first byte in the registrant's address space.
        iova: u64,
    },
}

impl Backing {
    /// The address of the first byte.
    pub fn addr(&self) -> u64 {
        match self {
            Backing::Block(b) => b.addr(),
            Backing::Raw(r) => r.ptr as u64,
            Backing::Mapped { iova, .. } => *iova,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Backing::Block(b) => b.len(),
            Backing::Raw(r) => r.len,
            Backing::Mapped { map, .. } => map.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copy out `dst.len()` bytes at offset `off`.
    pub fn read(&self, off: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        match self {
            Backing::Block(b) => b.read(off, dst),
            Backing::Mapped { map, .. } => map.read(off, dst),
            Backing::Raw(r) => {
                check(off, dst.len(), r.len)?;
                // SAFETY: in bounds; validity is the registrant's contract
                // (`RawMem::new`).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        (r.ptr as *const u8).add(off),
                        dst.as_mut_ptr(),
                        dst.len(),
                    )
                };
                Ok(())
            }
        }
    }

    /// Copy `src` in at offset `off`.
    pub fn write(&self, off: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        match self {
            Backing::Block(b) => b.write(off, src),
            Backing::Mapped { map, .. } => map.write(off, src),
            Backing::Raw(r) => {
                check(off, src.len(), r.len)?;
                // SAFETY: in bounds; validity is the registrant's contract.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        src.as_ptr(),
                        (r.ptr as *mut u8).add(off),
                        src.len(),
                    )
                };
                Ok(())
            }
        }
    }

    /// Read-modify-write the native-endian u64 at `off` (8-byte aligned by
    /// the caller), returning the old value. The closure gives the new one;
    /// on shared memory it may run more than once (a compare-and-swap retry).
    pub fn update_u64(&self, off: usize, f: impl Fn(u64) -> u64) -> Result<u64, OutOfBounds> {
        let mut cell = [0u8; 8];
        match self {
            // Atomic against the peer process too (a compare-and-swap loop:
            // `f` runs again if the peer changed the value meanwhile).
            Backing::Mapped { map, .. } => map.update_u64(off, f),
            Backing::Block(b) if b.shared_map().is_some() => {
                b.range(off, 8)?;
                let _g = b.lock.write().unwrap_or_else(|e| e.into_inner());
                b.shared_map()
                    .map_or(Err(OutOfBounds), |m| m.update_u64(off, f))
            }
            Backing::Block(b) => {
                b.range(off, 8)?;
                b.with_mut(|bytes| {
                    cell.copy_from_slice(&bytes[off..off + 8]);
                    let old = u64::from_ne_bytes(cell);
                    bytes[off..off + 8].copy_from_slice(&f(old).to_ne_bytes());
                    Ok(old)
                })
            }
            Backing::Raw(_) => {
                self.read(off, &mut cell)?;
                let old = u64::from_ne_bytes(cell);
                self.write(off, &f(old).to_ne_bytes())?;
                Ok(old)
            }
        }
    }
}

fn check(off: usize, n: usize, len: usize) -> Result<(), OutOfBounds> {
    match off.checked_add(n) {
        Some(end) if end <= len => Ok(()),
        _ => Err(OutOfBounds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        let b = MemBlock::new(10);
        assert_eq!(b.write(8, &[1, 2, 3]), Err(OutOfBounds));
        assert_eq!(b.read(usize::MAX, &mut [0]), Err(OutOfBounds));
        assert!(b.write(7, &[1, 2, 3]).is_ok());
    }

    #[test]
    fn a_shared_block_is_a_sealed_memfd_seen_by_another_mapping() {
        let b = Arc::new(MemBlock::shared(5000).unwrap());
        assert_eq!((b.len(), b.addr() % PAGE_SIZE as u64), (5000, 0));
        let other = SharedMap::map(b.memfd().unwrap(), 0, 8192).unwrap();
        b.write(4999, &[9]).unwrap();
        let mut one = [0u8];
        other.read(4999, &mut one).unwrap();
        assert_eq!(one, [9]);
        other.write(0, b"peer").unwrap();
        assert_eq!(b.with(|x| x[..4].to_vec()), b"peer");
        b.with_mut(|x| x[4] = 7);
        other.read(4, &mut one).unwrap();
        assert_eq!(one, [7]);
        assert_eq!(b.write(4999, &[1, 2]), Err(OutOfBounds));
        let back = Backing::Block(b.clone());
        assert_eq!(back.update_u64(8, |v| v + 3).unwrap(), 0);
        assert_eq!(other.update_u64(8, |v| v).unwrap(), 3);
        // Sealed: the file cannot shrink under a peer's mapping.
        assert!(rustix::fs::ftruncate(b.memfd().unwrap(), 0).is_err());
    }

    #[test]
    fn update_u64_on_both_backings() {
        let b = Arc::new(MemBlock::new(16));
        let back = Backing::Block(b.clone());
        assert_eq!(back.update_u64(8, |v| v + 5).unwrap(), 0);
        assert_eq!(back.update_u64(8, |v| v * 2).unwrap(), 5);
        let mut raw = vec![0u8; 16];
        // SAFETY: `raw` outlives `r` and is not touched while `r` is used.
        let r = Backing::Raw(unsafe { RawMem::new(raw.as_mut_ptr(), raw.len()) });
        r.update_u64(0, |_| 7).unwrap();
        assert_eq!(r.update_u64(16, |v| v), Err(OutOfBounds));
        drop(r);
        assert_eq!(u64::from_ne_bytes(raw[..8].try_into().unwrap()), 7);
    }
}
