//! The out-of-band exchanges of `softverbs pingpong` and `softverbs perf`
//! against the real tools' bytes (TCP streams of the captures in
//! `shared/interop/pcaps/`), and over loopback between our own client and
//! server. The modules are compiled in here directly (the binary crate has
//! no library), which also runs their unit tests.

#[path = "../src/pingpong/mod.rs"]
#[allow(dead_code)] // the binary uses what these tests do not
mod pingpong;

#[path = "../src/perftest/mod.rs"]
#[allow(dead_code)]
mod perftest;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use perftest::msg::{BwReport, QpInfoMsg};
use perftest::oob::{bytes_per_side, OobConfig, PerfOob, Role, SysInfo};
use perftest::{Kind, PerfTest, Verb};
use pingpong::net::OobError;
use pingpong::oob::{PpClient, PpDest, PpServer, PpTimeouts, SRQ_MAX_QP};

// ---------------------------------------------------------------- captures

/// One TCP payload: (sent by the client?, bytes).
type Segment = (bool, Vec<u8>);

/// A stream being collected: (client address and port, segments, next
/// sequence number per direction).
type Collecting = ((u32, u16), Vec<Segment>, [u32; 2]);

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

/// The TCP streams to or from port 18515 of a classic Ethernet pcap, in
/// order of their SYN, each as its payload segments in capture order
/// (retransmissions dropped). `None` when the captures are absent and
/// `SOFTVERBS_ALLOW_NO_PCAPS=1`.
fn oob_streams(file: &str) -> Option<Vec<Vec<Segment>>> {
    let Some(dir) = pcap_dir() else {
        if std::env::var("SOFTVERBS_ALLOW_NO_PCAPS").as_deref() == Ok("1") {
            return None;
        }
        panic!("captures not found beside the repository (shared/interop/pcaps) nor in $SOFTVERBS_PCAPS; set SOFTVERBS_ALLOW_NO_PCAPS=1 to skip");
    };
    let data = std::fs::read(dir.join(file)).unwrap();
    let le = match &data[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => panic!("{file}: not a classic pcap"),
    };
    let u32_at = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let be16 = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let mut streams: Vec<Collecting> = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let caplen = u32_at(&data[off + 8..]) as usize;
        let frame = &data[off + 16..off + 16 + caplen];
        off += 16 + caplen;
        if frame.len() < 34 || be16(&frame[12..]) != 0x0800 || frame[23] != 6 {
            continue;
        }
        let ip = &frame[14..];
        let ihl = (ip[0] & 0x0f) as usize * 4;
        let total = be16(&ip[2..]) as usize;
        let src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
        let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
        let tcp = &ip[ihl..total];
        let (sport, dport) = (be16(tcp), be16(&tcp[2..]));
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        let doff = (tcp[12] >> 4) as usize * 4;
        let syn = tcp[13] & 0x02 != 0;
        let payload = &tcp[doff..];
        let (from_client, key) = if dport == 18515 {
            (true, (src, sport))
        } else if sport == 18515 {
            (false, (dst, dport))
        } else {
            continue;
        };
        if syn && from_client && !streams.iter().any(|s| s.0 == key) {
            streams.push((key, Vec::new(), [seq.wrapping_add(1), 0]));
            continue;
        }
        let Some(s) = streams.iter_mut().find(|s| s.0 == key) else {
            continue;
        };
        let dir = usize::from(!from_client);
        if syn {
            s.2[dir] = seq.wrapping_add(1);
            continue;
        }
        if payload.is_empty() || seq != s.2[dir] {
            continue;
        }
        s.2[dir] = seq.wrapping_add(payload.len() as u32);
        s.1.push((from_client, payload.to_vec()));
    }
    Some(streams.into_iter().map(|s| s.1).collect())
}

