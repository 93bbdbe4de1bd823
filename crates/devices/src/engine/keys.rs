//! Memory regions and windows, named by keys, and the [`Memory`] an engine
//! sees: the regions of one protection domain.
//!
//! A key is `index << 8 | key` as in rxe: a 24-bit table index plus an 8-bit
//! key part that rotates with every registration and every window bind, so
//! a stale key (of a deregistered region, or of a window before it was
//! rebound) does not name the object that now lives at its index. Indices
//! are handed out cyclically and never reused while live. A region's lkey
//! and rkey are the same number (rxe does the same).

use std::collections::HashMap;

use softverbs_core::driver::{MwBind, MwType};
use softverbs_core::mem::Backing;
use softverbs_core::VerbsError;
use softverbs_transport::{Access, AtomicOp, MemError, MemKey, Memory, MwBindReq};

/// The largest table index (24 bits).
const MAX_INDEX: u32 = 0x00ff_ffff;

/// A registered memory region.
#[derive(Debug)]
pub(crate) struct Mr {
    pub key: u32,
    pub pd: u32,
    pub backing: Backing,
    /// The RDMA address of the first byte: local SGEs, RDMA virtual
    /// addresses and window binds are in this space (rxe's
    /// `mr->ibmr.iova`); the bytes live in `backing`, wherever it sits.
    pub iova: u64,
    pub access: Access,
    /// Invalidated (LOCAL_INV or SEND with invalidate): no access until
    /// deregistered.
    pub valid: bool,
    /// Windows bound to it.
    pub bound_mws: Vec<u32>,
}

impl Mr {
    fn addr(&self) -> u64 {
        self.iova
    }
    fn len(&self) -> u64 {
        self.backing.len() as u64
    }
}

/// Where a window is bound.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MwBinding {
    pub mr_index: u32,
    pub addr: u64,
    pub len: u64,
    pub access: Access,
    /// Type 2: the only QP that may use it.
    pub qpn: Option<u32>,
}

/// A memory window.
#[derive(Debug)]
pub(crate) struct Mw {
    pub key: u32,
    /// The key `alloc_mw` returned (still accepted to name the window for
    /// bind and dealloc).
    pub alloc_key: u32,
    pub pd: u32,
    pub ty: MwType,
    pub bound: Option<MwBinding>,
}

#[derive(Debug)]
pub(crate) enum KeyObj {
    Mr(Mr),
    Mw(Mw),
}

/// Why a bind failed: the verbs error for the bind verb, the memory error
/// (a `MW_BIND_ERR` completion) for a BIND_MW work request.
#[derive(Debug)]
enum BindError {
    NotFound(String),
    State(String),
    Invalid(String, MemError),
}

impl BindError {
    fn into_verbs(self) -> VerbsError {
        match self {
            BindError::NotFound(w) => VerbsError::NotFound(w),
            BindError::State(w) => VerbsError::InvalidState(w),
            BindError::Invalid(w, _) => VerbsError::invalid(w),
        }
    }

    fn mem(self) -> MemError {
        match self {
            BindError::NotFound(_) => MemError::InvalidKey,
            BindError::State(_) => MemError::AccessDenied,
            BindError::Invalid(_, e) => e,
        }
    }
}

/// All regions and windows of a device.
#[derive(Debug)]
pub(crate) struct KeyTable {
    objs: HashMap<u32, KeyObj>,
    next_index: u32,
    next_key: u8,
    pub mrs: u32,
    pub mws: u32,
}

fn index_of(key: u32) -> u32 {
    key >> 8
}

fn bounds(base: u64, size: u64, addr: u64, len: u64) -> bool {
    addr >= base
        && (addr - base)
            .checked_add(len)
            .is_some_and(|end| end <= size)
}

impl KeyTable {
    pub(crate) fn new() -> Self {
        KeyTable {
            objs: HashMap::new(),
            next_index: 1,
            next_key: 0,
            mrs: 0,
            mws: 0,
        }
    }

