//! The QP state machine: which transitions exist and which attributes each
//! one requires and accepts, per QP type (IBTA 10.3, Linux
//! `drivers/infiniband/core/verbs.c` `qp_state_table` and
//! `ib_modify_qp_is_ok`), plus the value checks against the device's
//! capabilities, and the conversion into the transport's [`ModifyQp`].
//!
//! [`ModifyAttrs`] is `ibv_qp_attr` with its attribute mask folded in: a
//! field that is `Some` is in the mask.
//!
//! ```
//! use softverbs_core::qp_rules::{ModifyAttrs, QpLimits};
//! use softverbs_core::caps::DeviceCaps;
//! use softverbs_transport::{Access, QpState, QpType};
//!
//! let caps = DeviceCaps::rxe_like(1);
//! let limits = QpLimits::from_caps(&caps, 4096, 2);
//! let to_init = ModifyAttrs {
//!     qp_state: Some(QpState::Init),
//!     pkey_index: Some(0),
//!     port_num: Some(1),
//!     qp_access_flags: Some(Access::REMOTE_WRITE),
//!     ..Default::default()
//! };
//! let m = to_init.validate(QpType::Rc, QpState::Reset, &limits).unwrap();
//! assert_eq!(m.state, Some(QpState::Init));
//!
//! // RTR without rq_psn: the error names the transition and what is missing.
//! let err = ModifyAttrs { qp_state: Some(QpState::Rtr), ..Default::default() }
//!     .validate(QpType::Rc, QpState::Init, &limits)
//!     .unwrap_err();
//! assert!(err.to_string().contains("INIT→RTR for RC requires"));
//! assert!(err.to_string().contains("rq_psn"));
//! ```

use serde::Serialize;
use softverbs_transport::{Access, ModifyQp, Mtu, QpState, QpType};

use crate::caps::DeviceCaps;
use crate::driver::AhAttr;
use crate::error::{Result, VerbsError};

/// Bits of the attribute mask (`ibv_qp_attr_mask`, same values).
pub mod mask {
    /// `IBV_QP_STATE`.
    pub const STATE: u32 = 1 << 0;
    /// `IBV_QP_CUR_STATE`.
    pub const CUR_STATE: u32 = 1 << 1;
    /// `IBV_QP_EN_SQD_ASYNC_NOTIFY`.
    pub const EN_SQD_ASYNC_NOTIFY: u32 = 1 << 2;
    /// `IBV_QP_ACCESS_FLAGS`.
    pub const ACCESS_FLAGS: u32 = 1 << 3;
    /// `IBV_QP_PKEY_INDEX`.
    pub const PKEY_INDEX: u32 = 1 << 4;
    /// `IBV_QP_PORT`.
    pub const PORT: u32 = 1 << 5;
    /// `IBV_QP_QKEY`.
    pub const QKEY: u32 = 1 << 6;
    /// `IBV_QP_AV`.
    pub const AV: u32 = 1 << 7;
    /// `IBV_QP_PATH_MTU`.
    pub const PATH_MTU: u32 = 1 << 8;
    /// `IBV_QP_TIMEOUT`.
    pub const TIMEOUT: u32 = 1 << 9;
    /// `IBV_QP_RETRY_CNT`.
    pub const RETRY_CNT: u32 = 1 << 10;
    /// `IBV_QP_RNR_RETRY`.
    pub const RNR_RETRY: u32 = 1 << 11;
    /// `IBV_QP_RQ_PSN`.
    pub const RQ_PSN: u32 = 1 << 12;
    /// `IBV_QP_MAX_QP_RD_ATOMIC`.
    pub const MAX_QP_RD_ATOMIC: u32 = 1 << 13;
    /// `IBV_QP_ALT_PATH`.
    pub const ALT_PATH: u32 = 1 << 14;
    /// `IBV_QP_MIN_RNR_TIMER`.
    pub const MIN_RNR_TIMER: u32 = 1 << 15;
    /// `IBV_QP_SQ_PSN`.
    pub const SQ_PSN: u32 = 1 << 16;
    /// `IBV_QP_MAX_DEST_RD_ATOMIC`.
    pub const MAX_DEST_RD_ATOMIC: u32 = 1 << 17;
    /// `IBV_QP_PATH_MIG_STATE`.
    pub const PATH_MIG_STATE: u32 = 1 << 18;
    /// `IBV_QP_DEST_QPN`.
    pub const DEST_QPN: u32 = 1 << 20;
    /// Every bit this version knows.
    pub const ALL: u32 = ((1 << 19) - 1) | DEST_QPN;

