//! The verbs objects as uAPI object types: their specs (methods and
//! attributes, core namespace), their handlers, and the objects the handle
//! tables hold. Every handler reaches the device through the context's
//! [`ContextData`]; every object keeps its driver id and its parents, and
//! destroying it calls the driver (so closing a context cleans the device).
//!
//! Payload layouts: `docs/uapi-verbs.md`.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use softverbs_transport::{Access, QpType};

use crate::abi::{self, Rd, Wr};
use crate::driver::{AhAttr, Driver, DriverQpInit, MrRereg, MwBind, MwType, QpInit};
use crate::error::VerbsError;
use crate::events::{AsyncEvents, CompChannel};
use crate::mem::Backing;
use crate::qp_rules::QpLimits;
use crate::uapi::Handle;
use crate::uapi::{
    Access as Ua, AttrId, AttrSpec, Bundle, DestroyReason, MethodId, MethodSpec, ObjectId,
    ObjectSpec, UObject, UapiError,
};

/// Ids of the verbs' object types, methods and attributes (core namespace).
pub mod ids {
    use super::*;

    /// The device (queries only; never instantiated).
    pub const DEVICE: ObjectId = ObjectId::core(0);
    /// Protection domain.
    pub const PD: ObjectId = ObjectId::core(1);
    /// Memory region.
    pub const MR: ObjectId = ObjectId::core(2);
    /// Memory window.
    pub const MW: ObjectId = ObjectId::core(3);
    /// Completion channel.
    pub const COMP_CHANNEL: ObjectId = ObjectId::core(4);
    /// Completion queue.
    pub const CQ: ObjectId = ObjectId::core(5);
    /// Shared receive queue.
    pub const SRQ: ObjectId = ObjectId::core(6);
    /// Queue pair.
    pub const QP: ObjectId = ObjectId::core(7);
    /// Address handle.
    pub const AH: ObjectId = ObjectId::core(8);

    /// DEVICE: device attributes.
    pub const QUERY_DEVICE: MethodId = MethodId::core(0);
    /// DEVICE: port attributes.
    pub const QUERY_PORT: MethodId = MethodId::core(1);
    /// DEVICE: one GID.
    pub const QUERY_GID: MethodId = MethodId::core(2);
    /// QP: invalidate an rkey of the QP's PD at once (`Qp::local_invalidate`).
    pub const LOCAL_INVALIDATE: MethodId = MethodId::core(4);
    /// DEVICE: the device's counters (`DeviceCounters`, encoded).
    pub const QUERY_DEVICE_COUNTERS: MethodId = MethodId::core(3);
    /// Every type: create / alloc / reg.
    pub const CREATE: MethodId = MethodId::core(0);
    /// Every type: destroy / dealloc / dereg.
    pub const DESTROY: MethodId = MethodId::core(1);
    /// MW: bind (type 1).
    pub const BIND: MethodId = MethodId::core(2);
    /// MR: re-register (PD, access and/or memory; the keys stay).
    pub const REREG: MethodId = MethodId::core(2);
    /// CQ: resize.
    pub const RESIZE: MethodId = MethodId::core(2);
    /// SRQ, QP: modify.
    pub const MODIFY: MethodId = MethodId::core(2);
    /// SRQ, QP: query.
    pub const QUERY: MethodId = MethodId::core(3);

    /// The object's own handle (new, read, write or destroy).
    pub const HANDLE: AttrId = AttrId::core(0);
    /// The method's output struct.
    pub const RESP: AttrId = AttrId::core(1);
    /// The PD a new object belongs to.
    pub const PD_HANDLE: AttrId = AttrId::core(2);
    /// The method's input struct.
    pub const IN: AttrId = AttrId::core(3);
    /// DEVICE: port number.
    pub const PORT: AttrId = AttrId::core(4);
    /// DEVICE: GID index.
    pub const GID_INDEX: AttrId = AttrId::core(5);
    /// MR: token of the staged backing memory.
    pub const MR_BACKING: AttrId = AttrId::core(4);
    /// MR: access flags.
    pub const MR_ACCESS: AttrId = AttrId::core(5);
    /// MR: a sealed memfd holding the memory (instead of `MR_BACKING`).
    pub const MR_FD: AttrId = AttrId::core(6);
    /// MR: `u64 offset, u64 length, u64 iova` of the region in `MR_FD`.
    pub const MR_RANGE: AttrId = AttrId::core(7);
    /// Size of the `MR_RANGE` struct.
    pub const MR_RANGE_SIZE: usize = 24;
    /// MR: the region's iova (its RDMA address) when it is not the
    /// address of the staged backing (`ibv_reg_mr_iova2`); with
    /// `MR_BACKING` only (a memfd's range carries its own iova).
    pub const MR_IOVA: AttrId = AttrId::core(8);
    /// MW: type (1 or 2).
    pub const MW_TYPE: AttrId = AttrId::core(4);
    /// MW bind: the QP whose send queue binds.
    pub const BIND_QP: AttrId = AttrId::core(4);
    /// MW bind: the region.
    pub const BIND_MR: AttrId = AttrId::core(5);
    /// CQ: number of entries.
    pub const CQE: AttrId = AttrId::core(4);
    /// CQ: completion channel.
    pub const CHANNEL: AttrId = AttrId::core(5);
    /// SRQ modify: new depth.
    pub const SRQ_MAX_WR: AttrId = AttrId::core(4);
    /// SRQ modify: limit to arm.
    pub const SRQ_LIMIT: AttrId = AttrId::core(5);
    /// QP: send CQ.
    pub const SEND_CQ: AttrId = AttrId::core(4);
    /// QP: receive CQ.
    pub const RECV_CQ: AttrId = AttrId::core(5);
    /// QP: SRQ.
    pub const QP_SRQ: AttrId = AttrId::core(6);
    /// QP.local_invalidate: the rkey (a region or a bound type 2 window of
    /// the QP's PD).
    pub const INV_RKEY: AttrId = AttrId::core(4);
}

use ids::*;

/// Who opened a context (resource tracking shows it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Owner {
    /// Process id.
    pub pid: u32,
    /// Process name.
    pub comm: String,
}