    fn alloc_key(&mut self) -> Result<u32, VerbsError> {
        for _ in 0..=MAX_INDEX {
            let index = self.next_index;
            self.next_index = if index >= MAX_INDEX { 1 } else { index + 1 };
            if !self.objs.contains_key(&index) {
                let k = self.next_key;
                self.next_key = k.wrapping_add(1);
                return Ok(index << 8 | u32::from(k));
            }
        }
        Err(VerbsError::NoResources("no free memory keys".into()))
    }

    pub(crate) fn reg_mr(
        &mut self,
        pd: u32,
        backing: Backing,
        iova: u64,
        access: Access,
    ) -> Result<u32, VerbsError> {
        if iova.checked_add(backing.len() as u64).is_none() {
            return Err(VerbsError::invalid(format!(
                "region iova {iova:#x} + length {} overflows 64 bits",
                backing.len()
            )));
        }
        let key = self.alloc_key()?;
        self.objs.insert(
            index_of(key),
            KeyObj::Mr(Mr {
                key,
                pd,
                backing,
                iova,
                access,
                valid: true,
                bound_mws: Vec::new(),
            }),
        );
        self.mrs += 1;
        Ok(key)
    }

    pub(crate) fn mr(&self, key: u32) -> Option<&Mr> {
        match self.objs.get(&index_of(key)) {
            Some(KeyObj::Mr(m)) if m.key == key => Some(m),
            _ => None,
        }
    }

    /// The windows bound to region `mr`, by their current rkeys.
    fn bound_users(&self, mr: &Mr) -> Vec<String> {
        mr.bound_mws
            .iter()
            .filter_map(|i| match self.objs.get(i) {
                Some(KeyObj::Mw(w)) => Some(format!("memory window rkey {:#x}", w.key)),
                _ => None,
            })
            .collect()
    }

    /// Changes region `lkey` in place, its key kept (`ibv_rereg_mr`): PD,
    /// access and/or memory with its iova, all or nothing. A region with
    /// windows bound is `Busy`; work already posted with the old addresses
    /// now fails their checks, as on rxe.
    pub(crate) fn rereg_mr(
        &mut self,
        lkey: u32,
        pd: Option<u32>,
        access: Option<Access>,
        memory: Option<(Backing, u64)>,
    ) -> Result<(), VerbsError> {
        let mr = self
            .mr(lkey)
            .ok_or_else(|| VerbsError::NotFound(format!("memory region with lkey {lkey:#x}")))?;
        if !mr.bound_mws.is_empty() {
            return Err(VerbsError::Busy {
                what: format!("memory region lkey {lkey:#x} (re-registration)"),
                users: self.bound_users(mr),
            });
        }
        if let Some((b, iova)) = &memory {
            if iova.checked_add(b.len() as u64).is_none() {
                return Err(VerbsError::invalid(format!(
                    "region iova {iova:#x} + length {} overflows 64 bits",
                    b.len()
                )));
            }
        }
        let Some(KeyObj::Mr(mr)) = self.objs.get_mut(&index_of(lkey)) else {
            unreachable!("checked above");
        };
        if let Some(pd) = pd {
            mr.pd = pd;
        }
        if let Some(a) = access {
            mr.access = a;
        }
        if let Some((b, iova)) = memory {
            mr.backing = b;
            mr.iova = iova;
        }
        Ok(())
    }

    pub(crate) fn dereg_mr(&mut self, lkey: u32) -> Result<(), VerbsError> {
        let mr = self
            .mr(lkey)
            .ok_or_else(|| VerbsError::NotFound(format!("memory region with lkey {lkey:#x}")))?;
        if !mr.bound_mws.is_empty() {
            return Err(VerbsError::Busy {
                what: format!("memory region lkey {lkey:#x}"),
                users: self.bound_users(mr),
            });
        }
        self.objs.remove(&index_of(lkey));
        self.mrs -= 1;
        Ok(())
    }

