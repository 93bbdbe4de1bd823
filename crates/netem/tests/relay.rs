//! The relay on real interfaces (root only; skipped otherwise): three
//! namespaces A —veth— M —veth— B, the relay in M delaying 2 ms each way.
//! Every datagram crosses exactly once (M's kernel forwards nothing), and
//! no echo comes back sooner than the two delays — a property of the
//! schedule, not a speed.

#![allow(clippy::disallowed_methods)] // the test measures round trips

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use softverbs_netem::{Impairment, Relay};

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces, deleted on drop.
struct Nets;

const NS: [&str; 3] = ["svnta", "svntm", "svntb"];

impl Nets {
    fn build() -> Result<Nets, String> {
        for ns in NS {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
        let n = Nets;
        for ns in NS {
            sh(&["ip", "netns", "add", ns])?;
        }
        sh(&[
            "ip",
            "netns",
            "exec",
            NS[1],
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ])?;
        for (ns, v, mv, addr) in [
            (NS[0], "svnt0", "svnt0m", "10.199.0.1/24"),
            (NS[2], "svnt1", "svnt1m", "10.199.0.2/24"),
        ] {
            sh(&[
                "ip", "link", "add", v, "netns", ns, "type", "veth", "peer", "name", mv, "netns",
                NS[1],
            ])?;
            sh(&["ip", "-n", NS[1], "link", "set", mv, "up"])?;
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", v])?;
            sh(&["ip", "-n", ns, "link", "set", v, "up"])?;
            sh(&["ip", "netns", "exec", ns, "ethtool", "-K", v, "tx", "off"])?;
        }
        Ok(n)
    }
}

impl Drop for Nets {
    fn drop(&mut self) {
        for ns in NS {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

/// Runs `f` on a thread inside namespace `ns`.
fn within<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn frames_cross_once_and_no_sooner_than_the_delay() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root (ip netns)");
        return;
    }
    let nets = match Nets::build() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("skipped: cannot build the namespaces: {e}");
            return;
        }
    };
    let pairs = vec![("svnt0m".to_string(), "svnt1m".to_string())];
    let relay = within(NS[1], move || Relay::start(&pairs, 7)).expect("relay");
    relay.set_all(Impairment::delay(Duration::from_millis(2)));
    // B echoes every datagram and counts them by sequence number.
    let n = 100usize;
    let b = within(NS[2], || UdpSocket::bind("10.199.0.2:9000").unwrap());
    b.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let echo = std::thread::spawn(move || {
        let mut seen = vec![0u32; n];
        let mut buf = [0u8; 2048];
        while let Ok((len, from)) = b.recv_from(&mut buf) {
            let i = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
            if i < n {
                seen[i] += 1;
            }
            b.send_to(&buf[..len], from).unwrap();
        }
        seen
    });
    let a = within(NS[0], || UdpSocket::bind("10.199.0.1:0").unwrap());
    a.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut rtts = Vec::new();
    let mut buf = [0u8; 2048];
    for i in 0..n as u16 {
        let mut msg = vec![0u8; 1000];
        msg[..2].copy_from_slice(&i.to_be_bytes());
        let t = Instant::now();
        a.send_to(&msg, "10.199.0.2:9000").unwrap();
        // The first crossing waits for ARP, itself relayed both ways.
        let (len, _) = a.recv_from(&mut buf).expect("echo");
        assert_eq!((len, &buf[..2]), (1000, &i.to_be_bytes()[..]));
        rtts.push(t.elapsed());
    }
    let seen = echo.join().unwrap();
    let st = relay.stats();
    drop(relay);
    drop(nets);
    let min = rtts.iter().min().unwrap();
    eprintln!(
        "{n} round trips through 2 ms each way: min {min:?}, max {:?}; {st:?}",
        rtts.iter().max().unwrap()
    );
    assert!(seen.iter().all(|&c| c == 1), "not exactly once: {seen:?}");
    assert!(
        *min >= Duration::from_millis(4),
        "faster than the delay: {min:?}"
    );
    assert_eq!(st[0][0].netem.dropped + st[0][1].netem.dropped, 0);
}
