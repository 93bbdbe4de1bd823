//! Resource tracking (`rdma res show`): every live object of every open
//! context of a device, with its owner and key attributes.

use serde::Serialize;
use softverbs_transport::{QpState, QpType};

use crate::context::Ucontext;
use crate::objects::{AhObj, ChannelObj, CqObj, MrObj, MwObj, PdObj, QpObj, SrqObj};
use crate::qp_rules::{state_name, type_name};

/// Object kinds, as `rdma res show` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum ResKind {
    Pd,
    Mr,
    Mw,
    Channel,
    Cq,
    Srq,
    Qp,
    Ah,
}

impl ResKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResKind::Pd => "pd",
            ResKind::Mr => "mr",
            ResKind::Mw => "mw",
            ResKind::Channel => "channel",
            ResKind::Cq => "cq",
            ResKind::Srq => "srq",
            ResKind::Qp => "qp",
            ResKind::Ah => "ah",
        }
    }
}

/// Key attributes of one object, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum ResDetail {
    Pd {
        pdn: u32,
    },
    Mr {
        pdn: u32,
        lkey: u32,
        rkey: u32,
        addr: u64,
        len: u64,
        access: u32,
    },
    Mw {
        pdn: u32,
        rkey: u32,
        /// 1 or 2.
        mw_type: u8,
        /// lkey of the region it is bound to (through `bind_mw`).
        bound_mr: Option<u32>,
    },
    Channel {},
    Cq {
        cqn: u32,
        cqe: u32,
        /// Whether a completion channel is attached.
        channel: bool,
    },
    Srq {
        pdn: u32,
        srqn: u32,
        max_wr: u32,
        max_sge: u32,
        limit: u32,
    },
    Qp {
        pdn: u32,
        qpn: u32,
        /// `RC`, `UC`, `UD`.
        qp_type: &'static str,
        /// `RESET` … `ERR`.
        state: &'static str,
        sq_psn: u32,
        rq_psn: u32,
        /// Path MTU, bytes.
        path_mtu: u32,
        dest_qpn: u32,
        /// Destination GID (connected QPs).
        dest_gid: String,
        send_cq: u32,
        recv_cq: u32,
        srq: Option<u32>,
    },
    Ah {
        pdn: u32,
        id: u32,
        dgid: String,
    },
}

/// One tracked object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resource {
    /// Device name.
    pub device: String,
    /// Owner process id.
    pub pid: u32,
    /// Owner process name.
    pub comm: String,
    /// The uAPI handle (raw).
    pub handle: u64,
    /// Kind and attributes.
    #[serde(flatten)]
    pub detail: ResDetail,
}

impl Resource {
    /// The object's kind.
    pub fn kind(&self) -> ResKind {
        match self.detail {
            ResDetail::Pd { .. } => ResKind::Pd,
            ResDetail::Mr { .. } => ResKind::Mr,
            ResDetail::Mw { .. } => ResKind::Mw,
            ResDetail::Channel {} => ResKind::Channel,
            ResDetail::Cq { .. } => ResKind::Cq,
            ResDetail::Srq { .. } => ResKind::Srq,
            ResDetail::Qp { .. } => ResKind::Qp,
            ResDetail::Ah { .. } => ResKind::Ah,
        }
    }

    /// The driver's id of the object (PDN, lkey, rkey, CQN, SRQN, QPN, AH
    /// id; 0 for a channel).
    pub fn id(&self) -> u32 {
        match self.detail {
            ResDetail::Pd { pdn } => pdn,
            ResDetail::Mr { lkey, .. } => lkey,
            ResDetail::Mw { rkey, .. } => rkey,
            ResDetail::Channel {} => 0,
            ResDetail::Cq { cqn, .. } => cqn,
            ResDetail::Srq { srqn, .. } => srqn,
            ResDetail::Qp { qpn, .. } => qpn,
            ResDetail::Ah { id, .. } => id,
        }
    }
}

fn detail(obj: std::sync::Arc<dyn std::any::Any + Send + Sync>) -> Option<ResDetail> {
    let obj = match obj.downcast::<PdObj>() {
        Ok(o) => return Some(ResDetail::Pd { pdn: o.pdn }),
        Err(o) => o,
    };
    let obj = match obj.downcast::<MrObj>() {
        Ok(o) => {
            return Some(ResDetail::Mr {
                pdn: o.pd().pdn,
                lkey: o.lkey,
                rkey: o.rkey,
                addr: o.addr(),
                len: o.len(),
                access: o.access().0,
            })
        }
        Err(o) => o,
    };
    let obj = match obj.downcast::<MwObj>() {
        Ok(o) => {
            return Some(ResDetail::Mw {
                pdn: o.pd.pdn,
                rkey: o.rkey(),
                mw_type: match o.mw_type {
                    crate::driver::MwType::Type1 => 1,
                    crate::driver::MwType::Type2 => 2,
                },
                bound_mr: o.bound_mr(),
            })
        }
        Err(o) => o,
    };
    let obj = match obj.downcast::<ChannelObj>() {
        Ok(_) => return Some(ResDetail::Channel {}),
        Err(o) => o,
    };
    let obj = match obj.downcast::<CqObj>() {
        Ok(o) => {
            return Some(ResDetail::Cq {
                cqn: o.cqn,
                cqe: o.cqe(),
                channel: o.channel.is_some(),
            })
        }
        Err(o) => o,
    };
    let obj = match obj.downcast::<SrqObj>() {
        Ok(o) => {
            let a = o.drv.query_srq(o.srqn).ok();
            return Some(ResDetail::Srq {
                pdn: o.pd.pdn,
                srqn: o.srqn,
                max_wr: a.map_or(0, |a| a.max_wr),
                max_sge: a.map_or(0, |a| a.max_sge),
                limit: a.map_or(0, |a| a.limit),
            });
        }
        Err(o) => o,
    };
    let obj = match obj.downcast::<QpObj>() {
        Ok(o) => {
            let info = o.drv.query_qp(o.qpn).ok();
            let (state, attrs) = info
                .map(|i| (i.state, i.attrs))
                .unwrap_or((QpState::Err, Default::default()));
            let connected = o.init.qp_type != QpType::Ud;
            return Some(ResDetail::Qp {
                pdn: o.pd.pdn,
                qpn: o.qpn,
                qp_type: type_name(o.init.qp_type),
                state: state_name(state),
                sq_psn: attrs.sq_psn,
                rq_psn: attrs.rq_psn,
                path_mtu: attrs.path_mtu.bytes() as u32,
                dest_qpn: if connected { attrs.dest_qpn } else { 0 },
                dest_gid: if connected && state >= QpState::Rtr {
                    attrs.dgid.to_string()
                } else {
                    String::new()
                },
                send_cq: o.send_cq.cqn,
                recv_cq: o.recv_cq.cqn,
                srq: o.srq.as_ref().map(|s| s.srqn),
            });
        }
        Err(o) => o,
    };
    match obj.downcast::<AhObj>() {
        Ok(o) => Some(ResDetail::Ah {
            pdn: o.pd.pdn,
            id: o.id,
            dgid: o.attr.dgid.to_string(),
        }),
        Err(_) => None,
    }
}

/// The resources of one context.
pub(crate) fn list(device: &str, ctx: &Ucontext) -> Vec<Resource> {
    let owner = ctx.owner();
    ctx.uapi_context()
        .live_objects()
        .into_iter()
        .filter_map(|(h, _, obj)| {
            Some(Resource {
                device: device.to_string(),
                pid: owner.pid,
                comm: owner.comm.clone(),
                handle: h.raw(),
                detail: detail(obj)?,
            })
        })
        .collect()
}
