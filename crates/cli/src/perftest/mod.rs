//! `softverbs perf {send,write,read,atomic}_{bw,lat}`: the
//! device-independent parts of perftest 6.06 — options ([`args`]), the TCP
//! exchange ([`msg`], [`oob`]; shares [`crate::pingpong::net`]) and the
//! report computations and tables ([`report`]) — so that either side can be
//! the real `ib_*_{bw,lat}`. The specification is docs/oob-and-tools.md §2.

pub mod args;
pub mod msg;
pub mod oob;
pub mod report;

/// The verb a test measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verb {
    /// SEND/RECV.
    Send,
    /// RDMA WRITE.
    Write,
    /// RDMA READ.
    Read,
    /// Atomics (fetch-and-add or compare-and-swap).
    Atomic,
}

/// Bandwidth or latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `*_bw`.
    Bw,
    /// `*_lat`.
    Lat,
}

/// One of the eight tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PerfTest {
    /// The verb.
    pub verb: Verb,
    /// Bandwidth or latency.
    pub kind: Kind,
}

impl PerfTest {
    /// Every test, in `ib_*` order.
    pub const ALL: [PerfTest; 8] = [
        PerfTest::new(Verb::Send, Kind::Bw),
        PerfTest::new(Verb::Send, Kind::Lat),
        PerfTest::new(Verb::Write, Kind::Bw),
        PerfTest::new(Verb::Write, Kind::Lat),
        PerfTest::new(Verb::Read, Kind::Bw),
        PerfTest::new(Verb::Read, Kind::Lat),
        PerfTest::new(Verb::Atomic, Kind::Bw),
        PerfTest::new(Verb::Atomic, Kind::Lat),
    ];

    /// A test.
    pub const fn new(verb: Verb, kind: Kind) -> Self {
        PerfTest { verb, kind }
    }

    /// `write_bw`, `send_lat`, …
    pub fn name(self) -> &'static str {
        match (self.verb, self.kind) {
            (Verb::Send, Kind::Bw) => "send_bw",
            (Verb::Send, Kind::Lat) => "send_lat",
            (Verb::Write, Kind::Bw) => "write_bw",
            (Verb::Write, Kind::Lat) => "write_lat",
            (Verb::Read, Kind::Bw) => "read_bw",
            (Verb::Read, Kind::Lat) => "read_lat",
            (Verb::Atomic, Kind::Bw) => "atomic_bw",
            (Verb::Atomic, Kind::Lat) => "atomic_lat",
        }
    }

    /// The test named `name` (`write_bw`, or the real `ib_write_bw`).
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.strip_prefix("ib_").unwrap_or(name);
        PerfTest::ALL.into_iter().find(|t| t.name() == name)
    }

    /// True for `*_bw`.
    pub fn is_bw(self) -> bool {
        self.kind == Kind::Bw
    }
}
