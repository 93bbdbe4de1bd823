//! Golden bytes, round trips, truncation and arbitrary input for the UET
//! headers.

use proptest::prelude::*;

use super::pds::*;
use super::ses::*;
use super::*;
use crate::Error;

fn req_std(flags: u8, hdr: u64) -> SesRequestRepr {
    SesRequestRepr {
        opcode: SesOpcode::WRITE,
        flags,
        msg_id: 0x1234,
        ri_generation: 0,
        job_id: 0x00ab_cdef,
        pid_on_fep: 0x012,
        resource_index: 0x345,
        buffer_offset: 0x0000_7f00_dead_beef,
        initiator: 0x0000_0011,
        memory_key: 0x1111_1111_0000_2222,
        header_data: hdr,
        request_length: 9000,
    }
}

#[test]
fn golden_request_with_syn() {
    let pkt = UetPacketRepr {
        pds: PdsRepr::Request(RequestRepr {
            next: NextHeader::RequestStd,
            retx: false,
            ack_req: true,
            clear_psn_offset: -1,
            psn: 0x0001_0005,
            spdcid: 7,
            dest: Dest::Syn {
                pdc_info: 0,
                psn_offset: 5,
            },
        }),
        ses: Some(SesRepr::Request(req_std(SES_FLAG_SOM | SES_FLAG_HD, 0x99))),
    };
    let mut buf = [0xa5u8; 56 + 3 + 4];
    let n = pkt.emit(&mut buf, b"abc");
    assert_eq!(n, buf.len());
    // prologue: type 2 << 11 | next 3 << 7 | AR 0x08 | SYN 0x04 = 0x118c
    assert_eq!(
        &buf[..12],
        &[0x11, 0x8c, 0xff, 0xff, 0, 1, 0, 5, 0, 7, 0x00, 0x05]
    );
    assert_eq!(&buf[12..16], &[0x01, 0x05, 0x12, 0x34]);
    assert_eq!(&buf[16..20], &[0x00, 0xab, 0xcd, 0xef]);
    assert_eq!(&buf[20..24], &[0x00, 0x12, 0x03, 0x45]);
    assert_eq!(&buf[53..56], &[0x00, 0x23, 0x28]); // request_length 9000
    assert_eq!(&buf[56..59], b"abc");
    let (back, payload) = UetPacketRepr::parse(&buf).unwrap();
    assert_eq!(back, pkt);
    assert_eq!(payload, b"abc");
    let PdsRepr::Request(r) = back.pds else {
        unreachable!()
    };
    assert_eq!(r.clear_psn(), 0x0001_0004);
}

#[test]
fn golden_ack_cc_with_response() {
    let pkt = UetPacketRepr {
        pds: PdsRepr::Ack(AckRepr {
            next: NextHeader::Response,
            flags: ACK_FLAG_RETX,
            ack_psn_offset: 3,
            cack_psn: 100,
            spdcid: 2,
            dpdcid: 7,
            cc: Some(AckCcRepr {
                cc_type: 1,
                cc_flags: 0,
                mpr: 8,
                sack_psn_offset: 1,
                sack_bitmap: 0b101,
                ack_cc_state: 0x0102_0304_0506_0708,
            }),
        }),
        ses: Some(SesRepr::Response(SesResponseRepr {
            list: 0,
            opcode: rsp_opcode::DEFAULT,
            return_code: ReturnCode::OK,
            msg_id: 0x1234,
            ri_generation: 0,
            job_id: 1,
            modified_length: 4096,
        })),
    };
    let mut buf = [0xa5u8; 32 + 12 + 4];
    assert_eq!(pkt.emit(&mut buf, &[]), 48);
    // type 8 << 11 | next 4 << 7 | 0x10 = 0x4210
    assert_eq!(&buf[..4], &[0x42, 0x10, 0x00, 0x03]);
    assert_eq!(&buf[12..16], &[0x10, 8, 0, 1]);
    assert_eq!(&buf[32..36], &[0x00, 0x01, 0x12, 0x34]);
    let (back, payload) = UetPacketRepr::parse(&buf).unwrap();
    assert_eq!(back, pkt);
    assert!(payload.is_empty());
    let PdsRepr::Ack(a) = back.pds else {
        unreachable!()
    };
    assert_eq!(a.ack_psn(), 103);
}

