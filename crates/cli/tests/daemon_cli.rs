//! `softverbs daemon`, `link add`/`delete` and the host-wide `res`/`stat`:
//! a daemon child process on a socket of this test's own, devices on
//! 127.93.x.y (no other suite uses them), a `pingpong` server as a client
//! process holding objects through the daemon, then killed.

// Tests bound how long a child may run: wall-clock time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, run, wait};
use serde_json::Value;

/// A daemon child, killed (and its socket directory removed) on drop,
/// panics included.
struct Daemon {
    child: Child,
    dir: PathBuf,
    sock: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Daemon {
    fn start(tag: &str, devices: &str) -> Daemon {
        let dir = std::env::temp_dir().join(format!("sv-daemon-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("softverbs.sock");
        let child = Command::new(bin())
            .args(["daemon", "--socket"])
            .arg(&sock)
            .args(["--devices", devices])
            .env_remove("SOFTVERBS_BACKEND")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn softverbs daemon");
        let d = Daemon { child, dir, sock };
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&d.sock).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the daemon did not listen on {}",
                d.sock.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// `softverbs ARGS` against this daemon.
    fn cmd(&self, args: &[&str]) -> Command {
        sv(&self.sock, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = run(self.cmd(args), Duration::from_secs(20));
        assert!(out.status.success(), "softverbs {args:?}: {}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = run(self.cmd(args), Duration::from_secs(20));
        assert!(
            !out.status.success(),
            "softverbs {args:?} succeeded: {}",
            show(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).expect("JSON output")
    }
}

fn sv(sock: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env("SOFTVERBS_SOCKET", sock)
        .env_remove("SOFTVERBS_BACKEND")
        .env_remove("SOFTVERBS_DEVICES")
        .stdin(Stdio::null());
    c
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn names(devs: &Value) -> Vec<String> {
    devs.as_array()
        .unwrap()
        .iter()
        .map(|d| d["ifname"].as_str().unwrap().to_string())
        .collect()
}

fn owned_by(res: &Value, pid: u32) -> Vec<Value> {
    res.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["pid"] == pid)
        .cloned()
        .collect()
}

#[test]
fn link_add_delete_and_host_wide_resources() {
    let d = Daemon::start("main", "rxe0=rxe:127.93.1.1");

    // link add: by address, with an MTU; then dev and link show it.
    d.ok(&[
        "link",
        "add",
        "rxe5",
        "type",
        "rxe",
        "netdev",
        "127.93.1.2",
        "mtu",
        "2048",
    ]);
    assert_eq!(names(&d.json(&["dev", "-j"])), ["rxe0", "rxe5"]);
    let link = d.json(&["link", "show", "rxe5", "-j"]);
    assert_eq!(link[0]["mtu"], 2048, "{link}");
    assert_eq!(link[0]["udp"], "127.93.1.2:4791", "{link}");
    assert!(d.ok(&["dev", "show", "rxe5"]).contains("hca_id:\trxe5"));

    // Refused: the same name, an address in use, an unknown type.
    let e = d.fails(&["link", "add", "rxe5", "type", "rxe", "netdev", "127.93.1.3"]);
    assert!(e.contains("exists already"), "{e}");
    let e = d.fails(&[
        "link",
        "add",
        "rxe6",
        "type",
        "udonly",
        "netdev",
        "127.93.1.2",
    ]);
    assert!(e.contains("taken by device rxe5"), "{e}");
    let e = d.fails(&["link", "add", "rxe6", "type", "ib", "netdev", "127.93.1.3"]);
    assert!(e.contains("unknown link type ib"), "{e}");

    // A client process holding objects on rxe5: a pingpong server waiting
    // for its peer (it has its PD, MR, CQ and QP by then).
    let mut client = d
        .cmd(&["pingpong", "rc", "-d", "rxe5", "-g", "1", "-p", "18693"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pingpong");
    let pid = client.id();
    let start = Instant::now();
    let held = loop {
        let res = d.json(&["res", "show", "-j"]);
        let mine = owned_by(&res, pid);
        if mine.iter().any(|r| r["kind"] == "qp") {
            break mine;
        }
        if start.elapsed() > Duration::from_secs(15) {
            let _ = client.kill();
            panic!("the client's QP never showed in res show: {res}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(held
        .iter()
        .all(|r| r["device"] == "rxe5" && r["source"] == "daemon"));
    for k in ["pd", "mr", "cq", "qp"] {
        assert!(held.iter().any(|r| r["kind"] == k), "no {k} in {held:?}");
    }
    let text = d.ok(&["res", "show", "qp"]);
    assert!(text.starts_with("# daemon at "), "{text}");
    assert!(text.contains("all processes"), "{text}");
    assert!(text.contains(&format!("pid {pid}")), "{text}");

    // A device in use is not deleted: Busy, naming the owner.
    let e = d.fails(&["link", "delete", "rxe5"]);
    assert!(
        e.contains("busy") && e.contains(&format!("pid {pid}")),
        "{e}"
    );

    // The client dies: its objects go with it.
    client.kill().unwrap();
    client.wait().unwrap();
    let start = Instant::now();
    loop {
        let res = d.json(&["res", "show", "-j"]);
        if owned_by(&res, pid).is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the killed client's objects stayed: {res}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Counters are the daemon's, host-wide.
    let st = d.json(&["stat", "show", "-j"]);
    assert_eq!(st["source"], "daemon", "{st}");
    assert!(st["daemon"]["connections"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(names(&st["devices"]), ["rxe0", "rxe5"]);
    assert!(d.ok(&["stat", "show"]).starts_with("# daemon at "));

    // Now it can go; its address is free again for a new device.
    d.ok(&["link", "delete", "rxe5"]);
    assert_eq!(names(&d.json(&["dev", "-j"])), ["rxe0"]);
    let e = d.fails(&["link", "delete", "rxe5"]);
    assert!(e.contains("no device named rxe5"), "{e}");
    d.ok(&["link", "add", "efa7", "type", "srd", "netdev", "127.93.1.2"]);
    let devs = d.json(&["dev", "-j"]);
    assert_eq!(names(&devs), ["rxe0", "efa7"]);
    assert_eq!(devs[1]["kind"], "srd");
    // Its efadv_query_device attributes, from the daemon (as embedded).
    let efa = &devs[1]["efa"];
    assert!(efa["max_sq_wr"].as_u64().unwrap() > 0, "{efa}");
    assert_eq!(efa["inline_buf_size"], 32, "{efa}");
    let caps = efa["device_caps"].as_array().unwrap();
    assert!(caps.contains(&"RDMA_READ".into()), "{efa}");
    assert!(devs[0].get("efa").is_none(), "rxe0 is not EFA-like");
    assert!(d
        .ok(&["dev", "show", "efa7"])
        .contains("efa (efadv_query_device)"));
}

#[test]
fn without_a_daemon_link_add_says_how_to_start_one() {
    let dir = std::env::temp_dir().join(format!("sv-daemon-cli-none-{}", std::process::id()));
    let sock = dir.join("absent.sock");
    let out = run(
        sv(
            &sock,
            &["link", "add", "rxe5", "type", "rxe", "netdev", "127.93.2.1"],
        ),
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("no softverbsd answers on") && e.contains("softverbs daemon --socket"),
        "{e}"
    );
    // res/stat fall back to this process, and say so.
    let out = run(sv(&sock, &["res", "show"]), Duration::from_secs(20));
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("# embedded: this process"));
}

#[test]
fn daemon_config_file_and_bad_netdev() {
    let dir = std::env::temp_dir().join(format!("sv-daemon-cli-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("devices.conf");
    std::fs::write(
        &cfg,
        "# the host's devices\nrxe3=rxe:127.93.3.1   # first\nud3=udonly:127.93.3.2\n",
    )
    .unwrap();
    let sock = dir.join("softverbs.sock");
    let child = Command::new(bin())
        .args(["daemon", "--socket"])
        .arg(&sock)
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let d = Daemon {
        child,
        dir,
        sock: sock.clone(),
    };
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&d.sock).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "no daemon");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(names(&d.json(&["dev", "-j"])), ["rxe3", "ud3"]);
    let e = d.fails(&["link", "add", "rxe4", "type", "rxe", "netdev", "nosuchif0"]);
    assert!(e.contains("no interface named nosuchif0"), "{e}");
    // An address that is not on this host does not bind.
    let e = d.fails(&["link", "add", "rxe4", "type", "rxe", "netdev", "192.0.2.77"]);
    assert!(e.contains("cannot bind 192.0.2.77:4791"), "{e}");
    let _ = wait; // (shared helper module)
}

/// `softverbs perf -c SRD --loopback` through the daemon: both sides' SRD
/// QPs are the daemon's (the EFA namespace over the socket, the rings),
/// on the daemon's two srd devices; its traffic shows in the daemon's
/// counters.
#[test]
fn perf_srd_through_the_daemon() {
    let d = Daemon::start("srd", "efa0=srd:127.93.4.1,efa1=srd:127.93.4.2");
    for test in ["write_bw", "read_bw", "send_lat"] {
        let v = d.json(&["perf", test, "--loopback", "-c", "SRD", "-n", "50", "-j"]);
        let s = v.to_string();
        assert_eq!(v["test"], test, "{s}");
        assert!(s.contains("\"iterations\":50"), "{test}: {s}");
    }
    let st = d.json(&["stat", "show", "-j"]);
    let sent: u64 = st["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["counters"]["sent_pkts"].as_u64().unwrap_or(0))
        .sum();
    assert!(sent >= 150, "{st}");
}
