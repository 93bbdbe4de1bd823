//! RC transport behaviour over a two-QP loopback, including loss,
//! retransmission, RNR and the error paths.

mod common;

use common::*;
use softverbs_transport::*;
use softverbs_wire::{AckSyndrome, NakCode, Opcode};

const RW: Access = Access(
    Access::LOCAL_WRITE.0
        | Access::REMOTE_WRITE.0
        | Access::REMOTE_READ.0
        | Access::REMOTE_ATOMIC.0,
);

fn setup(len: usize) -> Pair {
    let mut p = connect(QpType::Rc, Mtu::Mtu1024, |_| {});
    p.a.mem.reg(1, 0x1000, len, RW);
    p.b.mem.reg(2, 0x9000, len, RW);
    p.a.mem.fill(1, |i| (i * 7 + 3) as u8);
    p
}

fn recv(p: &mut Pair, wr_id: u64, len: u32) {
    p.b.qp
        .post_recv(RecvWr {
            wr_id,
            sgl: vec![Sge {
                addr: 0x9000,
                length: len,
                lkey: 2,
            }],
        })
        .unwrap();
}

fn statuses(s: &Side) -> Vec<(u64, WcStatus)> {
    s.completions.iter().map(|c| (c.wr_id, c.status)).collect()
}

#[test]
fn multi_packet_send_arrives_whole_with_one_ack() {
    let mut p = setup(10_000);
    recv(&mut p, 7, 10_000);
    p.a.qp
        .post_send(send_wr(
            1,
            SendOp::SendWithImm { imm: 0xdead_beef },
            vec![Sge {
                addr: 0x1000,
                length: 10_000,
                lkey: 1,
            }],
        ))
        .unwrap();
    p.run(|_, _| Fate::Deliver);
    assert_eq!(p.b.mem.bytes(2), p.a.mem.bytes(1));
    assert_eq!(statuses(&p.a), vec![(1, WcStatus::Success)]);
    let rc = &p.b.completions[0];
    assert_eq!(
        (rc.wr_id, rc.status, rc.byte_len, rc.imm),
        (7, WcStatus::Success, 10_000, Some(0xdead_beef))
    );
    let requests = p.wire.iter().filter(|(a, _)| *a).count();
    let acks = p
        .wire
        .iter()
        .filter(|(a, r)| !*a && r.bth.opcode == Opcode::RC_ACKNOWLEDGE)
        .count();
    assert_eq!(requests, 10, "10 000 bytes at MTU 1024");
    assert_eq!(
        acks, 1,
        "one coalesced ACK for the AckReq on the last packet"
    );
    // PSNs are consecutive across the 24-bit wrap.
    let psns: Vec<u32> = p
        .wire
        .iter()
        .filter(|(a, _)| *a)
        .map(|(_, r)| r.bth.psn)
        .collect();
    assert_eq!(psns[0], 0xff_fff0);
    assert_eq!(psns[9], 0xff_fff9);
}

#[test]
fn write_then_read_and_atomics() {
    let mut p = setup(8192);
    let a = |addr, length| {
        vec![Sge {
            addr,
            length,
            lkey: 1,
        }]
    };
    p.a.qp
        .post_send(send_wr(
            1,
            SendOp::Write {
                remote_addr: 0x9000,
                rkey: 2,
            },
            a(0x1000, 5000),
        ))
        .unwrap();
    p.a.qp
        .post_send(send_wr(
            2,
            SendOp::Read {
                remote_addr: 0x9000,
                rkey: 2,
            },
            a(0x1000 + 5000, 3000),
        ))
        .unwrap();
    p.run(|_, _| Fate::Deliver);
    assert_eq!(&p.b.mem.bytes(2)[..5000], &p.a.mem.bytes(1)[..5000]);
    // The READ came back with what the WRITE put there.
    assert_eq!(&p.a.mem.bytes(1)[5000..8000], &p.a.mem.bytes(1)[..3000]);
    assert_eq!(
        statuses(&p.a),
        vec![(1, WcStatus::Success), (2, WcStatus::Success)]
    );

    // Atomics on the first 8 bytes of B.
    let before = u64::from_ne_bytes(p.b.mem.bytes(2)[..8].try_into().unwrap());
    p.a.qp
        .post_send(send_wr(
            3,
            SendOp::FetchAdd {
                remote_addr: 0x9000,
                rkey: 2,
                add: 5,
            },
            a(0x1000, 8),
        ))
        .unwrap();
    p.a.qp
        .post_send(send_wr(
            4,
            SendOp::CompareSwap {
                remote_addr: 0x9000,
                rkey: 2,
                compare: before + 5,
                swap: 42,
            },
            a(0x1008, 8),
        ))
        .unwrap();
    p.run(|_, _| Fate::Deliver);
    assert_eq!(
        u64::from_ne_bytes(p.b.mem.bytes(2)[..8].try_into().unwrap()),
        42
    );
    assert_eq!(
        u64::from_ne_bytes(p.a.mem.bytes(1)[..8].try_into().unwrap()),
        before
    );
    assert_eq!(
        u64::from_ne_bytes(p.a.mem.bytes(1)[8..16].try_into().unwrap()),
        before + 5
    );
    assert_eq!(p.a.completions.len(), 4);
}

