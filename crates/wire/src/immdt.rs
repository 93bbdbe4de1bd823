//! Immediate data (ImmDt, IBTA vol. 1 §9.3.5) and the invalidate extended
//! transport header (IETH, §9.3.6): both are one 4-byte big-endian word.
//!
//! The immediate value is carried as-is: the 4 bytes on the wire read as a
//! big-endian `u32` (verbs hands it to the application in network order, so
//! an application that wants the bytes calls `to_be_bytes`).

use crate::util::{fixed_view, get_u32, put_u32};
use crate::Result;

/// Length of ImmDt.
pub const IMMDT_LEN: usize = 4;
/// Length of the IETH.
pub const IETH_LEN: usize = 4;

mod field {
    use core::ops::Range;
    pub const VALUE: Range<usize> = 0..4;
}

fixed_view!(
    /// A view of immediate data at the start of a buffer.
    ImmDt,
    IMMDT_LEN
);

fixed_view!(
    /// A view of an IETH (the R_Key to invalidate) at the start of a buffer.
    Ieth,
    IETH_LEN
);

impl<T: AsRef<[u8]>> ImmDt<T> {
    /// The immediate value (big-endian on the wire).
    pub fn value(&self) -> u32 {
        get_u32(&self.buffer.as_ref()[field::VALUE])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ImmDt<T> {
    /// Sets the immediate value.
    pub fn set_value(&mut self, v: u32) {
        put_u32(&mut self.buffer.as_mut()[field::VALUE], v);
    }
}

impl<T: AsRef<[u8]>> Ieth<T> {
    /// The R_Key to invalidate.
    pub fn rkey(&self) -> u32 {
        get_u32(&self.buffer.as_ref()[field::VALUE])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ieth<T> {
    /// Sets the R_Key to invalidate.
    pub fn set_rkey(&mut self, v: u32) {
        put_u32(&mut self.buffer.as_mut()[field::VALUE], v);
    }
}

/// Parses immediate data.
///
/// # Errors
/// [`crate::Error::Truncated`] if the view is shorter than 4 bytes.
pub fn parse_immdt<T: AsRef<[u8]>>(v: &ImmDt<T>) -> Result<u32> {
    v.check_len()?;
    Ok(v.value())
}

/// Parses an IETH.
///
/// # Errors
/// [`crate::Error::Truncated`] if the view is shorter than 4 bytes.
pub fn parse_ieth<T: AsRef<[u8]>>(v: &Ieth<T>) -> Result<u32> {
    v.check_len()?;
    Ok(v.rkey())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn roundtrip() {
        let mut buf = [0xa5u8; 4];
        ImmDt::new_checked(&mut buf[..])
            .unwrap()
            .set_value(0x1234_5678);
        assert_eq!(buf, [0x12, 0x34, 0x56, 0x78]);
        assert_eq!(
            parse_immdt(&ImmDt::new_unchecked(&buf[..])),
            Ok(0x1234_5678)
        );
        let mut buf = [0xa5u8; 4];
        Ieth::new_checked(&mut buf[..])
            .unwrap()
            .set_rkey(0xdead_beef);
        assert_eq!(parse_ieth(&Ieth::new_unchecked(&buf[..])), Ok(0xdead_beef));
        for n in 0..4 {
            assert_eq!(
                parse_immdt(&ImmDt::new_unchecked(&buf[..n])),
                Err(Error::Truncated)
            );
            assert_eq!(
                parse_ieth(&Ieth::new_unchecked(&buf[..n])),
                Err(Error::Truncated)
            );
        }
    }
}
