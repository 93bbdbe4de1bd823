//! The BTH opcode and the table of what each opcode carries.
//!
//! Like Linux `rxe_opcode.c`, everything about an opcode (its extension
//! headers, whether it has a payload, its position in a message) is data in
//! one static table indexed by the opcode byte; the rest of the stack asks
//! the table instead of matching on opcodes.
//!
//! Supported in this version (IBTA vol. 1 §9.2, Table 38 and `ib_pack.h`):
//! RC `0x00..=0x14`, `0x16`, `0x17`; UC `0x20..=0x2b`; UD `0x64`, `0x65`.
//! Everything else — RD (`0x40..`), CNP (`0x80..`), XRC (`0xa0..`), the
//! reserved RC `0x15` (RESYNC), RC FLUSH (`0x1c`), RC ATOMIC WRITE (`0x1d`)
//! and the manufacturer-specific range — is unsupported:
//! [`Opcode::info`] returns [`Error::UnsupportedOpcode`].

use crate::aeth::AETH_LEN;
use crate::atomic::{ATOMIC_ACK_ETH_LEN, ATOMIC_ETH_LEN};
use crate::bth::BTH_LEN;
use crate::deth::DETH_LEN;
use crate::immdt::{IETH_LEN, IMMDT_LEN};
use crate::reth::RETH_LEN;
use crate::{Error, Result};
use core::fmt;

/// A BTH opcode byte: transport in the top 3 bits, operation in the low 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Opcode(pub u8);

/// The transport service an opcode belongs to (its top 3 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum TransportKind {
    /// Reliable connected (`0x00..`).
    Rc,
    /// Unreliable connected (`0x20..`).
    Uc,
    /// Unreliable datagram (`0x60..`).
    Ud,
}

/// Where a packet sits in its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Position {
    /// First packet of a multi-packet message.
    First,
    /// Neither first nor last.
    Middle,
    /// Last packet of a multi-packet message.
    Last,
    /// The whole message in one packet (also every ACK, READ request and
    /// atomic).
    Only,
}

impl Position {
    /// The packet starts a message (`First` or `Only`).
    pub fn is_start(self) -> bool {
        matches!(self, Position::First | Position::Only)
    }

    /// The packet ends a message (`Last` or `Only`).
    pub fn is_end(self) -> bool {
        matches!(self, Position::Last | Position::Only)
    }
}

/// The operation an opcode belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum OpKind {
    /// SEND (with or without immediate or invalidate).
    Send,
    /// RDMA WRITE (with or without immediate).
    Write,
    /// RDMA READ request.
    ReadRequest,
    /// RDMA READ response.
    ReadResponse,
    /// ACKNOWLEDGE (ACK, NAK, RNR NAK).
    Acknowledge,
    /// ATOMIC ACKNOWLEDGE.
    AtomicAcknowledge,
    /// CmpSwap.
    CompareSwap,
    /// FetchAdd.
    FetchAdd,
}

/// What an opcode carries: one row of the opcode table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpcodeInfo {
    /// The IBTA name, as the constant is spelt (`"RC_SEND_FIRST"`).
    pub name: &'static str,
    /// RC, UC or UD.
    pub transport: TransportKind,
    /// First, middle, last or only.
    pub position: Position,
    /// Carries a RETH (RDMA extended transport header).
    pub has_reth: bool,
    /// Carries an AETH (ACK extended transport header).
    pub has_aeth: bool,
    /// Carries an AtomicETH.
    pub has_atomic_eth: bool,
    /// Carries an AtomicAckETH.
    pub has_atomic_ack_eth: bool,
    /// Carries a DETH (datagram extended transport header).
    pub has_deth: bool,
    /// Carries immediate data (ImmDt).
    pub has_immdt: bool,
    /// Carries an IETH (the R_Key to invalidate).
    pub has_ieth: bool,
    /// May carry payload bytes (zero bytes are allowed, e.g. an empty SEND).
    pub has_payload: bool,
    /// The operation.
    pub kind: OpKind,
}

impl OpcodeInfo {
    /// Length of the BTH plus every extension header this opcode carries.
    pub const fn header_len(&self) -> usize {
        let mut n = BTH_LEN;
        if self.has_deth {
            n += DETH_LEN;
        }
        if self.has_reth {
            n += RETH_LEN;
        }
        if self.has_atomic_eth {
            n += ATOMIC_ETH_LEN;
        }
        if self.has_aeth {
            n += AETH_LEN;
        }
        if self.has_atomic_ack_eth {
            n += ATOMIC_ACK_ETH_LEN;
        }
        if self.has_immdt {
            n += IMMDT_LEN;
        }
        if self.has_ieth {
            n += IETH_LEN;
        }
        n
    }

