// A minimal in-memory pcap / pcapng frame reader over `pcap-parser`
// (shared by the golden tests; `softverbs decode` has its own copy).

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

/// Reads every frame of a legacy pcap or pcapng file. Returns the frames
/// and, if the file ends in a damaged or truncated record, why reading
/// stopped.
pub fn read_frames(file: &[u8]) -> Result<(Vec<Frame<'_>>, Option<String>), String> {
    const PCAPNG_SHB: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
    if file.len() >= 4 && file[..4] == PCAPNG_SHB {
        read_pcapng(file)
    } else {
        read_legacy(file)
    }
}

fn read_legacy(file: &[u8]) -> Result<(Vec<Frame<'_>>, Option<String>), String> {
    let (mut rest, hdr) =
        parse_pcap_header(file).map_err(|e| format!("not a pcap or pcapng file: {e:?}"))?;
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
        match r {
            Ok((r, b)) => {
                let frac = if nano {
                    b.ts_usec
                } else {
                    b.ts_usec.saturating_mul(1000)
                };
                frames.push(Frame {
                    no: frames.len() + 1,
                    ts_sec: i64::from(b.ts_sec),
                    ts_nsec: frac,
                    linktype,
                    data: b.data,
                });
                rest = r;
            }
            Err(e) => {
                let why = format!(
                    "stopped after frame {}: damaged record ({e:?})",
                    frames.len()
                );
                return Ok((frames, Some(why)));
            }
        }
    }
    Ok((frames, None))
}

struct Iface {
    linktype: u32,
    /// Timestamp units per second.
    resolution: u64,
    offset: i64,
}

fn read_pcapng(file: &[u8]) -> Result<(Vec<Frame<'_>>, Option<String>), String> {
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
        let (r, block) = match r {
            Ok(x) => x,
            Err(e) => {
                let why = format!(
                    "stopped after frame {}: damaged block ({e:?})",
                    frames.len()
                );
                return Ok((frames, Some(why)));
            }
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
                // `data` is padded to 4 bytes; the captured length is caplen.
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
        let nsec = (u128::from(units % res) * 1_000_000_000 / u128::from(res)) as u32;
        frames.push(Frame {
            no: frames.len() + 1,
            ts_sec: (units / res) as i64 + iface.offset,
            ts_nsec: nsec,
            linktype: iface.linktype,
            data,
        });
    }
    Ok((frames, None))
}
