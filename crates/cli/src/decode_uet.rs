//! The UET branch of `softverbs decode`: UDP datagrams to port 4793 (the
//! `srd` device's wire, UET PDS RUD + SES, `docs/srd-wire.md`), one line
//! or JSON object each, with the CRC32C trailer checked.

use serde_json::{json, Value};
use softverbs_wire::ip::l3_from_frame;
use softverbs_wire::uet::{crc, PdsRepr, SesRepr, UetPacketRepr, UET_CRC_LEN};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// UET's UDP port.
pub(crate) const UET_UDP_PORT: u16 = 4793;

/// One decoded UET datagram.
#[derive(Debug, Clone)]
pub(crate) struct UetLine {
    pub frame: usize,
    pub time: f64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// UDP payload length.
    pub len: usize,
    pub crc_ok: bool,
    /// Headers and payload length, or why they do not parse.
    pub parsed: Result<(UetPacketRepr, usize), String>,
}

/// The UDP payload of a complete, unfragmented datagram to port 4793.
fn udp_to_uet(l3: &[u8]) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    let (src, dst, l4) = match l3.first()? >> 4 {
        4 => {
            let ihl = usize::from(l3[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*l3.get(2)?, *l3.get(3)?]));
            let frag = u16::from_be_bytes([*l3.get(6)?, *l3.get(7)?]);
            if ihl < 20 || total < ihl || total > l3.len() || l3[9] != 17 || frag & 0x3fff != 0 {
                return None;
            }
            let a = |o: usize| IpAddr::V4(Ipv4Addr::new(l3[o], l3[o + 1], l3[o + 2], l3[o + 3]));
            (a(12), a(16), &l3[ihl..total])
        }
        6 => {
            let plen = usize::from(u16::from_be_bytes([*l3.get(4)?, *l3.get(5)?]));
            if l3.len() < 40 || l3[6] != 17 || 40 + plen > l3.len() {
                return None;
            }
            let a = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&l3[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            (a(8), a(24), &l3[40..40 + plen])
        }
        _ => return None,
    };
    let sport = u16::from_be_bytes([*l4.first()?, *l4.get(1)?]);
    let dport = u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]);
    let ulen = usize::from(u16::from_be_bytes([*l4.get(4)?, *l4.get(5)?]));
    if dport != UET_UDP_PORT || ulen < 8 || ulen > l4.len() {
        return None;
    }
    Some((
        SocketAddr::new(src, sport),
        SocketAddr::new(dst, dport),
        &l4[8..ulen],
    ))
}

/// The UET datagram in a captured frame, if it holds one.
pub(crate) fn from_frame(frame: usize, time: f64, linktype: u32, data: &[u8]) -> Option<UetLine> {
    let (src, dst, dgram) = udp_to_uet(l3_from_frame(linktype, data)?)?;
    let crc_ok = crc::verify(dgram).is_ok();
    let body = &dgram[..dgram.len().saturating_sub(UET_CRC_LEN)];
    let parsed = UetPacketRepr::parse_unsealed(body)
        .map(|(r, p)| (r, p.len()))
        .map_err(|e| e.to_string());
    Some(UetLine {
        frame,
        time,
        src,
        dst,
        len: dgram.len(),
        crc_ok,
        parsed,
    })
}

/// A short name of the packet (`RUD_REQ/UET_SEND`, `ACK_CC`, `NACK`, …).
pub(crate) fn kind(r: &UetPacketRepr) -> String {
    let pds = match &r.pds {
        PdsRepr::Request(_) => "RUD_REQ".to_string(),
        PdsRepr::Ack(a) if a.cc.is_some() => "ACK_CC".to_string(),
        PdsRepr::Ack(_) => "ACK".to_string(),
        PdsRepr::Nack(_) => "NACK".to_string(),
        PdsRepr::Control(c) => format!("CTRL/{:?}", c.ctrl),
    };
    match &r.ses {
        Some(SesRepr::Request(s)) => format!("{pds}/{:?}", s.opcode),
        Some(SesRepr::Response(_)) => format!("{pds}+RSP"),
        Some(SesRepr::ResponseData(_)) => format!("{pds}/RSP_DATA"),
        None => pds,
    }
}

fn fields(r: &UetPacketRepr, payload: usize) -> String {
    let mut s = String::new();
    match &r.pds {
        PdsRepr::Request(q) => {
            let _ = write!(s, "psn {:#x} spdcid {} {:?}", q.psn, q.spdcid, q.dest);
            if q.retx {
                s.push_str(" RETX");
            }
        }
        PdsRepr::Ack(a) => {
            let _ = write!(
                s,
                "cack {:#x} ack_off {} spdcid {} dpdcid {}",
                a.cack_psn, a.ack_psn_offset, a.spdcid, a.dpdcid
            );
            if let Some(cc) = &a.cc {
                let _ = write!(s, " sack {:#x}", cc.sack_bitmap);
            }
        }
        PdsRepr::Nack(n) => {
            let _ = write!(s, "{:?} psn {:#x} payload {}", n.code, n.psn, n.payload);
        }
        PdsRepr::Control(c) => {
            let _ = write!(
                s,
                "psn {:#x} spdcid {} payload {}",
                c.psn, c.spdcid, c.payload
            );
        }
    }
    match &r.ses {
        Some(SesRepr::Request(q)) => {
            let qpn = (u32::from(q.pid_on_fep) << 12) | u32::from(q.resource_index);
            let _ = write!(
                s,
                " msg {} qpn {qpn:#08x} from {:#08x} len {}",
                q.msg_id, q.initiator, q.request_length
            );
        }
        Some(SesRepr::Response(p)) => {
            let _ = write!(s, " rsp msg {} {:?}", p.msg_id, p.return_code);
        }
        Some(SesRepr::ResponseData(p)) => {
            let _ = write!(s, " rsp_data off {}", p.message_offset);
        }
        None => {}
    }
    let _ = write!(s, " payload {payload}");
    s
}

