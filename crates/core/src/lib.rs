//! # softverbs-core — the RDMA subsystem
//!
//! Layer 3 of softverbs (see `DESIGN.md`): devices and ports, contexts, the
//! verbs objects, the QP state machine, capabilities, resource tracking and
//! the typed uAPI through which every verb is called.
//!
//! - [`driver`]: the interface a software device implements.
//! - [`caps`]: what a device advertises (seed 000).
//! - [`mem`]: memory a device may read and write.
//! - [`shm`]: memory shared with another process (sealed memfds).
//! - [`events`]: completion channels and asynchronous events.
//! - [`efa`]: the EFA-like driver namespace (SRD QPs, `efadv_query_device`).
//! - [`uapi`]: the typed object/method/attribute call framework (seed 004).

mod abi;
pub mod calls;
pub mod caps;
pub mod context;
pub mod device;
pub mod driver;
pub mod efa;
mod error;
pub mod events;
pub mod mem;
pub mod objects;
pub mod provider;
pub mod qp_rules;
pub mod restrack;
pub mod shm;
pub mod uapi;

pub use context::{
    AhRef, ChannelRef, CqRef, MrRef, MwRef, PdRef, QpCreate, QpRef, SrqRef, Ucontext,
};
pub use device::Device;
pub use error::{Result, VerbsError};
pub use objects::Owner;
pub use qp_rules::ModifyAttrs;
pub use restrack::{ResDetail, ResKind, Resource};