    /// Each bit with the name of its `ibv_qp_attr` field, in mask order.
    pub const NAMES: [(u32, &str); 20] = [
        (STATE, "qp_state"),
        (CUR_STATE, "cur_qp_state"),
        (EN_SQD_ASYNC_NOTIFY, "en_sqd_async_notify"),
        (ACCESS_FLAGS, "qp_access_flags"),
        (PKEY_INDEX, "pkey_index"),
        (PORT, "port_num"),
        (QKEY, "qkey"),
        (AV, "ah_attr"),
        (PATH_MTU, "path_mtu"),
        (TIMEOUT, "timeout"),
        (RETRY_CNT, "retry_cnt"),
        (RNR_RETRY, "rnr_retry"),
        (RQ_PSN, "rq_psn"),
        (MAX_QP_RD_ATOMIC, "max_rd_atomic"),
        (ALT_PATH, "alt_path"),
        (MIN_RNR_TIMER, "min_rnr_timer"),
        (SQ_PSN, "sq_psn"),
        (MAX_DEST_RD_ATOMIC, "max_dest_rd_atomic"),
        (PATH_MIG_STATE, "path_mig_state"),
        (DEST_QPN, "dest_qp_num"),
    ];

    /// The field names of the bits in `m`, in mask order.
    pub fn names(m: u32) -> Vec<&'static str> {
        NAMES
            .iter()
            .filter(|(b, _)| m & b != 0)
            .map(|(_, n)| *n)
            .collect()
    }
}

use mask::*;

/// Path migration state (`ibv_mig_state`). Soft RoCE devices have no
/// automatic path migration: the value is validated and stored nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PathMigState {
    /// `IBV_MIG_MIGRATED`.
    Migrated = 0,
    /// `IBV_MIG_REARM`.
    Rearm = 1,
    /// `IBV_MIG_ARMED`.
    Armed = 2,
}

/// The alternate path (`alt_ah_attr`, `alt_pkey_index`, `alt_port_num`,
/// `alt_timeout`). Accepted where the IBTA table allows it and validated,
/// then ignored, as RoCE has no automatic path migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AltPath {
    /// Alternate address vector.
    pub ah_attr: AhAttr,
    /// Alternate P_Key index.
    pub pkey_index: u16,
    /// Alternate port.
    pub port_num: u8,
    /// Alternate local ACK timeout.
    pub timeout: u8,
}

/// `ibv_qp_attr` with its mask: every `Some` field is in the mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ModifyAttrs {
    /// Next state (`IBV_QP_STATE`); `None` keeps the current state.
    pub qp_state: Option<QpState>,
    /// The state the caller believes the QP is in (`IBV_QP_CUR_STATE`);
    /// allowed only from RTR, RTS, SQD and SQE, and must match.
    pub cur_qp_state: Option<QpState>,
    /// Ask for the SQ-drained event on RTS→SQD.
    pub en_sqd_async_notify: Option<bool>,
    /// Remote operations accepted.
    pub qp_access_flags: Option<Access>,
    /// P_Key table index.
    pub pkey_index: Option<u16>,
    /// Port (1).
    pub port_num: Option<u8>,
    /// Q_Key (UD).
    pub qkey: Option<u32>,
    /// Primary path: destination GID, source GID index, hop limit, traffic
    /// class, flow label, SL (`IBV_QP_AV`).
    pub ah_attr: Option<AhAttr>,
    /// Path MTU.
    pub path_mtu: Option<Mtu>,
    /// Local ACK timeout exponent (0..=31).
    pub timeout: Option<u8>,
    /// Transport retry count (0..=7).
    pub retry_cnt: Option<u8>,
    /// RNR retry count (0..=7, 7 = infinite).
    pub rnr_retry: Option<u8>,
    /// Receive PSN (24 bits).
    pub rq_psn: Option<u32>,
    /// Send PSN (24 bits).
    pub sq_psn: Option<u32>,
    /// Outstanding READ/atomic as requester.
    pub max_rd_atomic: Option<u8>,
    /// Outstanding READ/atomic as responder.
    pub max_dest_rd_atomic: Option<u8>,
    /// RNR NAK timer code (0..=31).
    pub min_rnr_timer: Option<u8>,
    /// Remote QPN (24 bits).
    pub dest_qp_num: Option<u32>,
    /// Path migration state.
    pub path_mig_state: Option<PathMigState>,
    /// Alternate path.
    pub alt_path: Option<AltPath>,
}

