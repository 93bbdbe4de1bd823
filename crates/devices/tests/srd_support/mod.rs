//! Network namespaces with several real paths, for the SRD namespace tests
//! (`tests/srd.rs`) and the `srd_vs_rc` example (issue 7). Needs root.
//!
//! Two namespaces, A and B, joined by `paths` veth pairs (pair `i`:
//! `10.N.i.1` in A, `10.N.i.2` in B, MTU 9000). The devices' addresses live
//! on each namespace's loopback (`10.N.255.{1,3}` in A, `10.N.255.{2,4}` in
//! B), reached through pair 0 by default. Policy routing makes the paths
//! real: an nftables route chain marks packets of the SRD addresses
//! (`.1` and `.2`) by UDP source port — path `i`'s entropy port
//! `49152 + i` gets mark `i + 1` — and `ip rule fwmark i+1` sends them
//! through pair `i`; an ACK leaves from the port of the request it answers,
//! so it comes back over the same pair. Everything else (the rxe devices
//! at `.3`/`.4`, which cannot spray) takes pair 0.
//!
//! Faults, each namespace's egress (this kernel has no `sch_netem` and no
//! NFQUEUE): random loss (`numgen random mod 1000 < N drop`), a black-holed
//! pair (`oifname … drop`), and different rates per pair (`tbf`, so the
//! queueing delays differ and sprayed packets arrive reordered). The
//! namespaces are removed on drop (also on panic).
//!
//! Delay needs more ([`Net::new_relayed`]): a third namespace M sits in the
//! middle of every pair (A —veth— M —veth— B) and a user-space netem
//! (`softverbs_netem::Relay`, AF_PACKET) forwards each frame across it
//! after a delay, with loss and reordering if asked
//! ([`Net::set_impairment`]). M's interfaces carry no addresses (IPv6 off,
//! no forwarding), so frames cross only through the relay; A's and B's
//! ends compute their checksums themselves (`ethtool -K … tx off`: a
//! frame read off a packet socket carries no checksum yet when the sender
//! left it to the "hardware").

#![allow(dead_code)] // each user takes what it needs

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Arc;

use softverbs_devices::{DeviceConfig, DeviceKind, SoftDevice};
use softverbs_netem::{Direction, Impairment, LinkStats, Relay};
use softverbs_transport::Mtu;

/// First entropy port (`softverbs_srd::ENTROPY_BASE_PORT`).
const ENTROPY_BASE_PORT: u16 = 49152;

/// Runs a command; its stderr on failure.
pub fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// True when running as root (namespaces need it).
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Two namespaces joined by several paths.
pub struct Net {
    /// Namespace of side A.
    pub a: String,
    /// Namespace of side B.
    pub b: String,
    tag: String,
    net: u8,
    /// Number of veth pairs.
    pub paths: usize,
    /// The middle namespace, when the pairs run through a relay.
    pub m: Option<String>,
    relay: Option<Relay>,
}

impl Net {
    /// Builds namespaces `sv<tag>a` / `sv<tag>b` (tag: at most 4
    /// characters, unique per concurrent user) with `paths` pairs on
    /// `10.<net>.0.0/16`.
    pub fn new(tag: &str, net: u8, paths: usize) -> Result<Net, String> {
        Self::build(tag, net, paths, false)
    }

    /// The same, but each pair runs through namespace `sv<tag>m`, where a
    /// user-space netem relays the frames (no impairment until
    /// [`Self::set_impairment`]).
    pub fn new_relayed(tag: &str, net: u8, paths: usize) -> Result<Net, String> {
        Self::build(tag, net, paths, true)
    }

