//! The typed uAPI: every verb is a call *(object type, method, attributes)*
//! through one [`Registry`] (seed 004, Linux's uverbs ioctl framework).
//!
//! - **Specs as data** ([`ObjectSpec`], [`MethodSpec`], [`AttrSpec`]): object
//!   types declare methods, methods declare attributes with their kind
//!   ([`AttrKind`]) and whether they are mandatory.
//! - **Namespaces** ([`ids`]): a driver adds object types, methods and
//!   attributes of core methods in its own namespace ([`DriverSpec`]); the
//!   registry merges them and refuses clashes when it is built.
//! - **Dispatch** ([`Registry::call`]): the whole call is validated — object,
//!   method, every attribute, every handle (type, context, generation, lock)
//!   — before the handler runs with a typed [`Bundle`].
//! - **Handles** ([`Handle`], [`Context`]): per-context tables with
//!   generations; creation is two-phase; destroy refuses objects with
//!   dependants; [`Context::close`] destroys everything in order.
//! - **Encoding** ([`encoding`]): a versioned little-endian format, specified
//!   in `docs/uapi-encoding.md`, used through [`Registry::call_encoded`].
//!
//! A toy model: a PD type with `alloc` and `destroy`.
//!
//! ```
//! use softverbs_core::uapi::*;
//!
//! struct Pd;
//! impl UObject for Pd {}
//!
//! const PD: ObjectId = ObjectId::core(1);
//! const ALLOC: MethodId = MethodId::core(0);
//! const DESTROY: MethodId = MethodId::core(1);
//! const HANDLE: AttrId = AttrId::core(0);
//!
//! fn alloc(b: &mut Bundle<'_>) -> Result<(), UapiError> {
//!     b.set_new(Pd)?;
//!     Ok(())
//! }
//! fn destroy(_: &mut Bundle<'_>) -> Result<(), UapiError> {
//!     Ok(())
//! }
//!
//! static CORE: [ObjectSpec; 1] = [ObjectSpec {
//!     id: PD,
//!     name: "PD",
//!     destroy_order: 3,
//!     methods: &[
//!         MethodSpec { id: ALLOC, name: "pd_alloc", handler: Some(alloc),
//!             attrs: &[AttrSpec::handle(HANDLE, "pd", PD, Access::New).mandatory()] },
//!         MethodSpec { id: DESTROY, name: "pd_destroy", handler: Some(destroy),
//!             attrs: &[AttrSpec::handle(HANDLE, "pd", PD, Access::Destroy).mandatory()] },
//!     ],
//! }];
//!
//! let reg = Registry::new(&CORE).unwrap();
//! let ctx = Context::new();
//! let reply = reg.call(&ctx, &Call::new(PD, ALLOC).new_object(HANDLE)).unwrap();
//! let pd = reply.handle(HANDLE).unwrap();
//! reg.call(&ctx, &Call::new(PD, DESTROY).handle(HANDLE, pd)).unwrap();
//! // The handle is now stale: it never names another object.
//! let err = reg.call(&ctx, &Call::new(PD, DESTROY).handle(HANDLE, pd)).unwrap_err();
//! assert!(matches!(err, UapiError::StaleHandle { .. }));
//! assert_eq!(err.errno(), errno::ENOENT);
//! ```

mod bundle;
mod call;
mod dispatch;
pub mod encoding;
mod error;
mod handles;
pub mod ids;
mod registry;
mod spec;

pub use bundle::{copy_struct_in, Bundle};
pub use call::{Call, CallAttr, Reply, ReplyAttr, ReplyValue, Value};
pub use encoding::{DecodeError, RemoteError};
pub use error::{errno, SpecError, UapiError};
pub use handles::{Context, DestroyReason, Destroyed, Handle, UObject};
pub use ids::{AttrId, MethodId, ObjectId};
pub use registry::Registry;
pub use spec::{Access, AttrKind, AttrSpec, DriverSpec, Handler, MethodSpec, ObjectSpec};
