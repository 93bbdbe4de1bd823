//! # softverbs-daemon — `softverbsd`, one host, many processes
//!
//! Layer 6 of softverbs (see `DESIGN.md`): a daemon that plays the kernel.
//! It owns the host's devices (so processes share one UDP port and one QPN
//! space), serves the uAPI over a Unix socket in the same binary encoding
//! as the embedded backend (`docs/uapi-encoding.md`), takes memory as
//! sealed memfds passed with `SCM_RIGHTS`, and moves work through
//! shared-memory rings, so posting and polling need no system call
//! (`docs/daemon-rings.md`). A client that goes away, however it goes, has
//! its context closed: every object destroyed, children first.
//!
//! - [`frame`]: frames on the socket (header, body, fds).
//! - [`proto`]: the daemon's own frame bodies (ring attach).
//! - [`ring`]: the SPSC ring protocol (model-checked with loom).
//! - [`wqe`]: the layouts of ring entries.
//! - [`server`]: the daemon; [`worker`]: its per-connection ring worker.
//! - [`client`]: the client side (the verbs crate's daemon backend).
//! - [`control`]: run-time control frames (`link add`/`delete`, counters,
//!   device attributes) and their client calls.
//! - [`entry`]: the daemon's command line (`softverbsd`, `softverbs daemon`).

pub mod client;
pub mod control;
pub mod entry;
pub mod frame;
pub mod proto;
pub mod ring;
pub mod server;
pub mod worker;
pub mod wqe;

/// The environment variable naming the daemon's socket.
pub const SOCKET_ENV: &str = "SOFTVERBS_SOCKET";

pub use server::{default_socket_path, Closed, Daemon, Running, Server};