/// What the value checks compare against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QpLimits {
    /// Ports (valid port numbers are `1..=ports`).
    pub ports: u8,
    /// Largest path MTU of the port, bytes.
    pub max_mtu: u32,
    /// GID table length.
    pub gid_tbl_len: u32,
    /// P_Key table length.
    pub max_pkeys: u16,
    /// `max_qp_init_rd_atom`.
    pub max_rd_atomic: u32,
    /// `max_qp_rd_atom`.
    pub max_dest_rd_atomic: u32,
    /// Whether the device does atomics at all.
    pub atomics: bool,
}

impl QpLimits {
    /// Limits from device caps and the port's MTU and GID table length.
    pub fn from_caps(caps: &DeviceCaps, port_max_mtu: u32, gid_tbl_len: u32) -> Self {
        QpLimits {
            ports: caps.phys_port_cnt.max(1),
            max_mtu: port_max_mtu.min(caps.max_mtu),
            gid_tbl_len,
            max_pkeys: caps.max_pkeys,
            max_rd_atomic: caps.max_qp_init_rd_atom,
            max_dest_rd_atomic: caps.max_qp_rd_atom,
            atomics: caps.ops.atomics,
        }
    }
}

/// Name of a state as IBTA writes it.
pub fn state_name(s: QpState) -> &'static str {
    match s {
        QpState::Reset => "RESET",
        QpState::Init => "INIT",
        QpState::Rtr => "RTR",
        QpState::Rts => "RTS",
        QpState::Sqd => "SQD",
        QpState::Sqe => "SQE",
        QpState::Err => "ERR",
    }
}

/// Name of a QP type.
pub fn type_name(t: QpType) -> &'static str {
    match t {
        QpType::Rc => "RC",
        QpType::Uc => "UC",
        QpType::Ud => "UD",
    }
}

/// Every state, in IBTA order.
pub const STATES: [QpState; 7] = [
    QpState::Reset,
    QpState::Init,
    QpState::Rtr,
    QpState::Rts,
    QpState::Sqd,
    QpState::Sqe,
    QpState::Err,
];

/// One transition's rule: required and optional mask bits (besides
/// `qp_state`, which every change may carry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Bits that must be present.
    pub required: u32,
    /// Bits that may be present.
    pub optional: u32,
}

const fn r(required: u32, optional: u32) -> Option<Rule> {
    Some(Rule { required, optional })
}

/// The rule of `cur → next` for `t`, or `None` if the transition does not
/// exist (Linux `qp_state_table`, RC/UC/UD columns, link layer Ethernet).
pub fn rule(t: QpType, cur: QpState, next: QpState) -> Option<Rule> {
    use QpState::*;
    use QpType::*;
    // Lines shared by several transitions.
    let rts_opt = match t {
        Ud => CUR_STATE | QKEY,
        Uc => CUR_STATE | ACCESS_FLAGS | ALT_PATH | PATH_MIG_STATE,
        Rc => CUR_STATE | ACCESS_FLAGS | ALT_PATH | PATH_MIG_STATE | MIN_RNR_TIMER,
    };
    match (cur, next) {
        (_, Reset) | (_, Err) => r(0, 0),
        (Reset, Init) => match t {
            Ud => r(PKEY_INDEX | PORT | QKEY, 0),
            Uc | Rc => r(PKEY_INDEX | PORT | ACCESS_FLAGS, 0),
        },
        (Init, Init) => match t {
            Ud => r(0, PKEY_INDEX | PORT | QKEY),
            Uc | Rc => r(0, PKEY_INDEX | PORT | ACCESS_FLAGS),
        },
        (Init, Rtr) => match t {
            Ud => r(0, PKEY_INDEX | QKEY),
            Uc => r(
                AV | PATH_MTU | DEST_QPN | RQ_PSN,
                ALT_PATH | ACCESS_FLAGS | PKEY_INDEX,
            ),
            Rc => r(
                AV | PATH_MTU | DEST_QPN | RQ_PSN | MAX_DEST_RD_ATOMIC | MIN_RNR_TIMER,
                ALT_PATH | ACCESS_FLAGS | PKEY_INDEX,
            ),
        },
        (Rtr, Rts) => match t {
            Ud | Uc => r(SQ_PSN, rts_opt),
            Rc => r(
                TIMEOUT | RETRY_CNT | RNR_RETRY | SQ_PSN | MAX_QP_RD_ATOMIC,
                rts_opt,
            ),
        },
        (Rts, Rts) | (Sqd, Rts) => r(0, rts_opt),
        (Rts, Sqd) => r(0, EN_SQD_ASYNC_NOTIFY),
        (Sqd, Sqd) => match t {
            Ud => r(0, PKEY_INDEX | QKEY),
            Uc => r(
                0,
                AV | ALT_PATH | ACCESS_FLAGS | PKEY_INDEX | PATH_MIG_STATE,
            ),
            Rc => r(
                0,
                PORT | AV
                    | TIMEOUT
                    | RETRY_CNT
                    | RNR_RETRY
                    | MAX_QP_RD_ATOMIC
                    | MAX_DEST_RD_ATOMIC
                    | ALT_PATH
                    | ACCESS_FLAGS
                    | PKEY_INDEX
                    | MIN_RNR_TIMER
                    | PATH_MIG_STATE,
            ),
        },
        (Sqe, Rts) => match t {
            Ud => r(0, CUR_STATE | QKEY),
            Uc => r(0, CUR_STATE | ACCESS_FLAGS),
            Rc => r(0, 0),
        },
        _ => None,
    }
}

