//! The TCP plumbing shared by the pingpong and perftest out-of-band (OOB)
//! exchanges: connect, listen/accept once, send one message in one
//! `write()`, receive an exact number of bytes, with timeouts and errors that
//! say what was expected, from whom, and what to do about it.
//!
//! The real tools read each message with a single `read(fd, buf, N)` that
//! must return exactly `N`, so [`OobStream::send`] hands the whole message to
//! one `write()` with `TCP_NODELAY` set (one message, one segment).
//! `SO_REUSEADDR` is set on the listening socket by `std` itself on Unix.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::Duration;

/// The TCP port both rdma-core's pingpong tools and perftest use by default.
pub const DEFAULT_PORT: u16 = 18515;

/// Which address families a side may use: perftest is IPv4 only
/// (`AF_INET`), pingpong takes whatever `getaddrinfo` gives (`AF_UNSPEC`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4 only, as perftest.
    Ipv4,
    /// IPv4 or IPv6, as rdma-core's pingpong tools.
    Any,
}

/// Everything that can go wrong in an out-of-band exchange.
#[derive(Debug)]
pub enum OobError {
    /// The client could not connect to any address of the server.
    Connect {
        /// `host:port` as given.
        target: String,
        /// The last error seen.
        source: io::Error,
    },
    /// The host name did not resolve to a usable address.
    Resolve {
        /// `host:port` as given.
        target: String,
        /// Why.
        reason: String,
    },
    /// The server could not listen on its port.
    Listen {
        /// The address it tried to bind.
        addr: String,
        /// The error.
        source: io::Error,
    },
    /// No client connected in time.
    AcceptTimeout {
        /// The address listened on.
        addr: String,
        /// How long we waited.
        after: Duration,
    },
    /// The peer did not send a whole message in time.
    Timeout {
        /// What we were waiting for.
        what: String,
        /// The peer's address.
        peer: String,
        /// Bytes received of this message before the timeout.
        got: usize,
        /// The message's size.
        expected: usize,
        /// The timeout.
        after: Duration,
    },
    /// The peer closed the connection (or reset it) in the middle of the
    /// exchange.
    PeerClosed {
        /// What we were waiting for.
        what: String,
        /// The peer's address.
        peer: String,
        /// Bytes received of this message before the close.
        got: usize,
        /// The message's size.
        expected: usize,
    },
    /// Any other socket error.
    Io {
        /// What we were doing.
        what: String,
        /// The peer's address.
        peer: String,
        /// The error.
        source: io::Error,
    },
    /// The peer's message could not be parsed.
    Malformed {
        /// Which message.
        what: String,
        /// The bytes received.
        bytes: Vec<u8>,
        /// What was wrong with them.
        reason: String,
    },
    /// The peer speaks an incompatible version of the exchange.
    Incompatible {
        /// Why.
        reason: String,
    },
    /// The API was called out of order (a bug in the caller).
    Sequence {
        /// What was called and what was expected.
        reason: String,
    },
}

impl fmt::Display for OobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OobError::Connect { target, source } => write!(
                f,
                "couldn't connect to {target}: {source} (is the server side started first \
                 and listening on that port? the client does not retry)"
            ),
            OobError::Resolve { target, reason } => {
                write!(f, "couldn't resolve {target}: {reason}")
            }
            OobError::Listen { addr, source } => write!(
                f,
                "couldn't listen on {addr}: {source} (is another server using the port? \
                 pick another with -p)"
            ),
            OobError::AcceptTimeout { addr, after } => write!(
                f,
                "no client connected to {addr} within {:.1} s",
                after.as_secs_f64()
            ),
            OobError::Timeout {
                what,
                peer,
                got,
                expected,
                after,
            } => write!(
                f,
                "timed out after {:.1} s waiting for {what} from {peer} \
                 (got {got} of {expected} bytes); is the peer still running and using the same test and options?",
                after.as_secs_f64()
            ),
            OobError::PeerClosed {
                what,
                peer,
                got,
                expected,
            } => write!(
                f,
                "peer {peer} closed the connection while we waited for {what} \
                 (got {got} of {expected} bytes); look at the peer's error output, and check \
                 that both sides run the same test with the same options"
            ),
            OobError::Io { what, peer, source } => {
                write!(f, "socket error while {what} with {peer}: {source}")
            }
            OobError::Malformed {
                what,
                bytes,
                reason,
            } => write!(
                f,
                "malformed {what}: {reason}; received {} bytes \"{}\" (is the peer the \
                 same tool and version?)",
                bytes.len(),
                escape_bytes(bytes)
            ),
            OobError::Incompatible { reason } => write!(f, "incompatible peer: {reason}"),
            OobError::Sequence { reason } => write!(f, "out-of-band exchange misuse: {reason}"),
        }
    }
}

impl std::error::Error for OobError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OobError::Connect { source, .. }
            | OobError::Listen { source, .. }
            | OobError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Printable form of received bytes: ASCII as is, `\0` for NUL, `\xNN`
/// for anything else.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            0 => s.push_str("\\0"),
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// A listening socket that accepts exactly one client (the real servers
/// `listen(1)`, `accept` once and close the listener).
#[derive(Debug)]
pub struct OobListener {
    listener: TcpListener,
    addr: String,
}

