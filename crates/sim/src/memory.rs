//! Simulated host memory: the registered regions of one protection domain,
//! with the checks the [`Memory`] trait documents.
//!
//! Regions sit at distinct virtual addresses with an unmapped page between
//! them, so an engine that computes an address wrongly runs into a bounds
//! error instead of into a neighbour. Local and remote keys differ, so an
//! engine that presents the wrong one is refused.

use std::collections::BTreeMap;

use softverbs_transport::{Access, AtomicOp, MemError, MemKey, Memory};

const PAGE: u64 = 4096;

/// Where a registered region lives and how to name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionInfo {
    /// Local key.
    pub lkey: u32,
    /// Remote key.
    pub rkey: u32,
    /// Virtual address of the first byte.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
}

#[derive(Debug, Clone)]
struct Region {
    info: RegionInfo,
    access: Access,
    data: Vec<u8>,
}

/// The memory of one simulated host (one protection domain).
#[derive(Debug, Clone)]
pub struct SimMemory {
    regions: Vec<Region>,
    by_lkey: BTreeMap<u32, usize>,
    /// Remote keys still valid (SEND with invalidate removes one).
    by_rkey: BTreeMap<u32, usize>,
    key_base: u32,
    next_addr: u64,
}

impl SimMemory {
    /// An empty memory. Keys start at `key_base`; addresses at `addr_base`
    /// (rounded up to a page).
    pub fn new(key_base: u32, addr_base: u64) -> Self {
        SimMemory {
            regions: Vec::new(),
            by_lkey: BTreeMap::new(),
            by_rkey: BTreeMap::new(),
            key_base,
            next_addr: addr_base.div_ceil(PAGE) * PAGE,
        }
    }

    /// Register `len` zeroed bytes with `access` rights, placed `offset`
    /// bytes into a fresh page (so regions do not all start page-aligned).
    pub fn register(&mut self, len: usize, access: Access, offset: u64) -> RegionInfo {
        let idx = self.regions.len();
        let n = idx as u32;
        let lkey = self.key_base.wrapping_add(n.wrapping_mul(2));
        let info = RegionInfo {
            lkey,
            rkey: lkey.wrapping_add(1),
            addr: self.next_addr + offset % PAGE,
            len: len as u64,
        };
        self.next_addr = (info.addr + info.len).div_ceil(PAGE) * PAGE + PAGE;
        self.regions.push(Region {
            info,
            access,
            data: vec![0; len],
        });
        self.by_lkey.insert(info.lkey, idx);
        self.by_rkey.insert(info.rkey, idx);
        info
    }

    /// The simulator's own view of `len` bytes at `addr` of the region with
    /// local key `lkey`, bypassing access checks. `None` when out of range.
    pub fn peek(&self, lkey: u32, addr: u64, len: usize) -> Option<&[u8]> {
        let r = &self.regions[*self.by_lkey.get(&lkey)?];
        let off = usize::try_from(addr.checked_sub(r.info.addr)?).ok()?;
        r.data.get(off..off.checked_add(len)?)
    }

    /// Mutable counterpart of [`SimMemory::peek`].
    pub fn poke(&mut self, lkey: u32, addr: u64, len: usize) -> Option<&mut [u8]> {
        let r = &mut self.regions[*self.by_lkey.get(&lkey)?];
        let off = usize::try_from(addr.checked_sub(r.info.addr)?).ok()?;
        r.data.get_mut(off..off.checked_add(len)?)
    }

    /// Find the region `key` names and check that `len` bytes at `addr` lie
    /// in it and that it grants `need`. Returns the region and the offset.
    fn locate(
        &self,
        key: MemKey,
        addr: u64,
        len: u64,
        need: Access,
    ) -> Result<(usize, usize), MemError> {
        let idx = match key {
            MemKey::Local(k) => self.by_lkey.get(&k),
            MemKey::Remote(k) => self.by_rkey.get(&k),
        }
        .copied()
        .ok_or(MemError::InvalidKey)?;
        let r = &self.regions[idx];
        let off = addr.checked_sub(r.info.addr).ok_or(MemError::OutOfBounds)?;
        let end = off.checked_add(len).ok_or(MemError::OutOfBounds)?;
        if end > r.info.len {
            return Err(MemError::OutOfBounds);
        }
        if !r.access.contains(need) {
            return Err(MemError::AccessDenied);
        }
        Ok((idx, off as usize))
    }
}

