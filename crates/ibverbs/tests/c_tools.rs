//! Unmodified C and Python programs on softverbs's `libibverbs.so.1`, so CI
//! notices when a change breaks them:
//!
//! - builds the library (`scripts/build-libibverbs.sh`, release, in its own
//!   cargo target dir `target/libibverbs-build`: the nested cargo never
//!   waits on the lock of the `cargo test` that runs it);
//! - runs rdma-core's tools and perftest on it (`scripts/test-libibverbs.sh`):
//!   every run must pass;
//! - runs rdma-core's pyverbs test suite on it (`scripts/test-pyverbs.sh`):
//!   no test may fail or error, and at least [`PYVERBS_PASSED_FLOOR`] must
//!   pass (the count reached; raise it when more pass, never lower it to
//!   make a change green).
//!
//! Where the programs are not installed (`apt-get install -y ibverbs-utils
//! perftest python3-pyverbs`, which `.ci/run` does as root) the part that
//! needs them prints a `SKIP:` line and passes.
//!
//! ```sh
//! cargo test -p softverbs-ibverbs --test c_tools -- --nocapture
//! ```

#![allow(clippy::disallowed_methods)] // reports how long each step took (the CI budget)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

/// The pyverbs tests that pass on softverbs (rdma-core 44's suite: 90
/// passed, 183 skipped; Linux 6.1 rxe: 86 passed, where the four
/// `ibv_rereg_mr` tests skip). The conformance count may not fall below it.
const PYVERBS_PASSED_FLOOR: u32 = 90;

/// The runs of scripts/test-libibverbs.sh: 4 device queries, 9 pingpongs
/// and the 8 perftest tools three ways (`--use_old_post_send`, default, and
/// the `ibv_wr_*` path). A run that silently disappears is a regression too.
const TOOL_RUNS: usize = 4 + 9 + 3 * 8;

/// The repository, as a plain path (test-pyverbs.sh compares it with the
/// library's path in /proc/self/maps).
fn root() -> PathBuf {
    let r = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    r.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", r.display()))
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Run a script of the repository with the library in `lib`, echoing what
/// it prints (visible with `--nocapture`, and in the failure message).
fn script(name: &str, args: &[&str], lib: &Path) -> (Output, String) {
    let started = Instant::now();
    let out = Command::new(root().join("scripts").join(name))
        .args(args)
        .env("SOFTVERBS_LIBIBVERBS_DIR", lib)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/{name}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "--- scripts/{name} {} ({:.0?}, {})\n{text}",
        args.join(" "),
        started.elapsed(),
        out.status
    );
    (out, text)
}

/// The count on a `label  N` line of test-pyverbs.sh's summary.
fn count(text: &str, label: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(label))
            .then(|| it.next()?.parse().ok())
            .flatten()
    })
}

/// What test-pyverbs.sh's summary says: (passed, failed, errors, skipped).
fn pyverbs_counts(text: &str) -> Result<(u32, u32, u32, u32), String> {
    let get = |l| count(text, l).ok_or_else(|| format!("no '{l}' count in:\n{text}"));
    Ok((
        get("passed")?,
        get("failed")?,
        get("errors")?,
        get("skipped")?,
    ))
}

#[test]
fn summary_parsing() {
    let text = "passed  86\nfailed  0\nerrors  1\nskipped 187\nOK (skipped=187)\n";
    assert_eq!(pyverbs_counts(text), Ok((86, 0, 1, 187)));
    assert!(pyverbs_counts("passed  86\nfailed 0\n").is_err());
    assert_eq!(count("skip reasons:\n  passed  x\n", "passed"), None);
}

