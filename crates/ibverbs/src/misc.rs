//! Pure helpers of the API: strings for enums, rate conversions, fork
//! support (nothing to do: softverbs pins no pages), the sysfs path.

#![allow(unsafe_code)] // C entry points (#[no_mangle])

use core::ffi::{c_char, c_int, c_void, CStr};

use crate::sys;

fn cs(s: &'static CStr) -> *const c_char {
    s.as_ptr()
}

/// `ibv_wc_status_str`.
#[no_mangle]
pub extern "C" fn ibv_wc_status_str(status: sys::ibv_wc_status) -> *const c_char {
    cs(match status {
        0 => c"success",
        1 => c"local length error",
        2 => c"local QP operation error",
        3 => c"local EE context operation error",
        4 => c"local protection error",
        5 => c"Work Request Flushed Error",
        6 => c"memory management operation error",
        7 => c"bad response error",
        8 => c"local access error",
        9 => c"remote invalid request error",
        10 => c"remote access error",
        11 => c"remote operation error",
        12 => c"transport retry counter exceeded",
        13 => c"RNR retry counter exceeded",
        14 => c"local RDD violation error",
        15 => c"remote invalid RD request",
        16 => c"aborted error",
        17 => c"invalid EE context number",
        18 => c"invalid EE context state",
        19 => c"fatal error",
        20 => c"response timeout error",
        21 => c"general error",
        22 => c"TM error",
        23 => c"TM software rendezvous",
        _ => c"unknown",
    })
}

/// `ibv_port_state_str`.
#[no_mangle]
pub extern "C" fn ibv_port_state_str(state: sys::ibv_port_state) -> *const c_char {
    cs(match state {
        0 => c"PORT_NOP",
        1 => c"PORT_DOWN",
        2 => c"PORT_INIT",
        3 => c"PORT_ARMED",
        4 => c"PORT_ACTIVE",
        5 => c"PORT_ACTIVE_DEFER",
        _ => c"invalid state",
    })
}

/// `ibv_node_type_str`.
#[no_mangle]
pub extern "C" fn ibv_node_type_str(node_type: sys::ibv_node_type) -> *const c_char {
    cs(match node_type as c_int {
        1 => c"InfiniBand channel adapter",
        2 => c"InfiniBand switch",
        3 => c"InfiniBand router",
        4 => c"iWARP NIC",
        5 => c"usNIC",
        6 => c"usNIC UDP",
        7 => c"unspecified",
        _ => c"unknown",
    })
}

/// `ibv_event_type_str`.
#[no_mangle]
pub extern "C" fn ibv_event_type_str(event: sys::ibv_event_type) -> *const c_char {
    cs(match event {
        0 => c"CQ error",
        1 => c"local work queue catastrophic error",
        2 => c"invalid request local work queue error",
        3 => c"local access violation work queue error",
        4 => c"communication established",
        5 => c"send queue drained",
        6 => c"path migrated",
        7 => c"path migration request error",
        8 => c"local catastrophic error",
        9 => c"port active",
        10 => c"port error",
        11 => c"LID change",
        12 => c"P_Key change",
        13 => c"SM change",
        14 => c"SRQ catastrophic error",
        15 => c"SRQ limit reached",
        16 => c"last WQE reached",
        17 => c"client reregistration",
        18 => c"GID table change",
        19 => c"WQ fatal",
        _ => c"unknown",
    })
}

/// `ibv_fork_init`: nothing to do (no pages are pinned), 0.
#[no_mangle]
pub extern "C" fn ibv_fork_init() -> c_int {
    0
}

/// `ibv_is_fork_initialized`: `IBV_FORK_UNNEEDED`.
#[no_mangle]
pub extern "C" fn ibv_is_fork_initialized() -> sys::ibv_fork_status {
    sys::IBV_FORK_UNNEEDED
}

/// `ibv_dontfork_range`: 0.
#[no_mangle]
pub extern "C" fn ibv_dontfork_range(_base: *mut c_void, _size: usize) -> c_int {
    0
}

