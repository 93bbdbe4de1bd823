//! # softverbs-srd — SRD, sans-IO, on the UET packet delivery sublayer
//!
//! The transport of an EFA-like device (seed 001, issue 7): scalable
//! reliable datagrams. Reliable and exactly once, but unordered; QPs are
//! addressed like UD (address handle, remote QPN and Q_Key per work
//! request); one delivery context per pair of devices carries the traffic
//! of all their QPs; packets are sprayed over many paths (UDP source
//! ports); losses are repaired from selective ACKs; a delay-based window
//! controls congestion. The wire is UET's PDS in reliable-unordered mode
//! with its SES standard headers over UDP (`softverbs_wire::uet`,
//! `docs/srd-wire.md`).
//!
//! Like `softverbs-transport`, the engine does no I/O: an [`SrdEndpoint`]
//! (one per device) is fed work requests, datagrams and timeouts with an
//! injected [`softverbs_transport::Instant`] and drained of datagrams,
//! completions and its next timeout. Memory is reached through
//! [`softverbs_transport::Memory`], per QP via [`PdMemory`].
//!
//! [`sim`] runs many endpoints over a simulated multipath fabric with
//! seeded faults and checks the invariants; it also measures SRD against
//! RC (go-back-N, from `softverbs-transport`) on the same fabric.

pub mod cc;
pub mod config;
mod endpoint;
mod pdc;
pub mod sim;

pub use cc::{Cc, CcConfig};
pub use config::{status_of, vendor, SrdCaps, SrdConfig, SrdQpConfig, ENTROPY_BASE_PORT};
pub use endpoint::{
    DropReason, OnePd, PdMemory, PdcStats, SrdCompletion, SrdCounters, SrdEndpoint, CC_TYPE_DELAY,
};
