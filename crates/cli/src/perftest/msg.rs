//! The messages of perftest 6.06's out-of-band exchange, encoded and
//! parsed byte for byte (docs/oob-and-tools.md §2.3): the version, the
//! page and cache-line sizes, the MTU enum, the 108-byte (59 without a
//! GID) QP "key" and the bandwidth results.

use crate::pingpong::net::{escape_bytes, OobError};

/// The version we announce (perftest `AC_INIT` of v4.5-0.17).
pub const VERSION: &str = "6.06";
/// Size of the version message (`strncpy(version, "6.06", 16)`).
pub const VERSION_LEN: usize = 16;
/// Peers older than this make perftest exit (compared as `atof`).
pub const MIN_PEER_VERSION: f64 = 5.70;
/// Size of the key message with a GID (107 characters plus NUL).
pub const KEY_LEN_GID: usize = 108;
/// Size of the key message without a GID (58 characters plus NUL).
pub const KEY_LEN_NO_GID: usize = 59;
/// Size of the MTU message (`"3\0"`).
pub const MTU_LEN: usize = 2;
/// The final message of each side (never read by the real tools).
pub const DONE: &[u8; 5] = b"done\0";

/// One QP's connection data (`struct pingpong_dest` as sent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct QpInfoMsg {
    /// Port LID (0 on RoCE).
    pub lid: u16,
    /// Outstanding reads/atomics (read/atomic: `-o`, otherwise 1).
    pub out_reads: u16,
    /// QP number.
    pub qpn: u32,
    /// Initial PSN (24 bits).
    pub psn: u32,
    /// The MR's rkey.
    pub rkey: u32,
    /// Address of the advertised remote buffer.
    pub vaddr: u64,
    /// GID in wire order; `None` = the 59-byte format (`gid_index == -1`).
    pub gid: Option<[u8; 16]>,
    /// SRQ number (XRC/DC only, else 0).
    pub srqn: u32,
}

impl QpInfoMsg {
    #[allow(dead_code)] // used by tests/oob_golden.rs
    /// Length of this message on the wire.
    pub fn wire_len(&self) -> usize {
        key_len(self.gid.is_some())
    }

    /// `KEY_PRINT_FMT_GID` (or `KEY_PRINT_FMT`) plus NUL.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!(
            "{:04x}:{:04x}:{:06x}:{:06x}:{:08x}:{:016x}:",
            self.lid, self.out_reads, self.qpn, self.psn, self.rkey, self.vaddr
        );
        match self.gid {
            Some(gid) => {
                for b in gid {
                    s.push_str(&format!("{b:02x}:"));
                }
                s.push_str(&format!("{:08x}:", self.srqn));
            }
            None => s.push_str(&format!("{:08x}", self.srqn)),
        }
        let mut out = s.into_bytes();
        out.push(0);
        out
    }

    /// Parses a key message; `with_gid` is our own side's format (perftest's
    /// reader assumes the peer uses the same).
    pub fn decode(msg: &[u8], with_gid: bool) -> Result<Self, OobError> {
        let bad = |reason: String| OobError::Malformed {
            what: "perftest QP key message".to_string(),
            bytes: msg.to_vec(),
            reason,
        };
        let end = msg
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| bad("no NUL terminator".to_string()))?;
        let text = std::str::from_utf8(&msg[..end]).map_err(|_| bad("not ASCII".into()))?;
        let mut f: Vec<&str> = text.split(':').collect();
        let want = if with_gid { 23 } else { 7 };
        if with_gid && f.last() == Some(&"") {
            f.pop();
        }
        if f.len() != want {
            let layout = if with_gid {
                "LID:OUT_READS:QPN:PSN:RKEY:VADDR:16 GID bytes:SRQN:"
            } else {
                "LID:OUT_READS:QPN:PSN:RKEY:VADDR:SRQN (no GID; does one side use -x and the other not?)"
            };
            return Err(bad(format!(
                "expected {want} fields {layout}, found {}",
                f.len()
            )));
        }
        let hex = |name: &str, s: &str, max: u64| -> Result<u64, OobError> {
            let v = u64::from_str_radix(s, 16)
                .map_err(|_| bad(format!("{name} {s:?} is not a hexadecimal number")))?;
            if v > max {
                return Err(bad(format!("{name} {s:?} is larger than {max:#x}")));
            }
            Ok(v)
        };
        let mut gid = None;
        if with_gid {
            let mut g = [0u8; 16];
            for (i, b) in g.iter_mut().enumerate() {
                *b = hex(&format!("GID byte {i}"), f[6 + i], 0xff)? as u8;
            }
            gid = Some(g);
        }
        Ok(QpInfoMsg {
            lid: hex("LID", f[0], 0xffff)? as u16,
            out_reads: hex("OUT_READS", f[1], 0xffff)? as u16,
            qpn: hex("QPN", f[2], 0xff_ffff)? as u32,
            psn: hex("PSN", f[3], 0xff_ffff)? as u32,
            rkey: hex("RKEY", f[4], u32::MAX as u64)? as u32,
            vaddr: hex("VADDR", f[5], u64::MAX)?,
            gid,
            srqn: hex("SRQN", f[want - 1], u32::MAX as u64)? as u32,
        })
    }
}

