//! ACK extended transport header (IBTA vol. 1 §9.3.4, 4 bytes): a syndrome
//! byte and the 24-bit message sequence number.
//!
//! The syndrome (§9.7.5.1, table 45):
//! ```text
//!  bit 7    : reserved (0)
//!  bits 6..5: 00 ACK (bits 4..0: credit count, 0x1f = no credit information)
//!             01 RNR NAK (bits 4..0: RNR timer)
//!             10 reserved
//!             11 NAK (bits 4..0: NAK code)
//! ```

use crate::psn::PSN_MASK;
use crate::util::{fixed_view, get_u24, put_u24};
use crate::Result;
use core::fmt;

/// Length of the AETH.
pub const AETH_LEN: usize = 4;

mod field {
    use core::ops::Range;
    pub const SYNDROME: usize = 0;
    pub const MSN: Range<usize> = 1..4;
}

/// A NAK code (the low 5 bits of a NAK syndrome).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum NakCode {
    /// 0: PSN sequence error.
    PsnSequenceError,
    /// 1: invalid request.
    InvalidRequest,
    /// 2: remote access error.
    RemoteAccessError,
    /// 3: remote operational error.
    RemoteOperationalError,
    /// 4: invalid RD request.
    InvalidRdRequest,
    /// 5..=31: reserved; carries the 5-bit code.
    Reserved(u8),
}

impl NakCode {
    /// Decodes the low 5 bits of `code`.
    pub fn from_u8(code: u8) -> Self {
        match code & 0x1f {
            0 => NakCode::PsnSequenceError,
            1 => NakCode::InvalidRequest,
            2 => NakCode::RemoteAccessError,
            3 => NakCode::RemoteOperationalError,
            4 => NakCode::InvalidRdRequest,
            c => NakCode::Reserved(c),
        }
    }

    /// The 5-bit code (a `Reserved` value is truncated to 5 bits).
    pub fn to_u8(self) -> u8 {
        match self {
            NakCode::PsnSequenceError => 0,
            NakCode::InvalidRequest => 1,
            NakCode::RemoteAccessError => 2,
            NakCode::RemoteOperationalError => 3,
            NakCode::InvalidRdRequest => 4,
            NakCode::Reserved(c) => c & 0x1f,
        }
    }
}

impl fmt::Display for NakCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NakCode::PsnSequenceError => f.write_str("PSN_SEQUENCE_ERROR"),
            NakCode::InvalidRequest => f.write_str("INVALID_REQUEST"),
            NakCode::RemoteAccessError => f.write_str("REMOTE_ACCESS_ERROR"),
            NakCode::RemoteOperationalError => f.write_str("REMOTE_OPERATIONAL_ERROR"),
            NakCode::InvalidRdRequest => f.write_str("INVALID_RD_REQUEST"),
            NakCode::Reserved(c) => write!(f, "RESERVED_NAK({c})"),
        }
    }
}

/// The AETH syndrome byte.
///
/// [`AckSyndrome::from_u8`] and [`AckSyndrome::to_u8`] round-trip every
/// byte exactly. A value built by hand whose fields exceed 5 bits (or a
/// `Reserved` byte that is really an ACK/NAK encoding) is truncated /
/// re-encoded by `to_u8`; `from_u8` always yields the canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AckSyndrome {
    /// ACK with a 5-bit credit count code ([`AckSyndrome::NO_CREDIT`] =
    /// invalid / no credit information, what rxe sends).
    Ack {
        /// Credit count code (see [`credit_count`]).
        credit: u8,
    },
    /// RNR NAK with a 5-bit RNR timer code (see [`rnr_timer_us`]).
    RnrNak {
        /// RNR timer code.
        timer: u8,
    },
    /// NAK.
    Nak(NakCode),
    /// A reserved encoding (bit 7 set, or bits 6..5 = `10`); carries the
    /// whole byte.
    Reserved(u8),
}

impl Default for AckSyndrome {
    /// An ACK without credit information.
    fn default() -> Self {
        AckSyndrome::Ack {
            credit: AckSyndrome::NO_CREDIT,
        }
    }
}