/// Plays one side of a captured stream: writes that side's segments and
/// reads (and returns) the other side's, which the side under test sends.
/// The final `done` of the side under test may meet a closed socket.
fn play(mut s: TcpStream, segments: &[Segment], as_client: bool) -> Vec<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    let mut got = Vec::new();
    for (from_client, bytes) in segments {
        if *from_client == as_client {
            let _ = s.write_all(bytes);
        } else {
            let mut buf = vec![0u8; bytes.len()];
            s.read_exact(&mut buf)
                .expect("the side under test sent less than the real one");
            got.push(buf);
        }
    }
    got
}

fn theirs(segments: &[Segment], client: bool) -> Vec<Vec<u8>> {
    segments
        .iter()
        .filter(|s| s.0 == client)
        .map(|s| s.1.clone())
        .collect()
}

fn quick() -> PpTimeouts {
    PpTimeouts {
        connect: Duration::from_secs(5),
        io: Some(Duration::from_secs(10)),
        accept: Some(Duration::from_secs(10)),
    }
}

// ---------------------------------------------------------------- pingpong

#[test]
fn pingpong_captures_parse() {
    let Some(streams) = oob_streams("rxe-to-rxe-tools.pcap") else {
        return;
    };
    for (i, psn) in [(0, 0xdc9985), (1, 0xd311e8), (2, 0xbdae76)] {
        let s = &streams[i];
        assert_eq!(s.len(), 3, "stream {i}: address, address, done");
        let c = PpDest::decode(&s[0].1).unwrap();
        let v = PpDest::decode(&s[1].1).unwrap();
        assert_eq!((c.qpn, v.qpn), (0x11 + i as u32, 0x11 + i as u32));
        assert_eq!(c.psn, psn);
        assert_eq!(&c.gid[10..], &[0xff, 0xff, 10, 77, 0, 2]);
        assert_eq!(&v.gid[10..], &[0xff, 0xff, 10, 77, 0, 3]);
        assert_eq!(c.encode().to_vec(), s[0].1, "re-encodes byte for byte");
        assert_eq!(v.encode().to_vec(), s[1].1);
        assert_eq!(s[2], (true, b"done\0".to_vec()));
    }
}

#[test]
fn pingpong_replays_both_roles() {
    let Some(streams) = oob_streams("rxe-to-rxe-tools.pcap") else {
        return;
    };
    for s in &streams[..3] {
        let client_msg = PpDest::decode(&s[0].1).unwrap();
        let server_msg = PpDest::decode(&s[1].1).unwrap();
        // Our client against the real server's bytes.
        let (l, port) = fake_listener();
        let segs = s.clone();
        let peer = thread::spawn(move || {
            let (sock, _) = l.accept().unwrap();
            play(sock, &segs, false)
        });
        let remote = PpClient::connect("127.0.0.1", port, quick())
            .unwrap()
            .exchange(&client_msg)
            .unwrap();
        assert_eq!(remote, server_msg);
        assert_eq!(peer.join().unwrap(), theirs(s, true));
        // Our server against the real client's bytes.
        let l = PpServer::listen(0).unwrap();
        let port = l.port();
        let segs = s.clone();
        let peer = thread::spawn(move || {
            play(
                TcpStream::connect(("127.0.0.1", port)).unwrap(),
                &segs,
                true,
            )
        });
        let mut srv = PpServer::accept(l, quick()).unwrap();
        assert_eq!(srv.read_remote().unwrap(), client_msg);
        srv.reply(&[server_msg]).unwrap();
        assert_eq!(peer.join().unwrap(), theirs(s, false));
    }
}

/// A plain listener for the fake peers, bound before anyone connects.
fn fake_listener() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn dest(i: u32) -> PpDest {
    let mut gid = [0u8; 16];
    gid[10..].copy_from_slice(&[0xff, 0xff, 127, 0, 0, i as u8]);
    PpDest {
        lid: 0,
        qpn: 0x100 + i,
        psn: 0x10000 * i + 7,
        gid,
    }
}

