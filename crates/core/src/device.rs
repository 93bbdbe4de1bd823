//! A device as the core sees it: its driver, the registry of every method
//! it understands (core plus its driver's), and its open contexts.

use std::sync::{Arc, Mutex, Weak};

use crate::caps::DeviceCaps;
use crate::context::Ucontext;
use crate::driver::{DeviceCounters, Driver, PortAttr};
use crate::error::{Result, VerbsError};
use crate::events::AsyncEvents;
use crate::objects::{ContextData, Owner, CORE_OBJECTS};
use crate::restrack::Resource;
use crate::uapi::{Registry, SpecError};

/// One RDMA device: a driver and its uAPI registry.
pub struct Device {
    driver: Arc<dyn Driver>,
    registry: Registry,
    contexts: Mutex<Vec<Weak<Ucontext>>>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("name", &self.name())
            .field("kind", &self.driver.kind())
            .finish()
    }
}

impl Device {
    /// A device over `driver`, with the driver's uAPI additions merged.
    ///
    /// # Panics
    /// If the driver's spec clashes with the core's (a driver programming
    /// error, the same on every run; see [`Device::try_new`]).
    pub fn new(driver: Arc<dyn Driver>) -> Arc<Self> {
        let name = driver.name().to_string();
        Self::try_new(driver)
            .unwrap_or_else(|e| panic!("device {name}: the driver's uAPI spec is invalid: {e}"))
    }

    /// Like [`Device::new`], reporting a bad driver spec as an error.
    pub fn try_new(driver: Arc<dyn Driver>) -> Result<Arc<Self>, SpecError> {
        let registry = match driver.driver_spec() {
            Some(spec) => Registry::with_driver(&CORE_OBJECTS, spec)?,
            None => Registry::new(&CORE_OBJECTS)?,
        };
        Ok(Arc::new(Device {
            driver,
            registry,
            contexts: Mutex::new(Vec::new()),
        }))
    }

    /// Device name (`rxe0`).
    pub fn name(&self) -> &str {
        self.driver.name()
    }

    /// The driver.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// Capabilities.
    pub fn caps(&self) -> &DeviceCaps {
        self.driver.caps()
    }

    /// Port attributes.
    pub fn port(&self, port: u8) -> Result<PortAttr> {
        self.driver.port(port)
    }

    /// The registry every call of this device goes through (the daemon
    /// dispatches encoded calls here).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Opens a context owned by `owner` (`ibv_open_device`).
    pub fn open(self: &Arc<Self>, owner: Owner) -> Result<Arc<Ucontext>> {
        let events = Arc::new(AsyncEvents::new().map_err(|e| VerbsError::Io(e.to_string()))?);
        let data = Arc::new(ContextData::new(self.driver.clone(), events, owner));
        let ctx = Arc::new(Ucontext::new(self.clone(), data));
        let mut list = self.contexts.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(&ctx));
        Ok(ctx)
    }

    /// The open contexts.
    pub fn contexts(&self) -> Vec<Arc<Ucontext>> {
        self.contexts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|c| !c.is_closed())
            .collect()
    }

    /// Every live object of every open context, with its owner and key
    /// attributes (`rdma res show`).
    pub fn resources(&self) -> Vec<Resource> {
        self.contexts()
            .iter()
            .flat_map(|c| crate::restrack::list(self.name(), c))
            .collect()
    }

    /// Device-wide counters (`rdma statistic`).
    pub fn counters(&self) -> DeviceCounters {
        self.driver.counters()
    }
}
