//! # softverbs-devices — software RDMA devices
//!
//! Layer 4 of softverbs (see `DESIGN.md`): devices that implement
//! [`softverbs_core::driver::Driver`] over UDP.
//!
//! - [`engine`]: the shared engine every soft device is built on (the
//!   rdmavt idea) — object tables, memory checks, completion and event
//!   routing, timers, progress, and the I/O thread.
//! - the I/O path (private `net` module): one UDP socket per device, batched
//!   with `sendmmsg`/`recvmmsg`, ICRC sealed on send and checked on receive.
//! - [`rxe`]: soft RoCE — RC, UC and UD over RoCEv2, wire-compatible with
//!   Linux `rdma_rxe`.
//! - [`udonly`]: a UD-only device (like usnic), so consumers can be shown
//!   to fail cleanly where RC is missing.
//! - [`srd`]: an EFA-like device — UD and SRD (reliable unordered
//!   datagrams on UET's packet delivery sublayer, sprayed over many UDP
//!   source ports), no RC/UC; SRD QPs and `efadv_query_device` through the
//!   driver namespace (`softverbs_core::efa`).
//! - [`config`]: the `SOFTVERBS_DEVICES` variable that lists a process's
//!   devices.
//!
//! ```
//! use softverbs_core::driver::Driver;
//! // With SOFTVERBS_DEVICES unset: rxe0 on 127.0.0.1 and rxe1 on 127.0.0.2.
//! let devs = softverbs_devices::devices_from("rxe0=rxe:127.0.0.1,rxe1=rxe:127.0.0.2").unwrap();
//! assert_eq!(devs[1].name(), "rxe1");
//! // Nothing is bound until the first resource is created.
//! assert_eq!(devs[0].gids(1).unwrap()[1].to_string(), "::ffff:127.0.0.1");
//! ```

pub mod config;
pub mod engine;
mod net;

use std::net::IpAddr;
use std::sync::Arc;

use softverbs_core::caps::{AtomicCap, DeviceCaps, Operations, QpTypes};
use softverbs_core::driver::Driver;
use softverbs_core::Result;
use softverbs_wire::Gid;

pub use config::{DeviceConfig, DeviceKind, DEFAULT_DEVICES, ENV_VAR, UET_UDP_PORT};
pub use engine::SoftDevice;

