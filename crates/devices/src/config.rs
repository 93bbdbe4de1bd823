//! Which devices a process has: the `SOFTVERBS_DEVICES` environment
//! variable.
//!
//! ```text
//! SOFTVERBS_DEVICES = entry ( "," entry )*
//! entry             = name "=" kind ":" addr ( ":" port )? ( ":mtu=" mtu )? ( ":paths=" n )?
//! kind              = "rxe" | "udonly" | "srd"
//! addr              = an IPv4 address, or an IPv6 address in brackets
//! port              = UDP port (default 4791; 4793, UET's, for srd)
//! mtu               = active path MTU in bytes: 256, 512, 1024 (default), 2048, 4096
//! n                 = srd: UDP source ports (paths) to spray over, 1 to 64 (default 8)
//! ```
//!
//! An `srd` device (`efa0=srd:127.0.0.5`) binds its address on the UET
//! port (4793) to receive, on `49152 + i` for each path `i` to send, and
//! on 4791 for its UD QPs (RoCEv2): two `srd` devices need two addresses.
//!
//! For example `rxe0=rxe:127.0.0.1,ud0=udonly:127.0.0.3:4791`,
//! `rxe0=rxe:10.0.0.1:mtu=4096` or `rxe6=rxe:[::1]:4791`. Unset, the
//! default is [`DEFAULT_DEVICES`]: two rxe devices on 127.0.0.1 and
//! 127.0.0.2, so that one process can do RDMA between them with no
//! configuration.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use softverbs_core::VerbsError;
use softverbs_transport::Mtu;
use softverbs_wire::ROCEV2_UDP_PORT;

/// The environment variable that lists the devices.
pub const ENV_VAR: &str = "SOFTVERBS_DEVICES";

/// The devices of a process that sets no [`ENV_VAR`].
pub const DEFAULT_DEVICES: &str = "rxe0=rxe:127.0.0.1,rxe1=rxe:127.0.0.2";

/// The kinds of soft device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// Soft RoCE: RC, UC and UD over RoCEv2, wire-compatible with Linux
    /// `rdma_rxe`.
    Rxe,
    /// UD only (like usnic): no RC/UC, no RDMA READ/WRITE, atomics, SRQs or
    /// memory windows.
    UdOnly,
    /// EFA-like: UD and SRD (reliable unordered datagrams over UET), no
    /// RC/UC.
    Srd,
}

impl DeviceKind {
    /// The name used in configuration and reported by `Driver::kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Rxe => "rxe",
            DeviceKind::UdOnly => "udonly",
            DeviceKind::Srd => "srd",
        }
    }

    /// Parse `rxe`, `udonly` or `srd`.
    pub fn parse(s: &str) -> Option<DeviceKind> {
        match s {
            "rxe" => Some(DeviceKind::Rxe),
            "udonly" => Some(DeviceKind::UdOnly),
            "srd" => Some(DeviceKind::Srd),
            _ => None,
        }
    }

    /// The UDP port a device of this kind listens on by default.
    pub fn default_port(self) -> u16 {
        match self {
            DeviceKind::Srd => UET_UDP_PORT,
            _ => ROCEV2_UDP_PORT,
        }
    }
}

/// One device: its name, kind, address and active MTU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Device name (`rxe0`).
    pub name: String,
    /// Kind.
    pub kind: DeviceKind,
    /// IP address and UDP port the device sends from and listens on. Its
    /// peers are reached on the same port at their addresses.
    pub addr: SocketAddr,
    /// Active MTU of the port (the largest path MTU a QP may use).
    pub mtu: Mtu,
    /// `srd`: the paths (UDP source ports) packets are sprayed over.
    pub paths: u16,
}

/// UET's UDP port (IANA), where `srd` devices listen.
pub const UET_UDP_PORT: u16 = 4793;

/// The default number of paths of an `srd` device.
pub const DEFAULT_PATHS: u16 = 8;

impl DeviceConfig {
    /// A device on `ip`, port 4791 (4793 for `srd`), MTU 1024.
    pub fn new(name: &str, kind: DeviceKind, ip: IpAddr) -> Self {
        DeviceConfig {
            name: name.to_string(),
            kind,
            addr: SocketAddr::new(ip, kind.default_port()),
            mtu: Mtu::Mtu1024,
            paths: DEFAULT_PATHS,
        }
    }

    /// The same with `n` paths (`srd`).
    pub fn with_paths(mut self, n: u16) -> Self {
        self.paths = n.clamp(1, 64);
        self
    }

    /// The same on another UDP port.
    pub fn with_port(mut self, port: u16) -> Self {
        self.addr.set_port(port);
        self
    }

    /// The same with another active MTU.
    pub fn with_mtu(mut self, mtu: Mtu) -> Self {
        self.mtu = mtu;
        self
    }

