//! Global identifiers. In RoCEv2 a GID is an IPv6 address; an IPv4 address
//! is carried v4-mapped (`::ffff:a.b.c.d`), as Linux builds the GID table.

use core::fmt;
use core::str::FromStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A 128-bit GID, in network byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Gid(pub [u8; 16]);

impl Gid {
    /// The all-zero GID.
    pub const ZERO: Gid = Gid([0; 16]);

    /// The v4-mapped GID `::ffff:a.b.c.d` (what Linux puts in the GID table
    /// for an IPv4 address of a RoCEv2 port).
    pub fn from_ipv4(ip: Ipv4Addr) -> Self {
        Gid(ip.to_ipv6_mapped().octets())
    }

    /// The GID as an IP address: IPv4 if it is v4-mapped, IPv6 otherwise.
    pub fn to_ip(&self) -> IpAddr {
        let v6 = Ipv6Addr::from(self.0);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }

    /// The GID as an IPv6 address (v4-mapped ones stay mapped).
    pub fn to_ipv6(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.0)
    }

    /// Whether the GID is a v4-mapped IPv4 address.
    pub fn is_v4_mapped(&self) -> bool {
        self.to_ipv6().to_ipv4_mapped().is_some()
    }

    /// The 32 lowercase hex digits, bytes in order, as `ibv_*_pingpong`
    /// puts a GID in its out-of-band message
    /// (`00000000000000000000ffff0a4d0002` for `::ffff:10.77.0.2`).
    pub fn to_hex32(&self) -> String {
        use fmt::Write;
        let mut s = String::with_capacity(32);
        for b in self.0 {
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    /// Parses 32 hex digits (either case), the inverse of
    /// [`Gid::to_hex32`]. `None` if `s` is not exactly 32 hex digits.
    pub fn from_hex32(s: &str) -> Option<Self> {
        let s = s.as_bytes();
        if s.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(Gid(out))
    }
}

impl From<Ipv4Addr> for Gid {
    /// v4-mapped, see [`Gid::from_ipv4`].
    fn from(ip: Ipv4Addr) -> Self {
        Gid::from_ipv4(ip)
    }
}

impl From<Ipv6Addr> for Gid {
    fn from(ip: Ipv6Addr) -> Self {
        Gid(ip.octets())
    }
}

impl From<IpAddr> for Gid {
    /// IPv4 addresses become v4-mapped GIDs.
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Gid::from_ipv4(v4),
            IpAddr::V6(v6) => Gid::from(v6),
        }
    }
}

impl From<[u8; 16]> for Gid {
    fn from(b: [u8; 16]) -> Self {
        Gid(b)
    }
}

impl fmt::Display for Gid {
    /// IPv6 text form, v4-mapped shown as `::ffff:10.0.0.1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_ipv6(), f)
    }
}

impl fmt::Debug for Gid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gid({self})")
    }
}

/// The error of [`Gid::from_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseGidError;

impl fmt::Display for ParseGidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid GID: expected an IPv6/IPv4 address or 32 hex digits")
    }
}

impl std::error::Error for ParseGidError {}

impl FromStr for Gid {
    type Err = ParseGidError;

    /// Accepts IPv6 text (`fe80::1`, `::ffff:10.0.0.1`), IPv4 text (mapped)
    /// or 32 hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Gid::from(ip));
        }
        Gid::from_hex32(s).ok_or(ParseGidError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_mapped() {
        let g = Gid::from_ipv4(Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(g.to_hex32(), "00000000000000000000ffff0a4d0002");
        assert_eq!(g.to_string(), "::ffff:10.77.0.2");
        assert_eq!(g.to_ip(), IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2)));
        assert!(g.is_v4_mapped());
        assert_eq!(Gid::from_hex32(&g.to_hex32()), Some(g));
        assert_eq!("::ffff:10.77.0.2".parse(), Ok(g));
        assert_eq!("10.77.0.2".parse(), Ok(g));
        assert_eq!("00000000000000000000FFFF0A4D0002".parse(), Ok(g));
        assert_eq!(format!("{g:?}"), "Gid(::ffff:10.77.0.2)");
    }

    #[test]
    fn v6() {
        let ip: Ipv6Addr = "fe80::5054:ff:fe12:3456".parse().unwrap();
        let g = Gid::from(IpAddr::V6(ip));
        assert_eq!(g.to_ip(), IpAddr::V6(ip));
        assert_eq!(g.to_string(), "fe80::5054:ff:fe12:3456");
        assert!(!g.is_v4_mapped());
        assert_eq!(Gid::default(), Gid::ZERO);
    }

    #[test]
    fn bad_text() {
        assert_eq!("xyz".parse::<Gid>(), Err(ParseGidError));
        assert_eq!(Gid::from_hex32("00"), None);
        assert_eq!(Gid::from_hex32("g0000000000000000000ffff0a4d0002"), None);
        assert_eq!(Gid::from_hex32("é0000000000000000000ffff0a4d000"), None);
    }
}
