//! A context (`ibv_context`): one open of a device, owning every object
//! created through it. Every control verb is a uAPI call: built as a
//! [`Call`], encoded, dispatched by the device's registry through
//! [`crate::uapi::Registry::call_encoded`] and decoded, exactly as the
//! daemon backend will carry it over its socket.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use softverbs_transport::{Access, QpCounters, QpType};
use softverbs_wire::Gid;

use crate::abi::{self, Rd};
use crate::calls::{out, VerbsCalls};
use crate::caps::DeviceCaps;
use crate::device::Device;
use crate::driver::{AhAttr, Driver, MwType, PortAttr, QpInfo, QpInit, SrqAttr};
use crate::error::{Result, VerbsError};
use crate::events::{AsyncEvents, CompChannel};
use crate::mem::Backing;
use crate::objects::ids::*;
use crate::objects::{ChannelObj, ContextData, Owner};
use crate::provider;
use crate::qp_rules::ModifyAttrs;
use crate::uapi::encoding::{decode_reply, encode_call};
use crate::uapi::{Call, Context, Destroyed, Handle, ObjectId, Reply, UapiError};

/// A protection domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdRef {
    /// Its handle.
    pub handle: Handle,
    /// The driver's PD number.
    pub id: u32,
}

/// A registered memory region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MrRef {
    /// Its handle.
    pub handle: Handle,
    /// Local key.
    pub lkey: u32,
    /// Remote key.
    pub rkey: u32,
    /// Start address.
    pub addr: u64,
    /// Length.
    pub len: u64,
}

/// A memory window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MwRef {
    /// Its handle.
    pub handle: Handle,
    /// Its rkey (before any bind).
    pub rkey: u32,
}

/// A completion channel.
#[derive(Debug, Clone)]
pub struct ChannelRef {
    /// Its handle.
    pub handle: Handle,
    /// The channel itself (pollable).
    pub channel: Arc<CompChannel>,
}

/// A completion queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqRef {
    /// Its handle.
    pub handle: Handle,
    /// The driver's CQ number.
    pub id: u32,
    /// Entries granted.
    pub cqe: u32,
}

/// A shared receive queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrqRef {
    /// Its handle.
    pub handle: Handle,
    /// The driver's SRQ number.
    pub id: u32,
}

/// An address handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AhRef {
    /// Its handle.
    pub handle: Handle,
    /// The driver's AH id.
    pub id: u32,
}

/// What `create_qp` asks for (`ibv_qp_init_attr`, with handles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QpCreate {
    /// Transport.
    pub qp_type: QpType,
    /// CQ for send completions.
    pub send_cq: Handle,
    /// CQ for receive completions.
    pub recv_cq: Handle,
    /// SRQ the receives come from.
    pub srq: Option<Handle>,
    /// Send queue depth.
    pub max_send_wr: u32,
    /// Receive queue depth (ignored with an SRQ).
    pub max_recv_wr: u32,
    /// SGEs per send WR.
    pub max_send_sge: u32,
    /// SGEs per receive WR (ignored with an SRQ).
    pub max_recv_sge: u32,
    /// Inline bytes.
    pub max_inline_data: u32,
    /// Signal every send completion.
    pub sq_sig_all: bool,
}

/// A queue pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QpRef {
    /// Its handle.
    pub handle: Handle,
    /// QP number.
    pub qpn: u32,
    /// Creation attributes as granted (driver CQ/SRQ ids).
    pub init: QpInit,
}

/// One open of a device. Dropping (or [`Ucontext::close`]) destroys every
/// object it owns, children first.
pub struct Ucontext {
    device: Arc<Device>,
    data: Arc<ContextData>,
    ctx: Context,
}

impl std::fmt::Debug for Ucontext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ucontext")
            .field("device", &self.device.name())
            .field("owner", &self.data.owner)
            .field("objects", &self.ctx.len())
            .finish()
    }
}

impl Ucontext {
    pub(crate) fn new(device: Arc<Device>, data: Arc<ContextData>) -> Self {
        let ctx = Context::with_data(data.clone());
        Ucontext { device, data, ctx }
    }

