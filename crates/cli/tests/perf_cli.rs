//! `softverbs perf`: every test with `--loopback` (both sides in one
//! process over two devices), two-process server/client runs, and `-j`.
//! The tables are parsed and their numbers checked to be present and
//! plausible, never fast. Each test has loopback addresses of its own.

mod common;

use std::time::Duration;

use common::{cmd, ok_stdout, run, start_server, wait};

const LIMIT: Duration = Duration::from_secs(90);

/// The rows of the first table in `out` (the lines between the header and
/// the closing line), split into fields.
fn table(out: &str) -> (String, Vec<Vec<f64>>) {
    let lines: Vec<&str> = out.lines().collect();
    let h = lines
        .iter()
        .position(|l| l.starts_with(" #bytes"))
        .unwrap_or_else(|| panic!("no table header in:\n{out}"));
    let rows = lines[h + 1..]
        .iter()
        .take_while(|l| !l.starts_with("-----"))
        .map(|l| {
            l.split_whitespace()
                .map(|f| f.parse::<f64>().unwrap_or_else(|_| panic!("{l}")))
                .collect()
        })
        .collect();
    (lines[h].to_string(), rows)
}

fn loopback(net: u8, args: &[&str]) -> String {
    let mut a = vec!["perf"];
    a.extend_from_slice(args);
    a.push("--loopback");
    ok_stdout(&a.join(" "), &run(cmd(net, &a), LIMIT))
}

/// A bandwidth row: bytes, iterations, peak, average, message rate.
fn check_bw(row: &[f64], bytes: f64, iters: f64) {
    assert_eq!(row.len(), 5, "{row:?}");
    assert_eq!((row[0], row[1]), (bytes, iters), "{row:?}");
    assert!(row[2] >= 0.0 && row[3] > 0.0 && row[4] > 0.0, "{row:?}");
    // MiB/s and Mpps agree: average = rate × size (the average is printed
    // with two decimals).
    let implied = row[4] * 1e6 * bytes / 1048576.0;
    assert!((implied - row[3]).abs() <= 0.02 * row[3] + 0.006, "{row:?}");
}

/// A latency row: bytes, iterations, min ≤ typical ≤ max and the rest.
fn check_lat(row: &[f64], bytes: f64, iters: f64) {
    assert_eq!(row.len(), 9, "{row:?}");
    assert_eq!((row[0], row[1]), (bytes, iters), "{row:?}");
    let (min, max, typ, avg) = (row[2], row[3], row[4], row[5]);
    assert!(
        min > 0.0 && min <= typ && typ <= max && min <= avg,
        "{row:?}"
    );
    assert!(row[7] >= min && row[8] >= row[7], "{row:?}");
}

#[test]
fn loopback_bandwidth_tests() {
    for (net, test, extra, bytes) in [
        (31, "write_bw", &["-s", "65536"][..], 65536.0),
        (32, "read_bw", &["-s", "4096", "-o", "8"][..], 4096.0),
        (33, "send_bw", &["-s", "4096"][..], 4096.0),
        (34, "atomic_bw", &["-A", "CMP_AND_SWAP"][..], 8.0),
    ] {
        let mut a = vec![test, "-n", "100"];
        a.extend_from_slice(extra);
        let out = loopback(net, &a);
        assert!(out.contains("Data ex. method : Ethernet"), "{out}");
        assert!(out.contains(" local address: LID 0000 QPN 0x"), "{out}");
        let (header, rows) = table(&out);
        assert!(header.contains("BW average[MB/sec]"), "{header}");
        assert_eq!(rows.len(), 1, "{out}");
        check_bw(&rows[0], bytes, 100.0);
    }
}

#[test]
fn loopback_latency_tests() {
    for (net, test, bytes) in [
        (35, "write_lat", 2.0),
        (36, "read_lat", 2.0),
        (37, "send_lat", 2.0),
        (38, "atomic_lat", 8.0),
    ] {
        let out = loopback(net, &[test, "-n", "100"]);
        let (header, rows) = table(&out);
        assert!(header.contains("t_typical[usec]"), "{header}");
        assert_eq!(rows.len(), 1, "{out}");
        check_lat(&rows[0], bytes, 100.0);
    }
}