#[test]
fn rdma_core_programs_run_on_softverbs() {
    let tools = on_path("ibv_devinfo") && on_path("ibv_rc_pingpong") && on_path("ib_write_bw");
    let pyverbs = Path::new("/usr/share/doc/rdma-core/tests").is_dir();
    if !tools && !pyverbs {
        eprintln!(
            "SKIP: rdma-core tools, perftest and pyverbs are not installed \
             (apt-get install -y ibverbs-utils perftest python3-pyverbs)"
        );
        return;
    }
    let root = root();
    let target = root.join("target/libibverbs-build");
    let lib = target.join("lib");
    let started = Instant::now();
    let out = Command::new(root.join("scripts/build-libibverbs.sh"))
        .env("CARGO_TARGET_DIR", &target)
        .env("SOFTVERBS_LIBIBVERBS_DIR", &lib)
        .output()
        .expect("run scripts/build-libibverbs.sh");
    assert!(
        out.status.success(),
        "scripts/build-libibverbs.sh failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "built {} in {:.0?}",
        lib.join("libibverbs.so.1").display(),
        started.elapsed()
    );

    if tools {
        let (out, text) = script("test-libibverbs.sh", &["-k"], &lib);
        assert!(
            out.status.success(),
            "rdma-core tools or perftest failed on softverbs:\n{text}"
        );
        let passed = text.lines().filter(|l| l.starts_with("PASS")).count();
        assert!(
            passed >= TOOL_RUNS,
            "test-libibverbs.sh passed {passed} runs, expected {TOOL_RUNS}:\n{text}"
        );
    } else {
        eprintln!(
            "SKIP: rdma-core tools not installed (apt-get install -y ibverbs-utils perftest)"
        );
    }

    if !pyverbs {
        eprintln!("SKIP: pyverbs not installed (apt-get install -y python3-pyverbs)");
        return;
    }
    let (out, text) = script("test-pyverbs.sh", &[], &lib);
    if text.contains("SKIP:") {
        eprintln!("SKIP: test-pyverbs.sh could not run the suite");
        return;
    }
    let (passed, failed, errors, skipped) =
        pyverbs_counts(&text).unwrap_or_else(|e| panic!("test-pyverbs.sh: {e}"));
    eprintln!(
        "pyverbs on softverbs: {passed} passed, {skipped} skipped, {failed} failed, \
         {errors} errors (floor {PYVERBS_PASSED_FLOOR} passed)"
    );
    assert_eq!(
        (failed, errors),
        (0, 0),
        "pyverbs tests failed or errored on softverbs:\n{text}"
    );
    assert!(
        passed >= PYVERBS_PASSED_FLOOR,
        "only {passed} pyverbs tests passed, fewer than the floor of {PYVERBS_PASSED_FLOOR}:\n{text}"
    );
    assert!(out.status.success(), "test-pyverbs.sh failed:\n{text}");

    // Per test: every test that passes on Linux rxe passes here too.
    let ours = statuses(&root.join("target/pyverbs-tests/result.txt"));
    let rxe = std::fs::read_to_string(root.join(RXE_STATUS))
        .unwrap_or_else(|e| panic!("{RXE_STATUS}: {e}"));
    let missing: Vec<&str> = rxe
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?, f.next()?))
        })
        .filter(|&(id, status)| status == "ok" && ours.get(id).map(String::as_str) != Some("ok"))
        .map(|(id, _)| id)
        .collect();
    assert!(
        missing.is_empty(),
        "pyverbs tests that pass on Linux rxe ({RXE_STATUS}) but not on softverbs: {missing:#?}"
    );
}

/// The per-test results of the same suite on Linux 6.1 rxe.
const RXE_STATUS: &str = "crates/ibverbs/conformance/rxe-linux-6.1.status.tsv";

/// Test id → status of a `-v` unittest log, read by the same parser that
/// made [`RXE_STATUS`].
fn statuses(log: &Path) -> std::collections::HashMap<String, String> {
    let parser = root().join("scripts/interop/host/unittest_status.py");
    let out = Command::new("python3")
        .arg(&parser)
        .arg(log)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", parser.display()));
    assert!(
        out.status.success(),
        "{} {} failed",
        parser.display(),
        log.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect()
}