    pub(crate) fn alloc_mw(&mut self, pd: u32, ty: MwType) -> Result<u32, VerbsError> {
        let key = self.alloc_key()?;
        self.objs.insert(
            index_of(key),
            KeyObj::Mw(Mw {
                key,
                alloc_key: key,
                pd,
                ty,
                bound: None,
            }),
        );
        self.mws += 1;
        Ok(key)
    }

    fn mw_mut(&mut self, key: u32) -> Option<&mut Mw> {
        match self.objs.get_mut(&index_of(key)) {
            Some(KeyObj::Mw(w)) if w.key == key || w.alloc_key == key => Some(w),
            _ => None,
        }
    }

    fn unbind(&mut self, mw_index: u32) {
        let Some(KeyObj::Mw(w)) = self.objs.get_mut(&mw_index) else {
            return;
        };
        if let Some(b) = w.bound.take() {
            if let Some(KeyObj::Mr(m)) = self.objs.get_mut(&b.mr_index) {
                m.bound_mws.retain(|&i| i != mw_index);
            }
        }
    }

    pub(crate) fn dealloc_mw(&mut self, rkey: u32) -> Result<(), VerbsError> {
        if self.mw_mut(rkey).is_none() {
            return Err(VerbsError::NotFound(format!(
                "memory window with rkey {rkey:#x}"
            )));
        }
        self.unbind(index_of(rkey));
        self.objs.remove(&index_of(rkey));
        self.mws -= 1;
        Ok(())
    }

    /// The type of the window `key` names (its current or its allocation
    /// key), if it names one.
    pub(crate) fn mw_type(&mut self, key: u32) -> Option<MwType> {
        self.mw_mut(key).map(|w| w.ty)
    }

    /// Bind window `mw_rkey` for a QP of `pd` (`qpn`) through the bind verb
    /// (`ibv_bind_mw`); returns the new rkey.
    pub(crate) fn bind_mw(
        &mut self,
        pd: u32,
        qpn: u32,
        mw_rkey: u32,
        bind: &MwBind,
    ) -> Result<u32, VerbsError> {
        self.try_bind(pd, qpn, mw_rkey, None, bind)
            .map_err(BindError::into_verbs)
    }

    /// Bind a window by a BIND_MW work request of QP `qpn` (of `pd`): a
    /// type 2 window (`post_send`) or a type 1 window (the bind verb posted
    /// on the send queue); the key byte of the new rkey is `new_key`'s, or
    /// the next one.
    pub(crate) fn bind_mw_wr(
        &mut self,
        pd: u32,
        qpn: u32,
        mw_rkey: u32,
        new_key: Option<u8>,
        bind: &MwBind,
    ) -> Result<u32, MemError> {
        self.try_bind(pd, qpn, mw_rkey, new_key, bind)
            .map_err(|e| e.mem())
    }

