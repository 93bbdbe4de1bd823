//! The driver namespace of an EFA-like device (seeds 001 and 002): SRD
//! queue pairs and the direct-verbs device attributes, reached through the
//! provider channel rather than new core verbs — as rdma-core's `efadv`
//! reaches Linux's EFA driver.
//!
//! - `DEVICE` / [`EFA_QUERY_DEVICE`] (`efadv_query_device`): writes
//!   [`EfaDeviceAttr`] ([`EFA_DEVICE_ATTR_SIZE`] bytes, the layout of
//!   `struct efadv_device_attr`, little-endian) into [`DEVICE_ATTR`].
//! - `QP` / [`EFA_CREATE_QP`] (`efadv_create_qp_ex`): the attributes of the
//!   core `create_qp` (new handle, PD, CQs, optional SRQ, `qp_init_attr`
//!   with `qp_type` UD) plus [`DRIVER_QP_TYPE`] (an enum: only
//!   [`DRIVER_TYPE_SRD`]) and [`QP_FLAGS`] (flags:
//!   [`QP_FLAGS_UNSOLICITED_WRITE_RECV`]). The core validates the handles,
//!   depths and capabilities exactly as for `create_qp`, then calls
//!   [`Driver::create_driver_qp`]. The QP that comes back is an ordinary QP
//!   object: modified, queried, posted to and destroyed with the core verbs,
//!   with UD's addressing (AH + remote QPN + Q_Key per work request) and
//!   UD's attribute rules.
//! - `QP` / [`crate::provider::QP_QUERY_COUNTERS`], as every soft device.
//!
//! ```
//! use softverbs_core::efa::{EfaDeviceAttr, EFA_DEVICE_ATTR_SIZE};
//! let a = EfaDeviceAttr { max_sq_wr: 4096, max_rq_wr: 32768, max_sq_sge: 2, max_rq_sge: 1,
//!     inline_buf_size: 32, device_caps: EfaDeviceAttr::CAPS_RDMA_READ, max_rdma_size: 1 << 30 };
//! let b = a.encode();
//! assert_eq!(b.len(), EFA_DEVICE_ATTR_SIZE);
//! assert_eq!(EfaDeviceAttr::decode(&b), Some(a));
//! ```

use serde::Serialize;

use crate::calls::VerbsCalls;
use crate::context::Ucontext;
use crate::driver::{Driver, DriverQpInit};
use crate::error::{Result, VerbsError};
use crate::objects::ids::{DEVICE, HANDLE, IN, PD_HANDLE, QP, QP_SRQ, RECV_CQ, RESP, SEND_CQ};
use crate::objects::{qp_create_with, ContextData, CqObj, PdObj};
use crate::provider::QP_QUERY_COUNTERS_SPEC;
use crate::uapi::{
    Access, AttrId, AttrSpec, Bundle, DriverSpec, Handle, MethodId, MethodSpec, ObjectSpec,
    UapiError,
};
use crate::{abi, QpCreate, QpRef};

/// The driver id of the EFA-like `srd` device (`"efa"`).
pub const EFA_DRIVER_ID: u32 = 0x6566_6100;

/// DEVICE driver method: `efadv_query_device`.
pub const EFA_QUERY_DEVICE: MethodId = MethodId::driver(0);
/// Output of [`EFA_QUERY_DEVICE`]: [`EfaDeviceAttr`], encoded.
pub const DEVICE_ATTR: AttrId = AttrId::driver(0);
/// Bytes of an encoded [`EfaDeviceAttr`]: `comp_mask` (u64), `max_sq_wr`,
/// `max_rq_wr` (u32), `max_sq_sge`, `max_rq_sge`, `inline_buf_size` (u16),
/// 2 reserved, `device_caps`, `max_rdma_size` (u32).
pub const EFA_DEVICE_ATTR_SIZE: usize = 32;

/// QP driver method: `efadv_create_qp_ex`.
pub const EFA_CREATE_QP: MethodId = MethodId::driver(1);
/// Input of [`EFA_CREATE_QP`]: the driver QP type (enum).
pub const DRIVER_QP_TYPE: AttrId = AttrId::driver(1);
/// Input of [`EFA_CREATE_QP`]: creation flags.
pub const QP_FLAGS: AttrId = AttrId::driver(2);

/// `EFADV_QP_DRIVER_TYPE_SRD`.
pub const DRIVER_TYPE_SRD: u32 = 0;
/// `EFADV_QP_FLAGS_UNSOLICITED_WRITE_RECV`: an RDMA WRITE with immediate
/// consumes no receive WQE; its completion has `wr_id` 0.
pub const QP_FLAGS_UNSOLICITED_WRITE_RECV: u64 = 1 << 0;

