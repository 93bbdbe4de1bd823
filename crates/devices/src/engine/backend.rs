//! The transport backends of the engine: what differs between the RoCE
//! transport (one `softverbs_transport::Qp` per QP, RoCEv2 on UDP 4791)
//! and SRD (one `softverbs_srd::SrdEndpoint` per device, UET on UDP 4793),
//! behind one sans-IO interface.
//!
//! The engine owns everything the backends share — PDs, memory keys, CQs,
//! SRQs, AHs, the QP table with each QP's PD, CQs, SRQ and event queue,
//! the sockets, the I/O threads and the lock — and drives a backend the
//! way the quinn-proto pattern drives a connection: feed it
//! ([`Backend::post_send`], [`Backend::post_recv`],
//! [`Backend::handle_datagram`], [`Backend::handle_timeout`]), then
//! **drain** it: [`Backend::poll_transmit`] until `None`, then
//! [`Backend::poll_completion`] until `None`, then [`Backend::poll_event`]
//! until `None`, always in that order and always to the end. A backend may
//! keep a list of the QPs that have work and forget it when `poll_event`
//! returns `None`. [`Backend::poll_timeout`] says when it wants
//! [`Backend::handle_timeout`].
//!
//! Memory is reached through [`Env`]: the engine's key table seen through
//! the PD of the QP concerned, so a backend never owns user buffers and
//! never crosses a PD.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use softverbs_core::driver::{DeviceCounters, DriverQpInit, QpInit, Wc};
use softverbs_core::events::AsyncEvents;
use softverbs_core::Result;
use softverbs_transport::{
    Instant, ModifyQp, PostError, QpAttrs, QpCounters, QpEvent, QpState, RecvWr, SendWr,
};

use super::keys::KeyTable;
use super::SrqEntry;

/// What the engine knows of every QP, whatever its backend.
pub(crate) struct QpMeta {
    /// Its PD.
    pub pd: u32,
    /// Creation attributes as granted (CQs and SRQ by driver id).
    pub init: QpInit,
    /// Its context's asynchronous events.
    pub events: Arc<AsyncEvents>,
    /// Index of its backend in the device.
    pub backend: usize,
}

/// The engine state a backend may touch while it runs.
pub(crate) struct Env<'a> {
    /// Memory regions and windows (reach them through the QP's PD).
    pub keys: &'a mut KeyTable,
    /// Shared receive queues.
    pub srqs: &'a mut HashMap<u32, SrqEntry>,
    /// Every QP's PD, CQs, SRQ.
    pub qps: &'a HashMap<u32, QpMeta>,
    /// Device counters (drop reasons).
    pub counters: &'a mut DeviceCounters,
    /// The address the backend's receive socket is bound to.
    pub local: SocketAddr,
    /// The datagram being handled arrived marked ECN congestion
    /// experienced (false outside `handle_datagram`).
    pub ce: bool,
}

/// A packet a backend wrote into the transmit buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Out {
    /// Where it goes.
    pub dst: SocketAddr,
    /// The socket of the backend's port it leaves from (0: the receive
    /// socket; SRD: `1 + path`).
    pub via: usize,
    /// Bytes written.
    pub len: usize,
}

/// State, attributes and counters of one QP, for `query_qp`.
pub(crate) struct QpStatus {
    pub state: QpState,
    pub attrs: QpAttrs,
    pub counters: QpCounters,
}

/// One transport of the engine (see the module documentation).
pub(crate) trait Backend: Send {
    /// The UDP addresses it binds: the first is read (and sends), the
    /// others only send.
    fn addrs(&self) -> &[SocketAddr];

    /// Whether its packets are ECN-capable (sent with ECT(0), so a
    /// congested switch marks them instead of dropping): only transports
    /// that react to the marks say so.
    fn ecn_capable(&self) -> bool {
        false
    }

    /// Whether it carries QPs of driver type `d` (`None`: the verbs QP
    /// types RC, UC, UD).
    fn serves(&self, d: Option<&DriverQpInit>) -> bool;

    /// A new QP, in RESET.
    fn create_qp(&mut self, qpn: u32, init: &QpInit, driver: Option<&DriverQpInit>) -> Result<()>;
    /// Forget a QP (outstanding work is dropped); its last counters.
    fn destroy_qp(&mut self, qpn: u32) -> QpCounters;
    /// Apply an attribute change the core validated.
    fn modify_qp(&mut self, now: Instant, qpn: u32, m: &ModifyQp) -> Result<()>;
    /// State, attributes and counters.
    fn query_qp(&self, qpn: u32) -> Option<QpStatus>;
    /// Add the counters of its live QPs into `into`.
    fn add_counters(&self, into: &mut QpCounters);

    /// Post a send WR.
    fn post_send(
        &mut self,
        now: Instant,
        qpn: u32,
        wr: SendWr,
    ) -> std::result::Result<(), PostError>;
    /// Post a receive WR.
    fn post_recv(&mut self, qpn: u32, wr: RecvWr) -> std::result::Result<(), PostError>;

    /// One datagram from `src` (already counted as received; wake-ups are
    /// filtered out by the engine).
    fn handle_datagram(&mut self, now: Instant, src: SocketAddr, dgram: &[u8], env: &mut Env<'_>);
    /// Fire the timers due at `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// The earliest timer.
    fn poll_timeout(&self) -> Option<Instant>;

    /// The next packet, written into `buf` (at least `TX_STRIDE` bytes).
    fn poll_transmit(&mut self, now: Instant, env: &mut Env<'_>, buf: &mut [u8]) -> Option<Out>;
    /// The next completion (`qp_num` and `queue` name its CQ).
    fn poll_completion(&mut self) -> Option<Wc>;
    /// The next asynchronous QP event.
    fn poll_event(&mut self) -> Option<(u32, QpEvent)>;

    /// The SRD endpoint's counters, if it is the SRD backend.
    fn srd_counters(&self) -> Option<softverbs_srd::SrdCounters> {
        None
    }
}