impl Owner {
    /// This process.
    pub fn this_process() -> Self {
        let comm = std::fs::read_to_string("/proc/self/comm")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| {
                std::env::current_exe()
                    .ok()?
                    .file_name()?
                    .to_str()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "?".into());
        Owner {
            pid: std::process::id(),
            comm,
        }
    }
}

/// What a context carries for the handlers (Linux's `ib_ucontext` with
/// its driver data): the device, the async event queue, the owner, and a
/// staging area for what cannot be encoded in bytes.
pub struct ContextData {
    pub(crate) driver: Arc<dyn Driver>,
    pub(crate) events: Arc<AsyncEvents>,
    pub(crate) owner: Owner,
    staged: Mutex<HashMap<u64, Backing>>,
    next_token: AtomicU64,
}

impl ContextData {
    /// Data for a context of `driver` opened by `owner`.
    pub fn new(driver: Arc<dyn Driver>, events: Arc<AsyncEvents>, owner: Owner) -> Self {
        ContextData {
            driver,
            events,
            owner,
            staged: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
        }
    }

    /// The device.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// The owner.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// Stages memory for an MR registration and returns the token the
    /// `MR_BACKING` attribute carries. In the embedded backend memory is
    /// handed over in process; the daemon backend passes a memfd (an fd
    /// attribute) and an offset in its place.
    pub fn stage_backing(&self, b: Backing) -> u64 {
        let t = self.next_token.fetch_add(1, Ordering::Relaxed);
        self.staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(t, b);
        t
    }

    /// Takes staged memory back (by the handler, or by the caller after a
    /// failed call).
    pub fn take_staged(&self, token: u64) -> Option<Backing> {
        self.staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&token)
    }
}

fn data<'b>(b: &'b Bundle<'_>) -> Result<&'b ContextData, UapiError> {
    b.context_data::<ContextData>().ok_or_else(|| {
        UapiError::handler(
            crate::uapi::errno::EIO,
            "the context carries no verbs context data (open it through Device::open)",
        )
    })
}

fn invalid(msg: String) -> UapiError {
    VerbsError::InvalidArgument(msg).into()
}

/// Hands `obj` to the framework; if that fails the object is destroyed.
fn commit<T: UObject>(b: &mut Bundle<'_>, obj: T) -> Result<Arc<T>, UapiError> {
    let arc = Arc::new(obj);
    if let Err(e) = b.set_new_arc(arc.clone()) {
        let _ = arc.destroy(DestroyReason::Abort);
        return Err(e);
    }
    Ok(arc)
}

fn limit(what: &str, asked: u64, cap_name: &str, cap: u64) -> Result<(), UapiError> {
    if asked > cap {
        return Err(invalid(format!(
            "{what} = {asked} exceeds the device limit {cap_name} = {cap}"
        )));
    }
    Ok(())
}

fn drv_err(r: crate::error::Result<()>) -> Result<(), UapiError> {
    r.map_err(UapiError::from)
}

// ---- objects -----------------------------------------------------------------

/// A protection domain.
pub struct PdObj {
    pub(crate) drv: Arc<dyn Driver>,
    /// Driver id.
    pub pdn: u32,
}

impl UObject for PdObj {
    fn destroy(&self, _: DestroyReason) -> Result<(), UapiError> {
        drv_err(self.drv.dealloc_pd(self.pdn))
    }
}

/// A memory region. Its keys are fixed; its PD, address, length and
/// access change with `rereg_mr`.
pub struct MrObj {
    pub(crate) drv: Arc<dyn Driver>,
    /// Local key.
    pub lkey: u32,
    /// Remote key.
    pub rkey: u32,
    state: Mutex<MrState>,
    /// Windows bound to it (their rkeys).
    binds: Mutex<BTreeSet<u32>>,
}

/// What `rereg_mr` may change.
#[derive(Clone)]
struct MrState {
    pd: Arc<PdObj>,
    pd_handle: Handle,
    addr: u64,
    len: u64,
    access: Access,
}

impl MrObj {
    fn state(&self) -> std::sync::MutexGuard<'_, MrState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Its PD.
    pub fn pd(&self) -> Arc<PdObj> {
        self.state().pd.clone()
    }
    /// Its iova: the RDMA address of its first byte.
    pub fn addr(&self) -> u64 {
        self.state().addr
    }
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.state().len
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Access flags.
    pub fn access(&self) -> Access {
        self.state().access
    }
}

impl UObject for MrObj {
    fn users(&self) -> Vec<String> {
        self.binds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|k| format!("MW rkey {k:#x} (bound)"))
            .collect()
    }
    fn destroy(&self, _: DestroyReason) -> Result<(), UapiError> {
        drv_err(self.drv.dereg_mr(self.lkey))
    }
}

/// A memory window.
pub struct MwObj {
    pub(crate) drv: Arc<dyn Driver>,
    /// Its PD.
    pub pd: Arc<PdObj>,
    /// Type.
    pub mw_type: MwType,
    rkey: AtomicU32,
    bound: Mutex<Option<Arc<MrObj>>>,
}

impl MwObj {
    /// The current rkey (changes with every bind).
    pub fn rkey(&self) -> u32 {
        self.rkey.load(Ordering::Relaxed)
    }
    /// The lkey of the region it is bound to (through `bind_mw`).
    pub fn bound_mr(&self) -> Option<u32> {
        self.bound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|m| m.lkey)
    }
    fn unbind(&self) {
        let rkey = self.rkey();
        if let Some(mr) = self.bound.lock().unwrap_or_else(|e| e.into_inner()).take() {
            mr.binds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&rkey);
        }
    }
}

impl UObject for MwObj {
    fn destroy(&self, _: DestroyReason) -> Result<(), UapiError> {
        drv_err(self.drv.dealloc_mw(self.rkey()))?;
        self.unbind();
        Ok(())
    }
}

/// A completion channel.
pub struct ChannelObj {
    /// The channel (pollable fd).
    pub channel: Arc<CompChannel>,
}

impl UObject for ChannelObj {}

/// A completion queue.
pub struct CqObj {
    pub(crate) drv: Arc<dyn Driver>,
    /// Driver id.
    pub cqn: u32,
    cqe: AtomicU32,
    /// Its channel.
    pub channel: Option<Arc<ChannelObj>>,
}

