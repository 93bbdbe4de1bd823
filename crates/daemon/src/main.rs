//! `softverbsd`: the softverbs daemon (see [`softverbs_daemon::entry`]).
//!
//! ```text
//! softverbsd [--socket PATH] [--devices LIST | --config FILE]
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    softverbs_daemon::entry::main_args("softverbsd", std::env::args().skip(1))
}