    fn try_bind(
        &mut self,
        pd: u32,
        qpn: u32,
        mw_rkey: u32,
        new_key: Option<u8>,
        bind: &MwBind,
    ) -> Result<u32, BindError> {
        let MwBind {
            mr_lkey,
            addr,
            len,
            access,
        } = *bind;
        let remote = Access::REMOTE_READ | Access::REMOTE_WRITE | Access::REMOTE_ATOMIC;
        if access.0 & !remote.0 != 0 {
            return Err(BindError::Invalid(
                "a window grants remote rights only (REMOTE_READ, REMOTE_WRITE, REMOTE_ATOMIC)"
                    .into(),
                MemError::AccessDenied,
            ));
        }
        let mw = self
            .mw_mut(mw_rkey)
            .ok_or_else(|| BindError::NotFound(format!("memory window with rkey {mw_rkey:#x}")))?;
        if mw.pd != pd {
            return Err(BindError::Invalid(
                "the memory window belongs to another protection domain than the QP".into(),
                MemError::InvalidKey,
            ));
        }
        // A type 1 window comes here by work request only through the bind
        // verb (`Driver::post_bind_mw`, as rxe's provider posts
        // ibv_bind_mw): `post_send` refuses it before.
        let ty = mw.ty;
        if ty == MwType::Type2 && mw.bound.is_some() {
            return Err(BindError::State(
                "a type 2 memory window is bound; invalidate it before binding it again".into(),
            ));
        }
        if ty == MwType::Type2 && len == 0 {
            // o10-37.2.40: a type 2 window is unbound by invalidation only.
            return Err(BindError::Invalid(
                "a type 2 memory window cannot be bound with length 0 (invalidate it instead)"
                    .into(),
                MemError::OutOfBounds,
            ));
        }
        let mw_index = index_of(mw_rkey);
        let unbinding = ty == MwType::Type1 && len == 0;
        if !unbinding {
            let mr = self.mr(mr_lkey).ok_or_else(|| {
                BindError::NotFound(format!("memory region with lkey {mr_lkey:#x}"))
            })?;
            if mr.pd != pd {
                return Err(BindError::Invalid(
                    "the memory region belongs to another protection domain than the window".into(),
                    MemError::InvalidKey,
                ));
            }
            if !mr.valid {
                return Err(BindError::State("the memory region was invalidated".into()));
            }
            if !mr.access.contains(Access::MW_BIND) {
                return Err(BindError::Invalid(
                    "the memory region was not registered with MW_BIND access".into(),
                    MemError::AccessDenied,
                ));
            }
            if (access.contains(Access::REMOTE_WRITE) || access.contains(Access::REMOTE_ATOMIC))
                && !mr.access.contains(Access::LOCAL_WRITE)
            {
                return Err(BindError::Invalid(
                    "remote write or atomic rights through a window need LOCAL_WRITE on the region"
                        .into(),
                    MemError::AccessDenied,
                ));
            }
            if !bounds(mr.addr(), mr.len(), addr, len) {
                return Err(BindError::Invalid(
                    format!(
                        "the window [{addr:#x}, +{len}) lies outside the region [{:#x}, +{})",
                        mr.addr(),
                        mr.len()
                    ),
                    MemError::OutOfBounds,
                ));
            }
        }
        self.unbind(mw_index);
        let mr_index = index_of(mr_lkey);
        let Some(KeyObj::Mw(mw)) = self.objs.get_mut(&mw_index) else {
            unreachable!("checked above");
        };
        let key = new_key.map_or(((mw.key & 0xff) + 1) & 0xff, u32::from);
        let new_key = mw_index << 8 | key;
        mw.key = new_key;
        if !unbinding {
            mw.bound = Some(MwBinding {
                mr_index,
                addr,
                len,
                access,
                qpn: (ty == MwType::Type2).then_some(qpn),
            });
            if let Some(KeyObj::Mr(m)) = self.objs.get_mut(&mr_index) {
                m.bound_mws.push(mw_index);
            }
        }
        Ok(new_key)
    }

    /// Invalidate `rkey` in `pd`: a region becomes unusable, a type 2
    /// window unbound. `remote` is SEND with invalidate; type 1 windows can
    /// be invalidated neither way.
    pub(crate) fn invalidate(&mut self, pd: u32, rkey: u32) -> Result<(), MemError> {
        let index = index_of(rkey);
        match self.objs.get_mut(&index) {
            Some(KeyObj::Mr(m)) if m.key == rkey => {
                if m.pd != pd {
                    return Err(MemError::InvalidKey);
                }
                m.valid = false;
                Ok(())
            }
            Some(KeyObj::Mw(w)) if w.key == rkey => {
                if w.pd != pd {
                    return Err(MemError::InvalidKey);
                }
                if w.ty == MwType::Type1 || w.bound.is_none() {
                    return Err(MemError::AccessDenied);
                }
                self.unbind(index);
                Ok(())
            }
            _ => Err(MemError::InvalidKey),
        }
    }

