//! The daemon from the command line: `softverbs daemon` (the same server as
//! `softverbsd`), `softverbs link add`/`delete` (iproute2's `rdma link add
//! rxe0 type rxe netdev eth0`), and where `dev`, `link`, `res` and `stat`
//! read from: the daemon when one is running (every process of the host),
//! this process's embedded devices otherwise.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use softverbs::Backend;

/// `softverbs daemon [--socket PATH] [--devices LIST] [--config FILE]`.
#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    /// The Unix socket to listen on (default: $SOFTVERBS_SOCKET, else
    /// $XDG_RUNTIME_DIR/softverbs.sock, else /run/softverbs/softverbs.sock);
    /// its file permissions decide who may use the daemon.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Devices in the SOFTVERBS_DEVICES syntax
    /// (`rxe0=rxe:10.0.0.1,efa0=srd:10.0.0.2`).
    #[arg(long, conflicts_with = "config")]
    pub devices: Option<String>,
    /// A configuration file: one device entry per line, `#` comments.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `softverbs daemon`: runs softverbsd in the foreground.
pub fn daemon(args: &DaemonArgs) -> Result<ExitCode> {
    let opts = softverbs_daemon::entry::Options {
        socket: args.socket.clone(),
        devices: args.devices.clone(),
        config: args.config.clone(),
    };
    Ok(softverbs_daemon::entry::run("softverbs daemon", &opts))
}

/// Where `dev`, `link`, `res` and `stat` read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// This process's own devices.
    Embedded,
    /// The daemon listening on this socket.
    Daemon(PathBuf),
}

impl Source {
    /// The daemon when one answers on its socket (and SOFTVERBS_BACKEND
    /// does not say `embedded`), this process otherwise.
    pub fn detect() -> Result<Source> {
        Ok(match Backend::from_env()? {
            Backend::Embedded => Source::Embedded,
            Backend::Daemon(p) => Source::Daemon(p),
        })
    }

    /// One line naming the source, for the top of `res`/`stat` output.
    pub fn describe(&self) -> String {
        match self {
            Source::Embedded => "embedded: this process".to_string(),
            Source::Daemon(p) => format!("daemon at {}: all processes", p.display()),
        }
    }

    /// The source as a JSON string (`-j` output's `source`).
    pub fn tag(&self) -> &'static str {
        match self {
            Source::Embedded => "embedded",
            Source::Daemon(_) => "daemon",
        }
    }
}

/// The device names the verbs API can open now, and where they come from
/// (for error messages): the running daemon's, else this process's.
pub fn device_names() -> Result<(Vec<String>, String)> {
    Ok(match Source::detect()? {
        Source::Embedded => (
            softverbs::devices()?.into_iter().map(|d| d.name).collect(),
            "configure them with SOFTVERBS_DEVICES".to_string(),
        ),
        Source::Daemon(p) => (
            softverbs_daemon::client::devices(&p)?,
            format!(
                "the devices of the daemon at {}: softverbs link add",
                p.display()
            ),
        ),
    })
}

/// The socket of the running daemon, or an error that says how to start one.
pub fn require_daemon(what: &str) -> Result<PathBuf> {
    match Source::detect()? {
        Source::Daemon(p) => Ok(p),
        Source::Embedded => {
            let p = Backend::default_socket();
            let why = if std::env::var(softverbs::BACKEND_ENV).as_deref() == Ok("embedded") {
                format!("{}=embedded is set", softverbs::BACKEND_ENV)
            } else {
                format!("no softverbsd answers on {}", p.display())
            };
            bail!(
                "`softverbs {what}` changes the devices of softverbsd, and {why}; \
                 start one with `softverbs daemon --socket {}` (or `softverbsd`), \
                 or point SOFTVERBS_SOCKET at a running one",
                p.display()
            )
        }
    }
}

/// The first IPv4 address of interface `name` (getifaddrs), or, when
/// `name` is an address itself, that address.
pub fn resolve_netdev(name: &str) -> Result<IpAddr> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(ip);
    }
    if let Some(v6) = name.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return Ok(IpAddr::V6(v6.parse().context("bad IPv6 address")?));
    }
    let mut seen = false;
    for ifa in nix::ifaddrs::getifaddrs().context("getifaddrs")? {
        if ifa.interface_name != name {
            continue;
        }
        seen = true;
        if let Some(sin) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
            return Ok(IpAddr::V4(sin.ip()));
        }
    }
    if seen {
        bail!("interface {name} has no IPv4 address (give an address instead: netdev 10.0.0.1)");
    }
    let mut names: Vec<String> = nix::ifaddrs::getifaddrs()
        .map(|it| it.map(|i| i.interface_name).collect())
        .unwrap_or_default();
    names.sort();
    names.dedup();
    bail!(
        "no interface named {name} (interfaces: {}); netdev takes an interface or an address",
        names.join(", ")
    )
}

