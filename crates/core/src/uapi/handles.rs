//! Handles, objects and the per-context handle table.
//!
//! A [`Handle`] packs a slot index, the slot's generation and the tag of the
//! context that created it. A slot's generation advances every time its
//! object goes away, so an old handle never names a newer object; a slot
//! whose generation would wrap is retired. Each slot remembers its object
//! type, so a handle of the wrong type is refused, never misread.

use super::error::UapiError;
use super::ids::ObjectId;
use std::any::Any;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

const INDEX_BITS: u32 = 24;
const GEN_BITS: u32 = 20;
const CTX_BITS: u32 = 20;
const INDEX_MAX: u64 = (1 << INDEX_BITS) - 1;
const GEN_MAX: u32 = (1 << GEN_BITS) - 1;
const CTX_MAX: u32 = (1 << CTX_BITS) - 1;

/// The handle of an object in a context: `index` (24 bits) | `generation`
/// (20 bits) << 24 | `context tag` (20 bits) << 44. Never 0.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Handle(u64);

impl Handle {
    fn new(ctx: u32, generation: u32, index: u32) -> Self {
        Handle(
            (index as u64 & INDEX_MAX)
                | ((generation & GEN_MAX) as u64) << INDEX_BITS
                | ((ctx & CTX_MAX) as u64) << (INDEX_BITS + GEN_BITS),
        )
    }

    /// A handle from its raw value (as carried in a call).
    pub const fn from_raw(raw: u64) -> Self {
        Handle(raw)
    }

    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }

    fn index(self) -> usize {
        (self.0 & INDEX_MAX) as usize
    }

    fn generation(self) -> u32 {
        ((self.0 >> INDEX_BITS) as u32) & GEN_MAX
    }

    fn ctx(self) -> u32 {
        (self.0 >> (INDEX_BITS + GEN_BITS)) as u32
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}@{}", self.index(), self.generation(), self.ctx())
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why an object is being destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestroyReason {
    /// A destroy method was called.
    Explicit,
    /// Its context was closed.
    ContextClose,
    /// Its creation was rolled back.
    Abort,
}

/// An object that lives in a handle table.
pub trait UObject: Any + Send + Sync {
    /// Users the framework does not track (e.g. attached multicast groups).
    /// A non-empty list makes an explicit destroy fail with `Busy`.
    fn users(&self) -> Vec<String> {
        Vec::new()
    }

    /// Releases the object's resources. An error refuses an explicit destroy
    /// (the object stays); on context close and abort it is only reported.
    fn destroy(&self, _reason: DestroyReason) -> Result<(), UapiError> {
        Ok(())
    }
}

/// Type-erasure helper so an `Arc<dyn Erased>` can be downcast.
pub(crate) trait Erased: UObject {
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    fn as_uobject(&self) -> &dyn UObject;
}

impl<T: UObject> Erased for T {
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
    fn as_uobject(&self) -> &dyn UObject {
        self
    }
}

/// A live object with its bookkeeping.
pub(crate) struct Entry {
    pub handle: Handle,
    pub object: ObjectId,
    pub type_name: &'static str,
    pub destroy_order: u8,
    pub seq: u64,
    pub obj: Arc<dyn Erased>,
    /// > 0: readers; -1: one exclusive user.
    usecnt: AtomicI64,
}

/// A lock on an object held for the length of a call.
pub(crate) struct Locked {
    pub entry: Arc<Entry>,
    exclusive: bool,
}

impl Locked {
    fn try_new(entry: Arc<Entry>, exclusive: bool) -> Result<Self, UapiError> {
        let busy = |v: i64| UapiError::Busy {
            object: entry.type_name,
            handle: entry.handle,
            users: vec![if v < 0 {
                "another call using it exclusively".to_string()
            } else {
                format!("{v} call(s) reading it")
            }],
        };
        if exclusive {
            entry
                .usecnt
                .compare_exchange(0, -1, Ordering::Acquire, Ordering::Relaxed)
                .map_err(busy)?;
        } else {
            entry
                .usecnt
                .fetch_update(Ordering::Acquire, Ordering::Relaxed, |v| {
                    (v >= 0).then_some(v + 1)
                })
                .map_err(busy)?;
        }
        Ok(Locked { entry, exclusive })
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        if self.exclusive {
            self.entry.usecnt.store(0, Ordering::Release);
        } else {
            self.entry.usecnt.fetch_sub(1, Ordering::Release);
        }
    }
}

enum State {
    Free,
    Reserved,
    Live {
        entry: Arc<Entry>,
        parents: Vec<Handle>,
        children: BTreeSet<Handle>,
    },
}