impl CqObj {
    /// Current size.
    pub fn cqe(&self) -> u32 {
        self.cqe.load(Ordering::Relaxed)
    }
}

impl UObject for CqObj {
    fn destroy(&self, _: DestroyReason) -> Result<(), UapiError> {
        drv_err(self.drv.destroy_cq(self.cqn))
    }
}

/// A shared receive queue.
pub struct SrqObj {
    pub(crate) drv: Arc<dyn Driver>,
    /// Its PD.
    pub pd: Arc<PdObj>,
    /// Driver id.
    pub srqn: u32,
}

impl UObject for SrqObj {
    fn destroy(&self, _: DestroyReason) -> Result<(), UapiError> {
        drv_err(self.drv.destroy_srq(self.srqn))
    }
}

/// A queue pair.
pub struct QpObj {
    pub(crate) drv: Arc<dyn Driver>,
    /// Its PD.
    pub pd: Arc<PdObj>,
    /// Send CQ.
    pub send_cq: Arc<CqObj>,
    /// Receive CQ.
    pub recv_cq: Arc<CqObj>,
    /// SRQ.
    pub srq: Option<Arc<SrqObj>>,
    /// QP number.
    pub qpn: u32,
    /// Creation attributes as granted.
    pub init: QpInit,
    /// A QP of a driver-defined type (SRD on an EFA-like device).
    pub driver_qp: Option<DriverQpInit>,
}

impl UObject for QpObj {
    fn destroy(&self, _: DestroyReason) -> Result<(), UapiError> {
        drv_err(self.drv.destroy_qp(self.qpn))
    }
}

/// An address handle.
pub struct AhObj {
    pub(crate) drv: Arc<dyn Driver>,
    /// Its PD.
    pub pd: Arc<PdObj>,
    /// Driver id.
    pub id: u32,
    /// Attributes.
    pub attr: AhAttr,
}

impl UObject for AhObj {
    fn destroy(&self, _: DestroyReason) -> Result<(), UapiError> {
        drv_err(self.drv.destroy_ah(self.id))
    }
}

// ---- handlers ------------------------------------------------------------------

fn query_device(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let caps = abi::enc_caps(data(b)?.driver.caps());
    b.set_out(RESP, &caps)?;
    Ok(())
}

fn query_device_counters(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let c = abi::enc_device_counters(&data(b)?.driver.counters());
    b.set_out(RESP, &c)?;
    Ok(())
}

fn check_port(d: &dyn Driver, port: u64) -> Result<u8, UapiError> {
    let n = d.caps().phys_port_cnt.max(1);
    if port == 0 || port > n.into() {
        return Err(invalid(format!(
            "port {port} does not exist (the device has ports 1..={n})"
        )));
    }
    Ok(port as u8)
}

fn query_port(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let d = data(b)?.driver.clone();
    let port = check_port(&*d, b.u64(PORT)?)?;
    let out = abi::enc_port(&d.port(port)?);
    b.set_out(RESP, &out)?;
    Ok(())
}

fn query_gid(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let d = data(b)?.driver.clone();
    let port = check_port(&*d, b.u64(PORT)?)?;
    let index = b.u64(GID_INDEX)?;
    let gids = d.gids(port)?;
    let gid = gids.get(index as usize).ok_or_else(|| {
        invalid(format!(
            "GID index {index} is outside port {port}'s GID table (length {})",
            gids.len()
        ))
    })?;
    b.set_out(RESP, &gid.0)?;
    Ok(())
}

fn nothing(_: &mut Bundle<'_>) -> Result<(), UapiError> {
    Ok(())
}

fn pd_alloc(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let drv = data(b)?.driver.clone();
    let pdn = drv.alloc_pd()?;
    commit(b, PdObj { drv, pdn })?;
    b.set_out(RESP, &Wr::default().u32(pdn).u32(0).done())?;
    Ok(())
}

/// The memory of a `reg_mr` / `rereg_mr` call and its iova: a staged
/// backing (in process; its own address unless `MR_IOVA` says otherwise)
/// or a sealed memfd range (the daemon; the range names the iova),
/// exactly one of them.
fn mr_backing(b: &Bundle<'_>, d: &ContextData) -> Result<(Backing, u64), UapiError> {
    if b.is_present(MR_IOVA) && !b.is_present(MR_BACKING) {
        return Err(invalid(
            "MR iova goes with a staged backing; a memfd's range carries its own iova".into(),
        ));
    }
    match (b.is_present(MR_BACKING), b.is_present(MR_FD)) {
        (true, false) => {
            let token = b.u64(MR_BACKING)?;
            let backing = d.take_staged(token).ok_or_else(|| {
                invalid(format!(
                    "MR backing token {token} names no memory staged in this context"
                ))
            })?;
            let addr = backing.addr();
            let iova = if b.is_present(MR_IOVA) {
                b.u64(MR_IOVA)?
            } else {
                addr
            };
            let page = crate::mem::PAGE_SIZE as u64 - 1;
            if iova & page != addr & page {
                return Err(invalid(format!(
                    "MR iova {iova:#x} and its memory at {addr:#x} lie at different offsets \
                     within a {}-byte page; give an iova with the same page offset (as Linux \
                     requires)",
                    crate::mem::PAGE_SIZE
                )));
            }
            if iova.checked_add(backing.len() as u64).is_none() {
                return Err(invalid(format!(
                    "MR iova {iova:#x} + length {} overflows",
                    backing.len()
                )));
            }
            Ok((backing, iova))
        }
        (false, true) => {
            let mut r = Rd::new(b.bytes_in(MR_RANGE)?, MR_RANGE_SIZE);
            let (offset, len, iova) = (r.u64(), r.u64(), r.u64());
            let page = crate::mem::PAGE_SIZE as u64 - 1;
            if iova & page != offset & page {
                return Err(invalid(format!(
                    "MR iova {iova:#x} and its memory at offset {offset:#x} of the memfd lie \
                     at different offsets within a {}-byte page; give an iova with the same \
                     page offset (as Linux requires)",
                    crate::mem::PAGE_SIZE
                )));
            }
            if iova.checked_add(len).is_none() {
                return Err(invalid(format!(
                    "MR iova {iova:#x} + length {len} overflows"
                )));
            }
            let map = crate::shm::SharedMap::map(b.fd(MR_FD)?, offset, len)
                .map_err(|e| invalid(format!("MR memfd: {e}")))?;
            Ok((
                Backing::Mapped {
                    map: Arc::new(map),
                    iova,
                },
                iova,
            ))
        }
        _ => Err(invalid(
            "reg_mr takes exactly one of backing (a staged token) or memfd with memfd_range".into(),
        )),
    }
}

