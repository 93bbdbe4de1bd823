//! Out-of-band exchanges of `softverbs perf` against bytes that real
//! perftest 6.06 (Debian 12's) sent to it in the interop suite
//! (`scripts/interop/run.sh`): small captures kept in `tests/data`.

#[path = "../src/pingpong/mod.rs"]
#[allow(dead_code)]
mod pingpong;

#[path = "../src/perftest/mod.rs"]
#[allow(dead_code)]
mod perftest;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use perftest::msg::QpInfoMsg;
use perftest::oob::{OobConfig, PerfOob, SysInfo};
use perftest::{Kind, PerfTest, Verb};

/// The TCP payloads sent *to* port 18515 (by the client) in an Ethernet
/// pcap, in capture order.
fn client_segments(pcap: &[u8]) -> Vec<Vec<u8>> {
    assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= pcap.len() {
        let incl = u32::from_le_bytes(pcap[off + 8..off + 12].try_into().unwrap()) as usize;
        let p = &pcap[off + 16..off + 16 + incl];
        off += 16 + incl;
        if p[12..14] != [0x08, 0x00] || p[14 + 9] != 6 {
            continue;
        }
        let ip = &p[14..];
        let ihl = (ip[0] & 15) as usize * 4;
        let tot = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        let tcp = &ip[ihl..tot];
        let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
        let doff = (tcp[12] >> 4) as usize * 4;
        if dport == 18515 && tcp.len() > doff {
            out.push(tcp[doff..].to_vec());
        }
    }
    out
}

/// `ib_send_bw -a` (23 sizes, one QP): the real client makes one H0 per
/// size before and one after the measurement, so after the pre-steps it
/// sends 3 + 2 × 23 + 1 = 50 keys, then `done`. Our server used to expect
/// one H0 more (a start barrier and a first per-size barrier) and failed
/// at the end waiting for a 51st key.
#[test]
fn server_follows_real_ib_send_bw_all_sizes() {
    let pcap = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/ib_send_bw-a-client.pcap"
    ))
    .unwrap();
    let segs = client_segments(&pcap);
    let keys = segs.iter().filter(|s| s.len() == 108).count();
    assert_eq!(keys, 50);
    assert_eq!(segs.last().unwrap(), b"done\0");

    let l = PerfOob::listen(0).unwrap();
    let port = l.port();
    let client = thread::spawn(move || {
        // The real client: each step written, then the server's answer of
        // the same length read before the next.
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for seg in &segs {
            s.write_all(seg).unwrap();
            let mut answer = vec![0u8; seg.len()];
            s.read_exact(&mut answer)
                .unwrap_or_else(|e| panic!("no answer to a {}-byte step: {e}", seg.len()));
        }
    });
    let mut cfg = OobConfig::new(PerfTest::new(Verb::Send, Kind::Bw));
    cfg.all_sizes = true;
    cfg.io_timeout = Some(Duration::from_secs(10));
    let mut oob = PerfOob::accept(l, cfg).unwrap();
    oob.pre_steps(&SysInfo::default()).unwrap();
    let key = QpInfoMsg {
        lid: 0,
        out_reads: 1,
        qpn: 0x11,
        psn: 0x123456,
        rkey: 0x100,
        vaddr: 0x1000,
        gid: Some([0; 16]),
        srqn: 0,
    };
    oob.exchange_qp_info(&[key]).unwrap();
    oob.confirm_connected().unwrap();
    oob.start_barrier().unwrap();
    for _ in 0..23 {
        oob.begin_size().unwrap();
        oob.end_size().unwrap();
    }
    oob.end_of_test().unwrap();
    oob.finish().unwrap();
    client.join().unwrap();
}