struct Slot {
    generation: u32,
    state: State,
}

#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    free: Vec<u32>,
    next_seq: u64,
    closed: bool,
}

impl Table {
    fn live(&self, h: Handle) -> Option<&Arc<Entry>> {
        let slot = self.slots.get(h.index())?;
        match &slot.state {
            State::Live { entry, .. } if slot.generation == h.generation() => Some(entry),
            _ => None,
        }
    }

    fn release_slot(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        slot.state = State::Free;
        if slot.generation < GEN_MAX {
            slot.generation += 1;
            self.free.push(index as u32);
        }
        // else: retired, never reused, so no stale handle can match it.
    }

    /// Removes a live object, unlinking it from its parents.
    fn remove(&mut self, h: Handle) -> Option<Arc<Entry>> {
        let State::Live { entry, parents, .. } =
            std::mem::replace(&mut self.slots[h.index()].state, State::Reserved)
        else {
            return None;
        };
        for p in parents {
            if let Some(Slot {
                state: State::Live { children, .. },
                ..
            }) = self.slots.get_mut(p.index())
            {
                children.remove(&h);
            }
        }
        self.release_slot(h.index());
        Some(entry)
    }

    fn children_names(&self, h: Handle) -> Vec<String> {
        let Some(Slot {
            state: State::Live { children, .. },
            ..
        }) = self.slots.get(h.index())
        else {
            return Vec::new();
        };
        children
            .iter()
            .filter_map(|c| self.live(*c))
            .map(|e| format!("{} {}", e.type_name, e.handle))
            .collect()
    }
}

/// One object destroyed by [`Context::close`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destroyed {
    /// Its handle.
    pub handle: Handle,
    /// Its type name.
    pub object: &'static str,
    /// The error its destroy hook reported, if any (the object is gone anyway).
    pub error: Option<UapiError>,
}

static NEXT_CTX: AtomicU32 = AtomicU32::new(1);

/// A context (one per open of a device): owns the handle table of every
/// object created through it. Dropping it closes it.
pub struct Context {
    tag: u32,
    table: Mutex<Table>,
    data: Arc<dyn Any + Send + Sync>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("tag", &self.tag)
            .field("objects", &self.len())
            .finish()
    }
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

impl Context {
    /// A new, empty context.
    pub fn new() -> Self {
        Self::with_data(Arc::new(()))
    }

