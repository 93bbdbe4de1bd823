//! Golden packets: every RoCEv2 frame of the captures of real Linux
//! `rdma_rxe` traffic in `shared/interop/pcaps/` must parse, verify its
//! ICRC (with the real IP header, and with the IPv4 identification hidden)
//! and re-emit to identical bytes.
//!
//! The captures live outside the repository: next to it as
//! `../shared/interop/pcaps` (relative to the repository root), or wherever
//! `SOFTVERBS_PCAPS` points. Missing captures fail the test unless
//! `SOFTVERBS_ALLOW_NO_PCAPS=1`.

mod common;

use common::read_frames;
use softverbs_wire::icrc::{self, Endpoints};
use softverbs_wire::ip::{rc_udp_src_port, roce_from_frame, ud_udp_src_port, RoceFrame};
use softverbs_wire::{Opcode, PacketRepr, TransportKind};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

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

/// (file name, file bytes) of every capture, sorted by name; `None` when
/// the captures are missing and that is allowed.
fn captures() -> Option<Vec<(String, Vec<u8>)>> {
    let Some(dir) = pcap_dir() else {
        if std::env::var("SOFTVERBS_ALLOW_NO_PCAPS").as_deref() == Ok("1") {
            eprintln!("golden: no captures found, skipped (SOFTVERBS_ALLOW_NO_PCAPS=1)");
            return None;
        }
        panic!(
            "golden captures not found: expected {}/../../../shared/interop/pcaps or \
             $SOFTVERBS_PCAPS (set SOFTVERBS_ALLOW_NO_PCAPS=1 to skip)",
            env!("CARGO_MANIFEST_DIR")
        );
    };
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            )
        })
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no .pcap files in {}", dir.display());
    Some(out)
}

