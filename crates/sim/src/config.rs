//! What a simulation run does: the workload, the fabric and the faults.

use core::fmt;
use core::str::FromStr;

use serde::Serialize;
use softverbs_transport::{Mtu, QpType};

use crate::net::LinkModel;

/// The operations a workload mixes (`--ops send,write,read,atomic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ops {
    /// SEND and SEND with immediate.
    pub send: bool,
    /// RDMA WRITE and RDMA WRITE with immediate.
    pub write: bool,
    /// RDMA READ (RC only).
    pub read: bool,
    /// Compare-and-swap and fetch-and-add (RC only).
    pub atomic: bool,
}

impl Ops {
    /// Every operation.
    pub const ALL: Ops = Ops {
        send: true,
        write: true,
        read: true,
        atomic: true,
    };
    /// SEND only.
    pub const SEND: Ops = Ops {
        send: true,
        write: false,
        read: false,
        atomic: false,
    };

    /// The subset a transport supports: UC has no READ or atomics, UD only SENDs.
    pub fn for_transport(self, t: QpType) -> Ops {
        match t {
            QpType::Rc => self,
            QpType::Uc => Ops {
                read: false,
                atomic: false,
                ..self
            },
            QpType::Ud => Ops {
                write: false,
                read: false,
                atomic: false,
                ..self
            },
        }
    }

    /// True when no operation is selected.
    pub fn is_empty(self) -> bool {
        !(self.send || self.write || self.read || self.atomic)
    }
}

impl Default for Ops {
    fn default() -> Self {
        Ops::ALL
    }
}

impl FromStr for Ops {
    type Err = String;

    /// A comma-separated list of `send`, `write`, `read`, `atomic` (or `all`).
    fn from_str(s: &str) -> Result<Ops, String> {
        let mut ops = Ops {
            send: false,
            write: false,
            read: false,
            atomic: false,
        };
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "send" => ops.send = true,
                "write" => ops.write = true,
                "read" => ops.read = true,
                "atomic" => ops.atomic = true,
                "all" => ops = Ops::ALL,
                other => {
                    return Err(format!(
                        "unknown operation `{other}` (expected send, write, read, atomic or all)"
                    ))
                }
            }
        }
        if ops.is_empty() {
            return Err("no operation given (expected a list of send, write, read, atomic)".into());
        }
        Ok(ops)
    }
}

impl fmt::Display for Ops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.send, "send"),
            (self.write, "write"),
            (self.read, "read"),
            (self.atomic, "atomic"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect();
        f.write_str(&names.join(","))
    }
}

/// Which transport the QP pairs use (`--transport rc|uc|ud|mix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum TransportMix {
    /// Every pair is RC.
    #[default]
    Rc,
    /// Every pair is UC.
    Uc,
    /// Every pair is UD.
    Ud,
    /// Each pair picks RC, UC or UD from the seed.
    Mix,
}

impl FromStr for TransportMix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "rc" => TransportMix::Rc,
            "uc" => TransportMix::Uc,
            "ud" => TransportMix::Ud,
            "mix" => TransportMix::Mix,
            other => {
                return Err(format!(
                    "unknown transport `{other}` (expected rc, uc, ud or mix)"
                ))
            }
        })
    }
}

impl fmt::Display for TransportMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportMix::Rc => "rc",
            TransportMix::Uc => "uc",
            TransportMix::Ud => "ud",
            TransportMix::Mix => "mix",
        })
    }
}

/// A fault aimed at one QP pair, with the error its requester must report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PairFault {
    /// From `after_ns` on, every packet to or from the responder QP of
    /// `pair` vanishes. An RC requester must complete the WQE it is waiting
    /// on with `RETRY_EXC_ERR` and flush every later one.
    SilentPeer {
        /// The pair.
        pair: usize,
        /// Virtual time at which the peer falls silent.
        after_ns: u64,
    },
    /// The responder of `pair` never posts a receive and its requester
    /// allows `rnr_retry` (< 7) RNR retries: the first SEND must complete
    /// with `RNR_RETRY_EXC_ERR` and every later WQE be flushed.
    RnrExhaust {
        /// The pair.
        pair: usize,
        /// The requester's `rnr_retry`.
        rnr_retry: u8,
    },
}