/// The right an access through `key` needs.
fn needed(key: MemKey, write: bool) -> Access {
    match (key, write) {
        (MemKey::Local(_), false) => Access::NONE,
        (MemKey::Local(_), true) => Access::LOCAL_WRITE,
        (MemKey::Remote(_), false) => Access::REMOTE_READ,
        (MemKey::Remote(_), true) => Access::REMOTE_WRITE,
    }
}

impl Memory for SimMemory {
    fn check(&self, key: MemKey, addr: u64, len: u64, write: bool) -> Result<(), MemError> {
        self.locate(key, addr, len, needed(key, write)).map(|_| ())
    }

    fn read(&self, key: MemKey, addr: u64, dst: &mut [u8]) -> Result<(), MemError> {
        let (idx, off) = self.locate(key, addr, dst.len() as u64, needed(key, false))?;
        dst.copy_from_slice(&self.regions[idx].data[off..off + dst.len()]);
        Ok(())
    }

    fn write(&mut self, key: MemKey, addr: u64, src: &[u8]) -> Result<(), MemError> {
        let (idx, off) = self.locate(key, addr, src.len() as u64, needed(key, true))?;
        self.regions[idx].data[off..off + src.len()].copy_from_slice(src);
        Ok(())
    }

    fn atomic(&mut self, rkey: u32, addr: u64, op: AtomicOp) -> Result<u64, MemError> {
        let (idx, off) = self.locate(MemKey::Remote(rkey), addr, 8, Access::REMOTE_ATOMIC)?;
        if addr & 7 != 0 {
            return Err(MemError::Misaligned);
        }
        let cell = &mut self.regions[idx].data[off..off + 8];
        let old = u64::from_ne_bytes(cell.try_into().map_err(|_| MemError::OutOfBounds)?);
        let new = match op {
            AtomicOp::CompareSwap { compare, swap } => {
                if old == compare {
                    swap
                } else {
                    old
                }
            }
            AtomicOp::FetchAdd { add } => old.wrapping_add(add),
        };
        cell.copy_from_slice(&new.to_ne_bytes());
        Ok(old)
    }

