//! A device context (`ibv_context`): the process's handle on a device.

use std::sync::Arc;

use softverbs_core::caps::DeviceCaps;
use softverbs_core::driver::Driver;
use softverbs_core::driver::{DeviceCounters, PortAttr};
use softverbs_core::events::AsyncEvents;
use softverbs_core::mem::MemBlock;
use softverbs_core::{Device, Owner};
use softverbs_devices::DeviceConfig;
use softverbs_wire::Gid;

use crate::backend::{Backend, Ctx};
use crate::cq::{ChannelInner, CompletionChannel, Cq, CqInner};
use crate::pd::{Pd, PdInner};
use crate::{device, Result, VerbsError};

/// An open device. Cheap to clone; the device context is closed (and every
/// object still in it destroyed) when the last clone and the last object
/// created from it are dropped.
#[derive(Clone)]
pub struct Context {
    /// The device context, embedded or through the daemon.
    pub(crate) uctx: Arc<Ctx>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Context({})", self.name())
    }
}

impl Context {
    /// Open the device `name` (`ibv_open_device`).
    ///
    /// ```no_run
    /// let ctx = softverbs::Context::open("rxe0").unwrap();
    /// println!("{} offers {:?}", ctx.name(), ctx.query_device().unwrap().qp_types.names());
    /// ```
    ///
    /// The backend is [`Backend::from_env`]'s: the daemon (`softverbsd`)
    /// when `SOFTVERBS_BACKEND=daemon` or when a daemon listens on its
    /// socket (`SOFTVERBS_SOCKET`, else `$XDG_RUNTIME_DIR/softverbs.sock`,
    /// else `/run/softverbs/softverbs.sock`); this process's own devices
    /// otherwise, or with `SOFTVERBS_BACKEND=embedded`.
    pub fn open(name: &str) -> Result<Context> {
        Self::open_with(&Backend::from_env()?, name)
    }

    /// Open the device `name` of an explicit backend.
    ///
    /// ```no_run
    /// use softverbs::{Backend, Context};
    /// let ctx = Context::open_with(&Backend::Daemon("/tmp/sv.sock".into()), "rxe0").unwrap();
    /// assert!(ctx.is_daemon());
    /// ```
    pub fn open_with(backend: &Backend, name: &str) -> Result<Context> {
        let uctx = match backend {
            Backend::Embedded => Ctx::Embedded(device::find(name)?.open(Owner::this_process())?),
            Backend::Daemon(path) => Ctx::daemon(path, name)?,
        };
        Ok(Context {
            uctx: Arc::new(uctx),
        })
    }

    /// A zeroed, page-aligned buffer of `len` bytes for this context's
    /// backend, to register with [`Pd::reg_block`] or to swap in with
    /// [`crate::Rereg::block`]: heap memory when embedded
    /// ([`MemBlock::new`]), a sealed memfd the daemon maps too in the daemon
    /// backend ([`MemBlock::shared`]), as [`Pd::reg_mr`] allocates.
    ///
    /// ```no_run
    /// # use softverbs::*;
    /// # fn f(ctx: &Context) -> Result<()> {
    /// let pd = ctx.alloc_pd()?;
    /// let block = ctx.alloc_block(8192)?;
    /// block.write(0, b"registered by the application").expect("within the block");
    /// let mr = pd.reg_block(block.clone(), Access::LOCAL_WRITE | Access::REMOTE_READ)?;
    /// assert_eq!(mr.addr(), block.addr());
    /// # Ok(()) }
    /// ```
    pub fn alloc_block(&self, len: usize) -> Result<Arc<MemBlock>> {
        self.uctx.alloc_block(len).map(Arc::new)
    }

    /// True when this context is served by the daemon.
    pub fn is_daemon(&self) -> bool {
        self.uctx.is_daemon()
    }