/// The 8-byte interface identifier (EUI-64) of the device, from a MAC
/// address derived from its IP: `02:00` followed by the last four bytes of
/// the address, with the universal/local bit flipped and `ff:fe` inserted,
/// as Linux derives link-local addresses and rxe its node GUID.
fn eui64(ip: IpAddr) -> [u8; 8] {
    let tail: [u8; 4] = match ip {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    let mac = [0x02, 0x00, tail[0], tail[1], tail[2], tail[3]];
    [
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]
}

/// The node GUID of a device on `ip` (its EUI-64).
pub fn node_guid(ip: IpAddr) -> u64 {
    u64::from_be_bytes(eui64(ip))
}

/// The GID table of a port on `ip`, as Linux builds it for a RoCEv2 netdev:
/// index 0 is the IPv6 link-local address `fe80::/64` + EUI-64 (Linux
/// derives it from the MAC; here from a MAC derived from the IP, see
/// [`node_guid`]), index 1 the address itself — `::ffff:a.b.c.d` for IPv4,
/// so, as with Linux rxe, `ibv_rc_pingpong -g 1` picks the IPv4 GID.
/// Packets always leave from the device's own address, whatever GID index
/// an address handle names.
pub fn gid_table(ip: IpAddr) -> Vec<Gid> {
    let mut ll = [0u8; 16];
    ll[0] = 0xfe;
    ll[1] = 0x80;
    ll[8..].copy_from_slice(&eui64(ip));
    let own = match ip {
        IpAddr::V4(v4) => Gid::from_ipv4(v4),
        IpAddr::V6(v6) => Gid(v6.octets()),
    };
    vec![Gid(ll), own]
}

pub mod rxe {
    //! Soft RoCE: RC, UC and UD over RoCEv2, with the attributes Linux
    //! `rdma_rxe` reports ([`DeviceCaps::rxe_like`]), GIDs from the IP
    //! ([`crate::gid_table`]), active MTU from the configuration (default
    //! 1024, as rxe over a 1500-byte link), largest MTU 4096.

    use super::*;

    /// The capabilities of an rxe device on `ip`.
    pub fn caps(ip: IpAddr) -> DeviceCaps {
        DeviceCaps::rxe_like(node_guid(ip))
    }

    /// An rxe device (not bound until first used).
    pub fn new(cfg: DeviceConfig) -> SoftDevice {
        let ip = cfg.addr.ip();
        SoftDevice::new(cfg, caps(ip), gid_table(ip))
    }
}

pub mod udonly {
    //! A device that offers UD and nothing else (the usnic of seed 002):
    //! no RC or UC, no RDMA READ/WRITE, atomics, SRQs or memory windows. Its
    //! capabilities say so, so the core refuses the rest up front with
    //! `Unsupported`; the engine refuses it too.

    use super::*;

    /// The capabilities of a UD-only device on `ip`.
    pub fn caps(ip: IpAddr) -> DeviceCaps {
        let mut c = DeviceCaps::rxe_like(node_guid(ip));
        c.vendor_part_id = 0x1d0;
        c.qp_types = QpTypes {
            rc: false,
            uc: false,
            ud: true,
            srd: false,
        };
        c.ops = Operations {
            send: true,
            send_with_inv: false,
            rdma_write: false,
            rdma_read: false,
            atomics: false,
            memory_windows: false,
            srq: false,
            inline_data: true,
        };
        c.atomic_cap = AtomicCap::None;
        c.max_qp_rd_atom = 0;
        c.max_qp_init_rd_atom = 0;
        c.max_res_rd_atom = 0;
        c.max_mw = 0;
        c.max_srq = 0;
        c.max_srq_wr = 0;
        c.max_srq_sge = 0;
        c
    }

    /// A UD-only device (not bound until first used).
    pub fn new(cfg: DeviceConfig) -> SoftDevice {
        let ip = cfg.addr.ip();
        SoftDevice::new(cfg, caps(ip), gid_table(ip))
    }
}

pub mod srd {
    //! An EFA-like device (seed 001): UD and SRD, no RC or UC.
    //!
    //! - SRD QPs are created through the driver namespace
    //!   (`softverbs_core::efa::EFA_CREATE_QP`, the analogue of
    //!   `efadv_create_qp_ex`) and run on a `softverbs_srd::SrdEndpoint`:
    //!   UET PDS (RUD) + SES over UDP (`docs/srd-wire.md`), received on the
    //!   device's address at the UET port 4793, sent from `49152 + i` for
    //!   path `i` (see `engine::srd`).
    //! - UD QPs are RoCEv2 UD on port 4791 of the same address (the
    //!   engine's RoCE backend, limited to UD by the capabilities).
    //! - `efadv_query_device` answers [`softverbs_srd::SrdConfig::caps`].
    //!
    //! ```
    //! use softverbs_core::driver::Driver;
    //! let d = softverbs_devices::devices_from("efa0=srd:127.0.0.5").unwrap();
    //! assert_eq!(d[0].kind(), "srd");
    //! assert_eq!(d[0].caps().qp_types.names(), ["UD", "SRD"]);
    //! assert!(d[0].efa_device_attr().unwrap().max_rdma_size >= 1 << 20);
    //! ```

    use std::hash::{BuildHasher, RandomState};
    use std::net::SocketAddr;
    use std::time::Duration;

    use softverbs_core::efa::{EfaDeviceAttr, EFA_DRIVER_SPEC};
    use softverbs_srd::SrdConfig;
    use softverbs_wire::ROCEV2_UDP_PORT;

    use super::*;
    use crate::engine::{roce::RoceBackend, srd::SrdBackend, Parts};

    /// The SRD endpoint configuration of a device.
    pub fn srd_config(cfg: &DeviceConfig) -> SrdConfig {
        let ip = cfg.addr.ip();
        let mut c = SrdConfig::new(gid_table(ip)[1]);
        c.mtu = cfg.mtu;
        c.paths = cfg.paths.max(1);
        // Random start PSNs (UET wants them unpredictable), per device.
        c.seed = RandomState::new().hash_one((cfg.addr, std::process::id()));
        // Real sockets, not a fabric: a round trip crosses two kernels' UDP
        // stacks and two I/O-thread hand-offs, and is measured by threads
        // that share a few cores with the application. Samples spread from
        // tens of µs (idle) to about a millisecond (busy) with no congestion
        // at all. With the fabric defaults (25 µs of target slack, a 200 µs
        // RTO floor, RACK at half an RTT) that jitter reads as queueing —
        // the window collapses to one or two packets — and as loss —
        // spurious timeouts avoid paths and halve the window again
        // (issue 7: 0.7 Gb/s lossless, half of that at 1% loss).
        c.cc.target_slack = Duration::from_millis(1);
        c.min_rto = Duration::from_millis(5);
        c.initial_rto = Duration::from_millis(5);
        c.reorder_frac = 1.0;
        // Applications pause; a context closed after a pause costs only the
        // CLOSE exchange and a SYN on the next packet, but need not happen
        // at every scheduling hiccup.
        c.idle_close = Some(Duration::from_secs(1));
        c
    }

    /// `efadv_query_device` of a device.
    pub fn efa_attr(cfg: &DeviceConfig) -> EfaDeviceAttr {
        let c = srd_config(cfg).caps();
        EfaDeviceAttr {
            max_sq_wr: c.max_sq_wr,
            max_rq_wr: c.max_rq_wr,
            max_sq_sge: c.max_sq_sge,
            max_rq_sge: c.max_rq_sge,
            inline_buf_size: c.inline_buf_size,
            device_caps: c.device_caps,
            max_rdma_size: c.max_rdma_size,
        }
    }

    /// The capabilities of an srd device on `ip`: UD and SRD; SEND, RDMA
    /// WRITE and READ (SRD only), inline; no atomics, memory windows or
    /// SRQs.
    pub fn caps(ip: IpAddr) -> DeviceCaps {
        let mut c = DeviceCaps::rxe_like(node_guid(ip));
        c.vendor_id = 0x1d0f; // Amazon, as EFA reports
        c.vendor_part_id = 0xefa1;
        c.qp_types = QpTypes {
            rc: false,
            uc: false,
            ud: true,
            srd: true,
        };
        c.ops = Operations {
            send: true,
            send_with_inv: false,
            rdma_write: true,
            rdma_read: true,
            atomics: false,
            memory_windows: false,
            srq: false,
            inline_data: true,
        };
        c.max_qp_wr = 4096;
        c.max_sge = 2;
        c.max_sge_rd = 1;
        c.max_inline_data = 32;
        c.atomic_cap = AtomicCap::None;
        c.max_qp_rd_atom = 0;
        c.max_qp_init_rd_atom = 0;
        c.max_res_rd_atom = 0;
        c.max_mw = 0;
        c.max_srq = 0;
        c.max_srq_wr = 0;
        c.max_srq_sge = 0;
        c
    }

    /// An srd device (not bound until first used).
    pub fn new(cfg: DeviceConfig) -> SoftDevice {
        let ip = cfg.addr.ip();
        let srd = Box::new(SrdBackend::new(cfg.addr, srd_config(&cfg)));
        let ud = Box::new(RoceBackend::new(SocketAddr::new(ip, ROCEV2_UDP_PORT)));
        let efa = efa_attr(&cfg);
        SoftDevice::from_parts(
            cfg,
            caps(ip),
            gid_table(ip),
            Parts {
                backends: vec![srd, ud],
                efa: Some(efa),
                spec: Some(&EFA_DRIVER_SPEC),
            },
        )
    }
}

/// The device a configuration describes.
pub fn open_device(cfg: DeviceConfig) -> SoftDevice {
    match cfg.kind {
        DeviceKind::Rxe => rxe::new(cfg),
        DeviceKind::UdOnly => udonly::new(cfg),
        DeviceKind::Srd => srd::new(cfg),
    }
}

/// The devices of a list in the [`config`] syntax.
pub fn devices_from(list: &str) -> Result<Vec<Arc<dyn Driver>>> {
    Ok(DeviceConfig::parse_list(list)?
        .into_iter()
        .map(|c| Arc::new(open_device(c)) as Arc<dyn Driver>)
        .collect())
}

/// The devices of this process: `SOFTVERBS_DEVICES`, or by default `rxe0`
/// on 127.0.0.1 and `rxe1` on 127.0.0.2 (see [`config`]). Sockets are bound
/// when a device is first used, so listing never fails because a port is
/// taken; call it once per process (each call makes new devices).
pub fn devices() -> Result<Vec<Arc<dyn Driver>>> {
    Ok(DeviceConfig::from_env()?
        .into_iter()
        .map(|c| Arc::new(open_device(c)) as Arc<dyn Driver>)
        .collect())
}