    /// The device.
    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }

    /// The driver (for the data path: post, poll, notify by driver id).
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.data.driver
    }

    /// The context's asynchronous event queue.
    pub fn async_events(&self) -> &Arc<AsyncEvents> {
        &self.data.events
    }

    /// Who opened it.
    pub fn owner(&self) -> &Owner {
        &self.data.owner
    }

    /// The uAPI context (handle tables) behind this context.
    pub fn uapi_context(&self) -> &Context {
        &self.ctx
    }

    /// The per-context data the handlers see (staging area included).
    pub fn data(&self) -> &Arc<ContextData> {
        &self.data
    }

    /// Whether the context was closed.
    pub fn is_closed(&self) -> bool {
        self.ctx.is_closed()
    }

    /// Sends one call through the encoded path (with this device's driver
    /// id) and decodes the reply; a failure comes back as the
    /// [`VerbsError`] the callee raised (see [`VerbsError::from_remote`]).
    pub fn call(&self, call: Call) -> Result<Reply> {
        self.call_fds(call, Vec::new())
    }

    pub(crate) fn create(&self, call: Call) -> Result<(Handle, Reply)> {
        let reply = self.call(call.new_object(HANDLE))?;
        let h = reply
            .handle(HANDLE)
            .ok_or_else(|| VerbsError::Io("the reply of a create call carries no handle".into()))?;
        Ok((h, reply))
    }

    fn destroy(&self, object: ObjectId, h: Handle) -> Result<()> {
        self.call(Call::new(object, DESTROY).handle(HANDLE, h))
            .map(drop)
    }

    /// Device attributes (`ibv_query_device`).
    pub fn query_device(&self) -> Result<DeviceCaps> {
        VerbsCalls::query_device(self)
    }

    /// Port attributes (`ibv_query_port`).
    pub fn query_port(&self, port: u8) -> Result<PortAttr> {
        VerbsCalls::query_port(self, port)
    }

    /// One GID (`ibv_query_gid`).
    pub fn query_gid(&self, port: u8, index: u16) -> Result<Gid> {
        VerbsCalls::query_gid(self, port, index)
    }

    /// Allocates a protection domain.
    pub fn alloc_pd(&self) -> Result<PdRef> {
        VerbsCalls::alloc_pd(self)
    }

    /// Frees a protection domain (busy while anything uses it).
    pub fn dealloc_pd(&self, pd: Handle) -> Result<()> {
        self.destroy(PD, pd)
    }

    /// Registers `backing` (the whole of it, at its own address) in `pd`.
    pub fn reg_mr(&self, pd: Handle, backing: Backing, access: Access) -> Result<MrRef> {
        self.reg_mr_iova(pd, backing, None, access)
    }

    /// Registers `backing` (the whole of it) in `pd`, addressed as `iova`
    /// (`ibv_reg_mr_iova2`: SGEs, RDMA virtual addresses and window binds
    /// name the region's bytes from `iova` on); `None` is the backing's own
    /// address. The iova must have the backing's offset within a page.
    pub fn reg_mr_iova(
        &self,
        pd: Handle,
        backing: Backing,
        iova: Option<u64>,
        access: Access,
    ) -> Result<MrRef> {
        let token = self.data.stage_backing(backing);
        let mut call = Call::new(MR, CREATE)
            .handle(PD_HANDLE, pd)
            .value(MR_BACKING, token)
            .value(MR_ACCESS, access.0.into())
            .out(RESP, 24);
        if let Some(iova) = iova {
            call = call.value(MR_IOVA, iova);
        }
        let r = self.create(call);
        // Validation may have failed before the handler took it.
        self.data.take_staged(token);
        let (handle, r) = r?;
        Ok(crate::calls::mr_ref(handle, &r))
    }

    /// Re-registers region `mr` in place (`ibv_rereg_mr`), keeping its
    /// keys: into PD `pd`, with `access`, and/or over new memory (with its
    /// iova, `None` for the memory's own address). Returns the region as it
    /// is now. At least one change; a region with windows bound is `Busy`,
    /// and a failed call changes nothing.
    pub fn rereg_mr(
        &self,
        mr: Handle,
        pd: Option<Handle>,
        access: Option<Access>,
        memory: Option<(Backing, Option<u64>)>,
    ) -> Result<MrRef> {
        let mut call = crate::calls::rereg_call(mr, pd, access);
        let mut token = None;
        if let Some((backing, iova)) = memory {
            let t = self.data.stage_backing(backing);
            call = call.value(MR_BACKING, t);
            if let Some(iova) = iova {
                call = call.value(MR_IOVA, iova);
            }
            token = Some(t);
        }
        let r = self.call(call);
        if let Some(t) = token {
            self.data.take_staged(t);
        }
        Ok(crate::calls::mr_ref(mr, &r?))
    }

    /// Deregisters a region (busy while windows are bound to it).
    pub fn dereg_mr(&self, mr: Handle) -> Result<()> {
        self.destroy(MR, mr)
    }

    /// Allocates a memory window.
    pub fn alloc_mw(&self, pd: Handle, t: MwType) -> Result<MwRef> {
        VerbsCalls::alloc_mw(self, pd, t)
    }

    /// Binds a type 1 window to `[addr, addr+len)` of `mr` through `qp`
    /// (`ibv_bind_mw`); returns the window's new rkey. `len` 0 unbinds.
    pub fn bind_mw(
        &self,
        qp: Handle,
        mw: Handle,
        mr: Handle,
        addr: u64,
        len: u64,
        access: Access,
    ) -> Result<u32> {
        VerbsCalls::bind_mw(self, qp, mw, mr, addr, len, access)
    }

    /// Frees a window.
    pub fn dealloc_mw(&self, mw: Handle) -> Result<()> {
        self.destroy(MW, mw)
    }

    /// Creates a completion channel.
    pub fn create_comp_channel(&self) -> Result<ChannelRef> {
        let (handle, _) = self.create(Call::new(COMP_CHANNEL, CREATE))?;
        let ch = self
            .ctx
            .get::<ChannelObj>(handle)
            .ok_or_else(|| VerbsError::NotFound(format!("channel {handle}")))?;
        Ok(ChannelRef {
            handle,
            channel: ch.channel.clone(),
        })
    }

    /// Destroys a completion channel (busy while CQs use it).
    pub fn destroy_comp_channel(&self, ch: Handle) -> Result<()> {
        self.destroy(COMP_CHANNEL, ch)
    }

    /// Creates a CQ of at least `cqe` entries, reporting to `channel`.
    pub fn create_cq(&self, cqe: u32, channel: Option<Handle>) -> Result<CqRef> {
        VerbsCalls::create_cq(self, cqe, channel)
    }

    /// Resizes a CQ; returns the size granted.
    pub fn resize_cq(&self, cq: Handle, cqe: u32) -> Result<u32> {
        VerbsCalls::resize_cq(self, cq, cqe)
    }

    /// Destroys a CQ (busy while QPs use it).
    pub fn destroy_cq(&self, cq: Handle) -> Result<()> {
        self.destroy(CQ, cq)
    }

    /// Creates an SRQ.
    pub fn create_srq(&self, pd: Handle, attr: SrqAttr) -> Result<SrqRef> {
        VerbsCalls::create_srq(self, pd, attr)
    }

    /// Resizes an SRQ and/or arms its limit event.
    pub fn modify_srq(&self, srq: Handle, max_wr: Option<u32>, limit: Option<u32>) -> Result<()> {
        VerbsCalls::modify_srq(self, srq, max_wr, limit)
    }

    /// SRQ attributes.
    pub fn query_srq(&self, srq: Handle) -> Result<SrqAttr> {
        VerbsCalls::query_srq(self, srq)
    }

    /// Destroys an SRQ (busy while QPs use it).
    pub fn destroy_srq(&self, srq: Handle) -> Result<()> {
        self.destroy(SRQ, srq)
    }

    /// Creates a QP in RESET.
    pub fn create_qp(&self, pd: Handle, req: &QpCreate) -> Result<QpRef> {
        VerbsCalls::create_qp(self, pd, req)
    }

    /// Changes a QP's state and attributes under the IBTA rules
    /// ([`ModifyAttrs::validate`]).
    pub fn modify_qp(&self, qp: Handle, attrs: &ModifyAttrs) -> Result<()> {
        VerbsCalls::modify_qp(self, qp, attrs)
    }

    /// A QP's state, attributes, creation attributes and counters.
    pub fn query_qp(&self, qp: Handle) -> Result<QpInfo> {
        VerbsCalls::query_qp(self, qp)
    }

    /// Destroys a QP.
    pub fn destroy_qp(&self, qp: Handle) -> Result<()> {
        self.destroy(QP, qp)
    }

    /// A QP's counters through the soft devices' driver channel
    /// ([`provider::QP_QUERY_COUNTERS`]); `Unsupported` on a device whose
    /// driver does not offer it.
    pub fn query_qp_counters(&self, qp: Handle) -> Result<QpCounters> {
        if self
            .device
            .registry()
            .attrs(QP, provider::QP_QUERY_COUNTERS)
            .is_none()
        {
            return Err(VerbsError::unsupported(
                self.device.name(),
                "the driver method qp_query_counters (use query_qp)",
            ));
        }
        let r = self.call(
            Call::new(QP, provider::QP_QUERY_COUNTERS)
                .handle(HANDLE, qp)
                .out(provider::COUNTERS, abi::COUNTERS_SIZE as u32),
        )?;
        Ok(abi::dec_counters(&mut Rd::new(
            out(&r, provider::COUNTERS),
            abi::COUNTERS_SIZE,
        )))
    }

    /// Creates an address handle.
    pub fn create_ah(&self, pd: Handle, attr: AhAttr) -> Result<AhRef> {
        VerbsCalls::create_ah(self, pd, attr)
    }

    /// Destroys an address handle.
    pub fn destroy_ah(&self, ah: Handle) -> Result<()> {
        self.destroy(AH, ah)
    }

    /// Closes the context: destroys every object, children first (QPs, then
    /// MWs and AHs, MRs, SRQs, CQs, channels, PDs), and returns them in the
    /// order destroyed. Later calls fail.
    pub fn close(&self) -> Vec<Destroyed> {
        self.ctx.close()
    }
}

/// The embedded carrier: calls go through this context's registry, in the
/// same encoding the daemon's socket carries.
impl VerbsCalls for Ucontext {
    fn call_fds(&self, call: Call, fds: Vec<OwnedFd>) -> Result<Reply> {
        let call = call.driver(self.device.registry().driver_id());
        let bytes = encode_call(&call);
        let reply = self.device.registry().call_encoded(&self.ctx, &bytes, fds);
        match decode_reply(&reply) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(e.into()),
            Err(d) => Err(VerbsError::Uapi(UapiError::Decode(d))),
        }
    }
}

impl Drop for Ucontext {
    fn drop(&mut self) {
        self.ctx.close();
    }
}
