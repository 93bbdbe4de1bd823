//! perftest 6.06's out-of-band exchange as a small state machine
//! (docs/oob-and-tools.md §2.2–2.3). The client writes first in every step;
//! every message goes out in one `write()`; the peer's `done` is never
//! read, and a reset after ours is fine.
//!
//! The calls, in order, with what each puts on the wire ("H" = one key
//! handshake; "Hq" = one per QP; "H0" = one with QP 0's key):
//!
//! | call | write/read/atomic_bw | send_bw, send_lat | write_lat, read_lat, atomic_lat |
//! |---|---|---|---|
//! | [`PerfOob::pre_steps`] | version, page, cache line, MTU | same | same |
//! | [`PerfOob::exchange_qp_info`] (then move QPs to RTR/RTS) | Hq | Hq | H0, Hq |
//! | [`PerfOob::confirm_connected`] (returns what to print as remote) | Hq | H0, Hq | Hq |
//! | [`PerfOob::start_barrier`] (send: after posting receives) | H0 | H0 | H0 |
//! | [`PerfOob::begin_size`] (per size) | duplex: H0 | `-a`: H0 from the second size on | — |
//! | [`PerfOob::end_size`] (per size) | duplex `-a`: H0 | send_bw `-a`: H0 | — |
//! | [`PerfOob::end_of_test`] | non-duplex: H0 (the server waits here while the client measures) | — | — |
//! | [`PerfOob::exchange_results`] | 5 × 8 bytes | send_bw duplex only | — |
//! | [`PerfOob::finish`] | H0, `done` | H0, `done` | write_lat: nothing; read/atomic_lat: H0, `done` (the server calls it right after the start barrier and waits while the client measures) |

use std::time::Duration;

use super::msg::{
    self, check_peer_version, decode_mtu, decode_u32, decode_version, encode_mtu, encode_u32,
    encode_version, key_len, BwReport, QpInfoMsg, DONE, MTU_LEN, REPORT_FIELD_LEN, VERSION,
    VERSION_LEN,
};
use super::{Kind, PerfTest, Verb};
use crate::pingpong::net::{Family, OobError, OobListener, OobStream};

/// Which side this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Connects (has a host argument); writes first in every step.
    Client,
    /// Listens.
    Server,
}

/// What shapes the exchange.
#[derive(Clone, Debug, PartialEq)]
pub struct OobConfig {
    /// The test.
    pub test: PerfTest,
    /// `-q` (latency tests: 1).
    pub num_qps: usize,
    /// `-b`.
    pub duplex: bool,
    /// `-a`.
    pub all_sizes: bool,
    /// GID format of the key (`gid_index != -1`; always on RoCE).
    pub with_gid: bool,
    /// Bound on `connect`.
    pub connect_timeout: Duration,
    /// Bound on each read, except where we wait for the peer's measurement
    /// (`None`: forever).
    pub io_timeout: Option<Duration>,
}

impl OobConfig {
    #[allow(dead_code)] // used by tests/oob_golden.rs
    /// Defaults for a test: one QP, GID format, 10 s connect, 60 s reads.
    pub fn new(test: PerfTest) -> Self {
        OobConfig {
            test,
            num_qps: 1,
            duplex: false,
            all_sizes: false,
            with_gid: true,
            connect_timeout: Duration::from_secs(10),
            io_timeout: Some(Duration::from_secs(60)),
        }
    }
}

/// Our side of the pre-steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysInfo {
    /// Page size (`cycle_buffer`), 4096 on x86.
    pub page_size: u32,
    /// Cache line size, 64 on x86.
    pub cache_line: u32,
    /// Our port's MTU enum (1 = 256 … 5 = 4096), or `-m`'s.
    pub mtu: u8,
}

impl Default for SysInfo {
    fn default() -> Self {
        SysInfo {
            page_size: 4096,
            cache_line: 64,
            mtu: 3,
        }
    }
}

/// What the pre-steps agreed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The peer's version text.
    pub peer_version: String,
    /// Max of both page sizes (`cycle_buffer`).
    pub page_size: u32,
    /// Max of both cache line sizes.
    pub cache_line: u32,
    /// The smaller MTU enum (ours if the peer's is invalid).
    pub mtu: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Connected,
    PreStepsDone,
    KeysExchanged,
    ConnectConfirmed,
    Running,
    Measured,
    Finished,
}

