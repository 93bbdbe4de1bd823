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
