//! The validated attributes of a call, as a handler sees them.

use super::call::{ReplyAttr, ReplyValue};
use super::error::UapiError;
use super::handles::{Context, Erased, Handle, Locked, UObject};
use super::ids::AttrId;
use super::registry::MethodEntry;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

/// Copies an extensible struct of `known` bytes from `src`.
///
/// A shorter `src` (an older caller) is zero-extended; a longer one (a newer
/// caller) is accepted only if every byte beyond `known` is zero, else the
/// caller asked for something this side does not understand:
/// [`UapiError::NonZeroTrailing`] (E2BIG, as Linux `copy_struct_from_user`).
///
/// ```
/// use softverbs_core::uapi::{copy_struct_in, UapiError};
/// assert_eq!(&*copy_struct_in("attr", &[1, 2], 4).unwrap(), &[1, 2, 0, 0]);
/// assert_eq!(&*copy_struct_in("attr", &[1, 2, 0, 0], 2).unwrap(), &[1, 2]);
/// assert!(matches!(
///     copy_struct_in("attr", &[1, 2, 0, 9], 2),
///     Err(UapiError::NonZeroTrailing { offset: 3, .. })
/// ));
/// ```
pub fn copy_struct_in<'s>(
    attr: &'static str,
    src: &'s [u8],
    known: usize,
) -> Result<Cow<'s, [u8]>, UapiError> {
    if src.len() >= known {
        if let Some(off) = src[known..].iter().position(|b| *b != 0) {
            return Err(UapiError::NonZeroTrailing {
                attr,
                known,
                offset: known + off,
            });
        }
        Ok(Cow::Borrowed(&src[..known]))
    } else {
        let mut v = src.to_vec();
        v.resize(known, 0);
        Ok(Cow::Owned(v))
    }
}

/// One attribute after validation.
pub(crate) enum Resolved<'a> {
    Object(Locked),
    New(Handle),
    Bytes(&'a [u8]),
    Out(u32),
    Value(u64),
    Fd(u32),
}

/// What a handler sees: the validated attributes of its call, with typed
/// accessors, and where it puts its outputs and the object it creates.
pub struct Bundle<'a> {
    pub(crate) ctx: &'a Context,
    pub(crate) method: &'a MethodEntry,
    pub(crate) attrs: BTreeMap<AttrId, Resolved<'a>>,
    pub(crate) fds: Vec<Option<OwnedFd>>,
    pub(crate) out: Vec<ReplyAttr>,
    pub(crate) new_obj: Option<Arc<dyn Erased>>,
}

