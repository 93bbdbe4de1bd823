//! `softverbs pingpong {rc,uc,ud,srq,srd}`: the device-independent parts of
//! rdma-core's `ibv_{rc,uc,ud,srq}_pingpong` — options ([`args`]), the TCP
//! exchange of QP addresses ([`oob`], over [`net`]) and the output lines
//! ([`report`]) — so that either side can be the real tool.
//! The specification is docs/oob-and-tools.md §1.

pub mod args;
pub mod net;
pub mod oob;
pub mod report;

/// Which of the four pingpong tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tool {
    /// `ibv_rc_pingpong`.
    Rc,
    /// `ibv_uc_pingpong`.
    Uc,
    /// `ibv_ud_pingpong`.
    Ud,
    /// `ibv_srq_pingpong`.
    Srq,
    /// `ibv_ud_pingpong` over an SRD QP (EFA's `efadv_create_qp_ex`): the
    /// same exchange and output as ud, reliable delivery, no GRH.
    Srd,
}

impl Tool {
    /// The real tool's name.
    pub fn real_name(self) -> &'static str {
        match self {
            Tool::Rc => "ibv_rc_pingpong",
            Tool::Uc => "ibv_uc_pingpong",
            Tool::Ud => "ibv_ud_pingpong",
            Tool::Srq => "ibv_srq_pingpong",
            Tool::Srd => "ibv_ud_pingpong (SRD)",
        }
    }
}