/// Calls `f` on every RoCEv2 frame of every capture; returns the count per
/// file.
fn for_each_roce(
    mut f: impl FnMut(&str, usize, &RoceFrame<'_>),
) -> Option<BTreeMap<String, usize>> {
    let caps = captures()?;
    let mut counts = BTreeMap::new();
    for (name, bytes) in &caps {
        let (frames, err) = read_frames(bytes).unwrap();
        assert_eq!(err, None, "{name}");
        let mut n = 0;
        for fr in &frames {
            if let Some(rf) = roce_from_frame(fr.linktype, fr.data) {
                f(name, fr.no, &rf);
                n += 1;
            }
        }
        counts.insert(name.clone(), n);
    }
    Some(counts)
}

fn ep(rf: &RoceFrame<'_>) -> Endpoints {
    rf.endpoints()
}

#[test]
fn golden_packets_parse_verify_and_reemit() {
    let mut by_opcode: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut ud_to_qp1 = 0;
    let Some(counts) = for_each_roce(|name, no, rf| {
        let ib = rf.ib;
        let at = format!("{name} frame {no}");
        let (repr, payload) = PacketRepr::parse(ib).unwrap_or_else(|e| panic!("{at}: {e}"));
        *by_opcode.entry(repr.bth.opcode.name()).or_default() += 1;
        if repr.bth.opcode == Opcode::UD_SEND_ONLY && repr.bth.dest_qpn == 1 {
            ud_to_qp1 += 1;
        }
        repr.check().unwrap_or_else(|e| panic!("{at}: {e}"));

        // ICRC with the real IP and UDP headers.
        let body = &ib[..ib.len() - 4];
        let stored = u32::from_le_bytes(ib[ib.len() - 4..].try_into().unwrap());
        assert_eq!(
            icrc::compute(rf.ip.bytes, &rf.udp_header, body),
            stored,
            "{at}"
        );

        // ... with headers rebuilt from socket addresses and the real id,
        let id = rf.ip.ident().expect("IPv4");
        assert!(icrc::verify(&ep(rf), id, ib), "{at}");
        // ... and with the identification hidden.
        assert_eq!(icrc::verify_unknown_ip_id(&ep(rf), ib), Some(id), "{at}");

        // Re-emit: identical bytes.
        let mut out = vec![0xa5u8; repr.buffer_len()];
        assert_eq!(out.len(), ib.len(), "{at}");
        repr.emit(&mut out, payload);
        icrc::seal(&ep(rf), id, &mut out);
        assert_eq!(out, ib, "{at}");

        // UDP source ports as rxe picks them.
        if let Some(deth) = repr.deth {
            assert_eq!(rf.udp_src, ud_udp_src_port(deth.src_qpn), "{at}");
        }
    }) else {
        return;
    };
    eprintln!("golden: {counts:?}");
    eprintln!("golden: by opcode {by_opcode:#?}");
    assert_eq!(counts.values().sum::<usize>(), 899);
    assert_eq!(counts.get("rxe-to-rxe-tools.pcap"), Some(&310));
    assert_eq!(counts.get("rxe-to-silent-host.pcap"), Some(&589));
    assert_eq!(counts.get("perftest-oob-loopback.pcap"), Some(&0));
    assert!(ud_to_qp1 > 0, "CM MADs to QP1");
    let expected: BTreeMap<&str, usize> = [
        ("RC_ACKNOWLEDGE", 67),
        ("RC_ATOMIC_ACKNOWLEDGE", 5),
        ("RC_FETCH_ADD", 5),
        ("RC_RDMA_READ_REQUEST", 8),
        ("RC_RDMA_READ_RESPONSE_FIRST", 5),
        ("RC_RDMA_READ_RESPONSE_LAST", 5),
        ("RC_RDMA_READ_RESPONSE_MIDDLE", 10),
        ("RC_RDMA_READ_RESPONSE_ONLY", 3),
        ("RC_RDMA_WRITE_FIRST", 5),
        ("RC_RDMA_WRITE_LAST", 5),
        ("RC_RDMA_WRITE_MIDDLE", 30),
        ("RC_RDMA_WRITE_ONLY", 3),
        ("RC_SEND_FIRST", 162),
        ("RC_SEND_LAST", 162),
        ("RC_SEND_MIDDLE", 314),
        ("RC_SEND_ONLY", 44),
        ("UC_SEND_FIRST", 10),
        ("UC_SEND_LAST", 10),
        ("UC_SEND_MIDDLE", 20),
        ("UD_SEND_ONLY", 26),
    ]
    .into_iter()
    .collect();
    assert_eq!(by_opcode, expected);
}

#[test]
fn golden_rc_source_ports_are_rxe_flow_label_hash() {
    // Every RC/UC packet's UDP source port is rc_udp_src_port(this QP's
    // destination, the peer QP) for some peer QP seen in the reverse
    // direction.
    let mut flows: Vec<(std::net::IpAddr, std::net::IpAddr, u16, u32)> = Vec::new();
    let Some(_) = for_each_roce(|_, _, rf| {
        let (repr, _) = PacketRepr::parse(rf.ib).unwrap();
        if repr.info().unwrap().transport != TransportKind::Ud {
            flows.push((rf.ip.src, rf.ip.dst, rf.udp_src, repr.bth.dest_qpn));
        }
    }) else {
        return;
    };
    let mut checked = 0;
    let mut unmatched = BTreeSet::new();
    for &(src, dst, sport, dqpn) in &flows {
        let peers: BTreeSet<u32> = flows
            .iter()
            .filter(|f| f.0 == dst && f.1 == src)
            .map(|f| f.3)
            .collect();
        if peers.is_empty() {
            continue; // the silent host never answers
        }
        if peers.iter().any(|&p| rc_udp_src_port(dqpn, p) == sport) {
            checked += 1;
        } else {
            unmatched.insert((src, dst, sport, dqpn));
        }
    }
    // The exceptions are the three rdma_cm connections (ib_send_lat -R,
    // rping) use other ports (presumably derived from a flow label the
    // connection manager sets; not checked here). Both directions still
    // share one port.
    let qpns: BTreeSet<u32> = unmatched.iter().map(|f| f.3).collect();
    assert_eq!(qpns, [24, 25, 26].into_iter().collect(), "{unmatched:?}");
    for &(src, dst, sport, dqpn) in &unmatched {
        assert!(
            unmatched.contains(&(dst, src, sport, dqpn)),
            "{unmatched:?}"
        );
    }
    assert!(checked > 100, "{checked}");
}

#[test]
fn golden_single_bit_flips_break_the_icrc() {
    // Every bit of the UDP payload except the masked BTH byte 4, for the
    // first packet of each opcode; a sample of bits for all the others.
    let mut seen = BTreeSet::new();
    let (mut flips, mut unknown_id_passes) = (0u64, 0u64);
    let Some(_) = for_each_roce(|name, no, rf| {
        let ib = rf.ib;
        let all_bits = seen.insert(ib[0]);
        let bits: Vec<usize> = if all_bits {
            (0..ib.len() * 8).collect()
        } else {
            (0..ib.len() * 8).step_by(61).collect()
        };
        let id = rf.ip.ident().unwrap();
        let mut buf = ib.to_vec();
        for bit in bits {
            if bit / 8 == 4 {
                continue; // BTH resv8a: not covered by the ICRC
            }
            buf[bit / 8] ^= 1 << (bit % 8);
            let stored = u32::from_le_bytes(buf[buf.len() - 4..].try_into().unwrap());
            assert_ne!(
                icrc::compute(rf.ip.bytes, &rf.udp_header, &buf[..buf.len() - 4]),
                stored,
                "{name} frame {no} bit {bit}"
            );
            assert!(!icrc::verify(&ep(rf), id, &buf));
            flips += 1;
            if icrc::verify_unknown_ip_id(&ep(rf), &buf).is_some() {
                unknown_id_passes += 1;
            }
            buf[bit / 8] ^= 1 << (bit % 8);
        }
        // Flipping masked bits changes nothing.
        buf[4] ^= 0xc0;
        assert!(icrc::verify(&ep(rf), id, &buf));
    }) else {
        return;
    };
    eprintln!("golden: {flips} flips, {unknown_id_passes} pass with the id unknown");
    assert!(flips > 100_000, "{flips}");
    // With the id solved for, 16 check bits remain: about flips / 65536.
    assert!(
        unknown_id_passes * 4096 < flips,
        "{unknown_id_passes} of {flips}"
    );
}

/// Writes a little-endian pcapng with one interface of `linktype` and
/// nanosecond timestamps.
fn to_pcapng(linktype: u16, frames: &[(i64, u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let block = |out: &mut Vec<u8>, ty: u32, body: &[u8]| {
        let len = (12 + body.len()) as u32;
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&len.to_le_bytes());
    };
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0a0d_0d0a, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&linktype.to_le_bytes());
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&65535u32.to_le_bytes());
    idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0]); // if_tsresol = 10^-9
    idb.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
    block(&mut out, 1, &idb);
    for (sec, nsec, data) in frames {
        let t = *sec as u64 * 1_000_000_000 + u64::from(*nsec);
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((t >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(t as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(data);
        epb.resize(epb.len().next_multiple_of(4), 0);
        block(&mut out, 6, &epb);
    }
    out
}

/// Ethernet frame → Linux SLL2 frame (same network layer).
fn eth_to_sll2(eth: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 20];
    f[0..2].copy_from_slice(&eth[12..14]);
    f.extend_from_slice(&eth[14..]);
    f
}

#[test]
fn pcapng_and_cooked_captures_give_the_same_packets() {
    let Some(caps) = captures() else {
        return;
    };
    let (name, bytes) = caps
        .iter()
        .find(|c| c.0 == "rxe-to-rxe-tools.pcap")
        .unwrap();
    let (frames, err) = read_frames(bytes).unwrap();
    assert!(err.is_none(), "{name}");
    // Timestamps never go backwards.
    assert!(frames
        .windows(2)
        .all(|w| (w[0].ts_sec, w[0].ts_nsec) <= (w[1].ts_sec, w[1].ts_nsec)));
    let legacy: Vec<&[u8]> = frames
        .iter()
        .filter_map(|f| roce_from_frame(f.linktype, f.data).map(|r| r.ib))
        .collect();
    assert_eq!(legacy.len(), 310);

    let sll2: Vec<(i64, u32, Vec<u8>)> = frames
        .iter()
        .map(|f| (f.ts_sec, f.ts_nsec, eth_to_sll2(f.data)))
        .collect();
    let ng = to_pcapng(276, &sll2);
    let (ng_frames, err) = read_frames(&ng).unwrap();
    assert!(err.is_none());
    assert_eq!(ng_frames.len(), frames.len());
    for (a, b) in frames.iter().zip(&ng_frames) {
        assert_eq!((a.no, a.ts_sec, a.ts_nsec), (b.no, b.ts_sec, b.ts_nsec));
    }
    let from_ng: Vec<&[u8]> = ng_frames
        .iter()
        .filter_map(|f| roce_from_frame(f.linktype, f.data).map(|r| r.ib))
        .collect();
    assert_eq!(from_ng, legacy);

    // A capture cut in the middle of a record reads up to it and says so.
    let (cut, err) = read_frames(&bytes[..bytes.len() - 7]).unwrap();
    assert_eq!(cut.len(), frames.len() - 1);
    assert!(err.is_some());
    assert!(read_frames(b"not a capture at all").is_err());
}

/// Writes every golden UDP payload to `$SOFTVERBS_FUZZ_CORPUS` (one file
/// per packet) as the seed corpus of the `packet` fuzz target; see
/// `fuzz/README.md`.
#[test]
#[ignore = "writes files; run on demand to seed the fuzz corpus"]
fn export_fuzz_seeds() {
    let dir = PathBuf::from(
        std::env::var_os("SOFTVERBS_FUZZ_CORPUS").expect("set SOFTVERBS_FUZZ_CORPUS"),
    );
    std::fs::create_dir_all(&dir).unwrap();
    let mut seen = BTreeSet::new();
    let Some(_) = for_each_roce(|_, _, rf| {
        // One seed per (opcode, length), which keeps the corpus small.
        if seen.insert((rf.ib[0], rf.ib.len())) {
            let path = dir.join(format!("golden-{:02x}-{}", rf.ib[0], rf.ib.len()));
            std::fs::write(path, rf.ib).unwrap();
        }
    }) else {
        return;
    };
    eprintln!("wrote {} seeds to {}", seen.len(), dir.display());
}