impl<'a> Bundle<'a> {
    fn name(&self, id: AttrId) -> Result<&'static str, UapiError> {
        self.method
            .attrs
            .get(&id)
            .map(|a| a.name)
            .ok_or(UapiError::UnknownAttr {
                method: self.method.name,
                attr: id,
            })
    }

    fn get(&self, id: AttrId) -> Result<&Resolved<'a>, UapiError> {
        let name = self.name(id)?;
        self.attrs.get(&id).ok_or(UapiError::MissingAttr {
            method: self.method.name,
            attr: name,
        })
    }

    fn kind_err(&self, id: AttrId, expected: &'static str) -> UapiError {
        UapiError::WrongKind {
            attr: self.name(id).unwrap_or("?"),
            expected,
            got: "another kind",
        }
    }

    /// The context the call runs in.
    pub fn context(&self) -> &Context {
        self.ctx
    }

    /// The context's device data, if it is a `T`.
    pub fn context_data<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.ctx.data().downcast_ref::<T>()
    }

    /// The name of the method being called.
    pub fn method_name(&self) -> &'static str {
        self.method.name
    }

    /// Whether the caller supplied attribute `id`.
    pub fn is_present(&self, id: AttrId) -> bool {
        self.attrs.contains_key(&id)
    }

    /// The object named by handle attribute `id` (read, write or destroy).
    pub fn handle<T: UObject>(&self, id: AttrId) -> Result<Arc<T>, UapiError> {
        match self.get(id)? {
            Resolved::Object(l) => l.entry.obj.clone().into_any().downcast::<T>().map_err(|_| {
                UapiError::handler(
                    super::error::errno::EIO,
                    format!(
                        "{}: the {} object is not the Rust type the handler expects (a spec bug)",
                        self.method.name, l.entry.type_name
                    ),
                )
            }),
            _ => Err(self.kind_err(id, "an object handle")),
        }
    }

    /// The raw handle of attribute `id` (also the reserved handle of a new object).
    pub fn handle_id(&self, id: AttrId) -> Result<Handle, UapiError> {
        match self.get(id)? {
            Resolved::Object(l) => Ok(l.entry.handle),
            Resolved::New(h) => Ok(*h),
            _ => Err(self.kind_err(id, "an object handle")),
        }
    }

    /// The bytes of input attribute `id`.
    pub fn bytes_in(&self, id: AttrId) -> Result<&'a [u8], UapiError> {
        match self.get(id)? {
            Resolved::Bytes(b) => Ok(b),
            _ => Err(self.kind_err(id, "input bytes")),
        }
    }

    /// Input attribute `id` as an extensible struct of `known` bytes (see
    /// [`copy_struct_in`]).
    pub fn struct_in(&self, id: AttrId, known: usize) -> Result<Cow<'a, [u8]>, UapiError> {
        copy_struct_in(self.name(id)?, self.bytes_in(id)?, known)
    }

    /// The value of enum attribute `id`.
    pub fn enum_val(&self, id: AttrId) -> Result<u32, UapiError> {
        match self.get(id)? {
            Resolved::Value(v) => Ok(*v as u32),
            _ => Err(self.kind_err(id, "an enum value")),
        }
    }

    /// The bits of flags attribute `id`; 0 when an optional one is absent.
    pub fn flags(&self, id: AttrId) -> Result<u64, UapiError> {
        if !self.is_present(id) {
            self.name(id)?;
            return Ok(0);
        }
        self.u64(id)
    }

    /// The value of scalar attribute `id`.
    pub fn u64(&self, id: AttrId) -> Result<u64, UapiError> {
        match self.get(id)? {
            Resolved::Value(v) => Ok(*v),
            _ => Err(self.kind_err(id, "an inline value")),
        }
    }

    /// Borrows the file descriptor of fd attribute `id`.
    pub fn fd(&self, id: AttrId) -> Result<BorrowedFd<'_>, UapiError> {
        let (name, index) = self.fd_index(id)?;
        self.fds
            .get(index as usize)
            .and_then(|f| f.as_ref())
            .map(|f| f.as_fd())
            .ok_or(UapiError::BadFd {
                attr: name,
                index,
                passed: self.fds.len(),
            })
    }

    /// Takes ownership of the file descriptor of fd attribute `id`.
    pub fn take_fd(&mut self, id: AttrId) -> Result<OwnedFd, UapiError> {
        let (name, index) = self.fd_index(id)?;
        let passed = self.fds.len();
        self.fds
            .get_mut(index as usize)
            .and_then(|f| f.take())
            .ok_or(UapiError::BadFd {
                attr: name,
                index,
                passed,
            })
    }

    fn fd_index(&self, id: AttrId) -> Result<(&'static str, u32), UapiError> {
        match self.get(id)? {
            Resolved::Fd(i) => Ok((self.name(id)?, *i)),
            _ => Err(self.kind_err(id, "a file descriptor")),
        }
    }

    /// The capacity the caller gave output attribute `id`, if supplied.
    pub fn out_capacity(&self, id: AttrId) -> Option<usize> {
        match self.attrs.get(&id) {
            Some(Resolved::Out(c)) => Some(*c as usize),
            _ => None,
        }
    }

    /// Writes output attribute `id`. Data longer than the caller's capacity
    /// is truncated (an older caller knows fewer fields, as Linux
    /// `uverbs_copy_to`). Returns `false` if the caller did not ask for this
    /// optional output; writing it twice keeps the last value.
    pub fn set_out(&mut self, id: AttrId, data: &[u8]) -> Result<bool, UapiError> {
        let name = self.name(id)?;
        let cap = match self.attrs.get(&id) {
            None => return Ok(false),
            Some(Resolved::Out(c)) => *c as usize,
            Some(_) => {
                return Err(UapiError::WrongKind {
                    attr: name,
                    expected: "an output buffer",
                    got: "another kind",
                })
            }
        };
        let data = data[..data.len().min(cap)].to_vec();
        self.out.retain(|a| a.id != id);
        self.out.push(ReplyAttr {
            id,
            value: ReplyValue::Bytes(data),
        });
        Ok(true)
    }

    /// Hands over the object this method creates; it becomes visible under
    /// the returned handle only if the handler then returns `Ok`.
    pub fn set_new<T: UObject>(&mut self, obj: T) -> Result<Handle, UapiError> {
        self.set_new_arc(Arc::new(obj))
    }

    /// Like [`Bundle::set_new`], for an object already in an `Arc`.
    pub fn set_new_arc<T: UObject>(&mut self, obj: Arc<T>) -> Result<Handle, UapiError> {
        let h = self
            .attrs
            .values()
            .find_map(|r| match r {
                Resolved::New(h) => Some(*h),
                _ => None,
            })
            .ok_or_else(|| {
                UapiError::handler(
                    super::error::errno::EIO,
                    format!(
                        "{}: method creates no object (a spec bug)",
                        self.method.name
                    ),
                )
            })?;
        self.new_obj = Some(obj);
        Ok(h)
    }
}