impl PairFault {
    /// The pair it hits.
    pub fn pair(&self) -> usize {
        match *self {
            PairFault::SilentPeer { pair, .. } | PairFault::RnrExhaust { pair, .. } => pair,
        }
    }
}

/// Everything a run depends on. Same config, same run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimConfig {
    /// The seed every random choice is drawn from.
    pub seed: u64,
    /// Number of QP pairs.
    pub qps: usize,
    /// Number of simulated hosts the pairs are spread over (at least 2).
    pub hosts: usize,
    /// Work requests posted per QP pair.
    pub messages: usize,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a packet is reordered (held back by a random delay).
    pub reorder: f64,
    /// Probability that a packet is duplicated.
    pub dup: f64,
    /// Probability that a packet has bits flipped.
    pub corrupt: f64,
    /// One-way fabric delay, in nanoseconds.
    pub delay_ns: u64,
    /// Largest extra delay of a reordered packet, in nanoseconds.
    pub reorder_ns: u64,
    /// Egress bandwidth per host, Gb/s (0 = infinite).
    pub bandwidth_gbps: f64,
    /// Path MTU.
    pub mtu: Mtu,
    /// Largest message, in bytes (`None`: four MTUs; UD is capped at one MTU).
    pub max_msg: Option<usize>,
    /// Operations to mix.
    pub ops: Ops,
    /// Transport of the pairs.
    pub transport: TransportMix,
    /// Most work requests outstanding per pair.
    pub window: usize,
    /// Receive WQEs each responder keeps posted.
    pub recv_depth: usize,
    /// Probability that a consumed receive WQE is reposted only after a
    /// random delay (up to a millisecond), letting receive queues run dry
    /// so that RC exercises RNR NAKs.
    pub rnr: f64,
    /// The local ACK timeout exponent of RC requesters (`None`: drawn per
    /// pair from 10..=14, about 4 to 67 ms).
    pub timeout: Option<u8>,
    /// Targeted faults, with the errors they must produce.
    pub faults: Vec<PairFault>,
    /// Stop with a livelock breach after this many events (`None`: scaled
    /// to the workload).
    pub max_events: Option<u64>,
    /// Stop with a stall breach after this much virtual time without a
    /// completion while work is outstanding, in nanoseconds.
    pub stall_ns: u64,
    /// Keep the last this many events (packets, posts, completions) and
    /// attach them to a breach (0: keep none; tracing slows a run down).
    pub trace: usize,
}

impl Default for SimConfig {
    /// Seed 1, 4 RC pairs over 4 hosts, 100 messages each, every operation,
    /// no faults, 1024-byte MTU, 25 Gb/s and 5 µs.
    fn default() -> Self {
        let link = LinkModel::default();
        SimConfig {
            seed: 1,
            qps: 4,
            hosts: 4,
            messages: 100,
            loss: 0.0,
            reorder: 0.0,
            dup: 0.0,
            corrupt: 0.0,
            delay_ns: link.delay_ns,
            reorder_ns: link.reorder_ns,
            bandwidth_gbps: link.bandwidth_gbps,
            mtu: Mtu::Mtu1024,
            max_msg: None,
            ops: Ops::ALL,
            transport: TransportMix::Rc,
            window: 8,
            recv_depth: 16,
            rnr: 0.0,
            timeout: None,
            faults: Vec::new(),
            max_events: None,
            stall_ns: 10_000_000_000,
            trace: 0,
        }
    }
}

