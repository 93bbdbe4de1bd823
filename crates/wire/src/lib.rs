//! # softverbs-wire — RoCEv2 packet formats
//!
//! Layer 1 of softverbs (see `DESIGN.md`). Every header of the InfiniBand
//! transport as carried by RoCEv2 (IBTA vol. 1 ch. 9 and Annex A17) has two
//! levels, following smoltcp's `wire` module:
//!
//! * a zero-copy **view** `Xxx<T: AsRef<[u8]>>` with checked construction
//!   (`new_checked`) and field accessors that never panic afterwards, and
//! * a parsed **representation** `XxxRepr` with `parse`, `buffer_len` and
//!   `emit`.
//!
//! [`PacketRepr`] ties them together for a whole IB transport packet (the
//! UDP payload of RoCEv2: BTH, extension headers, payload, pad, ICRC), driven
//! by the opcode table in [`opcode`]. [`icrc`] computes and verifies the
//! invariant CRC exactly as Linux `rdma_rxe` does.
//!
//! Parsing never panics: every malformed input is an [`Error`].

pub mod aeth;
pub mod atomic;
pub mod bth;
#[cfg(feature = "pcap")]
pub mod capture;
pub mod deth;
mod error;
pub mod gid;
pub mod icrc;
pub mod immdt;
pub mod ip;
pub mod opcode;
pub mod packet;
pub mod psn;
pub mod reth;
pub mod uet;
mod util;

pub use aeth::{AckSyndrome, AethRepr, NakCode};
pub use atomic::{AtomicAckEthRepr, AtomicEthRepr};
pub use bth::BthRepr;
pub use deth::DethRepr;
pub use error::{Error, Result};
pub use gid::Gid;
pub use opcode::{OpKind, Opcode, OpcodeInfo, Position, TransportKind};
pub use packet::{Packet, PacketRepr};
pub use reth::RethRepr;

/// The UDP destination port of RoCEv2 (IANA-assigned).
pub const ROCEV2_UDP_PORT: u16 = 4791;
/// Length of the invariant CRC that ends every RoCEv2 packet.
pub const ICRC_LEN: usize = 4;
/// The default partition key: full membership of the default partition.
pub const DEFAULT_PKEY: u16 = 0xffff;
