//! The daemon: owns the host's devices, accepts clients on a Unix socket,
//! gives each connection its own context, serves the uAPI, and moves work
//! between the clients' rings and the devices.
//!
//! Threads: one accept loop; per connection, one thread serving frames and
//! one ring worker ([`worker`]). A connection's context is closed (every
//! object destroyed, children first) when its socket closes, whatever the
//! reason: exit, crash or `kill -9`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use softverbs_core::objects::ids::{CHANNEL, CQ, CREATE};
use softverbs_core::objects::{CqObj, QpObj, SrqObj};
use softverbs_core::shm::SharedMap;
use softverbs_core::uapi::encoding::{decode_call, encode_error, encode_reply};
use softverbs_core::uapi::{errno, Handle, UapiError};
use softverbs_core::{Device, Owner, Ucontext};

use crate::frame::{self, FrameError, Kind};
use crate::proto::{Attach, RingKind};
use crate::ring::{self, HEADER_SIZE};
use crate::worker::{self, Doorbell, RingSet};
use crate::wqe;

/// Host-wide counters of the daemon.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Frames refused as malformed (the connection was closed).
    pub malformed_frames: AtomicU64,
    /// Calls that failed: uAPI calls refused in validation or by their
    /// handler, and daemon frames refused.
    pub failed_calls: AtomicU64,
    /// uAPI calls refused because they named a handle of another context
    /// or a stale one (guessed, or replayed from a closed connection).
    pub rejected_handles: AtomicU64,
    /// Ring entries refused (bad WQE, corrupt indices).
    pub bad_ring_entries: AtomicU64,
}

/// A context the daemon closed because its connection went away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// Who held it.
    pub owner: Owner,
    /// Its objects, in the order they were destroyed (`"qp"`, `"mr"`, ...,
    /// with their handles).
    pub destroyed: Vec<(&'static str, Handle)>,
}

/// How many closed contexts [`Daemon::closed`] remembers.
const CLOSED_LOG: usize = 32;

/// What the daemon owns: the devices and its counters.
#[derive(Debug)]
pub struct Daemon {
    /// The devices; `softverbs link add`/`delete` change the list at run
    /// time ([`crate::control`]).
    pub(crate) devices: RwLock<Vec<Arc<Device>>>,
    /// Counters.
    pub stats: Stats,
    closed: Mutex<std::collections::VecDeque<Closed>>,
}

impl Daemon {
    /// A daemon over these devices.
    pub fn new(devices: Vec<Arc<Device>>) -> Arc<Self> {
        Arc::new(Daemon {
            devices: RwLock::new(devices),
            stats: Stats::default(),
            closed: Mutex::new(std::collections::VecDeque::new()),
        })
    }