    /// The backing and offset for `len` bytes at `addr` through `key`, with
    /// every check of the transport's `Memory` contract.
    fn resolve(
        &self,
        pd: u32,
        qpn: u32,
        key: MemKey,
        addr: u64,
        len: u64,
        need: Access,
    ) -> Result<(&Backing, usize), MemError> {
        let (k, remote) = match key {
            MemKey::Local(k) => (k, false),
            MemKey::Remote(k) => (k, true),
        };
        let mr = match self.objs.get(&index_of(k)) {
            Some(KeyObj::Mr(m)) if m.key == k && m.pd == pd && m.valid => {
                if !m.access.contains(need) {
                    return Err(MemError::AccessDenied);
                }
                m
            }
            Some(KeyObj::Mw(w)) if remote && w.key == k && w.pd == pd => {
                let b = w.bound.ok_or(MemError::InvalidKey)?;
                if b.qpn.is_some_and(|q| q != qpn) {
                    return Err(MemError::InvalidKey);
                }
                if !b.access.contains(need) {
                    return Err(MemError::AccessDenied);
                }
                if !bounds(b.addr, b.len, addr, len) {
                    return Err(MemError::OutOfBounds);
                }
                match self.objs.get(&b.mr_index) {
                    Some(KeyObj::Mr(m)) if m.valid => m,
                    _ => return Err(MemError::InvalidKey),
                }
            }
            _ => return Err(MemError::InvalidKey),
        };
        if !bounds(mr.addr(), mr.len(), addr, len) {
            return Err(MemError::OutOfBounds);
        }
        Ok((&mr.backing, (addr - mr.addr()) as usize))
    }
}

/// The memory of one protection domain, as one QP sees it (type 2 windows
/// answer only to the QP they are bound to).
pub(crate) struct PdMemory<'a> {
    pub keys: &'a mut KeyTable,
    pub pd: u32,
    pub qpn: u32,
}

fn need(key: MemKey, write: bool) -> Access {
    match (key, write) {
        (MemKey::Local(_), false) => Access::NONE,
        (MemKey::Local(_), true) => Access::LOCAL_WRITE,
        (MemKey::Remote(_), false) => Access::REMOTE_READ,
        (MemKey::Remote(_), true) => Access::REMOTE_WRITE,
    }
}

