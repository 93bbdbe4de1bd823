//! The registry: core specs merged with a driver's, checked once at build.

use super::error::SpecError;
use super::ids::{AttrId, MethodId, ObjectId, CORE_NS, DRIVER_NS};
use super::spec::{Access, AttrKind, AttrSpec, DriverSpec, Handler, MethodSpec, ObjectSpec};
use std::collections::BTreeMap;

/// A method after merging: its handler and every attribute (core + driver).
#[derive(Debug)]
pub(crate) struct MethodEntry {
    pub name: &'static str,
    pub handler: Handler,
    pub attrs: BTreeMap<AttrId, AttrSpec>,
}

impl MethodEntry {
    /// The attribute of this method with access `New` (at most one).
    pub fn new_attr(&self) -> Option<&AttrSpec> {
        self.attrs.values().find(|a| {
            matches!(
                a.kind,
                AttrKind::Handle {
                    access: Access::New,
                    ..
                }
            )
        })
    }
}

#[derive(Debug)]
pub(crate) struct ObjectEntry {
    pub name: &'static str,
    pub destroy_order: u8,
    pub methods: BTreeMap<MethodId, MethodEntry>,
}

/// All object types, methods and attributes a device understands: the core
/// tables plus its driver's, validated when built. Calls go through
/// [`Registry::call`] (see the `dispatch` module).
#[derive(Debug)]
pub struct Registry {
    pub(crate) driver_id: u32,
    pub(crate) driver_name: Option<&'static str>,
    pub(crate) objects: BTreeMap<ObjectId, ObjectEntry>,
}

fn check_ns(what: &'static str, name: &'static str, id: u16, ns: u16) -> Result<(), SpecError> {
    if id & super::ids::ID_NS_MASK != ns {
        return Err(SpecError::Namespace {
            what,
            name,
            id,
            expected_ns: ns,
        });
    }
    Ok(())
}

/// Adds `attrs` to a method. Attributes added to an existing core method by
/// a driver must be in the driver namespace (`ns`); the attributes of a
/// method the driver owns may use either namespace (`any_ns`).
fn add_attrs(
    method: &mut MethodEntry,
    attrs: &'static [AttrSpec],
    ns: u16,
    any_ns: bool,
) -> Result<(), SpecError> {
    for a in attrs {
        if !(any_ns && a.id.namespace() == CORE_NS) {
            check_ns("attribute", a.name, a.id.0, ns)?;
        }
        if method.attrs.insert(a.id, *a).is_some() {
            return Err(SpecError::DuplicateAttr {
                method: method.name,
                attr: a.id,
            });
        }
    }
    Ok(())
}

fn new_method(m: &MethodSpec, ns: u16) -> Result<MethodEntry, SpecError> {
    check_ns("method", m.name, m.id.0, ns)?;
    let handler = m.handler.ok_or(SpecError::NoHandler(m.name))?;
    let mut entry = MethodEntry {
        name: m.name,
        handler,
        attrs: BTreeMap::new(),
    };
    add_attrs(&mut entry, m.attrs, ns, true)?;
    Ok(entry)
}

fn add_methods(
    obj: &mut ObjectEntry,
    methods: &'static [MethodSpec],
    ns: u16,
) -> Result<(), SpecError> {
    for m in methods {
        if ns == DRIVER_NS && m.id.namespace() == CORE_NS {
            // A driver adds attributes to a core method.
            let existing = obj
                .methods
                .get_mut(&m.id)
                .ok_or(SpecError::ExtendsUnknown {
                    what: "method",
                    name: m.name,
                })?;
            if m.handler.is_some() {
                return Err(SpecError::HandlerOverride(existing.name));
            }
            add_attrs(existing, m.attrs, DRIVER_NS, false)?;
            continue;
        }
        let entry = new_method(m, ns)?;
        if obj.methods.insert(m.id, entry).is_some() {
            return Err(SpecError::DuplicateMethod {
                object: obj.name,
                method: m.id,
            });
        }
    }
    Ok(())
}

impl Registry {
    /// A registry of core specs only (driver id 0).
    pub fn new(core: &'static [ObjectSpec]) -> Result<Self, SpecError> {
        let mut r = Registry {
            driver_id: 0,
            driver_name: None,
            objects: BTreeMap::new(),
        };
        r.merge(core, CORE_NS)?;
        r.check()?;
        Ok(r)
    }

    /// A registry of core specs plus one driver's additions. Every id the
    /// driver adds must be in the driver namespace; a clash is an error here,
    /// never at call time.
    pub fn with_driver(
        core: &'static [ObjectSpec],
        driver: &DriverSpec,
    ) -> Result<Self, SpecError> {
        let mut r = Registry {
            driver_id: driver.driver_id,
            driver_name: Some(driver.name),
            objects: BTreeMap::new(),
        };
        r.merge(core, CORE_NS)?;
        r.merge(driver.objects, DRIVER_NS)?;
        r.check()?;
        Ok(r)
    }

    fn merge(&mut self, objects: &'static [ObjectSpec], ns: u16) -> Result<(), SpecError> {
        for o in objects {
            if ns == DRIVER_NS && o.id.namespace() == CORE_NS {
                let obj = self
                    .objects
                    .get_mut(&o.id)
                    .ok_or(SpecError::ExtendsUnknown {
                        what: "object",
                        name: o.name,
                    })?;
                add_methods(obj, o.methods, ns)?;
                continue;
            }
            check_ns("object", o.name, o.id.0, ns)?;
            if self.objects.contains_key(&o.id) {
                return Err(SpecError::DuplicateObject(o.id));
            }
            let mut obj = ObjectEntry {
                name: o.name,
                destroy_order: o.destroy_order,
                methods: BTreeMap::new(),
            };
            add_methods(&mut obj, o.methods, ns)?;
            self.objects.insert(o.id, obj);
        }
        Ok(())
    }

