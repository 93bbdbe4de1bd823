//! Property tests: parse(emit(x)) == x over every supported opcode and
//! random field values; truncations and arbitrary bytes never panic.

use proptest::prelude::*;
use softverbs_wire::icrc::{self, Endpoints};
use softverbs_wire::packet::Packet;
use softverbs_wire::psn::PSN_MASK;
use softverbs_wire::{
    AckSyndrome, AethRepr, AtomicAckEthRepr, AtomicEthRepr, BthRepr, DethRepr, Error, Opcode,
    PacketRepr, RethRepr,
};

fn opcode() -> impl Strategy<Value = Opcode> {
    let all: Vec<Opcode> = Opcode::all_supported().collect();
    proptest::sample::select(all)
}

fn bth(op: Opcode) -> impl Strategy<Value = BthRepr> {
    (
        (any::<bool>(), any::<bool>(), 0u8..16, any::<u16>()),
        (
            any::<bool>(),
            any::<bool>(),
            0..=PSN_MASK,
            any::<bool>(),
            0..=PSN_MASK,
        ),
    )
        .prop_map(
            move |((solicited, migreq, tver, pkey), (fecn, becn, dest_qpn, ack_req, psn))| {
                BthRepr {
                    opcode: op,
                    solicited,
                    migreq,
                    pad_count: 0,
                    tver,
                    pkey,
                    fecn,
                    becn,
                    dest_qpn,
                    ack_req,
                    psn,
                }
            },
        )
}

/// A valid packet: its repr and payload.
fn packet() -> impl Strategy<Value = (PacketRepr, Vec<u8>)> {
    opcode().prop_flat_map(|op| {
        let info = op.info().unwrap();
        let max_payload = if info.has_payload { 300 } else { 0 };
        (
            bth(op),
            proptest::collection::vec(any::<u8>(), 0..=max_payload),
            0u8..4,
            (any::<u64>(), any::<u32>(), any::<u32>()),
            (any::<u8>(), 0..=PSN_MASK),
            (any::<u64>(), any::<u32>(), any::<u64>(), any::<u64>()),
            any::<u64>(),
            (any::<u32>(), 0..=PSN_MASK),
            (any::<u32>(), any::<u32>()),
        )
            .prop_map(
                move |(bth, payload, pad, reth, aeth, atomic, orig, deth, (imm, ieth))| {
                    let mut r = PacketRepr::new(bth, payload.len()).unwrap();
                    if info.has_payload {
                        r.bth.pad_count = pad;
                    }
                    r.reth = r.reth.map(|_| RethRepr {
                        va: reth.0,
                        rkey: reth.1,
                        dma_len: reth.2,
                    });
                    r.aeth = r.aeth.map(|_| AethRepr {
                        syndrome: AckSyndrome::from_u8(aeth.0),
                        msn: aeth.1,
                    });
                    r.atomic_eth = r.atomic_eth.map(|_| AtomicEthRepr {
                        va: atomic.0,
                        rkey: atomic.1,
                        swap_add: atomic.2,
                        compare: atomic.3,
                    });
                    r.atomic_ack_eth = r.atomic_ack_eth.map(|_| AtomicAckEthRepr { orig });
                    r.deth = r.deth.map(|_| DethRepr {
                        qkey: deth.0,
                        src_qpn: deth.1,
                    });
                    r.immdt = r.immdt.map(|_| imm);
                    r.ieth = r.ieth.map(|_| ieth);
                    (r, payload)
                },
            )
    })
}

fn emit(r: &PacketRepr, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0xa5u8; r.buffer_len()];
    r.emit(&mut buf, payload);
    buf
}

fn ep() -> Endpoints {
    Endpoints {
        src: "192.0.2.1:49152".parse().unwrap(),
        dst: "192.0.2.2:4791".parse().unwrap(),
    }
}

/// Exercise every accessor of a checked view.
fn touch_view(buf: &[u8]) {
    if let Ok(p) = Packet::new_checked(buf) {
        let b = p.bth();
        let _ = (
            b.opcode(),
            b.psn(),
            b.dest_qpn(),
            b.pad_count(),
            p.payload(),
            p.pad(),
        );
        let _ = (p.reth().map(|v| v.va()), p.aeth().map(|v| v.syndrome()));
        let _ = (
            p.atomic_eth().map(|v| v.compare()),
            p.atomic_ack_eth().map(|v| v.orig()),
        );
        let _ = (p.deth().map(|v| v.src_qpn()), p.immdt().map(|v| v.value()));
        let _ = (p.ieth().map(|v| v.rkey()), p.icrc(), p.without_icrc().len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_emit_roundtrip((repr, payload) in packet()) {
        repr.check().unwrap();
        let buf = emit(&repr, &payload);
        prop_assert_eq!(&buf[buf.len() - 4..], &[0xa5; 4]);
        let (back, pl) = PacketRepr::parse(&buf).unwrap();
        prop_assert_eq!(&back, &repr);
        prop_assert_eq!(pl, &payload[..]);
        prop_assert_eq!(back.header_len(), repr.info().unwrap().header_len());
        // Emitting the parsed repr gives the same bytes.
        prop_assert_eq!(emit(&back, pl), buf.clone());
        touch_view(&buf);
    }

    #[test]
    fn sealed_roundtrip_recovers_the_ip_id((repr, payload) in packet(), id: u16) {
        let mut buf = emit(&repr, &payload);
        icrc::seal(&ep(), id, &mut buf);
        prop_assert!(icrc::verify(&ep(), id, &buf));
        prop_assert_eq!(icrc::verify_unknown_ip_id(&ep(), &buf), Some(id));
    }

    #[test]
    fn truncations_are_rejected((repr, payload) in packet(), id: u16) {
        let mut buf = emit(&repr, &payload);
        icrc::seal(&ep(), id, &mut buf);
        let hdr = repr.header_len();
        for n in 0..buf.len() {
            let t = &buf[..n];
            touch_view(t);
            let parsed = PacketRepr::parse(t);
            if n < hdr + 4 {
                prop_assert_eq!(parsed.clone().unwrap_err(), Error::Truncated, "n={}", n);
            } else if !repr.info().unwrap().has_payload {
                prop_assert!(parsed.is_err());
            }
            // Structurally a shorter packet may parse (the ICRC is not
            // checked by `parse`), but parse + ICRC always rejects it.
            prop_assert!(parsed.is_err() || !icrc::verify(&ep(), id, t), "n={}", n);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok((repr, payload)) = PacketRepr::parse(&bytes) {
            prop_assert!(repr.check().is_ok());
            prop_assert_eq!(repr.buffer_len(), bytes.len());
            let mut out = vec![0u8; repr.buffer_len()];
            repr.emit(&mut out, payload);
            let (again, _) = PacketRepr::parse(&out).unwrap();
            prop_assert_eq!(again, repr);
        }
        touch_view(&bytes);
        let _ = icrc::verify_unknown_ip_id(&ep(), &bytes);
    }

    #[test]
    fn mutated_packets_never_panic(
        (repr, payload) in packet(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut buf = emit(&repr, &payload);
        for (i, v) in edits {
            let i = i.index(buf.len());
            buf[i] = v;
        }
        touch_view(&buf);
        if let Ok((r, pl)) = PacketRepr::parse(&buf) {
            prop_assert_eq!(emit(&r, pl).len(), buf.len());
        }
    }
}
