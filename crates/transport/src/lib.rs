//! # softverbs-transport — sans-IO RDMA transports
//!
//! Layer 2 of softverbs (see `DESIGN.md`): the protocol engines of the
//! Reliable Connected (RC), Unreliable Connected (UC) and Unreliable Datagram
//! (UD) transports of the InfiniBand architecture, as carried by RoCEv2.
//!
//! Like quinn-proto, an engine does no I/O. A [`Qp`] is fed
//! [`Qp::post_send`], [`Qp::post_recv`], [`Qp::handle_packet`] and
//! [`Qp::handle_timeout`], and drained with [`Qp::poll_transmit`],
//! [`Qp::poll_completion`], [`Qp::poll_event`] and [`Qp::poll_timeout`].
//! Time is injected ([`Instant`]); memory is reached only through the
//! [`Memory`] trait, which checks keys, bounds and rights, so the engine
//! never owns user buffers.
//!
//! The code is split by role, as Linux `rdma_rxe` is: [`requester`] turns
//! send work requests into packets, [`responder`] executes incoming requests
//! and answers them, [`completer`] turns acknowledgements and responses into
//! send completions and drives retransmission.
//!
//! ```
//! use softverbs_transport::*;
//! use softverbs_wire::Gid;
//!
//! let mut qp = Qp::new(QpConfig::new(QpType::Rc, 17));
//! qp.modify(&ModifyQp { state: Some(QpState::Init), ..Default::default() }, Instant::ZERO);
//! assert_eq!(qp.state(), QpState::Init);
//! // No packet leaves a QP that is not ready to send.
//! let mut buf = [0u8; 4200];
//! let mut mem = NoMemory;
//! assert!(qp.poll_transmit(Instant::ZERO, &mut Ctx::new(&mut mem), &mut buf).is_none());
//! ```

pub mod completer;
mod counters;
mod memory;
mod qp;
mod recv;
pub mod requester;
pub mod responder;
pub mod sgl;
mod time;
mod wc;
mod wr;

pub use counters::QpCounters;
pub use memory::{Access, AtomicOp, MemError, MemKey, Memory, MwBindReq, NoMemory};
pub use qp::{
    Ctx, Incoming, ModifyQp, Mtu, PostError, Qp, QpAttrs, QpConfig, QpEvent, QpState, QpType,
    Transmit, MAX_HEADER_LEN,
};
pub use recv::RecvQueue;
pub use time::{ack_timeout, rnr_delay, Instant};
pub use wc::{Completion, WcOpcode, WcQueue, WcStatus};
pub use wr::{inc_rkey, sgl_len, Payload, RecvWr, SendFlags, SendOp, SendWr, Sge, UdDest};