/// One side of a perftest out-of-band exchange.
#[derive(Debug)]
pub struct PerfOob {
    stream: OobStream,
    role: Role,
    cfg: OobConfig,
    phase: Phase,
    local: Vec<QpInfoMsg>,
    /// Sizes begun so far ([`PerfOob::begin_size`]).
    sizes_begun: u32,
}

impl PerfOob {
    /// Binds the server's port on every IPv4 address (0 = ephemeral; see
    /// [`OobListener::port`]). Print the "Waiting for client" banner, then
    /// [`PerfOob::accept`].
    pub fn listen(port: u16) -> Result<OobListener, OobError> {
        OobListener::bind(None, port)
    }

    /// Server: waits (forever) for one client.
    pub fn accept(listener: OobListener, cfg: OobConfig) -> Result<Self, OobError> {
        let stream = listener.accept(None, cfg.io_timeout)?;
        Ok(Self::new(stream, Role::Server, cfg))
    }

    /// Client: connects to `host:port` over IPv4, once (no retry).
    pub fn connect(host: &str, port: u16, cfg: OobConfig) -> Result<Self, OobError> {
        let stream = OobStream::connect(
            host,
            port,
            Family::Ipv4,
            cfg.connect_timeout,
            cfg.io_timeout,
        )?;
        Ok(Self::new(stream, Role::Client, cfg))
    }

    fn new(stream: OobStream, role: Role, mut cfg: OobConfig) -> Self {
        if cfg.test.kind == Kind::Lat {
            cfg.num_qps = 1;
        }
        PerfOob {
            stream,
            role,
            cfg,
            phase: Phase::Connected,
            local: Vec::new(),
            sizes_begun: 0,
        }
    }

    #[allow(dead_code)] // used by tests/oob_golden.rs
    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    #[allow(dead_code)] // used by tests/oob_golden.rs
    /// The peer's address.
    pub fn peer(&self) -> &str {
        self.stream.peer()
    }

    #[allow(dead_code)] // used by tests/oob_golden.rs
    /// The configuration in force.
    pub fn config(&self) -> &OobConfig {
        &self.cfg
    }

    fn expect(&self, at: Phase, call: &str) -> Result<(), OobError> {
        if self.phase != at {
            return Err(OobError::Sequence {
                reason: format!("{call} called in phase {:?}, expected {at:?}", self.phase),
            });
        }
        Ok(())
    }

    /// One exchange step: client writes then reads, server reads then
    /// writes.
    fn step(&mut self, what: &str, mine: &[u8], n: usize) -> Result<Vec<u8>, OobError> {
        match self.role {
            Role::Client => {
                self.stream.send(what, mine)?;
                self.stream.recv(&format!("the peer's {what}"), n)
            }
            Role::Server => {
                let theirs = self.stream.recv(&format!("the peer's {what}"), n)?;
                self.stream.send(what, mine)?;
                Ok(theirs)
            }
        }
    }

    /// One key handshake with `local[i]`.
    fn hand_shake(&mut self, i: usize) -> Result<QpInfoMsg, OobError> {
        let mine = self.local[i].encode();
        let n = key_len(self.cfg.with_gid);
        let theirs = self.step(&format!("QP {i} key ({n} bytes)"), &mine, n)?;
        QpInfoMsg::decode(&theirs, self.cfg.with_gid)
    }

    /// Hq: one handshake per QP.
    fn hand_shake_all(&mut self) -> Result<Vec<QpInfoMsg>, OobError> {
        (0..self.local.len()).map(|i| self.hand_shake(i)).collect()
    }

    /// H0 as a barrier; with `wait_for_peer` the read has no timeout (the
    /// peer is measuring).
    fn barrier(&mut self, wait_for_peer: bool) -> Result<(), OobError> {
        if wait_for_peer {
            let saved = self.stream.timeout();
            self.stream.set_timeout(None)?;
            let r = self.hand_shake(0);
            self.stream.set_timeout(saved)?;
            r.map(|_| ())
        } else {
            self.hand_shake(0).map(|_| ())
        }
    }