#[test]
fn nack_and_control_round_trip() {
    for pds in [
        PdsRepr::Nack(NackRepr {
            flags: NACK_FLAG_RETX,
            code: NackCode::NO_SES_MSG_AVAIL,
            vendor_code: 0,
            psn: 77,
            spdcid: 1,
            dpdcid: 2,
            payload: 640,
        }),
        PdsRepr::Control(ControlRepr {
            ctrl: ControlType::AckRequest,
            retx: false,
            ack_req: true,
            opaque: 0,
            psn: 5,
            spdcid: 3,
            dest: Dest::Pdc(4),
            payload: 0x1234,
        }),
    ] {
        let pkt = UetPacketRepr { pds, ses: None };
        let mut buf = [0xa5u8; 20];
        pkt.emit(&mut buf, &[]);
        assert_eq!(UetPacketRepr::parse(&buf).unwrap().0, pkt);
        for n in 0..buf.len() {
            assert!(UetPacketRepr::parse(&buf[..n]).is_err());
        }
    }
}

#[test]
fn unsupported_and_inconsistent() {
    // A ROD request is refused by type.
    let mut b = [0u8; 16];
    b[0] = 0x03 << 3;
    assert_eq!(PdsRepr::parse(&b), Err(Error::UnsupportedOpcode(3)));
    // A request announcing no SES header.
    let r = RequestRepr {
        next: NextHeader::None,
        retx: false,
        ack_req: false,
        clear_psn_offset: 0,
        psn: 0,
        spdcid: 1,
        dest: Dest::Pdc(1),
    };
    let mut buf = [0u8; 16];
    r.emit(&mut Request::new_unchecked(&mut buf[..]));
    super::crc::seal(&mut buf);
    assert!(UetPacketRepr::parse(&buf).is_err());
}

