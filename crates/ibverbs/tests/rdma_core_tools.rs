//! Unmodified rdma-core tools and perftest on softverbs's libibverbs.so.1
//! (scripts/test-libibverbs.sh). Skips, with a message, where the tools are
//! not installed or the library was not built (CI builds neither):
//!
//! ```sh
//! apt-get install -y ibverbs-utils perftest
//! scripts/build-libibverbs.sh
//! cargo test -p softverbs-ibverbs --test rdma_core_tools -- --nocapture
//! ```

use std::path::Path;
use std::process::Command;

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

#[test]
fn rdma_core_tools_run_on_softverbs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lib = root.join("target/libibverbs/libibverbs.so.1");
    if !on_path("ibv_devinfo") || !on_path("ibv_rc_pingpong") {
        eprintln!(
            "SKIP: rdma-core tools not installed (apt-get install -y ibverbs-utils perftest)"
        );
        return;
    }
    if !lib.exists() {
        eprintln!(
            "SKIP: {} not built (run scripts/build-libibverbs.sh)",
            lib.display()
        );
        return;
    }
    let out = Command::new(root.join("scripts/test-libibverbs.sh"))
        .arg("-k")
        .output()
        .expect("run scripts/test-libibverbs.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "some tool runs failed:\n{text}");
}