#[test]
fn loopback_transports_qps_and_options() {
    // UD send with the default size: clamped to the MTU.
    let out = loopback(39, &["send_bw", "-c", "UD", "-n", "64"]);
    assert!(out.contains("Connection type : UD"), "{out}");
    let (_, rows) = table(&out);
    check_bw(&rows[0], 1024.0, 64.0);
    // UC write over four QPs, Gb/s.
    let out = loopback(
        40,
        &[
            "write_bw",
            "-c",
            "UC",
            "-q",
            "4",
            "-s",
            "8192",
            "-n",
            "50",
            "--report_gbits",
        ],
    );
    let (header, rows) = table(&out);
    assert!(header.contains("Gb/sec"), "{header}");
    assert_eq!((rows[0][0], rows[0][1]), (8192.0, 200.0));
    // Events, send_lat over UD, -a over a few sizes (UD stops at the MTU).
    let out = loopback(41, &["send_lat", "-e", "-n", "50"]);
    check_lat(&table(&out).1[0], 2.0, 50.0);
    let out = loopback(42, &["send_lat", "-c", "UD", "-a", "-n", "20"]);
    let (_, rows) = table(&out);
    assert_eq!(rows.len(), 10, "2..1024 bytes: {out}");
    assert_eq!(rows[9][0], 1024.0);
}

#[test]
fn json_output_parses() {
    let out = loopback(43, &["write_bw", "-n", "50", "-s", "4096", "-j"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["test"], "write_bw");
    assert_eq!(v["role"], "client");
    assert_eq!(v["bw"][0]["bytes"], 4096);
    assert!(v["bw"][0]["bw_average"].as_f64().unwrap() > 0.0);
    let out = loopback(43, &["read_lat", "-n", "50", "-j"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert!(v["lat"][0]["t_avg"].as_f64().unwrap() > 0.0);
}

/// Server on rxe1 in one process, client on rxe0 in another.
fn two_processes(net: u8, port: u16, args: &[&str]) -> (String, String) {
    let p = port.to_string();
    let mut sargs = vec!["perf"];
    sargs.extend_from_slice(args);
    sargs.extend_from_slice(&["-d", "rxe1", "-p", &p]);
    let server = start_server(cmd(net, &sargs), port);
    let host = format!("127.91.{net}.2");
    let mut cargs = vec!["perf"];
    cargs.extend_from_slice(args);
    cargs.extend_from_slice(&["-d", "rxe0", "-p", &p, &host]);
    let client = run(cmd(net, &cargs), LIMIT);
    let server = wait(server, LIMIT);
    (ok_stdout("server", &server), ok_stdout("client", &client))
}

#[test]
fn write_bw_server_and_client_processes() {
    let (s, c) = two_processes(44, 18644, &["write_bw", "-n", "100", "-s", "8192"]);
    assert!(s.contains("* Waiting for client to connect... *"), "{s}");
    assert!(
        !s.contains("TX depth"),
        "the server prints no TX depth: {s}"
    );
    let (_, crow) = table(&c);
    let (_, srow) = table(&s);
    check_bw(&crow[0], 8192.0, 100.0);
    // The server prints the client's numbers, received over TCP.
    assert_eq!(crow, srow);
    assert!(
        c.contains("GID: 00:00:00:00:00:00:00:00:00:00:255:255:127:91:44:02"),
        "{c}"
    );
}

#[test]
fn send_lat_server_and_client_processes() {
    let (s, c) = two_processes(45, 18645, &["send_lat", "-n", "100"]);
    check_lat(&table(&s).1[0], 2.0, 100.0);
    check_lat(&table(&c).1[0], 2.0, 100.0);
}

#[test]
fn errors_name_what_is_missing() {
    // A UD-only device has no RC: said before anything is created.
    let mut c = cmd(46, &["perf", "write_bw", "--loopback"]);
    c.env(
        "SOFTVERBS_DEVICES",
        "ud0=udonly:127.91.46.1,ud1=udonly:127.91.46.2",
    );
    let out = run(c, LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("write_bw: device ud0 does not support RC queue pairs"),
        "{err}"
    );
    // perftest's own option checks.
    let out = run(
        cmd(46, &["perf", "atomic_bw", "-s", "16", "--loopback"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("Message size cannot be changed for Atomic tests"));
    let out = run(
        cmd(46, &["perf", "write_bw", "-p", "18646", "127.91.46.9"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("127.91.46.9:18646"));
    let out = run(cmd(46, &["perf", "send_bw", "-V"]), LIMIT);
    assert_eq!(ok_stdout("-V", &out), "Version: 6.06\n");
}
