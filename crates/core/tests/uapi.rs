//! The uAPI framework with a toy object model: PD, MR (depends on a PD) and
//! CQ, plus a test driver that adds a method and an attribute in its own
//! namespace. Every error of the dispatcher is provoked here.

use softverbs_core::uapi::encoding::{decode_reply, encode_call};
use softverbs_core::uapi::*;
use std::sync::{Arc, Barrier, Mutex};

// ---- the toy model ---------------------------------------------------------

const PD: ObjectId = ObjectId::core(1);
const MR: ObjectId = ObjectId::core(2);
const CQ: ObjectId = ObjectId::core(3);

const CREATE: MethodId = MethodId::core(0);
const DESTROY: MethodId = MethodId::core(1);
const QUERY: MethodId = MethodId::core(2);
const SLOW: MethodId = MethodId::core(3);

const HANDLE: AttrId = AttrId::core(0);
const OUT: AttrId = AttrId::core(1);
const FLAGS: AttrId = AttrId::core(2);
const MR_PD: AttrId = AttrId::core(1);
const MR_REGION: AttrId = AttrId::core(2);
const MR_ACCESS: AttrId = AttrId::core(3);
const MR_KIND: AttrId = AttrId::core(4);
const MR_PAGE_SHIFT: AttrId = AttrId::core(5);
const MR_FD: AttrId = AttrId::core(6);
const MR_FAIL: AttrId = AttrId::core(7);
const MR_LKEY: AttrId = AttrId::core(8);
const CQ_CQE: AttrId = AttrId::core(1);

/// The size of the region struct this side knows: addr u64, len u64.
const REGION_KNOWN: usize = 16;