#[test]
fn pingpong_loopback_single_and_srq() {
    let l = PpServer::listen(0).unwrap();
    let port = l.port();
    let server = thread::spawn(move || {
        let mut s = PpServer::accept(l, quick()).unwrap();
        let r = s.read_remote().unwrap();
        s.reply(&[dest(2)]).unwrap();
        r
    });
    let r = PpClient::connect("localhost", port, quick())
        .unwrap()
        .exchange(&dest(1))
        .unwrap();
    assert_eq!((r, server.join().unwrap()), (dest(2), dest(1)));

    let l = PpServer::listen(0).unwrap();
    let port = l.port();
    let server = thread::spawn(move || {
        let mut s = PpServer::accept(l, quick()).unwrap();
        let r = s.read_remote_srq(4).unwrap();
        s.reply(&(10..14).map(dest).collect::<Vec<_>>()).unwrap();
        r
    });
    let mine: Vec<PpDest> = (0..4).map(dest).collect();
    let r = PpClient::connect("127.0.0.1", port, quick())
        .unwrap()
        .exchange_srq(&mine)
        .unwrap();
    assert_eq!(r, (10..14).map(dest).collect::<Vec<_>>());
    assert_eq!(server.join().unwrap(), mine);
}

#[test]
fn srq_sends_256_records() {
    let (l, port) = fake_listener();
    let peer = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 52 * SRQ_MAX_QP];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
        let mut done = [0u8; 5];
        s.read_exact(&mut done).unwrap();
        (buf, done)
    });
    PpClient::connect("127.0.0.1", port, quick())
        .unwrap()
        .exchange_srq(&[dest(1), dest(2)])
        .unwrap();
    let (buf, done) = peer.join().unwrap();
    assert_eq!(&buf[..52], &dest(1).encode());
    assert_eq!(&buf[52..104], &dest(2).encode());
    assert_eq!(&buf[104..156], &PpDest::default().encode());
    assert_eq!(&done, b"done\0");
}

#[test]
fn pingpong_errors_are_clear() {
    // Nobody listening: the error names the address and port.
    let l = PpServer::listen(0).unwrap();
    let port = l.port();
    drop(l);
    let e = PpClient::connect("127.0.0.1", port, quick()).unwrap_err();
    assert!(matches!(e, OobError::Connect { .. }));
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    // The peer closes after 10 bytes.
    let (l, port) = fake_listener();
    let peer = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 52];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"0000:00001").unwrap();
    });
    let e = PpClient::connect("127.0.0.1", port, quick())
        .unwrap()
        .exchange(&dest(1))
        .unwrap_err();
    peer.join().unwrap();
    assert!(
        matches!(
            e,
            OobError::PeerClosed {
                got: 10,
                expected: 52,
                ..
            }
        ),
        "{e}"
    );
    // The peer never answers.
    let (l, port) = fake_listener();
    let peer = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        thread::sleep(Duration::from_millis(600));
        drop(s);
    });
    let t = PpTimeouts {
        io: Some(Duration::from_millis(200)),
        ..quick()
    };
    let e = PpClient::connect("127.0.0.1", port, t)
        .unwrap()
        .exchange(&dest(1))
        .unwrap_err();
    peer.join().unwrap();
    assert!(matches!(e, OobError::Timeout { got: 0, .. }), "{e}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    // Garbage instead of an address.
    let (l, port) = fake_listener();
    let peer = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 52];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&[b'x'; 52]).unwrap();
        thread::sleep(Duration::from_millis(100));
    });
    let e = PpClient::connect("127.0.0.1", port, quick())
        .unwrap()
        .exchange(&dest(1))
        .unwrap_err();
    peer.join().unwrap();
    assert!(e.to_string().contains("xxxxxxxx"), "{e}");
    // No client at all.
    let l = PpServer::listen(0).unwrap();
    let t = PpTimeouts {
        accept: Some(Duration::from_millis(50)),
        ..quick()
    };
    assert!(matches!(
        PpServer::accept(l, t).unwrap_err(),
        OobError::AcceptTimeout { .. }
    ));
}

