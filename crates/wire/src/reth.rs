//! RDMA extended transport header (IBTA vol. 1 §9.3.3, 16 bytes): the
//! remote virtual address, R_Key and DMA length of an RDMA WRITE or READ.

use crate::util::{fixed_view, get_u32, get_u64, put_u32, put_u64};
use crate::Result;

/// Length of the RETH.
pub const RETH_LEN: usize = 16;

mod field {
    use core::ops::Range;
    pub const VA: Range<usize> = 0..8;
    pub const RKEY: Range<usize> = 8..12;
    pub const DMA_LEN: Range<usize> = 12..16;
}

fixed_view!(
    /// A view of a RETH at the start of a buffer.
    Reth,
    RETH_LEN
);

impl<T: AsRef<[u8]>> Reth<T> {
    /// Remote virtual address.
    pub fn va(&self) -> u64 {
        get_u64(&self.buffer.as_ref()[field::VA])
    }
    /// Remote key.
    pub fn rkey(&self) -> u32 {
        get_u32(&self.buffer.as_ref()[field::RKEY])
    }
    /// Length of the whole RDMA operation in bytes.
    pub fn dma_len(&self) -> u32 {
        get_u32(&self.buffer.as_ref()[field::DMA_LEN])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Reth<T> {
    /// Sets the virtual address.
    pub fn set_va(&mut self, v: u64) {
        put_u64(&mut self.buffer.as_mut()[field::VA], v);
    }
    /// Sets the R_Key.
    pub fn set_rkey(&mut self, v: u32) {
        put_u32(&mut self.buffer.as_mut()[field::RKEY], v);
    }
    /// Sets the DMA length.
    pub fn set_dma_len(&mut self, v: u32) {
        put_u32(&mut self.buffer.as_mut()[field::DMA_LEN], v);
    }
}

/// A parsed RETH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RethRepr {
    /// Remote virtual address.
    pub va: u64,
    /// Remote key.
    pub rkey: u32,
    /// DMA length.
    pub dma_len: u32,
}

impl RethRepr {
    /// Parses a RETH view.
    ///
    /// # Errors
    /// [`crate::Error::Truncated`] if the view is shorter than 16 bytes.
    pub fn parse<T: AsRef<[u8]>>(v: &Reth<T>) -> Result<Self> {
        v.check_len()?;
        Ok(RethRepr {
            va: v.va(),
            rkey: v.rkey(),
            dma_len: v.dma_len(),
        })
    }

    /// Always [`RETH_LEN`].
    pub const fn buffer_len(&self) -> usize {
        RETH_LEN
    }

    /// Writes the header.
    ///
    /// # Panics
    /// If the view's buffer is shorter than [`RETH_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut Reth<T>) {
        v.set_va(self.va);
        v.set_rkey(self.rkey);
        v.set_dma_len(self.dma_len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    const BYTES: [u8; 16] = [
        0x00, 0x00, 0x55, 0x8a, 0x1c, 0x2d, 0x30, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x01, 0x00,
        0x00,
    ];
    const REPR: RethRepr = RethRepr {
        va: 0x558a_1c2d_3000,
        rkey: 0x1234,
        dma_len: 65536,
    };

    #[test]
    fn parse_emit() {
        assert_eq!(
            RethRepr::parse(&Reth::new_checked(&BYTES[..]).unwrap()),
            Ok(REPR)
        );
        let mut buf = [0xa5u8; 16];
        REPR.emit(&mut Reth::new_unchecked(&mut buf[..]));
        assert_eq!(buf, BYTES);
        assert_eq!(REPR.buffer_len(), 16);
    }

    #[test]
    fn truncated() {
        for n in 0..16 {
            assert_eq!(Reth::new_checked(&BYTES[..n]).err(), Some(Error::Truncated));
            assert_eq!(
                RethRepr::parse(&Reth::new_unchecked(&BYTES[..n])),
                Err(Error::Truncated)
            );
        }
    }
}