    /// A request (sent by a requester: sends, writes, READ requests,
    /// atomics).
    pub const fn is_request(&self) -> bool {
        matches!(
            self.kind,
            OpKind::Send
                | OpKind::Write
                | OpKind::ReadRequest
                | OpKind::CompareSwap
                | OpKind::FetchAdd
        )
    }

    /// A response (sent by a responder: ACKs, READ responses, atomic ACKs).
    pub const fn is_response(&self) -> bool {
        !self.is_request()
    }
}

// Flags for the table below.
const RETH: u16 = 1 << 0;
const AETH: u16 = 1 << 1;
const ATMETH: u16 = 1 << 2;
const ATMACK: u16 = 1 << 3;
const DETH: u16 = 1 << 4;
const IMMDT: u16 = 1 << 5;
const IETH: u16 = 1 << 6;
const PAYLOAD: u16 = 1 << 7;

const fn row(
    name: &'static str,
    transport: TransportKind,
    position: Position,
    kind: OpKind,
    flags: u16,
) -> Option<OpcodeInfo> {
    Some(OpcodeInfo {
        name,
        transport,
        position,
        has_reth: flags & RETH != 0,
        has_aeth: flags & AETH != 0,
        has_atomic_eth: flags & ATMETH != 0,
        has_atomic_ack_eth: flags & ATMACK != 0,
        has_deth: flags & DETH != 0,
        has_immdt: flags & IMMDT != 0,
        has_ieth: flags & IETH != 0,
        has_payload: flags & PAYLOAD != 0,
        kind,
    })
}

/// The opcode table, indexed by the opcode byte (`None`: unsupported).
static TABLE: [Option<OpcodeInfo>; 256] = build_table();

