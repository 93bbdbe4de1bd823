//! The dispatcher: validates a whole call, then runs its handler.
//!
//! Order: context open, driver id, object, method; then every attribute
//! (known, not duplicated, right kind, size/enum/flags/range/fd valid);
//! mandatory attributes present; handles resolved and locked; a slot reserved
//! for a new object; a destroyed object checked and destroyed. Only then does
//! the handler run. Unknown attributes the caller did not mark mandatory are
//! ignored, as in Linux (an older device serving a newer caller).

use super::bundle::{Bundle, Resolved};
use super::call::{Call, Reply, ReplyAttr, ReplyValue, Value};
use super::error::{errno, UapiError};
use super::handles::{Context, DestroyReason, Handle};
use super::ids::AttrId;
use super::registry::{MethodEntry, Registry};
use super::spec::{Access, AttrKind, AttrSpec};
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

fn wrong_kind(spec: &AttrSpec, expected: &'static str, got: &Value) -> UapiError {
    UapiError::WrongKind {
        attr: spec.name,
        expected,
        got: got.kind_name(),
    }
}

/// Checks one attribute's value against its spec (everything but handles).
fn check_value<'c>(
    spec: &AttrSpec,
    value: &'c Value,
    fds: usize,
    used_fds: &mut Vec<u32>,
) -> Result<Resolved<'c>, UapiError> {
    let attr = spec.name;
    Ok(match (spec.kind, value) {
        (
            AttrKind::Handle {
                access: Access::New,
                ..
            },
            Value::New,
        ) => Resolved::New(Handle::from_raw(0)),
        (
            AttrKind::Handle {
                access: Access::New,
                ..
            },
            v,
        ) => return Err(wrong_kind(spec, "a new-object request", v)),
        (AttrKind::Handle { .. }, Value::U64(h)) => Resolved::Value(*h),
        (AttrKind::Handle { .. }, v) => return Err(wrong_kind(spec, "an object handle", v)),
        (AttrKind::BytesIn { min, max }, Value::Bytes(b)) => {
            if b.len() < min || b.len() > max {
                return Err(UapiError::BadLength {
                    attr,
                    got: b.len(),
                    min,
                    max,
                });
            }
            Resolved::Bytes(b)
        }
        (AttrKind::BytesIn { .. }, v) => return Err(wrong_kind(spec, "input bytes", v)),
        (AttrKind::BytesOut { min, max }, Value::Out(cap)) => {
            let got = *cap as usize;
            if got < min || got > max {
                return Err(UapiError::BadLength {
                    attr,
                    got,
                    min,
                    max,
                });
            }
            Resolved::Out(*cap)
        }
        (AttrKind::BytesOut { .. }, v) => return Err(wrong_kind(spec, "an output buffer", v)),
        (AttrKind::Enum { allowed }, Value::U64(v)) => {
            if !allowed.iter().any(|a| u64::from(*a) == *v) {
                return Err(UapiError::BadEnum {
                    attr,
                    value: *v,
                    allowed: allowed.to_vec(),
                });
            }
            Resolved::Value(*v)
        }
        (AttrKind::Flags { allowed }, Value::U64(v)) => {
            if v & !allowed != 0 {
                return Err(UapiError::BadFlags {
                    attr,
                    extra: v & !allowed,
                    allowed,
                });
            }
            Resolved::Value(*v)
        }
        (AttrKind::U64 { min, max }, Value::U64(v)) => {
            if *v < min || *v > max {
                return Err(UapiError::BadValue {
                    attr,
                    value: *v,
                    min,
                    max,
                });
            }
            Resolved::Value(*v)
        }
        (AttrKind::Enum { .. } | AttrKind::Flags { .. } | AttrKind::U64 { .. }, v) => {
            return Err(wrong_kind(spec, "an inline value", v))
        }
        (AttrKind::Fd, Value::Fd(i)) => {
            if *i as usize >= fds || used_fds.contains(i) {
                return Err(UapiError::BadFd {
                    attr,
                    index: *i,
                    passed: fds,
                });
            }
            used_fds.push(*i);
            Resolved::Fd(*i)
        }
        (AttrKind::Fd, v) => return Err(wrong_kind(spec, "a file descriptor", v)),
    })
}

/// Pass 1: every attribute known (or ignorable), unique, and valid.
fn check_attrs<'c>(
    method: &MethodEntry,
    call: &'c Call,
    fds: usize,
) -> Result<BTreeMap<AttrId, Resolved<'c>>, UapiError> {
    let mut out = BTreeMap::new();
    let mut used_fds = Vec::new();
    for a in &call.attrs {
        let Some(spec) = method.attrs.get(&a.id) else {
            if a.mandatory {
                return Err(UapiError::UnknownAttr {
                    method: method.name,
                    attr: a.id,
                });
            }
            continue;
        };
        if out.contains_key(&a.id) {
            return Err(UapiError::DuplicateAttr {
                method: method.name,
                attr: spec.name,
            });
        }
        out.insert(a.id, check_value(spec, &a.value, fds, &mut used_fds)?);
    }
    if let Some(missing) = method
        .attrs
        .values()
        .find(|s| s.mandatory && !out.contains_key(&s.id))
    {
        return Err(UapiError::MissingAttr {
            method: method.name,
            attr: missing.name,
        });
    }
    Ok(out)
}

