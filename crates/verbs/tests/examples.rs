//! Runs every example (built by `cargo test` next to the test binaries) on
//! the default loopback devices and checks that it succeeds. The examples
//! bind rxe0/rxe1's port 4791 in their own processes, so this binary opens
//! no device itself; a run that did not build the examples (`cargo test
//! --test examples`) says so and passes.

use std::path::PathBuf;
use std::process::Command;

const EXAMPLES: &[&str] = &[
    "rc_send_recv",
    "rdma_write_read",
    "atomics",
    "ud",
    "srq",
    "memory_windows",
    "completion_channel",
    "async_pingpong",
];

#[test]
fn every_example_runs() {
    // target/<profile>/deps/examples-<hash> → target/<profile>/examples/
    let exe = std::env::current_exe().unwrap();
    let dir: PathBuf = exe.parent().unwrap().parent().unwrap().join("examples");
    for name in EXAMPLES {
        let path = dir.join(name);
        if !path.exists() {
            println!("SKIPPED example {name}: not built at {}", path.display());
            continue;
        }
        let out = Command::new(&path)
            .env_remove("SOFTVERBS_DEVICES")
            .output()
            .unwrap();
        println!("--- {name}:\n{}", String::from_utf8_lossy(&out.stdout));
        assert!(
            out.status.success(),
            "example {name} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
