//! The verbs core over a fake driver: typed API, uAPI negatives,
//! capabilities, the QP state machine end to end, context close order,
//! two-phase creation, resource tracking and the provider channel.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::*;
use softverbs_core::driver::{MwType, SrqAttr};
use softverbs_core::objects::ids;
use softverbs_core::provider::{self, soft_driver_spec};
use softverbs_core::qp_rules::{mask, rule};
use softverbs_core::restrack::{ResDetail, ResKind};
use softverbs_core::uapi::{errno, AttrId, Call, DriverSpec, Handle};
use softverbs_core::*;
use softverbs_transport::{Access, Mtu, QpState, QpType};

fn setup() -> (Arc<Fake>, Arc<Device>, Arc<Ucontext>) {
    let f = Fake::rxe();
    let d = device(&f);
    let c = d.open(owner(100, "app")).unwrap();
    (f, d, c)
}

fn qp_req(t: QpType, cq: Handle) -> QpCreate {
    QpCreate {
        qp_type: t,
        send_cq: cq,
        recv_cq: cq,
        srq: None,
        max_send_wr: 16,
        max_recv_wr: 16,
        max_send_sge: 1,
        max_recv_sge: 1,
        max_inline_data: 0,
        sq_sig_all: false,
    }
}

struct Objs {
    pd: PdRef,
    cq: CqRef,
    qp: QpRef,
}

fn objs(c: &Ucontext, t: QpType) -> Objs {
    let pd = c.alloc_pd().unwrap();
    let cq = c.create_cq(10, None).unwrap();
    let qp = c.create_qp(pd.handle, &qp_req(t, cq.handle)).unwrap();
    Objs { pd, cq, qp }
}

// ---- typed API ------------------------------------------------------------------

#[test]
fn queries_through_the_encoded_path() {
    let (f, d, c) = setup();
    assert_eq!(c.query_device().unwrap(), f.caps);
    let p = c.query_port(1).unwrap();
    assert_eq!(
        (p.max_mtu, p.gid_tbl_len, p.udp_addr.as_str()),
        (4096, 2, "127.0.0.1:4791")
    );
    assert_eq!(c.query_gid(1, 1).unwrap().to_string(), "::ffff:127.0.0.2");
    let e = c.query_gid(1, 2).unwrap_err();
    assert!(
        matches!(e, VerbsError::InvalidArgument(ref m) if m.contains("GID index 2")),
        "{e}"
    );
    let e = c.query_port(2).unwrap_err();
    assert!(e.to_string().contains("port 2 does not exist"), "{e}");
    assert_eq!(d.counters().sent_pkts, 42);
    assert_eq!(d.name(), "fake0");
}

#[test]
fn every_object_created_and_destroyed() {
    let (f, _d, c) = setup();
    let pd = c.alloc_pd().unwrap();
    let mr = c
        .reg_mr(
            pd.handle,
            block(8192),
            Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::MW_BIND,
        )
        .unwrap();
    assert_eq!(mr.len, 8192);
    assert_eq!(mr.addr % 4096, 0);
    let ch = c.create_comp_channel().unwrap();
    let cq = c.create_cq(10, Some(ch.handle)).unwrap();
    assert_eq!(cq.cqe, 16);
    assert_eq!(c.resize_cq(cq.handle, 64).unwrap(), 64);
    let srq = c
        .create_srq(
            pd.handle,
            SrqAttr {
                max_wr: 32,
                max_sge: 2,
                limit: 0,
            },
        )
        .unwrap();
    c.modify_srq(srq.handle, None, Some(8)).unwrap();
    assert_eq!(c.query_srq(srq.handle).unwrap().limit, 8);
    let e = c.modify_srq(srq.handle, None, Some(100)).unwrap_err();
    assert!(e.to_string().contains("exceeds its depth"), "{e}");
    let mut req = qp_req(QpType::Rc, cq.handle);
    req.srq = Some(srq.handle);
    let qp = c.create_qp(pd.handle, &req).unwrap();
    assert_eq!(qp.init.srq, Some(srq.id));
    assert_eq!(qp.init.send_cq, cq.id);
    let mw = c.alloc_mw(pd.handle, MwType::Type1).unwrap();
    let rkey = c
        .bind_mw(
            qp.handle,
            mw.handle,
            mr.handle,
            mr.addr,
            4096,
            Access::REMOTE_READ,
        )
        .unwrap();
    assert_ne!(rkey, mw.rkey);
    let ah = c.create_ah(pd.handle, av()).unwrap();
    assert_eq!(f.st().total(), 7);

    c.destroy_ah(ah.handle).unwrap();
    c.dealloc_mw(mw.handle).unwrap();
    c.destroy_qp(qp.handle).unwrap();
    c.destroy_srq(srq.handle).unwrap();
    c.destroy_cq(cq.handle).unwrap();
    c.destroy_comp_channel(ch.handle).unwrap();
    c.dereg_mr(mr.handle).unwrap();
    c.dealloc_pd(pd.handle).unwrap();
    assert_eq!(f.st().total(), 0);
    assert!(c.uapi_context().is_empty());
}

