//! Fuzz softverbsd's socket decoder: arbitrary bytes written into a Unix
//! stream are read back frame by frame with `frame::recv` (the daemon's
//! own reader), and every body goes through the decoders the daemon runs
//! on it (ATTACH, the encoded uAPI call, the ring entries a client writes).
//! Nothing may panic; a frame that decodes re-encodes to the same frame.

#![no_main]

use std::io::Write;
use std::os::unix::net::UnixStream;

use libfuzzer_sys::fuzz_target;
use softverbs_core::uapi::encoding::decode_call;
use softverbs_daemon::frame::{self, parse_header, FrameError, HEADER};
use softverbs_daemon::proto::Attach;
use softverbs_daemon::wqe;

fuzz_target!(|data: &[u8]| {
    // The header check alone, with any fd count.
    if data.len() >= HEADER {
        let mut h = [0u8; HEADER];
        h.copy_from_slice(&data[..HEADER]);
        let _ = parse_header(&h, usize::from(data[0] % 9));
    }
    // The whole reader over a real socket (a socketpair holds the input).
    let data = &data[..data.len().min(60_000)];
    let (mut w, r) = UnixStream::pair().expect("socketpair");
    w.write_all(data).expect("socketpair write");
    drop(w);
    let (w2, r2) = UnixStream::pair().expect("socketpair");
    loop {
        let f = match frame::recv(&r) {
            Ok(f) => f,
            Err(FrameError::Closed | FrameError::Malformed(_) | FrameError::Io(_)) => break,
        };
        assert!(f.fds.is_empty(), "no fds were sent");
        let _ = Attach::decode(&f.body);
        if let Ok(a) = Attach::decode(&f.body) {
            assert_eq!(Attach::decode(&a.encode()).unwrap(), a);
        }
        let _ = decode_call(&f.body);
        let _ = frame::parse_error(&f.body);
        let lim = |i: usize| f.body.get(i).map_or(0, |b| u32::from(*b % 32));
        let _ = wqe::decode_send(&f.body, lim(0), lim(1) * 8);
        let _ = wqe::decode_recv(&f.body, lim(2));
        let _ = wqe::decode_cqe(&f.body);
        let _ = wqe::decode_event(&f.body);
        // Round trip through the writer.
        frame::send(&w2, f.kind, &f.body, &[]).expect("re-send");
        let g = frame::recv(&r2).expect("re-read");
        assert_eq!((g.kind, &g.body), (f.kind, &f.body));
    }
});
