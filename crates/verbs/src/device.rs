//! The devices of this process.

use std::sync::{Arc, OnceLock};

use softverbs_core::caps::DeviceCaps;
use softverbs_core::driver::{DeviceCounters, PortAttr};
use softverbs_core::{Device, Resource};
use softverbs_wire::Gid;

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
/// shows; no device is opened.
pub fn devices() -> Result<Vec<DeviceInfo>> {
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
/// owner and key attributes (what `rdma res show` lists).
pub fn resources() -> Result<Vec<Resource>> {
    Ok(all()?.iter().flat_map(|d| d.resources()).collect())
}

/// The counters of device `name` (what `rdma statistic show` lists).
pub fn counters(name: &str) -> Result<DeviceCounters> {
    Ok(find(name)?.counters())
}
