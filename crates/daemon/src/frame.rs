//! Frames on the daemon's Unix socket: a 16-byte header, a body, and file
//! descriptors passed with `SCM_RIGHTS` (`docs/daemon-rings.md`, "Socket
//! protocol").

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// `"SVDM"`: the first word of every frame.
pub const MAGIC: u32 = u32::from_le_bytes(*b"SVDM");
/// Header bytes.
pub const HEADER: usize = 16;
/// Largest body (the uAPI's 64 MiB message limit).
pub const MAX_BODY: usize = 64 << 20;
/// Most file descriptors one frame may carry.
pub const MAX_FDS: usize = 8;

/// Frame kinds. A reply has the request's kind with bit 15 set; an error
/// reply is [`Kind::ERROR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind(pub u16);

impl Kind {
    /// Open a device: body = its name. Reply: `u32 driver_id, u32 0`.
    pub const OPEN: Kind = Kind(1);
    /// A uAPI call: body = the encoded call (`docs/uapi-encoding.md`),
    /// fds = its fd attributes. Reply: the encoded uAPI reply.
    pub const CALL: Kind = Kind(2);
    /// Attach a ring to a QP, SRQ or CQ (see [`crate::proto::Attach`]);
    /// fds = ring memfd, eventfd. Reply: empty.
    pub const ATTACH: Kind = Kind(3);
    /// The host's device names, one per line.
    pub const DEVICES: Kind = Kind(4);
    /// Every object of every client of every device, JSON (`res show`).
    pub const RESOURCES: Kind = Kind(5);
    /// Create a device at run time (`softverbs link add`): body = one
    /// device entry in the `SOFTVERBS_DEVICES` syntax
    /// (`name=kind:addr[:port][:mtu=N]`). Reply: the device's name.
    /// See [`crate::control`].
    pub const LINK_ADD: Kind = Kind(6);
    /// Remove a device (`softverbs link delete`): body = its name; refused
    /// with `EBUSY`, naming the owners, while a client has it open.
    /// Reply: empty.
    pub const LINK_DEL: Kind = Kind(7);
    /// The daemon's and every device's counters, JSON (`stat show`).
    pub const COUNTERS: Kind = Kind(8);
    /// Every device with its attributes, ports and GIDs, JSON (`dev`,
    /// `link show`).
    pub const DEVICE_INFO: Kind = Kind(9);
    /// Error reply: `u32 errno, u32 0`, then a UTF-8 message.
    pub const ERROR: Kind = Kind(0xffff);

    /// The reply kind of a request kind.
    pub fn reply(self) -> Kind {
        Kind(self.0 | 0x8000)
    }
}

/// A frame: kind, body, fds.
#[derive(Debug)]
pub struct Frame {
    /// Kind.
    pub kind: Kind,
    /// Body bytes.
    pub body: Vec<u8>,
    /// File descriptors carried.
    pub fds: Vec<OwnedFd>,
}

/// A malformed frame or a broken connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection (cleanly, between frames).
    #[error("connection closed")]
    Closed,
    /// Header or fd count invalid: the stream cannot be trusted further.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// I/O error.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

fn header(kind: Kind, nfds: usize, len: usize) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..6].copy_from_slice(&kind.0.to_le_bytes());
    h[6..8].copy_from_slice(&(nfds as u16).to_le_bytes());
    h[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    h
}

/// Sends one frame (header and body in one `sendmsg` with the fds, then any
/// remainder).
pub fn send(
    sock: &UnixStream,
    kind: Kind,
    body: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), FrameError> {
    if fds.len() > MAX_FDS || body.len() > MAX_BODY {
        return Err(FrameError::Malformed(format!(
            "{} fds / {} bytes exceed the limits",
            fds.len(),
            body.len()
        )));
    }
    let h = header(kind, fds.len(), body.len());
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(FrameError::Malformed(
            "fds do not fit the control buffer".into(),
        ));
    }
    let iov = [IoSlice::new(&h), IoSlice::new(body)];
    let sent = rustix::net::sendmsg(sock, &iov, &mut control, SendFlags::NOSIGNAL)
        .map_err(std::io::Error::from)?;
    let total = HEADER + body.len();
    if sent < total {
        let mut all = Vec::with_capacity(total - sent);
        all.extend_from_slice(&h[sent.min(HEADER)..]);
        all.extend_from_slice(&body[sent.saturating_sub(HEADER)..]);
        (&*sock).write_all(&all)?;
    }
    Ok(())
}

/// Receives one frame; fds beyond the header's count, a bad magic, a set
/// reserved field or an oversize body are [`FrameError::Malformed`].
pub fn recv(sock: &UnixStream) -> Result<Frame, FrameError> {
    let mut h = [0u8; HEADER];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = {
        let mut iov = [IoSliceMut::new(&mut h)];
        rustix::net::recvmsg(sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)
            .map_err(std::io::Error::from)?
    };
    let mut fds: Vec<OwnedFd> = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(it) = msg {
            fds.extend(it);
        }
    }
    if got.bytes == 0 {
        return Err(FrameError::Closed);
    }
    if got.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
        return Err(FrameError::Malformed(format!("more than {MAX_FDS} fds")));
    }
    if got.bytes < HEADER {
        (&*sock).read_exact(&mut h[got.bytes..])?;
    }
    let (kind, len) = parse_header(&h, fds.len())?;
    // Grown as the bytes come, not allocated up front: a header that
    // announces 64 MiB costs nothing until they are sent.
    let mut body = Vec::with_capacity(len.min(64 << 10));
    sock.take(len as u64).read_to_end(&mut body)?;
    if body.len() != len {
        return Err(FrameError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "the connection closed {} bytes into a {len}-byte body",
                body.len()
            ),
        )));
    }
    Ok(Frame { kind, body, fds })
}

/// Checks a frame header that came with `fds` descriptors: the magic,
/// the reserved bytes, the fd count and the body limit. Returns the kind
/// and the body length; any fault is [`FrameError::Malformed`].
pub fn parse_header(h: &[u8; HEADER], fds: usize) -> Result<(Kind, usize), FrameError> {
    if h[0..4] != MAGIC.to_le_bytes() {
        return Err(FrameError::Malformed("bad magic".into()));
    }
    if h[12..16] != [0; 4] {
        return Err(FrameError::Malformed(
            "reserved header bytes are set".into(),
        ));
    }
    let kind = Kind(u16::from_le_bytes([h[4], h[5]]));
    let nfds = u16::from_le_bytes([h[6], h[7]]) as usize;
    let len = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
    if nfds != fds {
        return Err(FrameError::Malformed(format!(
            "the header announces {nfds} fds, {fds} came"
        )));
    }
    if len > MAX_BODY {
        return Err(FrameError::Malformed(format!("body of {len} bytes")));
    }
    Ok((kind, len))
}

/// An error reply body.
pub fn error_body(errno: i32, msg: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + msg.len());
    b.extend_from_slice(&(errno as u32).to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(msg.as_bytes());
    b
}

/// Parses an error reply body: errno and message.
pub fn parse_error(body: &[u8]) -> (i32, String) {
    let errno = body
        .get(0..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i32)
        .unwrap_or(5);
    let msg = String::from_utf8_lossy(body.get(8..).unwrap_or(&[])).into_owned();
    (errno, msg)
}

/// Borrowed views of owned fds.
pub fn borrow(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(|f| f.as_fd()).collect()
}
