//! Local operations on the send queue (LOCAL_INV, BIND_MW): executed when
//! the requester reaches them, once, completed in order with the WQEs
//! around them; failures complete them in error and fail the QP.

mod common;

use common::*;
use softverbs_transport::*;
use softverbs_wire::Opcode;

const ALL: Access = Access(0x1f);

fn bind(wr_id: u64, mr_lkey: u32) -> SendWr {
    let mut wr = SendWr::bind_mw_req(
        wr_id,
        MwBindReq {
            mw_rkey: 0x500,
            new_rkey: Some(0x501),
            mr_lkey,
            addr: 0x1000,
            len: 64,
            access: Access::REMOTE_WRITE,
        },
    );
    wr.flags.signaled = true;
    wr
}

fn ops(c: &[Completion]) -> Vec<(u64, WcOpcode, WcStatus)> {
    c.iter().map(|c| (c.wr_id, c.opcode, c.status)).collect()
}

/// WRITE, BIND_MW, WRITE with the first WRITE's last packet lost: the
/// go-back-N replay passes the executed bind without running it again, and
/// the three complete in order.
#[test]
fn rc_bind_runs_once_across_a_replay_and_completes_in_order() {
    let mut p = connect(QpType::Rc, Mtu::Mtu1024, |_| {});
    p.a.mem.reg(1, 0x1000, 8192, ALL);
    p.b.mem.reg(3, 0x9000, 8192, ALL);
    p.a.mem.fill(1, |i| i as u8);
    let w = |id, off: u64| {
        send_wr(
            id,
            SendOp::Write {
                remote_addr: 0x9000 + off,
                rkey: 3,
            },
            vec![Sge {
                addr: 0x1000 + off,
                length: 3000,
                lkey: 1,
            }],
        )
    };
    p.a.qp.post_send(w(1, 0)).unwrap();
    p.a.qp.post_send(bind(2, 1)).unwrap();
    p.a.qp.post_send(w(3, 4096)).unwrap();
    let mut dropped = false;
    p.run(|from_a, r| {
        if from_a && !dropped && r.bth.opcode == Opcode::RC_RDMA_WRITE_LAST {
            dropped = true;
            return Fate::Drop;
        }
        Fate::Deliver
    });
    assert!(dropped);
    assert_eq!(
        ops(&p.a.completions),
        [
            (1, WcOpcode::RdmaWrite, WcStatus::Success),
            (2, WcOpcode::BindMw, WcStatus::Success),
            (3, WcOpcode::RdmaWrite, WcStatus::Success),
        ]
    );
    assert_eq!(p.a.mem.binds.len(), 1, "executed once");
    assert_eq!(p.a.mem.binds[0].new_rkey, Some(0x501));
    assert_eq!(&p.b.mem.bytes(3)[..3000], &p.a.mem.bytes(1)[..3000]);
    assert_eq!(&p.b.mem.bytes(3)[4096..7096], &p.a.mem.bytes(1)[4096..7096]);
    assert_eq!(p.a.qp.send_queue_len(), 0);
}

/// A LOCAL_INV of the region a WRITE before it gathers from waits for the
/// WRITE to complete (it is still being sent when posted).
#[test]
fn rc_local_inv_waits_for_earlier_wqes() {
    let mut p = connect(QpType::Rc, Mtu::Mtu256, |_| {});
    p.a.mem.reg(1, 0x1000, 64 * 1024, ALL);
    p.b.mem.reg(3, 0x9000, 64 * 1024, ALL);
    p.a.mem.fill(1, |i| (i * 3) as u8);
    let write = send_wr(
        1,
        SendOp::Write {
            remote_addr: 0x9000,
            rkey: 3,
        },
        vec![Sge {
            addr: 0x1000,
            length: 64 * 1024, // 256 packets: past the 128-PSN window
            lkey: 1,
        }],
    );
    p.a.qp.post_send(write).unwrap();
    p.a.qp
        .post_send(SendWr::local_inv(2, 1).signaled())
        .unwrap();
    let src = p.a.mem.bytes(1).to_vec();
    p.run(|_, _| Fate::Deliver);
    assert_eq!(
        ops(&p.a.completions),
        [
            (1, WcOpcode::RdmaWrite, WcStatus::Success),
            (2, WcOpcode::LocalInv, WcStatus::Success),
        ]
    );
    assert_eq!(p.b.mem.bytes(3), &src[..]);
    assert!(!p.a.mem.regions.contains_key(&1), "invalidated");
}

#[test]
fn uc_local_ops_complete_in_order() {
    let mut p = connect(QpType::Uc, Mtu::Mtu1024, |_| {});
    p.a.mem.reg(1, 0x1000, 4096, ALL);
    p.a.mem.reg(2, 0x8000, 64, ALL);
    p.b.mem.reg(3, 0x9000, 4096, ALL);
    let write = send_wr(
        1,
        SendOp::Write {
            remote_addr: 0x9000,
            rkey: 3,
        },
        vec![Sge {
            addr: 0x1000,
            length: 2500,
            lkey: 1,
        }],
    );
    p.a.qp.post_send(write).unwrap();
    p.a.qp.post_send(bind(2, 1)).unwrap();
    p.a.qp
        .post_send(SendWr::local_inv(3, 2).signaled())
        .unwrap();
    p.run(|_, _| Fate::Deliver);
    assert_eq!(
        ops(&p.a.completions),
        [
            (1, WcOpcode::RdmaWrite, WcStatus::Success),
            (2, WcOpcode::BindMw, WcStatus::Success),
            (3, WcOpcode::LocalInv, WcStatus::Success),
        ]
    );
}

#[test]
fn failed_local_ops_complete_in_error_and_fail_the_qp() {
    let mut p = connect(QpType::Rc, Mtu::Mtu1024, |_| {});
    p.a.qp.post_send(bind(1, 77)).unwrap(); // no region 77
    p.a.qp
        .post_send(SendWr::local_inv(2, 5).signaled())
        .unwrap();
    p.run(|_, _| Fate::Deliver);
    assert_eq!(
        ops(&p.a.completions),
        [
            (1, WcOpcode::BindMw, WcStatus::MwBindErr),
            (2, WcOpcode::LocalInv, WcStatus::WrFlushErr),
        ]
    );
    assert_eq!(p.a.qp.state(), QpState::Err);

    let mut p = connect(QpType::Rc, Mtu::Mtu1024, |_| {});
    p.a.qp
        .post_send(SendWr::local_inv(3, 5).signaled())
        .unwrap();
    p.run(|_, _| Fate::Deliver);
    assert_eq!(
        ops(&p.a.completions),
        [(3, WcOpcode::LocalInv, WcStatus::LocQpOpErr)]
    );
    assert_eq!(p.a.events, [QpEvent::Fatal]);
}

#[test]
fn local_ops_are_refused_on_ud_and_with_data() {
    let mut p = connect(QpType::Ud, Mtu::Mtu1024, |_| {});
    assert!(p.a.qp.post_send(SendWr::local_inv(1, 5)).is_err());
    let mut p = connect(QpType::Rc, Mtu::Mtu1024, |_| {});
    let mut wr = SendWr::local_inv(1, 5);
    wr.payload = Payload::Inline(vec![1]);
    assert!(p.a.qp.post_send(wr).is_err());
    assert_eq!(p.a.qp.send_queue_len(), 0);
}
