//! Capabilities (seed 000): what a device offers, advertised up front so a
//! consumer fails cleanly instead of deep inside `create_qp`.

use serde::Serialize;
use softverbs_transport::QpType;

use crate::error::VerbsError;

/// The QP types a device may offer, as a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct QpTypes {
    /// Reliable Connected.
    pub rc: bool,
    /// Unreliable Connected.
    pub uc: bool,
    /// Unreliable Datagram.
    pub ud: bool,
    /// Scalable Reliable Datagram (through the device's own namespace).
    pub srd: bool,
}

impl QpTypes {
    /// Whether `t` is offered.
    pub fn contains(&self, t: QpType) -> bool {
        match t {
            QpType::Rc => self.rc,
            QpType::Uc => self.uc,
            QpType::Ud => self.ud,
        }
    }

    /// Names of the offered types, e.g. `["RC", "UD"]`.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.rc, "RC"),
            (self.uc, "UC"),
            (self.ud, "UD"),
            (self.srd, "SRD"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect()
    }
}

/// The operations a device may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Operations {
    /// SEND and SEND with immediate.
    pub send: bool,
    /// SEND with invalidate.
    pub send_with_inv: bool,
    /// RDMA WRITE (and with immediate).
    pub rdma_write: bool,
    /// RDMA READ.
    pub rdma_read: bool,
    /// Compare-and-swap and fetch-and-add.
    pub atomics: bool,
    /// Memory windows (type 1 and 2).
    pub memory_windows: bool,
    /// Shared receive queues.
    pub srq: bool,
    /// Inline data.
    pub inline_data: bool,
}

impl Operations {
    /// Names of the offered operations.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.send, "SEND"),
            (self.send_with_inv, "SEND_WITH_INV"),
            (self.rdma_write, "RDMA_WRITE"),
            (self.rdma_read, "RDMA_READ"),
            (self.atomics, "ATOMIC"),
            (self.memory_windows, "MW"),
            (self.srq, "SRQ"),
            (self.inline_data, "INLINE"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect()
    }
}

/// `ibv_atomic_cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AtomicCap {
    /// No atomics.
    None,
    /// Atomic only within this device (IBV_ATOMIC_HCA), as rxe reports.
    Hca,
    /// Atomic with respect to the CPU too.
    Glob,
}

/// Device attributes (`ibv_device_attr`), as `ibv_devinfo -v` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct DeviceCaps {
    pub fw_ver: String,
    pub node_guid: u64,
    pub sys_image_guid: u64,
    pub vendor_id: u32,
    pub vendor_part_id: u32,
    pub hw_ver: u32,
    pub max_mr_size: u64,
    pub page_size_cap: u64,
    pub max_qp: u32,
    pub max_qp_wr: u32,
    pub max_sge: u32,
    pub max_sge_rd: u32,
    pub max_cq: u32,
    pub max_cqe: u32,
    pub max_mr: u32,
    pub max_pd: u32,
    pub max_qp_rd_atom: u32,
    pub max_qp_init_rd_atom: u32,
    pub max_res_rd_atom: u32,
    pub atomic_cap: AtomicCap,
    pub max_mw: u32,
    pub max_ah: u32,
    pub max_srq: u32,
    pub max_srq_wr: u32,
    pub max_srq_sge: u32,
    pub max_inline_data: u32,
    pub max_pkeys: u16,
    pub local_ca_ack_delay: u8,
    pub phys_port_cnt: u8,
    /// Largest path MTU in bytes.
    pub max_mtu: u32,
    /// QP types offered.
    pub qp_types: QpTypes,
    /// Operations offered.
    pub ops: Operations,
}

impl DeviceCaps {
    /// The attributes Linux `rdma_rxe` reports (`rxe_param.h`), the model for
    /// softverbs's own soft RoCE device.
    pub fn rxe_like(node_guid: u64) -> Self {
        DeviceCaps {
            fw_ver: "0.0.0".into(),
            node_guid,
            sys_image_guid: node_guid,
            vendor_id: 0xffffff,
            vendor_part_id: 0,
            hw_ver: 0,
            max_mr_size: u64::MAX,
            page_size_cap: 0xffff_f000,
            max_qp: 0x10000,
            max_qp_wr: 0x4000,
            max_sge: 32,
            max_sge_rd: 32,
            max_cq: 0x4000,
            max_cqe: 0x7fff,
            max_mr: 0x4000,
            max_pd: 0x10000,
            max_qp_rd_atom: 128,
            max_qp_init_rd_atom: 128,
            max_res_rd_atom: 0x3f000,
            atomic_cap: AtomicCap::Hca,
            max_mw: 0x4000,
            max_ah: 0x8000,
            max_srq: 0x4000,
            max_srq_wr: 0x4000,
            max_srq_sge: 27,
            max_inline_data: 256,
            max_pkeys: 64,
            local_ca_ack_delay: 15,
            phys_port_cnt: 1,
            max_mtu: 4096,
            qp_types: QpTypes {
                rc: true,
                uc: true,
                ud: true,
                srd: false,
            },
            ops: Operations {
                send: true,
                send_with_inv: true,
                rdma_write: true,
                rdma_read: true,
                atomics: true,
                memory_windows: true,
                srq: true,
                inline_data: true,
            },
        }
    }

    /// Fail with `Unsupported` unless QP type `t` is offered.
    pub fn require_qp_type(&self, device: &str, t: QpType) -> Result<(), VerbsError> {
        if self.qp_types.contains(t) {
            Ok(())
        } else {
            Err(VerbsError::unsupported(
                device,
                format!(
                    "{} queue pairs (it offers {})",
                    crate::qp_rules::type_name(t),
                    self.qp_types.names().join(", ")
                ),
            ))
        }
    }
}
