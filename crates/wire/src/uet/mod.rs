//! Ultra Ethernet Transport (UET 1.0) packet formats, as SRD carries them:
//! the packet delivery sublayer (PDS) in reliable-unordered mode (RUD) and the
//! semantic sublayer (SES) standard headers, over UDP.
//!
//! The layouts follow the UEC reference libfabric provider
//! (`ultraethernet/uet-ref-prov`, `uet_pkt_hdr.h`); `docs/srd-wire.md` in the
//! repository gives every byte, which verbs operation maps onto what, and
//! what of UET is left out. A UDP payload is
//!
//! ```text
//! PDS header | SES header (if the PDS next-header field names one) | payload | CRC32C (4)
//! ```
//!
//! Every header has a zero-copy view (`new_checked`, accessors that never
//! panic afterwards) and a parsed representation (`parse`, `buffer_len`,
//! `emit`), as the RoCE headers of this crate do. [`UetPacketRepr`] ties them
//! together; [`crc`] seals and checks the trailer. Parsing never panics.

pub mod crc;
mod packet;
pub mod pds;
pub mod ses;
#[cfg(test)]
mod tests;

pub use packet::{UetPacketRepr, UET_MAX_HEADER_LEN};
pub use pds::{
    AckCcRepr, AckRepr, ControlRepr, ControlType, Dest, NackCode, NackRepr, PdsRepr, PdsType,
    RequestRepr,
};
pub use ses::{
    NextHeader, ReturnCode, SesOpcode, SesRepr, SesRequestRepr, SesResponseDataRepr,
    SesResponseRepr,
};

/// The UDP destination port of UET over UDP (IANA-assigned to UEC, the value
/// UET 1.0 uses). The reference provider's older builds used 49150.
pub const UET_UDP_PORT: u16 = 4793;

/// Length of the CRC32C trailer that ends every packet of ours.
pub const UET_CRC_LEN: usize = 4;