/// `struct efadv_device_attr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EfaDeviceAttr {
    /// Send queue depth.
    pub max_sq_wr: u32,
    /// Receive queue depth.
    pub max_rq_wr: u32,
    /// SGEs per send WR.
    pub max_sq_sge: u16,
    /// SGEs per receive WR.
    pub max_rq_sge: u16,
    /// Inline data size.
    pub inline_buf_size: u16,
    /// `EFADV_DEVICE_ATTR_CAPS_*` bits.
    pub device_caps: u32,
    /// Largest RDMA READ or WRITE.
    pub max_rdma_size: u32,
}

impl EfaDeviceAttr {
    /// `EFADV_DEVICE_ATTR_CAPS_RDMA_READ`.
    pub const CAPS_RDMA_READ: u32 = 1 << 0;
    /// `EFADV_DEVICE_ATTR_CAPS_RNR_RETRY`.
    pub const CAPS_RNR_RETRY: u32 = 1 << 1;
    /// `EFADV_DEVICE_ATTR_CAPS_CQ_WITH_SGID`.
    pub const CAPS_CQ_WITH_SGID: u32 = 1 << 2;
    /// `EFADV_DEVICE_ATTR_CAPS_RDMA_WRITE`.
    pub const CAPS_RDMA_WRITE: u32 = 1 << 3;
    /// `EFADV_DEVICE_ATTR_CAPS_UNSOLICITED_WRITE_RECV`.
    pub const CAPS_UNSOLICITED_WRITE_RECV: u32 = 1 << 4;

    /// Whether every bit of `caps` is offered.
    pub fn has(&self, caps: u32) -> bool {
        self.device_caps & caps == caps
    }

    /// Names of the capability bits, e.g. `["RDMA_READ", "RNR_RETRY"]`.
    pub fn cap_names(&self) -> Vec<&'static str> {
        [
            (Self::CAPS_RDMA_READ, "RDMA_READ"),
            (Self::CAPS_RNR_RETRY, "RNR_RETRY"),
            (Self::CAPS_CQ_WITH_SGID, "CQ_WITH_SGID"),
            (Self::CAPS_RDMA_WRITE, "RDMA_WRITE"),
            (Self::CAPS_UNSOLICITED_WRITE_RECV, "UNSOLICITED_WRITE_RECV"),
        ]
        .into_iter()
        .filter_map(|(b, n)| self.has(b).then_some(n))
        .collect()
    }

    /// The wire layout ([`EFA_DEVICE_ATTR_SIZE`] bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(EFA_DEVICE_ATTR_SIZE);
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&self.max_sq_wr.to_le_bytes());
        b.extend_from_slice(&self.max_rq_wr.to_le_bytes());
        b.extend_from_slice(&self.max_sq_sge.to_le_bytes());
        b.extend_from_slice(&self.max_rq_sge.to_le_bytes());
        b.extend_from_slice(&self.inline_buf_size.to_le_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&self.device_caps.to_le_bytes());
        b.extend_from_slice(&self.max_rdma_size.to_le_bytes());
        b
    }

    /// Parse the wire layout; `None` if too short.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let b = b.get(..EFA_DEVICE_ATTR_SIZE)?;
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        Some(EfaDeviceAttr {
            max_sq_wr: u32_at(8),
            max_rq_wr: u32_at(12),
            max_sq_sge: u16_at(16),
            max_rq_sge: u16_at(18),
            inline_buf_size: u16_at(20),
            device_caps: u32_at(24),
            max_rdma_size: u32_at(28),
        })
    }
}

fn driver_of(b: &Bundle<'_>) -> std::result::Result<std::sync::Arc<dyn Driver>, UapiError> {
    b.context_data::<ContextData>()
        .map(|d| d.driver().clone())
        .ok_or_else(|| UapiError::from(VerbsError::Io("no device context".into())))
}

fn efa_query_device(b: &mut Bundle<'_>) -> std::result::Result<(), UapiError> {
    let drv = driver_of(b)?;
    let attr = drv.efa_device_attr().ok_or_else(|| {
        UapiError::from(VerbsError::unsupported(drv.name(), "efadv_query_device"))
    })?;
    b.set_out(DEVICE_ATTR, &attr.encode())?;
    Ok(())
}

