//! A whole UET datagram: PDS header, optional SES header, payload, CRC.

use crate::{Error, Result};

use super::crc;
use super::pds::PdsRepr;
use super::ses::SesRepr;
use super::UET_CRC_LEN;

/// The longest header stack: ACK_CC (32) + SES standard request (44) would
/// never occur together; a request (12) + SES standard request (44) = 56 is
/// the longest we emit, ACK_CC + response = 44. Rounded up, plus the CRC.
pub const UET_MAX_HEADER_LEN: usize = 64;

/// The parsed headers of one UET datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct UetPacketRepr {
    /// The PDS header.
    pub pds: PdsRepr,
    /// The SES header, if the PDS header announces one.
    pub ses: Option<SesRepr>,
}

impl UetPacketRepr {
    /// Checks the CRC32C trailer and parses the headers of a UDP payload;
    /// returns them with the payload (between the headers and the CRC).
    ///
    /// # Errors
    /// A bad CRC, a truncated or malformed header, an unsupported type, a
    /// NACK or control packet with trailing bytes, or a response-with-data
    /// whose `payload_len` disagrees with the payload.
    pub fn parse(datagram: &[u8]) -> Result<(Self, &[u8])> {
        let body = crc::verify(datagram)?;
        Self::parse_unsealed(body)
    }

    /// Parses headers and payload of a packet whose CRC has been removed.
    ///
    /// # Errors
    /// As [`Self::parse`], bar the CRC.
    pub fn parse_unsealed(body: &[u8]) -> Result<(Self, &[u8])> {
        let pds = PdsRepr::parse(body)?;
        let rest = &body[pds.buffer_len()..];
        let next = pds.next();
        let ses = SesRepr::parse(next, rest)?;
        let hdr = ses.map_or(0, |s| s.buffer_len());
        let payload = &rest[hdr..];
        match (&pds, &ses) {
            (PdsRepr::Nack(_) | PdsRepr::Control(_), _) if !payload.is_empty() => {
                return Err(Error::Malformed("payload after a NACK or control header"))
            }
            (PdsRepr::Ack(_), _) if !payload.is_empty() => {
                return Err(Error::Malformed("payload after an ACK"))
            }
            (PdsRepr::Ack(_), Some(SesRepr::Request(_) | SesRepr::ResponseData(_))) => {
                return Err(Error::Malformed("an ACK carries only a SES response"))
            }
            (PdsRepr::Request(_), Some(SesRepr::Response(_)) | None) => {
                return Err(Error::Malformed("a request carries a SES request or data"))
            }
            (_, Some(SesRepr::ResponseData(d))) if usize::from(d.payload_len) != payload.len() => {
                return Err(Error::Malformed("response payload length"))
            }
            _ => {}
        }
        Ok((UetPacketRepr { pds, ses }, payload))
    }

    /// Bytes of headers (no payload, no CRC).
    pub fn header_len(&self) -> usize {
        self.pds.buffer_len() + self.ses.map_or(0, |s| s.buffer_len())
    }

    /// Bytes of the whole datagram with `payload_len` bytes of payload.
    pub fn buffer_len(&self, payload_len: usize) -> usize {
        self.header_len() + payload_len + UET_CRC_LEN
    }

    /// Writes headers and `payload` into `buf` and seals the CRC; returns
    /// the datagram length. The PDS next-header field is taken from
    /// `self.pds` as given; use [`SesRepr::next_header`] to set it.
    ///
    /// # Panics
    /// If `buf` is shorter than [`Self::buffer_len`].
    pub fn emit(&self, buf: &mut [u8], payload: &[u8]) -> usize {
        let n = self.emit_headers(buf);
        buf[n..n + payload.len()].copy_from_slice(payload);
        let len = n + payload.len() + UET_CRC_LEN;
        crc::seal(&mut buf[..len]);
        len
    }

    /// Writes only the headers; returns their length. The caller places the
    /// payload after them and seals with [`crc::seal`].
    ///
    /// # Panics
    /// If `buf` is shorter than [`Self::header_len`].
    pub fn emit_headers(&self, buf: &mut [u8]) -> usize {
        let p = self.pds.buffer_len();
        self.pds.emit(&mut buf[..p]);
        if let Some(ses) = &self.ses {
            ses.emit(&mut buf[p..p + ses.buffer_len()]);
        }
        self.header_len()
    }
}