    /// The last contexts closed because their client went away (exit,
    /// crash, `kill -9`), oldest first, with what was destroyed in what
    /// order.
    pub fn closed(&self) -> Vec<Closed> {
        self.closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The devices (now: `link add`/`delete` may change them).
    pub fn devices(&self) -> Vec<Arc<Device>> {
        self.devices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every live object of every client, host-wide.
    pub fn resources(&self) -> Vec<softverbs_core::Resource> {
        self.devices().iter().flat_map(|d| d.resources()).collect()
    }
}

/// The default socket path: `$SOFTVERBS_SOCKET`, else
/// `$XDG_RUNTIME_DIR/softverbs.sock`, else `/run/softverbs/softverbs.sock`.
pub fn default_socket_path() -> PathBuf {
    if let Some(p) = std::env::var_os(crate::SOCKET_ENV) {
        return p.into();
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => Path::new(&d).join("softverbs.sock"),
        None => PathBuf::from("/run/softverbs/softverbs.sock"),
    }
}

/// A listening daemon.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    daemon: Arc<Daemon>,
    stop: Arc<AtomicBool>,
}

/// A server running on its own thread (tests, embedding).
pub struct Running {
    /// The daemon.
    pub daemon: Arc<Daemon>,
    /// The socket path.
    pub path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Server {
    /// Binds `path` (a stale socket file is replaced; the file's permissions
    /// decide who may connect).
    pub fn bind(path: &Path, daemon: Arc<Daemon>) -> io::Result<Server> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() && UnixStream::connect(path).is_err() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            daemon,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Accepts clients until stopped.
    pub fn serve(self) {
        for conn in self.listener.incoming() {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let d = self.daemon.clone();
            d.stats.connections.fetch_add(1, Ordering::Relaxed);
            let _ = std::thread::Builder::new()
                .name("softverbsd-conn".into())
                .spawn(move || Conn::new(d, conn).run());
        }
    }

    /// Runs [`Server::serve`] on a thread; dropping the result stops it.
    pub fn spawn(self) -> Running {
        let (daemon, path, stop) = (self.daemon.clone(), self.path.clone(), self.stop.clone());
        let thread = std::thread::spawn(move || self.serve());
        Running {
            daemon,
            path,
            stop,
            thread: Some(thread),
        }
    }
}

fn owner_of(sock: &UnixStream) -> Owner {
    match rustix::net::sockopt::socket_peercred(sock) {
        Ok(c) => {
            let pid = c.pid.as_raw_nonzero().get() as u32;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into());
            Owner { pid, comm }
        }
        Err(_) => Owner {
            pid: 0,
            comm: "?".into(),
        },
    }
}

/// One client connection.
struct Conn {
    daemon: Arc<Daemon>,
    sock: UnixStream,
    owner: Owner,
    open: Option<Open>,
}

/// A connection with an open device.
struct Open {
    uctx: Arc<Ucontext>,
    /// The channel every CQ of this context reports to (the ring worker
    /// sleeps on it).
    channel: Handle,
    rings: Arc<Mutex<RingSet>>,
    kick: Arc<Doorbell>,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
}

impl Open {
    /// The client is gone: stop the worker, move its QPs to the error
    /// state (outstanding work flushed, as a QP with a fatal error), then
    /// destroy every object, children first and newest first, as the
    /// kernel does when the file is closed. Returns what went, in order.
    fn close(mut self) -> Vec<(&'static str, Handle)> {
        self.stop.store(true, Ordering::SeqCst);
        self.kick.ring();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        let ctx = self.uctx.uapi_context();
        for (h, _) in ctx.objects() {
            if ctx.get::<QpObj>(h).is_some() {
                let _ = self.uctx.modify_qp(
                    h,
                    &softverbs_core::ModifyAttrs {
                        qp_state: Some(softverbs_transport::QpState::Err),
                        ..Default::default()
                    },
                );
            }
        }
        self.uctx
            .close()
            .into_iter()
            .map(|d| (d.object, d.handle))
            .collect()
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.kick.ring();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        self.uctx.close();
    }
}

fn err_reply(e: &UapiError) -> (Kind, Vec<u8>) {
    (Kind::ERROR, frame::error_body(e.errno(), &e.to_string()))
}

fn verr(e: softverbs_core::VerbsError) -> UapiError {
    UapiError::from(e)
}

fn invalid(msg: impl Into<String>) -> UapiError {
    verr(softverbs_core::VerbsError::InvalidArgument(msg.into()))
}

impl Conn {
    fn new(daemon: Arc<Daemon>, sock: UnixStream) -> Self {
        let owner = owner_of(&sock);
        Conn {
            daemon,
            sock,
            owner,
            open: None,
        }
    }

    fn run(mut self) {
        loop {
            let f = match frame::recv(&self.sock) {
                Ok(f) => f,
                Err(FrameError::Malformed(m)) => {
                    self.daemon
                        .stats
                        .malformed_frames
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = frame::send(
                        &self.sock,
                        Kind::ERROR,
                        &frame::error_body(errno::EINVAL, &format!("malformed frame: {m}")),
                        &[],
                    );
                    break;
                }
                Err(_) => break,
            };
            let req = f.kind;
            let (kind, body) = match self.handle(f) {
                Ok(body) => (req.reply(), body),
                Err(e) => {
                    self.daemon
                        .stats
                        .failed_calls
                        .fetch_add(1, Ordering::Relaxed);
                    err_reply(&e)
                }
            };
            if frame::send(&self.sock, kind, &body, &[]).is_err() {
                break;
            }
        }
        if let Some(o) = self.open.take() {
            let destroyed = o.close();
            let mut log = self.daemon.closed.lock().unwrap_or_else(|e| e.into_inner());
            if log.len() == CLOSED_LOG {
                log.pop_front();
            }
            log.push_back(Closed {
                owner: self.owner.clone(),
                destroyed,
            });
        }
    }

