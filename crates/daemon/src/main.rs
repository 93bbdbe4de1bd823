//! `softverbsd`: the softverbs daemon.
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
//! connect.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use softverbs_core::Device;
use softverbs_daemon::{default_socket_path, Daemon, Server};

fn usage() -> ExitCode {
    eprintln!("usage: softverbsd [--socket PATH] [--devices LIST | --config FILE]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut socket: Option<PathBuf> = None;
    let mut list: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--socket" => match args.next() {
                Some(p) => socket = Some(p.into()),
                None => return usage(),
            },
            "--devices" => match args.next() {
                Some(l) => list = Some(l),
                None => return usage(),
            },
            "--config" => match args.next().map(std::fs::read_to_string) {
                Some(Ok(text)) => {
                    let entries: Vec<&str> = text
                        .lines()
                        .map(|l| l.split('#').next().unwrap_or("").trim())
                        .filter(|l| !l.is_empty())
                        .collect();
                    list = Some(entries.join(","));
                }
                Some(Err(e)) => {
                    eprintln!("softverbsd: config: {e}");
                    return ExitCode::FAILURE;
                }
                None => return usage(),
            },
            "-h" | "--help" => {
                usage();
                return ExitCode::SUCCESS;
            }
            _ => return usage(),
        }
    }
    let drivers = match &list {
        Some(l) => softverbs_devices::devices_from(l),
        None => softverbs_devices::devices(),
    };
    let drivers = match drivers {
        Ok(d) => d,
        Err(e) => {
            eprintln!("softverbsd: devices: {e}");
            return ExitCode::FAILURE;
        }
    };
    let devices: Vec<Arc<Device>> = drivers.into_iter().map(Device::new).collect();
    let path = socket.unwrap_or_else(default_socket_path);
    let names: Vec<&str> = devices.iter().map(|d| d.name()).collect();
    eprintln!("softverbsd: {} on {}", names.join(", "), path.display());
    let daemon = Daemon::new(devices);
    match Server::bind(&path, daemon) {
        Ok(s) => {
            s.serve();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("softverbsd: {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