const fn build_table() -> [Option<OpcodeInfo>; 256] {
    use OpKind::*;
    use Position::*;
    use TransportKind::*;
    let mut t: [Option<OpcodeInfo>; 256] = [None; 256];

    // RC (0x00..)
    t[0x00] = row("RC_SEND_FIRST", Rc, First, Send, PAYLOAD);
    t[0x01] = row("RC_SEND_MIDDLE", Rc, Middle, Send, PAYLOAD);
    t[0x02] = row("RC_SEND_LAST", Rc, Last, Send, PAYLOAD);
    t[0x03] = row(
        "RC_SEND_LAST_WITH_IMMEDIATE",
        Rc,
        Last,
        Send,
        IMMDT | PAYLOAD,
    );
    t[0x04] = row("RC_SEND_ONLY", Rc, Only, Send, PAYLOAD);
    t[0x05] = row(
        "RC_SEND_ONLY_WITH_IMMEDIATE",
        Rc,
        Only,
        Send,
        IMMDT | PAYLOAD,
    );
    t[0x06] = row("RC_RDMA_WRITE_FIRST", Rc, First, Write, RETH | PAYLOAD);
    t[0x07] = row("RC_RDMA_WRITE_MIDDLE", Rc, Middle, Write, PAYLOAD);
    t[0x08] = row("RC_RDMA_WRITE_LAST", Rc, Last, Write, PAYLOAD);
    t[0x09] = row(
        "RC_RDMA_WRITE_LAST_WITH_IMMEDIATE",
        Rc,
        Last,
        Write,
        IMMDT | PAYLOAD,
    );
    t[0x0a] = row("RC_RDMA_WRITE_ONLY", Rc, Only, Write, RETH | PAYLOAD);
    t[0x0b] = row(
        "RC_RDMA_WRITE_ONLY_WITH_IMMEDIATE",
        Rc,
        Only,
        Write,
        RETH | IMMDT | PAYLOAD,
    );
    t[0x0c] = row("RC_RDMA_READ_REQUEST", Rc, Only, ReadRequest, RETH);
    t[0x0d] = row(
        "RC_RDMA_READ_RESPONSE_FIRST",
        Rc,
        First,
        ReadResponse,
        AETH | PAYLOAD,
    );
    t[0x0e] = row(
        "RC_RDMA_READ_RESPONSE_MIDDLE",
        Rc,
        Middle,
        ReadResponse,
        PAYLOAD,
    );
    t[0x0f] = row(
        "RC_RDMA_READ_RESPONSE_LAST",
        Rc,
        Last,
        ReadResponse,
        AETH | PAYLOAD,
    );
    t[0x10] = row(
        "RC_RDMA_READ_RESPONSE_ONLY",
        Rc,
        Only,
        ReadResponse,
        AETH | PAYLOAD,
    );
    t[0x11] = row("RC_ACKNOWLEDGE", Rc, Only, Acknowledge, AETH);
    t[0x12] = row(
        "RC_ATOMIC_ACKNOWLEDGE",
        Rc,
        Only,
        AtomicAcknowledge,
        AETH | ATMACK,
    );
    t[0x13] = row("RC_COMPARE_SWAP", Rc, Only, CompareSwap, ATMETH);
    t[0x14] = row("RC_FETCH_ADD", Rc, Only, FetchAdd, ATMETH);
    // 0x15: reserved (RESYNC, RD only) — unsupported.
    t[0x16] = row(
        "RC_SEND_LAST_WITH_INVALIDATE",
        Rc,
        Last,
        Send,
        IETH | PAYLOAD,
    );
    t[0x17] = row(
        "RC_SEND_ONLY_WITH_INVALIDATE",
        Rc,
        Only,
        Send,
        IETH | PAYLOAD,
    );

    // UC (0x20..): sends and writes only.
    t[0x20] = row("UC_SEND_FIRST", Uc, First, Send, PAYLOAD);
    t[0x21] = row("UC_SEND_MIDDLE", Uc, Middle, Send, PAYLOAD);
    t[0x22] = row("UC_SEND_LAST", Uc, Last, Send, PAYLOAD);
    t[0x23] = row(
        "UC_SEND_LAST_WITH_IMMEDIATE",
        Uc,
        Last,
        Send,
        IMMDT | PAYLOAD,
    );
    t[0x24] = row("UC_SEND_ONLY", Uc, Only, Send, PAYLOAD);
    t[0x25] = row(
        "UC_SEND_ONLY_WITH_IMMEDIATE",
        Uc,
        Only,
        Send,
        IMMDT | PAYLOAD,
    );
    t[0x26] = row("UC_RDMA_WRITE_FIRST", Uc, First, Write, RETH | PAYLOAD);
    t[0x27] = row("UC_RDMA_WRITE_MIDDLE", Uc, Middle, Write, PAYLOAD);
    t[0x28] = row("UC_RDMA_WRITE_LAST", Uc, Last, Write, PAYLOAD);
    t[0x29] = row(
        "UC_RDMA_WRITE_LAST_WITH_IMMEDIATE",
        Uc,
        Last,
        Write,
        IMMDT | PAYLOAD,
    );
    t[0x2a] = row("UC_RDMA_WRITE_ONLY", Uc, Only, Write, RETH | PAYLOAD);
    t[0x2b] = row(
        "UC_RDMA_WRITE_ONLY_WITH_IMMEDIATE",
        Uc,
        Only,
        Write,
        RETH | IMMDT | PAYLOAD,
    );

    // UD (0x60..): single-packet sends.
    t[0x64] = row("UD_SEND_ONLY", Ud, Only, Send, DETH | PAYLOAD);
    t[0x65] = row(
        "UD_SEND_ONLY_WITH_IMMEDIATE",
        Ud,
        Only,
        Send,
        DETH | IMMDT | PAYLOAD,
    );
    t
}