/// The checks of an MR's access flags, for `reg_mr` and `rereg_mr`.
fn check_mr_access(drv: &dyn Driver, access: Access) -> Result<(), UapiError> {
    let caps = drv.caps();
    if (access.contains(Access::REMOTE_WRITE) || access.contains(Access::REMOTE_ATOMIC))
        && !access.contains(Access::LOCAL_WRITE)
    {
        return Err(invalid(
            "MR access REMOTE_WRITE or REMOTE_ATOMIC requires LOCAL_WRITE".into(),
        ));
    }
    if access.contains(Access::MW_BIND) && !caps.ops.memory_windows {
        return Err(
            VerbsError::unsupported(drv.name(), "memory windows (MR access MW_BIND)").into(),
        );
    }
    if access.contains(Access::REMOTE_ATOMIC) && !caps.ops.atomics {
        return Err(
            VerbsError::unsupported(drv.name(), "atomics (MR access REMOTE_ATOMIC)").into(),
        );
    }
    Ok(())
}

fn mr_resp(b: &mut Bundle<'_>, lkey: u32, rkey: u32, addr: u64, len: u64) -> Result<(), UapiError> {
    let out = Wr::default().u32(lkey).u32(rkey).u64(addr).u64(len).done();
    b.set_out(RESP, &out)?;
    Ok(())
}

fn mr_reg(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let d = data(b)?;
    let drv = d.driver.clone();
    let pd = b.handle::<PdObj>(PD_HANDLE)?;
    let pd_handle = b.handle_id(PD_HANDLE)?;
    let access = Access(b.flags(MR_ACCESS)? as u32);
    check_mr_access(&*drv, access)?;
    let (backing, addr) = mr_backing(b, d)?;
    limit(
        "MR length",
        backing.len() as u64,
        "max_mr_size",
        drv.caps().max_mr_size,
    )?;
    let len = backing.len() as u64;
    let keys = drv.reg_mr_iova(pd.pdn, backing, addr, access)?;
    commit(
        b,
        MrObj {
            drv,
            lkey: keys.lkey,
            rkey: keys.rkey,
            state: Mutex::new(MrState {
                pd,
                pd_handle,
                addr,
                len,
                access,
            }),
            binds: Mutex::new(BTreeSet::new()),
        },
    )?;
    mr_resp(b, keys.lkey, keys.rkey, addr, len)
}

/// `rereg_mr`: changes the PD, the access and/or the memory of a region
/// in place; its keys stay. At least one change; a region with windows
/// bound is `Busy` (Linux's `ib_uverbs_rereg_mr` refused a region in use
/// with `EBUSY`).
fn mr_rereg(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let d = data(b)?;
    let drv = d.driver.clone();
    let mr = b.handle::<MrObj>(HANDLE)?;
    let mr_handle = b.handle_id(HANDLE)?;
    let new_pd = if b.is_present(PD_HANDLE) {
        Some((b.handle::<PdObj>(PD_HANDLE)?, b.handle_id(PD_HANDLE)?))
    } else {
        None
    };
    let access = if b.is_present(MR_ACCESS) {
        let a = Access(b.flags(MR_ACCESS)? as u32);
        check_mr_access(&*drv, a)?;
        Some(a)
    } else {
        None
    };
    let new_memory = b.is_present(MR_BACKING) || b.is_present(MR_FD);
    if !new_memory && b.is_present(MR_IOVA) {
        return Err(invalid(
            "rereg_mr: an iova without new memory (give both, or neither)".into(),
        ));
    }
    if new_pd.is_none() && access.is_none() && !new_memory {
        return Err(invalid(
            "rereg_mr changes nothing: give a new pd, access and/or memory".into(),
        ));
    }
    // Refused before the memory is taken: a staged backing stays staged
    // for the caller to take back.
    let users = mr.users();
    if !users.is_empty() {
        return Err(VerbsError::Busy {
            what: format!(
                "memory region lkey {:#x} (windows are bound to it)",
                mr.lkey
            ),
            users,
        }
        .into());
    }
    let memory = if new_memory {
        let (backing, iova) = mr_backing(b, d)?;
        limit(
            "MR length",
            backing.len() as u64,
            "max_mr_size",
            drv.caps().max_mr_size,
        )?;
        if backing.is_empty() {
            return Err(invalid(
                "rereg_mr: new memory of length 0 (a translation change needs memory)".into(),
            ));
        }
        Some((backing, iova))
    } else {
        None
    };
    let new_range = memory
        .as_ref()
        .map(|(backing, iova)| (*iova, backing.len() as u64));
    drv.rereg_mr(
        mr.lkey,
        MrRereg {
            pd: new_pd.as_ref().map(|(p, _)| p.pdn),
            access,
            memory,
        },
    )?;
    let (addr, len) = {
        let mut st = mr.state();
        if let Some((pd, h)) = new_pd {
            if h != st.pd_handle {
                // The driver already moved the region: keep the handle
                // tree in step (an error here would only mean the PD went
                // away meanwhile, which its read lock rules out).
                let _ = b.context().reparent(mr_handle, st.pd_handle, h);
            }
            st.pd = pd;
            st.pd_handle = h;
        }
        if let Some(a) = access {
            st.access = a;
        }
        if let Some((addr, len)) = new_range {
            st.addr = addr;
            st.len = len;
        }
        (st.addr, st.len)
    };
    mr_resp(b, mr.lkey, mr.rkey, addr, len)
}