    /// Version (16 bytes), page size, cache line size (4 bytes each,
    /// network order; max of both) and MTU enum (2 bytes; min of both).
    /// Fails if the peer is older than 5.70.
    pub fn pre_steps(&mut self, local: &SysInfo) -> Result<Negotiated, OobError> {
        self.expect(Phase::Connected, "pre_steps")?;
        let v = self.step("version (16 bytes)", &encode_version(VERSION), VERSION_LEN)?;
        let peer_version = decode_version(&v);
        check_peer_version(&peer_version)?;
        let p = self.step("page size (4 bytes)", &encode_u32(local.page_size), 4)?;
        let c = self.step(
            "cache line size (4 bytes)",
            &encode_u32(local.cache_line),
            4,
        )?;
        let m = self.step("MTU (2 bytes)", &encode_mtu(local.mtu), MTU_LEN)?;
        let mtu = match decode_mtu(&m) {
            Some(rem) if local.mtu > rem => rem,
            _ => local.mtu,
        };
        self.phase = Phase::PreStepsDone;
        Ok(Negotiated {
            peer_version,
            page_size: local.page_size.max(decode_u32(&p)),
            cache_line: local.cache_line.max(decode_u32(&c)),
            mtu,
        })
    }

    /// Sends our QPs' keys and returns the peer's (write/read/atomic_lat:
    /// H0, Hq; bandwidth tests and send_lat: Hq). `local` has one entry per QP, each in the
    /// configured format (GID or not). Then move the QPs to RTR/RTS.
    pub fn exchange_qp_info(&mut self, local: &[QpInfoMsg]) -> Result<Vec<QpInfoMsg>, OobError> {
        self.expect(Phase::PreStepsDone, "exchange_qp_info")?;
        if local.len() != self.cfg.num_qps {
            return Err(OobError::Sequence {
                reason: format!("{} QP keys given for {} QPs", local.len(), self.cfg.num_qps),
            });
        }
        if let Some(bad) = local
            .iter()
            .position(|k| k.gid.is_some() != self.cfg.with_gid)
        {
            return Err(OobError::Sequence {
                reason: format!("QP {bad}'s key does not match the configured GID format"),
            });
        }
        self.local = local.to_vec();
        // write/read/atomic_lat open with H0; send_lat does not (its H0
        // comes after ctx_connect, in confirm_connected).
        let t = self.cfg.test;
        if t.kind == Kind::Lat && t.verb != Verb::Send {
            self.barrier(false)?;
        }
        let remote = self.hand_shake_all()?;
        self.phase = Phase::KeysExchanged;
        Ok(remote)
    }

    /// After the QPs are connected: send tests H0, then Hq for everyone;
    /// returns the peer's keys again (the real tools print the remote
    /// address lines from this round).
    pub fn confirm_connected(&mut self) -> Result<Vec<QpInfoMsg>, OobError> {
        self.expect(Phase::KeysExchanged, "confirm_connected")?;
        if self.cfg.test.verb == Verb::Send {
            self.barrier(false)?;
        }
        let remote = self.hand_shake_all()?;
        self.phase = Phase::ConnectConfirmed;
        Ok(remote)
    }

    /// H0 before the measurement ("additional handshake after RTR"; send
    /// tests: after the server posted its receives).
    pub fn start_barrier(&mut self) -> Result<(), OobError> {
        self.expect(Phase::ConnectConfirmed, "start_barrier")?;
        self.barrier(false)?;
        self.phase = Phase::Running;
        Ok(())
    }

    /// Before each message size (once without `-a`): duplex write/read/
    /// atomic_bw and `-a` send tests synchronise here (send: post receives
    /// first).
    pub fn begin_size(&mut self) -> Result<(), OobError> {
        self.expect(Phase::Running, "begin_size")?;
        let t = self.cfg.test;
        // Send tests make one H0 before each size's measurement (`-a`:
        // inside the size loop; otherwise once): the start barrier is the
        // first size's, so `-a` adds one from the second size on (found
        // against real ib_send_bw -a: one H0 too many).
        let sync = match t.verb {
            Verb::Send => self.cfg.all_sizes && self.sizes_begun > 0,
            _ => t.kind == Kind::Bw && self.cfg.duplex,
        };
        self.sizes_begun += 1;
        if sync {
            self.barrier(true)?;
        }
        Ok(())
    }