// ---------------------------------------------------------------- perftest

/// Runs one whole perftest side in the order the real tools do; returns
/// the peer's keys (from the confirm round) and the peer's results.
fn run_side(
    mut oob: PerfOob,
    local: &[QpInfoMsg],
    report: &BwReport,
) -> Result<(Vec<QpInfoMsg>, Option<BwReport>), OobError> {
    let cfg = oob.config().clone();
    let t = cfg.test;
    let server = oob.role() == Role::Server;
    oob.pre_steps(&SysInfo::default())?;
    let first = oob.exchange_qp_info(local)?;
    let remote = oob.confirm_connected()?;
    assert_eq!(first, remote);
    oob.start_barrier()?;
    if server && t.kind == Kind::Lat && matches!(t.verb, Verb::Read | Verb::Atomic) {
        oob.finish()?;
        return Ok((remote, None));
    }
    let sizes = if cfg.all_sizes { 3 } else { 1 };
    for _ in 0..sizes {
        oob.begin_size()?;
        oob.end_size()?;
    }
    oob.end_of_test()?;
    let mut results = None;
    if t.kind == Kind::Bw && (t.verb != Verb::Send || cfg.duplex) {
        let mine = if server && !cfg.duplex {
            BwReport::default()
        } else {
            *report
        };
        results = Some(oob.exchange_results(&mine)?);
    }
    oob.finish()?;
    Ok((remote, results))
}

fn capture_test(stream: usize) -> PerfTest {
    match stream {
        3 => PerfTest::new(Verb::Write, Kind::Bw),
        4 => PerfTest::new(Verb::Read, Kind::Bw),
        5 => PerfTest::new(Verb::Send, Kind::Bw),
        6 => PerfTest::new(Verb::Atomic, Kind::Bw),
        _ => unreachable!(),
    }
}

fn perf_captures() -> Option<Vec<(PerfTest, Vec<Segment>)>> {
    let tools = oob_streams("rxe-to-rxe-tools.pcap")?;
    let lo = oob_streams("perftest-oob-loopback.pcap")?;
    let mut out: Vec<_> = (3..7)
        .map(|i| (capture_test(i), tools[i].clone()))
        .collect();
    out.push((PerfTest::new(Verb::Write, Kind::Bw), lo[0].clone()));
    Some(out)
}

#[test]
fn perftest_captures_parse() {
    let Some(caps) = perf_captures() else {
        return;
    };
    for (test, segs) in caps {
        let cfg = OobConfig::new(test);
        let client: usize = segs.iter().filter(|s| s.0).map(|s| s.1.len()).sum();
        assert_eq!(client, bytes_per_side(&cfg), "{}", test.name());
        let keys: Vec<&Segment> = segs.iter().filter(|s| s.1.len() == 108).collect();
        for (_, k) in &keys {
            let m = QpInfoMsg::decode(k, true).unwrap();
            assert_eq!(&m.encode(), k, "re-encodes byte for byte");
            let want_outs = if matches!(test.verb, Verb::Read | Verb::Atomic) {
                0x80
            } else {
                1
            };
            assert_eq!(m.out_reads, want_outs, "{}", test.name());
        }
        if let Some(size) = segs.iter().find(|s| s.0 && s.1.len() == 8) {
            let fields: Vec<[u8; 8]> = segs
                .iter()
                .filter(|s| s.0 && s.1.len() == 8)
                .map(|s| s.1.clone().try_into().unwrap())
                .collect();
            let r = BwReport::decode_fields(&fields.try_into().unwrap());
            assert_eq!(r.iters, 5);
            assert_eq!(r.size.to_be_bytes().to_vec(), size.1);
            assert!(r.bw_avg > 0.0 && r.msg_rate > 0.0, "{r:?}");
        }
        let last_two: Vec<&[u8]> = segs[segs.len() - 2..].iter().map(|s| &s.1[..]).collect();
        assert_eq!(last_two, [b"done\0", b"done\0"]);
    }
}

