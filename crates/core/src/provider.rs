//! The provider channel shared by softverbs's soft devices (seeds 002 and
//! 004): methods in the driver namespace that every soft device can merge
//! into its registry by returning [`soft_driver_spec`] from
//! [`crate::driver::Driver::driver_spec`].
//!
//! - `QP` / [`QP_QUERY_COUNTERS`]: the QP's transport counters (rxe's
//!   per-QP hardware counters), without the rest of `query_qp`.
//!
//! ```
//! use softverbs_core::provider::soft_driver_spec;
//! use softverbs_core::uapi::DriverSpec;
//! static RXE: DriverSpec = soft_driver_spec(0x7278_6500, "rxe");
//! assert_eq!(RXE.name, "rxe");
//! ```

use crate::abi::{self, Wr};
use crate::objects::ids::{HANDLE, QP};
use crate::objects::QpObj;
use crate::uapi::{
    Access, AttrId, AttrSpec, Bundle, DriverSpec, MethodId, MethodSpec, ObjectSpec, UapiError,
};

/// QP driver method: read the QP's counters.
pub const QP_QUERY_COUNTERS: MethodId = MethodId::driver(0);
/// Output of [`QP_QUERY_COUNTERS`]: 16 little-endian u64 counters in the
/// order of `QpCounters` (`docs/uapi-verbs.md`).
pub const COUNTERS: AttrId = AttrId::driver(0);

fn qp_query_counters(b: &mut Bundle<'_>) -> Result<(), UapiError> {
    let qp = b.handle::<QpObj>(HANDLE)?;
    let info = qp.drv.query_qp(qp.qpn)?;
    let mut w = Wr::default();
    abi::enc_counters(&mut w, &info.counters);
    b.set_out(COUNTERS, &w.done())?;
    Ok(())
}

/// The `qp_query_counters` method, shared with drivers that add more QP
/// methods (`crate::efa`).
pub(crate) const QP_QUERY_COUNTERS_SPEC: MethodSpec = MethodSpec {
    id: QP_QUERY_COUNTERS,
    name: "qp_query_counters",
    handler: Some(qp_query_counters),
    attrs: &[
        AttrSpec::handle(HANDLE, "qp", QP, Access::Read).mandatory(),
        AttrSpec::bytes_out(COUNTERS, "counters", 0, abi::COUNTERS_SIZE).mandatory(),
    ],
};

const SOFT_OBJECTS: &[ObjectSpec] = &[ObjectSpec {
    id: QP,
    name: "QP",
    destroy_order: 0,
    methods: &[QP_QUERY_COUNTERS_SPEC],
}];

/// The driver spec of a soft device: the shared soft-device methods under
/// the driver's own id and name.
pub const fn soft_driver_spec(driver_id: u32, name: &'static str) -> DriverSpec {
    DriverSpec {
        driver_id,
        name,
        objects: SOFT_OBJECTS,
    }
}
