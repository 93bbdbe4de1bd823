//! # softverbs-ibverbs — libibverbs's C ABI over softverbs
//!
//! Layer 8 of softverbs (see `DESIGN.md`): a `libibverbs.so.1` with the
//! exported symbols, symbol versions and struct layouts of rdma-core 44's
//! libibverbs, so that unmodified C programs — `ibv_devinfo`,
//! `ibv_rc_pingpong`, perftest — run on softverbs devices with no kernel
//! module: start them with `LD_LIBRARY_PATH=target/libibverbs`.
//!
//! The crate is built as a static library; `scripts/build-libibverbs.sh`
//! links it into the shared library with a version script (every node
//! `IBVERBS_1.0` … `IBVERBS_1.14` and `IBVERBS_PRIVATE_34`) and the
//! `@IBVERBS_1.0` compatibility aliases, generated from
//! `symbols/libibverbs-v44.txt`.
//!
//! Struct layouts come from bindings generated from `<infiniband/verbs.h>`
//! ([`sys`], committed; `gen/regen.sh` regenerates them) and are checked
//! at compile time against the C compiler's sizes and offsets (`layout.rs`).
//!
//! Each C object (`ibv_pd`, `ibv_qp`, …) is the first field of a Rust box
//! that also holds the softverbs object ([`softverbs::Pd`], …), so a C
//! pointer leads back to its Rust object by a cast; a magic number after
//! the C struct rejects pointers that are not ours. The data path
//! (`ibv_post_send`, `ibv_poll_cq`, …) is inline in the header and calls
//! through `ibv_context.ops`, which `ibv_open_device` fills in.
//!
//! What is not implemented fails cleanly: a NULL or -1 return with errno
//! `EOPNOTSUPP`, or `EOPNOTSUPP` as the return value where the verb returns
//! an errno.

pub mod sys;

mod layout;

mod context;
mod cq;
mod device;
mod misc;
mod objects;
mod qp;
mod qpex;
mod stubs;
mod util;

pub use device::device_names;
pub use util::SYMBOLS;
