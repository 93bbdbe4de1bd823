//! Several processes on one daemon talking RC to each other through one
//! device, and to a second daemon in another network namespace over a
//! veth pair. Needs root and `ip` (iproute2); skipped, saying so, without
//! them. The namespaces and the veth pair have names unique to this run
//! and are deleted however the test ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use softverbs_core::calls::VerbsCalls;
use softverbs_daemon::client;
use softverbs_transport::{RecvWr, SendWr, WcStatus};

mod common;
use common::{card, connect, parse_card, side, stdin_line, Kid};

const T: Duration = Duration::from_secs(20);
const MESSAGES: u64 = 50;

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Two network namespaces joined by a veth pair, deleted on drop.
struct Netns {
    a: String,
    b: String,
}

impl Netns {
    fn new(tag: u32) -> Option<Netns> {
        let n = Netns {
            a: format!("svd8a{tag}"),
            b: format!("svd8b{tag}"),
        };
        if !ip(&["netns", "add", &n.a]) {
            return None;
        }
        let ok = ip(&["netns", "add", &n.b])
            && ip(&[
                "link", "add", "svd8va", "netns", &n.a, "type", "veth", "peer", "name", "svd8vb",
                "netns", &n.b,
            ]);
        let x = tag % 250;
        let ok =
            ok && ip(&[
                "-n",
                &n.a,
                "addr",
                "add",
                &format!("10.208.{x}.1/24"),
                "dev",
                "svd8va",
            ]) && ip(&[
                "-n",
                &n.b,
                "addr",
                "add",
                &format!("10.208.{x}.2/24"),
                "dev",
                "svd8vb",
            ]) && ip(&["-n", &n.a, "link", "set", "svd8va", "up"])
                && ip(&["-n", &n.b, "link", "set", "svd8vb", "up"])
                && ip(&["-n", &n.a, "link", "set", "lo", "up"])
                && ip(&["-n", &n.b, "link", "set", "lo", "up"]);
        ok.then_some(n)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and so
        // the pair.
        ip(&["netns", "del", &self.a]);
        ip(&["netns", "del", &self.b]);
    }
}

/// A softverbsd inside namespace `ns`, killed on drop.
struct NsDaemon {
    child: Child,
    path: PathBuf,
}