#[test]
fn channel_delivers_and_is_busy_while_a_cq_uses_it() {
    let (_f, _d, c) = setup();
    let ch = c.create_comp_channel().unwrap();
    let cq = c.create_cq(4, Some(ch.handle)).unwrap();
    ch.channel.notify(cq.id);
    assert_eq!(ch.channel.try_get_event(), Some(cq.id));
    let e = c.destroy_comp_channel(ch.handle).unwrap_err();
    assert!(
        matches!(e, VerbsError::Busy { ref users, .. } if users.iter().any(|u| u.starts_with("CQ"))),
        "{e}"
    );
    c.destroy_cq(cq.handle).unwrap();
    c.destroy_comp_channel(ch.handle).unwrap();
}

#[test]
fn bound_window_keeps_its_region_busy() {
    let (_f, _d, c) = setup();
    let o = objs(&c, QpType::Rc);
    let mr = c
        .reg_mr(
            o.pd.handle,
            block(4096),
            Access::LOCAL_WRITE | Access::MW_BIND,
        )
        .unwrap();
    let mw = c.alloc_mw(o.pd.handle, MwType::Type1).unwrap();
    let rkey = c
        .bind_mw(
            o.qp.handle,
            mw.handle,
            mr.handle,
            mr.addr,
            100,
            Access::REMOTE_WRITE,
        )
        .unwrap();
    let e = c.dereg_mr(mr.handle).unwrap_err();
    assert!(
        matches!(e, VerbsError::Busy { ref users, .. } if users[0].contains(&format!("{rkey:#x}"))),
        "{e}"
    );
    // Out of the region's range.
    let e = c
        .bind_mw(
            o.qp.handle,
            mw.handle,
            mr.handle,
            mr.addr + 4000,
            200,
            Access::REMOTE_WRITE,
        )
        .unwrap_err();
    assert!(e.to_string().contains("outside MR"), "{e}");
    // Unbind (len 0) frees the region.
    c.bind_mw(o.qp.handle, mw.handle, mr.handle, 0, 0, Access::NONE)
        .unwrap();
    c.dereg_mr(mr.handle).unwrap();
    // Type 2 windows are bound by work requests.
    let mw2 = c.alloc_mw(o.pd.handle, MwType::Type2).unwrap();
    let mr2 = c
        .reg_mr(
            o.pd.handle,
            block(64),
            Access::LOCAL_WRITE | Access::MW_BIND,
        )
        .unwrap();
    let e = c
        .bind_mw(
            o.qp.handle,
            mw2.handle,
            mr2.handle,
            mr2.addr,
            8,
            Access::REMOTE_READ,
        )
        .unwrap_err();
    assert!(e.to_string().contains("BIND_MW work request"), "{e}");
}

#[test]
fn mr_access_rules_and_staging_cleanup() {
    let (f, _d, c) = setup();
    let pd = c.alloc_pd().unwrap();
    let e = c
        .reg_mr(pd.handle, block(64), Access::REMOTE_WRITE)
        .unwrap_err();
    assert!(e.to_string().contains("requires LOCAL_WRITE"), "{e}");
    // Bits outside the flags spec are refused by the dispatcher.
    let e = c.reg_mr(pd.handle, block(64), Access(0x100)).unwrap_err();
    assert!(e.to_string().contains("flag bits 0x100"), "{e}");
    // A failed registration leaves no staged memory and nothing in the driver.
    assert!(c.data().take_staged(1).is_none());
    assert!(c.data().take_staged(2).is_none());
    assert!(f.st().mrs.is_empty());
    // A token never staged.
    let e = c
        .call(
            Call::new(ids::MR, ids::CREATE)
                .new_object(ids::HANDLE)
                .handle(ids::PD_HANDLE, pd.handle)
                .value(ids::MR_BACKING, 999)
                .value(ids::MR_ACCESS, 0)
                .out(ids::RESP, 24),
        )
        .unwrap_err();
    assert!(e.to_string().contains("token 999"), "{e}");
}

