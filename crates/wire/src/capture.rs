//! Reading capture files: a minimal in-memory pcap / pcapng frame reader
//! over the `pcap-parser` crate (feature `pcap`), shared by
//! `softverbs decode` and the golden-packet tests. Pair it with
//! [`crate::ip::roce_from_frame`] to get at the RoCEv2 packets.
//!
//! A damaged or truncated file is not an error: the frames before the
//! damage are returned with the reason reading stopped.

use pcap_parser::pcapng::{parse_block_be, parse_block_le, Block};
use pcap_parser::{parse_pcap_frame, parse_pcap_frame_be, parse_pcap_header};

/// One captured frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// 1-based frame number.
    pub no: usize,
    /// Timestamp: seconds since the epoch.
    pub ts_sec: i64,
    /// Timestamp: nanoseconds.
    pub ts_nsec: u32,
    /// pcap LINKTYPE_*.
    pub linktype: u32,
    /// Captured bytes.
    pub data: &'a [u8],
}

impl Frame<'_> {
    /// The timestamp in seconds.
    pub fn time(&self) -> f64 {
        self.ts_sec as f64 + f64::from(self.ts_nsec) * 1e-9
    }
}

/// The frames read, and why reading stopped early (if it did).
pub type Frames<'a> = (Vec<Frame<'a>>, Option<String>);

/// Every frame of a legacy pcap or pcapng file, and, if the file ends
/// in a damaged or truncated record, why reading stopped.
pub fn read_frames(file: &[u8]) -> Result<Frames<'_>, String> {
    const PCAPNG_SHB: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
    if file.len() >= 4 && file[..4] == PCAPNG_SHB {
        read_pcapng(file)
    } else {
        read_legacy(file)
    }
}

fn read_legacy(file: &[u8]) -> Result<Frames<'_>, String> {
    let (mut rest, hdr) =
        parse_pcap_header(file).map_err(|_| "not a pcap or pcapng file (bad header)".to_owned())?;
    let be = hdr.is_bigendian();
    let nano = hdr.is_nanosecond_precision();
    let linktype = hdr.network.0 as u32;
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let r = if be {
            parse_pcap_frame_be(rest)
        } else {
            parse_pcap_frame(rest)
        };
        let Ok((r, b)) = r else {
            let why = format!("capture damaged or truncated after frame {}", frames.len());
            return Ok((frames, Some(why)));
        };
        frames.push(Frame {
            no: frames.len() + 1,
            ts_sec: i64::from(b.ts_sec),
            ts_nsec: if nano {
                b.ts_usec
            } else {
                b.ts_usec.saturating_mul(1000)
            },
            linktype,
            data: b.data,
        });
        rest = r;
    }
    Ok((frames, None))
}

struct Iface {
    linktype: u32,
    resolution: u64,
    offset: i64,
}

fn read_pcapng(file: &[u8]) -> Result<Frames<'_>, String> {
    let mut rest = file;
    let mut be = false;
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let r = if be {
            parse_block_be(rest)
        } else {
            parse_block_le(rest)
        };
        let Ok((r, block)) = r else {
            let why = format!("capture damaged or truncated after frame {}", frames.len());
            return Ok((frames, Some(why)));
        };
        rest = r;
        let (if_id, units, data) = match block {
            Block::SectionHeader(shb) => {
                be = shb.big_endian();
                ifaces.clear();
                continue;
            }
            Block::InterfaceDescription(idb) => {
                ifaces.push(Iface {
                    linktype: idb.linktype.0 as u32,
                    resolution: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                    offset: idb.ts_offset(),
                });
                continue;
            }
            Block::EnhancedPacket(epb) => (
                epb.if_id as usize,
                (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low),
                &epb.data[..(epb.caplen as usize).min(epb.data.len())],
            ),
            Block::SimplePacket(spb) => (
                0,
                0,
                &spb.data[..(spb.origlen as usize).min(spb.data.len())],
            ),
            _ => continue,
        };
        let Some(iface) = ifaces.get(if_id) else {
            let why = format!("frame {}: unknown interface {if_id}", frames.len() + 1);
            return Ok((frames, Some(why)));
        };
        let res = iface.resolution;
        frames.push(Frame {
            no: frames.len() + 1,
            ts_sec: (units / res) as i64 + iface.offset,
            ts_nsec: (u128::from(units % res) * 1_000_000_000 / u128::from(res)) as u32,
            linktype: iface.linktype,
            data,
        });
    }
    Ok((frames, None))
}