impl Memory for PdMemory<'_> {
    fn check(&self, key: MemKey, addr: u64, len: u64, write: bool) -> Result<(), MemError> {
        self.keys
            .resolve(self.pd, self.qpn, key, addr, len, need(key, write))
            .map(|_| ())
    }

    fn read(&self, key: MemKey, addr: u64, dst: &mut [u8]) -> Result<(), MemError> {
        let (b, off) = self.keys.resolve(
            self.pd,
            self.qpn,
            key,
            addr,
            dst.len() as u64,
            need(key, false),
        )?;
        b.read(off, dst).map_err(|_| MemError::OutOfBounds)
    }

    fn write(&mut self, key: MemKey, addr: u64, src: &[u8]) -> Result<(), MemError> {
        let (b, off) = self.keys.resolve(
            self.pd,
            self.qpn,
            key,
            addr,
            src.len() as u64,
            need(key, true),
        )?;
        b.write(off, src).map_err(|_| MemError::OutOfBounds)
    }

    fn atomic(&mut self, rkey: u32, addr: u64, op: AtomicOp) -> Result<u64, MemError> {
        if !addr.is_multiple_of(8) {
            return Err(MemError::Misaligned);
        }
        let (b, off) = self.keys.resolve(
            self.pd,
            self.qpn,
            MemKey::Remote(rkey),
            addr,
            8,
            Access::REMOTE_ATOMIC,
        )?;
        b.update_u64(off, |old| match op {
            AtomicOp::CompareSwap { compare, swap } => {
                if old == compare {
                    swap
                } else {
                    old
                }
            }
            AtomicOp::FetchAdd { add } => old.wrapping_add(add),
        })
        .map_err(|_| MemError::OutOfBounds)
    }

    fn invalidate(&mut self, rkey: u32) -> Result<(), MemError> {
        self.keys.invalidate(self.pd, rkey)
    }

    fn bind_mw(&mut self, b: &MwBindReq) -> Result<u32, MemError> {
        let bind = MwBind {
            mr_lkey: b.mr_lkey,
            addr: b.addr,
            len: b.len,
            access: b.access,
        };
        let new_key = b.new_rkey.map(|k| (k & 0xff) as u8);
        self.keys
            .bind_mw_wr(self.pd, self.qpn, b.mw_rkey, new_key, &bind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use softverbs_core::mem::MemBlock;
    use std::sync::Arc;

    fn block(len: usize) -> (Backing, u64) {
        let b = Arc::new(MemBlock::new(len));
        let a = b.addr();
        (Backing::Block(b), a)
    }

    #[test]
    fn keys_rotate_and_stale_keys_miss() {
        let mut t = KeyTable::new();
        let (b, _) = block(64);
        let k1 = t.reg_mr(1, b.clone(), 0x1000, Access::ALL).unwrap();
        t.dereg_mr(k1).unwrap();
        let k2 = t.reg_mr(1, b, 0x1000, Access::ALL).unwrap();
        assert_ne!(k1, k2);
        assert!(t.mr(k1).is_none());
        assert!(t.mr(k2).is_some());
    }

    #[test]
    fn memory_checks_pd_bounds_and_access() {
        let mut t = KeyTable::new();
        let (b, a) = block(64);
        let k = t
            .reg_mr(1, b, a, Access::LOCAL_WRITE | Access::REMOTE_READ)
            .unwrap();
        let mut m = PdMemory {
            keys: &mut t,
            pd: 1,
            qpn: 17,
        };
        m.write(MemKey::Local(k), a + 8, b"abc").unwrap();
        let mut out = [0u8; 3];
        m.read(MemKey::Remote(k), a + 8, &mut out).unwrap();
        assert_eq!(&out, b"abc");
        assert_eq!(
            m.write(MemKey::Remote(k), a, b"x"),
            Err(MemError::AccessDenied)
        );
        assert_eq!(
            m.read(MemKey::Local(k), a + 62, &mut out),
            Err(MemError::OutOfBounds)
        );
        assert_eq!(
            m.check(MemKey::Local(k), a - 1, 1, false),
            Err(MemError::OutOfBounds)
        );
        assert_eq!(
            m.atomic(k, a, AtomicOp::FetchAdd { add: 1 }),
            Err(MemError::AccessDenied)
        );
        let mut other = PdMemory {
            keys: &mut t,
            pd: 2,
            qpn: 17,
        };
        assert_eq!(
            other.read(MemKey::Local(k), a, &mut out),
            Err(MemError::InvalidKey)
        );
        assert_eq!(other.invalidate(k), Err(MemError::InvalidKey));
    }

    #[test]
    fn windows_bind_rotate_and_invalidate() {
        let mut t = KeyTable::new();
        let (b, a) = block(4096);
        let mr = t
            .reg_mr(1, b, a, Access::LOCAL_WRITE | Access::MW_BIND)
            .unwrap();
        let w = t.alloc_mw(1, MwType::Type2).unwrap();
        let r1 = t
            .bind_mw(
                1,
                17,
                w,
                &MwBind {
                    mr_lkey: mr,
                    addr: a + 100,
                    len: 50,
                    access: Access::REMOTE_WRITE,
                },
            )
            .unwrap();
        assert_ne!(r1, w);
        assert!(t.dereg_mr(mr).is_err(), "busy while a window is bound");
        let mut m = PdMemory {
            keys: &mut t,
            pd: 1,
            qpn: 17,
        };
        m.write(MemKey::Remote(r1), a + 100, &[1; 50]).unwrap();
        assert_eq!(
            m.write(MemKey::Remote(r1), a + 99, &[1]),
            Err(MemError::OutOfBounds)
        );
        assert_eq!(
            m.write(MemKey::Local(r1), a + 100, &[1]),
            Err(MemError::InvalidKey)
        );
        let mut other_qp = PdMemory {
            keys: &mut t,
            pd: 1,
            qpn: 18,
        };
        assert_eq!(
            other_qp.write(MemKey::Remote(r1), a + 100, &[1]),
            Err(MemError::InvalidKey)
        );
        t.invalidate(1, r1).unwrap();
        let mut m = PdMemory {
            keys: &mut t,
            pd: 1,
            qpn: 17,
        };
        assert_eq!(
            m.write(MemKey::Remote(r1), a + 100, &[1]),
            Err(MemError::InvalidKey)
        );
        let r2 = t
            .bind_mw(
                1,
                17,
                w,
                &MwBind {
                    mr_lkey: mr,
                    addr: a,
                    len: 10,
                    access: Access::REMOTE_READ,
                },
            )
            .unwrap();
        assert_ne!(r2, r1);
        t.dealloc_mw(w).unwrap();
        t.dereg_mr(mr).unwrap();
    }

    #[test]
    fn an_iova_region_is_addressed_by_its_iova() {
        let mut t = KeyTable::new();
        let (b, a) = block(8192);
        let iova = 0x7000_0000_0000;
        let k = t.reg_mr(1, b, iova, Access::ALL).unwrap();
        let mut m = PdMemory {
            keys: &mut t,
            pd: 1,
            qpn: 17,
        };
        m.write(MemKey::Local(k), iova + 100, b"iova").unwrap();
        let mut out = [0u8; 4];
        m.read(MemKey::Remote(k), iova + 100, &mut out).unwrap();
        assert_eq!(&out, b"iova");
        // The host address means nothing to the region.
        assert_eq!(
            m.read(MemKey::Local(k), a + 100, &mut out),
            Err(MemError::OutOfBounds)
        );
        assert_eq!(
            m.check(MemKey::Remote(k), iova + 8190, 4, true),
            Err(MemError::OutOfBounds)
        );
        assert!(t.reg_mr(1, block(16).0, u64::MAX - 4, Access::ALL).is_err());
    }

    #[test]
    fn rereg_keeps_the_key_and_changes_pd_access_and_memory() {
        let mut t = KeyTable::new();
        let (b, a) = block(64);
        let k = t.reg_mr(1, b, a, Access::ALL).unwrap();
        let (b2, a2) = block(128);
        t.rereg_mr(
            k,
            Some(2),
            Some(Access::LOCAL_WRITE),
            Some((b2.clone(), 0x10_0000)),
        )
        .unwrap();
        let mr = t.mr(k).unwrap();
        assert_eq!(
            (mr.pd, mr.iova, mr.access),
            (2, 0x10_0000, Access::LOCAL_WRITE)
        );
        let mut old_pd = PdMemory {
            keys: &mut t,
            pd: 1,
            qpn: 17,
        };
        assert_eq!(
            old_pd.write(MemKey::Local(k), 0x10_0000, b"x"),
            Err(MemError::InvalidKey)
        );
        let mut m = PdMemory {
            keys: &mut t,
            pd: 2,
            qpn: 17,
        };
        m.write(MemKey::Local(k), 0x10_0000 + 127, b"y").unwrap();
        assert_eq!(
            m.write(MemKey::Remote(k), 0x10_0000, b"z"),
            Err(MemError::AccessDenied)
        );
        assert_eq!(
            m.write(MemKey::Local(k), a, b"z"),
            Err(MemError::OutOfBounds)
        );
        let mut last = [0u8];
        b2.read(127, &mut last).unwrap();
        assert_eq!(last, *b"y");
        let _ = a2;
        // Bound windows keep it as it is.
        t.rereg_mr(k, None, Some(Access::LOCAL_WRITE | Access::MW_BIND), None)
            .unwrap();
        let w = t.alloc_mw(2, MwType::Type1).unwrap();
        t.bind_mw(
            2,
            17,
            w,
            &MwBind {
                mr_lkey: k,
                addr: 0x10_0000,
                len: 8,
                access: Access::REMOTE_READ,
            },
        )
        .unwrap();
        assert!(matches!(
            t.rereg_mr(k, Some(1), None, None),
            Err(VerbsError::Busy { .. })
        ));
        assert!(t.rereg_mr(0xdead_0000, Some(1), None, None).is_err());
    }
}
