//! Errors of the uAPI: [`UapiError`] for calls, [`SpecError`] for building a
//! registry, and the errno each call error maps to.

use super::ids::{AttrId, MethodId, ObjectId};
use super::Handle;
use thiserror::Error;

/// Linux errno values, used by [`UapiError::errno`] (the later libibverbs ABI
/// and the daemon protocol report these numbers).
pub mod errno {
    /// No such entry (stale or unknown handle).
    pub const ENOENT: i32 = 2;
    /// I/O error (internal failure, closed context).
    pub const EIO: i32 = 5;
    /// Argument list too long (non-zero trailing bytes of a struct).
    pub const E2BIG: i32 = 7;
    /// Bad file descriptor.
    pub const EBADF: i32 = 9;
    /// Out of memory / table full.
    pub const ENOMEM: i32 = 12;
    /// Device or resource busy.
    pub const EBUSY: i32 = 16;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// No space left (an output buffer too small).
    pub const ENOSPC: i32 = 28;
    /// Protocol not supported (unknown object, method or mandatory attribute).
    pub const EPROTONOSUPPORT: i32 = 93;
    /// Operation not supported.
    pub const EOPNOTSUPP: i32 = 95;
}

/// Why a uAPI call failed. Every variant says what was wrong and what to do;
/// [`UapiError::errno`] gives the errno of the libibverbs ABI.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UapiError {
    /// The object type is not known to this device.
    #[error("unknown {object}: this device does not implement it (check the device's capabilities or use a newer softverbs)")]
    UnknownObject {
        /// The id the caller sent.
        object: ObjectId,
    },
    /// The object type exists but has no such method.
    #[error("unknown {method} on object '{object}': this device does not implement it")]
    UnknownMethod {
        /// Name of the object type.
        object: &'static str,
        /// The id the caller sent.
        method: MethodId,
    },
    /// The caller marked an attribute mandatory that the method does not know.
    #[error("{method}: unknown {attr} marked mandatory by the caller; this device does not support it (drop the attribute or use a device that supports it)")]
    UnknownAttr {
        /// Name of the method.
        method: &'static str,
        /// The id the caller sent.
        attr: AttrId,
    },
    /// A mandatory attribute is missing.
    #[error("{method}: mandatory attribute '{attr}' is missing; supply it")]
    MissingAttr {
        /// Name of the method.
        method: &'static str,
        /// Name of the missing attribute.
        attr: &'static str,
    },
    /// The same attribute appears twice in one call.
    #[error("{method}: attribute '{attr}' given more than once; send it once")]
    DuplicateAttr {
        /// Name of the method.
        method: &'static str,
        /// Name of the attribute.
        attr: &'static str,
    },
    /// The attribute's value has the wrong kind (for example bytes where a handle is expected).
    #[error("attribute '{attr}' must be {expected}, got {got}")]
    WrongKind {
        /// Name of the attribute.
        attr: &'static str,
        /// What the spec wants.
        expected: &'static str,
        /// What the caller sent.
        got: &'static str,
    },
    /// A byte attribute's length is outside the bounds of its spec.
    #[error("attribute '{attr}' has {got} bytes, expected between {min} and {max}")]
    BadLength {
        /// Name of the attribute.
        attr: &'static str,
        /// Length the caller sent.
        got: usize,
        /// Smallest length accepted.
        min: usize,
        /// Largest length accepted.
        max: usize,
    },
    /// An extensible struct is longer than this side knows and the unknown tail is not zero.
    #[error("attribute '{attr}': byte {offset} lies beyond the {known} bytes this side understands and is not zero; the caller uses a feature this device does not support (clear it or upgrade)")]
    NonZeroTrailing {
        /// Name of the attribute.
        attr: &'static str,
        /// Size of the struct this side knows.
        known: usize,
        /// Offset of the first non-zero unknown byte.
        offset: usize,
    },
    /// An enum attribute holds a value the spec does not allow.
    #[error("attribute '{attr}': value {value} is not one of {allowed:?}")]
    BadEnum {
        /// Name of the attribute.
        attr: &'static str,
        /// Value the caller sent.
        value: u64,
        /// Values the spec allows.
        allowed: Vec<u32>,
    },
    /// A flags attribute has bits the spec does not allow.
    #[error("attribute '{attr}': flag bits {extra:#x} are not supported (allowed mask {allowed:#x}); clear them")]
    BadFlags {
        /// Name of the attribute.
        attr: &'static str,
        /// The bits outside the allowed mask.
        extra: u64,
        /// The allowed mask.
        allowed: u64,
    },
    /// A scalar attribute is outside its range.
    #[error("attribute '{attr}': value {value} is outside {min}..={max}")]
    BadValue {
        /// Name of the attribute.
        attr: &'static str,
        /// Value the caller sent.
        value: u64,
        /// Smallest value accepted.
        min: u64,
        /// Largest value accepted.
        max: u64,
    },
    /// An fd attribute names no passed file descriptor (or one already used).
    #[error("attribute '{attr}': fd index {index} does not name an unused passed file descriptor ({passed} passed)")]
    BadFd {
        /// Name of the attribute.
        attr: &'static str,
        /// Index the caller sent.
        index: u32,
        /// How many descriptors came with the call.
        passed: usize,
    },
    /// The handle names a destroyed object (or was never valid in this context).
    #[error("attribute '{attr}': handle {handle} is stale or unknown (its object was destroyed or never created); do not reuse handles after destroy")]
    StaleHandle {
        /// Name of the attribute.
        attr: &'static str,
        /// The handle.
        handle: Handle,
    },
    /// The handle names an object of another type.
    #[error("attribute '{attr}': handle {handle} is a {got}, expected a {expected}")]
    WrongType {
        /// Name of the attribute.
        attr: &'static str,
        /// The handle.
        handle: Handle,
        /// The type the spec wants.
        expected: &'static str,
        /// The type of the object the handle names.
        got: &'static str,
    },
    /// The handle belongs to another context.
    #[error("attribute '{attr}': handle {handle} belongs to another context; handles are valid only in the context that created them")]
    ForeignHandle {
        /// Name of the attribute.
        attr: &'static str,
        /// The handle.
        handle: Handle,
    },
    /// The object is in use: locked by another call, or has dependants.
    #[error("{object} {handle} is busy, used by: {}; destroy or finish those first", users.join(", "))]
    Busy {
        /// Type name of the busy object.
        object: &'static str,
        /// Its handle.
        handle: Handle,
        /// Who uses it.
        users: Vec<String>,
    },
    /// The context has been closed.
    #[error("the context is closed; open a new one")]
    ContextClosed,
    /// The context's handle table is full.
    #[error("the context has too many objects; destroy some first")]
    TableFull,
    /// The call could not be decoded.
    #[error("malformed call: {0}")]
    Decode(#[from] super::encoding::DecodeError),
    /// The call's driver id is not this device's.
    #[error("call is for driver id {got}, this device's driver id is {expected}; the provider library does not match the device")]
    DriverMismatch {
        /// Driver id of the registry.
        expected: u32,
        /// Driver id in the call.
        got: u32,
    },
    /// The handler reported an error.
    #[error("{message} (errno {errno})")]
    Handler {
        /// errno to report.
        errno: i32,
        /// What went wrong and what to do.
        message: String,
    },
}

