//! A small user-space netem, for hosts whose kernel has no `sch_netem`
//! (issue 7: SRD against RC on real sockets needs delay, and this host's
//! kernel has no netem, NFQUEUE or ifb-netem).
//!
//! Two layers:
//!
//! * [`Netem`], a sans-IO impairment core: frames go in with the time they
//!   arrived ([`Netem::push`]) and come out when due ([`Netem::pop_due`]),
//!   after a fixed delay plus jitter, some lost at random, some (optionally)
//!   reordered — all decided by a seeded generator, so a run is
//!   reproducible from its seed and the times it was fed. Time is a `u64`
//!   of nanoseconds handed in by the caller.
//! * [`Relay`], the I/O edge (Linux): a thread in a middle network
//!   namespace that takes every frame arriving on one interface of a pair
//!   (AF_PACKET), holds it in a [`Netem`] and sends it out of the other, in
//!   both directions, for any number of interface pairs. The middle
//!   namespace's interfaces carry no addresses and its kernel does not
//!   forward, so each frame crosses exactly once, through the relay.
//!
//! ```text
//!   A ──veth── [M: relay, one Netem per direction] ──veth── B
//! ```

mod impair;
mod relay;
#[allow(unsafe_code)] // the AF_PACKET edge; every block says why it is sound
mod sys;

pub use crate::impair::{Fate, Impairment, Netem, NetemStats};
pub use crate::relay::{Direction, LinkStats, Relay};