fn key_of(segs: &[Segment], client: bool) -> QpInfoMsg {
    let k = segs
        .iter()
        .find(|s| s.0 == client && s.1.len() == 108)
        .unwrap();
    QpInfoMsg::decode(&k.1, true).unwrap()
}

fn report_of(segs: &[Segment]) -> BwReport {
    let fields: Vec<[u8; 8]> = segs
        .iter()
        .filter(|s| s.0 && s.1.len() == 8)
        .map(|s| s.1.clone().try_into().unwrap())
        .collect();
    match fields.try_into() {
        Ok(f) => BwReport::decode_fields(&f),
        Err(_) => BwReport::default(),
    }
}

#[test]
fn perftest_client_replays_the_captures_byte_for_byte() {
    let Some(caps) = perf_captures() else {
        return;
    };
    for (test, segs) in caps {
        let (l, port) = fake_listener();
        let s2 = segs.clone();
        let peer = thread::spawn(move || play(l.accept().unwrap().0, &s2, false));
        let oob = PerfOob::connect("127.0.0.1", port, OobConfig::new(test)).unwrap();
        let (remote, results) = run_side(oob, &[key_of(&segs, true)], &report_of(&segs)).unwrap();
        assert_eq!(remote, vec![key_of(&segs, false)]);
        assert_eq!(results.is_some(), test.verb != Verb::Send);
        let sent = peer.join().unwrap();
        assert_eq!(sent, theirs(&segs, true), "{}", test.name());
    }
}

#[test]
fn perftest_server_replays_the_captures() {
    let Some(caps) = perf_captures() else {
        return;
    };
    for (test, segs) in caps {
        let l = PerfOob::listen(0).unwrap();
        let port = l.port();
        let s2 = segs.clone();
        let peer = thread::spawn(move || {
            play(TcpStream::connect(("127.0.0.1", port)).unwrap(), &s2, true)
        });
        let oob = PerfOob::accept(l, OobConfig::new(test)).unwrap();
        let (remote, results) =
            run_side(oob, &[key_of(&segs, false)], &BwReport::default()).unwrap();
        assert_eq!(remote, vec![key_of(&segs, true)]);
        if let Some(r) = results {
            assert_eq!(r, report_of(&segs), "the server gets the client's results");
        }
        let sent = peer.join().unwrap();
        let want = theirs(&segs, false);
        assert_eq!(sent.len(), want.len());
        for (got, want) in sent.iter().zip(&want) {
            if want.len() == 8 {
                assert_eq!(got, &[0u8; 8], "our server sends zeros, not junk");
            } else {
                assert_eq!(got, want, "{}", test.name());
            }
        }
    }
}

fn key(i: u32, test: PerfTest) -> QpInfoMsg {
    let mut gid = [0u8; 16];
    gid[10..].copy_from_slice(&[0xff, 0xff, 127, 0, 0, 1]);
    QpInfoMsg {
        lid: 0,
        out_reads: if matches!(test.verb, Verb::Read | Verb::Atomic) {
            128
        } else {
            1
        },
        qpn: 0x20 + i,
        psn: 0xabc00 + i,
        rkey: 0x1000 + i,
        vaddr: 0x7f00_0000_0000 + u64::from(i) * 0x10000,
        gid: Some(gid),
        srqn: 0,
    }
}