    fn invalidate(&mut self, rkey: u32) -> Result<(), MemError> {
        self.by_rkey
            .remove(&rkey)
            .map(|_| ())
            .ok_or(MemError::InvalidKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> (SimMemory, RegionInfo, RegionInfo) {
        let mut m = SimMemory::new(0x100, 0x10_0000);
        let a = m.register(64, Access::LOCAL_WRITE | Access::REMOTE_WRITE, 8);
        let b = m.register(32, Access::REMOTE_READ | Access::REMOTE_ATOMIC, 16);
        (m, a, b)
    }

    #[test]
    fn regions_are_apart_and_keys_distinct() {
        let (_, a, b) = mem();
        assert_ne!(a.lkey, a.rkey);
        assert_ne!(a.lkey, b.lkey);
        assert!(b.addr >= a.addr + a.len + PAGE);
        assert_eq!(a.addr % PAGE, 8);
    }

    #[test]
    fn keys_bounds_and_rights_are_checked() {
        let (mut m, a, b) = mem();
        assert_eq!(m.write(MemKey::Local(a.lkey), a.addr, &[1; 64]), Ok(()));
        assert_eq!(
            m.write(MemKey::Remote(a.rkey), a.addr + 60, &[2; 4]),
            Ok(())
        );
        assert_eq!(
            m.write(MemKey::Remote(a.rkey), a.addr + 61, &[2; 4]),
            Err(MemError::OutOfBounds)
        );
        assert_eq!(
            m.write(MemKey::Remote(a.rkey), a.addr - 1, &[2; 1]),
            Err(MemError::OutOfBounds)
        );
        assert_eq!(
            m.write(MemKey::Remote(a.lkey), a.addr, &[2; 1]),
            Err(MemError::InvalidKey)
        );
        assert_eq!(
            m.write(MemKey::Local(a.rkey), a.addr, &[2; 1]),
            Err(MemError::InvalidKey)
        );
        assert_eq!(
            m.check(MemKey::Remote(a.rkey), a.addr, 1, false),
            Err(MemError::AccessDenied)
        );
        assert_eq!(m.check(MemKey::Local(b.lkey), b.addr, 32, false), Ok(()));
        assert_eq!(
            m.check(MemKey::Local(b.lkey), b.addr, 1, true),
            Err(MemError::AccessDenied)
        );
        assert_eq!(m.check(MemKey::Remote(b.rkey), b.addr, 32, false), Ok(()));
        assert_eq!(
            m.check(MemKey::Remote(b.rkey), b.addr, 1, true),
            Err(MemError::AccessDenied)
        );
        assert_eq!(
            m.check(MemKey::Remote(b.rkey), u64::MAX, 2, false),
            Err(MemError::OutOfBounds)
        );
        let mut buf = [0u8; 4];
        m.read(MemKey::Local(a.lkey), a.addr + 58, &mut buf)
            .unwrap();
        assert_eq!(buf, [1, 1, 2, 2]);
        assert_eq!(m.peek(a.lkey, a.addr + 60, 4), Some(&[2u8; 4][..]));
        assert_eq!(m.peek(a.lkey, a.addr + 61, 4), None);
    }

    #[test]
    fn atomics_are_native_endian_aligned_and_need_the_right() {
        let (mut m, a, b) = mem();
        let at = b.addr; // b.addr % 8 == 0 (offset 16)
        assert_eq!(m.atomic(b.rkey, at, AtomicOp::FetchAdd { add: 5 }), Ok(0));
        assert_eq!(
            m.atomic(b.rkey, at, AtomicOp::FetchAdd { add: u64::MAX }),
            Ok(5)
        );
        assert_eq!(
            m.atomic(
                b.rkey,
                at,
                AtomicOp::CompareSwap {
                    compare: 3,
                    swap: 9
                }
            ),
            Ok(4)
        );
        assert_eq!(
            m.atomic(
                b.rkey,
                at,
                AtomicOp::CompareSwap {
                    compare: 4,
                    swap: 9
                }
            ),
            Ok(4)
        );
        assert_eq!(m.peek(b.lkey, at, 8), Some(&9u64.to_ne_bytes()[..]));
        assert_eq!(
            m.atomic(b.rkey, at + 4, AtomicOp::FetchAdd { add: 1 }),
            Err(MemError::Misaligned)
        );
        assert_eq!(
            m.atomic(b.rkey, at + 32, AtomicOp::FetchAdd { add: 1 }),
            Err(MemError::OutOfBounds)
        );
        assert_eq!(
            m.atomic(a.rkey, a.addr, AtomicOp::FetchAdd { add: 1 }),
            Err(MemError::AccessDenied)
        );
        assert_eq!(
            m.atomic(b.lkey, at, AtomicOp::FetchAdd { add: 1 }),
            Err(MemError::InvalidKey)
        );
        assert_eq!(
            m.peek(b.lkey, at, 8),
            Some(&9u64.to_ne_bytes()[..]),
            "failed atomics change nothing"
        );
    }

    #[test]
    fn invalidate_kills_the_remote_key_only() {
        let (mut m, a, _) = mem();
        assert_eq!(m.invalidate(a.rkey), Ok(()));
        assert_eq!(m.invalidate(a.rkey), Err(MemError::InvalidKey));
        assert_eq!(
            m.write(MemKey::Remote(a.rkey), a.addr, &[1]),
            Err(MemError::InvalidKey)
        );
        assert_eq!(m.write(MemKey::Local(a.lkey), a.addr, &[1]), Ok(()));
    }
}
