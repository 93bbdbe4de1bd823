//! Errors of the verbs: what was wrong and what the caller can do.

use crate::uapi::{errno, UapiError};

/// A verb failed. Every variant maps to the errno libibverbs would return
/// ([`VerbsError::errno`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerbsError {
    /// The device does not offer this (capability check, seed 000).
    #[error("device {device} does not support {what}; check its capabilities with `softverbs dev show {device}`")]
    Unsupported {
        /// The device's name.
        device: String,
        /// What was asked for.
        what: String,
    },
    /// An argument is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A QP is not in a state that allows the operation, or the transition is
    /// not allowed.
    #[error("invalid QP state: {0}")]
    InvalidState(String),
    /// No object with that id.
    #[error("not found: {0}")]
    NotFound(String),
    /// The object is still used by others.
    #[error("{what} is busy: still used by {}; destroy those first", users.join(", "))]
    Busy {
        /// The object.
        what: String,
        /// Its users.
        users: Vec<String>,
    },
    /// A device limit was reached.
    #[error("out of resources: {0}")]
    NoResources(String),
    /// A work queue is full.
    #[error("the work queue is full: poll completions before posting more")]
    QueueFull,
    /// An I/O error of the device (socket).
    #[error("device I/O error: {0}")]
    Io(String),
    /// A uAPI call failed validation or dispatch.
    #[error(transparent)]
    Uapi(#[from] UapiError),
    /// A uAPI call failed in the peer (daemon) with this errno and message.
    #[error("{message} (errno {errno})")]
    Remote {
        /// errno.
        errno: i32,
        /// Message.
        message: String,
    },
}

impl VerbsError {
    /// The errno libibverbs would set.
    pub fn errno(&self) -> i32 {
        match self {
            VerbsError::Unsupported { .. } => errno::EOPNOTSUPP,
            VerbsError::InvalidArgument(_) | VerbsError::InvalidState(_) => errno::EINVAL,
            VerbsError::NotFound(_) => errno::ENOENT,
            VerbsError::Busy { .. } => errno::EBUSY,
            VerbsError::NoResources(_) | VerbsError::QueueFull => errno::ENOMEM,
            VerbsError::Io(_) => errno::EIO,
            VerbsError::Uapi(e) => e.errno(),
            VerbsError::Remote { errno, .. } => *errno,
        }
    }

    /// Shorthand for [`VerbsError::Unsupported`].
    pub fn unsupported(device: &str, what: impl Into<String>) -> Self {
        VerbsError::Unsupported {
            device: device.to_string(),
            what: what.into(),
        }
    }

    /// Shorthand for [`VerbsError::InvalidArgument`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        VerbsError::InvalidArgument(msg.into())
    }
}

impl From<VerbsError> for UapiError {
    fn from(e: VerbsError) -> Self {
        match e {
            VerbsError::Uapi(u) => u,
            other => UapiError::handler(other.errno(), other.to_string()),
        }
    }
}

/// Result of a verb.
pub type Result<T, E = VerbsError> = core::result::Result<T, E>;

impl VerbsError {
    /// Rebuilds the error a callee reported (errno and message, as a uAPI
    /// reply carries it) so that the caller sees the same variant the
    /// callee raised: `Unsupported` (EOPNOTSUPP), `InvalidArgument` /
    /// `InvalidState` (EINVAL), `NotFound` (ENOENT), `Busy` (EBUSY),
    /// `NoResources` / `QueueFull` (ENOMEM), `Io` (EIO). Anything else stays
    /// [`VerbsError::Remote`].
    pub fn from_remote(errno: i32, message: &str) -> Self {
        use crate::uapi::errno::*;
        let suffix = format!(" (errno {errno})");
        let message = message.strip_suffix(suffix.as_str()).unwrap_or(message);
        let strip = |p: &str| message.strip_prefix(p).map(str::to_string);
        match errno {
            EOPNOTSUPP => {
                let parsed = message.strip_prefix("device ").and_then(|rest| {
                    let (device, what) = rest.split_once(" does not support ")?;
                    let what = what
                        .rsplit_once("; check its capabilities")
                        .map_or(what, |(w, _)| w);
                    Some(VerbsError::unsupported(device, what))
                });
                parsed.unwrap_or_else(|| VerbsError::unsupported("?", message))
            }
            EINVAL => {
                if let Some(m) = strip("invalid QP state: ") {
                    VerbsError::InvalidState(m)
                } else {
                    VerbsError::InvalidArgument(
                        strip("invalid argument: ").unwrap_or_else(|| message.to_string()),
                    )
                }
            }
            ENOENT => {
                VerbsError::NotFound(strip("not found: ").unwrap_or_else(|| message.to_string()))
            }
            EBUSY => parse_busy(message).unwrap_or_else(|| VerbsError::Busy {
                what: message.to_string(),
                users: Vec::new(),
            }),
            ENOMEM if message.starts_with("the work queue is full") => VerbsError::QueueFull,
            ENOMEM => VerbsError::NoResources(
                strip("out of resources: ").unwrap_or_else(|| message.to_string()),
            ),
            EIO if message.starts_with("device I/O error: ") => {
                VerbsError::Io(strip("device I/O error: ").unwrap_or_default())
            }
            _ => VerbsError::Remote {
                errno,
                message: message.to_string(),
            },
        }
    }
}

/// Parses both busy formats: the core's (`X is busy: still used by a, b;
/// destroy those first`) and the uAPI's (`X h is busy, used by: a, b;
/// destroy or finish those first`).
fn parse_busy(m: &str) -> Option<VerbsError> {
    let (what, users) = m
        .split_once(" is busy: still used by ")
        .or_else(|| m.split_once(" is busy, used by: "))?;
    let users = users.rsplit_once("; destroy").map_or(users, |(u, _)| u);
    Some(VerbsError::Busy {
        what: what.to_string(),
        users: users.split(", ").map(str::to_string).collect(),
    })
}

impl From<crate::uapi::RemoteError> for VerbsError {
    fn from(e: crate::uapi::RemoteError) -> Self {
        VerbsError::from_remote(e.errno, &e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_errors_round_trip() {
        let cases = [
            VerbsError::unsupported("ud0", "RC queue pairs (it offers UD)"),
            VerbsError::InvalidArgument("x".into()),
            VerbsError::InvalidState("INIT→RTS".into()),
            VerbsError::NotFound("qp 3".into()),
            VerbsError::Busy {
                what: "PD 1".into(),
                users: vec!["MR 2".into(), "QP 3".into()],
            },
            VerbsError::NoResources("qpn".into()),
            VerbsError::QueueFull,
            VerbsError::Io("socket".into()),
        ];
        for e in cases {
            let u = UapiError::from(e.clone());
            assert_eq!(VerbsError::from_remote(u.errno(), &u.to_string()), e);
        }
    }
}
