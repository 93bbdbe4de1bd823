//! 24-bit packet sequence number arithmetic (IBTA 9.7.1: PSNs wrap modulo
//! 2^24; "before" and "after" are decided by the signed distance, so at most
//! 2^23 PSNs may be in flight).

/// The 24 significant bits of a PSN (and of a QPN, MSN).
pub const PSN_MASK: u32 = 0xff_ffff;

/// Half the PSN space: the largest forward distance [`psn_diff`] reports
/// plus one.
pub const PSN_HALF: u32 = 1 << 23;

/// `a + n` modulo 2^24. Bits of `a` above bit 23 are ignored.
#[inline]
pub fn psn_add(a: u32, n: u32) -> u32 {
    a.wrapping_add(n) & PSN_MASK
}

/// `a - n` modulo 2^24. Bits of `a` above bit 23 are ignored.
#[inline]
pub fn psn_sub(a: u32, n: u32) -> u32 {
    a.wrapping_sub(n) & PSN_MASK
}

/// Signed distance `a - b` in 24-bit modular space, in `[-2^23, 2^23)`.
///
/// Positive means `a` is after `b`. Bits above bit 23 of either argument
/// are ignored.
#[inline]
pub fn psn_diff(a: u32, b: u32) -> i32 {
    // Shift the 24-bit difference to the top of an i32 and back: an
    // arithmetic shift sign-extends bit 23.
    (((a.wrapping_sub(b) & PSN_MASK) << 8) as i32) >> 8
}

/// `a` comes strictly before `b`.
#[inline]
pub fn psn_lt(a: u32, b: u32) -> bool {
    psn_diff(a, b) < 0
}

/// `a` comes before `b` or equals it.
#[inline]
pub fn psn_le(a: u32, b: u32) -> bool {
    psn_diff(a, b) <= 0
}

/// `a` comes strictly after `b`.
#[inline]
pub fn psn_gt(a: u32, b: u32) -> bool {
    psn_diff(a, b) > 0
}

/// `a` comes after `b` or equals it.
#[inline]
pub fn psn_ge(a: u32, b: u32) -> bool {
    psn_diff(a, b) >= 0
}

/// `psn` lies in the half-open window `[start, start + len)` (modulo 2^24).
/// `len` above 2^24 is treated as the whole space.
#[inline]
pub fn psn_in_window(psn: u32, start: u32, len: u32) -> bool {
    len > PSN_MASK || (psn.wrapping_sub(start) & PSN_MASK) < len
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wrap() {
        assert_eq!(psn_add(PSN_MASK, 1), 0);
        assert_eq!(psn_add(PSN_MASK, 2), 1);
        assert_eq!(psn_sub(0, 1), PSN_MASK);
        assert_eq!(psn_diff(0, PSN_MASK), 1);
        assert_eq!(psn_diff(PSN_MASK, 0), -1);
        assert!(psn_lt(PSN_MASK, 0));
        assert!(psn_gt(0, PSN_MASK));
        assert!(psn_le(5, 5) && psn_ge(5, 5) && !psn_lt(5, 5));
        assert_eq!(psn_diff(PSN_HALF, 0), -(PSN_HALF as i32));
        assert_eq!(psn_diff(PSN_HALF - 1, 0), PSN_HALF as i32 - 1);
        assert!(psn_in_window(1, PSN_MASK, 3));
        assert!(!psn_in_window(2, PSN_MASK, 3));
        assert!(!psn_in_window(0, 0, 0));
    }

    proptest! {
        #[test]
        fn diff_inverts_add(a in 0..=PSN_MASK, n in 0..PSN_HALF) {
            prop_assert_eq!(psn_diff(psn_add(a, n), a), n as i32);
            prop_assert_eq!(psn_diff(a, psn_add(a, n)), -(n as i32));
            prop_assert_eq!(psn_sub(psn_add(a, n), n), a);
        }

        #[test]
        fn diff_range(a: u32, b: u32) {
            let d = psn_diff(a, b);
            prop_assert!((-(PSN_HALF as i32)..PSN_HALF as i32).contains(&d));
            prop_assert_eq!(psn_add(b, d as u32), a & PSN_MASK);
        }
    }
}
