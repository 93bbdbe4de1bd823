//! Response sequences seen from Linux rdma_rxe in the interop suite
//! (scripts/interop), replayed against our requester.

mod common;

use common::*;
use softverbs_transport::*;
use softverbs_wire::{AckSyndrome, AethRepr, NakCode, PacketRepr};

const RW: Access = Access(Access::LOCAL_WRITE.0 | Access::REMOTE_WRITE.0);

/// rxe ACKs the end of one message and, in the same burst, NAKs (PSN
/// sequence error) a PSN inside the next one (a packet of it was lost or
/// reordered). The requester must go back to the NAK'd PSN at once.
#[test]
fn seq_nak_inside_the_next_message_after_an_ack_rewinds_there() {
    let mut p = connect(QpType::Rc, Mtu::Mtu1024, |_| {});
    p.a.mem.reg(1, 0x1000, 3 * 6144, RW);
    p.b.mem.reg(2, 0x9000, 3 * 6144, RW);
    post_three_sends(&mut p);
    // A sends all 18 packets; B's answers are held back.
    let ack = run_holding_back_b(&mut p);
    let sent: Vec<u32> = p
        .wire
        .iter()
        .filter(|(a, _)| *a)
        .map(|(_, r)| r.bth.psn)
        .collect();
    assert_eq!(sent.len(), 18);
    let first = sent[0];
    let psn = |k: u32| (first + k) & 0xff_ffff;
    let ack = ack.expect("B acknowledged");
    let respond = |p: &mut Pair, psn: u32, syndrome: AckSyndrome| {
        let mut r = ack.clone();
        r.bth.psn = psn;
        r.aeth = Some(AethRepr { syndrome, msn: 1 });
        let net = [0u8; 40];
        let inc = Incoming {
            repr: &r,
            payload: &[],
            src: p.b.gid,
            network_header: &net,
        };
        let mut ctx = Ctx::new(&mut p.a.mem);
        p.a.qp.handle_packet(p.now, &inc, &mut ctx);
    };
    let mut buf = vec![0u8; 4096 + MAX_HEADER_LEN];
    // First a NAK inside message 1: everything from PSN 2 goes again.
    respond(&mut p, psn(2), AckSyndrome::Nak(NakCode::PsnSequenceError));
    let mut again = vec![];
    {
        let mut ctx = Ctx::new(&mut p.a.mem);
        while let Some(t) = p.a.qp.poll_transmit(p.now, &mut ctx, &mut buf) {
            again.push(PacketRepr::parse(&buf[..t.len]).unwrap().0.bth.psn);
        }
    }
    assert_eq!(again, (2..18).map(psn).collect::<Vec<_>>());
    // The end of message 1 is acknowledged, then PSN 8 (message 2) NAK'd.
    respond(
        &mut p,
        psn(1),
        AckSyndrome::Ack {
            credit: AckSyndrome::NO_CREDIT,
        },
    );
    respond(
        &mut p,
        psn(5),
        AckSyndrome::Ack {
            credit: AckSyndrome::NO_CREDIT,
        },
    );
    respond(&mut p, psn(8), AckSyndrome::Nak(NakCode::PsnSequenceError));
    let mut ctx = Ctx::new(&mut p.a.mem);
    let t =
        p.a.qp
            .poll_transmit(p.now, &mut ctx, &mut buf)
            .expect("a retransmission");
    let (r, _) = PacketRepr::parse(&buf[..t.len]).unwrap();
    assert_eq!(r.bth.psn, psn(8), "go back to the NAK'd PSN");
}