fn efa_create_qp(b: &mut Bundle<'_>) -> std::result::Result<(), UapiError> {
    let drv = driver_of(b)?;
    let driver_type = b.enum_val(DRIVER_QP_TYPE)?;
    let flags = b.flags(QP_FLAGS)?;
    if driver_type == DRIVER_TYPE_SRD && !drv.caps().qp_types.srd {
        return Err(VerbsError::unsupported(
            drv.name(),
            format!(
                "SRD queue pairs (it offers {})",
                drv.caps().qp_types.names().join(", ")
            ),
        )
        .into());
    }
    if flags & QP_FLAGS_UNSOLICITED_WRITE_RECV != 0 {
        let ok = drv
            .efa_device_attr()
            .is_some_and(|a| a.has(EfaDeviceAttr::CAPS_UNSOLICITED_WRITE_RECV));
        if !ok {
            return Err(VerbsError::unsupported(drv.name(), "UNSOLICITED_WRITE_RECV").into());
        }
    }
    // Make sure the handles are of the right types before the driver is
    // asked (the dispatcher checked them; this keeps the order of errors
    // the same as create_qp's).
    let _ = b.handle::<PdObj>(PD_HANDLE)?;
    let _ = b.handle::<CqObj>(SEND_CQ)?;
    qp_create_with(b, Some(DriverQpInit { driver_type, flags }))
}

/// Largest input struct accepted, as the core's.
const MAX_IN: usize = 4096;

const EFA_OBJECTS: &[ObjectSpec] = &[
    ObjectSpec {
        id: DEVICE,
        name: "DEVICE",
        destroy_order: 9,
        methods: &[MethodSpec {
            id: EFA_QUERY_DEVICE,
            name: "efa_query_device",
            handler: Some(efa_query_device),
            attrs: &[AttrSpec::bytes_out(DEVICE_ATTR, "efa_device_attr", 0, 4096).mandatory()],
        }],
    },
    ObjectSpec {
        id: QP,
        name: "QP",
        destroy_order: 0,
        methods: &[
            QP_QUERY_COUNTERS_SPEC,
            MethodSpec {
                id: EFA_CREATE_QP,
                name: "efa_create_qp",
                handler: Some(efa_create_qp),
                attrs: &[
                    AttrSpec::handle(HANDLE, "handle", QP, Access::New).mandatory(),
                    AttrSpec::handle(PD_HANDLE, "pd", crate::objects::ids::PD, Access::Read)
                        .mandatory(),
                    AttrSpec::handle(SEND_CQ, "send_cq", crate::objects::ids::CQ, Access::Read)
                        .mandatory(),
                    AttrSpec::handle(RECV_CQ, "recv_cq", crate::objects::ids::CQ, Access::Read)
                        .mandatory(),
                    AttrSpec::handle(QP_SRQ, "srq", crate::objects::ids::SRQ, Access::Read),
                    AttrSpec::bytes_in(IN, "qp_init_attr", 0, MAX_IN).mandatory(),
                    AttrSpec::bytes_out(RESP, "resp", 0, 8 + abi::QP_INIT_SIZE).mandatory(),
                    AttrSpec::enumeration(DRIVER_QP_TYPE, "driver_qp_type", &[DRIVER_TYPE_SRD])
                        .mandatory(),
                    AttrSpec::flags(QP_FLAGS, "flags", QP_FLAGS_UNSOLICITED_WRITE_RECV),
                ],
            },
        ],
    },
];

/// The driver spec of the EFA-like `srd` device.
pub static EFA_DRIVER_SPEC: DriverSpec = DriverSpec {
    driver_id: EFA_DRIVER_ID,
    name: "efa",
    objects: EFA_OBJECTS,
};

impl Ucontext {
    /// Whether this device's registry has EFA method `m` on `object`.
    fn has_efa(&self, object: crate::uapi::ObjectId, m: MethodId) -> bool {
        self.device().registry().driver_id() == EFA_DRIVER_ID
            && self.device().registry().attrs(object, m).is_some()
    }

    /// `efadv_query_device`: the EFA attributes, through the driver
    /// namespace. `Unsupported` on a device without it.
    pub fn efa_query_device(&self) -> Result<EfaDeviceAttr> {
        if !self.has_efa(DEVICE, EFA_QUERY_DEVICE) {
            return Err(VerbsError::unsupported(
                self.device().name(),
                "efadv_query_device (not an EFA-like device)",
            ));
        }
        VerbsCalls::efa_query_device(self)
    }

    /// `efadv_create_qp_ex` with `EFADV_QP_DRIVER_TYPE_SRD`: an SRD QP in
    /// RESET, addressed like UD (`req.qp_type` is ignored and sent as UD).
    /// `flags`: [`QP_FLAGS_UNSOLICITED_WRITE_RECV`].
    pub fn efa_create_srd_qp(&self, pd: Handle, req: &QpCreate, flags: u64) -> Result<QpRef> {
        if !self.has_efa(QP, EFA_CREATE_QP) {
            return Err(VerbsError::unsupported(
                self.device().name(),
                format!(
                    "SRD queue pairs (it offers {}; SRD needs an EFA-like device)",
                    self.device().driver().caps().qp_types.names().join(", ")
                ),
            ));
        }
        VerbsCalls::efa_create_srd_qp(self, pd, req, flags)
    }
}
