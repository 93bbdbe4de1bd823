//! Identifiers of object types, methods and attributes, and their namespaces.
//!
//! Every id is a `u16` whose top four bits name a namespace, as Linux's
//! `UVERBS_ID_NS_MASK`: namespace 0 is the core (ids every device shares),
//! namespace 1 ([`DRIVER_NS`]) belongs to the device's driver (the *provider
//! channel*). Other namespaces are reserved and refused when a registry is
//! built.

use std::fmt;

/// Mask of the namespace bits of an id.
pub const ID_NS_MASK: u16 = 0xF000;
/// The core namespace: ids shared by every device.
pub const CORE_NS: u16 = 0x0000;
/// The driver (provider) namespace: ids a device adds for itself.
pub const DRIVER_NS: u16 = 0x1000;

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident, $label:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u16);

        impl $name {
            /// An id in the core namespace (`n` must be below `0x1000`).
            pub const fn core(n: u16) -> Self {
                Self(n & !ID_NS_MASK)
            }

            /// An id in the driver namespace (`n` must be below `0x1000`).
            pub const fn driver(n: u16) -> Self {
                Self(DRIVER_NS | (n & !ID_NS_MASK))
            }

            /// The namespace bits of this id ([`CORE_NS`] or [`DRIVER_NS`]).
            pub const fn namespace(self) -> u16 {
                self.0 & ID_NS_MASK
            }

            /// Whether the id belongs to the driver namespace.
            pub const fn is_driver(self) -> bool {
                self.namespace() == DRIVER_NS
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.is_driver() {
                    write!(f, concat!($label, " drv:{:#x}"), self.0 & !ID_NS_MASK)
                } else {
                    write!(f, concat!($label, " {:#x}"), self.0)
                }
            }
        }
    };
}

id_type!(
    /// Identifies an object type (PD, MR, QP...).
    ObjectId,
    "object"
);
id_type!(
    /// Identifies a method of an object type.
    MethodId,
    "method"
);
id_type!(
    /// Identifies an attribute of a method.
    AttrId,
    "attr"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        assert_eq!(ObjectId::core(3).namespace(), CORE_NS);
        assert!(MethodId::driver(3).is_driver());
        assert_eq!(AttrId::driver(0x7).0, 0x1007);
        assert_eq!(format!("{}", AttrId::driver(7)), "attr drv:0x7");
        assert_eq!(format!("{:?}", ObjectId::core(2)), "object 0x2");
    }
}
