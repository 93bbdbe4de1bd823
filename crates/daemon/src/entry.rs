//! The daemon's command line, shared by `softverbsd` and `softverbs daemon`.
//!
//! ```text
//! softverbsd [--socket PATH] [--devices LIST | --config FILE]
//! ```
//!
//! Devices come from `--devices` (the `SOFTVERBS_DEVICES` syntax), else a
//! configuration file (one device entry per line, `#` comments), else
//! `SOFTVERBS_DEVICES`, else the default pair. The socket is `--socket`,
//! else `SOFTVERBS_SOCKET`, else `$XDG_RUNTIME_DIR/softverbs.sock`, else
//! `/run/softverbs/softverbs.sock`; its file permissions decide who may
//! connect (and so who may `link add`/`delete`, see [`crate::control`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use softverbs_core::Device;

use crate::{default_socket_path, Daemon, Server};

/// What the daemon is started with.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The socket (default: [`default_socket_path`]).
    pub socket: Option<PathBuf>,
    /// Devices in the `SOFTVERBS_DEVICES` syntax.
    pub devices: Option<String>,
    /// A configuration file: one device entry per line, `#` comments.
    pub config: Option<PathBuf>,
}

/// The device list of a configuration file's text.
pub fn config_list(text: &str) -> String {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs the daemon until it is killed; `prog` prefixes its messages.
pub fn run(prog: &str, opts: &Options) -> ExitCode {
    let mut list = opts.devices.clone();
    if list.is_none() {
        if let Some(file) = &opts.config {
            match std::fs::read_to_string(file) {
                Ok(text) => list = Some(config_list(&text)),
                Err(e) => {
                    eprintln!("{prog}: config {}: {e}", file.display());
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let drivers = match &list {
        Some(l) => softverbs_devices::devices_from(l),
        None => softverbs_devices::devices(),
    };
    let drivers = match drivers {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{prog}: devices: {e}");
            return ExitCode::FAILURE;
        }
    };
    let devices: Vec<Arc<Device>> = drivers.into_iter().map(Device::new).collect();
    let path = opts.socket.clone().unwrap_or_else(default_socket_path);
    let names: Vec<&str> = devices.iter().map(|d| d.name()).collect();
    let daemon = Daemon::new(devices.clone());
    match Server::bind(&path, daemon) {
        Ok(s) => {
            eprintln!("{prog}: {} on {}", names.join(", "), path.display());
            drop(devices);
            s.serve();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{prog}: {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

fn usage(prog: &str) -> ExitCode {
    eprintln!("usage: {prog} [--socket PATH] [--devices LIST | --config FILE]");
    ExitCode::from(2)
}

/// `softverbsd`'s argument parsing, then [`run`].
pub fn main_args(prog: &str, args: impl IntoIterator<Item = String>) -> ExitCode {
    let mut opts = Options::default();
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        let slot = match a.as_str() {
            "--socket" => &mut opts.socket,
            "--config" => &mut opts.config,
            "--devices" => match args.next() {
                Some(l) => {
                    opts.devices = Some(l);
                    continue;
                }
                None => return usage(prog),
            },
            "-h" | "--help" => {
                usage(prog);
                return ExitCode::SUCCESS;
            }
            _ => return usage(prog),
        };
        match args.next() {
            Some(p) => *slot = Some(p.into()),
            None => return usage(prog),
        }
    }
    run(prog, &opts)
}