/// Size of a key message in the given format.
pub fn key_len(with_gid: bool) -> usize {
    if with_gid {
        KEY_LEN_GID
    } else {
        KEY_LEN_NO_GID
    }
}

/// The 16-byte version message: the text, NUL padded.
pub fn encode_version(version: &str) -> [u8; VERSION_LEN] {
    let mut out = [0u8; VERSION_LEN];
    let n = version.len().min(VERSION_LEN);
    out[..n].copy_from_slice(&version.as_bytes()[..n]);
    out
}

/// The version text of a version message (up to the first NUL).
pub fn decode_version(msg: &[u8]) -> String {
    let end = msg.iter().position(|&b| b == 0).unwrap_or(msg.len());
    String::from_utf8_lossy(&msg[..end]).into_owned()
}

/// C's `atof`: the longest leading decimal number, 0 if none.
pub fn atof(s: &str) -> f64 {
    let t = s.trim_start();
    let mut end = 0;
    let mut seen_dot = false;
    for (i, c) in t.char_indices() {
        match c {
            '0'..='9' => end = i + 1,
            '.' if !seen_dot => seen_dot = true,
            '+' | '-' if i == 0 => {}
            _ => break,
        }
    }
    t[..end].parse().unwrap_or(0.0)
}

/// Checks the peer's version as `check_version_compatibility` does.
pub fn check_peer_version(version: &str) -> Result<(), OobError> {
    if atof(version) < MIN_PEER_VERSION {
        return Err(OobError::Incompatible {
            reason: format!(
                "peer perftest version \"{}\" is older than 5.70 (perftest: \"Current \
                 implementation is not compatible with versions older than 5.70\"); upgrade the peer",
                escape_bytes(version.as_bytes())
            ),
        });
    }
    Ok(())
}

/// A 4-byte `htonl` value (page size, cache line size).
pub fn encode_u32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// Parses a 4-byte `htonl` value.
pub fn decode_u32(msg: &[u8]) -> u32 {
    u32::from_be_bytes([msg[0], msg[1], msg[2], msg[3]])
}

/// The 2-byte MTU message: the IB MTU enum as decimal text plus NUL.
pub fn encode_mtu(mtu_enum: u8) -> [u8; MTU_LEN] {
    [b'0' + mtu_enum.min(9), 0]
}

/// Parses the MTU message; `None` when it is not a valid enum (1..=5).
pub fn decode_mtu(msg: &[u8]) -> Option<u8> {
    let end = msg.iter().position(|&b| b == 0).unwrap_or(msg.len());
    let v: u8 = std::str::from_utf8(&msg[..end]).ok()?.parse().ok()?;
    (1..=5).contains(&v).then_some(v)
}

/// The IB MTU enum (1 = 256 … 5 = 4096) of a size in bytes.
pub fn mtu_enum(bytes: u32) -> Option<u8> {
    match bytes {
        256 => Some(1),
        512 => Some(2),
        1024 => Some(3),
        2048 => Some(4),
        4096 => Some(5),
        _ => None,
    }
}

/// The MTU in bytes of an IB MTU enum (`1 << (7 + enum)`).
pub fn mtu_bytes(mtu_enum: u8) -> u32 {
    1 << (7 + mtu_enum as u32)
}

/// One side's bandwidth result as `xchg_bw_reports` sends it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BwReport {
    /// Message size.
    pub size: u64,
    /// Iterations.
    pub iters: u64,
    /// Peak bandwidth in the report unit.
    pub bw_peak: f64,
    /// Average bandwidth in the report unit.
    pub bw_avg: f64,
    /// Message rate in Mpps.
    pub msg_rate: f64,
}

/// Size of one field of the results exchange.
pub const REPORT_FIELD_LEN: usize = 8;