    fn opened(&self) -> Result<&Open, UapiError> {
        self.open
            .as_ref()
            .ok_or_else(|| invalid("no device is open on this connection (send OPEN first)"))
    }

    fn handle(&mut self, f: frame::Frame) -> Result<Vec<u8>, UapiError> {
        match f.kind {
            Kind::OPEN => self.open_device(&f.body),
            Kind::CALL => {
                let o = self.opened()?;
                Ok(call(&self.daemon, o, &f.body, f.fds))
            }
            Kind::ATTACH => {
                let o = self.opened()?;
                attach(&self.daemon, o, &f.body, f.fds)?;
                Ok(Vec::new())
            }
            Kind::DEVICES => Ok(self
                .daemon
                .devices()
                .iter()
                .map(|d| d.name().to_string())
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes()),
            Kind::RESOURCES => serde_json::to_vec(&self.daemon.resources())
                .map_err(|e| invalid(format!("resources: {e}"))),
            k if crate::control::handles(k) => crate::control::handle(&self.daemon, k, &f.body),
            k => Err(UapiError::from(softverbs_core::VerbsError::unsupported(
                "softverbsd",
                format!("frame kind {:#x}", k.0),
            ))),
        }
    }

    fn open_device(&mut self, body: &[u8]) -> Result<Vec<u8>, UapiError> {
        if self.open.is_some() {
            return Err(invalid("a device is already open on this connection"));
        }
        let name = std::str::from_utf8(body).map_err(|_| invalid("device name is not UTF-8"))?;
        // The device is opened under the list's read lock, so a `link
        // delete` (write lock) sees every context of the device it removes.
        let (dev, uctx) = {
            let list = self
                .daemon
                .devices
                .read()
                .unwrap_or_else(|e| e.into_inner());
            let dev = list
                .iter()
                .find(|d| d.name() == name)
                .cloned()
                .ok_or_else(|| {
                    verr(softverbs_core::VerbsError::NotFound(format!(
                        "no device named {name}"
                    )))
                })?;
            let uctx = dev.open(self.owner.clone()).map_err(verr)?;
            (dev, uctx)
        };
        let channel = uctx.create_comp_channel().map_err(verr)?;
        let kick = Arc::new(Doorbell::new().map_err(|e| invalid(e.to_string()))?);
        let rings = RingSet::new(kick.clone());
        // Every CQ of this context reports to this channel, and the
        // channel hands their completions to the rings: the device writes
        // CQEs into the client's CQ rings itself.
        channel.channel.set_sink(rings.sink());
        let rings = Arc::new(Mutex::new(rings));
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (u, r, k, s, d) = (
                uctx.clone(),
                rings.clone(),
                kick.clone(),
                stop.clone(),
                self.daemon.clone(),
            );
            let ch = channel.channel.clone();
            std::thread::Builder::new()
                .name("softverbsd-rings".into())
                .spawn(move || worker::run(u, ch, r, k, s, d))
                .map_err(|e| invalid(e.to_string()))?
        };
        let driver_id = dev.registry().driver_id();
        self.open = Some(Open {
            uctx,
            channel: channel.handle,
            rings,
            kick,
            stop,
            worker: Some(worker),
        });
        let mut out = driver_id.to_le_bytes().to_vec();
        out.extend_from_slice(&[0; 4]);
        Ok(out)
    }
}