    /// After each message size: `-a` duplex write/read/atomic_bw and `-a`
    /// send_bw synchronise here.
    pub fn end_size(&mut self) -> Result<(), OobError> {
        self.expect(Phase::Running, "end_size")?;
        let t = self.cfg.test;
        let sync =
            t.kind == Kind::Bw && self.cfg.all_sizes && (t.verb == Verb::Send || self.cfg.duplex);
        if sync {
            self.barrier(true)?;
        }
        Ok(())
    }

    /// After the measurement: non-duplex write/read/atomic_bw make one H0
    /// (the server calls this right after [`PerfOob::start_barrier`] and
    /// waits, without timeout, while the client measures).
    pub fn end_of_test(&mut self) -> Result<(), OobError> {
        self.expect(Phase::Running, "end_of_test")?;
        let t = self.cfg.test;
        if t.kind == Kind::Bw && t.verb != Verb::Send && !self.cfg.duplex {
            self.barrier(true)?;
        }
        self.phase = Phase::Measured;
        Ok(())
    }

    /// `xchg_bw_reports`: five 8-byte steps. The client sends its result
    /// and gets junk back (the real server's values are uninitialised);
    /// the server gets the client's result (send `BwReport::default()`).
    /// With `-b` both are real. Only for write/read/atomic_bw and duplex
    /// send_bw.
    pub fn exchange_results(&mut self, mine: &BwReport) -> Result<BwReport, OobError> {
        let t = self.cfg.test;
        let allowed = t.kind == Kind::Bw && (t.verb != Verb::Send || self.cfg.duplex);
        if !allowed {
            return Err(OobError::Sequence {
                reason: format!(
                    "{} exchanges no results{}",
                    t.name(),
                    if t.verb == Verb::Send {
                        " without -b"
                    } else {
                        ""
                    }
                ),
            });
        }
        if !matches!(self.phase, Phase::Running | Phase::Measured) {
            return Err(OobError::Sequence {
                reason: format!("exchange_results called in phase {:?}", self.phase),
            });
        }
        let names = [
            "size",
            "iterations",
            "BW peak",
            "BW average",
            "message rate",
        ];
        let mut theirs = [[0u8; REPORT_FIELD_LEN]; 5];
        for (i, field) in mine.encode_fields().iter().enumerate() {
            let got = self.step(
                &format!("result {} (8 bytes)", names[i]),
                field,
                REPORT_FIELD_LEN,
            )?;
            theirs[i].copy_from_slice(&got);
        }
        self.phase = Phase::Measured;
        Ok(BwReport::decode_fields(&theirs))
    }

    /// Closes: H0 then `done` (write_lat: nothing), never reading the
    /// peer's `done`; a reset at that point is not an error. The read/
    /// atomic_lat server calls this right after the start barrier and
    /// waits here, without timeout, while the client measures.
    pub fn finish(mut self) -> Result<(), OobError> {
        if self.phase < Phase::ConnectConfirmed {
            // Early exit (an error elsewhere): just close.
            self.stream.close();
            return Ok(());
        }
        let t = self.cfg.test;
        if !(t.verb == Verb::Write && t.kind == Kind::Lat) {
            self.barrier(true)?;
            // The peer may already have closed (RST): not an error.
            let _ = self.stream.send("done", DONE);
        }
        self.phase = Phase::Finished;
        self.stream.close();
        Ok(())
    }
}

#[allow(dead_code)] // used by tests/oob_golden.rs
/// The number of bytes each side sends in a whole exchange, for a test
/// with `num_qps` QPs (no `-a`, no `-b`); used to check against captures.
pub fn bytes_per_side(cfg: &OobConfig) -> usize {
    let k = key_len(cfg.with_gid);
    let q = if cfg.test.kind == Kind::Lat {
        1
    } else {
        cfg.num_qps
    };
    let pre = VERSION_LEN + 4 + 4 + MTU_LEN;
    let t = cfg.test;
    let hs = match (t.verb, t.kind) {
        (Verb::Send, _) => 2 * q + 3,
        (_, Kind::Bw) => 2 * q + 3,
        (Verb::Write, Kind::Lat) => 2 + 2 * q,
        (_, Kind::Lat) => 3 + 2 * q,
    };
    let results = if t.kind == Kind::Bw && t.verb != Verb::Send {
        5 * REPORT_FIELD_LEN
    } else {
        0
    };
    let done = if t.verb == Verb::Write && t.kind == Kind::Lat {
        0
    } else {
        msg::DONE.len()
    };
    pre + hs * k + results + done
}