/// `ibv_dofork_range`: 0.
#[no_mangle]
pub extern "C" fn ibv_dofork_range(_base: *mut c_void, _size: usize) -> c_int {
    0
}

/// `ibv_get_sysfs_path`: where sysfs is mounted.
#[no_mangle]
pub extern "C" fn ibv_get_sysfs_path() -> *const c_char {
    cs(c"/sys")
}

/// `ibv_query_qp_data_in_order`: 0 (no in-order guarantee is claimed).
#[no_mangle]
pub extern "C" fn ibv_query_qp_data_in_order(
    _qp: *mut sys::ibv_qp,
    _op: sys::ibv_wr_opcode,
    _flags: u32,
) -> c_int {
    0
}

/// (rate enum, multiple of 2.5 Gb/s, Mb/s) for `ibv_rate`.
const RATES: &[(c_int, c_int, c_int)] = &[
    (2, 1, 2500),
    (5, 2, 5000),
    (3, 4, 10000),
    (6, 8, 20000),
    (7, 12, 30000),
    (8, 16, 40000),
    (9, 24, 60000),
    (4, 32, 80000),
    (10, 48, 120000),
    (11, 0, 14062),
    (12, 0, 56250),
    (13, 0, 112500),
    (14, 0, 168750),
    (15, 0, 25781),
    (16, 0, 103125),
    (17, 0, 206250),
    (18, 0, 309375),
    (19, 0, 412500),
    (20, 0, 618750),
    (21, 0, 50000),
    (22, 0, 400000),
    (23, 0, 600000),
    (24, 0, 200000),
    (25, 0, 800000),
    (26, 0, 1200000),
];

/// `ibv_rate_to_mult`: the multiple of 2.5 Gb/s, or 0.
#[no_mangle]
pub extern "C" fn ibv_rate_to_mult(rate: sys::ibv_rate) -> c_int {
    RATES
        .iter()
        .find(|r| r.0 == rate as c_int)
        .map_or(0, |r| r.1)
}

/// `mult_to_ibv_rate`: the rate enum, or `IBV_RATE_MAX` (0).
#[no_mangle]
pub extern "C" fn mult_to_ibv_rate(mult: c_int) -> sys::ibv_rate {
    RATES
        .iter()
        .find(|r| r.1 == mult && mult != 0)
        .map_or(0, |r| r.0 as sys::ibv_rate)
}

/// `ibv_rate_to_mbps`: Mb/s, or 0.
#[no_mangle]
pub extern "C" fn ibv_rate_to_mbps(rate: sys::ibv_rate) -> c_int {
    RATES
        .iter()
        .find(|r| r.0 == rate as c_int)
        .map_or(0, |r| r.2)
}

/// `mbps_to_ibv_rate`: the rate enum, or `IBV_RATE_MAX` (0).
#[no_mangle]
pub extern "C" fn mbps_to_ibv_rate(mbps: c_int) -> sys::ibv_rate {
    RATES
        .iter()
        .find(|r| r.2 == mbps)
        .map_or(0, |r| r.0 as sys::ibv_rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(p: *const c_char) -> &'static str {
        // SAFETY: every string returned is a static C string.
        unsafe { CStr::from_ptr(p) }.to_str().unwrap()
    }

    #[test]
    fn strings_match_libibverbs() {
        assert_eq!(s(ibv_wc_status_str(0)), "success");
        assert_eq!(s(ibv_wc_status_str(12)), "transport retry counter exceeded");
        assert_eq!(s(ibv_wc_status_str(99)), "unknown");
        assert_eq!(s(ibv_port_state_str(4)), "PORT_ACTIVE");
        assert_eq!(s(ibv_node_type_str(1)), "InfiniBand channel adapter");
        assert_eq!(s(ibv_event_type_str(4)), "communication established");
    }

    #[test]
    fn rates() {
        assert_eq!(ibv_rate_to_mult(3), 4);
        assert_eq!(mult_to_ibv_rate(4), 3);
        assert_eq!(ibv_rate_to_mbps(7), 30000);
        assert_eq!(mbps_to_ibv_rate(25781), 15);
        assert_eq!(mult_to_ibv_rate(0), 0);
    }
}
