//! `softverbs pingpong {rc,uc,ud,srq}`: a server process on rxe1 and a
//! client process on rxe0, each test on loopback addresses of its own,
//! checking the output lines of rdma-core's tools and that the numbers are
//! present and plausible (never that they are fast).

mod common;

use std::time::Duration;

use common::{cmd, ok_stdout, run, start_server, wait};

const LIMIT: Duration = Duration::from_secs(60);

/// Runs server and client of `tool` with `extra` options; returns both
/// outputs.
fn pingpong(net: u8, port: u16, tool: &str, extra: &[&str]) -> (String, String) {
    let p = port.to_string();
    let mut sargs = vec!["pingpong", tool, "-d", "rxe1", "-g", "1", "-p", &p];
    sargs.extend_from_slice(extra);
    let server = start_server(cmd(net, &sargs), port);
    let host = format!("127.91.{net}.2");
    let mut cargs = vec!["pingpong", tool, "-d", "rxe0", "-g", "1", "-p", &p];
    cargs.extend_from_slice(extra);
    cargs.push(&host);
    let client = run(cmd(net, &cargs), LIMIT);
    let server = wait(server, LIMIT);
    (ok_stdout("server", &server), ok_stdout("client", &client))
}

/// Checks the lines of one side: `qps` local and remote address lines
/// with the expected GIDs, then the two result lines.
fn check(out: &str, tool: &str, qps: usize, local: &str, remote: &str, size: u64, iters: u64) {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2 * qps + 2, "{out}");
    let sep = if tool == "ud" { ':' } else { ',' };
    for l in &lines[..qps] {
        assert!(l.starts_with("  local address:  LID 0x0000, QPN 0x"), "{l}");
        assert!(l.ends_with(&format!("{sep} GID ::ffff:{local}")), "{l}");
    }
    for l in &lines[qps..2 * qps] {
        assert!(l.starts_with("  remote address: LID 0x0000, QPN 0x"), "{l}");
        assert!(l.ends_with(&format!(", GID ::ffff:{remote}")), "{l}");
    }
    let bytes = lines[2 * qps];
    let want = format!("{} bytes in ", size * iters * 2);
    assert!(
        bytes.starts_with(&want) && bytes.ends_with(" Mbit/sec"),
        "{bytes}"
    );
    let it = lines[2 * qps + 1];
    assert!(it.starts_with(&format!("{iters} iters in ")), "{it}");
    let usec: f64 = it
        .trim_end_matches(" usec/iter")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(usec > 0.0 && usec < 1e6, "{it}");
}

#[test]
fn rc_with_events_and_check() {
    let (s, c) = pingpong(11, 18611, "rc", &["-n", "200", "-e", "-c"]);
    check(&s, "rc", 1, "127.91.11.2", "127.91.11.1", 4096, 200);
    check(&c, "rc", 1, "127.91.11.1", "127.91.11.2", 4096, 200);
    assert!(!s.contains("invalid data"), "{s}");
}

#[test]
fn uc_small_inline_messages() {
    let (s, c) = pingpong(12, 18612, "uc", &["-n", "200", "-s", "16", "-m", "512"]);
    check(&s, "uc", 1, "127.91.12.2", "127.91.12.1", 16, 200);
    check(&c, "uc", 1, "127.91.12.1", "127.91.12.2", 16, 200);
}

#[test]
fn ud_with_grh_and_qkey() {
    let (s, c) = pingpong(13, 18613, "ud", &["-n", "200", "-c"]);
    check(&s, "ud", 1, "127.91.13.2", "127.91.13.1", 1024, 200);
    check(&c, "ud", 1, "127.91.13.1", "127.91.13.2", 1024, 200);
    assert!(!s.contains("invalid data"), "{s}");
}

#[test]
fn srq_four_qps() {
    let (s, c) = pingpong(14, 18614, "srq", &["-n", "200", "-q", "4", "-r", "16"]);
    check(&s, "srq", 4, "127.91.14.2", "127.91.14.1", 4096, 200);
    check(&c, "srq", 4, "127.91.14.1", "127.91.14.2", 4096, 200);
}

#[test]
fn errors_are_one_line_and_exit_1() {
    // An unknown device lists the devices there are.
    let out = run(
        cmd(15, &["pingpong", "rc", "-d", "mlx5_0", "127.91.0.1"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("IB device mlx5_0 not found") && err.contains("rxe0, rxe1"),
        "{err}"
    );
    // UD messages must fit the MTU.
    let out = run(cmd(15, &["pingpong", "ud", "-s", "2048"]), LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Requested size larger than port MTU (1024)"),
        "{err}"
    );
    // No server: the client names what it tried, and does not retry.
    let out = run(
        cmd(
            15,
            &["pingpong", "rc", "-g", "1", "-p", "18615", "127.91.15.9"],
        ),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.91.15.9:18615"), "{err}");
    // Without -g on RoCE the server cannot build an address vector: RTR
    // fails, as with rxe, with a hint.
    let server = start_server(
        cmd(16, &["pingpong", "rc", "-d", "rxe1", "-p", "18616"]),
        18616,
    );
    let client = run(
        cmd(
            16,
            &["pingpong", "rc", "-d", "rxe0", "-p", "18616", "127.91.16.2"],
        ),
        LIMIT,
    );
    let server = wait(server, LIMIT);
    assert_eq!(server.status.code(), Some(1));
    assert_eq!(client.status.code(), Some(1));
    let err = String::from_utf8_lossy(&server.stderr);
    assert!(
        err.contains("Failed to modify QP to RTR") && err.contains("-g 1"),
        "{err}"
    );
}