fn mw_alloc(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let drv = data(b)?.driver.clone();
    if !drv.caps().ops.memory_windows {
        return Err(VerbsError::unsupported(
            drv.name(),
            format!(
                "memory windows (it offers {})",
                drv.caps().ops.names().join(", ")
            ),
        )
        .into());
    }
    let pd = b.handle::<PdObj>(PD_HANDLE)?;
    let mw_type = if b.enum_val(MW_TYPE)? == 2 {
        MwType::Type2
    } else {
        MwType::Type1
    };
    let rkey = drv.alloc_mw(pd.pdn, mw_type)?;
    commit(
        b,
        MwObj {
            drv,
            pd,
            mw_type,
            rkey: AtomicU32::new(rkey),
            bound: Mutex::new(None),
        },
    )?;
    b.set_out(RESP, &Wr::default().u32(rkey).u32(0).done())?;
    Ok(())
}

fn mw_bind(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let mw = b.handle::<MwObj>(HANDLE)?;
    let qp = b.handle::<QpObj>(BIND_QP)?;
    let mr = b.handle::<MrObj>(BIND_MR)?;
    let raw = b.struct_in(IN, abi::BIND_SIZE)?;
    let mut r = Rd::new(&raw, abi::BIND_SIZE);
    let (addr, len, access) = (r.u64(), r.u64(), Access(r.u32()));
    if mw.mw_type == MwType::Type2 {
        return Err(invalid(
            "a type 2 window is bound with a BIND_MW work request (post_send), not bind_mw".into(),
        ));
    }
    if !Arc::ptr_eq(&mw.pd, &mr.pd()) || !Arc::ptr_eq(&mw.pd, &qp.pd) {
        return Err(invalid(
            "bind_mw: the window, the region and the QP must share one PD".into(),
        ));
    }
    if !mr.access().contains(Access::MW_BIND) {
        return Err(invalid(format!(
            "bind_mw: MR lkey {:#x} was not registered with MW_BIND access",
            mr.lkey
        )));
    }
    let remote = Access::REMOTE_WRITE | Access::REMOTE_READ | Access::REMOTE_ATOMIC;
    if !remote.contains(access) {
        return Err(invalid(format!(
            "bind_mw: access {:#x} may hold only remote rights ({:#x})",
            access.0, remote.0
        )));
    }
    let end = addr.checked_add(len);
    let (mr_addr, mr_len) = (mr.addr(), mr.len());
    let inside = matches!(end, Some(e) if addr >= mr_addr && e <= mr_addr + mr_len);
    if len > 0 && !inside {
        return Err(invalid(format!(
            "bind_mw: [{addr:#x}, +{len}) lies outside MR [{mr_addr:#x}, +{mr_len})"
        )));
    }
    let old = mw.rkey();
    let new = mw.drv.bind_mw(
        qp.qpn,
        old,
        MwBind {
            mr_lkey: mr.lkey,
            addr,
            len,
            access,
        },
    )?;
    mw.unbind();
    mw.rkey.store(new, Ordering::Relaxed);
    if len > 0 {
        mr.binds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(new);
        *mw.bound.lock().unwrap_or_else(|e| e.into_inner()) = Some(mr);
    }
    b.set_out(RESP, &Wr::default().u32(new).u32(0).done())?;
    Ok(())
}

fn channel_create(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let ch = CompChannel::new().map_err(|e| VerbsError::Io(e.to_string()))?;
    commit(
        b,
        ChannelObj {
            channel: Arc::new(ch),
        },
    )?;
    Ok(())
}

fn cq_create(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let d = data(b)?;
    let (drv, events) = (d.driver.clone(), d.events.clone());
    let cqe = b.u64(CQE)?;
    limit("cqe", cqe, "max_cqe", drv.caps().max_cqe.into())?;
    let channel = if b.is_present(CHANNEL) {
        Some(b.handle::<ChannelObj>(CHANNEL)?)
    } else {
        None
    };
    let (cqn, granted) = drv.create_cq(
        cqe as u32,
        channel.as_ref().map(|c| c.channel.clone()),
        events,
    )?;
    commit(
        b,
        CqObj {
            drv,
            cqn,
            cqe: AtomicU32::new(granted),
            channel,
        },
    )?;
    if granted < cqe as u32 {
        return Err(driver_bug("create_cq", "cqe", granted, cqe as u32));
    }
    b.set_out(RESP, &Wr::default().u32(cqn).u32(granted).done())?;
    Ok(())
}

fn driver_bug(method: &str, what: &str, granted: u32, asked: u32) -> UapiError {
    UapiError::handler(
        crate::uapi::errno::EIO,
        format!("{method}: the driver granted {what} = {granted}, fewer than the {asked} asked (a driver bug); nothing was created"),
    )
}

fn cq_resize(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let cq = b.handle::<CqObj>(HANDLE)?;
    let cqe = b.u64(CQE)?;
    limit("cqe", cqe, "max_cqe", cq.drv.caps().max_cqe.into())?;
    let granted = cq.drv.resize_cq(cq.cqn, cqe as u32)?;
    cq.cqe.store(granted, Ordering::Relaxed);
    b.set_out(RESP, &Wr::default().u32(granted).u32(0).done())?;
    Ok(())
}

fn require_srq(drv: &dyn Driver) -> Result<(), UapiError> {
    if !drv.caps().ops.srq {
        return Err(VerbsError::unsupported(
            drv.name(),
            format!(
                "shared receive queues (it offers {})",
                drv.caps().ops.names().join(", ")
            ),
        )
        .into());
    }
    Ok(())
}

fn srq_create(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let d = data(b)?;
    let (drv, events) = (d.driver.clone(), d.events.clone());
    require_srq(&*drv)?;
    let pd = b.handle::<PdObj>(PD_HANDLE)?;
    let attr = abi::dec_srq(&b.struct_in(IN, abi::SRQ_SIZE)?);
    let caps = drv.caps();
    if attr.max_wr == 0 {
        return Err(invalid("SRQ max_wr must be at least 1".into()));
    }
    limit(
        "SRQ max_wr",
        attr.max_wr.into(),
        "max_srq_wr",
        caps.max_srq_wr.into(),
    )?;
    limit(
        "SRQ max_sge",
        attr.max_sge.into(),
        "max_srq_sge",
        caps.max_srq_sge.into(),
    )?;
    let srqn = drv.create_srq(pd.pdn, attr, events)?;
    commit(b, SrqObj { drv, pd, srqn })?;
    b.set_out(RESP, &Wr::default().u32(srqn).u32(0).done())?;
    Ok(())
}