/// What `link add NAME type KIND netdev IFACE [mtu N]` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkAdd {
    /// Device name.
    pub name: String,
    /// `rxe`, `udonly` or `srd`.
    pub kind: String,
    /// The interface or address.
    pub netdev: String,
    /// Active MTU.
    pub mtu: Option<u32>,
    /// UDP port.
    pub port: Option<u16>,
}

const LINK_ADD_USAGE: &str =
    "usage: softverbs link add NAME type rxe|udonly|srd netdev IFACE|ADDR [mtu N] [port N]";

/// Parses the words after `link add`, iproute2 style (keyword value pairs).
pub fn parse_link_add(words: &[String]) -> Result<LinkAdd> {
    let Some((name, rest)) = words.split_first() else {
        bail!("{LINK_ADD_USAGE}");
    };
    let (mut kind, mut netdev, mut mtu, mut port) = (None, None, None, None);
    let mut it = rest.iter();
    while let Some(k) = it.next() {
        let Some(v) = it.next() else {
            bail!("`{k}` needs a value; {LINK_ADD_USAGE}");
        };
        match k.as_str() {
            "type" => {
                if !["rxe", "udonly", "srd"].contains(&v.as_str()) {
                    bail!("unknown link type {v}: the types are rxe, udonly and srd");
                }
                kind = Some(v.clone());
            }
            "netdev" => netdev = Some(v.clone()),
            "mtu" => {
                let m: u32 = v.parse().with_context(|| format!("mtu {v}"))?;
                if ![256, 512, 1024, 2048, 4096].contains(&m) {
                    bail!("mtu {m}: an RDMA path MTU is 256, 512, 1024, 2048 or 4096");
                }
                mtu = Some(m);
            }
            "port" => port = Some(v.parse().with_context(|| format!("port {v}"))?),
            other => bail!("unknown keyword {other}; {LINK_ADD_USAGE}"),
        }
    }
    let (Some(kind), Some(netdev)) = (kind, netdev) else {
        bail!("`type` and `netdev` are required; {LINK_ADD_USAGE}");
    };
    Ok(LinkAdd {
        name: name.clone(),
        kind,
        netdev,
        mtu,
        port,
    })
}

impl LinkAdd {
    /// The `SOFTVERBS_DEVICES` entry of this link, its netdev resolved.
    pub fn entry(&self) -> Result<String> {
        let ip = resolve_netdev(&self.netdev)?;
        let mut e = match ip {
            IpAddr::V4(a) => format!("{}={}:{a}", self.name, self.kind),
            IpAddr::V6(a) => format!("{}={}:[{a}]", self.name, self.kind),
        };
        if let Some(p) = self.port {
            e.push_str(&format!(":{p}"));
        }
        if let Some(m) = self.mtu {
            e.push_str(&format!(":mtu={m}"));
        }
        Ok(e)
    }
}

/// `softverbs link add ...`.
pub fn link_add(words: &[String]) -> Result<ExitCode> {
    let req = parse_link_add(words)?;
    let path = require_daemon("link add")?;
    let entry = req.entry()?;
    let name = softverbs_daemon::control::link_add_entry(&path, &entry)
        .with_context(|| format!("link add {entry}"))?;
    eprintln!(
        "softverbs: {name} added ({entry}) to the daemon at {}",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `softverbs link delete NAME`.
pub fn link_delete(words: &[String]) -> Result<ExitCode> {
    let [name] = words else {
        bail!("usage: softverbs link delete NAME");
    };
    let path = require_daemon("link delete")?;
    softverbs_daemon::control::link_delete(&path, name)
        .with_context(|| format!("link delete {name}"))?;
    eprintln!(
        "softverbs: {name} deleted from the daemon at {}",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn link_add_words() {
        let l = parse_link_add(&w("rxe5 type rxe netdev 127.93.0.9 mtu 4096")).unwrap();
        assert_eq!(l.entry().unwrap(), "rxe5=rxe:127.93.0.9:mtu=4096");
        let l = parse_link_add(&w("efa1 type srd netdev lo")).unwrap();
        assert_eq!(l.entry().unwrap(), "efa1=srd:127.0.0.1");
        assert!(parse_link_add(&w("x type ib netdev lo")).is_err());
        assert!(parse_link_add(&w("x type rxe")).is_err());
        assert!(parse_link_add(&w("x type rxe netdev lo mtu 1500")).is_err());
        let e = parse_link_add(&w("x type rxe netdev nosuchif0"))
            .unwrap()
            .entry()
            .unwrap_err()
            .to_string();
        assert!(e.contains("no interface named nosuchif0"), "{e}");
    }
}