fn loopback(cfg: OobConfig) {
    let t = cfg.test;
    let q = if t.kind == Kind::Lat {
        1
    } else {
        cfg.num_qps as u32
    };
    let fmt = |mut k: QpInfoMsg| {
        if !cfg.with_gid {
            k.gid = None;
        }
        k
    };
    let ck: Vec<QpInfoMsg> = (0..q).map(|i| fmt(key(i, t))).collect();
    let sk: Vec<QpInfoMsg> = (100..100 + q).map(|i| fmt(key(i, t))).collect();
    let rep = BwReport {
        size: 65536,
        iters: 5000,
        bw_peak: 1234.5,
        bw_avg: 1000.25,
        msg_rate: 0.016,
    };
    let l = PerfOob::listen(0).unwrap();
    let port = l.port();
    let (scfg, sk2) = (cfg.clone(), sk.clone());
    let server = thread::spawn(move || {
        let oob = PerfOob::accept(l, scfg).unwrap();
        run_side(oob, &sk2, &rep).unwrap()
    });
    let oob = PerfOob::connect("127.0.0.1", port, cfg.clone()).unwrap();
    let (c_remote, c_res) = run_side(oob, &ck, &rep).unwrap();
    let (s_remote, s_res) = server.join().unwrap();
    assert_eq!((c_remote, s_remote), (sk, ck), "{cfg:?}");
    if t.kind == Kind::Bw && t.verb != Verb::Send {
        assert_eq!(s_res, Some(rep), "{cfg:?}");
        let client_gets = if cfg.duplex { rep } else { BwReport::default() };
        assert_eq!(c_res, Some(client_gets));
    }
}

#[test]
fn perftest_loopback_every_test_and_shape() {
    for test in PerfTest::ALL {
        for (q, duplex, all) in [
            (1, false, false),
            (3, false, false),
            (2, true, false),
            (1, false, true),
            (2, true, true),
        ] {
            if test.kind == Kind::Lat && (duplex || q > 1) {
                continue;
            }
            let cfg = OobConfig {
                num_qps: q,
                duplex,
                all_sizes: all,
                ..OobConfig::new(test)
            };
            loopback(cfg);
        }
        loopback(OobConfig {
            with_gid: false,
            ..OobConfig::new(test)
        });
    }
}

#[test]
fn perftest_rejects_old_peers_and_misuse() {
    let (l, port) = fake_listener();
    let peer = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut v = [0u8; 16];
        s.read_exact(&mut v).unwrap();
        s.write_all(b"5.5\0\0\0\0\0\0\0\0\0\0\0\0\0").unwrap();
        thread::sleep(Duration::from_millis(100));
    });
    let test = PerfTest::new(Verb::Write, Kind::Bw);
    let mut oob = PerfOob::connect("127.0.0.1", port, OobConfig::new(test)).unwrap();
    let e = oob.pre_steps(&SysInfo::default()).unwrap_err();
    assert!(matches!(e, OobError::Incompatible { .. }), "{e}");
    assert!(e.to_string().contains("5.5"), "{e}");
    peer.join().unwrap();
    // Steps out of order are reported, not sent.
    let e = oob.start_barrier().unwrap_err();
    assert!(matches!(e, OobError::Sequence { .. }), "{e}");
    // No IPv4 server listening: perftest's client is IPv4 only.
    let l = PerfOob::listen(0).unwrap();
    let port = l.port();
    drop(l);
    let e = PerfOob::connect("127.0.0.1", port, OobConfig::new(test)).unwrap_err();
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

#[test]
fn perftest_tolerates_a_reset_after_done() {
    // The peer sends its done and closes at once (leaving ours unread):
    // finish still succeeds.
    let test = PerfTest::new(Verb::Send, Kind::Bw);
    let l = PerfOob::listen(0).unwrap();
    let port = l.port();
    let peer = thread::spawn(move || {
        let oob = PerfOob::accept(l, OobConfig::new(test)).unwrap();
        run_side(oob, &[key(1, test)], &BwReport::default()).unwrap();
    });
    let mut oob = PerfOob::connect("127.0.0.1", port, OobConfig::new(test)).unwrap();
    oob.pre_steps(&SysInfo::default()).unwrap();
    oob.exchange_qp_info(&[key(2, test)]).unwrap();
    oob.confirm_connected().unwrap();
    oob.start_barrier().unwrap();
    oob.begin_size().unwrap();
    oob.end_size().unwrap();
    oob.end_of_test().unwrap();
    // The server waits in its closing H0, then sends done and closes
    // without reading ours.
    oob.finish().unwrap();
    peer.join().unwrap();
}
