//! The devices of this process.

use std::sync::{Arc, OnceLock};

use softverbs_core::caps::DeviceCaps;
use softverbs_core::Device;

use crate::{Result, VerbsError};

/// What `ibv_get_device_list` tells about a device.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// Name (`rxe0`).
    pub name: String,
    /// Driver kind (`rxe`, `udonly`).
    pub kind: String,
    /// Node GUID.
    pub node_guid: u64,
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

/// List the devices (`ibv_get_device_list`).
pub fn devices() -> Result<Vec<DeviceInfo>> {
    Ok(all()?
        .iter()
        .map(|d| {
            let caps: &DeviceCaps = d.caps();
            DeviceInfo {
                name: d.name().to_string(),
                kind: d.driver().kind().to_string(),
                node_guid: caps.node_guid,
            }
        })
        .collect())
}