/// The test driver's hook into the core `mr_reg`.
type DriverHook = fn(&Bundle<'_>) -> Result<u64, UapiError>;

type Log = Arc<Mutex<Vec<(String, DestroyReason)>>>;

/// Device data of a context: a destroy log, the test driver's hook and a
/// gate to hold a handler inside a call.
#[derive(Default)]
struct Dev {
    log: Log,
    on_mr_create: Option<DriverHook>,
    entered: Option<Barrier>,
    release: Option<Barrier>,
}

struct Obj {
    name: String,
    log: Log,
    tag: u64,
}

impl UObject for Obj {
    fn destroy(&self, reason: DestroyReason) -> Result<(), UapiError> {
        self.log.lock().unwrap().push((self.name.clone(), reason));
        Ok(())
    }
}

fn dev<'b>(b: &'b Bundle<'_>) -> &'b Dev {
    b.context_data::<Dev>().expect("contexts carry Dev")
}

fn obj(b: &Bundle<'_>, name: String, tag: u64) -> Obj {
    Obj {
        name,
        log: dev(b).log.clone(),
        tag,
    }
}

fn pd_alloc(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let flags = b.flags(FLAGS)?;
    let o = obj(b, format!("pd{flags}"), flags);
    b.set_new(o)?;
    Ok(())
}

fn nothing(_: &mut Bundle<'_>) -> Result<(), UapiError> {
    Ok(())
}

fn query(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let o = b.handle::<Obj>(HANDLE)?;
    let mut out = o.tag.to_le_bytes().to_vec();
    out.extend_from_slice(o.name.as_bytes());
    b.set_out(OUT, &out)?;
    Ok(())
}

fn slow(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let d = dev(b);
    d.entered.as_ref().unwrap().wait();
    d.release.as_ref().unwrap().wait();
    Ok(())
}

fn mr_reg(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let pd = b.handle::<Obj>(MR_PD)?;
    let region = b.struct_in(MR_REGION, REGION_KNOWN)?;
    let len = u64::from_le_bytes(region[8..16].try_into().unwrap());
    let access = b.flags(MR_ACCESS)?;
    let _kind = b
        .is_present(MR_KIND)
        .then(|| b.enum_val(MR_KIND))
        .transpose()?;
    let _shift = b
        .is_present(MR_PAGE_SHIFT)
        .then(|| b.u64(MR_PAGE_SHIFT))
        .transpose()?;
    if b.is_present(MR_FD) {
        let _fd = b.take_fd(MR_FD)?;
    }
    // The provider channel: the device's driver reads its own attributes.
    let tag = match dev(b).on_mr_create {
        Some(hook) => hook(b)?,
        None => 0,
    };
    let o = obj(b, format!("mr({}:{len}:{access})", pd.name), tag);
    let h = b.set_new(o)?;
    b.set_out(MR_LKEY, &(h.raw() as u32).to_le_bytes())?;
    if b.is_present(MR_FAIL) && b.u64(MR_FAIL)? == 1 {
        return Err(UapiError::handler(
            errno::ENOMEM,
            "mr_reg: out of memory keys",
        ));
    }
    Ok(())
}

fn cq_create(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let cqe = b.u64(CQ_CQE)?;
    let o = obj(b, format!("cq{cqe}"), cqe);
    b.set_new(o)?;
    Ok(())
}

static CORE: [ObjectSpec; 3] = [
    ObjectSpec {
        id: PD,
        name: "PD",
        destroy_order: 3,
        methods: &[
            MethodSpec {
                id: CREATE,
                name: "pd_alloc",
                handler: Some(pd_alloc),
                attrs: &[
                    AttrSpec::handle(HANDLE, "pd", PD, Access::New).mandatory(),
                    AttrSpec::flags(FLAGS, "flags", 0b11),
                ],
            },
            MethodSpec {
                id: DESTROY,
                name: "pd_destroy",
                handler: Some(nothing),
                attrs: &[AttrSpec::handle(HANDLE, "pd", PD, Access::Destroy).mandatory()],
            },
            MethodSpec {
                id: QUERY,
                name: "pd_query",
                handler: Some(query),
                attrs: &[
                    AttrSpec::handle(HANDLE, "pd", PD, Access::Read).mandatory(),
                    AttrSpec::bytes_out(OUT, "info", 4, 64).mandatory(),
                ],
            },
            MethodSpec {
                id: SLOW,
                name: "pd_slow_write",
                handler: Some(slow),
                attrs: &[AttrSpec::handle(HANDLE, "pd", PD, Access::Write).mandatory()],
            },
        ],
    },
    ObjectSpec {
        id: MR,
        name: "MR",
        destroy_order: 1,
        methods: &[
            MethodSpec {
                id: CREATE,
                name: "mr_reg",
                handler: Some(mr_reg),
                attrs: &[
                    AttrSpec::handle(HANDLE, "mr", MR, Access::New).mandatory(),
                    AttrSpec::handle(MR_PD, "pd", PD, Access::Read).mandatory(),
                    AttrSpec::bytes_in(MR_REGION, "region", 8, 64).mandatory(),
                    AttrSpec::flags(MR_ACCESS, "access", 0x7).mandatory(),
                    AttrSpec::enumeration(MR_KIND, "kind", &[0, 2]),
                    AttrSpec::scalar(MR_PAGE_SHIFT, "page_shift", 12, 30),
                    AttrSpec::fd(MR_FD, "fd"),
                    AttrSpec::scalar(MR_FAIL, "fail", 0, 1),
                    AttrSpec::bytes_out(MR_LKEY, "lkey", 4, 4),
                ],
            },
            MethodSpec {
                id: DESTROY,
                name: "mr_dereg",
                handler: Some(nothing),
                attrs: &[AttrSpec::handle(HANDLE, "mr", MR, Access::Destroy).mandatory()],
            },
        ],
    },
    ObjectSpec {
        id: CQ,
        name: "CQ",
        destroy_order: 2,
        methods: &[
            MethodSpec {
                id: CREATE,
                name: "cq_create",
                handler: Some(cq_create),
                attrs: &[
                    AttrSpec::handle(HANDLE, "cq", CQ, Access::New).mandatory(),
                    AttrSpec::scalar(CQ_CQE, "cqe", 1, 4096).mandatory(),
                ],
            },
            MethodSpec {
                id: DESTROY,
                name: "cq_destroy",
                handler: Some(nothing),
                attrs: &[AttrSpec::handle(HANDLE, "cq", CQ, Access::Destroy).mandatory()],
            },
        ],
    },
];

// ---- the test driver (provider channel) ------------------------------------

const DRIVER_ID: u32 = 0x5eed;
/// A device-specific query on MR, in the driver namespace.
const DRV_MR_QUERY: MethodId = MethodId::driver(0);
/// An extra optional attribute of the core `mr_reg`, in the driver namespace.
const DRV_MR_TAG: AttrId = AttrId::driver(0);

fn drv_mr_query(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let mr = b.handle::<Obj>(HANDLE)?;
    b.set_out(AttrId::driver(1), &mr.tag.to_le_bytes())?;
    Ok(())
}

fn drv_on_mr_create(b: &Bundle<'_>) -> Result<u64, UapiError> {
    if b.is_present(DRV_MR_TAG) {
        b.u64(DRV_MR_TAG)
    } else {
        Ok(0)
    }
}

static DRIVER_OBJECTS: [ObjectSpec; 1] = [ObjectSpec {
    id: MR,
    name: "MR",
    destroy_order: 0,
    methods: &[
        MethodSpec {
            id: CREATE,
            name: "mr_reg",
            handler: None,
            attrs: &[AttrSpec::scalar(DRV_MR_TAG, "drv_tag", 0, 0xffff)],
        },
        MethodSpec {
            id: DRV_MR_QUERY,
            name: "drv_mr_query",
            handler: Some(drv_mr_query),
            attrs: &[
                AttrSpec::handle(HANDLE, "mr", MR, Access::Read).mandatory(),
                AttrSpec::bytes_out(AttrId::driver(1), "tag", 8, 8).mandatory(),
            ],
        },
    ],
}];

static DRIVER: DriverSpec = DriverSpec {
    driver_id: DRIVER_ID,
    name: "testdrv",
    objects: &DRIVER_OBJECTS,
};

// ---- helpers -----------------------------------------------------------------

fn reg() -> Registry {
    Registry::new(&CORE).unwrap()
}

fn ctx() -> Context {
    Context::with_data(Arc::new(Dev::default()))
}

fn ctx_with_log() -> (Context, Log) {
    let log = Log::default();
    let dev = Dev {
        log: log.clone(),
        ..Dev::default()
    };
    (Context::with_data(Arc::new(dev)), log)
}

fn alloc_pd(r: &Registry, ctx: &Context) -> Handle {
    let reply = r
        .call(ctx, &Call::new(PD, CREATE).new_object(HANDLE))
        .unwrap();
    reply.handle(HANDLE).unwrap()
}

fn region(len: u64) -> Vec<u8> {
    let mut v = 0x1000u64.to_le_bytes().to_vec();
    v.extend_from_slice(&len.to_le_bytes());
    v
}

fn mr_call(pd: Handle) -> Call {
    Call::new(MR, CREATE)
        .new_object(HANDLE)
        .handle(MR_PD, pd)
        .bytes(MR_REGION, region(4096))
        .value(MR_ACCESS, 1)
}

fn reg_mr(r: &Registry, ctx: &Context, pd: Handle) -> Handle {
    r.call(ctx, &mr_call(pd)).unwrap().handle(HANDLE).unwrap()
}

fn destroy(r: &Registry, ctx: &Context, obj: ObjectId, h: Handle) -> Result<Reply, UapiError> {
    r.call(ctx, &Call::new(obj, DESTROY).handle(HANDLE, h))
}

fn err(r: &Registry, ctx: &Context, call: Call) -> UapiError {
    r.call(ctx, &call).unwrap_err()
}

// ---- tests -------------------------------------------------------------------

#[test]
fn create_query_destroy() {
    let (r, c) = (reg(), ctx());
    let pd = r
        .call(
            &c,
            &Call::new(PD, CREATE).new_object(HANDLE).value(FLAGS, 2),
        )
        .unwrap()
        .handle(HANDLE)
        .unwrap();
    let reply = r
        .call(&c, &Call::new(PD, QUERY).handle(HANDLE, pd).out(OUT, 64))
        .unwrap();
    assert_eq!(reply.bytes(OUT).unwrap(), b"\x02\0\0\0\0\0\0\0pd2");
    let mr = reg_mr(&r, &c, pd);
    assert_eq!(c.objects(), vec![(pd, "PD"), (mr, "MR")]);
    destroy(&r, &c, MR, mr).unwrap();
    destroy(&r, &c, PD, pd).unwrap();
    assert!(c.is_empty());
}

#[test]
fn output_is_truncated_to_capacity() {
    let (r, c) = (reg(), ctx());
    let pd = alloc_pd(&r, &c);
    let reply = r
        .call(&c, &Call::new(PD, QUERY).handle(HANDLE, pd).out(OUT, 4))
        .unwrap();
    assert_eq!(reply.bytes(OUT).unwrap(), &[0, 0, 0, 0]);
}

#[test]
fn unknown_object_and_method() {
    let (r, c) = (reg(), ctx());
    let e = err(&r, &c, Call::new(ObjectId::core(99), CREATE));
    assert!(matches!(e, UapiError::UnknownObject { .. }), "{e}");
    assert_eq!(e.errno(), errno::EPROTONOSUPPORT);
    let e = err(&r, &c, Call::new(PD, MethodId::core(77)));
    assert!(
        matches!(e, UapiError::UnknownMethod { object: "PD", .. }),
        "{e}"
    );
    assert_eq!(e.errno(), errno::EPROTONOSUPPORT);
}

#[test]
fn unknown_attrs_mandatory_fails_optional_ignored() {
    let (r, c) = (reg(), ctx());
    let extra = AttrId::core(50);
    let e = err(
        &r,
        &c,
        Call::new(PD, CREATE)
            .new_object(HANDLE)
            .value(extra, 1)
            .required(),
    );
    assert!(
        matches!(
            e,
            UapiError::UnknownAttr {
                method: "pd_alloc",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.errno(), errno::EPROTONOSUPPORT);
    // Not marked mandatory by the caller: ignored, as Linux does.
    r.call(
        &c,
        &Call::new(PD, CREATE).new_object(HANDLE).value(extra, 1),
    )
    .unwrap();
}

#[test]
fn missing_and_duplicate_attrs() {
    let (r, c) = (reg(), ctx());
    let e = err(&r, &c, Call::new(PD, CREATE));
    assert_eq!(
        e,
        UapiError::MissingAttr {
            method: "pd_alloc",
            attr: "pd"
        }
    );
    assert_eq!(e.errno(), errno::EINVAL);
    let pd = alloc_pd(&r, &c);
    let e = err(&r, &c, mr_call(pd).value(MR_ACCESS, 2));
    assert_eq!(
        e,
        UapiError::DuplicateAttr {
            method: "mr_reg",
            attr: "access"
        }
    );
    assert_eq!(c.len(), 1, "nothing created by failed calls");
}

#[test]
fn wrong_kind() {
    let (r, c) = (reg(), ctx());
    let pd = alloc_pd(&r, &c);
    let e = err(
        &r,
        &c,
        Call::new(PD, QUERY).handle(HANDLE, pd).bytes(OUT, [0; 8]),
    );
    assert!(
        matches!(e, UapiError::WrongKind { attr: "info", .. }),
        "{e}"
    );
    let e = err(&r, &c, Call::new(PD, CREATE).value(HANDLE, 1));
    assert!(matches!(e, UapiError::WrongKind { attr: "pd", .. }), "{e}");
}

#[test]
fn lengths_checked() {
    let (r, c) = (reg(), ctx());
    let pd = alloc_pd(&r, &c);
    let e = err(&r, &c, Call::new(PD, QUERY).handle(HANDLE, pd).out(OUT, 2));
    assert_eq!(
        e,
        UapiError::BadLength {
            attr: "info",
            got: 2,
            min: 4,
            max: 64
        }
    );
    let mut call = mr_call(pd);
    call.attrs[2].value = Value::Bytes(vec![0; 65]);
    let e = err(&r, &c, call);
    assert!(
        matches!(
            e,
            UapiError::BadLength {
                attr: "region",
                got: 65,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn extensible_struct_trailing_bytes() {
    let (r, c) = (reg(), ctx());
    let pd = alloc_pd(&r, &c);
    // Longer than known with a zero tail: accepted.
    let mut long = region(4096);
    long.extend_from_slice(&[0; 16]);
    let mut call = mr_call(pd);
    call.attrs[2].value = Value::Bytes(long.clone());
    r.call(&c, &call).unwrap();
    // A non-zero byte beyond what this side knows: refused, nothing left.
    long[20] = 1;
    call.attrs[2].value = Value::Bytes(long);
    let before = c.len();
    let e = err(&r, &c, call);
    assert_eq!(
        e,
        UapiError::NonZeroTrailing {
            attr: "region",
            known: 16,
            offset: 20
        }
    );
    assert_eq!(e.errno(), errno::E2BIG);
    assert_eq!(c.len(), before);
    // Shorter (an older caller): zero-extended.
    let mut call = mr_call(pd);
    call.attrs[2].value = Value::Bytes(vec![0; 8]);
    r.call(&c, &call).unwrap();
}

#[test]
fn enum_flags_and_range() {
    let (r, c) = (reg(), ctx());
    let pd = alloc_pd(&r, &c);
    let e = err(&r, &c, mr_call(pd).value(MR_KIND, 1));
    assert!(
        matches!(
            e,
            UapiError::BadEnum {
                attr: "kind",
                value: 1,
                ..
            }
        ),
        "{e}"
    );
    r.call(&c, &mr_call(pd).value(MR_KIND, 2)).unwrap();
    let e = err(
        &r,
        &c,
        Call::new(PD, CREATE)
            .new_object(HANDLE)
            .value(FLAGS, 0b1101),
    );
    assert_eq!(
        e,
        UapiError::BadFlags {
            attr: "flags",
            extra: 0b1100,
            allowed: 0b11
        }
    );
    let e = err(&r, &c, mr_call(pd).value(MR_PAGE_SHIFT, 11));
    assert!(
        matches!(
            e,
            UapiError::BadValue {
                attr: "page_shift",
                value: 11,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn fds_passed_by_index() {
    let (r, c) = (reg(), ctx());
    let pd = alloc_pd(&r, &c);
    let fd = || std::os::fd::OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
    r.call_with_fds(&c, &mr_call(pd).fd(MR_FD, 0), vec![fd()])
        .unwrap();
    let e = r
        .call_with_fds(&c, &mr_call(pd).fd(MR_FD, 1), vec![fd()])
        .unwrap_err();
    assert_eq!(
        e,
        UapiError::BadFd {
            attr: "fd",
            index: 1,
            passed: 1
        }
    );
    assert_eq!(e.errno(), errno::EBADF);
    let e = err(&r, &c, mr_call(pd).fd(MR_FD, 0));
    assert!(matches!(e, UapiError::BadFd { passed: 0, .. }));
}

#[test]
fn stale_handle_never_names_another_object() {
    let (r, c) = (reg(), ctx());
    let old = alloc_pd(&r, &c);
    destroy(&r, &c, PD, old).unwrap();
    let new = alloc_pd(&r, &c); // reuses the slot
    assert_ne!(old, new);
    let e = err(&r, &c, Call::new(PD, QUERY).handle(HANDLE, old).out(OUT, 8));
    assert_eq!(
        e,
        UapiError::StaleHandle {
            attr: "pd",
            handle: old
        }
    );
    assert_eq!(e.errno(), errno::ENOENT);
    let e = destroy(&r, &c, PD, Handle::from_raw(12345)).unwrap_err();
    assert!(matches!(
        e,
        UapiError::ForeignHandle { .. } | UapiError::StaleHandle { .. }
    ));
}

#[test]
fn wrong_type_handle() {
    let (r, c) = (reg(), ctx());
    let pd = alloc_pd(&r, &c);
    let e = destroy(&r, &c, MR, pd).unwrap_err();
    assert_eq!(
        e,
        UapiError::WrongType {
            attr: "mr",
            handle: pd,
            expected: "MR",
            got: "PD"
        }
    );
    assert_eq!(e.errno(), errno::EINVAL);
}

#[test]
fn foreign_handle() {
    let (r, a, b) = (reg(), ctx(), ctx());
    let pd_a = alloc_pd(&r, &a);
    let _pd_b = alloc_pd(&r, &b); // same slot index and generation in b
    let e = destroy(&r, &b, PD, pd_a).unwrap_err();
    assert_eq!(
        e,
        UapiError::ForeignHandle {
            attr: "pd",
            handle: pd_a
        }
    );
    assert_eq!(b.len(), 1);
    // And an MR in b cannot hang off a's PD.
    let e = err(&r, &b, mr_call(pd_a));
    assert!(matches!(e, UapiError::ForeignHandle { attr: "pd", .. }));
}

#[test]
fn busy_destroy_names_users() {
    let (r, c) = (reg(), ctx());
    let pd = alloc_pd(&r, &c);
    let mr1 = reg_mr(&r, &c, pd);
    let mr2 = reg_mr(&r, &c, pd);
    let e = destroy(&r, &c, PD, pd).unwrap_err();
    assert_eq!(
        e,
        UapiError::Busy {
            object: "PD",
            handle: pd,
            users: vec![format!("MR {mr1}"), format!("MR {mr2}")]
        }
    );
    assert_eq!(e.errno(), errno::EBUSY);
    assert!(e.to_string().contains(&format!("MR {mr1}")));
    destroy(&r, &c, MR, mr1).unwrap();
    destroy(&r, &c, MR, mr2).unwrap();
    destroy(&r, &c, PD, pd).unwrap();
}

#[test]
fn concurrent_exclusive_use_is_busy() {
    let r = reg();
    let dev = Dev {
        entered: Some(Barrier::new(2)),
        release: Some(Barrier::new(2)),
        ..Dev::default()
    };
    let dev = Arc::new(dev);
    let c = Context::with_data(dev.clone());
    let pd = alloc_pd(&r, &c);
    let slow = Call::new(PD, SLOW).handle(HANDLE, pd);
    std::thread::scope(|s| {
        let t = s.spawn(|| r.call(&c, &slow));
        // Wait until the first call is inside its handler, holding the PD.
        dev.entered.as_ref().unwrap().wait();
        let e = r.call(&c, &slow).unwrap_err();
        assert!(matches!(e, UapiError::Busy { object: "PD", .. }), "{e}");
        let e = err(&r, &c, Call::new(PD, QUERY).handle(HANDLE, pd).out(OUT, 8));
        assert!(matches!(e, UapiError::Busy { .. }), "{e}");
        let e = destroy(&r, &c, PD, pd).unwrap_err();
        assert!(matches!(e, UapiError::Busy { .. }), "{e}");
        dev.release.as_ref().unwrap().wait();
        t.join().unwrap().unwrap();
    });
    // Released: usable again.
    r.call(&c, &Call::new(PD, QUERY).handle(HANDLE, pd).out(OUT, 8))
        .unwrap();
}

#[test]
fn failed_create_leaves_nothing_behind() {
    let r = reg();
    let (c, log) = ctx_with_log();
    let pd = alloc_pd(&r, &c);
    let e = err(&r, &c, mr_call(pd).value(MR_FAIL, 1));
    assert_eq!(e.errno(), errno::ENOMEM);
    assert_eq!(c.objects(), vec![(pd, "PD")]);
    // The half-built MR was torn down with reason Abort...
    assert_eq!(
        log.lock().unwrap().as_slice(),
        &[("mr(pd0:4096:1)".to_string(), DestroyReason::Abort)]
    );
    // ...and never became the PD's dependant.
    destroy(&r, &c, PD, pd).unwrap();
    // Its reserved handle was never visible and is not now.
    let e = destroy(&r, &c, MR, Handle::from_raw(pd.raw() + 1)).unwrap_err();
    assert!(matches!(e, UapiError::StaleHandle { .. }), "{e}");
}

#[test]
fn handler_without_object_is_an_error() {
    static BAD: [ObjectSpec; 1] = [ObjectSpec {
        id: PD,
        name: "PD",
        destroy_order: 0,
        methods: &[MethodSpec {
            id: CREATE,
            name: "lazy",
            handler: Some(nothing),
            attrs: &[AttrSpec::handle(HANDLE, "pd", PD, Access::New).mandatory()],
        }],
    }];
    let r = Registry::new(&BAD).unwrap();
    let c = ctx();
    let e = err(&r, &c, Call::new(PD, CREATE).new_object(HANDLE));
    assert_eq!(e.errno(), errno::EIO);
    assert!(c.is_empty());
}

#[test]
fn context_close_destroys_in_dependency_order() {
    let r = reg();
    let (c, log) = ctx_with_log();
    let pd0 = alloc_pd(&r, &c);
    let pd1 = r
        .call(
            &c,
            &Call::new(PD, CREATE).new_object(HANDLE).value(FLAGS, 1),
        )
        .unwrap()
        .handle(HANDLE)
        .unwrap();
    let cq = r
        .call(
            &c,
            &Call::new(CQ, CREATE).new_object(HANDLE).value(CQ_CQE, 16),
        )
        .unwrap()
        .handle(HANDLE)
        .unwrap();
    let mr_a = reg_mr(&r, &c, pd0);
    let mr_b = reg_mr(&r, &c, pd1);
    let gone: Vec<_> = c
        .close()
        .into_iter()
        .map(|d| (d.handle, d.object))
        .collect();
    assert_eq!(
        gone,
        vec![
            (mr_b, "MR"),
            (mr_a, "MR"),
            (cq, "CQ"),
            (pd1, "PD"),
            (pd0, "PD")
        ]
    );
    assert!(log
        .lock()
        .unwrap()
        .iter()
        .all(|(_, why)| *why == DestroyReason::ContextClose));
    assert_eq!(log.lock().unwrap().len(), 5);
    assert!(c.is_empty());
    let e = err(&r, &c, Call::new(PD, CREATE).new_object(HANDLE));
    assert_eq!(e, UapiError::ContextClosed);
    assert!(c.close().is_empty());
}

#[test]
fn dropping_a_context_destroys_its_objects() {
    let r = reg();
    let (c, log) = ctx_with_log();
    let pd = alloc_pd(&r, &c);
    reg_mr(&r, &c, pd);
    drop(c);
    let names: Vec<_> = log.lock().unwrap().iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, vec!["mr(pd0:4096:1)", "pd0"]);
}

#[test]
fn driver_namespace_method_and_attribute() {
    let r = Registry::with_driver(&CORE, &DRIVER).unwrap();
    assert_eq!(r.driver_name(), Some("testdrv"));
    let dev = Dev {
        on_mr_create: Some(drv_on_mr_create),
        ..Dev::default()
    };
    let c = Context::with_data(Arc::new(dev));
    let call = |x: Call| x.driver(DRIVER_ID);
    let pd = r
        .call(&c, &call(Call::new(PD, CREATE).new_object(HANDLE)))
        .unwrap()
        .handle(HANDLE)
        .unwrap();
    // The core mr_reg with the driver's extra attribute, marked mandatory.
    let mr = r
        .call(&c, &call(mr_call(pd).value(DRV_MR_TAG, 0xbeef).required()))
        .unwrap()
        .handle(HANDLE)
        .unwrap();
    // The driver's own method reads it back.
    let q = Call::new(MR, DRV_MR_QUERY)
        .handle(HANDLE, mr)
        .out(AttrId::driver(1), 8);
    let reply = r.call(&c, &call(q.clone())).unwrap();
    assert_eq!(
        reply.bytes(AttrId::driver(1)).unwrap(),
        &0xbeefu64.to_le_bytes()
    );
    // The driver attribute is validated like any other.
    let e = err(&r, &c, call(mr_call(pd).value(DRV_MR_TAG, 0x10000)));
    assert!(
        matches!(
            e,
            UapiError::BadValue {
                attr: "drv_tag",
                ..
            }
        ),
        "{e}"
    );
    // A caller built for another driver is refused.
    let e = err(&r, &c, q.clone());
    assert_eq!(
        e,
        UapiError::DriverMismatch {
            expected: DRIVER_ID,
            got: 0
        }
    );

    // A core-only device: the driver method does not exist, the driver
    // attribute is refused when mandatory and ignored when optional.
    let core = reg();
    let c2 = ctx();
    let pd2 = alloc_pd(&core, &c2);
    let e = err(&core, &c2, q);
    assert!(matches!(e, UapiError::UnknownMethod { .. }), "{e}");
    let e = err(&core, &c2, mr_call(pd2).value(DRV_MR_TAG, 1).required());
    assert!(
        matches!(
            e,
            UapiError::UnknownAttr {
                method: "mr_reg",
                ..
            }
        ),
        "{e}"
    );
    core.call(&c2, &mr_call(pd2).value(DRV_MR_TAG, 1)).unwrap();
}

#[test]
fn driver_conflicts_fail_at_build() {
    static DUP: [ObjectSpec; 1] = [ObjectSpec {
        id: MR,
        name: "MR",
        destroy_order: 0,
        methods: &[
            MethodSpec {
                id: CREATE,
                name: "mr_reg",
                handler: None,
                attrs: &[AttrSpec::scalar(DRV_MR_TAG, "a", 0, 1)],
            },
            MethodSpec {
                id: CREATE,
                name: "mr_reg",
                handler: None,
                attrs: &[AttrSpec::scalar(DRV_MR_TAG, "b", 0, 1)],
            },
        ],
    }];
    let d = DriverSpec {
        driver_id: 1,
        name: "dup",
        objects: &DUP,
    };
    assert!(matches!(
        Registry::with_driver(&CORE, &d),
        Err(SpecError::DuplicateAttr {
            method: "mr_reg",
            ..
        })
    ));
    static UNKNOWN: [ObjectSpec; 1] = [ObjectSpec {
        id: ObjectId::core(42),
        name: "nope",
        destroy_order: 0,
        methods: &[],
    }];
    let d = DriverSpec {
        driver_id: 1,
        name: "unknown",
        objects: &UNKNOWN,
    };
    assert!(matches!(
        Registry::with_driver(&CORE, &d),
        Err(SpecError::ExtendsUnknown { .. })
    ));
    assert!(matches!(
        Registry::new(&DRIVER_OBJECTS),
        Err(SpecError::NoHandler("mr_reg"))
    ));
}

#[test]
fn handler_errors_carry_errno_and_message() {
    let (r, c) = (reg(), ctx());
    let pd = alloc_pd(&r, &c);
    let e = err(&r, &c, mr_call(pd).value(MR_FAIL, 1));
    assert_eq!(
        e,
        UapiError::Handler {
            errno: errno::ENOMEM,
            message: "mr_reg: out of memory keys".into()
        }
    );
}

#[test]
fn encoded_path_matches_direct_path() {
    let (r, c) = (reg(), ctx());
    let bytes = encode_call(&Call::new(PD, CREATE).new_object(HANDLE));
    let reply = decode_reply(&r.call_encoded(&c, &bytes, vec![]))
        .unwrap()
        .unwrap();
    let pd = reply.handle(HANDLE).unwrap();
    let bytes = encode_call(&Call::new(PD, QUERY).handle(HANDLE, pd).out(OUT, 64));
    let reply = decode_reply(&r.call_encoded(&c, &bytes, vec![]))
        .unwrap()
        .unwrap();
    assert_eq!(&reply.bytes(OUT).unwrap()[8..], b"pd0");
    // Errors come back with their errno and message.
    reg_mr(&r, &c, pd);
    let bytes = encode_call(&Call::new(PD, DESTROY).handle(HANDLE, pd));
    let e = decode_reply(&r.call_encoded(&c, &bytes, vec![]))
        .unwrap()
        .unwrap_err();
    assert_eq!(e.errno, errno::EBUSY);
    assert!(e.message.contains("busy"), "{}", e.message);
    // Malformed bytes are an EINVAL reply, not a panic.
    let e = decode_reply(&r.call_encoded(&c, b"garbage", vec![]))
        .unwrap()
        .unwrap_err();
    assert_eq!(e.errno, errno::EINVAL);
}

#[test]
fn every_error_has_an_actionable_message() {
    let (r, c) = (reg(), ctx());
    let e = err(&r, &c, Call::new(PD, CREATE));
    assert_eq!(
        e.to_string(),
        "pd_alloc: mandatory attribute 'pd' is missing; supply it"
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(Value::Bytes),
            (0u32..80).prop_map(Value::Out),
            prop_oneof![0u64..4, any::<u64>()].prop_map(Value::U64),
            (0u32..2).prop_map(Value::Fd),
            Just(Value::New),
        ]
    }

    fn call() -> impl Strategy<Value = Call> {
        let attr = (0u16..10, any::<bool>(), value()).prop_map(|(id, mandatory, value)| CallAttr {
            id: AttrId(id),
            mandatory,
            value,
        });
        (1u16..4, 0u16..4, proptest::collection::vec(attr, 0..6)).prop_map(|(o, m, attrs)| Call {
            driver_id: 0,
            object: ObjectId(o),
            method: MethodId(m),
            attrs,
        })
    }

    proptest! {
        /// Random calls (and random bytes) through the encoded path never
        /// panic and always get a well-formed reply.
        #[test]
        fn random_calls_get_well_formed_replies(calls in proptest::collection::vec(call(), 1..12),
                                                junk in proptest::collection::vec(any::<u8>(), 0..64)) {
            let (r, c) = (reg(), ctx());
            let pd = alloc_pd(&r, &c);
            reg_mr(&r, &c, pd);
            for call in calls {
                let reply = r.call_encoded(&c, &encode_call(&call), vec![]);
                prop_assert!(decode_reply(&reply).is_ok());
            }
            let reply = r.call_encoded(&c, &junk, vec![]);
            prop_assert!(decode_reply(&reply).unwrap().is_err());
        }
    }
}
