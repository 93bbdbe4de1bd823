//! Datagram extended transport header (IBTA vol. 1 §9.3.2, 8 bytes): the
//! Q_Key and the source QP of a UD packet.
//!
//! ```text
//!  0..4 Q_Key | 4 reserved | 5..8 SrcQP (24)
//! ```

use crate::psn::PSN_MASK;
use crate::util::{fixed_view, get_u24, get_u32, put_u24, put_u32};
use crate::Result;

/// Length of the DETH.
pub const DETH_LEN: usize = 8;

mod field {
    use core::ops::Range;
    pub const QKEY: Range<usize> = 0..4;
    pub const RESERVED: usize = 4;
    pub const SRC_QPN: Range<usize> = 5..8;
}

fixed_view!(
    /// A view of a DETH at the start of a buffer.
    Deth,
    DETH_LEN
);

impl<T: AsRef<[u8]>> Deth<T> {
    /// Queue key.
    pub fn qkey(&self) -> u32 {
        get_u32(&self.buffer.as_ref()[field::QKEY])
    }
    /// Source QP number (24 bits).
    pub fn src_qpn(&self) -> u32 {
        get_u24(&self.buffer.as_ref()[field::SRC_QPN])
    }
    /// The reserved byte.
    pub fn reserved(&self) -> u8 {
        self.buffer.as_ref()[field::RESERVED]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Deth<T> {
    /// Sets the Q_Key.
    pub fn set_qkey(&mut self, v: u32) {
        put_u32(&mut self.buffer.as_mut()[field::QKEY], v);
    }
    /// Sets the source QPN (low 24 bits of `v`) and zeroes the reserved byte.
    pub fn set_src_qpn(&mut self, v: u32) {
        self.buffer.as_mut()[field::RESERVED] = 0;
        put_u24(&mut self.buffer.as_mut()[field::SRC_QPN], v & PSN_MASK);
    }
}

/// A parsed DETH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DethRepr {
    /// Queue key.
    pub qkey: u32,
    /// Source QP number (24 bits).
    pub src_qpn: u32,
}

impl DethRepr {
    /// Parses a DETH view (the reserved byte is ignored).
    ///
    /// # Errors
    /// [`crate::Error::Truncated`] if the view is shorter than 8 bytes.
    pub fn parse<T: AsRef<[u8]>>(v: &Deth<T>) -> Result<Self> {
        v.check_len()?;
        Ok(DethRepr {
            qkey: v.qkey(),
            src_qpn: v.src_qpn(),
        })
    }

    /// Always [`DETH_LEN`].
    pub const fn buffer_len(&self) -> usize {
        DETH_LEN
    }

    /// Writes the header; the reserved byte is zero, `src_qpn` is truncated
    /// to 24 bits.
    ///
    /// # Panics
    /// If the view's buffer is shorter than [`DETH_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut Deth<T>) {
        v.set_qkey(self.qkey);
        v.set_src_qpn(self.src_qpn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    // A CM MAD's DETH: the well-known GSI Q_Key 0x80010000, from QP1.
    const BYTES: [u8; 8] = [0x80, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01];

    #[test]
    fn parse_emit() {
        let r = DethRepr::parse(&Deth::new_checked(&BYTES[..]).unwrap()).unwrap();
        assert_eq!(
            r,
            DethRepr {
                qkey: 0x8001_0000,
                src_qpn: 1
            }
        );
        let mut buf = [0xa5u8; 8];
        r.emit(&mut Deth::new_unchecked(&mut buf[..]));
        assert_eq!(buf, BYTES);
    }

    #[test]
    fn reserved_ignored_and_truncated() {
        let mut b = BYTES;
        b[4] = 0xee;
        let v = Deth::new_checked(&b[..]).unwrap();
        assert_eq!(v.reserved(), 0xee);
        assert_eq!(DethRepr::parse(&v).unwrap().src_qpn, 1);
        for n in 0..8 {
            assert_eq!(Deth::new_checked(&BYTES[..n]).err(), Some(Error::Truncated));
        }
    }
}
