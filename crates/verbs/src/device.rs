//! The devices: this process's own (embedded backend) or the daemon's.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use softverbs_core::calls::VerbsCalls;
use softverbs_core::caps::DeviceCaps;
use softverbs_core::driver::{DeviceCounters, PortAttr};
use softverbs_core::{Device, Resource};
use softverbs_daemon::client::Client;
use softverbs_wire::Gid;

use crate::backend::Backend;
use crate::{Result, VerbsError};

/// What `ibv_get_device_list` and `ibv_devinfo -v` tell about a device,
/// read without opening it (no socket is bound).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceInfo {
    /// Name (`rxe0`).
    pub name: String,
    /// Driver kind (`rxe`, `udonly`).
    pub kind: String,
    /// Node GUID.
    pub node_guid: u64,
    /// Attributes and capabilities.
    pub caps: DeviceCaps,
    /// Its ports (numbered from 1).
    pub ports: Vec<PortAttr>,
    /// The GID table of port 1.
    pub gids: Vec<Gid>,
}

static DEVICES: OnceLock<std::result::Result<Vec<Arc<Device>>, String>> = OnceLock::new();

/// The configured devices, created once per process (`SOFTVERBS_DEVICES`,
/// default `rxe0` on 127.0.0.1 and `rxe1` on 127.0.0.2).
pub(crate) fn all() -> Result<&'static [Arc<Device>]> {
    let r = DEVICES.get_or_init(|| {
        softverbs_devices::devices()
            .map(|drivers| drivers.into_iter().map(Device::new).collect())
            .map_err(|e| e.to_string())
    });
    match r {
        Ok(v) => Ok(v),
        Err(e) => Err(VerbsError::invalid(e.clone())),
    }
}

/// Find a device by name.
pub(crate) fn find(name: &str) -> Result<Arc<Device>> {
    let all = all()?;
    all.iter()
        .find(|d| d.name() == name)
        .cloned()
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|d| d.name()).collect();
            VerbsError::NotFound(format!(
                "no device named {name} (devices: {}); configure devices with SOFTVERBS_DEVICES",
                names.join(", ")
            ))
        })
}

/// List the devices (`ibv_get_device_list`), with what `ibv_devinfo -v`
/// shows, of the backend [`Context::open`](crate::Context::open) would use
/// ([`Backend::from_env`]): this process's own devices (none is opened,
/// no socket is bound), or the devices of the `softverbsd` that answers —
/// asked through the same uAPI calls a context makes (one short-lived
/// connection per device).
pub fn devices() -> Result<Vec<DeviceInfo>> {
    match Backend::from_env()? {
        Backend::Embedded => embedded_devices(),
        Backend::Daemon(p) => daemon_devices(&p),
    }
}

/// The devices of the daemon at `path`, read through a context on each.
fn daemon_devices(path: &Path) -> Result<Vec<DeviceInfo>> {
    let listed = softverbs_daemon::control::device_info(path)?;
    let mut out = Vec::with_capacity(listed.len());
    for d in listed {
        let (Some(name), Some(kind)) = (d["ifname"].as_str(), d["kind"].as_str()) else {
            return Err(VerbsError::Io(format!(
                "softverbsd at {}: a device entry without ifname or kind: {d}",
                path.display()
            )));
        };
        let c = Client::open(path, name)?;
        let caps = c.query_device()?;
        let ports: Vec<PortAttr> = (1..=caps.phys_port_cnt)
            .map(|p| c.query_port(p))
            .collect::<Result<_>>()?;
        let gid_len = ports.first().map_or(0, |p| p.gid_tbl_len);
        // The GID table as far as it is filled (as the embedded listing's).
        let gids = (0..gid_len.min(u32::from(u16::MAX)) as u16)
            .map_while(|i| c.query_gid(1, i).ok())
            .collect();
        out.push(DeviceInfo {
            name: name.to_string(),
            kind: kind.to_string(),
            node_guid: caps.node_guid,
            caps,
            ports,
            gids,
        });
    }
    Ok(out)
}

fn embedded_devices() -> Result<Vec<DeviceInfo>> {
    Ok(all()?
        .iter()
        .map(|d| {
            let caps: &DeviceCaps = d.caps();
            let ports = (1..=caps.phys_port_cnt)
                .filter_map(|p| d.port(p).ok())
                .collect();
            DeviceInfo {
                name: d.name().to_string(),
                kind: d.driver().kind().to_string(),
                node_guid: caps.node_guid,
                caps: caps.clone(),
                ports,
                gids: d.driver().gids(1).unwrap_or_default(),
            }
        })
        .collect())
}

/// Every object of every open context of this process's devices, with its
/// owner and key attributes (what `rdma res show` lists). This process's
/// own devices only: the daemon's objects, host-wide with their owners,
/// are `softverbs res show`'s (`softverbs_daemon::client::resources`).
pub fn resources() -> Result<Vec<Resource>> {
    Ok(all()?.iter().flat_map(|d| d.resources()).collect())
}

/// The counters of device `name` (what `rdma statistic show` lists), of
/// the backend [`devices`] lists: on the daemon, asked through a context
/// on the device (`DEVICE.query_device_counters`, as
/// [`crate::Context::counters`]).
pub fn counters(name: &str) -> Result<DeviceCounters> {
    match Backend::from_env()? {
        Backend::Embedded => Ok(find(name)?.counters()),
        Backend::Daemon(p) => Client::open(&p, name)?.query_device_counters(),
    }
}