#[test]
fn lost_middle_packet_gives_one_seq_nak_and_go_back_n() {
    let mut p = setup(6000);
    recv(&mut p, 7, 6000);
    p.a.qp
        .post_send(send_wr(
            1,
            SendOp::Send,
            vec![Sge {
                addr: 0x1000,
                length: 6000,
                lkey: 1,
            }],
        ))
        .unwrap();
    let mut dropped = false;
    p.run(|from_a, r| {
        if from_a && r.bth.psn == 0xff_fff2 && !dropped {
            dropped = true;
            return Fate::Drop;
        }
        Fate::Deliver
    });
    assert_eq!(p.b.mem.bytes(2), p.a.mem.bytes(1));
    let naks: Vec<_> = p
        .wire
        .iter()
        .filter(|(a, r)| {
            !*a && matches!(
                r.aeth.map(|x| x.syndrome),
                Some(AckSyndrome::Nak(NakCode::PsnSequenceError))
            )
        })
        .collect();
    assert_eq!(
        naks.len(),
        1,
        "one NAK per gap, not one per out-of-order packet"
    );
    assert_eq!(naks[0].1.bth.psn, 0xff_fff2);
    assert_eq!(p.a.qp.counters().rcvd_seq_err, 1);
    assert_eq!(p.b.qp.counters().out_of_seq_request, 3);
    assert_eq!(statuses(&p.a), vec![(1, WcStatus::Success)]);
    assert_eq!(p.b.completions.len(), 1);
}

#[test]
fn lost_ack_is_recovered_by_timeout_and_duplicate_is_reacked() {
    let mut p = setup(100);
    recv(&mut p, 7, 100);
    p.a.qp
        .post_send(send_wr(
            1,
            SendOp::Send,
            vec![Sge {
                addr: 0x1000,
                length: 100,
                lkey: 1,
            }],
        ))
        .unwrap();
    let mut acks = 0;
    p.run(|from_a, _| {
        if !from_a {
            acks += 1;
            if acks == 1 {
                return Fate::Drop;
            }
        }
        Fate::Deliver
    });
    assert_eq!(statuses(&p.a), vec![(1, WcStatus::Success)]);
    assert_eq!(
        p.b.completions.len(),
        1,
        "the duplicate SEND is not delivered twice"
    );
    assert_eq!(p.b.qp.counters().duplicate_request, 1);
    assert_eq!(p.a.qp.counters().timeouts, 1);
    assert!(
        p.now >= Instant(4096 << 10),
        "waited one ACK timeout (timeout 10)"
    );
}

#[test]
fn lost_read_response_is_requested_again() {
    let mut p = setup(8192);
    p.b.mem.fill(2, |i| (i % 251) as u8);
    p.a.qp
        .post_send(send_wr(
            1,
            SendOp::Read {
                remote_addr: 0x9000,
                rkey: 2,
            },
            vec![Sge {
                addr: 0x1000,
                length: 4096,
                lkey: 1,
            }],
        ))
        .unwrap();
    let mut n = 0;
    p.run(|from_a, r| {
        if !from_a && r.bth.opcode == Opcode::RC_RDMA_READ_RESPONSE_MIDDLE {
            n += 1;
            if n == 1 {
                return Fate::Drop;
            }
        }
        Fate::Deliver
    });
    assert_eq!(&p.a.mem.bytes(1)[..4096], &p.b.mem.bytes(2)[..4096]);
    assert_eq!(statuses(&p.a), vec![(1, WcStatus::Success)]);
    assert!(p.a.qp.counters().retransmits >= 1);
}

