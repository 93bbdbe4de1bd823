//! # softverbs-core — the RDMA subsystem
//!
//! Layer 3 of softverbs (see `DESIGN.md`): devices and ports, contexts, the
//! verbs objects, the QP state machine, capabilities, resource tracking and
//! the typed uAPI through which every verb is called.
//!
//! - [`driver`]: the interface a software device implements.
//! - [`caps`]: what a device advertises (seed 000).
//! - [`mem`]: memory a device may read and write.
//! - [`events`]: completion channels and asynchronous events.
//! - [`uapi`]: the typed object/method/attribute call framework (seed 004).

pub mod caps;
pub mod driver;
mod error;
pub mod events;
pub mod mem;
pub mod qp_rules;
pub mod uapi;

pub use error::{Result, VerbsError};
