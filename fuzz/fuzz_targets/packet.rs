//! Fuzz the IB packet parser and the ICRC solver with arbitrary UDP
//! payloads: nothing may panic, whatever parses must re-emit to a packet
//! that parses to the same repr with the same header bytes (up to reserved
//! bits and pad), and a solved IPv4 identification must verify.

#![no_main]

use libfuzzer_sys::fuzz_target;
use softverbs_wire::icrc::{self, Endpoints};
use softverbs_wire::packet::Packet;
use softverbs_wire::PacketRepr;

fuzz_target!(|data: &[u8]| {
    let ep = Endpoints {
        src: "10.77.0.2:49152".parse().unwrap(),
        dst: "10.77.0.3:4791".parse().unwrap(),
    };
    if let Some(id) = icrc::verify_unknown_ip_id(&ep, data) {
        assert!(icrc::verify(&ep, id, data));
    }

    let Ok((repr, payload)) = PacketRepr::parse(data) else {
        return;
    };
    repr.check().expect("a parsed repr is consistent");
    assert_eq!(repr.buffer_len(), data.len());

    let mut out = vec![0u8; data.len()];
    repr.emit(&mut out, payload);
    let (again, payload2) = PacketRepr::parse(&out).expect("re-emitted packet parses");
    assert_eq!(again, repr);
    assert_eq!(payload2, payload);

    // Same bytes up to the reserved bits (BTH bytes 4 and 8, the DETH's
    // reserved byte), the pad and the ICRC, which emit leaves alone.
    let end = repr.header_len() + repr.payload_len;
    let mut a = data[..end].to_vec();
    let mut b = out[..end].to_vec();
    for v in [&mut a, &mut b] {
        v[4] &= 0xc0;
        v[8] &= 0x80;
        if repr.deth.is_some() {
            v[16] = 0;
        }
    }
    assert_eq!(a, b);

    let view = Packet::new_checked(data).expect("parsed, so the view checks");
    assert_eq!(view.payload(), payload);
    assert_eq!(view.pad().len(), usize::from(repr.bth.pad_count));
});