    fn build(tag: &str, net: u8, paths: usize, relayed: bool) -> Result<Net, String> {
        assert!(tag.len() <= 4 && (1..=32).contains(&paths));
        let mut n = Net {
            a: format!("sv{tag}a"),
            b: format!("sv{tag}b"),
            tag: tag.to_string(),
            net,
            paths,
            m: relayed.then(|| format!("sv{tag}m")),
            relay: None,
        };
        let _ = sh(&["ip", "netns", "del", &n.a]);
        let _ = sh(&["ip", "netns", "del", &n.b]);
        if let Some(m) = &n.m {
            let _ = sh(&["ip", "netns", "del", m]);
        }
        sh(&["ip", "netns", "add", &n.a])?;
        // From here on, drop cleans up.
        sh(&["ip", "netns", "add", &n.b])?;
        if let Some(m) = &n.m {
            sh(&["ip", "netns", "add", m])?;
            // No addresses, no IPv6, no forwarding (a new namespace's
            // default): M's kernel leaves the frames to the relay.
            n.exec(
                m,
                &[
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                    "net.ipv4.ip_forward=0",
                ],
            )?;
        }
        for ns in [&n.a, &n.b] {
            // Packets arrive on whichever pair their path took, for an
            // address on lo: no reverse-path filtering.
            n.exec(
                ns,
                &[
                    "sysctl",
                    "-qw",
                    "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.default.rp_filter=0",
                ],
            )?;
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        let mut relay_pairs = Vec::new();
        for i in 0..paths {
            let (va, vb) = (n.veth(i, 'a'), n.veth(i, 'b'));
            if let Some(m) = &n.m {
                let (ma, mb) = (format!("{va}m"), format!("{vb}m"));
                for (ns, v, mv) in [(&n.a, &va, &ma), (&n.b, &vb, &mb)] {
                    sh(&[
                        "ip", "link", "add", v, "netns", ns, "type", "veth", "peer", "name", mv,
                        "netns", m,
                    ])?;
                    sh(&["ip", "-n", m, "link", "set", mv, "mtu", "9000", "up"])?;
                    n.exec(ns, &["ethtool", "-K", v, "tx", "off"])?;
                }
                relay_pairs.push((ma, mb));
            } else {
                sh(&[
                    "ip", "link", "add", &va, "netns", &n.a, "type", "veth", "peer", "name", &vb,
                    "netns", &n.b,
                ])?;
            }
            for (ns, dev, host) in [(&n.a, &va, 1), (&n.b, &vb, 2)] {
                let addr = format!("10.{net}.{i}.{host}/24");
                sh(&["ip", "-n", ns, "addr", "add", &addr, "dev", dev])?;
                sh(&["ip", "-n", ns, "link", "set", dev, "mtu", "9000", "up"])?;
            }
        }
        if let Some(m) = &n.m {
            let seed = 0x5eed_0000 + u64::from(net);
            let relay = within(m, move || Relay::start(&relay_pairs, seed))?
                .map_err(|e| format!("netem relay in {m}: {e}"))?;
            n.relay = Some(relay);
        }
        let hosts = format!("10.{net}.255.0/24");
        for (ns, mine, peer) in [(&n.a, [1, 3], 2), (&n.b, [2, 4], 1)] {
            for h in mine {
                let a = format!("10.{net}.255.{h}/32");
                sh(&["ip", "-n", ns, "addr", "add", &a, "dev", "lo"])?;
            }
            for i in 0..paths {
                let via = format!("10.{net}.{i}.{peer}");
                let dev = n.veth(i, if peer == 2 { 'a' } else { 'b' });
                if i == 0 {
                    sh(&[
                        "ip", "-n", ns, "route", "add", &hosts, "via", &via, "dev", &dev,
                    ])?;
                }
                let table = (100 + i).to_string();
                sh(&[
                    "ip", "-n", ns, "route", "add", &hosts, "via", &via, "dev", &dev, "table",
                    &table,
                ])?;
                let mark = (i + 1).to_string();
                sh(&[
                    "ip", "-n", ns, "rule", "add", "fwmark", &mark, "table", &table,
                ])?;
            }
            let t = n.table();
            n.nft(ns, &format!("add table inet {t}"))?;
            n.nft(
                ns,
                &format!("add chain inet {t} route {{ type route hook output priority mangle ; }}"),
            )?;
            let map: Vec<String> = (0..paths)
                .map(|i| format!("{} : {}", ENTROPY_BASE_PORT as usize + i, i + 1))
                .collect();
            n.nft(
                ns,
                &format!(
                    "add rule inet {t} route ip saddr {{ 10.{net}.255.1, 10.{net}.255.2 }} meta l4proto udp meta mark set udp sport map {{ {} }}",
                    map.join(", ")
                ),
            )?;
            n.nft(
                ns,
                &format!("add chain inet {t} out {{ type filter hook output priority 0 ; }}"),
            )?;
            // The black hole sits after rerouting: in the output hook a
            // packet's device is still the one before the mark moved it.
            n.nft(
                ns,
                &format!("add chain inet {t} post {{ type filter hook postrouting priority 0 ; }}"),
            )?;
            n.nft(
                ns,
                &format!(
                    "add chain inet {t} cemark {{ type filter hook postrouting priority 10 ; }}"
                ),
            )?;
            // Arriving packets that are ECN-capable (ECT(0)), counted.
            n.nft(
                ns,
                &format!("add chain inet {t} inp {{ type filter hook input priority 0 ; }}"),
            )?;
            n.nft(
                ns,
                &format!("add rule inet {t} inp meta l4proto udp ip ecn ect0 counter"),
            )?;
        }
        n.set_faults(0, None)?;
        Ok(n)
    }

    fn table(&self) -> String {
        format!("sv{}", self.tag)
    }

    /// The name of pair `i`'s end in namespace `side` ('a' or 'b').
    pub fn veth(&self, i: usize, side: char) -> String {
        format!("sv{}{i}{side}", self.tag)
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Result<String, String> {
        let mut a = vec!["ip", "netns", "exec", ns];
        a.extend_from_slice(args);
        sh(&a)
    }

    fn nft(&self, ns: &str, cmd: &str) -> Result<String, String> {
        let mut a = vec!["ip", "netns", "exec", ns, "nft"];
        a.extend(cmd.split(' '));
        sh(&a)
    }

    /// Device address `h` (1, 3: in A; 2, 4: in B). SRD devices must use 1
    /// and 2 (the addresses whose packets are spread over the paths).
    pub fn addr(&self, h: u8) -> [u8; 4] {
        [10, self.net, 255, h]
    }

    /// Random loss of `per_mille`/1000 of the UDP packets leaving each
    /// namespace over a veth (not the loopback: a device wakes its own I/O
    /// thread with a datagram to itself, and one lost at shutdown left the
    /// thread in `recvmmsg` for good), and everything leaving on pair
    /// `black_hole`, if any.
    /// Replaces the previous faults; counters restart.
    pub fn set_faults(&self, per_mille: u32, black_hole: Option<usize>) -> Result<(), String> {
        let t = self.table();
        for (ns, side) in [(&self.a, 'a'), (&self.b, 'b')] {
            self.nft(ns, &format!("flush chain inet {t} out"))?;
            self.nft(ns, &format!("flush chain inet {t} post"))?;
            self.nft(
                ns,
                &format!("add rule inet {t} out meta l4proto udp counter"),
            )?;
            if let Some(p) = black_hole {
                let dev = self.veth(p, side);
                self.nft(
                    ns,
                    &format!("add rule inet {t} post oifname \"{dev}\" counter drop"),
                )?;
            }
            if per_mille > 0 {
                self.nft(
                    ns,
                    &format!(
                        "add rule inet {t} out oifname != \"lo\" meta l4proto udp numgen random mod 1000 < {per_mille} counter drop"
                    ),
                )?;
            }
        }
        Ok(())
    }

    /// Impairs every pair, both directions, on the relay (frames arriving
    /// from now on); an error when the pairs are not relayed.
    pub fn set_impairment(&self, imp: Impairment) -> Result<(), String> {
        self.relay()?.set_all(imp);
        Ok(())
    }

    /// Impairs pair `i` on the relay: `a_to_b` on frames from A to B,
    /// `b_to_a` on the others.
    pub fn set_path_impairment(
        &self,
        i: usize,
        a_to_b: Impairment,
        b_to_a: Impairment,
    ) -> Result<(), String> {
        let r = self.relay()?;
        r.set(i, Direction::AToB, a_to_b);
        r.set(i, Direction::BToA, b_to_a);
        Ok(())
    }

    /// The relay's counts per pair (`[A→B, B→A]`); empty when not relayed.
    pub fn relay_stats(&self) -> Vec<[LinkStats; 2]> {
        self.relay.as_ref().map(Relay::stats).unwrap_or_default()
    }

    fn relay(&self) -> Result<&Relay, String> {
        let r = self
            .relay
            .as_ref()
            .ok_or("these pairs run through no relay (Net::new_relayed)")?;
        if r.is_running() {
            Ok(r)
        } else {
            Err("the netem relay stopped (I/O error)".into())
        }
    }

    /// UDP packets that arrived in B with ECT(0) so far.
    pub fn ect0_into_b(&self) -> u64 {
        let t = self.table();
        self.nft(&self.b, &format!("list chain inet {t} inp"))
            .unwrap_or_default()
            .split("packets ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Marks `per_mille`/1000 of the UDP packets leaving A over a veth ECN
    /// congestion experienced (as a congested switch would; no marking
    /// qdisc exists on this kernel). Replaces the previous marking.
    pub fn set_ce_marking(&self, per_mille: u32) -> Result<(), String> {
        let t = self.table();
        self.nft(&self.a, &format!("flush chain inet {t} cemark"))?;
        if per_mille > 0 {
            self.nft(
                &self.a,
                &format!(
                    "add rule inet {t} cemark oifname != \"lo\" meta l4proto udp numgen random mod 1000 < {per_mille} ip ecn set ce"
                ),
            )?;
        }
        Ok(())
    }

    /// Rate-limits A's end of each pair (`None`: no limit) with `tbf` and a
    /// deep queue, so each path has its own queueing delay and nothing is
    /// dropped for want of room (see [`Self::qdisc_drops`]).
    pub fn set_rates(&self, rates: &[Option<&str>]) -> Result<(), String> {
        for (i, r) in rates.iter().enumerate().take(self.paths) {
            let dev = self.veth(i, 'a');
            let _ = sh(&["tc", "-n", &self.a, "qdisc", "del", "dev", &dev, "root"]);
            if let Some(rate) = r {
                sh(&[
                    "tc", "-n", &self.a, "qdisc", "add", "dev", &dev, "root", "tbf", "rate", rate,
                    "burst", "256kb", "limit", "64mb",
                ])?;
            }
        }
        Ok(())
    }

    /// Packets the qdiscs of A's pairs dropped so far.
    pub fn qdisc_drops(&self) -> u64 {
        let out = sh(&["tc", "-n", &self.a, "-s", "qdisc", "show"]).unwrap_or_default();
        out.split("dropped ")
            .skip(1)
            .filter_map(|s| s.split(',').next()?.trim().parse::<u64>().ok())
            .sum()
    }

    /// Packets sent so far on A's end of each pair (how the paths are used).
    pub fn tx_packets(&self) -> Vec<u64> {
        (0..self.paths)
            .map(|i| {
                let f = format!("/sys/class/net/{}/statistics/tx_packets", self.veth(i, 'a'));
                self.exec(&self.a, &["cat", &f])
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0)
            })
            .collect()
    }

    /// The nftables counters of A's egress chain (UDP sent; dropped).
    pub fn counters(&self) -> String {
        let t = self.table();
        self.nft(&self.a, &format!("list chain inet {t} out"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once("counter ").map(|(_, c)| c.trim().to_string()))
            .collect::<Vec<_>>()
            .join(" / ")
    }

    /// A device of `kind` at address `h` (see [`Self::addr`]) whose sockets
    /// live in the namespace of that address, spraying over all paths.
    pub fn device(
        &self,
        name: &str,
        kind: DeviceKind,
        h: u8,
        mtu: Mtu,
    ) -> Result<Arc<SoftDevice>, String> {
        let ip = IpAddr::V4(Ipv4Addr::from(self.addr(h)));
        let cfg = DeviceConfig::new(name, kind, ip)
            .with_mtu(mtu)
            .with_paths(self.paths as u16);
        let dev = Arc::new(softverbs_devices::open_device(cfg));
        let d2 = dev.clone();
        let ns = if h % 2 == 1 { &self.a } else { &self.b };
        within(ns, move || d2.open().map_err(|e| e.to_string())).and_then(|r| r)?;
        Ok(dev)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The relay's thread first, while its interfaces still exist.
        drop(self.relay.take());
        let _ = sh(&["ip", "netns", "del", &self.a]);
        let _ = sh(&["ip", "netns", "del", &self.b]);
        if let Some(m) = &self.m {
            let _ = sh(&["ip", "netns", "del", m]);
        }
    }
}

/// Runs `f` on a thread inside namespace `ns` (sockets it creates, and
/// threads it starts, live there).
pub fn within<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns {path}: {e}"))?;
        Ok(f())
    })
    .join()
    .map_err(|_| "namespace thread panicked".to_string())?
}
