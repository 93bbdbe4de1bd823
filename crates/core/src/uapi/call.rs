//! A call (object, method, attributes) and its reply, as plain values.
//!
//! These are what [`super::encoding`] encodes and what
//! [`super::Registry::call`] dispatches.

use super::handles::Handle;
use super::ids::{AttrId, MethodId, ObjectId};

/// The value of one attribute in a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Input bytes.
    Bytes(Vec<u8>),
    /// An output buffer of this capacity, filled in the reply.
    Out(u32),
    /// An inline scalar: enum, flags, number, or an existing object's handle.
    U64(u64),
    /// The index of a file descriptor passed with the call.
    Fd(u32),
    /// Asks for a new object; its handle comes back in the reply.
    New,
}

impl Value {
    /// The kind's name, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Bytes(_) => "input bytes",
            Value::Out(_) => "an output buffer",
            Value::U64(_) => "an inline value",
            Value::Fd(_) => "a file descriptor",
            Value::New => "a new-object request",
        }
    }
}

/// One attribute of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallAttr {
    /// Which attribute.
    pub id: AttrId,
    /// The caller needs it understood: if the method does not know the
    /// attribute, the call fails instead of ignoring it (Linux's
    /// `UVERBS_ATTR_F_MANDATORY`).
    pub mandatory: bool,
    /// Its value.
    pub value: Value,
}

/// A call of `method` on `object` with attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The driver the caller's provider was built for (0: core only).
    pub driver_id: u32,
    /// The object type.
    pub object: ObjectId,
    /// The method.
    pub method: MethodId,
    /// The attributes, in any order.
    pub attrs: Vec<CallAttr>,
}

impl Call {
    /// A call with no attributes, for driver id 0.
    pub fn new(object: ObjectId, method: MethodId) -> Self {
        Self {
            driver_id: 0,
            object,
            method,
            attrs: Vec::new(),
        }
    }

    /// Sets the driver id.
    pub fn driver(mut self, driver_id: u32) -> Self {
        self.driver_id = driver_id;
        self
    }

    /// Adds an attribute.
    pub fn attr(mut self, id: AttrId, value: Value) -> Self {
        self.attrs.push(CallAttr {
            id,
            mandatory: false,
            value,
        });
        self
    }

    /// Marks the last added attribute as one the callee must understand.
    pub fn required(mut self) -> Self {
        if let Some(a) = self.attrs.last_mut() {
            a.mandatory = true;
        }
        self
    }

    /// Adds an existing object's handle.
    pub fn handle(self, id: AttrId, h: Handle) -> Self {
        self.attr(id, Value::U64(h.raw()))
    }

    /// Asks for a new object in attribute `id`.
    pub fn new_object(self, id: AttrId) -> Self {
        self.attr(id, Value::New)
    }

    /// Adds input bytes.
    pub fn bytes(self, id: AttrId, data: impl Into<Vec<u8>>) -> Self {
        self.attr(id, Value::Bytes(data.into()))
    }

    /// Adds an output buffer of `capacity` bytes.
    pub fn out(self, id: AttrId, capacity: u32) -> Self {
        self.attr(id, Value::Out(capacity))
    }

    /// Adds an inline value (enum, flags, scalar).
    pub fn value(self, id: AttrId, v: u64) -> Self {
        self.attr(id, Value::U64(v))
    }

    /// Adds the index of a passed file descriptor.
    pub fn fd(self, id: AttrId, index: u32) -> Self {
        self.attr(id, Value::Fd(index))
    }
}

/// The value of one attribute in a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyValue {
    /// What the handler wrote to an output buffer (at most its capacity).
    Bytes(Vec<u8>),
    /// The handle of a created object.
    Handle(Handle),
}

/// One attribute of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyAttr {
    /// Which attribute of the call.
    pub id: AttrId,
    /// Its value.
    pub value: ReplyValue,
}

/// The outputs of a successful call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// Outputs written and objects created, in the order the handler made them.
    pub attrs: Vec<ReplyAttr>,
}

impl Reply {
    /// The handle created for attribute `id`.
    pub fn handle(&self, id: AttrId) -> Option<Handle> {
        self.attrs.iter().find_map(|a| match a.value {
            ReplyValue::Handle(h) if a.id == id => Some(h),
            _ => None,
        })
    }

    /// The bytes written to output attribute `id`.
    pub fn bytes(&self, id: AttrId) -> Option<&[u8]> {
        self.attrs.iter().find_map(|a| match &a.value {
            ReplyValue::Bytes(b) if a.id == id => Some(b.as_slice()),
            _ => None,
        })
    }
}
