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

/// Slicing-by-8 tables: `TABLES[0]` is the bytewise table, `TABLES[k][b]`
/// the CRC of byte `b` followed by `k` zero bytes.
const TABLES: [[u32; 256]; 8] = {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
};

/// CRC32C of `data` (the standard check value of `b"123456789"` is
/// `0xe306_9283`). Uses the SSE 4.2 `crc32` instruction where the CPU has
/// it (every packet is sealed and verified: the bytewise loop was a quarter
/// of the SRD device's CPU time), slicing-by-8 otherwise.
pub fn crc32c(data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU has SSE 4.2, the only feature `hw` enables.
            #[allow(unsafe_code)]
            return unsafe { hw::crc32c(data) };
        }
    }
    soft(data)
}

/// The portable CRC32C: slicing-by-8.
fn soft(data: &[u8]) -> u32 {
    let mut c = !0u32;
    let mut chunks = data.chunks_exact(8);
    for w in &mut chunks {
        let lo = c ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        c = TABLES[7][(lo & 0xff) as usize]
            ^ TABLES[6][((lo >> 8) & 0xff) as usize]
            ^ TABLES[5][((lo >> 16) & 0xff) as usize]
            ^ TABLES[4][(lo >> 24) as usize]
            ^ TABLES[3][usize::from(w[4])]
            ^ TABLES[2][usize::from(w[5])]
            ^ TABLES[1][usize::from(w[6])]
            ^ TABLES[0][usize::from(w[7])];
    }
    for &b in chunks.remainder() {
        c = TABLES[0][((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(target_arch = "x86_64")]
mod hw {
    use core::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};

    /// CRC32C with the SSE 4.2 instruction, 8 bytes at a time.
    #[target_feature(enable = "sse4.2")]
    pub(super) fn crc32c(data: &[u8]) -> u32 {
        let mut c = u64::from(!0u32);
        let mut chunks = data.chunks_exact(8);
        for w in &mut chunks {
            let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            c = _mm_crc32_u64(c, v);
        }
        let mut c = c as u32;
        for &b in chunks.remainder() {
            c = _mm_crc32_u8(c, b);
        }
        !c
    }
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
        assert_eq!(soft(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn hardware_and_software_agree() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 4096, 4133, 5000] {
            let d = &data[..len];
            let mut c = !0u32;
            for &b in d {
                c = TABLES[0][((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
            }
            assert_eq!(soft(d), !c, "len {len}");
            assert_eq!(crc32c(d), !c, "len {len}");
        }
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