fn srq_modify(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let srq = b.handle::<SrqObj>(HANDLE)?;
    let max_wr = b
        .is_present(SRQ_MAX_WR)
        .then(|| b.u64(SRQ_MAX_WR))
        .transpose()?;
    let lim = b
        .is_present(SRQ_LIMIT)
        .then(|| b.u64(SRQ_LIMIT))
        .transpose()?;
    if let Some(w) = max_wr {
        limit(
            "SRQ max_wr",
            w,
            "max_srq_wr",
            srq.drv.caps().max_srq_wr.into(),
        )?;
    }
    if let Some(l) = lim {
        let depth = match max_wr {
            Some(w) => w,
            None => srq.drv.query_srq(srq.srqn)?.max_wr.into(),
        };
        if l > depth {
            return Err(invalid(format!(
                "SRQ limit {l} exceeds its depth max_wr = {depth}"
            )));
        }
    }
    srq.drv
        .modify_srq(srq.srqn, max_wr.map(|v| v as u32), lim.map(|v| v as u32))?;
    Ok(())
}

fn srq_query(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let srq = b.handle::<SrqObj>(HANDLE)?;
    let a = srq.drv.query_srq(srq.srqn)?;
    b.set_out(RESP, &abi::enc_srq(&a))?;
    Ok(())
}

fn qp_create(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    qp_create_with(b, None)
}

/// `create_qp`, or (with `driver`) the creation of a QP of a driver type
/// through a driver method (`efadv_create_qp_ex`): the same validation of
/// handles, depths and capabilities, then `Driver::create_driver_qp`.
/// A driver QP is addressed like UD, so `qp_type` must be UD.
pub(crate) fn qp_create_with(
    b: &mut Bundle<'_>,
    driver: Option<DriverQpInit>,
) -> Result<(), UapiError> {
    let d = data(b)?;
    let (drv, events) = (d.driver.clone(), d.events.clone());
    let req = abi::dec_qp_create(&b.struct_in(IN, abi::QP_CREATE_SIZE)?)?;
    let caps = drv.caps();
    if driver.is_some() {
        if req.qp_type != QpType::Ud {
            return Err(invalid(
                "a QP of a driver type is addressed like UD: qp_type must be UD".to_string(),
            ));
        }
    } else {
        caps.require_qp_type(drv.name(), req.qp_type)?;
    }
    let pd = b.handle::<PdObj>(PD_HANDLE)?;
    let send_cq = b.handle::<CqObj>(SEND_CQ)?;
    let recv_cq = b.handle::<CqObj>(RECV_CQ)?;
    let srq = if b.is_present(QP_SRQ) {
        Some(b.handle::<SrqObj>(QP_SRQ)?)
    } else {
        None
    };
    let wr = u64::from(caps.max_qp_wr);
    limit("max_send_wr", req.max_send_wr.into(), "max_qp_wr", wr)?;
    limit(
        "max_send_sge",
        req.max_send_sge.into(),
        "max_sge",
        caps.max_sge.into(),
    )?;
    if srq.is_none() {
        limit("max_recv_wr", req.max_recv_wr.into(), "max_qp_wr", wr)?;
        limit(
            "max_recv_sge",
            req.max_recv_sge.into(),
            "max_sge",
            caps.max_sge.into(),
        )?;
    }
    if req.max_inline_data > 0 && !caps.ops.inline_data {
        return Err(VerbsError::unsupported(drv.name(), "inline data").into());
    }
    limit(
        "max_inline_data",
        req.max_inline_data.into(),
        "max_inline_data",
        caps.max_inline_data.into(),
    )?;
    let init = QpInit {
        qp_type: req.qp_type,
        send_cq: send_cq.cqn,
        recv_cq: recv_cq.cqn,
        srq: srq.as_ref().map(|s| s.srqn),
        max_send_wr: req.max_send_wr,
        max_recv_wr: if srq.is_some() { 0 } else { req.max_recv_wr },
        max_send_sge: req.max_send_sge,
        max_recv_sge: if srq.is_some() { 0 } else { req.max_recv_sge },
        max_inline_data: req.max_inline_data,
        sq_sig_all: req.sq_sig_all,
    };
    let (qpn, granted) = match &driver {
        None => drv.create_qp(pd.pdn, &init, events)?,
        Some(dq) => drv.create_driver_qp(pd.pdn, &init, dq, events)?,
    };
    commit(
        b,
        QpObj {
            drv,
            pd,
            send_cq,
            recv_cq,
            srq,
            qpn,
            init: granted.clone(),
            driver_qp: driver,
        },
    )?;
    // Granting more is fine (Linux rounds up); fewer is a driver bug, and
    // the QP is rolled back.
    for (what, g, a) in [
        ("max_send_wr", granted.max_send_wr, init.max_send_wr),
        ("max_recv_wr", granted.max_recv_wr, init.max_recv_wr),
        ("max_send_sge", granted.max_send_sge, init.max_send_sge),
        ("max_recv_sge", granted.max_recv_sge, init.max_recv_sge),
        (
            "max_inline_data",
            granted.max_inline_data,
            init.max_inline_data,
        ),
    ] {
        if g < a {
            return Err(driver_bug("create_qp", what, g, a));
        }
    }
    let mut w = Wr::default();
    w.u32(qpn).u32(0);
    abi::enc_qp_init(&mut w, &granted);
    b.set_out(RESP, &w.done())?;
    Ok(())
}

fn qp_modify(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let qp = b.handle::<QpObj>(HANDLE)?;
    let attrs = abi::dec_modify(&b.struct_in(IN, abi::MODIFY_SIZE)?)?;
    let drv = &qp.drv;
    let cur = drv.query_qp(qp.qpn)?.state;
    let port = drv.port(1)?;
    let limits = QpLimits::from_caps(drv.caps(), port.max_mtu, port.gid_tbl_len);
    let m = attrs.validate(qp.init.qp_type, cur, &limits)?;
    drv.modify_qp(qp.qpn, &m)?;
    Ok(())
}

