//! The typed verbs calls over any carrier of encoded uAPI calls: the
//! daemon backend's client implements [`VerbsCalls::call_fds`] over its
//! socket, and gets the same typed calls (and the same bytes) as the
//! embedded [`crate::Ucontext`].

use std::os::fd::OwnedFd;

use softverbs_transport::Access;
use softverbs_wire::Gid;

use crate::abi::{self, Rd, Wr};
use crate::caps::DeviceCaps;
use crate::context::{AhRef, CqRef, MrRef, MwRef, PdRef, QpCreate, QpRef, SrqRef};
use crate::driver::{AhAttr, DeviceCounters, MwType, PortAttr, QpInfo, SrqAttr};
use crate::efa::{
    EfaDeviceAttr, DEVICE_ATTR, DRIVER_QP_TYPE, DRIVER_TYPE_SRD, EFA_CREATE_QP,
    EFA_DEVICE_ATTR_SIZE, EFA_QUERY_DEVICE, QP_FLAGS,
};
use crate::error::{Result, VerbsError};
use crate::objects::ids::*;
use crate::qp_rules::ModifyAttrs;
use crate::uapi::{AttrId, Call, Handle, ObjectId, Reply};

/// The bytes of output attribute `id` (empty when absent).
pub(crate) fn out(reply: &Reply, id: AttrId) -> &[u8] {
    reply.bytes(id).unwrap_or(&[])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

/// The call of `rereg_mr` without its memory attributes.
pub(crate) fn rereg_call(mr: Handle, pd: Option<Handle>, access: Option<Access>) -> Call {
    let mut call = Call::new(MR, REREG).handle(HANDLE, mr).out(RESP, 24);
    if let Some(pd) = pd {
        call = call.handle(PD_HANDLE, pd);
    }
    if let Some(a) = access {
        call = call.value(MR_ACCESS, a.0.into());
    }
    call
}

/// The region a `reg_mr` / `rereg_mr` reply describes.
pub(crate) fn mr_ref(handle: Handle, r: &Reply) -> MrRef {
    let mut rd = Rd::new(out(r, RESP), 24);
    MrRef {
        handle,
        lkey: rd.u32(),
        rkey: rd.u32(),
        addr: rd.u64(),
        len: rd.u64(),
    }
}

/// The attributes every QP creation carries (core `create_qp` and the
/// drivers' own, such as EFA's): PD, CQs, optional SRQ, `qp_init_attr`.
fn qp_create_call(
    object: ObjectId,
    method: crate::uapi::MethodId,
    pd: Handle,
    req: &QpCreate,
) -> Call {
    let body = abi::enc_qp_create(&abi::QpCreateReq {
        qp_type: req.qp_type,
        sq_sig_all: req.sq_sig_all,
        max_send_wr: req.max_send_wr,
        max_recv_wr: req.max_recv_wr,
        max_send_sge: req.max_send_sge,
        max_recv_sge: req.max_recv_sge,
        max_inline_data: req.max_inline_data,
    });
    let mut call = Call::new(object, method)
        .handle(PD_HANDLE, pd)
        .handle(SEND_CQ, req.send_cq)
        .handle(RECV_CQ, req.recv_cq)
        .bytes(IN, body)
        .out(RESP, (8 + abi::QP_INIT_SIZE) as u32);
    if let Some(srq) = req.srq {
        call = call.handle(QP_SRQ, srq);
    }
    call
}

/// The QP a creation reply describes.
fn qp_ref(handle: Handle, r: &Reply) -> Result<QpRef> {
    let mut rd = Rd::new(out(r, RESP), 8 + abi::QP_INIT_SIZE);
    let qpn = rd.u32();
    rd.u32();
    Ok(QpRef {
        handle,
        qpn,
        init: abi::dec_qp_init(&mut rd)?,
    })
}

/// Typed verbs calls over an encoded-call carrier.
pub trait VerbsCalls {
    /// Sends one call with `fds` for its fd attributes (the carrier sets the
    /// driver id) and returns the decoded reply or the callee's error.
    fn call_fds(&self, call: Call, fds: Vec<OwnedFd>) -> Result<Reply>;

    /// [`VerbsCalls::call_fds`] without fds.
    fn call(&self, call: Call) -> Result<Reply> {
        self.call_fds(call, Vec::new())
    }

    /// Creates an object; returns its handle and the reply.
    fn create_with(&self, call: Call, fds: Vec<OwnedFd>) -> Result<(Handle, Reply)> {
        let reply = self.call_fds(call.new_object(HANDLE), fds)?;
        let h = reply
            .handle(HANDLE)
            .ok_or_else(|| VerbsError::Io("the reply of a create call carries no handle".into()))?;
        Ok((h, reply))
    }

    /// Destroys an object of type `object`.
    fn destroy_object(&self, object: ObjectId, h: Handle) -> Result<()> {
        self.call(Call::new(object, DESTROY).handle(HANDLE, h))
            .map(drop)
    }

    /// Device attributes.
    fn query_device(&self) -> Result<DeviceCaps> {
        let r = self.call(Call::new(DEVICE, QUERY_DEVICE).out(RESP, abi::CAPS_SIZE as u32))?;
        Ok(abi::dec_caps(out(&r, RESP)))
    }

    /// Port attributes.
    fn query_port(&self, port: u8) -> Result<PortAttr> {
        let r = self.call(
            Call::new(DEVICE, QUERY_PORT)
                .value(PORT, port.into())
                .out(RESP, abi::PORT_SIZE as u32),
        )?;
        Ok(abi::dec_port(out(&r, RESP)))
    }

    /// One GID.
    fn query_gid(&self, port: u8, index: u16) -> Result<Gid> {
        let r = self.call(
            Call::new(DEVICE, QUERY_GID)
                .value(PORT, port.into())
                .value(GID_INDEX, index.into())
                .out(RESP, 16),
        )?;
        Ok(Rd::new(out(&r, RESP), 16).gid())
    }

    /// The device's counters (what `Driver::counters` reports): packets,
    /// bytes, drops, the QP counters' sum and CQ overruns.
    fn query_device_counters(&self) -> Result<DeviceCounters> {
        let r = self.call(
            Call::new(DEVICE, QUERY_DEVICE_COUNTERS).out(RESP, abi::DEVICE_COUNTERS_SIZE as u32),
        )?;
        Ok(abi::dec_device_counters(out(&r, RESP)))
    }

    /// Allocates a protection domain.
    fn alloc_pd(&self) -> Result<PdRef> {
        let (handle, r) = self.create_with(Call::new(PD, CREATE).out(RESP, 8), Vec::new())?;
        Ok(PdRef {
            handle,
            id: u32_at(out(&r, RESP), 0),
        })
    }

    /// Registers `len` bytes at `offset` of a sealed memfd, which the caller
    /// has mapped at `iova` (the region's address).
    fn reg_mr_memfd(
        &self,
        pd: Handle,
        memfd: OwnedFd,
        offset: u64,
        len: u64,
        iova: u64,
        access: Access,
    ) -> Result<MrRef> {
        let mut range = Vec::with_capacity(MR_RANGE_SIZE);
        for v in [offset, len, iova] {
            range.extend_from_slice(&v.to_le_bytes());
        }
        let (handle, r) = self.create_with(
            Call::new(MR, CREATE)
                .handle(PD_HANDLE, pd)
                .value(MR_ACCESS, access.0.into())
                .fd(MR_FD, 0)
                .bytes(MR_RANGE, range)
                .out(RESP, 24),
            vec![memfd],
        )?;
        let mut rd = Rd::new(out(&r, RESP), 24);
        Ok(MrRef {
            handle,
            lkey: rd.u32(),
            rkey: rd.u32(),
            addr: rd.u64(),
            len: rd.u64(),
        })
    }

    /// Re-registers region `mr` (`ibv_rereg_mr`) in place, its keys kept:
    /// into PD `pd` and/or with `access`, and, with `memfd`, over `len`
    /// bytes at `offset` of that sealed memfd, which the caller has mapped
    /// at `iova` (the region's new address). Returns the region as it is
    /// now. At least one change; a region with windows bound is `Busy`.
    #[allow(clippy::too_many_arguments)]
    fn rereg_mr_memfd(
        &self,
        mr: Handle,
        pd: Option<Handle>,
        access: Option<Access>,
        memfd: Option<(OwnedFd, u64, u64, u64)>,
    ) -> Result<MrRef> {
        let mut call = rereg_call(mr, pd, access);
        let mut fds = Vec::new();
        if let Some((fd, offset, len, iova)) = memfd {
            let mut range = Vec::with_capacity(MR_RANGE_SIZE);
            for v in [offset, len, iova] {
                range.extend_from_slice(&v.to_le_bytes());
            }
            call = call.fd(MR_FD, 0).bytes(MR_RANGE, range);
            fds.push(fd);
        }
        let r = self.call_fds(call, fds)?;
        Ok(mr_ref(mr, &r))
    }

    /// Creates a CQ of at least `cqe` entries.
    fn create_cq(&self, cqe: u32, channel: Option<Handle>) -> Result<CqRef> {
        let mut call = Call::new(CQ, CREATE).value(CQE, cqe.into()).out(RESP, 8);
        if let Some(ch) = channel {
            call = call.handle(CHANNEL, ch);
        }
        let (handle, r) = self.create_with(call, Vec::new())?;
        let b = out(&r, RESP);
        Ok(CqRef {
            handle,
            id: u32_at(b, 0),
            cqe: u32_at(b, 4),
        })
    }

    /// Creates a QP in RESET.
    fn create_qp(&self, pd: Handle, req: &QpCreate) -> Result<QpRef> {
        let (handle, r) = self.create_with(qp_create_call(QP, CREATE, pd, req), Vec::new())?;
        qp_ref(handle, &r)
    }

    /// Invalidates `rkey` (a region or a bound type 2 window of `qp`'s
    /// PD) at once, outside the send queue's order, with no completion.
    fn local_invalidate(&self, qp: Handle, rkey: u32) -> Result<()> {
        self.call(
            Call::new(QP, LOCAL_INVALIDATE)
                .handle(HANDLE, qp)
                .value(INV_RKEY, rkey.into()),
        )
        .map(drop)
    }

    /// Changes a QP's state and attributes.
    fn modify_qp(&self, qp: Handle, attrs: &ModifyAttrs) -> Result<()> {
        self.call(
            Call::new(QP, MODIFY)
                .handle(HANDLE, qp)
                .bytes(IN, abi::enc_modify(attrs)),
        )
        .map(drop)
    }

    /// A QP's state, attributes and counters.
    fn query_qp(&self, qp: Handle) -> Result<QpInfo> {
        let r = self.call(
            Call::new(QP, QUERY)
                .handle(HANDLE, qp)
                .out(RESP, abi::QP_INFO_SIZE as u32),
        )?;
        abi::dec_qp_info(out(&r, RESP))
    }
    /// Resizes a CQ; returns the size granted.
    fn resize_cq(&self, cq: Handle, cqe: u32) -> Result<u32> {
        let r = self.call(
            Call::new(CQ, RESIZE)
                .handle(HANDLE, cq)
                .value(CQE, cqe.into())
                .out(RESP, 8),
        )?;
        Ok(u32_at(out(&r, RESP), 0))
    }

    /// Creates an SRQ.
    fn create_srq(&self, pd: Handle, attr: SrqAttr) -> Result<SrqRef> {
        let (handle, r) = self.create_with(
            Call::new(SRQ, CREATE)
                .handle(PD_HANDLE, pd)
                .bytes(IN, abi::enc_srq(&attr))
                .out(RESP, 8),
            Vec::new(),
        )?;
        Ok(SrqRef {
            handle,
            id: u32_at(out(&r, RESP), 0),
        })
    }

    /// Resizes an SRQ and/or arms its limit event.
    fn modify_srq(&self, srq: Handle, max_wr: Option<u32>, limit: Option<u32>) -> Result<()> {
        let mut call = Call::new(SRQ, MODIFY).handle(HANDLE, srq);
        if let Some(w) = max_wr {
            call = call.value(SRQ_MAX_WR, w.into());
        }
        if let Some(l) = limit {
            call = call.value(SRQ_LIMIT, l.into());
        }
        self.call(call).map(drop)
    }

    /// SRQ attributes.
    fn query_srq(&self, srq: Handle) -> Result<SrqAttr> {
        let r = self.call(
            Call::new(SRQ, QUERY)
                .handle(HANDLE, srq)
                .out(RESP, abi::SRQ_SIZE as u32),
        )?;
        Ok(abi::dec_srq(out(&r, RESP)))
    }

    /// Creates an address handle.
    fn create_ah(&self, pd: Handle, attr: AhAttr) -> Result<AhRef> {
        let mut w = Wr::default();
        abi::enc_ah(&mut w, &attr);
        let (handle, r) = self.create_with(
            Call::new(AH, CREATE)
                .handle(PD_HANDLE, pd)
                .bytes(IN, w.done())
                .out(RESP, 8),
            Vec::new(),
        )?;
        Ok(AhRef {
            handle,
            id: u32_at(out(&r, RESP), 0),
        })
    }

    /// Allocates a memory window.
    fn alloc_mw(&self, pd: Handle, t: MwType) -> Result<MwRef> {
        let ty = match t {
            MwType::Type1 => 1,
            MwType::Type2 => 2,
        };
        let (handle, r) = self.create_with(
            Call::new(MW, CREATE)
                .handle(PD_HANDLE, pd)
                .value(MW_TYPE, ty)
                .out(RESP, 8),
            Vec::new(),
        )?;
        Ok(MwRef {
            handle,
            rkey: u32_at(out(&r, RESP), 0),
        })
    }

    /// Binds a type 1 window to `[addr, addr+len)` of `mr` through `qp`;
    /// returns the window's new rkey. `len` 0 unbinds.
    fn bind_mw(
        &self,
        qp: Handle,
        mw: Handle,
        mr: Handle,
        addr: u64,
        len: u64,
        access: Access,
    ) -> Result<u32> {
        let bind = Wr::default().u64(addr).u64(len).u32(access.0).u32(0).done();
        let r = self.call(
            Call::new(MW, BIND)
                .handle(HANDLE, mw)
                .handle(BIND_QP, qp)
                .handle(BIND_MR, mr)
                .bytes(IN, bind)
                .out(RESP, 8),
        )?;
        Ok(u32_at(out(&r, RESP), 0))
    }

    /// `efadv_query_device`: the EFA attributes, through the driver
    /// namespace (`crate::efa`). The callee refuses it on a device that is
    /// not EFA-like.
    fn efa_query_device(&self) -> Result<EfaDeviceAttr> {
        let r = self.call(
            Call::new(DEVICE, EFA_QUERY_DEVICE).out(DEVICE_ATTR, EFA_DEVICE_ATTR_SIZE as u32),
        )?;
        EfaDeviceAttr::decode(out(&r, DEVICE_ATTR))
            .ok_or_else(|| VerbsError::Io("efa_query_device: short reply".into()))
    }

    /// `efadv_create_qp_ex` with `EFADV_QP_DRIVER_TYPE_SRD`, through the
    /// driver namespace: an SRD QP in RESET, addressed like UD
    /// (`req.qp_type` is ignored and sent as UD). `flags`:
    /// [`crate::efa::QP_FLAGS_UNSOLICITED_WRITE_RECV`].
    fn efa_create_srd_qp(&self, pd: Handle, req: &QpCreate, flags: u64) -> Result<QpRef> {
        let ud = QpCreate {
            qp_type: softverbs_transport::QpType::Ud,
            ..*req
        };
        let call = qp_create_call(QP, EFA_CREATE_QP, pd, &ud)
            .value(DRIVER_QP_TYPE, u64::from(DRIVER_TYPE_SRD))
            .value(QP_FLAGS, flags);
        let (handle, r) = self.create_with(call, Vec::new())?;
        qp_ref(handle, &r)
    }
}