/// Dispatches one encoded call through the context's registry. A CQ
/// created without a channel is given the context's own, whose completion
/// sink writes into the CQ's ring. Failed calls are counted, and calls
/// that named a handle of another context or a stale one (guessed,
/// replayed from a closed connection) are counted apart.
fn call(d: &Daemon, o: &Open, body: &[u8], fds: Vec<OwnedFd>) -> Vec<u8> {
    let reg = o.uctx.device().registry();
    let ctx = o.uctx.uapi_context();
    let result = decode_call(body).map_err(UapiError::from).and_then(|c| {
        let c = if c.object == CQ && c.method == CREATE && !c.attrs.iter().any(|a| a.id == CHANNEL)
        {
            c.handle(CHANNEL, o.channel)
        } else {
            c
        };
        reg.call_with_fds(ctx, &c, fds)
    });
    match result {
        Ok(reply) => encode_reply(&reply),
        Err(e) => {
            d.stats.failed_calls.fetch_add(1, Ordering::Relaxed);
            if matches!(
                e,
                UapiError::ForeignHandle { .. } | UapiError::StaleHandle { .. }
            ) {
                d.stats.rejected_handles.fetch_add(1, Ordering::Relaxed);
            }
            encode_error(&e)
        }
    }
}

/// Maps a client's ring and hands it to the worker.
fn attach(d: &Daemon, o: &Open, body: &[u8], fds: Vec<OwnedFd>) -> Result<(), UapiError> {
    let a = Attach::decode(body).map_err(invalid)?;
    let Ok::<[OwnedFd; 2], _>([memfd, bell]) = fds.try_into() else {
        return Err(invalid(
            "ATTACH carries two fds: the ring memfd and an eventfd",
        ));
    };
    // The doorbell is written from the device's threads (a CQ ring's sink
    // runs under the device's CQ lock): whatever the client passed (a
    // full pipe, say) must not be able to block them there.
    rustix::fs::fcntl_getfl(&bell)
        .and_then(|fl| rustix::fs::fcntl_setfl(&bell, fl | rustix::fs::OFlags::NONBLOCK))
        .map_err(|e| invalid(format!("ring eventfd: {e}")))?;
    if !ring::valid_entries(a.entries) {
        return Err(invalid(format!(
            "ring entries {} is not a power of two up to 2^20",
            a.entries
        )));
    }
    let ctx = o.uctx.uapi_context();
    let stale = || {
        d.stats.rejected_handles.fetch_add(1, Ordering::Relaxed);
        verr(softverbs_core::VerbsError::NotFound(format!(
            "handle {} names no {:?} of this context",
            a.handle, a.kind
        )))
    };
    let need = match a.kind {
        RingKind::Send => {
            let qp = ctx.get::<QpObj>(a.handle).ok_or_else(stale)?;
            wqe::send_stride(qp.init.max_send_sge, qp.init.max_inline_data)
        }
        RingKind::Recv => {
            let qp = ctx.get::<QpObj>(a.handle).ok_or_else(stale)?;
            if qp.srq.is_some() {
                return Err(invalid(
                    "the QP receives from an SRQ: attach the SRQ's ring",
                ));
            }
            wqe::recv_stride(qp.init.max_recv_sge)
        }
        RingKind::Srq => {
            let srq = ctx.get::<SrqObj>(a.handle).ok_or_else(stale)?;
            let attr = o.uctx.driver().query_srq(srq.srqn).map_err(verr)?;
            wqe::recv_stride(attr.max_sge)
        }
        RingKind::Cq => {
            ctx.get::<CqObj>(a.handle).ok_or_else(stale)?;
            wqe::CQE_SIZE as u32
        }
        RingKind::Events => wqe::EVENT_SIZE as u32,
    };
    if a.stride != need {
        return Err(invalid(format!(
            "{:?} ring stride {} (this queue's entries take {need})",
            a.kind, a.stride
        )));
    }
    let len = HEADER_SIZE as u64 + u64::from(a.entries) * u64::from(a.stride);
    let map =
        SharedMap::map(memfd.as_fd(), 0, len).map_err(|e| invalid(format!("ring memfd: {e}")))?;
    drop(memfd);
    let mut rings = o.rings.lock().unwrap_or_else(|e| e.into_inner());
    rings
        .add(&o.uctx, a, Arc::new(map), bell)
        .map_err(invalid)?;
    drop(rings);
    o.kick.ring();
    Ok(())
}