fn arb_pds() -> impl Strategy<Value = PdsRepr> {
    let dest = prop_oneof![
        any::<u16>().prop_map(Dest::Pdc),
        (0u8..16, 0u16..4096).prop_map(|(pdc_info, psn_offset)| Dest::Syn {
            pdc_info,
            psn_offset
        }),
    ];
    let req = (
        any::<bool>(),
        any::<bool>(),
        any::<i16>(),
        any::<u32>(),
        any::<u16>(),
        dest.clone(),
        prop_oneof![Just(NextHeader::RequestStd), Just(NextHeader::ResponseData)],
    )
        .prop_map(
            |(retx, ack_req, clear_psn_offset, psn, spdcid, dest, next)| {
                PdsRepr::Request(RequestRepr {
                    next,
                    retx,
                    ack_req,
                    clear_psn_offset,
                    psn,
                    spdcid,
                    dest,
                })
            },
        );
    let cc = proptest::option::of(
        (
            0u8..16,
            0u8..16,
            any::<u8>(),
            any::<i16>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(
                |(cc_type, cc_flags, mpr, sack_psn_offset, sack_bitmap, ack_cc_state)| AckCcRepr {
                    cc_type,
                    cc_flags,
                    mpr,
                    sack_psn_offset,
                    sack_bitmap,
                    ack_cc_state,
                },
            ),
    );
    let ack = (
        0u8..128,
        any::<i16>(),
        any::<u32>(),
        any::<u16>(),
        any::<u16>(),
        cc,
        any::<bool>(),
    )
        .prop_map(
            |(flags, ack_psn_offset, cack_psn, spdcid, dpdcid, cc, rsp)| {
                PdsRepr::Ack(AckRepr {
                    next: if rsp {
                        NextHeader::Response
                    } else {
                        NextHeader::None
                    },
                    flags,
                    ack_psn_offset,
                    cack_psn,
                    spdcid,
                    dpdcid,
                    cc,
                })
            },
        );
    let nack = (
        0u8..128,
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
    )
        .prop_map(|(flags, code, vendor_code, psn, spdcid, dpdcid, payload)| {
            PdsRepr::Nack(NackRepr {
                flags,
                code: NackCode(code),
                vendor_code,
                psn,
                spdcid,
                dpdcid,
                payload,
            })
        });
    let ctrl = (
        0u8..10,
        any::<bool>(),
        any::<bool>(),
        any::<u16>(),
        any::<u32>(),
        any::<u16>(),
        dest,
        any::<u32>(),
    )
        .prop_map(|(c, retx, ack_req, opaque, psn, spdcid, dest, payload)| {
            PdsRepr::Control(ControlRepr {
                ctrl: ControlType::from_u8(c).unwrap(),
                retx,
                ack_req,
                opaque,
                psn,
                spdcid,
                dest,
                payload,
            })
        });
    prop_oneof![req, ack, nack, ctrl]
}

fn arb_packet() -> impl Strategy<Value = (UetPacketRepr, Vec<u8>)> {
    let ses_req = (
        0u8..64,
        0u8..64,
        any::<u16>(),
        any::<u8>(),
        0u32..1 << 24,
        0u16..4096,
        0u16..4096,
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
    )
        .prop_map(
            |(op, flags, msg_id, g, job_id, pid, res, off, ini, key, hd, len)| SesRequestRepr {
                opcode: SesOpcode(op),
                flags,
                msg_id,
                ri_generation: g,
                job_id,
                pid_on_fep: pid,
                resource_index: res,
                buffer_offset: off,
                initiator: ini,
                memory_key: key,
                header_data: hd,
                request_length: len,
            },
        );
    let rsp = (
        0u8..4,
        0u8..64,
        0u8..64,
        any::<u16>(),
        0u32..1 << 24,
        any::<u32>(),
    )
        .prop_map(
            |(list, opcode, rc, msg_id, job_id, modified_length)| SesResponseRepr {
                list,
                opcode,
                return_code: ReturnCode(rc),
                msg_id,
                ri_generation: 0,
                job_id,
                modified_length,
            },
        );
    (
        arb_pds(),
        ses_req,
        rsp,
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(pds, sreq, rsp, payload, rd, mlen, moff)| {
            let (ses, payload) = match pds {
                PdsRepr::Request(r) if r.next == NextHeader::RequestStd => {
                    (Some(SesRepr::Request(sreq)), payload)
                }
                PdsRepr::Request(_) => (
                    Some(SesRepr::ResponseData(SesResponseDataRepr {
                        list: rsp.list,
                        opcode: rsp.opcode,
                        return_code: rsp.return_code,
                        msg_id: rsp.msg_id,
                        ri_generation: 0,
                        job_id: rsp.job_id,
                        read_msg_id: rd,
                        payload_len: payload.len() as u16,
                        modified_length: mlen,
                        message_offset: moff,
                    })),
                    payload,
                ),
                PdsRepr::Ack(a) if a.next == NextHeader::Response => {
                    (Some(SesRepr::Response(rsp)), vec![])
                }
                _ => (None, vec![]),
            };
            (UetPacketRepr { pds, ses }, payload)
        })
}

proptest! {
    #[test]
    fn round_trip_and_truncation((pkt, payload) in arb_packet()) {
        let mut buf = vec![0xa5u8; pkt.buffer_len(payload.len())];
        let n = pkt.emit(&mut buf, &payload);
        prop_assert_eq!(n, buf.len());
        let (back, p) = UetPacketRepr::parse(&buf).unwrap();
        prop_assert_eq!(back, pkt);
        prop_assert_eq!(p, &payload[..]);
        // Every shorter buffer fails (CRC or length), none panics.
        for k in 0..buf.len() {
            prop_assert!(UetPacketRepr::parse(&buf[..k]).is_err());
            let _ = UetPacketRepr::parse_unsealed(&buf[..k]);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = UetPacketRepr::parse(&data);
        if let Ok((repr, payload)) = UetPacketRepr::parse_unsealed(&data) {
            // Whatever parses re-emits to something that parses the same.
            let mut out = vec![0u8; repr.buffer_len(payload.len())];
            repr.emit(&mut out, payload);
            let (again, p2) = UetPacketRepr::parse(&out).unwrap();
            prop_assert_eq!(again, repr);
            prop_assert_eq!(p2, payload);
        }
    }
}