#[test]
fn iova_regions_and_rereg_keep_keys_and_move_the_pd() {
    let (f, _d, c) = setup();
    let o = objs(&c, QpType::Rc);
    // An iova other than the memory's address (same page offset).
    let mr = c
        .reg_mr_iova(
            o.pd.handle,
            block(8192),
            Some(0x10_0000),
            Access::LOCAL_WRITE,
        )
        .unwrap();
    assert_eq!((mr.addr, mr.len), (0x10_0000, 8192));
    assert!(f.take_log().iter().any(|l| l.ends_with("iova 0x100000")));
    let e = c
        .reg_mr_iova(o.pd.handle, block(64), Some(0x10_0010), Access::NONE)
        .unwrap_err();
    assert!(e.to_string().contains("page offset"), "{e}");
    assert_eq!(e.errno(), errno::EINVAL);

    // Access, then PD, then memory: the keys stay.
    let pd2 = c.alloc_pd().unwrap();
    let r = c
        .rereg_mr(
            mr.handle,
            None,
            Some(Access::LOCAL_WRITE | Access::REMOTE_WRITE),
            None,
        )
        .unwrap();
    assert_eq!((r.lkey, r.rkey, r.addr), (mr.lkey, mr.rkey, 0x10_0000));
    let e = c
        .rereg_mr(mr.handle, None, Some(Access::REMOTE_WRITE), None)
        .unwrap_err();
    assert!(e.to_string().contains("requires LOCAL_WRITE"), "{e}");
    c.rereg_mr(mr.handle, Some(pd2.handle), None, None).unwrap();
    // The old PD is free now, the new one busy.
    let e = c.dealloc_pd(pd2.handle).unwrap_err();
    assert!(matches!(e, VerbsError::Busy { .. }), "{e}");
    let b = block(4096);
    let at = b.addr();
    let r = c.rereg_mr(mr.handle, None, None, Some((b, None))).unwrap();
    assert_eq!((r.lkey, r.addr, r.len), (mr.lkey, at, 4096));
    let r = c
        .rereg_mr(mr.handle, None, None, Some((block(4096), Some(0x20_0000))))
        .unwrap();
    assert_eq!(r.addr, 0x20_0000);
    let log = f.take_log();
    assert!(
        log.iter()
            .any(|l| l.contains(&format!("pd Some({})", pd2.id))),
        "{log:?}"
    );
    // Nothing to change, an iova without memory.
    let e = c.rereg_mr(mr.handle, None, None, None).unwrap_err();
    assert!(e.to_string().contains("changes nothing"), "{e}");
    let e = c
        .call(
            Call::new(ids::MR, ids::REREG)
                .handle(ids::HANDLE, mr.handle)
                .value(ids::MR_IOVA, 0x1000)
                .out(ids::RESP, 24),
        )
        .unwrap_err();
    assert!(e.to_string().contains("iova"), "{e}");
    // A bound window keeps the region as it is.
    c.rereg_mr(
        mr.handle,
        Some(o.pd.handle),
        Some(Access::LOCAL_WRITE | Access::MW_BIND),
        None,
    )
    .unwrap();
    c.dealloc_pd(pd2.handle).unwrap();
    let mw = c.alloc_mw(o.pd.handle, MwType::Type1).unwrap();
    c.bind_mw(
        o.qp.handle,
        mw.handle,
        mr.handle,
        0x20_0000,
        8,
        Access::REMOTE_READ,
    )
    .unwrap();
    let e = c
        .rereg_mr(mr.handle, None, Some(Access::LOCAL_WRITE), None)
        .unwrap_err();
    assert!(matches!(e, VerbsError::Busy { .. }), "{e}");
    assert_eq!(e.errno(), errno::EBUSY);
    c.dealloc_mw(mw.handle).unwrap();
    c.rereg_mr(mr.handle, None, Some(Access::LOCAL_WRITE), None)
        .unwrap();
    c.dereg_mr(mr.handle).unwrap();
}

// ---- uAPI negatives --------------------------------------------------------------

#[test]
fn wrong_handle_type() {
    let (_f, _d, c) = setup();
    let pd = c.alloc_pd().unwrap();
    let cq = c.create_cq(4, None).unwrap();
    let mut req = qp_req(QpType::Rc, cq.handle);
    req.send_cq = pd.handle;
    let e = c.create_qp(pd.handle, &req).unwrap_err();
    assert!(
        matches!(e, VerbsError::InvalidArgument(ref m) if m.contains("'send_cq'") && m.contains("is a PD, expected a CQ")),
        "{e}"
    );
    let e = c.dealloc_pd(cq.handle).unwrap_err();
    assert!(e.to_string().contains("is a CQ, expected a PD"), "{e}");
}