fn transition(cur: QpState, next: QpState) -> String {
    format!("{}→{}", state_name(cur), state_name(next))
}

fn invalid(msg: String) -> VerbsError {
    VerbsError::InvalidArgument(msg)
}

impl ModifyAttrs {
    /// The attribute mask of the fields that are set.
    pub fn mask(&self) -> u32 {
        let mut m = 0;
        let mut set = |present: bool, bit: u32| {
            if present {
                m |= bit
            }
        };
        set(self.qp_state.is_some(), STATE);
        set(self.cur_qp_state.is_some(), CUR_STATE);
        set(self.en_sqd_async_notify.is_some(), EN_SQD_ASYNC_NOTIFY);
        set(self.qp_access_flags.is_some(), ACCESS_FLAGS);
        set(self.pkey_index.is_some(), PKEY_INDEX);
        set(self.port_num.is_some(), PORT);
        set(self.qkey.is_some(), QKEY);
        set(self.ah_attr.is_some(), AV);
        set(self.path_mtu.is_some(), PATH_MTU);
        set(self.timeout.is_some(), TIMEOUT);
        set(self.retry_cnt.is_some(), RETRY_CNT);
        set(self.rnr_retry.is_some(), RNR_RETRY);
        set(self.rq_psn.is_some(), RQ_PSN);
        set(self.sq_psn.is_some(), SQ_PSN);
        set(self.max_rd_atomic.is_some(), MAX_QP_RD_ATOMIC);
        set(self.max_dest_rd_atomic.is_some(), MAX_DEST_RD_ATOMIC);
        set(self.min_rnr_timer.is_some(), MIN_RNR_TIMER);
        set(self.dest_qp_num.is_some(), DEST_QPN);
        set(self.path_mig_state.is_some(), PATH_MIG_STATE);
        set(self.alt_path.is_some(), ALT_PATH);
        m
    }

    /// Checks the change against the transition table for a QP of type `t`
    /// now in state `cur` (`ib_modify_qp_is_ok`), then every value against
    /// `limits`; returns the change for the transport engine.
    ///
    /// Errors: a transition that does not exist is
    /// [`VerbsError::InvalidState`]; a missing required or a forbidden
    /// attribute, or a value out of range, is
    /// [`VerbsError::InvalidArgument`]. Each message names the transition
    /// and the attribute.
    pub fn validate(&self, t: QpType, cur: QpState, limits: &QpLimits) -> Result<ModifyQp> {
        self.check_mask(t, cur)?;
        self.check_values(t, limits)?;
        Ok(self.to_modify())
    }

