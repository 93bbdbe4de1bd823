//! Helpers of the CLI tests that run the built `softverbs` binary: a
//! server process and a client process, each opening one device of its
//! own on loopback addresses no other test uses (so tests run in
//! parallel), and a wait for the server's TCP port to listen (the clients,
//! like the real tools, do not retry).

#![allow(dead_code)]
// Tests bound how long a child may run: wall-clock time.
#![allow(clippy::disallowed_methods)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The built binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_softverbs")
}

/// `SOFTVERBS_DEVICES` with rxe0 on 127.91.<net>.1 and rxe1 on 127.91.<net>.2
/// (one `net` per test).
pub fn devices(net: u8) -> String {
    format!("rxe0=rxe:127.91.{net}.1,rxe1=rxe:127.91.{net}.2")
}

/// A `softverbs` command with the devices of `net`.
pub fn cmd(net: u8, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env("SOFTVERBS_DEVICES", devices(net))
        .stdin(Stdio::null());
    c
}

/// Runs to completion, failing the test after `limit`.
pub fn run(mut c: Command, limit: Duration) -> Output {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().expect("spawn softverbs");
    wait(child, limit)
}

/// Waits for a child, killing it after `limit`.
pub fn wait(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "softverbs did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True once some socket listens on TCP `port` (from /proc/net/tcp, so
/// that the check does not use up the server's single accept).
pub fn listening(port: u16) -> bool {
    let want = format!(":{port:04X} ");
    std::fs::read_to_string("/proc/net/tcp")
        .map(|t| {
            t.lines()
                .skip(1)
                .any(|l| l.split_whitespace().nth(3) == Some("0A") && l.contains(&want))
        })
        .unwrap_or(false)
}

/// Starts a server and waits until it listens on `port`.
pub fn start_server(mut c: Command, port: u16) -> Child {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn server");
    let start = Instant::now();
    while !listening(port) {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let out = child.wait_with_output().expect("output");
            panic!(
                "server exited early ({status})\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "server never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Stdout as text, after asserting success.
pub fn ok_stdout(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
