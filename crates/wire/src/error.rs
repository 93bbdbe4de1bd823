//! The wire error: tiny on purpose (see smoltcp). Why a packet is dropped is
//! an enum one layer up; here we only say what is wrong with the bytes.

use core::fmt;

/// What is wrong with a buffer that failed to parse (or is too short to
/// emit into).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// The buffer is shorter than the headers (or lengths) it announces.
    Truncated,
    /// The BTH opcode is not one this version supports (RD, XRC, CNP,
    /// reserved, flush, atomic write …). Carries the opcode byte.
    UnsupportedOpcode(u8),
    /// The bytes are long enough but inconsistent; the string says how.
    Malformed(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated packet"),
            Error::UnsupportedOpcode(op) => write!(f, "unsupported opcode {op:#04x}"),
            Error::Malformed(why) => write!(f, "malformed packet: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// The result type of this crate.
pub type Result<T> = core::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        assert_eq!(Error::Truncated.to_string(), "truncated packet");
        assert_eq!(
            Error::UnsupportedOpcode(0x81).to_string(),
            "unsupported opcode 0x81"
        );
        assert_eq!(Error::Malformed("pad").to_string(), "malformed packet: pad");
    }
}
