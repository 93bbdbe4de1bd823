//! Bodies of the daemon's own frames (besides the uAPI's encoded calls).

use softverbs_core::uapi::Handle;

/// Which queue a ring carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingKind {
    /// A QP's send queue (client produces send WQEs).
    Send,
    /// A QP's receive queue (client produces receive WQEs).
    Recv,
    /// An SRQ (client produces receive WQEs).
    Srq,
    /// A CQ (the daemon produces CQEs).
    Cq,
    /// The context's asynchronous events (the daemon produces them; the
    /// handle is ignored, send 0).
    Events,
}

/// `ATTACH` body (24 bytes): `u16 kind (1 send, 2 recv, 3 srq, 4 cq, 5
/// events), u16 0,
/// u32 entries, u32 stride, u32 0, u64 handle` of the QP, SRQ or CQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attach {
    /// Queue.
    pub kind: RingKind,
    /// Slots (a power of two).
    pub entries: u32,
    /// Bytes per slot (must equal what the queue's entries take).
    pub stride: u32,
    /// The object's uAPI handle in this connection's context.
    pub handle: Handle,
}

/// Size of the `ATTACH` body.
pub const ATTACH_SIZE: usize = 24;

impl Attach {
    /// Encodes.
    pub fn encode(&self) -> Vec<u8> {
        let k: u16 = match self.kind {
            RingKind::Send => 1,
            RingKind::Recv => 2,
            RingKind::Srq => 3,
            RingKind::Cq => 4,
            RingKind::Events => 5,
        };
        let mut b = Vec::with_capacity(ATTACH_SIZE);
        b.extend_from_slice(&k.to_le_bytes());
        b.extend_from_slice(&[0; 2]);
        b.extend_from_slice(&self.entries.to_le_bytes());
        b.extend_from_slice(&self.stride.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&self.handle.raw().to_le_bytes());
        b
    }

    /// Decodes, refusing a wrong length, unknown kind or set reserved bytes.
    pub fn decode(b: &[u8]) -> Result<Attach, String> {
        if b.len() != ATTACH_SIZE {
            return Err(format!(
                "ATTACH body of {} bytes (want {ATTACH_SIZE})",
                b.len()
            ));
        }
        if b[2..4] != [0; 2] || b[12..16] != [0; 4] {
            return Err("ATTACH reserved bytes are set".into());
        }
        let kind = match u16::from_le_bytes([b[0], b[1]]) {
            1 => RingKind::Send,
            2 => RingKind::Recv,
            3 => RingKind::Srq,
            4 => RingKind::Cq,
            5 => RingKind::Events,
            k => return Err(format!("unknown ring kind {k}")),
        };
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let mut h = [0u8; 8];
        h.copy_from_slice(&b[16..24]);
        Ok(Attach {
            kind,
            entries: u32_at(4),
            stride: u32_at(8),
            handle: Handle::from_raw(u64::from_le_bytes(h)),
        })
    }
}