impl NsDaemon {
    fn start(ns: &str, path: PathBuf, addr: &str) -> NsDaemon {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_softverbsd")])
            .arg("--socket")
            .arg(&path)
            .arg("--devices")
            .arg(format!("rxe0=rxe:{addr}"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = NsDaemon { child, path };
        for _ in 0..500 {
            if client::devices(&d.path).is_ok() {
                return d;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("softverbsd in {ns} did not come up on {}", d.path.display());
    }
}

impl Drop for NsDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn processes_share_a_daemon_and_reach_another_in_a_netns() {
    let pid = std::process::id();
    let uid = Command::new("id").arg("-u").output().ok();
    if uid.is_none_or(|o| String::from_utf8_lossy(&o.stdout).trim() != "0") {
        println!("SKIPPED: needs root for network namespaces");
        return;
    }
    let Some(ns) = Netns::new(pid) else {
        println!("SKIPPED: could not create network namespaces with `ip`");
        return;
    };
    let x = pid % 250;
    let tmp = std::env::temp_dir();
    let da = NsDaemon::start(
        &ns.a,
        tmp.join(format!("softverbsd-ns-{pid}-a.sock")),
        &format!("10.208.{x}.1"),
    );
    let db = NsDaemon::start(
        &ns.b,
        tmp.join(format!("softverbsd-ns-{pid}-b.sock")),
        &format!("10.208.{x}.2"),
    );
    let sa = da.path.to_str().unwrap();
    let sb = db.path.to_str().unwrap();
    // Two pairs: p1 -> p2 on daemon A's one device, p3 (daemon A) -> p4
    // (daemon B, the other namespace).
    let mut kids: Vec<Kid> = [(sa, "recv"), (sa, "send"), (sa, "send"), (sb, "recv")]
        .iter()
        .map(|(sock, role)| {
            Kid::spawn(
                "child_rc_peer",
                &[("SVD_NS_SOCKET", sock), ("SVD_NS_ROLE", role)],
            )
        })
        .collect();
    let cards: Vec<String> = kids.iter_mut().map(|k| k.line("CARD")).collect();
    for (i, j) in [(0, 1), (1, 0), (2, 3), (3, 2)] {
        kids[i].say(&cards[j]);
    }
    kids[0].line("READY");
    kids[3].line("READY");
    // Three processes hold objects on daemon A's device at once.
    let pids: std::collections::BTreeSet<u64> = client::resources(&da.path)
        .unwrap()
        .iter()
        .filter_map(|r| r["pid"].as_u64())
        .collect();
    assert_eq!(pids.len(), 3, "owners on daemon A: {pids:?}");
    kids[1].say("GO");
    kids[2].say("GO");
    for (i, k) in kids.iter_mut().enumerate() {
        assert_eq!(k.line("DONE"), "ok", "child {i}");
    }
    for mut k in kids {
        let st = k.child.wait().unwrap();
        assert!(st.success(), "{st}");
    }
    // The second pair's packets crossed the veth pair.
    let out = Command::new("ip")
        .args(["-n", &ns.b, "-s", "-j", "link", "show", "svd8vb"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rx = v[0]["stats64"]["rx"]["packets"].as_u64().unwrap_or(0);
    assert!(rx >= 2 * MESSAGES, "{rx} packets came over the veth");
    for d in [&da, &db] {
        for _ in 0..500 {
            if client::resources(&d.path).unwrap().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(client::resources(&d.path).unwrap().is_empty());
    }
}

/// A child of [`processes_share_a_daemon_and_reach_another_in_a_netns`]:
/// one RC QP on the daemon at `SVD_NS_SOCKET`. `recv`: posts receives,
/// says READY, checks every message and the WRITE before each; `send`:
/// after GO, WRITEs a block then SENDs a message, `MESSAGES` times.
#[test]
#[ignore = "a child of processes_share_a_daemon_and_reach_another_in_a_netns"]
fn child_rc_peer() {
    let (Ok(path), Ok(role)) = (std::env::var("SVD_NS_SOCKET"), std::env::var("SVD_NS_ROLE"))
    else {
        return;
    };
    let mut s = side(Path::new(&path), "rxe0", None);
    println!("CARD {}", card(&s));
    let peer = parse_card(&stdin_line());
    connect(&s, &peer);
    let pattern = |i: u64| -> Vec<u8> { (0..1024).map(|k| (k as u64 * 7 + i) as u8).collect() };
    if role == "recv" {
        for i in 0..MESSAGES {
            s.rq.post_recv(&RecvWr {
                wr_id: i,
                sgl: vec![s.mr.sge(64 * i as usize, 64)],
            })
            .unwrap();
        }
        println!("READY");
        for i in 0..MESSAGES {
            let wc = s.cq.wait_one(T).unwrap();
            assert_eq!((wc.wr_id, wc.status), (i, WcStatus::Success));
            let mut m = vec![0u8; wc.byte_len as usize];
            s.mr.map.read(64 * i as usize, &mut m).unwrap();
            assert_eq!(m, format!("message {i}").into_bytes());
            let mut w = vec![0u8; 1024];
            s.mr.map.read(4096 + 1024 * i as usize, &mut w).unwrap();
            assert_eq!(w, pattern(i), "WRITE before message {i}");
        }
    } else {
        assert_eq!(stdin_line(), "GO");
        for i in 0..MESSAGES {
            s.mr.map.write(8192, &pattern(i)).unwrap();
            s.sq.post_send(&SendWr::write(
                1000 + i,
                s.mr.sge(8192, 1024),
                peer.addr + 4096 + 1024 * i,
                peer.rkey,
            ))
            .unwrap();
            s.mr.map
                .write(0, format!("message {i}").as_bytes())
                .unwrap();
            let len = format!("message {i}").len() as u32;
            s.sq.post_send(&SendWr::send(i, s.mr.sge(0, len)).signaled())
                .unwrap();
            let wc = s.cq.wait_one(T).unwrap();
            assert_eq!((wc.wr_id, wc.status), (i, WcStatus::Success));
        }
    }
    let _ = s.c.query_device();
    println!("DONE ok");
}