    /// The transition-table half of [`ModifyAttrs::validate`].
    pub fn check_mask(&self, t: QpType, cur: QpState) -> Result<()> {
        let next = self.qp_state.unwrap_or(cur);
        let tr = transition(cur, next);
        let tn = type_name(t);
        if let Some(c) = self.cur_qp_state {
            if !matches!(
                cur,
                QpState::Rtr | QpState::Rts | QpState::Sqd | QpState::Sqe
            ) {
                return Err(invalid(format!(
                    "{tr} for {tn} does not accept cur_qp_state: it may be given only from RTR, RTS, SQD or SQE"
                )));
            }
            if c != cur {
                return Err(VerbsError::InvalidState(format!(
                    "cur_qp_state is {} but the QP is in {}",
                    state_name(c),
                    state_name(cur)
                )));
            }
        }
        let Some(rule) = rule(t, cur, next) else {
            let to: Vec<_> = STATES
                .iter()
                .filter(|s| rule(t, cur, **s).is_some())
                .map(|s| state_name(*s))
                .collect();
            return Err(VerbsError::InvalidState(format!(
                "{tr} is not a valid transition for a {tn} QP (from {} it may go to {})",
                state_name(cur),
                to.join(", ")
            )));
        };
        let m = self.mask();
        let missing = rule.required & !m;
        if missing != 0 {
            return Err(invalid(format!(
                "{tr} for {tn} requires {}; missing: {}",
                mask::names(rule.required).join(", "),
                mask::names(missing).join(", ")
            )));
        }
        let extra = m & !(rule.required | rule.optional | STATE);
        if extra != 0 {
            let allowed = mask::names(rule.required | rule.optional);
            return Err(invalid(format!(
                "{tr} for {tn} does not accept {} (it accepts {})",
                mask::names(extra).join(", "),
                if allowed.is_empty() {
                    "only qp_state".to_string()
                } else {
                    format!("qp_state, {}", allowed.join(", "))
                }
            )));
        }
        Ok(())
    }

    /// The value half of [`ModifyAttrs::validate`].
    pub fn check_values(&self, t: QpType, l: &QpLimits) -> Result<()> {
        fn max<T: Into<u64> + Copy>(
            name: &str,
            v: Option<T>,
            limit: u64,
            what: &str,
        ) -> Result<()> {
            match v {
                Some(x) if x.into() > limit => Err(invalid(format!(
                    "{name} = {} exceeds {limit} ({what})",
                    x.into()
                ))),
                _ => Ok(()),
            }
        }
        let port_ok = |name: &str, p: u8| -> Result<()> {
            if p == 0 || p > l.ports {
                Err(invalid(format!(
                    "{name} = {p} is not a port of this device (ports are 1..={})",
                    l.ports
                )))
            } else {
                Ok(())
            }
        };
        let pkey_ok = |name: &str, i: u16| -> Result<()> {
            if i >= l.max_pkeys {
                return Err(invalid(format!(
                    "{name} = {i} is outside the P_Key table (max_pkeys = {})",
                    l.max_pkeys
                )));
            }
            if i != 0 {
                return Err(invalid(format!(
                    "{name} = {i} names an empty P_Key table entry (only index 0, the default P_Key 0xffff, is populated)"
                )));
            }
            Ok(())
        };
        let av_ok = |name: &str, av: &AhAttr| -> Result<()> {
            if av.sgid_index as u32 >= l.gid_tbl_len {
                return Err(invalid(format!(
                    "{name}.sgid_index = {} is outside the GID table (length {})",
                    av.sgid_index, l.gid_tbl_len
                )));
            }
            if av.port != 0 {
                port_ok(&format!("{name}.port_num"), av.port)?;
            }
            max(
                &format!("{name}.flow_label"),
                Some(av.flow_label),
                0xf_ffff,
                "20 bits",
            )?;
            max(&format!("{name}.sl"), Some(av.sl), 15, "4 bits")
        };
        if let Some(p) = self.port_num {
            port_ok("port_num", p)?;
        }
        if let Some(i) = self.pkey_index {
            pkey_ok("pkey_index", i)?;
        }
        if let Some(av) = &self.ah_attr {
            av_ok("ah_attr", av)?;
        }
        if let Some(alt) = &self.alt_path {
            av_ok("alt_path.ah_attr", &alt.ah_attr)?;
            port_ok("alt_path.port_num", alt.port_num)?;
            pkey_ok("alt_path.pkey_index", alt.pkey_index)?;
            max("alt_path.timeout", Some(alt.timeout), 31, "5 bits")?;
        }
        if let Some(mtu) = self.path_mtu {
            if mtu.bytes() as u32 > l.max_mtu {
                return Err(invalid(format!(
                    "path_mtu = {} exceeds the port's max MTU {}",
                    mtu.bytes(),
                    l.max_mtu
                )));
            }
        }
        max("timeout", self.timeout, 31, "5 bits")?;
        max("retry_cnt", self.retry_cnt, 7, "3 bits")?;
        max("rnr_retry", self.rnr_retry, 7, "3 bits; 7 = infinite")?;
        max("min_rnr_timer", self.min_rnr_timer, 31, "5 bits")?;
        max("rq_psn", self.rq_psn, 0xff_ffff, "24 bits")?;
        max("sq_psn", self.sq_psn, 0xff_ffff, "24 bits")?;
        max("dest_qp_num", self.dest_qp_num, 0xff_ffff, "24 bits")?;
        max(
            "max_rd_atomic",
            self.max_rd_atomic,
            l.max_rd_atomic.into(),
            "the device's max_qp_init_rd_atom",
        )?;
        max(
            "max_dest_rd_atomic",
            self.max_dest_rd_atomic,
            l.max_dest_rd_atomic.into(),
            "the device's max_qp_rd_atom",
        )?;
        if let Some(a) = self.qp_access_flags {
            let allowed = Access::LOCAL_WRITE
                | Access::REMOTE_WRITE
                | Access::REMOTE_READ
                | Access::REMOTE_ATOMIC;
            if !allowed.contains(a) {
                return Err(invalid(format!(
                    "qp_access_flags {:#x} has bits outside {:#x}",
                    a.0, allowed.0
                )));
            }
            if a.contains(Access::REMOTE_ATOMIC) && !l.atomics {
                return Err(invalid(
                    "qp_access_flags asks for REMOTE_ATOMIC but the device does not do atomics"
                        .to_string(),
                ));
            }
            if t == QpType::Uc
                && (a.contains(Access::REMOTE_READ) || a.contains(Access::REMOTE_ATOMIC))
            {
                return Err(invalid(
                    "qp_access_flags: a UC QP accepts only REMOTE_WRITE (UC has no READ or atomics)"
                        .to_string(),
                ));
            }
        }
        Ok(())
    }