impl BwReport {
    /// The five 8-byte big-endian fields (doubles byte-swapped, i.e. big
    /// endian), in order.
    pub fn encode_fields(&self) -> [[u8; REPORT_FIELD_LEN]; 5] {
        [
            self.size.to_be_bytes(),
            self.iters.to_be_bytes(),
            self.bw_peak.to_bits().to_be_bytes(),
            self.bw_avg.to_bits().to_be_bytes(),
            self.msg_rate.to_bits().to_be_bytes(),
        ]
    }

    /// Rebuilds a report from its five fields.
    pub fn decode_fields(f: &[[u8; REPORT_FIELD_LEN]; 5]) -> Self {
        let d = |b: [u8; 8]| f64::from_bits(u64::from_be_bytes(b));
        BwReport {
            size: u64::from_be_bytes(f[0]),
            iters: u64::from_be_bytes(f[1]),
            bw_peak: d(f[2]),
            bw_avg: d(f[3]),
            msg_rate: d(f[4]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0000:0001:000014:5d1ed5:0000054c:000055ef3f472000:00:00:00:00:00:00:00:00:00:00:ff:ff:0a:4d:00:02:00000000:\0";

    fn pcap_key() -> QpInfoMsg {
        let mut gid = [0u8; 16];
        gid[10..].copy_from_slice(&[0xff, 0xff, 10, 77, 0, 2]);
        QpInfoMsg {
            lid: 0,
            out_reads: 1,
            qpn: 0x14,
            psn: 0x5d1ed5,
            rkey: 0x54c,
            vaddr: 0x55ef3f472000,
            gid: Some(gid),
            srqn: 0,
        }
    }

    #[test]
    fn key_round_trip_against_the_doc_example() {
        assert_eq!(KEY.len(), KEY_LEN_GID);
        assert_eq!(pcap_key().encode(), KEY);
        assert_eq!(QpInfoMsg::decode(KEY, true).unwrap(), pcap_key());
        let no_gid = QpInfoMsg {
            gid: None,
            srqn: 7,
            ..pcap_key()
        };
        let bytes = no_gid.encode();
        assert_eq!(bytes.len(), KEY_LEN_NO_GID);
        assert_eq!(
            &bytes[..],
            b"0000:0001:000014:5d1ed5:0000054c:000055ef3f472000:00000007\0"
        );
        assert_eq!(QpInfoMsg::decode(&bytes, false).unwrap(), no_gid);
    }

    #[test]
    fn key_errors_name_the_problem() {
        let e = QpInfoMsg::decode(KEY, false).unwrap_err().to_string();
        assert!(e.contains("expected 7 fields"), "{e}");
        let e = QpInfoMsg::decode(b"0000:0001\0", true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expected 23 fields") && e.contains("0000:0001\\0"),
            "{e}"
        );
        let mut k = KEY.to_vec();
        k[60] = b'x';
        let e = QpInfoMsg::decode(&k, true).unwrap_err().to_string();
        assert!(e.contains("not a hexadecimal"), "{e}");
    }

    #[test]
    fn pre_step_messages() {
        assert_eq!(&encode_version(VERSION), b"6.06\0\0\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(decode_version(&encode_version(VERSION)), "6.06");
        assert_eq!(encode_u32(4096), [0, 0, 0x10, 0]);
        assert_eq!(encode_u32(64), [0, 0, 0, 0x40]);
        assert_eq!(encode_mtu(3), *b"3\0");
        assert_eq!(decode_mtu(b"5\0"), Some(5));
        assert_eq!(decode_mtu(b"9\0"), None);
        assert_eq!((mtu_enum(1024), mtu_bytes(3)), (Some(3), 1024));
        assert!(check_peer_version("6.06").is_ok());
        assert!(check_peer_version("5.70").is_ok());
        // atof, not string comparison: "10.0" > "5.70".
        assert!(check_peer_version("10.0").is_ok());
        assert!(check_peer_version("5.6").is_err());
        assert!(check_peer_version("").is_err());
        assert_eq!(atof("6.06abc"), 6.06);
    }

    #[test]
    fn results_fields_are_big_endian() {
        // ib_write_bw -s 8192 -n 5, client's fields in the capture.
        let f = [
            0x2000u64.to_be_bytes(),
            5u64.to_be_bytes(),
            0x40193d7b2acb79c8u64.to_be_bytes(),
            0x40193d7b1072478au64.to_be_bytes(),
            0x3f4a775a85ff6886u64.to_be_bytes(),
        ];
        let r = BwReport::decode_fields(&f);
        assert_eq!((r.size, r.iters), (8192, 5));
        assert_eq!(
            format!("{:.2} {:.2} {:.6}", r.bw_peak, r.bw_avg, r.msg_rate),
            "6.31 6.31 0.000808"
        );
        assert_eq!(r.encode_fields(), f);
    }
}
