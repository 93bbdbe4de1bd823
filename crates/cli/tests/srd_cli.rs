//! `softverbs perf -c SRD` and `softverbs pingpong srd` on `srd` devices
//! (issue 7), the SRD capabilities `softverbs dev` shows, and the clear
//! refusals: RC on an SRD-only device, SRD on a device without it, atomics
//! on SRD. Devices on 127.97.<net>.x, of this file only.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{ok_stdout, run, start_server, wait};

const LIMIT: Duration = Duration::from_secs(90);

/// A `softverbs` command with srd devices efa0 and efa1 on 127.97.<net>.1/.2.
fn srd_cmd(net: u8, args: &[&str]) -> Command {
    let mut c = common::cmd(net, args);
    c.env(
        "SOFTVERBS_DEVICES",
        format!("efa0=srd:127.97.{net}.1:mtu=4096,efa1=srd:127.97.{net}.2:mtu=4096"),
    );
    c
}

/// The first row of numbers after the table header.
fn first_row(out: &str) -> Vec<f64> {
    let lines: Vec<&str> = out.lines().collect();
    let h = lines
        .iter()
        .position(|l| l.starts_with(" #bytes"))
        .unwrap_or_else(|| panic!("no table header in:\n{out}"));
    lines[h + 1]
        .split_whitespace()
        .map(|f| {
            f.parse::<f64>()
                .unwrap_or_else(|_| panic!("{}", lines[h + 1]))
        })
        .collect()
}

fn err_of(c: Command) -> String {
    let out = run(c, LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn perf_c_srd_loopback_write_read_send() {
    for (net, test, extra, bytes) in [
        (1, "write_bw", &["-s", "65536"][..], 65536.0),
        (2, "read_bw", &["-s", "65536"][..], 65536.0),
        (3, "send_bw", &["-s", "4096"][..], 4096.0),
        (4, "send_lat", &["-s", "64"][..], 64.0),
        (5, "write_lat", &["-s", "64"][..], 64.0),
        (6, "read_lat", &["-s", "64"][..], 64.0),
    ] {
        let mut a = vec!["perf", test, "-c", "SRD", "-n", "200", "--loopback"];
        a.extend_from_slice(extra);
        let out = ok_stdout(&a.join(" "), &run(srd_cmd(net, &a), LIMIT));
        assert!(out.contains("Connection type : SRD"), "{out}");
        let row = first_row(&out);
        assert_eq!((row[0], row[1]), (bytes, 200.0), "{test}: {row:?}");
        assert!(row[3] > 0.0, "{test}: {row:?}");
    }
}

#[test]
fn perf_c_srd_server_and_client_processes() {
    let (net, port) = (7, 18797u16);
    let p = port.to_string();
    let args = ["perf", "write_bw", "-c", "SRD", "-n", "300", "-s", "131072"];
    let mut s = args.to_vec();
    s.extend_from_slice(&["-d", "efa1", "-p", &p]);
    let server = start_server(srd_cmd(net, &s), port);
    let host = format!("127.97.{net}.2");
    let mut c = args.to_vec();
    c.extend_from_slice(&["-d", "efa0", "-p", &p, &host]);
    let client = ok_stdout("client", &run(srd_cmd(net, &c), LIMIT));
    let server = ok_stdout("server", &wait(server, LIMIT));
    assert_eq!(first_row(&client), first_row(&server));
    assert_eq!(first_row(&client)[0], 131072.0);
}

#[test]
fn pingpong_srd_between_two_processes() {
    let (net, port) = (8, 18798u16);
    let p = port.to_string();
    let server = start_server(
        srd_cmd(
            net,
            &[
                "pingpong", "srd", "-d", "efa1", "-g", "1", "-p", &p, "-n", "200", "-c",
            ],
        ),
        port,
    );
    let host = format!("127.97.{net}.2");
    let client = run(
        srd_cmd(
            net,
            &[
                "pingpong", "srd", "-d", "efa0", "-g", "1", "-p", &p, "-n", "200", "-c", &host,
            ],
        ),
        LIMIT,
    );
    let c = ok_stdout("client", &client);
    let s = ok_stdout("server", &wait(server, LIMIT));
    for out in [&c, &s] {
        assert!(out.contains("200 iters in"), "{out}");
        assert!(
            out.contains("  local address:  LID 0x0000, QPN 0x"),
            "{out}"
        );
    }
}

#[test]
fn refusals_name_what_is_missing() {
    // An RC test on the SRD-only device: the missing capability, up front.
    let e = err_of(srd_cmd(9, &["perf", "write_bw", "--loopback"]));
    assert!(
        e.contains("write_bw: device efa0 does not support RC queue pairs (it offers UD, SRD)"),
        "{e}"
    );
    let e = err_of(srd_cmd(
        9,
        &["pingpong", "rc", "-d", "efa0", "-g", "1", "127.97.9.2"],
    ));
    assert!(e.contains("does not support RC queue pairs"), "{e}");
    // SRD on an rxe device.
    let e = err_of(common::cmd(
        9,
        &["perf", "write_bw", "-c", "SRD", "--loopback"],
    ));
    assert!(e.contains("-c SRD needs an SRD device"), "{e}");
    // No atomics on SRD; SEND is at most one MTU.
    let e = err_of(srd_cmd(
        9,
        &["perf", "atomic_bw", "-c", "SRD", "--loopback"],
    ));
    assert!(
        e.contains("SRD connection not possible in atomic_bw"),
        "{e}"
    );
    let e = err_of(srd_cmd(
        9,
        &["perf", "send_bw", "-c", "SRD", "-s", "65536", "--loopback"],
    ));
    assert!(
        e.contains("Max message size in SRD cannot be greater than MTU"),
        "{e}"
    );
}

#[test]
fn dev_shows_srd() {
    let out = ok_stdout("dev", &run(srd_cmd(10, &["dev", "show", "efa0"]), LIMIT));
    assert!(out.contains("qp_types:\t\t\tUD, SRD"), "{out}");
    assert!(out.contains("RDMA_WRITE, RDMA_READ"), "{out}");
    // efadv_query_device's answer.
    assert!(out.contains("efa (efadv_query_device):"), "{out}");
    assert!(out.contains("max_rdma_size:\t\t1073741824"), "{out}");
    assert!(
        out.contains("device_caps:\t\tRDMA_READ, RNR_RETRY, RDMA_WRITE, UNSOLICITED_WRITE_RECV"),
        "{out}"
    );
    let j = ok_stdout("dev -j", &run(srd_cmd(10, &["dev", "-j"]), LIMIT));
    let v: serde_json::Value = serde_json::from_str(&j).expect("JSON");
    assert_eq!(v[0]["efa"]["max_sq_wr"], 4096, "{j}");
}