fn qp_local_invalidate(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let qp = b.handle::<QpObj>(HANDLE)?;
    let rkey = b.u64(INV_RKEY)? as u32;
    drv_err(qp.drv.invalidate(qp.pd.pdn, rkey))
}

fn qp_query(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let qp = b.handle::<QpObj>(HANDLE)?;
    let info = qp.drv.query_qp(qp.qpn)?;
    b.set_out(RESP, &abi::enc_qp_info(&info))?;
    Ok(())
}

pub(crate) fn check_av(drv: &dyn Driver, what: &str, a: &AhAttr) -> Result<(), UapiError> {
    let port = check_port(drv, a.port.into())?;
    let len = drv.port(port)?.gid_tbl_len;
    if u32::from(a.sgid_index) >= len {
        return Err(invalid(format!(
            "{what}: sgid_index {} is outside the GID table (length {len})",
            a.sgid_index
        )));
    }
    if a.flow_label > 0xf_ffff {
        return Err(invalid(format!(
            "{what}: flow_label {:#x} exceeds 20 bits",
            a.flow_label
        )));
    }
    Ok(())
}

fn ah_create(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let drv = data(b)?.driver.clone();
    let pd = b.handle::<PdObj>(PD_HANDLE)?;
    let raw = b.struct_in(IN, abi::AH_SIZE)?;
    let attr = abi::dec_ah(&mut Rd::new(&raw, abi::AH_SIZE));
    check_av(&*drv, "create_ah", &attr)?;
    let id = drv.create_ah(pd.pdn, attr)?;
    commit(b, AhObj { drv, pd, id, attr })?;
    b.set_out(RESP, &Wr::default().u32(id).u32(0).done())?;
    Ok(())
}

// ---- specs ---------------------------------------------------------------------

/// Largest input struct accepted (a newer caller's larger struct with a
/// zero tail).
const MAX_IN: usize = 4096;

const fn new_h(o: ObjectId) -> AttrSpec {
    AttrSpec::handle(HANDLE, "handle", o, Ua::New).mandatory()
}
macro_rules! destroy_m {
    ($o:expr, $name:literal) => {
        MethodSpec {
            id: DESTROY,
            name: $name,
            handler: Some(nothing),
            attrs: &[AttrSpec::handle(HANDLE, "handle", $o, Ua::Destroy).mandatory()],
        }
    };
}
const fn pd_read() -> AttrSpec {
    AttrSpec::handle(PD_HANDLE, "pd", PD, Ua::Read).mandatory()
}
const fn resp(n: usize) -> AttrSpec {
    AttrSpec::bytes_out(RESP, "resp", 0, n).mandatory()
}
const fn input(name: &'static str, n: usize) -> AttrSpec {
    AttrSpec::bytes_in(IN, name, 0, if n > MAX_IN { n } else { MAX_IN }).mandatory()
}