impl AckSyndrome {
    /// The credit code meaning "no credit information" (0x1f).
    pub const NO_CREDIT: u8 = 0x1f;

    /// Decodes a syndrome byte.
    pub fn from_u8(b: u8) -> Self {
        if b & 0x80 != 0 {
            return AckSyndrome::Reserved(b);
        }
        let low = b & 0x1f;
        match (b >> 5) & 3 {
            0 => AckSyndrome::Ack { credit: low },
            1 => AckSyndrome::RnrNak { timer: low },
            3 => AckSyndrome::Nak(NakCode::from_u8(low)),
            _ => AckSyndrome::Reserved(b),
        }
    }

    /// Encodes the syndrome byte.
    pub fn to_u8(self) -> u8 {
        match self {
            AckSyndrome::Ack { credit } => credit & 0x1f,
            AckSyndrome::RnrNak { timer } => 0x20 | (timer & 0x1f),
            AckSyndrome::Nak(code) => 0x60 | code.to_u8(),
            AckSyndrome::Reserved(b) => b,
        }
    }

    /// An ACK (of any credit count).
    pub fn is_ack(self) -> bool {
        matches!(self, AckSyndrome::Ack { .. })
    }
}

impl fmt::Display for AckSyndrome {
    /// `ACK`, `ACK(credit=N)`, `RNR_NAK(timer=N)`, `NAK(CODE)`,
    /// `RESERVED(0xNN)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AckSyndrome::Ack { credit } if *credit == AckSyndrome::NO_CREDIT => f.write_str("ACK"),
            AckSyndrome::Ack { credit } => write!(f, "ACK(credit={credit})"),
            AckSyndrome::RnrNak { timer } => write!(f, "RNR_NAK(timer={timer})"),
            AckSyndrome::Nak(code) => write!(f, "NAK({code})"),
            AckSyndrome::Reserved(b) => write!(f, "RESERVED({b:#04x})"),
        }
    }
}

/// The number of credits (receive WQEs) a 5-bit credit code stands for
/// (IBTA table 46), `None` for `0x1f` (invalid).
pub fn credit_count(code: u8) -> Option<u32> {
    match code & 0x1f {
        0x1f => None,
        0 => Some(0),
        1 => Some(1),
        // 2, 3, 4, 6, 8, 12, 16, …, 32768: even codes 2^(c/2), odd codes
        // 1.5 * 2^((c-1)/2).
        c if c % 2 == 0 => Some(1 << (c / 2)),
        c => Some(3 << (c / 2 - 1)),
    }
}

/// The minimum RNR NAK delay of a 5-bit timer code, in microseconds (IBTA
/// table 45 and Linux `rnrnak_usec`): code 0 is 655.36 ms, 1 is 10 µs, up
/// to 31 = 491.52 ms.
pub fn rnr_timer_us(code: u8) -> u32 {
    const TABLE: [u32; 32] = [
        655_360, 10, 20, 30, 40, 60, 80, 120, 160, 240, 320, 480, 640, 960, 1_280, 1_920, 2_560,
        3_840, 5_120, 7_680, 10_240, 15_360, 20_480, 30_720, 40_960, 61_440, 81_920, 122_880,
        163_840, 245_760, 327_680, 491_520,
    ];
    TABLE[usize::from(code & 0x1f)]
}

fixed_view!(
    /// A view of an AETH at the start of a buffer.
    Aeth,
    AETH_LEN
);

