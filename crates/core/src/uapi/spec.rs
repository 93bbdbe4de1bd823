//! Specs as data: object types declare methods, methods declare attributes.
//!
//! Specs are `const` tables; a [`super::Registry`] is built from the core's
//! tables plus a driver's tables and checks them once, at build time.

use super::bundle::Bundle;
use super::error::UapiError;
use super::ids::{AttrId, MethodId, ObjectId};

/// A method's handler. It runs only after the whole call was validated; it
/// reads attributes and sets outputs through the [`Bundle`].
pub type Handler = fn(&mut Bundle<'_>) -> Result<(), UapiError>;

/// How a method uses the object a handle attribute names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Shared use: many calls may read the object at once.
    Read,
    /// Exclusive use: a second concurrent user gets [`UapiError::Busy`].
    Write,
    /// Exclusive use, and the object is destroyed when the call succeeds.
    /// It must have no dependants.
    Destroy,
    /// A new object: its slot is reserved before the handler runs and the
    /// object becomes visible only if the handler succeeds.
    New,
}

/// What an attribute carries and what values it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrKind {
    /// A handle of an object of type `object`, used with `access`.
    Handle {
        /// Type of the object.
        object: ObjectId,
        /// How the method uses it.
        access: Access,
    },
    /// Input bytes of `min..=max` length (an extensible struct has `max`
    /// larger than the size the handler knows; see [`super::copy_struct_in`]).
    BytesIn {
        /// Smallest length accepted.
        min: usize,
        /// Largest length accepted.
        max: usize,
    },
    /// An output buffer: the caller gives a capacity of `min..=max` bytes.
    BytesOut {
        /// Smallest capacity accepted.
        min: usize,
        /// Largest capacity accepted.
        max: usize,
    },
    /// One of a set of values.
    Enum {
        /// The accepted values.
        allowed: &'static [u32],
    },
    /// A bit set whose bits must lie inside `allowed`. An absent optional
    /// flags attribute reads as 0.
    Flags {
        /// The accepted bits.
        allowed: u64,
    },
    /// A scalar in `min..=max`.
    U64 {
        /// Smallest value accepted.
        min: u64,
        /// Largest value accepted.
        max: u64,
    },
    /// A file descriptor passed out of band (by index, for `SCM_RIGHTS`).
    Fd,
}

/// One attribute of a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttrSpec {
    /// Its id (in the namespace of whoever declares it).
    pub id: AttrId,
    /// Its name, used in error messages.
    pub name: &'static str,
    /// What it carries.
    pub kind: AttrKind,
    /// Whether every call must supply it.
    pub mandatory: bool,
}

impl AttrSpec {
    /// An optional attribute; chain [`AttrSpec::mandatory`] to require it.
    pub const fn new(id: AttrId, name: &'static str, kind: AttrKind) -> Self {
        Self {
            id,
            name,
            kind,
            mandatory: false,
        }
    }

    /// The same attribute, required in every call.
    pub const fn mandatory(mut self) -> Self {
        self.mandatory = true;
        self
    }

    /// A handle attribute.
    pub const fn handle(id: AttrId, name: &'static str, object: ObjectId, access: Access) -> Self {
        Self::new(id, name, AttrKind::Handle { object, access })
    }

    /// An input bytes attribute of `min..=max` bytes.
    pub const fn bytes_in(id: AttrId, name: &'static str, min: usize, max: usize) -> Self {
        Self::new(id, name, AttrKind::BytesIn { min, max })
    }

    /// An output bytes attribute with a capacity of `min..=max` bytes.
    pub const fn bytes_out(id: AttrId, name: &'static str, min: usize, max: usize) -> Self {
        Self::new(id, name, AttrKind::BytesOut { min, max })
    }

    /// An enum attribute.
    pub const fn enumeration(id: AttrId, name: &'static str, allowed: &'static [u32]) -> Self {
        Self::new(id, name, AttrKind::Enum { allowed })
    }

    /// A flags attribute.
    pub const fn flags(id: AttrId, name: &'static str, allowed: u64) -> Self {
        Self::new(id, name, AttrKind::Flags { allowed })
    }

    /// A scalar attribute in `min..=max`.
    pub const fn scalar(id: AttrId, name: &'static str, min: u64, max: u64) -> Self {
        Self::new(id, name, AttrKind::U64 { min, max })
    }

    /// A file descriptor attribute.
    pub const fn fd(id: AttrId, name: &'static str) -> Self {
        Self::new(id, name, AttrKind::Fd)
    }
}

/// One method of an object type.
#[derive(Debug, Clone, Copy)]
pub struct MethodSpec {
    /// Its id.
    pub id: MethodId,
    /// Its name, used in error messages.
    pub name: &'static str,
    /// The attributes it accepts.
    pub attrs: &'static [AttrSpec],
    /// The handler. `None` only in a driver spec that adds attributes to an
    /// existing core method.
    pub handler: Option<Handler>,
}

/// One object type.
#[derive(Debug, Clone, Copy)]
pub struct ObjectSpec {
    /// Its id.
    pub id: ObjectId,
    /// Its name, used in error messages and `Busy` user lists.
    pub name: &'static str,
    /// When a context closes, types with a lower order are destroyed first
    /// (e.g. QP 0, MR 1, CQ 2, PD 3); within a type, newest first.
    pub destroy_order: u8,
    /// Its methods.
    pub methods: &'static [MethodSpec],
}

/// A driver's additions: new object types and methods, and extra
/// attributes on core methods, all with ids in the driver namespace.
///
/// An [`ObjectSpec`] whose id is a core object's id extends that object: its
/// methods are new driver methods, or (with `handler: None` and the core
/// method's id) extra attributes for a core method.
#[derive(Debug, Clone, Copy)]
pub struct DriverSpec {
    /// The driver's id; calls must carry it (like Linux's `driver_id`).
    pub driver_id: u32,
    /// The driver's name.
    pub name: &'static str,
    /// Its object tables.
    pub objects: &'static [ObjectSpec],
}