/// Found against rxe under netem reordering (scripts/interop nm-send_bw):
/// the requester goes back N for a NAK, and before it has resent much an
/// ACK arrives (reordered) that acknowledges past where it now stands,
/// completing the WQE it is resending. It must carry on from the first
/// unacknowledged PSN with consistent WQE bookkeeping; it used to keep
/// its PSN and offset inside the popped WQE, so later rewinds could not
/// find the NAK'd PSN and timeouts replayed the wrong one until the retry
/// count ran out.
#[test]
fn ack_past_a_go_back_n_in_progress_moves_the_requester_forward() {
    let mut p = connect(QpType::Rc, Mtu::Mtu1024, |_| {});
    p.a.mem.reg(1, 0x1000, 3 * 6144, RW);
    p.b.mem.reg(2, 0x9000, 3 * 6144, RW);
    p.a.mem.fill(1, |i| (i * 13 + 5) as u8);
    post_three_sends(&mut p);
    // All 18 packets reach B; B's answers are held back.
    let ack = run_holding_back_b(&mut p);
    let first = p.wire.iter().find(|(a, _)| *a).unwrap().1.bth.psn;
    let psn = |k: u32| (first + k) & 0xff_ffff;
    let ack = ack.expect("B acknowledged");
    let respond = |p: &mut Pair, psn: u32, syndrome: AckSyndrome| {
        let mut r = ack.clone();
        r.bth.psn = psn;
        r.aeth = Some(AethRepr { syndrome, msn: 1 });
        let net = [0u8; 40];
        let inc = Incoming {
            repr: &r,
            payload: &[],
            src: p.b.gid,
            network_header: &net,
        };
        let mut ctx = Ctx::new(&mut p.a.mem);
        p.a.qp.handle_packet(p.now, &inc, &mut ctx);
    };
    // A NAK for PSN 2: A goes back and resends PSNs 2 and 3 only (the rest
    // of the burst is still to come) …
    respond(&mut p, psn(2), AckSyndrome::Nak(NakCode::PsnSequenceError));
    let mut buf = vec![0u8; 4096 + MAX_HEADER_LEN];
    for k in 2..4 {
        let mut ctx = Ctx::new(&mut p.a.mem);
        let t = p.a.qp.poll_transmit(p.now, &mut ctx, &mut buf).unwrap();
        assert_eq!(PacketRepr::parse(&buf[..t.len]).unwrap().0.bth.psn, psn(k));
    }
    // … when a reordered ACK for the end of message 2 (PSN 11) arrives.
    respond(
        &mut p,
        psn(11),
        AckSyndrome::Ack {
            credit: AckSyndrome::NO_CREDIT,
        },
    );
    let mut ctx = Ctx::new(&mut p.a.mem);
    let t = p.a.qp.poll_transmit(p.now, &mut ctx, &mut buf).unwrap();
    let (r, _) = PacketRepr::parse(&buf[..t.len]).unwrap();
    assert_eq!(
        r.bth.psn,
        psn(12),
        "carry on at the first unacknowledged PSN"
    );
    assert_eq!(r.bth.opcode, softverbs_wire::Opcode::RC_SEND_FIRST);
    // B NAKs PSN 14 (message 3): A must find it and finish everything.
    respond(&mut p, psn(14), AckSyndrome::Nak(NakCode::PsnSequenceError));
    let mut ctx = Ctx::new(&mut p.a.mem);
    let t = p.a.qp.poll_transmit(p.now, &mut ctx, &mut buf).unwrap();
    assert_eq!(PacketRepr::parse(&buf[..t.len]).unwrap().0.bth.psn, psn(14));
    p.run(|_, _| Fate::Deliver);
    let ok: Vec<_> =
        p.a.completions
            .iter()
            .map(|c| (c.wr_id, c.status))
            .collect();
    assert_eq!(
        ok,
        vec![
            (0, WcStatus::Success),
            (1, WcStatus::Success),
            (2, WcStatus::Success)
        ]
    );
    assert_eq!(p.b.mem.bytes(2), p.a.mem.bytes(1));
}

/// Three 6 KiB SENDs (6 packets each at MTU 1024) from A's region 1 into
/// receives on B's region 2.
fn post_three_sends(p: &mut Pair) {
    for i in 0..3u64 {
        let sge = |addr: u64, lkey: u32| Sge {
            addr: addr + i * 6144,
            length: 6144,
            lkey,
        };
        p.b.qp
            .post_recv(RecvWr {
                wr_id: i,
                sgl: vec![sge(0x9000, 2)],
            })
            .unwrap();
        p.a.qp
            .post_send(send_wr(i, SendOp::Send, vec![sge(0x1000, 1)]))
            .unwrap();
    }
}

/// Runs the pair with every packet of A delivered and every answer of B
/// held back; returns B's first answer.
fn run_holding_back_b(p: &mut Pair) -> Option<PacketRepr> {
    let mut ack: Option<PacketRepr> = None;
    p.run_until(Instant::ZERO, |from_a, r| {
        if !from_a {
            ack.get_or_insert_with(|| r.clone());
            return Fate::Drop;
        }
        Fate::Deliver
    });
    ack
}
