//! `softverbs decode FILE` — the RoCEv2 packets of a pcap / pcapng capture,
//! one line (or JSON object) each, with the ICRC checked against the IP
//! header in the capture, then a summary.
//!
//! Link types: Ethernet (with VLAN tags), Linux cooked v1/v2 (`tcpdump -i
//! any`), raw IP and BSD loopback. A frame is RoCEv2 when it is complete,
//! unfragmented UDP to port 4791; every other frame is counted as skipped.
//! UDP to port 4793 is decoded as UET (the `srd` device's wire) by
//! `decode_uet`, listed after the RoCEv2 packets.

use anyhow::Context;
use serde_json::{json, Map, Value};
use softverbs_wire::icrc;
use softverbs_wire::ip::{roce_from_frame, RoceFrame};
use softverbs_wire::{PacketRepr, ICRC_LEN};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[path = "decode_uet.rs"]
mod decode_uet;

/// Arguments of `softverbs decode`.
#[derive(clap::Args, Debug)]
pub struct DecodeArgs {
    /// pcap or pcapng file
    pub file: PathBuf,
    /// one JSON object per packet, then a summary object
    #[arg(long, short = 'j')]
    pub json: bool,
}

/// Decodes `args.file` and prints the packets and the summary on stdout.
/// Exits successfully whenever the file could be read as a capture (bad
/// ICRCs and malformed packets are reported, not errors); a capture that
/// ends in a damaged record is decoded up to it, with a warning on stderr.
///
/// # Errors
/// The file cannot be read or is neither pcap nor pcapng.
pub fn run(args: &DecodeArgs) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let decoded = decode(&bytes).with_context(|| format!("decoding {}", args.file.display()))?;
    let mut out = std::io::stdout().lock();
    let result = if args.json {
        write_json(&mut out, &decoded)
    } else {
        write_text(&mut out, &decoded)
    };
    match result {
        Ok(()) => {}
        // `softverbs decode x.pcap | head` is fine.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(e).context("writing to stdout"),
    }
    if let Some(why) = &decoded.read_error {
        eprintln!("softverbs decode: warning: {why}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One decoded RoCEv2 packet.
#[derive(Debug, Clone)]
struct Line {
    frame: usize,
    /// Seconds since the first frame of the capture.
    time: f64,
    src: std::net::SocketAddr,
    dst: std::net::SocketAddr,
    /// `None` when the UDP payload is too short to hold an ICRC.
    icrc_ok: Option<bool>,
    /// UDP payload length.
    len: usize,
    parsed: Result<(PacketRepr, usize), softverbs_wire::Error>,
}

/// What a capture holds.
#[derive(Debug, Default)]
struct Decoded {
    lines: Vec<Line>,
    frames: usize,
    non_roce: usize,
    by_opcode: BTreeMap<String, usize>,
    icrc_ok: usize,
    icrc_bad: usize,
    malformed: usize,
    read_error: Option<String>,
    /// UDP to port 4793.
    uet: Vec<decode_uet::UetLine>,
}

fn decode(bytes: &[u8]) -> anyhow::Result<Decoded> {
    let (frames, read_error) = pcap::read_frames(bytes).map_err(anyhow::Error::msg)?;
    let mut d = Decoded {
        frames: frames.len(),
        read_error,
        ..Decoded::default()
    };
    let t0 = frames.first().map_or(0.0, |f| f.time());
    for fr in &frames {
        let Some(rf) = roce_from_frame(fr.linktype, fr.data) else {
            match decode_uet::from_frame(fr.no, fr.time() - t0, fr.linktype, fr.data) {
                Some(u) => d.uet.push(u),
                None => d.non_roce += 1,
            }
            continue;
        };
        let line = decode_one(fr.no, fr.time() - t0, &rf);
        match &line.parsed {
            Ok((repr, _)) => {
                *d.by_opcode
                    .entry(repr.bth.opcode.name().to_owned())
                    .or_default() += 1;
            }
            Err(_) => d.malformed += 1,
        }
        match line.icrc_ok {
            Some(true) => d.icrc_ok += 1,
            Some(false) => d.icrc_bad += 1,
            None => {}
        }
        d.lines.push(line);
    }
    Ok(d)
}

fn decode_one(frame: usize, time: f64, rf: &RoceFrame<'_>) -> Line {
    let ib = rf.ib;
    let icrc_ok = (ib.len() >= ICRC_LEN).then(|| {
        let (body, tail) = ib.split_at(ib.len() - ICRC_LEN);
        let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        icrc::compute(rf.ip.bytes, &rf.udp_header, body) == stored
    });
    let ep = rf.endpoints();
    Line {
        frame,
        time,
        src: ep.src,
        dst: ep.dst,
        icrc_ok,
        len: ib.len(),
        parsed: PacketRepr::parse(ib).map(|(r, p)| (r, p.len())),
    }
}

fn icrc_text(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "icrc ok",
        Some(false) => "icrc BAD",
        None => "no icrc",
    }
}

/// The one-line text form of a packet.
fn format_line(l: &Line) -> String {
    let mut s = format!("{:>6} {:>12.6} {} > {} ", l.frame, l.time, l.src, l.dst);
    match &l.parsed {
        Err(e) => {
            let _ = write!(
                s,
                "malformed ({e}), udp payload {} bytes, {}",
                l.len,
                icrc_text(l.icrc_ok)
            );
        }
        Ok((r, payload_len)) => {
            let b = &r.bth;
            let _ = write!(
                s,
                "{} qpn {:#08x} psn {:#08x} A={} S={} pad {}",
                b.opcode.name(),
                b.dest_qpn,
                b.psn,
                u8::from(b.ack_req),
                u8::from(b.solicited),
                b.pad_count
            );
            if b.fecn || b.becn {
                let _ = write!(s, " F={} B={}", u8::from(b.fecn), u8::from(b.becn));
            }
            if b.pkey != softverbs_wire::DEFAULT_PKEY {
                let _ = write!(s, " pkey {:#06x}", b.pkey);
            }
            if let Some(d) = r.deth {
                let _ = write!(s, " DETH qkey {:#010x} src qpn {:#08x}", d.qkey, d.src_qpn);
            }
            if let Some(x) = r.reth {
                let _ = write!(
                    s,
                    " RETH va {:#x} rkey {:#010x} len {}",
                    x.va, x.rkey, x.dma_len
                );
            }
            if let Some(a) = r.atomic_eth {
                let _ = write!(
                    s,
                    " AtomicETH va {:#x} rkey {:#010x} swap/add {:#x} compare {:#x}",
                    a.va, a.rkey, a.swap_add, a.compare
                );
            }
            if let Some(a) = r.aeth {
                let _ = write!(s, " AETH {} msn {}", a.syndrome, a.msn);
            }
            if let Some(a) = r.atomic_ack_eth {
                let _ = write!(s, " AtomicAckETH orig {:#x}", a.orig);
            }
            if let Some(v) = r.immdt {
                let _ = write!(s, " ImmDt {v:#010x}");
            }
            if let Some(v) = r.ieth {
                let _ = write!(s, " IETH rkey {v:#010x}");
            }
            let _ = write!(s, " payload {payload_len} {}", icrc_text(l.icrc_ok));
        }
    }
    s
}

/// The JSON form of a packet.
fn line_json(l: &Line) -> Value {
    let mut o = Map::new();
    o.insert("frame".into(), json!(l.frame));
    o.insert("time".into(), json!(l.time));
    o.insert("src".into(), json!(l.src.to_string()));
    o.insert("dst".into(), json!(l.dst.to_string()));
    o.insert("udp_payload_len".into(), json!(l.len));
    match &l.parsed {
        Err(e) => {
            o.insert("malformed".into(), json!(e.to_string()));
        }
        Ok((r, payload_len)) => {
            let b = &r.bth;
            o.insert("opcode".into(), json!(b.opcode.name()));
            o.insert("opcode_value".into(), json!(b.opcode.0));
            o.insert("qpn".into(), json!(b.dest_qpn));
            o.insert("psn".into(), json!(b.psn));
            o.insert("ack_req".into(), json!(b.ack_req));
            o.insert("solicited".into(), json!(b.solicited));
            o.insert("migreq".into(), json!(b.migreq));
            o.insert("pad".into(), json!(b.pad_count));
            o.insert("tver".into(), json!(b.tver));
            o.insert("pkey".into(), json!(b.pkey));
            o.insert("fecn".into(), json!(b.fecn));
            o.insert("becn".into(), json!(b.becn));
            if let Some(d) = r.deth {
                o.insert("deth".into(), json!({"qkey": d.qkey, "src_qpn": d.src_qpn}));
            }
            if let Some(x) = r.reth {
                o.insert(
                    "reth".into(),
                    json!({"va": x.va, "rkey": x.rkey, "dma_len": x.dma_len}),
                );
            }
            if let Some(a) = r.atomic_eth {
                o.insert(
                    "atomic_eth".into(),
                    json!({"va": a.va, "rkey": a.rkey, "swap_add": a.swap_add, "compare": a.compare}),
                );
            }
            if let Some(a) = r.aeth {
                o.insert(
                    "aeth".into(),
                    json!({"syndrome": a.syndrome.to_string(), "syndrome_value": a.syndrome.to_u8(), "msn": a.msn}),
                );
            }
            if let Some(a) = r.atomic_ack_eth {
                o.insert("atomic_ack_eth".into(), json!({"orig": a.orig}));
            }
            if let Some(v) = r.immdt {
                o.insert("immdt".into(), json!(v));
            }
            if let Some(v) = r.ieth {
                o.insert("ieth".into(), json!(v));
            }
            o.insert("payload_len".into(), json!(payload_len));
        }
    }
    o.insert("icrc_ok".into(), json!(l.icrc_ok));
    Value::Object(o)
}

fn summary_json(d: &Decoded) -> Value {
    json!({"summary": {
        "frames": d.frames,
        "roce_packets": d.lines.len(),
        "non_roce_skipped": d.non_roce,
        "by_opcode": d.by_opcode,
        "icrc_ok": d.icrc_ok,
        "icrc_bad": d.icrc_bad,
        "malformed": d.malformed,
        "read_error": d.read_error,
    }})
}

fn summary_text(d: &Decoded) -> String {
    let mut s = format!(
        "summary: {} RoCEv2 packets in {} frames ({} non-RoCE frames skipped)\n",
        d.lines.len(),
        d.frames,
        d.non_roce
    );
    let width = d.by_opcode.keys().map(String::len).max().unwrap_or(0);
    for (op, n) in &d.by_opcode {
        let _ = writeln!(s, "  {op:<width$} {n:>7}");
    }
    let _ = writeln!(s, "  icrc ok {}, icrc BAD {}", d.icrc_ok, d.icrc_bad);
    let _ = writeln!(s, "  malformed {}", d.malformed);
    s
}

fn write_text(out: &mut impl std::io::Write, d: &Decoded) -> std::io::Result<()> {
    for l in &d.lines {
        writeln!(out, "{}", format_line(l))?;
    }
    for l in &d.uet {
        writeln!(out, "{}", decode_uet::format_line(l))?;
    }
    write!(out, "{}", summary_text(d))?;
    write!(out, "{}", decode_uet::summary_text(&d.uet))
}

fn write_json(out: &mut impl std::io::Write, d: &Decoded) -> std::io::Result<()> {
    for l in &d.lines {
        writeln!(out, "{}", line_json(l))?;
    }
    for l in &d.uet {
        writeln!(out, "{}", decode_uet::line_json(l))?;
    }
    writeln!(out, "{}", summary_json(d))?;
    if let Some(s) = decode_uet::summary_json(&d.uet) {
        writeln!(out, "{s}")?;
    }
    Ok(())
}

use softverbs_wire::capture as pcap;

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_dir() -> Option<PathBuf> {
        let sibling = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/interop/pcaps"
        ));
        if sibling.is_dir() {
            return Some(sibling);
        }
        let env = PathBuf::from(std::env::var_os("SOFTVERBS_PCAPS")?);
        env.is_dir().then_some(env)
    }

    /// The bytes of a golden capture; `None` if the captures are missing
    /// and `SOFTVERBS_ALLOW_NO_PCAPS=1`.
    fn golden(name: &str) -> Option<Vec<u8>> {
        match pcap_dir() {
            Some(d) => Some(std::fs::read(d.join(name)).unwrap()),
            None if std::env::var("SOFTVERBS_ALLOW_NO_PCAPS").as_deref() == Ok("1") => None,
            None => panic!("golden captures not found (set SOFTVERBS_PCAPS)"),
        }
    }

    fn text(d: &Decoded) -> String {
        let mut v = Vec::new();
        write_text(&mut v, d).unwrap();
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn golden_text() {
        let Some(bytes) = golden("rxe-to-rxe-tools.pcap") else {
            return;
        };
        let d = decode(&bytes).unwrap();
        assert_eq!(d.lines.len(), 310);
        assert_eq!((d.icrc_ok, d.icrc_bad, d.malformed), (310, 0, 0));
        assert_eq!(d.non_roce + d.lines.len(), d.frames);
        assert!(d.read_error.is_none());
        let out = text(&d);
        let lines: Vec<&str> = out.lines().collect();
        let packet_lines = lines.iter().filter(|l| l.ends_with("icrc ok")).count();
        assert_eq!(packet_lines, 310);
        assert!(!out.contains("BAD") || out.contains("icrc BAD 0"));
        assert!(!out.contains("malformed ("));
        assert!(out.contains("summary: 310 RoCEv2 packets"));
        assert!(out.contains("icrc ok 310, icrc BAD 0"));
        // Some fields as they should look.
        assert!(out.contains(" RC_RDMA_READ_REQUEST qpn "));
        assert!(lines
            .iter()
            .any(|l| l.contains(" RETH va 0x") && l.contains(" rkey 0x")));
        assert!(lines.iter().any(|l| l.contains(" AETH ACK msn ")));
        assert!(lines
            .iter()
            .any(|l| l.contains("UD_SEND_ONLY")
                && l.contains(" DETH qkey 0x80010000 src qpn 0x000001")));
        assert!(lines.iter().any(|l| l.contains(" AtomicETH va 0x")));
        assert!(lines.iter().any(|l| l.contains(" AtomicAckETH orig 0x")));
        assert!(lines[0].contains("10.77.0."), "{}", lines[0]);
    }

    #[test]
    fn golden_json() {
        let Some(bytes) = golden("rxe-to-silent-host.pcap") else {
            return;
        };
        let d = decode(&bytes).unwrap();
        let mut v = Vec::new();
        write_json(&mut v, &d).unwrap();
        let out = String::from_utf8(v).unwrap();
        let objs: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(objs.len(), 589 + 1);
        assert!(objs[..589]
            .iter()
            .all(|o| o["icrc_ok"] == json!(true) && o["opcode"].is_string()));
        let s = &objs[589]["summary"];
        assert_eq!(s["roce_packets"], json!(589));
        assert_eq!(s["icrc_bad"], json!(0));
        assert_eq!(s["malformed"], json!(0));
        let total: u64 = s["by_opcode"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(total, 589);
    }

    #[test]
    fn other_captures_decode() {
        let Some(bytes) = golden("perftest-oob-loopback.pcap") else {
            return;
        };
        let d = decode(&bytes).unwrap();
        assert_eq!(d.lines.len(), 0);
        assert_eq!(d.non_roce, d.frames);
        assert!(text(&d).contains("summary: 0 RoCEv2 packets"));
    }

    /// A legacy little-endian Ethernet pcap of the given frames.
    fn write_pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        for v in [0u32, 0, 65535, 1] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (i, f) in frames.iter().enumerate() {
            for v in [100u32, i as u32 * 1000, f.len() as u32, f.len() as u32] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(f);
        }
        out
    }

    #[test]
    fn bad_icrc_and_malformed_are_reported() {
        let Some(bytes) = golden("rxe-to-rxe-tools.pcap") else {
            return;
        };
        let (frames, _) = pcap::read_frames(&bytes).unwrap();
        let roce: Vec<Vec<u8>> = frames
            .iter()
            .filter(|f| roce_from_frame(f.linktype, f.data).is_some())
            .take(3)
            .map(|f| f.data.to_vec())
            .collect();
        let mut corrupt = roce[0].clone();
        let n = corrupt.len();
        corrupt[n - 5] ^= 0x01; // last byte before the ICRC
        let mut unsupported = roce[1].clone();
        unsupported[14 + 20 + 8] = 0x81; // BTH opcode: CNP
        let mut junk = frames[0].data.to_vec();
        junk.truncate(10);
        let file = write_pcap(&[corrupt, unsupported, roce[2].clone(), junk]);
        let d = decode(&file).unwrap();
        assert_eq!(d.frames, 4);
        assert_eq!(d.lines.len(), 3);
        assert_eq!(d.non_roce, 1);
        assert_eq!((d.icrc_ok, d.icrc_bad, d.malformed), (1, 2, 1));
        let out = text(&d);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].ends_with("icrc BAD"), "{}", lines[0]);
        assert!(
            lines[1].contains("malformed (unsupported opcode 0x81)"),
            "{}",
            lines[1]
        );
        assert!(lines[2].ends_with("icrc ok"), "{}", lines[2]);
        assert!(out.contains("icrc ok 1, icrc BAD 2"));
        assert!(out.contains("malformed 1"));

        // A capture cut short decodes up to the cut.
        let d = decode(&file[..file.len() - 3]).unwrap();
        assert_eq!(d.frames, 3);
        assert!(d.read_error.is_some());
        assert!(decode(b"garbage!").is_err());
    }

    #[test]
    fn format_line_fields() {
        use softverbs_wire::{AckSyndrome, AethRepr, BthRepr, NakCode, Opcode};
        let bth = BthRepr {
            opcode: Opcode::RC_ACKNOWLEDGE,
            dest_qpn: 0x11,
            psn: 0x123456,
            ..BthRepr::default()
        };
        let mut r = PacketRepr::new(bth, 0).unwrap();
        r.aeth = Some(AethRepr {
            syndrome: AckSyndrome::Nak(NakCode::PsnSequenceError),
            msn: 7,
        });
        let l = Line {
            frame: 3,
            time: 0.5,
            src: "10.0.0.1:49152".parse().unwrap(),
            dst: "10.0.0.2:4791".parse().unwrap(),
            icrc_ok: Some(true),
            len: 20,
            parsed: Ok((r, 0)),
        };
        assert_eq!(
            format_line(&l),
            "     3     0.500000 10.0.0.1:49152 > 10.0.0.2:4791 RC_ACKNOWLEDGE qpn 0x000011 \
             psn 0x123456 A=0 S=0 pad 0 AETH NAK(PSN_SEQUENCE_ERROR) msn 7 payload 0 icrc ok"
        );
        let j = line_json(&l);
        assert_eq!(j["aeth"]["syndrome"], json!("NAK(PSN_SEQUENCE_ERROR)"));
        assert_eq!(j["aeth"]["syndrome_value"], json!(0x60));
        assert_eq!(j["psn"], json!(0x123456));
    }
}