    /// The change as the transport engine applies it (no checks).
    pub fn to_modify(&self) -> ModifyQp {
        ModifyQp {
            state: self.qp_state,
            path_mtu: self.path_mtu,
            qkey: self.qkey,
            dest_qpn: self.dest_qp_num,
            dgid: self.ah_attr.map(|a| a.dgid),
            rq_psn: self.rq_psn,
            sq_psn: self.sq_psn,
            timeout: self.timeout,
            retry_cnt: self.retry_cnt,
            rnr_retry: self.rnr_retry,
            min_rnr_timer: self.min_rnr_timer,
            max_rd_atomic: self.max_rd_atomic,
            max_dest_rd_atomic: self.max_dest_rd_atomic,
            access: self.qp_access_flags,
            pkey: self.pkey_index.map(|_| softverbs_wire::DEFAULT_PKEY),
        }
    }

    /// An attribute set with exactly the fields of `m` set to plausible
    /// minimal values (test and tool helper: the minimal legal change for a
    /// transition is `ModifyAttrs::with_mask(rule.required)`).
    pub fn with_mask(m: u32, next: Option<QpState>) -> Self {
        let on = |b: u32| m & b != 0;
        let av = AhAttr {
            dgid: softverbs_wire::Gid::from_ipv4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
            sgid_index: 0,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            sl: 0,
            port: 1,
        };
        ModifyAttrs {
            qp_state: next,
            cur_qp_state: None,
            en_sqd_async_notify: on(EN_SQD_ASYNC_NOTIFY).then_some(true),
            qp_access_flags: on(ACCESS_FLAGS).then_some(Access::REMOTE_WRITE),
            pkey_index: on(PKEY_INDEX).then_some(0),
            port_num: on(PORT).then_some(1),
            qkey: on(QKEY).then_some(0x1111_1111),
            ah_attr: on(AV).then_some(av),
            path_mtu: on(PATH_MTU).then_some(Mtu::Mtu1024),
            timeout: on(TIMEOUT).then_some(14),
            retry_cnt: on(RETRY_CNT).then_some(7),
            rnr_retry: on(RNR_RETRY).then_some(7),
            rq_psn: on(RQ_PSN).then_some(0),
            sq_psn: on(SQ_PSN).then_some(0),
            max_rd_atomic: on(MAX_QP_RD_ATOMIC).then_some(1),
            max_dest_rd_atomic: on(MAX_DEST_RD_ATOMIC).then_some(1),
            min_rnr_timer: on(MIN_RNR_TIMER).then_some(12),
            dest_qp_num: on(DEST_QPN).then_some(0x11),
            path_mig_state: on(PATH_MIG_STATE).then_some(PathMigState::Migrated),
            alt_path: on(ALT_PATH).then_some(AltPath {
                ah_attr: av,
                pkey_index: 0,
                port_num: 1,
                timeout: 14,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPES: [QpType; 3] = [QpType::Rc, QpType::Uc, QpType::Ud];

    fn limits() -> QpLimits {
        QpLimits::from_caps(&DeviceCaps::rxe_like(1), 4096, 2)
    }

    /// Every bit except STATE and CUR_STATE (CUR_STATE has its own rule).
    fn bits() -> impl Iterator<Item = (u32, &'static str)> {
        mask::NAMES
            .iter()
            .copied()
            .filter(|(b, _)| *b != STATE && *b != CUR_STATE)
    }

    #[test]
    fn every_legal_transition_with_minimal_attrs_passes() {
        let mut n = 0;
        for t in TYPES {
            for cur in STATES {
                for next in STATES {
                    if let Some(rule) = rule(t, cur, next) {
                        let a = ModifyAttrs::with_mask(rule.required, Some(next));
                        let m = a.validate(t, cur, &limits()).unwrap_or_else(|e| {
                            panic!("{t:?} {cur:?}->{next:?}: {e}");
                        });
                        assert_eq!(m.state, Some(next));
                        // And with every optional attribute too.
                        let opt = rule.optional & !CUR_STATE;
                        let mut a = ModifyAttrs::with_mask(rule.required | opt, Some(next));
                        if t == QpType::Uc {
                            a.qp_access_flags = a.qp_access_flags.map(|_| Access::REMOTE_WRITE);
                        }
                        a.validate(t, cur, &limits()).unwrap();
                        n += 1;
                    }
                }
            }
        }
        // 3 types × (7 to RESET + 7 to ERR + 9 others).
        assert_eq!(n, 3 * (7 + 7 + 9));
    }

    #[test]
    fn each_required_attr_removed_fails_naming_it() {
        let mut n = 0;
        for t in TYPES {
            for cur in STATES {
                for next in STATES {
                    let Some(rule) = rule(t, cur, next) else {
                        continue;
                    };
                    for (bit, name) in bits().filter(|(b, _)| rule.required & b != 0) {
                        let a = ModifyAttrs::with_mask(rule.required & !bit, Some(next));
                        let e = a.validate(t, cur, &limits()).unwrap_err();
                        let msg = e.to_string();
                        assert!(matches!(e, VerbsError::InvalidArgument(_)), "{msg}");
                        assert!(msg.ends_with(&format!("missing: {name}")), "{msg}");
                        assert!(msg.contains(&transition(cur, next)), "{msg}");
                        assert!(msg.contains(type_name(t)), "{msg}");
                        n += 1;
                    }
                }
            }
        }
        // RC: 3 + 6 + 5; UC: 3 + 4 + 1; UD: 3 + 1.
        assert_eq!(n, 14 + 8 + 4);
    }

    #[test]
    fn each_forbidden_attr_added_fails_naming_it() {
        let mut n = 0;
        for t in TYPES {
            for cur in STATES {
                for next in STATES {
                    let Some(rule) = rule(t, cur, next) else {
                        continue;
                    };
                    for (bit, name) in
                        bits().filter(|(b, _)| (rule.required | rule.optional) & b == 0)
                    {
                        let a = ModifyAttrs::with_mask(rule.required | bit, Some(next));
                        let e = a.check_mask(t, cur).unwrap_err();
                        let msg = e.to_string();
                        assert!(matches!(e, VerbsError::InvalidArgument(_)), "{msg}");
                        assert!(msg.contains(&format!("does not accept {name} ")), "{msg}");
                        assert!(msg.contains(&transition(cur, next)), "{msg}");
                        n += 1;
                    }
                }
            }
        }
        assert!(n > 300, "{n}");
    }

    #[test]
    fn cur_qp_state_only_from_rtr_rts_sqd_sqe() {
        for t in TYPES {
            let mut a = ModifyAttrs::with_mask(0, Some(QpState::Err));
            a.cur_qp_state = Some(QpState::Init);
            let e = a.check_mask(t, QpState::Init).unwrap_err();
            assert!(e.to_string().contains("cur_qp_state"), "{e}");
            a.cur_qp_state = Some(QpState::Rts);
            a.qp_state = Some(QpState::Rts);
            a.check_mask(t, QpState::Rts).unwrap();
            // A wrong belief is refused.
            a.cur_qp_state = Some(QpState::Sqd);
            let e = a.check_mask(t, QpState::Rts).unwrap_err();
            assert!(matches!(e, VerbsError::InvalidState(_)), "{e}");
        }
    }

    #[test]
    fn illegal_transitions_fail() {
        use QpState::*;
        let legal: &[(QpState, QpState)] = &[
            (Reset, Init),
            (Init, Init),
            (Init, Rtr),
            (Rtr, Rts),
            (Rts, Rts),
            (Rts, Sqd),
            (Sqd, Rts),
            (Sqd, Sqd),
            (Sqe, Rts),
        ];
        let mut n = 0;
        for t in TYPES {
            for cur in STATES {
                for next in STATES {
                    let ok = next == Reset || next == Err || legal.contains(&(cur, next));
                    assert_eq!(rule(t, cur, next).is_some(), ok, "{t:?} {cur:?} {next:?}");
                    if !ok {
                        let e = ModifyAttrs::with_mask(0, Some(next))
                            .validate(t, cur, &limits())
                            .unwrap_err();
                        assert!(matches!(e, VerbsError::InvalidState(_)), "{e}");
                        assert!(e.to_string().contains(&transition(cur, next)), "{e}");
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, 3 * (49 - 23));
    }

    #[test]
    fn no_state_means_same_state() {
        // RTS→RTS by leaving qp_state out.
        let a = ModifyAttrs {
            min_rnr_timer: Some(3),
            ..Default::default()
        };
        a.validate(QpType::Rc, QpState::Rts, &limits()).unwrap();
        let e = a
            .validate(QpType::Rc, QpState::Init, &limits())
            .unwrap_err();
        assert!(e.to_string().contains("INIT→INIT"), "{e}");
    }

    #[test]
    fn values_checked_against_caps() {
        let l = limits();
        let rts = |f: fn(&mut ModifyAttrs)| {
            let mut a = ModifyAttrs::with_mask(
                rule(QpType::Rc, QpState::Rtr, QpState::Rts)
                    .unwrap()
                    .required,
                Some(QpState::Rts),
            );
            f(&mut a);
            a.validate(QpType::Rc, QpState::Rtr, &l)
                .unwrap_err()
                .to_string()
        };
        assert!(rts(|a| a.timeout = Some(32)).contains("timeout = 32"));
        assert!(rts(|a| a.retry_cnt = Some(8)).contains("retry_cnt = 8"));
        assert!(rts(|a| a.rnr_retry = Some(9)).contains("rnr_retry = 9"));
        assert!(rts(|a| a.sq_psn = Some(1 << 24)).contains("sq_psn"));
        assert!(rts(|a| a.max_rd_atomic = Some(200)).contains("max_qp_init_rd_atom"));
        assert!(rts(|a| a.min_rnr_timer = Some(32)).contains("min_rnr_timer = 32"));
        let rtr = |f: fn(&mut ModifyAttrs), lim: &QpLimits| {
            let mut a = ModifyAttrs::with_mask(
                rule(QpType::Rc, QpState::Init, QpState::Rtr)
                    .unwrap()
                    .required,
                Some(QpState::Rtr),
            );
            f(&mut a);
            a.validate(QpType::Rc, QpState::Init, lim)
                .unwrap_err()
                .to_string()
        };
        let small = QpLimits { max_mtu: 1024, ..l };
        assert!(rtr(|a| a.path_mtu = Some(Mtu::Mtu4096), &small).contains("path_mtu = 4096"));
        assert!(rtr(|a| a.ah_attr.as_mut().unwrap().sgid_index = 2, &l).contains("sgid_index = 2"));
        assert!(rtr(|a| a.max_dest_rd_atomic = Some(129), &l).contains("max_qp_rd_atom"));
        let init = |f: fn(&mut ModifyAttrs)| {
            let mut a =
                ModifyAttrs::with_mask(PKEY_INDEX | PORT | ACCESS_FLAGS, Some(QpState::Init));
            f(&mut a);
            a.validate(QpType::Rc, QpState::Reset, &l)
                .unwrap_err()
                .to_string()
        };
        assert!(init(|a| a.port_num = Some(2)).contains("port_num = 2"));
        assert!(init(|a| a.pkey_index = Some(64)).contains("max_pkeys"));
        assert!(init(|a| a.pkey_index = Some(3)).contains("empty P_Key"));
        assert!(init(|a| a.qp_access_flags = Some(Access(0x100))).contains("qp_access_flags"));
    }

    #[test]
    fn converts_to_transport_change() {
        let a = ModifyAttrs::with_mask(
            rule(QpType::Rc, QpState::Init, QpState::Rtr)
                .unwrap()
                .required,
            Some(QpState::Rtr),
        );
        let m = a.validate(QpType::Rc, QpState::Init, &limits()).unwrap();
        assert_eq!(m.dest_qpn, Some(0x11));
        assert_eq!(m.path_mtu, Some(Mtu::Mtu1024));
        assert_eq!(m.dgid, Some(a.ah_attr.unwrap().dgid));
        assert_eq!(m.sq_psn, None);
    }
}