impl Opcode {
    /// RC SEND First.
    pub const RC_SEND_FIRST: Opcode = Opcode(0x00);
    /// RC SEND Middle.
    pub const RC_SEND_MIDDLE: Opcode = Opcode(0x01);
    /// RC SEND Last.
    pub const RC_SEND_LAST: Opcode = Opcode(0x02);
    /// RC SEND Last with Immediate.
    pub const RC_SEND_LAST_WITH_IMMEDIATE: Opcode = Opcode(0x03);
    /// RC SEND Only.
    pub const RC_SEND_ONLY: Opcode = Opcode(0x04);
    /// RC SEND Only with Immediate.
    pub const RC_SEND_ONLY_WITH_IMMEDIATE: Opcode = Opcode(0x05);
    /// RC RDMA WRITE First.
    pub const RC_RDMA_WRITE_FIRST: Opcode = Opcode(0x06);
    /// RC RDMA WRITE Middle.
    pub const RC_RDMA_WRITE_MIDDLE: Opcode = Opcode(0x07);
    /// RC RDMA WRITE Last.
    pub const RC_RDMA_WRITE_LAST: Opcode = Opcode(0x08);
    /// RC RDMA WRITE Last with Immediate.
    pub const RC_RDMA_WRITE_LAST_WITH_IMMEDIATE: Opcode = Opcode(0x09);
    /// RC RDMA WRITE Only.
    pub const RC_RDMA_WRITE_ONLY: Opcode = Opcode(0x0a);
    /// RC RDMA WRITE Only with Immediate.
    pub const RC_RDMA_WRITE_ONLY_WITH_IMMEDIATE: Opcode = Opcode(0x0b);
    /// RC RDMA READ Request.
    pub const RC_RDMA_READ_REQUEST: Opcode = Opcode(0x0c);
    /// RC RDMA READ response First.
    pub const RC_RDMA_READ_RESPONSE_FIRST: Opcode = Opcode(0x0d);
    /// RC RDMA READ response Middle.
    pub const RC_RDMA_READ_RESPONSE_MIDDLE: Opcode = Opcode(0x0e);
    /// RC RDMA READ response Last.
    pub const RC_RDMA_READ_RESPONSE_LAST: Opcode = Opcode(0x0f);
    /// RC RDMA READ response Only.
    pub const RC_RDMA_READ_RESPONSE_ONLY: Opcode = Opcode(0x10);
    /// RC Acknowledge (ACK, NAK, RNR NAK).
    pub const RC_ACKNOWLEDGE: Opcode = Opcode(0x11);
    /// RC ATOMIC Acknowledge.
    pub const RC_ATOMIC_ACKNOWLEDGE: Opcode = Opcode(0x12);
    /// RC CmpSwap.
    pub const RC_COMPARE_SWAP: Opcode = Opcode(0x13);
    /// RC FetchAdd.
    pub const RC_FETCH_ADD: Opcode = Opcode(0x14);
    /// RC SEND Last with Invalidate.
    pub const RC_SEND_LAST_WITH_INVALIDATE: Opcode = Opcode(0x16);
    /// RC SEND Only with Invalidate.
    pub const RC_SEND_ONLY_WITH_INVALIDATE: Opcode = Opcode(0x17);

    /// UC SEND First.
    pub const UC_SEND_FIRST: Opcode = Opcode(0x20);
    /// UC SEND Middle.
    pub const UC_SEND_MIDDLE: Opcode = Opcode(0x21);
    /// UC SEND Last.
    pub const UC_SEND_LAST: Opcode = Opcode(0x22);
    /// UC SEND Last with Immediate.
    pub const UC_SEND_LAST_WITH_IMMEDIATE: Opcode = Opcode(0x23);
    /// UC SEND Only.
    pub const UC_SEND_ONLY: Opcode = Opcode(0x24);
    /// UC SEND Only with Immediate.
    pub const UC_SEND_ONLY_WITH_IMMEDIATE: Opcode = Opcode(0x25);
    /// UC RDMA WRITE First.
    pub const UC_RDMA_WRITE_FIRST: Opcode = Opcode(0x26);
    /// UC RDMA WRITE Middle.
    pub const UC_RDMA_WRITE_MIDDLE: Opcode = Opcode(0x27);
    /// UC RDMA WRITE Last.
    pub const UC_RDMA_WRITE_LAST: Opcode = Opcode(0x28);
    /// UC RDMA WRITE Last with Immediate.
    pub const UC_RDMA_WRITE_LAST_WITH_IMMEDIATE: Opcode = Opcode(0x29);
    /// UC RDMA WRITE Only.
    pub const UC_RDMA_WRITE_ONLY: Opcode = Opcode(0x2a);
    /// UC RDMA WRITE Only with Immediate.
    pub const UC_RDMA_WRITE_ONLY_WITH_IMMEDIATE: Opcode = Opcode(0x2b);

    /// UD SEND Only.
    pub const UD_SEND_ONLY: Opcode = Opcode(0x64);
    /// UD SEND Only with Immediate.
    pub const UD_SEND_ONLY_WITH_IMMEDIATE: Opcode = Opcode(0x65);

    /// The table row of this opcode, or [`Error::UnsupportedOpcode`].
    #[inline]
    pub fn info(self) -> Result<&'static OpcodeInfo> {
        TABLE[usize::from(self.0)]
            .as_ref()
            .ok_or(Error::UnsupportedOpcode(self.0))
    }

    /// Whether this version supports the opcode.
    #[inline]
    pub fn is_supported(self) -> bool {
        TABLE[usize::from(self.0)].is_some()
    }

    /// The IBTA name (`"RC_SEND_FIRST"`), or `"UNKNOWN"` if unsupported.
    pub fn name(self) -> &'static str {
        self.info().map_or("UNKNOWN", |i| i.name)
    }

    /// A request: a send, write, READ request or atomic. `false` for
    /// unsupported opcodes.
    pub fn is_request(self) -> bool {
        self.info().is_ok_and(|i| i.is_request())
    }

    /// A response: an ACK, READ response or atomic ACK. `false` for
    /// unsupported opcodes.
    pub fn is_response(self) -> bool {
        self.info().is_ok_and(|i| i.is_response())
    }

    /// BTH plus extension headers of this opcode (the offset of the
    /// payload), or [`Error::UnsupportedOpcode`].
    pub fn header_len(self) -> Result<usize> {
        self.info().map(OpcodeInfo::header_len)
    }

    /// Every supported opcode, in numeric order.
    pub fn all_supported() -> impl Iterator<Item = Opcode> {
        (0..=u8::MAX).map(Opcode).filter(|op| op.is_supported())
    }
}