/// The core verbs object types, methods and attributes. Every device's
/// registry is built from these plus its driver's additions.
pub static CORE_OBJECTS: [ObjectSpec; 9] = [
    ObjectSpec {
        id: DEVICE,
        name: "DEVICE",
        destroy_order: 9,
        methods: &[
            MethodSpec {
                id: QUERY_DEVICE,
                name: "query_device",
                handler: Some(query_device),
                attrs: &[resp(abi::CAPS_SIZE)],
            },
            MethodSpec {
                id: QUERY_PORT,
                name: "query_port",
                handler: Some(query_port),
                attrs: &[
                    AttrSpec::scalar(PORT, "port", 0, 255).mandatory(),
                    resp(abi::PORT_SIZE),
                ],
            },
            MethodSpec {
                id: QUERY_GID,
                name: "query_gid",
                handler: Some(query_gid),
                attrs: &[
                    AttrSpec::scalar(PORT, "port", 0, 255).mandatory(),
                    AttrSpec::scalar(GID_INDEX, "index", 0, 0xffff).mandatory(),
                    resp(16),
                ],
            },
            MethodSpec {
                id: QUERY_DEVICE_COUNTERS,
                name: "query_device_counters",
                handler: Some(query_device_counters),
                attrs: &[resp(abi::DEVICE_COUNTERS_SIZE)],
            },
        ],
    },
    ObjectSpec {
        id: PD,
        name: "PD",
        destroy_order: 6,
        methods: &[
            MethodSpec {
                id: CREATE,
                name: "alloc_pd",
                handler: Some(pd_alloc),
                attrs: &[new_h(PD), resp(8)],
            },
            destroy_m!(PD, "dealloc_pd"),
        ],
    },
    ObjectSpec {
        id: MR,
        name: "MR",
        destroy_order: 2,
        methods: &[
            MethodSpec {
                id: CREATE,
                name: "reg_mr",
                handler: Some(mr_reg),
                attrs: &[
                    new_h(MR),
                    pd_read(),
                    AttrSpec::scalar(MR_BACKING, "backing", 1, u64::MAX),
                    AttrSpec::flags(MR_ACCESS, "access", Access::ALL.0 as u64).mandatory(),
                    AttrSpec::fd(MR_FD, "memfd"),
                    AttrSpec::bytes_in(MR_RANGE, "memfd_range", MR_RANGE_SIZE, MR_RANGE_SIZE),
                    AttrSpec::scalar(MR_IOVA, "iova", 0, u64::MAX),
                    resp(24),
                ],
            },
            MethodSpec {
                id: REREG,
                name: "rereg_mr",
                handler: Some(mr_rereg),
                attrs: &[
                    AttrSpec::handle(HANDLE, "mr", MR, Ua::Write).mandatory(),
                    AttrSpec::handle(PD_HANDLE, "pd", PD, Ua::Read),
                    AttrSpec::scalar(MR_BACKING, "backing", 1, u64::MAX),
                    AttrSpec::flags(MR_ACCESS, "access", Access::ALL.0 as u64),
                    AttrSpec::fd(MR_FD, "memfd"),
                    AttrSpec::bytes_in(MR_RANGE, "memfd_range", MR_RANGE_SIZE, MR_RANGE_SIZE),
                    AttrSpec::scalar(MR_IOVA, "iova", 0, u64::MAX),
                    resp(24),
                ],
            },
            destroy_m!(MR, "dereg_mr"),
        ],
    },
    ObjectSpec {
        id: MW,
        name: "MW",
        destroy_order: 1,
        methods: &[
            MethodSpec {
                id: CREATE,
                name: "alloc_mw",
                handler: Some(mw_alloc),
                attrs: &[
                    new_h(MW),
                    pd_read(),
                    AttrSpec::enumeration(MW_TYPE, "type", &[1, 2]).mandatory(),
                    resp(8),
                ],
            },
            MethodSpec {
                id: BIND,
                name: "bind_mw",
                handler: Some(mw_bind),
                attrs: &[
                    AttrSpec::handle(HANDLE, "mw", MW, Ua::Write).mandatory(),
                    AttrSpec::handle(BIND_QP, "qp", QP, Ua::Read).mandatory(),
                    AttrSpec::handle(BIND_MR, "mr", MR, Ua::Read).mandatory(),
                    input("bind", abi::BIND_SIZE),
                    resp(8),
                ],
            },
            destroy_m!(MW, "dealloc_mw"),
        ],
    },
    ObjectSpec {
        id: COMP_CHANNEL,
        name: "COMP_CHANNEL",
        destroy_order: 5,
        methods: &[
            MethodSpec {
                id: CREATE,
                name: "create_comp_channel",
                handler: Some(channel_create),
                attrs: &[new_h(COMP_CHANNEL)],
            },
            destroy_m!(COMP_CHANNEL, "destroy_comp_channel"),
        ],
    },
    ObjectSpec {
        id: CQ,
        name: "CQ",
        destroy_order: 4,
        methods: &[
            MethodSpec {
                id: CREATE,
                name: "create_cq",
                handler: Some(cq_create),
                attrs: &[
                    new_h(CQ),
                    AttrSpec::scalar(CQE, "cqe", 1, u32::MAX as u64).mandatory(),
                    AttrSpec::handle(CHANNEL, "channel", COMP_CHANNEL, Ua::Read),
                    resp(8),
                ],
            },
            MethodSpec {
                id: RESIZE,
                name: "resize_cq",
                handler: Some(cq_resize),
                attrs: &[
                    AttrSpec::handle(HANDLE, "cq", CQ, Ua::Write).mandatory(),
                    AttrSpec::scalar(CQE, "cqe", 1, u32::MAX as u64).mandatory(),
                    resp(8),
                ],
            },
            destroy_m!(CQ, "destroy_cq"),
        ],
    },
    ObjectSpec {
        id: SRQ,
        name: "SRQ",
        destroy_order: 3,
        methods: &[
            MethodSpec {
                id: CREATE,
                name: "create_srq",
                handler: Some(srq_create),
                attrs: &[
                    new_h(SRQ),
                    pd_read(),
                    input("srq_attr", abi::SRQ_SIZE),
                    resp(8),
                ],
            },
            MethodSpec {
                id: MODIFY,
                name: "modify_srq",
                handler: Some(srq_modify),
                attrs: &[
                    AttrSpec::handle(HANDLE, "srq", SRQ, Ua::Write).mandatory(),
                    AttrSpec::scalar(SRQ_MAX_WR, "max_wr", 1, u32::MAX as u64),
                    AttrSpec::scalar(SRQ_LIMIT, "srq_limit", 0, u32::MAX as u64),
                ],
            },
            MethodSpec {
                id: QUERY,
                name: "query_srq",
                handler: Some(srq_query),
                attrs: &[
                    AttrSpec::handle(HANDLE, "srq", SRQ, Ua::Read).mandatory(),
                    resp(abi::SRQ_SIZE),
                ],
            },
            destroy_m!(SRQ, "destroy_srq"),
        ],
    },
    ObjectSpec {
        id: QP,
        name: "QP",
        destroy_order: 0,
        methods: &[
            MethodSpec {
                id: CREATE,
                name: "create_qp",
                handler: Some(qp_create),
                attrs: &[
                    new_h(QP),
                    pd_read(),
                    AttrSpec::handle(SEND_CQ, "send_cq", CQ, Ua::Read).mandatory(),
                    AttrSpec::handle(RECV_CQ, "recv_cq", CQ, Ua::Read).mandatory(),
                    AttrSpec::handle(QP_SRQ, "srq", SRQ, Ua::Read),
                    input("qp_init_attr", abi::QP_CREATE_SIZE),
                    resp(8 + abi::QP_INIT_SIZE),
                ],
            },
            MethodSpec {
                id: MODIFY,
                name: "modify_qp",
                handler: Some(qp_modify),
                attrs: &[
                    AttrSpec::handle(HANDLE, "qp", QP, Ua::Write).mandatory(),
                    input("qp_attr", abi::MODIFY_SIZE),
                ],
            },
            MethodSpec {
                id: QUERY,
                name: "query_qp",
                handler: Some(qp_query),
                attrs: &[
                    AttrSpec::handle(HANDLE, "qp", QP, Ua::Read).mandatory(),
                    resp(abi::QP_INFO_SIZE),
                ],
            },
            MethodSpec {
                id: LOCAL_INVALIDATE,
                name: "local_invalidate",
                handler: Some(qp_local_invalidate),
                attrs: &[
                    AttrSpec::handle(HANDLE, "qp", QP, Ua::Read).mandatory(),
                    AttrSpec::scalar(INV_RKEY, "rkey", 0, u32::MAX as u64).mandatory(),
                ],
            },
            destroy_m!(QP, "destroy_qp"),
        ],
    },
    ObjectSpec {
        id: AH,
        name: "AH",
        destroy_order: 1,
        methods: &[
            MethodSpec {
                id: CREATE,
                name: "create_ah",
                handler: Some(ah_create),
                attrs: &[
                    new_h(AH),
                    pd_read(),
                    input("ah_attr", abi::AH_SIZE),
                    resp(8),
                ],
            },
            destroy_m!(AH, "destroy_ah"),
        ],
    },
];
