//! Private helpers shared by the header views.

/// Big-endian u16 from the first 2 bytes. Callers pass `field` ranges of a
/// length-checked buffer, so the indexing cannot fail.
#[inline]
pub(crate) fn get_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Big-endian 24-bit value from the first 3 bytes.
#[inline]
pub(crate) fn get_u24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

/// Big-endian u32 from the first 4 bytes.
#[inline]
pub(crate) fn get_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Big-endian u64 from the first 8 bytes.
#[inline]
pub(crate) fn get_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Write `v` big-endian into the first 2 bytes.
#[inline]
pub(crate) fn put_u16(b: &mut [u8], v: u16) {
    b[..2].copy_from_slice(&v.to_be_bytes());
}

/// Write the low 24 bits of `v` big-endian into the first 3 bytes.
#[inline]
pub(crate) fn put_u24(b: &mut [u8], v: u32) {
    b[..3].copy_from_slice(&v.to_be_bytes()[1..]);
}

/// Write `v` big-endian into the first 4 bytes.
#[inline]
pub(crate) fn put_u32(b: &mut [u8], v: u32) {
    b[..4].copy_from_slice(&v.to_be_bytes());
}

/// Write `v` big-endian into the first 8 bytes.
#[inline]
pub(crate) fn put_u64(b: &mut [u8], v: u64) {
    b[..8].copy_from_slice(&v.to_be_bytes());
}

/// Defines a fixed-length header view `$name<T: AsRef<[u8]>>` with the
/// smoltcp constructors. `$len` is the header length.
macro_rules! fixed_view {
    ($(#[$meta:meta])* $name:ident, $len:expr) => {
        $(#[$meta])*
        ///
        /// Panic contract: after [`Self::new_checked`] (or a successful
        /// [`Self::check_len`]) no accessor panics. With
        /// [`Self::new_unchecked`] on a buffer shorter than the header,
        /// accessors panic.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Length of this header in bytes.
            pub const LEN: usize = $len;

            /// Wraps a buffer without checking its length.
            pub const fn new_unchecked(buffer: T) -> Self {
                Self { buffer }
            }

            /// Wraps a buffer, checking that it holds the whole header.
            ///
            /// # Errors
            /// [`Error::Truncated`](crate::Error::Truncated) if it is shorter.
            pub fn new_checked(buffer: T) -> $crate::Result<Self> {
                let v = Self::new_unchecked(buffer);
                v.check_len()?;
                Ok(v)
            }

            /// Checks that the buffer holds the whole header (bytes after it
            /// are allowed and ignored).
            ///
            /// # Errors
            /// [`Error::Truncated`](crate::Error::Truncated) if it is shorter.
            pub fn check_len(&self) -> $crate::Result<()> {
                if self.buffer.as_ref().len() < $len {
                    Err($crate::Error::Truncated)
                } else {
                    Ok(())
                }
            }

            /// Gives the buffer back.
            pub fn into_inner(self) -> T {
                self.buffer
            }

            /// The header bytes (the first [`Self::LEN`] bytes of the buffer).
            pub fn header_bytes(&self) -> &[u8] {
                &self.buffer.as_ref()[..$len]
            }
        }
    };
}
pub(crate) use fixed_view;
