//! The CRC32C (Castagnoli) trailer.
//!
//! The reference provider appends a CRC32C to every unencrypted packet
//! (`uet_pds_sec_tx_pkt` in `uet_pds.c`), computed from the IP source
//! address to the end of the packet. Our engines are sans-IO and never see
//! the IP header, so ours covers the UDP payload only (PDS header to the end
//! of the payload); the UDP checksum and the Ethernet FCS still guard the
//! rest. The CRC is stored big-endian.

use crate::{Error, Result};

use super::UET_CRC_LEN;

const POLY: u32 = 0x82f6_3b78; // reflected Castagnoli polynomial

const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC32C of `data` (the standard check value of `b"123456789"` is
/// `0xe306_9283`).
pub fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Writes the trailer over the last [`UET_CRC_LEN`] bytes of `packet`,
/// covering everything before them. Does nothing on a shorter buffer.
pub fn seal(packet: &mut [u8]) {
    let Some(body) = packet.len().checked_sub(UET_CRC_LEN) else {
        return;
    };
    let c = crc32c(&packet[..body]);
    packet[body..].copy_from_slice(&c.to_be_bytes());
}

/// Checks the trailer and returns the packet without it.
///
/// # Errors
/// [`Error::Truncated`] if shorter than the trailer, [`Error::Malformed`] if
/// the CRC does not match. (Fuzzers reach the parser behind it through
/// [`super::UetPacketRepr::parse_unsealed`].)
pub fn verify(packet: &[u8]) -> Result<&[u8]> {
    let body = packet
        .len()
        .checked_sub(UET_CRC_LEN)
        .ok_or(Error::Truncated)?;
    let (data, tail) = packet.split_at(body);
    let want = u32::from_be_bytes([tail[0], tail[1], tail[2], tail[3]]);
    if crc32c(data) == want {
        Ok(data)
    } else {
        Err(Error::Malformed("UET CRC32C mismatch"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn seal_verify_and_flip() {
        let mut p = vec![1u8, 2, 3, 4, 5, 0, 0, 0, 0];
        seal(&mut p);
        assert_eq!(verify(&p).unwrap(), &[1, 2, 3, 4, 5]);
        for bit in 0..p.len() * 8 {
            let mut q = p.clone();
            q[bit / 8] ^= 1 << (bit % 8);
            assert!(verify(&q).is_err(), "bit {bit}");
        }
        assert_eq!(verify(&p[..3]), Err(Error::Truncated));
    }
}
