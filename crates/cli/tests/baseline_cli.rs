//! `softverbs baseline` prints numbers for every size (present and positive,
//! never "fast").

use std::process::Command;

#[test]
fn baseline_json_has_every_size() {
    let out = Command::new(env!("CARGO_BIN_EXE_softverbs"))
        .args(["baseline", "-s", "64,4096", "--seconds", "0.05", "-j"])
        .output()
        .expect("run softverbs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rows = v.as_array().expect("an array");
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert!(r["memcpy_mbs"].as_f64().unwrap() > 0.0);
        assert!(r["udp_mbs"].as_f64().unwrap() >= 0.0);
    }
}