    /// Checks every attribute spec once all tables are merged.
    fn check(&self) -> Result<(), SpecError> {
        for obj in self.objects.values() {
            for m in obj.methods.values() {
                let (mut news, mut destroys) = (0, 0);
                for a in m.attrs.values() {
                    let bad = |why| SpecError::BadAttr {
                        method: m.name,
                        attr: a.name,
                        why,
                    };
                    match a.kind {
                        AttrKind::BytesIn { min, max } | AttrKind::BytesOut { min, max }
                            if min > max || max > u32::MAX as usize =>
                        {
                            return Err(bad("min > max or max beyond u32"));
                        }
                        AttrKind::U64 { min, max } if min > max => return Err(bad("min > max")),
                        AttrKind::Enum { allowed: [] } => return Err(bad("enum allows no value")),
                        AttrKind::Handle { object, access } => {
                            if !self.objects.contains_key(&object) {
                                return Err(bad("handle of an undeclared object type"));
                            }
                            if matches!(access, Access::New | Access::Destroy) {
                                if !a.mandatory {
                                    return Err(bad("new/destroy handles must be mandatory"));
                                }
                                if access == Access::New {
                                    news += 1;
                                } else {
                                    destroys += 1;
                                }
                            }
                        }
                        _ => {}
                    }
                }
                if news > 1 || destroys > 1 {
                    return Err(SpecError::BadAttr {
                        method: m.name,
                        attr: "*",
                        why: "at most one new and one destroy handle per method",
                    });
                }
            }
        }
        Ok(())
    }

    /// The driver id calls must carry (0 for a core-only registry).
    pub fn driver_id(&self) -> u32 {
        self.driver_id
    }

    /// The driver's name, if a driver was merged.
    pub fn driver_name(&self) -> Option<&'static str> {
        self.driver_name
    }

    /// Every method: object id, object name, method id, method name.
    pub fn methods(&self) -> Vec<(ObjectId, &'static str, MethodId, &'static str)> {
        self.objects
            .iter()
            .flat_map(|(oid, o)| {
                o.methods
                    .iter()
                    .map(move |(mid, m)| (*oid, o.name, *mid, m.name))
            })
            .collect()
    }

    /// The attributes of a method, core and driver, by id.
    pub fn attrs(&self, object: ObjectId, method: MethodId) -> Option<Vec<AttrSpec>> {
        let m = self.objects.get(&object)?.methods.get(&method)?;
        Some(m.attrs.values().copied().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uapi::{Bundle, UapiError};

    fn ok(_: &mut Bundle<'_>) -> Result<(), UapiError> {
        Ok(())
    }

    const O: ObjectId = ObjectId::core(1);
    static ATTRS: [AttrSpec; 1] = [AttrSpec::bytes_in(AttrId::core(1), "a", 0, 8)];
    static METHODS: [MethodSpec; 1] = [MethodSpec {
        id: MethodId::core(1),
        name: "m",
        attrs: &ATTRS,
        handler: Some(ok),
    }];
    static CORE: [ObjectSpec; 1] = [ObjectSpec {
        id: O,
        name: "o",
        destroy_order: 0,
        methods: &METHODS,
    }];

    #[test]
    fn duplicate_object_rejected() {
        static DUP: [ObjectSpec; 2] = [CORE[0], CORE[0]];
        assert_eq!(
            Registry::new(&DUP).unwrap_err(),
            SpecError::DuplicateObject(O)
        );
    }

    #[test]
    fn driver_must_use_its_namespace() {
        static BAD_ATTRS: [AttrSpec; 1] = [AttrSpec::bytes_in(AttrId::core(2), "b", 0, 8)];
        static EXT: [MethodSpec; 1] = [MethodSpec {
            id: MethodId::core(1),
            name: "m",
            attrs: &BAD_ATTRS,
            handler: None,
        }];
        static DRV: [ObjectSpec; 1] = [ObjectSpec {
            id: O,
            name: "o",
            destroy_order: 0,
            methods: &EXT,
        }];
        let d = DriverSpec {
            driver_id: 7,
            name: "d",
            objects: &DRV,
        };
        assert!(matches!(
            Registry::with_driver(&CORE, &d),
            Err(SpecError::Namespace { .. })
        ));
    }

    #[test]
    fn driver_cannot_override_handler() {
        static EXT: [MethodSpec; 1] = [MethodSpec {
            id: MethodId::core(1),
            name: "m",
            attrs: &[],
            handler: Some(ok),
        }];
        static DRV: [ObjectSpec; 1] = [ObjectSpec {
            id: O,
            name: "o",
            destroy_order: 0,
            methods: &EXT,
        }];
        let d = DriverSpec {
            driver_id: 7,
            name: "d",
            objects: &DRV,
        };
        assert_eq!(
            Registry::with_driver(&CORE, &d).unwrap_err(),
            SpecError::HandlerOverride("m")
        );
    }

    #[test]
    fn bad_bounds_rejected() {
        static A: [AttrSpec; 1] = [AttrSpec::bytes_in(AttrId::core(1), "a", 9, 8)];
        static M: [MethodSpec; 1] = [MethodSpec {
            id: MethodId::core(1),
            name: "m",
            attrs: &A,
            handler: Some(ok),
        }];
        static C: [ObjectSpec; 1] = [ObjectSpec {
            id: O,
            name: "o",
            destroy_order: 0,
            methods: &M,
        }];
        assert!(matches!(Registry::new(&C), Err(SpecError::BadAttr { .. })));
    }
}