#[test]
fn rnr_nak_then_retry_succeeds_once_a_receive_is_posted() {
    let mut p = setup(100);
    p.a.qp
        .post_send(send_wr(
            1,
            SendOp::Send,
            vec![Sge {
                addr: 0x1000,
                length: 100,
                lkey: 1,
            }],
        ))
        .unwrap();
    // RNR NAKs go on (rnr_retry 7 is infinite) until a receive is posted.
    p.run_until(Instant(50_000_000), |_, _| Fate::Deliver);
    assert!(p.b.qp.counters().send_rnr_err >= 3);
    assert!(p.a.completions.is_empty());
    recv(&mut p, 9, 100);
    p.run(|_, _| Fate::Deliver);
    assert_eq!(statuses(&p.a), vec![(1, WcStatus::Success)]);
    assert_eq!(statuses(&p.b), vec![(9, WcStatus::Success)]);
}

#[test]
fn rnr_retry_exhausted() {
    let mut p = connect(QpType::Rc, Mtu::Mtu1024, |m| {
        if m.state == Some(QpState::Rts) {
            m.rnr_retry = Some(2);
        }
    });
    p.a.mem.reg(1, 0x1000, 64, RW);
    p.a.qp
        .post_send(send_wr(
            1,
            SendOp::Send,
            vec![Sge {
                addr: 0x1000,
                length: 64,
                lkey: 1,
            }],
        ))
        .unwrap();
    p.a.qp
        .post_send(send_wr(
            2,
            SendOp::Send,
            vec![Sge {
                addr: 0x1000,
                length: 64,
                lkey: 1,
            }],
        ))
        .unwrap();
    p.run(|_, _| Fate::Deliver);
    assert_eq!(
        statuses(&p.a),
        vec![(1, WcStatus::RnrRetryExcErr), (2, WcStatus::WrFlushErr)]
    );
    assert_eq!(p.a.qp.state(), QpState::Err);
    assert_eq!(p.a.events, vec![QpEvent::Fatal]);
    assert_eq!(
        p.b.qp.counters().send_rnr_err,
        3,
        "first try plus two retries"
    );
}

#[test]
fn silent_peer_exhausts_retries() {
    let mut p = setup(64);
    for id in 1..=3 {
        p.a.qp
            .post_send(send_wr(
                id,
                SendOp::Write {
                    remote_addr: 0x9000,
                    rkey: 2,
                },
                vec![Sge {
                    addr: 0x1000,
                    length: 64,
                    lkey: 1,
                }],
            ))
            .unwrap();
    }
    p.run(|from_a, _| if from_a { Fate::Drop } else { Fate::Deliver });
    assert_eq!(
        statuses(&p.a),
        vec![
            (1, WcStatus::RetryExcErr),
            (2, WcStatus::WrFlushErr),
            (3, WcStatus::WrFlushErr)
        ]
    );
    assert_eq!(
        p.a.qp.counters().timeouts,
        8,
        "first timeout plus retry_cnt 7"
    );
    // Posting in ERR completes at once with a flush.
    p.a.qp.post_send(send_wr(4, SendOp::Send, vec![])).unwrap();
    assert_eq!(
        p.a.qp.poll_completion().map(|c| c.status),
        Some(WcStatus::WrFlushErr)
    );
}

#[test]
fn bad_rkey_is_remote_access_error_on_both_sides() {
    let mut p = setup(64);
    recv(&mut p, 5, 64);
    p.a.qp
        .post_send(send_wr(
            1,
            SendOp::Write {
                remote_addr: 0x9000,
                rkey: 99,
            },
            vec![Sge {
                addr: 0x1000,
                length: 64,
                lkey: 1,
            }],
        ))
        .unwrap();
    p.a.qp
        .post_send(send_wr(
            2,
            SendOp::Send,
            vec![Sge {
                addr: 0x1000,
                length: 8,
                lkey: 1,
            }],
        ))
        .unwrap();
    p.run(|_, _| Fate::Deliver);
    assert_eq!(
        statuses(&p.a),
        vec![(1, WcStatus::RemAccessErr), (2, WcStatus::WrFlushErr)]
    );
    assert_eq!(p.b.qp.state(), QpState::Err);
    assert_eq!(statuses(&p.b), vec![(5, WcStatus::WrFlushErr)]);
}

