//! How an engine reaches memory: only through [`Memory`], which checks keys,
//! bounds and access rights. The engine never owns user buffers.
//!
//! A device hands the engine a `Memory` scoped to the QP's protection domain,
//! so a key of another PD is simply unknown here.

use core::fmt;

/// Access rights of a memory region (the bits of `ibv_access_flags`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Access(pub u32);

impl Access {
    /// No rights beyond local read, which every region has.
    pub const NONE: Access = Access(0);
    /// The local side may write (receive buffers, RDMA READ targets, atomic results).
    pub const LOCAL_WRITE: Access = Access(1);
    /// Remote peers may RDMA WRITE.
    pub const REMOTE_WRITE: Access = Access(1 << 1);
    /// Remote peers may RDMA READ.
    pub const REMOTE_READ: Access = Access(1 << 2);
    /// Remote peers may perform atomics.
    pub const REMOTE_ATOMIC: Access = Access(1 << 3);
    /// Memory windows may be bound to the region.
    pub const MW_BIND: Access = Access(1 << 4);
    /// Every bit this version knows.
    pub const ALL: Access = Access(0x1f);

    /// True when every bit of `other` is set in `self`.
    pub fn contains(self, other: Access) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for Access {
    type Output = Access;
    fn bitor(self, rhs: Access) -> Access {
        Access(self.0 | rhs.0)
    }
}

/// Which key names the memory: a local key from an SGE or a remote key from
/// a RETH / AtomicETH. Remote keys need the matching remote access right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemKey {
    /// An lkey, used by the local side's own work requests.
    Local(u32),
    /// An rkey, presented by the peer.
    Remote(u32),
}

/// The atomic operations of IBTA 9.4.5 on an 8-byte aligned `u64` kept in
/// the target's native byte order, as rxe does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtomicOp {
    /// Write `swap` if the current value equals `compare`.
    CompareSwap {
        /// The value expected in memory.
        compare: u64,
        /// The value stored when it matches.
        swap: u64,
    },
    /// Add `add` (wrapping).
    FetchAdd {
        /// The addend.
        add: u64,
    },
}

/// Why a memory access was refused. The engine maps it to the IBTA status
/// (local: `LOC_PROT_ERR`; remote: NAK remote access error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemError {
    /// No region (or window) with that key in this protection domain.
    InvalidKey,
    /// The range falls outside the region.
    OutOfBounds,
    /// The region does not grant the access asked for.
    AccessDenied,
    /// Atomics need an 8-byte aligned address.
    Misaligned,
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemError::InvalidKey => "no memory region with this key in the QP's protection domain",
            MemError::OutOfBounds => "the range lies outside the memory region",
            MemError::AccessDenied => "the memory region does not grant this access",
            MemError::Misaligned => "atomic operations need an 8-byte aligned address",
        })
    }
}

impl std::error::Error for MemError {}

/// A memory window bind (BIND_MW), as the requester hands it to
/// [`Memory::bind_mw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MwBindReq {
    /// The window: its current rkey (or the one `alloc_mw` gave).
    pub mw_rkey: u32,
    /// The key the window takes: its low 8 bits become the window's key
    /// byte; `None`: the memory picks the next one.
    pub new_rkey: Option<u32>,
    /// The region bound to.
    pub mr_lkey: u32,
    /// Start address inside the region.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// Remote rights granted through the window.
    pub access: Access,
}

/// The memory of one protection domain as an engine sees it.
///
/// Every method checks the key, the bounds and the access the operation
/// needs: local reads need nothing, local writes `LOCAL_WRITE`, remote reads
/// `REMOTE_READ`, remote writes `REMOTE_WRITE`, atomics `REMOTE_ATOMIC`.
/// A failed call changes nothing.
pub trait Memory {
    /// Check that `len` bytes at `addr` may be read (`write == false`) or
    /// written through `key`, without touching them.
    fn check(&self, key: MemKey, addr: u64, len: u64, write: bool) -> Result<(), MemError>;
    /// Copy `dst.len()` bytes at `addr` into `dst`.
    fn read(&self, key: MemKey, addr: u64, dst: &mut [u8]) -> Result<(), MemError>;
    /// Copy `src` to `addr`.
    fn write(&mut self, key: MemKey, addr: u64, src: &[u8]) -> Result<(), MemError>;
    /// Perform an atomic on the 8 bytes at `addr` and return the original value.
    fn atomic(&mut self, rkey: u32, addr: u64, op: AtomicOp) -> Result<u64, MemError>;
    /// Invalidate the region or window that `rkey` names (SEND with
    /// invalidate, IBTA 10.6.6.2). Errors if the key is unknown or may not be
    /// invalidated remotely.
    fn invalidate(&mut self, rkey: u32) -> Result<(), MemError>;
    /// Bind a type 2 memory window for the QP this memory is seen through
    /// (BIND_MW, IBTA 10.6.7.2): checks the window (type 2, unbound, this
    /// PD), the region (this PD, `MW_BIND`, `LOCAL_WRITE` when remote write
    /// or atomic rights are granted) and the range (inside the region).
    /// Returns the window's new rkey. A failed call changes nothing.
    ///
    /// The default refuses: memories without windows need not implement it.
    fn bind_mw(&mut self, bind: &MwBindReq) -> Result<u32, MemError> {
        let _ = bind;
        Err(MemError::InvalidKey)
    }
}

/// A memory with no regions: every key is unknown. Useful for QPs that only
/// move inline data and for examples.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMemory;

impl Memory for NoMemory {
    fn check(&self, _: MemKey, _: u64, _: u64, _: bool) -> Result<(), MemError> {
        Err(MemError::InvalidKey)
    }
    fn read(&self, _: MemKey, _: u64, _: &mut [u8]) -> Result<(), MemError> {
        Err(MemError::InvalidKey)
    }
    fn write(&mut self, _: MemKey, _: u64, _: &[u8]) -> Result<(), MemError> {
        Err(MemError::InvalidKey)
    }
    fn atomic(&mut self, _: u32, _: u64, _: AtomicOp) -> Result<u64, MemError> {
        Err(MemError::InvalidKey)
    }
    fn invalidate(&mut self, _: u32) -> Result<(), MemError> {
        Err(MemError::InvalidKey)
    }
}