#[test]
fn stale_handle() {
    let (_f, _d, c) = setup();
    let pd = c.alloc_pd().unwrap();
    c.dealloc_pd(pd.handle).unwrap();
    let pd2 = c.alloc_pd().unwrap();
    assert_ne!(pd.handle, pd2.handle);
    let e = c.dealloc_pd(pd.handle).unwrap_err();
    assert!(
        matches!(e, VerbsError::NotFound(ref m) if m.contains("stale")),
        "{e}"
    );
    assert_eq!(e.errno(), errno::ENOENT);
    // The new PD was not touched.
    c.dealloc_pd(pd2.handle).unwrap();
}

#[test]
fn another_contexts_handle() {
    let (f, d, c) = setup();
    let c2 = d.open(owner(200, "other")).unwrap();
    let pd = c.alloc_pd().unwrap();
    let e = c2.dealloc_pd(pd.handle).unwrap_err();
    assert!(
        matches!(e, VerbsError::NotFound(ref m) if m.contains("another context")),
        "{e}"
    );
    let e = c2
        .create_cq(4, None)
        .and_then(|cq| c2.create_qp(pd.handle, &qp_req(QpType::Rc, cq.handle)));
    assert!(e.unwrap_err().to_string().contains("another context"));
    assert_eq!(f.st().pds.len(), 1);
}

#[test]
fn missing_mandatory_attribute() {
    let (_f, _d, c) = setup();
    let pd = c.alloc_pd().unwrap();
    let cq = c.create_cq(4, None).unwrap();
    let e = c
        .call(
            Call::new(ids::QP, ids::CREATE)
                .new_object(ids::HANDLE)
                .handle(ids::PD_HANDLE, pd.handle)
                .handle(ids::SEND_CQ, cq.handle)
                .handle(ids::RECV_CQ, cq.handle)
                .out(ids::RESP, 48),
        )
        .unwrap_err();
    assert!(
        matches!(e, VerbsError::InvalidArgument(ref m) if m.contains("create_qp: mandatory attribute 'qp_init_attr' is missing")),
        "{e}"
    );
}

#[test]
fn unknown_mandatory_and_optional_attributes() {
    let (_f, _d, c) = setup();
    let extra = AttrId::core(0x77);
    let e = c
        .call(
            Call::new(ids::PD, ids::CREATE)
                .new_object(ids::HANDLE)
                .out(ids::RESP, 8)
                .value(extra, 1)
                .required(),
        )
        .unwrap_err();
    assert_eq!(e.errno(), errno::EPROTONOSUPPORT, "{e}");
    assert!(e.to_string().contains("attr 0x77"), "{e}");
    // The same attribute, not marked mandatory, is ignored.
    let r = c
        .call(
            Call::new(ids::PD, ids::CREATE)
                .new_object(ids::HANDLE)
                .out(ids::RESP, 8)
                .value(extra, 1),
        )
        .unwrap();
    assert!(r.handle(ids::HANDLE).is_some());
    // A driver-namespace attribute on a device without a driver spec: same.
    let e = c
        .call(
            Call::new(ids::PD, ids::CREATE)
                .new_object(ids::HANDLE)
                .value(AttrId::driver(1), 1)
                .required(),
        )
        .unwrap_err();
    assert_eq!(e.errno(), errno::EPROTONOSUPPORT);
}

#[test]
fn trailing_bytes_of_extensible_structs() {
    let (f, _d, c) = setup();
    let pd = c.alloc_pd().unwrap();
    let srq_call = |body: Vec<u8>| {
        Call::new(ids::SRQ, ids::CREATE)
            .new_object(ids::HANDLE)
            .handle(ids::PD_HANDLE, pd.handle)
            .bytes(ids::IN, body)
            .out(ids::RESP, 8)
    };
    let mut body = vec![0u8; 24];
    body[0] = 4; // max_wr
    body[4] = 1; // max_sge
    body[23] = 1; // a field this side does not know
    let e = c.call(srq_call(body.clone())).unwrap_err();
    assert_eq!(e.errno(), errno::E2BIG, "{e}");
    assert!(e.to_string().contains("byte 23"), "{e}");
    assert!(f.st().srqs.is_empty());
    // A zero tail is fine; a shorter (older) struct is zero-extended.
    body[23] = 0;
    c.call(srq_call(body)).unwrap();
    let r = c.call(srq_call(vec![5, 0, 0, 0])).unwrap();
    let h = r.handle(ids::HANDLE).unwrap();
    let a = c.query_srq(h).unwrap();
    assert_eq!((a.max_wr, a.max_sge, a.limit), (5, 0, 0));
}