impl From<u8> for Opcode {
    fn from(v: u8) -> Self {
        Opcode(v)
    }
}

impl From<Opcode> for u8 {
    fn from(op: Opcode) -> u8 {
        op.0
    }
}

impl fmt::Display for Opcode {
    /// The IBTA name, or `UNKNOWN(0xNN)` for unsupported opcodes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.info() {
            Ok(i) => f.write_str(i.name),
            Err(_) => write!(f, "UNKNOWN({:#04x})", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_ranges() {
        let all: Vec<u8> = Opcode::all_supported().map(|o| o.0).collect();
        assert_eq!(all.len(), 23 + 12 + 2);
        for op in 0..=u8::MAX {
            let supported = matches!(op, 0x00..=0x14 | 0x16 | 0x17 | 0x20..=0x2b | 0x64 | 0x65);
            assert_eq!(Opcode(op).is_supported(), supported, "{op:#x}");
            if !supported {
                assert_eq!(Opcode(op).info(), Err(Error::UnsupportedOpcode(op)));
                assert_eq!(Opcode(op).name(), "UNKNOWN");
                assert!(!Opcode(op).is_request() && !Opcode(op).is_response());
            }
        }
    }

    #[test]
    fn names_match_transport_and_uc_mirrors_rc() {
        for op in Opcode::all_supported() {
            let i = op.info().unwrap();
            let prefix = match i.transport {
                TransportKind::Rc => "RC_",
                TransportKind::Uc => "UC_",
                TransportKind::Ud => "UD_",
            };
            assert!(i.name.starts_with(prefix), "{}", i.name);
            assert_eq!(op.is_request(), !op.is_response());
            if i.transport == TransportKind::Uc {
                let rc = Opcode(op.0 - 0x20).info().unwrap();
                assert_eq!(&rc.name[3..], &i.name[3..]);
                assert_eq!(
                    (
                        rc.position,
                        rc.kind,
                        rc.has_reth,
                        rc.has_immdt,
                        rc.has_payload
                    ),
                    (i.position, i.kind, i.has_reth, i.has_immdt, i.has_payload)
                );
            }
        }
    }

    #[test]
    fn header_lengths() {
        assert_eq!(Opcode::RC_SEND_ONLY.header_len(), Ok(12));
        assert_eq!(
            Opcode::RC_RDMA_WRITE_ONLY_WITH_IMMEDIATE.header_len(),
            Ok(32)
        );
        assert_eq!(Opcode::RC_RDMA_READ_REQUEST.header_len(), Ok(28));
        assert_eq!(Opcode::RC_ACKNOWLEDGE.header_len(), Ok(16));
        assert_eq!(Opcode::RC_ATOMIC_ACKNOWLEDGE.header_len(), Ok(24));
        assert_eq!(Opcode::RC_COMPARE_SWAP.header_len(), Ok(40));
        assert_eq!(Opcode::RC_SEND_ONLY_WITH_INVALIDATE.header_len(), Ok(16));
        assert_eq!(Opcode::UD_SEND_ONLY_WITH_IMMEDIATE.header_len(), Ok(24));
        assert_eq!(
            Opcode(0x81).header_len(),
            Err(Error::UnsupportedOpcode(0x81))
        );
    }

    #[test]
    fn requests_and_responses() {
        assert!(Opcode::RC_RDMA_READ_REQUEST.is_request());
        assert!(Opcode::RC_FETCH_ADD.is_request());
        assert!(Opcode::UD_SEND_ONLY.is_request());
        assert!(Opcode::RC_RDMA_READ_RESPONSE_MIDDLE.is_response());
        assert!(Opcode::RC_ATOMIC_ACKNOWLEDGE.is_response());
        assert_eq!(Opcode::RC_ACKNOWLEDGE.to_string(), "RC_ACKNOWLEDGE");
        assert_eq!(Opcode(0x40).to_string(), "UNKNOWN(0x40)");
    }
}
