//! The preallocated `mmsghdr` array of `nix`'s `sendmmsg`/`recvmmsg`,
//! made movable between threads.

#![allow(unsafe_code)]

use nix::sys::socket::{MultiHeaders, SockaddrStorage};

/// `nix::sys::socket::MultiHeaders`, which is `!Send` only because it holds
/// raw pointers.
pub(crate) struct Headers(MultiHeaders<SockaddrStorage>);

// SAFETY: the raw pointers inside `MultiHeaders` point into its own boxed
// allocations (the address slots and control buffers), which move with it,
// and — only for the duration of one `sendmmsg`/`recvmmsg` call — into the
// caller's I/O slices; every call rewrites the I/O pointers before use and
// nothing reads them afterwards. Nothing in it is tied to a thread, and all
// access goes through `&mut self`, so moving it to another thread is sound.
unsafe impl Send for Headers {}

impl Headers {
    /// Headers for `n` datagrams.
    pub(crate) fn new(n: usize) -> Self {
        Headers(MultiHeaders::preallocate(n, None))
    }

    /// Headers for `n` received datagrams with room for each one's IP_TOS
    /// control message (the ECN bits).
    pub(crate) fn with_tos(n: usize) -> Self {
        Headers(MultiHeaders::preallocate(n, Some(nix::cmsg_space!(u8))))
    }

    /// The headers, for one call.
    pub(crate) fn get(&mut self) -> &mut MultiHeaders<SockaddrStorage> {
        &mut self.0
    }
}
