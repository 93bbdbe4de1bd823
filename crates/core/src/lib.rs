//! # softverbs-core — the RDMA subsystem
//!
//! Layer 3 of softverbs (see `DESIGN.md`): devices and ports, contexts, the
//! verbs objects, the QP state machine, capabilities, resource tracking and
//! the typed uAPI through which every verb is called.

pub mod uapi;
