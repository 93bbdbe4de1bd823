//! UC and UD behaviour over a two-QP loopback.

mod common;

use common::*;
use softverbs_transport::*;
use softverbs_wire::Opcode;

const RW: Access = Access(Access::LOCAL_WRITE.0 | Access::REMOTE_WRITE.0);

#[test]
fn uc_loses_only_the_message_with_a_gap() {
    let mut p = connect(QpType::Uc, Mtu::Mtu256, |_| {});
    p.a.mem.reg(1, 0x1000, 1000, RW);
    p.b.mem.reg(2, 0x9000, 2000, RW);
    p.a.mem.fill(1, |i| i as u8);
    for id in [10, 11] {
        p.b.qp
            .post_recv(RecvWr {
                wr_id: id,
                sgl: vec![Sge {
                    addr: 0x9000,
                    length: 2000,
                    lkey: 2,
                }],
            })
            .unwrap();
    }
    for id in [1, 2] {
        p.a.qp
            .post_send(send_wr(
                id,
                SendOp::Send,
                vec![Sge {
                    addr: 0x1000,
                    length: 1000,
                    lkey: 1,
                }],
            ))
            .unwrap();
    }
    let mut n = 0;
    p.run(|_, r| {
        n += 1;
        if n == 2 {
            assert_eq!(r.bth.opcode, Opcode::UC_SEND_MIDDLE);
            return Fate::Drop;
        }
        Fate::Deliver
    });
    // Both sends complete locally (UC has no ACKs); only the second arrives,
    // in the receive WQE the lost message had taken.
    assert_eq!(p.a.completions.len(), 2);
    assert_eq!(p.b.completions.len(), 1);
    assert_eq!(
        (p.b.completions[0].wr_id, p.b.completions[0].byte_len),
        (10, 1000)
    );
    assert_eq!(&p.b.mem.bytes(2)[..1000], p.a.mem.bytes(1));
    assert_eq!(p.b.qp.counters().lost_msgs, 1);
    assert_eq!(p.b.qp.recv_queue_len(), 1);
}

#[test]
fn uc_write_with_immediate() {
    let mut p = connect(QpType::Uc, Mtu::Mtu1024, |_| {});
    p.a.mem.reg(1, 0x1000, 3000, RW);
    p.b.mem.reg(2, 0x9000, 3000, RW);
    p.a.mem.fill(1, |i| (i * 3) as u8);
    p.b.qp
        .post_recv(RecvWr {
            wr_id: 5,
            sgl: vec![],
        })
        .unwrap();
    p.a.qp
        .post_send(send_wr(
            1,
            SendOp::WriteWithImm {
                remote_addr: 0x9000,
                rkey: 2,
                imm: 77,
            },
            vec![Sge {
                addr: 0x1000,
                length: 3000,
                lkey: 1,
            }],
        ))
        .unwrap();
    p.run(|_, _| Fate::Deliver);
    assert_eq!(p.b.mem.bytes(2), p.a.mem.bytes(1));
    let c = &p.b.completions[0];
    assert_eq!(
        (c.opcode, c.imm, c.byte_len),
        (WcOpcode::RecvRdmaWithImm, Some(77), 3000)
    );
}

fn ud_pair() -> Pair {
    let mut p = connect(QpType::Ud, Mtu::Mtu1024, |_| {});
    p.a.mem.reg(1, 0x1000, 1024, RW);
    p.b.mem.reg(2, 0x9000, 2048, RW);
    p.a.mem.fill(1, |i| (i + 1) as u8);
    p
}

fn ud_send(p: &mut Pair, id: u64, len: u32, qkey: u32) {
    let mut wr = send_wr(
        id,
        SendOp::SendWithImm { imm: 9 },
        vec![Sge {
            addr: 0x1000,
            length: len,
            lkey: 1,
        }],
    );
    wr.ud = Some(UdDest {
        dgid: GID_B,
        remote_qpn: 0x22,
        remote_qkey: qkey,
    });
    p.a.qp.post_send(wr).unwrap();
}

#[test]
fn ud_puts_the_grh_first_and_reports_the_source() {
    let mut p = ud_pair();
    p.b.qp
        .post_recv(RecvWr {
            wr_id: 3,
            sgl: vec![Sge {
                addr: 0x9000,
                length: 2048,
                lkey: 2,
            }],
        })
        .unwrap();
    ud_send(&mut p, 1, 1000, 0x1111_1111);
    p.run(|_, _| Fate::Deliver);
    let c = &p.b.completions[0];
    assert_eq!(
        (c.status, c.byte_len, c.src_qp, c.grh, c.imm),
        (WcStatus::Success, 1040, 0x11, true, Some(9))
    );
    assert_eq!(&p.b.mem.bytes(2)[40..1040], &p.a.mem.bytes(1)[..1000]);
    assert_eq!(p.a.completions[0].status, WcStatus::Success);
}

#[test]
fn ud_drops_wrong_qkey_and_counts_missing_receive() {
    let mut p = ud_pair();
    ud_send(&mut p, 1, 10, 0x2222_2222);
    ud_send(&mut p, 2, 10, 0x1111_1111);
    p.run(|_, _| Fate::Deliver);
    assert!(p.b.completions.is_empty());
    assert_eq!(p.b.qp.counters().dropped_pkts, 1);
    assert_eq!(p.b.qp.counters().lost_msgs, 1);
}

#[test]
fn ud_high_bit_qkey_uses_the_qps_own() {
    let mut p = ud_pair();
    p.b.qp
        .post_recv(RecvWr {
            wr_id: 3,
            sgl: vec![Sge {
                addr: 0x9000,
                length: 2048,
                lkey: 2,
            }],
        })
        .unwrap();
    ud_send(&mut p, 1, 10, 0x8000_0000);
    p.run(|_, _| Fate::Deliver);
    assert_eq!(p.b.completions.len(), 1);
}

#[test]
fn ud_rejects_messages_over_the_mtu_at_post() {
    let mut p = ud_pair();
    p.a.mem.reg(5, 0x10_0000, 4096, RW);
    let mut wr = send_wr(
        1,
        SendOp::Send,
        vec![Sge {
            addr: 0x10_0000,
            length: 2000,
            lkey: 5,
        }],
    );
    wr.ud = Some(UdDest {
        dgid: GID_B,
        remote_qpn: 0x22,
        remote_qkey: 1,
    });
    assert!(matches!(p.a.qp.post_send(wr), Err(PostError::Invalid(_))));
}

#[test]
fn ud_short_buffer_is_a_length_error() {
    let mut p = ud_pair();
    p.b.qp
        .post_recv(RecvWr {
            wr_id: 3,
            sgl: vec![Sge {
                addr: 0x9000,
                length: 100,
                lkey: 2,
            }],
        })
        .unwrap();
    ud_send(&mut p, 1, 100, 0x1111_1111);
    p.run(|_, _| Fate::Deliver);
    assert_eq!(p.b.completions[0].status, WcStatus::LocLenErr);
}
