//! Fuzz the UET (SRD wire) parser with arbitrary UDP payloads: nothing may
//! panic; whatever parses (CRC ignored, via `parse_unsealed`) re-emits to a
//! sealed datagram that parses to the same headers and payload.

#![no_main]

use libfuzzer_sys::fuzz_target;
use softverbs_wire::uet::UetPacketRepr;

fuzz_target!(|data: &[u8]| {
    let _ = UetPacketRepr::parse(data);
    let Ok((repr, payload)) = UetPacketRepr::parse_unsealed(data) else {
        return;
    };
    assert_eq!(repr.header_len() + payload.len(), data.len());
    let mut out = vec![0u8; repr.buffer_len(payload.len())];
    let n = repr.emit(&mut out, payload);
    assert_eq!(n, out.len());
    let (again, payload2) = UetPacketRepr::parse(&out).expect("re-emitted datagram parses");
    assert_eq!(again, repr);
    assert_eq!(payload2, payload);
});
