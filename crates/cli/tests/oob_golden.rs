//! The out-of-band exchanges of `softverbs pingpong` and `softverbs perf`
//! against the real tools' bytes (TCP streams of the captures in
//! `shared/interop/pcaps/`), and over loopback between our own client and
//! server. The modules are compiled in here directly (the binary crate has
//! no library), which also runs their unit tests.

#[path = "../src/pingpong/mod.rs"]
mod pingpong;

#[path = "../src/perftest/mod.rs"]
mod perftest;
