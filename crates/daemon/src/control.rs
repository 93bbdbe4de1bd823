//! Run-time control of the daemon, as iproute2's `rdma link add`/`delete`
//! and `rdma statistic` are to the kernel: frames that create and remove
//! devices and that report counters and device attributes, and the client
//! calls that send them (`softverbs link`, `dev`, `stat`).
//!
//! - `LINK_ADD`: body = one device entry in the `SOFTVERBS_DEVICES` syntax
//!   (`rxe5=rxe:10.0.0.1:mtu=4096`). Validated like the configuration (name,
//!   kind, address, MTU), then against the running devices (the name and the
//!   address must be free) and the host (the address must bind: it is on an
//!   interface here and its UDP port is not taken).
//! - `LINK_DEL`: body = a device name. A device that a client has open is
//!   **not** removed: the reply is `EBUSY`, naming the owners (`pid 4242
//!   (perf)`), as the kernel refuses to unload a driver in use. Removing it
//!   under them would turn every QP of theirs into an error with no way for
//!   the operator to know whom it hit; refusing leaves the choice to whoever
//!   runs the command (stop those processes, then delete).
//! - `COUNTERS`: JSON `{"daemon": {...}, "devices": [{"ifname", "counters"}]}`.
//! - `DEVICE_INFO`: JSON, one object per device, the shape of
//!   `softverbs dev -j` (`ifname`, `kind`, `node_guid`, `caps`, `qp_types`,
//!   `operations`, `ports`, `gids`, and `efa` for an EFA-like device).
//!
//! Who may send them: whoever may connect, i.e. the socket file's
//! permissions (as for every other frame).

use std::net::UdpSocket;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};
use softverbs_core::driver::Driver;
use softverbs_core::uapi::UapiError;
use softverbs_core::{Device, VerbsError};
use softverbs_devices::DeviceConfig;

use crate::frame::{self, Kind};
use crate::server::Daemon;

/// Whether `kind` is one of this module's frames.
pub(crate) fn handles(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::LINK_ADD | Kind::LINK_DEL | Kind::COUNTERS | Kind::DEVICE_INFO
    )
}

/// Serves one control frame.
pub(crate) fn handle(d: &Daemon, kind: Kind, body: &[u8]) -> Result<Vec<u8>, UapiError> {
    let r = match kind {
        Kind::LINK_ADD => link_add(d, body),
        Kind::LINK_DEL => link_del(d, body).map(|()| Vec::new()),
        Kind::COUNTERS => serde_json::to_vec(&counters_json(d))
            .map_err(|e| VerbsError::invalid(format!("counters: {e}"))),
        Kind::DEVICE_INFO => serde_json::to_vec(&Value::Array(
            d.devices().iter().map(|dev| device_json(dev)).collect(),
        ))
        .map_err(|e| VerbsError::invalid(format!("devices: {e}"))),
        k => Err(VerbsError::unsupported(
            "softverbsd",
            format!("frame kind {:#x}", k.0),
        )),
    };
    r.map_err(UapiError::from)
}

fn text(body: &[u8], what: &str) -> Result<String, VerbsError> {
    let s = std::str::from_utf8(body)
        .map_err(|_| VerbsError::invalid(format!("{what} is not UTF-8")))?
        .trim();
    if s.is_empty() || s.len() > 256 || s.contains(',') {
        return Err(VerbsError::invalid(format!(
            "{what} must be one entry of 1 to 256 bytes"
        )));
    }
    Ok(s.to_string())
}

fn link_add(d: &Daemon, body: &[u8]) -> Result<Vec<u8>, VerbsError> {
    let entry = text(body, "the device entry")?;
    let cfg = DeviceConfig::parse(&entry)?;
    let mut list = d.devices.write().unwrap_or_else(|e| e.into_inner());
    if list.iter().any(|x| x.name() == cfg.name) {
        return Err(VerbsError::invalid(format!(
            "a device named {} exists already (softverbs link delete {} first)",
            cfg.name, cfg.name
        )));
    }
    let addr = cfg.addr.to_string();
    if let Some(x) = list.iter().find(|x| {
        x.port(1)
            .map(|p| p.udp_addr == addr || p.udp_addr.parse() == Ok(cfg.addr))
            .unwrap_or(false)
    }) {
        return Err(VerbsError::invalid(format!(
            "{} is taken by device {}",
            cfg.addr,
            x.name()
        )));
    }
    // Devices bind lazily; bind once now so a wrong address is refused
    // here, not at the first QP.
    UdpSocket::bind(cfg.addr).map_err(|e| {
        VerbsError::invalid(format!(
            "cannot bind {}: {e} (is the address on an interface of this host, and the port free?)",
            cfg.addr
        ))
    })?;
    let driver: Arc<dyn Driver> = Arc::new(softverbs_devices::open_device(cfg.clone()));
    let dev = Device::try_new(driver).map_err(|e| VerbsError::invalid(e.to_string()))?;
    list.push(dev);
    Ok(cfg.name.into_bytes())
}