#[test]
fn destroy_of_a_busy_object_names_its_users() {
    let (f, _d, c) = setup();
    let pd = c.alloc_pd().unwrap();
    let mr = c.reg_mr(pd.handle, block(64), Access::LOCAL_WRITE).unwrap();
    let e = c.dealloc_pd(pd.handle).unwrap_err();
    match &e {
        VerbsError::Busy { what, users } => {
            assert!(what.starts_with("PD"), "{e}");
            assert_eq!(users, &[format!("MR {}", mr.handle)]);
        }
        _ => panic!("{e}"),
    }
    assert_eq!(e.errno(), errno::EBUSY);
    // Nothing was destroyed.
    assert_eq!(f.st().pds.len(), 1);
    c.dereg_mr(mr.handle).unwrap();
    c.dealloc_pd(pd.handle).unwrap();
    // CQ busy while a QP uses it; SRQ likewise.
    let o = objs(&c, QpType::Ud);
    let e = c.destroy_cq(o.cq.handle).unwrap_err();
    assert!(
        e.to_string().contains(&format!("QP {}", o.qp.handle)),
        "{e}"
    );
}

// ---- capabilities ------------------------------------------------------------------

#[test]
fn ud_only_device_refuses_rc_cleanly() {
    let f = Fake::ud_only();
    let d = device(&f);
    let c = d.open(owner(1, "t")).unwrap();
    let pd = c.alloc_pd().unwrap();
    let cq = c.create_cq(4, None).unwrap();
    for t in [QpType::Rc, QpType::Uc] {
        let e = c.create_qp(pd.handle, &qp_req(t, cq.handle)).unwrap_err();
        match &e {
            VerbsError::Unsupported { device, what } => {
                assert_eq!(device, "ud0");
                let name = if t == QpType::Rc { "RC" } else { "UC" };
                assert!(what.starts_with(name), "{what}");
                assert!(what.contains("it offers UD"), "{what}");
            }
            _ => panic!("{e}"),
        }
        assert_eq!(e.errno(), errno::EOPNOTSUPP);
    }
    assert!(f.st().qps.is_empty());
    c.create_qp(pd.handle, &qp_req(QpType::Ud, cq.handle))
        .unwrap();
    let e = c
        .create_srq(
            pd.handle,
            SrqAttr {
                max_wr: 4,
                max_sge: 1,
                limit: 0,
            },
        )
        .unwrap_err();
    assert!(
        matches!(e, VerbsError::Unsupported { ref what, .. } if what.contains("shared receive queues")),
        "{e}"
    );
    let e = c.alloc_mw(pd.handle, MwType::Type1).unwrap_err();
    assert!(
        matches!(e, VerbsError::Unsupported { ref what, .. } if what.contains("memory windows")),
        "{e}"
    );
}