impl SimConfig {
    /// The fault rates the issue's acceptance sweep uses: 10% loss, 10%
    /// reordering, 5% duplication, 1% corruption, every operation.
    pub fn issue_faults(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            loss: 0.10,
            reorder: 0.10,
            dup: 0.05,
            corrupt: 0.01,
            ..SimConfig::default()
        }
    }

    /// The fabric this config describes.
    pub fn link(&self) -> LinkModel {
        LinkModel {
            loss: self.loss,
            reorder: self.reorder,
            dup: self.dup,
            corrupt: self.corrupt,
            delay_ns: self.delay_ns,
            reorder_ns: self.reorder_ns,
            bandwidth_gbps: self.bandwidth_gbps,
        }
    }

    /// The largest message of a pair of type `t`.
    pub fn max_msg_for(&self, t: QpType) -> usize {
        let m = self.max_msg.unwrap_or(4 * self.mtu.bytes());
        if t == QpType::Ud {
            m.min(self.mtu.bytes())
        } else {
            m
        }
    }

    /// Check the config makes sense; the error says what to change.
    pub fn validate(&self) -> Result<(), String> {
        let prob = |name: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(format!(
                    "{name} must be a probability between 0 and 1, not {p}"
                ))
            }
        };
        prob("loss", self.loss)?;
        prob("reorder", self.reorder)?;
        prob("dup", self.dup)?;
        prob("corrupt", self.corrupt)?;
        prob("rnr", self.rnr)?;
        if self.loss >= 1.0 && self.messages > 0 {
            return Err("with 100% loss nothing is ever delivered; pick a loss below 1".into());
        }
        if self.qps == 0 {
            return Err("at least one QP pair is needed".into());
        }
        if self.hosts < 2 {
            return Err("at least two hosts are needed".into());
        }
        if self.window == 0 || self.window > 256 {
            return Err("the window must be between 1 and 256 work requests".into());
        }
        if self.recv_depth == 0 || self.recv_depth > 256 {
            return Err("the receive depth must be between 1 and 256".into());
        }
        if !self.bandwidth_gbps.is_finite() || self.bandwidth_gbps < 0.0 {
            return Err("the bandwidth must be a non-negative number of Gb/s".into());
        }
        if self.ops.is_empty() {
            return Err("no operation selected".into());
        }
        let only = |t: QpType| self.ops.for_transport(t).is_empty();
        match self.transport {
            TransportMix::Uc if only(QpType::Uc) => {
                return Err("UC supports only send and write".into())
            }
            TransportMix::Ud if only(QpType::Ud) => return Err("UD supports only send".into()),
            _ => {}
        }
        if self.max_msg.is_some_and(|m| m > (1 << 20)) {
            return Err("messages are capped at 1 MiB in the simulator".into());
        }
        for f in &self.faults {
            if f.pair() >= self.qps {
                return Err(format!(
                    "fault {f:?} names pair {} but there are {} pairs",
                    f.pair(),
                    self.qps
                ));
            }
            if let PairFault::RnrExhaust { rnr_retry, .. } = f {
                if *rnr_retry >= 7 {
                    return Err(
                        "rnr_retry 7 retries forever: an RNR-exhaust fault needs 0..=6".into(),
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_parse_and_print() {
        assert_eq!("send,read".parse::<Ops>().unwrap().to_string(), "send,read");
        assert_eq!("all".parse::<Ops>().unwrap(), Ops::ALL);
        assert!("send,jump".parse::<Ops>().is_err());
        assert!("".parse::<Ops>().is_err());
        assert_eq!(Ops::ALL.for_transport(QpType::Ud), Ops::SEND);
    }

    #[test]
    fn validate_catches_nonsense() {
        assert!(SimConfig::default().validate().is_ok());
        assert!(SimConfig {
            loss: 1.5,
            ..SimConfig::default()
        }
        .validate()
        .is_err());
        assert!(SimConfig {
            hosts: 1,
            ..SimConfig::default()
        }
        .validate()
        .is_err());
        let ud_write = SimConfig {
            transport: TransportMix::Ud,
            ops: "write".parse().unwrap(),
            ..SimConfig::default()
        };
        assert!(ud_write.validate().is_err());
        assert!(SimConfig {
            faults: vec![PairFault::SilentPeer {
                pair: 9,
                after_ns: 0
            }],
            ..SimConfig::default()
        }
        .validate()
        .is_err());
    }
}