    /// A new context carrying device data that handlers reach through
    /// [`super::Bundle::context_data`] (Linux's driver `ib_ucontext`).
    pub fn with_data(data: Arc<dyn Any + Send + Sync>) -> Self {
        let tag = NEXT_CTX
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(if t >= CTX_MAX { 1 } else { t + 1 })
            })
            .unwrap_or(1);
        Context {
            tag,
            table: Mutex::new(Table::default()),
            data,
        }
    }

    pub(crate) fn data(&self) -> &Arc<dyn Any + Send + Sync> {
        &self.data
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic in another thread cannot leave the table half-changed:
        // every mutation completes under the lock without calling out.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of live objects.
    pub fn len(&self) -> usize {
        let t = self.table();
        t.slots
            .iter()
            .filter(|s| matches!(s.state, State::Live { .. }))
            .count()
    }

    /// Whether the context has no live objects.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`Context::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.table().closed
    }

    /// The live objects: handle and type name, oldest first.
    pub fn objects(&self) -> Vec<(Handle, &'static str)> {
        let t = self.table();
        let mut v: Vec<_> = t
            .slots
            .iter()
            .filter_map(|s| match &s.state {
                State::Live { entry, .. } => Some((entry.seq, entry.handle, entry.type_name)),
                _ => None,
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, h, n)| (h, n)).collect()
    }

    /// The live objects with their handle, type name and the object itself
    /// (for resource tracking), oldest first.
    pub fn live_objects(&self) -> Vec<(Handle, &'static str, Arc<dyn Any + Send + Sync>)> {
        let t = self.table();
        let mut v: Vec<_> = t
            .slots
            .iter()
            .filter_map(|s| match &s.state {
                State::Live { entry, .. } => Some(entry.clone()),
                _ => None,
            })
            .collect();
        drop(t);
        v.sort_by_key(|e| e.seq);
        v.into_iter()
            .map(|e| (e.handle, e.type_name, e.obj.clone().into_any()))
            .collect()
    }

    /// The live object named by `h`, if it is a `T` (no lock is taken: for
    /// reading what the object itself keeps consistent).
    pub fn get<T: UObject>(&self, h: Handle) -> Option<Arc<T>> {
        if h.ctx() != self.tag {
            return None;
        }
        let e = self.table().live(h)?.clone();
        e.obj.clone().into_any().downcast::<T>().ok()
    }

    /// Moves live object `child` from parent `from` to parent `to` (a
    /// region re-registered into another PD): `to` becomes busy while the
    /// child lives, `from` no longer is. `NotFound`-like errors name what
    /// is not live.
    pub fn reparent(&self, child: Handle, from: Handle, to: Handle) -> Result<(), UapiError> {
        let mut t = self.table();
        for (h, attr) in [(child, "child"), (from, "from"), (to, "to")] {
            if h.ctx() != self.tag {
                return Err(UapiError::ForeignHandle { attr, handle: h });
            }
            if t.live(h).is_none() {
                return Err(UapiError::StaleHandle { attr, handle: h });
            }
        }
        if let Some(Slot {
            state: State::Live { parents, .. },
            ..
        }) = t.slots.get_mut(child.index())
        {
            parents.retain(|p| *p != from);
            if !parents.contains(&to) {
                parents.push(to);
                parents.sort();
            }
        }
        if let Some(Slot {
            state: State::Live { children, .. },
            ..
        }) = t.slots.get_mut(from.index())
        {
            children.remove(&child);
        }
        if let Some(Slot {
            state: State::Live { children, .. },
            ..
        }) = t.slots.get_mut(to.index())
        {
            children.insert(child);
        }
        Ok(())
    }

    /// Resolves `h` as an object of type `object` and locks it.
    pub(crate) fn lookup(
        &self,
        attr: &'static str,
        h: Handle,
        object: ObjectId,
        expected: &'static str,
        exclusive: bool,
    ) -> Result<Locked, UapiError> {
        let t = self.table();
        if t.closed {
            return Err(UapiError::ContextClosed);
        }
        if h.ctx() != self.tag {
            return Err(UapiError::ForeignHandle { attr, handle: h });
        }
        let entry = t
            .live(h)
            .ok_or(UapiError::StaleHandle { attr, handle: h })?;
        if entry.object != object {
            return Err(UapiError::WrongType {
                attr,
                handle: h,
                expected,
                got: entry.type_name,
            });
        }
        Locked::try_new(entry.clone(), exclusive)
    }

    /// Reserves a slot for a new object (invisible until committed).
    pub(crate) fn reserve(&self) -> Result<Handle, UapiError> {
        let mut t = self.table();
        if t.closed {
            return Err(UapiError::ContextClosed);
        }
        let index = match t.free.pop() {
            Some(i) => i as usize,
            None => {
                if t.slots.len() as u64 > INDEX_MAX {
                    return Err(UapiError::TableFull);
                }
                t.slots.push(Slot {
                    generation: 0,
                    state: State::Free,
                });
                t.slots.len() - 1
            }
        };
        t.slots[index].state = State::Reserved;
        Ok(Handle::new(
            self.tag,
            t.slots[index].generation,
            index as u32,
        ))
    }

    /// Frees a reserved slot whose creation failed.
    pub(crate) fn abort(&self, h: Handle) {
        let mut t = self.table();
        if matches!(
            t.slots.get(h.index()).map(|s| &s.state),
            Some(State::Reserved)
        ) {
            t.release_slot(h.index());
        }
    }

    /// Makes a reserved object visible, as a child of `parents`.
    pub(crate) fn commit(
        &self,
        h: Handle,
        object: ObjectId,
        type_name: &'static str,
        destroy_order: u8,
        obj: Arc<dyn Erased>,
        mut parents: Vec<Handle>,
    ) -> Result<(), UapiError> {
        let mut t = self.table();
        if t.closed {
            t.release_slot(h.index());
            return Err(UapiError::ContextClosed);
        }
        parents.sort();
        parents.dedup();
        for p in &parents {
            if let Some(Slot {
                state: State::Live { children, .. },
                generation,
            }) = t.slots.get_mut(p.index())
            {
                if *generation == p.generation() {
                    children.insert(h);
                }
            }
        }
        let seq = t.next_seq;
        t.next_seq += 1;
        let entry = Arc::new(Entry {
            handle: h,
            object,
            type_name,
            destroy_order,
            seq,
            obj,
            usecnt: AtomicI64::new(0),
        });
        t.slots[h.index()].state = State::Live {
            entry,
            parents,
            children: BTreeSet::new(),
        };
        Ok(())
    }

    /// Destroys an object the caller holds exclusively: refuses with `Busy`
    /// if it has dependants or the object reports users, else runs its
    /// destroy hook and removes it.
    pub(crate) fn destroy(&self, locked: &Locked) -> Result<(), UapiError> {
        let e = &locked.entry;
        let mut users = self.table().children_names(e.handle);
        users.extend(e.obj.as_uobject().users());
        if !users.is_empty() {
            return Err(UapiError::Busy {
                object: e.type_name,
                handle: e.handle,
                users,
            });
        }
        // No child can appear meanwhile: creating one needs a shared lock
        // on this object, and we hold it exclusively.
        e.obj.as_uobject().destroy(DestroyReason::Explicit)?;
        self.table().remove(e.handle);
        Ok(())
    }

    /// Closes the context: destroys every object, children before their
    /// parents, by type `destroy_order`, newest first; returns them in the
    /// order destroyed. Later calls fail with [`UapiError::ContextClosed`].
    pub fn close(&self) -> Vec<Destroyed> {
        let mut order = Vec::new();
        let mut t = self.table();
        t.closed = true;
        loop {
            let mut live: Vec<(u8, std::cmp::Reverse<u64>, Handle, bool)> = t
                .slots
                .iter()
                .filter_map(|s| match &s.state {
                    State::Live {
                        entry, children, ..
                    } => Some((
                        entry.destroy_order,
                        std::cmp::Reverse(entry.seq),
                        entry.handle,
                        children.is_empty(),
                    )),
                    _ => None,
                })
                .collect();
            if live.is_empty() {
                break;
            }
            live.sort();
            // The first leaf in order; if there is none (cannot happen: the
            // graph is acyclic), the first object at all.
            let pick = live.iter().find(|l| l.3).unwrap_or(&live[0]).2;
            if let Some(entry) = t.remove(pick) {
                order.push(entry);
            }
        }
        drop(t);
        order
            .into_iter()
            .map(|e| Destroyed {
                handle: e.handle,
                object: e.type_name,
                error: e
                    .obj
                    .as_uobject()
                    .destroy(DestroyReason::ContextClose)
                    .err(),
            })
            .collect()
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dummy;
    impl UObject for Dummy {}

    const T: ObjectId = ObjectId::core(1);

    fn make(ctx: &Context) -> Handle {
        let h = ctx.reserve().unwrap();
        ctx.commit(h, T, "dummy", 0, Arc::new(Dummy), vec![])
            .unwrap();
        h
    }

    #[test]
    fn handle_packing() {
        let h = Handle::new(5, 7, 9);
        assert_eq!((h.ctx(), h.generation(), h.index()), (5, 7, 9));
        assert_eq!(Handle::from_raw(h.raw()), h);
    }

    #[test]
    fn reused_slot_gets_new_generation() {
        let ctx = Context::new();
        let a = make(&ctx);
        let l = ctx.lookup("x", a, T, "dummy", true).unwrap();
        ctx.destroy(&l).unwrap();
        drop(l);
        let b = make(&ctx);
        assert_eq!(a.index(), b.index());
        assert_ne!(a, b);
        assert!(matches!(
            ctx.lookup("x", a, T, "dummy", false),
            Err(UapiError::StaleHandle { .. })
        ));
    }

    #[test]
    fn locks_exclude() {
        let ctx = Context::new();
        let a = make(&ctx);
        let r1 = ctx.lookup("x", a, T, "dummy", false).unwrap();
        let _r2 = ctx.lookup("x", a, T, "dummy", false).unwrap();
        assert!(ctx.lookup("x", a, T, "dummy", true).is_err());
        drop(r1);
        drop(_r2);
        let _w = ctx.lookup("x", a, T, "dummy", true).unwrap();
        assert!(ctx.lookup("x", a, T, "dummy", false).is_err());
    }

    #[test]
    fn live_objects_and_get() {
        let ctx = Context::new();
        let a = make(&ctx);
        let b = make(&ctx);
        let v = ctx.live_objects();
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].0, v[1].0, v[0].1), (a, b, "dummy"));
        assert!(v[0].2.clone().downcast::<Dummy>().is_ok());
        assert!(ctx.get::<Dummy>(a).is_some());
        let other = Context::new();
        assert!(other.get::<Dummy>(a).is_none());
        let l = ctx.lookup("x", a, T, "dummy", true).unwrap();
        ctx.destroy(&l).unwrap();
        drop(l);
        assert!(ctx.get::<Dummy>(a).is_none());
    }

    #[test]
    fn abort_frees_reserved_slot() {
        let ctx = Context::new();
        let h = ctx.reserve().unwrap();
        ctx.abort(h);
        assert!(ctx.is_empty());
        assert!(ctx.lookup("x", h, T, "dummy", false).is_err());
    }
}
