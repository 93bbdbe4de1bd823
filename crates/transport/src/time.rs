//! Injected time. Nothing in the transport reads a clock: every input that
//! depends on time carries `now`, and the caller asks [`crate::Qp::poll_timeout`]
//! when to call back.

use core::ops::{Add, Sub};
use core::time::Duration;

/// A point in time, in nanoseconds since an epoch the caller chooses
/// (the simulator starts at zero; a device uses a monotonic clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub u64);

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant(0);

    /// Nanoseconds since the epoch.
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_since(earlier)
    }
}

/// The local ACK timeout of IBTA 11.2.4.2 / `ibv_qp_attr.timeout`:
/// 4.096 µs × 2^`timeout`; 0 means "wait forever" (`None`).
pub fn ack_timeout(timeout: u8) -> Option<Duration> {
    if timeout == 0 {
        return None;
    }
    let exp = u32::from(timeout.min(31));
    Some(Duration::from_nanos(4096u64 << exp))
}

/// The RNR NAK timer table of IBTA 9.7.5.2.8 (table 45), indexed by the
/// 5-bit timer field of an RNR NAK (`min_rnr_timer`), in microseconds.
const RNR_TIMER_US: [u32; 32] = [
    655_360, 10, 20, 30, 40, 60, 80, 120, 160, 240, 320, 480, 640, 960, 1_280, 1_920, 2_560, 3_840,
    5_120, 7_680, 10_240, 15_360, 20_480, 30_720, 40_960, 61_440, 81_920, 122_880, 163_840,
    245_760, 327_680, 491_520,
];

/// How long a requester waits after an RNR NAK carrying `timer`.
pub fn rnr_delay(timer: u8) -> Duration {
    Duration::from_micros(u64::from(RNR_TIMER_US[usize::from(timer & 0x1f)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_timeout_matches_ibta_formula() {
        assert_eq!(ack_timeout(0), None);
        assert_eq!(ack_timeout(1), Some(Duration::from_nanos(8192)));
        // timeout 14, what rxe's pingpong uses: ~67 ms (the captures show ~68 ms)
        assert_eq!(ack_timeout(14), Some(Duration::from_nanos(67_108_864)));
    }

    #[test]
    fn rnr_table_edges() {
        assert_eq!(rnr_delay(0), Duration::from_micros(655_360));
        assert_eq!(rnr_delay(1), Duration::from_micros(10));
        assert_eq!(rnr_delay(12), Duration::from_micros(640));
        assert_eq!(rnr_delay(31), Duration::from_micros(491_520));
        assert_eq!(rnr_delay(0xff), rnr_delay(31));
    }

    #[test]
    fn instant_arithmetic_saturates() {
        let t = Instant(10);
        assert_eq!(t - Instant(20), Duration::ZERO);
        assert_eq!((t + Duration::from_nanos(5)).0, 15);
        assert_eq!((Instant(u64::MAX) + Duration::from_secs(1)).0, u64::MAX);
    }
}