fn link_del(d: &Daemon, body: &[u8]) -> Result<(), VerbsError> {
    let name = text(body, "the device name")?;
    let mut list = d.devices.write().unwrap_or_else(|e| e.into_inner());
    let Some(i) = list.iter().position(|x| x.name() == name) else {
        let names: Vec<&str> = list.iter().map(|x| x.name()).collect();
        return Err(VerbsError::NotFound(format!(
            "no device named {name} (devices: {})",
            names.join(", ")
        )));
    };
    let mut users: Vec<String> = list[i]
        .contexts()
        .iter()
        .map(|c| format!("pid {} ({})", c.owner().pid, c.owner().comm))
        .collect();
    users.sort();
    users.dedup();
    if !users.is_empty() {
        return Err(VerbsError::Busy {
            what: format!("device {name}"),
            users,
        });
    }
    // The last reference: dropping it stops the device's threads and
    // closes its sockets.
    drop(list.remove(i));
    Ok(())
}

fn counters_json(d: &Daemon) -> Value {
    let s = &d.stats;
    json!({
        "daemon": {
            "connections": s.connections.load(Ordering::Relaxed),
            "malformed_frames": s.malformed_frames.load(Ordering::Relaxed),
            "failed_calls": s.failed_calls.load(Ordering::Relaxed),
            "rejected_handles": s.rejected_handles.load(Ordering::Relaxed),
            "bad_ring_entries": s.bad_ring_entries.load(Ordering::Relaxed),
        },
        "devices": d.devices().iter().map(|dev| json!({
            "ifname": dev.name(),
            "counters": dev.counters(),
        })).collect::<Vec<_>>(),
    })
}

/// A device as `softverbs dev -j` shows it.
pub fn device_json(d: &Device) -> Value {
    let caps = d.caps();
    let ports: Vec<_> = (1..=caps.phys_port_cnt)
        .filter_map(|p| d.port(p).ok())
        .collect();
    let gids: Vec<String> = d
        .driver()
        .gids(1)
        .unwrap_or_default()
        .iter()
        .map(|g| g.to_string())
        .collect();
    let mut v = json!({
        "ifname": d.name(),
        "kind": d.driver().kind(),
        "node_guid": caps.node_guid,
        "caps": caps,
        "qp_types": caps.qp_types.names(),
        "operations": caps.ops.names(),
        "ports": ports,
        "gids": gids,
    });
    // An EFA-like device: what efadv_query_device reports.
    if let Some(a) = d.driver().efa_device_attr() {
        v["efa"] = efa_json(&a);
    }
    v
}

/// The `"efa"` object of `softverbs dev -j` (an EFA-like device's
/// `efadv_query_device` attributes, capability bits by name): the one
/// shape for the daemon's `DEVICE_INFO` and the embedded listing.
pub fn efa_json(a: &softverbs_core::efa::EfaDeviceAttr) -> Value {
    json!({
        "max_sq_wr": a.max_sq_wr,
        "max_rq_wr": a.max_rq_wr,
        "max_sq_sge": a.max_sq_sge,
        "max_rq_sge": a.max_rq_sge,
        "inline_buf_size": a.inline_buf_size,
        "max_rdma_size": a.max_rdma_size,
        "device_caps": a.cap_names(),
    })
}

fn io(e: impl std::fmt::Display) -> VerbsError {
    VerbsError::Io(format!("softverbsd: {e}"))
}

/// One request on a fresh connection; the reply body.
fn request(path: &Path, kind: Kind, body: &[u8]) -> softverbs_core::Result<Vec<u8>> {
    let s = UnixStream::connect(path).map_err(|e| io(format!("{}: {e}", path.display())))?;
    frame::send(&s, kind, body, &[]).map_err(io)?;
    let f = frame::recv(&s).map_err(io)?;
    if f.kind == Kind::ERROR {
        let (errno, msg) = frame::parse_error(&f.body);
        return Err(VerbsError::from_remote(errno, &msg));
    }
    if f.kind != kind.reply() {
        return Err(io(format!(
            "reply of kind {:#x} to {:#x}",
            f.kind.0, kind.0
        )));
    }
    Ok(f.body)
}

/// Creates a device in the daemon at `path` from one `SOFTVERBS_DEVICES`
/// entry; returns its name.
pub fn link_add_entry(path: &Path, entry: &str) -> softverbs_core::Result<String> {
    let b = request(path, Kind::LINK_ADD, entry.as_bytes())?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

/// Removes device `name` from the daemon at `path` (`Busy` while open).
pub fn link_delete(path: &Path, name: &str) -> softverbs_core::Result<()> {
    request(path, Kind::LINK_DEL, name.as_bytes()).map(drop)
}

/// The daemon's counters (see the module documentation).
pub fn counters(path: &Path) -> softverbs_core::Result<Value> {
    serde_json::from_slice(&request(path, Kind::COUNTERS, &[])?).map_err(io)
}

/// The daemon's devices, as [`device_json`] shows each.
pub fn device_info(path: &Path) -> softverbs_core::Result<Vec<Value>> {
    serde_json::from_slice(&request(path, Kind::DEVICE_INFO, &[])?).map_err(io)
}