    /// Parse one entry (`rxe0=rxe:127.0.0.1:4791:mtu=4096`).
    pub fn parse(entry: &str) -> Result<DeviceConfig, VerbsError> {
        let bad = |why: &str| {
            VerbsError::invalid(format!(
                "{ENV_VAR} entry {entry:?}: {why} (expected name=kind:addr[:port][:mtu=N][:paths=N], \
                 e.g. rxe0=rxe:127.0.0.1, rxe0=rxe:[::1]:4791:mtu=4096 or efa0=srd:127.0.0.5)"
            ))
        };
        let (name, rest) = entry.split_once('=').ok_or_else(|| bad("no '='"))?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad("the name must be letters, digits, '_' or '-'"));
        }
        let (kind, rest) = rest
            .split_once(':')
            .ok_or_else(|| bad("no ':' after the kind"))?;
        let kind = DeviceKind::parse(kind.trim())
            .ok_or_else(|| bad("unknown kind; kinds are rxe, udonly and srd"))?;
        let rest = rest.trim();
        let (ip, rest): (IpAddr, &str) = if let Some(r) = rest.strip_prefix('[') {
            let (v6, r) = r.split_once(']').ok_or_else(|| bad("no ']'"))?;
            let ip: Ipv6Addr = v6.parse().map_err(|_| bad("bad IPv6 address"))?;
            (IpAddr::V6(ip), r)
        } else {
            let (a, r) = rest.split_once(':').map_or((rest, ""), |(a, r)| (a, r));
            let ip = a
                .parse()
                .map_err(|_| bad("bad address (an IPv6 address needs brackets: [::1])"))?;
            (ip, if r.is_empty() { "" } else { &rest[a.len()..] })
        };
        let mut cfg = DeviceConfig::new(name, kind, ip);
        for field in rest.split(':').filter(|f| !f.is_empty()) {
            if let Some(m) = field.strip_prefix("mtu=") {
                cfg.mtu = m
                    .parse()
                    .ok()
                    .and_then(Mtu::from_bytes)
                    .ok_or_else(|| bad("the MTU must be 256, 512, 1024, 2048 or 4096"))?;
            } else if let Some(n) = field.strip_prefix("paths=") {
                if cfg.kind != DeviceKind::Srd {
                    return Err(bad("paths= applies to srd devices only"));
                }
                cfg.paths = n
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| bad("paths must be 1 to 64"))?;
            } else {
                let port: u16 = field.parse().map_err(|_| bad("bad port"))?;
                if port == 0 {
                    return Err(bad("port 0"));
                }
                cfg.addr.set_port(port);
            }
        }
        Ok(cfg)
    }

    /// Parse a whole list (comma-separated entries).
    pub fn parse_list(list: &str) -> Result<Vec<DeviceConfig>, VerbsError> {
        let mut out: Vec<DeviceConfig> = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let cfg = DeviceConfig::parse(entry)?;
            if out.iter().any(|c| c.name == cfg.name) {
                return Err(VerbsError::invalid(format!(
                    "{ENV_VAR}: device name {} appears twice",
                    cfg.name
                )));
            }
            if let Some(c) = out.iter().find(|c| c.addr == cfg.addr) {
                return Err(VerbsError::invalid(format!(
                    "{ENV_VAR}: {} and {} both use {}",
                    c.name, cfg.name, cfg.addr
                )));
            }
            out.push(cfg);
        }
        Ok(out)
    }

    /// The configured devices: [`ENV_VAR`] if set, else [`DEFAULT_DEVICES`].
    pub fn from_env() -> Result<Vec<DeviceConfig>, VerbsError> {
        match std::env::var(ENV_VAR) {
            Ok(v) if !v.trim().is_empty() => Self::parse_list(&v),
            _ => Self::parse_list(DEFAULT_DEVICES),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_two_loopback_rxe() {
        let v = DeviceConfig::parse_list(DEFAULT_DEVICES).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name, "rxe0");
        assert_eq!(v[1].addr, "127.0.0.2:4791".parse().unwrap());
        assert_eq!(v[1].mtu, Mtu::Mtu1024);
    }

    #[test]
    fn entries_with_port_mtu_and_v6() {
        let v = DeviceConfig::parse_list(
            "rxe0=rxe:127.0.0.1:5000:mtu=4096, ud0=udonly:127.0.0.3, r6=rxe:[::1]:mtu=2048",
        )
        .unwrap();
        assert_eq!(v[0].addr, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(v[0].mtu, Mtu::Mtu4096);
        assert_eq!(v[1].kind, DeviceKind::UdOnly);
        assert_eq!(v[1].addr.port(), 4791);
        assert_eq!(v[2].addr, "[::1]:4791".parse().unwrap());
        assert_eq!(v[2].mtu, Mtu::Mtu2048);
    }

    #[test]
    fn srd_entries() {
        let v = DeviceConfig::parse_list("efa0=srd:127.0.0.5, efa1=srd:127.0.0.6:paths=4:mtu=4096")
            .unwrap();
        assert_eq!(v[0].kind, DeviceKind::Srd);
        assert_eq!(v[0].addr, "127.0.0.5:4793".parse().unwrap());
        assert_eq!(v[0].paths, DEFAULT_PATHS);
        assert_eq!(v[1].paths, 4);
        assert_eq!(v[1].mtu, Mtu::Mtu4096);
        for bad in [
            "e=srd:127.0.0.5:paths=0",
            "e=srd:127.0.0.5:paths=65",
            "r=rxe:1.2.3.4:paths=2",
        ] {
            let e = DeviceConfig::parse_list(bad).unwrap_err().to_string();
            assert!(e.contains("paths"), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for bad in [
            "rxe0",
            "rxe0=foo:1.2.3.4",
            "rxe0=rxe:::1",
            "rxe0=rxe:1.2.3.4:mtu=1500",
            "rxe0=rxe:1.2.3.4:99999",
            "a=rxe:127.0.0.1,a=rxe:127.0.0.2",
            "a=rxe:127.0.0.1,b=rxe:127.0.0.1",
        ] {
            let e = DeviceConfig::parse_list(bad).unwrap_err().to_string();
            assert!(e.contains(ENV_VAR), "{bad}: {e}");
        }
    }
}