#[test]
fn receive_buffer_too_small_is_a_length_error() {
    let mut p = setup(4096);
    recv(&mut p, 5, 100);
    p.a.qp
        .post_send(send_wr(
            1,
            SendOp::Send,
            vec![Sge {
                addr: 0x1000,
                length: 2000,
                lkey: 1,
            }],
        ))
        .unwrap();
    p.run(|_, _| Fate::Deliver);
    assert_eq!(statuses(&p.a), vec![(1, WcStatus::RemInvReqErr)]);
    assert_eq!(statuses(&p.b), vec![(5, WcStatus::LocLenErr)]);
}

#[test]
fn local_protection_error_on_bad_lkey() {
    let mut p = setup(64);
    p.a.qp
        .post_send(send_wr(
            1,
            SendOp::Send,
            vec![Sge {
                addr: 0x1000,
                length: 64,
                lkey: 77,
            }],
        ))
        .unwrap();
    p.run(|_, _| Fate::Deliver);
    assert_eq!(statuses(&p.a), vec![(1, WcStatus::LocProtErr)]);
    assert!(p.wire.is_empty());
}

#[test]
fn send_with_invalidate_invalidates_the_rkey() {
    let mut p = setup(64);
    p.b.mem.reg(3, 0x5000, 64, RW);
    recv(&mut p, 5, 64);
    p.a.qp
        .post_send(send_wr(
            1,
            SendOp::SendWithInv { rkey: 3 },
            vec![Sge {
                addr: 0x1000,
                length: 16,
                lkey: 1,
            }],
        ))
        .unwrap();
    p.run(|_, _| Fate::Deliver);
    assert_eq!(p.b.completions[0].invalidated_rkey, Some(3));
    assert!(!p.b.mem.regions.contains_key(&3));
}

#[test]
fn unsignaled_sends_complete_silently_but_errors_always_show() {
    let mut p = setup(64);
    recv(&mut p, 5, 64);
    let mut wr = send_wr(
        1,
        SendOp::Send,
        vec![Sge {
            addr: 0x1000,
            length: 8,
            lkey: 1,
        }],
    );
    wr.flags.signaled = false;
    p.a.qp.post_send(wr).unwrap();
    p.run(|_, _| Fate::Deliver);
    assert!(p.a.completions.is_empty());
    assert_eq!(p.a.qp.send_queue_len(), 0);
}

#[test]
fn inline_data_needs_no_lkey() {
    let mut p = setup(64);
    recv(&mut p, 5, 64);
    let wr = SendWr {
        wr_id: 1,
        op: SendOp::Send,
        payload: Payload::Inline(b"hello".to_vec()),
        flags: SendFlags {
            signaled: true,
            ..Default::default()
        },
        ud: None,
    };
    p.a.qp.post_send(wr).unwrap();
    p.run(|_, _| Fate::Deliver);
    assert_eq!(&p.b.mem.bytes(2)[..5], b"hello");
}

#[test]
fn modify_to_error_flushes_everything() {
    let mut p = setup(64);
    recv(&mut p, 5, 64);
    recv(&mut p, 6, 64);
    p.b.qp.modify(
        &ModifyQp {
            state: Some(QpState::Err),
            ..Default::default()
        },
        Instant::ZERO,
    );
    assert_eq!(
        p.b.qp.poll_completion().map(|c| (c.wr_id, c.status)),
        Some((5, WcStatus::WrFlushErr))
    );
    assert_eq!(
        p.b.qp.poll_completion().map(|c| (c.wr_id, c.status)),
        Some((6, WcStatus::WrFlushErr))
    );
    assert!(p.b.qp.poll_completion().is_none());
}

#[test]
fn read_limit_is_respected() {
    let mut p = connect(QpType::Rc, Mtu::Mtu1024, |m| {
        if m.state == Some(QpState::Rts) {
            m.max_rd_atomic = Some(1);
        }
    });
    p.a.mem.reg(1, 0x1000, 4096, RW);
    p.b.mem.reg(2, 0x9000, 4096, RW);
    for id in 0..4 {
        p.a.qp
            .post_send(send_wr(
                id,
                SendOp::Read {
                    remote_addr: 0x9000,
                    rkey: 2,
                },
                vec![Sge {
                    addr: 0x1000,
                    length: 1024,
                    lkey: 1,
                }],
            ))
            .unwrap();
    }
    p.run(|_, _| Fate::Deliver);
    assert_eq!(p.a.completions.len(), 4);
    // With max_rd_atomic 1 each READ request waits for the previous response.
    let order: Vec<bool> = p.wire.iter().map(|(a, _)| *a).collect();
    assert_eq!(
        order,
        vec![true, false, true, false, true, false, true, false]
    );
}