/// One text line, in the manner of the RoCE lines.
pub(crate) fn format_line(l: &UetLine) -> String {
    let crc = if l.crc_ok { "crc ok" } else { "crc BAD" };
    match &l.parsed {
        Ok((r, p)) => format!(
            "{:>6} {:>12.6} {} > {} UET {} {}, {crc}",
            l.frame,
            l.time,
            l.src,
            l.dst,
            kind(r),
            fields(r, *p)
        ),
        Err(e) => format!(
            "{:>6} {:>12.6} {} > {} UET malformed ({e}), udp payload {} bytes, {crc}",
            l.frame, l.time, l.src, l.dst, l.len
        ),
    }
}

/// One JSON object.
pub(crate) fn line_json(l: &UetLine) -> Value {
    let mut v = json!({
        "frame": l.frame,
        "time": l.time,
        "proto": "uet",
        "src": l.src.to_string(),
        "dst": l.dst.to_string(),
        "udp_payload_len": l.len,
        "crc_ok": l.crc_ok,
    });
    match &l.parsed {
        Ok((r, p)) => {
            v["kind"] = json!(kind(r));
            v["headers"] = json!(fields(r, *p));
            v["payload_len"] = json!(p);
        }
        Err(e) => v["malformed"] = json!(e),
    }
    v
}

/// Counts by kind, CRC and malformed.
pub(crate) fn summary(lines: &[UetLine]) -> (BTreeMap<String, usize>, usize, usize, usize) {
    let mut by = BTreeMap::new();
    let (mut ok, mut bad, mut mal) = (0, 0, 0);
    for l in lines {
        if l.crc_ok {
            ok += 1;
        } else {
            bad += 1;
        }
        match &l.parsed {
            Ok((r, _)) => *by.entry(kind(r)).or_default() += 1,
            Err(_) => mal += 1,
        }
    }
    (by, ok, bad, mal)
}

/// The text summary (empty without UET packets).
pub(crate) fn summary_text(lines: &[UetLine]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let (by, ok, bad, mal) = summary(lines);
    let mut s = format!("uet: {} UET packets (UDP {UET_UDP_PORT})\n", lines.len());
    let width = by.keys().map(String::len).max().unwrap_or(0);
    for (k, n) in &by {
        let _ = writeln!(s, "  {k:<width$} {n:>7}");
    }
    let _ = writeln!(s, "  crc ok {ok}, crc BAD {bad}\n  malformed {mal}");
    s
}

/// The JSON summary (`None` without UET packets).
pub(crate) fn summary_json(lines: &[UetLine]) -> Option<Value> {
    if lines.is_empty() {
        return None;
    }
    let (by, ok, bad, mal) = summary(lines);
    Some(json!({"uet_summary": {
        "packets": lines.len(), "by_kind": by, "crc_ok": ok, "crc_bad": bad, "malformed": mal,
    }}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use softverbs_wire::uet::{ControlRepr, ControlType, Dest};

    /// A raw IPv4 frame (LINKTYPE_RAW) carrying `payload` over UDP.
    fn frame(dport: u16, payload: &[u8]) -> Vec<u8> {
        let total = 20 + 8 + payload.len();
        let mut f = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            17,
            0,
            0,
        ];
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        let ulen = 8 + payload.len();
        f.extend_from_slice(&49153u16.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&(ulen as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn decodes_uet_and_flags_a_bad_crc() {
        let pkt = UetPacketRepr {
            pds: PdsRepr::Control(ControlRepr {
                ctrl: ControlType::AckRequest,
                retx: false,
                ack_req: true,
                opaque: 0,
                psn: 0x1234,
                spdcid: 1,
                dest: Dest::Pdc(2),
                payload: 7,
            }),
            ses: None,
        };
        let mut d = vec![0u8; 64];
        let n = pkt.emit(&mut d, &[]);
        d.truncate(n);
        let l = from_frame(1, 0.0, 101, &frame(4793, &d)).unwrap();
        assert!(l.crc_ok);
        let text = format_line(&l);
        assert!(
            text.contains("10.0.0.1:49153 > 10.0.0.2:4793 UET CTRL/AckRequest psn 0x1234"),
            "{text}"
        );
        let last = d.len() - 1;
        d[last] ^= 1;
        let l = from_frame(2, 0.0, 101, &frame(4793, &d)).unwrap();
        assert!(!l.crc_ok && format_line(&l).contains("crc BAD"));
        assert!(from_frame(3, 0.0, 101, &frame(4791, &d)).is_none());
        assert!(summary_text(&[l]).contains("crc BAD 1"));
    }
}
