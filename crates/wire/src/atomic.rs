//! Atomic extended transport header (AtomicETH, IBTA vol. 1 §9.3.7, 28
//! bytes) and atomic acknowledge extended transport header (AtomicAckETH,
//! §9.3.8, 8 bytes).

use crate::util::{fixed_view, get_u32, get_u64, put_u32, put_u64};
use crate::Result;

/// Length of the AtomicETH.
pub const ATOMIC_ETH_LEN: usize = 28;
/// Length of the AtomicAckETH.
pub const ATOMIC_ACK_ETH_LEN: usize = 8;

mod field {
    use core::ops::Range;
    pub const VA: Range<usize> = 0..8;
    pub const RKEY: Range<usize> = 8..12;
    pub const SWAP_ADD: Range<usize> = 12..20;
    pub const COMPARE: Range<usize> = 20..28;
    pub const ORIG: Range<usize> = 0..8;
}

fixed_view!(
    /// A view of an AtomicETH at the start of a buffer.
    AtomicEth,
    ATOMIC_ETH_LEN
);

fixed_view!(
    /// A view of an AtomicAckETH at the start of a buffer.
    AtomicAckEth,
    ATOMIC_ACK_ETH_LEN
);

impl<T: AsRef<[u8]>> AtomicEth<T> {
    /// Remote virtual address (8-byte aligned for a valid request).
    pub fn va(&self) -> u64 {
        get_u64(&self.buffer.as_ref()[field::VA])
    }
    /// Remote key.
    pub fn rkey(&self) -> u32 {
        get_u32(&self.buffer.as_ref()[field::RKEY])
    }
    /// Swap value (CmpSwap) or addend (FetchAdd).
    pub fn swap_add(&self) -> u64 {
        get_u64(&self.buffer.as_ref()[field::SWAP_ADD])
    }
    /// Compare value (CmpSwap; ignored by FetchAdd).
    pub fn compare(&self) -> u64 {
        get_u64(&self.buffer.as_ref()[field::COMPARE])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AtomicEth<T> {
    /// Sets the virtual address.
    pub fn set_va(&mut self, v: u64) {
        put_u64(&mut self.buffer.as_mut()[field::VA], v);
    }
    /// Sets the R_Key.
    pub fn set_rkey(&mut self, v: u32) {
        put_u32(&mut self.buffer.as_mut()[field::RKEY], v);
    }
    /// Sets the swap / add value.
    pub fn set_swap_add(&mut self, v: u64) {
        put_u64(&mut self.buffer.as_mut()[field::SWAP_ADD], v);
    }
    /// Sets the compare value.
    pub fn set_compare(&mut self, v: u64) {
        put_u64(&mut self.buffer.as_mut()[field::COMPARE], v);
    }
}

impl<T: AsRef<[u8]>> AtomicAckEth<T> {
    /// The original value at the remote address.
    pub fn orig(&self) -> u64 {
        get_u64(&self.buffer.as_ref()[field::ORIG])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AtomicAckEth<T> {
    /// Sets the original value.
    pub fn set_orig(&mut self, v: u64) {
        put_u64(&mut self.buffer.as_mut()[field::ORIG], v);
    }
}

/// A parsed AtomicETH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AtomicEthRepr {
    /// Remote virtual address.
    pub va: u64,
    /// Remote key.
    pub rkey: u32,
    /// Swap value (CmpSwap) or addend (FetchAdd).
    pub swap_add: u64,
    /// Compare value (CmpSwap).
    pub compare: u64,
}

impl AtomicEthRepr {
    /// Parses an AtomicETH view.
    ///
    /// # Errors
    /// [`crate::Error::Truncated`] if the view is shorter than 28 bytes.
    pub fn parse<T: AsRef<[u8]>>(v: &AtomicEth<T>) -> Result<Self> {
        v.check_len()?;
        Ok(AtomicEthRepr {
            va: v.va(),
            rkey: v.rkey(),
            swap_add: v.swap_add(),
            compare: v.compare(),
        })
    }

    /// Always [`ATOMIC_ETH_LEN`].
    pub const fn buffer_len(&self) -> usize {
        ATOMIC_ETH_LEN
    }

    /// Writes the header.
    ///
    /// # Panics
    /// If the view's buffer is shorter than [`ATOMIC_ETH_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut AtomicEth<T>) {
        v.set_va(self.va);
        v.set_rkey(self.rkey);
        v.set_swap_add(self.swap_add);
        v.set_compare(self.compare);
    }
}

/// A parsed AtomicAckETH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AtomicAckEthRepr {
    /// The value at the remote address before the atomic operation.
    pub orig: u64,
}

impl AtomicAckEthRepr {
    /// Parses an AtomicAckETH view.
    ///
    /// # Errors
    /// [`crate::Error::Truncated`] if the view is shorter than 8 bytes.
    pub fn parse<T: AsRef<[u8]>>(v: &AtomicAckEth<T>) -> Result<Self> {
        v.check_len()?;
        Ok(AtomicAckEthRepr { orig: v.orig() })
    }

    /// Always [`ATOMIC_ACK_ETH_LEN`].
    pub const fn buffer_len(&self) -> usize {
        ATOMIC_ACK_ETH_LEN
    }

    /// Writes the header.
    ///
    /// # Panics
    /// If the view's buffer is shorter than [`ATOMIC_ACK_ETH_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut AtomicAckEth<T>) {
        v.set_orig(self.orig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn atomic_eth() {
        let r = AtomicEthRepr {
            va: 0x0102_0304_0506_0708,
            rkey: 0x1122_3344,
            swap_add: 0xaabb_ccdd_eeff_0011,
            compare: 0x2233_4455_6677_8899,
        };
        let mut buf = [0xa5u8; 28];
        r.emit(&mut AtomicEth::new_checked(&mut buf[..]).unwrap());
        assert_eq!(
            &buf[..12],
            &[1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x22, 0x33, 0x44]
        );
        assert_eq!(&buf[12..20], &0xaabb_ccdd_eeff_0011u64.to_be_bytes());
        assert_eq!(&buf[20..], &0x2233_4455_6677_8899u64.to_be_bytes());
        assert_eq!(
            AtomicEthRepr::parse(&AtomicEth::new_unchecked(&buf[..])),
            Ok(r)
        );
        for n in 0..28 {
            assert_eq!(
                AtomicEth::new_checked(&buf[..n]).err(),
                Some(Error::Truncated)
            );
        }
    }

    #[test]
    fn atomic_ack_eth() {
        let r = AtomicAckEthRepr { orig: 42 };
        let mut buf = [0xa5u8; 8];
        r.emit(&mut AtomicAckEth::new_checked(&mut buf[..]).unwrap());
        assert_eq!(buf, [0, 0, 0, 0, 0, 0, 0, 42]);
        assert_eq!(
            AtomicAckEthRepr::parse(&AtomicAckEth::new_unchecked(&buf[..])),
            Ok(r)
        );
        for n in 0..8 {
            assert_eq!(
                AtomicAckEth::new_checked(&buf[..n]).err(),
                Some(Error::Truncated)
            );
        }
    }
}