    /// Open a device of this process's own that is not in the
    /// `SOFTVERBS_DEVICES` list: it is made from `cfg` for this call, is not
    /// listed by [`crate::devices`], and lives (its UDP socket bound on first
    /// use) until the returned context, its clones and every object made
    /// from them are dropped. Each call makes a new device, so two calls
    /// with the same address clash on the socket.
    ///
    /// It lets one process use devices on addresses and ports of its
    /// choosing — tests running in parallel, or a program that takes its
    /// device from its own command line.
    ///
    /// ```no_run
    /// use softverbs::{Context, DeviceConfig, DeviceKind};
    /// let cfg = DeviceConfig::new("lab0", DeviceKind::Rxe, "127.0.0.5".parse().unwrap())
    ///     .with_port(14791);
    /// let ctx = Context::open_config(cfg).unwrap();
    /// assert_eq!(ctx.name(), "lab0");
    /// ```
    pub fn open_config(cfg: DeviceConfig) -> Result<Context> {
        let driver: Arc<dyn Driver> = Arc::new(softverbs_devices::open_device(cfg));
        let dev = Device::try_new(driver)
            .map_err(|e| VerbsError::invalid(format!("the device's uAPI spec is invalid: {e}")))?;
        let uctx = dev.open(Owner::this_process())?;
        Ok(Context {
            uctx: Arc::new(Ctx::Embedded(uctx)),
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        self.uctx.name()
    }

    /// Device attributes and capabilities (`ibv_query_device`).
    pub fn query_device(&self) -> Result<DeviceCaps> {
        self.uctx.query_device()
    }

    /// Port attributes (`ibv_query_port`); ports are numbered from 1.
    pub fn query_port(&self, port: u8) -> Result<PortAttr> {
        self.uctx.query_port(port)
    }

    /// A GID of a port (`ibv_query_gid`). For RoCE over IPv4, index 1 is the
    /// IPv4-mapped address, as with Linux rxe.
    pub fn query_gid(&self, port: u8, index: u16) -> Result<Gid> {
        self.uctx.query_gid(port, index)
    }

    /// Device-wide counters: packets, bytes, drops, the QP counters'
    /// sum and CQ overruns of the device this context is open on. In the
    /// daemon backend they are asked of the daemon (one uAPI call,
    /// `DEVICE.query_device_counters`) and, as a Linux device's hardware
    /// counters, count every process's traffic through that device. Zero
    /// when they cannot be read (the daemon went away):
    /// [`Context::query_counters`] says why.
    pub fn counters(&self) -> DeviceCounters {
        self.query_counters().unwrap_or_default()
    }

    /// [`Context::counters`], with the error when they cannot be read
    /// (in the daemon backend: the daemon went away or refused).
    pub fn query_counters(&self) -> Result<DeviceCounters> {
        self.uctx.counters()
    }

    /// The asynchronous event queue (`ibv_get_async_event`); its fd is
    /// pollable. In the daemon backend the daemon's events for this
    /// context arrive here, and [`crate::AsyncEvent::DeviceFatal`] when the
    /// daemon goes away (exit, crash, restart).
    pub fn async_events(&self) -> &AsyncEvents {
        self.uctx.async_events()
    }

    /// Allocate a protection domain (`ibv_alloc_pd`).
    pub fn alloc_pd(&self) -> Result<Pd> {
        let r = self.uctx.alloc_pd()?;
        Ok(Pd {
            inner: Arc::new(PdInner {
                uctx: self.uctx.clone(),
                r,
            }),
        })
    }

    /// Create a completion channel (`ibv_create_comp_channel`). In the
    /// daemon backend it lives in this process: an armed CQ ring that fires
    /// wakes the context's event thread, which reports the CQ here.
    pub fn create_comp_channel(&self) -> Result<CompletionChannel> {
        let r = self.uctx.create_comp_channel()?;
        Ok(CompletionChannel {
            inner: Arc::new(ChannelInner {
                uctx: self.uctx.clone(),
                r,
            }),
        })
    }

    /// Create a completion queue of at least `cqe` entries (`ibv_create_cq`),
    /// optionally reporting to `channel` when armed.
    pub fn create_cq(&self, cqe: u32, channel: Option<&CompletionChannel>) -> Result<Cq> {
        let r = self
            .uctx
            .create_cq(cqe, channel.map(|c| c.inner.r.handle))?;
        let ring = match self.uctx.cq_ring(&r, channel.map(|c| &c.inner.r.channel)) {
            Ok(ring) => ring,
            Err(e) => {
                let _ = self.uctx.destroy_cq(r.handle);
                return Err(e);
            }
        };
        Ok(Cq {
            inner: Arc::new(CqInner {
                uctx: self.uctx.clone(),
                r,
                channel: channel.map(|c| c.inner.clone()),
                ring,
            }),
        })
    }
}