impl Registry {
    /// Validates `call` completely, then runs its handler in `ctx`. Calls
    /// with fd attributes need [`Registry::call_with_fds`].
    pub fn call(&self, ctx: &Context, call: &Call) -> Result<Reply, UapiError> {
        self.call_with_fds(ctx, call, Vec::new())
    }

    /// Like [`Registry::call`], with file descriptors that fd attributes
    /// name by index (what `SCM_RIGHTS` will carry).
    pub fn call_with_fds(
        &self,
        ctx: &Context,
        call: &Call,
        fds: Vec<OwnedFd>,
    ) -> Result<Reply, UapiError> {
        if ctx.is_closed() {
            return Err(UapiError::ContextClosed);
        }
        if call.driver_id != self.driver_id {
            return Err(UapiError::DriverMismatch {
                expected: self.driver_id,
                got: call.driver_id,
            });
        }
        let obj = self
            .objects
            .get(&call.object)
            .ok_or(UapiError::UnknownObject {
                object: call.object,
            })?;
        let method = obj
            .methods
            .get(&call.method)
            .ok_or(UapiError::UnknownMethod {
                object: obj.name,
                method: call.method,
            })?;
        let mut attrs = check_attrs(method, call, fds.len())?;

        // Pass 2: resolve and lock handles; remember parents of a new object.
        let mut parents = Vec::new();
        let mut destroy = None;
        for (id, r) in attrs.iter_mut() {
            let spec = &method.attrs[id];
            let (AttrKind::Handle { object, access }, Resolved::Value(raw)) = (spec.kind, &*r)
            else {
                continue;
            };
            let expected = self.objects.get(&object).map_or("?", |o| o.name);
            let exclusive = matches!(access, Access::Write | Access::Destroy);
            let locked = ctx.lookup(
                spec.name,
                Handle::from_raw(*raw),
                object,
                expected,
                exclusive,
            )?;
            match access {
                Access::Destroy => destroy = Some(*id),
                _ => parents.push(locked.entry.handle),
            }
            *r = Resolved::Object(locked);
        }

        // Pass 3: reserve the new object's slot.
        let new = method
            .new_attr()
            .filter(|a| attrs.contains_key(&a.id))
            .map(|a| (a.id, a.kind));
        let new = match new {
            Some((id, AttrKind::Handle { object, .. })) => {
                let h = ctx.reserve()?;
                attrs.insert(id, Resolved::New(h));
                Some((id, object, h))
            }
            _ => None,
        };

        let mut bundle = Bundle {
            ctx,
            method,
            attrs,
            fds: fds.into_iter().map(Some).collect(),
            out: Vec::new(),
            new_obj: None,
        };

        // The object goes before the handler runs (as Linux), which then
        // only reports on it.
        if let Some(id) = destroy {
            if let Some(Resolved::Object(l)) = bundle.attrs.get(&id) {
                if let Err(e) = ctx.destroy(l) {
                    if let Some((_, _, h)) = new {
                        ctx.abort(h);
                    }
                    return Err(e);
                }
            }
        }

        let result = (method.handler)(&mut bundle);
        let new_obj = bundle.new_obj.take();
        let mut reply = Reply {
            attrs: std::mem::take(&mut bundle.out),
        };
        let Some((id, object, h)) = new else {
            return result.map(|()| reply);
        };
        let (Ok(()), Some(obj)) = (&result, new_obj.clone()) else {
            if let Some(o) = new_obj {
                // Roll back: the object was built but the call failed.
                let _ = o.as_uobject().destroy(DestroyReason::Abort);
            }
            ctx.abort(h);
            result?;
            return Err(UapiError::handler(
                errno::EIO,
                format!(
                    "{}: handler succeeded without creating its object (a handler bug)",
                    method.name
                ),
            ));
        };
        let o = &self.objects[&object];
        if let Err(e) = ctx.commit(h, object, o.name, o.destroy_order, obj, parents) {
            if let Some(o) = new_obj {
                let _ = o.as_uobject().destroy(DestroyReason::Abort);
            }
            return Err(e);
        }
        reply.attrs.push(ReplyAttr {
            id,
            value: ReplyValue::Handle(h),
        });
        Ok(reply)
    }
}

impl Registry {
    /// Decodes an encoded call, dispatches it and encodes the reply (or the
    /// error). The embedded backend and the daemon both go through here, so
    /// every call takes the same decode, validation and dispatch path.
    pub fn call_encoded(&self, ctx: &Context, bytes: &[u8], fds: Vec<OwnedFd>) -> Vec<u8> {
        let result = super::encoding::decode_call(bytes)
            .map_err(UapiError::from)
            .and_then(|call| self.call_with_fds(ctx, &call, fds));
        match result {
            Ok(reply) => super::encoding::encode_reply(&reply),
            Err(e) => super::encoding::encode_error(&e),
        }
    }
}