impl<T: AsRef<[u8]>> Aeth<T> {
    /// The raw syndrome byte.
    pub fn syndrome_byte(&self) -> u8 {
        self.buffer.as_ref()[field::SYNDROME]
    }
    /// The decoded syndrome.
    pub fn syndrome(&self) -> AckSyndrome {
        AckSyndrome::from_u8(self.syndrome_byte())
    }
    /// Message sequence number (24 bits).
    pub fn msn(&self) -> u32 {
        get_u24(&self.buffer.as_ref()[field::MSN])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Aeth<T> {
    /// Sets the syndrome.
    pub fn set_syndrome(&mut self, s: AckSyndrome) {
        self.buffer.as_mut()[field::SYNDROME] = s.to_u8();
    }
    /// Sets the MSN (low 24 bits of `v`).
    pub fn set_msn(&mut self, v: u32) {
        put_u24(&mut self.buffer.as_mut()[field::MSN], v & PSN_MASK);
    }
}

/// A parsed AETH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AethRepr {
    /// ACK / NAK / RNR NAK.
    pub syndrome: AckSyndrome,
    /// Message sequence number (24 bits).
    pub msn: u32,
}

impl AethRepr {
    /// Parses an AETH view.
    ///
    /// # Errors
    /// [`crate::Error::Truncated`] if the view is shorter than 4 bytes.
    pub fn parse<T: AsRef<[u8]>>(v: &Aeth<T>) -> Result<Self> {
        v.check_len()?;
        Ok(AethRepr {
            syndrome: v.syndrome(),
            msn: v.msn(),
        })
    }

    /// Always [`AETH_LEN`].
    pub const fn buffer_len(&self) -> usize {
        AETH_LEN
    }

    /// Writes the header (`msn` truncated to 24 bits).
    ///
    /// # Panics
    /// If the view's buffer is shorter than [`AETH_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut Aeth<T>) {
        v.set_syndrome(self.syndrome);
        v.set_msn(self.msn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn syndrome_roundtrips_every_byte() {
        for b in 0..=u8::MAX {
            assert_eq!(AckSyndrome::from_u8(b).to_u8(), b, "{b:#x}");
        }
        assert_eq!(
            AckSyndrome::from_u8(0x1f),
            AckSyndrome::Ack { credit: 0x1f }
        );
        assert_eq!(
            AckSyndrome::from_u8(0x2e),
            AckSyndrome::RnrNak { timer: 14 }
        );
        assert_eq!(
            AckSyndrome::from_u8(0x60),
            AckSyndrome::Nak(NakCode::PsnSequenceError)
        );
        assert_eq!(
            AckSyndrome::from_u8(0x62),
            AckSyndrome::Nak(NakCode::RemoteAccessError)
        );
        assert_eq!(
            AckSyndrome::from_u8(0x65),
            AckSyndrome::Nak(NakCode::Reserved(5))
        );
        assert_eq!(AckSyndrome::from_u8(0x40), AckSyndrome::Reserved(0x40));
        assert_eq!(AckSyndrome::from_u8(0x9f), AckSyndrome::Reserved(0x9f));
    }

    #[test]
    fn display() {
        assert_eq!(AckSyndrome::default().to_string(), "ACK");
        assert_eq!(AckSyndrome::Ack { credit: 3 }.to_string(), "ACK(credit=3)");
        assert_eq!(
            AckSyndrome::RnrNak { timer: 1 }.to_string(),
            "RNR_NAK(timer=1)"
        );
        assert_eq!(
            AckSyndrome::Nak(NakCode::InvalidRequest).to_string(),
            "NAK(INVALID_REQUEST)"
        );
    }

    #[test]
    fn tables() {
        let credits: Vec<_> = (0..6).map(credit_count).collect();
        assert_eq!(
            credits,
            [Some(0), Some(1), Some(2), Some(3), Some(4), Some(6)]
        );
        assert_eq!(credit_count(30), Some(32768));
        assert_eq!(credit_count(31), None);
        assert_eq!(rnr_timer_us(0), 655_360);
        assert_eq!(rnr_timer_us(14), 1_280);
        assert_eq!(rnr_timer_us(31), 491_520);
    }

    #[test]
    fn parse_emit() {
        let bytes = [0x1f, 0x00, 0x00, 0x2a];
        let r = AethRepr::parse(&Aeth::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(
            r,
            AethRepr {
                syndrome: AckSyndrome::default(),
                msn: 42
            }
        );
        let mut buf = [0xa5u8; 4];
        r.emit(&mut Aeth::new_unchecked(&mut buf[..]));
        assert_eq!(buf, bytes);
        for n in 0..4 {
            assert_eq!(
                AethRepr::parse(&Aeth::new_unchecked(&bytes[..n])),
                Err(Error::Truncated)
            );
        }
    }
}