impl UapiError {
    /// A handler error with an errno and a message.
    pub fn handler(errno: i32, message: impl Into<String>) -> Self {
        UapiError::Handler {
            errno,
            message: message.into(),
        }
    }

    /// The errno this error maps to (positive, Linux numbering).
    pub fn errno(&self) -> i32 {
        use errno::*;
        match self {
            UapiError::UnknownObject { .. }
            | UapiError::UnknownMethod { .. }
            | UapiError::UnknownAttr { .. } => EPROTONOSUPPORT,
            UapiError::MissingAttr { .. }
            | UapiError::DuplicateAttr { .. }
            | UapiError::WrongKind { .. }
            | UapiError::BadLength { .. }
            | UapiError::BadEnum { .. }
            | UapiError::BadFlags { .. }
            | UapiError::BadValue { .. }
            | UapiError::WrongType { .. }
            | UapiError::DriverMismatch { .. } => EINVAL,
            UapiError::Decode(d) => d.errno(),
            UapiError::NonZeroTrailing { .. } => E2BIG,
            UapiError::BadFd { .. } => EBADF,
            UapiError::StaleHandle { .. } | UapiError::ForeignHandle { .. } => ENOENT,
            UapiError::Busy { .. } => EBUSY,
            UapiError::ContextClosed => EIO,
            UapiError::TableFull => ENOMEM,
            UapiError::Handler { errno, .. } => *errno,
        }
    }
}

/// Why a set of specs could not be built into a [`super::Registry`]. These
/// are programming errors of the core or a driver, found at build time.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    /// Two object types share an id.
    #[error("{0} is declared twice")]
    DuplicateObject(ObjectId),
    /// Two methods of one object share an id.
    #[error("object '{object}': {method} is declared twice")]
    DuplicateMethod {
        /// Name of the object type.
        object: &'static str,
        /// The duplicate id.
        method: MethodId,
    },
    /// Two attributes of one method share an id.
    #[error("method '{method}': {attr} is declared twice")]
    DuplicateAttr {
        /// Name of the method.
        method: &'static str,
        /// The duplicate id.
        attr: AttrId,
    },
    /// An id is in the wrong namespace (core specs use the core namespace; a
    /// driver adds only ids in the driver namespace).
    #[error("{what} '{name}' has id {id:#x} outside its namespace {expected_ns:#x}")]
    Namespace {
        /// Object, method or attribute.
        what: &'static str,
        /// Its name.
        name: &'static str,
        /// Its raw id.
        id: u16,
        /// The namespace it should be in.
        expected_ns: u16,
    },
    /// A driver extends a method or object that the core does not declare.
    #[error("driver extends {what} '{name}' which the core does not declare")]
    ExtendsUnknown {
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: &'static str,
    },
    /// A method has no handler (only extensions of existing methods may omit it).
    #[error("method '{0}' has no handler")]
    NoHandler(&'static str),
    /// A driver tries to replace the handler of a core method.
    #[error("driver tries to replace the handler of core method '{0}'")]
    HandlerOverride(&'static str),
    /// An attribute spec is inconsistent.
    #[error("method '{method}', attribute '{attr}': {why}")]
    BadAttr {
        /// Name of the method.
        method: &'static str,
        /// Name of the attribute.
        attr: &'static str,
        /// What is wrong.
        why: &'static str,
    },
}