#[test]
fn depths_beyond_caps_name_the_limit() {
    let (f, _d, c) = setup();
    let pd = c.alloc_pd().unwrap();
    let e = c.create_cq(f.caps.max_cqe + 1, None).unwrap_err();
    assert!(e.to_string().contains("max_cqe = 32767"), "{e}");
    let cq = c.create_cq(4, None).unwrap();
    let check = |m: fn(&mut QpCreate), limit: &str| {
        let mut r = qp_req(QpType::Rc, cq.handle);
        m(&mut r);
        let e = c.create_qp(pd.handle, &r).unwrap_err();
        assert!(matches!(e, VerbsError::InvalidArgument(_)), "{e}");
        assert!(e.to_string().contains(limit), "{e}");
    };
    check(|r| r.max_send_wr = 1 << 20, "max_qp_wr");
    check(|r| r.max_recv_wr = 1 << 20, "max_qp_wr");
    check(|r| r.max_send_sge = 33, "max_sge");
    check(|r| r.max_inline_data = 257, "max_inline_data = 256");
    let e = c
        .create_srq(
            pd.handle,
            SrqAttr {
                max_wr: 4,
                max_sge: 28,
                limit: 0,
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("max_srq_sge"), "{e}");
    assert!(f.st().qps.is_empty());
}

// ---- QP state machine end to end --------------------------------------------------

fn to_init() -> ModifyAttrs {
    ModifyAttrs {
        qp_state: Some(QpState::Init),
        pkey_index: Some(0),
        port_num: Some(1),
        qp_access_flags: Some(Access::REMOTE_WRITE | Access::REMOTE_READ),
        ..Default::default()
    }
}

fn to_rtr() -> ModifyAttrs {
    ModifyAttrs {
        qp_state: Some(QpState::Rtr),
        path_mtu: Some(Mtu::Mtu1024),
        dest_qp_num: Some(0x22),
        rq_psn: Some(100),
        max_dest_rd_atomic: Some(4),
        min_rnr_timer: Some(12),
        ah_attr: Some(av()),
        ..Default::default()
    }
}

fn to_rts() -> ModifyAttrs {
    ModifyAttrs {
        qp_state: Some(QpState::Rts),
        sq_psn: Some(200),
        timeout: Some(14),
        retry_cnt: Some(7),
        rnr_retry: Some(7),
        max_rd_atomic: Some(4),
        ..Default::default()
    }
}

#[test]
fn rc_qp_walks_reset_init_rtr_rts() {
    let (_f, _d, c) = setup();
    let o = objs(&c, QpType::Rc);
    let qp = o.qp.handle;
    // Straight to RTS: no such transition.
    let e = c.modify_qp(qp, &to_rts()).unwrap_err();
    assert!(
        matches!(e, VerbsError::InvalidState(ref m) if m.contains("RESET→RTS is not a valid transition for a RC QP")),
        "{e}"
    );
    c.modify_qp(qp, &to_init()).unwrap();
    // RTR without rq_psn names it.
    let mut rtr = to_rtr();
    rtr.rq_psn = None;
    let e = c.modify_qp(qp, &rtr).unwrap_err();
    assert!(
        matches!(e, VerbsError::InvalidArgument(ref m) if m.contains("INIT→RTR for RC requires") && m.ends_with("missing: rq_psn")),
        "{e}"
    );
    // A forbidden attribute names it.
    let mut rtr = to_rtr();
    rtr.sq_psn = Some(1);
    let e = c.modify_qp(qp, &rtr).unwrap_err();
    assert!(e.to_string().contains("does not accept sq_psn"), "{e}");
    // A value beyond caps.
    let mut rtr = to_rtr();
    rtr.max_dest_rd_atomic = Some(200);
    let e = c.modify_qp(qp, &rtr).unwrap_err();
    assert!(e.to_string().contains("max_qp_rd_atom"), "{e}");
    c.modify_qp(qp, &to_rtr()).unwrap();
    c.modify_qp(qp, &to_rts()).unwrap();
    let info = c.query_qp(qp).unwrap();
    assert_eq!(info.state, QpState::Rts);
    assert_eq!(
        (info.attrs.sq_psn, info.attrs.rq_psn, info.attrs.dest_qpn),
        (200, 100, 0x22)
    );
    assert_eq!(info.attrs.dgid, av().dgid);
    assert_eq!(info.init.max_send_wr, 16);
    // RTS→RTS with an optional attribute; then to ERR and RESET.
    c.modify_qp(
        qp,
        &ModifyAttrs {
            min_rnr_timer: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    c.modify_qp(
        qp,
        &ModifyAttrs {
            qp_state: Some(QpState::Err),
            ..Default::default()
        },
    )
    .unwrap();
    c.modify_qp(
        qp,
        &ModifyAttrs {
            qp_state: Some(QpState::Reset),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(c.query_qp(qp).unwrap().state, QpState::Reset);
}

#[test]
fn ud_qp_rules_end_to_end() {
    let (_f, _d, c) = setup();
    let o = objs(&c, QpType::Ud);
    let qp = o.qp.handle;
    // UD INIT requires qkey, not access flags.
    let e = c.modify_qp(qp, &to_init()).unwrap_err();
    assert!(e.to_string().contains("RESET→INIT for UD"), "{e}");
    let init = ModifyAttrs::with_mask(
        rule(QpType::Ud, QpState::Reset, QpState::Init)
            .unwrap()
            .required,
        Some(QpState::Init),
    );
    c.modify_qp(qp, &init).unwrap();
    c.modify_qp(qp, &ModifyAttrs::with_mask(0, Some(QpState::Rtr)))
        .unwrap();
    c.modify_qp(
        qp,
        &ModifyAttrs::with_mask(mask::SQ_PSN, Some(QpState::Rts)),
    )
    .unwrap();
    assert_eq!(c.query_qp(qp).unwrap().attrs.qkey, 0x1111_1111);
}

// ---- close, two-phase, restrack -----------------------------------------------------

#[test]
fn context_close_destroys_everything_in_dependency_order() {
    let (f, d, c) = setup();
    let pd = c.alloc_pd().unwrap();
    let ch = c.create_comp_channel().unwrap();
    let cq = c.create_cq(4, Some(ch.handle)).unwrap();
    let mr = c.reg_mr(pd.handle, block(64), Access::LOCAL_WRITE).unwrap();
    let srq = c
        .create_srq(
            pd.handle,
            SrqAttr {
                max_wr: 4,
                max_sge: 1,
                limit: 0,
            },
        )
        .unwrap();
    let mut req = qp_req(QpType::Rc, cq.handle);
    req.srq = Some(srq.handle);
    let qp = c.create_qp(pd.handle, &req).unwrap();
    let ah = c.create_ah(pd.handle, av()).unwrap();
    f.take_log();
    let destroyed = c.close();
    assert_eq!(destroyed.len(), 7);
    assert!(destroyed.iter().all(|d| d.error.is_none()));
    let log = f.take_log();
    let pos = |s: String| {
        log.iter()
            .position(|l| *l == s)
            .unwrap_or_else(|| panic!("{s} not in {log:?}"))
    };
    assert!(pos(format!("destroy_qp {}", qp.qpn)) < pos(format!("destroy_cq {}", cq.id)));
    assert!(pos(format!("destroy_qp {}", qp.qpn)) < pos(format!("destroy_srq {}", srq.id)));
    assert!(pos(format!("destroy_cq {}", cq.id)) < pos(format!("dealloc_pd {}", pd.id)));
    assert!(pos(format!("dereg_mr {}", mr.lkey)) < pos(format!("dealloc_pd {}", pd.id)));
    assert!(pos(format!("destroy_ah {}", ah.id)) < pos(format!("dealloc_pd {}", pd.id)));
    assert_eq!(f.st().total(), 0);
    // Closed: later calls fail; the device no longer lists it.
    assert!(c.alloc_pd().is_err());
    assert!(d.contexts().is_empty());
}

#[test]
fn dropping_the_context_cleans_the_device() {
    let (f, d, c) = setup();
    objs(&c, QpType::Rc);
    assert_eq!(f.st().total(), 3);
    drop(c);
    assert_eq!(f.st().total(), 0);
    assert!(d.resources().is_empty());
}

#[test]
fn failed_creation_leaves_nothing_in_the_driver() {
    let (f, _d, c) = setup();
    let pd = c.alloc_pd().unwrap();
    let cq = c.create_cq(4, None).unwrap();
    let before = c.uapi_context().len();
    // The driver created the QP but granted less than asked: rolled back.
    f.shortchange.store(true, Ordering::Relaxed);
    let e = c
        .create_qp(pd.handle, &qp_req(QpType::Rc, cq.handle))
        .unwrap_err();
    assert!(e.to_string().contains("granted max_send_wr = 8"), "{e}");
    assert!(f.st().qps.is_empty());
    assert!(f.take_log().iter().any(|l| l.starts_with("destroy_qp")));
    assert_eq!(c.uapi_context().len(), before);
    f.shortchange.store(false, Ordering::Relaxed);
    // The driver refuses: nothing anywhere either.
    f.full.store(true, Ordering::Relaxed);
    let e = c.alloc_pd().unwrap_err();
    assert!(matches!(e, VerbsError::NoResources(_)), "{e}");
    assert_eq!(c.uapi_context().len(), before);
    f.full.store(false, Ordering::Relaxed);
    // The PD is not busy with a phantom QP.
    c.destroy_cq(cq.handle).unwrap();
    c.dealloc_pd(pd.handle).unwrap();
}

#[test]
fn restrack_lists_every_object_with_its_owner() {
    let (_f, d, c) = setup();
    let c2 = d.open(owner(200, "other")).unwrap();
    let o = objs(&c, QpType::Rc);
    c.modify_qp(o.qp.handle, &to_init()).unwrap();
    c.modify_qp(o.qp.handle, &to_rtr()).unwrap();
    let mr = c
        .reg_mr(o.pd.handle, block(4096), Access::LOCAL_WRITE)
        .unwrap();
    let pd2 = c2.alloc_pd().unwrap();
    let res = d.resources();
    assert_eq!(res.len(), 5);
    let qp = res.iter().find(|r| r.kind() == ResKind::Qp).unwrap();
    assert_eq!((qp.pid, qp.comm.as_str(), qp.id()), (100, "app", o.qp.qpn));
    match &qp.detail {
        ResDetail::Qp {
            qp_type,
            state,
            rq_psn,
            path_mtu,
            dest_qpn,
            dest_gid,
            ..
        } => {
            assert_eq!(
                (*qp_type, *state, *rq_psn, *path_mtu, *dest_qpn),
                ("RC", "RTR", 100, 1024, 0x22)
            );
            assert_eq!(dest_gid, "::ffff:127.0.0.2");
        }
        _ => unreachable!(),
    }
    let m = res.iter().find(|r| r.kind() == ResKind::Mr).unwrap();
    assert_eq!(m.id(), mr.lkey);
    let p2 = res.iter().find(|r| r.pid == 200).unwrap();
    assert_eq!(
        (p2.kind(), p2.id(), p2.comm.as_str()),
        (ResKind::Pd, pd2.id, "other")
    );
    let json = serde_json::to_value(&res).unwrap();
    let q = json
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["kind"] == "qp")
        .unwrap();
    assert_eq!(q["state"], "RTR");
    assert_eq!(q["comm"], "app");
    assert_eq!(q["device"], "fake0");
    assert!(json
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["kind"] == "mr" && v["len"] == 4096));
    let cq = res.iter().find(|r| r.kind() == ResKind::Cq).unwrap();
    assert_eq!(cq.id(), o.cq.id);
}

// ---- provider channel ---------------------------------------------------------------

static FAKE_SPEC: DriverSpec = soft_driver_spec(0xfa4e, "fake");

#[test]
fn driver_channel_qp_counters() {
    let f = Fake::with_spec("fk0", &FAKE_SPEC);
    let d = device(&f);
    assert_eq!(d.registry().driver_id(), 0xfa4e);
    let c = d.open(owner(1, "t")).unwrap();
    let o = objs(&c, QpType::Rc);
    let counters = c.query_qp_counters(o.qp.handle).unwrap();
    assert_eq!(counters.sent_pkts, u64::from(o.qp.qpn));
    assert_eq!(counters.acks_sent, 3);
    assert_eq!(c.query_qp(o.qp.handle).unwrap().counters, counters);
    // The method validates its handle like any other.
    let e = c.query_qp_counters(o.cq.handle).unwrap_err();
    assert!(e.to_string().contains("expected a QP"), "{e}");
    // A call built for another driver is refused.
    let e = d
        .registry()
        .call(
            c.uapi_context(),
            &Call::new(ids::QP, provider::QP_QUERY_COUNTERS).handle(ids::HANDLE, o.qp.handle),
        )
        .unwrap_err();
    assert!(e.to_string().contains("driver id 0"), "{e}");
    // A device without the spec says it does not support it.
    let (_f, _d, plain) = setup();
    let o = objs(&plain, QpType::Rc);
    let e = plain.query_qp_counters(o.qp.handle).unwrap_err();
    assert!(
        matches!(e, VerbsError::Unsupported { ref device, .. } if device == "fake0"),
        "{e}"
    );
}

// ---- random calls -------------------------------------------------------------------

mod random {
    use super::*;
    use proptest::prelude::*;
    use softverbs_core::uapi::{MethodId, ObjectId, Value};
    use softverbs_core::ResKind;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Random calls against the verbs objects never panic, never leave
        /// the driver and the handle tables out of step, and closing cleans
        /// everything.
        #[test]
        fn random_verbs_calls(calls in proptest::collection::vec(
            (0u16..10, 0u16..5, proptest::collection::vec((0u16..8, any::<bool>(), 0usize..6), 0..7)), 1..25),
            vals in proptest::collection::vec(any::<u64>(), 64)) {
            let (f, d, c) = setup();
            let o = objs(&c, QpType::Rc);
            let mr = c.reg_mr(o.pd.handle, block(64), Access::LOCAL_WRITE | Access::MW_BIND).unwrap();
            let handles = [o.pd.handle.raw(), o.cq.handle.raw(), o.qp.handle.raw(), mr.handle.raw(), 0, 12345];
            let mut vi = 0;
            for (obj, m, attrs) in calls {
                let mut call = Call::new(ObjectId::core(obj), MethodId::core(m));
                for (id, req, kind) in attrs {
                    let v = vals[vi % vals.len()];
                    vi += 1;
                    let value = match kind {
                        0 => Value::Bytes(v.to_le_bytes().repeat((v % 20) as usize)),
                        1 => Value::Out((v % 300) as u32),
                        2 => Value::U64(v % 8),
                        3 => Value::U64(handles[(v % handles.len() as u64) as usize]),
                        4 => Value::New,
                        _ => Value::U64(v),
                    };
                    call = call.attr(AttrId::core(id), value);
                    if req { call = call.required(); }
                }
                let _ = c.call(call);
            }
            // Every live object the core tracks is live in the driver.
            let live = d.resources().iter().filter(|r| r.kind() != ResKind::Channel).count();
            prop_assert_eq!(live, f.st().total());
            c.close();
            prop_assert_eq!(f.st().total(), 0);
        }
    }
}