impl OobListener {
    /// Binds `bind:port` (`bind` `None` = every IPv4 address, `0.0.0.0`;
    /// port 0 = an ephemeral port, see [`OobListener::port`]).
    pub fn bind(bind: Option<&str>, port: u16) -> Result<Self, OobError> {
        let host = bind.unwrap_or("0.0.0.0");
        let addr = join_host_port(host, port);
        let listener = TcpListener::bind(addr.as_str()).map_err(|source| OobError::Listen {
            addr: addr.clone(),
            source,
        })?;
        Ok(OobListener { listener, addr })
    }

    /// The port actually bound (useful after binding port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Waits for one client (forever with `None`, as the real servers do),
    /// then closes the listener. `io_timeout` applies to every later read.
    pub fn accept(
        self,
        accept_timeout: Option<Duration>,
        io_timeout: Option<Duration>,
    ) -> Result<OobStream, OobError> {
        let io_err = |what: &str, source| OobError::Io {
            what: what.to_string(),
            peer: self.addr.clone(),
            source,
        };
        let (stream, peer) = match accept_timeout {
            None => self.listener.accept().map_err(|e| io_err("accepting", e))?,
            Some(limit) => {
                self.listener
                    .set_nonblocking(true)
                    .map_err(|e| io_err("accepting", e))?;
                let step = Duration::from_millis(10);
                let mut waited = Duration::ZERO;
                loop {
                    match self.listener.accept() {
                        Ok(pair) => break pair,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            if waited >= limit {
                                return Err(OobError::AcceptTimeout {
                                    addr: self.addr.clone(),
                                    after: limit,
                                });
                            }
                            thread::sleep(step);
                            waited += step;
                        }
                        Err(e) => return Err(io_err("accepting", e)),
                    }
                }
            }
        };
        stream
            .set_nonblocking(false)
            .map_err(|e| io_err("accepting", e))?;
        OobStream::new(stream, peer.to_string(), io_timeout)
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One established out-of-band connection.
#[derive(Debug)]
pub struct OobStream {
    stream: TcpStream,
    peer: String,
    timeout: Option<Duration>,
}

impl OobStream {
    /// Connects to `host:port`, trying each resolved address of `family`
    /// once, in order (no retries, like the real clients). `connect_timeout`
    /// bounds each attempt; `io_timeout` bounds every later read.
    pub fn connect(
        host: &str,
        port: u16,
        family: Family,
        connect_timeout: Duration,
        io_timeout: Option<Duration>,
    ) -> Result<Self, OobError> {
        let target = join_host_port(host, port);
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| OobError::Resolve {
                target: target.clone(),
                reason: e.to_string(),
            })?
            .filter(|a| family == Family::Any || a.is_ipv4())
            .collect();
        if addrs.is_empty() {
            return Err(OobError::Resolve {
                target,
                reason: "no IPv4 address (perftest's exchange is IPv4 only)".to_string(),
            });
        }
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, connect_timeout) {
                Ok(stream) => return OobStream::new(stream, target, io_timeout),
                Err(e) => last = Some(e),
            }
        }
        Err(OobError::Connect {
            target,
            source: last.unwrap_or_else(|| io::Error::other("no address")),
        })
    }

    fn new(stream: TcpStream, peer: String, timeout: Option<Duration>) -> Result<Self, OobError> {
        let mut s = OobStream {
            stream,
            peer,
            timeout: None,
        };
        s.stream
            .set_nodelay(true)
            .map_err(|e| s.io("setting up", e))?;
        s.set_timeout(timeout)?;
        Ok(s)
    }

    fn io(&self, what: &str, source: io::Error) -> OobError {
        OobError::Io {
            what: what.to_string(),
            peer: self.peer.clone(),
            source,
        }
    }

    #[allow(dead_code)] // used by tests/oob_golden.rs
    /// The peer's address as text.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The read timeout now in force (`None`: wait forever).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Changes the read timeout (`None`: wait forever, as while a peer
    /// measures).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), OobError> {
        let timeout = timeout.filter(|t| !t.is_zero());
        self.stream
            .set_read_timeout(timeout)
            .map_err(|e| self.io("setting the timeout", e))?;
        self.timeout = timeout;
        Ok(())
    }

    /// Sends `msg` with a single `write()` (the rest, should the kernel
    /// take less, follows at once).
    pub fn send(&mut self, what: &str, msg: &[u8]) -> Result<(), OobError> {
        let wrote = self
            .stream
            .write(msg)
            .map_err(|e| self.io(&format!("sending {what}"), e))?;
        if wrote < msg.len() {
            self.stream
                .write_all(&msg[wrote..])
                .map_err(|e| self.io(&format!("sending {what}"), e))?;
        }
        Ok(())
    }

    /// Receives exactly `n` bytes of `what`.
    pub fn recv(&mut self, what: &str, n: usize) -> Result<Vec<u8>, OobError> {
        let mut buf = vec![0u8; n];
        let mut got = 0;
        while got < n {
            match self.stream.read(&mut buf[got..]) {
                Ok(0) => return Err(self.closed(what, got, n)),
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(OobError::Timeout {
                        what: what.to_string(),
                        peer: self.peer.clone(),
                        got,
                        expected: n,
                        after: self.timeout.unwrap_or_default(),
                    })
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    return Err(self.closed(what, got, n))
                }
                Err(e) => return Err(self.io(&format!("receiving {what}"), e)),
            }
        }
        Ok(buf)
    }

    fn closed(&self, what: &str, got: usize, expected: usize) -> OobError {
        OobError::PeerClosed {
            what: what.to_string(),
            peer: self.peer.clone(),
            got,
            expected,
        }
    }

    /// Closes the connection without reading anything more; errors (the
    /// peer may already have reset it) are ignored.
    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}
